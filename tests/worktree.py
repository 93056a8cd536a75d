"""What the test suite leaves in the work tree: ``git status``, file by file.

The root ``conftest.py`` compares the work tree before and after a test
session and fails the session when a test left a file there, ignored
folders (``results/``, ``demo_data/``) included: tests write into
temporary folders, never into the checkout.
"""

import os
import subprocess

# Written by merely importing or checking the code: not a test's output.
NOISE = ("__pycache__/", ".pyc", ".ruff_cache/", ".pytest_cache/")


def worktree_entries(root):
    """``git status`` entries of ``root``: changed, untracked and ignored
    files, each listed on its own; ``None`` outside a git work tree.

    Arguments
    ---------
    root : str or pathlib.Path
        A folder inside the work tree.

    Returns
    -------
    set of str or None
        Porcelain status lines (``?? path``, ``!! path``, `` M path``).
    """
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--ignored",
             "--untracked-files=all", "-z"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            # Reading the status must not rewrite the index beside a
            # developer's own git commands.
            env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return {
        entry
        for entry in result.stdout.split("\0")
        if entry and not any(noise in entry for noise in NOISE)
    }


def left_behind(before, after):
    """The entries that appeared between two :func:`worktree_entries`."""
    if before is None or after is None:
        return []
    return sorted(after - before)
