"""The demo recipe end to end: training, unseen-speaker test, export, resume."""

import csv
import json
import os
import pathlib

import pytest
import torch
from speechbrain.inference.classifiers import EncoderClassifier

from sercaf_toolkit.brain import SERBrain
from sercaf_toolkit.data import read_audio, read_manifest
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import resolve_hparams_path
from sercaf_toolkit.recipe import run_recipe

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
    output = tmp_path_factory.mktemp("demo_run") / "fold1"
    result = run_recipe(demo_argv(demo_data, output, "--number_of_epochs=6"))
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
    ]
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
        UserError, match="holds a run of another experiment.*ssl_source"
    ):
        run_recipe(
            demo_argv(
                demo_data,
                output,
                "--number_of_epochs=2",
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
    from sercaf_toolkit.recipe import load_recipe, run_identity

    def identity(*extra):
        argv = demo_argv(tmp_path / "data", tmp_path / "run", *extra)
        return run_identity(load_recipe(argv)[-1])

    dual = identity()
    assert not any("triple" in key or "logmel" in key for key in dual)
    assert identity("--egemaps_filters=7") == dual
    assert identity("--streams=logmel") != dual
