"""Every Python and shell example in README.md, docs/ and the recipes' READMEs
runs, so that documentation cannot drift from the code.

Examples run in a working directory where the README's main command (the
demo recipe) has run. Shell examples run with these substitutions, and no
others:

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
  README's main job, run once for the whole module, on all 10);
- a shell ``for`` loop over a grid (SSL models, encoders) runs for its
  first value only: every command of the loop body still runs, and the
  other values' code (the other hub models' families) is tested in
  test_ssl.py.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

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


def examples(pattern):
    return [
        pytest.param(code, id=f"{page.relative_to(ROOT)}-{index}")
        for page in PAGES
        for index, code in enumerate(pattern.findall(page.read_text()))
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory after the README's main job, plus mock data.

    It stands for the repository root (examples call ``recipes/...``), so
    the recipes and benchmarks are linked in; outputs stay in it.
    """
    folder = tmp_path_factory.mktemp("workspace")
    for name in ("recipes", "benchmarks"):
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run_recipe(
            ["hparams/caf.yaml", "--device=cpu"],
            script_dir=str(ROOT / "recipes" / "Demo"),
        )
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


def test_docs_have_examples():
    assert len(examples(PYTHON)) >= 5 and len(examples(SHELL)) >= 10


@pytest.mark.parametrize("code", examples(PYTHON))
def test_python_example_runs(code, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("script", examples(SHELL))
def test_shell_example_runs(script, workspace):
    command = runnable(script, workspace)
    if not command:
        pytest.skip("needs what tests cannot have (see the module docstring)")
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
