#!/usr/bin/env python3
"""Trains a dual-stream SER model on EmoDB, one speaker-independent fold.

    python recipes/EmoDB/train.py hparams/caf.yaml \\
        --data_folder=/path/to/EmoDB --fold=1

All folds and a results table: `sercaf cv recipes/EmoDB hparams/caf.yaml`.
See README.md beside this file for the protocol and the expected layout.
"""

from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    main(__file__)
