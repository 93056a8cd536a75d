"""Corpus preparation on mock trees with the real naming and pitfalls."""

import collections
import itertools
import json
import os
import sys

import pytest

from sercaf_toolkit.corpora import casia, custom, emodb, iemocap, ravdess
from sercaf_toolkit.corpora.common import CorpusError
from sercaf_toolkit.data import read_audio, read_manifest
from sercaf_toolkit.errors import UserError
from tests.mock_corpora import (
    make_casia,
    make_emodb,
    make_iemocap,
    make_ravdess,
    tiny_wav,
)


def counts(rows, field):
    return collections.Counter(str(row[field]) for row in rows)


def assert_same_utterances(rows, expected):
    for field in ("label", "speaker"):
        assert counts(rows, field) == counts(expected, field), field
    if "ID" in expected[0]:
        assert sorted(r["ID"] for r in rows) == sorted(
            e["ID"] for e in expected
        )


def assert_folds_speaker_disjoint(
    prepare, data_folder, tmp_path, fold_count, **kw
):
    """Every fold under every validation policy: disjoint speakers, each
    speaker tested once, and the training share the policy promises."""
    module = sys.modules[prepare.__module__]
    assert module.fold_count(data_folder=data_folder, **kw) == fold_count
    tested = []
    for fold in range(1, fold_count + 1):
        by_policy = {}
        for policy in ("speaker", "group", "none"):
            folder = tmp_path / f"fold{fold}-{policy}"
            splits = prepare(
                data_folder, str(folder), fold, validation=policy, **kw
            )
            speakers = {
                name: {r["speaker"] for r in rows}
                for name, rows in splits.items()
            }
            for a, b in itertools.combinations(speakers, 2):
                assert not speakers[a] & speakers[b], (fold, policy, a, b)
            written = read_manifest(folder / "test.csv")
            assert {r["speaker"] for r in written} == speakers["test"]
            info = json.loads((folder / "split_info.json").read_text())
            assert info["validation"] == policy
            by_policy[policy] = speakers
        everyone = set().union(*by_policy["none"].values())
        non_test = everyone - by_policy["none"]["test"]
        assert by_policy["none"]["train"] == non_test
        assert not by_policy["none"]["valid"]
        assert not read_manifest(tmp_path / f"fold{fold}-none" / "valid.csv")
        assert len(by_policy["speaker"]["valid"]) == 1
        assert (
            by_policy["speaker"]["train"]
            == non_test - (by_policy["speaker"]["valid"])
        )
        assert by_policy["speaker"]["valid"] <= by_policy["group"]["valid"]
        tested.append(by_policy["group"]["test"])
    everyone = set().union(*tested)
    assert sum(len(t) for t in tested) == len(everyone)  # each tested once
    with pytest.raises(UserError, match="out of range"):
        prepare(data_folder, str(tmp_path / "bad"), fold_count + 1, **kw)
    return tested


@pytest.fixture(scope="module")
def iemocap_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    return str(root), make_iemocap(str(root))


def test_iemocap_rows_speakers_and_merges(iemocap_tree, caplog):
    root, expected = iemocap_tree
    rows = iemocap.build_manifest(root)
    assert_same_utterances(rows, expected)
    assert set(counts(rows, "label")) == {"neu", "hap", "ang", "sad"}
    by_id = {row["ID"]: row for row in rows}
    female = [r for r in rows if r["ID"].startswith("Ses03M_impro08a_F")]
    assert female and all(r["speaker"] == "Ses03F" for r in female)
    assert all(
        r["speaker"] == "Ses05M" for r in rows if r["ID"].endswith("_1b_M001")
    )
    assert len({r["speaker"] for r in rows}) == 10
    assert all(row["session"] == int(row["ID"][3:5]) for row in by_id.values())
    assert "5531" in caplog.text  # the count difference is reported


def test_iemocap_strict_mode_fails_on_count_difference(iemocap_tree):
    with pytest.raises(CorpusError, match=r"expected 5531 \(-\d+\)"):
        iemocap.build_manifest(iemocap_tree[0], strict=True)


@pytest.mark.parametrize(
    "protocol, n_folds",
    [("leave_one_session_out", 5), ("leave_one_speaker_out", 10)],
)
def test_iemocap_folds(iemocap_tree, tmp_path, protocol, n_folds):
    tested = assert_folds_speaker_disjoint(
        iemocap.prepare_iemocap,
        iemocap_tree[0],
        tmp_path,
        n_folds,
        protocol=protocol,
    )
    assert tested[0] == ({"Ses01F", "Ses01M"} if n_folds == 5 else {"Ses01F"})
    if protocol == "leave_one_speaker_out":
        splits = read_manifest(tmp_path / "fold3-speaker" / "valid.csv")
        assert {r["speaker"] for r in splits} == {"Ses02M"}  # same session
    else:  # one speaker of the next session validates; its partner trains
        valid = read_manifest(tmp_path / "fold1-speaker" / "valid.csv")
        train = read_manifest(tmp_path / "fold1-speaker" / "train.csv")
        assert {r["speaker"] for r in valid} == {"Ses02F"}
        assert "Ses02M" in {r["speaker"] for r in train}


def test_iemocap_bad_label_lines_and_missing_audio(tmp_path, caplog):
    root = tmp_path / "IEMOCAP_full_release"
    make_iemocap(str(root))
    label_file = (
        root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt"
    )
    text = label_file.read_text()
    label_file.write_text(
        text + "[3.0 - oops]\tSes02F_impro01_F999\tneu\t[1]\n"
    )
    wav = (
        root
        / "Session1"
        / "sentences"
        / "wav"
        / "Ses01F_impro01"
        / "Ses01F_impro01_F000.wav"
    )
    wav.unlink()
    rows = iemocap.build_manifest(str(root))
    assert "Ses01F_impro01_F000" not in {r["ID"] for r in rows}
    assert (
        "Ses02F_impro01.txt:" in caplog.text
        and "malformed label line" in caplog.text
    )
    assert "Ses01F_impro01_F000.wav: labelled but missing" in caplog.text


def test_missing_corpus_folders_are_clear_errors(tmp_path):
    for module in (iemocap, emodb, casia, ravdess):
        with pytest.raises(
            FileNotFoundError, match="folder not found: .*nowhere"
        ):
            module.build_manifest(str(tmp_path / "nowhere"))
    (tmp_path / "IEMOCAP").mkdir()
    with pytest.raises(FileNotFoundError, match="Session1"):
        iemocap.build_manifest(str(tmp_path / "IEMOCAP"))


@pytest.mark.parametrize("folder", ["wav", "wav_corpus"])
def test_emodb(tmp_path, folder, caplog):
    root = tmp_path / "emodb"
    expected = make_emodb(str(root), folder)
    (root / folder / "03a01Fb.wav").write_bytes(b"RIFF broken")  # corrupt
    expected = [e for e in expected if e["ID"] != "03a01Fb"]
    tiny_wav(str(root / folder / "03a01Xa.wav"))  # unknown emotion letter
    rows = emodb.build_manifest(str(root))
    assert_same_utterances(rows, expected)
    assert "03a01Fb.wav" in caplog.text and "cannot read audio" in caplog.text
    assert "unknown emotion letter 'X'" in caplog.text
    genders = {r["speaker"]: r["gender"] for r in rows}
    assert genders["03"] == "M" and genders["08"] == "F"
    assert_folds_speaker_disjoint(emodb.prepare_emodb, str(root), tmp_path, 10)
    with pytest.raises(CorpusError, match="03a01Fb.wav"):
        emodb.build_manifest(str(root), strict=True)


def test_casia_speaker_variants_normal_and_rates(tmp_path):
    root = tmp_path / "CASIA"
    expected = make_casia(str(root))
    rows = casia.build_manifest(str(root))
    assert_same_utterances(rows, expected)
    assert {r["speaker"] for r in rows} == set(casia.SPEAKERS)
    assert counts(rows, "label")["neutral"] == 8  # "normal" included
    wangzhe = next(r for r in rows if r["speaker"] == "wangzhe")
    assert read_audio(wangzhe["wav"]).shape[0] == pytest.approx(
        0.3 * 16000, abs=2
    )
    tested = assert_folds_speaker_disjoint(
        casia.prepare_casia, str(root), tmp_path, 4
    )
    assert tested == [{s} for s in casia.SPEAKERS]


def test_ravdess_keeps_only_audio_speech(tmp_path):
    root = tmp_path / "RAVDESS"
    expected = make_ravdess(str(root))
    rows = ravdess.build_manifest(str(root))
    assert_same_utterances(rows, expected)
    assert all(r["ID"].startswith("03-01-") for r in rows)
    assert {r["gender"] for r in rows if r["speaker"] == "Actor_07"} == {"M"}
    tested = assert_folds_speaker_disjoint(
        ravdess.prepare_ravdess, str(root), tmp_path, 6
    )
    assert tested[0] == {"Actor_01", "Actor_11", "Actor_20", "Actor_21"}


def test_custom_csv_with_and_without_folds(tmp_path, caplog):
    lines = ["path,label,speaker"]
    for speaker in "abcdef":
        for label in ("calm", "tense"):
            tiny_wav(str(tmp_path / "audio" / f"{speaker}_{label}.wav"))
            lines.append(f"audio/{speaker}_{label}.wav,{label},{speaker}")
    lines.append("audio/missing.wav,calm,a")
    lines.append(",calm,b")
    (tmp_path / "corpus.csv").write_text("\n".join(lines) + "\n")
    rows = custom.build_manifest(str(tmp_path / "corpus.csv"))
    assert len(rows) == 12
    assert "missing.wav" in caplog.text and "corpus.csv:15" in caplog.text
    tested = assert_folds_speaker_disjoint(
        custom.prepare_custom,
        str(tmp_path / "corpus.csv"),
        tmp_path,
        3,
        n_folds=3,
    )
    assert tested == [{"a", "d"}, {"b", "e"}, {"c", "f"}]
    with_folds = ["path,label,speaker,fold"] + [
        f"audio/{s}_{lab}.wav,{lab},{s},{1 + 'abcdef'.index(s) // 2}"
        for s in "abcdef"
        for lab in ("calm", "tense")
    ]
    (tmp_path / "folds.csv").write_text("\n".join(with_folds) + "\n")
    tested = assert_folds_speaker_disjoint(
        custom.prepare_custom, str(tmp_path / "folds.csv"), tmp_path, 3
    )
    assert tested == [{"a", "b"}, {"c", "d"}, {"e", "f"}]
    (tmp_path / "bad.csv").write_text("file,label\nx.wav,calm\n")
    with pytest.raises(CorpusError, match="missing column"):
        custom.build_manifest(str(tmp_path / "bad.csv"))


def test_random_split_is_only_an_explicit_speaker_dependent_option(
    tmp_path, caplog
):
    root = tmp_path / "CASIA"
    make_casia(str(root))
    splits = casia.prepare_casia(
        str(root), str(tmp_path / "out"), 1, protocol="random_speaker_dependent"
    )
    assert sum(len(part) for part in splits.values()) == 48
    info = (tmp_path / "out" / "split_info.json").read_text()
    assert '"speaker_independent": false' in info
    assert "speaker-DEPENDENT" in caplog.text
    speakers = [
        {r["speaker"] for r in splits[name]} for name in ("train", "test")
    ]
    assert speakers[0] & speakers[1]  # what the default protocols forbid


def test_speaker_normalization_is_an_option_of_every_corpus(tmp_path):
    """Any corpus can train on speaker-normalised audio, said in split_info;
    the copies are written once and shared by every fold."""
    root = tmp_path / "CASIA"
    make_casia(str(root))
    normalized = tmp_path / "normalized"
    for fold in (1, 2):
        splits = casia.prepare_casia(
            str(root),
            str(tmp_path / f"fold{fold}"),
            fold,
            speaker_normalization=True,
            normalized_folder=str(normalized),
        )
        for rows in splits.values():
            assert all(row["wav"].startswith(str(normalized)) for row in rows)
            assert all(read_audio(row["wav"]).numel() for row in rows[:3])
        info = json.loads(
            (tmp_path / f"fold{fold}" / "split_info.json").read_text()
        )
        assert info["speaker_normalization"].startswith("transductive")
    plain = casia.prepare_casia(str(root), str(tmp_path / "plain"), 1)
    assert not any(
        row["wav"].startswith(str(normalized)) for row in plain["train"]
    )
    with pytest.raises(UserError, match="normalized_folder"):
        casia.prepare_casia(
            str(root), str(tmp_path / "x"), 1, speaker_normalization=True
        )


def test_demo_files_written_twice_at_once_keep_the_first_copy(
    tmp_path, monkeypatch
):
    """Two runs generating the demo corpus at once (sercaf cv's parallel
    folds on fresh data): the second finds no file when it looks, writes
    its own, and must leave the first one in place, since a run that
    already recorded the file's size and time would otherwise see changed
    data."""
    from sercaf_toolkit.corpora import demo

    paths = demo.generate_demo_corpus(str(tmp_path), 1)
    before = {path: os.stat(path) for path in paths}
    real_exists = os.path.exists
    monkeypatch.setattr(
        demo.os.path,
        "exists",
        lambda path: False if path.endswith(".wav") else real_exists(path),
    )
    demo.generate_demo_corpus(str(tmp_path), 1)
    for path, stat in before.items():
        assert os.stat(path).st_ino == stat.st_ino
        assert os.stat(path).st_mtime_ns == stat.st_mtime_ns
    leftovers = [p for p in os.listdir(tmp_path / "spk1_f") if ".part" in p]
    assert leftovers == []
