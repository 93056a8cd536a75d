"""Paired comparisons (``sercaf compare``), breakdowns and table marks.

Cross-validation folders are written here the way ``sercaf cv`` writes
them (runs by :func:`write_test_outputs`, the summary by
:func:`summarize_runs`), with predictions drawn at random, so that every
figure can be recomputed directly from ``predictions.csv`` with numpy,
scipy and scikit-learn.
"""

import csv
import itertools
import json
import zlib

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from sercaf_toolkit.cli import main
from sercaf_toolkit.evaluation import results
from sercaf_toolkit.evaluation.compare import (
    compare_experiments,
    holm,
    load_experiments,
    metrics_from_confusions,
    sign_flip_test,
)
from sercaf_toolkit.evaluation.results import (
    summarize_runs,
    write_test_outputs,
)

LABELS = ["angry", "happy", "neutral", "sad"]
# Three folds of two test speakers each, three utterances per class each.
FOLD_SPEAKERS = {1: ["s1", "s2"], 2: ["s3", "s4"], 3: ["s5", "s6"]}


def utterances(fold):
    return [
        (f"{speaker}_{label}_{k}", index, speaker)
        for speaker in FOLD_SPEAKERS[fold]
        for index, label in enumerate(LABELS)
        for k in range(3)
    ]


def probabilities(target, skill, rng):
    """Scores whose argmax is the target with probability ``skill``."""
    scores = rng.random(len(LABELS))
    if rng.random() < skill:
        scores[target] = 2.0
    return list(scores / scores.sum())


def write_cv(root, experiments, folds=(1, 2, 3), seeds=(1,), files=None):
    """A cv output root: ``experiments`` maps a name to a skill (a float,
    or ``"one class"`` for a head that always says "angry")."""
    with pytest.MonkeyPatch.context() as patch:
        # The confusion matrix pictures take most of the time; unused here.
        patch.setattr(results, "plot_confusion_matrix", lambda *a, **k: None)
        return _write_cv(root, experiments, folds, seeds, files)


def _write_cv(root, experiments, folds, seeds, files):
    summary = {"experiments": {}}
    for stem, skill in experiments.items():
        runs = {}
        for seed in seeds:
            rng = np.random.default_rng([seed, zlib.crc32(stem.encode())])
            for fold in folds:
                folder = root / stem / f"seed_{seed}" / f"fold_{fold}"
                test = (files or utterances)(fold)
                rows = [
                    (
                        utt_id,
                        target,
                        [1.0, 0.0, 0.0, 0.0]
                        if skill == "one class"
                        else probabilities(target, skill, rng),
                    )
                    for utt_id, target, _ in test
                ]
                groups = {
                    utt_id: {"speaker": speaker, "gender": speaker[-1]}
                    for utt_id, _, speaker in test
                }
                write_test_outputs(str(folder), LABELS, rows, groups_of=groups)
                runs[(seed, fold)] = str(folder)
        summary["experiments"][stem] = summarize_runs(runs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cv_summary.json").write_text(json.dumps(summary))
    return root


def read_predictions(folder):
    with open(folder / "predictions.csv", newline="") as source:
        return list(csv.DictReader(source))


def direct_figures(rows):
    true = [row["true_label"] for row in rows]
    predicted = [row["predicted_label"] for row in rows]
    return {
        "WA": accuracy_score(true, predicted),
        "UA": balanced_accuracy_score(true, predicted),
        "F1": f1_score(true, predicted, average="macro"),
    }


@pytest.fixture(scope="module")
def cv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "cv"
    # Nine pairs: the exact sign-flip p can reach 2 / 2^9, below 0.05
    # after Holm's correction over two comparisons.
    return write_cv(
        root, {"sum": 0.5, "caf": 0.7, "one": "one class"}, seeds=(1, 2, 3)
    )


def test_metrics_from_confusions_equal_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = rng.integers(0, 4, 30)
        predicted = np.where(rng.random(30) < 0.5, true, rng.integers(0, 3, 30))
        confusion = np.zeros((4, 4), int)
        np.add.at(confusion, (true, predicted), 1)
        figures = metrics_from_confusions(confusion)
        assert figures["WA"] == pytest.approx(accuracy_score(true, predicted))
        assert figures["UA"] == pytest.approx(
            balanced_accuracy_score(true, predicted)
        )
        assert figures["F1"] == pytest.approx(
            f1_score(true, predicted, average="macro")
        )


def test_sign_flip_test_equals_a_direct_enumeration_and_scipy():
    d = np.array([0.03, -0.01, 0.05, 0.02, 0.04, -0.02, 0.06])
    p, exact = sign_flip_test(d)
    assert exact
    means = [
        abs(np.mean(np.array(signs) * d))
        for signs in itertools.product((1, -1), repeat=len(d))
    ]
    assert p == pytest.approx(np.mean(np.array(means) >= abs(d.mean()) - 1e-12))
    scipy_p = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    assert p == pytest.approx(scipy_p)
    # Too many pairs to enumerate: random flips, close to the exact value.
    many = np.tile(d, 3)
    approximate, exact = sign_flip_test(many, permutations=20000)
    assert not exact and 0 < approximate < 0.05


def test_holm_equals_the_step_down_definition():
    p = [0.04, 0.001, 0.03, 0.2]
    # Sorted: 0.001 x 4, 0.03 x 3, 0.04 x 2, 0.2 x 1, running maximum.
    assert holm(p) == pytest.approx([0.09, 0.004, 0.09, 0.2])


def test_pair_figures_equal_a_direct_computation(cv_root, tmp_path):
    assert main(["compare", str(cv_root), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "comparison.json").read_text())
    assert result["reference"] == "cv/sum"
    assert result["pairs"] == [[s, f] for f in (1, 2, 3) for s in (1, 2, 3)]
    for stem in ("sum", "caf"):
        runs = result["figures"][f"cv/{stem}"]["runs"]
        for (seed, fold), figures in zip(result["pairs"], runs):
            rows = read_predictions(
                cv_root / stem / f"seed_{seed}" / f"fold_{fold}"
            )
            assert figures == pytest.approx(direct_figures(rows))
    for metric in ("WA", "UA", "F1"):
        entry = result["comparisons"]["cv/caf"][metric]
        d = np.array(
            [
                b[metric] - a[metric]
                for a, b in zip(
                    result["figures"]["cv/sum"]["runs"],
                    result["figures"]["cv/caf"]["runs"],
                )
            ]
        )
        assert entry["difference"] == pytest.approx(d.mean())
        test = stats.ttest_rel(
            [r[metric] for r in result["figures"]["cv/caf"]["runs"]],
            [r[metric] for r in result["figures"]["cv/sum"]["runs"]],
        )
        interval = test.confidence_interval(0.95)
        assert entry["pairs"]["ci95"] == pytest.approx(
            [interval.low, interval.high]
        )
        assert entry["pairs"]["p"] == pytest.approx(sign_flip_test(d)[0])
        low, high = entry["speakers"]["ci95"]
        assert low <= high and 0 <= entry["speakers"]["p"] <= 1
        # Three experiments: both methods' p-values are Holm-corrected.
        raw = [
            result["comparisons"][n][metric]["pairs"]["p"]
            for n in ("cv/caf", "cv/one")
        ]
        assert [
            result["comparisons"][n][metric]["pairs"]["p_holm"]
            for n in ("cv/caf", "cv/one")
        ] == pytest.approx(holm(raw))
    text = (tmp_path / "comparison.md").read_text()
    assert "Holm-corrected" in text and "| cv/caf | UA |" in text


def test_an_experiment_against_itself_differs_by_nothing(cv_root):
    (first,) = load_experiments([str(cv_root / "caf")])
    (twin,) = load_experiments([str(cv_root / "caf")])
    twin.name = "twin"
    result = compare_experiments([first, twin], bootstrap=200)
    for entry in result["comparisons"]["twin"].values():
        assert entry["difference"] == 0
        assert entry["pairs"]["p"] == 1 and entry["speakers"]["p"] == 1
        assert entry["speakers"]["ci95"] == [0, 0]


def test_a_one_class_head_is_significantly_worse(cv_root):
    result = compare_experiments(
        load_experiments([str(cv_root / "caf"), str(cv_root / "one")]),
        bootstrap=500,
    )
    ua = result["comparisons"]["cv/one"]["UA"]
    assert ua["difference"] < -0.3
    # Nine pairs all one way: the exact sign-flip p is 2 / 2^9.
    assert ua["pairs"]["p"] == pytest.approx(2 / 512) and ua["pairs"]["exact"]
    assert ua["pairs"]["ci95"][1] < 0
    assert ua["speakers"]["p"] < 0.05 and ua["speakers"]["ci95"][1] < 0


def test_one_speaker_per_fold_leaves_the_bootstrap_no_spread(tmp_path):
    """Resampling a fold's only speaker always draws the same utterances:
    the interval is the point difference (no utterance-level resampling)."""

    def one_speaker(fold):
        return [u for u in utterances(fold) if u[2] == FOLD_SPEAKERS[fold][0]]

    root = write_cv(tmp_path / "cv", {"a": 0.5, "b": 0.8}, files=one_speaker)
    result = compare_experiments(load_experiments([str(root)]), bootstrap=100)
    entry = result["comparisons"]["cv/b"]["UA"]
    assert entry["speakers"]["ci95"] == pytest.approx([entry["difference"]] * 2)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"folds": (1, 2)}, "fold 3 seed 1 is in cv/a but not other/b"),
        ({"seeds": (2,)}, "fold 1 seed 1 is in cv/a but not other/b"),
        (
            {"files": lambda fold: utterances(fold)[1:]},
            "fold 1 seed 1 tested other files",
        ),
    ],
)
def test_runs_that_do_not_pair_are_refused_in_one_line(
    tmp_path, capsys, change, message
):
    write_cv(tmp_path / "cv", {"a": 0.5})
    write_cv(tmp_path / "other", {"b": 0.5}, **change)
    status = main(["compare", str(tmp_path / "cv"), str(tmp_path / "other")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert message in err and "do not pair" in err
    assert not (tmp_path / "cv" / "comparison.json").exists()


def test_unfinished_or_missing_inputs_are_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    assert "neither a sercaf cv folder" in capsys.readouterr().err
    root = write_cv(tmp_path / "cv", {"a": 0.5, "b": 0.6})
    assert main(["compare", str(root / "a")]) == 2
    assert "at least two experiments" in capsys.readouterr().err
    summary = json.loads((root / "cv_summary.json").read_text())
    summary["experiments"]["b"]["missing"] = [[1, 3]]
    (root / "cv_summary.json").write_text(json.dumps(summary))
    assert main(["compare", str(root)]) == 2
    assert "fold 3 seed 1 has not finished" in capsys.readouterr().err


def test_per_speaker_figures_equal_scikit_learn(cv_root):
    folder = cv_root / "caf" / "seed_1" / "fold_2"
    metrics = json.loads((folder / "test_metrics.json").read_text())
    rows = read_predictions(folder)
    for speaker in FOLD_SPEAKERS[2]:
        mine = [row for row in rows if row["speaker"] == speaker]
        assert metrics["per_speaker"][speaker]["UA"] == pytest.approx(
            balanced_accuracy_score(
                [r["true_label"] for r in mine],
                [r["predicted_label"] for r in mine],
            )
        )
        assert metrics["per_speaker"][speaker]["n"] == len(mine)
    worst = min(metrics["per_speaker"].items(), key=lambda kv: kv[1]["UA"])
    assert metrics["worst_speaker"] == {
        "speaker": worst[0],
        "UA": worst[1]["UA"],
    }
    assert set(metrics["per_gender"]) == {"3", "4"}  # fold 2: s3, s4


def test_table_marks_cells_not_different_from_the_best(cv_root, capsys):
    assert main(["table", str(cv_root / "cv_summary.json"), "--compare"]) == 0
    table = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in table.splitlines()
        if line.startswith("| cv/")
    }
    # columns: name, SSL, scratch, fusion, WA, UA, worst speaker UA, F1, ...
    assert rows["cv/caf"][5].startswith("**")  # the best UA
    assert not rows["cv/one"][5].endswith("≈")  # far below it
    assert "Holm-corrected" in table
    worst = json.loads((cv_root / "cv_summary.json").read_text())[
        "experiments"
    ]["caf"]["worst_speaker"]
    assert rows["cv/caf"][6] == f"{100 * worst['UA']:.1f} ({worst['speaker']})"


def test_table_marks_equal_experiments_as_not_different(tmp_path, capsys):
    root = write_cv(tmp_path / "cv", {"a": 0.6, "b": 0.6}, seeds=(1, 2, 3))
    assert main(["table", str(root / "cv_summary.json"), "--compare"]) == 0
    table = capsys.readouterr().out
    cells = [
        line.split("|")[6].strip()
        for line in table.splitlines()
        if line.startswith("| cv/")
    ]
    best = [cell for cell in cells if cell.startswith("**")]
    same = [cell for cell in cells if cell.endswith("≈")]
    assert len(best) == 1 and len(same) == 1


def test_iemocap_runs_are_broken_down_by_improvised_and_scripted(tmp_path):
    """The elicitation of each IEMOCAP test utterance reaches
    predictions.csv and test_metrics.json, figures as scikit-learn's."""
    from types import SimpleNamespace

    from sercaf_toolkit.corpora.iemocap import prepare_iemocap
    from sercaf_toolkit.data import read_manifest
    from sercaf_toolkit.evaluation.results import write_run_outputs
    from tests.mock_corpora import make_iemocap

    make_iemocap(str(tmp_path / "IEMOCAP"))
    prepare_iemocap(str(tmp_path / "IEMOCAP"), str(tmp_path), fold=2)
    test = read_manifest(tmp_path / "test.csv")
    labels = sorted({row["label"] for row in test})
    rng = np.random.default_rng(0)
    brain = SimpleNamespace(
        label_names=labels,
        test_rows=[
            (
                row["ID"],
                labels.index(row["label"]),
                probabilities(labels.index(row["label"]), 0.6, rng),
            )
            for row in test
        ],
        selection_key="UA",
        test_selected_epoch=1,
    )
    write_run_outputs(str(tmp_path / "run"), brain, str(tmp_path / "test.csv"))
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    rows = read_predictions(tmp_path / "run")
    assert {row["elicitation"] for row in rows} == {"improvised", "scripted"}
    for style, figures in metrics["per_elicitation"].items():
        mine = [row for row in rows if row["elicitation"] == style]
        assert figures["n"] == len(mine)
        assert figures["UA"] == pytest.approx(
            balanced_accuracy_score(
                [r["true_label"] for r in mine],
                [r["predicted_label"] for r in mine],
            )
        )
    assert set(metrics["per_speaker"]) == {"Ses02F", "Ses02M"}
