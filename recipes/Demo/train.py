#!/usr/bin/env python3
"""Trains a dual-stream SER model on the embedded synthetic demo corpus.

    python recipes/Demo/train.py hparams/caf.yaml

The corpus is generated on first use; the test speakers are never seen in
training or model selection. After training, the exported model is loaded
the way a user would, with SpeechBrain's EncoderClassifier, and labels one
test file. See ``sercaf_toolkit.training.recipe`` for the steps and the outputs.
"""

import os

from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.distributed import if_main_process

from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.training.recipe import main

if __name__ == "__main__":
    result = main(__file__)
    if if_main_process():
        classifier = EncoderClassifier.from_hparams(
            source=result.inference_folder,
            savedir=os.path.join(result.output_folder, "inference_loaded"),
        )
        example = read_manifest(os.path.join(result.output_folder, "test.csv"))[
            0
        ]
        scores, score, _, labels = classifier.classify_file(example["wav"])
        head = classifier.mods.classifier
        if hasattr(head, "dimensions"):  # task: dimensional (see docs)
            values = ", ".join(
                f"{name} {float(value):.2f}"
                for name, value in zip(head.dimensions, scores.reshape(-1))
            )
            print(
                f"EncoderClassifier on {example['wav']} (an unseen speaker, "
                f"true label {example['label']}): {values}"
            )
        else:
            print(
                f"EncoderClassifier on {example['wav']} (an unseen speaker, "
                f"true label {example['label']}): {labels[0]} "
                f"(log-probability {float(score):.3f})"
            )
