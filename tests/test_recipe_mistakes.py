"""A user's mistakes with a recipe: one line, exit status 2, nothing written.

Each case runs the real ``train.py`` with a user's command line (in this
process, with ``runpy``: an interpreter per case cost 3-4 s of imports)
and checks the exit status, a single stderr line naming the key or path
(no traceback: any other exception fails the test), and that an existing
output folder is left exactly as it was.
"""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from tests.mock_corpora import make_emodb, tiny_wav

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


def folder_digest(folder):
    """Every file's hash and every folder: an output folder created and
    left empty counts as written."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        if path.is_file()
        else "folder"
        for path in sorted(pathlib.Path(folder).rglob("*"))
    }


def run(recipe, *args, cwd):
    """The recipe's ``train.py`` as ``python train.py ARGS`` runs it, in
    this process (a new interpreter per case cost 3-4 s of imports)."""
    import contextlib
    import io
    import runpy
    import types

    script = str(RECIPES / recipe / "train.py")
    _drop_closed_log_handlers()
    stderr, code = io.StringIO(), 0
    argv, here = sys.argv, os.getcwd()
    try:
        sys.argv = [script, *args]
        os.chdir(cwd)
        with contextlib.redirect_stderr(stderr):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        code = done.code
    finally:
        sys.argv = argv
        os.chdir(here)
    return types.SimpleNamespace(returncode=code, stderr=stderr.getvalue())


def _drop_closed_log_handlers():
    """Removes log handlers left writing to a stream that is closed.

    An earlier test in this process may have run a recipe whose logging
    set-up bound a handler to pytest's captured stderr of that test, now
    closed: a record reaching it prints "--- Logging error ---" here,
    which a fresh ``python train.py`` never would.
    """
    import logging

    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            if getattr(stream, "closed", False):
                logger.removeHandler(handler)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding a finished-looking run that no mistake may touch."""
    folder = tmp_path_factory.mktemp("mistakes")
    run_folder = folder / "results" / "run"
    run_folder.mkdir(parents=True)
    (run_folder / "test_metrics.json").write_text('{"UA": 0.5}\n')
    (run_folder / "hyperparams.yaml").write_text("# the finished run\n")
    # Corpora that exist: a mock EmoDB, a CSV corpus, and folders or a CSV
    # file that exist but hold no corpus.
    make_emodb(str(folder / "emodb"))
    lines = ["path,label,speaker"]
    for index, (label, speaker) in enumerate(
        [("calm", "a"), ("tense", "b"), ("calm", "c")]
    ):
        tiny_wav(str(folder / "custom" / f"{index}.wav"), seed=index)
        lines.append(f"{index}.wav,{label},{speaker}")
    (folder / "custom" / "corpus.csv").write_text("\n".join(lines) + "\n")
    (folder / "custom" / "empty.csv").write_text("path,label,speaker\n")
    (folder / "empty_corpus").mkdir()
    return folder


CASES = {
    "misspelt override": (
        "Demo",
        ["hparams/caf.yaml", "--number_of_epoch=2"],
        ["unknown key number_of_epoch", "--number_of_epochs"],
    ),
    "missing hparams file": (
        "Demo",
        ["hparams/cat.yaml"],
        ["hparams/cat.yaml"],
    ),
    "wrong data folder": (
        "EmoDB",
        ["hparams/caf.yaml", "--data_folder=no/such/emodb"],
        ["no/such/emodb", "--data_folder"],
    ),
    "unset data folder": (
        "CASIA",
        ["hparams/sum.yaml"],
        ["data_folder", "--data_folder="],
    ),
    "local SSL folder with a typo": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_source=results/tiny_wav2vec3"],
        ["results/tiny_wav2vec3", "--ssl_source"],
    ),
    "hub id without the hub": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_source=facebook/wav2vec2-base"],
        ["facebook/wav2vec2-base", "--ssl_source=/path"],
    ),
    "fold out of range": (
        "Demo",
        ["hparams/caf.yaml", "--fold=9"],
        ["--fold=9", "1..4"],
    ),
    "unknown validation policy": (
        "Demo",
        ["hparams/caf.yaml", "--validation=speakers"],
        ["speakers", "speaker, group, none"],
    ),
    "unknown corpus among several": (
        "MultiCorpus",
        ["hparams/caf.yaml", "--data_folder=.", "--corpora=[EmoDBB]"],
        ["EmoDBB", "did you mean EmoDB"],
    ),
    "missing folder of one of several corpora": (
        "MultiCorpus",
        ["hparams/caf.yaml", "--data_folder=no/such"],
        ["no/such/emodb", "--data_folder"],
    ),
    "held-out corpus not among the corpora": (
        "MultiCorpus",
        [
            "hparams/caf.yaml",
            "--data_folder=.",
            "--corpora=[Demo,Expressive]",
            "--test_corpus=CASIA",
        ],
        ["test_corpus CASIA", "Demo, Expressive"],
    ),
    # Every pick (a key choosing one of a mapping's entries) is checked
    # against its choices, with the closest one suggested.
    "unknown scratch encoder": (
        "Demo",
        ["hparams/caf.yaml", "--scratch_encoder=dpcn"],
        ["scratch_encoder", "'dpcn'", "did you mean dpcnn?"],
    ),
    "misspelt log-mel normalisation": (
        "Demo",
        ["hparams/caf.yaml", "--logmel_normalization=utterence"],
        ["logmel_normalization", "'utterence'", "did you mean utterance?"],
    ),
    "unknown stream set": (
        "Demo",
        ["hparams/caf.yaml", "--streams=duel"],
        ["streams", "'duel'", "dual, logmel", "did you mean dual?"],
    ),
    # A temperature is fitted on validation speakers the model did not
    # train on.
    "calibration without validation speakers": (
        "Demo",
        ["hparams/caf.yaml", "--validation=none", "--calibrate=True"],
        ["calibrate: True", "validation: none", "--validation=speaker"],
    ),
    "calibration of a refit model": (
        "Demo",
        ["hparams/caf.yaml", "--refit=True", "--calibrate=True"],
        ["calibrate: True", "refit: True"],
    ),
    "misspelt validation policy": (
        "Demo",
        ["hparams/caf.yaml", "--validation=grop"],
        ["grop", "did you mean group?"],
    ),
    "misspelt protocol": (
        "EmoDB",
        [
            "hparams/caf.yaml",
            "--data_folder=emodb",
            "--protocol=leave_one_speakr_out",
        ],
        [
            "protocol",
            "leave_one_speakr_out",
            "did you mean leave_one_speaker_out?",
        ],
    ),
    # Overrides must fit the type of the key's default.
    "integer key given a word": (
        "Demo",
        ["hparams/caf.yaml", "--number_of_epochs=two"],
        ["--number_of_epochs=two", "an integer"],
    ),
    "boolean key given yes": (
        "Demo",
        ["hparams/caf.yaml", "--refit=yes"],
        ["--refit=yes", "true or false"],
    ),
    "float key given a word": (
        "Demo",
        ["hparams/caf.yaml", "--lr=fast"],
        ["--lr=fast", "a number"],
    ),
    # Labels are the corpus's, checked before the data are prepared.
    "a class the corpus does not have": (
        "EmoDB",
        [
            "hparams/caf.yaml",
            "--data_folder=emodb",
            "--labels=[anger,boredom,disgust,fear,hapiness,neutral,sadness]",
        ],
        ["labels", "no class hapiness", "did you mean happiness?"],
    ),
    "a class the corpus has left out": (
        "EmoDB",
        ["hparams/caf.yaml", "--data_folder=emodb", "--labels=[anger,sadness]"],
        ["labels", "boredom", "leaves out"],
    ),
    "a class the CSV does not have": (
        "Custom",
        [
            "hparams/caf.yaml",
            "--data_folder=custom/corpus.csv",
            "--labels=[calm,angry]",
        ],
        ["custom/corpus.csv", "no class angry", "calm, tense"],
    ),
    # A corpus folder (or CSV file) that exists but holds no corpus.
    "empty EmoDB folder": (
        "EmoDB",
        ["hparams/caf.yaml", "--data_folder=empty_corpus"],
        ["empty_corpus", "no usable utterance", "wav/"],
    ),
    "empty IEMOCAP folder": (
        "IEMOCAP",
        ["hparams/caf.yaml", "--data_folder=empty_corpus"],
        ["empty_corpus", "no usable utterance", "Session1"],
    ),
    "CSV file without rows": (
        "Custom",
        [
            "hparams/caf.yaml",
            "--data_folder=custom/empty.csv",
            "--labels=[calm,tense]",
        ],
        ["custom/empty.csv", "lists no audio file"],
    ),
    # Found while preparing the data: every EmoDB speaker says every text.
    "text-disjoint fold without training data": (
        "EmoDB",
        [
            "hparams/caf.yaml",
            "--data_folder=emodb",
            "--streams=logmel",
            "--text_disjoint=True",
        ],
        ["EmoDB fold 1", "no training data", "--text_disjoint=False"],
    ),
    "SSL cache precision": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_cache_precision=bf16"],
        ["--ssl_cache_precision=bf16", "fp16, fp32"],
    ),
    "the probe pooling two streams": (
        "Demo",
        ["hparams/caf.yaml", "--fusion=probe"],
        ["fusion: probe", "--streams=ssl"],
    ),
    "negative SSL fine-tuning layers": (
        "Demo",
        ["hparams/caf.yaml", "--ssl_finetune_layers=-2"],
        ["--ssl_finetune_layers=-2", "top transformer layers"],
    ),
    "another experiment's folder": (
        "Demo",
        ["hparams/film.yaml", "--output_folder=results/run"],
        ["results/run", "--output_folder"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_ends_in_one_line(case, workspace):
    recipe, args, named = CASES[case]
    if case == "another experiment's folder":  # a CAF run holds the folder
        info = workspace / "results" / "run" / "run_info.json"
        info.write_text('{"identity": {"model.fusion": "CAF"}}\n')
    before = folder_digest(workspace)
    result = run(recipe, *args, cwd=workspace)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for part in named:
        assert part in lines[0], lines[0]
    assert folder_digest(workspace) == before  # nothing written or changed


def test_debug_shows_the_traceback(workspace):
    env = dict(os.environ, HF_HUB_OFFLINE="1", SERCAF_DEBUG="1")
    result = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "Demo" / "train.py"),
            "hparams/caf.yaml",
            "--number_of_epoch=2",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def load(text):
    import ruamel.yaml

    return ruamel.yaml.YAML().load(text)


def test_every_pick_form_is_checked():
    """Picks by reference or with an inline mapping, with a referenced or
    a plain choice, anywhere in the tree; tagged choices (built at load
    time) are left alone."""
    from sercaf_toolkit.errors import UserError
    from sercaf_toolkit.hparams_checks import check_choices, picks

    composed = load(
        "heads: {linear: 1, mlp: 2}\n"
        "head: mlp\n"
        "fusion_kind: caf\n"
        "model:\n"
        "    head: !apply:operator.getitem [!ref <heads>, !ref <head>]\n"
        "    fusion: !apply:operator.getitem\n"
        "        - {sum: 1, caf: 2}\n"
        "        - !ref <fusion_kind>\n"
        "    task: !apply:operator.getitem [{a: 1, b: 2}, a]\n"
        "    built: !apply:operator.getitem [!ref <heads>, !apply:str [x]]\n"
    )
    assert [p[1:] for p in picks(composed)] == [
        ("heads", "head"),
        ("model.fusion[0]", "fusion_kind"),
        ("model.task[0]", None),
        ("heads", None),
    ]

    def resolved(head="mlp", fusion="caf", task="a"):
        pick = "!apply:operator.getitem"
        return load(
            f"model:\n"
            f"    head: {pick} [{{linear: 1, mlp: 2}}, {head}]\n"
            f"    fusion: {pick} [{{sum: 1, caf: 2}}, {fusion}]\n"
            f"    task: {pick} [{{a: 1, b: 2}}, {task}]\n"
            f"    built: {pick} [{{linear: 1}}, !apply:str [x]]\n"
        )

    check_choices(composed, resolved())
    for arguments, named in (
        ({"head": "mpl"}, "head: 'mpl' is not one of its choices (linear, "
         "mlp: the keys of heads); did you mean mlp?"),
        ({"fusion": "cat"}, "fusion_kind: 'cat'"),
        ({"task": "c"}, "model.task[1]: 'c'"),
    ):  # fmt: skip
        with pytest.raises(UserError) as raised:
            check_choices(composed, resolved(**arguments))
        assert named in str(raised.value)


@pytest.mark.parametrize(
    "override, refused",
    [
        ("epochs: 2", None),
        ("epochs: 2.5", "an integer"),
        ("epochs: true", "an integer"),
        ("lr: 1", None),
        ("lr: 1e-3", None),
        ("lr: fast", "a number"),
        ("flag: false", None),
        ("flag: 1", "true or false"),
        ("flag: null", "true or false"),
        ("weights: [1, 2]", None),
        ("nothing: 3", None),
        ("folder: 2024", None),
        ("placeholder: 1", None),
    ],
)
def test_override_types_follow_the_defaults(override, refused):
    from sercaf_toolkit.errors import UserError
    from sercaf_toolkit.hparams_checks import check_override_types

    composed = load(
        "epochs: 3\nlr: 0.1\nflag: true\nweights: balanced\nnothing: null\n"
        "folder: results\nplaceholder: !PLACEHOLDER\n"
    )
    if refused is None:
        check_override_types(composed, override)
        return
    with pytest.raises(UserError, match=refused) as raised:
        check_override_types(composed, override)
    key, value = override.split(": ")
    assert str(raised.value).startswith(f"--{key}={value}:")


def test_more_fine_tuning_layers_than_a_built_model_has_is_one_line(
    workspace,
):
    """A model whose layer count is known only once it is built (the demo's
    factory, a hub id): one line when it is built (the data is prepared by
    then, the model and the run are not)."""
    result = run(
        "Demo",
        "hparams/caf.yaml",
        "--ssl_finetune_layers=99",
        "--output_folder=results/too_many_layers",
        cwd=workspace,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "--ssl_finetune_layers=99" in lines[0]
    assert "transformer layers" in lines[0]
    assert not (workspace / "results" / "too_many_layers" / "save").exists()
