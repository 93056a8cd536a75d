#!/usr/bin/env python3
"""Trains a dual-stream SER model on RAVDESS, one speaker-independent fold.

    python recipes/RAVDESS/train.py hparams/caf.yaml \\
        --data_folder=/path/to/RAVDESS --fold=1

All folds and a results table: `sercaf cv recipes/RAVDESS hparams/caf.yaml`.
See README.md beside this file for the protocol and the expected layout.
"""

from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    main(__file__)
