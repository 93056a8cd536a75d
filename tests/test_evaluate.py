"""sercaf evaluate: an exported model on other corpora (cross-corpus)."""

import csv
import json
import pathlib

import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
)

from sercaf_toolkit import cli
from sercaf_toolkit.corpora import CORPUS_MODULES, corpus_module
from sercaf_toolkit.corpora.common import SHARED_EMOTIONS
from tests.conftest import DEMO_LABELS
from tests.mock_corpora import make_emodb, make_ravdess

# Mock trees: EmoDB has 2 files per speaker (10) and emotion; RAVDESS one
# per actor (24) and emotion. The demo's classes are neutral, happy, angry
# and sad: EmoDB's boredom, disgust and fear, RAVDESS's calm, fearful,
# disgust and surprised have no class in the model.
EXPECTED = {
    "EmoDB": (
        {"anger", "happiness", "neutral", "sadness"},
        {"boredom": 20, "disgust": 20, "fear": 20},
    ),
    "RAVDESS": (
        {"angry", "happy", "neutral", "sad"},
        {"calm": 24, "disgust": 24, "fearful": 24, "surprised": 24},
    ),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    make_emodb(str(root / "emodb"))
    make_ravdess(str(root / "RAVDESS"))
    return {"EmoDB": root / "emodb", "RAVDESS": root / "RAVDESS"}


def read_csv(path):
    with open(path, newline="") as source:
        return list(csv.DictReader(source))


def test_every_vocabulary_maps_into_the_shared_names():
    for name in CORPUS_MODULES:
        vocabulary = corpus_module(name).VOCABULARY
        assert set(vocabulary.values()) <= set(SHARED_EMOTIONS), name
        assert {"neutral", "angry"} <= set(vocabulary.values()), name


@pytest.mark.parametrize("corpus", ["EmoDB", "RAVDESS"])
def test_evaluate_uses_the_mapped_files_and_sklearn_metrics(
    corpus, corpora, demo_model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    status = cli.main(
        [
            "evaluate",
            demo_model_dir,
            "--corpus",
            corpus.lower(),  # names are matched in any case
            "--data_folder",
            str(corpora[corpus]),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0
    kept_labels, left_out = EXPECTED[corpus]
    used = sum(
        1
        for row in corpus_module(corpus).build_manifest(str(corpora[corpus]))
        if row["label"] in kept_labels
    )
    line = capsys.readouterr().out.splitlines()[0]
    assert line == (
        f"[sercaf evaluate] {corpus}: used {used} files, left out "
        f"{sum(left_out.values())} (unmapped label: "
        + ", ".join(f"{k} {v}" for k, v in sorted(left_out.items()))
        + ")"
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["labels"] == DEMO_LABELS
    assert metrics["files_used"] == used and metrics["left_out"] == left_out
    predictions = read_csv(out / "predictions.csv")
    assert len(predictions) == used
    assert {p["true_label"] for p in predictions} == set(DEMO_LABELS)
    truth = [p["true_label"] for p in predictions]
    guess = [p["predicted_label"] for p in predictions]
    assert metrics["WA"] == pytest.approx(accuracy_score(truth, guess))
    assert metrics["UA"] == pytest.approx(balanced_accuracy_score(truth, guess))
    assert metrics["F1"] == pytest.approx(
        f1_score(truth, guess, average="macro", zero_division=0)
    )
    assert metrics["confusion_matrix"] == (
        confusion_matrix(truth, guess, labels=DEMO_LABELS).tolist()
    )
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # Calibration figures of the written probabilities, as a recipe's test.
    probabilities = [
        [float(p[f"prob_{c}"]) / sum(float(p[f"prob_{k}"]) for k in DEMO_LABELS)
         for c in DEMO_LABELS]
        for p in predictions
    ]  # fmt: skip
    targets = [DEMO_LABELS.index(label) for label in truth]
    assert metrics["NLL"] == pytest.approx(
        log_loss(targets, probabilities, labels=range(4)), abs=1e-4
    )
    assert 0 <= metrics["ECE"] <= 1
    assert (out / "reliability_diagram.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_one_fold_tests_its_speakers_only(
    corpora, demo_model_dir, tmp_path
):
    from sercaf_toolkit.evaluation.evaluate import evaluate_corpus

    result = evaluate_corpus(
        demo_model_dir,
        corpus="EmoDB",
        data_folder=str(corpora["EmoDB"]),
        fold=3,
        out=str(tmp_path / "fold3"),
    )
    assert result["message"] == (
        "EmoDB_fold3: used 8 files, left out 6 "
        "(unmapped label: boredom 2, disgust 2, fear 2)"
    )
    ids = [p["id"] for p in read_csv(tmp_path / "fold3" / "predictions.csv")]
    assert {i[:2] for i in ids} == {"09"}  # the third speaker


@pytest.fixture
def label_only_model(demo_model_dir, tmp_path):
    """Classes readable, model not loadable: proves checks come first."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text("not: [a model\n")
    label_file = "label_encoder.ckpt"
    (folder / label_file).write_text(
        (pathlib.Path(demo_model_dir) / label_file).read_text()
    )
    return folder


@pytest.mark.parametrize(
    "arguments, names",
    [
        (["--corpus", "emodbb", "--data_folder", "x"], ["did you mean EmoDB"]),
        (["--corpus", "EmoDB", "--data_folder", "nowhere"], ["nowhere"]),
        (["--corpus", "EmoDB"], ["--data_folder"]),
        (["--corpus", "EmoDB", "--data_folder", "{emodb}", "--fold", "11"],
         ["--fold 11", "1..10"]),
        (["--csv", "{calm_csv}"], ["shares none of the model's classes"]),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_before_the_model_loads(
    arguments, names, corpora, label_only_model, tmp_path, capsys
):
    calm_csv = tmp_path / "calm.csv"
    wav = next((corpora["EmoDB"] / "wav").glob("*.wav"))
    calm_csv.write_text(
        "path,label,speaker\n" + "".join(f"{wav},calm,s{i}\n" for i in range(3))
    )
    arguments = [
        a.format(emodb=corpora["EmoDB"], calm_csv=calm_csv) for a in arguments
    ]
    out = tmp_path / "out"
    status = cli.main(
        ["evaluate", str(label_only_model), *arguments, "--out", str(out)]
    )
    error = capsys.readouterr().err
    assert status == 2 and len(error.splitlines()) == 1, error
    for name in names:
        assert name in error
    assert not (out / "test_metrics.json").exists()


def test_the_vocabulary_table_in_the_docs_is_the_code():
    """docs/corpora.md's table, column by corpus, equals each VOCABULARY."""
    page = (
        pathlib.Path(__file__).resolve().parent.parent / "docs" / "corpora.md"
    ).read_text()
    table = page.split("| shared | EmoDB |", 1)[1].split("\n\n", 1)[0]
    lines = ("| shared | EmoDB |" + table).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    columns = {"demo": "Demo", "your CSV": "Custom"}
    for line in lines[2:]:
        shared, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        for title, own in zip(header[1:], cells):
            vocabulary = corpus_module(columns.get(title, title)).VOCABULARY
            mapped = sorted(k for k, v in vocabulary.items() if v == shared)
            assert mapped == ([] if own == "-" else [own]), (title, shared)


def test_a_csv_corpus_keeps_its_shared_labels(
    corpora, demo_model_dir, tmp_path
):
    from sercaf_toolkit.evaluation.evaluate import evaluate_corpus

    wavs = sorted((corpora["EmoDB"] / "wav").glob("*.wav"))[:6]
    listing = tmp_path / "mine.csv"
    listing.write_text(
        "path,label,speaker\n"
        + "".join(
            f"{wav},{'angry' if i % 2 else 'tense'},s{i % 3}\n"
            for i, wav in enumerate(wavs)
        )
    )
    result = evaluate_corpus(
        demo_model_dir, csv_file=str(listing), out=str(tmp_path / "out")
    )
    assert result["message"] == (
        "Custom: used 3 files, left out 3 (unmapped label: tense 3)"
    )
    assert result["metrics"]["support"]["angry"] == 3


def test_bad_model_output_or_corpus_folder_is_one_line(
    corpora, demo_model_dir, tmp_path, capsys
):
    """A file that is no model, an --out that cannot be a folder, and a
    corpus folder without the corpus: one line each, nothing written."""
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_text("weights?")
    empty = tmp_path / "empty_emodb"
    (empty / "wav").mkdir(parents=True)
    emodb = ["--corpus", "EmoDB", "--data_folder", str(corpora["EmoDB"])]
    out = ["--out", str(tmp_path / "out")]
    cases = [
        ([str(not_a_model), *emodb, *out], "a file, not a model folder"),
        ([str(demo_model_dir), *emodb, "--out", f"{not_a_model}/x"], "file"),
        (
            [str(demo_model_dir), "--corpus", "EmoDB", "--data_folder",
             str(empty), *out],
            "no usable utterance",
        ),
    ]  # fmt: skip
    for arguments, name in cases:
        status = cli.main(["evaluate", *arguments])
        error = capsys.readouterr().err
        assert status == 2 and len(error.splitlines()) == 1, error
        assert name in error, error
    assert not (tmp_path / "out" / "test_metrics.json").exists()


@pytest.mark.parametrize(
    "corpus, expected",
    [("EmoDB", "wav/"), ("IEMOCAP", "Session1"), ("CASIA", "<speaker>")],
)
def test_an_empty_corpus_folder_is_one_line_before_the_model_loads(
    corpus, expected, label_only_model, tmp_path, capsys
):
    """A corpus folder that exists but holds none of its files: one line
    naming the folder and what it should hold; nothing written."""
    empty = tmp_path / "empty_corpus"
    empty.mkdir()
    out = tmp_path / "out"
    status = cli.main(
        ["evaluate", str(label_only_model), "--corpus", corpus,
         "--data_folder", str(empty), "--out", str(out)]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2 and len(error.splitlines()) == 1, error
    assert str(empty) in error and expected in error, error
    assert "no usable utterance" in error
    assert not out.exists()
