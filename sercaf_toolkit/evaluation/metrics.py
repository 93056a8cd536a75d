"""Emotion recognition metrics accumulated over batches.

WA (weighted accuracy) is overall accuracy, UA (unweighted accuracy) the
mean per-class recall, and F1 is reported macro-averaged and
support-weighted. All are computed from one confusion matrix that grows
batch by batch, and equal scikit-learn's ``accuracy_score``,
``balanced_accuracy_score`` and ``f1_score`` on the same predictions,
including their handling of classes absent from the data: UA averages over
classes that occur in the targets, macro F1 over classes that occur in the
targets or the predictions (``f1_score(average="macro")`` without
``labels``). The summary names those classes (``UA_classes``,
``F1_classes``), so that a figure over three classes is not read as one
over four.

A class with no test utterance has no recall: its ``per_class_recall`` is
``None`` (null in JSON), where scikit-learn's ``recall_score`` gives its
``zero_division`` value (0 by default, which reads as "never recognised").

Dimensional figures (arousal, valence, dominance) are computed over all
of a stage's predictions, on the corpus's own scale: the concordance
correlation coefficient (CCC, Lin 1989), Pearson's correlation and the
mean absolute error, per dimension, and the mean CCC over dimensions
(:class:`DimensionMetrics`, :func:`dimension_figures`). The training loss
:func:`ccc_loss` uses the CCC of each batch instead (a batch is all the
loss sees; the epoch's CCC is what is reported and selected on).

Authors
 * sercaf-toolkit developers 2026
"""

import math

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import main_process_only


@register_checkpoint_hooks
class EmotionMetrics:
    """Accumulates predictions and summarises WA, UA, F1 and confusions.

    The interface follows SpeechBrain's ``MetricStats``: ``append`` per
    batch, ``summarize`` at the end of a stage, ``clear`` to start again.
    It can be a Checkpointer recoverable, so that an epoch interrupted and
    resumed mid-way still reports its metrics over all of its batches.

    Arguments
    ---------
    labels : list of str or int
        Class names in index order, or the number of classes.

    Example
    -------
    >>> metrics = EmotionMetrics(["ang", "hap", "neu", "sad"])
    >>> metrics.append(["a", "b"], torch.tensor([0, 1]), torch.tensor([0, 2]))
    >>> scores = torch.tensor([[0.1, 0.2, 0.6, 0.1]])  # argmax is taken
    >>> metrics.append(["c"], scores, torch.tensor([2]))
    >>> summary = metrics.summarize()
    >>> round(summary["WA"], 4), round(summary["UA"], 4)
    (0.6667, 0.75)
    >>> summary["confusion_matrix"][2]  # true "neu": 1 as "hap", 1 as "neu"
    [0, 1, 1, 0]
    >>> summary["per_class_recall"]  # no "hap" or "sad" to recall
    {'ang': 1.0, 'hap': None, 'neu': 0.5, 'sad': None}
    >>> summary["UA_classes"], summary["F1_classes"]
    (['ang', 'neu'], ['ang', 'hap', 'neu'])
    """

    def __init__(self, labels):
        if isinstance(labels, int):
            labels = list(range(labels))
        self.labels = list(labels)
        self.clear()

    def clear(self):
        """Forgets everything appended so far."""
        n = len(self.labels)
        self.confusion = torch.zeros(n, n, dtype=torch.long)
        self.ids = []

    def append(self, ids, predictions, targets):
        """Adds one batch.

        Arguments
        ---------
        ids : list of str
            Utterance ids (kept in ``self.ids``).
        predictions : torch.Tensor
            ``[B]`` class indices, or ``[B, C]`` scores (argmax is taken).
        targets : torch.Tensor
            ``[B]`` (or ``[B, 1]``, as SpeechBrain's label encoders give)
            class indices.
        """
        predictions = torch.as_tensor(predictions).detach().cpu()
        if predictions.dim() == 2 and predictions.shape[1] > 1:
            predictions = predictions.argmax(dim=1)
        predictions = predictions.reshape(-1).long()
        targets = torch.as_tensor(targets).detach().cpu().reshape(-1).long()
        if predictions.shape != targets.shape:
            raise ValueError(
                f"{predictions.numel()} predictions for "
                f"{targets.numel()} targets"
            )
        n = len(self.labels)
        for name, values in (("prediction", predictions), ("target", targets)):
            if values.numel() and (values.min() < 0 or values.max() >= n):
                raise ValueError(f"{name} outside the {n} known classes")
        flat = targets * n + predictions
        self.confusion += torch.bincount(flat, minlength=n * n).view(n, n)
        self.ids.extend(ids)

    def summarize(self, field=None):
        """Computes the metrics from everything appended.

        Arguments
        ---------
        field : str, optional
            Return only this entry (e.g. ``"UA"``).

        Returns
        -------
        dict or float
            ``WA``, ``UA``, ``macro_F1``, ``weighted_F1`` (fractions),
            ``UA_classes`` and ``F1_classes`` (the labels UA and macro F1
            average over: those with test utterances, and those with test
            utterances or predictions), ``per_class_recall`` (``None`` for
            a class without test utterances) and ``per_class_F1`` (by
            label name), ``support`` and ``confusion_matrix`` (rows: true,
            columns: predicted), or the single ``field``.
        """
        confusion = self.confusion.double()
        true_positives = confusion.diag()
        support = confusion.sum(dim=1)
        predicted = confusion.sum(dim=0)
        total = support.sum()
        present = support > 0
        seen = present | (predicted > 0)
        recall = true_positives / support.clamp(min=1)  # None where absent
        # 2TP / (2TP + FP + FN), 0 where TP = 0 (scikit-learn's zero_division).
        f1 = 2 * true_positives / (support + predicted).clamp(min=1)

        def mean_over(values, keep):
            return float(values[keep].mean()) if keep.any() else 0.0

        def names(keep):
            return [str(label) for label, k in zip(self.labels, keep) if k]

        summary = {
            "WA": float(true_positives.sum() / total) if total > 0 else 0.0,
            "UA": mean_over(recall, present),
            "UA_classes": names(present),
            "macro_F1": mean_over(f1, seen),
            "F1_classes": names(seen),
            "weighted_F1": (
                float((f1 * support).sum() / total) if total > 0 else 0.0
            ),
            "per_class_recall": {
                str(label): float(r) if has else None
                for label, r, has in zip(self.labels, recall, present)
            },
            "per_class_F1": {
                str(label): float(f) for label, f in zip(self.labels, f1)
            },
            "support": {
                str(label): int(s) for label, s in zip(self.labels, support)
            },
            "confusion_matrix": self.confusion.tolist(),
        }
        return summary if field is None else summary[field]

    @mark_as_saver
    @main_process_only
    def save(self, path):
        """Writes the accumulated state (for checkpoints)."""
        torch.save({"confusion": self.confusion, "ids": list(self.ids)}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restores the state written by :meth:`save`."""
        state = torch.load(path, weights_only=True)
        self.confusion = state["confusion"]
        self.ids = list(state["ids"])


def concordance(true, predicted):
    """The concordance correlation coefficient of two sequences.

    ``2 cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2)``, with
    population (1/N) moments, as the field computes it; 1 is perfect
    agreement, 0 none, and a constant prediction scores 0. ``nan`` when
    both are constant and equal (nothing to agree or disagree on).

    Example
    -------
    >>> concordance([1, 2, 3], [1, 2, 3])
    1.0
    >>> round(concordance([1, 2, 3], [2, 3, 4]), 4)  # shifted: not 1
    0.5714
    >>> concordance([1, 2, 3], [2, 2, 2])
    0.0
    """
    y = np.asarray(true, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    covariance = np.mean((y - y.mean()) * (p - p.mean()))
    denominator = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else math.nan


def pearson(true, predicted):
    """Pearson's correlation; ``nan`` when either sequence is constant.

    Example
    -------
    >>> pearson([1, 2, 3], [2, 3, 4])
    1.0
    """
    y = np.asarray(true, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    spread = y.std() * p.std()
    if not spread > 0:
        return math.nan
    return float(np.mean((y - y.mean()) * (p - p.mean())) / spread)


def dimension_figures(names, true, predicted):
    """CCC, Pearson and MAE per dimension, and the mean CCC.

    Arguments
    ---------
    names : list of str
        The dimensions, in column order.
    true, predicted : array-like
        ``[N, D]`` values on the corpus's scale.

    Returns
    -------
    dict
        ``CCC`` (the mean over dimensions), ``CCC_<name>`` for each, and
        ``per_dimension``: name -> ``{"CCC", "Pearson", "MAE"}``.

    Example
    -------
    >>> figures = dimension_figures(
    ...     ["arousal", "valence"], [[1, 2], [2, 3], [3, 1]],
    ...     [[1, 2], [2, 2], [3, 2]])
    >>> figures["CCC_arousal"], figures["per_dimension"]["valence"]["MAE"]
    (1.0, 0.6666666666666666)
    """
    y = np.asarray(true, dtype=np.float64).reshape(-1, len(names))
    p = np.asarray(predicted, dtype=np.float64).reshape(-1, len(names))
    per_dimension = {
        name: {
            "CCC": concordance(y[:, i], p[:, i]),
            "Pearson": pearson(y[:, i], p[:, i]),
            "MAE": float(np.mean(np.abs(y[:, i] - p[:, i])))
            if len(y)
            else math.nan,
        }
        for i, name in enumerate(names)
    }
    cccs = [part["CCC"] for part in per_dimension.values()]
    return {
        "CCC": float(np.mean(cccs)) if cccs else math.nan,
        **{f"CCC_{name}": per_dimension[name]["CCC"] for name in names},
        "per_dimension": per_dimension,
    }


def ccc_loss(predicted, target, eps=1e-8):
    """``1 - mean CCC`` over dimensions of one batch (a training loss).

    Arguments
    ---------
    predicted, target : torch.Tensor
        ``[B, D]`` values on the same scale (the CCC does not depend on a
        common scale: unit or corpus scale give the same loss).
    eps : float
        Keeps a batch of one utterance (no variance) finite.

    Example
    -------
    >>> y = torch.tensor([[0.1], [0.5], [0.9]])
    >>> float(ccc_loss(y, y)) < 1e-6, float(ccc_loss(0 * y + 0.5, y))
    (True, 1.0)
    """
    p_mean, y_mean = predicted.mean(dim=0), target.mean(dim=0)
    p_var = predicted.var(dim=0, unbiased=False)
    y_var = target.var(dim=0, unbiased=False)
    covariance = ((predicted - p_mean) * (target - y_mean)).mean(dim=0)
    ccc = 2 * covariance / (p_var + y_var + (p_mean - y_mean) ** 2 + eps)
    return 1 - ccc.mean()


@register_checkpoint_hooks
class DimensionMetrics:
    """Accumulates dimension values of a stage and summarises them.

    Values are kept on the corpus's scale, so the figures are those a
    reader computes from ``predictions.csv``. A Checkpointer recoverable,
    like :class:`EmotionMetrics`.

    Arguments
    ---------
    names : list of str
        The dimensions, in column order.

    Example
    -------
    >>> metrics = DimensionMetrics(["arousal"])
    >>> metrics.append(["a", "b"], torch.tensor([[1.0], [3.0]]),
    ...                torch.tensor([[1.5], [2.5]]))
    >>> metrics.summarize()["per_dimension"]["arousal"]["MAE"]
    0.5
    """

    def __init__(self, names):
        self.names = list(names)
        self.clear()

    def clear(self):
        """Forgets everything appended so far."""
        self.ids, self.predicted, self.true = [], [], []

    def append(self, ids, predicted, true):
        """Adds one batch of ``[B, D]`` predicted and true values."""
        self.ids.extend(ids)
        self.predicted.extend(
            torch.as_tensor(predicted).detach().cpu().tolist()
        )
        self.true.extend(torch.as_tensor(true).detach().cpu().tolist())

    def summarize(self):
        """:func:`dimension_figures` of everything appended."""
        return dimension_figures(self.names, self.true, self.predicted)

    @mark_as_saver
    @main_process_only
    def save(self, path):
        """Writes the accumulated state (for checkpoints)."""
        torch.save(
            {"ids": self.ids, "predicted": self.predicted, "true": self.true},
            path,
        )

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restores the state written by :meth:`save`."""
        state = torch.load(path, weights_only=True)
        self.ids = list(state["ids"])
        self.predicted = list(state["predicted"])
        self.true = list(state["true"])
