"""The log-mel front end and the stream trained from scratch on it.

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib

import torch
import torchaudio

from sercaf_toolkit.lobes.masking import lengths_to_mask, mask_waveforms
from sercaf_toolkit.lobes.mixup import plan_held
from sercaf_toolkit.lobes.stream import Stream, built


class LogMel(torch.nn.Module):
    """Length-aware log-mel spectrogram computed on the batch, in torch.

    Defaults are the paper's librosa settings (slaney mel scale and norm,
    n_fft 2048, hop 512, 224 bands, centred frames). What it computes, as
    librosa's ``power_to_db(S, ref=1.0, amin=1e-10, top_db=80)``:
    ``10 * log10(max(power, amin))``, in dB against the fixed reference
    power 1 (not each utterance's maximum, which would throw the loudness
    cue away), floored at the utterance's own maximum over *valid* frames
    minus ``top_db``. There is no upper bound: loud voiced frames lie well
    above 0 dB (a sine of amplitude 0.5 peaks near +37 dB). Padded frames
    are set to 0.

    Two deviations from the published pipeline, and why:

    - The published code maps these dB values to 0-255 with a fixed map,
      the same for every utterance. That keeps loudness; besides an affine
      rescaling of the dB values, what it does is clip everything above
      0 dB, which saturates the loudest time-frequency cells (the voiced
      energy of loud, high-arousal speech) at one value. Here the dB values
      are kept unclipped, and the rescaling is left to a dataset-level
      normalisation (see
      :class:`~sercaf_toolkit.lobes.masking.GlobalNormalization`), which
      would undo any fixed affine map anyway.
    - The published networks read the spectrogram with the mel axis as the
      sequence (one "token" per mel band). Here time is the sequence: the
      output is ``[batch, frames, n_mels]`` and the encoders return one
      vector per (pooled) frame. Frame-level cross-attention with the SSL
      stream needs this (SSL frames have no counterpart among mel bands),
      and utterances of any length pass with a mask.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the input waveforms.
    n_fft : int
        FFT size (and window length).
    hop_length : int
        Frame shift in samples.
    n_mels : int
        Number of mel bands.
    top_db : float, optional
        Dynamic range kept below each utterance's peak (``None``: all).
    amin : float
        Power floor before the logarithm.

    Under ``torch.onnx.export`` the power spectrum is computed by a
    plain ``torch.stft`` that the exporter maps to ONNX's STFT operator
    (torchaudio's own call does not export at a dynamic length); the
    features are the same to float32 rounding.

    Example
    -------
    >>> logmel = LogMel()
    >>> feats, mask = logmel(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 32, 224]), [32, 16])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=2048,
        hop_length=512,
        n_mels=224,
        top_db=80.0,
        amin=1e-10,
    ):
        super().__init__()
        self.hop_length = hop_length
        self.top_db = top_db
        self.amin = amin
        self.output_size = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",  # librosa's default: zeros, like padding
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wavs, wav_lens=None):
        """Computes ``[batch, frames, n_mels]`` dB features and their mask.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms, padded at the end.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths.

        Returns
        -------
        features : torch.Tensor
            ``[batch, frames, n_mels]`` log-mel in dB; padded frames zero.
        mask : torch.Tensor
            ``[batch, frames]`` bool valid-frame mask.
        """
        # Zeroing the padding makes the frames that straddle the end of an
        # utterance see the same zeros as an unpadded run's centre padding.
        wavs, lengths, _ = mask_waveforms(wavs, wav_lens)
        with torch.autocast(wavs.device.type, enabled=False):
            if torch.onnx.is_in_onnx_export():
                power = self._mel_power_traceable(wavs.float())
            else:
                power = self.mel(wavs.float()).transpose(1, 2)  # [B, T, F]
        decibels = 10.0 * torch.log10(power.clamp(min=self.amin))
        frames = lengths // self.hop_length + 1
        mask = lengths_to_mask(frames, decibels.shape[1])
        if self.top_db is not None:
            hidden = torch.finfo(decibels.dtype).min
            peak = decibels.masked_fill(~mask.unsqueeze(-1), hidden)
            peak = peak.amax(dim=(1, 2), keepdim=True)
            decibels = torch.maximum(decibels, peak - self.top_db)
        return decibels * mask.unsqueeze(-1), mask

    def _mel_power_traceable(self, wavs):
        """``[B, T, n_mels]`` mel power, as ``self.mel`` computes it.

        The ONNX exporter cannot follow torchaudio's reshapes around
        ``torch.stft`` at a dynamic length, but maps a plain
        ``torch.stft`` of a 2-D batch to ONNX's STFT operator. The centre
        padding (zeros, as ``self.mel``'s ``pad_mode="constant"``) is done
        first, and the real/imaginary pairs give the power.
        """
        spectrogram = self.mel.spectrogram
        n_fft = spectrogram.n_fft
        padded = torch.nn.functional.pad(wavs, (n_fft // 2, n_fft // 2))
        parts = torch.stft(
            padded,
            n_fft,
            hop_length=spectrogram.hop_length,
            win_length=spectrogram.win_length,
            window=spectrogram.window,
            center=False,
            return_complex=False,  # ONNX's STFT has no complex type
        )  # [B, bins, T, 2]
        power = parts.pow(2).sum(dim=-1)
        return torch.matmul(power.transpose(1, 2), self.mel.mel_scale.fb)


class SpectrogramStream(Stream):
    """The stream trained from scratch: front end, normalisation, encoder.

    Each part may be a module or a factory of one (a YAML ``!name:``): the
    stream calls a factory with the width of the features it will get
    (``input_size``), so that a recipe states the feature width once and
    builds only the blocks it picked.

    Arguments
    ---------
    frontend : torch.nn.Module or callable
        ``(wavs, wav_lens) -> (features, mask)`` with an ``output_size``
        attribute, e.g. :class:`LogMel`; a factory is called without
        arguments.
    encoder : torch.nn.Module or callable
        ``(features, mask) -> (frames, mask)`` with an ``output_size``
        attribute, e.g. :class:`~sercaf_toolkit.lobes.scratch.DPCNN`.
    normalization : torch.nn.Module or callable, optional
        ``(features, mask) -> features``, e.g.
        :class:`~sercaf_toolkit.lobes.masking.GlobalNormalization`; it may
        add channels (an ``output_size`` attribute says how many).
    augment : torch.nn.Module or callable, optional
        ``(features, mask) -> features`` applied after the normalisation
        (which so sees clean features), active in training only, e.g.
        :class:`~sercaf_toolkit.lobes.augment.LogMelAugment`; a factory is
        called without arguments.

    While :meth:`mixed` holds a mixup plan (training only), the normalised
    and augmented features of the batch are mixed before the encoder
    (:meth:`~sercaf_toolkit.lobes.mixup.MixPlan.mix_features`).

    Example
    -------
    >>> from sercaf_toolkit.lobes.masking import GlobalNormalization
    >>> from sercaf_toolkit.lobes.scratch import DPCNN
    >>> stream = SpectrogramStream(
    ...     LogMel(n_mels=40),
    ...     DPCNN(input_size=40, num_filters=16, num_blocks=2),
    ...     GlobalNormalization(40),
    ... )
    >>> feats, mask = stream(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, mask.sum(dim=1).tolist(), stream.output_size
    (torch.Size([2, 8, 16]), [8, 4], 16)
    >>> from functools import partial
    >>> stream = SpectrogramStream(
    ...     partial(LogMel, n_mels=40),
    ...     partial(DPCNN, num_filters=16, num_blocks=2),
    ...     partial(GlobalNormalization))
    >>> stream.encoder.region.in_channels, stream.describe()
    (40, 'DPCNN')
    """

    def __init__(self, frontend, encoder, normalization=None, augment=None):
        super().__init__()
        self.frontend = built(frontend)
        width = self.frontend.output_size
        self.normalization = built(normalization, input_size=width)
        # A normalisation may add channels (UtteranceNormalization).
        width = getattr(self.normalization, "output_size", width)
        self.augment = built(augment)
        self.encoder = built(encoder, input_size=width)
        self.output_size = self.encoder.output_size

    def forward(self, wavs, wav_lens=None):
        """Encodes waveforms to ``([B, T, output_size], [B, T] mask)``."""
        features, mask = self.frontend(wavs, wav_lens)
        if self.normalization is not None:
            features = self.normalization(features, mask)
        if self.augment is not None and self.training:
            features = self.augment(features, mask)
        if self.mix_plan is not None:
            features, mask = self.mix_plan.mix_features(features, mask)
        return self.encoder(features, mask)

    @contextlib.contextmanager
    def mixed(self, plan):
        """Mixes the normalised (and augmented) features, not waveforms.

        A mix of two log-mel spectrograms is what mixup means on this
        stream's input; mixed waveforms would also reach the front end's
        floor (``top_db``) and an eGeMAPS front end's cache (keyed by the
        samples) with examples that never repeat.
        """
        with plan_held(self, plan):
            yield

    def describe(self):
        """The encoder's name, after the front end's unless it is LogMel
        (``DPCNN``, ``EGeMAPSDescriptors/DPCNN``)."""
        name = type(self.encoder).__name__
        frontend = type(self.frontend).__name__
        return name if frontend == "LogMel" else f"{frontend}/{name}"
