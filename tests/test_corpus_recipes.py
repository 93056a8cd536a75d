"""Corpus recipes: every hparams file builds; one fold runs; sercaf cv."""

import json
import pathlib

import pytest
import speechbrain as sb

from sercaf_toolkit import cli
from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.hparams import load_hparams
from sercaf_toolkit.lobes import (
    ConcatFusion,
    CrossAttentionFusion,
    FiLMFusion,
    PaperCAF,
    SumFusion,
    TextRCNN,
)
from sercaf_toolkit.training.recipe import run_recipe
from tests.mock_corpora import make_casia, make_emodb

RECIPES = pathlib.Path(__file__).resolve().parent.parent / "recipes"
CORPORA = ["IEMOCAP", "EmoDB", "CASIA", "RAVDESS"]
FUSION_FILES = {
    "caf": CrossAttentionFusion,
    "sum": SumFusion,
    "con": ConcatFusion,
    "film": FiLMFusion,
    "paper_caf": PaperCAF,
}


def tiny_overrides(ssl_source):
    return [
        f"--ssl_source={ssl_source}",
        "--n_mels=32",
        "--dpcnn_filters=8",
        "--dpcnn_blocks=2",
        "--rcnn_embedding=8",
        "--rcnn_hidden=4",
        "--fusion_size=16",
        "--num_workers=0",
        "--device=cpu",
    ]


HPARAMS = [(c, n) for c in CORPORA for n in FUSION_FILES] + [
    ("Custom", "caf"),
    ("MultiCorpus", "caf"),
    ("MSPPodcast", "caf"),
]


@pytest.mark.parametrize("corpus, name", HPARAMS)
def test_every_hparams_file_builds_its_model(
    corpus, name, tiny_ssl_source, tmp_path
):
    hparams_file = RECIPES / corpus / "hparams" / f"{name}.yaml"
    argv = [
        str(hparams_file),
        "--labels=[calm,tense]" if corpus == "Custom" else "--seed=1",
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'out'}",
        "--scratch_encoder=textrcnn",
        *tiny_overrides(tiny_ssl_source()),
    ]
    _, _, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    model = hparams["model"]
    assert isinstance(model.fusion, FUSION_FILES[name])
    assert isinstance(model.streams[1].encoder, TextRCNN)
    assert model.classifier.n_classes == len(hparams["labels"])
    for key in (
        "data_folder",
        "output_folder",
        "ssl_source",
        "fold",
    ):
        assert key in hparams
    assert (RECIPES / corpus / "train.py").exists()
    assert (RECIPES / corpus / "README.md").exists()


def test_one_emodb_fold_end_to_end(tiny_ssl_source, tmp_path):
    make_emodb(str(tmp_path / "emodb"))
    output = tmp_path / "run"
    result = run_recipe(
        [
            str(RECIPES / "EmoDB" / "hparams" / "caf.yaml"),
            f"--data_folder={tmp_path / 'emodb'}",
            f"--output_folder={output}",
            "--fold=3",
            "--number_of_epochs=2",
            *tiny_overrides(tiny_ssl_source("hubert")),
        ]
    )
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert metrics == result.metrics
    assert set(metrics) >= {
        "WA",
        "UA",
        "F1",
        "per_class_recall",
        "confusion_matrix",
    }
    assert {r["speaker"] for r in read_manifest(output / "test.csv")} == {"09"}
    assert {r["speaker"] for r in read_manifest(output / "valid.csv")} == {"10"}
    predictions = read_manifest(output / "predictions.csv")
    assert len(predictions) == 14
    assert set(predictions[0]) == {
        "id", "true_label", "predicted_label", "speaker", "gender",
        *(f"prob_{label}" for label in metrics["labels"]),
    }  # fmt: skip
    # The test speaker's own figures: EmoDB fold 3 tests speaker 09 alone.
    assert metrics["per_speaker"]["09"]["UA"] == pytest.approx(metrics["UA"])
    assert metrics["worst_speaker"]["speaker"] == "09"
    assert set(metrics["per_gender"]) == {row["gender"] for row in predictions}
    assert (output / "inference" / "hyperparams.yaml").exists()
    info = json.loads((output / "run_info.json").read_text())
    assert info["streams"] == ["hubert", "DPCNN"]
    assert info["split"]["speaker_independent"] is True


def test_a_logmel_run_of_a_caf_experiment_needs_no_ssl_model(tmp_path):
    # The SSL stream is not picked: its (missing) source is never checked
    # or loaded, and CAF, given one stream, pools it.
    make_emodb(str(tmp_path / "emodb"))
    output = tmp_path / "run"
    result = run_recipe(
        [
            str(RECIPES / "EmoDB" / "hparams" / "caf.yaml"),
            f"--data_folder={tmp_path / 'emodb'}",
            f"--output_folder={output}",
            "--fold=3",
            "--number_of_epochs=1",
            "--streams=logmel",
            *tiny_overrides("/does/not/exist"),
        ]
    )
    assert 0 <= result.metrics["UA"] <= 1
    info = json.loads((output / "run_info.json").read_text())
    assert info["streams"] == ["DPCNN"] and info["ssl_source"] is None
    exported = (output / "inference" / "hyperparams.yaml").read_text()
    assert "SSLStream" not in exported and "CrossAttentionFusion" in exported


def test_sercaf_cv_two_hparams_files_and_resume(
    tiny_ssl_source, tmp_path, capsys
):
    make_casia(str(tmp_path / "CASIA"))
    root = tmp_path / "cv"
    argv = [
        "cv",
        str(RECIPES / "CASIA"),
        "hparams/caf.yaml",
        "hparams/sum.yaml",
        "--folds=1-2",
        f"--output-root={root}",
        "--gpus=0,1",  # two at a time (no GPU here: the runs use the CPU)
        "--",
        f"--data_folder={tmp_path / 'CASIA'}",
        "--number_of_epochs=1",
        *tiny_overrides(tiny_ssl_source()),
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "caf fold 2: running" in out and "sum fold 1: WA" in out
    assert "on GPUs [0, 1]" in out
    summary = json.loads((root / "cv_summary.json").read_text())
    for stem, fusion in (("caf", "CrossAttentionFusion"), ("sum", "SumFusion")):
        experiment = summary["experiments"][stem]
        assert set(experiment["folds"]) == {"1", "2"}
        assert experiment["system"]["fusion"] == fusion
        was = [experiment["folds"][f]["UA"] for f in ("1", "2")]
        assert experiment["mean"]["UA"] == pytest.approx(sum(was) / 2)
        assert experiment["pooled"]["labels"] == [
            "angry", "fear", "happy", "neutral", "sad", "surprise"
        ]  # fmt: skip
        assert sum(map(sum, experiment["pooled"]["confusion_matrix"])) == 24
        png = pathlib.Path(experiment["confusion_matrix_png"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (root / "results.md").read_text()
    assert "| caf | wav2vec2" in table and "| sum | wav2vec2" in table
    assert "CrossAttentionFusion" in table and "2/2 |" in table
    # A second run finds every fold done and only rewrites the summary.
    assert cli.main(argv) == 0
    assert "4 runs (2 experiment(s) x folds); 4 already finished, 0 to run" in (
        capsys.readouterr().out
    )
