"""The multi-stream model and its classifier head.

Authors
 * sercaf-toolkit developers 2026
"""

from typing import NamedTuple

import torch

from sercaf_toolkit.lobes.stream import Stream, built


class PassThrough(torch.nn.Module):
    """Returns its first input unchanged, ignoring any others.

    Fills the ``compute_features`` and ``mean_var_norm`` slots of
    SpeechBrain's ``EncoderClassifier`` for models that take raw waveforms.

    Example
    -------
    >>> PassThrough()(torch.ones(2), torch.zeros(2))
    tensor([1., 1.])
    """

    def forward(self, x, *args, **kwargs):
        """Returns ``x``."""
        return x


class EmotionHead(torch.nn.Module):
    """Classifier head: dropout, linear layer, temperature, log-softmax.

    Usable as the ``classifier`` of SpeechBrain's ``EncoderClassifier``,
    whose ``classify_batch`` takes the maximum of these log-probabilities.

    The logits are divided by ``temperature`` (a buffer, 1 unless the model
    was calibrated, see :mod:`sercaf_toolkit.evaluation.calibration`)
    before the log-softmax: the temperature is saved with the weights, so
    ``EncoderClassifier``, ``sercaf predict`` and the ONNX export all give
    the calibrated probabilities. Dividing by 1 changes no bit, and a state
    dict saved before the buffer existed loads with a temperature of 1.

    Arguments
    ---------
    input_size : int
        Width of the utterance embedding.
    n_classes : int
        Number of emotion classes.
    dropout : float
        Dropout on the embedding.

    Example
    -------
    >>> head = EmotionHead(input_size=8, n_classes=4)
    >>> log_probs = head(torch.randn(3, 8))
    >>> total = log_probs.exp().sum(dim=-1)
    >>> log_probs.shape, torch.allclose(total, torch.ones(3))
    (torch.Size([3, 4]), True)
    >>> embeddings = torch.randn(1, 8)
    >>> head.set_temperature(2.0)
    >>> softer = head(embeddings)
    >>> head.set_temperature(1.0)
    >>> torch.allclose(softer, torch.log_softmax(head(embeddings) / 2, -1))
    True
    >>> old = {k: v for k, v in head.state_dict().items() if k != "temperature"}
    >>> head.load_state_dict(old)  # saved before temperatures existed
    <All keys matched successfully>
    """

    def __init__(self, input_size, n_classes, dropout=0.0):
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(input_size, n_classes)
        self.n_classes = n_classes
        self.register_buffer("temperature", torch.ones(()))
        self.register_load_state_dict_pre_hook(_temperature_defaults_to_one)

    def forward(self, embeddings):
        """Maps ``[B, input_size]`` embeddings to ``[B, classes]`` log-probs."""
        logits = self.linear(self.dropout(embeddings))
        return torch.log_softmax(logits / self.temperature, dim=-1)

    def set_temperature(self, value):
        """Divides the logits by ``value`` (> 0) from now on."""
        if not value > 0:
            raise ValueError(f"a temperature must be > 0, got {value}")
        self.temperature.fill_(float(value))


class DimensionHead(torch.nn.Module):
    """Regression head: dropout, linear layer, one output per dimension.

    The linear layer predicts each dimension on a unit scale (0 to 1); the
    corpus's scale ``[low, high]`` (IEMOCAP's 1-5, MSP-Podcast's 1-7) is a
    buffer of the head, so the exported model gives values on the scale
    its corpus was annotated on, and :meth:`to_unit` maps targets to the
    unit scale the loss is computed on. ``dimensions`` names the outputs.

    Usable as the ``classifier`` of SpeechBrain's ``EncoderClassifier``:
    ``classify_batch`` then returns these values as its scores (its label,
    an argmax over dimensions, means nothing; see docs/dimensional.md).

    Arguments
    ---------
    input_size : int
        Width of the utterance embedding.
    dimensions : list of str
        The dimensions' names, in output order.
    scale : tuple of float
        ``(low, high)``: the corpus's scale.
    dropout : float
        Dropout on the embedding.
    loss_weight : float
        The weight of this head's loss (1 - mean CCC) beside a classifier's
        NLL in a joint model (``task: joint``); unused alone.

    Example
    -------
    >>> head = DimensionHead(8, ["arousal", "valence"], scale=(1, 5))
    >>> head(torch.randn(3, 8)).shape
    torch.Size([3, 2])
    >>> head.to_unit(torch.tensor([1.0, 3.0, 5.0]))
    tensor([0.0000, 0.5000, 1.0000])
    >>> x = torch.randn(2, 8)
    >>> torch.allclose(head(x), head.from_unit(head.unit(x)))
    True
    """

    def __init__(
        self,
        input_size,
        dimensions,
        scale=(1.0, 5.0),
        dropout=0.0,
        loss_weight=1.0,
    ):
        super().__init__()
        self.loss_weight = float(loss_weight)
        low, high = (float(v) for v in scale)
        if not high > low:
            raise ValueError(f"a scale needs low < high, got {list(scale)}")
        self.dimensions = list(dimensions)
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(input_size, len(self.dimensions))
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("high", torch.tensor(high))

    def unit(self, embeddings):
        """``[B, input_size]`` embeddings -> ``[B, D]`` on the unit scale."""
        return self.linear(self.dropout(embeddings))

    def forward(self, embeddings):
        """``[B, input_size]`` embeddings -> ``[B, D]`` on the corpus scale."""
        return self.from_unit(self.unit(embeddings))

    def to_unit(self, values):
        """Corpus-scale values -> the unit scale (0 at low, 1 at high)."""
        return (values - self.low) / (self.high - self.low)

    def from_unit(self, values):
        """Unit-scale values -> the corpus scale."""
        return self.low + (self.high - self.low) * values


def _temperature_defaults_to_one(module, state_dict, prefix, *args):
    """Lets a state dict saved before heads had a temperature load.

    Models exported (and checkpoints written) before calibration existed
    hold no ``temperature``: they were uncalibrated, i.e. temperature 1.
    Filled in here, strict loading (checkpoint recovery) accepts them and
    SpeechBrain's non-strict loading warns about no missing key.
    """
    state_dict.setdefault(prefix + "temperature", torch.ones(()))


class Encoding(NamedTuple):
    """What :meth:`DualStreamModel.encode` computes on the way to the heads.

    ``embedding`` is what the heads see (the fused embedding, with the
    standardised functionals appended when the model has them), ``fused``
    the fusion block's output and ``streams`` each stream's ``(frames,
    mask)``: the inputs of training devices such as the speaker adversary
    (:mod:`sercaf_toolkit.lobes.adversary`).
    """

    embedding: torch.Tensor
    fused: torch.Tensor
    streams: list


class DualStreamModel(torch.nn.Module):
    """Streams, one fusion block and a classifier head, wired by YAML.

    ``forward(wavs, wav_lens)`` returns the fused utterance embedding, so
    the model serves as the ``embedding_model`` of SpeechBrain's
    ``EncoderClassifier`` and ``model.classifier`` as its ``classifier``.
    Any number of streams is accepted (the fusion block decides whether it
    can take them); every stream receives the same waveforms.

    Arguments
    ---------
    streams : list of torch.nn.Module or callable
        Each ``(wavs, wav_lens) -> (frames [B, T_i, D_i], mask [B, T_i])``
        with an ``output_size`` attribute (best a
        :class:`~sercaf_toolkit.lobes.stream.Stream`), or a factory of one
        called without arguments (``!name:`` in YAML). Streams are built in
        order, then the fusion block, then the head, so that the random
        draws of these blocks depend only on the blocks the model has.
    fusion : torch.nn.Module or callable
        A fusion block, or a factory called as ``fusion(input_sizes=[...])``
        with the streams' widths (``!name:`` in YAML).
    classifier : torch.nn.Module or callable or None
        A head mapping embeddings to log-probabilities, or a factory called
        as ``classifier(input_size=fusion.output_size)``; None for a model
        of dimensions only (``task: dimensional``).
    regressor : torch.nn.Module or callable or None
        A :class:`DimensionHead` (or a factory of one, called like
        ``classifier``) for ``task: dimensional`` or ``joint``; built after
        the classifier, so that a model without one draws the same random
        numbers as before regressors existed.
    functionals : torch.nn.Module or callable or None
        An utterance-level branch ``(wavs, wav_lens) -> [B, F]`` with an
        ``output_size`` (a
        :class:`~sercaf_toolkit.lobes.egemaps.FunctionalsBranch`, or a
        factory of one called without arguments), whose output is appended
        to the fused embedding before the heads (whose linear layers then
        add a linear classifier of it); None (the default) for none.

    Example
    -------
    >>> from functools import partial
    >>> from sercaf_toolkit.lobes.fusion import CrossAttentionFusion
    >>> from sercaf_toolkit.lobes.scratch import DPCNN, TextRCNN
    >>> from sercaf_toolkit.lobes.spectrogram import LogMel, SpectrogramStream
    >>> model = DualStreamModel(
    ...     streams=[
    ...         SpectrogramStream(LogMel(n_mels=40), DPCNN(40, 16, 2)),
    ...         SpectrogramStream(LogMel(n_mels=40), TextRCNN(40, 16, 8)),
    ...     ],
    ...     fusion=partial(
    ...         CrossAttentionFusion, output_size=12, attention_size=8
    ...     ),
    ...     classifier=partial(EmotionHead, n_classes=4),
    ... )
    >>> wavs, wav_lens = torch.randn(2, 16000), torch.tensor([1.0, 0.7])
    >>> model(wavs, wav_lens).shape
    torch.Size([2, 12])
    >>> model.log_probabilities(wavs, wav_lens).shape
    torch.Size([2, 4])
    """

    def __init__(
        self, streams, fusion, classifier=None, regressor=None, functionals=None
    ):
        super().__init__()
        if classifier is None and regressor is None:
            raise ValueError("a model needs a classifier, a regressor or both")
        self.streams = torch.nn.ModuleList(built(s) for s in streams)
        input_sizes = [stream.output_size for stream in self.streams]
        self.fusion = built(fusion, input_sizes=input_sizes)
        size = self.fusion.output_size
        # Registered only when there is one (a model without keeps its
        # state dict keys); it has no random draws, so the heads built
        # after it start from the weights they started from without it.
        if functionals is not None:
            self.functionals = built(functionals)
            size += self.functionals.output_size
        else:
            self.functionals = None
        self.classifier = (
            None if classifier is None else built(classifier, input_size=size)
        )
        # Registered only when there is one: a categorical model's state
        # dict (and its checkpoints and exports) keep their keys.
        if regressor is not None:
            self.regressor = built(regressor, input_size=size)
        else:
            self.regressor = None
        self.output_size = size

    def forward(self, wavs, wav_lens=None):
        """Embeds ``[B, samples]`` waveforms into ``[B, output_size]``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` 16 kHz waveforms, padded at the end.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (SpeechBrain convention).

        Returns
        -------
        torch.Tensor
            ``[batch, output_size]`` utterance embeddings.
        """
        return self.encode(wavs, wav_lens).embedding

    def encode(self, wavs, wav_lens=None):
        """The embedding the heads see, and what it was computed from.

        Returns
        -------
        Encoding
            ``embedding`` ``[B, output_size]``, ``fused`` (the fusion
            block's output) and ``streams`` (each stream's frames and mask).
        """
        outputs = [stream(wavs, wav_lens) for stream in self.streams]
        features = [frames for frames, _ in outputs]
        masks = [mask for _, mask in outputs]
        fused = self.fusion(features, masks)
        embedding = fused
        if self.functionals is not None:
            values = self.functionals(wavs, wav_lens).to(fused.dtype)
            embedding = torch.cat([fused, values], dim=-1)
        return Encoding(embedding, fused, outputs)

    def log_probabilities(self, wavs, wav_lens=None):
        """Class log-probabilities ``[B, n_classes]`` of a waveform batch."""
        return self.classifier(self(wavs, wav_lens))

    def dimensions(self, wavs, wav_lens=None):
        """Dimension values ``[B, D]`` on the corpus's scale."""
        return self.regressor(self(wavs, wav_lens))

    @property
    def task(self):
        """``categorical``, ``dimensional`` or ``joint``: the model's heads."""
        if self.regressor is None:
            return "categorical"
        return "dimensional" if self.classifier is None else "joint"

    def task_outputs(self, wavs, wav_lens=None):
        """Log-probabilities and unit-scale dimensions (None where no head).

        Returns
        -------
        tuple
            ``([B, classes] log-probabilities or None, [B, D] dimension
            values on the unit scale or None)``, from one embedding.
        """
        embeddings = self(wavs, wav_lens)
        if self.regressor is None:
            return self.classifier(embeddings), None
        return self.heads(embeddings)

    def heads(self, embeddings):
        """What the model predicts from ``[B, output_size]`` embeddings.

        ``[B, classes]`` log-probabilities for a categorical model; for a
        model with a regressor, the pair of :meth:`task_outputs`.
        """
        if self.regressor is None:
            return self.classifier(embeddings)
        log_probs = None
        if self.classifier is not None:
            log_probs = self.classifier(embeddings)
        return log_probs, self.regressor.unit(embeddings)


class LogProbabilities(torch.nn.Module):
    """Wraps a model so that ``forward`` returns its log-probabilities.

    Training under DistributedDataParallel must go through ``forward``;
    :class:`DualStreamModel`'s forward returns embeddings (for
    ``EncoderClassifier``), so the Brain trains this wrapper instead. The
    wrapped model's state dict is unchanged.

    Arguments
    ---------
    model : DualStreamModel
        Any module with ``log_probabilities(wavs, wav_lens)``.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wavs, wav_lens=None, with_encoding=False):
        """``[B, n_classes]`` log-probabilities of a waveform batch.

        A model with a regressor (``task: dimensional`` or ``joint``) gives
        the pair of :meth:`DualStreamModel.task_outputs` instead. With
        ``with_encoding``, the pair ``(predictions, Encoding)``: what a
        training device (the speaker adversary) needs besides, from the
        same forward pass.
        """
        if not with_encoding:
            if getattr(self.model, "regressor", None) is None:
                return self.model.log_probabilities(wavs, wav_lens)
            return self.model.task_outputs(wavs, wav_lens)
        encoding = self.model.encode(wavs, wav_lens)
        return self.model.heads(encoding.embedding), encoding


def describe_model(model):
    """The names that identify a system in a results table.

    Example
    -------
    >>> from functools import partial
    >>> from sercaf_toolkit.lobes import (
    ...     DPCNN, DualStreamModel, EmotionHead, LogMel, SpectrogramStream,
    ...     SumFusion)
    >>> stream = SpectrogramStream(LogMel(n_mels=8), DPCNN(8, 4, 1))
    >>> model = DualStreamModel([stream, stream], partial(SumFusion,
    ...     output_size=4), partial(EmotionHead, n_classes=2))
    >>> describe_model(model)
    {'streams': ['DPCNN', 'DPCNN'], 'stream_kinds': ['scratch', 'scratch'], \
'fusion': 'SumFusion'}
    """
    streams = list(model.streams)
    return {
        "streams": [
            s.describe() if isinstance(s, Stream) else type(s).__name__
            for s in streams
        ],
        "stream_kinds": [getattr(s, "kind", "scratch") for s in streams],
        "fusion": type(model.fusion).__name__,
    }
