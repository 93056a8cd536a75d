"""Training-time augmentation of the (normalised) log-mel spectrogram.

On small corpora with unseen test speakers, a network trained from scratch
memorises what identifies the training speakers: their recording channel
(a fixed spectral colouring) and their average spectrum. Augmentation that
varies exactly these, and leaves the emotion cues (pitch, tempo, loudness
*changes* within the speaker) alone, pushes it towards speaker-independent
cues:

- time and frequency masking (SpecAugment), with SpeechBrain's
  ``SpectrogramDrop``;
- a random channel per utterance: a smooth spectral colouring (a random
  tilt and curvature over the mel bands) added to the log-mel, as a
  different microphone or room would;
- a random gain per utterance (small: loudness is an emotion cue).

Speed and pitch perturbation are left out on purpose: they change the
tempo and pitch cues that signal emotion.

Authors
 * sercaf-toolkit developers 2026
"""

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop


def _masks(count, width, dim):
    """SpeechBrain's SpectrogramDrop: 0..count masks of 1..width along dim
    (None for no masks)."""
    if count <= 0:
        return None
    return SpectrogramDrop(
        drop_length_low=1,
        drop_length_high=max(2, width + 1),
        drop_count_low=0,
        drop_count_high=count,
        dim=dim,
    )


class LogMelAugment(torch.nn.Module):
    """Random masks, channel colouring and gain on ``[B, T, F]`` features.

    Active in training mode only; in evaluation it returns its input.
    Values are in the units of its input (normalised log-mel: about one
    standard deviation per band). Padded frames stay zero.

    Arguments
    ---------
    time_masks : int
        Maximum number of time masks per batch (0: none).
    time_mask_frames : int
        Maximum width of a time mask, in frames.
    freq_masks : int
        Maximum number of frequency masks per batch (0: none).
    freq_mask_bands : int
        Maximum width of a frequency mask, in bands.
    channel : float
        Standard deviation of the channel colouring's tilt and curvature
        (0: none).
    gain : float
        Standard deviation of the per-utterance offset (0: none).

    Example
    -------
    >>> augment = LogMelAugment(channel=0.5, gain=0.1)
    >>> x = torch.randn(2, 20, 16)
    >>> mask = torch.ones(2, 20, dtype=torch.bool)
    >>> mask[1, 12:] = False
    >>> y = augment(x * mask.unsqueeze(-1), mask)
    >>> y.shape, bool(y[1, 12:].abs().sum() == 0), bool((y != x).any())
    (torch.Size([2, 20, 16]), True, True)
    >>> _ = augment.eval()
    >>> torch.equal(augment(x, mask), x)
    True
    >>> off = LogMelAugment(time_masks=0, freq_masks=0, channel=0, gain=0)
    >>> off.active, torch.equal(off(x, mask), x)
    (False, True)
    """

    def __init__(
        self,
        time_masks=2,
        time_mask_frames=5,
        freq_masks=2,
        freq_mask_bands=6,
        channel=0.3,
        gain=0.1,
    ):
        super().__init__()
        self.time_drop = _masks(time_masks, time_mask_frames, dim=1)
        self.freq_drop = _masks(freq_masks, freq_mask_bands, dim=2)
        self.channel = channel
        self.gain = gain

    @property
    def active(self):
        """Whether any augmentation is on (all off: the identity)."""
        return bool(
            self.channel > 0
            or self.gain > 0
            or self.time_drop
            or self.freq_drop
        )

    def forward(self, features, mask):
        """Augments ``[B, T, F]`` features (training mode only)."""
        if not self.training or not self.active:
            return features
        batch, _, bands = features.shape
        out = features.clone()
        if self.channel > 0:
            axis = torch.linspace(-1, 1, bands, device=out.device)
            basis = torch.stack([axis, axis**2 - 1 / 3])  # tilt, curvature
            weights = self.channel * torch.randn(batch, 2, device=out.device)
            out = out + (weights @ basis).unsqueeze(1).to(out.dtype)
        if self.gain > 0:
            offset = self.gain * torch.randn(batch, 1, 1, device=out.device)
            out = out + offset.to(out.dtype)
        for drop in (self.time_drop, self.freq_drop):
            if drop is not None:
                out = drop(out)
        return out * mask.unsqueeze(-1).to(out.dtype)
