"""The ``sercaf`` command line.

    sercaf cv RECIPE HPARAMS [HPARAMS ...] [--folds 1-3] [--output_root DIR]
              [--gpus 0,1] [--threads N] [-- --key=value ...]
    sercaf predict MODEL_DIR|MODEL.onnx INPUT [INPUT ...] [--out FILE.csv|.json]
              [--batch_size N] [--device cpu|cuda] [--threads N]
              [--window S --hop S] [--long_threshold S] [--min_seconds S]
              [--plot FILE.png] [--segment vad|window] [--min_gap S]
              [--max_segment S] [--speaker_audio FILES|DIR ...]
    sercaf serve MODEL_DIR|MODEL.onnx [--host H] [--port N]
              [--max_batch N] [--max_wait_ms MS] [--max_queue N]
              [--max_upload_mb MB] [--max_seconds S]
              [--speaker_audio FILES|DIR ...]
    sercaf attention MODEL_DIR AUDIO [--out attention.png] [--json FILE]
    sercaf export-onnx MODEL_DIR OUT.onnx [--int8]
    sercaf evaluate MODEL_DIR (--corpus NAME --data_folder DIR | --csv FILE)
              [--fold K] [--out DIR] [--batch_size N] [--device cpu|cuda]
              [--threads N]
    sercaf table CV_SUMMARY [CV_SUMMARY ...] [--out results.md]
    sercaf --version

Options are spelt with underscores, as recipe keys and SpeechBrain's run
options are; each also answers to its hyphenated spelling
(``--batch-size``), as recipe overrides do (``--data-folder=...``).

A mistake in the command (a missing file, an option out of range) ends in
one line, ``sercaf: error: ...``, and exit status 2, before any model is
loaded or any file written. Other exceptions are bugs and keep their
traceback; ``--debug`` (or ``SERCAF_DEBUG=1``) shows one for mistakes too.

Authors
 * sercaf-toolkit developers 2026
"""

import argparse
import os
import sys

from sercaf_toolkit import __version__
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.threads import default_threads, use_threads

# Heavy modules (torch, SpeechBrain) are imported inside the subcommands,
# after the arguments are checked: a mistake is reported in a blink.


def plural(count, word, words=None):
    """``count`` and ``word``, with the plural form unless count is 1.

    Example
    -------
    >>> plural(1, "file"), plural(2, "file"), plural(0, "fold")
    ('1 file', '2 files', '0 folds')
    """
    return f"{count} {word if count == 1 else words or word + 's'}"


def other_spelling(option):
    """``--key_name`` <-> ``--key-name``; None for a one-word option.

    Example
    -------
    >>> other_spelling("--batch_size"), other_spelling("--long-threshold")
    ('--batch-size', '--long_threshold')
    >>> other_spelling("--out") is None, other_spelling("-h") is None
    (True, True)
    """
    if not option.startswith("--"):
        return None
    name = option[2:]
    if "_" in name:
        return "--" + name.replace("_", "-")
    if "-" in name:
        return "--" + name.replace("-", "_")
    return None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes both spellings of every option and
    reports a usage mistake on one line, as every other mistake is.

    An option declared as ``--key_name`` also answers to ``--key-name``
    (and the reverse): the other spelling is a hidden alias, so ``-h``
    lists each option once, in the documented (underscore) spelling.

    Example
    -------
    >>> parser = Parser(prog="demo")
    >>> _ = parser.add_argument("--batch_size", type=int, default=8)
    >>> parser.parse_args(["--batch-size", "2"]).batch_size
    2
    """

    def add_argument(self, *names, **kwargs):
        """As ``ArgumentParser.add_argument``, plus the other spellings."""
        action = super().add_argument(*names, **kwargs)
        aliases = [other_spelling(name) for name in names]
        aliases = [
            alias
            for alias in aliases
            if alias and alias not in self._option_string_actions
        ]
        if aliases:
            hidden = {**kwargs, "dest": action.dest, "help": argparse.SUPPRESS}
            hidden.pop("required", None)  # the documented one is
            super().add_argument(*aliases, **hidden)
        return action

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _debug_option(parser):
    # SUPPRESS: a subcommand's --debug sets the flag but, when absent,
    # does not overwrite the one given before the subcommand.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks for mistakes too (or set SERCAF_DEBUG=1)",
    )


def _existing_file(path, what, fix):
    if not os.path.isfile(path):
        state = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UserError(f"{what} {path} {state}; {fix}")


def _writable_target(path, option):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UserError(
            f"{option} {path}: folder {folder} does not exist; create it "
            "or choose another path"
        )
    if not os.access(folder, os.W_OK):
        raise UserError(
            f"{option} {path}: folder {folder} is not writable; choose "
            "another path"
        )


def _creatable_folder(path, option):
    """An output folder that exists or can be made (nothing is made)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(
            f"{option} {path}: {existing} is a file, not a folder; choose "
            "another path"
        )
    if not os.access(existing, os.W_OK):
        raise UserError(
            f"{option} {path}: folder {existing} is not writable; choose "
            "another path"
        )


def _check_model_dir(model_dir):
    if os.path.isfile(model_dir):
        raise UserError(
            f"{model_dir} is a file, not a model folder; give a model "
            "folder such as a recipe's .../inference/ (or an .onnx file "
            "written by sercaf export-onnx)"
        )
    if not os.path.isdir(model_dir):
        raise UserError(
            f"model folder {model_dir} does not exist; give a model folder "
            "such as a recipe's .../inference/"
        )
    if not os.path.isfile(os.path.join(model_dir, "hyperparams.yaml")):
        raise UserError(
            f"{model_dir} is not a model folder (no hyperparams.yaml); give "
            "a model folder such as a recipe's .../inference/"
        )


def _check_model(model, onnx_ok=True):
    """A model folder, or (where ``onnx_ok``) an ``.onnx`` file."""
    if not model.lower().endswith(".onnx"):
        _check_model_dir(model)
        return
    if not onnx_ok:
        raise UserError(
            f"{model} is an ONNX model, whose graph returns only "
            "log-probabilities; give the model folder it was exported from"
        )
    _existing_file(
        model, "ONNX model", "give a file written by sercaf export-onnx"
    )
    from sercaf_toolkit.deployment.onnx_runtime import require

    require("onnxruntime")


def _threads_option(parser, what):
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        default=None,
        help=f"CPU threads {what} (default: OMP_NUM_THREADS if set, else "
        f"the cores, at most 4: here {default_threads()})",
    )


def _check_threads(args):
    """Fills in the default thread count; refuses one below 1."""
    if args.threads is None:
        args.threads = default_threads()
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: give 1 or more")


def _batch_and_device_options(parser, unit):
    """--batch_size, --device and --threads, as predict and evaluate
    take them."""
    parser.add_argument(
        "--batch_size",
        type=int,
        metavar="N",
        default=8,
        help=f"{unit} per forward pass (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:1, ... (default: %(default)s)",
    )
    _threads_option(parser, "that the model runs on")


def _check_batch_and_device(args):
    if args.batch_size < 1:
        raise UserError(
            f"--batch_size {args.batch_size}: give a positive number"
        )
    _check_device(args.device)
    _check_threads(args)


def _check_device(device):
    if device == "cpu":
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UserError(
            f"--device {device}: unknown device; give cpu, cuda or cuda:N"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {device}: no CUDA GPU is available; use --device cpu"
        )


# cv ----------------------------------------------------------------------


def _cv_parser(subparsers):
    parser = subparsers.add_parser(
        "cv",
        help="run every fold of a recipe and write result tables",
        description=(
            "Runs every fold of a recipe for each hparams file (resuming "
            "finished folds), then writes cv_summary.json, results.md and "
            "confusion-matrix PNGs. Recipe overrides go after '--'."
        ),
    )
    parser.add_argument(
        "recipe", help="recipe folder (with train.py) or train.py"
    )
    parser.add_argument(
        "hparams", nargs="+", help="one or more hparams YAML files"
    )
    parser.add_argument(
        "--folds", help="folds to run, e.g. 1-3,5 (default: all)"
    )
    parser.add_argument(
        "--output_root",
        help="where results go (default: results/cv/<recipe folder name>)",
    )
    parser.add_argument(
        "--gpus",
        help="comma-separated GPU indices for one fold per GPU "
        "(default: all visible GPUs when there are several)",
    )
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds, e.g. 1986,1987,1988: every fold runs "
        "under each; tables add the spread over seeds (default: the "
        "recipe's seed)",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run afresh the folds whose folder holds a run with other "
        "settings or data (default: refuse them, naming the difference)",
    )
    parser.add_argument(
        "--launcher",
        choices=["local", "commands", "slurm"],
        default="local",
        help="local: run the folds here (default); commands: print one "
        "train.py command per unfinished fold and seed, for a scheduler; "
        "slurm: write them as a job-array script (--slurm_script)",
    )
    parser.add_argument(
        "--nproc_per_node",
        type=int,
        default=1,
        help="with --launcher commands or slurm: GPUs per run (torchrun)",
    )
    parser.add_argument(
        "--slurm_script",
        help="where --launcher slurm writes (default: "
        "<output_root>/cv_array.sh)",
    )
    _threads_option(parser, "of each fold's process")
    _debug_option(parser)
    parser.set_defaults(func=_cv)
    return parser


def _cv(args):
    # CrossValidation checks the recipe, the hparams files (in the working
    # directory, then in the recipe), folds, seeds and finished runs.
    _check_threads(args)
    gpus = None
    if args.gpus is not None:
        try:
            gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError:
            raise UserError(
                f"--gpus {args.gpus}: not GPU indices; give e.g. --gpus 0,1"
            ) from None

    from sercaf_toolkit.training.cv import CrossValidation

    cv = CrossValidation(
        args.recipe,
        args.hparams,
        output_root=args.output_root,
        folds=args.folds,
        overrides=args.overrides,
        gpus=gpus,
        seeds=args.seeds,
        rerun=args.rerun,
        threads=args.threads,
    )
    if args.launcher != "local":
        return _launch(cv, args)
    summary = cv.run()
    print(f"[sercaf cv] wrote {cv.output_root}/cv_summary.json and results.md")
    with open(f"{cv.output_root}/results.md", encoding="utf-8") as table:
        print(table.read())
    return 1 if summary["failed"] else 0


def _launch(cv, args):
    """Prints or writes the runs for a scheduler; runs nothing."""
    if args.nproc_per_node < 1:
        raise UserError(
            f"--nproc_per_node {args.nproc_per_node}: give 1 or more GPUs"
        )
    commands = cv.launch_commands(args.nproc_per_node)
    if not commands:
        print(
            "[sercaf cv] every run is finished; run sercaf cv without "
            "--launcher to summarise",
            file=sys.stderr,
        )
        return 0
    if args.launcher == "commands":
        print("\n".join(commands))
        return 0
    path = args.slurm_script or os.path.join(cv.output_root, "cv_array.sh")
    cv.write_slurm_script(path, commands, args.nproc_per_node)
    print(
        f"[sercaf cv] wrote {path}: {len(commands)} runs; sbatch {path}, "
        "then run sercaf cv again (without --launcher) to summarise"
    )
    return 0


# predict -----------------------------------------------------------------


def _predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="label audio files, folders or path lists with a trained model",
        description=(
            "Labels audio with an EncoderClassifier-compatible model folder. "
            "Recordings longer than --long_threshold seconds get an emotion "
            "timeline from overlapping windows. A file that cannot be read "
            "gets a row with its error; the exit status is 1 if any failed. "
            "The flag column marks inputs whose label means little: "
            "too_short, silent (or empty, with its error). Relative paths "
            "in list files start from the current folder."
        ),
    )
    parser.add_argument(
        "model_dir",
        help="model folder (e.g. a recipe's inference/), or an .onnx file "
        "written by sercaf export-onnx (run with onnxruntime)",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="audio files, folders (searched recursively), or .txt/.lst/"
        ".list/.scp files listing one path per line",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="results file, .csv or .json (default: CSV on stdout)",
    )
    _batch_and_device_options(parser, "files (or windows)")
    parser.add_argument(
        "--window",
        type=float,
        metavar="SEC",
        default=4.0,
        help="timeline window length, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--hop",
        type=float,
        metavar="SEC",
        default=2.0,
        help="timeline window shift, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--long_threshold",
        type=float,
        metavar="SEC",
        default=30.0,
        help="recordings longer than this many seconds get a timeline "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--min_seconds",
        type=float,
        metavar="SEC",
        # inference.MIN_SECONDS, which imports torch: not for a parser
        default=1.0,
        help="recordings shorter than this many seconds are flagged "
        "too_short (default: %(default)s)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="PNG of class probabilities (and a model's dimensions) over "
        "time of the recordings longer than --long_threshold",
    )
    _segment_options(parser)
    _speaker_options(parser)
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bars"
    )
    _debug_option(parser)
    parser.set_defaults(func=_predict)
    return parser


def _segment_options(parser):
    parser.add_argument(
        "--segment",
        choices=("vad", "window"),
        default="vad",
        help="how recordings longer than --long_threshold are cut: vad "
        "(speech segments found by Silero VAD, pauses marked non-speech; "
        'needs pip install -e ".[vad]") or window (fixed --window/--hop '
        "windows, silence included) (default: %(default)s)",
    )
    parser.add_argument(
        "--min_gap",
        type=float,
        metavar="SEC",
        default=0.5,
        help="with --segment vad: pauses shorter than this stay inside the "
        "speech segment (default: %(default)s)",
    )
    parser.add_argument(
        "--max_segment",
        type=float,
        metavar="SEC",
        default=10.0,
        help="with --segment vad: longer speech is split into equal parts "
        "(default: %(default)s)",
    )


def _speaker_options(parser):
    parser.add_argument(
        "--speaker_audio",
        nargs="+",
        metavar="FILES|DIR",
        help="for a model trained with speaker_normalization: True, "
        "unlabeled audio of the speaker (files, folders or lists) whose "
        "statistics normalise the inputs as in training; or give INPUT as "
        "a .csv list with path and speaker columns",
    )
    parser.add_argument(
        "--speaker_cache",
        metavar="DIR",
        help="where speakers' statistics are cached (default: "
        "$SERCAF_CACHE/speakers, SERCAF_CACHE defaulting to ~/.cache/sercaf)",
    )


def _check_segment_args(args):
    if args.min_gap < 0:
        raise UserError(f"--min_gap {args.min_gap}: give 0 seconds or more")
    if args.max_segment <= 0:
        raise UserError(
            f"--max_segment {args.max_segment}: give a positive number of "
            "seconds"
        )
    if args.segment == "vad":
        from sercaf_toolkit.deployment.segmentation import require_vad

        require_vad()


def _check_speaker_args(args):
    """Refuses a model/enrolment mismatch before the model loads."""
    for item in args.speaker_audio or []:
        if not os.path.exists(item):
            raise UserError(
                f"--speaker_audio {item} does not exist; give audio files "
                "or folders of the speaker"
            )
    if args.speaker_cache is not None:
        _creatable_folder(args.speaker_cache, "--speaker_cache")
    if args.model_dir.lower().endswith(".onnx"):
        return  # its record is in the metadata: checked when it loads
    from sercaf_toolkit.deployment.speakers import read_record, refusal

    record = read_record(args.model_dir)
    if record and not (args.speaker_audio or getattr(args, "speakers", None)):
        raise UserError(refusal(args.model_dir, record))
    if not record and args.speaker_audio:
        raise UserError(
            f"--speaker_audio: model {args.model_dir} was trained on raw "
            "audio (no speaker normalisation); leave --speaker_audio out"
        )


def _check_predict_args(args):
    _check_model(args.model_dir)
    _check_batch_and_device(args)
    if not 0 < args.hop <= args.window:
        raise UserError(
            f"--window {args.window} --hop {args.hop}: need "
            "0 < hop <= window (seconds)"
        )
    if args.long_threshold < 0:
        raise UserError(
            f"--long_threshold {args.long_threshold}: give 0 seconds or more"
        )
    if args.min_seconds < 0:
        raise UserError(
            f"--min_seconds {args.min_seconds}: give 0 seconds or more"
        )
    if args.out is not None:
        from sercaf_toolkit.deployment.inference import check_output_path

        check_output_path(args.out)
    for option, target in (("--out", args.out), ("--plot", args.plot)):
        if target is not None:
            _writable_target(target, option)
    _check_segment_args(args)


def _predict(args):
    _check_predict_args(args)
    from sercaf_toolkit.deployment.inference import (
        expand_inputs,
        read_speaker_list,
    )

    # Reads the list files now, so that a bad one stops us before the
    # model loads. A .csv list may name each file's speaker.
    paths, args.speakers = [], {}
    for item in args.inputs:
        if item.lower().endswith(".csv"):
            listed = read_speaker_list(item)
            paths += [path for path, _ in listed]
            args.speakers.update(
                {path: speaker for path, speaker in listed if speaker}
            )
        else:
            paths += expand_inputs([item])
    _check_speaker_args(args)
    if not paths:
        raise UserError(
            f"no audio files in {' '.join(args.inputs)}; give audio files, "
            "folders holding some, or lists of paths"
        )

    from sercaf_toolkit.deployment.inference import (
        EmotionPredictor,
        write_records,
    )

    use_threads(args.threads)
    predictor = EmotionPredictor(
        args.model_dir,
        device=args.device,
        batch_size=args.batch_size,
        window=args.window,
        hop=args.hop,
        long_threshold=args.long_threshold,
        min_seconds=args.min_seconds,
        segment=args.segment,
        min_gap=args.min_gap,
        max_segment=args.max_segment,
        speaker_audio=_enrolment(args, paths),
        speaker_cache=args.speaker_cache,
    )
    records, report = predictor.predict(
        paths,
        progress=not args.no_progress,
        expand=False,
        speakers=args.speakers if not args.speaker_audio else None,
    )
    write_records(records, args.out)
    if args.plot:
        _plot_timelines(args, records, report, predictor)
    rtf = report["real_time_factor"]
    flags = "".join(
        f", {plural(count, 'row')} {flag}"
        for flag, count in sorted(report["flags"].items())
    )
    print(
        f"[sercaf predict] {plural(report['files'], 'file')}, "
        f"{report['failures']} failed{flags}, "
        f"{report['audio_seconds']:.1f} s of "
        f"audio in {report['wall_seconds']:.1f} s (real-time factor "
        + (f"{rtf:.3f})" if rtf is not None else "n/a)"),
        file=sys.stderr,
    )
    for record in records:
        if record["error"]:
            print(f"[sercaf predict] error: {record['error']}", file=sys.stderr)
    return 1 if report["failures"] else 0


def _enrolment(args, paths):
    """``speaker_audio`` of the predictor: the option, or the list's
    speakers (each one's statistics from its own listed files, as in
    training)."""
    if args.speaker_audio:
        return args.speaker_audio
    if not args.speakers:
        return None
    by_speaker = {}
    for path in paths:
        if path in args.speakers:
            by_speaker.setdefault(args.speakers[path], []).append(path)
    unnamed = [path for path in paths if path not in args.speakers]
    if unnamed:
        raise UserError(
            f"{unnamed[0]}: no speaker given; a speaker-normalised model "
            "needs every file's speaker (the list's speaker column) or "
            "--speaker_audio"
        )
    return by_speaker


def _plot_timelines(args, records, report, predictor):
    windows = report["windows"]
    if not windows:
        # Not a failure: the labels are written; only the picture has
        # nothing to show.
        print(
            f"[sercaf predict] no plot written: no recording was longer "
            f"than --long_threshold {args.long_threshold:g} s (longest: "
            f"{report['longest_seconds']:.1f} s); lower --long_threshold "
            "to get timelines",
            file=sys.stderr,
        )
        return
    from sercaf_toolkit.evaluation.plots import plot_timelines

    segments = {path: [] for path in windows}
    for record in records:
        if record["path"] in segments:
            if record["speech"] == "non-speech":
                # Drawn grey, named as what it is: no emotion there.
                record = {**record, "label": "non-speech"}
            segments[record["path"]].append(record)
    plot_timelines(
        windows,
        predictor.labels,
        args.plot,
        segments_by_path=segments,
        dimensions=predictor.dimensions,
        scale=predictor.dimension_scale,
    )


# serve -------------------------------------------------------------------


def _serve_parser(subparsers):
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (POST /predict, GET /health, /labels,"
        " a web page at /)",
        description=(
            "Serves a model folder or .onnx file over HTTP with FastAPI on "
            "uvicorn: POST /predict takes an audio file (the body, or a "
            "multipart form's file) and answers JSON with the label, the "
            "probabilities and, for long audio, the segments. Concurrent "
            "requests are micro-batched. Needs "
            'pip install -e ".[serve]".'
        ),
    )
    parser.add_argument(
        "model_dir",
        help="model folder (e.g. a recipe's inference/) or .onnx file",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port (default: %(default)s)"
    )
    parser.add_argument(
        "--max_batch",
        type=int,
        metavar="N",
        default=8,
        help="most requests labelled in one forward pass (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--max_wait_ms",
        type=float,
        metavar="MS",
        default=10.0,
        help="how long a batch waits for more requests (default: %(default)s)",
    )
    parser.add_argument(
        "--max_queue",
        type=int,
        metavar="N",
        default=64,
        help="most requests waiting; more get 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_upload_mb",
        type=float,
        metavar="MB",
        default=25.0,
        help="largest upload; larger gets 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_seconds",
        type=float,
        metavar="SEC",
        default=600.0,
        help="longest audio; longer gets 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:1, ... (default: %(default)s)",
    )
    _threads_option(parser, "that the model runs on")
    parser.add_argument(
        "--long_threshold",
        type=float,
        metavar="SEC",
        default=30.0,
        help="audio longer than this many seconds gets segments (default: "
        "%(default)s)",
    )
    _segment_options(parser)
    _speaker_options(parser)
    _debug_option(parser)
    parser.set_defaults(func=_serve)
    return parser


def _serve(args):
    _check_model(args.model_dir)
    _check_device(args.device)
    _check_threads(args)
    for option in ("max_batch", "max_queue", "port"):
        if getattr(args, option) < 1:
            raise UserError(
                f"--{option} {getattr(args, option)}: give 1 or more"
            )
    for option in ("max_wait_ms", "long_threshold"):
        if getattr(args, option) < 0:
            raise UserError(
                f"--{option} {getattr(args, option)}: give 0 or more"
            )
    for option in ("max_upload_mb", "max_seconds"):
        if getattr(args, option) <= 0:
            raise UserError(
                f"--{option} {getattr(args, option)}: give a positive number"
            )
    _check_segment_args(args)
    _check_speaker_args(args)
    from sercaf_toolkit.deployment.service import require_serve

    require_serve()
    import uvicorn

    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.deployment.service import create_app

    use_threads(args.threads)
    predictor = EmotionPredictor(
        args.model_dir,
        device=args.device,
        batch_size=args.max_batch,
        long_threshold=args.long_threshold,
        segment=args.segment,
        min_gap=args.min_gap,
        max_segment=args.max_segment,
        speaker_audio=args.speaker_audio,
        speaker_cache=args.speaker_cache,
    )
    app = create_app(
        predictor,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_bytes=int(args.max_upload_mb * 1e6),
        max_seconds=args.max_seconds,
        model_name=args.model_dir,
    )
    print(
        f"[sercaf serve] {args.model_dir} on http://{args.host}:{args.port}/ "
        f"(labels {', '.join(predictor.labels)})",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


# attention ---------------------------------------------------------------


def _attention_parser(subparsers):
    parser = subparsers.add_parser(
        "attention",
        help="plot a CAF model's cross-attention maps for one recording",
        description=(
            "Shows which frames of each stream every frame of the other "
            "stream attends to (for models with CrossAttentionFusion)."
        ),
    )
    parser.add_argument(
        "model_dir", help="model folder (e.g. a recipe's inference/)"
    )
    parser.add_argument("audio", help="one audio file")
    parser.add_argument(
        "--out",
        default="attention.png",
        help="PNG to write (default: %(default)s)",
    )
    parser.add_argument("--json", help="also write the maps as JSON")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:1, ... (default: %(default)s)",
    )
    _debug_option(parser)
    parser.set_defaults(func=_attention)
    return parser


def _attention(args):
    _check_model(args.model_dir, onnx_ok=False)
    for option, target in (("--out", args.out), ("--json", args.json)):
        if target is not None:
            _writable_target(target, option)
    _check_device(args.device)

    import json

    from sercaf_toolkit.data import AudioError
    from sercaf_toolkit.deployment.inference import (
        EmotionPredictor,
        read_checked,
    )
    from sercaf_toolkit.evaluation.plots import plot_attention_maps

    try:  # before the model loads: a bad file is the user's to fix
        read_checked(args.audio)
    except AudioError as error:
        raise UserError(f"{error}; give a readable audio file") from error
    predictor = EmotionPredictor(args.model_dir, device=args.device)
    result = predictor.attention(args.audio)
    plot_attention_maps(
        result["maps"],
        result["frame_seconds"],
        result["streams"],
        args.out,
        title=f"{args.audio}: {result['label']}",
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {**result, "maps": [m.tolist() for m in result["maps"]]}, out
            )
    print(
        f"[sercaf attention] {args.audio}: {result['label']}; wrote {args.out}"
    )
    return 0


# export-onnx -------------------------------------------------------------


def _export_onnx_parser(subparsers):
    parser = subparsers.add_parser(
        "export-onnx",
        help="write a model folder as one ONNX file for onnxruntime",
        description=(
            "Writes one ONNX file mapping a batch of 16 kHz waveforms "
            "(wavs [batch, samples]) and their relative lengths (lens "
            "[batch]) to class log-probabilities, with the labels in its "
            "metadata; sercaf predict takes it as the model. Needs "
            'pip install -e ".[onnx]".'
        ),
    )
    parser.add_argument(
        "model_dir", help="model folder (e.g. a recipe's inference/)"
    )
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="quantise the matrix products to int8 (onnxruntime dynamic "
        "quantisation): a smaller, faster file on CPU",
    )
    _debug_option(parser)
    parser.set_defaults(func=_export_onnx)
    return parser


def _export_onnx(args):
    _check_model_dir(args.model_dir)
    if not args.out.lower().endswith(".onnx"):
        raise UserError(f"{args.out}: give an output file name ending in .onnx")
    _writable_target(args.out, "output")
    # export_onnx checks onnx and onnxruntime before it loads the model.
    from sercaf_toolkit.deployment.onnx_export import export_onnx

    result = export_onnx(args.model_dir, args.out, int8=args.int8)
    kind = "int8" if args.int8 else "fp32"
    print(
        f"[sercaf export-onnx] wrote {args.out} ({kind}, "
        f"{result['bytes'] / 1e6:.1f} MB, labels "
        f"{', '.join(result['labels'])}); largest log-probability "
        f"difference from PyTorch on a check batch: "
        f"{result['max_difference']:.2g}"
    )
    return 0


# evaluate ----------------------------------------------------------------


def _evaluate_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="test an exported model on a whole corpus (cross-corpus)",
        description=(
            "Runs an exported model on a corpus, or on the test speakers of "
            "one of its folds, with the corpus's labels mapped to the shared "
            "emotion vocabulary; files whose label is not one of the "
            "model's classes are left out and counted. Writes "
            "test_metrics.json, predictions.csv, confusion_matrix.png and "
            "reliability_diagram.png as a recipe's test does."
        ),
    )
    parser.add_argument(
        "model_dir",
        help="model folder (e.g. a recipe's inference/) or .onnx file",
    )
    parser.add_argument(
        "--corpus",
        help="corpus name: EmoDB, RAVDESS, CASIA, IEMOCAP, Demo, Expressive",
    )
    parser.add_argument("--data_folder", help="the corpus folder")
    parser.add_argument(
        "--csv",
        metavar="FILE",
        help="instead of --corpus: a CSV file with path, label, speaker"
        "[, fold] columns (labels in the shared vocabulary)",
    )
    parser.add_argument(
        "--fold",
        type=int,
        metavar="K",
        help="only the test speakers of fold K of the corpus's protocol "
        "(default: the whole corpus)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: results/evaluate/<corpus>)",
    )
    _batch_and_device_options(parser, "files")
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bar"
    )
    _debug_option(parser)
    parser.set_defaults(func=_evaluate)
    return parser


def _evaluate(args):
    _check_model(args.model_dir)
    if args.out is not None:
        _creatable_folder(args.out, "--out")
    _check_batch_and_device(args)
    from sercaf_toolkit.evaluation.evaluate import evaluate_corpus

    use_threads(args.threads)
    result = evaluate_corpus(
        args.model_dir,
        corpus=args.corpus,
        data_folder=args.data_folder,
        csv_file=args.csv,
        fold=args.fold,
        out=args.out,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    metrics = result["metrics"]
    print(f"[sercaf evaluate] {result['message']}")
    print(
        f"[sercaf evaluate] WA {100 * metrics['WA']:.1f}  "
        f"UA {100 * metrics['UA']:.1f}  F1 {100 * metrics['F1']:.1f}; wrote "
        f"{os.path.dirname(result['paths']['metrics'])}/"
    )
    return 1 if result["failed"] else 0


# table -------------------------------------------------------------------


def _table_parser(subparsers):
    parser = subparsers.add_parser(
        "table",
        help="merge several cv_summary.json files into one results table",
    )
    parser.add_argument("summaries", nargs="+", help="cv_summary.json files")
    parser.add_argument("--out", help="Markdown file (default: stdout)")
    parser.add_argument(
        "--compare",
        nargs="?",
        const="pairs",
        choices=("pairs", "speakers"),
        help="mark the WA, UA and F1 cells not significantly different "
        "from the column's best (paired test against it, Holm-corrected: "
        "over fold x seed pairs, the default, or a bootstrap over test "
        "speakers)",
    )
    _debug_option(parser)
    parser.set_defaults(func=_table)
    return parser


def _table(args):
    for summary in args.summaries:
        _existing_file(
            summary, "summary", "give the cv_summary.json of a sercaf cv run"
        )
    if args.out is not None:
        _writable_target(args.out, "--out")
    from sercaf_toolkit.evaluation.results import merge_summaries, results_table

    summary = merge_summaries(args.summaries)
    marks, legend = None, ""
    if args.compare:
        from sercaf_toolkit.evaluation.compare import ALPHA, table_marks

        experiments = load_table_experiments(args.summaries, summary)
        marks, unpaired = table_marks(experiments, method=args.compare)
        test = (
            "sign-flip test over fold x seed pairs"
            if args.compare == "pairs"
            else "paired bootstrap over test speakers"
        )
        legend = (
            "Bold: the column's best mean; ≈: not significantly different "
            f"from it (paired {test}, Holm-corrected, p >= {ALPHA})."
        )
        for metric, names in unpaired.items():
            if names:
                legend += (
                    f" Not paired with the best {metric} (other folds, "
                    f"seeds or test files), so unmarked: {', '.join(names)}."
                )
    table = results_table(summary, marks, legend)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(table)
    else:
        print(table)
    return 0


# compare -----------------------------------------------------------------


def _compare_parser(subparsers):
    parser = subparsers.add_parser(
        "compare",
        help="paired comparison of cv experiments: differences, intervals "
        "and p-values",
        description="Compares experiments that ran on the same folds, "
        "seeds and test files against the first one: for WA, UA and macro "
        "F1, the paired difference with a 95 %% interval and a p-value "
        "over the fold x seed pairs (sign-flip test, t interval) and over "
        "the test speakers (paired bootstrap). Writes comparison.md and "
        "comparison.json.",
    )
    parser.add_argument(
        "experiments",
        nargs="+",
        help="sercaf cv output folders or their cv_summary.json (every "
        "experiment in them), or one experiment's folder "
        "(<root>/<experiment>); the first is the reference",
    )
    parser.add_argument(
        "--out",
        help="folder for comparison.md and comparison.json (default: the "
        "first one's cv folder)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        help="speaker draws of the bootstrap (default 2000; 0 skips it)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap draws (default 0)",
    )
    _debug_option(parser)
    parser.set_defaults(func=_compare)
    return parser


def _compare(args):
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap {args.bootstrap}: give 0 or more draws")
    if args.out is not None:
        _creatable_folder(args.out, "--out")
    from sercaf_toolkit.evaluation.compare import (
        compare_experiments,
        comparison_markdown,
        load_experiments,
        write_comparison,
    )

    experiments = load_experiments(args.experiments)
    result = compare_experiments(
        experiments, bootstrap=args.bootstrap, seed=args.seed
    )
    out = args.out or experiments[0].root
    paths = write_comparison(result, out)
    print(comparison_markdown(result))
    print(f"Wrote {paths['markdown']} and {paths['json']}")
    return 0


def load_table_experiments(paths, summary):
    """The experiments of ``sercaf table``'s summaries, named as its rows."""
    from sercaf_toolkit.evaluation.compare import load_experiments

    experiments = load_experiments(paths)
    rows = list(summary["experiments"])
    if [e.name for e in experiments] != rows:
        # Two summaries in folders of one name: the table's rows clash too.
        raise UserError(
            "--compare: two summaries lie in folders of the same name; "
            "give each cv run its own --output-root name"
        )
    return experiments


# main --------------------------------------------------------------------


def build_parser():
    """The ``sercaf`` argument parser; each subcommand sets ``func``."""
    parser = Parser(prog="sercaf", description="sercaf-toolkit command line")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the toolkit's version and exit",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks for mistakes too (or set SERCAF_DEBUG=1)",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    for add in (
        _cv_parser,
        _predict_parser,
        _serve_parser,
        _attention_parser,
        _export_onnx_parser,
        _evaluate_parser,
        _table_parser,
        _compare_parser,
    ):
        add(subparsers)
    return parser


def main(argv=None):
    """Entry point of the ``sercaf`` console script.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``); those after ``--`` are
        recipe overrides for ``sercaf cv``.

    Returns
    -------
    int
        The exit status: 0 done, 1 some files or folds failed, 2 a mistake
        in the command (reported on one line of stderr), 130 interrupted
        (Ctrl-C; one line).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = []
    if "--" in argv:
        split = argv.index("--")
        argv, overrides = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    args.overrides = overrides
    debug = args.debug or os.environ.get("SERCAF_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except UserError as error:
        if debug:
            raise
        # One line, whatever the message holds.
        message = " ".join(str(error).split())
        print(f"sercaf: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        # Ctrl-C: one line saying what stopped, and 128 + SIGINT.
        if debug:
            raise
        message = " ".join(str(error).split()) or "interrupted"
        print(f"sercaf: {message}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
