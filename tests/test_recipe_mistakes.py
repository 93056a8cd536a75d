"""A user's mistakes with a recipe: one line, exit status 2, nothing written.

Each case runs the real ``train.py`` as a user would and checks the exit
status, a single stderr line naming the key or path (no traceback), that
it stops within seconds (before any model is built), and that an existing
output folder is left exactly as it was.
"""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


def folder_digest(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(pathlib.Path(folder).rglob("*"))
        if path.is_file()
    }


def run(recipe, *args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, str(RECIPES / recipe / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding a finished-looking run that no mistake may touch."""
    folder = tmp_path_factory.mktemp("mistakes")
    run_folder = folder / "results" / "run"
    run_folder.mkdir(parents=True)
    (run_folder / "test_metrics.json").write_text('{"UA": 0.5}\n')
    (run_folder / "hyperparams.yaml").write_text("# the finished run\n")
    return folder


CASES = {
    "misspelt override": (
        "Demo",
        ["hparams/caf.yaml", "--number_of_epoch=2"],
        ["unknown key number_of_epoch", "--number_of_epochs"],
    ),
    "missing hparams file": (
        "Demo",
        ["hparams/cat.yaml"],
        ["hparams/cat.yaml"],
    ),
    "wrong data folder": (
        "EmoDB",
        ["hparams/caf.yaml", "--data_folder=no/such/emodb"],
        ["no/such/emodb", "--data_folder"],
    ),
    "unset data folder": (
        "CASIA",
        ["hparams/sum.yaml"],
        ["data_folder", "--data_folder="],
    ),
    "local SSL folder with a typo": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_source=results/tiny_wav2vec3"],
        ["results/tiny_wav2vec3", "--ssl_source"],
    ),
    "hub id without the hub": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_source=facebook/wav2vec2-base"],
        ["facebook/wav2vec2-base", "--ssl_source=/path"],
    ),
    "fold out of range": (
        "Demo",
        ["hparams/caf.yaml", "--fold=9"],
        ["--fold=9", "1..4"],
    ),
    "unknown validation policy": (
        "Demo",
        ["hparams/caf.yaml", "--validation=speakers"],
        ["speakers", "speaker, group, none"],
    ),
    "unknown corpus among several": (
        "MultiCorpus",
        ["hparams/caf.yaml", "--data_folder=.", "--corpora=[EmoDBB]"],
        ["EmoDBB", "did you mean EmoDB"],
    ),
    "missing folder of one of several corpora": (
        "MultiCorpus",
        ["hparams/caf.yaml", "--data_folder=no/such"],
        ["no/such/emodb", "--data_folder"],
    ),
    "held-out corpus not among the corpora": (
        "MultiCorpus",
        [
            "hparams/caf.yaml",
            "--data_folder=.",
            "--corpora=[Demo,Expressive]",
            "--test_corpus=CASIA",
        ],
        ["test_corpus CASIA", "Demo, Expressive"],
    ),
    "another experiment's folder": (
        "Demo",
        ["hparams/film.yaml", "--output_folder=results/run"],
        ["results/run", "--output_folder"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_ends_in_one_line(case, workspace):
    recipe, args, named = CASES[case]
    if case == "another experiment's folder":  # a CAF run holds the folder
        info = workspace / "results" / "run" / "run_info.json"
        info.write_text('{"identity": {"model.fusion": "CAF"}}\n')
    before = folder_digest(workspace)
    result = run(recipe, *args, cwd=workspace)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for part in named:
        assert part in lines[0], lines[0]
    assert folder_digest(workspace) == before  # nothing written or changed


def test_debug_shows_the_traceback(workspace):
    env = dict(os.environ, HF_HUB_OFFLINE="1", SERCAF_DEBUG="1")
    result = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "Demo" / "train.py"),
            "hparams/caf.yaml",
            "--number_of_epoch=2",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
