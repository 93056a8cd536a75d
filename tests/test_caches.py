"""Caches keyed by content: the speaker-normalised audio.

The normalised-audio folder used to be keyed by corpus name only: a second
CSV corpus with the same speaker and file names but other audio was trained
and tested on the first corpus's normalised audio, and one with other
speaker names ended in a KeyError. Each case here prepares tiny CSV corpora
(the Custom recipe's preparation) into one shared cache folder.
"""

import logging
import os

import numpy as np
import pytest
import soundfile

from sercaf_toolkit.corpora import custom
from sercaf_toolkit.data import read_manifest

RATE = 16000


def write_corpus(root, speakers, seconds, seed):
    """A CSV corpus: per speaker two files ``u1.wav``, ``u2.wav``."""
    rng = np.random.default_rng(seed)
    lines = ["path,label,speaker"]
    for index, speaker in enumerate(speakers):
        for number, label in ((1, "calm"), (2, "tense")):
            path = root / speaker / f"u{number}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            length = int((seconds + 0.1 * index) * RATE)
            soundfile.write(
                path, 0.05 * (index + 1) * rng.standard_normal(length), RATE
            )
            lines.append(f"{speaker}/u{number}.wav,{label},{speaker}")
    (root / "corpus.csv").write_text("\n".join(lines) + "\n")
    return str(root / "corpus.csv")


def prepare(csv_file, save, cache):
    custom.prepare_custom(
        csv_file,
        str(save),
        1,
        speaker_normalization=True,
        normalized_folder=str(cache),
    )
    return read_manifest(str(save / "data.csv"))


def frames(path):
    return soundfile.info(path).frames


def source_of(row, root):
    return root / row["speaker"] / (row["ID"].split("_", 1)[1] + ".wav")


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """Two corpora, same speaker and file names, other audio, one cache."""
    root = tmp_path_factory.mktemp("caches")
    speakers = ["spk1", "spk2", "spk3"]
    first = write_corpus(root / "first", speakers, 1.0, seed=1)
    second = write_corpus(root / "second", speakers, 0.4, seed=2)
    cache = root / "results" / "Custom" / "speaker_normalized"
    rows_first = prepare(first, root / "run_first", cache)
    rows_second = prepare(second, root / "run_second", cache)
    return root, cache, rows_first, rows_second


def test_same_names_other_audio_get_their_own_normalised_audio(two_corpora):
    root, _, rows_first, rows_second = two_corpora
    assert {r["ID"] for r in rows_first} == {r["ID"] for r in rows_second}
    for row in rows_second:
        source = source_of(row, root / "second")
        assert frames(row["wav"]) == frames(source), row["ID"]
        assert float(row["duration"]) == pytest.approx(
            frames(source) / RATE, abs=1e-3
        )
    # The normalised copy is a filtered version of its own source.
    row = rows_second[0]
    normalised = soundfile.read(row["wav"])[0]
    own = soundfile.read(source_of(row, root / "second"))[0]
    assert np.corrcoef(normalised, own)[0, 1] > 0.9
    # The test split of the second run reads the second corpus's audio.
    test = read_manifest(str(root / "run_second" / "test.csv"))
    for row in test:
        assert frames(row["wav"]) == frames(source_of(row, root / "second"))
    # Both corpora's entries live side by side; the first's still serve.
    assert not {r["wav"] for r in rows_first} & {r["wav"] for r in rows_second}
    again = prepare(
        str(root / "first" / "corpus.csv"), root / "run_first_again", root
        / "results" / "Custom" / "speaker_normalized",
    )  # fmt: skip
    assert [r["wav"] for r in again] == [r["wav"] for r in rows_first]


def test_other_speaker_names_are_computed_not_a_key_error(two_corpora):
    root, cache, _, _ = two_corpora
    other = write_corpus(root / "other", ["ann", "bob", "cyd"], 0.6, seed=3)
    rows = prepare(other, root / "run_other", cache)
    assert {row["speaker"] for row in rows} == {"ann", "bob", "cyd"}
    for row in rows:
        assert row["wav"].startswith(str(cache))
        assert frames(row["wav"]) == frames(source_of(row, root / "other"))


def test_a_reused_entry_is_not_written_again(two_corpora, caplog):
    root, cache, rows_first, _ = two_corpora
    times = {row["wav"]: os.stat(row["wav"]).st_mtime_ns for row in rows_first}
    with caplog.at_level(logging.INFO):
        rows = prepare(
            str(root / "first" / "corpus.csv"), root / "run_reuse", cache
        )
    assert {row["wav"]: os.stat(row["wav"]).st_mtime_ns for row in rows} == (
        times
    )
    assert "0 files written, 6 reused" in caplog.text


def test_a_modified_source_file_invalidates_its_entry(tmp_path):
    corpus = write_corpus(tmp_path / "c", ["s1", "s2", "s3"], 0.5, seed=4)
    cache = tmp_path / "cache"
    before = prepare(corpus, tmp_path / "run1", cache)
    changed = tmp_path / "c" / "s2" / "u1.wav"
    soundfile.write(changed, 0.2 * np.random.default_rng(9).random(9000), RATE)
    after = prepare(corpus, tmp_path / "run2", cache)
    row = next(r for r in after if r["ID"] == "s2_u1")
    assert frames(row["wav"]) == 9000
    old = next(r for r in before if r["ID"] == "s2_u1")
    assert old["wav"] != row["wav"]


def test_a_damaged_entry_is_rebuilt_and_named(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "c", ["s1", "s2", "s3"], 0.5, seed=5)
    cache = tmp_path / "cache"
    rows = prepare(corpus, tmp_path / "run1", cache)
    truncated = rows[0]["wav"]
    with open(truncated, "r+b") as wav:
        wav.truncate(100)
    statistics = sorted((cache / "statistics").glob("s2-*.json"))
    statistics = [p for p in statistics if not p.name.endswith(".key.json")]
    assert len(statistics) == 1
    statistics[0].write_text("{not json")
    with caplog.at_level(logging.WARNING):
        again = prepare(corpus, tmp_path / "run2", cache)
    warnings = [r.getMessage() for r in caplog.records]
    assert any(truncated in m and "writing it again" in m for m in warnings)
    assert any(
        str(statistics[0]) in m and "computing them again" in m
        for m in warnings
    ), warnings
    assert [r["wav"] for r in again] == [r["wav"] for r in rows]
    source = source_of(again[0], tmp_path / "c")
    assert frames(again[0]["wav"]) == frames(source)
