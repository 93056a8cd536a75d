"""Length handling shared by every lobe: masks, masked pooling, normalisation.

Every stream in sercaf_toolkit returns frame features together with a boolean
*valid-frame mask* of shape ``[batch, time]`` (``True`` = a real frame,
``False`` = padding). Working with masks instead of SpeechBrain's relative
lengths keeps the exact frame counts that convolutions and pooling produce,
which is what makes a padded batch give the same result as each utterance
run alone.

Authors
 * sercaf-toolkit developers 2026
"""

import torch


def relative_to_absolute(relative_lengths, max_length):
    """Converts SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    relative_lengths : torch.Tensor
        ``[batch]`` lengths as fractions of ``max_length``.
    max_length : int
        The padded length of the batch.

    Returns
    -------
    torch.Tensor
        ``[batch]`` int64 lengths, between 1 and ``max_length``.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 10)
    tensor([10,  5])
    """
    lengths = torch.round(relative_lengths.float() * max_length).long()
    return lengths.clamp(min=1, max=max_length)


def lengths_to_mask(lengths, max_length=None):
    """Builds a boolean valid-frame mask from integer lengths.

    Arguments
    ---------
    lengths : torch.Tensor
        ``[batch]`` integer lengths.
    max_length : int, optional
        Width of the mask (default: the largest length).

    Returns
    -------
    torch.Tensor
        ``[batch, max_length]`` bool, ``True`` on valid frames.

    Example
    -------
    >>> lengths_to_mask(torch.tensor([3, 1]), 4)
    tensor([[ True,  True,  True, False],
            [ True, False, False, False]])
    """
    if max_length is None:
        max_length = int(lengths.max())
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def mask_waveforms(wavs, wav_lens=None):
    """Zeroes the padding of a waveform batch; returns lengths and mask too.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, samples]`` waveforms, padded at the end.
    wav_lens : torch.Tensor, optional
        ``[batch]`` relative lengths (``None``: all full length).

    Returns
    -------
    wavs : torch.Tensor
        The waveforms with zeros after each one's end.
    lengths : torch.Tensor
        ``[batch]`` lengths in samples.
    mask : torch.Tensor
        ``[batch, samples]`` bool, ``True`` on valid samples.

    Example
    -------
    >>> relative = torch.tensor([1.0, 0.5])
    >>> wavs, lengths, mask = mask_waveforms(torch.ones(2, 4), relative)
    >>> wavs.tolist(), lengths.tolist()
    ([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], [4, 2])
    """
    batch, samples = wavs.shape
    if wav_lens is None:
        wav_lens = torch.ones(batch, device=wavs.device)
    lengths = relative_to_absolute(wav_lens, samples).to(wavs.device)
    mask = lengths_to_mask(lengths, samples)
    return wavs * mask, lengths, mask


def masked_mean(features, mask):
    """Mean over the valid frames of each utterance.

    Arguments
    ---------
    features : torch.Tensor
        ``[batch, time, channels]``.
    mask : torch.Tensor
        ``[batch, time]`` bool valid-frame mask.

    Returns
    -------
    torch.Tensor
        ``[batch, channels]``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_mean(x, torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """
    weights = mask.unsqueeze(-1).to(features.dtype)
    count = weights.sum(dim=1).clamp(min=1.0)
    return (features * weights).sum(dim=1) / count


def masked_statistics(features, mask, eps=1e-5):
    """Mean and standard deviation over the valid frames of each utterance.

    Arguments
    ---------
    features : torch.Tensor
        ``[batch, time, channels]``.
    mask : torch.Tensor
        ``[batch, time]`` bool valid-frame mask.
    eps : float
        Floor of the variance, so that the gradient of the standard deviation
        stays finite on constant input.

    Returns
    -------
    mean : torch.Tensor
        ``[batch, channels]``.
    std : torch.Tensor
        ``[batch, channels]``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> mean, std = masked_statistics(x, torch.tensor([[True, True, False]]))
    >>> mean, std.round(decimals=3)
    (tensor([[2.]]), tensor([[1.]]))
    """
    mean = masked_mean(features, mask)
    centred = features - mean.unsqueeze(1)
    variance = masked_mean(centred.pow(2), mask)
    return mean, variance.clamp(min=eps).sqrt()


class MaskedPooling(torch.nn.Module):
    """Pools frame features over valid frames into one vector per utterance.

    SpeechBrain's ``StatisticsPooling`` is not used here: it adds Gaussian
    noise to the mean in every mode and works from rounded relative lengths,
    so the same utterance would not give the same vector twice.

    Arguments
    ---------
    mode : str
        ``"mean"`` (``[B, C]``) or ``"stats"``: mean and standard deviation
        concatenated (``[B, 2C]``), as in x-vector statistics pooling, which
        keeps the level *and* range of prosodic cues.

    Example
    -------
    >>> pool = MaskedPooling("stats")
    >>> x = torch.randn(2, 5, 3)
    >>> mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    >>> pool(x, mask).shape
    torch.Size([2, 6])
    >>> pool.output_size(3)
    6
    """

    MODES = ("mean", "stats")

    def __init__(self, mode="stats"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"pooling mode must be one of {self.MODES}")
        self.mode = mode

    def output_size(self, input_size):
        """Width of the pooled vector for frames of width ``input_size``."""
        return input_size * (2 if self.mode == "stats" else 1)

    def forward(self, features, mask):
        """Pools ``[B, T, C]`` features over the ``[B, T]`` valid mask."""
        if self.mode == "mean":
            return masked_mean(features, mask)
        mean, std = masked_statistics(features, mask)
        return torch.cat([mean, std], dim=-1)


class GlobalNormalization(torch.nn.Module):
    """Normalises features with dataset-level mean and standard deviation.

    Statistics are accumulated over every valid frame seen in training mode
    (padding excluded) and applied unchanged in evaluation, so an utterance's
    loudness and pitch level survive normalisation (per-utterance
    normalisation would remove them). This replaces SpeechBrain's
    ``InputNormalization(norm_type="global")``, which keeps its statistics
    outside ``state_dict`` (own checkpoint hooks): nested inside a stream they
    would be lost on save and at export. Here they are buffers.

    Arguments
    ---------
    input_size : int
        Number of feature channels.
    max_updates : int, optional
        Stop updating after this many training batches (``None``: never stop).
    eps : float
        Floor of the standard deviation.

    Example
    -------
    >>> norm = GlobalNormalization(2)
    >>> x = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [9.0, 9.0]]])
    >>> mask = torch.tensor([[True, True, False]])
    >>> y = norm(x, mask)  # training mode: statistics updated first
    >>> y[0, :2]
    tensor([[-1., -1.],
            [ 1.,  1.]])
    >>> _ = norm.eval()
    >>> norm(x, mask)[0, :2]
    tensor([[-1., -1.],
            [ 1.,  1.]])
    """

    def __init__(self, input_size, max_updates=None, eps=1e-5):
        super().__init__()
        self.max_updates = max_updates
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(input_size))
        self.register_buffer("running_var", torch.ones(input_size))
        self.register_buffer(
            "frame_count", torch.zeros((), dtype=torch.float64)
        )
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _update(self, features, mask):
        valid = features[mask].double()  # [N, C]
        n_new = valid.shape[0]
        if n_new == 0:
            return
        new_mean = valid.mean(dim=0)
        new_var = valid.var(dim=0, unbiased=False)
        n_old = self.frame_count.item()
        total = n_old + n_new
        old_mean = self.running_mean.double()
        delta = new_mean - old_mean
        # Chan et al.'s parallel combination of two sets of moments.
        mean = old_mean + delta * n_new / total
        m2 = (
            self.running_var.double() * n_old
            + new_var * n_new
            + delta.pow(2) * n_old * n_new / total
        )
        self.running_mean.copy_(mean)
        self.running_var.copy_(m2 / total)
        self.frame_count.fill_(total)
        self.updates += 1

    def forward(self, features, mask):
        """Normalises ``[B, T, C]`` features; padding stays zero."""
        if self.training and (
            self.max_updates is None or self.updates.item() < self.max_updates
        ):
            self._update(features, mask)
        std = self.running_var.clamp(min=self.eps**2).sqrt()
        normalised = (features - self.running_mean) / std
        return normalised * mask.unsqueeze(-1).to(normalised.dtype)


class UtteranceNormalization(torch.nn.Module):
    """Removes each utterance's mean spectrum, then normalises globally.

    An inductive counterpart of speaker normalisation: the recording
    channel and the speaker's average spectral colouring are (close to)
    constant over an utterance, so subtracting the utterance's mean over
    its valid frames, per channel, takes them out, as cepstral mean
    normalisation does in speech recognition. It needs no other audio
    than the utterance itself, so an exported model labels one file at a
    time. It also removes what the mean carries of emotion (overall
    loudness, spectral tilt): the frame-to-frame variation (pitch
    movements, rhythm, energy dynamics) stays. The residual is then
    standardised with dataset statistics
    (:class:`GlobalNormalization`). With ``keep_mean``, the utterance's
    mean spectrum, standardised with dataset statistics, is appended as
    ``input_size`` more channels on every frame, so the encoder still sees
    it, separated from the dynamics.

    Arguments
    ---------
    input_size : int
        Number of feature channels.
    max_updates : int, optional
        Training batches the dataset statistics see (``None``: all).
    keep_mean : bool
        Append the (standardised) utterance mean to every frame.

    Example
    -------
    >>> norm = UtteranceNormalization(1)
    >>> x = torch.tensor([[[1.0], [3.0], [9.0]], [[11.0], [13.0], [0.0]]])
    >>> mask = torch.tensor([[True, True, False], [True, True, False]])
    >>> norm(x, mask)[:, :2, 0]  # both utterances lose their own level
    tensor([[-1.,  1.],
            [-1.,  1.]])
    >>> UtteranceNormalization(3, keep_mean=True).output_size
    6
    """

    def __init__(self, input_size, max_updates=None, keep_mean=False):
        super().__init__()
        self.keep_mean = keep_mean
        self.output_size = input_size * (2 if keep_mean else 1)
        self.residual = GlobalNormalization(input_size, max_updates)
        self.mean = (
            GlobalNormalization(input_size, max_updates) if keep_mean else None
        )

    def forward(self, features, mask):
        """Normalises ``[B, T, C]`` features; padding stays zero."""
        mean = masked_mean(features, mask)
        valid = mask.unsqueeze(-1).to(features.dtype)
        normalised = self.residual((features - mean.unsqueeze(1)) * valid, mask)
        if not self.keep_mean:
            return normalised
        one_frame = torch.ones_like(mask[:, :1])
        level = self.mean(mean.unsqueeze(1), one_frame)
        return torch.cat([normalised, level * valid], dim=-1)
