"""The eGeMAPS low-level-descriptor stream: features, padding, cache,
the recipes' third stream, and the one-line error without opensmile."""

import importlib.util

import numpy as np
import pytest
import torch

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.lobes import egemaps
from sercaf_toolkit.lobes.egemaps import EGeMAPSDescriptors
from sercaf_toolkit.lobes.masking import GlobalNormalization
from sercaf_toolkit.lobes.scratch import DPCNN
from sercaf_toolkit.lobes.spectrogram import SpectrogramStream
from tests.helpers import assert_stream_ignores_padding

opensmile = pytest.importorskip("opensmile")


def voiced(seconds, f0, seed=0):
    """A harmonic tone with a little noise: openSMILE finds a pitch."""
    generator = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave = 0.2 * wave + 0.01 * generator.standard_normal(len(t))
    return torch.tensor(wave, dtype=torch.float32)


def test_descriptors_are_opensmiles_lld_frames():
    wav = voiced(1.0, 200.0)
    features, mask = EGeMAPSDescriptors()(wav.unsqueeze(0))
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    table = smile.process_signal(wav.numpy(), 16000)
    expected = torch.tensor(np.nan_to_num(table.to_numpy(np.float32)))
    assert features.shape == (1, len(table), 25) and mask.all()
    torch.testing.assert_close(features[0], expected)
    # The pitch column (semitones from 27.5 Hz) finds the 200 Hz tone.
    pitch = features[
        0, :, list(table.columns).index("F0semitoneFrom27.5Hz_sma3nz")
    ]
    semitones = 12 * np.log2(200 / 27.5)
    assert abs(float(pitch[pitch > 0].median()) - semitones) < 1.0


def test_stream_ignores_padding_and_short_utterances():
    utterances = [voiced(1.2, 150.0), voiced(0.5, 250.0, 1), voiced(0.01, 99)]
    stream = SpectrogramStream(
        EGeMAPSDescriptors(),
        DPCNN(input_size=25, num_filters=8, num_blocks=2),
        GlobalNormalization(25),
    )
    stream.train()(torch.stack([voiced(0.8, 180.0)]))
    assert_stream_ignores_padding(stream, utterances)


def test_each_utterance_is_analysed_once(monkeypatch):
    frontend = EGeMAPSDescriptors()
    wavs = torch.stack([voiced(0.6, 120.0), voiced(0.6, 220.0, 1)])
    first, _ = frontend(wavs)
    calls = []
    process = frontend._smile.process_signal
    monkeypatch.setattr(
        frontend._smile,
        "process_signal",
        lambda *args: calls.append(1) or process(*args),
    )
    again, _ = frontend(wavs.flip(0))  # same utterances, other order
    assert calls == [] and torch.equal(again, first.flip(0))
    frontend(wavs + 0.001)  # other audio: analysed
    assert len(calls) == 2
    # The cache is bounded (least recently used first) and not saved.
    small = EGeMAPSDescriptors(cache_frames=70)
    small(wavs[:1]), small(wavs[1:])
    assert len(small._cache) == 1
    assert not small.state_dict()


def test_missing_opensmile_is_one_line(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "opensmile" else real(name, *a),
    )
    with pytest.raises(UserError, match=r'pip install -e "\.\[egemaps\]"'):
        EGeMAPSDescriptors()(torch.zeros(1, 1600))
    # The recipe refuses before anything is built or written, and only
    # when the chosen streams use eGeMAPS.
    from sercaf_toolkit.training.recipe import load_recipe

    argv = [
        "recipes/Demo/hparams/caf.yaml",
        f"--output_folder={tmp_path / 'run'}",
        f"--data_folder={tmp_path / 'data'}",
    ]
    load_recipe(argv + ["--streams=dual"])
    with pytest.raises(UserError, match="EGeMAPSDescriptors needs opensmile"):
        load_recipe(argv + ["--streams=triple"])
    assert not (tmp_path / "run").exists()
    assert egemaps.check_opensmile is not None


def test_recipe_builds_and_runs_three_streams(tmp_path):
    from sercaf_toolkit.hparams import load_hparams
    from sercaf_toolkit.lobes.model import describe_model

    hparams = load_hparams(
        "recipes/Demo/hparams/caf.yaml",
        {
            "data_folder": str(tmp_path / "data"),
            "output_folder": str(tmp_path / "run"),
            "streams": "triple",
        },
    )
    model = hparams["model"].eval()
    assert describe_model(model)["streams"][1:] == [
        "DPCNN",
        "EGeMAPSDescriptors/DPCNN",
    ]
    wavs = torch.stack([voiced(1.0, 150.0), voiced(1.0, 300.0, 1)])
    with torch.no_grad():
        log_probs = model.log_probabilities(wavs, torch.tensor([1.0, 0.6]))
    assert log_probs.shape == (2, hparams["n_classes"])
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2))


def test_results_table_puts_the_egemaps_stream_with_the_scratch_ones():
    from sercaf_toolkit.evaluation.results import results_table

    system = {
        "streams": ["wav2vec2", "DPCNN", "EGeMAPSDescriptors/DPCNN"],
        "fusion": "CrossAttentionFusion",
        "ssl_source": "facebook/wav2vec2-base",
    }
    table = results_table(
        {"experiments": {"caf": {"system": system, "folds": {}, "missing": []}}}
    )
    row = next(line for line in table.splitlines() if "| caf" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == [
        "wav2vec2 (facebook/wav2vec2-base)",
        "DPCNN, EGeMAPSDescriptors/DPCNN",
        "CrossAttentionFusion",
    ]
