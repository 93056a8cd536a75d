"""The harder synthetic corpus, its folds, and learning on unseen speakers.

The full benchmark (benchmarks/learning.py) is not run here and none of
its figures is asserted: these tests check the corpus generator, the
speaker independence of its folds, the transductive speaker normalisation,
the benchmark's message when opensmile is missing, and that the log-mel
stream, trained briefly with the recipe's defaults on a tiny version of
the corpus, labels held-out speakers clearly above chance.
"""

import collections
import hashlib
import importlib.util
import json
import os
import pathlib
import sys

import numpy as np
import pytest
import torch

from sercaf_toolkit.corpora import expressive
from sercaf_toolkit.data import read_manifest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def digest(paths):
    sha = hashlib.sha256()
    for path in paths:
        sha.update(pathlib.Path(path).read_bytes())
    return sha.hexdigest()


def test_generator_speakers_classes_and_determinism(tmp_path):
    paths = expressive.generate_expressive_corpus(tmp_path / "a", scale=0.2)
    speakers = {os.path.basename(os.path.dirname(p)) for p in paths}
    assert len(speakers) >= 12
    assert {s[0] for s in speakers} == {"f", "m"}
    labels = collections.Counter(
        os.path.basename(p).split("_")[1] for p in paths
    )
    assert set(labels) == set(expressive.EMOTIONS)
    assert 4 <= len(labels) <= 6
    assert len(set(labels.values())) > 1, f"class counts equal: {labels}"
    sentences = {os.path.basename(p).split("_")[2] for p in paths}
    assert len(sentences) >= 3
    again = expressive.generate_expressive_corpus(tmp_path / "b", scale=0.2)
    assert [os.path.basename(p) for p in again] == [
        os.path.basename(p) for p in paths
    ]
    assert digest(again) == digest(paths)
    other = expressive.generate_expressive_corpus(
        tmp_path / "c", scale=0.2, seed=7
    )
    assert digest(other) != digest(paths)


def test_speaker_baselines_vary_as_much_as_emotions():
    profiles = expressive.speaker_profiles()
    f0 = np.log2([p["f0"] for p in profiles if p["gender"] == "F"])
    level = [p["level_db"] for p in profiles]
    emotion_f0 = np.log2([e[0] for e in expressive.EFFECTS.values()])
    emotion_level = [e[3] for e in expressive.EFFECTS.values()]
    # Within one gender, speakers' pitch and loudness spread as widely as
    # the emotions move them.
    assert np.ptp(f0) >= np.ptp(emotion_f0)
    assert np.ptp(level) >= np.ptp(emotion_level)


def test_prepare_folds_are_speaker_independent(tmp_path):
    data = tmp_path / "data"
    tested = []
    n_folds = expressive.fold_count()
    assert n_folds == 4
    for fold in range(1, n_folds + 1):
        save = tmp_path / f"fold{fold}"
        splits = expressive.prepare_expressive(
            str(data), str(save), fold, scale=0.2
        )
        speakers = {
            name: {row["speaker"] for row in rows}
            for name, rows in splits.items()
        }
        assert not speakers["train"] & speakers["test"]
        assert not speakers["train"] & speakers["valid"]
        assert not speakers["valid"] & speakers["test"]
        assert len(speakers["train"]) == 10
        tested.extend(speakers["test"])
        for name in ("train", "valid", "test"):
            written = read_manifest(str(save / f"{name}.csv"))
            assert {row["speaker"] for row in written} == speakers[name]
    # Every speaker is tested exactly once over the folds.
    assert sorted(tested) == sorted(
        p["name"] for p in expressive.speaker_profiles()
    )


def test_speaker_normalization_removes_speaker_colouring(tmp_path):
    from sercaf_toolkit.corpora.speaker_normalization import (
        speaker_mean_spectra,
    )

    splits = expressive.prepare_expressive(
        str(tmp_path / "data"),
        str(tmp_path / "save"),
        1,
        scale=0.2,
        n_speakers=8,
        n_folds=2,
        speaker_normalization=True,
    )
    rows = splits["train"] + splits["valid"] + splits["test"]
    assert all("speaker_normalized" in row["wav"] for row in rows)
    raw = read_manifest(str(tmp_path / "save" / "data.csv"))
    assert all("speaker_normalized" in row["wav"] for row in raw)
    # The normalised copies are named by content key: the sources by ID.
    source = {
        row["ID"]: row["wav"]
        for row in expressive.build_manifest(
            str(tmp_path / "data"), scale=0.2, n_speakers=8
        )
    }
    original = [{**row, "wav": source[row["ID"]]} for row in rows]
    before = np.array(list(speaker_mean_spectra(original).values()))
    after = np.array(list(speaker_mean_spectra(rows).values()))
    # Speakers' mean spectra (dB per band) nearly coincide afterwards.
    assert after.std(axis=0).mean() < 0.3 * before.std(axis=0).mean()


def load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "learning_benchmark", ROOT / "benchmarks" / "learning.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_names_the_extra_when_opensmile_is_missing(
    monkeypatch, tmp_path, capsys
):
    benchmark = load_benchmark()
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import fails
    with pytest.raises(benchmark.MissingExtra, match=r"\[baselines\]"):
        benchmark.egemaps_features([])
    code = benchmark.main(
        [
            "--rows=1",
            "--folds=1",
            "--scale=0.2",
            f"--data_folder={tmp_path / 'data'}",
            f"--output_folder={tmp_path / 'out'}",
        ]
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(error) == 1 and "baselines" in error[0], error


def test_logmel_stream_beats_chance_on_unseen_speakers(tmp_path):
    """Brief training of the log-mel recipe; UA pooled over two folds."""
    from sercaf_toolkit.training.recipe import run_recipe

    torch.set_num_threads(1)
    true, predicted = [], []
    for fold in (1, 3):
        result = run_recipe(
            [
                str(
                    ROOT / "recipes" / "Expressive" / "hparams" / "logmel.yaml"
                ),
                f"--data_folder={tmp_path / 'data'}",
                f"--output_folder={tmp_path / f'fold{fold}'}",
                f"--fold={fold}",
                "--scale=0.5",
                "--number_of_epochs=6",
            ]
        )
        rows = read_manifest(
            os.path.join(result.output_folder, "predictions.csv")
        )
        true += [row["true_label"] for row in rows]
        predicted += [row["predicted_label"] for row in rows]
    from sklearn.metrics import balanced_accuracy_score

    chance = 1 / len(expressive.EMOTIONS)
    ua = balanced_accuracy_score(true, predicted)
    assert ua > chance + 0.1, f"held-out-speaker UA {ua:.3f}"


def test_benchmark_pairs_runs_by_fold_and_seed(tmp_path):
    """--reference: a lever's UA differences to the defaults, paired."""
    benchmark = load_benchmark()
    reference = {
        3: [
            {"fold": f, "seed": s, "UA": 0.4 + 0.01 * f, "WA": 0, "F1": 0}
            for f in (1, 2)
            for s in (1, 2)
        ]
    }
    lever = {
        3: [
            {**run, "UA": run["UA"] + 0.05 + 0.01 * run["seed"]}
            for run in reversed(reference[3])  # another order: paired anyway
        ],
        1: [{"fold": 1, "seed": None, "UA": 0.5, "WA": 0, "F1": 0}],
    }
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({str(k): v for k, v in reference.items()}))
    table = benchmark.format_differences(lever, benchmark.load_results(path))
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, row 3 (row 1 is no deep row)
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[:5] == ["3", "4", "0.480", "0.415", "+0.065"]
    # All four pairs gain: of the 16 sign patterns, only the two
    # all-same-sign ones are as extreme.
    assert cells[6] == "0.125"
    low, high = (float(v) for v in cells[5].strip("[]").split(","))
    assert 0 < low < 0.065 < high
    with pytest.raises(ValueError, match="fold 1 seed 3"):
        benchmark.paired_differences(
            [{"fold": 1, "seed": 3, "UA": 0.1}], reference[3]
        )
