"""The pre-trained speech model stream (wav2vec2, HuBERT, WavLM).

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib
from collections.abc import Mapping

import torch
import transformers

from sercaf_toolkit.lobes.masking import lengths_to_mask, mask_waveforms
from sercaf_toolkit.lobes.stream import Stream


def _in_graph_capture():
    """Whether ONNX export, ``torch.jit.trace`` or ``torch.compile`` runs.

    Their graphs must hold for every batch: branches on the lengths of
    the batch at hand (which only save time) are left out.
    """
    return (
        torch.onnx.is_in_onnx_export()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    )


class LengthAwareGroupNorm(torch.nn.GroupNorm):
    """Per-channel GroupNorm whose statistics cover only the valid frames.

    The base models (wav2vec2-base, HuBERT-base, WavLM-base) normalise the
    first CNN layer's output over *time*, so padding changes every frame of
    a padded utterance. This drop-in replacement keeps the original
    parameters (same names, same tensors) and, when ``valid_frames`` is set,
    computes each utterance's mean and variance over its own frames only.

    Arguments
    ---------
    group_norm : torch.nn.GroupNorm
        The module to replace; must have one group per channel.

    Example
    -------
    >>> plain = torch.nn.GroupNorm(4, 4)
    >>> norm = LengthAwareGroupNorm(plain)
    >>> x = torch.randn(1, 4, 6)
    >>> padded = torch.cat([x, torch.randn(1, 4, 3)], dim=-1)
    >>> norm.valid_frames = torch.tensor([6])
    >>> torch.allclose(norm(padded)[..., :6], plain(x), atol=1e-5)
    True
    >>> torch.allclose(norm(padded), norm._masked(padded), atol=1e-5)
    True
    """

    def __init__(self, group_norm):
        if group_norm.num_groups != group_norm.num_channels:
            raise ValueError("LengthAwareGroupNorm needs one group per channel")
        super().__init__(
            group_norm.num_groups,
            group_norm.num_channels,
            eps=group_norm.eps,
            affine=group_norm.affine,
        )
        if group_norm.affine:
            self.weight = group_norm.weight
            self.bias = group_norm.bias
        self.valid_frames = None

    def forward(self, x):
        """Normalises ``[batch, channels, time]`` over valid frames.

        Each utterance's mean and variance come from ``torch.var_mean``
        over a view of its valid frames (a numerically stable one-pass
        kernel: no copies, no full-size temporaries), and the batch is
        normalised in one fused multiply-add: about the cost of the native
        GroupNorm, where the masked sums of :meth:`_masked` made several
        full-size temporaries (and the base model's training step ~15 %
        slower). An unpadded batch takes the native GroupNorm itself.
        """
        if self.valid_frames is None:
            return super().forward(x)
        if _in_graph_capture():
            # A loop over the batch would bake the trace's batch size
            # and lengths into the graph.
            return self._masked(x)
        length = x.shape[-1]
        frames = [min(max(int(n), 1), length) for n in self.valid_frames]
        if min(frames) == length:
            return super().forward(x)
        variances, means = [], []
        for index, count in enumerate(frames):
            valid = x[index, :, :count]
            # Statistics in float32, under autocast too.
            variance, mean = torch.var_mean(valid.float(), dim=-1, correction=0)
            variances.append(variance)
            means.append(mean)
        mean = torch.stack(means)  # [B, C]
        scale = torch.rsqrt(torch.stack(variances) + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        return torch.addcmul(
            shift.unsqueeze(-1).to(x.dtype), x, scale.unsqueeze(-1).to(x.dtype)
        )

    def _masked(self, x):
        """The same statistics as masked sums over the whole batch."""
        mask = lengths_to_mask(self.valid_frames.to(x.device), x.shape[-1])
        weights = mask.unsqueeze(1).float()
        x_float = x.float()  # statistics in float32 under autocast too
        # At least one frame, as in forward (an empty utterance).
        count = weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
        mean = (x_float * weights).sum(dim=-1, keepdim=True) / count
        centred = x_float - mean
        var = (centred.pow(2) * weights).sum(dim=-1, keepdim=True) / count
        normalised = centred / torch.sqrt(var + self.eps)
        if self.affine:
            normalised = normalised * self.weight[:, None] + self.bias[:, None]
        return normalised.to(x.dtype)


class LastLayer(torch.nn.Module):
    """An SSL stream's output: its last transformer layer.

    Example
    -------
    >>> hidden = [torch.zeros(1, 2, 3), torch.ones(1, 2, 3)]
    >>> LastLayer(num_layers=2)(hidden).sum().item()
    6.0
    """

    #: Whether the model must return every layer's hidden states.
    needs_hidden_states = False

    def __init__(self, num_layers=None):
        super().__init__()

    def forward(self, hidden_states):
        """``[B, T, D]``: the last of the layers' hidden states."""
        return hidden_states[-1]


class WeightedLayerSum(torch.nn.Module):
    """An SSL stream's output: a learnable softmax-weighted sum of layers.

    As in SUPERB: every hidden state (the CNN's projection and each
    transformer layer) weighted by the softmax of one learnt scalar each,
    all equal at the start.

    Arguments
    ---------
    num_layers : int
        How many hidden states the model gives (transformer layers + 1).

    Example
    -------
    >>> hidden = [torch.zeros(1, 2, 3), torch.ones(1, 2, 3)]
    >>> WeightedLayerSum(num_layers=2)(hidden).mean().item()
    0.5
    """

    needs_hidden_states = True

    def __init__(self, num_layers):
        super().__init__()
        self.weights = torch.nn.Parameter(torch.zeros(num_layers))

    def forward(self, hidden_states):
        """``[B, T, D]``: the weighted sum of ``[B, T, D]`` hidden states."""
        hidden = torch.stack(tuple(hidden_states), dim=0)
        weights = torch.softmax(self.weights, dim=0)
        return (weights.view(-1, 1, 1, 1) * hidden).sum(dim=0)


# The names an exported model (or a Python user) may give for ``output``.
SSL_OUTPUTS = {"last": LastLayer, "weighted_sum": WeightedLayerSum}


class SSLStream(Stream):
    """A HuggingFace wav2vec2 / HuBERT / WavLM model as a length-aware stream.

    SpeechBrain's ``integrations.huggingface.Wav2Vec2`` wrapper is not used
    here, for three reasons: it layer-normalises the waveform over the
    padding (a padded batch then differs from single-file results), it can
    only be built from a hub id or folder (an exported model must be
    buildable from the config written in its ``hyperparams.yaml``, because
    ``EncoderClassifier.from_hparams`` builds the modules before it collects
    any file), and a frozen model goes back to training mode (dropout on)
    when Brain calls ``train()``. Here the waveform is standardised over each
    utterance's valid samples, the first CNN layer's GroupNorm is made
    length-aware, the transformer gets the attention mask (of a padded
    batch: an unpadded one needs none), and frozen parts stay in evaluation
    mode: padding changes no valid frame.

    Arguments
    ---------
    source : str or dict or callable
        HuggingFace hub id (``facebook/wav2vec2-base``,
        ``facebook/hubert-base-ls960``, ``microsoft/wavlm-base-plus``, ...)
        or a local folder with a saved model and its feature extractor; or
        ``{"config": <HF config dict>, "do_normalize": bool}`` to build the
        architecture without weights (they come from a checkpoint), as
        :attr:`architecture` returns it; or a function returning one of
        those, called here (so that a recipe that builds its model folder,
        like the demo's tiny wav2vec2, builds it only when the SSL stream
        is built).
    save_path : str, optional
        Cache folder for hub downloads.
    freeze : bool
        Freeze the whole model (a fixed feature extractor).
    freeze_feature_extractor : bool
        When fine-tuning, keep the CNN feature extractor frozen (the usual
        practice, and the default).
    output : str or callable
        What the stream gives of the model's layers: a factory called with
        ``num_layers`` (the hidden states the model gives), such as
        :class:`LastLayer` (the last transformer layer, the default) or
        :class:`WeightedLayerSum` (a learnable softmax-weighted sum of all
        of them, as in SUPERB); or one of their names, ``"last"`` or
        ``"weighted_sum"``.
    apply_spec_augment : bool
        Let the HF model mask time steps in training (its own SpecAugment).

    Example
    -------
    >>> import tempfile
    >>> from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model
    >>> source = build_tiny_ssl_model(tempfile.mkdtemp())
    >>> stream = SSLStream(source, output="weighted_sum")
    >>> feats, mask = stream(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, mask.sum(dim=1).tolist(), stream.output_size
    (torch.Size([2, 49, 32]), [49, 24], 32)
    >>> same_shape = SSLStream(stream.architecture)  # no weights read
    >>> same_shape.output_size
    32
    """

    kind = "pretrained"
    pretrained_source_argument = "source"

    def __init__(
        self,
        source,
        save_path=None,
        freeze=False,
        freeze_feature_extractor=True,
        output=LastLayer,
        apply_spec_augment=False,
    ):
        super().__init__()
        if isinstance(output, str):
            if output not in SSL_OUTPUTS:
                raise ValueError(f"output must be one of {list(SSL_OUTPUTS)}")
            output = SSL_OUTPUTS[output]
        if callable(source):
            source = source()
        if isinstance(source, Mapping):
            config = dict(source["config"])
            config = transformers.AutoConfig.for_model(
                config.pop("model_type"), **config
            )
            self.model = transformers.AutoModel.from_config(config)
            self.normalize_wav = bool(source["do_normalize"])
        else:
            self.model = transformers.AutoModel.from_pretrained(
                source, cache_dir=save_path
            )
            extractor = transformers.AutoFeatureExtractor.from_pretrained(
                source, cache_dir=save_path
            )
            self.normalize_wav = bool(getattr(extractor, "do_normalize", False))
        self.model.config.apply_spec_augment = apply_spec_augment
        self.freeze = freeze
        self.freeze_feature_extractor = freeze_feature_extractor
        if freeze:
            self.model.requires_grad_(False)
        elif freeze_feature_extractor:
            # HF's own freezing also stops the CNN from asking for input
            # gradients, so backward never runs through the frozen CNN.
            self.model.feature_extractor._freeze_parameters()
        first_conv = self.model.feature_extractor.conv_layers[0]
        if isinstance(first_conv.layer_norm, torch.nn.GroupNorm):
            first_conv.layer_norm = LengthAwareGroupNorm(first_conv.layer_norm)
        self.output_size = self.model.config.hidden_size
        self.output = output(num_layers=self.model.config.num_hidden_layers + 1)
        if self.output.needs_hidden_states:
            # LayerDrop skips layers in training, and transformers then
            # records fewer hidden states: a sum over all layers needs
            # every layer.
            self.model.config.layerdrop = 0.0
        self.train()

    @property
    def architecture(self):
        """The ``source`` that rebuilds this stream's shape without weights."""
        return {
            "config": self.model.config.to_dict(),
            "do_normalize": self.normalize_wav,
        }

    # The stream interface (sercaf_toolkit.lobes.stream.Stream) ---------

    def pretrained_parameters(self):
        """The model's trainable weights (the layer weights are not)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def pretrained_held(self):
        """Runs the model without gradients, as if frozen (warm-up)."""
        frozen, self.freeze = self.freeze, True
        try:
            yield
        finally:
            self.freeze = frozen

    def export_arguments(self):
        """The architecture replaces the hub id or folder of training."""
        return {"source": self.architecture}

    def describe(self):
        """The model family, as its config names it (``wav2vec2``, ...)."""
        return self.model.config.model_type

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models exported before the output became a module kept the
        # weighted sum's weights as ``layer_weights``.
        old = prefix + "layer_weights"
        if old in state_dict:
            state_dict[prefix + "output.weights"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode=True):
        """Sets training mode, keeping frozen parts in evaluation mode.

        SpeechBrain's Brain calls ``train()`` on every module at each epoch;
        without this a "frozen" model would run with dropout on.
        """
        super().train(mode)
        if self.freeze:
            self.model.eval()
        elif self.freeze_feature_extractor:
            self.model.feature_extractor.eval()
        return self

    @contextlib.contextmanager
    def _group_norm_lengths(self, sample_lengths):
        """Tells the first CNN layer's GroupNorm how many frames are valid."""
        first_layer = self.model.feature_extractor.conv_layers[0]
        norm = first_layer.layer_norm
        if not isinstance(norm, LengthAwareGroupNorm):
            yield
            return
        conv = first_layer.conv
        frames = (sample_lengths - conv.kernel_size[0]) // conv.stride[0] + 1
        norm.valid_frames = frames
        try:
            yield
        finally:
            norm.valid_frames = None

    def forward(self, wavs, wav_lens=None):
        """Encodes a padded batch of 16 kHz waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms, padded at the end.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (SpeechBrain convention).

        Returns
        -------
        features : torch.Tensor
            ``[batch, frames, output_size]``; padded frames are zero.
        mask : torch.Tensor
            ``[batch, frames]`` bool, ``True`` on valid frames.
        """
        wavs, lengths, sample_mask = mask_waveforms(wavs, wav_lens)
        if self.normalize_wav:
            wavs = self._standardise(wavs, sample_mask)
        frame_lengths = self.model._get_feat_extract_output_lengths(lengths)

        # An unpadded batch needs no attention mask (an all-ones mask
        # changes nothing but costs ~6 % of a base model's step); an
        # exported graph must keep it for the batches it will meet.
        padded = _in_graph_capture() or bool((lengths < wavs.shape[1]).any())
        track_grad = torch.is_grad_enabled() and not self.freeze
        with torch.set_grad_enabled(track_grad):
            with self._group_norm_lengths(lengths):
                out = self.model(
                    wavs,
                    attention_mask=sample_mask.long() if padded else None,
                    output_hidden_states=self.output.needs_hidden_states,
                )
        hidden = (
            out.hidden_states
            if self.output.needs_hidden_states
            else (out.last_hidden_state,)
        )
        features = self.output(hidden)
        mask = lengths_to_mask(frame_lengths, features.shape[1])
        return features * mask.unsqueeze(-1).to(features.dtype), mask

    @staticmethod
    def _standardise(wavs, sample_mask, eps=1e-7):
        """Zero mean, unit variance over valid samples (as HF's extractor)."""
        weights = sample_mask.to(wavs.dtype)
        count = weights.sum(dim=1, keepdim=True)
        mean = (wavs * weights).sum(dim=1, keepdim=True) / count
        var = ((wavs - mean).pow(2) * weights).sum(dim=1, keepdim=True) / count
        return (wavs - mean) / torch.sqrt(var + eps) * weights
