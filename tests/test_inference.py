"""sercaf predict and EmotionPredictor: batching, bad files, timelines."""

import csv
import json
import pathlib

import numpy as np
import pytest
import soundfile
import torch

from sercaf_toolkit import cli
from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.data import truncation
from sercaf_toolkit.deployment.inference import (
    EmotionPredictor,
    expand_inputs,
)

LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def model_dir(demo_model_dir):
    """An exported (untrained) demo model: enough to test inference."""
    return demo_model_dir


@pytest.fixture(scope="module")
def predictor(model_dir):
    # Fixed windows: these tests are about the window timeline (speech
    # segmentation, the default, has tests/test_segmentation.py).
    return EmotionPredictor(model_dir, batch_size=8, segment="window")


def write(path, samples, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate)
    return str(path)


def test_batched_equals_one_file_at_a_time(predictor, model_dir):
    waves = [
        torch.from_numpy(synthesize_utterance(s, e, i))
        for i, (s, e) in enumerate(
            [("spk1_f", "sad"), ("spk2_m", "angry"), ("spk3_f", "happy"),
             ("spk4_m", "neutral"), ("spk5_f", "angry")]
        )
    ]  # fmt: skip
    batched = predictor.probabilities(waves)
    one_by_one = EmotionPredictor(model_dir, batch_size=1).probabilities(waves)
    torch.testing.assert_close(batched, one_by_one, atol=1e-4, rtol=0)
    assert torch.allclose(batched.sum(dim=1), torch.ones(5))


def test_mixed_folder_gives_rows_and_error_rows(predictor, tmp_path):
    wav = synthesize_utterance("spk1_f", "angry", 3)
    folder = tmp_path / "mixed"
    write(folder / "a_16k.wav", wav, 16000)
    resampled = torch.from_numpy(wav)[None]
    import torchaudio

    write(
        folder / "b_8k.flac",
        torchaudio.functional.resample(resampled, 16000, 8000)[0].numpy(),
        8000,
    )
    write(folder / "c_stereo.wav", np.stack([wav, wav], axis=1), 16000)
    (folder / "d_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk")
    write(folder / "e_empty.wav", np.zeros(0), 16000)
    nan = np.array([0.1, np.nan] * 800)
    soundfile.write(folder / "f_nan.wav", nan, 16000, subtype="FLOAT")
    good = (folder / "a_16k.wav").read_bytes()
    (folder / "g_truncated.wav").write_bytes(good[:30])
    (folder / "h_text.wav").write_text("not audio\n" * 50)
    (folder / "readme.md").write_text("ignored: not an audio extension")
    records, report = predictor.predict([str(folder)])
    by_name = {pathlib.Path(r["path"]).name: r for r in records}
    assert sorted(by_name) == [
        "a_16k.wav", "b_8k.flac", "c_stereo.wav", "d_corrupt.wav",
        "e_empty.wav", "f_nan.wav", "g_truncated.wav", "h_text.wav",
    ]  # fmt: skip
    reference = by_name["a_16k.wav"]
    assert reference["error"] == "" and reference["label"] in LABELS
    assert reference["end"] == pytest.approx(len(wav) / 16000, abs=1e-3)
    stereo = by_name["c_stereo.wav"]
    for label in LABELS:  # a stereo copy of the same signal: same result
        assert stereo[f"prob_{label}"] == pytest.approx(
            reference[f"prob_{label}"], abs=1e-4
        )
    low_rate = by_name["b_8k.flac"]
    assert low_rate["error"] == "" and low_rate["label"] in LABELS
    # Resampled to 16 kHz on reading: the recording's duration, not half of
    # it. (Its label is not compared: this model is untrained, and the
    # copy lost everything above 4 kHz.)
    assert low_rate["end"] == pytest.approx(reference["end"], abs=1e-3)
    messages = {
        "d_corrupt.wav": "cannot read audio",
        "e_empty.wav": "empty audio",
        "f_nan.wav": "NaN",
        "g_truncated.wav": "",
        "h_text.wav": "cannot read audio",
    }
    for name, message in messages.items():
        assert (
            name in by_name[name]["error"] and message in by_name[name]["error"]
        )
        assert by_name[name]["label"] == ""
    assert report["files"] == 8 and report["failures"] == 5
    # The flag says "empty" for the file with no samples, and only there.
    assert {name: r["flag"] for name, r in by_name.items() if r["flag"]} == {
        "e_empty.wav": "empty"
    }
    assert report["flags"] == {"empty": 1}


def test_sixty_second_recording_gives_a_tiling_timeline(predictor, tmp_path):
    parts = [
        synthesize_utterance("spk2_m", emotion, i)
        for i, emotion in enumerate(["neutral", "angry", "sad", "happy"] * 8)
    ]
    recording = np.concatenate(parts)[: 60 * 16000]
    path = write(tmp_path / "long.wav", recording, 16000)
    records, report = predictor.predict([path])
    assert len(recording) == 60 * 16000
    assert records[0]["start"] == 0.0
    for previous, current in zip(records, records[1:]):
        assert current["start"] == previous["end"]
        assert current["label"] != previous["label"]  # equal labels merged
    assert records[-1]["end"] == pytest.approx(60.0)
    for record in records:
        total = sum(record[f"prob_{label}"] for label in LABELS)
        assert total == pytest.approx(1.0, abs=1e-5)
        assert record["score"] == record[f"prob_{record['label']}"]
    windows = report["windows"][path]
    assert len(windows) == 29  # 4 s windows every 2 s over 60 s
    unmerged, _ = predictor.timeline(
        torch.from_numpy(recording), path, merge=False
    )
    assert len(unmerged) == len(windows)


def test_cli_outputs_plot_and_exit_status(model_dir, tmp_path, capsys):
    good = write(
        tmp_path / "in" / "good.wav",
        synthesize_utterance("spk1_f", "sad", 1),
        16000,
    )
    parts = [synthesize_utterance("spk3_f", e, 2) for e in ["sad", "angry"] * 8]
    long_path = write(
        tmp_path / "in" / "long.wav", np.concatenate(parts), 16000
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good}\n{long_path}\n")
    out_csv, plot = tmp_path / "out.csv", tmp_path / "timeline.png"
    code = cli.main(
        ["predict", model_dir, str(listing), "--out", str(out_csv),
         "--plot", str(plot), "--batch-size", "2", "--long-threshold", "20"]
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[0]["path"] == good
    long_rows = [row for row in rows if row["path"] == long_path]
    assert float(long_rows[-1]["end"]) == pytest.approx(50.6, abs=0.1)
    assert set(rows[0]) == {
        "path", "start", "end", "speech", "label", "score", "flag", "error",
        *(f"prob_{label}" for label in LABELS),
    }  # fmt: skip
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[sercaf predict] 2 files, 0 failed" in capsys.readouterr().err
    (tmp_path / "in" / "broken.wav").write_bytes(b"nothing")
    out_json = tmp_path / "out.json"
    code = cli.main(
        ["predict", model_dir, str(tmp_path / "in"), "--out", str(out_json)]
    )
    assert code == 1
    records = json.loads(out_json.read_text())
    assert [r["error"] != "" for r in records].count(True) == 1
    assert "1 failed" in capsys.readouterr().err


def test_expand_inputs_keeps_named_files(tmp_path):
    assert expand_inputs([str(tmp_path / "missing.wav")]) == [
        str(tmp_path / "missing.wav")
    ]


def test_attention_maps_rows_sum_to_one_and_cli_plots(
    model_dir, predictor, tmp_path
):
    path = write(
        tmp_path / "a.wav", synthesize_utterance("spk4_m", "happy", 0), 16000
    )
    result = predictor.attention(path)
    ssl_to_mel, mel_to_ssl = result["maps"]
    assert ssl_to_mel.shape[1] == mel_to_ssl.shape[0]  # each other's frames
    assert mel_to_ssl.shape[1] == ssl_to_mel.shape[0]
    for weights in result["maps"]:
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert result["streams"] == ["wav2vec2", "DPCNN"]
    assert result["frame_seconds"][0] == pytest.approx(0.02, abs=0.002)
    png, maps_json = tmp_path / "attention.png", tmp_path / "maps.json"
    code = cli.main(
        [
            "attention",
            model_dir,
            path,
            "--out",
            str(png),
            "--json",
            str(maps_json),
        ]
    )
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads(maps_json.read_text())["maps"]) == 2


def test_list_paths_start_from_the_current_folder(
    predictor, model_dir, tmp_path, monkeypatch, capsys
):
    """As ``ls demo_data/spk1_f/*.wav > lists/list.txt`` writes them."""
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "demo_data" / "spk1_f" / "a.wav",
        synthesize_utterance("spk1_f", "happy", 0),
        16000,
    )
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "list.txt"
    listing.write_text("demo_data/spk1_f/a.wav\ndemo_data/spk1_f/gone.wav\n")
    records, report = predictor.predict([str(listing)])
    assert [r["path"] for r in records] == [
        "demo_data/spk1_f/a.wav",
        "demo_data/spk1_f/gone.wav",
    ]
    assert records[0]["error"] == "" and records[0]["label"] in LABELS
    missing = records[1]["error"]
    assert "file not found" in missing
    assert f"looked for {tmp_path / 'demo_data/spk1_f/gone.wav'}" in missing
    assert "current folder" in missing
    assert report["failures"] == 1
    code = cli.main(
        ["predict", model_dir, "lists/list.txt", "--out", "lists/out.csv"]
    )
    assert code == 1
    rows = list(csv.DictReader((tmp_path / "lists" / "out.csv").open()))
    assert [row["error"] == "" for row in rows] == [True, False]
    assert "looked for" in capsys.readouterr().err


def test_truncated_wav_is_an_error_row_and_others_are_labelled(
    predictor, tmp_path
):
    """The reported case: a WAV cut to 3000 of its 89020 bytes."""
    samples = np.concatenate(
        [synthesize_utterance("spk2_m", "angry", i) for i in range(2)]
    )[:44488]
    full = write(tmp_path / "in" / "full.wav", samples, 16000)
    data = pathlib.Path(full).read_bytes()
    assert len(data) == 89020  # 44-byte header, 44488 16-bit frames
    (tmp_path / "in" / "cut.wav").write_bytes(data[:3000])
    assert soundfile.info(tmp_path / "in" / "cut.wav").frames == 1478
    records, report = predictor.predict([str(tmp_path / "in")])
    by_name = {pathlib.Path(r["path"]).name: r for r in records}
    cut = by_name["cut.wav"]
    assert cut["label"] == "" and cut["score"] is None
    assert cut["error"] == (
        f"{tmp_path / 'in' / 'cut.wav'}: truncated: header says 44488 "
        "frames, file holds 1478"
    )
    assert by_name["full.wav"]["error"] == ""
    assert by_name["full.wav"]["label"] in LABELS
    assert report["files"] == 2 and report["failures"] == 1


@pytest.mark.parametrize(
    "container, subtype, frames_or_bytes",
    [
        ("WAV", "PCM_16", "frames"),
        ("WAV", "FLOAT", "frames"),
        ("WAV", "IMA_ADPCM", "bytes of audio data"),
        ("RF64", "PCM_24", "frames"),
        ("AIFF", "PCM_16", "frames"),
        ("AU", "ULAW", "frames"),
    ],
)
def test_truncation_reads_the_headers(
    tmp_path, container, subtype, frames_or_bytes
):
    path = tmp_path / f"a.{container.lower()}"
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (16000, 2))
    soundfile.write(path, stereo, 16000, format=container, subtype=subtype)
    assert truncation(str(path)) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problem = truncation(str(path))
    assert problem.startswith("truncated: header says ")
    assert frames_or_bytes in problem
    if frames_or_bytes == "frames":
        assert problem.startswith("truncated: header says 16000 frames")
        held = int(problem.rsplit(" ", 1)[1])
        assert held == soundfile.info(path).frames  # what libsndfile reads


def test_plot_without_long_recordings_still_writes_and_exits_0(
    model_dir, tmp_path, capsys
):
    short = write(
        tmp_path / "short.wav",
        synthesize_utterance("spk1_f", "sad", 1),
        16000,
    )
    out_csv, plot = tmp_path / "out.csv", tmp_path / "timeline.png"
    code = cli.main(
        ["predict", model_dir, short, "--out", str(out_csv),
         "--plot", str(plot), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert [row["path"] for row in csv.DictReader(out_csv.open())] == [short]
    assert not plot.exists()
    err = capsys.readouterr().err
    duration = len(synthesize_utterance("spk1_f", "sad", 1)) / 16000
    (note,) = [line for line in err.splitlines() if "no plot" in line]
    assert "--long_threshold 30" in note
    assert f"longest: {duration:.1f} s" in note
    assert "[sercaf predict] 1 file, 0 failed" in err


EDITS = {
    "YAML syntax error": ("embedding_model:", "embedding_model: ["),
    "unknown class": (
        "sercaf_toolkit.lobes.DPCNN",
        "sercaf_toolkit.lobes.DPCNX",
    ),
    "weights that do not fit": ("num_filters: 32", "num_filters: 33"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_hyperparams_file_is_one_line_naming_it(
    edit, model_dir, tmp_path, capsys
):
    """A model folder whose hyperparams.yaml was edited (its checksums.json
    deleted, as the damage message suggests) cannot be loaded: the
    predictor, sercaf predict and sercaf evaluate say so in one line that
    names the user's file, not SpeechBrain's temporary copy."""
    import shutil

    from sercaf_toolkit.errors import UserError

    folder = tmp_path / "edited"
    shutil.copytree(model_dir, folder)
    (folder / "checksums.json").unlink()
    yaml_file = folder / "hyperparams.yaml"
    old, new = EDITS[edit]
    text = yaml_file.read_text()
    assert old in text
    yaml_file.write_text(text.replace(old, new, 1))
    with pytest.raises(UserError) as raised:
        EmotionPredictor(str(folder))
    assert str(yaml_file) in str(raised.value)
    assert "sercaf_model_" not in str(raised.value)
    audio = write(
        tmp_path / "a.wav", synthesize_utterance("spk1_f", "sad", 1), 16000
    )
    out = tmp_path / "out"
    for arguments in (
        ["predict", str(folder), audio, "--out", str(tmp_path / "p.csv")],
        ["evaluate", str(folder), "--corpus", "Demo", "--data_folder",
         str(tmp_path), "--out", str(out)],
    ):  # fmt: skip
        if arguments[0] == "evaluate":  # a tiny Demo corpus to evaluate on
            from sercaf_toolkit.corpora.demo import generate_demo_corpus

            generate_demo_corpus(str(tmp_path / "demo"), 1)
            arguments[5] = str(tmp_path / "demo")
        assert cli.main(arguments) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "Traceback" not in error
        assert str(yaml_file) in error and "sercaf_model_" not in error
    assert not (tmp_path / "p.csv").exists() and not out.exists()


def test_short_and_silent_inputs_are_flagged_and_others_labelled(
    predictor, model_dir, tmp_path, capsys
):
    """too_short and silent in the flag column, beside a label where the
    model can give one; an input shorter than the model's receptive
    field (here 399 samples) gets an error row and does not stop the
    others; an empty file says "empty"."""
    speech = synthesize_utterance("spk1_f", "happy", 0)
    folder = tmp_path / "in"
    write(folder / "a_speech.wav", speech, 16000)
    write(folder / "b_short.wav", speech[:8000], 16000)  # 0.5 s
    write(folder / "c_silent.wav", np.zeros(32000), 16000)
    write(folder / "d_quiet_short.wav", speech[:4000] * 1e-4, 16000)
    write(folder / "e_tiny.wav", speech[:399], 16000)
    write(folder / "f_empty.wav", np.zeros(0), 16000)
    records, report = predictor.predict([str(folder)])
    by_name = {pathlib.Path(r["path"]).name: r for r in records}
    flags = {name: r["flag"] for name, r in by_name.items()}
    assert flags == {
        "a_speech.wav": "",
        "b_short.wav": "too_short",
        "c_silent.wav": "silent",
        "d_quiet_short.wav": "too_short;silent",
        "e_tiny.wav": "too_short",
        "f_empty.wav": "empty",
    }
    for name in ("a_speech.wav", "b_short.wav", "c_silent.wav"):
        assert by_name[name]["error"] == "" and by_name[name]["label"] in LABELS
    tiny = by_name["e_tiny.wav"]
    assert tiny["label"] == "" and "too short for the model" in tiny["error"]
    assert "399 samples" in tiny["error"]
    assert "empty audio" in by_name["f_empty.wav"]["error"]
    assert report["failures"] == 2
    assert report["flags"] == {
        "too_short": 3, "silent": 2, "empty": 1
    }  # fmt: skip
    # A too-short file alone gives what it gives in a batch.
    alone, _ = predictor.predict([str(folder / "b_short.wav")])
    assert alone[0]["score"] == pytest.approx(by_name["b_short.wav"]["score"])
    # The command line: the flag column, and the counts in the last line.
    out_csv = tmp_path / "out.csv"
    code = cli.main(
        ["predict", model_dir, str(folder), "--out", str(out_csv),
         "--no-progress"]
    )  # fmt: skip
    assert code == 1
    rows = {
        pathlib.Path(row["path"]).name: row
        for row in csv.DictReader(out_csv.open())
    }
    assert {name: row["flag"] for name, row in rows.items()} == flags
    err = capsys.readouterr().err
    assert "6 files, 2 failed, 1 row empty, 2 rows silent, 3 rows " in err


def test_silent_stretches_of_a_long_recording_are_flagged(predictor):
    parts = [synthesize_utterance("spk2_m", "angry", i) for i in range(8)]
    speech = np.concatenate(parts)[: 12 * 16000]
    recording = np.concatenate([speech, np.zeros(20 * 16000), speech])
    segments, _ = predictor.timeline(
        torch.from_numpy(recording.astype(np.float32)), "long.wav", merge=False
    )
    flagged = [s for s in segments if s["flag"] == "silent"]
    assert flagged and all(s["label"] in LABELS for s in flagged)
    for segment in flagged:  # inside the silence
        assert segment["start"] >= 12 - 1e-6 and segment["end"] <= 32 + 1e-6
    assert segments[0]["flag"] == "" and segments[-1]["flag"] == ""


def test_threads_option_sets_torch_threads(model_dir, tmp_path):
    path = write(
        tmp_path / "a.wav", synthesize_utterance("spk1_f", "sad", 1), 16000
    )
    before = torch.get_num_threads()
    try:
        code = cli.main(
            ["predict", model_dir, path, "--threads", "1",
             "--out", str(tmp_path / "o.json")]
        )  # fmt: skip
        assert code == 0 and torch.get_num_threads() == 1
        assert json.loads((tmp_path / "o.json").read_text())[0]["flag"] == ""
    finally:
        torch.set_num_threads(before)
