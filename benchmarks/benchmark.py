#!/usr/bin/env python3
"""One-process benchmark of sercaf-toolkit's training and inference costs.

    python benchmarks/benchmark.py --size tiny               # CI smoke, CPU
    python benchmarks/benchmark.py --size base --device cuda --precision bf16
    python benchmarks/benchmark.py --size base --figures 1,6   # some figures

On synthetic audio whose durations follow IEMOCAP's (log-normal, mean about
4.5 s, tail to 30 s), measured side by side in this one run:

1. training-step time (on each batch the fastest of ``--repeats`` steps)
   of the dual-stream model (each fusion block) divided by that of a plain
   SSL-only model (transformers' Wav2Vec2Model with its CNN frozen, mean
   pooling, linear: SpeechBrain's IEMOCAP recipe shape), on the same
   batches; then the CAF model against the toolkit's own SSL-only model
   (its SSLStream, mean pooling, linear), and that model against the
   plain one (the stream wrapper's own cost);
2. training throughput (audio seconds per second) with the toolkit's
   batching by duration vs one utterance per step, same model;
3. fraction of non-padding samples in batches: batching by duration vs a
   fixed batch size in random order;
4. inference real-time factor, batched and one file at a time;
5. peak memory of a training step;
6. CPU deployment: inference real-time factor and peak memory of the CAF
   model in PyTorch fp32, ONNX fp32 and ONNX int8 (onnxruntime) on the
   same batches, each runtime in a process of its own
   (``benchmarks/runtime_worker.py``), and the label agreement of int8
   with fp32 on the demo recipe's test set (a demo model trained here).
   Needs ``pip install -e ".[onnx]"``; skipped, saying so, without it.
7. frozen SSL: the wall time of a small grid (2 fusion blocks x 2 folds
   x 2 seeds x ``--grid_epochs`` epochs of a frozen SSL stream with a
   weighted layer sum, on synthetic wav files) without and with the SSL
   feature cache (``sercaf_toolkit.ssl_cache``, filled during the grid),
   with the test accuracies of both; and a top-2 fine-tune step against a
   full fine-tune step (CNN frozen in both), uncached and cached.
8. (only with ``--figures 8``) ``sercaf serve`` on localhost: throughput
   and p50/p95 latency of a bounded concurrent load (64 requests, 16 at a
   time) with micro-batching, one request at a time (``max_batch`` 1),
   and the same files through ``sercaf predict`` (its predictor, in this
   process), as ratios measured in this run (:func:`figure_service`).

``--size base`` builds wav2vec2-base-shaped models (random weights: timing
does not depend on them) with the paper's scratch stream (224 mel bands,
DPCNN with 250 filters); ``--size tiny`` the toolkit's tiny wav2vec2
(``sercaf_toolkit.tiny_ssl``, the test suite's) for smoke tests.
"""

import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from functools import partial

import numpy as np
import speechbrain as sb
import torch
import transformers

from sercaf_toolkit.cli import Parser
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
)
from sercaf_toolkit.lobes.masking import masked_mean
from sercaf_toolkit.lobes.model import LogProbabilities
from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model

SAMPLE_RATE = 16000
N_CLASSES = 4
TARGETS = {
    "overhead": 1.10,
    "non_padding": 0.90,
    "throughput_gpu": 3.0,
    "int8_rtf_share": 0.5,
    "int8_agreement": 0.97,
    "cache_speedup": 4.0,
    "top2_step_share": 0.6,
}


def iemocap_like_durations(count, seed=0):
    """Durations (s) following IEMOCAP's shape: mean ~4.5 s, tail to 30 s."""
    rng = np.random.default_rng(seed)
    durations = rng.lognormal(mean=np.log(3.6), sigma=0.65, size=count)
    return np.clip(durations, 0.8, 30.0)


class SSLOnlyModel(torch.nn.Module):
    """The baseline: SSL stream, mean pooling, linear layer, log-softmax."""

    def __init__(self, ssl):
        super().__init__()
        self.ssl = ssl
        self.linear = torch.nn.Linear(ssl.output_size, N_CLASSES)

    def forward(self, wavs, wav_lens):
        frames, mask = self.ssl(wavs, wav_lens)
        return torch.log_softmax(self.linear(masked_mean(frames, mask)), -1)


class PlainSSLModel(torch.nn.Module):
    """The plain baseline: a transformers SSL model as SpeechBrain uses it.

    SpeechBrain's IEMOCAP recipe shape: the waveform layer-normalised, the
    HF model called without an attention mask (as SpeechBrain's wrapper
    does for wav2vec2-base), mean pooling over each utterance's frames,
    a linear layer. It shares the HF model of the toolkit's stream (the
    same weights and cost): with no lengths set, the stream's
    length-aware GroupNorm is torch's own GroupNorm.
    """

    def __init__(self, ssl):
        super().__init__()
        self.model = ssl.model
        self.linear = torch.nn.Linear(ssl.output_size, N_CLASSES)

    def forward(self, wavs, wav_lens):
        wavs = torch.nn.functional.layer_norm(wavs, wavs.shape[1:])
        frames = self.model(wavs).last_hidden_state
        samples = torch.round(wav_lens * wavs.shape[1]).long()
        lengths = self.model._get_feat_extract_output_lengths(samples)
        positions = torch.arange(frames.shape[1], device=frames.device)
        mask = positions[None] < lengths[:, None]
        return torch.log_softmax(self.linear(masked_mean(frames, mask)), -1)


def ssl_stream(size, **settings):
    """The SSL stream that every model of the benchmark shares.

    Arguments
    ---------
    size : str
        ``"base"``: wav2vec2-base's shape, built from its config with random
        weights (timing does not depend on them, and nothing is downloaded);
        ``"tiny"``: the toolkit's own tiny wav2vec2
        (:func:`sercaf_toolkit.tiny_ssl.build_tiny_ssl_model`), the model the
        test suite runs, so the smoke run measures that architecture and no
        second tiny configuration can drift from it.

    **settings
        More :class:`SSLStream` arguments (``freeze``, ``output``, ...).

    Returns
    -------
    SSLStream
        With the CNN feature extractor frozen, as in the recipes.
    """
    if size == "base":
        config = transformers.Wav2Vec2Config()  # wav2vec2-base's shape
        return SSLStream(
            {"config": config.to_dict(), "do_normalize": True}, **settings
        )
    # The folder is only read while the stream is built: the weights are in
    # memory afterwards, so it need not outlive this call. transformers'
    # progress bars (writing, then loading a one-file model) would only
    # interleave with the figures.
    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="sercaf_benchmark_") as tmp:
            return SSLStream(
                build_tiny_ssl_model(os.path.join(tmp, "ssl")), **settings
            )
    finally:
        if bars:
            logging.enable_progress_bar()


def build_models(size):
    """SSL-only baseline and one dual-stream model per fusion block."""
    n_mels, filters, width = (224, 250, 256) if size == "base" else (32, 8, 16)
    fusions = {
        "sum": partial(SumFusion, output_size=width),
        "con": partial(ConcatFusion, output_size=width),
        "film": partial(FiLMFusion, output_size=width),
        "caf": partial(
            CrossAttentionFusion, output_size=width, attention_size=width
        ),
        "paper_caf": partial(PaperCAF, output_size=12),
    }
    torch.manual_seed(0)
    ssl = ssl_stream(size)
    models = {"plain_ssl": PlainSSLModel(ssl), "ssl_only": SSLOnlyModel(ssl)}
    for name, fusion in fusions.items():
        scratch = SpectrogramStream(
            LogMel(n_mels=n_mels),
            DPCNN(input_size=n_mels, num_filters=filters, num_blocks=3),
            GlobalNormalization(n_mels),
        )
        dual = DualStreamModel(
            [ssl, scratch], fusion, partial(EmotionHead, n_classes=N_CLASSES)
        )
        models[name] = LogProbabilities(dual)
    return models


def duration_batches(durations, max_batch_length, shuffle=True, seed=0):
    """Index batches from SpeechBrain's DynamicBatchSampler."""
    data = {str(i): {"duration": float(d)} for i, d in enumerate(durations)}
    dataset = sb.dataio.dataset.DynamicItemDataset(data)
    sampler = sb.dataio.sampler.DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_length,
        num_buckets=10,
        length_func=lambda item: item["duration"],
        shuffle=shuffle,
        batch_ordering="random",
        seed=seed,
    )
    return [list(batch) for batch in sampler]


def fixed_batches(count, batch_size, seed=0):
    order = np.random.default_rng(seed).permutation(count)
    return [
        list(order[i : i + batch_size]) for i in range(0, count, batch_size)
    ]


def non_padding_fraction(durations, batches):
    real = padded = 0.0
    for batch in batches:
        lengths = [durations[i] for i in batch]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
    return real / padded


def make_batch(durations, indices, device, seed):
    lengths = [int(durations[i] * SAMPLE_RATE) for i in indices]
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        wavs[row, :length] = 0.1 * torch.randn(length, generator=generator)
    relative = torch.tensor(lengths, dtype=torch.float) / max(lengths)
    return wavs.to(device), relative.to(device), sum(lengths) / SAMPLE_RATE


class Timer:
    def __init__(self, device, precision):
        self.device = torch.device(device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = dtype
        self.scaler = torch.amp.GradScaler(
            enabled=precision == "fp16" and self.device.type == "cuda"
        )

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def context(self):
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    def train_step(self, model, optimizer, batch):
        wavs, lens, _ = batch
        targets = torch.zeros(len(wavs), dtype=torch.long, device=wavs.device)
        self.sync()
        start = time.perf_counter()
        with self.context():
            loss = torch.nn.functional.nll_loss(model(wavs, lens), targets)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self.sync()
        return time.perf_counter() - start

    @torch.no_grad()
    def infer(self, model, batch):
        wavs, lens, _ = batch
        self.sync()
        start = time.perf_counter()
        with self.context():
            model(wavs, lens)
        self.sync()
        return time.perf_counter() - start


def peak_memory_mb(device):
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # CPU: the process's peak resident size so far (an upper bound).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def adam(model):
    """The optimizer of every timed training step (trainable weights only)."""
    return torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=1e-5
    )


@dataclasses.dataclass
class Workload:
    """The synthetic data that every figure measures.

    Arguments
    ---------
    durations : numpy.ndarray
        Utterance durations (s) of the whole synthetic set.
    batches : list of list of int
        The set's index batches by duration (SpeechBrain's sampler).
    timed : list of tuple
        ``(wavs, relative lengths, audio seconds)`` of the first batches by
        duration; the first one only warms up.
    singles : list of tuple
        The same utterances as ``timed[1:]``, one per batch.
    """

    durations: np.ndarray
    batches: list
    timed: list
    singles: list

    @classmethod
    def build(cls, durations, max_batch_length, steps, device):
        """Batches the set by duration and synthesises the timed batches.

        Arguments
        ---------
        durations : numpy.ndarray
            Utterance durations (s).
        max_batch_length : float
            Seconds of audio per batch.
        steps : int
            Number of timed batches (one more is made, for the warm-up).
        device : str
            Where the waveforms go.

        Returns
        -------
        Workload
        """
        batches = duration_batches(durations, max_batch_length)
        first = batches[: steps + 1]  # the first one warms up
        timed = [
            make_batch(durations, b, device, i) for i, b in enumerate(first)
        ]
        # Seeded by utterance index, each single is its own reproducible
        # waveform whichever batch it was drawn in.
        singles = [
            make_batch(durations, [i], device, i) for b in first[1:] for i in b
        ]
        return cls(durations, batches, timed, singles)

    @property
    def audio_seconds(self):
        """Seconds of audio in the timed batches (the warm-up excluded)."""
        return sum(batch[2] for batch in self.timed[1:])


class Report:
    """Prints each figure as it is measured and keeps it as a row.

    Attributes
    ----------
    rows : list of tuple
        ``(figure, value, verdict)`` in the order printed; ``main`` returns
        them, for the smoke test.
    """

    def __init__(self):
        self.rows = []

    @staticmethod
    def section(title):
        """Prints a figure's heading."""
        print(f"\n{title}")

    def __call__(self, figure, value, target=None, better="higher"):
        """Prints and keeps one figure, with its verdict if it has a target.

        Arguments
        ---------
        figure : str
            What is measured.
        value : float
            The measurement.
        target : float, optional
            The value to reach.
        better : str
            ``"higher"`` or ``"lower"``: which side of ``target`` meets it.
        """
        verdict = ""
        if target is not None:
            ok = value >= target if better == "higher" else value <= target
            verdict = (
                f"target {'>=' if better == 'higher' else '<='} {target}: "
            )
            verdict += "met" if ok else "MISSED"
        self.rows.append((figure, value, verdict))
        print(f"  {figure:58s} {value:10.3f}  {verdict}", flush=True)


def print_header(args, durations):
    """Prints the run's settings and the synthetic set's durations."""
    print(
        f"sercaf-toolkit benchmark: size={args.size} device={args.device} "
        f"precision={args.precision} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    print(
        f"synthetic IEMOCAP-like durations: n={len(durations)}, mean "
        f"{durations.mean():.2f} s, median {np.median(durations):.2f} s, "
        f"max {durations.max():.1f} s"
    )


def figure_padding(workload, report):
    """3. Non-padding fraction: batching by duration vs a fixed batch size.

    Pure bookkeeping over the whole synthetic set, so it comes first: it
    needs no model. The fixed batch size is the mean size of the batches by
    duration, so both hold as many utterances on average.

    Arguments
    ---------
    workload : Workload
        The synthetic set and its batches by duration.
    report : Report
        Prints and keeps the figures.
    """
    durations, dynamic = workload.durations, workload.batches
    mean_size = statistics.fmean(len(b) for b in dynamic)
    fixed = fixed_batches(len(durations), max(1, round(mean_size)))
    report.section("3. non-padding fraction of batch samples")
    report(
        "batching by duration",
        non_padding_fraction(durations, dynamic),
        TARGETS["non_padding"],
    )
    report(
        f"fixed batch size {max(1, round(mean_size))}, random order",
        non_padding_fraction(durations, fixed),
    )


def figure_train_step_ratio(models, workload, timer, report, repeats=2):
    """1. Training-step time of each model / that of the SSL-only models.

    The cost of the toolkit's model over a plain transformers SSL-only
    model (the target), then split in two: the second stream and the
    fusion (over the toolkit's own SSL-only model) and the SSL stream
    wrapper (the toolkit's SSL-only model over the plain one).

    Arguments
    ---------
    models : dict
        ``"plain_ssl"``, ``"ssl_only"`` and the dual-stream models.
    workload : Workload
        Its timed batches are used (the first one only warms up).
    timer : Timer
        Times the steps.
    report : Report
        Prints and keeps the figures.
    repeats : int
        Steps per model on each timed batch; the fastest counts.
    """
    report.section(
        "1. training-step time / plain transformers SSL-only step time "
        "(same batches)"
    )
    optimizers = {name: adam(model.train()) for name, model in models.items()}
    times = {name: [] for name in models}
    names = list(models)
    turn = 0
    for index, batch in enumerate(workload.timed):
        fastest = dict.fromkeys(names, float("inf"))
        for _ in range(1 if index == 0 else repeats):
            # Interleaved, rotating order: drifts in machine speed (and
            # the first-call warm-up, discarded) hit every model alike.
            turn += 1
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                elapsed = timer.train_step(
                    models[name], optimizers[name], batch
                )
                fastest[name] = min(fastest[name], elapsed)
        if index > 0:
            for name in names:
                times[name].append(fastest[name])
    # Each batch's fastest step, averaged over the batches: on a shared
    # machine other jobs only ever add time, and unevenly (10-30 % between
    # runs of the same step); the minimum is the least disturbed.
    step_times = {name: statistics.fmean(t) for name, t in times.items()}
    plain, toolkit = step_times["plain_ssl"], step_times["ssl_only"]
    print(
        f"  (plain SSL-only step: {plain * 1000:.1f} ms; toolkit SSL-only "
        f"step: {toolkit * 1000:.1f} ms)"
    )
    for name in models:
        if name not in ("plain_ssl", "ssl_only"):
            report(
                f"{name}",
                step_times[name] / plain,
                TARGETS["overhead"] if name == "caf" else None,
                better="lower",
            )
    report(
        "caf / toolkit SSL-only (SSLStream) step", step_times["caf"] / toolkit
    )
    report("toolkit SSL-only / plain SSL-only (the wrapper)", toolkit / plain)


def figure_throughput(model, optimizer, workload, timer, report):
    """2. Training throughput: batching by duration vs one utterance a step.

    One utterance per step is the published training loop, the baseline of
    the GPU target.

    Arguments
    ---------
    model : torch.nn.Module
        The model trained (CAF), already warmed up on ``workload.timed[0]``
        by :func:`figure_train_step_ratio`.
    optimizer : torch.optim.Optimizer
        Its optimizer.
    workload : Workload
        The timed batches (the warm-up excluded) and the same utterances one
        per batch.
    timer : Timer
        Times the steps.
    report : Report
        Prints and keeps the figures.
    """
    report.section(
        "2. training throughput, audio seconds per second (CAF model)"
    )
    model.train()
    batched_time = sum(
        timer.train_step(model, optimizer, b) for b in workload.timed[1:]
    )
    singles = workload.singles
    timer.train_step(model, optimizer, singles[0])  # warm-up
    single_time = sum(timer.train_step(model, optimizer, b) for b in singles)
    audio = workload.audio_seconds
    report("batching by duration", audio / batched_time)
    report("one utterance per step (the published loop)", audio / single_time)
    target = TARGETS["throughput_gpu"] if timer.device.type == "cuda" else None
    report("ratio", single_time / batched_time, target)


def figure_inference_rtf(model, workload, timer, report):
    """4. Inference real-time factor, batched and one file at a time.

    Arguments
    ---------
    model : torch.nn.Module
        The model run (CAF), already warmed up.
    workload : Workload
        The timed batches (the warm-up excluded) and the same utterances one
        per batch.
    timer : Timer
        Times the forward passes.
    report : Report
        Prints and keeps the figures.
    """
    report.section("4. inference real-time factor (CAF model; lower is faster)")
    model.eval()
    audio = workload.audio_seconds
    infer_batched = sum(timer.infer(model, b) for b in workload.timed[1:])
    infer_single = sum(timer.infer(model, b) for b in workload.singles)
    report("batched", infer_batched / audio)
    report("one file at a time", infer_single / audio)


def figure_peak_memory(model, optimizer, workload, timer, report):
    """5. Peak memory of a training step on the largest timed batch.

    Arguments
    ---------
    model : torch.nn.Module
        The model trained (CAF).
    optimizer : torch.optim.Optimizer
        Its optimizer, whose state already exists (as in any step but the
        first, so the figure counts it).
    workload : Workload
        Its largest timed batch is used.
    timer : Timer
        Runs the step.
    report : Report
        Prints and keeps the figure.
    """
    report.section("5. peak memory of a training step")
    cuda = timer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    longest = max(workload.timed, key=lambda b: b[0].numel())
    timer.train_step(model.train(), optimizer, longest)
    unit = "MiB allocated" if cuda else "MiB peak RSS"
    report(
        f"CAF model, largest timed batch ({longest[2]:.0f} s of audio), {unit}",
        peak_memory_mb(timer.device),
    )


def figure_deployment(model, size, workload, report, threads):
    """6. CPU deployment: PyTorch fp32, ONNX fp32 and ONNX int8.

    Real-time factor and peak memory on the same batches (figure 4's
    batched ones), each runtime in a fresh process; and the agreement of
    int8 labels with fp32 labels on the demo recipe's test set.

    Arguments
    ---------
    model : DualStreamModel
        The model run (CAF).
    size : str
        Its size (``"base"`` or ``"tiny"``): the PyTorch worker rebuilds
        it with :func:`build_models`.
    workload : Workload
        Its timed batches (the warm-up excluded) are run.
    report : Report
        Prints and keeps the figures.
    threads : int
        Threads of every runtime.
    """
    import importlib.util

    report.section(
        "6. CPU inference: PyTorch fp32, ONNX fp32, ONNX int8 (CAF model)"
    )
    if importlib.util.find_spec("onnxruntime") is None:
        print(
            '  skipped: needs onnx and onnxruntime (pip install -e ".[onnx]")'
        )
        return
    import json
    import subprocess

    from sercaf_toolkit.deployment.onnx_export import export_module

    worker = os.path.join(os.path.dirname(__file__), "runtime_worker.py")
    labels = [f"class{i}" for i in range(N_CLASSES)]
    audio = workload.audio_seconds
    with tempfile.TemporaryDirectory(prefix="sercaf_deploy_") as tmp:
        batches = os.path.join(tmp, "batches.npz")
        arrays = {}
        for index, (wavs, lens, _) in enumerate(workload.timed[1:]):
            arrays[f"wavs_{index}"] = wavs.cpu().numpy()
            arrays[f"lens_{index}"] = lens.cpu().numpy()
        np.savez(batches, **arrays)
        model = model.cpu().eval()
        state = os.path.join(tmp, "model.pt")
        torch.save(model.state_dict(), state)
        paths = {"pytorch fp32": ("torch", f"{size}:{state}")}
        sizes = {}
        for name, int8 in (("onnx fp32", False), ("onnx int8", True)):
            path = os.path.join(tmp, name.replace(" ", "_") + ".onnx")
            sizes[name] = export_module(model, labels, path, int8=int8)["bytes"]
            paths[name] = ("onnx", path)
        # Two rounds (base size), the second in reverse order, keeping each
        # runtime's faster run: a drift in machine load hits all three
        # alike. The tiny smoke run needs one.
        results = {}
        order = list(paths)
        rounds = (order, order[::-1]) if size == "base" else (order,)
        for names in rounds:
            for name in names:
                kind, path = paths[name]
                done = subprocess.run(
                    [sys.executable, worker, kind, path, batches, str(threads)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                found = json.loads(done.stdout.strip().splitlines()[-1])
                if name in results:
                    found["seconds"] = min(
                        found["seconds"], results[name]["seconds"]
                    )
                results[name] = found
    for name, result in results.items():
        report(f"{name}: real-time factor", result["seconds"] / audio)
    for name, result in results.items():
        report(f"{name}: peak memory, MiB RSS", result["peak_rss_mib"])
    for name, size in sizes.items():
        report(f"{name}: file size, MiB", size / 2**20)
    torch_seconds = results["pytorch fp32"]["seconds"]
    report(
        "onnx int8 RTF / pytorch fp32 RTF",
        results["onnx int8"]["seconds"] / torch_seconds,
        TARGETS["int8_rtf_share"],
        better="lower",
    )
    report(
        "onnx fp32 RTF / pytorch fp32 RTF",
        results["onnx fp32"]["seconds"] / torch_seconds,
    )
    report(
        "int8 labels agreeing with fp32, demo test set",
        # The smoke run (tiny) trains a smaller demo model, quickly.
        demo_label_agreement(*((6, 6) if size == "base" else (3, 2))),
        TARGETS["int8_agreement"],
    )


def demo_label_agreement(utterances=6, epochs=6):
    """Share of the demo test set's files that int8 and fp32 label alike.

    Trains the demo recipe (fold 1, ``utterances`` per speaker and
    emotion, ``epochs`` epochs; 6 and 6 are the model of
    tests/test_recipe.py), exports it to ONNX fp32
    and int8, and labels the fold's test files with both.
    """
    import csv
    import subprocess

    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.deployment.onnx_export import export_onnx

    recipe = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "Demo"
    )
    with tempfile.TemporaryDirectory(prefix="sercaf_demo_") as tmp:
        output = os.path.join(tmp, "run")
        # A process of its own: the recipe's logs and progress bars stay
        # out of the figures (and show if it fails).
        subprocess.run(
            [
                sys.executable,
                os.path.join(recipe, "train.py"),
                os.path.join(recipe, "hparams", "caf.yaml"),
                "--device=cpu",
                f"--data_folder={tmp}/data",
                f"--output_folder={output}",
                f"--utterances_per_emotion={utterances}",
                f"--number_of_epochs={epochs}",
            ],
            capture_output=True,
            check=True,
        )
        with open(os.path.join(output, "test.csv")) as rows:
            paths = [row["wav"] for row in csv.DictReader(rows)]
        labels = []
        for int8 in (False, True):
            path = os.path.join(tmp, f"demo_{int8}.onnx")
            export_onnx(os.path.join(output, "inference"), path, int8=int8)
            records, _ = EmotionPredictor(path).predict(paths)
            labels.append([record["label"] for record in records])
    return statistics.fmean(a == b for a, b in zip(*labels))


def synthetic_corpus(folder, count, seconds, seed=0):
    """``count`` wav files of noise-like audio, and their waveforms."""
    import soundfile

    generator = np.random.default_rng(seed)
    paths, wavs = [], []
    for index in range(count):
        length = int(SAMPLE_RATE * seconds * generator.uniform(0.7, 1.3))
        wav = (0.1 * generator.standard_normal(length)).astype(np.float32)
        path = os.path.join(folder, f"utt{index:03d}.wav")
        soundfile.write(path, wav, SAMPLE_RATE)
        paths.append(path)
        wavs.append(torch.from_numpy(wav))
    return paths, wavs


def grid_run(ssl, fusion, seed, train, test, corpus, epochs, device):
    """Trains one small frozen-SSL model; returns its test accuracy.

    ``train`` and ``test`` are index lists into ``corpus`` (paths,
    waveforms, labels); batches of 4 in a seeded order.
    """
    paths, wavs, labels = corpus
    torch.manual_seed(seed)
    scratch = SpectrogramStream(
        LogMel(n_mels=32), DPCNN(32, 8, 2), GlobalNormalization(32)
    )
    model = DualStreamModel(
        [ssl, scratch], fusion, partial(EmotionHead, n_classes=N_CLASSES)
    ).to(device)
    model.train()
    optimizer = adam(model)
    order = torch.Generator().manual_seed(seed)

    def batch(indices):
        wavs_, lens = pad_batch([wavs[i] for i in indices])
        return wavs_.to(device), lens.to(device), [paths[i] for i in indices]

    for _ in range(epochs):
        shuffled = [
            train[i] for i in torch.randperm(len(train), generator=order)
        ]
        for start in range(0, len(shuffled), 4):
            indices = shuffled[start : start + 4]
            batch_wavs, lens, batch_paths = batch(indices)
            targets = torch.tensor([labels[i] for i in indices], device=device)
            with ssl.sources(batch_paths):
                loss = torch.nn.functional.nll_loss(
                    model.log_probabilities(batch_wavs, lens), targets
                )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 4):
            indices = test[start : start + 4]
            batch_wavs, lens, batch_paths = batch(indices)
            with ssl.sources(batch_paths):
                guess = model.log_probabilities(batch_wavs, lens).argmax(-1)
            correct += sum(
                int(g) == labels[i] for g, i in zip(guess.tolist(), indices)
            )
    return correct / len(test)


def pad_batch(waveforms):
    """A zero-padded batch and SpeechBrain relative lengths."""
    longest = max(len(w) for w in waveforms)
    batch = torch.zeros(len(waveforms), longest)
    for row, wav in zip(batch, waveforms):
        row[: len(wav)] = wav
    lens = torch.tensor([len(w) / longest for w in waveforms])
    return batch, lens


def figure_frozen_grid(size, device, epochs, report):
    """Figure 7: a frozen-SSL grid without and with the feature cache.

    Arguments
    ---------
    size : str
        ``"base"`` or ``"tiny"`` (see :func:`ssl_stream`).
    device : str
        Where the models run.
    epochs : int
        Epochs of each run of the grid.
    report : Report
        Prints and keeps the figures.
    """
    from sercaf_toolkit.ssl_cache import attach_ssl_caches

    report.section(
        "7. frozen SSL: 2 fusion blocks x 2 folds x 2 seeds x "
        f"{epochs} epochs, without and with the SSL feature cache"
    )
    width = 64
    fusions = {
        "sum": partial(SumFusion, output_size=width),
        "caf": partial(
            CrossAttentionFusion, output_size=width, attention_size=width
        ),
    }
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="sercaf_grid_") as tmp:
        paths, wavs = synthetic_corpus(tmp, 16, 1.5)
        labels = [i % N_CLASSES for i in range(len(paths))]
        corpus = (paths, wavs, labels)
        folds = [
            (list(range(4, 16)), list(range(0, 4))),
            ([*range(0, 4), *range(8, 16)], list(range(4, 8))),
        ]
        ssl = ssl_stream(size, freeze=True, output="weighted_sum").to(device)
        timings, accuracies = {}, {}
        for cached in (False, True):
            if cached:
                attach_ssl_caches(ssl, os.path.join(tmp, "cache"))
            start = time.perf_counter()
            accuracies[cached] = [
                grid_run(ssl, fusion, seed, train, test, corpus, epochs, device)
                for fusion in fusions.values()
                for train, test in folds
                for seed in (1, 2)
            ]
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            timings[cached] = time.perf_counter() - start
        cache_bytes = sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(os.path.join(tmp, "cache"))
            for name in names
        )
        audio_hours = sum(len(w) for w in wavs) / SAMPLE_RATE / 3600
    report("grid wall time without the cache (s)", timings[False])
    report("grid wall time with the cache (s)", timings[True])
    report(
        "grid speed-up with the cache",
        timings[False] / timings[True],
        TARGETS["cache_speedup"],
    )
    same = sum(a == b for a, b in zip(accuracies[False], accuracies[True]))
    report(
        "runs with equal test accuracy, cached vs not (share)",
        same / len(accuracies[True]),
        1.0,
    )
    report(
        "cache on disk, GB per hour of audio (fp16)",
        cache_bytes / 1e9 / audio_hours,
    )


def figure_partial_finetune(size, device, report, repeats=3):
    """Figure 7, continued: a top-2 fine-tune step against a full one.

    Both streams have the CNN frozen (as in the recipes) and the same
    weights; each step is forward, backward and an Adam step on the same
    batch, interleaved, the fastest of ``repeats`` kept. The cached top-2
    step reads the frozen layers' output from the feature cache.
    """
    from sercaf_toolkit.ssl_cache import attach_ssl_caches

    with tempfile.TemporaryDirectory(prefix="sercaf_topk_") as tmp:
        paths, wavs = synthetic_corpus(tmp, 2, 2.0, seed=1)
        batch_wavs, lens = pad_batch(wavs)
        batch_wavs, lens = batch_wavs.to(device), lens.to(device)
        torch.manual_seed(0)
        full = ssl_stream(size).to(device)
        top2 = ssl_stream(size, finetune_layers=2).to(device)
        top2.load_state_dict(full.state_dict())
        cached = ssl_stream(size, finetune_layers=2).to(device)
        cached.load_state_dict(full.state_dict())
        attach_ssl_caches(cached, os.path.join(tmp, "cache"))
        streams = {"full": full, "top2": top2, "top2_cached": cached}
        optimizers = {k: adam(s) for k, s in streams.items()}
        best = dict.fromkeys(streams, float("inf"))
        for repeat in range(repeats + 1):  # the first warms up
            for name, stream in streams.items():
                stream.train()
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                with stream.sources(paths):
                    features, _ = stream(batch_wavs, lens)
                features.pow(2).mean().backward()
                optimizers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize()
                if repeat:
                    best[name] = min(best[name], time.perf_counter() - start)
    report(
        "top-2 fine-tune step / full fine-tune step",
        best["top2"] / best["full"],
        TARGETS["top2_step_share"],
        better="lower",
    )
    report(
        "top-2 step, frozen layers cached / full fine-tune step",
        best["top2_cached"] / best["full"],
        TARGETS["top2_step_share"],
        better="lower",
    )


def figure_service(report, requests=64, concurrency=16):
    """8. sercaf serve under a bounded load on localhost.

    An (untrained) demo model is exported; ``requests`` demo utterances
    are posted, ``concurrency`` at a time, to the service with
    micro-batching (``max_batch`` 8) and with one request per batch; the
    same files go through ``sercaf predict``'s predictor. Needs the
    ``serve`` extra; skipped, saying so, without it.
    """
    import asyncio
    import importlib.util
    import io
    import tempfile

    import soundfile

    report.section("8. sercaf serve: throughput and latency on localhost")
    if importlib.util.find_spec("fastapi") is None:
        print('  skipped: needs pip install -e ".[serve]"')
        return
    import httpx

    from sercaf_toolkit.corpora.demo import synthesize_utterance
    from sercaf_toolkit.deployment.export import export_model
    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.deployment.service import create_app
    from sercaf_toolkit.hparams import load_hparams
    from tests.conftest import DEMO_LABELS, DEMO_YAML
    from tests.serving import running

    folder = tempfile.mkdtemp(prefix="sercaf_bench_serve_")
    # An untrained demo model (as the tests' demo_model_dir): its cost is
    # a trained one's.
    _, _, overrides = sb.parse_arguments(
        [str(DEMO_YAML), f"--data_folder={folder}",
         f"--output_folder={folder}/run"]
    )  # fmt: skip
    hparams = load_hparams(DEMO_YAML, overrides)
    demo = hparams["model"].train()
    demo(torch.randn(2, 16000))  # normalisation statistics
    encoder = hparams["label_encoder"]
    encoder.update_from_iterable(DEMO_LABELS)
    model = export_model(
        str(DEMO_YAML), overrides, demo.eval(), encoder, f"{folder}/model"
    )
    bodies, paths = [], []
    emotions = ("neutral", "happy", "angry", "sad")
    for index in range(requests):
        wav = synthesize_utterance("spk1_f", emotions[index % 4], index)
        out = io.BytesIO()
        soundfile.write(out, wav, 16000, format="WAV")
        bodies.append(out.getvalue())
        paths.append(os.path.join(folder, f"{index}.wav"))
        with open(paths[-1], "wb") as file:
            file.write(bodies[-1])
    predictor = EmotionPredictor(model, batch_size=8, segment="window")

    async def load(url):
        gate = asyncio.Semaphore(concurrency)
        latencies = []

        async def one(client, body):
            async with gate:
                began = time.perf_counter()
                response = await client.post(f"{url}/predict", content=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - began)

        async with httpx.AsyncClient(timeout=300) as client:
            began = time.perf_counter()
            await asyncio.gather(*(one(client, b) for b in bodies))
            return time.perf_counter() - began, sorted(latencies)

    results = {}
    for name, batch in (("batched", 8), ("one at a time", 1)):
        app = create_app(predictor, max_batch=batch, max_wait_ms=10)
        with running(app) as url:
            asyncio.run(load(url))  # warm-up
            results[name] = asyncio.run(load(url))
    began = time.perf_counter()
    predictor.predict(paths, expand=False)
    predict_seconds = time.perf_counter() - began
    for name, (wall, latencies) in results.items():
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        report(f"service {name}: requests/s", requests / wall)
        report(f"service {name}: p50 latency (s)", p50, better="lower")
        report(f"service {name}: p95 latency (s)", p95, better="lower")
    report("sercaf predict: files/s", requests / predict_seconds)
    report(
        "service batched / one-at-a-time throughput",
        results["one at a time"][0] / results["batched"][0],
        target=1.0,
    )
    report(
        "service batched / sercaf predict throughput",
        predict_seconds / results["batched"][0],
    )


def parse_args(argv=None):
    """The command line (see the module's docstring)."""
    # Both spellings of each option, as every sercaf command takes them.
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default="fp32"
    )
    parser.add_argument(
        "--steps", type=int, default=4, help="timed batches per figure"
    )
    parser.add_argument(
        "--max_batch_length",
        type=float,
        default=None,
        help="seconds of audio per batch (default: 60 base, 20 tiny)",
    )
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="figure 1: steps per model on each batch, the fastest kept "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--grid_epochs",
        type=int,
        default=3,
        help="figure 7: epochs of each run of the grid (default: 3)",
    )
    parser.add_argument(
        "--figures",
        default="1,2,3,4,5,6,7",
        help="comma-separated figures to measure (default: 1-7; figure 8, "
        "the service, needs the serve extra and is measured when asked)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    """Measures and prints every figure, in the order 3, 1, 2, 4, 5, 6, 7.

    Figure 6 (CPU deployment) runs on CPU in fp32 only.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    list of tuple
        ``(figure, value, verdict)`` of every figure, in printed order.
    """
    args = parse_args(argv)
    max_len = args.max_batch_length or (60.0 if args.size == "base" else 20.0)
    durations = iemocap_like_durations(args.utterances)
    workload = Workload.build(durations, max_len, args.steps, args.device)
    timer = Timer(args.device, args.precision)
    report = Report()
    print_header(args, durations)
    wanted = {int(f) for f in args.figures.split(",") if f.strip()}
    # Padding first: it needs no model, and shows before the models build.
    if 3 in wanted:
        figure_padding(workload, report)
    models = {k: m.to(args.device) for k, m in build_models(args.size).items()}
    if 1 in wanted:
        figure_train_step_ratio(models, workload, timer, report, args.repeats)
    # Figures 2, 4 and 5 follow one model (CAF) and one optimizer through.
    caf = models["caf"]
    optimizer = adam(caf)
    if 2 in wanted:
        figure_throughput(caf, optimizer, workload, timer, report)
    if 4 in wanted:
        figure_inference_rtf(caf, workload, timer, report)
    if 5 in wanted:
        figure_peak_memory(caf, optimizer, workload, timer, report)
    cpu_fp32 = timer.device.type == "cpu" and args.precision == "fp32"
    if 6 in wanted and cpu_fp32:
        figure_deployment(
            caf.model,
            args.size,
            workload,
            report,
            threads=torch.get_num_threads(),
        )
    if 7 in wanted:
        figure_frozen_grid(args.size, args.device, args.grid_epochs, report)
        figure_partial_finetune(args.size, args.device, report)
    if 8 in wanted:
        figure_service(report)
    return report.rows


if __name__ == "__main__":
    main()
    sys.exit(0)
