"""Calibration: how far a model's probabilities can be taken at their word.

A classifier is calibrated when, of the utterances it labels with
confidence 0.8, about 80 % are right. Two figures measure it on a test
set, and ``test_metrics.json`` holds both (``ECE``, ``NLL``):

- the expected calibration error (ECE, Guo et al., 2017), top-label form:
  the predictions are put into :data:`N_BINS` equal-width bins of their
  confidence (the largest probability; bins closed on the right, ``(lo,
  hi]``), and ECE is the sum over bins of ``|bin| / N * |accuracy(bin) -
  mean confidence(bin)|``;
- the negative log-likelihood (NLL): the mean of ``-log p(true class)``,
  natural log, with ``p`` floored at the smallest float64 step so that a
  probability written as 0 counts as very wrong rather than infinite.

Temperature scaling (Guo et al., 2017) recalibrates a trained model with
one number: the logits are divided by a temperature ``T > 0`` before the
softmax. The labels do not change (the order of the logits is kept); ``T >
1`` softens over-confident probabilities. :func:`fit_temperature` chooses
the ``T`` that minimises the NLL of held-out predictions (the recipes'
validation speakers, ``calibrate: True``); the temperature is kept in the
model's head (:class:`~sercaf_toolkit.lobes.model.EmotionHead`), so every
way of running the exported model gives the calibrated probabilities.

Authors
 * sercaf-toolkit developers 2026
"""

import math

import numpy as np
import torch

# Equal-width confidence bins of the ECE (the usual choice since Guo et al.).
N_BINS = 15
# The temperatures fit_temperature searches: wide enough for any model
# worth calibrating, bounded so that a validation set the model gets all
# right (whose NLL falls forever as T -> 0) still gives a number.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def rows_arrays(rows):
    """Probabilities and targets of ``(id, target, probabilities)`` rows.

    Arguments
    ---------
    rows : list of tuple
        As :func:`~sercaf_toolkit.evaluation.results.write_test_outputs`
        takes them.

    Returns
    -------
    probabilities : numpy.ndarray
        ``[N, classes]`` float64.
    targets : numpy.ndarray
        ``[N]`` int64 class indices.

    Example
    -------
    >>> probabilities, targets = rows_arrays([("a", 1, [0.3, 0.7])])
    >>> probabilities.shape, targets.tolist()
    ((1, 2), [1])
    """
    if not rows:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    probabilities = np.asarray([probs for _, _, probs in rows], dtype=float)
    targets = np.asarray([target for _, target, _ in rows], dtype=np.int64)
    return probabilities, targets


def reliability_bins(probabilities, targets, n_bins=N_BINS):
    """Per-bin counts, accuracies and confidences, and the ECE.

    Arguments
    ---------
    probabilities : array-like
        ``[N, classes]`` class probabilities.
    targets : array-like
        ``[N]`` true class indices.
    n_bins : int
        Equal-width confidence bins over ``[0, 1]``, each ``(lo, hi]``.

    Returns
    -------
    dict
        ``edges`` (``n_bins + 1`` values), ``count``, ``accuracy`` and
        ``confidence`` per bin (``None`` for an empty bin), ``ECE``
        (``None`` without predictions) and ``N``.

    Example
    -------
    >>> bins = reliability_bins([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]],
    ...                         [0, 1, 1], n_bins=5)
    >>> bins["count"], bins["accuracy"][4]
    ([0, 0, 1, 1, 1], 1.0)
    >>> round(bins["ECE"], 4)  # (|1-0.6| + |0-0.8| + |1-0.9|) / 3
    0.4333
    """
    probabilities = np.asarray(probabilities, dtype=float)
    targets = np.asarray(targets, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    result = {
        "edges": edges.tolist(),
        "count": [0] * n_bins,
        "accuracy": [None] * n_bins,
        "confidence": [None] * n_bins,
        "ECE": None,
        "N": int(len(targets)),
    }
    if not len(targets):
        return result
    confidence = probabilities.max(axis=1)
    # argmax takes the first of tied classes, as the predictions written
    # to predictions.csv do.
    correct = probabilities.argmax(axis=1) == targets
    # Bin i holds (edges[i], edges[i + 1]]; a confidence of exactly 1 is in
    # the last bin.
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    ece = 0.0
    for i in range(n_bins):
        chosen = index == i
        count = int(chosen.sum())
        if not count:
            continue
        accuracy = float(correct[chosen].mean())
        mean_confidence = float(confidence[chosen].mean())
        result["count"][i] = count
        result["accuracy"][i] = accuracy
        result["confidence"][i] = mean_confidence
        ece += count / len(targets) * abs(accuracy - mean_confidence)
    result["ECE"] = ece
    return result


def expected_calibration_error(probabilities, targets, n_bins=N_BINS):
    """Top-label ECE over ``n_bins`` equal-width confidence bins.

    Arguments
    ---------
    probabilities : array-like
        ``[N, classes]`` class probabilities.
    targets : array-like
        ``[N]`` true class indices.
    n_bins : int
        Number of bins.

    Returns
    -------
    float or None
        ``None`` without predictions.

    Example
    -------
    >>> expected_calibration_error([[0.75, 0.25]] * 4, [0, 0, 0, 1])
    0.0
    >>> expected_calibration_error([[0.9, 0.1]] * 2, [0, 1])
    0.4
    """
    return reliability_bins(probabilities, targets, n_bins)["ECE"]


def negative_log_likelihood(probabilities, targets):
    """Mean ``-log p(true class)`` (natural log).

    A probability of 0 is floored at the float64 machine epsilon (as
    scikit-learn's ``log_loss`` clips), so the figure stays finite.

    Arguments
    ---------
    probabilities : array-like
        ``[N, classes]`` class probabilities.
    targets : array-like
        ``[N]`` true class indices.

    Returns
    -------
    float or None
        ``None`` without predictions.

    Example
    -------
    >>> round(negative_log_likelihood([[0.5, 0.5], [0.2, 0.8]], [0, 1]), 4)
    0.4581
    """
    probabilities = np.asarray(probabilities, dtype=float)
    targets = np.asarray(targets, dtype=np.int64)
    if not len(targets):
        return None
    true = probabilities[np.arange(len(targets)), targets]
    true = np.maximum(true, np.finfo(np.float64).eps)
    return float(-np.log(true).mean())


def calibration_figures(rows):
    """``{"ECE": ..., "NLL": ...}`` of ``(id, target, probabilities)`` rows.

    What ``test_metrics.json`` holds, of the probabilities written to
    ``predictions.csv``.

    Example
    -------
    >>> figures = calibration_figures([("a", 0, [0.9, 0.1])])
    >>> round(figures["ECE"], 4), round(figures["NLL"], 4)
    (0.1, 0.1054)
    """
    probabilities, targets = rows_arrays(rows)
    return {
        "ECE": expected_calibration_error(probabilities, targets),
        "NLL": negative_log_likelihood(probabilities, targets),
    }


def scaled_nll(logits, targets, temperature):
    """NLL of ``softmax(logits / temperature)``.

    Arguments
    ---------
    logits : torch.Tensor
        ``[N, classes]`` logits, or log-probabilities (a shift of every
        row changes nothing).
    targets : torch.Tensor
        ``[N]`` class indices.
    temperature : float
        ``T > 0``.

    Returns
    -------
    float

    Example
    -------
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(scaled_nll(logits, torch.tensor([0, 0]), 1.0), 4)
    1.1269
    """
    logits = torch.as_tensor(logits, dtype=torch.float64)
    targets = torch.as_tensor(targets, dtype=torch.long)
    return float(
        torch.nn.functional.cross_entropy(logits / temperature, targets)
    )


def misclassified(logits, targets):
    """How many rows' true class does not have the largest logit.

    A tie with another class counts as right: dividing by any ``T``
    keeps the tie, so such a row cannot stop the NLL from falling as
    ``T -> 0`` either (see :func:`fit_temperature`).

    Example
    -------
    >>> misclassified(torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]),
    ...               torch.tensor([0, 1, 0]))
    1
    """
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets, dtype=torch.long)
    true = logits.gather(1, targets[:, None])[:, 0]
    return int((true < logits.max(dim=1).values).sum())


def fit_temperature(logits, targets, bounds=TEMPERATURE_BOUNDS):
    """The temperature that minimises the NLL of ``logits / T``.

    A bounded scalar search (Brent's method, scipy) over ``log T``: the
    NLL of ``logits / T`` has a single minimum along it (it is convex in
    ``1 / T``), the search needs no step size or starting point, and its
    result depends only on the rows it is given.

    When every row's largest logit is its true class's, the NLL falls
    without end as ``T -> 0`` (each step sharpens only right answers):
    the rows then hold no evidence for any temperature, and 1 is
    returned rather than the lower bound, which would make the model's
    next mistake on other data as confident as can be.

    Arguments
    ---------
    logits : torch.Tensor or array-like
        ``[N, classes]`` held-out logits, or log-probabilities of the
        uncalibrated model (the same thing up to a shift per row).
    targets : torch.Tensor or array-like
        ``[N]`` true class indices.
    bounds : tuple of float
        The smallest and largest temperature considered.

    Returns
    -------
    float
        ``T`` within ``bounds``.

    Raises
    ------
    ValueError
        Without rows.

    Example
    -------
    >>> generator = torch.Generator().manual_seed(0)
    >>> targets = torch.randint(0, 4, (2000,), generator=generator)
    >>> logits = torch.randn(2000, 4, generator=generator)
    >>> logits[torch.arange(2000), targets] += 1.0
    >>> # The same model, three times as confident: T ~ 3 undoes it.
    >>> round(fit_temperature(3 * logits, targets), 1)
    3.0
    >>> fit_temperature(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    1.0
    """
    from scipy.optimize import minimize_scalar

    logits = torch.as_tensor(logits, dtype=torch.float64)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if not len(targets):
        raise ValueError("fit_temperature needs at least one row")
    if not misclassified(logits, targets):
        return 1.0
    low, high = (math.log(b) for b in bounds)
    result = minimize_scalar(
        lambda log_t: scaled_nll(logits, targets, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def block_of(brain):
    """``{"calibration": ...}`` of a calibrated Brain's test, or ``{}``.

    What :func:`~sercaf_toolkit.evaluation.results.write_run_outputs`
    adds to ``test_metrics.json`` after
    :meth:`~sercaf_toolkit.training.brain.SERBrain.calibrate` and the test:
    the temperature, where it was fitted, the validation NLL before and
    after, and the test ECE and NLL before (temperature 1) and after (the
    probabilities in ``predictions.csv``, as the top-level ``ECE`` and
    ``NLL``).

    Example
    -------
    >>> class Uncalibrated:
    ...     calibration = None
    >>> block_of(Uncalibrated())
    {}
    """
    block = getattr(brain, "calibration", None)
    return {"calibration": dict(block)} if block else {}
