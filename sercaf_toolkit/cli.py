"""The ``sercaf`` command line.

    sercaf cv RECIPE HPARAMS [HPARAMS ...] [--folds 1-3] [--output-root DIR]
              [--gpus 0,1] [-- --key=value ...]
    sercaf predict MODEL_DIR INPUT [INPUT ...] [--out FILE.csv|.json]
              [--batch-size N] [--device cpu|cuda] [--window S --hop S]
              [--long-threshold S] [--plot FILE.png]
    sercaf attention MODEL_DIR AUDIO [--out attention.png] [--json FILE]
    sercaf table CV_SUMMARY [CV_SUMMARY ...] [--out results.md]

Authors
 * sercaf-toolkit developers 2026
"""

import argparse
import sys


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
        "--output-root", help="default: results/cv/<recipe folder name>"
    )
    parser.add_argument(
        "--gpus",
        help="comma-separated GPU indices for one fold per GPU "
        "(default: all visible GPUs when there are several)",
    )
    return parser


def _predict_parser(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="label audio files, folders or path lists with a trained model",
        description=(
            "Labels audio with an EncoderClassifier-compatible model folder. "
            "Recordings longer than --long-threshold seconds get an emotion "
            "timeline from overlapping windows. A file that cannot be read "
            "gets a row with its error; the exit status is 1 if any failed."
        ),
    )
    parser.add_argument(
        "model_dir", help="model folder (e.g. a recipe's inference/)"
    )
    parser.add_argument(
        "inputs", nargs="+", help="audio files, folders, or .txt lists of paths"
    )
    parser.add_argument(
        "--out", help="results .csv or .json (default: CSV on stdout)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--window", type=float, default=4.0, help="seconds")
    parser.add_argument("--hop", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--long-threshold",
        type=float,
        default=30.0,
        help="recordings longer than this many seconds get a timeline",
    )
    parser.add_argument("--plot", help="PNG of class probabilities over time")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _predict(args):
    from sercaf_toolkit.inference import EmotionPredictor, write_records
    from sercaf_toolkit.plots import plot_timelines

    predictor = EmotionPredictor(
        args.model_dir,
        device=args.device,
        batch_size=args.batch_size,
        window=args.window,
        hop=args.hop,
        long_threshold=args.long_threshold,
    )
    records, report = predictor.predict(
        args.inputs, progress=not args.no_progress
    )
    write_records(records, args.out)
    if args.plot:
        plot_timelines(report["windows"], predictor.labels, args.plot)
    rtf = report["real_time_factor"]
    print(
        f"[sercaf predict] {report['files']} files, {report['failures']} "
        f"failed, {report['audio_seconds']:.1f} s of audio in "
        f"{report['wall_seconds']:.1f} s (real-time factor "
        + (f"{rtf:.3f})" if rtf is not None else "n/a)"),
        file=sys.stderr,
    )
    for record in records:
        if record["error"]:
            print(f"[sercaf predict] error: {record['error']}", file=sys.stderr)
    return 1 if report["failures"] else 0


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
    parser.add_argument("--out", default="attention.png", help="PNG to write")
    parser.add_argument("--json", help="also write the maps as JSON")
    parser.add_argument("--device", default="cpu")
    return parser


def _attention(args):
    import json

    from sercaf_toolkit.inference import EmotionPredictor
    from sercaf_toolkit.plots import plot_attention_maps

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


def _table_parser(subparsers):
    parser = subparsers.add_parser(
        "table",
        help="merge several cv_summary.json files into one results table",
    )
    parser.add_argument("summaries", nargs="+", help="cv_summary.json files")
    parser.add_argument("--out", help="Markdown file (default: stdout)")
    return parser


def _table(args):
    from sercaf_toolkit.results import merge_summaries, results_table

    table = results_table(merge_summaries(args.summaries))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(table)
    else:
        print(table)
    return 0


def main(argv=None):
    """Entry point of the ``sercaf`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = []
    if "--" in argv:
        split = argv.index("--")
        argv, overrides = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="sercaf", description="sercaf-toolkit command line"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _cv_parser(subparsers)
    _predict_parser(subparsers)
    _attention_parser(subparsers)
    _table_parser(subparsers)
    args = parser.parse_args(argv)
    if args.command == "table":
        return _table(args)
    if args.command == "attention":
        return _attention(args)
    if args.command == "predict":
        return _predict(args)
    if args.command == "cv":
        from sercaf_toolkit.cv import CrossValidation

        gpus = None
        if args.gpus is not None:
            gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        cv = CrossValidation(
            args.recipe,
            args.hparams,
            output_root=args.output_root,
            folds=args.folds,
            overrides=overrides,
            gpus=gpus,
        )
        summary = cv.run()
        print(
            f"[sercaf cv] wrote {cv.output_root}/cv_summary.json and results.md"
        )
        with open(f"{cv.output_root}/results.md", encoding="utf-8") as table:
            print(table.read())
        return 1 if summary["failed"] else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
