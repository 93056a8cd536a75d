"""Training on several corpora: mock EmoDB + mock RAVDESS, tiny models."""

import json
import pathlib

import pytest
from sklearn.metrics import balanced_accuracy_score

from sercaf_toolkit import cli
from sercaf_toolkit.corpora import check_recipe_corpus, recipe_fold_count
from sercaf_toolkit.corpora.multi import prepare_multi
from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import resolve_hparams
from sercaf_toolkit.training.recipe import run_recipe
from tests.mock_corpora import make_emodb, make_ravdess
from tests.test_corpus_recipes import tiny_overrides

RECIPE = (
    pathlib.Path(__file__).resolve().parent.parent / "recipes" / "MultiCorpus"
)
CAF = RECIPE / "hparams" / "caf.yaml"
CORPORA = {"EmoDB": "emodb", "RAVDESS": "RAVDESS"}
LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    make_emodb(str(root / "emodb"))
    make_ravdess(str(root / "RAVDESS"))
    return root


def speakers(rows):
    return {row["speaker"] for row in rows}


def test_own_folds_merge_the_corpora_with_disjoint_speakers(data, tmp_path):
    splits = prepare_multi(
        CORPORA, str(tmp_path), fold=2, data_folder=str(data), labels=LABELS
    )
    assert speakers(splits["test"]) == {
        "EmoDB_08",  # EmoDB's fold 2: its second speaker
        *(f"RAVDESS_Actor_{a:02d}" for a in (4, 10, 12, 14)),
    }
    for split in ("train", "valid", "test"):
        rows = splits[split]
        assert {row["corpus"] for row in rows} == {"EmoDB", "RAVDESS"}
        assert {row["label"] for row in rows} <= set(LABELS)
    assert speakers(splits["valid"]) == {"EmoDB_09", "RAVDESS_Actor_09"}
    # 4 kept classes: EmoDB 2 files per speaker and class, RAVDESS 1.
    assert len(splits["train"]) == 8 * 4 * 2 + 19 * 4
    info = json.loads((tmp_path / "split_info.json").read_text())
    assert info["corpora"]["EmoDB"]["left_out"] == {
        "boredom": 20,
        "disgust": 20,
        "fear": 20,
    }
    written = read_manifest(tmp_path / "test.csv")
    assert {row["ID"] for row in written} == {r["ID"] for r in splits["test"]}


def test_fold_counts_and_mistakes(data):
    def tree(**overrides):
        return resolve_hparams(CAF, {"data_folder": str(data), **overrides})

    assert recipe_fold_count(tree()) == 6  # RAVDESS has the fewest
    assert recipe_fold_count(tree(test_corpus="each")) == 2
    assert recipe_fold_count(tree(test_corpus="RAVDESS")) == 1
    with pytest.raises(UserError, match="did you mean EmoDB"):
        prepare_multi({"EmoDBB": "x"}, str(data / "out"))
    with pytest.raises(UserError, match="not one of the corpora"):
        prepare_multi(CORPORA, str(data / "o"), test_corpus="CASIA")
    # A class must be a shared name: EmoDB's own "sadness" is not.
    with pytest.raises(UserError, match="sadness not in the shared vocab"):
        check_recipe_corpus(tree(labels=["neutral", "sadness"]))
    check_recipe_corpus(tree(labels=["neutral", "sad"]))


def run(data, output, *extra, epochs=1):
    return run_recipe(
        [
            str(CAF),
            f"--data_folder={data}",
            f"--output_folder={output}",
            f"--number_of_epochs={epochs}",
            *tiny_overrides(str(data / "tiny_ssl")),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def tiny_ssl(data, tiny_ssl_source):
    """The tiny SSL model where :func:`run` looks for it."""
    (data / "tiny_ssl").symlink_to(tiny_ssl_source(), target_is_directory=True)


def test_two_corpora_train_together_and_test_per_corpus(
    data, tiny_ssl, tmp_path
):
    output = tmp_path / "own"
    metrics = run(data, output, epochs=2).metrics
    train = read_manifest(output / "train.csv")
    test = read_manifest(output / "test.csv")
    assert {row["corpus"] for row in train} == {"EmoDB", "RAVDESS"}
    assert not speakers(train) & speakers(test)
    assert metrics["labels"] == LABELS
    predictions = read_manifest(output / "predictions.csv")
    assert set(metrics["per_corpus"]) == {"EmoDB", "RAVDESS"}
    for corpus, figures in metrics["per_corpus"].items():
        mine = [p for p in predictions if p["corpus"] == corpus]
        assert len(mine) == sum(row["corpus"] == corpus for row in test)
        assert figures["UA"] == pytest.approx(
            balanced_accuracy_score(
                [p["true_label"] for p in mine],
                [p["predicted_label"] for p in mine],
            )
        )


def test_leave_one_corpus_out_tests_the_held_out_corpus_only(
    data, tiny_ssl, tmp_path
):
    output = tmp_path / "loco"
    metrics = run(data, output, "--test_corpus=RAVDESS").metrics
    test = read_manifest(output / "test.csv")
    assert {row["corpus"] for row in test} == {"RAVDESS"}
    assert len(test) == 24 * 4  # every actor, the 4 shared classes
    for split in ("train", "valid"):
        rows = read_manifest(output / f"{split}.csv")
        assert {row["corpus"] for row in rows} == {"EmoDB"}
    assert list(metrics["per_corpus"]) == ["RAVDESS"]


def test_sercaf_cv_each_corpus_held_out_in_turn(
    data, tiny_ssl, tmp_path, capsys
):
    root = tmp_path / "cv"
    argv = [
        "cv",
        str(RECIPE),
        "hparams/caf.yaml",
        f"--output-root={root}",
        "--",
        f"--data_folder={data}",
        "--test_corpus=each",
        "--number_of_epochs=1",
        *tiny_overrides(str(data / "tiny_ssl")),
    ]
    assert cli.main(argv) == 0
    summary = json.loads((root / "cv_summary.json").read_text())
    experiment = summary["experiments"]["caf"]
    assert set(experiment["folds"]) == {"1", "2"}
    assert set(experiment["per_corpus"]) == {"EmoDB", "RAVDESS"}
    assert set(experiment["per_corpus"]["EmoDB"]["folds"]) == {"1"}
    table = (root / "results.md").read_text()
    assert "| caf: test EmoDB |" in table and "| caf: test RAVDESS |" in table
