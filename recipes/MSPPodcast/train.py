#!/usr/bin/env python3
"""Trains a dual-stream SER model on MSP-Podcast, one official test set.

    python recipes/MSPPodcast/train.py hparams/caf.yaml \\
        --data_folder=/path/to/MSP-Podcast --task=dimensional

See README.md beside this file for the partitions and the expected layout.
"""

from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    main(__file__)
