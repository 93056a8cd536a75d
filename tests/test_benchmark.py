"""The benchmark runs at tiny size and reports all five figures (no timing
assertions: speed targets live in the benchmark's own output)."""

import importlib.util
import math
import pathlib

import torch

from sercaf_toolkit.lobes import DPCNN, LogMel, SpectrogramStream

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
    for heading in (
        "1. training-step time",
        "2. training throughput",
        "3. non-padding fraction",
        "4. inference real-time factor",
        "5. peak memory",
    ):
        assert heading in out
    figures = {name: value for name, value, _ in rows}
    assert {"sum", "con", "film", "caf", "paper_caf"} <= set(figures)
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    padding_name, padding, _ = rows[0]  # section 3 comes first
    assert padding_name == "batching by duration" and 0 < padding <= 1


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
