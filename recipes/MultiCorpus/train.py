#!/usr/bin/env python3
"""Trains a dual-stream SER model on several corpora at once.

    python recipes/MultiCorpus/train.py hparams/caf.yaml \\
        --data_folder=/data --test_corpus=own --fold=1

Leave-one-corpus-out: ``--test_corpus=RAVDESS`` (or ``each`` with
``sercaf cv``). See README.md beside this file.
"""

from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    main(__file__)
