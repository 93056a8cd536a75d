"""Encoders trained from scratch on the log-mel spectrogram.

Both follow the text-classification networks of the paper, but read the
spectrogram with *time* as the sequence and return frame-level features
(for cross-attention) with their valid-frame mask; utterance-level pooling
happens in the fusion block. TextRCNN's ``form="lai"`` pools inside the
encoder (Lai et al.'s max over time) and returns a one-frame sequence.

Authors
 * sercaf-toolkit developers 2026
"""

import torch

from sercaf_toolkit.lobes.masking import lengths_to_mask


class TextRCNN(torch.nn.Module):
    """The paper's recurrent text network, applied to log-mel frames.

    A linear "embedding" of each frame (n_mels -> ``embedding_size``) and a
    bidirectional LSTM run on packed sequences, so that padding never
    enters the recurrence. Two read-outs (``form``):

    - ``"frames"`` (default): the LSTM outputs, one vector per frame, for
      the fusion block to attend over and pool (mean and standard deviation
      over valid frames by default). It replaces the published last-state
      read-out, which keeps only what the LSTM remembers at the ends.
    - ``"lai"``: the RCNN of Lai et al. (2015), "Recurrent Convolutional
      Neural Networks for Text Classification". Each frame is represented
      by its left context, its embedding and its right context,
      ``[c_l(i); e(i); c_r(i)]``, where ``c_l(i)`` is the forward LSTM's
      state *before* frame ``i`` (zero at the first frame) and ``c_r(i)``
      the backward LSTM's state after it (zero at the last valid frame),
      as in the paper's recurrences. A linear map and tanh give the
      frame's latent vector, and an element-wise max over the valid
      frames gives the utterance vector. It is returned as a sequence of
      one frame (mask all ``True``), so any fusion block takes it; a
      cross-attention block then has a single key for this stream.

    Dropout zeroes whole channels, with one draw per utterance shared by
    all its frames (``torch.nn.Dropout1d`` over time). Scaling a channel
    by ``m / (1 - p)`` scales its mean, standard deviation and maximum over
    time by the same factor, whose expectation is 1: the statistics that
    pooling takes over time are unbiased between training and evaluation.
    For mean-and-std pooling this is exactly dropout on the pooled vector,
    with one draw shared by a channel's mean and its std. (Dropout drawn
    per frame would not be: in training only, it inflates the std over
    time by a factor of ``1 / sqrt(1 - p)`` or more, at least +41 % at
    ``p = 0.5``.) In the ``"lai"`` form it is dropout on the max-pooled
    vector.

    Arguments
    ---------
    input_size : int
        Feature width (number of mel bands).
    embedding_size : int
        Width of the frame projection.
    hidden_size : int
        LSTM units per direction.
    num_layers : int
        Stacked LSTM layers.
    dropout : float
        Probability of dropping a channel of the output for an utterance.
    form : str
        ``"frames"`` (LSTM outputs per frame) or ``"lai"`` (Lai et al.'s
        context-embedding-context, tanh projection, max over time).
    projection_size : int, optional
        Width of the ``"lai"`` form's tanh projection (default: twice
        ``hidden_size``, the width of the ``"frames"`` form).

    Example
    -------
    >>> encoder = TextRCNN(input_size=40, embedding_size=32, hidden_size=16)
    >>> x = torch.randn(2, 7, 40)
    >>> mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    >>> out, out_mask = encoder(x, mask)
    >>> out.shape, out_mask.sum(dim=1).tolist(), encoder.output_size
    (torch.Size([2, 7, 32]), [7, 4], 32)
    >>> lai = TextRCNN(input_size=40, embedding_size=32, hidden_size=16,
    ...                form="lai", projection_size=24).eval()
    >>> out, out_mask = lai(x, mask)
    >>> out.shape, out_mask.tolist(), lai.output_size
    (torch.Size([2, 1, 24]), [[True], [True]], 24)
    >>> bool(out.abs().max() < 1)  # tanh outputs (no dropout in eval)
    True
    """

    FORMS = ("frames", "lai")

    def __init__(
        self,
        input_size=224,
        embedding_size=768,
        hidden_size=384,
        num_layers=1,
        dropout=0.5,
        form="frames",
        projection_size=None,
    ):
        super().__init__()
        if form not in self.FORMS:
            raise ValueError(
                f"TextRCNN form must be one of {self.FORMS}, got {form!r}"
            )
        self.form = form
        self.hidden_size = hidden_size
        self.embedding = torch.nn.Linear(input_size, embedding_size)
        self.lstm = torch.nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
        )
        self.dropout = torch.nn.Dropout1d(dropout)
        self.output_size = 2 * hidden_size
        if form == "lai":
            if projection_size is None:
                projection_size = 2 * hidden_size
            self.projection = torch.nn.Linear(
                embedding_size + 2 * hidden_size, projection_size
            )
            self.output_size = projection_size

    def forward(self, features, mask):
        """Encodes ``[B, T, input_size]`` frames; returns frames and mask.

        Arguments
        ---------
        features : torch.Tensor
            ``[batch, time, input_size]`` frames; padding may hold anything.
        mask : torch.Tensor
            ``[batch, time]`` bool valid-frame mask.

        Returns
        -------
        frames : torch.Tensor
            ``[batch, time, output_size]`` with padded frames zero
            (``"frames"``), or ``[batch, 1, output_size]`` (``"lai"``).
        mask : torch.Tensor
            The input mask (``"frames"``), or ``[batch, 1]`` all ``True``.
        """
        lengths = mask.sum(dim=1)
        embedded = self.embedding(features)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.lstm(packed)
        # Padded frames come back as zeros.
        outputs, _ = torch.nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=features.shape[1]
        )
        if self.form == "lai":
            outputs, mask = self._lai(embedded, outputs, mask)
        return self._drop_channels(outputs), mask

    def _lai(self, embedded, outputs, mask):
        """Context-embedding-context, tanh projection, max over valid time."""
        forward, backward = outputs.split(self.hidden_size, dim=-1)
        start = forward.new_zeros(forward.shape[0], 1, forward.shape[2])
        # Left context of frame i: the forward state after frame i - 1;
        # right context: the backward state after frame i + 1, which is a
        # zero of pad_packed_sequence at the last valid frame.
        left = torch.cat([start, forward[:, :-1]], dim=1)
        right = torch.cat([backward[:, 1:], start], dim=1)
        latent = torch.tanh(
            self.projection(torch.cat([left, embedded, right], dim=-1))
        )
        hidden = torch.finfo(latent.dtype).min
        latent = latent.masked_fill(~mask.unsqueeze(-1), hidden)
        pooled = latent.amax(dim=1, keepdim=True)  # [B, 1, projection]
        return pooled, torch.ones_like(mask[:, :1])

    def _drop_channels(self, frames):
        """Dropout of whole channels, one draw per utterance (see above)."""
        return self.dropout(frames.transpose(1, 2)).transpose(1, 2)


class DPCNN(torch.nn.Module):
    """Deep pyramid CNN over log-mel frames, with a fixed pyramid depth.

    A region convolution spans the full feature width (kernel 3 in time),
    followed by two pre-activation convolutions with a residual add; then
    ``num_blocks`` pyramid blocks, each max-pooling time by 2 (kernel 3)
    and adding two more convolutions on a shortcut. The paper repeats blocks
    "until the length is at most 2", which makes the depth depend on the
    padded length of the batch and leaves nothing to attend to; a fixed
    depth keeps results independent of padding and frames for attention.
    Padded frames are held at zero (and at minus infinity before pooling),
    exactly what an unpadded utterance sees at its edges.

    Arguments
    ---------
    input_size : int
        Feature width (number of mel bands).
    num_filters : int
        Channels of every convolution (the paper's 250).
    num_blocks : int
        Pyramid blocks; each halves the number of frames (rounding up).
    dropout : float
        Probability of dropping a channel of the output for an utterance:
        one draw shared by all its frames, as in :class:`TextRCNN`, so that
        statistics pooled over time are unbiased between training and
        evaluation.

    Example
    -------
    >>> encoder = DPCNN(input_size=40, num_filters=8, num_blocks=2)
    >>> x = torch.randn(2, 9, 40)
    >>> mask = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    >>> out, out_mask = encoder(x, mask)
    >>> out.shape, out_mask.sum(dim=1).tolist(), encoder.output_size
    (torch.Size([2, 3, 8]), [3, 2], 8)
    """

    def __init__(
        self, input_size=224, num_filters=250, num_blocks=3, dropout=0.0
    ):
        super().__init__()
        self.region = torch.nn.Conv1d(input_size, num_filters, 3, padding=1)
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(num_filters, num_filters, 3, padding=1)
            for _ in range(2 * (num_blocks + 1))
        )
        self.num_blocks = num_blocks
        self.dropout = torch.nn.Dropout1d(dropout)
        self.output_size = num_filters

    def _residual(self, x, keep, index):
        """``x + conv(relu(conv(relu(x))))`` with padding held at zero."""
        y = x
        for conv in self.convs[2 * index : 2 * index + 2]:
            y = conv(torch.relu(y)) * keep
        return x + y

    def forward(self, features, mask):
        """Encodes ``[B, T, input_size]`` frames; returns frames and mask."""
        lengths = mask.sum(dim=1)
        keep = mask.unsqueeze(1).to(features.dtype)  # [B, 1, T]
        x = self.region(features.transpose(1, 2) * keep) * keep
        x = self._residual(x, keep, 0)
        for block in range(1, self.num_blocks + 1):
            hidden = torch.finfo(x.dtype).min
            x = x.masked_fill(keep == 0, hidden)
            x = torch.nn.functional.max_pool1d(x, 3, stride=2, padding=1)
            lengths = (lengths - 1) // 2 + 1
            mask = lengths_to_mask(lengths, x.shape[-1])
            keep = mask.unsqueeze(1).to(x.dtype)
            x = self._residual(x * keep, keep, block)
        return self.dropout(x).transpose(1, 2), mask
