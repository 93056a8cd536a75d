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

# Each test process gets its share of the cores, and so do the commands
# the tests start (they inherit OMP_NUM_THREADS). Left alone, PyTorch
# takes every core in each of the -n test processes, and threads fighting
# for the cores made the suite three times slower (test_recipe.py and
# test_robustness.py side by side: 281 s, against 91 s with one thread
# each on 2 cores). Set whatever the caller's OMP_NUM_THREADS: the tests
# check results, which do not depend on it, never speed.
TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
CORES = (
    len(os.sched_getaffinity(0))  # the cores this job may use (Linux)
    if hasattr(os, "sched_getaffinity")
    else os.cpu_count() or 1
)
THREADS_PER_PROCESS = max(1, CORES // TEST_PROCESSES)
os.environ["OMP_NUM_THREADS"] = str(THREADS_PER_PROCESS)
os.environ["MKL_NUM_THREADS"] = str(THREADS_PER_PROCESS)

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


def pytest_configure(config):
    """PyTorch may have read OMP_NUM_THREADS before this file set it."""
    import torch

    torch.set_num_threads(THREADS_PER_PROCESS)


def pytest_collection_modifyitems(config, items):
    """Moves the files of :data:`SLOW_FIRST` to the front, in its order;
    each file's tests, and the other files, keep their order."""
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
