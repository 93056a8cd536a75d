"""The ``sercaf`` command line.

    sercaf cv RECIPE HPARAMS [HPARAMS ...] [--folds 1-3] [--output-root DIR]
              [--gpus 0,1] [-- --key=value ...]

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
    args = parser.parse_args(argv)
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
