"""The SSL feature cache and partial fine-tuning of the SSL stream."""

import errno
import logging
import multiprocessing
import os

import numpy
import pytest
import soundfile
import torch

from sercaf_toolkit import ssl_cache
from sercaf_toolkit.data import read_audio
from sercaf_toolkit.lobes.ssl import SSLStream
from sercaf_toolkit.ssl_cache import SSLFeatureCache, attach_ssl_caches
from tests.helpers import pad_with_noise

LENGTHS = (16000, 9000, 4100)


@pytest.fixture
def wavs(tmp_path):
    """Three short synthetic wav files and their waveforms."""
    generator = numpy.random.default_rng(3)
    paths = []
    for index, length in enumerate(LENGTHS):
        path = str(tmp_path / f"utt{index}.wav")
        soundfile.write(path, 0.1 * generator.standard_normal(length), 16000)
        paths.append(path)
    return paths, [read_audio(path) for path in paths]


def cached_stream(source, folder, precision="fp16", **kwargs):
    stream = SSLStream(source, **kwargs)
    assert attach_ssl_caches(stream, str(folder), precision=precision)
    return stream.eval()


def run(stream, paths, waveforms):
    batch, lengths = pad_with_noise(waveforms)
    with torch.no_grad(), stream.sources(paths):
        return stream(batch, lengths)


SETTINGS = [
    ({"freeze": True}, "fp16", 1e-3),
    ({"freeze": True}, "fp32", 1e-6),
    ({"freeze": True, "output": "weighted_sum"}, "fp32", 1e-6),
    ({"finetune_layers": 1}, "fp32", 1e-6),
    ({"finetune_layers": 1, "output": "weighted_sum"}, "fp16", 1e-3),
]


@pytest.mark.parametrize("settings, precision, atol", SETTINGS)
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_cached_equals_uncached(
    tiny_ssl_source, tmp_path, wavs, settings, precision, atol, norm
):
    source = tiny_ssl_source("wav2vec2", norm)
    paths, waveforms = wavs
    plain = SSLStream(source, **settings).eval()
    cached = cached_stream(source, tmp_path / "c", precision, **settings)
    expected, expected_mask = run(plain, paths, waveforms)
    for _ in range(2):  # the first fills the cache, the second reads it
        features, mask = run(cached, paths, waveforms)
        assert torch.equal(mask, expected_mask)
        torch.testing.assert_close(features, expected, atol=atol, rtol=atol)
    assert cached.feature_cache.counts == {
        "read": 3,
        "written": 3,
        "recomputed": 0,
    }
    # Entries made in one batch serve utterances batched otherwise
    # (padding invariance), each as its single-file result.
    for path, waveform in zip(paths, waveforms):
        alone, _ = run(cached, [path], [waveform])
        with torch.no_grad():
            single, _ = plain(waveform.unsqueeze(0))
        torch.testing.assert_close(alone, single, atol=1e-3, rtol=1e-3)


def test_partial_finetune_gradients_reach_only_the_top_layers(
    tiny_ssl_source, tmp_path, wavs
):
    paths, waveforms = wavs
    stream = cached_stream(
        tiny_ssl_source(), tmp_path, finetune_layers=1, output="weighted_sum"
    ).train()
    batch, lengths = pad_with_noise(waveforms)
    for _ in range(2):  # computed, then read from the cache
        stream.zero_grad()
        with stream.sources(paths):
            features, _ = stream(batch, lengths)
        features.sum().backward()
        layers = stream.model.encoder.layers
        assert all(p.grad is not None for p in layers[1].parameters())
        assert all(p.grad is None for p in layers[0].parameters())
        assert stream.output.weights.grad is not None
    assert layers[1].training and not layers[0].training
    assert {id(p) for p in stream.pretrained_parameters()} == {
        id(p) for p in layers[1].parameters()
    }
    assert SSLStream(tiny_ssl_source(), finetune_layers=0).freeze
    with pytest.raises(ValueError, match="has 2 transformer layers"):
        SSLStream(tiny_ssl_source(), finetune_layers=3)


def test_a_corrupted_entry_is_recomputed_and_named(
    tiny_ssl_source, tmp_path, wavs, caplog
):
    paths, waveforms = wavs
    stream = cached_stream(tiny_ssl_source(), tmp_path, freeze=True)
    expected, _ = run(stream, paths, waveforms)
    identity = stream.cache_identity()
    flipped, _ = stream.feature_cache.entry(paths[0], identity)
    cut, _ = stream.feature_cache.entry(paths[1], identity)
    with open(flipped, "r+b") as entry:
        entry.seek(-3, os.SEEK_END)
        entry.write(b"\x00\x7f\x01")
    with open(cut, "r+b") as entry:
        entry.truncate(os.path.getsize(cut) - 10)
    with caplog.at_level(logging.WARNING, logger="sercaf_toolkit.ssl_cache"):
        features, _ = run(stream, paths, waveforms)
    torch.testing.assert_close(features, expected)
    assert f"{flipped}: its checksum does not match" in caplog.text
    assert f"{cut}: it holds" in caplog.text
    assert stream.feature_cache.counts["recomputed"] == 2
    caplog.clear()
    run(stream, paths, waveforms)  # rewritten: read, no notice
    assert caplog.text == ""


def test_changed_audio_or_model_misses_the_cache(
    tiny_ssl_source, tmp_path, wavs
):
    paths, waveforms = wavs
    folder = tmp_path / "cache"
    stream = cached_stream(tiny_ssl_source(), folder, freeze=True)
    run(stream, paths, waveforms)
    # Another file content under the same name: another entry.
    louder = waveforms[0] * 2
    soundfile.write(paths[0], louder.numpy(), 16000)
    features, _ = run(stream, paths[:1], [louder])
    assert stream.feature_cache.counts["written"] == 4
    with torch.no_grad():
        plain, _ = SSLStream(tiny_ssl_source(), freeze=True).eval()(
            louder.unsqueeze(0)
        )
    torch.testing.assert_close(features, plain, atol=1e-3, rtol=1e-3)
    # Another model (other config and weights), other layers: misses.
    for other in (
        cached_stream(tiny_ssl_source("hubert"), folder, freeze=True),
        cached_stream(
            tiny_ssl_source(), folder, freeze=True, output="weighted_sum"
        ),
        cached_stream(tiny_ssl_source(), folder, "fp32", freeze=True),
    ):
        run(other, paths[1:], waveforms[1:])
        assert other.feature_cache.counts["read"] == 0
    # A checkpoint's other weights under the same config: misses too.
    changed = cached_stream(tiny_ssl_source(), folder, freeze=True)
    with torch.no_grad():
        changed.model.encoder.layers[0].feed_forward.output_dense.bias += 1
    run(changed, paths[1:], waveforms[1:])
    assert changed.feature_cache.counts["read"] == 0


def test_a_full_disk_stops_the_cache_in_one_line(
    tiny_ssl_source, tmp_path, wavs, monkeypatch, capsys
):
    paths, waveforms = wavs

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ssl_cache, "_write_atomic", full)
    stream = cached_stream(tiny_ssl_source(), tmp_path, freeze=True)
    expected, _ = run(
        SSLStream(tiny_ssl_source(), freeze=True), paths, waveforms
    )
    for _ in range(2):
        features, _ = run(stream, paths, waveforms)
        torch.testing.assert_close(features, expected, atol=1e-3, rtol=1e-3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"SSL feature cache: no space left in {tmp_path}; "
        "training goes on without the cache"
    ]
    assert not stream.feature_cache.enabled


def _fill(source, folder, paths, waveforms, start):
    torch.set_num_threads(1)
    stream = cached_stream(source, folder, freeze=True)
    start.wait()
    run(stream, paths, waveforms)


def test_two_processes_filling_one_cache_give_the_same_files(
    tiny_ssl_source, tmp_path, wavs
):
    paths, waveforms = wavs
    source = tiny_ssl_source()
    alone = tmp_path / "alone"
    run(cached_stream(source, alone, freeze=True), paths, waveforms)
    shared = tmp_path / "shared"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    workers = [
        context.Process(
            target=_fill, args=(source, shared, paths, waveforms, start)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0

    def files(root):
        return {
            os.path.relpath(os.path.join(folder, name), root): open(
                os.path.join(folder, name), "rb"
            ).read()
            for folder, _, names in os.walk(root)
            for name in names
        }

    assert files(shared) == files(alone)
    assert len(files(alone)) == 3


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision must be one of"):
        SSLFeatureCache("cache", precision="bf16")


# The recipes ---------------------------------------------------------------


def test_recipe_runs_share_the_cache_and_match_uncached_runs(tmp_path):
    from sercaf_toolkit.training.recipe import run_recipe
    from tests.demo_runs import demo_args

    data, cache = tmp_path / "data", tmp_path / "cache"

    def train(name, *extra):
        argv = demo_args(
            data,
            tmp_path / name,
            "--ssl_freeze=True",
            "--number_of_epochs=2",
            f"--ssl_cache_folder={cache}",
            *extra,
        )
        return run_recipe(argv).metrics

    def entries():
        return {
            path: os.path.getmtime(path)
            for path in map(str, cache.rglob("*.ssl"))
        }

    cached = train("cached")
    made = entries()
    from sercaf_toolkit.data import read_manifest

    utterances = sum(
        len(read_manifest(str(tmp_path / "cached" / f"{split}.csv")))
        for split in ("train", "valid", "test")
    )
    assert len(made) == utterances  # one entry per audio file
    plain = train("plain", "--ssl_cache=False")
    for key in ("WA", "UA"):
        assert abs(cached[key] - plain[key]) < 1e-9, key
    # Another model and seed (the frozen probe's) read the same entries.
    train("probe", "--streams=ssl", "--fusion=probe", "--seed=2")
    assert entries() == made


def test_the_cache_settings_leave_the_run_identity_alone(tmp_path):
    from sercaf_toolkit.training.recipe import load_recipe, run_identity
    from sercaf_toolkit.training.runs import first_difference
    from tests.demo_runs import demo_args

    def identity(*extra):
        argv = demo_args(tmp_path / "data", tmp_path / "run", *extra)
        _, run_opts, _, composed, tree = load_recipe(argv)
        return run_identity(tree, composed, run_opts)

    base = identity()
    for extra in (
        "--ssl_cache=False",
        "--ssl_cache_folder=elsewhere",
        "--ssl_cache_precision=fp32",
    ):
        assert identity(extra) == base, extra
    assert first_difference(base, identity("--ssl_finetune_layers=1")) == (
        "ssl_finetune_layers",
        "None",
        "1",
    )
    # Runs recorded before ssl_finetune_layers existed are the same runs.
    older = {k: v for k, v in base.items() if "finetune_layers" not in k}
    assert first_difference(older, base) is None
