"""Every Python example in README.md and docs/ runs as written.

Examples run in a working directory where the demo recipe has been run with
its default output paths (briefly), as after the README's main command.
"""

import pathlib
import re

import pytest

from sercaf_toolkit.recipe import run_recipe

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

EXAMPLES = [
    pytest.param(code, id=f"{page.name}-{index}")
    for page in PAGES
    for index, code in enumerate(BLOCK.findall(page.read_text()))
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory after a short run of the README's main job."""
    folder = tmp_path_factory.mktemp("workspace")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run_recipe(
            [
                "hparams/caf.yaml",
                "--device=cpu",
                "--number_of_epochs=1",
                "--utterances_per_emotion=2",
            ],
            script_dir=str(ROOT / "recipes" / "Demo"),
        )
    return folder


def test_docs_have_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("code", EXAMPLES)
def test_python_example_runs(code, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
