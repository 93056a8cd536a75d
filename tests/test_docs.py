"""The examples of the pages that use the README's main job (README.md,
and every page not in tests/docs_examples.py's STANDALONE_PAGES) run, in a
working directory where that command has run; the other pages' examples
are in test_docs_standalone.py. What runs, and how: tests/docs_examples.py.
"""

import pytest

from tests.docs_examples import (
    MAIN_JOB_PAGES,
    PAGES,
    PYTHON,
    SHELL,
    STANDALONE_PAGES,
    examples,
    make_workspace,
    run_python,
    run_shell,
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory after the README's main job, plus mock data."""
    return make_workspace(tmp_path_factory.mktemp("workspace"), main_job=True)


def test_docs_have_examples():
    assert len(examples(PYTHON)) >= 5 and len(examples(SHELL)) >= 10


def test_every_page_is_tested_once():
    """The two docs test files share the pages out: each page in one."""
    assert set(STANDALONE_PAGES) <= set(PAGES)
    assert sorted(MAIN_JOB_PAGES + STANDALONE_PAGES) == sorted(PAGES)


@pytest.mark.parametrize("code", examples(PYTHON, MAIN_JOB_PAGES))
def test_python_example_runs(code, workspace, monkeypatch):
    run_python(code, workspace, monkeypatch)


@pytest.mark.parametrize("script", examples(SHELL, MAIN_JOB_PAGES))
def test_shell_example_runs(script, workspace):
    run_shell(script, workspace)
