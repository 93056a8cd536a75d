"""The demo recipe end to end: training, unseen-speaker test, export, resume."""

import csv
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import ruamel.yaml
import torch
from speechbrain.inference.classifiers import EncoderClassifier

from sercaf_toolkit.data import read_audio, read_manifest
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import resolve_hparams_path
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.recipe import run_recipe

DEMO = pathlib.Path(__file__).resolve().parent.parent / "recipes" / "Demo"


def demo_argv(data_folder, output_folder, *extra):
    return [
        str(DEMO / "hparams" / "caf.yaml"),
        "--device=cpu",
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        "--utterances_per_emotion=6",
        *extra,
    ]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_data")


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    """A 6-epoch demo run, calibrated (a temperature changes no label, so
    the other tests hold as they would without)."""
    output = tmp_path_factory.mktemp("demo_run") / "fold1"
    result = run_recipe(
        demo_argv(demo_data, output, "--number_of_epochs=6", "--calibrate=True")
    )
    return result


def read_csv(path):
    with open(path, newline="") as source:
        return list(csv.DictReader(source))


def test_learns_emotions_of_unseen_speakers(trained):
    metrics = trained.metrics
    assert metrics["UA"] >= 0.6, metrics  # chance is 0.25
    assert metrics["labels"] == ["neutral", "happy", "angry", "sad"]
    for key in ("WA", "UA", "F1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert len(metrics["confusion_matrix"]) == 4
    assert set(metrics["per_class_recall"]) == set(metrics["labels"])
    output = pathlib.Path(trained.output_folder)
    on_disk = json.loads((output / "test_metrics.json").read_text())
    assert on_disk == metrics


def test_outputs_follow_the_recipe_contract(trained):
    output = pathlib.Path(trained.output_folder)
    test_rows = read_manifest(output / "test.csv")
    train_speakers = {
        row["speaker"] for row in read_manifest(output / "train.csv")
    }
    assert not train_speakers & {row["speaker"] for row in test_rows}
    predictions = read_csv(output / "predictions.csv")
    assert sorted(p["id"] for p in predictions) == sorted(
        r["ID"] for r in test_rows
    )
    assert list(predictions[0]) == [
        "id",
        "true_label",
        "predicted_label",
        "prob_neutral",
        "prob_happy",
        "prob_angry",
        "prob_sad",
        "speaker",
        "gender",
    ]
    speaker_of = {r["ID"]: r["speaker"] for r in test_rows}
    assert all(p["speaker"] == speaker_of[p["id"]] for p in predictions)
    for row in predictions:
        probs = [
            float(row[f"prob_{c}"])
            for c in ("neutral", "happy", "angry", "sad")
        ]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    correct = sum(p["true_label"] == p["predicted_label"] for p in predictions)
    assert correct / len(predictions) == pytest.approx(trained.metrics["WA"])
    assert (output / "train_log.txt").read_text().count("valid UA") == 6
    history = json.loads((output / "history.json").read_text())
    assert sorted(history, key=int) == [str(e) for e in range(1, 7)]
    assert set(history["1"]) == {"train", "valid"}
    for picture in ("training_curves.png", "confusion_matrix.png"):
        assert (output / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(output / "inference")) == [
        "checksums.json",
        "embedding_model.ckpt",
        "hyperparams.yaml",
        "label_encoder.ckpt",
    ]


def test_export_loads_offline_with_encoder_classifier(
    trained, tmp_path, monkeypatch
):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.chdir(tmp_path)  # no path may depend on the working dir
    classifier = EncoderClassifier.from_hparams(
        source=trained.inference_folder, savedir=str(tmp_path / "loaded")
    )
    output = pathlib.Path(trained.output_folder)
    expected = {row["id"]: row for row in read_csv(output / "predictions.csv")}
    rows = read_manifest(output / "test.csv")[:6]
    wavs = [read_audio(row["wav"]) for row in rows]
    longest = max(len(w) for w in wavs)
    batch = torch.stack(
        [torch.nn.functional.pad(w, (0, longest - len(w))) for w in wavs]
    )
    lengths = torch.tensor([len(w) / longest for w in wavs])
    log_probs, _, _, labels = classifier.classify_batch(batch, lengths)
    for row, probs, label in zip(rows, log_probs.exp(), labels):
        want = expected[row["ID"]]
        assert label == want["predicted_label"]
        got = [float(p) for p in probs]
        ref = [
            float(want[f"prob_{c}"])
            for c in ("neutral", "happy", "angry", "sad")
        ]
        assert got == pytest.approx(ref, abs=1e-4)
    _, _, _, file_labels = classifier.classify_file(rows[0]["wav"])
    assert file_labels[0] == expected[rows[0]["ID"]]["predicted_label"]


def test_calibration_is_fitted_on_validation_speakers_only(trained):
    from sklearn.metrics import log_loss

    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.evaluation.calibration import fit_temperature
    from tests.test_calibration import direct_ece, read_predictions

    output = pathlib.Path(trained.output_folder)
    metrics = trained.metrics
    block = metrics["calibration"]
    temperature = block["temperature"]
    assert block["fitted_on"] == "validation speakers"
    valid = read_manifest(output / "valid.csv")
    assert block["validation_utterances"] == len(valid) > 0
    # Some wrong: a temperature is fitted, not kept at 1 for want of them.
    assert block["validation_errors"] > 0 and temperature != 1.0
    assert block["valid_NLL"] <= block["valid_NLL_before"]
    # The top-level figures are those of the written probabilities.
    assert (block["ECE"], block["NLL"]) == (metrics["ECE"], metrics["NLL"])
    probabilities, targets = read_predictions(output)
    assert metrics["ECE"] == pytest.approx(
        direct_ece(probabilities, targets), abs=1e-5
    )
    normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
    assert metrics["NLL"] == pytest.approx(
        log_loss(targets, normalised, labels=range(4)), abs=1e-4
    )
    assert (output / "reliability_diagram.png").read_bytes()[:4] == b"\x89PNG"
    exported = torch.load(
        pathlib.Path(trained.inference_folder) / "embedding_model.ckpt"
    )
    assert float(exported["classifier.temperature"]) == pytest.approx(
        temperature
    )

    # The temperature is the validation speakers' fit: fitted again on the
    # exported model's validation logits, the same; the test speakers' own
    # would differ (and their rows give ECE_before/NLL_before).
    predictor = EmotionPredictor(trained.inference_folder)
    labels = predictor.labels

    def logits_and_targets(rows):
        waves = [read_audio(row["wav"]) for row in rows]
        # log of calibrated probabilities, times T: the logits, up to a
        # shift per row.
        logits = predictor.probabilities(waves).log() * temperature
        return logits, torch.tensor([labels.index(r["label"]) for r in rows])

    assert fit_temperature(*logits_and_targets(valid)) == pytest.approx(
        temperature, rel=1e-2
    )
    test_rows = read_manifest(output / "test.csv")
    test_logits, test_targets = logits_and_targets(test_rows)
    assert fit_temperature(test_logits, test_targets) != pytest.approx(
        temperature, rel=1e-2
    )
    before = torch.softmax(test_logits, dim=-1).numpy()
    assert block["NLL_before"] == pytest.approx(
        log_loss(test_targets.numpy(), before, labels=range(4)), abs=1e-3
    )


class Interrupted(Exception):
    """Stands for the process dying right after the first checkpoint."""


class DiesAfterFirstEpoch(SERBrain):
    def on_stage_end(self, stage, stage_loss, epoch=None):
        super().on_stage_end(stage, stage_loss, epoch)
        if epoch == 1 and stage.name == "VALID":
            raise Interrupted


def test_interrupted_run_resumes_to_the_same_result(demo_data, tmp_path):
    common = ("--number_of_epochs=3", "--seed=7")
    straight = run_recipe(demo_argv(demo_data, tmp_path / "straight", *common))
    argv = demo_argv(demo_data, tmp_path / "resumed", *common)
    with pytest.raises(Interrupted):
        run_recipe(argv, brain_class=DiesAfterFirstEpoch)
    assert not (tmp_path / "resumed" / "test_metrics.json").exists()
    resumed = run_recipe(argv)  # the same command again
    log = (tmp_path / "resumed" / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1  # epoch 1 was not trained twice
    assert resumed.metrics == straight.metrics
    assert read_csv(tmp_path / "resumed" / "predictions.csv") == read_csv(
        tmp_path / "straight" / "predictions.csv"
    )
    final = [
        torch.load(pathlib.Path(r.inference_folder) / "embedding_model.ckpt")
        for r in (straight, resumed)
    ]
    for key in final[0]:
        torch.testing.assert_close(final[0][key], final[1][key], msg=key)


def test_hparams_path_resolves_in_cwd_then_script_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_hparams_path("hparams/caf.yaml", str(DEMO)) == str(
        DEMO / "hparams" / "caf.yaml"
    )
    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "caf.yaml").write_text("x: 1\n")
    assert (
        resolve_hparams_path("hparams/caf.yaml", str(DEMO))
        == "hparams/caf.yaml"
    )
    with pytest.raises(UserError, match="nope.yaml"):
        resolve_hparams_path("nope.yaml", str(DEMO))


def test_refuses_to_resume_another_experiment(
    demo_data, tmp_path, tiny_ssl_source
):
    output = tmp_path / "run"
    run_recipe(demo_argv(demo_data, output, "--number_of_epochs=1"))
    before = {
        path: path.read_bytes() for path in output.rglob("*") if path.is_file()
    }
    with pytest.raises(
        UserError, match="holds a run of another experiment [(]ssl_source: "
    ):
        run_recipe(
            demo_argv(
                demo_data,
                output,
                "--number_of_epochs=1",
                f"--ssl_source={tiny_ssl_source('hubert')}",
            )
        )
    after = {
        path: path.read_bytes() for path in output.rglob("*") if path.is_file()
    }
    assert after == before  # a refused run writes nothing


def test_identity_holds_only_the_chosen_blocks(tmp_path):
    """A run is identified by the streams it chose, not by every stream
    set the shared wiring defines: switching streams changes it, editing
    an unchosen set does not."""
    from sercaf_toolkit.training.recipe import load_recipe, run_identity

    def identity(*extra):
        argv = demo_argv(tmp_path / "data", tmp_path / "run", *extra)
        _, run_opts, _, composed, tree = load_recipe(argv)
        return run_identity(tree, composed, run_opts)

    dual = identity()
    # Neither the mappings of options nor an unchosen option's keys.
    assert not any(
        key.startswith(("stream_sets", "scratch_encoders", "egemaps"))
        for key in dual
    )
    assert identity("--egemaps_filters=7") == dual
    assert identity("--streams=logmel") != dual


def test_identity_is_every_setting_but_output_paths_and_run_options(
    tmp_path,
):
    from sercaf_toolkit.training.recipe import load_recipe, run_identity
    from sercaf_toolkit.training.runs import first_difference

    def identity(*extra, output="run"):
        argv = demo_argv(tmp_path / "data", tmp_path / output, *extra)
        _, run_opts, _, composed, tree = load_recipe(argv)
        return run_identity(tree, composed, run_opts)

    base = identity()
    assert base["lr"] == "0.002" and base["utterances_per_emotion"] == "6"
    for extra, difference in (
        ("--lr=0.01", ("lr", "0.002", "0.01")),
        ("--seed=3", ("seed", "1986", "3")),
        ("--validation=group", ("validation", "speaker", "group")),
        ("--streams=logmel", ("streams", "dual", "logmel")),
        ("--precision=bf16", ("precision", "fp32", "bf16")),  # a run option
    ):
        assert first_difference(base, identity(extra)) == difference
    # Where a run writes and how it is carried out do not count.
    assert identity(output="elsewhere") == base
    for extra in (
        "--num_workers=3",
        "--ckpt_interval_steps=9",
        "--compile_streams=True",
        "--device=cuda:1",
    ):
        assert identity(extra) == base, extra
    assert not any(str(tmp_path / "run") in value for value in base.values())


# A folder holds one run ---------------------------------------------------


def folder_digest(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(pathlib.Path(folder).rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def finished(demo_data, tmp_path_factory):
    """A finished one-epoch run; tests that change it work on a copy."""
    output = tmp_path_factory.mktemp("finished") / "run"
    result = run_recipe(demo_argv(demo_data, output, "--number_of_epochs=1"))
    return output, result


def copy_of(finished, tmp_path):
    """A copy of the finished run: a moved run is still the same run."""
    target = tmp_path / "run"
    shutil.copytree(finished[0], target)
    return target


def test_asked_again_with_another_setting_is_refused_unchanged(
    demo_data, finished
):
    output, _ = finished
    before = folder_digest(output)
    for extra, named in (
        ("--lr=0.01", "(lr: 0.002 there, 0.01 now)"),
        ("--validation=group", "(validation: speaker there, group now)"),
    ):
        with pytest.raises(UserError) as raised:
            run_recipe(
                demo_argv(demo_data, output, "--number_of_epochs=1", extra)
            )
        message = str(raised.value)
        assert "\n" not in message
        assert message.startswith(f"{output} holds a run of another")
        assert named in message
        assert "--rerun" in message and "--output_folder" in message
    assert folder_digest(output) == before  # not a byte changed


def test_changed_audio_is_refused_unchanged(demo_data, finished):
    output, _ = finished
    wav = read_manifest(output / "train.csv")[0]["wav"]
    stat = os.stat(wav)
    before = folder_digest(output)
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        with pytest.raises(UserError) as raised:
            run_recipe(demo_argv(demo_data, output, "--number_of_epochs=1"))
    finally:
        os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    message = str(raised.value)
    assert re.search(
        r"\(data: (\d+) audio files, \d+ bytes, sha256 \w+ there, \1 audio "
        r"files, \d+ bytes, sha256 \w+ now\); add --rerun",
        message,
    ), message
    assert folder_digest(output) == before


def test_the_same_command_again_tests_and_exports_again(
    demo_data, finished, tmp_path
):
    output = copy_of(finished, tmp_path)
    (output / "test_metrics.json").unlink()
    shutil.rmtree(output / "inference")
    result = run_recipe(demo_argv(demo_data, output, "--number_of_epochs=1"))
    assert result.metrics == finished[1].metrics
    assert (output / "inference" / "embedding_model.ckpt").exists()
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1  # not trained again
    assert not (output / "run.lock").exists()


def test_rerun_starts_afresh_and_the_record_matches(
    demo_data, finished, tmp_path
):
    from sercaf_toolkit.training.recipe import load_recipe, run_identity
    from sercaf_toolkit.training.runs import run_difference

    output = copy_of(finished, tmp_path)
    (output / "left_by_the_earlier_run.txt").write_text("x")
    argv = demo_argv(demo_data, output, "--number_of_epochs=1", "--lr=0.01")
    run_recipe([*argv, "--rerun"])
    assert not (output / "left_by_the_earlier_run.txt").exists()
    assert (output / "train_log.txt").read_text().count("epoch: 1,") == 1
    info = json.loads((output / "run_info.json").read_text())
    assert info["identity"]["lr"] == "0.01"
    assert ruamel.yaml.YAML().load(output / "hyperparams.yaml")["lr"] == 0.01
    # The record is what the command asks: asked again, the same run.
    _, run_opts, _, composed, tree = load_recipe(argv)
    identity = run_identity(tree, composed, run_opts)
    assert run_difference(str(output), identity) is None


def test_rerun_never_empties_a_folder_without_a_run(demo_data, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="does not hold a run"):
        run_recipe([*demo_argv(demo_data, folder), "--rerun"])
    assert (folder / "thesis.tex").read_text() == "years of work"
    assert sorted(os.listdir(folder)) == ["thesis.tex"]


def test_a_locked_folder_is_refused_and_a_stale_lock_taken_over(
    demo_data, finished, tmp_path, capsys
):
    output = copy_of(finished, tmp_path)
    argv = demo_argv(demo_data, output, "--number_of_epochs=1")
    holder = subprocess.Popen([sys.executable, "-c", "input()"], stdin=-1)
    lock = {
        "pid": holder.pid,
        "host": socket.gethostname(),
        "started": "2026-01-01T10:00:00",
        "command": "train.py hparams/caf.yaml",
    }
    (output / "run.lock").write_text(json.dumps(lock))
    before = folder_digest(output)
    try:
        with pytest.raises(UserError) as raised:
            run_recipe(argv)
    finally:
        holder.communicate(b"\n")  # ends it: its lock is left behind
    message = str(raised.value)
    assert "\n" not in message
    assert (
        f"{output} is in use by another run (pid {holder.pid} on "
        f"{socket.gethostname()}, started 2026-01-01T10:00:00)" in message
    )
    assert folder_digest(output) == before
    capsys.readouterr()
    run_recipe(argv)  # the holder is gone: its lock is taken over
    err = capsys.readouterr().err
    assert f"taking over {output / 'run.lock'}: its run (pid {holder.pid}" in (
        err
    )
    assert not (output / "run.lock").exists()  # released at the end


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _intra_epoch_checkpoints(save):
    found = []
    for meta in pathlib.Path(save).glob("CKPT+*/CKPT.yaml"):
        if "end-of-epoch: false" in meta.read_text():
            found.append(meta.parent)
    return found


def test_ctrl_c_ends_in_one_line_and_the_same_command_resumes(
    demo_data, finished, tmp_path
):
    output = tmp_path / "run"
    command = [
        sys.executable,
        str(DEMO / "train.py"),
        *demo_argv(demo_data, output, "--number_of_epochs=2"),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # As from a shell: SIGINT at its default. A test process may
            # ignore it (a server test's signal handling), and a child
            # started with SIGINT ignored keeps ignoring it.
            preexec_fn=_default_sigint,
        )
        deadline = time.time() + 240
        # The Demo recipe checkpoints every few steps inside an epoch.
        while not _intra_epoch_checkpoints(output / "save"):
            assert process.poll() is None, "finished before the interrupt"
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    text = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    match = re.fullmatch(
        r"train\.py: interrupted during epoch (\d); rerun the same command "
        r"to resume",
        last,
    )
    assert match, last
    assert not (output / "run.lock").exists()
    assert not (output / "test_metrics.json").exists()
    (kept,) = _intra_epoch_checkpoints(output / "save")
    rerun = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # It went on from the checkpoint inside the epoch, not from scratch.
    assert (
        f"Loading a checkpoint from {kept}" in (output / "log.txt").read_text()
    )
    log = (output / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1
