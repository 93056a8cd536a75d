"""``sercaf cv --launcher``: the grid's runs as commands for a scheduler."""

import pathlib
import shlex
import subprocess

from sercaf_toolkit import cli
from sercaf_toolkit.training.recipe import run_recipe

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cv_args(tmp_path, *launcher):
    return [
        "cv",
        str(ROOT / "recipes" / "Demo"),
        "hparams/caf.yaml",
        "--folds",
        "2",
        "--seeds",
        "1,2",
        "--output-root",
        str(tmp_path / "cv"),
        *launcher,
        "--",
        f"--data_folder={tmp_path / 'data'}",
        "--utterances_per_emotion=3",
        "--number_of_epochs=1",
    ]


def test_commands_run_the_grid_and_cv_then_only_summarises(tmp_path, capsys):
    assert cli.main(cv_args(tmp_path, "--launcher", "commands")) == 0
    commands = capsys.readouterr().out.strip().splitlines()
    assert len(commands) == 2  # one fold x 2 seeds
    assert "--fold=2" in commands[1] and "--seed=2" in commands[1]
    slurm = tmp_path / "array.sh"
    two_gpus = ["--launcher", "slurm", "--nproc_per_node", "2"]
    args = cv_args(tmp_path, *two_gpus, "--slurm_script", str(slurm))
    assert cli.main(args) == 0
    script = slurm.read_text()
    assert "#SBATCH --array=0-1" in script
    assert "--nproc_per_node=2" in script and "--gpus-per-task=2" in script
    subprocess.run(["bash", "-n", str(slurm)], check=True)
    # Each command is a plain train.py run (here in this process).
    for command in commands:
        argv = shlex.split(command)
        assert argv[1].endswith("train.py")
        run_recipe(argv[2:], script_dir=str(ROOT / "recipes" / "Demo"))
    capsys.readouterr()
    assert cli.main(cv_args(tmp_path, "--launcher", "commands")) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "every run is finished" in captured.err
    assert cli.main(cv_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "2 already finished, 0 to run" in out
    assert (tmp_path / "cv" / "cv_summary.json").exists()
