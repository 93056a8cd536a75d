#!/usr/bin/env python3
"""Learning benchmark: the toolkit against SER's standard baselines.

    python benchmarks/learning.py                       # all five rows
    python benchmarks/learning.py --rows 1,2,3 --folds 1,2 --epochs 10

On the harder synthetic corpus (:mod:`sercaf_toolkit.corpora.expressive`:
16 speakers with their own baselines and channels, 5 unbalanced emotions)
and its speaker-independent folds, side by side on the same folds:

1. eGeMAPS v02 functionals (openSMILE, 88 values) + StandardScaler +
   LogisticRegression;
2. log-mel statistics (per-band mean and std, frame-energy mean and std,
   duration) + StandardScaler + LogisticRegression;
3. the log-mel stream alone (scratch encoder, statistics pooling, head),
   trained by the recipe ``recipes/Expressive/hparams/logmel.yaml``;
4. the full CAF recipe (``hparams/caf.yaml``) with a tiny SSL model
   without pre-training, fine-tuned;
5. the same with the SSL stream frozen (``--ssl_freeze=True``);
6-7 (on request, ``--rows``): rows 1-2 with every speaker's features
   standardised with that speaker's own statistics (transductive: test
   speakers' unlabeled features included), the baselines' counterpart of
   ``--overrides=--speaker_normalization=True``.

Rows 1-2 train on every non-test speaker (train + valid: a linear model
needs no model selection); rows 3-5 train on the train split and pick
their checkpoint on the valid speakers, exactly as the recipes do
(``sercaf_toolkit.training.recipe.run_recipe``). The table gives mean +-
std over
folds x seeds of UA, WA and macro F1 (scikit-learn's
``balanced_accuracy_score``, ``accuracy_score``, ``f1_score``) computed
from each run's test predictions.

``--inductive`` runs rows 3-5 without speaker normalisation (each test
file labelled on its own, as an exported model does), and ``--reference
FILE`` (a ``--json`` file of another invocation, e.g. the defaults) adds
each deep row's UA difference to it, paired over fold x seed, with the
95 % t interval and the sign-flip p of ``sercaf compare``:

    python benchmarks/learning.py --rows 1,3,4 --inductive --seeds 1,2,3 \
        --json defaults.json
    python benchmarks/learning.py --rows 3 --inductive --seeds 1,2,3 \
        --overrides='--mixup_alpha=0.4' --reference defaults.json

Needs the ``baselines`` extra for row 1 (``pip install -e .[baselines]``,
which installs ``opensmile``).
"""

import contextlib
import csv
import json
import logging
import os
import shlex
import statistics
import sys
import time
import traceback

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from sercaf_toolkit.cli import Parser  # noqa: E402
from sercaf_toolkit.corpora.expressive import prepare_expressive  # noqa: E402
from sercaf_toolkit.data import read_audio, read_manifest  # noqa: E402

RECIPE = os.path.join(ROOT, "recipes", "Expressive", "hparams")
ROWS = {
    1: "eGeMAPS functionals + LogReg",
    2: "log-mel statistics + LogReg",
    3: "log-mel stream (recipe)",
    4: "CAF, tiny SSL fine-tuned",
    5: "CAF, tiny SSL frozen",
    6: "eGeMAPS, per-speaker z-norm + LogReg",
    7: "log-mel statistics, per-speaker z-norm + LogReg",
}
# Row -> (hparams file, extra overrides).
DEEP_ROWS = {
    3: ("logmel.yaml", []),
    4: ("caf.yaml", []),
    5: ("caf.yaml", ["--ssl_freeze=True"]),
}


class MissingExtra(RuntimeError):
    """An optional dependency of a row is not installed."""


# Baseline features ----------------------------------------------------------


def egemaps_features(paths):
    """eGeMAPS v02 functionals (88 per utterance) with openSMILE."""
    try:
        import opensmile
    except ImportError as error:
        raise MissingExtra(
            "row 1 needs opensmile: pip install -e '.[baselines]' "
            "(the `baselines` extra), or leave row 1 out with --rows 2,3,4,5"
        ) from error
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    rows = []
    for path in paths:
        signal = read_audio(path).numpy()
        rows.append(smile.process_signal(signal, 16000).to_numpy()[0])
    return np.asarray(rows, dtype=np.float64)


def logmel_statistics(paths, n_mels=64):
    """Per-band log-mel mean and std, frame-energy mean and std, duration.

    The log-mel is the toolkit's own front end
    (:class:`~sercaf_toolkit.lobes.LogMel`, dB against a fixed reference:
    loudness kept).
    """
    from sercaf_toolkit.lobes import LogMel

    logmel = LogMel(n_mels=n_mels)
    rows = []
    with torch.no_grad():
        for path in paths:
            wav = read_audio(path)
            feats, mask = logmel(wav[None])
            frames = feats[0][mask[0]].double()  # [T, F]
            energy = 10 * torch.log10(
                (10 ** (frames / 10)).sum(dim=1).clamp(min=1e-10)
            )
            rows.append(
                torch.cat(
                    [
                        frames.mean(0),
                        frames.std(0),
                        torch.stack([energy.mean(), energy.std()]),
                        torch.tensor([len(wav) / 16000], dtype=torch.double),
                    ]
                ).numpy()
            )
    return np.asarray(rows)


FEATURES = {1: ("egemaps", egemaps_features), 2: ("logmel", logmel_statistics)}
# Rows 6-7: rows 1-2 with each speaker's features standardised by that
# speaker's own statistics (transductive, like speaker_normalization).
SPEAKER_NORMALIZED = {6: 1, 7: 2}


def cached_features(row, paths, cache_folder):
    """Features of every utterance for a baseline row, cached in npz."""
    name, function = FEATURES[row]
    path = os.path.join(cache_folder, f"{name}_features.npz")
    if os.path.exists(path):
        cached = np.load(path, allow_pickle=False)
        if list(cached["paths"]) == list(paths):
            return cached["features"]
    features = function(paths)
    np.savez(path, paths=np.asarray(paths), features=features)
    return features


def run_baseline(row, splits, all_paths, cache_folder):
    """Trains the linear baseline of ``row`` on one fold.

    Returns
    -------
    list of str, list of str
        True and predicted labels of the test utterances.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = cached_features(
        SPEAKER_NORMALIZED.get(row, row), all_paths, cache_folder
    )
    index = {path: i for i, path in enumerate(all_paths)}
    if row in SPEAKER_NORMALIZED:
        features = np.nan_to_num(features).copy()
        rows = splits["train"] + splits["valid"] + splits["test"]
        for speaker in {r["speaker"] for r in rows}:
            own = [index[r["wav"]] for r in rows if r["speaker"] == speaker]
            mean = features[own].mean(axis=0)
            std = features[own].std(axis=0) + 1e-8
            features[own] = (features[own] - mean) / std
    train = splits["train"] + splits["valid"]
    x_train = features[[index[r["wav"]] for r in train]]
    y_train = [r["label"] for r in train]
    x_test = features[[index[r["wav"]] for r in splits["test"]]]
    classifier = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced"),
    )
    classifier.fit(np.nan_to_num(x_train), y_train)
    predicted = classifier.predict(np.nan_to_num(x_test))
    return [r["label"] for r in splits["test"]], list(predicted)


# Deep rows -----------------------------------------------------------------


def run_deep(row, fold, seed, args, output_folder):
    """Trains the recipe of ``row`` on one fold through ``run_recipe``."""
    from sercaf_toolkit.training.recipe import run_recipe

    hparams, extra = DEEP_ROWS[row]
    argv = [
        os.path.join(args.recipe, hparams),
        f"--data_folder={args.data_folder}",
        f"--scale={args.scale}",
        f"--fold={fold}",
        f"--seed={seed}",
        f"--number_of_epochs={args.epochs}",
        f"--output_folder={output_folder}",
        *extra,
        *(["--speaker_normalization=False"] if args.inductive else []),
        *shlex.split(args.overrides),
    ]
    os.makedirs(output_folder, exist_ok=True)
    log = os.path.join(output_folder, "benchmark_run.log")
    with open(log, "w", encoding="utf-8") as out:
        # The runner's progress bars and messages go to the run's log.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                result = run_recipe(argv)
            except Exception as error:
                # Logged here, while the log is open: SpeechBrain's logger
                # writes to the redirected stream, closed once this returns.
                traceback.print_exc(file=out)
                failure = f"{type(error).__name__}: {error}"
            else:
                failure = None
    if failure is not None:
        raise RuntimeError(
            f"row {row} fold {fold} seed {seed} failed ({failure}); "
            f"traceback in {log}"
        )
    with open(os.path.join(result.output_folder, "predictions.csv")) as src:
        rows = list(csv.DictReader(src))
    return [r["true_label"] for r in rows], [r["predicted_label"] for r in rows]


# Table -----------------------------------------------------------------------


def scores(true, predicted):
    """UA, WA and macro F1 with scikit-learn."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
    )

    return {
        "UA": balanced_accuracy_score(true, predicted),
        "WA": accuracy_score(true, predicted),
        "F1": f1_score(true, predicted, average="macro"),
    }


def spread(values):
    mean = statistics.fmean(values)
    if len(values) < 2:  # one run shows no spread; 0.000 would claim one
        return f"{mean:.3f} ± n/a"
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def format_table(results, runs_per_row):
    """Markdown table of mean ± std over runs (folds x seeds)."""
    lines = [
        "| row | system | runs | UA | WA | macro F1 |",
        "|---|---|---|---|---|---|",
    ]
    for row, runs in results.items():
        if not runs:
            continue
        cells = [
            spread([run[key] for run in runs]) for key in ("UA", "WA", "F1")
        ]
        lines.append(
            f"| {row} | {ROWS[row]} | {len(runs)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def load_results(path):
    """The per-run results of a ``--json`` file, rows as ints."""
    with open(path, encoding="utf-8") as source:
        return {int(row): runs for row, runs in json.load(source).items()}


def paired_differences(runs, reference, metric="UA"):
    """``metric`` differences of ``runs`` to ``reference``, same fold and seed.

    Example
    -------
    >>> a = [{"fold": 1, "seed": 1, "UA": 0.5},
    ...      {"fold": 2, "seed": 1, "UA": 0.4}]
    >>> b = [{"fold": 2, "seed": 1, "UA": 0.3},
    ...      {"fold": 1, "seed": 1, "UA": 0.5}]
    >>> [round(d, 3) for d in paired_differences(a, b)]
    [0.0, 0.1]
    """
    by_pair = {(r["fold"], r["seed"]): r[metric] for r in reference}
    missing = [(r["fold"], r["seed"]) for r in runs if (r["fold"], r["seed"])
               not in by_pair]  # fmt: skip
    if missing:
        raise ValueError(
            f"the reference has no run of fold {missing[0][0]} seed "
            f"{missing[0][1]}; run it with the same --folds and --seeds"
        )
    return [r[metric] - by_pair[(r["fold"], r["seed"])] for r in runs]


def format_differences(results, reference, metric="UA"):
    """Markdown: each deep row's mean difference, 95 % t interval, p.

    The p-value is the exact sign-flip permutation test of ``sercaf
    compare`` (:func:`sercaf_toolkit.evaluation.compare.sign_flip_test`),
    the interval its t interval, both over the fold x seed pairs.
    """
    from sercaf_toolkit.evaluation.compare import sign_flip_test, t_interval

    lines = [
        f"| row | pairs | {metric} | reference | difference | 95 % interval "
        "| p (sign flips) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, runs in results.items():
        if not runs or row not in DEEP_ROWS or not reference.get(row):
            continue
        differences = paired_differences(runs, reference[row], metric)
        interval = t_interval(differences)
        p, _ = sign_flip_test(differences)
        mean = statistics.fmean(r[metric] for r in runs)
        lines.append(
            f"| {row} | {len(differences)} | {mean:.3f} | "
            f"{mean - statistics.fmean(differences):.3f} | "
            f"{statistics.fmean(differences):+.3f} | "
            + (
                f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"
                if interval
                else "n/a"
            )
            + f" | {p:.3g} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    # Both spellings of each option, as every sercaf command takes them.
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1,2,3,4,5", help="rows to run")
    parser.add_argument("--folds", default="1,2,3,4", help="folds (1..4)")
    parser.add_argument("--seeds", default="1", help="seeds of rows 3-5")
    parser.add_argument("--epochs", type=int, default=15, help="rows 3-5")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="corpus size (1.0: 448 utts)"
    )
    parser.add_argument("--data_folder", default="results/learning/data")
    parser.add_argument("--output_folder", default="results/learning")
    parser.add_argument(
        "--overrides",
        default="",
        help="extra recipe overrides for rows 3-5, e.g. '--dropout=0.3'",
    )
    parser.add_argument(
        "--inductive",
        action="store_true",
        help="rows 3-5 label each test file on its own: the recipe's "
        "defaults with --speaker_normalization=False",
    )
    parser.add_argument(
        "--recipe", default=RECIPE, help="folder of logmel.yaml and caf.yaml"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", help="also write the per-run results here")
    parser.add_argument(
        "--reference",
        help="a --json file of another invocation (e.g. the defaults): "
        "each deep row's UA difference to it, paired over fold x seed",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    rows = [int(r) for r in args.rows.split(",")]
    folds = [int(f) for f in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    args.data_folder = os.path.abspath(
        f"{args.data_folder}_scale{args.scale:g}"
    )
    print("command: python benchmarks/learning.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    ))  # fmt: skip
    results = {row: [] for row in rows}
    started = time.time()
    try:
        for fold in folds:
            fold_folder = os.path.join(args.output_folder, f"fold_{fold}")
            os.makedirs(fold_folder, exist_ok=True)
            splits = prepare_expressive(
                args.data_folder, fold_folder, fold, scale=args.scale
            )
            all_paths = [
                r["wav"]
                for r in read_manifest(os.path.join(fold_folder, "data.csv"))
            ]
            for row in rows:
                if row in FEATURES or row in SPEAKER_NORMALIZED:
                    true, predicted = run_baseline(
                        row, splits, all_paths, args.output_folder
                    )
                    results[row].append(
                        {"fold": fold, "seed": None, **scores(true, predicted)}
                    )
                    continue
                for seed in seeds:
                    name = f"row{row}_fold{fold}_seed{seed}"
                    out = os.path.join(args.output_folder, "runs", name)
                    true, predicted = run_deep(row, fold, seed, args, out)
                    results[row].append(
                        {"fold": fold, "seed": seed, **scores(true, predicted)}
                    )
                    print(
                        f"  row {row} fold {fold} seed {seed}: UA "
                        f"{results[row][-1]['UA']:.3f}"
                    )
    except MissingExtra as error:
        print(f"learning.py: error: {error}", file=sys.stderr)
        return 2
    print(
        f"\nfolds {args.folds}, seeds {args.seeds} (rows 3-5"
        + (", inductive" if args.inductive else "")
        + f"), {args.epochs} epochs, corpus scale {args.scale:g}, "
        f"{time.time() - started:.0f} s"
    )
    print(format_table(results, len(folds)))
    if args.reference:
        print(f"\nagainst {args.reference}, paired over fold x seed:")
        print(format_differences(results, load_results(args.reference)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({str(k): v for k, v in results.items()}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
