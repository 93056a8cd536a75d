"""RAVDESS (speech part) preparation.

Layout: ``<data_folder>/Actor_01/03-01-06-01-02-01-01.wav``; the name's
fields are modality, channel, emotion, intensity, statement, repetition
and actor (odd: male, even: female); the statement (``01`` "Kids are
talking by the door", ``02`` "Dogs are sitting by the door") is the row's
``text``. Only audio-only speech (``03-01-*``)
is kept: 1440 files at 48 kHz (resampled when read); song and the audio
of audio-visual files are left out. Protocol: the 6 actor-disjoint folds
of EmoBox; validation on the next fold's actors.

Authors
 * sercaf-toolkit developers 2026
"""

import os
import re

from sercaf_toolkit.corpora.common import (
    RANDOM_PROTOCOL,
    ManifestBuilder,
    prepare_fold,
    require_folder,
)

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
# RAVDESS's labels in the shared vocabulary (common.SHARED_EMOTIONS).
VOCABULARY = {
    "neutral": "neutral", "calm": "calm", "happy": "happy", "sad": "sad",
    "angry": "angry", "fearful": "fear", "disgust": "disgust",
    "surprised": "surprise",
}  # fmt: skip
NAME = "RAVDESS"
LAYOUT = "Actor_01/ .. Actor_24/"
# Where its audio is (glob patterns): a folder without any is not RAVDESS.
CORPUS_FILES = ("Actor_*/*.[wW][aA][vV]",)
PROTOCOLS = ("actor_folds_6",)  # and RANDOM_PROTOCOL
FOLDS = [
    [1, 11, 20, 21],
    [4, 10, 12, 14],
    [8, 9, 19, 23],
    [3, 5, 7, 24],
    [2, 15, 16, 18],
    [6, 13, 17, 22],
]
EXPECTED_TOTAL = 1440
EXPECTED_PER_LABEL = {
    label: 96 if label == "neutral" else 192 for label in EMOTIONS.values()
}
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def actor_name(number):
    """The speaker id of an actor number: ``Actor_07``."""
    return f"Actor_{int(number):02d}"


def build_manifest(data_folder, strict=False):
    """Manifest rows of the audio-only speech files (see the module doc)."""
    require_folder(data_folder, NAME, LAYOUT)
    builder = ManifestBuilder("RAVDESS")
    actor_dirs = sorted(
        d for d in os.listdir(data_folder) if d.startswith("Actor_")
    )
    if not actor_dirs:
        raise FileNotFoundError(f"RAVDESS: no Actor_NN folder in {data_folder}")
    for actor_dir in actor_dirs:
        folder = os.path.join(data_folder, actor_dir)
        for name in sorted(os.listdir(folder)):
            stem, extension = os.path.splitext(name)
            if extension.lower() != ".wav":
                continue
            path = os.path.join(folder, name)
            match = _NAME.match(stem)
            if not match:
                builder.skip(path, "name does not follow 03-01-06-01-02-01-12")
                continue
            modality, channel, emotion, intensity, statement, _, actor = (
                match.groups()
            )
            if modality != "03" or channel != "01":
                continue  # song or audio-visual: not part of this set
            if emotion not in EMOTIONS:
                builder.skip(path, f"unknown emotion code {emotion!r}")
                continue
            builder.add(
                path,
                ID=stem,
                label=EMOTIONS[emotion],
                speaker=actor_name(actor),
                gender="M" if int(actor) % 2 else "F",
                intensity=intensity,
                statement=statement,
                # The same two statements are said by every actor: the
                # text key of text-disjoint folds (common.prepare_fold).
                text=statement,
            )
    builder.check(EXPECTED_TOTAL, {"label": EXPECTED_PER_LABEL}, strict)
    return builder.rows


def fold_count(protocol="actor_folds_6", **_):
    """Folds of a protocol: the 6 actor groups (1 for the random split)."""
    return 1 if protocol == RANDOM_PROTOCOL else len(FOLDS)


def prepare_ravdess(
    data_folder,
    save_folder,
    fold=1,
    strict=False,
    protocol="actor_folds_6",
    **split_options,
):
    """Writes the manifest and the splits of one of the 6 actor folds.

    ``split_options`` (``validation``, ``speaker_normalization``,
    ``normalized_folder``, ``text_disjoint``): see
    :func:`~sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, strict)
    groups = [[actor_name(a) for a in fold_actors] for fold_actors in FOLDS]
    return prepare_fold(
        rows, save_folder, fold, protocol, groups, corpus=NAME, **split_options
    )
