"""Metrics against scikit-learn."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

from sercaf_toolkit.evaluation.metrics import EmotionMetrics


def reference(targets, predictions, n_classes):
    return {
        "WA": accuracy_score(targets, predictions),
        "UA": balanced_accuracy_score(targets, predictions),
        "macro_F1": f1_score(
            targets, predictions, average="macro", zero_division=0
        ),
        "weighted_F1": f1_score(
            targets, predictions, average="weighted", zero_division=0
        ),
        "confusion_matrix": confusion_matrix(
            targets, predictions, labels=list(range(n_classes))
        ).tolist(),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(8))
def test_equal_to_sklearn_over_batches(seed):
    rng = np.random.default_rng(seed)
    n_classes = 5
    # Some seeds leave a class out of the targets, or out of everything.
    allowed_targets = rng.choice(
        n_classes, size=rng.integers(3, 6), replace=False
    )
    targets = rng.choice(allowed_targets, size=rng.integers(20, 80))
    predictions = rng.integers(0, n_classes - seed % 2, size=targets.size)
    metrics = EmotionMetrics(n_classes)
    start = 0
    while start < targets.size:  # uneven batches, classes absent from some
        stop = start + int(rng.integers(1, 7))
        scores = torch.randn(len(targets[start:stop]), n_classes)
        scores[
            torch.arange(scores.shape[0]),
            torch.as_tensor(predictions[start:stop]),
        ] = 9
        ids = [f"u{i}" for i in range(start, min(stop, targets.size))]
        as_scores = seed % 3 == 0
        metrics.append(
            ids,
            scores if as_scores else torch.as_tensor(predictions[start:stop]),
            torch.as_tensor(targets[start:stop]).unsqueeze(1),
        )
        start = stop
    summary = metrics.summarize()
    expected = reference(targets, predictions, n_classes)
    for key in ("WA", "UA", "macro_F1", "weighted_F1"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-12), key
    assert summary["confusion_matrix"] == expected["confusion_matrix"]
    recalls = recall_score(
        targets,
        predictions,
        labels=list(range(n_classes)),
        average=None,
        zero_division=0,
    )
    # scikit-learn gives an absent class its zero_division value; we None.
    support = np.bincount(targets, minlength=n_classes)
    expected_recalls = [r if s else None for r, s in zip(recalls, support)]
    assert list(summary["per_class_recall"].values()) == pytest.approx(
        expected_recalls
    )
    # The classes each average is over, as scikit-learn chooses them.
    assert summary["UA_classes"] == [str(c) for c in np.unique(targets)]
    assert summary["F1_classes"] == [
        str(c) for c in np.union1d(targets, predictions)
    ]
    assert len(metrics.ids) == targets.size


def test_named_labels_field_and_clear():
    metrics = EmotionMetrics(["ang", "sad"])
    metrics.append(["a", "b"], torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert metrics.summarize("UA") == 0.5
    assert metrics.summarize()["per_class_recall"] == {"ang": 1.0, "sad": 0.0}
    assert metrics.summarize("UA_classes") == ["ang", "sad"]
    metrics.clear()
    assert metrics.summarize("WA") == 0.0 and metrics.ids == []


def test_bad_input_is_a_clear_error():
    metrics = EmotionMetrics(3)
    with pytest.raises(ValueError, match="2 predictions for 3 targets"):
        metrics.append(
            ["a", "b"], torch.tensor([0, 1]), torch.tensor([0, 1, 2])
        )
    with pytest.raises(ValueError, match="target outside the 3 known classes"):
        metrics.append(["a"], torch.tensor([0]), torch.tensor([3]))


def test_a_class_absent_from_the_test_set_has_no_recall():
    """Recall of a class with no support is None, not 0; UA, macro F1 and
    the lists of classes they average over leave it out."""
    metrics = EmotionMetrics(["ang", "hap", "neu", "sad"])
    metrics.append(
        ["a", "b", "c", "d"],
        torch.tensor([0, 0, 2, 1]),  # one "neu" taken for "hap"
        torch.tensor([0, 0, 2, 2]),  # no "hap" nor "sad" in the test set
    )
    summary = metrics.summarize()
    assert summary["per_class_recall"] == {
        "ang": 1.0,
        "hap": None,
        "neu": 0.5,
        "sad": None,
    }
    assert summary["support"]["hap"] == 0
    assert summary["UA"] == pytest.approx(0.75)  # (1 + 0.5) / 2
    assert summary["UA_classes"] == ["ang", "neu"]
    # "hap" was predicted (an F1 of 0), "sad" neither true nor predicted.
    assert summary["F1_classes"] == ["ang", "hap", "neu"]
    assert summary["macro_F1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert json.loads(json.dumps(summary))["per_class_recall"]["sad"] is None
