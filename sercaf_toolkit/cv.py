"""Cross-validation: runs a recipe's folds, under one or several seeds.

``sercaf cv recipes/CASIA hparams/caf.yaml hparams/sum.yaml -- --data_folder=X``
runs every fold of every hparams file (one after another, or one fold per
GPU when several are visible), each in its own process and output folder.
The fold count comes from the recipe's corpus and protocol. A fold that
already finished is skipped only when its ``run_info.json`` shows the same
hparams file and overrides (so a killed run resumes where it stopped);
one that finished with other settings is refused with the setting named,
or run again with ``rerun=True`` (``--rerun``). Then it writes, through
:mod:`sercaf_toolkit.results`:

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
import shutil
import subprocess
import sys
import time

import speechbrain as sb

from sercaf_toolkit.corpora import check_recipe_corpus, recipe_fold_count
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import (
    checked_hparams,
    overrides_dict,
    resolve_hparams_path,
)
from sercaf_toolkit.recipe_options import recipe_keys, respell_options
from sercaf_toolkit.results import results_table, summarize_runs
from sercaf_toolkit.threads import default_threads, thread_environment


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
        Run again the folds that finished with other settings (their
        folder is emptied first) instead of refusing.
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
            n_folds = None
            if not folds:  # the corpus knows its protocol's folds
                n_folds = recipe_fold_count(tree)
            self.folds[stem] = parse_folds(folds, n_folds)
        if gpus is None:
            gpus = _visible_gpus()
        self.gpus = list(gpus)

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
        ]

    def finished(self, job):
        """Whether a job's run finished with the requested settings.

        A run that finished with another hparams file or other overrides
        is refused (a :class:`UserError` naming the setting), or, with
        ``rerun``, its folder is emptied and it counts as unfinished.
        """
        folder = self.fold_dir(job[0], job[2], job[1])
        if not os.path.exists(os.path.join(folder, "test_metrics.json")):
            return False
        info_file = os.path.join(folder, "run_info.json")
        earlier = {}
        if os.path.exists(info_file):
            with open(info_file, encoding="utf-8") as source:
                earlier = json.load(source)
        command = self.command(job)
        _, _, overrides = sb.parse_arguments(command[2:])
        wanted = {
            "hparams_file": command[2],
            "overrides": overrides_dict(overrides),
        }
        difference = _first_difference(earlier, wanted)
        if difference is None:
            return True
        if not self.rerun:
            raise UserError(
                f"{folder} finished with {difference}; pass --rerun to run "
                "it again, or --output_root for a new folder"
            )
        print(f"[sercaf cv] {folder}: rerun ({difference})", flush=True)
        shutil.rmtree(folder)
        return False

    def run(self):
        """Runs the unfinished folds; returns the summary (and writes it)."""
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
                return self._run_fold(job, position, len(todo), gpu)
            finally:
                devices.put(gpu)

        with concurrent.futures.ThreadPoolExecutor(devices.qsize()) as pool:
            results = pool.map(on_free_device, enumerate(todo, start=1))
            failures = [job for job, ok in zip(todo, results) if not ok]
        summary = self.summarize()
        if failures:
            names = ", ".join(_job_name(job) for job in failures)
            print(f"[sercaf cv] FAILED: {names}", flush=True)
        summary["failed"] = [list(job) for job in failures]
        return summary

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
        with open(os.path.join(folder, "cv_log.txt"), "w") as log:
            code = subprocess.call(
                self.command(job), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        metrics_file = os.path.join(folder, "test_metrics.json")
        if code != 0 or not os.path.exists(metrics_file):
            print(
                f"[sercaf cv] {_job_name(job)}: FAILED (exit {code}); "
                f"see {folder}/cv_log.txt",
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
        """Writes ``cv_summary.json``, ``results.md`` and the pictures."""
        experiments = {}
        for stem, path in self.hparams.items():
            runs = {
                (seed, fold): self.fold_dir(stem, fold, seed)
                for seed in self.seeds
                for fold in self.folds[stem]
            }
            experiments[stem] = {
                "hparams_file": path,
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
        with open(
            os.path.join(self.output_root, "cv_summary.json"), "w"
        ) as out:
            json.dump(summary, out, indent=2)
        with open(os.path.join(self.output_root, "results.md"), "w") as out:
            out.write(results_table(summary))
        return summary


def _job_name(job):
    stem, seed, fold = job
    return f"{stem} fold {fold}" + (f" seed {seed}" if seed is not None else "")


def _first_difference(earlier, wanted):
    """The first setting in which a finished run differs, or ``None``."""
    if earlier.get("hparams_file") != wanted["hparams_file"]:
        return (
            f"hparams file {earlier.get('hparams_file')}, not "
            f"{wanted['hparams_file']}"
        )
    before = earlier.get("overrides") or {}
    now = wanted["overrides"]
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            return f"{key}={before.get(key, '(default)')}, not " + (
                f"{key}={now.get(key, '(default)')}"
            )
    return None


def _visible_gpus():
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # no CUDA runtime at all: run on the CPU
        return []
