"""SERBrain options: SSL warm-up, class weights, two optimizers."""

import pathlib

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from sercaf_toolkit.hparams import load_hparams
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.recipe import run_recipe

DEMO = pathlib.Path(__file__).resolve().parent.parent / "recipes" / "Demo"


def one_epoch(tmp_path, *extra):
    """Trains one demo epoch; returns the initial and final weights."""
    argv = [
        str(DEMO / "hparams" / "caf.yaml"),
        "--device=cpu",
        f"--data_folder={tmp_path / 'data'}",
        f"--output_folder={tmp_path / 'run'}",
        "--utterances_per_emotion=2",
        "--number_of_epochs=1",
        *extra,
    ]
    result = run_recipe(argv)
    final = torch.load(
        pathlib.Path(result.inference_folder) / "embedding_model.ckpt"
    )
    # Loading the YAML again seeds and builds the same initial model.
    hparams_file, _, overrides = sb.parse_arguments(argv)
    initial = load_hparams(hparams_file, overrides)["model"].state_dict()
    return initial, final


def changed(initial, final, prefix):
    return [
        not torch.equal(initial[name], final[name])
        for name in initial
        if name.startswith(prefix)
    ]


def test_ssl_warmup_keeps_ssl_weights_and_trains_the_rest(tmp_path):
    initial, final = one_epoch(tmp_path, "--ssl_warmup_steps=1000")
    assert not any(changed(initial, final, "streams.0.model."))
    assert all(changed(initial, final, "streams.0.output.weights"))
    assert any(changed(initial, final, "streams.1.encoder."))
    assert any(changed(initial, final, "fusion."))


def test_without_warmup_the_transformer_is_fine_tuned(tmp_path):
    initial, final = one_epoch(tmp_path)
    assert any(changed(initial, final, "streams.0.model.encoder."))
    assert not any(
        changed(initial, final, "streams.0.model.feature_extractor.")
    )


def brain_with(**hparams):
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["a", "b", "c"])
    encoder.ignore_len()
    return SERBrain(
        modules={"model": torch.nn.Linear(2, 2)},
        hparams={"label_encoder": encoder, **hparams},
        run_opts={"device": "cpu"},
    )


def test_balanced_class_weights_are_inverse_frequencies():
    brain = brain_with(
        class_weights="balanced", train_class_counts=[10, 30, 20]
    )
    brain._set_class_weights()
    expected = torch.tensor([60 / 30, 60 / 90, 60 / 60])
    torch.testing.assert_close(brain.class_weights, expected)


def test_explicit_and_bad_class_weights():
    brain = brain_with(class_weights=[1.0, 2.0, 3.0])
    brain._set_class_weights()
    assert brain.class_weights.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="class_weights must be"):
        brain_with(class_weights="inverse")._set_class_weights()


def test_warmup_leaves_out_the_ssl_optimizer():
    brain = brain_with(ssl_warmup_steps=2)
    optimizers = {"lr": object(), "lr_ssl": object()}
    assert list(brain.freeze_optimizers(optimizers)) == ["lr"]
    brain.optimizer_step = 2
    assert list(brain.freeze_optimizers(optimizers)) == ["lr", "lr_ssl"]
