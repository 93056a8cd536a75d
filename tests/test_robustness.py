"""Scale-out and robustness: DDP, kill and resume, determinism, faults."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.evaluation.metrics import EmotionMetrics
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.checkpoints import RandomState
from sercaf_toolkit.training.recipe import run_recipe
from tests.demo_runs import demo_args

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_TRAIN = ROOT / "recipes" / "Demo" / "train.py"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_data")


def outputs(folder):
    folder = pathlib.Path(folder)
    return (
        json.loads((folder / "test_metrics.json").read_text()),
        (folder / "predictions.csv").read_text(),
    )


def test_same_seed_same_run_other_seed_other_run(demo_data, tmp_path):
    first = run_recipe(demo_args(demo_data, tmp_path / "a"))
    second = run_recipe(demo_args(demo_data, tmp_path / "b"))
    other = run_recipe(demo_args(demo_data, tmp_path / "c", "--seed=5"))
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert outputs(tmp_path / "c")[1] != outputs(tmp_path / "a")[1]
    weights = [
        torch.load(pathlib.Path(r.inference_folder) / "embedding_model.ckpt")
        for r in (first, second, other)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(
        torch.equal(weights[0][k], weights[2][k]) for k in weights[0]
    )


def _intra_epoch_checkpoint_of_epoch(save_folder, epoch):
    for meta in pathlib.Path(save_folder).glob("CKPT+*/CKPT.yaml"):
        text = meta.read_text()
        counter = meta.parent / "counter.ckpt"
        if "end-of-epoch: false" in text and counter.exists():
            if counter.read_text().strip() == str(epoch):
                return True
    return False


def test_sigkill_mid_epoch_then_rerun_matches_an_uninterrupted_run(
    demo_data, tmp_path
):
    common = ("--ckpt_interval_steps=2", "--seed=11")
    run_recipe(demo_args(demo_data, tmp_path / "straight", *common))
    command = [
        sys.executable,
        str(DEMO_TRAIN),
        *demo_args(demo_data, tmp_path / "killed", *common),
    ]
    # The same thread count as the straight run in this process: another
    # count sums in another order and the weights differ in the 7th digit.
    threads = str(torch.get_num_threads())
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=threads)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not _intra_epoch_checkpoint_of_epoch(tmp_path / "killed" / "save", 2):
        assert process.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-epoch 2, no chance to clean up
    process.wait()
    assert not (tmp_path / "killed" / "test_metrics.json").exists()
    rerun = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "straight")


def test_partial_checkpoints_are_never_loaded(demo_data, tmp_path):
    output = tmp_path / "run"
    run_recipe(demo_args(demo_data, output, "--number_of_epochs=1"))
    save = output / "save"
    (checkpoint,) = list(save.glob("CKPT+*"))
    # What a kill during saving leaves: a hidden partial folder.
    partial = save / ".partial-CKPT+2099-01-01+00-00-00+00"
    partial.mkdir()
    (partial / "CKPT.yaml").write_text("end-of-epoch: true\nUA: 1.0\n")
    (partial / "model.ckpt").write_bytes(b"truncated")
    # The same command again (another epoch count would be another run,
    # refused): it resumes, loading the published checkpoint to test.
    result = run_recipe(demo_args(demo_data, output, "--number_of_epochs=1"))
    assert result.metrics["UA"] >= 0.0
    assert not partial.exists()  # cleaned at start, never loaded
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1


def test_bad_files_are_skipped_listed_and_training_goes_on(
    tiny_ssl_source, tmp_path
):
    audio = tmp_path / "audio"
    audio.mkdir()
    lines = ["path,label,speaker"]
    for speaker in ["spk1_f", "spk2_m", "spk3_f", "spk4_m"]:
        for emotion in ["angry", "sad"]:
            for take in range(2):
                wav = synthesize_utterance(speaker, emotion, take)
                rate = 8000 if take else 16000  # wrong rate: resampled
                name = f"{speaker}_{emotion}_{take}.wav"
                soundfile.write(audio / name, wav[:: 16000 // rate], rate)
                lines.append(f"audio/{name},{emotion},{speaker}")
    (audio / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt broken")
    soundfile.write(audio / "empty.wav", np.zeros(0), 16000)
    lines += ["audio/corrupt.wav,angry,spk1_f", "audio/empty.wav,sad,spk2_m"]
    (tmp_path / "corpus.csv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "run"
    result = run_recipe(
        [
            str(ROOT / "recipes" / "Custom" / "hparams" / "caf.yaml"),
            f"--data_folder={tmp_path / 'corpus.csv'}",
            f"--output_folder={output}",
            "--labels=[angry,sad]",
            "--n_folds=4",
            "--number_of_epochs=1",
            f"--ssl_source={tiny_ssl_source()}",
            "--n_mels=32",
            "--dpcnn_filters=8",
            "--fusion_size=16",
            "--num_workers=0",
            "--device=cpu",
        ]
    )
    skipped = (output / "skipped_files.txt").read_text()
    assert "corrupt.wav" in skipped and "empty.wav" in skipped
    used = [row["wav"] for name in ("train", "valid", "test")
            for row in read_manifest(output / f"{name}.csv")]  # fmt: skip
    assert len(used) == 16 and not any(
        "corrupt" in p or "empty" in p for p in used
    )
    assert 0.0 <= result.metrics["UA"] <= 1.0


class NaNOnSecondStep(SERBrain):
    def compute_objectives(self, predictions, batch, stage):
        loss = super().compute_objectives(predictions, batch, stage)
        if stage.name == "TRAIN" and self.step == 2:
            return loss * float("nan")
        return loss


def test_a_non_finite_loss_does_not_corrupt_the_checkpoint(demo_data, tmp_path):
    output = tmp_path / "run"
    run_recipe(
        demo_args(demo_data, output, "--number_of_epochs=1"),
        brain_class=NaNOnSecondStep,
    )
    (checkpoint,) = list((output / "save").glob("CKPT+*"))
    state = torch.load(checkpoint / "model.ckpt", weights_only=True)
    assert all(
        torch.isfinite(v).all() for v in state.values() if v.is_floating_point()
    )
    assert "test loss" in (output / "train_log.txt").read_text()


class Payload:
    """An arbitrary object: unpickling it would run code of our choosing."""


@pytest.mark.parametrize(
    "load",
    [
        lambda path: RandomState().load(path),
        lambda path: EmotionMetrics(2).load(path),
        lambda path: torch.load(path),  # what SpeechBrain's loaders call
    ],
    ids=["random_state", "metrics", "speechbrain_default"],
)
def test_checkpoints_load_weights_only(tmp_path, load):
    path = tmp_path / "evil.ckpt"
    torch.save({"confusion": Payload(), "ids": [], "cpu": Payload()}, path)
    with pytest.raises(Exception, match="[Ww]eights only|weights_only"):
        load(path)


def test_ddp_with_gloo_on_cpu(demo_data, tmp_path):
    output = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", str(DEMO_TRAIN),
        *demo_args(demo_data, output, "--number_of_epochs=2"),
        "--distributed_backend=gloo",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((output / "test_metrics.json").read_text())
    single = run_recipe(
        demo_args(demo_data, tmp_path / "single", "--number_of_epochs=2")
    )
    assert set(metrics) == set(single.metrics)
    assert metrics["labels"] == single.metrics["labels"]
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1
    assert len(list((output / "save").glob("CKPT+*"))) >= 1
    assert not list((output / "save").glob(".partial-*"))
    assert (output / "inference" / "embedding_model.ckpt").exists()
    assert result.stdout.count("Test on unseen speakers") == 1  # rank 0 only
