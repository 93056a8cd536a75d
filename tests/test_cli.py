"""The ``sercaf`` command line: mistakes end in one line and exit status 2.

These run the real command in a subprocess, so that what a user sees (the
stderr lines, the exit status, no traceback) is what is checked. None of
them needs a model: each mistake must be caught before a model loads, and
the fake model folder below could not be loaded anyway.
"""

import os
import pathlib
import socket
import subprocess
import sys

import pytest

import sercaf_toolkit
from sercaf_toolkit import cli
from sercaf_toolkit.errors import UserError

ROOT = pathlib.Path(sercaf_toolkit.__file__).resolve().parent.parent


def sercaf(*args, cwd=None, **env):
    """Runs ``python -m sercaf_toolkit.cli ARGS``; returns the result."""
    # The package under test, whatever the caller's PYTHONPATH; and no
    # SERCAF_DEBUG from the caller's shell unless a test sets it.
    environment = {k: v for k, v in os.environ.items() if k != "SERCAF_DEBUG"}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "sercaf_toolkit.cli", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_user_error(result, *names):
    """Exit status 2, one stderr line naming ``names``, no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert str(name) in lines[0]
    return lines[0]


@pytest.fixture
def fake_model(tmp_path):
    """Passes the folder check, but would fail to load: proves no load."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text("not: [a model\n")
    return folder


def test_missing_model_folder_is_one_line(tmp_path):
    out = tmp_path / "out.csv"
    result = sercaf(
        "predict", tmp_path / "no_model", tmp_path, "--out", out
    )  # fmt: skip
    line = assert_user_error(result, tmp_path / "no_model")
    assert line.startswith("sercaf: error: model folder")
    assert not out.exists()


def test_folder_without_hyperparams_is_one_line(tmp_path):
    result = sercaf("predict", tmp_path, tmp_path)
    assert_user_error(result, tmp_path, "hyperparams.yaml")


def test_missing_list_file_is_one_line_before_the_model_loads(
    fake_model, tmp_path
):
    out = tmp_path / "out.csv"
    listing = tmp_path / "nowhere" / "list.txt"
    result = sercaf("predict", fake_model, listing, "--out", out)
    line = assert_user_error(result, listing)
    assert "list file" in line and "one audio path per line" in line
    assert not out.exists()


def test_no_audio_found_is_one_line(fake_model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(sercaf("predict", fake_model, empty), empty)


@pytest.mark.parametrize(
    "options, names",
    [
        (["--hop", "5"], ["--hop 5.0", "--window 4.0"]),
        (["--batch-size", "0"], ["--batch_size 0"]),
        (["--batch_size", "0"], ["--batch_size 0"]),
        (["--threads", "0"], ["--threads 0"]),
        (["--min_seconds", "-1"], ["--min_seconds -1.0"]),
        (["--out", "missing_folder/out.csv"], ["--out", "missing_folder"]),
        (["--plot", "missing_folder/t.png"], ["--plot", "missing_folder"]),
        (["--device", "tpu:x"], ["--device tpu:x"]),
    ],
)
def test_bad_predict_options_are_one_line(fake_model, tmp_path, options, names):
    result = sercaf("predict", fake_model, tmp_path, *options, cwd=tmp_path)
    assert_user_error(result, *names)


def test_usage_mistakes_are_one_line():
    result = sercaf("predict")
    line = assert_user_error(result, "model_dir", "sercaf predict -h")
    assert line.startswith("sercaf predict: error:")
    assert_user_error(sercaf("train"), "train")


def test_other_commands_report_missing_paths_on_one_line(tmp_path):
    assert_user_error(
        sercaf("cv", tmp_path / "recipe", "caf.yaml"), tmp_path / "recipe"
    )
    assert_user_error(
        sercaf("table", tmp_path / "cv_summary.json"),
        tmp_path / "cv_summary.json",
    )
    assert_user_error(
        sercaf("attention", tmp_path / "model", "a.wav"), tmp_path / "model"
    )


def test_debug_shows_the_traceback_of_a_mistake(tmp_path):
    for result in (
        sercaf("--debug", "predict", tmp_path / "nope", "a.wav"),
        sercaf("predict", tmp_path / "nope", "a.wav", "--debug"),
        sercaf("predict", tmp_path / "nope", "a.wav", SERCAF_DEBUG="1"),
    ):
        assert result.returncode == 1
        assert "Traceback" in result.stderr
        assert "UserError" in result.stderr


def test_predict_help_shows_defaults():
    result = sercaf("predict", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, default in (
        ("--window", "4.0"),
        ("--hop", "2.0"),
        ("--long_threshold", "30.0"),
        ("--min_seconds", "1.0"),
        ("--batch_size", "8"),
    ):
        assert option in text
        assert f"(default: {default})" in text
    # One spelling listed; the other is accepted (see the alias test).
    assert "--long-threshold" not in text
    assert "--threads N" in text


def test_min_seconds_default_is_the_library_one():
    from sercaf_toolkit.deployment.inference import MIN_SECONDS

    args = cli.build_parser().parse_args(["predict", "m", "a.wav"])
    assert args.min_seconds == MIN_SECONDS


def test_every_option_has_a_help_text():
    parser = cli.build_parser()
    (subparsers,) = [
        action
        for action in parser._actions
        if action.__class__.__name__ == "_SubParsersAction"
    ]
    assert set(subparsers.choices) == {
        "cv",
        "predict",
        "serve",
        "compare",
        "attention",
        "export-onnx",
        "evaluate",
        "table",
    }
    for name, subparser in subparsers.choices.items():
        for action in subparser._actions:
            assert action.help, (name, action.dest)


def test_subcommands_dispatch_through_func_and_bugs_keep_tracebacks(
    monkeypatch, capsys
):
    def broken(args):
        raise RuntimeError("a bug")

    def mistaken(args):
        raise UserError("the thing\nand the fix")

    monkeypatch.setattr(cli, "_table", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["table", "x.json"])
    monkeypatch.setattr(cli, "_table", mistaken)
    assert cli.main(["table", "x.json"]) == 2
    assert capsys.readouterr().err == "sercaf: error: the thing and the fix\n"


def test_version_is_the_package_version():
    result = sercaf("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sercaf {sercaf_toolkit.__version__}"


def test_setup_reads_the_version_from_the_package():
    result = subprocess.run(
        [sys.executable, "setup.py", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == sercaf_toolkit.__version__


def every_option():
    """(subcommand, parser, option string) of every ``--long`` option."""
    parser = cli.build_parser()
    (subparsers,) = [
        action
        for action in parser._actions
        if action.__class__.__name__ == "_SubParsersAction"
    ]
    for name, subparser in [("", parser), *subparsers.choices.items()]:
        for action in subparser._actions:
            for option in action.option_strings:
                if option.startswith("--"):
                    yield name, subparser, action, option


def test_every_option_takes_both_spellings():
    for name, subparser, action, option in every_option():
        other = cli.other_spelling(option)
        if other is None:
            continue
        assert other in subparser._option_string_actions, (name, option)
        alias = subparser._option_string_actions[other]
        assert alias.dest == action.dest, (name, option)


@pytest.mark.parametrize(
    "spelling", ["--batch_size", "--batch-size"], ids=["under", "hyphen"]
)
def test_options_parse_the_same_in_both_spellings(spelling):
    parser = cli.build_parser()
    args = parser.parse_args(
        ["predict", "m", "a.wav", spelling, "3",
         "--long-threshold", "5", "--no_progress", "--min-seconds", "0.5"]
    )  # fmt: skip
    assert args.batch_size == 3 and args.long_threshold == 5.0
    assert args.no_progress and args.min_seconds == 0.5
    args = parser.parse_args(
        ["evaluate", "m", "--data-folder", "x", "--no-progress"]
    )
    assert args.data_folder == "x" and args.no_progress
    args = parser.parse_args(["cv", "r", "a.yaml", "--output-root", "o"])
    assert args.output_root == "o"


@pytest.mark.parametrize("name", ["out.txt", "out.xlsx", "out"])
def test_predict_refuses_an_out_it_cannot_write(fake_model, tmp_path, name):
    """One line naming the extension and the writable ones; nothing is
    loaded (the fake model would fail) or written."""
    out = tmp_path / name
    result = sercaf("predict", fake_model, tmp_path, "--out", out)
    line = assert_user_error(result, f"--out {out}", ".csv or .json")
    extension = pathlib.Path(name).suffix
    assert (
        f"cannot write {extension} files" if extension else "extension"
    ) in line
    assert not out.exists()


def test_threads_default_follows_omp_num_threads(monkeypatch):
    from sercaf_toolkit.threads import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    args = cli.build_parser().parse_args(["predict", "m", "a.wav"])
    cli._check_threads(args)
    assert args.threads == 3 == default_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= default_threads() <= min(os.cpu_count() or 1, 4)
    args = cli.build_parser().parse_args(["evaluate", "m", "--threads", "2"])
    cli._check_threads(args)
    assert args.threads == 2


def test_cv_folds_out_of_range_are_one_line_before_anything_runs(tmp_path):
    root = tmp_path / "cv"
    result = sercaf(
        "cv",
        ROOT / "recipes" / "Demo",
        "hparams/caf.yaml",
        "--folds",
        "3-5",
        "--output-root",
        root,
        "--",
        f"--data_folder={tmp_path / 'data'}",
    )
    assert_user_error(result, "--folds 3-5", "fold 5", "folds 1-4")
    assert not root.exists()  # nothing written


def test_cv_into_a_root_in_use_is_one_line(tmp_path):
    root = tmp_path / "cv"
    root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "input()"], stdin=-1)
    lock = (
        f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}", '
        '"started": "2026-01-01T10:00:00", "command": "sercaf cv"}'
    )
    (root / "run.lock").write_text(lock)
    try:
        result = sercaf(
            "cv",
            ROOT / "recipes" / "Demo",
            "hparams/caf.yaml",
            "--output-root",
            root,
            "--",
            f"--data_folder={tmp_path / 'data'}",
        )
    finally:
        holder.communicate(b"\n")
    assert_user_error(
        result, f"{root} is in use", f"pid {holder.pid}", "--output-root"
    )
    assert sorted(p.name for p in root.iterdir()) == ["run.lock"]
