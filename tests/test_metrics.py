"""Metrics against scikit-learn."""

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

from sercaf_toolkit.metrics import EmotionMetrics


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
    assert list(summary["per_class_recall"].values()) == pytest.approx(recalls)
    assert len(metrics.ids) == targets.size


def test_named_labels_field_and_clear():
    metrics = EmotionMetrics(["ang", "sad"])
    metrics.append(["a", "b"], torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert metrics.summarize("UA") == 0.5
    assert metrics.summarize()["per_class_recall"] == {"ang": 1.0, "sad": 0.0}
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
