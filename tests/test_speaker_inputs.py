"""Speaker-normalised models at inference: refused on raw audio, and with
enrolment audio labelled as in their training run's test."""

import csv
import json
import os
import pathlib

import pytest
import torch

from sercaf_toolkit import cli
from sercaf_toolkit.deployment.inference import EmotionPredictor
from sercaf_toolkit.deployment.speakers import RECORD_FILE, read_record
from sercaf_toolkit.errors import UserError
from tests.test_cli import assert_user_error, sercaf

TEST_SPEAKERS = ("spk1_f", "spk2_m")  # fold 1 of the demo protocol


@pytest.fixture(scope="module")
def run(speaker_normalized_run):
    return speaker_normalized_run


def data_folder(run):
    return pathlib.Path(run.output_folder).parent / "data"


def training_predictions(run):
    """id -> (label, probabilities) of the training run's test."""
    with open(pathlib.Path(run.output_folder) / "predictions.csv") as rows:
        return {row["id"]: row for row in csv.DictReader(rows)}


def by_id(records):
    return {pathlib.Path(r["path"]).stem: r for r in records}


def test_export_records_the_normalisation(run, demo_model_dir):
    record = read_record(run.inference_folder)
    assert record["kind"] == "speaker_mean_logmel"
    assert len(record["target_db"]) == record["n_mels"] == 64
    checksums = json.loads(
        (pathlib.Path(run.inference_folder) / "checksums.json").read_text()
    )
    assert RECORD_FILE in checksums["files"]
    assert read_record(demo_model_dir) is None  # raw audio: no record


def test_raw_audio_is_refused_in_one_line(run, tmp_path):
    audio = data_folder(run) / "spk1_f"
    result = sercaf("predict", run.inference_folder, audio)
    line = assert_user_error(result, "speaker-normalised", "--speaker_audio")
    assert "Traceback" not in result.stderr and line
    with pytest.raises(UserError, match="speaker-normalised"):
        EmotionPredictor(run.inference_folder)
    # SpeechBrain's own interface on the folder refuses too.
    from speechbrain.inference.classifiers import EncoderClassifier

    classifier = EncoderClassifier.from_hparams(
        source=os.path.abspath(run.inference_folder),
        savedir=str(tmp_path / "sb"),
    )
    with pytest.raises(RuntimeError, match="speaker-normalised"):
        classifier.classify_batch(torch.zeros(1, 16000))


def test_speaker_audio_gives_the_training_runs_test_labels(run, tmp_path):
    expected = training_predictions(run)
    cache = tmp_path / "cache"
    for speaker in TEST_SPEAKERS:
        folder = str(data_folder(run) / speaker)
        predictor = EmotionPredictor(
            run.inference_folder, speaker_audio=[folder], speaker_cache=cache
        )
        records, report = predictor.predict([folder])
        assert report["failures"] == 0
        for utterance, record in by_id(records).items():
            row = expected[utterance]
            assert record["label"] == row["predicted_label"], utterance
            for label in predictor.labels:
                assert record[f"prob_{label}"] == pytest.approx(
                    float(row[f"prob_{label}"]), abs=1e-4
                )
    # One statistics entry per speaker, reused by a second predictor.
    entries = sorted((cache / "statistics").glob("*.json"))
    assert len([e for e in entries if not e.name.endswith(".key.json")]) == 2
    stamp = [e.stat().st_mtime_ns for e in entries]
    EmotionPredictor(
        run.inference_folder,
        speaker_audio=[str(data_folder(run) / TEST_SPEAKERS[0])],
        speaker_cache=cache,
    )
    assert [e.stat().st_mtime_ns for e in entries] == stamp


def test_a_list_with_a_speaker_column_normalises_each_speaker(
    run, tmp_path, capsys
):
    listing = tmp_path / "list.csv"
    lines = ["path,speaker"]
    for speaker in TEST_SPEAKERS:
        lines += [
            f"{path},{speaker}"
            for path in sorted((data_folder(run) / speaker).glob("*.wav"))
        ]
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    code = cli.main(
        ["predict", run.inference_folder, str(listing), "--out", str(out),
         "--speaker_cache", str(tmp_path / "cache"), "--no_progress"]
    )  # fmt: skip
    assert code == 0
    expected = training_predictions(run)
    rows = by_id(csv.DictReader(out.open()))
    assert len(rows) == len(expected) == 24
    assert {k: r["label"] for k, r in rows.items()} == {
        k: r["predicted_label"] for k, r in expected.items()
    }


def test_onnx_keeps_the_record_and_refuses_raw_audio(run, tmp_path):
    from sercaf_toolkit.deployment.onnx_export import export_onnx

    path = str(tmp_path / "normalized.onnx")
    export_onnx(run.inference_folder, path)
    assert read_record(path) == read_record(run.inference_folder)
    with pytest.raises(UserError, match="speaker-normalised"):
        EmotionPredictor(path)
    folder = str(data_folder(run) / "spk1_f")
    predictor = EmotionPredictor(
        path, speaker_audio=folder, speaker_cache=tmp_path / "cache"
    )
    records, _ = predictor.predict([folder])
    expected = training_predictions(run)
    for utterance, record in by_id(records).items():
        assert record["label"] == expected[utterance]["predicted_label"]


def test_speaker_audio_for_a_raw_model_is_one_line(demo_model_dir, tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    result = sercaf("predict", demo_model_dir, audio, "--speaker_audio", audio)
    assert_user_error(result, "--speaker_audio", "raw audio")
    result = sercaf(
        "predict", demo_model_dir, audio, "--speaker_audio", tmp_path / "no"
    )
    assert_user_error(result, "--speaker_audio", "does not exist")


def test_serve_normalises_with_the_enrolment(run, tmp_path):
    httpx = pytest.importorskip("httpx")
    from sercaf_toolkit.deployment.service import create_app
    from tests.serving import running

    folder = data_folder(run) / "spk2_m"
    predictor = EmotionPredictor(
        run.inference_folder,
        speaker_audio=str(folder),
        speaker_cache=tmp_path / "cache",
    )
    expected = training_predictions(run)
    with running(create_app(predictor)) as url:
        for path in sorted(folder.glob("*.wav"))[:4]:
            answer = httpx.post(
                f"{url}/predict", content=path.read_bytes()
            ).json()
            assert answer["label"] == expected[path.stem]["predicted_label"]
