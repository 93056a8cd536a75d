"""Audio reading, manifests, splits and dataset errors."""

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from sercaf_toolkit.corpora.common import write_speaker_splits
from sercaf_toolkit.data import (
    AudioError,
    audio_duration,
    build_datasets,
    read_audio,
    write_manifest,
)


def test_resamples_and_downmixes(tmp_path):
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.stack([tone, -tone * 0.5], axis=1) * 0.5, 22050)
    wav = read_audio(str(path))
    assert wav.shape == (16000,)
    expected = torch.from_numpy((0.5 * tone - 0.25 * tone) / 2).float()
    # Downmix is the channel average; resampling keeps the tone's level.
    assert float(wav.abs().max()) == pytest.approx(
        float(expected.abs().max()), rel=0.05
    )
    assert audio_duration(str(path)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot read audio"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "cannot read audio"),
        (b"this is not audio at all" * 10, "cannot read audio"),
    ],
    ids=["zero-bytes", "truncated", "text"],
)
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: {message}"):
        read_audio(str(path))
    with pytest.raises(AudioError, match="bad.wav"):
        audio_duration(str(path))


def test_empty_and_nan_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        read_audio(str(empty))
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        audio_duration(str(empty))
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.array([0.1, np.nan, 0.2]), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio holds NaN"):
        read_audio(str(nan))


def test_speaker_splits_are_disjoint_and_audited(tmp_path):
    rows = [
        {
            "ID": f"{s}{i}",
            "duration": "1",
            "wav": "x",
            "label": "a",
            "speaker": s,
        }
        for s in "abcd"
        for i in range(3)
    ]
    splits = write_speaker_splits(rows, ["a"], ["b"], str(tmp_path))
    speakers = {
        name: {r["speaker"] for r in part} for name, part in splits.items()
    }
    assert speakers == {"train": {"c", "d"}, "valid": {"b"}, "test": {"a"}}
    with pytest.raises(ValueError, match="speaker 'a' is in valid and test"):
        write_speaker_splits(rows, ["a"], ["a"], str(tmp_path))
    with pytest.raises(ValueError, match="split 'test' is empty"):
        write_speaker_splits(rows, ["zz"], ["b"], str(tmp_path))


def test_unknown_label_is_a_clear_error(tmp_path):
    wav = tmp_path / "a.wav"
    soundfile.write(wav, np.zeros(1600), 16000)
    row = {"ID": "u1", "duration": "0.1", "wav": str(wav), "speaker": "s"}
    for split, label in (
        ("train", "happy"),
        ("valid", "happy"),
        ("test", "bored"),
    ):
        write_manifest(
            [{**row, "label": label}], str(tmp_path / f"{split}.csv")
        )
    hparams = {
        f"{split}_csv": str(tmp_path / f"{split}.csv")
        for split in ("train", "valid", "test")
    }
    hparams.update(output_folder=str(tmp_path), labels=["happy", "sad"])
    with pytest.raises(
        ValueError, match="test.csv: utterance u1 has unknown label 'bored'"
    ):
        build_datasets(hparams, CategoricalEncoder())
