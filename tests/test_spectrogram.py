"""Log-mel front end, normalisation and scratch encoders."""

import numpy as np
import pytest
import torch

from sercaf_toolkit.lobes.masking import GlobalNormalization
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
    ],
    ids=["dpcnn", "textrcnn"],
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
