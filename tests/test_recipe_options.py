"""A recipe's --help (its keys, values and comments) and both spellings
of a key, on the recipe scripts and sercaf cv."""

import os
import pathlib
import subprocess
import sys

import pytest

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.training import cv as cv_module
from sercaf_toolkit.training.cv import CrossValidation
from sercaf_toolkit.training.recipe import load_recipe, recipe_command_line
from sercaf_toolkit.training.recipe_options import recipe_help, run_options

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "recipes" / "Demo"


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_recipe_help_lists_keys_defaults_and_comments(tmp_path, option):
    """Through the real script, from another folder: exit 0, the merged
    layers' keys with their values and comments, SpeechBrain's run
    options, and nothing written."""
    result = subprocess.run(
        [sys.executable, str(DEMO / "train.py"), "hparams/caf.yaml", option],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: python ")
    assert "hparams/caf.yaml [--key=value ...]" in text.splitlines()[0]
    for layer in (
        "common/dual_stream.yaml (shared wiring)",
        "Demo/corpus.yaml (corpus)",
        "hparams/caf.yaml (experiment)",
    ):
        assert layer in text
    lines = text.splitlines()
    # A key, its value, and the comment beside it in the YAML file.
    at = lines.index("  --validation=speaker")
    assert "one validation speaker; or group, or none" in lines[at + 1]
    # A later layer's value, naming the one it replaces.
    at = lines.index("  --number_of_epochs=8")
    assert "(replaces 30 of the shared wiring)" in lines[at + 1]
    assert "  --attention_heads=2" in lines  # the experiment's own
    assert "  --scratch_encoders={dpcnn, textrcnn}" in lines  # a pick
    assert "  --data_folder=demo_data" in lines
    assert "SpeechBrain's run options" in text
    assert "  --device: The device to run the experiment on" in text
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_of_a_recipe_file_needing_a_key():
    text = recipe_help(str(ROOT / "recipes" / "EmoDB" / "hparams" / "caf.yaml"))
    assert "  --data_folder=(must be set: --data_folder=...)" in text


def test_help_without_an_hparams_file_says_what_to_give(capsys):
    with pytest.raises(SystemExit) as stop:
        recipe_command_line(["--help"], str(DEMO))
    assert stop.value.code == 0
    assert "Give an hparams file" in capsys.readouterr().out


def test_recipe_keys_take_the_hyphenated_spelling(tmp_path):
    argv = [
        "hparams/caf.yaml",
        f"--data-folder={tmp_path / 'data'}",
        "--number-of-epochs",
        "2",
        "--debug-batches=1",  # a SpeechBrain run option
        "--device=cpu",
    ]
    assert recipe_command_line(argv, str(DEMO)) == [
        "hparams/caf.yaml",
        f"--data_folder={tmp_path / 'data'}",
        "--number_of_epochs",
        "2",
        "--debug_batches=1",
        "--device=cpu",
    ]
    _, run_opts, _, _, tree = load_recipe(
        [*argv[:4], f"--output-folder={tmp_path / 'out'}"], str(DEMO)
    )
    assert tree["data_folder"] == str(tmp_path / "data")
    assert tree["number_of_epochs"] == 2
    assert tree["output_folder"] == str(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_misspelt_hyphenated_key_is_still_named(tmp_path):
    with pytest.raises(UserError, match="did you mean --number_of_epochs"):
        load_recipe(["hparams/caf.yaml", "--number-of-epoch=2"], str(DEMO))


def test_run_options_come_from_speechbrain():
    options = run_options()
    assert {"device", "precision", "debug", "noprogressbar"} <= set(options)
    assert "help" not in options and "param_file" not in options


def test_cv_respells_overrides_and_sets_fold_threads(tmp_path, monkeypatch):
    cv = CrossValidation(
        str(DEMO),
        ["hparams/caf.yaml"],
        output_root=str(tmp_path / "cv"),
        folds="1",
        overrides=[
            f"--data-folder={tmp_path / 'data'}",
            "--number-of-epochs=1",
        ],
        threads=2,
    )
    assert cv.overrides == [
        f"--data_folder={tmp_path / 'data'}",
        "--number_of_epochs=1",
    ]
    seen = {}

    class FailedFold:
        """Stands for the fold's process: records how it was started."""

        def __init__(self, command, env, **kwargs):
            seen.update(command=command, env=env)

        def wait(self):
            return 1  # a failed fold: nothing more to read

    monkeypatch.setattr(cv_module.subprocess, "Popen", FailedFold)
    assert not cv._run_fold(cv.jobs()[0], 1, 1)
    assert "--number_of_epochs=1" in seen["command"]
    assert seen["env"]["OMP_NUM_THREADS"] == "2"
    assert seen["env"]["MKL_NUM_THREADS"] == "2"
