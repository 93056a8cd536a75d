"""The examples of the pages that run what they use themselves
(tests/docs_examples.py's STANDALONE_PAGES) run, in a working directory
holding the demo corpus and the mock data; the other pages' examples, in
one where the README's main job has run, are in test_docs.py. Its half of
the pages runs in the other test process, at the same time. What runs, and
how: tests/docs_examples.py.
"""

import pytest

from tests.docs_examples import (
    MAIN_JOB_RUN,
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
    """A working directory with the demo corpus and mock data."""
    return make_workspace(tmp_path_factory.mktemp("workspace"), main_job=False)


def test_standalone_pages_do_not_use_the_main_job():
    """Their working directory has no run of the README's main job: a page
    whose examples use it belongs in test_docs.py (leave it out of
    STANDALONE_PAGES)."""
    for example in examples(PYTHON, STANDALONE_PAGES) + examples(
        SHELL, STANDALONE_PAGES
    ):
        code = example.values[0]
        assert not any(name in code for name in MAIN_JOB_RUN), example.id


@pytest.mark.parametrize("code", examples(PYTHON, STANDALONE_PAGES))
def test_python_example_runs(code, workspace, monkeypatch):
    run_python(code, workspace, monkeypatch)


@pytest.mark.parametrize("script", examples(SHELL, STANDALONE_PAGES))
def test_shell_example_runs(script, workspace):
    run_shell(script, workspace)
