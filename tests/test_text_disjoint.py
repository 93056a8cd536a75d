"""Text-disjoint folds: each corpus's text key, the guard, its audit, the
one-line failure when nothing is left, and the key in a run's identity.

Preparation only (no training): mock trees with the real naming.
"""

import json
import os
import pathlib

import pytest

from sercaf_toolkit.corpora import (
    casia,
    common,
    custom,
    emodb,
    expressive,
    iemocap,
    prepare_function,
    ravdess,
)
from sercaf_toolkit.corpora.common import audit_text_splits, text_of
from sercaf_toolkit.corpora.multi import prepare_multi
from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.errors import UserError
from tests.mock_corpora import (
    EMODB_SPEAKERS,
    EMODB_TEXTS,
    make_casia,
    make_emodb,
    make_iemocap,
    make_ravdess,
    tiny_wav,
)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Mock EmoDB, RAVDESS, CASIA and IEMOCAP trees (built once)."""
    root = tmp_path_factory.mktemp("corpora")
    make_emodb(str(root / "emodb"))
    make_ravdess(str(root / "RAVDESS"))
    make_casia(str(root / "CASIA"))
    make_iemocap(str(root / "IEMOCAP_full_release"))
    return root


def texts(rows):
    return {text_of(row) for row in rows} - {""}


def check_guarded_fold(prepare, data_folder, folder, fold, **kw):
    """Prepares ``fold`` with and without the guard and checks the guard
    took out of train and valid exactly the utterances whose text the test
    holds, and that ``split_info.json`` says so. Returns the splits."""
    plain = prepare(data_folder, str(folder / "plain"), fold, **kw)
    guarded = prepare(
        data_folder, str(folder / "guarded"), fold, text_disjoint=True, **kw
    )
    test_texts = texts(plain["test"])
    assert [r["ID"] for r in guarded["test"]] == [
        r["ID"] for r in plain["test"]
    ]
    for split in ("train", "valid"):
        assert not texts(guarded[split]) & test_texts, (fold, split)
        kept = [r["ID"] for r in plain[split] if text_of(r) not in test_texts]
        assert [r["ID"] for r in guarded[split]] == kept, (fold, split)
        written = read_manifest(folder / "guarded" / f"{split}.csv")
        assert [r["ID"] for r in written] == kept
    info = json.loads((folder / "guarded" / "split_info.json").read_text())
    assert info["text_disjoint"] is True
    assert info["text_disjoint_removed"] == {
        split: len(plain[split]) - len(guarded[split])
        for split in ("train", "valid")
    }
    assert info["texts"] == {
        split: sorted(texts(rows)) for split, rows in guarded.items()
    }
    assert info["test_texts_in_training"] == []
    plain_info = json.loads((folder / "plain" / "split_info.json").read_text())
    assert plain_info["text_disjoint"] is False
    assert plain_info["text_disjoint_removed"] == {"train": 0, "valid": 0}
    return plain, guarded


# The text key of each corpus ----------------------------------------------


def test_text_follows_each_corpus_naming(trees):
    rows = {r["ID"]: r for r in emodb.build_manifest(str(trees / "emodb"))}
    assert rows["03a01Fb"]["text"] == "a01"
    assert rows["08b01Ea"]["text"] == "b01"
    assert all(row["text"] == name[2:5] for name, row in rows.items())
    assert {row["text"] for row in rows.values()} == set(EMODB_TEXTS)

    rows = {r["ID"]: r for r in ravdess.build_manifest(str(trees / "RAVDESS"))}
    assert rows["03-01-05-01-01-01-12"]["text"] == "01"
    assert rows["03-01-06-01-02-01-12"]["text"] == "02"
    assert all(row["text"] == name.split("-")[4] for name, row in rows.items())

    rows = {r["ID"]: r for r in casia.build_manifest(str(trees / "CASIA"))}
    assert rows["wangzhe_angry_201"]["text"] == "201"
    assert rows["zhaozuoxiang_surprise_202"]["text"] == "202"  # ZhaoZuoxiang
    assert rows["zhaoquanyin_neutral_201"]["text"] == "201"  # from "normal"

    rows = iemocap.build_manifest(str(trees / "IEMOCAP_full_release"))
    by_dialog = {}
    for row in rows:
        by_dialog.setdefault(row["ID"].rsplit("_", 1)[0], set()).add(
            (row["text"], row["elicitation"])
        )
    assert by_dialog["Ses01F_impro01"] == {("", "improvised")}
    assert by_dialog["Ses03M_impro08a"] == {("", "improvised")}
    assert by_dialog["Ses02M_script02_1"] == {("script02_1", "scripted")}
    assert by_dialog["Ses01F_script01_1"] == {("script01_1", "scripted")}
    # A second take of a script part says the same script.
    assert by_dialog["Ses05M_script01_1b"] == {("script01_1", "scripted")}


def test_synthetic_corpora_texts(tmp_path, monkeypatch):
    # The demo draws every utterance's syllables from its own seed.
    from sercaf_toolkit.corpora import demo

    rows = demo.build_manifest(str(tmp_path / "demo"), 1)
    assert rows and all(row["text"] == "" for row in rows)
    # Expressive: the sentence in the name (s0..s5), said by every speaker.
    paths = [
        str(tmp_path / "expressive" / speaker / f"{speaker}_{name}.wav")
        for speaker in ("f01", "m01")
        for name in ("angry_s3_00", "sad_s0_02")
    ]
    for path in paths:
        tiny_wav(path)
    monkeypatch.setattr(
        expressive, "generate_expressive_corpus", lambda *_, **__: paths
    )
    rows = expressive.build_manifest(str(tmp_path / "expressive"))
    assert [row["text"] for row in rows] == ["s3", "s0", "s3", "s0"]


def custom_csv(tmp_path, text_column=True):
    """Six speakers; "hello" said by everyone, "bye" by c and d only,
    and one file per speaker with an empty text cell (a text of its own)."""
    lines = ["path,label,speaker" + (",text" if text_column else "")]
    for speaker in "abcdef":
        for label, text in (("calm", "hello"), ("tense", "bye"), ("calm", "")):
            if text == "bye" and speaker not in "cd":
                text = f"only {speaker}"
            name = f"audio/{speaker}_{label}_{len(lines)}.wav"
            tiny_wav(str(tmp_path / name))
            cells = [name, label, speaker] + ([text] if text_column else [])
            lines.append(",".join(cells))
    path = tmp_path / ("texts.csv" if text_column else "plain.csv")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_custom_csv_text_column(tmp_path):
    csv_file = custom_csv(tmp_path)
    rows = custom.build_manifest(csv_file)
    assert sorted({row["text"] for row in rows}) == [
        "", "bye", "hello", "only a", "only b", "only e", "only f",
    ]  # fmt: skip
    # 3 folds: a+d test, b validates (one speaker of b+e), c, e, f train.
    plain, guarded = check_guarded_fold(
        custom.prepare_custom, csv_file, tmp_path / "fold1", 1, n_folds=3
    )
    assert texts(plain["test"]) == {"hello", "bye", "only a"}
    # c's "bye" leaves with "hello" (d, a test speaker, says it too); texts
    # of one speaker and empty cells stay.
    assert sorted(r["text"] for r in guarded["train"]) == [
        "", "", "", "only e", "only f",
    ]  # fmt: skip
    assert sorted(r["text"] for r in guarded["valid"]) == ["", "only b"]
    # A CSV without a text column has no texts to keep apart: one line.
    plain_csv = custom_csv(tmp_path, text_column=False)
    assert all("text" not in row for row in custom.build_manifest(plain_csv))
    with pytest.raises(UserError, match="needs a text column") as raised:
        custom.prepare_custom(
            plain_csv, str(tmp_path / "x"), 1, n_folds=3, text_disjoint=True
        )
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "x").exists()


# Every fold of every corpus -------------------------------------------------

# Corpus, its folder in the trees, protocol options, folds.
CORPORA = {
    "EmoDB": (emodb, "emodb", {}, 10),
    "RAVDESS": (ravdess, "RAVDESS", {}, 6),
    "CASIA": (casia, "CASIA", {}, 4),
    "IEMOCAP-sessions": (
        iemocap,
        "IEMOCAP_full_release",
        {"protocol": "leave_one_session_out"},
        5,
    ),
    "IEMOCAP-speakers": (
        iemocap,
        "IEMOCAP_full_release",
        {"protocol": "leave_one_speaker_out"},
        10,
    ),
}


@pytest.mark.parametrize("corpus", ["EmoDB", "RAVDESS", "CASIA"])
def test_every_test_text_is_said_in_training_nothing_is_left(
    corpus, trees, tmp_path
):
    """Every speaker of these corpora says every text: under the guard no
    fold keeps training data, and each says so in one line naming the
    corpus, the fold and the way out, before writing anything."""
    module, folder, kw, n_folds = CORPORA[corpus]
    prepare = prepare_function(module)
    for fold in range(1, n_folds + 1):
        for validation in ("speaker", "none"):
            save = tmp_path / f"fold{fold}-{validation}"
            with pytest.raises(UserError) as raised:
                prepare(
                    str(trees / folder),
                    str(save),
                    fold,
                    validation=validation,
                    text_disjoint=True,
                    **kw,
                )
            message = str(raised.value)
            assert "\n" not in message
            assert message.startswith(f"{module.NAME} fold {fold}: ")
            assert "leaves no training data" in message
            assert "--text_disjoint=False" in message
            assert not save.exists()  # nothing written


@pytest.mark.parametrize("corpus", ["IEMOCAP-sessions", "IEMOCAP-speakers"])
def test_iemocap_scripts_of_the_test_leave_training(corpus, trees, tmp_path):
    """Scripted utterances whose script the test sessions perform leave
    train and valid; improvised ones, and other scripts, stay."""
    module, folder, kw, n_folds = CORPORA[corpus]
    for fold in range(1, n_folds + 1):
        plain, guarded = check_guarded_fold(
            module.prepare_iemocap,
            str(trees / folder),
            tmp_path / f"fold{fold}",
            fold,
            **kw,
        )
        assert texts(plain["test"]) >= {"script02_1"}  # in every session
        for split in ("train", "valid"):
            improvised = [
                r["ID"]
                for r in plain[split]
                if r["elicitation"] == "improvised"
            ]
            assert improvised
            assert improvised == [
                r["ID"]
                for r in guarded[split]
                if r["elicitation"] == "improvised"
            ]
        # script01_1 is in sessions 1 and 5 only: other folds keep it.
        tested = {r["session"] for r in plain["test"]}
        kept = texts(guarded["train"]) | texts(guarded["valid"])
        assert ("script01_1" in kept) == (not tested & {1, 5}), fold


def emodb_pairs(speaker):
    """Speakers 03/12, 08/13, 09/14, 10/15, 11/16 share two texts a pair."""
    pair = EMODB_SPEAKERS.index(speaker) % 5
    return EMODB_TEXTS[2 * pair : 2 * pair + 2]


def test_guard_removes_exactly_the_test_texts_on_emodb_naming(tmp_path):
    """A tree where speakers share texts in pairs: each fold loses the test
    speaker's partner from training, and nothing else."""
    root = tmp_path / "emodb"
    make_emodb(str(root), texts_of=emodb_pairs)
    for fold in range(1, 11):
        plain, guarded = check_guarded_fold(
            emodb.prepare_emodb, str(root), tmp_path / f"fold{fold}", fold
        )
        test_speaker = EMODB_SPEAKERS[fold - 1]
        partner = EMODB_SPEAKERS[(fold - 1 + 5) % 10]
        everyone = {r["speaker"] for split in guarded.values() for r in split}
        assert partner not in everyone
        assert everyone | {partner} == set(EMODB_SPEAKERS)
        assert {r["speaker"] for r in guarded["test"]} == {test_speaker}


def test_guard_leaving_no_validation_data_is_one_line(tmp_path):
    """Fold 1 tests speaker 03 and validates on 08: when they say the same
    texts and nobody else does, training keeps data, validation none."""
    root = tmp_path / "emodb"

    def texts_of(speaker):
        return EMODB_TEXTS[:2] if speaker in ("03", "08") else EMODB_TEXTS[2:]

    make_emodb(str(root), texts_of=texts_of)
    with pytest.raises(UserError) as raised:
        emodb.prepare_emodb(
            str(root), str(tmp_path / "a"), 1, text_disjoint=True
        )
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("EmoDB fold 1: text_disjoint leaves no valid")
    assert "--validation=none" in message
    assert not (tmp_path / "a").exists()
    # Without validation the fold trains on the 8 other speakers.
    splits = emodb.prepare_emodb(
        str(root), str(tmp_path / "b"), 1, validation="none", text_disjoint=True
    )
    assert len({r["speaker"] for r in splits["train"]}) == 8


# The audit --------------------------------------------------------------


def test_audit_fails_on_a_leaking_split(monkeypatch, tmp_path):
    clean = {
        "train": [{"ID": "03a02Wa", "text": "a02"}, {"ID": "u", "text": ""}],
        "valid": [{"ID": "08a04Wa", "text": "a04"}],
        "test": [{"ID": "09a01Wa", "text": "a01"}, {"ID": "v", "text": ""}],
    }
    audit_text_splits(clean)  # texts of their own ("") never leak
    for split in ("train", "valid"):
        leaking = {**clean, split: [*clean[split], {"ID": "x", "text": "a01"}]}
        with pytest.raises(ValueError, match=f"'a01' is in test and {split}"):
            audit_text_splits(leaking)
    # The audit is what stands behind the guard: a guard that removed
    # nothing would be caught before a manifest is written.
    rows = [
        {
            "ID": f"{s}{t}",
            "duration": "1",
            "wav": "x.wav",
            "label": "a",
            "speaker": s,
            "text": t,
        }
        for s in "abcd"
        for t in ("t1", "t2")
    ]
    monkeypatch.setattr(
        common,
        "remove_test_texts",
        lambda splits: (splits, {"train": 0, "valid": 0}),
    )
    with pytest.raises(ValueError, match="text-disjointness broken"):
        common.prepare_fold(
            rows,
            str(tmp_path),
            1,
            "test",
            [["a"], ["b"], ["c"], ["d"]],
            text_disjoint=True,
        )
    assert os.listdir(tmp_path) == []


# Several corpora ----------------------------------------------------------


def test_multicorpus_texts_never_match_across_corpora(trees, tmp_path):
    corpora = {"EmoDB": "emodb", "RAVDESS": "RAVDESS"}
    labels = ["neutral", "happy", "angry", "sad"]
    # Leave-one-corpus-out: RAVDESS's texts are in no EmoDB utterance, so
    # nothing leaves EmoDB's training.
    plain = prepare_multi(
        corpora,
        str(tmp_path / "plain"),
        data_folder=str(trees),
        test_corpus="RAVDESS",
        labels=labels,
    )
    guarded = prepare_multi(
        corpora,
        str(tmp_path / "guarded"),
        data_folder=str(trees),
        test_corpus="RAVDESS",
        labels=labels,
        text_disjoint=True,
    )
    assert len(guarded["train"]) == len(plain["train"])
    assert texts(guarded["test"]) == {"RAVDESS_01", "RAVDESS_02"}
    emodb_texts = {f"EmoDB_{t}" for t in EMODB_TEXTS}
    assert texts(guarded["train"]) and texts(guarded["train"]) <= emodb_texts
    info = json.loads((tmp_path / "guarded" / "split_info.json").read_text())
    assert info["text_disjoint"] is True
    assert info["text_disjoint_removed"] == {"train": 0, "valid": 0}
    # Own folds: both corpora's test texts are said by all their training
    # speakers; the merged training split is empty: one line.
    with pytest.raises(UserError, match="EmoDB, RAVDESS fold 1: text_disj"):
        prepare_multi(
            corpora,
            str(tmp_path / "own"),
            data_folder=str(trees),
            labels=labels,
            text_disjoint=True,
        )


# The recipe key ---------------------------------------------------------


def test_text_disjoint_is_part_of_a_run_identity(tmp_path):
    """Asked again with text_disjoint changed, a run is refused like any
    other changed setting."""
    from sercaf_toolkit.training.recipe import load_recipe, run_identity
    from sercaf_toolkit.training.runs import (
        IDENTITY_VERSION,
        check_run_folder,
        first_difference,
    )
    from tests.demo_runs import demo_args

    def identity(*extra):
        argv = demo_args(tmp_path / "data", tmp_path / "run", *extra)
        _, run_opts, _, composed, tree = load_recipe(argv)
        assert tree["prepare"]["text_disjoint"] == tree["text_disjoint"]
        return run_identity(tree, composed, run_opts)

    base = identity()
    assert base["text_disjoint"] == "False"
    guarded = identity("--text_disjoint=True")
    assert first_difference(base, guarded) == ("text_disjoint", "False", "True")
    folder = tmp_path / "finished"
    folder.mkdir()
    (folder / "run_info.json").write_text(
        json.dumps({"identity_version": IDENTITY_VERSION, "identity": base})
    )
    with pytest.raises(UserError, match=r"\(text_disjoint: False there, True"):
        check_run_folder(str(folder), guarded)
    check_run_folder(str(folder), base)  # the same run: not refused


def test_every_corpus_recipe_passes_the_key(tmp_path):
    """Each corpus file hands text_disjoint to its preparation (a corpus
    that did not would silently ignore it)."""
    from sercaf_toolkit.hparams import resolve_hparams

    recipes = pathlib.Path(__file__).resolve().parent.parent / "recipes"
    for corpus in sorted(p.parent.name for p in recipes.glob("*/corpus.yaml")):
        hparams = next((recipes / corpus / "hparams").glob("*.yaml"))
        overrides = {"data_folder": str(tmp_path), "text_disjoint": True}
        if corpus == "Custom":  # its labels come with the data
            overrides["labels"] = ["calm", "tense"]
        tree = resolve_hparams(str(hparams), overrides)
        assert tree["prepare"]["text_disjoint"] is True, corpus
