"""Fusion blocks: N streams of frame features in, one embedding out.

Every block has the same interface, so a recipe swaps them with one YAML
key::

    block = Block(input_sizes=[768, 250], output_size=256, ...)
    embedding = block(features, masks)   # lists of [B, T_i, D_i], [B, T_i]

``embedding`` is ``[B, output_size]``. Streams may have any widths and frame
rates; masks mark valid frames, and padding never changes a result.

A block given one stream has nothing to fuse it with: it pools that stream
and projects it (CAF attends to no other stream, FiLM modulates nothing),
so that any experiment also runs as a single-stream baseline
(``--streams=logmel``) without another file.

Authors
 * sercaf-toolkit developers 2026
"""

import torch

from sercaf_toolkit.lobes.masking import MaskedPooling


class FusionBlock(torch.nn.Module):
    """Base of the fusion blocks: checks the inputs, pools each stream.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames (one stream or more).
    output_size : int
        Width of the fused embedding.
    pooling : str
        How a stream's frames become one vector: ``"mean"`` or ``"stats"``
        (mean and standard deviation over valid frames).
    """

    def __init__(self, input_sizes, output_size, pooling="stats"):
        super().__init__()
        input_sizes = [int(size) for size in input_sizes]
        if not input_sizes:
            raise ValueError(f"{type(self).__name__} needs at least one stream")
        self.input_sizes = input_sizes
        self.output_size = output_size
        self.pooling = MaskedPooling(pooling)

    def _check(self, features, masks):
        if len(features) != len(self.input_sizes) or len(masks) != len(
            features
        ):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self.input_sizes)} "
                f"streams, got {len(features)} feature and {len(masks)} "
                "mask tensors"
            )
        for index, (feats, size) in enumerate(zip(features, self.input_sizes)):
            if feats.shape[-1] != size:
                raise ValueError(
                    f"stream {index} has width {feats.shape[-1]}, "
                    f"{type(self).__name__} expects {size}"
                )

    def pooled(self, features, masks):
        """One pooled vector per stream (widths: ``pooled_sizes``)."""
        self._check(features, masks)
        return [self.pooling(f, m) for f, m in zip(features, masks)]

    @property
    def pooled_sizes(self):
        """Widths of the vectors returned by :meth:`pooled`."""
        return [self.pooling.output_size(size) for size in self.input_sizes]


class SumFusion(FusionBlock):
    """SUM: pool each stream, project it to ``output_size``, add.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames.
    output_size : int
        Width of the fused embedding.
    pooling : str
        ``"mean"`` or ``"stats"``.

    Example
    -------
    >>> fusion = SumFusion([12, 5], output_size=8)
    >>> feats = [torch.randn(2, 6, 12), torch.randn(2, 3, 5)]
    >>> masks = [torch.ones(2, 6).bool(), torch.ones(2, 3).bool()]
    >>> fusion(feats, masks).shape
    torch.Size([2, 8])
    """

    def __init__(self, input_sizes, output_size=256, pooling="stats"):
        super().__init__(input_sizes, output_size, pooling)
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(size, output_size) for size in self.pooled_sizes
        )

    def forward(self, features, masks):
        """Fuses lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``."""
        vectors = self.pooled(features, masks)
        projected = [proj(v) for proj, v in zip(self.projections, vectors)]
        return torch.relu(torch.stack(projected).sum(dim=0))


class ConcatFusion(FusionBlock):
    """CON: pool each stream, concatenate, one linear layer.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames.
    output_size : int
        Width of the fused embedding.
    pooling : str
        ``"mean"`` or ``"stats"``.

    Example
    -------
    >>> fusion = ConcatFusion([12, 5, 7], output_size=8, pooling="mean")
    >>> feats = [torch.randn(2, t, d) for t, d in [(6, 12), (3, 5), (4, 7)]]
    >>> masks = [torch.ones(2, f.shape[1], dtype=torch.bool) for f in feats]
    >>> fusion(feats, masks).shape
    torch.Size([2, 8])
    """

    def __init__(self, input_sizes, output_size=256, pooling="stats"):
        super().__init__(input_sizes, output_size, pooling)
        self.linear = torch.nn.Linear(sum(self.pooled_sizes), output_size)

    def forward(self, features, masks):
        """Fuses lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``."""
        vectors = self.pooled(features, masks)
        return torch.relu(self.linear(torch.cat(vectors, dim=-1)))


class FiLMFusion(FusionBlock):
    """FiLM: each stream is scaled and shifted by the other streams.

    For stream ``j``, the pooled vectors of all other streams predict a
    scale ``gamma_j`` and shift ``beta_j`` of stream ``j``'s pooled vector
    (``(1 + gamma_j) * v_j + beta_j``, so that training starts near the
    identity); the modulated vectors are concatenated and passed through a
    linear layer. With two streams this is the paper's FiLM block.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames.
    output_size : int
        Width of the fused embedding.
    pooling : str
        ``"mean"`` or ``"stats"``.

    Example
    -------
    >>> fusion = FiLMFusion([12, 5], output_size=8)
    >>> feats = [torch.randn(2, 6, 12), torch.randn(2, 3, 5)]
    >>> masks = [torch.ones(2, 6).bool(), torch.ones(2, 3).bool()]
    >>> fusion(feats, masks).shape
    torch.Size([2, 8])
    """

    def __init__(self, input_sizes, output_size=256, pooling="stats"):
        super().__init__(input_sizes, output_size, pooling)
        sizes = self.pooled_sizes
        total = sum(sizes)
        # One stream: no other stream to predict its scale and shift.
        self.modulators = torch.nn.ModuleList(
            torch.nn.Linear(total - size, 2 * size)
            for size in (sizes if len(sizes) > 1 else [])
        )
        for modulator in self.modulators:
            torch.nn.init.zeros_(modulator.weight)
            torch.nn.init.zeros_(modulator.bias)
        self.linear = torch.nn.Linear(total, output_size)

    def forward(self, features, masks):
        """Fuses lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``."""
        vectors = self.pooled(features, masks)
        if not self.modulators:
            return torch.relu(self.linear(vectors[0]))
        modulated = []
        for index, (vector, modulator) in enumerate(
            zip(vectors, self.modulators)
        ):
            others = torch.cat(vectors[:index] + vectors[index + 1 :], dim=-1)
            gamma, beta = modulator(others).chunk(2, dim=-1)
            modulated.append((1 + gamma) * vector + beta)
        return torch.relu(self.linear(torch.cat(modulated, dim=-1)))


class CrossAttentionFusion(FusionBlock):
    """CAF: every stream's frames attend to all other streams' frames.

    Each stream is projected to a common width ``attention_size`` (aligning
    the streams' dimensionality). For stream ``i``, multi-head attention
    takes queries from stream ``i`` and keys and values from the frames of
    every other stream, concatenated in time and masked by their lengths;
    a residual connection and layer norm follow. Each stream's attended
    frames are pooled over its valid frames, and the pooled vectors are
    concatenated and linearly mapped to ``output_size``. With two streams,
    the SSL frames attend to the log-mel frames and back.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames.
    output_size : int
        Width of the fused embedding.
    attention_size : int
        Common width of queries, keys and values.
    num_heads : int
        Attention heads (must divide ``attention_size``).
    dropout : float
        Dropout on the attention weights and the attended frames.
    pooling : str
        ``"mean"`` or ``"stats"``.

    Example
    -------
    >>> fusion = CrossAttentionFusion([12, 5], output_size=8, attention_size=16)
    >>> feats = [torch.randn(2, 6, 12), torch.randn(2, 3, 5)]
    >>> short = torch.tensor([[True] * 3, [True, False, False]])
    >>> masks = [torch.ones(2, 6).bool(), short]
    >>> fusion(feats, masks).shape
    torch.Size([2, 8])
    >>> fusion.keep_attention = True
    >>> _ = fusion(feats, masks)
    >>> [tuple(w.shape) for w in fusion.attention_maps]  # [B, T_i, other T]
    [(2, 6, 3), (2, 3, 6)]
    """

    def __init__(
        self,
        input_sizes,
        output_size=256,
        attention_size=256,
        num_heads=4,
        dropout=0.1,
        pooling="stats",
    ):
        super().__init__(input_sizes, output_size, pooling)
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(size, attention_size) for size in self.input_sizes
        )
        # One stream: no other stream to attend to.
        self.attentions = torch.nn.ModuleList(
            torch.nn.MultiheadAttention(
                attention_size, num_heads, dropout=dropout, batch_first=True
            )
            for _ in (self.input_sizes if len(self.input_sizes) > 1 else [])
        )
        self.norms = torch.nn.ModuleList(
            torch.nn.LayerNorm(attention_size) for _ in self.input_sizes
        )
        self.dropout = torch.nn.Dropout(dropout)
        pooled_size = self.pooling.output_size(attention_size)
        self.linear = torch.nn.Linear(
            pooled_size * len(self.input_sizes), output_size
        )
        self.keep_attention = False
        self.attention_maps = None

    def forward(self, features, masks):
        """Fuses lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``.

        When ``keep_attention`` is set, ``attention_maps`` afterwards holds,
        per stream, the head-averaged weights ``[B, T_i, sum_j T_j]`` over
        the other streams' frames in stream order.
        """
        self._check(features, masks)
        projected = [proj(f) for proj, f in zip(self.projections, features)]
        if not self.attentions:
            frames = self.norms[0](projected[0])
            self.attention_maps = None
            return torch.relu(self.linear(self.pooling(frames, masks[0])))
        maps, pooled = [], []
        for index, (query, attention, norm) in enumerate(
            zip(projected, self.attentions, self.norms)
        ):
            keys = torch.cat(projected[:index] + projected[index + 1 :], dim=1)
            key_mask = torch.cat(masks[:index] + masks[index + 1 :], dim=1)
            if torch.onnx.is_in_onnx_export():
                attended, weights = _traceable_attention(
                    attention, query, keys, key_mask
                )
            else:
                attended, weights = attention(
                    query,
                    keys,
                    keys,
                    key_padding_mask=~key_mask,
                    need_weights=self.keep_attention,
                )
            frames = norm(query + self.dropout(attended))
            pooled.append(self.pooling(frames, masks[index]))
            maps.append(weights)
        self.attention_maps = maps if self.keep_attention else None
        return torch.relu(self.linear(torch.cat(pooled, dim=-1)))


def _traceable_attention(attention, query, keys, key_mask):
    """Evaluation-mode ``torch.nn.MultiheadAttention``, written out.

    Traced for ONNX, the module's own code bakes the trace's sequence
    length into its reshapes, so that another length fails to run. Here
    heads are split with ``unflatten`` (constant sizes only) and the
    result is the module's in evaluation mode (no dropout), without
    weights.

    Example
    -------
    >>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    >>> query, keys = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    >>> mask = torch.tensor([[True, True, True], [True, False, False]])
    >>> ours, _ = _traceable_attention(mha, query, keys, mask)
    >>> theirs, _ = mha(query, keys, keys, key_padding_mask=~mask)
    >>> torch.allclose(ours, theirs, atol=1e-6)
    True
    """
    heads = attention.num_heads
    width = attention.embed_dim // heads
    weights = attention.in_proj_weight.chunk(3)
    biases = (
        attention.in_proj_bias.chunk(3)
        if attention.in_proj_bias is not None
        else (None, None, None)
    )

    def split(x, index):  # [B, T, E] -> [B, heads, T, width]
        x = torch.nn.functional.linear(x, weights[index], biases[index])
        return x.unflatten(-1, (heads, width)).transpose(1, 2)

    q, k, v = split(query, 0), split(keys, 1), split(keys, 2)
    scores = torch.matmul(q, k.transpose(-1, -2)) / width**0.5
    hidden = torch.finfo(scores.dtype).min
    scores = scores.masked_fill(~key_mask[:, None, None, :], hidden)
    attended = torch.matmul(torch.softmax(scores, dim=-1), v)
    return attention.out_proj(attended.transpose(1, 2).flatten(2)), None


class PaperCAF(FusionBlock):
    """The published vector-level CAF, kept for comparison.

    The published code fuses one short vector per stream (the logits of a
    keyword-spotting head). Cross-attention between single vectors has one
    key, so its softmax weight is always 1 and the attended value is just a
    linear map of the other stream: the block is linear in the concatenated
    vectors. Here each stream is mean-pooled and mapped to a
    ``vector_size`` vector ``v_i``; each gets ``v_i + sum_j W_ij v_j`` over
    the other streams, and the results are concatenated and mapped linearly
    to ``output_size``.

    Arguments
    ---------
    input_sizes : list of int
        Width of each stream's frames.
    output_size : int
        Width of the fused embedding.
    vector_size : int
        Width of the per-stream vectors (12 in the published code).

    Example
    -------
    >>> fusion = PaperCAF([12, 5], output_size=8)
    >>> feats = [torch.randn(2, 6, 12), torch.randn(2, 3, 5)]
    >>> masks = [torch.ones(2, 6).bool(), torch.ones(2, 3).bool()]
    >>> fusion(feats, masks).shape
    torch.Size([2, 8])
    """

    def __init__(self, input_sizes, output_size=12, vector_size=12):
        super().__init__(input_sizes, output_size, pooling="mean")
        count = len(self.input_sizes)
        self.heads = torch.nn.ModuleList(
            torch.nn.Linear(size, vector_size) for size in self.input_sizes
        )
        # values[i][j]: the value map of stream j as seen by stream i; a
        # stream does not attend to itself, so values[i][i] is left empty
        # (an Identity, which holds no weights and is never called).
        self.values = torch.nn.ModuleList(
            torch.nn.ModuleList(
                torch.nn.Linear(vector_size, vector_size, bias=False)
                if j != i
                else torch.nn.Identity()
                for j in range(count)
            )
            for i in range(count)
        )
        self.linear = torch.nn.Linear(count * vector_size, output_size)

    def forward(self, features, masks):
        """Fuses lists of ``[B, T_i, D_i]`` frames into ``[B, output_size]``."""
        self._check(features, masks)
        pooled = self.pooled(features, masks)
        vectors = [head(v) for head, v in zip(self.heads, pooled)]
        fused = []
        for i, vector in enumerate(vectors):
            attended = sum(
                self.values[i][j](other)
                for j, other in enumerate(vectors)
                if j != i
            )
            fused.append(vector + attended)
        return self.linear(torch.cat(fused, dim=-1))
