"""Log-mel front end, normalisation and scratch encoders."""

import numpy as np
import pytest
import torch

from sercaf_toolkit.lobes.masking import (
    GlobalNormalization,
    UtteranceNormalization,
    masked_statistics,
)
from sercaf_toolkit.lobes.scratch import DPCNN, TextRCNN
from sercaf_toolkit.lobes.spectrogram import LogMel, SpectrogramStream
from tests.helpers import assert_stream_ignores_padding


def utterances():
    generator = torch.Generator().manual_seed(2)
    return [
        torch.randn(n, generator=generator) for n in (16000, 7000, 1500, 300)
    ]


def test_logmel_paper_defaults_and_frame_count():
    logmel = LogMel()
    feats, mask = logmel(torch.randn(1, 16000))
    assert logmel.output_size == 224
    assert feats.shape == (1, 16000 // 512 + 1, 224)
    assert mask.all()


def test_logmel_matches_numpy_power_to_db():
    """dB against a fixed reference, floored at peak - top_db."""
    logmel = LogMel(n_mels=40, top_db=30.0)
    wav = torch.randn(1, 8000)
    feats, _ = logmel(wav)
    power = logmel.mel(wav).transpose(1, 2).numpy()
    expected = 10 * np.log10(np.maximum(power, 1e-10))
    expected = np.maximum(expected, expected.max() - 30.0)
    np.testing.assert_allclose(feats.numpy(), expected, atol=1e-4)


def test_logmel_keeps_loudness():
    """A louder utterance gets higher dB (no per-utterance peak scaling)."""
    logmel = LogMel(n_mels=40)
    wav = torch.randn(1, 8000)
    quiet, _ = logmel(wav)
    loud, _ = logmel(4 * wav)
    assert (loud - quiet).mean() == pytest.approx(20 * np.log10(4), abs=0.1)


def test_logmel_ignores_padding():
    assert_stream_ignores_padding(LogMel(n_mels=40), utterances())


def test_global_normalization_statistics_skip_padding():
    norm = GlobalNormalization(3)
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(n, 3, generator=generator) * 4 + 2 for n in (9, 5)]
    batch = 100 * torch.randn(2, 9, 3, generator=generator)  # loud padding
    batch[0, :9], batch[1, :5] = frames
    mask = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    out = norm(batch, mask)
    everything = torch.cat(frames)
    torch.testing.assert_close(norm.running_mean, everything.mean(dim=0))
    torch.testing.assert_close(
        norm.running_var, everything.var(dim=0, unbiased=False)
    )
    assert (out[1, 5:] == 0).all()
    # Statistics accumulate over batches like one pass over all frames.
    norm2 = GlobalNormalization(3)
    norm2(frames[0].unsqueeze(0), torch.ones(1, 9, dtype=torch.bool))
    norm2(frames[1].unsqueeze(0), torch.ones(1, 5, dtype=torch.bool))
    torch.testing.assert_close(norm2.running_mean, norm.running_mean)
    torch.testing.assert_close(norm2.running_var, norm.running_var)
    # Frozen in evaluation mode, and saved in the state dict.
    norm2.eval()(100 * batch, mask)
    torch.testing.assert_close(norm2.running_mean, norm.running_mean)
    assert {"running_mean", "running_var"} <= set(norm2.state_dict())


@pytest.mark.parametrize(
    "encoder",
    [
        DPCNN(input_size=40, num_filters=12, num_blocks=3),
        TextRCNN(input_size=40, embedding_size=16, hidden_size=8),
        TextRCNN(input_size=40, embedding_size=16, hidden_size=8, form="lai"),
    ],
    ids=["dpcnn", "textrcnn", "textrcnn-lai"],
)
def test_spectrogram_stream_ignores_padding(encoder):
    norm = GlobalNormalization(40)
    stream = SpectrogramStream(LogMel(n_mels=40), encoder, norm)
    stream.train()
    stream(torch.randn(2, 8000))  # give the normaliser statistics
    assert_stream_ignores_padding(stream, utterances())


def test_dpcnn_halves_frames_per_block():
    encoder = DPCNN(input_size=10, num_filters=4, num_blocks=3)
    lengths = torch.tensor([33, 16, 1])
    mask = torch.arange(33).unsqueeze(0) < lengths.unsqueeze(1)
    out, out_mask = encoder(torch.randn(3, 33, 10), mask)
    # ceil(33/2)=17 -> 9 -> 5; 16 -> 8 -> 4 -> 2; 1 stays 1.
    assert out.shape == (3, 5, 4)
    assert out_mask.sum(dim=1).tolist() == [5, 2, 1]
    assert (out[1, 2:] == 0).all() and (out[2, 1:] == 0).all()


def test_textrcnn_output_width_and_gradients():
    encoder = TextRCNN(
        input_size=10, embedding_size=12, hidden_size=6, dropout=0.0
    )
    x = torch.randn(2, 5, 10, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out, _ = encoder(x, mask)
    assert out.shape == (2, 5, 12)
    out[mask].sum().backward()
    assert x.grad[1, 3:].abs().sum() == 0  # padding feeds nothing
    assert x.grad[1, :3].abs().sum() > 0


def padded_frames(lengths, width, seed=0):
    """Random frames with *noise* in the padding, and their mask."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), max(lengths), width, generator=generator)
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
    return frames, mask


@pytest.mark.parametrize(
    "build",
    [
        lambda: TextRCNN(8, 16, 8, dropout=0.5),
        lambda: TextRCNN(8, 16, 8, dropout=0.5, form="lai"),
        lambda: DPCNN(8, num_filters=16, num_blocks=1, dropout=0.5),
    ],
    ids=["textrcnn-frames", "textrcnn-lai", "dpcnn"],
)
def test_dropout_leaves_pooled_statistics_unbiased(build):
    """Averaged over dropout draws, training pools what evaluation pools.

    The mean and standard deviation over valid frames (what the fusion
    blocks pool; taken here without their variance floor, whose constant
    ``sqrt(eps)`` on dropped channels is not dropout's doing) must match
    evaluation mode in expectation. Dropout drawn per frame inflates the
    std half in training only: by 41 % or more at p = 0.5; here by a
    factor of 2.2 (TextRCNN) and 1.7 (DPCNN), as the frames' means are
    large next to their spread.
    """
    torch.manual_seed(0)
    encoder = build()
    frames, mask = padded_frames([20, 12], 8)

    def pooled(out, out_mask):
        return torch.cat(masked_statistics(out, out_mask, eps=0.0), dim=-1)

    repeats = 4000  # each copy of the batch draws its own dropout
    with torch.no_grad():
        expected = pooled(*encoder.eval()(frames, mask))
        out, out_mask = encoder.train()(
            frames.repeat(repeats, 1, 1), mask.repeat(repeats, 1)
        )
        draws = pooled(out, out_mask).view(repeats, *expected.shape)
    assert not torch.allclose(draws[0], expected)  # dropout is on
    average = draws.mean(dim=0)
    width = encoder.output_size
    for half in (slice(0, width), slice(width, 2 * width)):  # mean, std
        total = expected[:, half].abs().sum() + 1e-12
        ratio = (average[:, half].abs().sum() + 1e-12) / total
        assert ratio.item() == pytest.approx(1.0, abs=0.02)
    torch.testing.assert_close(average, expected, rtol=0.1, atol=0.005)


def test_textrcnn_lai_follows_the_recurrences_of_lai_et_al():
    """[left context; embedding; right context], tanh, max over time.

    The left context of frame i is the forward state after frame i - 1
    (zero for the first frame), the right context the backward state after
    frame i + 1 (zero for the last frame); computed here frame by frame
    on each utterance alone.
    """
    torch.manual_seed(0)
    encoder = TextRCNN(
        input_size=6, embedding_size=5, hidden_size=4, form="lai"
    ).eval()
    lengths = [7, 3, 1]
    frames, mask = padded_frames(lengths, 6)
    with torch.no_grad():
        out, out_mask = encoder(frames, mask)
        assert out.shape == (3, 1, 8) and out_mask.all()
        for index, length in enumerate(lengths):
            embedded = encoder.embedding(frames[index, :length])
            states, _ = encoder.lstm(embedded.unsqueeze(0))
            forward, backward = states[0, :, :4], states[0, :, 4:]
            zero = torch.zeros(4)
            latents = []
            for i in range(length):
                left = forward[i - 1] if i > 0 else zero
                right = backward[i + 1] if i + 1 < length else zero
                x = torch.cat([left, embedded[i], right])
                latents.append(torch.tanh(encoder.projection(x)))
            expected = torch.stack(latents).amax(dim=0)
            torch.testing.assert_close(out[index, 0], expected)


def test_textrcnn_lai_ignores_padding():
    """Padding (here noise) changes no utterance's vector."""
    torch.manual_seed(0)
    encoder = TextRCNN(
        input_size=6, embedding_size=8, hidden_size=4, form="lai"
    ).eval()
    lengths = [9, 4, 1]
    frames, mask = padded_frames(lengths, 6)
    louder = frames.clone()
    louder[~mask] = 100.0
    with torch.no_grad():
        out, _ = encoder(frames, mask)
        torch.testing.assert_close(encoder(louder, mask)[0], out)
        for index, length in enumerate(lengths):
            alone = frames[index : index + 1, :length]
            alone_out, _ = encoder(alone, torch.ones(1, length).bool())
            torch.testing.assert_close(out[index], alone_out[0])


def test_textrcnn_lai_gradients_reach_valid_frames_and_all_weights():
    torch.manual_seed(0)
    encoder = TextRCNN(
        input_size=6, embedding_size=8, hidden_size=4, form="lai"
    )
    frames, mask = padded_frames([6, 3], 6)
    frames.requires_grad_(True)
    out, _ = encoder(frames, mask)
    out.sum().backward()
    assert frames.grad[1, 3:].abs().sum() == 0  # padding feeds nothing
    assert (frames.grad[mask].abs().sum(dim=-1) > 0).all()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_textrcnn_rejects_unknown_form():
    with pytest.raises(ValueError, match="form"):
        TextRCNN(input_size=6, form="last_state")


@pytest.mark.parametrize("keep_mean", [False, True])
def test_utterance_normalization_removes_channel_and_ignores_padding(
    keep_mean,
):
    """A constant spectral colouring (a channel, a speaker's average) is
    gone after utterance normalisation; padding changes nothing; with
    ``keep_mean`` the standardised mean spectrum rides on every frame."""
    generator = torch.Generator().manual_seed(3)
    norm = UtteranceNormalization(4, keep_mean=keep_mean)
    frames = torch.randn(2, 7, 4, generator=generator)
    colour = torch.tensor([3.0, -2.0, 0.5, 8.0])
    norm.train()(torch.cat([frames, frames + colour]), torch.ones(4, 7) > 0)
    norm.eval()
    full = torch.ones(2, 7, dtype=torch.bool)
    plain, coloured = norm(frames, full), norm(frames + colour, full)
    torch.testing.assert_close(plain[..., :4], coloured[..., :4])
    assert plain.shape[-1] == norm.output_size == (8 if keep_mean else 4)
    if keep_mean:
        assert not torch.allclose(plain[..., 4:], coloured[..., 4:])
        torch.testing.assert_close(  # one mean per utterance, every frame
            plain[:, :, 4:], plain[:, :1, 4:].expand(-1, 7, -1)
        )
    stream = SpectrogramStream(
        LogMel(n_mels=40),
        lambda input_size: DPCNN(input_size, num_filters=12, num_blocks=2),
        UtteranceNormalization(40, keep_mean=keep_mean),
    )
    stream.train()(torch.randn(2, 8000))
    assert stream.encoder.region.in_channels == (80 if keep_mean else 40)
    assert_stream_ignores_padding(stream, utterances())
