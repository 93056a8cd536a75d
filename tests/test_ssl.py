"""The SSL stream: shapes, padding, gradients per fine-tuning mode."""

import pytest
import torch

from sercaf_toolkit.lobes.ssl import LengthAwareGroupNorm, SSLStream
from tests.helpers import assert_stream_ignores_padding

MODEL_TYPES = ["wav2vec2", "hubert", "wavlm"]


def utterances():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(n, generator=generator) for n in (16000, 9000, 4100)]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("output", ["last", "weighted_sum"])
def test_padding_changes_no_valid_frame(
    tiny_ssl_source, model_type, norm, output
):
    stream = SSLStream(tiny_ssl_source(model_type, norm), output=output)
    assert_stream_ignores_padding(stream, utterances())


def test_group_norm_is_made_length_aware(tiny_ssl_source):
    stream = SSLStream(tiny_ssl_source("wav2vec2", "group"))
    norm = stream.model.feature_extractor.conv_layers[0].layer_norm
    assert isinstance(norm, LengthAwareGroupNorm)
    # The original parameters are kept under their original names.
    assert "feature_extractor.conv_layers.0.layer_norm.weight" in dict(
        stream.model.named_parameters()
    )


def test_plain_group_norm_would_leak_padding():
    """The check above is needed: plain GroupNorm mixes in padded frames."""
    group_norm = torch.nn.GroupNorm(4, 4)
    aware = LengthAwareGroupNorm(group_norm)
    x = torch.randn(1, 4, 10)
    padded = torch.cat([x, 5 + torch.randn(1, 4, 6)], dim=-1)
    assert not torch.allclose(
        group_norm(padded)[..., :10], group_norm(x), atol=1e-3
    )
    aware.valid_frames = torch.tensor([10])
    torch.testing.assert_close(aware(padded)[..., :10], group_norm(x))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_output_shape_and_width_from_config(tiny_ssl_source, model_type):
    stream = SSLStream(tiny_ssl_source(model_type))
    feats, mask = stream(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    assert stream.output_size == stream.model.config.hidden_size == 32
    assert feats.shape == (2, 24, 32)
    assert mask.sum(dim=1).tolist() == [24, 12]
    assert (feats[1, 12:] == 0).all()


def _gradients(stream):
    feats, mask = stream(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    feats.sum().backward()
    cnn = [p.grad for p in stream.model.feature_extractor.parameters()]
    encoder = [p.grad for p in stream.model.encoder.parameters()]
    return cnn, encoder


def _some(grads):
    return any(g is not None and g.abs().sum() > 0 for g in grads)


def test_full_finetuning_reaches_cnn_and_transformer(tiny_ssl_source):
    stream = SSLStream(
        tiny_ssl_source(), freeze=False, freeze_feature_extractor=False
    ).train()
    cnn, encoder = _gradients(stream)
    assert _some(cnn) and _some(encoder)


def test_frozen_cnn_gets_no_gradient(tiny_ssl_source):
    stream = SSLStream(tiny_ssl_source(), freeze_feature_extractor=True).train()
    cnn, encoder = _gradients(stream)
    assert all(g is None for g in cnn)
    assert _some(encoder)
    assert not stream.model.feature_extractor.training


def test_frozen_model_gets_no_gradient_but_layer_weights_do(tiny_ssl_source):
    stream = SSLStream(
        tiny_ssl_source(), freeze=True, output="weighted_sum"
    ).train()
    assert not stream.model.training  # dropout stays off when frozen
    feats, _ = stream(torch.randn(2, 8000))
    feats.pow(2).sum().backward()
    assert all(p.grad is None for p in stream.model.parameters())
    assert stream.output.weights.grad is not None
    assert stream.output.weights.grad.abs().sum() > 0


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_single_utterance_matches_the_hf_model(
    tiny_ssl_source, model_type, norm
):
    """Unpadded, the stream is the HF model on a standardised waveform."""
    stream = SSLStream(tiny_ssl_source(model_type, norm)).eval()
    wavs = torch.randn(1, 8000)
    standardised = (wavs - wavs.mean()) / torch.sqrt(
        wavs.var(unbiased=False) + 1e-7
    )
    with torch.no_grad():
        feats, _ = stream(wavs)
        reference = stream.model(standardised).last_hidden_state
    torch.testing.assert_close(feats, reference, atol=1e-4, rtol=1e-4)


def test_weighted_sum_follows_layer_weights(tiny_ssl_source):
    stream = SSLStream(tiny_ssl_source(), output="weighted_sum").eval()
    wavs = torch.randn(1, 8000)
    with torch.no_grad():
        stream.output.weights.copy_(torch.tensor([-1e4, 1e4, -1e4]))
        middle_only, _ = stream(wavs)
        stream.output.weights.zero_()
        average, _ = stream(wavs)
        standardised = stream._standardise(
            wavs, torch.ones_like(wavs, dtype=torch.bool)
        )
        hidden = stream.model(
            standardised, output_hidden_states=True
        ).hidden_states
    torch.testing.assert_close(middle_only, hidden[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        average, torch.stack(hidden).mean(dim=0), atol=1e-4, rtol=1e-4
    )


def test_unknown_output_is_rejected(tiny_ssl_source):
    with pytest.raises(ValueError, match="output must be one of"):
        SSLStream(tiny_ssl_source(), output="mean")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_rebuilt_from_architecture_and_state_dict(tiny_ssl_source, model_type):
    """How an exported model is loaded: config, then weights."""
    stream = SSLStream(tiny_ssl_source(model_type), output="weighted_sum")
    rebuilt = SSLStream(stream.architecture, output="weighted_sum")
    rebuilt.load_state_dict(stream.state_dict())
    wavs = torch.randn(2, 6000)
    with torch.no_grad():
        expected, _ = stream.eval()(wavs)
        actual, _ = rebuilt.eval()(wavs)
    torch.testing.assert_close(actual, expected)
