"""Encoders trained from scratch on the log-mel spectrogram.

Both follow the text-classification networks of the paper, but return
*frame-level* features (for cross-attention) with their valid-frame mask;
utterance-level pooling happens in the fusion block.

Authors
 * sercaf-toolkit developers 2026
"""

import torch

from sercaf_toolkit.lobes.masking import lengths_to_mask


class TextRCNN(torch.nn.Module):
    """The paper's recurrent text network, applied to log-mel frames.

    A linear "embedding" of each frame (n_mels -> ``embedding_size``), a
    bidirectional LSTM run on packed sequences (so padding never enters the
    recurrence), and dropout. The paper's last-state readout becomes the
    fusion block's pooling.

    Arguments
    ---------
    input_size : int
        Feature width (number of mel bands).
    embedding_size : int
        Width of the frame projection.
    hidden_size : int
        LSTM units per direction; the output width is twice this.
    num_layers : int
        Stacked LSTM layers.
    dropout : float
        Dropout on the LSTM outputs.

    Example
    -------
    >>> encoder = TextRCNN(input_size=40, embedding_size=32, hidden_size=16)
    >>> x, mask = torch.randn(2, 7, 40), torch.ones(2, 7, dtype=torch.bool)
    >>> out, out_mask = encoder(x, mask)
    >>> out.shape, encoder.output_size
    (torch.Size([2, 7, 32]), 32)
    """

    def __init__(
        self,
        input_size=224,
        embedding_size=768,
        hidden_size=384,
        num_layers=1,
        dropout=0.5,
    ):
        super().__init__()
        self.embedding = torch.nn.Linear(input_size, embedding_size)
        self.lstm = torch.nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.output_size = 2 * hidden_size

    def forward(self, features, mask):
        """Encodes ``[B, T, input_size]`` frames; returns frames and mask."""
        lengths = mask.sum(dim=1)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.embedding(features),
            lengths.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        outputs, _ = self.lstm(packed)
        outputs, _ = torch.nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=features.shape[1]
        )
        return self.dropout(outputs), mask


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
        Dropout on the output frames.

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
        self.dropout = torch.nn.Dropout(dropout)
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
        return self.dropout(x.transpose(1, 2)), mask
