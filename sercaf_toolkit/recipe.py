"""The shared recipe runner: every corpus's ``train.py`` calls it.

A recipe's YAML file must define (the *recipe contract*):

- overridable keys ``data_folder``, ``output_folder``, ``ssl_source`` (hub
  id or local HF folder), ``fold`` (1-based) and ``number_of_epochs``;
- ``prepare``: a ``!name:`` call of the corpus's preparation function that
  writes ``train_csv``, ``valid_csv`` and ``test_csv`` for ``fold``;
- ``model`` (a :class:`~sercaf_toolkit.lobes.DualStreamModel`),
  ``label_encoder``, ``epoch_counter``, ``checkpointer``, ``opt_class``,
  ``ssl_opt_class`` and the data loader options.

Outputs in ``output_folder``: ``test_metrics.json``, ``predictions.csv``,
``train_log.txt``, checkpoints in ``save/`` and the exported model in
``inference/``.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os
import sys
from typing import NamedTuple

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from sercaf_toolkit.brain import SERBrain
from sercaf_toolkit.data import build_datasets, class_counts, loader_kwargs
from sercaf_toolkit.export import export_model
from sercaf_toolkit.lobes.ssl import SSLStream


class RecipeResult(NamedTuple):
    """What a recipe run produced."""

    output_folder: str
    inference_folder: str
    metrics: dict


def describe_model(model):
    """The names that identify a system in a results table.

    Example
    -------
    >>> from functools import partial
    >>> from sercaf_toolkit.lobes import (
    ...     DPCNN, DualStreamModel, EmotionHead, LogMel, SpectrogramStream,
    ...     SumFusion)
    >>> stream = SpectrogramStream(LogMel(n_mels=8), DPCNN(8, 4, 1))
    >>> model = DualStreamModel([stream, stream], partial(SumFusion,
    ...     output_size=4), partial(EmotionHead, n_classes=2))
    >>> describe_model(model)
    {'streams': ['DPCNN', 'DPCNN'], 'fusion': 'SumFusion'}
    """
    names = []
    for stream in model.streams:
        if isinstance(stream, SSLStream):
            names.append(stream.model.config.model_type)
        elif hasattr(stream, "encoder"):
            names.append(type(stream.encoder).__name__)
        else:
            names.append(type(stream).__name__)
    return {"streams": names, "fusion": type(model.fusion).__name__}


def run_identity(hparams):
    """What makes two runs the same experiment: model, SSL source, fold."""
    info = describe_model(hparams["model"])
    source = hparams.get("ssl_source")
    info["ssl_source"] = source if isinstance(source, str) else None
    info["fold"] = hparams.get("fold")
    return info


def check_same_run(hparams, path):
    """Refuses to resume a different experiment's run in the same folder.

    Resuming loads the folder's checkpoints: with another SSL model,
    encoder, fusion block or fold they would not fit, or worse, would fit.
    """
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as source:
        earlier = json.load(source)
    now = run_identity(hparams)
    different = {
        k: (earlier.get(k), v) for k, v in now.items() if earlier.get(k) != v
    }
    if different:
        details = "; ".join(
            f"{k}: {a} then {b}" for k, (a, b) in different.items()
        )
        raise ValueError(
            f"{hparams['output_folder']} holds a run of another experiment "
            f"({details}); give this one its own --output_folder "
            "(or --experiment)"
        )


def write_run_info(hparams, path):
    """Writes what identifies this run: system, fold, protocol, source."""
    info = run_identity(hparams)
    split_info = os.path.join(hparams["output_folder"], "split_info.json")
    if os.path.exists(split_info):
        with open(split_info, encoding="utf-8") as source_file:
            info["split"] = json.load(source_file)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)


def resolve_hparams_path(path, script_dir):
    """Finds the hparams file in the working directory, then the script's.

    So both ``python recipes/X/train.py hparams/caf.yaml`` from the
    repository root and ``python train.py hparams/caf.yaml`` inside
    ``recipes/X`` work.
    """
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(script_dir, path)
    if os.path.exists(candidate):
        return candidate
    raise FileNotFoundError(
        f"hparams file {path!r} found neither in the working directory "
        f"nor in {script_dir}"
    )


def run_recipe(argv=None, script_dir=None, brain_class=SERBrain):
    """Prepares data, trains, tests and exports, as the YAML file says.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments: the hparams file, SpeechBrain run options
        (``--device``, ``--precision``, ...) and ``--key=value`` overrides
        of YAML keys. Default: ``sys.argv[1:]``.
    script_dir : str, optional
        The recipe's folder, where the hparams path is looked for second.
    brain_class : type
        The Brain to train with.

    Returns
    -------
    RecipeResult
        The output and inference folders and the test metrics (as written
        to ``test_metrics.json``).
    """
    argv = sys.argv[1:] if argv is None else argv
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams_file = resolve_hparams_path(hparams_file, script_dir or os.getcwd())
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    info_file = os.path.join(hparams["output_folder"], "run_info.json")
    check_same_run(hparams, info_file)
    run_on_main(hparams["prepare"])
    if if_main_process():
        write_run_info(hparams, info_file)

    label_encoder = hparams["label_encoder"]
    datasets = build_datasets(hparams, label_encoder)
    hparams["train_class_counts"] = class_counts(
        hparams["train_csv"], label_encoder
    )
    brain = brain_class(
        modules={"model": hparams["model"]},
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if hparams.get("compile_streams"):
        for stream in hparams["model"].streams:
            stream.compile(dynamic=True)  # in place: state dict keys unchanged
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=loader_kwargs(
            hparams, "train_dataloader_opts", datasets["train"], shuffle=True
        ),
        valid_loader_kwargs=loader_kwargs(
            hparams, "valid_dataloader_opts", datasets["valid"], shuffle=False
        ),
    )
    brain.evaluate(
        datasets["test"],
        max_key=brain.selection_key,
        test_loader_kwargs=loader_kwargs(
            hparams, "valid_dataloader_opts", datasets["test"], shuffle=False
        ),
    )
    output_folder = hparams["output_folder"]
    metrics_path = os.path.join(output_folder, "test_metrics.json")
    inference_folder = os.path.join(output_folder, "inference")
    if if_main_process():
        export_model(
            hparams_file,
            overrides,
            hparams["model"],
            label_encoder,
            inference_folder,
        )
        summary = brain.test_summary
        print(
            f"Test on unseen speakers: WA {summary['WA']:.3f}  "
            f"UA {summary['UA']:.3f}  F1 {summary['macro_F1']:.3f}  "
            f"({metrics_path})"
        )
    sb.utils.distributed.ddp_barrier()  # the main process wrote the files
    with open(metrics_path, encoding="utf-8") as source:
        metrics = json.load(source)
    return RecipeResult(output_folder, inference_folder, metrics)
