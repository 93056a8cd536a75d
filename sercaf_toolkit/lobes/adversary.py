"""Speaker-adversarial training: a speaker classifier behind gradient reversal.

On speaker-independent folds a model can learn the training speakers'
colouring (their pitch level, channel, voice quality) faster than the
emotion, and that does not carry over to unseen speakers. Ganin and
Lempitsky's domain-adversarial training (2015), applied to speakers as in
speaker-invariant SER (e.g. Li et al., 2019): a speaker classifier learns
to tell the training speakers apart from the fused embedding, while the
gradient it sends back into the model is reversed, so the model learns an
embedding that hides the speaker. The classifier is a training device
only: it is not part of :class:`~sercaf_toolkit.lobes.model.DualStreamModel`
and so never of a checkpoint's ``model`` or the exported model.

Authors
 * sercaf-toolkit developers 2026
"""

import math

import torch

SCHEDULES = ("dann", "constant")


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx, inputs, scale):
        ctx.scale = scale
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.scale * grad_output, None


def reverse_gradient(inputs, scale=1.0):
    """Returns ``inputs``; backward, their gradient times ``-scale``.

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> reverse_gradient(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    """
    return _ReverseGradient.apply(inputs, float(scale))


def scheduled_weight(weight, progress, schedule="dann", gamma=10.0):
    """The reversal's scale at ``progress`` (0 to 1) through training.

    ``dann``: Ganin et al.'s ramp ``weight * (2 / (1 + exp(-gamma p)) - 1)``,
    0 at the start (the speaker classifier learns first, while the emotion
    features form) and close to ``weight`` from about a third of the way;
    ``constant``: ``weight`` throughout.

    Example
    -------
    >>> scheduled_weight(0.5, 0.0), round(scheduled_weight(0.5, 1.0), 5)
    (0.0, 0.49995)
    >>> scheduled_weight(0.5, 0.0, "constant")
    0.5
    """
    if schedule == "constant":
        return float(weight)
    if schedule != "dann":
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule}")
    progress = min(max(float(progress), 0.0), 1.0)
    return float(weight) * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class SpeakerAdversary(torch.nn.Module):
    """Speaker classifiers on the fused embedding (and the streams), reversed.

    Each classifier (Linear-ReLU-dropout-Linear) predicts which training
    speaker an embedding comes from; its input passes a gradient-reversal
    layer whose scale follows :func:`scheduled_weight` (set by the trainer
    with :meth:`set_progress`). The loss is the mean of the classifiers'
    cross-entropies: minimising it trains the classifiers, and through the
    reversal pushes the model to remove what tells the speakers apart.

    Arguments
    ---------
    input_size : int
        Width of the fused embedding.
    n_speakers : int
        Number of training speakers.
    stream_sizes : list of int, optional
        Widths of the streams' frames; with ``on_streams``, each stream's
        mean-pooled output gets a speaker classifier too.
    hidden_size : int
        Width of each classifier's hidden layer.
    weight : float
        The reversal's largest scale (0: the model is not pushed at all).
    schedule : str
        ``dann`` (a ramp from 0) or ``constant``.
    on_streams : bool
        Whether the streams' pooled outputs get classifiers as well.
    dropout : float
        Dropout before each classifier's output layer.

    Example
    -------
    >>> adversary = SpeakerAdversary(8, n_speakers=3, weight=1.0)
    >>> adversary.set_progress(1.0)
    >>> embedding = torch.randn(4, 8, requires_grad=True)
    >>> loss = adversary.loss(embedding, [], torch.tensor([0, 1, 2, 0]))
    >>> loss.backward()
    >>> loss.shape, embedding.grad.shape
    (torch.Size([]), torch.Size([4, 8]))
    """

    def __init__(
        self,
        input_size,
        n_speakers,
        stream_sizes=(),
        hidden_size=64,
        weight=0.1,
        schedule="dann",
        on_streams=False,
        dropout=0.1,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {SCHEDULES}, got {schedule}"
            )
        self.weight = float(weight)
        self.schedule = schedule
        self.on_streams = bool(on_streams)
        sizes = [input_size] + (list(stream_sizes) if on_streams else [])
        self.classifiers = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(size, hidden_size),
                torch.nn.ReLU(),
                torch.nn.Dropout(dropout),
                torch.nn.Linear(hidden_size, n_speakers),
            )
            for size in sizes
        )
        self.scale = scheduled_weight(self.weight, 0.0, schedule)

    def set_progress(self, progress):
        """Sets the reversal's scale for ``progress`` (0 to 1) of training."""
        self.scale = scheduled_weight(self.weight, progress, self.schedule)

    def forward(self, embedding, streams=()):
        """Speaker logits of the embedding (then of each pooled stream).

        Arguments
        ---------
        embedding : torch.Tensor
            ``[B, input_size]`` fused embeddings.
        streams : list of torch.Tensor
            ``[B, D_i]`` pooled stream outputs (used with ``on_streams``).

        Returns
        -------
        list of torch.Tensor
            ``[B, n_speakers]`` logits per classifier.
        """
        inputs = [embedding] + (list(streams) if self.on_streams else [])
        return [
            classifier(reverse_gradient(x, self.scale))
            for classifier, x in zip(self.classifiers, inputs)
        ]

    def loss(self, embedding, streams, speakers):
        """Mean cross-entropy of the classifiers against ``speakers``."""
        logits = self(embedding, streams)
        losses = [
            torch.nn.functional.cross_entropy(x.float(), speakers)
            for x in logits
        ]
        return sum(losses) / len(losses)
