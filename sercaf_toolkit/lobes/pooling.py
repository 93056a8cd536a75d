"""Pooling "fusion" for one stream (or several): pool, concatenate, project.

The fusion blocks of :mod:`sercaf_toolkit.lobes.fusion` are built to join
streams. A model with the log-mel stream alone (the deep counterpart of a
linear model on log-mel statistics) is plainest with no fusion at all:
:class:`StreamPooling` (``fusion: pool``) pools each stream with statistics
pooling and projects, for any number of streams.

Authors
 * sercaf-toolkit developers 2026
"""

import torch

from sercaf_toolkit.errors import SettingError
from sercaf_toolkit.lobes.masking import MaskedPooling


class StreamPooling(torch.nn.Module):
    """Pools each stream over its valid frames, concatenates, projects.

    With ``pooling="stats"`` (the default) each stream gives the mean and
    standard deviation of its frames over valid frames only (x-vector
    statistics pooling), so padding never changes the result.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames (one or more streams).
    output_size : int
        Width of the embedding.
    pooling : str
        ``"mean"`` or ``"stats"``.
    dropout : float
        Dropout on the pooled vector, before the projection.

    Example
    -------
    >>> pool = StreamPooling([6], output_size=4)
    >>> frames = torch.randn(2, 5, 6)
    >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    >>> pool([frames], [mask]).shape
    torch.Size([2, 4])
    >>> padded = torch.cat([frames, torch.randn(2, 2, 6)], dim=1)
    >>> longer = torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], 1)
    >>> _ = pool.eval()
    >>> torch.allclose(pool([frames], [mask]), pool([padded], [longer]))
    True
    """

    def __init__(
        self, input_sizes, output_size=64, pooling="stats", dropout=0.0
    ):
        super().__init__()
        self.input_sizes = [int(size) for size in input_sizes]
        if not self.input_sizes:
            raise ValueError("StreamPooling needs at least one stream")
        self.pooling = MaskedPooling(pooling)
        pooled = sum(self.pooling.output_size(s) for s in self.input_sizes)
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(pooled, output_size)
        self.output_size = output_size

    def forward(self, features, masks):
        """Pools lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``."""
        if len(features) != len(self.input_sizes):
            raise ValueError(
                f"StreamPooling was built for {len(self.input_sizes)} streams,"
                f" got {len(features)}"
            )
        vectors = [self.pooling(f, m) for f, m in zip(features, masks)]
        pooled = self.dropout(torch.cat(vectors, dim=-1))
        return torch.relu(self.linear(pooled))


class ProbePooling(torch.nn.Module):
    """A probe's frame layer: Linear and ReLU per frame, then mean pooling.

    With the classifier head's linear layer after it, this is the small
    head of SUPERB-style and EmoBox-style probes of a frozen SSL model
    (Linear-ReLU-mean-pool-Linear); ``fusion: probe`` in the recipes,
    for one stream (``streams: ssl``).

    Arguments
    ---------
    input_sizes : list of int
        The one stream's width.
    output_size : int
        Width of the frame layer and of the embedding.

    Example
    -------
    >>> probe = ProbePooling([6], output_size=4)
    >>> frames = torch.randn(2, 5, 6)
    >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    >>> probe([frames], [mask]).shape
    torch.Size([2, 4])
    >>> torch.allclose(probe([frames[1:, :3]], [mask[1:, :3]]),
    ...                probe([frames], [mask])[1:])
    True
    """

    def __init__(self, input_sizes, output_size=256):
        super().__init__()
        if len(input_sizes) != 1:
            raise SettingError(
                f"fusion: probe pools one stream and got {len(input_sizes)}; "
                "add --streams=ssl (as hparams/frozen_probe.yaml does)"
            )
        self.linear = torch.nn.Linear(int(input_sizes[0]), output_size)
        self.pooling = MaskedPooling("mean")
        self.output_size = output_size

    def forward(self, features, masks):
        """``[B, T, D]`` frames of one stream into ``[B, output_size]``."""
        return self.pooling(torch.relu(self.linear(features[0])), masks[0])
