"""Runs the Python and shell examples of README.md, docs/ and the recipes'
READMEs, so that documentation cannot drift from the code. The pages are
split between two test files, so that the two test processes share the
work (pyproject.toml's addopts), each file in a working directory of its
own:

- tests/test_docs.py: the pages that use the README's main job (the demo
  recipe's run, ``results/Demo/caf/fold_1/seed_1986``), in a working
  directory where that command has run; every page not listed in
  :data:`STANDALONE_PAGES` is one of them;
- tests/test_docs_standalone.py: the pages of :data:`STANDALONE_PAGES`,
  which run what they use themselves, in a working directory holding the
  demo corpus (``demo_data``, as the main job writes it) but no run of it.

Both working directories hold the mock data below. Shell examples run
with these substitutions, and no others:

- the README's install prefix (``python3 -m venv ... && pip install ... &&``)
  is dropped: CI installs the project in a fresh environment itself;
- ``python -m pytest`` (this suite) is not run from inside itself, nor are
  commands that need GPUs or several machines (``nccl``, ``cuda``,
  ``--master_addr``) or that time base-size models on the CPU
  (``benchmark.py --size base``);
- ``/data/<corpus>`` paths point to mock corpora with the real naming, and
  hub ids (``facebook/...``, ``microsoft/...``) to tiny local models of the
  same family;
- commands of the real-corpus recipes get overrides that make them quick
  (one epoch, tiny widths) and ``sercaf cv`` runs fold 1 only; the demo
  recipe's commands train on 3 utterances per speaker and emotion (the
  README's main job, run once for tests/test_docs.py, on all 10);
- a shell ``for`` loop over a grid (SSL models, encoders) runs for its
  first value only: every command of the loop body still runs, and the
  other values' code (the other hub models' families) is tested in
  test_ssl.py.

Within a test file the examples run in the pages' order, each page's
Python examples before its shell examples, so that an example finds what
the ones before it on its page made.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from sercaf_toolkit.corpora.demo import generate_demo_corpus
from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model
from sercaf_toolkit.training.recipe import run_recipe
from tests.mock_corpora import (
    make_casia,
    make_emodb,
    make_iemocap,
    make_msppodcast,
    make_ravdess,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "recipes").glob("*/README.md")),
]
# The pages of tests/test_docs_standalone.py: none uses the README's main
# job (test_docs_standalone.py checks that none names its run). The split
# balances the two files' running times (each about half of the docs'
# examples); pages whose commands repeat each other's runs (a finished run
# is skipped) stay in one file.
STANDALONE_PAGES = [
    ROOT / "docs" / name
    for name in (
        "dimensional.md",
        "learning.md",
        "lobes.md",
        "paper_comparison.md",
        "performance.md",
        "scaling.md",
    )
] + [
    ROOT / "recipes" / name / "README.md"
    for name in ("Custom", "Demo", "EmoDB", "Expressive", "MSPPodcast")
]
MAIN_JOB_PAGES = [page for page in PAGES if page not in STANDALONE_PAGES]
# What names the README's main job's run (or the tiny SSL model it builds
# in the demo corpus folder): no standalone page may use it.
MAIN_JOB_RUN = ("results/Demo/caf/fold_1/seed_1986", "demo_data/tiny_")

PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)
SHELL = re.compile(r"```bash\n(.*?)```", re.DOTALL)
INSTALL = re.compile(
    r"^python3 -m venv \S+ && \. \S+/bin/activate && pip install [^&]+&& "
)
NOT_HERE = ("python -m pytest", "nccl", "cuda", "--master_addr", "--size base")
CORPUS_RECIPE = re.compile(
    r"recipes/(IEMOCAP|EmoDB|CASIA|RAVDESS|Custom|MultiCorpus|MSPPodcast)"
    r"/train\.py"
)
# Demo recipe commands: 3 of the 10 utterances per speaker and emotion.
DEMO_QUICK = "--utterances_per_emotion=3"
# "for x in a b c; do": the first value only (see the module docstring).
FOR_LOOP = re.compile(r"^(for \w+ in \S+)(?: [^;]+)?(?=; do\b)")
QUICK = (
    "--number_of_epochs=1 --n_mels=32 --dpcnn_filters=8 --rcnn_embedding=8 "
    "--rcnn_hidden=4 --fusion_size=16 --num_workers=0"
)


def examples(pattern, pages=PAGES):
    """``pytest.param``s of the pages' examples, in the pages' order."""
    return [
        pytest.param(code, id=f"{page.relative_to(ROOT)}-{index}")
        for page in pages
        for index, code in enumerate(pattern.findall(page.read_text()))
    ]


def make_workspace(folder, main_job):
    """A working directory for the examples, plus mock data.

    It stands for the repository root (examples call ``recipes/...``), so
    the recipes and benchmarks are linked in; outputs stay in it. With
    ``main_job`` the README's main job runs in it; else it gets the demo
    corpus that job writes (``demo_data``) and nothing else of the run.
    """
    for name in ("recipes", "benchmarks"):
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    if main_job:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            run_recipe(
                ["hparams/caf.yaml", "--device=cpu"],
                script_dir=str(ROOT / "recipes" / "Demo"),
            )
    else:
        # The main job's corpus: recipes/Demo/corpus.yaml's data_folder
        # (demo_data) and utterances_per_emotion (10, the default here).
        generate_demo_corpus(str(folder / "demo_data"))
    data = folder / "data"
    make_casia(str(data / "CASIA"))
    make_emodb(str(data / "emodb"))
    make_iemocap(str(data / "IEMOCAP_full_release"))
    make_ravdess(str(data / "RAVDESS"))
    make_msppodcast(str(data / "MSPPodcast"), per_partition=8)
    # A corpus CSV for the Custom recipe: demo files, two classes.
    calm = {
        "neutral": "calm",
        "sad": "calm",
        "happy": "tense",
        "angry": "tense",
    }
    rows = ["path,label,speaker"] + [
        f"{wav},{calm[wav.stem.split('_')[2]]},{wav.parent.name}"
        for wav in sorted((folder / "demo_data").glob("spk*/*_0[0-2].wav"))
    ]
    (data / "corpus.csv").write_text("\n".join(rows) + "\n")
    for name in ("wav2vec2-base", "hubert-base-ls960", "wavlm-base-plus"):
        owner = "microsoft" if "wavlm" in name else "facebook"
        family = next(f for f in ("hubert", "wavlm", "wav2vec2") if f in name)
        build_tiny_ssl_model(str(folder / "hub" / owner / name), family)
    return folder


def runnable(script, workspace):
    """The shell example with the substitutions of the module docstring."""
    lines = []
    for line in script.replace("\\\n", " ").splitlines():
        # The README's main job (its install prefix dropped) asks the
        # workspace's run again, as written.
        main_job = bool(INSTALL.search(line.strip()))
        line = INSTALL.sub("", line.strip())
        if not line or any(marker in line for marker in NOT_HERE):
            continue
        line = FOR_LOOP.sub(r"\1", line)
        line = line.replace("/data/", f"{workspace}/data/")
        line = re.sub(r"\b(facebook|microsoft)/", f"{workspace}/hub/\\1/", line)
        options = QUICK.split() + [
            f"--ssl_source={workspace}/hub/facebook/wav2vec2-base"
        ]
        demo = "recipes/Demo" in line and not main_job and "--help" not in line
        if demo:
            options.append(DEMO_QUICK)
        # Options the example gives itself are kept as written.
        quick = " ".join(
            o for o in options if o.split("=")[0] + "=" not in line
        )
        # One seed of a seed list: the seeds' code runs in test_protocol.
        line = re.sub(r"--seeds (\d+)[\d,]*", r"--seeds \1", line)
        if line.startswith("sercaf cv") and " -- " in line:
            line = line.replace(" -- ", f" --folds=1 -- {quick} ", 1)
        elif CORPUS_RECIPE.search(line):
            line = f"{line} {quick}"
        elif demo and DEMO_QUICK.split("=")[0] + "=" not in line:
            line = f"{line} {DEMO_QUICK}"
        lines.append(line)
    return "\n".join(lines)


def run_python(code, workspace, monkeypatch):
    """Runs a Python example in the workspace."""
    monkeypatch.chdir(workspace)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})


def run_shell(script, workspace):
    """Runs a shell example (see :func:`runnable`) in the workspace."""
    command = runnable(script, workspace)
    if not command:
        pytest.skip("needs what tests cannot have (see tests/docs_examples.py)")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    result = subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        command,
        result.stdout[-2000:],
        result.stderr[-4000:],
    )
