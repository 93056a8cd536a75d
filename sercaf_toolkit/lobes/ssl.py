"""The pre-trained speech model stream (wav2vec2, HuBERT, WavLM).

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib
import hashlib
import inspect
import json
from collections.abc import Mapping

import torch
import transformers
from transformers.masking_utils import create_bidirectional_mask

from sercaf_toolkit.errors import SettingError
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
        Let the HF model mask time steps in training (its own SpecAugment;
        full fine-tuning only: it masks the input of the frozen layers of
        a partial fine-tune, which then runs without it).
    finetune_layers : int, optional
        Fine-tune only the top ``k`` transformer layers (and the stream's
        layer weights), the rest frozen and in evaluation mode; ``0`` is
        the same as ``freeze=True``. ``None`` (the default): ``freeze``
        and ``freeze_feature_extractor`` decide. Autograd then records
        nothing below the first trainable layer, and with a
        :attr:`feature_cache` the frozen part's output (the input of the
        first fine-tuned layer) is read from disk instead of computed.

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
        finetune_layers=None,
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
        num_layers = self.model.config.num_hidden_layers
        if finetune_layers is not None and not freeze:
            finetune_layers = int(finetune_layers)
            if not 0 <= finetune_layers <= num_layers:
                raise SettingError(
                    f"--ssl_finetune_layers={finetune_layers}: this SSL "
                    f"model has {num_layers} transformer layers; give "
                    f"0..{num_layers}"
                )
            freeze = finetune_layers == 0
        else:
            finetune_layers = None
        # The top-k fine-tune: k > 0 (frozen and full have None here).
        self.finetune_layers = finetune_layers or None
        self.freeze = freeze
        self.freeze_feature_extractor = freeze_feature_extractor
        #: An :class:`~sercaf_toolkit.ssl_cache.SSLFeatureCache`, set by
        #: the recipe runner: the frozen part's output is read from it
        #: for batches whose audio files are known (:meth:`sources`).
        self.feature_cache = None
        self._sources = None
        self._frozen_fingerprint = None
        if freeze or self.finetune_layers:
            self.model.requires_grad_(False)
            for module in self._top_modules():
                module.requires_grad_(True)
        elif freeze_feature_extractor:
            # HF's own freezing also stops the CNN from asking for input
            # gradients, so backward never runs through the frozen CNN.
            self.model.feature_extractor._freeze_parameters()
        first_conv = self.model.feature_extractor.conv_layers[0]
        if isinstance(first_conv.layer_norm, torch.nn.GroupNorm):
            first_conv.layer_norm = LengthAwareGroupNorm(first_conv.layer_norm)
        self.output_size = self.model.config.hidden_size
        self.output = output(num_layers=num_layers + 1)
        if self.output.needs_hidden_states or self.finetune_layers:
            # LayerDrop skips layers in training, and transformers then
            # records fewer hidden states: a sum over all layers needs
            # every layer; a partial fine-tune replays its top layers
            # without it (cached), so it runs without it uncached too.
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
        if self.freeze or self.finetune_layers:
            self.model.eval()
            for module in self._top_modules():
                module.train(mode)
        elif self.freeze_feature_extractor:
            self.model.feature_extractor.eval()
        return self

    # The frozen part and the feature cache ---------------------------------

    def _top_modules(self):
        """The fine-tuned transformer layers of a partial fine-tune.

        With a stable-layer-norm encoder (the large models) the encoder's
        final LayerNorm comes after the top layer, so it is tuned too.
        """
        if not self.finetune_layers:
            return []
        encoder = self.model.encoder
        top = list(encoder.layers[-self.finetune_layers :])
        if self.model.config.do_stable_layer_norm:
            top.append(encoder.layer_norm)
        return top

    @property
    def frozen_states(self):
        """The hidden states the frozen part gives, as cached.

        ``"last"`` (the model's output, of a frozen stream whose output
        is the last layer) or the indices of the hidden states (0: the
        transformer's input; the input of the first fine-tuned layer is
        the last of them). ``None`` when nothing is frozen above the CNN.
        """
        num_layers = self.model.config.num_hidden_layers
        if self.freeze:
            if self.output.needs_hidden_states:
                return list(range(num_layers + 1))
            return "last"
        if not self.finetune_layers:
            return None
        first_tuned = num_layers - self.finetune_layers
        if self.output.needs_hidden_states:
            return list(range(first_tuned + 1))
        return [first_tuned]

    @property
    def cacheable(self):
        """Whether a feature cache can stand in for the frozen part.

        A partial fine-tune replays its top layers from the cached input
        of the first one; WavLM's layers also pass a position bias from
        layer to layer, which is not replayed here.
        """
        if self.frozen_states is None:
            return False
        if self.freeze:
            return True
        layer = self.model.encoder.layers[0]
        return (
            "position_bias" not in inspect.signature(layer.forward).parameters
        )

    def cache_identity(self):
        """What the cached features depend on, for the cache's key.

        The model's config, a SHA-256 of the frozen part's weights and
        buffers (so another checkpoint or revision under the same name
        never shares entries), the waveform standardisation and which
        hidden states are kept. Computed once, at first use (after a
        checkpoint is loaded: the frozen part does not change).
        """
        if self._frozen_fingerprint is None:
            tuned = {id(p) for m in self._top_modules() for p in m.parameters()}
            digest = hashlib.sha256()
            tensors = sorted(
                [
                    *(
                        (n, p)
                        for n, p in self.model.named_parameters()
                        if id(p) not in tuned
                    ),
                    *self.model.named_buffers(),
                ],
                key=lambda item: item[0],
            )
            for name, tensor in tensors:
                digest.update(name.encode("utf-8"))
                data = tensor.detach().to("cpu", torch.float32).contiguous()
                digest.update(data.numpy().tobytes())
            self._frozen_fingerprint = digest.hexdigest()
        config = self.model.config.to_dict()
        # Settings of training only (they act in train mode, which the
        # frozen part never runs in) and bookkeeping do not count.
        for key in ("apply_spec_augment", "layerdrop", "transformers_version"):
            config.pop(key, None)
        return {
            "model_type": self.model.config.model_type,
            "config": hashlib.sha256(
                json.dumps(config, sort_keys=True, default=str).encode()
            ).hexdigest(),
            "weights": self._frozen_fingerprint,
            "normalize_wav": self.normalize_wav,
            "states": self.frozen_states,
        }

    @contextlib.contextmanager
    def sources(self, paths):
        """Names the audio files of the next batches (for the cache).

        Arguments
        ---------
        paths : list of str
            One audio file per row of the batch, as read (the cache keys
            each entry by the file's content).
        """
        self._sources = list(paths)
        try:
            yield
        finally:
            self._sources = None

    def _cache_serves(self, batch_size):
        """Whether this batch's frozen part comes from the cache."""
        return (
            self.feature_cache is not None
            and self.feature_cache.enabled
            # Mixed waveforms (mixup) are no file's: the model runs on them.
            and self.mix_plan is None
            and self._sources is not None
            and len(self._sources) == batch_size
            and self.cacheable
            and not _in_graph_capture()
        )

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
        if self._cache_serves(wavs.shape[0]):
            states, mask = self._cached_states(wavs, lengths, sample_mask)
            features = self._from_frozen_states(states, mask)
        else:
            track_grad = torch.is_grad_enabled() and not self.freeze
            out, frame_lengths = self._run_model(
                wavs, lengths, sample_mask, track_grad
            )
            hidden = (
                out.hidden_states
                if self.output.needs_hidden_states
                else (out.last_hidden_state,)
            )
            features = self.output(hidden)
            mask = lengths_to_mask(frame_lengths, features.shape[1])
        return features * mask.unsqueeze(-1).to(features.dtype), mask

    def _run_model(self, wavs, lengths, sample_mask, track_grad, hidden=None):
        """The HF model's output on a padded batch, and the frame counts."""
        if self.normalize_wav:
            wavs = self._standardise(wavs, sample_mask)
        frame_lengths = self.model._get_feat_extract_output_lengths(lengths)

        # An unpadded batch needs no attention mask (an all-ones mask
        # changes nothing but costs ~6 % of a base model's step); an
        # exported graph must keep it for the batches it will meet.
        padded = _in_graph_capture() or bool((lengths < wavs.shape[1]).any())
        if hidden is None:
            hidden = self.output.needs_hidden_states
        with torch.set_grad_enabled(track_grad):
            with self._group_norm_lengths(lengths):
                out = self.model(
                    wavs,
                    attention_mask=sample_mask.long() if padded else None,
                    output_hidden_states=hidden,
                )
        return out, frame_lengths

    def _frozen_part(self, wavs, lengths, sample_mask):
        """``[B, states, T, D]`` of :attr:`frozen_states`, and frame counts."""
        which = self.frozen_states
        out, frame_lengths = self._run_model(
            wavs, lengths, sample_mask, False, hidden=which != "last"
        )
        if which == "last":
            states = out.last_hidden_state.unsqueeze(1)
        else:
            states = torch.stack([out.hidden_states[i] for i in which], 1)
        return states, frame_lengths

    def _cached_states(self, wavs, lengths, sample_mask):
        """The batch's frozen states: read, or computed once and stored.

        The utterances the cache lacks are computed together as one
        padded batch (padding changes no valid frame), cut to their own
        frames and stored; every row then goes through the cache's
        storage precision, so a batch gives the same features whether
        its entries were read or just made.
        """
        cache = self.feature_cache
        identity = self.cache_identity()
        rows = [cache.load(path, identity) for path in self._sources]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            index = torch.tensor(missing, device=wavs.device)
            longest = int(lengths[index].max())
            states, frames = self._frozen_part(
                wavs[index, :longest],
                lengths[index],
                sample_mask[index, :longest],
            )
            for row, i in enumerate(missing):
                made = states[row, :, : int(frames[row])]
                rows[i] = cache.store(self._sources[i], identity, made)
        frames = torch.tensor([row.shape[1] for row in rows])
        longest = int(frames.max())
        first = rows[0]
        states = first.new_zeros(
            len(rows), first.shape[0], longest, first.shape[2]
        )
        for i, row in enumerate(rows):
            states[i, :, : row.shape[1]] = row
        mask = lengths_to_mask(frames, longest).to(wavs.device)
        return states.to(device=wavs.device, dtype=torch.float32), mask

    def _from_frozen_states(self, states, mask):
        """The stream's features from ``[B, states, T, D]`` frozen states.

        A frozen stream's states are what its output needs; a partial
        fine-tune runs its top layers on the last of them (the input of
        the first tuned layer) with the same attention mask as the model.
        """
        hidden = list(states.unbind(1))
        if self.finetune_layers:
            h = hidden[-1]
            attention = None
            if not bool(mask.all()):
                attention = create_bidirectional_mask(
                    config=self.model.config,
                    inputs_embeds=h,
                    attention_mask=mask,
                )
            tuned = []
            for layer in self.model.encoder.layers[-self.finetune_layers :]:
                h = layer(h, attention_mask=attention)
                h = h[0] if isinstance(h, tuple) else h
                tuned.append(h)
            if self.output.needs_hidden_states:
                hidden = hidden + tuned
            elif self.model.config.do_stable_layer_norm:
                hidden = [self.model.encoder.layer_norm(h)]
            else:
                hidden = [h]
        return self.output(hidden)

    @staticmethod
    def _standardise(wavs, sample_mask, eps=1e-7):
        """Zero mean, unit variance over valid samples (as HF's extractor)."""
        weights = sample_mask.to(wavs.dtype)
        count = weights.sum(dim=1, keepdim=True)
        mean = (wavs * weights).sum(dim=1, keepdim=True) / count
        var = ((wavs - mean).pow(2) * weights).sum(dim=1, keepdim=True) / count
        return (wavs - mean) / torch.sqrt(var + eps) * weights
