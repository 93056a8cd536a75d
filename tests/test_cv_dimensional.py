"""CCC in ``sercaf cv`` summaries, ``sercaf table`` and ``sercaf compare``.

Cross-validation folders of dimensional and joint runs are written as
``sercaf cv`` writes them (:func:`write_test_outputs`, then
:func:`summarize_runs`), with values drawn at random and no training, so
that every CCC can be recomputed directly from the runs' files.
"""

import csv
import json
import zlib

import numpy as np
import pytest

from sercaf_toolkit.cli import main
from sercaf_toolkit.evaluation import results
from sercaf_toolkit.evaluation.compare import (
    _bootstrap_figures,
    compare_experiments,
    load_experiments,
)
from sercaf_toolkit.evaluation.results import (
    results_table,
    summarize_runs,
    write_test_outputs,
)
from tests.test_compare import LABELS, probabilities, utterances

DIMENSIONS = ["arousal", "valence", "dominance"]
FOLDS = (1, 2, 3)
SEEDS = (1, 2)


def numpy_ccc(y, p):
    """CCC written out from its definition, population moments."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    cov = np.mean((y - y.mean()) * (p - p.mean()))
    return 2 * cov / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)


def write_cv(root, experiments, task="dimensional"):
    """A cv root: ``experiments`` maps a name to a noise level (the
    spread of the predicted values around the true ones)."""
    summary = {"experiments": {}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results, "plot_confusion_matrix", lambda *a, **k: None)
        for stem, noise in experiments.items():
            runs = {}
            for seed in SEEDS:
                rng = np.random.default_rng([seed, zlib.crc32(stem.encode())])
                for fold in FOLDS:
                    folder = root / stem / f"seed_{seed}" / f"fold_{fold}"
                    test = utterances(fold)
                    # True values follow the class; predictions are noisy.
                    true = [
                        [1.0 + target, 5.0 - target, 2.0 + 0.5 * target]
                        for _, target, _ in test
                    ]
                    values = {
                        "names": DIMENSIONS,
                        "rows": [
                            (utt, y, list(np.add(y, rng.normal(0, noise, 3))))
                            for (utt, _, _), y in zip(test, true)
                        ],
                        "scale": [1.0, 5.0],
                    }
                    rows = [
                        (utt, target, probabilities(target, 0.6, rng))
                        for utt, target, _ in test
                    ]
                    write_test_outputs(
                        str(folder),
                        LABELS if task == "joint" else [],
                        rows if task == "joint" else [],
                        groups_of={utt: {"speaker": s} for utt, _, s in test},
                        dimensions=values,
                    )
                    runs[(seed, fold)] = str(folder)
            summary["experiments"][stem] = summarize_runs(runs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cv_summary.json").write_text(json.dumps(summary))
    return root, summary


def run_metrics(root, stem):
    return [
        json.loads(
            (
                root / stem / f"seed_{s}" / f"fold_{f}" / "test_metrics.json"
            ).read_text()
        )
        for s in SEEDS
        for f in FOLDS
    ]


def read_rows(root, stem, seed, fold):
    path = root / stem / f"seed_{seed}" / f"fold_{fold}" / "predictions.csv"
    with open(path, newline="") as source:
        return sorted(csv.DictReader(source), key=lambda r: r["id"])


def run_ccc(rows):
    return np.mean(
        [
            numpy_ccc(
                [float(r[f"{n}_true"]) for r in rows],
                [float(r[f"{n}_pred"]) for r in rows],
            )
            for n in DIMENSIONS
        ]
    )


@pytest.fixture(scope="module")
def dimensional_cv(tmp_path_factory):
    return write_cv(
        tmp_path_factory.mktemp("dimensional") / "cv",
        {"noisy": 1.5, "clean": 0.6},
    )


def test_summaries_average_ccc_over_folds_and_seeds(dimensional_cv):
    root, summary = dimensional_cv
    part = summary["experiments"]["clean"]
    metrics = run_metrics(root, "clean")
    # Folds and seeds are balanced: the mean over folds of the seed means
    # is the mean over the runs.
    for key in ["CCC", *(f"CCC_{n}" for n in DIMENSIONS)]:
        assert part["mean"][key] == pytest.approx(
            np.mean([m[key] for m in metrics])
        )
    assert "UA" not in part["mean"]
    per_fold = [
        np.mean([m["CCC"] for m in metrics[i :: len(FOLDS)]])
        for i in range(len(FOLDS))
    ]
    assert part["std"]["CCC"] == pytest.approx(np.std(per_fold, ddof=1))
    assert set(part["seeds"]["per_seed"]) == {"1", "2"}
    # Pooled: the CCCs of every run's predictions together.
    rows = [
        r for s in SEEDS for f in FOLDS for r in read_rows(root, "clean", s, f)
    ]
    assert part["pooled"]["CCC"] == pytest.approx(
        np.mean(
            [
                numpy_ccc(
                    [float(r[f"{n}_true"]) for r in rows],
                    [float(r[f"{n}_pred"]) for r in rows],
                )
                for n in DIMENSIONS
            ]
        ),
        abs=1e-6,
    )


def test_the_table_shows_ccc_columns_when_runs_have_them(dimensional_cv):
    _, summary = dimensional_cv
    table = results_table(summary)
    header = next(line for line in table.splitlines() if "| WA |" in line)
    titles = [c.strip() for c in header.split("|")[1:-1]]
    assert titles[-6:] == [
        "CCC",
        "CCC arousal",
        "CCC valence",
        "CCC dominance",
        "pooled CCC",
        "folds",
    ]
    row = next(
        line for line in table.splitlines() if line.startswith("| clean")
    )
    cells = [c.strip() for c in row.split("|")[1:-1]]
    mean = summary["experiments"]["clean"]["mean"]["CCC"]
    assert cells[titles.index("CCC")].startswith(f"{mean:.3f} ± ")
    assert cells[titles.index("UA")] == "-"
    # A table of categorical experiments has no CCC column.
    categorical = {"experiments": {"c": {"folds": {}, "missing": [[None, 1]]}}}
    assert "CCC" not in results_table(categorical)


def test_compare_ccc_differences_equal_a_direct_computation(dimensional_cv):
    root, _ = dimensional_cv
    experiments = load_experiments([str(root / "cv_summary.json")])
    result = compare_experiments(experiments, bootstrap=200)
    (entry,) = result["comparisons"].values()
    assert list(entry) == ["CCC"]  # dimensional runs: CCC only
    first, other = [e.name.split("/")[1] for e in experiments]
    direct = [
        run_ccc(read_rows(root, other, s, f))
        - run_ccc(read_rows(root, first, s, f))
        for f in FOLDS
        for s in SEEDS
    ]
    assert entry["CCC"]["pairs"]["differences"] == pytest.approx(direct)
    assert entry["CCC"]["difference"] == pytest.approx(np.mean(direct))
    assert entry["CCC"]["speakers"]["draws"] == 200
    # The bootstrap's CCC of a draw is the CCC of its resampled test set.
    reference = experiments[0]
    seed, fold = reference.pairs()[0]
    run = reference.runs[(seed, fold)]
    speakers = sorted(set(run.speakers))
    counts = np.array([[2.0, 0.0], [1.0, 1.0]])
    draws = {
        f: (sorted(set(reference.runs[(seed, f)].speakers)), counts)
        for f in FOLDS
    }
    figures = _bootstrap_figures(reference, draws, ["CCC"])
    rows = read_rows(root, first, seed, fold)
    twice = [r for r in rows if r["id"].startswith(speakers[0])] * 2
    assert figures["CCC"][0, 0] == pytest.approx(run_ccc(twice))
    assert figures["CCC"][1, 0] == pytest.approx(run_ccc(rows))


def test_joint_runs_compare_classes_and_ccc(tmp_path, capsys):
    root, summary = write_cv(tmp_path / "cv", {"a": 1.0, "b": 0.8}, "joint")
    part = summary["experiments"]["a"]
    assert list(part["mean"])[:4] == ["WA", "UA", "F1", "CCC"]
    assert part["pooled"]["UA"] > 0 and "CCC_arousal" in part["pooled"]
    assert main(["compare", str(root), "--out", str(tmp_path / "cmp")]) == 0
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    metrics = [
        line.split("|")[2].strip()
        for line in markdown.splitlines()
        if line.startswith("| cv/")
    ]
    assert metrics == ["WA", "UA", "F1", "CCC"]
    capsys.readouterr()  # the comparison's output
    assert main(["table", str(root / "cv_summary.json"), "--compare"]) == 0
    table = capsys.readouterr().out
    assert "pooled CCC" in table
    assert (
        sum(
            "**" in line.split("|")[12]
            for line in table.splitlines()
            if line.startswith("| cv/")
        )
        == 1
    )
