#!/usr/bin/env python3
"""Trains an SER model on the harder synthetic corpus (Expressive).

    python recipes/Expressive/train.py hparams/caf.yaml --fold=2

The corpus is generated on first use; the test speakers are never seen in
training or model selection. ``benchmarks/learning.py`` runs this recipe
beside SER's standard baselines. See ``sercaf_toolkit.training.recipe`` for the
steps and the outputs.
"""

from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    main(__file__)
