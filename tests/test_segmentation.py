"""Speech segmentation of long recordings (Silero VAD): speech labelled,
pauses marked non-speech, boundaries where the speech is."""

import csv
import sys

import numpy as np
import pytest
import soundfile

from sercaf_toolkit import cli
from sercaf_toolkit.corpora.demo import SPEAKERS, synthesize_utterance
from sercaf_toolkit.deployment.inference import EmotionPredictor

RATE = 16000
EMOTIONS = ("neutral", "happy", "angry", "sad")


def speech_with_long_silences(seconds=180.0, seed=0):
    """Demo utterances separated by 3-12 s of near silence (a -70 dBFS
    noise floor); returns the waveform and the utterances' true spans."""
    rng = np.random.default_rng(seed)
    parts, truth, position, index = [], [], 0, 0
    while True:
        gap = int(RATE * rng.uniform(3.0, 12.0))
        speaker = SPEAKERS[index % len(SPEAKERS)][0]
        utterance = synthesize_utterance(
            speaker, EMOTIONS[index % 4], 100 + index
        )
        if (position + gap + len(utterance)) / RATE > seconds - 3.0:
            break
        parts += [np.zeros(gap, dtype=np.float32), utterance]
        truth.append(
            ((position + gap) / RATE, (position + gap + len(utterance)) / RATE)
        )
        position += gap + len(utterance)
        index += 1
    parts.append(np.zeros(int(seconds * RATE) - position, dtype=np.float32))
    wav = np.concatenate(parts)
    wav += (10 ** (-70 / 20) * rng.standard_normal(len(wav))).astype(np.float32)
    return wav, truth


@pytest.fixture(scope="module")
def predictor(demo_model_dir):
    return EmotionPredictor(demo_model_dir)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    wav, truth = speech_with_long_silences()
    path = tmp_path_factory.mktemp("long") / "meeting.wav"
    soundfile.write(path, wav, RATE)
    return str(path), truth


def test_three_minutes_of_speech_and_silence_segment_at_the_truth(
    predictor, recording
):
    path, truth = recording
    records, report = predictor.predict([path])
    assert report["failures"] == 0
    assert records[0]["start"] == 0.0
    assert records[-1]["end"] == pytest.approx(180.0, abs=1e-3)
    for before, after in zip(records, records[1:]):
        assert before["end"] == after["start"]  # a tiling
    speech = [r for r in records if r["speech"] == "speech"]
    silence = [r for r in records if r["speech"] == "non-speech"]
    assert len(truth) >= 10 and speech and silence
    for record in silence:  # no emotion on a pause
        assert record["label"] == "" and record["score"] is None
    for record in speech:
        assert record["label"] in predictor.labels
    # Merge touching speech rows (a long one is split) into runs: each run
    # is one utterance, its boundaries within 0.3 s of the truth.
    runs = []
    for record in speech:
        if runs and runs[-1][1] == record["start"]:
            runs[-1][1] = record["end"]
        else:
            runs.append([record["start"], record["end"]])
    assert len(runs) == len(truth)
    for (start, end), (true_start, true_end) in zip(runs, truth):
        assert abs(start - true_start) <= 0.3, (start, true_start)
        assert abs(end - true_end) <= 0.3, (end, true_end)


def test_window_mode_keeps_the_fixed_windows(predictor, recording):
    path, _ = recording
    window = EmotionPredictor.__new__(EmotionPredictor)
    window.__dict__.update(predictor.__dict__, segment="window")
    records, _ = window.predict([path])
    assert all(r["speech"] == "" and r["label"] for r in records)


def test_an_all_silent_recording_is_one_no_speech_row(predictor, tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(40 * RATE, dtype=np.float32), RATE)
    records, report = predictor.predict([str(path)])
    assert len(records) == 1
    (record,) = records
    assert (record["start"], record["end"]) == (0.0, 40.0)
    assert record["speech"] == "non-speech" and record["label"] == ""
    assert record["flag"] == "no_speech"
    assert report["flags"] == {"no_speech": 1}


def test_cli_writes_speech_column_and_plot(demo_model_dir, recording, tmp_path):
    path, _ = recording
    out, plot = tmp_path / "out.csv", tmp_path / "timeline.png"
    code = cli.main(
        ["predict", demo_model_dir, path, "--out", str(out), "--plot",
         str(plot), "--min_gap", "0.5", "--max_segment", "6", "--no_progress"]
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert {"speech", "label", "start", "end"} <= set(rows[0])
    assert {r["speech"] for r in rows} == {"speech", "non-speech"}
    speech = [r for r in rows if r["speech"] == "speech"]
    assert max(float(r["end"]) - float(r["start"]) for r in speech) <= 6.0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_missing_vad_package_is_one_line(
    demo_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # not installed
    audio = tmp_path / "a.wav"
    soundfile.write(audio, np.zeros(RATE, dtype=np.float32), RATE)
    code = cli.main(["predict", demo_model_dir, str(audio)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1
    assert "silero-vad is not installed" in lines[0]
    assert ".[vad]" in lines[0] and "--segment window" in lines[0]
    assert cli.main(
        ["predict", demo_model_dir, str(audio), "--segment", "window",
         "--out", str(tmp_path / "o.csv")]
    ) == 0  # fmt: skip
