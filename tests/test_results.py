"""Cross-validation summaries and tables from run folders written here."""

import csv
import json

import pytest

from sercaf_toolkit.evaluation.results import results_table, summarize_runs

LABELS = ["angry", "happy", "neutral", "sad"]


def fake_run(folder, pairs):
    """A finished run's files: ``pairs`` of (true, predicted) labels."""
    folder.mkdir(parents=True)
    hits = [true == predicted for true, predicted in pairs]
    figure = sum(hits) / len(hits)
    metrics = {"WA": figure, "UA": figure, "F1": figure, "labels": LABELS}
    (folder / "test_metrics.json").write_text(json.dumps(metrics))
    with open(folder / "predictions.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "true_label", "predicted_label"])
        for index, (true, predicted) in enumerate(pairs):
            writer.writerow([f"u{index}", true, predicted])
    return str(folder)


def test_one_fold_has_no_spread(tmp_path):
    """Mean ± std over one fold: null in JSON and n/a in the table."""
    runs = {
        (None, 1): fake_run(
            tmp_path / "fold_1",
            [("angry", "angry"), ("sad", "angry"), ("neutral", "neutral")],
        )
    }
    result = summarize_runs(runs)
    assert result["std"] == {"WA": None, "UA": None, "F1": None}
    assert json.loads(json.dumps(result))["std"]["UA"] is None
    row = results_table({"experiments": {"caf": result}}).splitlines()[-1]
    assert "± n/a" in row and "± 0.0" not in row
    assert "66.7 ± n/a" in row
    # The pooled figures name the classes their averages are over.
    assert result["pooled"]["UA_classes"] == ["angry", "neutral", "sad"]
    assert result["pooled"]["F1_classes"] == ["angry", "neutral", "sad"]


def test_two_folds_have_a_spread(tmp_path):
    runs = {
        (None, 1): fake_run(tmp_path / "fold_1", [("sad", "sad")]),
        (None, 2): fake_run(tmp_path / "fold_2", [("sad", "happy")]),
    }
    result = summarize_runs(runs)
    assert result["std"]["UA"] == pytest.approx(0.7071, abs=1e-4)
    row = results_table({"experiments": {"caf": result}}).splitlines()[-1]
    assert "50.0 ± 70.7" in row and "n/a" not in row
