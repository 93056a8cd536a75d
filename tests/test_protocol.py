"""Validation policies, refit, seeds and stale runs on the demo recipe."""

import csv
import json
import pathlib

import pytest
import ruamel.yaml
from sklearn.metrics import balanced_accuracy_score, f1_score

from sercaf_toolkit import cli
from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.evaluation.compare import (
    compare_experiments,
    load_experiments,
)
from sercaf_toolkit.training.recipe import run_recipe

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "recipes" / "Demo"
QUICK = ["--utterances_per_emotion=3", "--device=cpu"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_data")


def demo_run(demo_data, output, *extra):
    return run_recipe(
        [
            str(DEMO / "hparams" / "caf.yaml"),
            f"--data_folder={demo_data}",
            f"--output_folder={output}",
            *QUICK,
            *extra,
        ]
    )


def speakers(path):
    return {row["speaker"] for row in read_manifest(path)}


def test_validation_none_trains_on_all_non_test_speakers(demo_data, tmp_path):
    output = tmp_path / "none"
    result = demo_run(
        demo_data, output, "--validation=none", "--number_of_epochs=2"
    )
    assert not read_manifest(output / "valid.csv")
    assert len(speakers(output / "train.csv")) == 6  # all but the test pair
    assert not speakers(output / "train.csv") & speakers(output / "test.csv")
    assert result.metrics["selected_epoch"] == 2  # the last one
    assert result.metrics["selected_on"] == "last epoch (no validation)"
    log = (output / "train_log.txt").read_text()
    assert "valid" not in log and log.count("train UA") == 2
    split = json.loads((output / "split_info.json").read_text())
    assert split["validation"] == "none" and split["training_share"] == 1.0
    # The run's hyperparams.yaml: the merged layers with the overrides.
    saved = ruamel.yaml.YAML().load(output / "hyperparams.yaml")
    assert saved["validation"] == "none" and saved["number_of_epochs"] == 2
    assert "fusion" in saved and "extends" not in saved


def test_speaker_policy_keeps_all_but_one_training_speaker(demo_data, tmp_path):
    output = tmp_path / "speaker"
    demo_run(demo_data, output, "--number_of_epochs=1", "--fold=2")
    assert len(speakers(output / "valid.csv")) == 1
    assert len(speakers(output / "train.csv")) == 5
    info = json.loads((output / "run_info.json").read_text())
    assert info["split"]["validation"] == "speaker"
    assert 0.7 < info["split"]["training_share"] < 0.9


def test_refit_trains_again_on_train_and_valid(demo_data, tmp_path):
    output = tmp_path / "refit"
    result = demo_run(demo_data, output, "--refit=True", "--number_of_epochs=2")
    first = json.loads((output / "history.json").read_text())
    assert sorted(first) == ["1", "2"] and "valid" in first["1"]
    epochs = result.metrics["selected_epoch"]
    refit = output / "refit"
    assert len(read_manifest(refit / "train.csv")) == len(
        read_manifest(output / "train.csv")
    ) + len(read_manifest(output / "valid.csv"))
    assert not read_manifest(refit / "valid.csv")
    assert speakers(refit / "test.csv") == speakers(output / "test.csv")
    log = (refit / "train_log.txt").read_text()
    assert log.count("train UA") == epochs and "valid" not in log
    assert result.metrics["selected_on"].startswith(
        f"refit on train+valid speakers for {epochs} epochs"
    )


def test_cv_on_demo_two_files_two_seeds_and_stale_runs(
    demo_data, tmp_path, capsys
):
    root = tmp_path / "cv"
    base = [
        "cv",
        str(DEMO),
        "hparams/caf.yaml",
        "hparams/film.yaml",
        "--folds=2",
        "--seeds=1,2",
        f"--output-root={root}",
        "--gpus=0,1",  # two runs at a time (no GPU here: on the 2 CPU cores)
        "--",
        f"--data_folder={demo_data}",
        "--utterances_per_emotion=2",
        "--device=cpu",
    ]
    assert cli.main([*base, "--number_of_epochs=1"]) == 0
    summary = json.loads((root / "cv_summary.json").read_text())
    for stem in ("caf", "film"):
        result = summary["experiments"][stem]
        assert len(result["runs"]) == 2 and set(result["folds"]) == {"2"}
        per_seed = result["seeds"]["per_seed"]
        assert set(per_seed) == {"1", "2"}
        ua = [run["UA"] for run in result["runs"]]
        assert sum(m["UA"] for m in per_seed.values()) / 2 == pytest.approx(
            sum(ua) / 2
        )
        assert sum(map(sum, result["pooled"]["confusion_matrix"])) == sum(
            len(
                read_manifest(
                    root / stem / f"seed_{s}" / f"fold_{f}" / "test.csv"
                )
            )
            for s in (1, 2)
            for f in (2,)
        )
    table = (root / "results.md").read_text()
    assert "(2 seeds)" in table and "| film |" in table
    # sercaf compare on the real runs: the pair figures are those of the
    # runs' predictions.csv, and a run against itself differs by nothing.
    out = tmp_path / "comparison"
    assert (
        cli.main(
            [
                "compare",
                str(root / "film"),
                str(root / "caf"),
                "--out",
                str(out),
                "--bootstrap=200",
            ]
        )
        == 0
    )
    compared = json.loads((out / "comparison.json").read_text())
    assert compared["pairs"] == [[1, 2], [2, 2]]
    for (seed, fold), figures in zip(
        compared["pairs"], compared["figures"]["cv/caf"]["runs"]
    ):
        with open(
            root / "caf" / f"seed_{seed}" / f"fold_{fold}" / "predictions.csv"
        ) as source:
            rows = list(csv.DictReader(source))
        true = [row["true_label"] for row in rows]
        predicted = [row["predicted_label"] for row in rows]
        assert figures["UA"] == pytest.approx(
            balanced_accuracy_score(true, predicted)
        )
        assert figures["F1"] == pytest.approx(
            f1_score(true, predicted, average="macro")
        )
    assert "p (speakers)" in capsys.readouterr().out
    (caf,), (twin,) = (load_experiments([str(root / "caf")]) for _ in "ab")
    twin.name = "twin"
    same = compare_experiments([caf, twin], bootstrap=100)["comparisons"]
    for entry in same["twin"].values():
        assert entry["difference"] == 0 and entry["pairs"]["p"] == 1
        assert entry["speakers"]["p"] == 1
    # The same command again: everything finished with these settings.
    assert cli.main([*base, "--number_of_epochs=1"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out
    # Another setting: refused, naming it, with nothing run or deleted.
    assert cli.main([*base, "--number_of_epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(number_of_epochs: 1 there, 2 now)" in err[0]
    assert "--rerun" in err[0] and "--output-root" in err[0]
    assert (root / "caf" / "seed_1" / "fold_2" / "test_metrics.json").exists()
    assert not (root / "run.lock").exists()


def test_cv_summary_keeps_every_experiment_of_its_root(demo_data, tmp_path):
    root = tmp_path / "cv"

    def cv(stem, *options, epochs=1):
        return cli.main(
            [
                "cv",
                str(DEMO),
                f"hparams/{stem}.yaml",
                "--folds=1",
                f"--output-root={root}",
                *options,
                "--",
                f"--data_folder={demo_data}",
                "--utterances_per_emotion=2",
                "--device=cpu",
                f"--number_of_epochs={epochs}",
            ]
        )

    assert cv("caf") == 0
    assert cv("sum") == 0  # a second invocation into the same root
    summary = json.loads((root / "cv_summary.json").read_text())
    assert list(summary["experiments"]) == ["caf", "sum"]
    for result in summary["experiments"].values():
        assert [run["fold"] for run in result["runs"]] == [1]
    table = (root / "results.md").read_text()
    assert "| caf |" in table and "| sum |" in table
    # --rerun reaches the fold that differs: it trains afresh.
    assert cv("caf", "--rerun", epochs=2) == 0
    log = (root / "caf" / "fold_1" / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1
    summary = json.loads((root / "cv_summary.json").read_text())
    assert list(summary["experiments"]) == ["caf", "sum"]
