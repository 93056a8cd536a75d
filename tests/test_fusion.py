"""Fusion blocks: one interface, any widths, N streams, padding ignored."""

import pytest
import torch

from sercaf_toolkit.lobes.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    FiLMFusion,
    PaperCAF,
    SumFusion,
)

BLOCKS = {
    "sum": lambda sizes: SumFusion(sizes, output_size=10),
    "con": lambda sizes: ConcatFusion(sizes, output_size=10),
    "film": lambda sizes: FiLMFusion(sizes, output_size=10),
    "caf": lambda sizes: CrossAttentionFusion(
        sizes, output_size=10, attention_size=8, num_heads=2
    ),
    "caf_mean": lambda sizes: CrossAttentionFusion(
        sizes, output_size=10, attention_size=8, num_heads=2, pooling="mean"
    ),
    "paper_caf": lambda sizes: PaperCAF(sizes, output_size=10),
}


def streams(sizes, frames, lengths, seed=0):
    """Random frames for each stream, padding filled with large noise."""
    generator = torch.Generator().manual_seed(seed)
    features, masks = [], []
    for size, total, valid in zip(sizes, frames, lengths):
        feats = 50 * torch.randn(len(valid), total, size, generator=generator)
        mask = torch.arange(total).unsqueeze(0) < torch.tensor(valid).unsqueeze(
            1
        )
        feats[mask] = torch.randn(int(mask.sum()), size, generator=generator)
        features.append(feats)
        masks.append(mask)
    return features, masks


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize(
    "sizes", [[12, 5], [7, 7], [12, 5, 9]], ids=["unequal", "equal", "three"]
)
def test_shapes_and_padding(name, sizes):
    fusion = BLOCKS[name](sizes).eval()
    frames = [9, 4, 6][: len(sizes)]
    lengths = [[9, 3, 1], [4, 4, 2], [6, 1, 5]][: len(sizes)]
    features, masks = streams(sizes, frames, lengths)
    with torch.no_grad():
        fused = fusion(features, masks)
        assert fused.shape == (3, 10)
        assert torch.isfinite(fused).all()
        for index in range(3):
            alone = [
                f[index : index + 1, : m[index].sum()]
                for f, m in zip(features, masks)
            ]
            alone_masks = [
                torch.ones(a.shape[:2], dtype=torch.bool) for a in alone
            ]
            torch.testing.assert_close(
                fusion(alone, alone_masks)[0],
                fused[index],
                atol=1e-4,
                rtol=1e-4,
            )


@pytest.mark.parametrize("name", BLOCKS)
def test_every_stream_gets_gradient(name):
    sizes = [12, 5, 9]
    fusion = BLOCKS[name](sizes).train()
    features, masks = streams(
        sizes, [9, 4, 6], [[9, 3, 1], [4, 4, 2], [6, 1, 5]]
    )
    features = [f.requires_grad_() for f in features]
    fusion(features, masks).pow(2).sum().backward()
    for feats, mask in zip(features, masks):
        assert feats.grad[mask].abs().sum() > 0
        assert feats.grad[~mask].abs().sum() == 0  # padding feeds nothing


@pytest.mark.parametrize("name", BLOCKS)
def test_wrong_inputs_are_clear_errors(name):
    with pytest.raises(ValueError, match="at least one stream"):
        BLOCKS[name]([])
    fusion = BLOCKS[name]([12, 5])
    features, masks = streams([12, 5], [3, 3], [[3], [3]])
    with pytest.raises(ValueError, match="built for 2 streams"):
        fusion(features[:1], masks[:1])
    features, masks = streams([12, 6], [3, 3], [[3], [3]])
    with pytest.raises(ValueError, match="stream 1 has width 6"):
        fusion(features, masks)


@pytest.mark.parametrize("name", BLOCKS)
def test_one_stream_is_pooled_and_projected(name):
    # Nothing to fuse: the block still gives an embedding that padding does
    # not change, so any experiment runs as a single-stream baseline.
    fusion = BLOCKS[name]([12]).eval()
    features, masks = streams([12], [7], [[7, 4]])
    fused = fusion(features, masks)
    assert fused.shape == (2, fusion.output_size)
    alone = fusion([features[0][1:, :4]], [masks[0][1:, :4]])
    torch.testing.assert_close(fused[1:], alone)


def test_caf_attends_only_to_valid_frames_of_other_streams():
    fusion = CrossAttentionFusion(
        [4, 6, 3], output_size=5, attention_size=8, num_heads=2
    )
    fusion.eval().keep_attention = True
    features, masks = streams([4, 6, 3], [5, 7, 2], [[5, 2], [7, 3], [2, 1]])
    fusion(features, masks)
    maps = fusion.attention_maps
    assert [tuple(m.shape) for m in maps] == [(2, 5, 9), (2, 7, 7), (2, 2, 12)]
    # Stream 0 attends to streams 1 and 2; keys are their frames in order.
    keys_mask = torch.cat([masks[1], masks[2]], dim=1)
    assert (maps[0][~keys_mask.unsqueeze(1).expand_as(maps[0])] == 0).all()
    # Rows sum to one over the valid key frames, for every stream.
    for weights, mask in zip(maps, masks):
        torch.testing.assert_close(
            weights.sum(dim=-1)[mask], torch.ones(int(mask.sum()))
        )


def test_film_starts_as_identity_modulation():
    """Zero-initialised modulators: FiLM equals CON on the same weights."""
    film = FiLMFusion([4, 3], output_size=5, pooling="mean")
    con = ConcatFusion([4, 3], output_size=5, pooling="mean")
    con.linear.load_state_dict(film.linear.state_dict())
    features, masks = streams([4, 3], [5, 2], [[5, 2], [2, 1]])
    torch.testing.assert_close(film(features, masks), con(features, masks))


def test_paper_caf_is_linear_in_its_inputs():
    """The published form has no softmax: it is an affine map."""
    fusion = PaperCAF([4, 3], output_size=6)
    a, masks = streams([4, 3], [3, 3], [[3], [3]], seed=1)
    b, _ = streams([4, 3], [3, 3], [[3], [3]], seed=2)
    zero = [torch.zeros_like(x) for x in a]
    both = [x + y for x, y in zip(a, b)]
    with torch.no_grad():
        torch.testing.assert_close(
            fusion(both, masks) + fusion(zero, masks),
            fusion(a, masks) + fusion(b, masks),
        )
