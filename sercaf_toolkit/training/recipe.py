"""The shared recipe runner: every corpus's ``train.py`` calls it.

A recipe's YAML file (with the layers it ``extends``, see
:mod:`sercaf_toolkit.hparams`) must define (the *recipe contract*):

- overridable keys ``data_folder``, ``output_folder``, ``ssl_source`` (hub
  id or local HF folder), ``fold`` (1-based) and ``number_of_epochs``;
- ``prepare``: a ``!name:`` call of the corpus's preparation function that
  writes ``train_csv``, ``valid_csv`` and ``test_csv`` for ``fold``;
- ``model`` (a :class:`~sercaf_toolkit.lobes.DualStreamModel`),
  ``label_encoder``, ``epoch_counter``, ``checkpointer``, ``opt_class``,
  ``ssl_opt_class`` and the data loader options.

Before anything is loaded or written, the runner checks what a user can
get wrong (the hparams path, override names, unset keys, the corpus folder,
a local SSL folder, an output folder holding another experiment) and stops
with one line naming it and the fix (:class:`~sercaf_toolkit.errors.UserError`).

Outputs in ``output_folder``: ``hyperparams.yaml`` (the merged layers with
the overrides), ``run_info.json``, ``test_metrics.json``,
``predictions.csv``, ``train_log.txt``, ``history.json``, pictures,
checkpoints in ``save/`` and the exported model in ``inference/``.

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib
import json
import os
import shutil
import sys
from typing import NamedTuple

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import (
    get_rank,
    if_main_process,
    run_on_main,
)

from sercaf_toolkit.corpora import check_recipe_corpus
from sercaf_toolkit.corpora.common import (
    DEFAULT_VALIDATION,
    check_validation,
    uses_validation,
)
from sercaf_toolkit.data import (
    build_datasets,
    class_counts,
    loader_kwargs,
    manifest_fields,
    manifest_speakers,
    read_manifest,
    write_manifest,
)
from sercaf_toolkit.deployment.export import (
    export_model,
    run_input_normalization,
)
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.evaluation.results import write_run_outputs
from sercaf_toolkit.hparams import (
    checked_hparams,
    overrides_dict,
    resolve_hparams_path,
)
from sercaf_toolkit.ssl_cache import PRECISIONS, attach_ssl_caches
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.preflight import (
    check_blocks,
    check_training_options,
)
from sercaf_toolkit.training.recipe_options import (
    print_help_and_exit,
    recipe_keys,
    respell_options,
)
from sercaf_toolkit.training.runs import (
    DATA_KEY,
    IDENTITY_VERSION,
    RunInterrupted,
    RunLock,
    check_run_folder,
    empty_run_folder,
    identity_of,
    move_staged,
    prepare_staged,
    split_rerun,
)

# The keys that the runner, SERBrain, the data loaders and SpeechBrain's
# Brain (its run options) read by name; every other key of a recipe exists
# to be referred to (`!ref <key>`) by another.
RECIPE_KEYS = frozenset(
    {
        # recipe contract
        "data_folder", "output_folder", "ssl_source", "fold",
        "number_of_epochs", "prepare", "model", "label_encoder",
        "epoch_counter", "checkpointer", "opt_class", "ssl_opt_class",
        "train_dataloader_opts", "valid_dataloader_opts",
        # data
        "train_csv", "valid_csv", "test_csv", "labels", "sample_rate", "seed",
        "dynamic_batching", "max_batch_length", "num_buckets",
        # SERBrain
        "class_weights", "selection_key", "ssl_warmup_steps", "train_logger",
        "lr_annealing", "lr_annealing_ssl", "compile_streams",
        "validation", "refit", "calibrate", "task",
        # speaker-adversarial training (sercaf_toolkit.lobes.adversary)
        "adversary_weight", "speaker_adversary",
        "mixup_alpha", "average_checkpoints", "average_from",
        # the SSL feature cache (sercaf_toolkit.ssl_cache)
        "ssl_cache", "ssl_cache_folder", "ssl_cache_precision",
        # SpeechBrain run options taken from the YAML
        "precision", "skip_nonfinite_grads", "nonfinite_patience",
        "find_unused_parameters", "ckpt_interval_minutes",
        "ckpt_interval_steps",
    }
)  # fmt: skip


class RecipeResult(NamedTuple):
    """What a recipe run produced."""

    output_folder: str
    inference_folder: str
    metrics: dict


def run_identity(tree, composed=None, run_opts=None):
    """What makes two runs the same experiment, from the unbuilt tree.

    Every setting that shapes data, model or training: the keys in
    :data:`RECIPE_KEYS` and every key they refer to, only the chosen
    entries of picks, without output paths and run options (see
    :func:`sercaf_toolkit.training.runs.identity_of`).

    Arguments
    ---------
    tree : dict
        The resolved, unbuilt tree (:func:`load_recipe`).
    composed : str, optional
        The merged YAML text (:func:`load_recipe`): which keys are used.
        Without it, every key of the tree counts.
    run_opts : mapping, optional
        SpeechBrain's run options (``--precision`` counts).
    """
    return identity_of(tree, composed, RECIPE_KEYS, run_opts)


def check_same_run(identity, output_folder, data=None):
    """Refuses, in one line, to write into a folder of another run.

    Runs before anything is written, so a refused run leaves the folder as
    it was. ``data``: the data fingerprint asked now (or a function giving
    it); see :func:`sercaf_toolkit.training.runs.check_run_folder`.
    """
    check_run_folder(output_folder, identity, data)


def write_run_info(hparams, identity, hparams_file, overrides, path, data=None):
    """Writes what identifies this run: system, fold, split, settings.

    ``identity`` (:func:`run_identity`) and ``data`` (the data
    fingerprint, :func:`sercaf_toolkit.training.runs.data_fingerprint`) are
    what a
    later run into the same folder is compared with.
    """
    from sercaf_toolkit.lobes.model import describe_model

    info = describe_model(hparams["model"])
    source = hparams.get("ssl_source")
    has_ssl = "pretrained" in info["stream_kinds"]
    info["ssl_source"] = source if has_ssl and isinstance(source, str) else None
    info["fold"] = hparams.get("fold")
    info["hparams_file"] = os.path.abspath(hparams_file)
    info["overrides"] = overrides_dict(overrides)
    info["identity_version"] = IDENTITY_VERSION
    info["identity"] = identity
    if data is not None:
        info[DATA_KEY] = data
    split_info = os.path.join(hparams["output_folder"], "split_info.json")
    if os.path.exists(split_info):
        with open(split_info, encoding="utf-8") as source_file:
            info["split"] = json.load(source_file)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)


def train(brain_class, hparams, run_opts, validating=True):
    """Builds the datasets and the Brain, and trains (resuming if it can).

    Returns
    -------
    brain, datasets
    """
    modules = {"model": hparams["model"]}
    adversary = speaker_adversary(hparams)
    if adversary is not None:
        modules["adversary"] = adversary
    datasets = build_datasets(hparams, hparams["label_encoder"])
    if hparams.get("task", "categorical") != "dimensional":
        hparams["train_class_counts"] = class_counts(
            hparams["train_csv"], hparams["label_encoder"]
        )
    if hparams.get("ssl_cache") and hparams.get("ssl_cache_folder"):
        attach_ssl_caches(
            hparams["model"],
            str(hparams["ssl_cache_folder"]),
            hparams.get("sample_rate", 16000),
            hparams.get("ssl_cache_precision", "fp16"),
        )
    brain = brain_class(
        modules=modules,
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if hparams.get("compile_streams"):
        for stream in hparams["model"].streams:
            stream.compile(dynamic=True)  # in place: state dict keys unchanged
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"] if validating else None,
        train_loader_kwargs=loader_kwargs(
            hparams, "train_dataloader_opts", datasets["train"], shuffle=True
        ),
        valid_loader_kwargs=loader_kwargs(
            hparams, "valid_dataloader_opts", datasets["valid"], shuffle=False
        )
        if validating
        else {},
    )
    return brain, datasets


def speaker_adversary(hparams):
    """Builds the speaker adversary of a training, if the recipe has one.

    With ``adversary_weight`` above 0, ``speaker_adversary`` (a ``!name:``
    factory of :class:`~sercaf_toolkit.lobes.adversary.SpeakerAdversary`)
    is called with the model's widths and the number of speakers in
    ``train_csv``, whose sorted names become ``hparams["train_speakers"]``
    (the targets :func:`~sercaf_toolkit.data.build_datasets` encodes). It
    is a training device kept beside the model, never inside it: the
    checkpoints keep it for resuming, the exported model has none of it.

    Returns
    -------
    SpeakerAdversary or None
    """
    if not hparams.get("adversary_weight"):
        return None
    speakers = manifest_speakers(hparams["train_csv"])
    if len(speakers) < 2:
        raise UserError(
            f"adversary_weight: {hparams['adversary_weight']} needs at "
            f"least 2 training speakers to tell apart, and "
            f"{hparams['train_csv']} has {len(speakers)}; use "
            "--adversary_weight=0 for this protocol"
        )
    hparams["train_speakers"] = speakers
    model = hparams["model"]
    adversary = hparams["speaker_adversary"](
        input_size=model.fusion.output_size,
        n_speakers=len(speakers),
        stream_sizes=[stream.output_size for stream in model.streams],
    )
    hparams["checkpointer"].add_recoverable("speaker_adversary", adversary)
    return adversary


def write_refit_manifests(output_folder, refit_hparams):
    """The refit's manifests: train+valid speakers train, same test."""
    os.makedirs(refit_hparams["output_folder"], exist_ok=True)
    splits = {
        name: read_manifest(os.path.join(output_folder, f"{name}.csv"))
        for name in ("train", "valid", "test")
    }
    fields = manifest_fields(splits["train"])
    write_manifest(
        splits["train"] + splits["valid"], refit_hparams["train_csv"], fields
    )
    write_manifest([], refit_hparams["valid_csv"], fields)
    write_manifest(splits["test"], refit_hparams["test_csv"], fields)


def recipe_command_line(argv, script_dir=None):
    """A recipe's arguments before SpeechBrain parses them.

    Answers ``--help`` (the recipe's keys, not only SpeechBrain's run
    options: SpeechBrain's parser knows no keys) and respells
    ``--key-name`` as the key ``--key_name``.
    """
    script_dir = script_dir or os.getcwd()
    print_help_and_exit(argv, script_dir, os.path.join(script_dir, "train.py"))
    if not argv or argv[0].startswith("-"):
        return list(argv)  # SpeechBrain reports the missing hparams file
    path = resolve_hparams_path(argv[0], script_dir)
    return respell_options(argv, recipe_keys(path))


def load_recipe(argv, script_dir=None):
    """Parses, merges and checks a recipe's hparams; builds nothing.

    ``-h``/``--help`` prints the recipe's keys and exits 0; a key may
    be given as ``--key-name`` too (see
    :mod:`sercaf_toolkit.training.recipe_options`).

    Returns
    -------
    hparams_file, run_opts, overrides, composed, tree
        The hparams path, SpeechBrain's run options, the overrides (YAML
        text), the merged YAML text and its resolved, unbuilt tree.
    """
    argv = recipe_command_line(argv, script_dir)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams_file = resolve_hparams_path(hparams_file, script_dir or os.getcwd())
    composed, tree = checked_hparams(hparams_file, overrides)
    check_recipe_corpus(tree)
    validation = str(tree.get("validation", DEFAULT_VALIDATION))
    check_validation(validation)
    if tree.get("refit") and not uses_validation(validation):
        raise UserError(
            "refit: True retrains for the epoch count that validation "
            "chose; use --validation=speaker or group with it"
        )
    check_calibration(tree, validation)
    check_training_options(tree)
    check_ssl_settings(tree)
    check_probe_streams(tree)
    # Only the picked blocks: a run without an SSL stream checks no SSL model.
    check_blocks(tree)
    return hparams_file, run_opts, overrides, composed, tree


def check_calibration(tree, validation):
    """Refuses ``calibrate: True`` where no held-out speakers are left.

    The temperature is fitted on the validation speakers' predictions:
    ``validation: none`` has none, and with ``refit: True`` the tested
    model has trained on them (its temperature would be fitted on its own
    training data, and come out too low).

    Raises
    ------
    UserError
        One line naming the conflict and the fix.

    Example
    -------
    >>> check_calibration({"calibrate": True}, "speaker")
    >>> check_calibration({"calibrate": True}, "none")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: calibrate: True fits the temperature \
on the validation speakers, and validation: none has none; use \
--validation=speaker or group with it
    """
    if not tree.get("calibrate"):
        return
    if tree.get("task") == "dimensional":
        raise UserError(
            "calibrate: True fits the temperature of the classifier's "
            "probabilities, and task: dimensional has no classifier; use "
            "--task=joint or leave calibrate off"
        )
    if not uses_validation(validation):
        raise UserError(
            "calibrate: True fits the temperature on the validation "
            f"speakers, and validation: {validation} has none; use "
            "--validation=speaker or group with it"
        )
    if tree.get("refit"):
        raise UserError(
            "calibrate: True fits the temperature on the validation "
            "speakers, and refit: True trains the tested model on them; "
            "use one of the two"
        )


def check_probe_streams(tree):
    """Refuses ``fusion: probe`` over a stream set of other than one stream.

    The probe pools one stream (``ProbePooling``); found here, before the
    data is prepared, rather than when the model is built.

    Example
    -------
    >>> sets = {"dual": ["a", "b"], "ssl": ["a"]}
    >>> check_probe_streams({"fusion": "probe", "streams": "ssl",
    ...                      "stream_sets": sets})
    >>> check_probe_streams({"fusion": "probe", "streams": "dual",
    ...                      "stream_sets": sets})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: fusion: probe pools one stream and \
streams: dual has 2; add --streams=ssl (as hparams/frozen_probe.yaml does)
    """
    if tree.get("fusion") != "probe":
        return
    streams = (tree.get("stream_sets") or {}).get(tree.get("streams"))
    if isinstance(streams, list) and len(streams) != 1:
        raise UserError(
            f"fusion: probe pools one stream and streams: "
            f"{tree.get('streams')} has {len(streams)}; add --streams=ssl "
            "(as hparams/frozen_probe.yaml does)"
        )


def check_ssl_settings(tree):
    """Fails in one line on a wrong SSL cache or fine-tuning setting.

    ``ssl_finetune_layers`` is checked against the model's layer count
    when ``ssl_source`` is a local folder (a hub id's config is only read
    when the model is built).

    Example
    -------
    >>> check_ssl_settings({"ssl_cache_precision": "fp16"})
    >>> check_ssl_settings({"ssl_finetune_layers": -1})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --ssl_finetune_layers=-1: give the \
number of top transformer layers to fine-tune (0: frozen), or null
    """
    precision = tree.get("ssl_cache_precision", "fp16")
    if precision not in PRECISIONS:
        raise UserError(
            f"--ssl_cache_precision={precision}: use one of "
            f"{', '.join(PRECISIONS)}"
        )
    layers = tree.get("ssl_finetune_layers")
    if layers is None:
        return
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
        raise UserError(
            f"--ssl_finetune_layers={layers}: give the number of top "
            "transformer layers to fine-tune (0: frozen), or null"
        )
    config = os.path.join(str(tree.get("ssl_source", "")), "config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as source:
            count = json.load(source).get("num_hidden_layers")
        if isinstance(count, int) and layers > count:
            raise UserError(
                f"--ssl_finetune_layers={layers}: {tree['ssl_source']} has "
                f"{count} transformer layers"
            )


def run_recipe(argv=None, script_dir=None, brain_class=SERBrain):
    """Prepares data, trains, tests and exports, as the YAML file says.

    A folder holds one run: asked again with the same settings and data,
    a run resumes (or, finished, is tested and exported again); with any
    difference (:func:`run_identity`, the data fingerprint) it is refused
    in one line before anything is written, unless ``--rerun`` empties
    the folder first. While it runs, ``run.lock`` keeps other runs out
    (:class:`sercaf_toolkit.training.runs.RunLock`).

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments: the hparams file, SpeechBrain run options
        (``--device``, ``--precision``, ...), ``--key=value`` overrides
        of YAML keys and ``--rerun``. Default: ``sys.argv[1:]``.
    script_dir : str, optional
        The recipe's folder, where the hparams path is looked for second.
    brain_class : type
        The Brain to train with.

    Returns
    -------
    RecipeResult
        The output and inference folders and the test metrics (as written
        to ``test_metrics.json``).

    Raises
    ------
    sercaf_toolkit.training.runs.RunInterrupted
        On Ctrl-C: a ``KeyboardInterrupt`` saying where the run stopped.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, rerun = split_rerun(argv)
    progress = {"phase": "before training"}
    try:
        return _run_recipe(argv, script_dir, brain_class, rerun, progress)
    except KeyboardInterrupt as error:
        if isinstance(error, RunInterrupted):
            raise
        how = "the same command" + (" without --rerun" if rerun else "")
        raise RunInterrupted(
            f"interrupted {_where(progress)}; rerun {how} to resume"
        ) from None


def _where(progress):
    """Where a run was when interrupted, for the one-line message."""
    counter = progress.get("counter")
    if progress["phase"] in ("training", "refit") and counter is not None:
        epoch = max(int(counter.current), 1)
        refit = " of the refit" if progress["phase"] == "refit" else ""
        return f"during epoch {epoch}{refit}"
    return progress["phase"]


def _run_recipe(argv, script_dir, brain_class, rerun, progress):
    hparams_file, run_opts, overrides, composed, tree = load_recipe(
        argv, script_dir
    )
    output_folder = str(tree["output_folder"])
    identity = run_identity(tree, composed, run_opts)
    # Before DDP starts, the rank is in the environment (torchrun). Only
    # the main process locks, checks and prepares; the others wait.
    main_process = (get_rank() or 0) == 0
    lock = (
        RunLock(output_folder, [sys.argv[0], *argv], name=_speaker())
        if main_process
        else contextlib.nullcontext()
    )
    with lock:
        data = None
        if main_process:
            progress["phase"] = "while preparing the data"
            data = _check_and_prepare(
                identity,
                output_folder,
                hparams_file,
                composed,
                overrides,
                rerun,
            )
        sb.utils.distributed.ddp_init_group(run_opts)
        sb.utils.distributed.ddp_barrier()  # the main process prepared
        progress["phase"] = "before training"
        return _train_test_export(
            brain_class,
            hparams_file,
            run_opts,
            overrides,
            composed,
            tree,
            identity,
            data,
            progress,
        )


def _speaker():
    """Who speaks in notices: the recipe script, or ``sercaf``."""
    script = os.path.basename(sys.argv[0] or "")
    return script if script.endswith(".py") else "sercaf"


def _check_and_prepare(
    identity, output_folder, hparams_file, composed, overrides, rerun
):
    """Checks the folder against this run; prepares the data into it.

    The data is prepared into a temporary folder first, so that a run
    refused for other data leaves the run's folder as it was.

    Returns
    -------
    dict
        The data fingerprint.
    """
    if rerun:
        empty_run_folder(output_folder)
    else:  # settings first: a refusal then costs no preparation
        check_same_run(identity, output_folder)
    staging, data = prepare_staged(hparams_file, composed, overrides)
    try:
        check_same_run(identity, output_folder, data)
    except UserError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    move_staged(staging, output_folder)
    return data


def _train_test_export(
    brain_class,
    hparams_file,
    run_opts,
    overrides,
    composed,
    tree,
    identity,
    data,
    progress,
):
    output_folder = str(tree["output_folder"])
    hparams = load_hyperpyyaml(composed, overrides)
    sb.create_experiment_directory(
        experiment_directory=output_folder, overrides=overrides
    )
    if if_main_process():
        with open(os.path.join(output_folder, "hyperparams.yaml"), "w") as out:
            applied = overrides_dict(overrides)
            out.write(f"# {os.path.abspath(hparams_file)}, layers merged")
            out.write(f" and overrides applied: {json.dumps(applied)}\n")
            ruamel.yaml.YAML().dump(tree, out)
        info_file = os.path.join(output_folder, "run_info.json")
        write_run_info(
            hparams, identity, hparams_file, overrides, info_file, data
        )

    label_encoder = hparams["label_encoder"]
    validating = uses_validation(hparams.get("validation", DEFAULT_VALIDATION))
    progress.update(phase="training", counter=hparams["epoch_counter"])
    brain, datasets = train(brain_class, hparams, run_opts, validating)
    if hparams.get("refit"):
        # Model selection chose the epoch count; training again from the
        # same initialisation on train+valid speakers uses all the data.
        epochs = brain.checkpointer.find_checkpoint(
            max_key=brain.selection_key
        ).meta["epoch"]
        hparams = load_hyperpyyaml(
            composed,
            {
                **overrides_dict(overrides),
                "output_folder": os.path.join(output_folder, "refit"),
                "number_of_epochs": epochs,
            },
        )
        run_on_main(write_refit_manifests, args=[output_folder, hparams])
        label_encoder = hparams["label_encoder"]
        progress.update(phase="refit", counter=hparams["epoch_counter"])
        brain, datasets = train(brain_class, hparams, run_opts, False)
        brain.selected_on = (
            f"refit on train+valid speakers for {epochs} epochs (the "
            f"epoch with the best valid {brain.selection_key})"
        )
    elif not validating:
        brain.selected_on = "last epoch (no validation)"
    if hparams.get("calibrate"):
        # After model selection, before the test: the temperature is fitted
        # on the validation speakers only (load_recipe made sure there are
        # some and that the tested model did not train on them).
        progress["phase"] = "while calibrating"
        brain.calibrate(
            datasets["valid"],
            max_key=brain.selection_key,
            loader_kwargs=loader_kwargs(
                hparams, "valid_dataloader_opts", datasets["valid"], False
            ),
        )
    progress["phase"] = "while testing"
    brain.evaluate(
        datasets["test"],
        max_key=brain.selection_key if brain.validating else None,
        test_loader_kwargs=loader_kwargs(
            hparams, "valid_dataloader_opts", datasets["test"], shuffle=False
        ),
    )
    if getattr(brain, "averaging", None):
        # The tested model is an average: say of which epochs, and why
        # those (after a refit: of the refit's last epochs).
        refit = (
            getattr(brain, "selected_on", "") if hparams.get("refit") else ""
        )
        brain.selected_on = brain.averaging["chosen_by"] + (
            f"; {refit}" if refit else ""
        )
    metrics_path = os.path.join(output_folder, "test_metrics.json")
    inference_folder = os.path.join(output_folder, "inference")
    progress["phase"] = "while writing the test results and the export"
    if if_main_process():
        written = write_run_outputs(output_folder, brain, hparams["test_csv"])
        export_model(
            hparams_file,
            overrides,
            hparams["model"],
            label_encoder,
            inference_folder,
            input_normalization=run_input_normalization(output_folder),
        )
        summary = brain.test_summary
        figures = []
        if summary is not None:
            figures.append(
                f"WA {100 * summary['WA']:.1f}  UA {100 * summary['UA']:.1f}"
                f"  F1 {100 * summary['macro_F1']:.1f}"
            )
        dimensions = getattr(brain, "test_dimension_summary", None)
        if dimensions is not None:
            figures.append(
                f"CCC {dimensions['CCC']:.3f} ("
                + ", ".join(
                    f"{name} {dimensions[f'CCC_{name}']:.3f}"
                    for name in brain.dimension_names
                )
                + ")"
            )
        print(
            "Test on unseen speakers: "
            + "  ".join(figures)
            + f"  ({_tested_model(brain)}; "
            + getattr(brain, "selected_on", f"best valid {brain.selection_key}")
            + ")"
        )
        fit = getattr(brain, "calibration", None)
        if fit is not None:
            kept = (
                "" if fit["validation_errors"] else ", none wrong: T kept at 1"
            )
            print(
                f"  calibrated: temperature {fit['temperature']:.3f} "
                f"(fitted on {fit['validation_utterances']} validation "
                f"utterances{kept}); test ECE {fit['ECE_before']:.3f} -> "
                f"{fit['ECE']:.3f}, NLL {fit['NLL_before']:.3f} -> "
                f"{fit['NLL']:.3f}"
            )
        with open(written["metrics"], encoding="utf-8") as source:
            per_corpus = json.load(source).get("per_corpus", {})
        for corpus, figures in per_corpus.items():
            print(
                f"  test speakers of {corpus}: WA {100 * figures['WA']:.1f}  "
                f"UA {100 * figures['UA']:.1f}  F1 {100 * figures['F1']:.1f}"
            )
        written["exported model"] = inference_folder
        for name, path in written.items():
            print(f"  {name}: {path}")
    sb.utils.distributed.ddp_barrier()  # the main process wrote the files
    with open(metrics_path, encoding="utf-8") as source:
        metrics = json.load(source)
    return RecipeResult(output_folder, inference_folder, metrics)


def _tested_model(brain):
    """``epoch 12``, or ``average of epochs 11, 12, 14``."""
    tested = getattr(brain, "tested_model", None)
    return tested() if tested else f"epoch {brain.test_selected_epoch}"


def main(script_file):
    """Runs a recipe's ``train.py``: one line and exit 2 on a user mistake.

    Ctrl-C ends in one line saying where the run stopped (``interrupted
    during epoch 3; rerun the same command to resume``) and exit status
    130. ``SERCAF_DEBUG=1`` shows the traceback as well (``--debug`` is
    SpeechBrain's own run option: a few batches only).
    """
    try:
        return run_recipe(
            sys.argv[1:],
            script_dir=os.path.dirname(os.path.abspath(script_file)),
        )
    except UserError as error:
        if os.environ.get("SERCAF_DEBUG") == "1":
            raise
        print(
            f"{os.path.basename(script_file)}: error: {error}", file=sys.stderr
        )
        sys.exit(2)
    except KeyboardInterrupt as error:
        # Ctrl-C is the user's choice, not a failure: one line, no
        # traceback, and the usual exit status of a SIGINT (128 + 2).
        if os.environ.get("SERCAF_DEBUG") == "1":
            raise
        message = str(error) if isinstance(error, RunInterrupted) else ""
        print(
            f"{os.path.basename(script_file)}: "
            + (message or "interrupted; rerun the same command to resume"),
            file=sys.stderr,
        )
        sys.exit(130)
