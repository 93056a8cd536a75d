"""Calibration: ECE and NLL of the written probabilities, the temperature
fit, and the temperature on every way of running an exported model."""

import csv
import json
import logging
import pathlib
import shutil

import numpy as np
import pytest
import soundfile
import torch
from sklearn.metrics import log_loss
from speechbrain.inference.classifiers import EncoderClassifier

from sercaf_toolkit import cli
from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.deployment.inference import EmotionPredictor
from sercaf_toolkit.evaluation import plots
from sercaf_toolkit.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    fit_temperature,
    reliability_bins,
    scaled_nll,
)
from sercaf_toolkit.evaluation.results import write_test_outputs
from sercaf_toolkit.integrity import write_checksums
from sercaf_toolkit.lobes.model import EmotionHead
from tests.helpers import pad_with_noise

LABELS = ["neutral", "happy", "angry", "sad"]


# Figures ------------------------------------------------------------------


def direct_ece(probabilities, targets, n_bins=15):
    """The textbook top-label ECE, written out bin by bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = correct[inside].mean() - confidence[inside].mean()
            total += inside.sum() / len(targets) * abs(gap)
    return total


def read_predictions(folder, labels=LABELS):
    with open(pathlib.Path(folder) / "predictions.csv", newline="") as source:
        rows = list(csv.DictReader(source))
    probabilities = np.array(
        [[float(row[f"prob_{label}"]) for label in labels] for row in rows]
    )
    targets = np.array([labels.index(row["true_label"]) for row in rows])
    return probabilities, targets


def some_rows(n=300, seed=0):
    """Over-confident rows, some with a confidence on a bin edge."""
    generator = np.random.default_rng(seed)
    targets = generator.integers(0, 4, n)
    logits = generator.normal(size=(n, 4))
    logits[np.arange(n), targets] += 1.0
    probabilities = torch.softmax(torch.tensor(2 * logits), -1).numpy()
    probabilities[:3] = [[0.6, 0.2, 0.1, 0.1], [0.2, 0.4, 0.2, 0.2]] + [
        [0.0, 0.0, 1.0, 0.0]
    ]  # 0.6 and 0.4 are bin edges; a class given probability 0
    targets[2] = 0  # ... which is the true one
    return [
        (f"utt{i:03d}", int(t), p.tolist())
        for i, (t, p) in enumerate(zip(targets, probabilities))
    ]


def test_ece_and_nll_are_those_of_predictions_csv(tmp_path):
    paths = write_test_outputs(str(tmp_path), LABELS, some_rows())
    metrics = json.loads(pathlib.Path(paths["metrics"]).read_text())
    probabilities, targets = read_predictions(tmp_path)
    assert metrics["ECE"] == pytest.approx(
        direct_ece(probabilities, targets), abs=1e-5
    )
    assert metrics["ECE"] > 0.05  # over-confident: a real gap is measured
    # scikit-learn clips a zero probability the same way. The figures are
    # of the probabilities before the file rounds them to six decimals
    # (a rounded 0.000049 moves its -log by 1 %), hence the tolerance.
    normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
    assert metrics["NLL"] == pytest.approx(
        log_loss(targets, normalised, labels=range(4)), abs=1e-4
    )
    assert pathlib.Path(paths["reliability diagram"]).name == (
        "reliability_diagram.png"
    )
    assert pathlib.Path(paths["reliability diagram"]).read_bytes()[:4] == (
        b"\x89PNG"
    )


def test_calibrated_rows_have_a_small_ece(tmp_path):
    """Rows drawn from their own probabilities: calibrated by design."""
    generator = np.random.default_rng(1)
    probabilities = generator.dirichlet([1.0] * 4, size=20000)
    cumulative = probabilities.cumsum(axis=1)
    targets = (generator.random((20000, 1)) > cumulative).sum(axis=1)
    ece = reliability_bins(probabilities, targets)["ECE"]
    assert ece == pytest.approx(direct_ece(probabilities, targets))
    assert ece < 0.02


def test_reliability_diagram_draws_each_bin(tmp_path, monkeypatch):
    kept = []
    save = plots._save

    def keep(figure, path):
        kept.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    rows = some_rows(n=60)
    write_test_outputs(str(tmp_path), LABELS, rows)
    probabilities, targets = read_predictions(tmp_path)
    bins = reliability_bins(probabilities, targets)
    (figure,) = [f for f in kept if "ECE" in f.axes[0].get_title()]
    upper, lower = figure.axes
    accuracy = [
        p.get_height() for p in upper.patches[: sum(map(bool, bins["count"]))]
    ]
    assert accuracy == pytest.approx(
        [a for a, n in zip(bins["accuracy"], bins["count"]) if n]
    )
    assert [p.get_height() for p in lower.patches] == bins["count"]
    assert upper.get_title() == f"test, ECE {bins['ECE']:.3f}"


# The temperature fit ------------------------------------------------------


def test_fit_lowers_the_nll_of_the_rows_it_is_given_and_only_theirs():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (400,), generator=generator)
    logits = torch.randn(400, 4, generator=generator)
    logits[torch.arange(400), targets] += 1.0
    valid, test = slice(0, 200), slice(200, 400)
    over_confident = 4 * logits
    temperature = fit_temperature(over_confident[valid], targets[valid])
    assert 2.5 < temperature < 6
    before = scaled_nll(over_confident[valid], targets[valid], 1.0)
    after = scaled_nll(over_confident[valid], targets[valid], temperature)
    assert after < before - 0.1
    # Other (test) rows, however different, change nothing.
    swapped = torch.flip(over_confident[test], dims=[1]) * 0.1
    again = fit_temperature(over_confident[valid], targets[valid])
    assert again == temperature
    assert fit_temperature(swapped, targets[test]) != temperature
    # Log-probabilities (a shift per row) give the same temperature.
    log_probs = torch.log_softmax(over_confident[valid], -1)
    assert fit_temperature(log_probs, targets[valid]) == pytest.approx(
        temperature, rel=1e-4
    )


def test_rows_all_right_give_no_temperature_to_fit():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1, 1])  # the last one tied: not wrong
    # Their NLL falls without end as T -> 0: the lower bound would win.
    assert scaled_nll(logits, targets, 0.05) < scaled_nll(logits, targets, 1)
    assert fit_temperature(logits, targets) == 1.0
    # One mistake gives the NLL a minimum above the bound.
    wrong = torch.cat([logits, torch.tensor([[1.0, 0.0, 0.0]])])
    temperature = fit_temperature(wrong, torch.tensor([0, 1, 1, 2]))
    assert TEMPERATURE_BOUNDS[0] * 1.01 < temperature < 1


def test_a_head_without_calibration_is_unchanged_bit_for_bit():
    head = EmotionHead(input_size=8, n_classes=4).eval()
    embeddings = torch.randn(5, 8)
    expected = torch.log_softmax(head.linear(embeddings), dim=-1)
    assert torch.equal(head(embeddings), expected)
    assert "temperature" in head.state_dict()


# Every inference path -------------------------------------------------------


def with_temperature(model_dir, folder, temperature):
    """A copy of an exported model whose head has ``temperature``."""
    shutil.copytree(model_dir, folder)
    state = torch.load(folder / "embedding_model.ckpt")
    state["classifier.temperature"] = torch.tensor(temperature)
    torch.save(state, folder / "embedding_model.ckpt")
    write_checksums(folder, ["hyperparams.yaml", "embedding_model.ckpt",
                             "label_encoder.ckpt"])  # fmt: skip
    return str(folder)


def demo_waves():
    return [
        torch.from_numpy(synthesize_utterance(speaker, emotion, seed))
        for seed, (speaker, emotion) in enumerate(
            [("spk1_f", "sad"), ("spk2_m", "angry"), ("spk3_f", "happy"),
             ("spk4_m", "neutral"), ("spk5_f", "angry")]
        )
    ]  # fmt: skip


@pytest.fixture(scope="module")
def calibrated_dir(demo_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    return with_temperature(demo_model_dir, root / "model", 2.5)


@pytest.fixture(scope="module")
def uncalibrated_probabilities(demo_model_dir):
    return EmotionPredictor(demo_model_dir).probabilities(demo_waves())


def test_encoder_classifier_and_predict_give_calibrated_probabilities(
    calibrated_dir, uncalibrated_probabilities, tmp_path, capsys
):
    waves = demo_waves()
    uncalibrated = uncalibrated_probabilities
    # What the temperature must do: softmax(logits / 2.5).
    expected = torch.softmax(uncalibrated.log() / 2.5, dim=-1)
    assert (expected - uncalibrated).abs().max() > 1e-3

    classifier = EncoderClassifier.from_hparams(
        source=calibrated_dir, savedir=str(tmp_path / "loaded")
    )
    wavs, lens = pad_with_noise(waves)
    log_probs, _, _, _ = classifier.classify_batch(wavs, lens)
    torch.testing.assert_close(log_probs.exp(), expected, atol=1e-4, rtol=0)

    predictor = EmotionPredictor(calibrated_dir)
    torch.testing.assert_close(
        predictor.probabilities(waves), expected, atol=1e-4, rtol=0
    )

    folder = tmp_path / "in"
    folder.mkdir()
    for index, wave in enumerate(waves):
        soundfile.write(folder / f"{index}.wav", wave.numpy(), 16000)
    out = tmp_path / "predict.csv"
    code = cli.main(["predict", calibrated_dir, str(folder), "--out",
                     str(out), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    written = torch.tensor(
        [[float(row[f"prob_{label}"]) for label in LABELS] for row in rows]
    )
    torch.testing.assert_close(written, expected, atol=1e-4, rtol=0)


def test_onnx_export_gives_calibrated_probabilities(
    calibrated_dir, uncalibrated_probabilities, tmp_path
):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from sercaf_toolkit.deployment.onnx_runtime import OnnxModel

    expected = torch.softmax(uncalibrated_probabilities.log() / 2.5, dim=-1)
    path = str(tmp_path / "calibrated.onnx")
    code = cli.main(["export-onnx", calibrated_dir, path])
    assert code == 0
    model = OnnxModel(path)
    wavs, lens = pad_with_noise(demo_waves())
    torch.testing.assert_close(
        model.log_probabilities(wavs, lens).exp(), expected, atol=1e-4, rtol=0
    )


def test_a_model_folder_exported_before_temperatures_loads_as_before(
    demo_model_dir, uncalibrated_probabilities, tmp_path, caplog
):
    old = tmp_path / "old"
    shutil.copytree(demo_model_dir, old)
    state = torch.load(old / "embedding_model.ckpt")
    del state["classifier.temperature"]
    torch.save(state, old / "embedding_model.ckpt")
    write_checksums(old, ["hyperparams.yaml", "embedding_model.ckpt",
                          "label_encoder.ckpt"])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        predictor = EmotionPredictor(str(old))
    assert "temperature" not in caplog.text  # no missing-key warning
    head = predictor.classifier.mods.classifier
    assert float(head.temperature) == 1.0
    # Equal up to float rounding: the fixture's probabilities may have been
    # computed under another thread count (summation order).
    torch.testing.assert_close(
        predictor.probabilities(demo_waves()),
        uncalibrated_probabilities,
        atol=1e-6,
        rtol=0,
    )


# Runs recorded before the key -----------------------------------------------


def test_a_run_recorded_before_calibrate_is_the_uncalibrated_run(tmp_path):
    from sercaf_toolkit.training.recipe import load_recipe, run_identity
    from sercaf_toolkit.training.runs import IDENTITY_VERSION, run_difference
    from tests.demo_runs import demo_args

    def identity(*extra):
        argv = demo_args(tmp_path / "data", tmp_path / "run", *extra)
        _, run_opts, _, composed, tree = load_recipe(argv)
        return run_identity(tree, composed, run_opts)

    now = identity()
    assert now["calibrate"] == "False"
    recorded = {k: v for k, v in now.items() if k != "calibrate"}
    folder = tmp_path / "old_run"
    folder.mkdir()
    (folder / "run_info.json").write_text(
        json.dumps({"identity_version": IDENTITY_VERSION, "identity": recorded})
    )
    assert run_difference(str(folder), now) is None
    assert run_difference(str(folder), identity("--calibrate=True")) == (
        "calibrate",
        "False",
        "True",
    )
