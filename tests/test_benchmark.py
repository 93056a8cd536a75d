"""The benchmark runs at tiny size and reports all six figures (no timing
assertions: speed targets live in the benchmark's own output)."""

import importlib.util
import math
import pathlib

import torch
import transformers

from sercaf_toolkit.lobes import DPCNN, LogMel, SpectrogramStream
from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model

SCRIPT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "benchmarks"
    / "benchmark.py"
)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(capsys):
    benchmark = load_benchmark()
    rows = benchmark.main(
        ["--size", "tiny", "--steps", "1", "--utterances", "200"]
    )
    out = capsys.readouterr().out
    headings = (  # in printed order: padding needs no model, so it leads
        "3. non-padding fraction",
        "1. training-step time",
        "2. training throughput",
        "4. inference real-time factor",
        "5. peak memory",
        "6. CPU inference",
    )
    for heading in headings:
        assert heading in out
    positions = [out.index(heading) for heading in headings]
    assert positions == sorted(positions), out
    figures = {name: value for name, value, _ in rows}
    assert {"sum", "con", "film", "caf", "paper_caf"} <= set(figures)
    assert "toolkit SSL-only / plain SSL-only (the wrapper)" in figures
    if importlib.util.find_spec("onnxruntime") is not None:  # .[onnx]
        assert "onnx int8 RTF / pytorch fp32 RTF" in figures
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    padding_name, padding, _ = rows[0]  # section 3 comes first
    assert padding_name == "batching by duration" and 0 < padding <= 1


def test_tiny_size_uses_the_packages_tiny_ssl_model(tmp_path):
    """No second hand-written tiny config: the one of ``tiny_ssl``."""
    stream = load_benchmark().ssl_stream("tiny")
    expected = transformers.AutoConfig.from_pretrained(
        build_tiny_ssl_model(str(tmp_path / "ssl"))
    )
    # SSLStream sets apply_spec_augment itself (off by default); the folders
    # differ.
    built, wanted = stream.model.config.to_dict(), expected.to_dict()
    for key in ("apply_spec_augment", "_name_or_path"):
        built.pop(key), wanted.pop(key)
    assert built == wanted
    assert stream.freeze_feature_extractor and not stream.freeze


def test_iemocap_like_durations():
    durations = load_benchmark().iemocap_like_durations(5000)
    assert 4.0 < durations.mean() < 5.0 and durations.max() <= 30.0


def test_bf16_autocast_forward_and_backward_on_cpu():
    """Mixed precision: the log-mel runs in float32, results stay close."""
    torch.manual_seed(0)
    stream = SpectrogramStream(LogMel(n_mels=32), DPCNN(32, 8, 2))
    wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
    reference, _ = stream(wavs, lens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, mask = stream(wavs, lens)
    assert torch.isfinite(mixed).all()
    scale = float(reference.abs().max())
    assert torch.allclose(mixed.float(), reference, atol=0.1 * scale)
    mixed.float()[mask].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in stream.parameters())
