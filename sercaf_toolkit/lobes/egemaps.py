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
import hashlib
import importlib.util
import warnings

import numpy as np
import torch

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.lobes.masking import lengths_to_mask, mask_waveforms

N_DESCRIPTORS = 25


def check_opensmile():
    """Raises a one-line :class:`UserError` when opensmile is missing."""
    if importlib.util.find_spec("opensmile") is None:
        raise UserError(
            "the eGeMAPS stream needs opensmile: pip install -e "
            '".[egemaps]" (or choose streams without it, e.g. --streams=dual)'
        )


class EGeMAPSDescriptors(torch.nn.Module):
    """The 25 eGeMAPS v02 low-level descriptors of each utterance.

    Each utterance's valid samples (padding cut off) go through openSMILE
    on the CPU, so a padded batch gives every utterance the frames it has
    alone. openSMILE is not differentiable and not fast (about 30 ms per
    second of audio), and its output depends on the waveform only: the
    descriptors are kept in a cache keyed by a hash of the samples, so in
    training each utterance is analysed once, not once per epoch (the
    recipes perturb the log-mel, never the waveform). The cache is bounded
    by ``cache_frames`` (least recently used entries go first) and is not
    part of the state dict. Frames that openSMILE leaves undefined (NaN:
    an utterance shorter than its analysis window) are zero.

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
    # What the recipe runner checks before anything is built.
    required_packages = {"opensmile": "egemaps"}
    # openSMILE runs in C++, outside torch: no ONNX graph can hold it.
    onnx_exportable = False
    frames_per_second = 100

    def __init__(self, sample_rate=16000, cache_frames=4_000_000):
        super().__init__()
        self.sample_rate = sample_rate
        self.cache_frames = cache_frames
        self._smile = None
        self._cache = collections.OrderedDict()
        self._cached_frames = 0

    def __getstate__(self):
        # openSMILE's handle cannot be copied or pickled; it is rebuilt
        # on first use, and the cache is rebuilt as utterances come.
        state = self.__dict__.copy()
        state["_smile"] = None
        state["_cache"] = collections.OrderedDict()
        state["_cached_frames"] = 0
        return state

    def _descriptors(self, samples):
        """``[frames, 25]`` float32 descriptors of one 1-D numpy waveform."""
        # Keyed by content already: the hash covers every sample (and so
        # the length), the samples are always float32, and the other
        # inputs (sample rate, feature set) are fixed for this instance.
        # The cache lives in memory only, so no entry outlives a change
        # of openSMILE or of this code.
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
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
        with warnings.catch_warnings():
            # "Segment too short, filling with NaN": zeros below.
            warnings.simplefilter("ignore", UserWarning)
            table = self._smile.process_signal(samples, self.sample_rate)
        frames = np.nan_to_num(table.to_numpy(dtype=np.float32))
        if len(frames) == 0:
            frames = np.zeros((1, N_DESCRIPTORS), dtype=np.float32)
        self._cache[key] = frames
        self._cached_frames += len(frames)
        while self._cached_frames > self.cache_frames and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_frames -= len(dropped)
        return frames

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
        _, lengths, _ = mask_waveforms(wavs, wav_lens)
        signals = wavs.detach().float().cpu().numpy()
        per_utterance = [
            self._descriptors(np.ascontiguousarray(signal[: int(length)]))
            for signal, length in zip(signals, lengths.tolist())
        ]
        counts = torch.tensor([len(f) for f in per_utterance])
        features = torch.zeros(len(per_utterance), int(counts.max()), 25)
        for row, frames in zip(features, per_utterance):
            row[: len(frames)] = torch.from_numpy(frames)
        mask = lengths_to_mask(counts, features.shape[1])
        return features.to(wavs.device), mask.to(wavs.device)
