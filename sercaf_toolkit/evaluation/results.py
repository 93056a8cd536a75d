"""Results: a run's test files, and tables over the files runs wrote.

:func:`write_test_outputs` writes what a test leaves in a folder
(``test_metrics.json``, ``predictions.csv``, the confusion matrix), for a
recipe's run and ``sercaf evaluate`` alike; :func:`write_run_outputs` adds
the training curves of a run. A run's folder also holds ``run_info.json``
(see :mod:`sercaf_toolkit.training.recipe`). The other functions read such
folders and sum them up: per-fold figures, mean ± sample
standard deviation over folds and over seeds (``null`` in JSON and
``n/a`` in tables when there is one fold or seed: no spread was seen),
pooled predictions, the Markdown table and the pooled confusion matrix.
``sercaf cv`` and ``sercaf table`` use them.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import json
import os
import statistics

import torch

from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.evaluation import calibration
from sercaf_toolkit.evaluation.metrics import (
    EmotionMetrics,
    dimension_figures,
)
from sercaf_toolkit.evaluation.plots import (
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_training_curves,
)

METRICS = ("WA", "UA", "F1")


def run_figures(metrics):
    """The figures of a run's ``test_metrics.json`` summed up over runs.

    WA, UA and F1 of a model with classes; ``CCC`` (the mean over
    dimensions) and ``CCC_<dimension>`` of one with dimensions; both of a
    joint model. A categorical run gives :data:`METRICS` alone, as it did
    before dimensions existed.

    Example
    -------
    >>> run_figures({"WA": 0.7, "UA": 0.6, "F1": 0.5, "labels": ["a"]})
    {'WA': 0.7, 'UA': 0.6, 'F1': 0.5}
    >>> run_figures({"CCC": 0.4, "CCC_arousal": 0.5, "CCC_valence": 0.3,
    ...              "dimensions": ["arousal", "valence"]})
    {'CCC': 0.4, 'CCC_arousal': 0.5, 'CCC_valence': 0.3}
    """
    keys = [k for k in METRICS if k in metrics]
    if "CCC" in metrics:
        dimensions = metrics.get("dimensions") or [
            k[4:] for k in metrics if k.startswith("CCC_")
        ]
        keys += ["CCC"] + [f"CCC_{name}" for name in dimensions]
    return {k: metrics[k] for k in keys}


def _mean_std(values):
    """Mean and sample standard deviation; ``None`` for a single value.

    One fold (or seed) shows no spread at all, which a 0.0 would claim
    to measure.

    Example
    -------
    >>> _mean_std([0.5, 0.5]), _mean_std([0.5])
    ((0.5, 0.0), (0.5, None))
    """
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def read_run(folder):
    """The test metrics, prediction rows and run info of a finished run.

    Returns ``None`` when the run has no ``test_metrics.json``.
    """
    metrics_file = os.path.join(folder, "test_metrics.json")
    if not os.path.exists(metrics_file):
        return None
    with open(metrics_file, encoding="utf-8") as source:
        metrics = json.load(source)
    with open(
        os.path.join(folder, "predictions.csv"), newline="", encoding="utf-8"
    ) as source:
        rows = list(csv.DictReader(source))
    info = {}
    info_file = os.path.join(folder, "run_info.json")
    if os.path.exists(info_file):
        with open(info_file, encoding="utf-8") as source:
            info = json.load(source)
    return {"metrics": metrics, "rows": rows, "info": info}


def _aggregate(done):
    """Per-fold figures (averaged over seeds), mean/std over folds and seeds.

    Arguments
    ---------
    done : dict
        ``(seed, fold)`` -> ``{"WA": ..., "UA": ..., "F1": ...}``.
    """
    folds = sorted({fold for _, fold in done})
    seeds = sorted({seed for seed, _ in done}, key=str)
    # The figures every run has (WA, UA, F1; CCCs of runs with dimensions),
    # in the first run's order.
    keys = [
        k
        for k in next(iter(done.values()), {})
        if all(k in m for m in done.values())
    ]
    result = {
        "folds": {
            str(fold): {
                k: statistics.fmean(
                    m[k] for (s, f), m in done.items() if f == fold
                )
                for k in keys
            }
            for fold in folds
        }
    }
    if not done:
        return result
    over_folds = {
        k: _mean_std([m[k] for m in result["folds"].values()]) for k in keys
    }
    result["mean"] = {k: v[0] for k, v in over_folds.items()}
    result["std"] = {k: v[1] for k, v in over_folds.items()}
    if len(seeds) > 1:
        per_seed = {
            str(seed): {
                k: statistics.fmean(
                    m[k] for (s, _), m in done.items() if s == seed
                )
                for k in keys
            }
            for seed in seeds
        }
        over_seeds = {
            k: _mean_std([m[k] for m in per_seed.values()]) for k in keys
        }
        result["seeds"] = {
            "per_seed": per_seed,
            "mean": {k: v[0] for k, v in over_seeds.items()},
            "std": {k: v[1] for k, v in over_seeds.items()},
        }
    return result


def _pooled(rows, labels, dimensions=()):
    """Metrics of prediction rows together, and their summary.

    Rows with ``<dimension>_true``/``_pred`` columns (``dimensions``) add
    the CCCs of all of them together; without ``labels`` (dimensional
    runs) those are all.
    """
    figures = {}
    if dimensions:
        true = [[float(r[f"{n}_true"]) for n in dimensions] for r in rows]
        pred = [[float(r[f"{n}_pred"]) for n in dimensions] for r in rows]
        ccc = dimension_figures(dimensions, true, pred)
        figures = {"CCC": ccc["CCC"]}
        figures.update({f"CCC_{n}": ccc[f"CCC_{n}"] for n in dimensions})
    if not labels:
        return figures
    pooled = EmotionMetrics(labels)
    index = {label: i for i, label in enumerate(labels)}
    pooled.append(
        [f"{i}:{row['id']}" for i, row in enumerate(rows)],
        [index[row["predicted_label"]] for row in rows],
        [index[row["true_label"]] for row in rows],
    )
    summary = pooled.summarize()
    return {
        **_test_metrics(summary),
        "labels": labels,
        "confusion_matrix": summary["confusion_matrix"],
        **figures,
    }


def summarize_runs(runs, picture=None, title=""):
    """Sums up the runs of one experiment over folds and seeds.

    Arguments
    ---------
    runs : dict
        ``(seed, fold)`` -> run folder; ``seed`` is ``None`` for a single
        seed's runs.
    picture : str, optional
        Where to draw the pooled confusion matrix (PNG).
    title : str
        Title of the picture.

    Returns
    -------
    dict
        ``folds`` (per-fold figures, averaged over seeds), ``runs`` (per
        seed and fold), ``missing``, ``mean``/``std`` over folds,
        ``seeds`` with ``mean``/``std`` over the per-seed means (when
        several seeds ran), ``pooled`` figures of all test predictions
        together (WA, UA and F1 of runs with classes; ``CCC`` and
        ``CCC_<dimension>`` of runs with dimensions), ``system`` (from
        the first run's ``run_info.json``)
        and, for runs tested on several corpora (``per_corpus`` in their
        metrics), the same figures of each test corpus in ``per_corpus``.
    """
    done, missing, rows, labels, system = {}, [], [], None, {}
    dimensions = ()
    by_corpus, by_group = {}, {}
    for (seed, fold), folder in sorted(
        runs.items(), key=lambda item: (str(item[0][0]), item[0][1])
    ):
        run = read_run(folder)
        if run is None:
            missing.append([seed, fold])
            continue
        done[(seed, fold)] = run_figures(run["metrics"])
        for corpus, figures in run["metrics"].get("per_corpus", {}).items():
            by_corpus.setdefault(corpus, {})[(seed, fold)] = run_figures(
                figures
            )
        for field in BREAKDOWN_FIELDS:
            for value, figures in (
                run["metrics"].get(f"per_{field}") or {}
            ).items():
                if "UA" in figures:  # a dimensional run's have no UA
                    by_group.setdefault(field, {}).setdefault(value, []).append(
                        figures["UA"]
                    )
        labels = run["metrics"].get("labels")
        dimensions = run["metrics"].get("dimensions") or ()
        rows.extend(run["rows"])
        system = system or run["info"]
    result = {
        "system": {
            k: system.get(k)
            for k in ("streams", "stream_kinds", "fusion", "ssl_source")
        },
        "runs": [
            {"seed": seed, "fold": fold, **figures}
            for (seed, fold), figures in done.items()
        ],
        "missing": missing,
        **_aggregate(done),
    }
    if not done:
        return result
    result["pooled"] = _pooled(rows, labels, dimensions)
    if by_group:
        result.update(_group_summary(by_group))
    if by_corpus:
        result["per_corpus"] = {
            corpus: {
                **_aggregate(corpus_done),
                "pooled": _pooled(
                    [row for row in rows if row.get("corpus") == corpus],
                    labels,
                    dimensions,
                ),
            }
            for corpus, corpus_done in sorted(by_corpus.items())
        }
    if picture is not None and labels:
        plot_confusion_matrix(
            result["pooled"]["confusion_matrix"], labels, picture, title=title
        )
        result["confusion_matrix_png"] = picture
    return result


def _group_summary(by_group):
    """UA of each speaker, gender, ... averaged over the runs testing it.

    Example
    -------
    >>> parts = _group_summary({"speaker": {"a": [0.5, 0.7], "b": [0.9]}})
    >>> parts["breakdowns"]["per_speaker"]["a"]
    {'UA': 0.6, 'runs': 2}
    >>> parts["worst_speaker"]
    {'speaker': 'a', 'UA': 0.6}
    """
    result = {
        "breakdowns": {
            f"per_{field}": {
                value: {"UA": statistics.fmean(uas), "runs": len(uas)}
                for value, uas in sorted(values.items())
            }
            for field, values in by_group.items()
        }
    }
    speakers = result["breakdowns"].get("per_speaker")
    if speakers:
        worst = min(speakers, key=lambda s: (speakers[s]["UA"], s))
        result["worst_speaker"] = {
            "speaker": worst,
            "UA": speakers[worst]["UA"],
        }
    return result


def merge_summaries(paths):
    """One summary from several ``cv_summary.json`` files.

    Experiments are named ``<folder of the summary>/<experiment>``, so that
    runs of the same hparams file with other SSL models or encoders (each
    in its own ``--output_root``) stay apart.
    """
    experiments = {}
    for path in paths:
        with open(path, encoding="utf-8") as source:
            summary = json.load(source)
        root = os.path.basename(os.path.dirname(os.path.abspath(path)))
        for stem, result in summary["experiments"].items():
            experiments[f"{root}/{stem}"] = result
    return {"experiments": experiments}


def _figure(part, key):
    """``part["mean"][key] ± part["std"][key]`` in %, ``± n/a`` for a
    spread over a single value (``std`` None).

    Example
    -------
    >>> _figure({"mean": {"UA": 0.5}, "std": {"UA": 0.02}}, "UA")
    '50.0 ± 2.0'
    >>> _figure({"mean": {"UA": 0.5}, "std": {"UA": None}}, "UA")
    '50.0 ± n/a'
    """
    std = part["std"].get(key)
    spread = "n/a" if std is None else f"{100 * std:.1f}"
    return f"{100 * part['mean'][key]:.1f} ± {spread}"


def results_table(summary, marks=None, legend=""):
    """The paper-style Markdown table of a cross-validation summary.

    Arguments
    ---------
    summary : dict
        A ``cv_summary.json`` (or :func:`merge_summaries`' merge).
    marks : dict, optional
        Experiment -> metric -> ``"best"`` (written in bold) or ``"same"``
        (not significantly different from the best: marked ``≈``); see
        :func:`sercaf_toolkit.evaluation.compare.table_marks`.
    legend : str
        What the marks mean, under the table.

    Example
    -------
    >>> print(results_table({"experiments": {"caf": {"folds": {},
    ...     "missing": [[None, 1]]}}}).splitlines()[-1])
    | caf | - | - | - | - | - | - | - | - | - | - | 0/1 |

    Experiments with dimensions add CCC columns (and "-" in the class
    columns of a dimensional one):

    >>> part = {"mean": {"CCC": 0.5, "CCC_arousal": 0.6},
    ...         "std": {"CCC": 0.1, "CCC_arousal": None},
    ...         "pooled": {"CCC": 0.45}, "folds": {"1": {}}, "missing": []}
    >>> print(results_table({"experiments": {"dim": part}}).splitlines()[-1])
    | dim | - | - | - | - | - | - | - | - | - | - | 0.500 ± 0.100 | \
0.600 ± n/a | 0.450 | 1/1 |
    """
    dimensions = _table_dimensions(summary)
    lines = [
        "# Cross-validation results",
        "",
        "Speaker-independent folds; figures in %: mean ± sample standard "
        "deviation over folds (each fold averaged over seeds; n/a for one "
        "fold), over seeds (the spread of the per-seed means over folds), "
        "and pooled over all test predictions. Worst speaker UA: the "
        "lowest UA of one test speaker (averaged over the seeds), and who. "
        "Runs tested on several "
        "corpora add a row per test corpus (its folds: those that tested "
        "it).",
        "",
        "| experiment | SSL model | scratch encoder | fusion | WA | UA "
        "| worst speaker UA | F1 | UA over seeds | pooled WA | pooled UA "
        + "".join(f"| {title} " for title in _ccc_titles(dimensions))
        + "| folds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
        + "---|" * len(_ccc_titles(dimensions)),
    ]
    if dimensions is not None:
        lines[2] += (
            " CCC: the concordance correlation coefficient (-1 to 1, not "
            "in %) of the dimensions, mean ± standard deviation as for the "
            "others; CCC is the mean over dimensions, pooled CCC that of "
            "all test predictions together."
        )
    for stem, result in summary["experiments"].items():
        lines.append(
            _table_row(
                stem, result, result, (marks or {}).get(stem, {}), dimensions
            )
        )
        # Runs tested on several corpora: one more row per test corpus.
        for corpus, part in (result.get("per_corpus") or {}).items():
            lines.append(
                _table_row(
                    f"{stem}: test {corpus}", result, part, None, dimensions
                )
            )
    if legend:
        lines += ["", legend]
    return "\n".join(lines) + "\n"


def _table_dimensions(summary):
    """The dimensions of a summary's experiments (None: none has CCC)."""
    parts = [
        part
        for result in summary["experiments"].values()
        for part in (result, *(result.get("per_corpus") or {}).values())
    ]
    keys = [k for part in parts for k in (part.get("mean") or {})]
    if "CCC" not in keys:
        return None
    return list(dict.fromkeys(k[4:] for k in keys if k.startswith("CCC_")))


def _ccc_titles(dimensions):
    """The CCC columns' titles; none for a table without dimensions."""
    if dimensions is None:
        return []
    return ["CCC", *(f"CCC {name}" for name in dimensions), "pooled CCC"]


def _coefficient(part, key):
    """``mean ± std`` of a CCC (a coefficient, not in %); "-" if absent.

    Example
    -------
    >>> _coefficient({"mean": {"CCC": 0.5}, "std": {"CCC": 0.02}}, "CCC")
    '0.500 ± 0.020'
    """
    if key not in part.get("mean", {}):
        return "-"
    std = part["std"].get(key)
    spread = "n/a" if std is None else f"{std:.3f}"
    return f"{part['mean'][key]:.3f} ± {spread}"


def _marked(text, mark):
    """A cell in bold (``"best"``) or with ``≈`` (``"same"``)."""
    if text == "-" or mark is None:
        return text
    return f"**{text}**" if mark == "best" else f"{text} ≈"


def breakdown_section(summary):
    """Markdown: each experiment's UA per speaker, gender, ...

    The figures of ``breakdowns`` in a summary (see
    :func:`summarize_runs`): UA on one speaker's (gender's, ...) test
    utterances, averaged over the runs that tested them; "" when no run
    gave any.

    Example
    -------
    >>> part = {"breakdowns": {"per_gender": {"F": {"UA": 0.5, "runs": 2},
    ...                                       "M": {"UA": 0.7, "runs": 2}}}}
    >>> text = breakdown_section({"experiments": {"caf": part}})
    >>> for line in text.splitlines()[5:]:
    ...     print(line)
    | experiment | gender | UA | runs |
    |---|---|---|---|
    | caf | F | 50.0 | 2 |
    | caf | M | 70.0 | 2 |
    """
    tables = {}
    for stem, result in summary["experiments"].items():
        for key, values in (result.get("breakdowns") or {}).items():
            rows = tables.setdefault(key, [])
            for value, figures in values.items():
                rows.append(
                    f"| {stem} | {value} | {100 * figures['UA']:.1f} "
                    f"| {figures['runs']} |"
                )
    if not tables:
        return ""
    lines = [
        "",
        "## Breakdowns",
        "",
        "UA in % of the test utterances of each group, averaged over the "
        "runs (folds and seeds) that tested it.",
    ]
    for field in BREAKDOWN_FIELDS:
        rows = tables.get(f"per_{field}")
        if rows:
            lines += [
                "",
                f"| experiment | {field} | UA | runs |",
                "|---|---|---|---|",
                *rows,
            ]
    return "\n".join(lines) + "\n"


# The encoders a run_info.json written before streams named their kind
# ("stream_kinds") used for its scratch streams.
SCRATCH_ENCODERS = ("DPCNN", "TextRCNN")


def _table_row(name, result, part, marks=None, dimensions=None):
    """One row of :func:`results_table`: ``part``'s figures (the whole
    experiment's, or one test corpus's), ``result``'s system, the
    ``marks`` of its cells (metric -> ``"best"`` or ``"same"``) and, with
    ``dimensions``, its CCC cells."""
    marks = marks or {}

    def cell(key):
        if key not in part["mean"]:  # a dimensional run: no classes
            return "-"
        text = _figure(part, key)
        mark = marks.get(key)
        return (
            f"**{text}**"
            if mark == "best"
            else (f"{text} ≈" if mark == "same" else text)
        )

    system = result.get("system") or {}
    streams = system.get("streams") or []
    kinds = system.get("stream_kinds") or [
        # Runs recorded before streams named their kind: a scratch stream
        # was named by its encoder (EGeMAPSDescriptors/DPCNN, DPCNN).
        "scratch" if s.split("/")[-1] in SCRATCH_ENCODERS else "pretrained"
        for s in streams
    ]
    scratch = [s for s, k in zip(streams, kinds) if k != "pretrained"]
    ssl = ", ".join(s for s, k in zip(streams, kinds) if k == "pretrained")
    source = system.get("ssl_source")
    if source:
        ssl = f"{ssl} ({source})"
    scratch = ", ".join(scratch)
    n_ccc = len(_ccc_titles(dimensions))
    if "mean" not in part:
        cells = ["-"] * (7 + n_ccc)
    else:
        seeds = part.get("seeds")
        worst = part.get("worst_speaker")
        cells = (
            [cell(k) for k in ("WA", "UA")]
            + [
                f"{100 * worst['UA']:.1f} ({worst['speaker']})"
                if worst
                else "-"
            ]
            + [cell("F1")]
            + [
                f"{_figure(seeds, 'UA')} ({len(seeds['per_seed'])} seeds)"
                if seeds and "UA" in part["mean"]
                else ("1 seed" if "UA" in part["mean"] else "-")
            ]
            + [
                f"{100 * part['pooled'][k]:.1f}" if k in part["pooled"] else "-"
                for k in ("WA", "UA")
            ]
        )
        if dimensions is not None:
            pooled = part["pooled"].get("CCC")
            cells += (
                [_marked(_coefficient(part, "CCC"), marks.get("CCC"))]
                + [_coefficient(part, f"CCC_{n}") for n in dimensions]
                + ["-" if pooled is None else f"{pooled:.3f}"]
            )
    n_done = len(part["folds"])
    if part is result:
        missing = {f for _, f in result["missing"]}
        n_all = n_done + len(missing - {int(f) for f in result["folds"]})
        folds = f"{n_done}/{n_all}"
    else:  # the folds that tested this corpus
        folds = str(n_done)
    return (
        f"| {name} | {ssl or '-'} | {scratch or '-'} | "
        f"{system.get('fusion') or '-'} | "
        + " | ".join(cells)
        + f" | {folds} |"
    )


def _test_metrics(summary):
    """The figures of a metrics summary that ``test_metrics.json`` holds."""
    return {
        "WA": summary["WA"],
        "UA": summary["UA"],
        "F1": summary["macro_F1"],
        # The labels the averages are over: classes absent from the test
        # set (or, for F1, also never predicted) are left out of them.
        "UA_classes": summary["UA_classes"],
        "F1_classes": summary["F1_classes"],
        "weighted_F1": summary["weighted_F1"],
        "per_class_recall": summary["per_class_recall"],
        "per_class_F1": summary["per_class_F1"],
        "support": summary["support"],
    }


# Manifest fields a test is broken down by, where the corpus gives them:
# who spoke (speaker-independent figures hide a speaker the model fails),
# their gender, and for IEMOCAP improvised or scripted speech.
BREAKDOWN_FIELDS = ("speaker", "gender", "elicitation")


def breakdowns(labels, rows, predicted, groups_of):
    """Figures of each speaker, gender, ... among the test rows.

    Arguments
    ---------
    labels : list of str
        Class names in index order.
    rows : list of tuple
        ``(id, target index, probabilities)`` per test utterance.
    predicted : list of int
        The predicted class of each row.
    groups_of : dict
        Utterance id -> ``{field: value}`` for fields of
        :data:`BREAKDOWN_FIELDS`.

    Returns
    -------
    dict
        ``per_<field>`` -> value -> ``{"UA", "WA", "F1", "n"}`` for every
        field some row has, and ``worst_speaker`` (``speaker``, ``UA``:
        the speaker of the lowest UA) when rows name speakers. UA over one
        speaker's rows averages over the classes that speaker has, as
        scikit-learn's ``balanced_accuracy_score`` on those rows does.

    Example
    -------
    >>> rows = [("a", 0, [0.9, 0.1]), ("b", 1, [0.8, 0.2]),
    ...         ("c", 1, [0.1, 0.9])]
    >>> groups = {"a": {"speaker": "s1"}, "b": {"speaker": "s1"},
    ...           "c": {"speaker": "s2"}}
    >>> parts = breakdowns(["x", "y"], rows, [0, 0, 1], groups)
    >>> parts["per_speaker"]["s1"]["UA"], parts["per_speaker"]["s2"]["n"]
    (0.5, 1)
    >>> parts["worst_speaker"]
    {'speaker': 's1', 'UA': 0.5}
    """
    result = {}
    for field in BREAKDOWN_FIELDS:
        members = {}
        for i, row in enumerate(rows):
            value = (groups_of.get(row[0]) or {}).get(field)
            if value not in (None, ""):
                members.setdefault(str(value), []).append(i)
        if not members:
            continue
        part = {}
        for value, chosen in sorted(members.items()):
            metrics = EmotionMetrics(labels)
            metrics.append(
                [rows[i][0] for i in chosen],
                torch.tensor([predicted[i] for i in chosen], dtype=torch.long),
                torch.tensor([rows[i][1] for i in chosen], dtype=torch.long),
            )
            summary = metrics.summarize()
            part[value] = {
                "UA": summary["UA"],
                "WA": summary["WA"],
                "F1": summary["macro_F1"],
                "n": len(chosen),
            }
        result[f"per_{field}"] = part
        if field == "speaker":
            worst = min(part, key=lambda value: (part[value]["UA"], value))
            result["worst_speaker"] = {
                "speaker": worst,
                "UA": part[worst]["UA"],
            }
    return result


def write_test_outputs(
    folder,
    labels,
    rows,
    extra=None,
    corpus_of=None,
    groups_of=None,
    dimensions=None,
):
    """Writes ``test_metrics.json``, ``predictions.csv`` and two PNGs.

    The figures include the calibration of the probabilities (``ECE``,
    ``NLL``: :mod:`sercaf_toolkit.evaluation.calibration`); the pictures
    are the confusion matrix and the reliability diagram.

    What a recipe's test and ``sercaf evaluate`` both write, the same way.

    Arguments
    ---------
    folder : str
        Where to write (created if needed).
    labels : list of str
        Class names in index order.
    rows : list of tuple
        ``(id, target index, probabilities)`` per test utterance; the
        prediction is the most probable class.
    extra : dict, optional
        More entries for ``test_metrics.json`` (after the figures).
    corpus_of : dict, optional
        Utterance id -> corpus name: adds a ``corpus`` column to
        ``predictions.csv`` and the figures of each corpus under
        ``per_corpus`` in ``test_metrics.json``.
    groups_of : dict, optional
        Utterance id -> ``{field: value}`` for the fields of
        :data:`BREAKDOWN_FIELDS` the corpus gives: adds those columns to
        ``predictions.csv`` and their figures to ``test_metrics.json`` (see
        :func:`breakdowns`).
    dimensions : dict, optional
        A dimensional or joint model's ``names`` (the dimensions),
        ``rows`` (``(id, true values, predicted values)`` on the corpus's
        scale) and optional ``scale``: adds ``<name>_true`` and
        ``<name>_pred`` columns and the figures of
        :func:`~sercaf_toolkit.evaluation.metrics.dimension_figures`
        (``CCC``, ``CCC_<name>``, ``per_dimension``: CCC, Pearson, MAE),
        and, by speaker and gender, each group's CCCs. With no ``labels``
        (``task: dimensional``) only these are written: no class figures,
        confusion matrix or reliability diagram.

    Returns
    -------
    dict
        Name -> path of every file written.

    Example
    -------
    >>> import tempfile
    >>> rows = [("a", 0, [0.9, 0.1]), ("b", 1, [0.8, 0.2])]
    >>> paths = write_test_outputs(tempfile.mkdtemp(), ["x", "y"], rows)
    >>> metrics = json.load(open(paths["metrics"]))
    >>> metrics["WA"], metrics["UA"], metrics["confusion_matrix"]
    (0.5, 0.5, [[1, 0], [1, 0]])
    >>> rows = [("a", 0, [0.9, 0.1, 0.0]), ("b", 1, [0.8, 0.2, 0.0])]
    >>> paths = write_test_outputs(tempfile.mkdtemp(), ["x", "y", "z"], rows)
    >>> metrics = json.load(open(paths["metrics"]))  # no "z" to test on
    >>> metrics["per_class_recall"], metrics["F1_classes"]
    ({'x': 1.0, 'y': 0.0, 'z': None}, ['x', 'y'])
    >>> values = {"names": ["arousal"], "rows": [
    ...     ("a", [1.0], [1.5]), ("b", [3.0], [2.5]), ("c", [5.0], [4.0])]}
    >>> paths = write_test_outputs(tempfile.mkdtemp(), [], [],
    ...                            dimensions=values)
    >>> metrics = json.load(open(paths["metrics"]))
    >>> round(metrics["CCC_arousal"], 4), sorted(paths)
    (0.8696, ['metrics', 'predictions'])
    """
    if not labels:
        return _write_dimensional_outputs(
            folder, dimensions, extra, corpus_of, groups_of
        )
    os.makedirs(folder, exist_ok=True)
    paths = {
        "metrics": os.path.join(folder, "test_metrics.json"),
        "predictions": os.path.join(folder, "predictions.csv"),
        "confusion matrix": os.path.join(folder, "confusion_matrix.png"),
        "reliability diagram": os.path.join(folder, "reliability_diagram.png"),
    }
    rows = sorted(rows)
    predicted = [max(range(len(p)), key=p.__getitem__) for _, _, p in rows]

    def summarize(corpus=None):
        metrics = EmotionMetrics(labels)
        chosen = [
            i
            for i, row in enumerate(rows)
            if corpus is None or corpus_of.get(row[0]) == corpus
        ]
        metrics.append(
            [rows[i][0] for i in chosen],
            torch.tensor([predicted[i] for i in chosen], dtype=torch.long),
            torch.tensor([rows[i][1] for i in chosen], dtype=torch.long),
        )
        return metrics.summarize()

    summary = summarize()
    metrics = {
        **_test_metrics(summary),
        **calibration.calibration_figures(rows),  # ECE, NLL
        "labels": list(labels),
        "confusion_matrix": summary["confusion_matrix"],
    }
    if corpus_of:
        metrics["per_corpus"] = {}
        for corpus in sorted(set(corpus_of.values())):
            part = summarize(corpus)
            metrics["per_corpus"][corpus] = {
                **_test_metrics(part),
                "confusion_matrix": part["confusion_matrix"],
            }
    groups_of = groups_of or {}
    metrics.update(breakdowns(labels, rows, predicted, groups_of))
    group_fields = [
        field
        for field in BREAKDOWN_FIELDS
        if any((groups_of.get(row[0]) or {}).get(field) for row in rows)
    ]
    values_of = {}
    if dimensions:
        metrics.update(_dimension_metrics(dimensions, groups_of))
        values_of = {row[0]: row for row in dimensions["rows"]}
    metrics.update(extra or {})
    with open(paths["metrics"], "w", encoding="utf-8") as out:
        json.dump(metrics, out, indent=2)
    plot_confusion_matrix(
        summary["confusion_matrix"],
        labels,
        paths["confusion matrix"],
        title=f"test, UA {summary['UA']:.3f}",
    )
    plot_reliability_diagram(
        calibration.reliability_bins(*calibration.rows_arrays(rows)),
        paths["reliability diagram"],
    )
    with open(paths["predictions"], "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["id", "true_label", "predicted_label"]
            + [f"prob_{label}" for label in labels]
            + (["corpus"] if corpus_of else [])
            + group_fields
            + _dimension_columns(dimensions)
        )
        for (utt_id, target, probs), best in zip(rows, predicted):
            groups = groups_of.get(utt_id) or {}
            writer.writerow(
                [utt_id, labels[target], labels[best]]
                + [f"{p:.6f}" for p in probs]
                + ([corpus_of.get(utt_id, "")] if corpus_of else [])
                + [groups.get(field, "") for field in group_fields]
                + _dimension_cells(values_of.get(utt_id), dimensions)
            )
    return paths


def _dimension_columns(dimensions):
    """``arousal_true, arousal_pred, valence_true, ...`` (or none)."""
    if not dimensions:
        return []
    return [
        f"{name}_{kind}"
        for name in dimensions["names"]
        for kind in ("true", "pred")
    ]


def _dimension_cells(row, dimensions):
    """One utterance's true and predicted values, as the columns say.

    Written with 6 decimals: the figures are computed from the values the
    file holds, so a reader's CCC of the columns is the one reported.
    """
    if not dimensions:
        return []
    _, true, predicted = row
    return [f"{value:.6f}" for pair in zip(true, predicted) for value in pair]


def _rounded(dimensions):
    """The rows' values as ``predictions.csv`` holds them (6 decimals)."""
    return [
        (utt_id, [round(v, 6) for v in true], [round(v, 6) for v in pred])
        for utt_id, true, pred in dimensions["rows"]
    ]


def _dimension_metrics(dimensions, groups_of):
    """The dimensional figures of ``test_metrics.json`` (see above)."""
    names = list(dimensions["names"])
    rows = sorted(_rounded(dimensions))
    figures = dimension_figures(
        names, [r[1] for r in rows], [r[2] for r in rows]
    )
    result = {"dimensions": names, **figures}
    if dimensions.get("scale") is not None:
        result["dimension_scale"] = [float(v) for v in dimensions["scale"]]
    for field in ("speaker", "gender"):
        members = {}
        for row in rows:
            value = (groups_of.get(row[0]) or {}).get(field)
            if value not in (None, ""):
                members.setdefault(str(value), []).append(row)
        if members:
            result[f"dimensions_per_{field}"] = {
                value: {
                    key: figure
                    for key, figure in dimension_figures(
                        names, [r[1] for r in part], [r[2] for r in part]
                    ).items()
                    if key != "per_dimension"
                }
                | {"n": len(part)}
                for value, part in sorted(members.items())
            }
    return result


def _write_dimensional_outputs(folder, dimensions, extra, corpus_of, groups_of):
    """``test_metrics.json`` and ``predictions.csv`` of dimensions alone."""
    os.makedirs(folder, exist_ok=True)
    paths = {
        "metrics": os.path.join(folder, "test_metrics.json"),
        "predictions": os.path.join(folder, "predictions.csv"),
    }
    groups_of = groups_of or {}
    rows = sorted(dimensions["rows"])
    metrics = _dimension_metrics(dimensions, groups_of)
    metrics.update(extra or {})
    with open(paths["metrics"], "w", encoding="utf-8") as out:
        json.dump(metrics, out, indent=2)
    group_fields = [
        field
        for field in BREAKDOWN_FIELDS
        if any((groups_of.get(row[0]) or {}).get(field) for row in rows)
    ]
    with open(paths["predictions"], "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["id"]
            + (["corpus"] if corpus_of else [])
            + group_fields
            + _dimension_columns(dimensions)
        )
        for row in rows:
            groups = groups_of.get(row[0]) or {}
            writer.writerow(
                [row[0]]
                + ([corpus_of.get(row[0], "")] if corpus_of else [])
                + [groups.get(field, "") for field in group_fields]
                + _dimension_cells(row, dimensions)
            )
    return paths


def write_run_outputs(folder, brain, test_csv):
    """A run's test files (see :func:`write_test_outputs`) and curves.

    Arguments
    ---------
    folder : str
        The run's output folder.
    brain : SERBrain
        After ``evaluate``: its ``test_rows``, ``label_names``,
        ``selection_key`` and ``test_selected_epoch``.
    test_csv : str
        The test manifest: with a ``corpus`` column (several corpora),
        the metrics are given per corpus too.
    """
    manifest = read_manifest(test_csv)
    corpus_of = {
        row["ID"]: row["corpus"] for row in manifest if row.get("corpus")
    }
    groups_of = {
        row["ID"]: {f: row[f] for f in BREAKDOWN_FIELDS if row.get(f)}
        for row in manifest
    }
    dimensions = None
    if getattr(brain, "dimension_names", None):
        regressor = brain._model().regressor
        dimensions = {
            "names": brain.dimension_names,
            "rows": brain.test_dimension_rows,
            "scale": [float(regressor.low), float(regressor.high)],
        }
    paths = write_test_outputs(
        folder,
        brain.label_names if getattr(brain, "has_classifier", True) else [],
        brain.test_rows,
        dimensions=dimensions,
        extra={
            "selected_on": getattr(
                brain, "selected_on", f"best valid {brain.selection_key}"
            ),
            "selected_epoch": brain.test_selected_epoch,
            **_averaging_block(brain),
            **calibration.block_of(brain),
        },
        corpus_of=corpus_of,
        groups_of=groups_of,
    )
    history = os.path.join(folder, "history.json")
    if os.path.exists(history):
        paths["training curves"] = os.path.join(folder, "training_curves.png")
        plot_training_curves(
            history,
            paths["training curves"],
            selected_epoch=brain.test_selected_epoch,
        )
    return paths


def _averaging_block(brain):
    """``averaged_epochs`` and ``averaged_checkpoints`` of an averaged
    model's test (``average_checkpoints`` > 1), or ``{}``.

    Example
    -------
    >>> class Averaged:
    ...     averaging = {"epochs": [2, 3], "asked": 3, "average_from": "last",
    ...                  "chosen_by": "the last 2 epochs"}
    >>> _averaging_block(Averaged())["averaged_epochs"]
    [2, 3]
    >>> _averaging_block(object())
    {}
    """
    block = getattr(brain, "averaging", None)
    if not block:
        return {}
    return {
        "averaged_epochs": list(block["epochs"]),
        "averaged_checkpoints": dict(block),
    }
