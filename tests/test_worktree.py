"""The tests leave the work tree as they found it; generated data is
ignored by git."""

import pathlib
import subprocess

import pytest
import ruamel.yaml

from tests.worktree import left_behind, worktree_entries

ROOT = pathlib.Path(__file__).resolve().parent.parent


def git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def repository(tmp_path):
    if git("init", "-q", cwd=tmp_path).returncode != 0:
        pytest.skip("git is not available")
    (tmp_path / ".gitignore").write_text("results/\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.csv").write_text("a\n")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    return tmp_path


def test_files_left_in_the_work_tree_are_found(repository):
    """What the session check in conftest.py relies on: a file a test
    leaves is found, in an ignored folder too; bytecode is not."""
    before = worktree_entries(repository)
    assert "!! results/old.csv" in before
    (repository / "results" / "new.csv").write_text("b\n")
    (repository / "stray.csv").write_text("c\n")
    (repository / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_text("")
    after = worktree_entries(repository)
    assert left_behind(before, after) == [
        "!! results/new.csv",
        "?? stray.csv",
    ]
    assert left_behind(after, after) == []


def test_outside_a_work_tree_nothing_is_checked(tmp_path):
    assert worktree_entries(tmp_path / "missing") is None
    assert left_behind(None, {"?? x"}) == []


def default_data_folders():
    """The corpus folders that recipes generate by default (relative)."""
    folders = []
    for corpus in sorted((ROOT / "recipes").glob("*/corpus.yaml")):
        tree = ruamel.yaml.YAML().load(corpus)
        folder = tree.get("data_folder")
        if isinstance(folder, str) and not pathlib.Path(folder).is_absolute():
            folders.append(folder)
    return folders


def test_generated_corpora_and_results_are_ignored_by_git():
    if worktree_entries(ROOT) is None:
        pytest.skip("not a git work tree")
    folders = default_data_folders()
    assert {"demo_data", "expressive_data"} <= set(folders)
    for folder in [*folders, "results", "pretrained"]:
        result = git("check-ignore", "-q", f"{folder}/x.wav", cwd=ROOT)
        assert result.returncode == 0, f"{folder}/ is not in .gitignore"
