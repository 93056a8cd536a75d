"""Every Python example in README.md and docs/ runs as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

EXAMPLES = [
    pytest.param(code, id=f"{page.name}-{index}")
    for page in PAGES
    if page.exists()
    for index, code in enumerate(BLOCK.findall(page.read_text()))
]


def test_docs_have_examples():
    assert EXAMPLES, "no Python examples found in README.md or docs/"


@pytest.mark.parametrize("code", EXAMPLES)
def test_python_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
