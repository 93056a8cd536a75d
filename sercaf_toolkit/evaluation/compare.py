"""Paired comparisons of cross-validated experiments: is a difference real?

A table of means ± std cannot say whether one fusion block beats another
by 1-2 points when one fold's UA moves by 10 between folds. Experiments
that ran on the same folds, seeds and test files are *paired*: each
(fold, seed) run of one has a twin in the other, tested on the same
utterances. :func:`compare_experiments` gives, for WA, UA and macro F1,
the difference of each experiment against the first with a 95 %
confidence interval and a p-value, by two methods:

* **over fold x seed pairs**: the paired differences of the runs' figures;
  a sign-flip permutation test (exact, enumerating every sign pattern, up
  to :data:`EXACT_LIMIT` pairs; else random flips) and the t interval.
  It sees how much training varies (seeds) and how much folds differ.
* **over test speakers**: a paired bootstrap that resamples each fold's
  test *speakers* (all of a speaker's utterances together: they are
  correlated, and resampling utterances would understate the spread),
  the same draw for both experiments, recomputes every run's figures and
  their mean difference. Percentile interval; the p-value is twice the
  smaller share of draws on either side of 0. It holds the trained models
  fixed: it asks whether *these* models differ on other speakers like the
  test ones, not whether the recipes do across seeds.

With more than two experiments, each method's p-values of one metric are
Holm-corrected over the comparisons against the first.

Dimensional and joint runs add (or, dimensional, have only) ``CCC``: the
mean over dimensions of each run's concordance correlation coefficient,
recomputed from ``predictions.csv``. Both methods apply: the pairs'
differences, and the speaker bootstrap, which recomputes every run's
CCCs on each draw's resampled test set (a speaker drawn twice counts
twice). Experiments compare on the metrics they all have.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import itertools
import json
import math
import os

import numpy as np

from sercaf_toolkit.errors import UserError

METRICS = ("WA", "UA", "F1")
# Of runs with dimensions: the mean over dimensions of their CCCs.
CCC = "CCC"
SUMMARY = "cv_summary.json"
# Up to this many pairs the sign-flip test enumerates all 2^n patterns.
EXACT_LIMIT = 16
ALPHA = 0.05
# Below this many test speakers in a fold the bootstrap's result is noted
# as fragile.
FEW_SPEAKERS = 5


def metrics_from_confusions(confusions):
    """WA, UA and macro F1 of confusion matrices, as ``EmotionMetrics``.

    UA averages recall over the classes with test utterances, macro F1
    over those with test utterances or predictions (scikit-learn's
    ``balanced_accuracy_score`` and ``f1_score(average="macro")``).

    Arguments
    ---------
    confusions : numpy.ndarray
        ``[..., C, C]`` counts (rows: true class, columns: predicted).

    Returns
    -------
    dict
        ``WA``, ``UA``, ``F1``: arrays of the leading shape.

    Example
    -------
    >>> figures = metrics_from_confusions(np.array([[2, 0], [1, 1]]))
    >>> float(figures["WA"]), float(figures["UA"]), round(float(
    ...     figures["F1"]), 4)
    (0.75, 0.75, 0.7333)
    """
    confusions = np.asarray(confusions, dtype=float)
    true_positives = np.diagonal(confusions, axis1=-2, axis2=-1)
    support = confusions.sum(axis=-1)
    predicted = confusions.sum(axis=-2)
    total = support.sum(axis=-1)
    present = support > 0
    seen = present | (predicted > 0)
    recall = true_positives / np.maximum(support, 1)
    f1 = 2 * true_positives / np.maximum(support + predicted, 1)

    def mean_over(values, keep):
        count = keep.sum(axis=-1)
        return np.where(
            count > 0, (values * keep).sum(axis=-1) / np.maximum(count, 1), 0
        )

    return {
        "WA": np.where(
            total > 0, true_positives.sum(axis=-1) / np.maximum(total, 1), 0
        ),
        "UA": mean_over(recall, present),
        "F1": mean_over(f1, seen),
    }


def sign_flip_test(differences, permutations=100_000, seed=0):
    """Two-sided paired sign-flip permutation test of a mean difference.

    Under the null hypothesis each pair's difference is as likely to have
    either sign. Exact (all ``2^n`` sign patterns) up to
    :data:`EXACT_LIMIT` pairs, else ``permutations`` random patterns
    (with the observed one counted, so p is never 0).

    Arguments
    ---------
    differences : list of float
        One difference per pair.
    permutations : int
        Random patterns when there are too many pairs to enumerate.
    seed : int
        Seed of the random patterns.

    Returns
    -------
    tuple
        ``(p, exact)``.

    Example
    -------
    >>> sign_flip_test([0.1, 0.2, 0.3])  # 2 of the 8 patterns as extreme
    (0.25, True)
    >>> sign_flip_test([0.0, 0.0])
    (1.0, True)
    """
    d = np.asarray(differences, dtype=float)
    observed = abs(d.mean())
    # Sums that equal the observed one up to rounding count as as extreme.
    tolerance = 1e-12 * max(1.0, np.abs(d).sum())
    n = len(d)
    if n <= EXACT_LIMIT:
        signs = np.array(list(itertools.product((1, -1), repeat=n)))
        means = np.abs(signs @ d) / n
        return float((means >= observed - tolerance).mean()), True
    rng = np.random.default_rng(seed)
    signs = rng.choice((1, -1), size=(permutations, n))
    extreme = int((np.abs(signs @ d) / n >= observed - tolerance).sum())
    return (extreme + 1) / (permutations + 1), False


def t_interval(differences, level=0.95):
    """The t confidence interval of a mean difference; ``None`` below 2.

    Example
    -------
    >>> low, high = t_interval([0.1, 0.2, 0.3])
    >>> round(low, 4), round(high, 4)
    (-0.0484, 0.4484)
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None  # one pair shows no spread
    mean = float(d.mean())
    half = float(
        stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1)
    ) / math.sqrt(len(d))
    return mean - half, mean + half


def holm(p_values):
    """Holm's step-down adjustment of p-values (same order back).

    Example
    -------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = round(min(1.0, running), 12)
    return adjusted


class RunPredictions:
    """One run's test predictions, as its ``predictions.csv`` holds them.

    Arguments
    ---------
    folder : str
        The run's folder (``predictions.csv``, ``test_metrics.json``;
        ``test.csv`` names the speakers of runs whose predictions do not).
    """

    def __init__(self, folder):
        self.folder = folder
        with open(
            os.path.join(folder, "test_metrics.json"), encoding="utf-8"
        ) as source:
            metrics = json.load(source)
        # A dimensional run has no labels; a categorical one no dimensions.
        self.labels = list(metrics.get("labels") or [])
        self.dimensions = list(metrics.get("dimensions") or [])
        with open(
            os.path.join(folder, "predictions.csv"),
            newline="",
            encoding="utf-8",
        ) as source:
            rows = sorted(csv.DictReader(source), key=lambda r: r["id"])
        index = {label: i for i, label in enumerate(self.labels)}
        self.ids = [row["id"] for row in rows]
        self.true = np.array(
            [index[r["true_label"]] for r in rows] if self.labels else [], int
        )
        self.predicted = np.array(
            [index[r["predicted_label"]] for r in rows] if self.labels else [],
            int,
        )
        # [utterances, dimensions] true and predicted values.
        self.values_true, self.values_pred = (
            np.array(
                [
                    [float(r[f"{n}_{kind}"]) for n in self.dimensions]
                    for r in rows
                ],
                float,
            ).reshape(len(rows), len(self.dimensions))
            for kind in ("true", "pred")
        )
        speakers = [row.get("speaker") for row in rows]
        if not all(speakers):
            speakers = self._manifest_speakers()
        self.speakers = speakers
        info_file = os.path.join(folder, "run_info.json")
        self.info = {}
        if os.path.exists(info_file):
            with open(info_file, encoding="utf-8") as source:
                self.info = json.load(source)

    def _manifest_speakers(self):
        manifest = os.path.join(self.folder, "test.csv")
        if not os.path.exists(manifest):
            return None
        with open(manifest, newline="", encoding="utf-8") as source:
            speaker_of = {
                r["ID"]: r.get("speaker") for r in csv.DictReader(source)
            }
        speakers = [speaker_of.get(utt_id) for utt_id in self.ids]
        return speakers if all(speakers) else None

    def confusion(self, keep=None):
        """The confusion matrix of the rows in ``keep`` (default: all)."""
        n = len(self.labels)
        true, predicted = self.true, self.predicted
        if keep is not None:
            true, predicted = true[keep], predicted[keep]
        return np.bincount(true * n + predicted, minlength=n * n).reshape(n, n)

    def metrics(self):
        """The figures the run gives: WA, UA, F1 (classes), CCC (values)."""
        return (METRICS if self.labels else ()) + (
            (CCC,) if self.dimensions else ()
        )

    def figures(self):
        """WA, UA and macro F1 (and the mean CCC) of the run, as floats."""
        figures = {}
        if self.labels:
            figures = {
                k: float(v)
                for k, v in metrics_from_confusions(self.confusion()).items()
            }
        if self.dimensions:
            weights = np.ones((1, len(self.ids)))
            figures[CCC] = float(self.ccc(weights)[0])
        return figures

    def ccc(self, weights):
        """Mean CCC over dimensions of the rows weighted by ``weights``.

        Arguments
        ---------
        weights : numpy.ndarray
            ``[draws, utterances]`` counts (how often each utterance is in
            a draw's test set).

        Returns
        -------
        numpy.ndarray
            ``[draws]`` mean CCCs (population moments, as
            :func:`~sercaf_toolkit.evaluation.metrics.concordance`).
        """
        total = weights.sum(axis=1, keepdims=True)

        def mean(values):
            return (weights @ values) / total

        y, p = self.values_true, self.values_pred
        mean_y, mean_p = mean(y), mean(p)
        var_y = mean(y**2) - mean_y**2
        var_p = mean(p**2) - mean_p**2
        cov = mean(y * p) - mean_y * mean_p
        ccc = 2 * cov / (var_y + var_p + (mean_y - mean_p) ** 2)
        return ccc.mean(axis=1)


class Experiment:
    """The finished runs of one experiment of a ``sercaf cv`` output root.

    Arguments
    ---------
    name : str
        How the comparison names it.
    root : str
        The output root (holding ``cv_summary.json``).
    stem : str
        The experiment (hparams file stem).
    result : dict
        Its entry in ``cv_summary.json``.
    """

    def __init__(self, name, root, stem, result):
        self.name = name
        self.root = root
        if result.get("missing"):
            seed, fold = result["missing"][0]
            raise UserError(
                f"{name}: fold {fold}"
                + (f" seed {seed}" if seed is not None else "")
                + " has not finished; run its sercaf cv command again to "
                "finish it before comparing"
            )
        self.runs = {}
        for run in result.get("runs", []):
            seed, fold = run.get("seed"), int(run["fold"])
            parts = [root, stem]
            if seed is not None:
                parts.append(f"seed_{seed}")
            folder = os.path.join(*parts, f"fold_{fold}")
            if not os.path.exists(os.path.join(folder, "predictions.csv")):
                raise UserError(
                    f"{name}: no predictions.csv in {folder}; give the "
                    "folder sercaf cv wrote, with its runs"
                )
            self.runs[(seed, fold)] = RunPredictions(folder)
        if not self.runs:
            raise UserError(f"{name}: no finished run to compare")

    def pairs(self):
        """``(seed, fold)`` of every run, in order."""
        return sorted(self.runs, key=lambda key: (key[1], str(key[0])))


def load_experiments(paths):
    """The experiments named by cv folders, summaries or experiment folders.

    Arguments
    ---------
    paths : list of str
        Each a ``sercaf cv`` output root or its ``cv_summary.json`` (all
        of its experiments, in the summary's order), or one experiment's
        folder inside a root (``<root>/<experiment>``).

    Returns
    -------
    list of Experiment
        Named ``<root folder name>/<experiment>``.
    """
    chosen = []
    for path in paths:
        path = os.path.normpath(path)
        stem = None
        if os.path.isfile(path):
            summary_file = path
        elif os.path.isfile(os.path.join(path, SUMMARY)):
            summary_file = os.path.join(path, SUMMARY)
        elif os.path.isfile(os.path.join(os.path.dirname(path), SUMMARY)):
            summary_file = os.path.join(os.path.dirname(path), SUMMARY)
            stem = os.path.basename(path)
        else:
            raise UserError(
                f"{path}: neither a sercaf cv folder nor its {SUMMARY}; give "
                "what sercaf cv wrote (e.g. results/cv/Demo)"
            )
        try:
            with open(summary_file, encoding="utf-8") as source:
                summary = json.load(source)
            experiments = summary["experiments"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(
                f"{summary_file} is not a sercaf cv summary; give the "
                f"{SUMMARY} sercaf cv wrote"
            ) from None
        root = os.path.dirname(os.path.abspath(summary_file))
        if stem is not None and stem not in experiments:
            raise UserError(
                f"{path}: no experiment {stem!r} in {summary_file} (it has "
                f"{', '.join(experiments)})"
            )
        for name in [stem] if stem else list(experiments):
            chosen.append((root, name, experiments[name]))
    names = [f"{os.path.basename(root)}/{stem}" for root, stem, _ in chosen]
    if len(set(names)) < len(names):  # same folder names: longer names
        names = [f"{os.path.relpath(root)}/{stem}" for root, stem, _ in chosen]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UserError(f"{twice} is given twice; give each experiment once")
    return [
        Experiment(name, root, stem, result)
        for name, (root, stem, result) in zip(names, chosen)
    ]


def shared_metrics(experiments):
    """The metrics every run of every experiment gives, in order.

    Raises
    ------
    UserError
        When there is none (a categorical against a dimensional run).
    """
    runs = [run for e in experiments for run in e.runs.values()]
    shared = [k for k in (*METRICS, CCC) if all(k in r.metrics() for r in runs)]
    if not shared:
        raise UserError(
            f"{', '.join(e.name for e in experiments)}: no figure in common "
            "(some runs have classes only, others dimensions only); "
            "compare runs of the same task"
        )
    return shared


def pairing_difference(first, other):
    """The first reason two experiments' runs do not pair, or ``None``."""
    a, b = first.runs, other.runs
    for key in first.pairs():
        if key not in b:
            return f"{_run_name(key)} is in {first.name} but not {other.name}"
    for key in other.pairs():
        if key not in a:
            return f"{_run_name(key)} is in {other.name} but not {first.name}"
    for key in first.pairs():
        if a[key].labels != b[key].labels:
            return (
                f"their labels differ ({', '.join(a[key].labels)} against "
                f"{', '.join(b[key].labels)})"
            )
        corpora = [
            run.info.get("identity", {}).get("corpus_name")
            for run in (a[key], b[key])
        ]
        if all(corpora) and corpora[0] != corpora[1]:
            return f"their corpora differ ({corpora[0]} against {corpora[1]})"
        if a[key].ids != b[key].ids:
            only = sorted(set(a[key].ids) ^ set(b[key].ids))
            detail = f" ({only[0]} is in one only)" if only else ""
            return f"{_run_name(key)} tested other files{detail}"
        if not np.array_equal(a[key].true, b[key].true):
            return f"{_run_name(key)} gives other true labels to its files"
        dimensions = a[key].dimensions, b[key].dimensions
        if not all(dimensions):
            # A categorical run against one with dimensions: they compare
            # on their classes (shared_metrics), if both have some.
            continue
        if dimensions[0] != dimensions[1]:
            return (
                f"their dimensions differ ({', '.join(dimensions[0])} "
                f"against {', '.join(dimensions[1])})"
            )
        if not np.allclose(a[key].values_true, b[key].values_true):
            return f"{_run_name(key)} gives other true values to its files"
    return None


def _run_name(key):
    seed, fold = key
    return f"fold {fold}" + (f" seed {seed}" if seed is not None else "")


def _speaker_draws(reference, n_draws, seed):
    """Per fold: its test speakers and ``[n_draws, speakers]`` counts.

    One draw resamples a fold's test speakers with replacement; every
    experiment and seed of the fold uses the same draws (paired).
    """
    rng = np.random.default_rng(seed)
    draws = {}
    for seed_, fold in reference.pairs():
        if fold in draws:
            continue
        speakers = sorted(set(reference.runs[(seed_, fold)].speakers))
        picks = rng.integers(0, len(speakers), size=(n_draws, len(speakers)))
        counts = np.zeros((n_draws, len(speakers)), dtype=float)
        np.add.at(counts, (np.arange(n_draws)[:, None], picks), 1)
        draws[fold] = (speakers, counts)
    return draws


def _bootstrap_figures(experiment, draws, metrics=METRICS):
    """``[n_draws, runs]`` figures of each metric under the speaker draws."""
    columns = {k: [] for k in metrics}
    for key in experiment.pairs():
        run = experiment.runs[key]
        speakers, counts = draws[key[1]]
        where = np.array(run.speakers)
        if CCC in metrics:
            # Each utterance weighs as often as its speaker was drawn.
            index = {speaker: i for i, speaker in enumerate(speakers)}
            columns[CCC].append(
                run.ccc(counts[:, [index[s] for s in run.speakers]])
            )
        if not set(METRICS) & set(metrics):
            continue
        per_speaker = np.stack(
            [run.confusion(where == speaker) for speaker in speakers]
        )
        confusions = np.einsum("ds,sij->dij", counts, per_speaker)
        for k, values in metrics_from_confusions(confusions).items():
            columns[k].append(values)
    return {k: np.stack(v, axis=1) for k, v in columns.items()}


def compare_experiments(
    experiments, bootstrap=2000, seed=0, permutations=100_000
):
    """Differences of each experiment against the first, with confidence.

    Arguments
    ---------
    experiments : list of Experiment
        At least two; the first is the reference.
    bootstrap : int
        Speaker draws of the bootstrap (0: skip that method).
    seed : int
        Seed of the draws and of random sign flips.
    permutations : int
        Random sign patterns above :data:`EXACT_LIMIT` pairs.

    Returns
    -------
    dict
        ``reference``, ``pairs`` (the ``[seed, fold]`` list), ``figures``
        (each experiment's per-pair and mean figures), ``comparisons``
        (per other experiment and metric: ``difference`` and, per method,
        the interval, p-value and Holm-adjusted p-value), the settings and
        the notes on what was done.
    """
    if len(experiments) < 2:
        raise UserError(
            "give at least two experiments to compare (folders or "
            "cv_summary.json files of sercaf cv)"
        )
    reference = experiments[0]
    for other in experiments[1:]:
        difference = pairing_difference(reference, other)
        if difference:
            raise UserError(
                f"{reference.name} and {other.name} do not pair: "
                f"{difference}; compare runs of the same corpus, folds, "
                "seeds and test files"
            )
    pairs = reference.pairs()
    metrics = shared_metrics(experiments)
    figures = {
        e.name: {
            "runs": [e.runs[key].figures() for key in pairs],
        }
        for e in experiments
    }
    for part in figures.values():
        part["mean"] = {
            k: float(np.mean([run[k] for run in part["runs"]])) for k in metrics
        }
    have_speakers = all(
        run.speakers for e in experiments for run in e.runs.values()
    )
    n_draws = bootstrap if have_speakers else 0
    if n_draws:
        draws = _speaker_draws(reference, n_draws, seed)
        resampled = {
            e.name: _bootstrap_figures(e, draws, metrics) for e in experiments
        }
    comparisons = {}
    for other in experiments[1:]:
        entry = {}
        for k in metrics:
            d = np.array(
                [
                    b[k] - a[k]
                    for a, b in zip(
                        figures[reference.name]["runs"],
                        figures[other.name]["runs"],
                    )
                ]
            )
            p, exact = sign_flip_test(d, permutations, seed)
            interval = t_interval(d)
            entry[k] = {
                "difference": float(d.mean()),
                "pairs": {
                    "n": len(d),
                    "differences": d.tolist(),
                    "ci95": list(interval) if interval else None,
                    "p": p,
                    "exact": exact,
                },
            }
            if n_draws:
                boot = (
                    resampled[other.name][k] - resampled[reference.name][k]
                ).mean(axis=1)
                low, high = np.percentile(boot, [2.5, 97.5])
                below, above = (boot <= 0).mean(), (boot >= 0).mean()
                entry[k]["speakers"] = {
                    "draws": n_draws,
                    "ci95": [float(low), float(high)],
                    "p": float(min(1.0, 2 * min(below, above))),
                }
        comparisons[other.name] = entry
    methods = ["pairs"] + (["speakers"] if n_draws else [])
    for k in metrics:
        for method in methods:
            names = list(comparisons)
            adjusted = holm([comparisons[n][k][method]["p"] for n in names])
            for name, p in zip(names, adjusted):
                comparisons[name][k][method]["p_holm"] = p
    notes = []
    if len(experiments) > 2:
        notes.append(
            f"p-values Holm-corrected over the {len(experiments) - 1} "
            "comparisons against the reference (per metric and method)"
        )
    if n_draws:
        fewest = min(len(speakers) for speakers, _ in draws.values())
        if fewest < FEW_SPEAKERS:
            notes.append(
                f"a fold has only {fewest} test speaker(s): the speaker "
                "bootstrap can draw few distinct test sets and holds the "
                "trained models fixed (no seed-to-seed variation), so its "
                "interval is narrow; the fold x seed method is the one "
                "that judges the recipes"
            )
    if not have_speakers:
        notes.append(
            "speaker bootstrap skipped: some runs do not name the speaker "
            "of their test files (predictions.csv or test.csv)"
        )
    return {
        "reference": reference.name,
        "experiments": [e.name for e in experiments],
        "pairs": [list(key) for key in pairs],
        "figures": figures,
        "comparisons": comparisons,
        "settings": {
            "bootstrap_draws": n_draws,
            "seed": seed,
            "permutations": permutations,
            "exact_limit": EXACT_LIMIT,
            "alpha": ALPHA,
        },
        "notes": notes,
    }


def _interval(ci, metric=None):
    if ci is None:
        return "n/a"
    if metric == CCC:  # a coefficient, not in %
        return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _value(value, metric, sign=""):
    """A figure as the table shows it: % (one decimal), or a CCC."""
    if metric == CCC:
        return f"{value:{sign}.3f}"
    return f"{100 * value:{sign}.1f}"


def _p(value):
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def comparison_markdown(result):
    """The comparison as Markdown: one table row per experiment and metric.

    Example
    -------
    >>> result = {"reference": "r/sum", "pairs": [[None, 1], [None, 2]],
    ...     "figures": {"r/sum": {"mean": {"UA": 0.5}},
    ...                 "r/caf": {"mean": {"UA": 0.6}}},
    ...     "comparisons": {"r/caf": {"UA": {"difference": 0.1, "pairs": {
    ...         "n": 2, "ci95": [0.0, 0.2], "p": 0.5, "p_holm": 0.5}}}},
    ...     "settings": {"bootstrap_draws": 0, "seed": 0}, "notes": []}
    >>> print(comparison_markdown(result).splitlines()[-1])
    | r/caf | UA | 50.0 | 60.0 | +10.0 | [+0.0, +20.0] | 0.5000 | n/a | n/a |
    """
    reference = result["reference"]
    pairs = result["pairs"]
    folds = sorted({fold for _, fold in pairs})
    seeds = sorted({str(seed) for seed, _ in pairs})
    draws = result["settings"]["bootstrap_draws"]
    holm_used = any("Holm" in note for note in result["notes"])
    lines = [
        "# Paired comparison",
        "",
        f"Reference: **{reference}**. {len(pairs)} paired runs "
        f"({len(folds)} folds x {len(seeds)} seed(s)). Differences are "
        "the other experiment minus the reference, in % points.",
        "",
        "- *fold x seed pairs*: mean of the paired differences of the "
        "runs' figures, t 95 % interval (n/a for one pair), two-sided "
        "sign-flip permutation p-value (exact up to "
        f"{EXACT_LIMIT} pairs).",
        (
            f"- *test speakers*: paired bootstrap over each fold's test "
            f"speakers ({draws} draws, seed {result['settings']['seed']}), "
            "percentile 95 % interval and two-sided p-value."
            if draws
            else "- *test speakers*: not computed."
        ),
        *[f"- {note}." for note in result["notes"]],
        *(
            [
                "- CCC: the mean over dimensions of each run's concordance "
                "correlation coefficient, recomputed from predictions.csv; "
                "its figures are coefficients (-1 to 1), not %."
            ]
            if any(CCC in entry for entry in result["comparisons"].values())
            else []
        ),
        "",
        "| experiment | metric | reference | experiment | difference "
        "| 95 % CI (pairs) | p (pairs) | 95 % CI (speakers) "
        "| p (speakers) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["comparisons"].items():
        for k, figures in entry.items():
            p_key = "p_holm" if holm_used else "p"
            pairs_part = figures["pairs"]
            speakers_part = figures.get("speakers")
            lines.append(
                f"| {name} | {k} "
                f"| {_value(result['figures'][reference]['mean'][k], k)} "
                f"| {_value(result['figures'][name]['mean'][k], k)} "
                f"| {_value(figures['difference'], k, '+')} "
                f"| {_interval(pairs_part['ci95'], k)} "
                f"| {_p(pairs_part[p_key])} "
                + (
                    f"| {_interval(speakers_part['ci95'], k)} "
                    f"| {_p(speakers_part[p_key])} |"
                    if speakers_part
                    else "| n/a | n/a |"
                )
            )
    if holm_used:
        lines += ["", "p-values above are Holm-corrected."]
    return "\n".join(lines) + "\n"


def write_comparison(result, folder):
    """Writes ``comparison.md`` and ``comparison.json``; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {
        "markdown": os.path.join(folder, "comparison.md"),
        "json": os.path.join(folder, "comparison.json"),
    }
    with open(paths["markdown"], "w", encoding="utf-8") as out:
        out.write(comparison_markdown(result))
    with open(paths["json"], "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
    return paths


def table_marks(experiments, method="pairs", bootstrap=2000, seed=0):
    """Which cells of a results table are not significantly worse.

    For each metric, the experiment of the highest mean is the best; every
    experiment that pairs with it is compared with it (``method``:
    ``"pairs"``, the sign-flip test over fold x seed pairs, or
    ``"speakers"``, the speaker bootstrap), Holm-corrected over those
    comparisons.

    Returns
    -------
    tuple
        ``(marks, unpaired)``: name -> metric -> ``"best"`` or ``"same"``
        (not significantly different from the best at :data:`ALPHA`), and
        metric -> names that do not pair with its best.
    """
    marks = {e.name: {} for e in experiments}
    unpaired = {}
    for k in shared_metrics(experiments):
        means = {
            e.name: np.mean([r.figures()[k] for r in e.runs.values()])
            for e in experiments
        }
        best = max(experiments, key=lambda e: means[e.name])
        marks[best.name][k] = "best"
        others = [e for e in experiments if e is not best]
        paired = [e for e in others if pairing_difference(best, e) is None]
        unpaired[k] = [e.name for e in others if e not in paired]
        if not paired:
            continue
        result = compare_experiments(
            [best, *paired],
            bootstrap=bootstrap if method == "speakers" else 0,
            seed=seed,
        )
        for e in paired:
            part = result["comparisons"][e.name][k].get(method)
            if part is None:  # no speakers named: no bootstrap
                raise UserError(
                    f"--compare speakers: {e.name} has runs that do not "
                    "name the speakers of their test files; use --compare "
                    "pairs"
                )
            if part["p_holm"] >= ALPHA:
                marks[e.name][k] = "same"
    return marks, unpaired
