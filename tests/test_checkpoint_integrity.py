"""Checkpoints and model folders that survive corruption and full disks.

A damaged checkpoint is found by its checksums before anything is loaded,
set aside, and the run goes on from the previous intact one (or from
scratch); a save that fails leaves the earlier checkpoints as they were; a
damaged exported model is refused before it loads.
"""

import errno
import json
import logging
import os
import pathlib
import subprocess
import sys
import types

import pytest
import soundfile
import speechbrain as sb
import torch
import yaml

import sercaf_toolkit
from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.deployment.export import export_model
from sercaf_toolkit.deployment.inference import EmotionPredictor
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import load_hparams
from sercaf_toolkit.integrity import CHECKSUMS, damage, write_checksums
from sercaf_toolkit.training import checkpoints as checkpoints_module
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.checkpoints import (
    AtomicCheckpointer,
    CheckpointSaveError,
)
from sercaf_toolkit.training.recipe import run_recipe
from tests.demo_runs import DEMO_YAML, demo_args

ROOT = pathlib.Path(sercaf_toolkit.__file__).resolve().parent.parent
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def truncate(path, size=1000):
    with open(path, "r+b") as file:
        file.truncate(size)


# Checksums ---------------------------------------------------------------


def test_checksums_find_truncated_altered_and_missing_files(tmp_path):
    (tmp_path / "a.ckpt").write_bytes(b"x" * 5000)
    (tmp_path / "b.yaml").write_text("key: 1\n")
    write_checksums(tmp_path)
    assert damage(tmp_path) is None
    (tmp_path / "extra.txt").write_text("not listed: ignored")
    assert damage(tmp_path) is None
    (tmp_path / "b.yaml").write_text("key: 2\n")
    assert "b.yaml does not match its sha256" in damage(tmp_path)
    (tmp_path / "b.yaml").write_text("key: 1\n")
    truncate(tmp_path / "a.ckpt")
    assert damage(tmp_path) == "a.ckpt is 1000 bytes, expected 5000"
    (tmp_path / "a.ckpt").unlink()
    assert damage(tmp_path) == "a.ckpt is missing"
    (tmp_path / CHECKSUMS).write_text('{"files": ')
    assert damage(tmp_path) == f"{CHECKSUMS} is unreadable"
    (tmp_path / CHECKSUMS).unlink()
    assert damage(tmp_path) == f"no {CHECKSUMS}"
    assert damage(tmp_path, required=False) is None


# The checkpointer on its own: seconds -----------------------------------


def checkpointer_of(folder, value=0.0):
    net = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(net.weight, value)
    return AtomicCheckpointer(folder, {"net": net}), net


def save_with_weight(folder, value, **meta):
    checkpointer, _ = checkpointer_of(folder, value)
    return checkpointer.save_checkpoint(meta={"value": value, **meta})


def own_messages(caplog):
    """The checkpointer's warnings (a recipe run earlier in the process may
    have set up logging so that other loggers' and INFO lines come too)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == checkpoints_module.__name__
        and r.levelno >= logging.WARNING
    ]


def recovered_weight(folder):
    checkpointer, net = checkpointer_of(folder, -1.0)
    checkpointer.recover_if_possible()
    return net.weight[0, 0].item()


def test_every_checkpoint_holds_checksums_of_all_its_files(tmp_path):
    checkpoint = save_with_weight(tmp_path, 1.0)
    listed = json.loads((checkpoint.path / CHECKSUMS).read_text())["files"]
    assert sorted(listed) == ["CKPT.yaml", "net.ckpt"]
    assert damage(checkpoint.path) is None


def test_damaged_newest_checkpoint_is_set_aside_and_the_previous_loaded(
    tmp_path, caplog
):
    save_with_weight(tmp_path, 1.0)
    newest = save_with_weight(tmp_path, 2.0)
    truncate(newest.path / "net.ckpt", 100)
    with caplog.at_level(logging.WARNING):
        assert recovered_weight(tmp_path) == 1.0
    (warning,) = own_messages(caplog)
    assert str(newest.path) in warning
    assert "net.ckpt is 100 bytes" in warning and "\n" not in warning
    damaged = newest.path.with_name(newest.path.name + ".damaged")
    assert damaged.is_dir() and not newest.path.exists()  # kept, not deleted
    assert recovered_weight(tmp_path) == 1.0  # and never listed again


def test_unreadable_meta_file_is_set_aside_too(tmp_path, caplog):
    save_with_weight(tmp_path, 1.0)
    newest = save_with_weight(tmp_path, 2.0)
    (newest.path / "CKPT.yaml").write_bytes(b"\x00\xff: [")
    with caplog.at_level(logging.WARNING):
        assert recovered_weight(tmp_path) == 1.0
    assert "CKPT.yaml is unreadable" in caplog.text
    assert newest.path.with_name(newest.path.name + ".damaged").is_dir()


def test_no_intact_checkpoint_left_loads_nothing_and_says_so(tmp_path, caplog):
    only = save_with_weight(tmp_path, 1.0)
    truncate(only.path / "net.ckpt", 10)
    with caplog.at_level(logging.WARNING):
        assert recovered_weight(tmp_path) == -1.0  # the fresh weights
    messages = own_messages(caplog)
    assert len(messages) == 2
    assert messages[1] == (
        f"No intact checkpoint left in {tmp_path}: starting from scratch"
    )


def test_best_by_key_falls_back_to_the_next_best(tmp_path):
    save_with_weight(tmp_path, 1.0, UA=0.9)
    best = save_with_weight(tmp_path, 2.0, UA=0.95)
    save_with_weight(tmp_path, 3.0, UA=0.5)
    truncate(best.path / "net.ckpt", 10)
    checkpointer, net = checkpointer_of(tmp_path, -1.0)
    checkpointer.recover_if_possible(max_key="UA")
    assert net.weight[0, 0].item() == 1.0


def test_keeps_the_two_latest_and_the_best(tmp_path):
    checkpointer, net = checkpointer_of(tmp_path)
    for epoch, ua in enumerate([0.3, 0.9, 0.4, 0.5, 0.6], start=1):
        checkpointer.save_and_keep_only(
            meta={"UA": ua, "epoch": epoch}, max_keys=["UA"]
        )
    kept = sorted(c.meta["epoch"] for c in checkpointer.list_checkpoints())
    assert kept == [2, 4, 5]
    # SpeechBrain's intra-epoch saves keep only intra-epoch checkpoints'
    # latest; here the latest two of them.
    for _ in range(3):
        checkpointer.save_and_keep_only(
            meta={"intra": True},
            end_of_epoch=False,
            ckpt_predicate=lambda c: "intra" in c.meta,
        )
    listed = checkpointer.list_checkpoints()
    assert sum("intra" in c.meta for c in listed) == 2
    assert len(listed) == 5


def test_the_save_log_line_names_the_final_folder(tmp_path, caplog):
    checkpointer, _ = checkpointer_of(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="speechbrain"):
        with caplog.at_level(logging.INFO, logger=checkpoints_module.__name__):
            checkpoint = checkpointer.save_checkpoint()
    infos = [r.getMessage() for r in caplog.records if r.levelno >= 20]
    assert f"Saved an end-of-epoch checkpoint in {checkpoint.path}" in infos
    assert not any(".partial-" in m for m in infos)


@pytest.mark.parametrize(
    "error, cause",
    [
        (ENOSPC, "No space left on device"),
        (PermissionError(errno.EACCES, "denied"), "Permission denied"),
        (  # what torch.save really raises on a full disk
            RuntimeError("[enforce fail at inline_container.cc:672] . x"),
            "No space left on device (0.5 MiB free",
        ),
    ],
    ids=["enospc", "permission", "torch_full_disk"],
)
def test_failed_save_keeps_the_earlier_checkpoint_and_no_partial(
    tmp_path, monkeypatch, error, cause
):
    earlier = save_with_weight(tmp_path, 1.0)
    checkpointer, _ = checkpointer_of(tmp_path, 2.0)

    def failing_save(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(
        checkpoints_module.shutil,
        "disk_usage",
        lambda path: types.SimpleNamespace(free=2**19),
    )
    with pytest.raises(CheckpointSaveError) as raised:
        checkpointer.save_checkpoint()
    assert isinstance(raised.value, UserError)
    message = str(raised.value)
    assert "\n" not in message and cause in message
    assert message.startswith(f"could not save checkpoint {tmp_path}/CKPT+")
    assert ".partial-" not in message
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [earlier.path.name]
    assert damage(earlier.path) is None
    assert recovered_weight(tmp_path) == 1.0


def test_programming_errors_during_a_save_keep_their_traceback(
    tmp_path, monkeypatch
):
    checkpointer, _ = checkpointer_of(tmp_path)

    def buggy_save(*args, **kwargs):
        raise RuntimeError("Don't know how to save")

    monkeypatch.setattr(torch, "save", buggy_save)
    with pytest.raises(RuntimeError, match="Don't know how to save"):
        checkpointer.save_checkpoint()


# The Demo recipe: a few seconds per run ---------------------------------


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_data")


def checkpoints_by_epoch(output):
    found = {}
    for path in (output / "save").glob("CKPT+*"):
        if path.name.endswith(".damaged"):
            continue
        meta = yaml.safe_load((path / "CKPT.yaml").read_text())
        found[meta["epoch"]] = path
    return found


def warnings_in_log(output):
    """The warnings of the checkpointer in the run's log.txt."""
    marker = " - sercaf_toolkit.training.checkpoints - WARNING - "
    return [
        line.split(marker, 1)[1]
        for line in (output / "log.txt").read_text().splitlines()
        if marker in line
    ]


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(
    demo_data, tmp_path
):
    output = tmp_path / "run"
    straight = run_recipe(
        demo_args(
            demo_data,
            output,
            "--number_of_epochs=2",
            "--seed=7",
        )
    )
    kept = checkpoints_by_epoch(output)
    assert sorted(kept) == [1, 2]  # the latest two, the best among them
    truncate(kept[2] / "model.ckpt")
    resumed = run_recipe(
        demo_args(
            demo_data,
            output,
            "--number_of_epochs=2",
            "--seed=7",
        )
    )
    assert resumed.metrics == straight.metrics  # epoch 2 trained again
    (warning,) = warnings_in_log(output)
    assert warning.startswith(f"Checkpoint {kept[2]} is damaged (model.ckpt")
    assert "model.ckpt is 1000 bytes" in warning
    assert (output / "save" / (kept[2].name + ".damaged")).is_dir()
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 2


def test_no_intact_checkpoint_restarts_from_scratch(demo_data, tmp_path):
    output = tmp_path / "run"
    first = run_recipe(
        demo_args(
            demo_data,
            output,
            "--number_of_epochs=1",
            "--seed=7",
        )
    )
    (only,) = checkpoints_by_epoch(output).values()
    truncate(only / "model.ckpt")
    again = run_recipe(
        demo_args(
            demo_data,
            output,
            "--number_of_epochs=1",
            "--seed=7",
        )
    )
    assert again.metrics == first.metrics  # trained again, same seed
    damaged, scratch = warnings_in_log(output)
    assert str(only) in damaged
    assert scratch == (
        f"No intact checkpoint left in {output / 'save'}: starting from scratch"
    )
    assert (output / "save" / (only.name + ".damaged")).is_dir()
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 2


class _Stopped(Exception):
    """Stands for a run that stopped after its first epoch."""


class _StopsAfterFirstEpoch(SERBrain):
    def on_stage_end(self, stage, stage_loss, epoch=None):
        super().on_stage_end(stage, stage_loss, epoch)
        if epoch == 1 and stage.name == "VALID":
            raise _Stopped


def test_full_disk_stops_the_run_in_one_line_and_keeps_the_checkpoint(
    demo_data, tmp_path, monkeypatch
):
    output = tmp_path / "run"
    argv = demo_args(
        demo_data,
        output,
        "--number_of_epochs=2",
        "--seed=7",
    )
    with pytest.raises(_Stopped):  # a run stopped after its first epoch
        run_recipe(argv, brain_class=_StopsAfterFirstEpoch)
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if ".partial-" in str(path):
            raise ENOSPC
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError) as raised:
        run_recipe(argv)  # resumed: epoch 2's checkpoint cannot be saved
    monkeypatch.undo()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"could not save checkpoint {output}/save/CKPT+")
    assert "No space left on device" in message
    assert not list((output / "save").glob(".partial-*"))
    (earlier,) = checkpoints_by_epoch(output).values()  # epoch 1's
    assert damage(earlier) is None
    torch.load(earlier / "model.ckpt", weights_only=True)


# Exported model folders --------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    argv = [str(DEMO_YAML), f"--data_folder={root}", "--output_folder=x"]
    _, _, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(DEMO_YAML, overrides)
    encoder = hparams["label_encoder"]
    encoder.update_from_iterable(["neutral", "happy", "angry", "sad"])
    encoder.expect_len(4)
    return pathlib.Path(
        export_model(
            str(DEMO_YAML),
            overrides,
            hparams["model"].eval(),
            encoder,
            str(root / "inference"),
        )
    )


def damaged_copy(exported, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in exported.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    truncate(folder / "embedding_model.ckpt")
    return folder


def test_export_writes_checksums(exported):
    listed = json.loads((exported / CHECKSUMS).read_text())["files"]
    assert sorted(listed) == [
        "embedding_model.ckpt",
        "hyperparams.yaml",
        "label_encoder.ckpt",
    ]
    assert damage(exported) is None


def test_emotion_predictor_refuses_a_damaged_folder(exported, tmp_path):
    folder = damaged_copy(exported, tmp_path)
    with pytest.raises(UserError, match="embedding_model.ckpt is 1000 bytes"):
        EmotionPredictor(str(folder), savedir=str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()  # refused before loading


def test_sercaf_predict_refuses_a_damaged_folder_in_one_line(
    exported, tmp_path
):
    folder = damaged_copy(exported, tmp_path)
    audio = tmp_path / "a.wav"
    soundfile.write(audio, synthesize_utterance("spk1_f", "happy", 0), 16000)
    result = subprocess.run(
        [sys.executable, "-m", "sercaf_toolkit.cli", "predict"]
        + [str(folder), str(audio), "--out", str(tmp_path / "out.csv")],
        env=dict(os.environ, PYTHONPATH=str(ROOT), SERCAF_DEBUG="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"sercaf: error: model folder {folder}")
    assert "damaged: embedding_model.ckpt is 1000 bytes" in lines[0]
    assert not (tmp_path / "out.csv").exists()
