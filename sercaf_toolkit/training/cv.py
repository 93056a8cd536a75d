"""Cross-validation: runs a recipe's folds, under one or several seeds.

``sercaf cv recipes/CASIA hparams/caf.yaml hparams/sum.yaml -- --data_folder=X``
runs every fold of every hparams file (one after another, or one fold per
GPU when several are visible), each in its own process and output folder.
The fold count comes from the recipe's corpus and protocol; ``--folds``
outside it is refused before anything runs. Before any fold starts, each
fold folder that holds a run is checked the way the recipe checks it
(:mod:`sercaf_toolkit.training.runs`: every setting and the data
fingerprint): the
same run is skipped when finished and resumed when not; a different one
is refused in one line naming the difference, or, with ``rerun=True``
(``--rerun``), run afresh (the fold gets ``--rerun``). ``run.lock`` in
the output root keeps a second ``sercaf cv`` out. Then it writes, through
:mod:`sercaf_toolkit.evaluation.results`, for every experiment finished
under the
output root (earlier invocations' too):

- ``cv_summary.json``: per-fold (and per-seed) WA/UA/F1, mean and sample
  standard deviation over folds and over seeds, pooled-prediction figures;
- ``results.md``: one row per hparams file (SSL model, scratch encoder,
  fusion block), in the shape of the paper's tables;
- ``<experiment>/confusion_matrix.png``: pooled over folds and seeds,
  normalised by true class.

Authors
 * sercaf-toolkit developers 2026
"""

import concurrent.futures
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import speechbrain as sb

from sercaf_toolkit.corpora import check_recipe_corpus, recipe_fold_count
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.evaluation.results import (
    breakdown_section,
    results_table,
    summarize_runs,
)
from sercaf_toolkit.hparams import (
    checked_hparams,
    resolve_hparams_path,
)
from sercaf_toolkit.threads import default_threads, thread_environment
from sercaf_toolkit.training.recipe_options import recipe_keys, respell_options
from sercaf_toolkit.training.runs import (
    RERUN_FLAG,
    RunInterrupted,
    RunLock,
    prepare_staged,
    refusal,
    run_difference,
)

SUMMARY = "cv_summary.json"


def parse_folds(text, n_folds=None):
    """``"1-3,5"`` -> ``[1, 2, 3, 5]``; ``None`` -> all ``n_folds`` folds.

    Example
    -------
    >>> parse_folds("1-3,5"), parse_folds(None, 4)
    ([1, 2, 3, 5], [1, 2, 3, 4])
    """
    if not text:
        return list(range(1, n_folds + 1))
    folds = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            folds.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise UserError(
            f"--folds {text!r} is not a fold list; write e.g. 1-3,5"
        ) from None
    return sorted(set(folds))


def parse_seeds(text):
    """``"1986,1987"`` -> ``[1986, 1987]``; ``None`` -> ``[None]``.

    Example
    -------
    >>> parse_seeds("1986, 1987"), parse_seeds(None)
    ([1986, 1987], [None])
    """
    if not text:
        return [None]
    try:
        return [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise UserError(
            f"--seeds {text!r} is not a list of integers; write e.g. "
            "1986,1987,1988"
        ) from None


class CrossValidation:
    """Runs a recipe's folds for one or more hparams files and sums up.

    Arguments
    ---------
    recipe : str
        The recipe folder (holding ``train.py``) or its ``train.py``.
    hparams_files : list of str
        YAML files, looked for in the working directory, then the recipe.
    output_root : str, optional
        Where each experiment's folds go (``<root>/<stem>/fold_<k>``, or
        ``<root>/<stem>/seed_<s>/fold_<k>`` with seeds); default
        ``results/cv/<recipe folder name>``.
    folds : str, optional
        Which folds, e.g. ``"1-3,5"`` (default: all of the protocol's).
    overrides : list of str
        ``--key=value`` overrides passed to every fold.
    gpus : list of int, optional
        GPU indices to run folds on in parallel (one fold per GPU); default:
        every visible GPU when there are several, else one run at a time.
    seeds : str, optional
        Comma-separated seeds: every fold runs under each (``--seed``).
    rerun : bool
        Run afresh the folds whose folder holds a run with other settings
        or data (the recipe empties the folder first) instead of refusing.
    threads : int, optional
        CPU threads of each fold's process (``OMP_NUM_THREADS``); default
        :func:`~sercaf_toolkit.threads.default_threads`.
    """

    def __init__(
        self,
        recipe,
        hparams_files,
        output_root=None,
        folds=None,
        overrides=(),
        gpus=None,
        seeds=None,
        rerun=False,
        threads=None,
    ):
        self.train_py = (
            recipe
            if recipe.endswith(".py")
            else os.path.join(recipe, "train.py")
        )
        if not os.path.isfile(self.train_py):
            raise UserError(
                f"no recipe script at {self.train_py}; give a recipe folder "
                "such as recipes/Demo"
            )
        recipe_dir = os.path.dirname(os.path.abspath(self.train_py))
        self.rerun = rerun
        self.threads = threads or default_threads()
        self.hparams = {}
        for path in hparams_files:
            path = os.path.abspath(resolve_hparams_path(path, recipe_dir))
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in self.hparams:
                raise UserError(f"two hparams files named {stem}.yaml")
            self.hparams[stem] = path
        # --key-name as --key_name, as the recipe takes it: a finished run
        # records the key, and is compared with these.
        keys = set().union(*map(recipe_keys, self.hparams.values()))
        self.overrides = respell_options(list(overrides), keys)
        self.output_root = output_root or os.path.join(
            "results", "cv", os.path.basename(recipe_dir)
        )
        self.seeds = parse_seeds(seeds)
        self.folds = {}
        for stem, path in self.hparams.items():
            _, _, yaml_overrides = sb.parse_arguments([path, *self.overrides])
            # Mistakes found here cost seconds, not a failed run per fold.
            _, tree = checked_hparams(path, yaml_overrides)
            check_recipe_corpus(tree)
            n_folds = recipe_fold_count(tree)  # the corpus's protocol's
            self.folds[stem] = parse_folds(folds, n_folds)
            outside = [f for f in self.folds[stem] if not 1 <= f <= n_folds]
            if outside:
                raise UserError(
                    f"--folds {folds}: fold {outside[0]} is out of range; "
                    f"{stem}.yaml has folds 1-{n_folds}"
                )
        if gpus is None:
            gpus = _visible_gpus()
        self.gpus = list(gpus)
        self._afresh = set()  # jobs that get --rerun
        self._running = {}  # job -> its train.py process
        self._stopping = False

    def fold_dir(self, stem, fold, seed=None):
        """Output folder of one fold (under one seed) of one experiment."""
        parts = [self.output_root, stem]
        if seed is not None:
            parts.append(f"seed_{seed}")
        return os.path.join(*parts, f"fold_{fold}")

    def jobs(self):
        """(stem, seed, fold) triples, in order."""
        return [
            (stem, seed, fold)
            for stem in self.hparams
            for seed in self.seeds
            for fold in self.folds[stem]
        ]

    def command(self, job):
        """The ``train.py`` command line of one job."""
        stem, seed, fold = job
        return [
            sys.executable,
            self.train_py,
            self.hparams[stem],
            f"--fold={fold}",
            f"--output_folder={self.fold_dir(stem, fold, seed)}",
            *([f"--seed={seed}"] if seed is not None else []),
            *self.overrides,
            *([RERUN_FLAG] if job in self._afresh else []),
        ]

    def finished(self, job):
        """Whether a job's run finished with the requested settings.

        A fold folder holding a run is checked as the recipe checks it
        (:func:`sercaf_toolkit.training.runs.run_difference`: every setting and
        the data fingerprint). One that differs is refused (a one-line
        :class:`UserError` naming the first difference), or, with
        ``rerun``, marked to run afresh (``--rerun``) and counts as
        unfinished. The same run counts as finished once it has
        ``test_metrics.json``; else it resumes.
        """
        folder = self.fold_dir(job[0], job[2], job[1])
        if not os.path.exists(os.path.join(folder, "run_info.json")):
            return False
        from sercaf_toolkit.training.recipe import run_identity

        argv = [a for a in self.command(job)[2:] if a != RERUN_FLAG]
        hparams_file, run_opts, overrides = sb.parse_arguments(argv)
        composed, tree = checked_hparams(hparams_file, overrides)
        identity = run_identity(tree, composed, run_opts)

        def data():
            staging, fingerprint = prepare_staged(
                hparams_file, composed, overrides
            )
            shutil.rmtree(staging, ignore_errors=True)
            return fingerprint

        difference = run_difference(folder, identity, data)
        if difference is None:
            return os.path.exists(os.path.join(folder, "test_metrics.json"))
        if not self.rerun:
            raise refusal(
                folder,
                difference,
                "add --rerun to run such folds afresh, or give another "
                "--output-root",
            )
        key, there, now = difference
        print(
            f"[sercaf cv] {folder}: to run afresh ({key}: {there} there, "
            f"{now} now)",
            flush=True,
        )
        self._afresh.add(job)
        return False

    def launch_commands(self, nproc_per_node=1):
        """One shell command per unfinished fold and seed, for a scheduler.

        Each is the plain ``train.py`` run that :meth:`run` would start
        (``torchrun --nproc_per_node=N`` in front for several GPUs per
        run: SpeechBrain's DDP); finished runs are left out, and a folder
        holding another run is refused as in :meth:`run`. Afterwards,
        ``sercaf cv`` with the same arguments finds every run finished
        and only writes the summary.

        Arguments
        ---------
        nproc_per_node : int
            GPUs (processes) per run.

        Returns
        -------
        list of str
        """
        launcher = [sys.executable]
        if nproc_per_node > 1:
            launcher = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nproc_per_node}",
            ]
        return [
            shlex.join([*launcher, *self.command(job)[1:]])
            for job in self.jobs()
            if not self.finished(job)
        ]

    def write_slurm_script(self, path, commands, nproc_per_node=1):
        """Writes a Slurm job-array script running ``commands``, one each.

        ``sbatch PATH`` submits it; every array task runs one command
        (``SLURM_ARRAY_TASK_ID`` picks it). Partition, time and memory
        are the cluster's: add ``#SBATCH`` lines or give them to
        ``sbatch``.
        """
        lines = [
            "#!/bin/bash",
            f"# sercaf cv: {len(commands)} runs of {self.output_root};",
            "# afterwards `sercaf cv` with the same arguments summarises.",
            "#SBATCH --job-name=sercaf-cv",
            f"#SBATCH --array=0-{len(commands) - 1}",
            f"#SBATCH --gpus-per-task={nproc_per_node}",
            f"#SBATCH --cpus-per-task={self.threads}",
            f"#SBATCH --output={os.path.abspath(self.output_root)}"
            "/slurm-%A_%a.out",
            "set -euo pipefail",
            'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
            f"cd {shlex.quote(os.getcwd())}",
            "commands=(",
            *(f"  {shlex.quote(command)}" for command in commands),
            ")",
            'eval "${commands[$SLURM_ARRAY_TASK_ID]}"',
        ]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(path, 0o755)

    def run(self):
        """Runs the unfinished folds; returns the summary (and writes it).

        Holds ``run.lock`` in the output root meanwhile. Ctrl-C stops the
        running folds (each keeps its checkpoints) and raises
        :class:`~sercaf_toolkit.training.runs.RunInterrupted`.
        """
        with RunLock(
            self.output_root,
            name="sercaf cv",
            way_out="wait for it to end, or give another --output-root",
        ):
            return self._run()

    def _run(self):
        jobs = self.jobs()
        todo = [job for job in jobs if not self.finished(job)]
        done = len(jobs) - len(todo)
        seeds = f" x {len(self.seeds)} seeds" if self.seeds != [None] else ""
        print(
            f"[sercaf cv] {len(jobs)} runs ({len(self.hparams)} experiment(s)"
            f" x folds{seeds}); {done} already finished, {len(todo)} to run"
            + (f" on GPUs {self.gpus}" if len(self.gpus) > 1 else ""),
            flush=True,
        )
        # One worker per GPU when several are visible, else a single worker
        # that leaves the device choice to the recipe.
        devices = queue.Queue()
        for gpu in self.gpus if len(self.gpus) > 1 else [None]:
            devices.put(gpu)

        def on_free_device(numbered_job):
            position, job = numbered_job
            gpu = devices.get()
            try:
                if self._stopping:
                    return False
                return self._run_fold(job, position, len(todo), gpu)
            finally:
                devices.put(gpu)

        with concurrent.futures.ThreadPoolExecutor(devices.qsize()) as pool:
            results = pool.map(on_free_device, enumerate(todo, start=1))
            try:
                failures = [job for job, ok in zip(todo, results) if not ok]
            except KeyboardInterrupt:
                raise self._interrupt() from None
        summary = self.summarize()
        if failures:
            names = ", ".join(_job_name(job) for job in failures)
            print(f"[sercaf cv] FAILED: {names}", flush=True)
        summary["failed"] = [list(job) for job in failures]
        return summary

    def _interrupt(self):
        """Stops launching folds and interrupts the running ones."""
        self._stopping = True
        running = dict(self._running)
        for process in running.values():
            try:  # Ctrl-C in a terminal reached them already
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
        for process in running.values():
            process.wait()
        where = ", ".join(_job_name(job) for job in running) or "sercaf cv"
        return RunInterrupted(
            f"interrupted while running {where}; rerun the same command to "
            "resume"
        )

    def _run_fold(self, job, position, total, gpu=None):
        folder = self.fold_dir(job[0], job[2], job[1])
        os.makedirs(folder, exist_ok=True)
        # Folds running side by side (one per GPU) share the CPU cores.
        env = thread_environment(self.threads)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        print(
            f"[sercaf cv] {_job_name(job)}: running ({position}/{total},"
            f" {total - position} left after it; log: {folder}/cv_log.txt)",
            flush=True,
        )
        start = time.time()
        log_file = os.path.join(folder, "cv_log.txt")
        with open(log_file, "w") as log:
            process = subprocess.Popen(
                self.command(job), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            self._running[job] = process
            try:
                code = process.wait()
            finally:
                self._running.pop(job, None)
        metrics_file = os.path.join(folder, "test_metrics.json")
        if code != 0 or not os.path.exists(metrics_file):
            print(
                f"[sercaf cv] {_job_name(job)}: FAILED (exit {code}"
                + (f": {_last_line(log_file)}" if code == 2 else "")
                + f"); see {log_file}",
                flush=True,
            )
            return False
        with open(metrics_file, encoding="utf-8") as source:
            metrics = json.load(source)
        print(
            f"[sercaf cv] {_job_name(job)}: WA {100 * metrics['WA']:.1f} "
            f"UA {100 * metrics['UA']:.1f} F1 {100 * metrics['F1']:.1f} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )
        return True

    def summarize(self):
        """Writes ``cv_summary.json``, ``results.md`` and the pictures.

        They cover every experiment under the output root: this
        invocation's (its folds and seeds, finished or missing), and the
        ones an earlier ``sercaf cv`` into the same root ran (from its
        ``cv_summary.json`` and the finished runs on disk), so that a
        second invocation adds rows instead of replacing them.
        """
        planned = {
            stem: {
                (seed, fold) for seed in self.seeds for fold in self.folds[stem]
            }
            for stem in self.hparams
        }
        files = dict(self.hparams)
        earlier = _read_summary(os.path.join(self.output_root, SUMMARY))
        for stem, result in earlier.get("experiments", {}).items():
            runs = {
                (run.get("seed"), int(run["fold"]))
                for run in result.get("runs", [])
            } | {(seed, int(fold)) for seed, fold in result.get("missing", [])}
            if stem not in planned:
                planned[stem] = runs
                files[stem] = result.get("hparams_file")
        for (stem, seed, fold), info in _finished_runs(self.output_root):
            planned.setdefault(stem, set()).add((seed, fold))
            files.setdefault(stem, info.get("hparams_file"))
        experiments = {}
        order = [*earlier.get("experiments", {}), *sorted(planned)]
        for stem in dict.fromkeys(order):
            runs = {
                (seed, fold): self.fold_dir(stem, fold, seed)
                for seed, fold in planned[stem]
            }
            experiments[stem] = {
                "hparams_file": files.get(stem),
                **summarize_runs(
                    runs,
                    os.path.join(
                        self.output_root, stem, "confusion_matrix.png"
                    ),
                    title=f"{stem}: all folds pooled",
                ),
            }
        summary = {
            "aggregation": "mean and sample standard deviation over folds "
            "(each fold averaged over seeds); over seeds: of the per-seed "
            "means over folds; pooled: metrics of all test predictions "
            "together",
            "output_root": self.output_root,
            "seeds": self.seeds,
            "experiments": experiments,
        }
        os.makedirs(self.output_root, exist_ok=True)
        with open(os.path.join(self.output_root, SUMMARY), "w") as out:
            json.dump(summary, out, indent=2)
        with open(os.path.join(self.output_root, "results.md"), "w") as out:
            out.write(results_table(summary) + breakdown_section(summary))
        return summary


def _read_summary(path):
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as source:
            return json.load(source)
    except (OSError, ValueError):
        return {}


_FOLD = re.compile(r"fold_(\d+)$")
_SEED = re.compile(r"seed_(-?\d+)$")


def _finished_runs(root):
    """``((stem, seed, fold), run_info)`` of every finished run under root.

    Finds ``<root>/<stem>/fold_<k>`` and ``<root>/<stem>/seed_<s>/fold_<k>``
    folders holding ``test_metrics.json``.
    """
    if not os.path.isdir(root):
        return []
    found = []
    for stem in sorted(os.listdir(root)):
        top = os.path.join(root, stem)
        if not os.path.isdir(top):
            continue
        places = [(None, top)] + [
            (int(_SEED.match(name).group(1)), os.path.join(top, name))
            for name in sorted(os.listdir(top))
            if _SEED.match(name) and os.path.isdir(os.path.join(top, name))
        ]
        for seed, place in places:
            for name in sorted(os.listdir(place)):
                match = _FOLD.match(name)
                folder = os.path.join(place, name)
                if match and os.path.exists(
                    os.path.join(folder, "test_metrics.json")
                ):
                    info = _read_summary(os.path.join(folder, "run_info.json"))
                    found.append(((stem, seed, int(match.group(1))), info))
    return found


def _last_line(path):
    """The last line of a log: a failed recipe's one-line error."""
    try:
        with open(path, encoding="utf-8", errors="replace") as source:
            lines = [line.strip() for line in source if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _job_name(job):
    stem, seed, fold = job
    return f"{stem} fold {fold}" + (f" seed {seed}" if seed is not None else "")


def _visible_gpus():
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # no CUDA runtime at all: run on the CPU
        return []
