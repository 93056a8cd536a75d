"""Test-wide settings: no model hub, few threads, quiet HF progress bars;
and the work tree as clean after the tests as before."""

import os
import pathlib

import pytest

from tests.worktree import left_behind, worktree_entries

ROOT = pathlib.Path(__file__).resolve().parent

# Set before transformers / huggingface_hub are imported anywhere: tests
# must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# The test files that take minutes, slowest first. pyproject.toml's addopts
# (--dist loadfile --no-loadscopereorder) hand whole files to the two test
# processes in collection order, the next file to whichever process is
# nearly done: these come first, so the two docs files (each about half of
# the documentation's examples) start at once, one in each process, and
# the short files fill in around the long ones.
SLOW_FIRST = (
    "tests/test_docs.py",
    "tests/test_docs_standalone.py",
)


@pytest.fixture(scope="session", autouse=True)
def work_tree_left_clean():
    """Fails the session (an error after the last test) when the tests
    left files in the work tree: they belong in temporary folders."""
    before = worktree_entries(ROOT)
    yield
    stray = left_behind(before, worktree_entries(ROOT))
    if stray:
        shown = ", ".join(stray[:10]) + (" ..." if len(stray) > 10 else "")
        pytest.fail(
            f"the tests left {len(stray)} file(s) in the work tree {ROOT} "
            f"(git status --ignored): {shown}; write them under tmp_path",
            pytrace=False,
        )


def pytest_collection_modifyitems(config, items):
    """Moves the files of :data:`SLOW_FIRST` to the front, in its order;
    each file's tests, and the other files, keep their order."""
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
