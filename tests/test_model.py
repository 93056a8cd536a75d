"""The whole model with tiny wav2vec2 / HuBERT / WavLM streams, offline."""

import os
from functools import partial

import pytest
import torch

from sercaf_toolkit.lobes import (
    DPCNN,
    ConcatFusion,
    CrossAttentionFusion,
    DualStreamModel,
    EmotionHead,
    FiLMFusion,
    GlobalNormalization,
    LogMel,
    PaperCAF,
    SpectrogramStream,
    SSLStream,
    SumFusion,
    TextRCNN,
)
from tests.helpers import pad_with_noise

FUSIONS = {
    "sum": partial(SumFusion, output_size=16),
    "con": partial(ConcatFusion, output_size=16),
    "film": partial(FiLMFusion, output_size=16),
    "caf": partial(
        CrossAttentionFusion, output_size=16, attention_size=8, num_heads=2
    ),
    "paper_caf": partial(PaperCAF, output_size=16),
}


def scratch_stream(encoder="dpcnn"):
    encoders = {
        "dpcnn": DPCNN(input_size=32, num_filters=12, num_blocks=2),
        "textrcnn": TextRCNN(input_size=32, embedding_size=16, hidden_size=8),
    }
    return SpectrogramStream(
        LogMel(n_mels=32), encoders[encoder], GlobalNormalization(32)
    )


def build_model(source, fusion="caf", encoder="dpcnn", extra_streams=()):
    return DualStreamModel(
        streams=[SSLStream(source), scratch_stream(encoder), *extra_streams],
        fusion=FUSIONS[fusion],
        classifier=partial(EmotionHead, n_classes=4),
    )


def test_hub_is_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_whole_model_ignores_padding(tiny_ssl_source, model_type, fusion):
    model = build_model(tiny_ssl_source(model_type), fusion)
    model.train()
    model(torch.randn(2, 8000))  # normaliser statistics
    model.eval()
    generator = torch.Generator().manual_seed(3)
    utterances = [
        torch.randn(n, generator=generator) for n in (12000, 6100, 2500)
    ]
    batch, lengths = pad_with_noise(utterances)
    with torch.no_grad():
        embeddings = model(batch, lengths)
        log_probs = model.log_probabilities(batch, lengths)
        assert embeddings.shape == (3, 16) and log_probs.shape == (3, 4)
        for index, utterance in enumerate(utterances):
            alone = model.log_probabilities(utterance.unsqueeze(0))
            torch.testing.assert_close(
                alone[0], log_probs[index], atol=1e-4, rtol=1e-4
            )


def test_three_streams_with_textrcnn(tiny_ssl_source):
    model = build_model(
        tiny_ssl_source("wavlm"),
        "caf",
        "textrcnn",
        extra_streams=[SSLStream(tiny_ssl_source("hubert"), freeze=True)],
    )
    assert model.fusion.input_sizes == [32, 16, 32]
    assert model.log_probabilities(torch.randn(2, 8000)).shape == (2, 4)


def test_modules_can_be_handed_in_ready_made(tiny_ssl_source):
    model = DualStreamModel(
        [SSLStream(tiny_ssl_source()), scratch_stream()],
        fusion=SumFusion([32, 12], output_size=6),
        classifier=EmotionHead(6, 3),
    )
    assert model.output_size == 6
    assert model.log_probabilities(torch.randn(1, 4000)).shape == (1, 3)


def test_training_step_reaches_every_part(tiny_ssl_source):
    model = build_model(tiny_ssl_source(), "caf").train()
    loss = torch.nn.functional.nll_loss(
        model.log_probabilities(torch.randn(2, 8000), torch.tensor([1.0, 0.7])),
        torch.tensor([0, 3]),
    )
    loss.backward()
    ssl, scratch = model.streams
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in ssl.model.encoder.parameters()
    )
    assert all(p.grad is None for p in ssl.model.feature_extractor.parameters())
    assert scratch.encoder.region.weight.grad.abs().sum() > 0
    assert model.classifier.linear.weight.grad.abs().sum() > 0


def test_model_learns_a_learnable_task():
    """Loud vs quiet noise, from the log-mel stream alone: above chance."""
    torch.manual_seed(0)
    model = DualStreamModel(
        [scratch_stream("dpcnn"), scratch_stream("textrcnn")],
        fusion=FUSIONS["caf"],
        classifier=partial(EmotionHead, n_classes=2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    labels = torch.tensor([0, 1] * 4)
    for _ in range(40):
        wavs = torch.randn(8, 4000) * (0.1 + 0.9 * labels.unsqueeze(1))
        loss = torch.nn.functional.nll_loss(
            model.log_probabilities(wavs), labels
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_labels = torch.tensor([0, 1] * 10)
    wavs = torch.randn(20, 4000) * (0.1 + 0.9 * test_labels.unsqueeze(1))
    with torch.no_grad():
        predicted = model.log_probabilities(wavs).argmax(dim=1)
    assert (predicted == test_labels).float().mean() >= 0.9
