"""Cross-validation over a recipe's folds, and paper-style result tables.

``sercaf cv recipes/CASIA hparams/caf.yaml hparams/sum.yaml -- --data_folder=X``
runs every fold of every hparams file (one after another, or one fold per
GPU when several are visible), each in its own process and output folder,
skips folds that already finished (so a killed run resumes where it
stopped), and writes:

- ``cv_summary.json``: per-fold WA/UA/F1, their mean and sample standard
  deviation over folds, and pooled-prediction figures;
- ``results.md``: one row per hparams file (SSL model, scratch encoder,
  fusion block), in the shape of the paper's tables;
- ``<experiment>/confusion_matrix.png``: pooled over folds, normalised by
  true class.

Authors
 * sercaf-toolkit developers 2026
"""

import concurrent.futures
import csv
import json
import os
import queue
import statistics
import subprocess
import sys
import time

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import resolve_references

from sercaf_toolkit.metrics import EmotionMetrics
from sercaf_toolkit.plots import plot_confusion_matrix
from sercaf_toolkit.recipe import resolve_hparams_path

METRICS = ("WA", "UA", "F1")


def fold_count(hparams_file, overrides):
    """The ``n_folds`` of a recipe YAML file (with overrides), unbuilt."""
    with open(hparams_file, encoding="utf-8") as source:
        resolved = resolve_references(source.read(), overrides).getvalue()
    tree = ruamel.yaml.YAML().load(resolved)
    if "n_folds" not in tree:
        raise KeyError(f"{hparams_file} has no n_folds key; pass --folds")
    return int(tree["n_folds"])


def parse_folds(text, n_folds):
    """``"1-3,5"`` -> ``[1, 2, 3, 5]``; ``None`` -> all folds.

    Example
    -------
    >>> parse_folds("1-3,5", 10), parse_folds(None, 4)
    ([1, 2, 3, 5], [1, 2, 3, 4])
    """
    if not text:
        return list(range(1, n_folds + 1))
    folds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        folds.extend(range(int(first), int(last or first) + 1))
    return sorted(set(folds))


class CrossValidation:
    """Runs a recipe's folds for one or more hparams files and sums up.

    Arguments
    ---------
    recipe : str
        The recipe folder (holding ``train.py``) or its ``train.py``.
    hparams_files : list of str
        YAML files, looked for in the working directory, then the recipe.
    output_root : str, optional
        Where each experiment's folds go (``<root>/<stem>/fold_<k>``);
        default ``results/cv/<recipe folder name>``.
    folds : str, optional
        Which folds, e.g. ``"1-3,5"`` (default: all ``n_folds``).
    overrides : list of str
        ``--key=value`` overrides passed to every fold.
    gpus : list of int, optional
        GPU indices to run folds on in parallel (one fold per GPU); default:
        every visible GPU when there are several, else one run at a time.
    """

    def __init__(
        self,
        recipe,
        hparams_files,
        output_root=None,
        folds=None,
        overrides=(),
        gpus=None,
    ):
        self.train_py = (
            recipe
            if recipe.endswith(".py")
            else os.path.join(recipe, "train.py")
        )
        if not os.path.isfile(self.train_py):
            raise FileNotFoundError(f"no recipe script at {self.train_py}")
        recipe_dir = os.path.dirname(os.path.abspath(self.train_py))
        self.overrides = list(overrides)
        self.hparams = {}
        for path in hparams_files:
            path = resolve_hparams_path(path, recipe_dir)
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in self.hparams:
                raise ValueError(f"two hparams files named {stem}.yaml")
            self.hparams[stem] = path
        self.output_root = output_root or os.path.join(
            "results", "cv", os.path.basename(recipe_dir)
        )
        _, _, yaml_overrides = sb.parse_arguments(
            [next(iter(self.hparams.values())), *self.overrides]
        )
        self.folds = {
            stem: parse_folds(folds, fold_count(path, yaml_overrides))
            for stem, path in self.hparams.items()
        }
        if gpus is None:
            gpus = _visible_gpus()
        self.gpus = list(gpus)

    def fold_dir(self, stem, fold):
        """Output folder of one fold of one experiment."""
        return os.path.join(self.output_root, stem, f"fold_{fold}")

    def jobs(self):
        """(stem, fold) pairs, in order."""
        return [(s, f) for s in self.hparams for f in self.folds[s]]

    def run(self):
        """Runs the unfinished folds; returns the summary (and writes it)."""
        jobs = self.jobs()
        todo = [
            job
            for job in jobs
            if not os.path.exists(
                os.path.join(self.fold_dir(*job), "test_metrics.json")
            )
        ]
        done = len(jobs) - len(todo)
        print(
            f"[sercaf cv] {len(jobs)} runs ({len(self.hparams)} experiment(s)"
            f" x folds); {done} already finished, {len(todo)} to run"
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
            names = ", ".join(f"{s} fold {f}" for s, f in failures)
            print(f"[sercaf cv] FAILED: {names}", flush=True)
        summary["failed"] = [list(job) for job in failures]
        return summary

    def _run_fold(self, job, position, total, gpu=None):
        stem, fold = job
        folder = self.fold_dir(stem, fold)
        os.makedirs(folder, exist_ok=True)
        command = [
            sys.executable,
            self.train_py,
            self.hparams[stem],
            f"--fold={fold}",
            f"--output_folder={folder}",
            *self.overrides,
        ]
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        print(
            f"[sercaf cv] {stem} fold {fold}: running ({position}/{total},"
            f" {total - position} left after it; log: {folder}/cv_log.txt)",
            flush=True,
        )
        start = time.time()
        with open(os.path.join(folder, "cv_log.txt"), "w") as log:
            code = subprocess.call(
                command, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        metrics_file = os.path.join(folder, "test_metrics.json")
        if code != 0 or not os.path.exists(metrics_file):
            print(
                f"[sercaf cv] {stem} fold {fold}: FAILED (exit {code}); "
                f"see {folder}/cv_log.txt",
                flush=True,
            )
            return False
        with open(metrics_file, encoding="utf-8") as source:
            metrics = json.load(source)
        print(
            f"[sercaf cv] {stem} fold {fold}: WA {metrics['WA']:.3f} "
            f"UA {metrics['UA']:.3f} F1 {metrics['F1']:.3f} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )
        return True

    def summarize(self):
        """Writes ``cv_summary.json``, ``results.md`` and the pictures."""
        experiments = {}
        for stem in self.hparams:
            experiments[stem] = self._summarize_experiment(stem)
        summary = {
            "aggregation": "mean and sample standard deviation over folds; "
            "pooled: metrics of all folds' test predictions together",
            "output_root": self.output_root,
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

    def _summarize_experiment(self, stem):
        per_fold, labels, rows, info = {}, None, [], {}
        for fold in self.folds[stem]:
            folder = self.fold_dir(stem, fold)
            metrics_file = os.path.join(folder, "test_metrics.json")
            if not os.path.exists(metrics_file):
                continue
            with open(metrics_file, encoding="utf-8") as source:
                metrics = json.load(source)
            per_fold[fold] = {key: metrics[key] for key in METRICS}
            labels = metrics["labels"]
            with open(
                os.path.join(folder, "predictions.csv"), newline=""
            ) as source:
                rows.extend(csv.DictReader(source))
            info_file = os.path.join(folder, "run_info.json")
            if not info and os.path.exists(info_file):
                with open(info_file, encoding="utf-8") as source:
                    info = json.load(source)
        result = {
            "hparams_file": self.hparams[stem],
            "system": info,
            "folds": per_fold,
            "missing_folds": [f for f in self.folds[stem] if f not in per_fold],
        }
        if not per_fold:
            return result
        values = {key: [m[key] for m in per_fold.values()] for key in METRICS}
        result["mean"] = {k: statistics.fmean(v) for k, v in values.items()}
        result["std"] = {
            k: statistics.stdev(v) if len(v) > 1 else 0.0
            for k, v in values.items()
        }
        pooled = EmotionMetrics(labels)
        index = {label: i for i, label in enumerate(labels)}
        pooled.append(
            [row["id"] for row in rows],
            [index[row["predicted_label"]] for row in rows],
            [index[row["true_label"]] for row in rows],
        )
        pooled_summary = pooled.summarize()
        result["pooled"] = {
            "WA": pooled_summary["WA"],
            "UA": pooled_summary["UA"],
            "F1": pooled_summary["macro_F1"],
            "labels": labels,
            "confusion_matrix": pooled_summary["confusion_matrix"],
        }
        picture = os.path.join(self.output_root, stem, "confusion_matrix.png")
        plot_confusion_matrix(
            pooled_summary["confusion_matrix"],
            labels,
            picture,
            title=f"{stem}: {len(per_fold)} folds pooled",
        )
        result["confusion_matrix_png"] = picture
        return result


def merge_summaries(paths):
    """One summary from several ``cv_summary.json`` files.

    Experiments are named ``<folder of the summary>/<experiment>``, so that
    runs of the same hparams file with other SSL models or encoders (each
    in its own ``--output-root``) stay apart.
    """
    experiments = {}
    for path in paths:
        with open(path, encoding="utf-8") as source:
            summary = json.load(source)
        root = os.path.basename(os.path.dirname(os.path.abspath(path)))
        for stem, result in summary["experiments"].items():
            experiments[f"{root}/{stem}"] = result
    return {"experiments": experiments}


def results_table(summary):
    """The paper-style Markdown table of a cross-validation summary."""
    lines = [
        "# Cross-validation results",
        "",
        "Speaker-independent folds; figures in %: mean ± sample standard "
        "deviation over folds, and pooled over all folds' test predictions.",
        "",
        "| experiment | SSL model | scratch encoder | fusion | WA | UA | F1 "
        "| pooled WA | pooled UA | folds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, result in summary["experiments"].items():
        system = result.get("system") or {}
        streams = system.get("streams", [])
        ssl = ", ".join(s for s in streams if s not in ("DPCNN", "TextRCNN"))
        source = system.get("ssl_source")
        if source:
            ssl = f"{ssl} ({source})"
        scratch = ", ".join(s for s in streams if s in ("DPCNN", "TextRCNN"))
        if "mean" not in result:
            cells = ["-"] * 5
        else:
            cells = [
                f"{100 * result['mean'][k]:.1f} ± {100 * result['std'][k]:.1f}"
                for k in METRICS
            ] + [f"{100 * result['pooled'][k]:.1f}" for k in ("WA", "UA")]
        n_done = len(result["folds"])
        n_all = n_done + len(result["missing_folds"])
        lines.append(
            f"| {stem} | {ssl or '-'} | {scratch or '-'} | "
            f"{system.get('fusion', '-')} | "
            + " | ".join(cells)
            + f" | {n_done}/{n_all} |"
        )
    return "\n".join(lines) + "\n"


def _visible_gpus():
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # no CUDA runtime at all: run on the CPU
        return []
