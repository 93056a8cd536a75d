"""eGeMAPS low-level descriptors as a stream front end (openSMILE).

The extended Geneva Minimalistic Acoustic Parameter Set (Eyben et al.,
2016) is the field's standard prosodic and voice-quality description:
pitch, jitter, shimmer, harmonics-to-noise ratio, loudness, formants,
spectral balance. Its 25 low-level descriptors (LLDs), at 100 frames per
second, become a third stream beside the SSL and log-mel streams
(``streams: triple`` in the recipes): a
:class:`~sercaf_toolkit.lobes.spectrogram.SpectrogramStream` whose front end
is :class:`EGeMAPSDescriptors`, so that it is normalised, encoded and
fused like the others.

Needs the ``egemaps`` extra (``pip install -e ".[egemaps]"``, which
installs ``opensmile``).

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import contextlib
import hashlib
import importlib.util
import warnings

import numpy as np
import torch

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.lobes.masking import (
    GlobalNormalization,
    lengths_to_mask,
    mask_waveforms,
)
from sercaf_toolkit.lobes.mixup import plan_held
from sercaf_toolkit.lobes.stream import built

N_DESCRIPTORS = 25


def check_opensmile():
    """Raises a one-line :class:`UserError` when opensmile is missing."""
    if importlib.util.find_spec("opensmile") is None:
        raise UserError(
            "the eGeMAPS stream needs opensmile: pip install -e "
            '".[egemaps]" (or choose streams without it, e.g. --streams=dual)'
        )


class _OpenSMILEFeatures(torch.nn.Module):
    """openSMILE features of each utterance's valid samples, cached by content.

    The shared part of :class:`EGeMAPSDescriptors` and
    :class:`EGeMAPSFunctionals`: openSMILE runs on the CPU, is not
    differentiable and not fast (about 30 ms per second of audio), and its
    output depends on the waveform only, so each utterance's features are
    kept in a cache keyed by a hash of its samples (in training each
    utterance is analysed once, not once per epoch: the recipes perturb the
    log-mel, never the waveform). The cache is bounded by ``cache_rows``
    (least recently used entries go first; a descriptor frame or a
    functionals vector is one row) and is not part of the state dict.
    Values that openSMILE leaves undefined (NaN: an utterance shorter than
    its analysis window) are zero.
    """

    # What the recipe runner checks before anything is built.
    required_packages = {"opensmile": "egemaps"}
    # openSMILE runs in C++, outside torch: no ONNX graph can hold it.
    onnx_exportable = False
    feature_level = None  # an opensmile.FeatureLevel name
    output_size = None

    def __init__(self, sample_rate=16000, cache_rows=4_000_000):
        super().__init__()
        self.sample_rate = sample_rate
        self.cache_rows = cache_rows
        self._smile = None
        self._cache = collections.OrderedDict()
        self._cached_rows = 0

    def __getstate__(self):
        # openSMILE's handle cannot be copied or pickled; it is rebuilt
        # on first use, and the cache is rebuilt as utterances come.
        state = self.__dict__.copy()
        state["_smile"] = None
        state["_cache"] = collections.OrderedDict()
        state["_cached_rows"] = 0
        return state

    def _features(self, samples):
        """``[rows, output_size]`` float32 features of one 1-D waveform."""
        # Keyed by content already: the hash covers every sample (and so
        # the length), the samples are always float32, and the other
        # inputs (sample rate, feature set and level) are fixed for this
        # instance. The cache lives in memory only, so no entry outlives a
        # change of openSMILE or of this code.
        key = hashlib.blake2b(samples.tobytes(), digest_size=16).digest()
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        if self._smile is None:
            check_opensmile()
            import opensmile

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02,
                feature_level=getattr(
                    opensmile.FeatureLevel, self.feature_level
                ),
            )
        with warnings.catch_warnings():
            # "Segment too short, filling with NaN": zeros below.
            warnings.simplefilter("ignore", UserWarning)
            table = self._smile.process_signal(samples, self.sample_rate)
        rows = np.nan_to_num(table.to_numpy(dtype=np.float32))
        if len(rows) == 0:
            rows = np.zeros((1, self.output_size), dtype=np.float32)
        self._cache[key] = rows
        self._cached_rows += len(rows)
        while self._cached_rows > self.cache_rows and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_rows -= len(dropped)
        return rows

    def _per_utterance(self, wavs, wav_lens):
        """Each utterance's features, from its valid samples only."""
        _, lengths, _ = mask_waveforms(wavs, wav_lens)
        signals = wavs.detach().float().cpu().numpy()
        return [
            self._features(np.ascontiguousarray(signal[: int(length)]))
            for signal, length in zip(signals, lengths.tolist())
        ]


class EGeMAPSDescriptors(_OpenSMILEFeatures):
    """The 25 eGeMAPS v02 low-level descriptors of each utterance.

    Each utterance's valid samples (padding cut off) go through openSMILE
    on the CPU, so a padded batch gives every utterance the frames it has
    alone; the descriptors are cached by a hash of the samples (see
    :class:`_OpenSMILEFeatures`).

    Arguments
    ---------
    sample_rate : int
        Sample rate of the input waveforms.
    cache_frames : int
        Most descriptor frames kept (100 per second of audio; the default,
        about 400 MB, holds 11 hours).

    Example
    -------
    >>> frontend = EGeMAPSDescriptors()
    >>> wavs = 0.1 * torch.randn(2, 16000)
    >>> feats, mask = frontend(wavs, torch.tensor([1.0, 0.5]))
    >>> feats.shape[-1], mask.sum(dim=1).tolist()
    (25, [96, 46])
    >>> alone, _ = frontend(wavs[1:, :8000])
    >>> torch.equal(alone[0], feats[1, :46])
    True
    """

    output_size = N_DESCRIPTORS
    feature_level = "LowLevelDescriptors"
    frames_per_second = 100

    def __init__(self, sample_rate=16000, cache_frames=4_000_000):
        super().__init__(sample_rate, cache_rows=cache_frames)

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """Computes ``[batch, frames, 25]`` descriptors and their mask.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms, padded at the end.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths.

        Returns
        -------
        features : torch.Tensor
            ``[batch, frames, 25]``; padded frames zero.
        mask : torch.Tensor
            ``[batch, frames]`` bool valid-frame mask.
        """
        per_utterance = self._per_utterance(wavs, wav_lens)
        counts = torch.tensor([len(f) for f in per_utterance])
        features = torch.zeros(len(per_utterance), int(counts.max()), 25)
        for row, frames in zip(features, per_utterance):
            row[: len(frames)] = torch.from_numpy(frames)
        mask = lengths_to_mask(counts, features.shape[1])
        return features.to(wavs.device), mask.to(wavs.device)


N_FUNCTIONALS = 88


class EGeMAPSFunctionals(_OpenSMILEFeatures):
    """The 88 eGeMAPS v02 functionals of each utterance (openSMILE).

    The utterance-level statistics of the descriptors (means, deviations,
    percentiles, rates) that the field's linear baselines classify: the
    features of row 1 of ``benchmarks/learning.py``. Computed on each
    utterance's valid samples (padding cut off, so padding changes nothing)
    and cached by a hash of them (see :class:`_OpenSMILEFeatures`).

    Arguments
    ---------
    sample_rate : int
        Sample rate of the input waveforms.
    cache_utterances : int
        Most utterances kept in the cache (88 floats each).

    Example
    -------
    >>> functionals = EGeMAPSFunctionals()
    >>> wavs = 0.1 * torch.randn(2, 16000)
    >>> values = functionals(wavs, torch.tensor([1.0, 0.5]))
    >>> values.shape
    torch.Size([2, 88])
    >>> torch.equal(functionals(wavs[1:, :8000])[0], values[1])
    True
    """

    output_size = N_FUNCTIONALS
    feature_level = "Functionals"

    def __init__(self, sample_rate=16000, cache_utterances=1_000_000):
        super().__init__(sample_rate, cache_rows=cache_utterances)

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """``[batch, samples]`` waveforms -> ``[batch, 88]`` functionals."""
        rows = [r[0] for r in self._per_utterance(wavs, wav_lens)]
        values = torch.from_numpy(np.stack(rows))
        return values.to(wavs.device)


class FunctionalsBranch(torch.nn.Module):
    """Utterance functionals, standardised, joined to the fused embedding.

    What a linear baseline sees (eGeMAPS functionals standardised with the
    training data's statistics), given to the model: the functionals are
    standardised by a :class:`~sercaf_toolkit.lobes.masking.GlobalNormalization`
    (statistics of the training utterances, buffers saved with the model)
    and appended to the fused embedding by
    :class:`~sercaf_toolkit.lobes.model.DualStreamModel`. The head's linear
    layer then adds a linear classifier of the functionals to its logits:
    ``W [fused; f] = W_1 fused + W_2 f``. No parameter of its own: it adds
    the 88 inputs of a logistic regression, nothing to overfit with.

    Arguments
    ---------
    features : torch.nn.Module or callable, optional
        ``(wavs, wav_lens) -> [B, output_size]`` (or a factory of one,
        ``!name:`` in YAML); eGeMAPS functionals by default.
    max_updates : int, optional
        Training batches the statistics see (``None``: every batch).

    Example
    -------
    >>> class Level(torch.nn.Module):  # a stand-in for the functionals
    ...     output_size = 1
    ...     def forward(self, wavs, wav_lens=None):
    ...         return wavs.abs().amax(dim=1, keepdim=True)
    >>> branch = FunctionalsBranch(Level())
    >>> _ = branch(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))  # training
    >>> _ = branch.eval()
    >>> branch(torch.tensor([[1.0, 0.0], [3.0, 0.0]])).squeeze(1)
    tensor([-1.,  1.])
    """

    def __init__(self, features=None, max_updates=None):
        super().__init__()
        self.features = built(features) if features else EGeMAPSFunctionals()
        self.output_size = self.features.output_size
        self.normalization = GlobalNormalization(
            self.output_size, max_updates=max_updates
        )

    #: The mixup plan of the batch being trained on (see :meth:`mixed`).
    mix_plan = None

    def forward(self, wavs, wav_lens=None):
        """``[batch, output_size]`` standardised functionals."""
        values = self.features(wavs, wav_lens)
        mask = torch.ones(
            len(values), 1, dtype=torch.bool, device=values.device
        )
        values = self.normalization(values[:, None], mask)
        if self.mix_plan is not None:
            values, _ = self.mix_plan.mix_features(values, mask)
        return values[:, 0]

    @contextlib.contextmanager
    def mixed(self, plan):
        """Mixes the standardised functionals as mixup mixes the streams.

        The functionals of mixed waveforms would be openSMILE's analysis
        of audio that never repeats (no cache hit, every batch); the mix
        of the two utterances' values is what the mixed labels describe,
        as for the eGeMAPS stream's descriptors.

        Arguments
        ---------
        plan : sercaf_toolkit.lobes.mixup.MixPlan
            The batch's mixing weight and permutation.
        """
        with plan_held(self, plan):
            yield
