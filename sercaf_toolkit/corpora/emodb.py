"""EmoDB (Berlin Database of Emotional Speech) preparation.

Layout: ``<data_folder>/wav/03a01Fa.wav`` (some copies: ``wav_corpus/``).
Characters 0-1 are the speaker, 2-4 the text (the row's ``text``: a01, a02,
a04, a05, a07, b01, b02, b03, b09, b10, each said by every speaker), 5 the
emotion letter, 6 the version; the label is only in the file name. 535
files, 10 speakers.
Protocol: leave-one-speaker-out, 10 folds; validation on the next speaker.

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
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
# EmoDB's labels in the shared vocabulary (corpora.common.SHARED_EMOTIONS).
VOCABULARY = {
    "anger": "angry", "boredom": "boredom", "disgust": "disgust",
    "fear": "fear", "happiness": "happy", "neutral": "neutral",
    "sadness": "sad",
}  # fmt: skip
SPEAKER_GENDER = {
    "03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
    "12": "M", "13": "F", "14": "F", "15": "M", "16": "F",
}  # fmt: skip
SPEAKERS = sorted(SPEAKER_GENDER)
NAME = "EmoDB"
LAYOUT = "wav/ or wav_corpus/ with 03a01Fa.wav"
# Where its audio is (glob patterns): a folder without any is not EmoDB.
CORPUS_FILES = ("wav/*.[wW][aA][vV]", "wav_corpus/*.[wW][aA][vV]")
PROTOCOLS = ("leave_one_speaker_out",)  # and RANDOM_PROTOCOL
EXPECTED_TOTAL = 535
EXPECTED_PER_LABEL = {
    "anger": 127, "boredom": 81, "disgust": 46, "fear": 69,
    "happiness": 71, "neutral": 79, "sadness": 62,
}  # fmt: skip
_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")


def build_manifest(data_folder, strict=False):
    """Manifest rows of every EmoDB utterance.

    Arguments
    ---------
    data_folder : str
        The corpus root, holding ``wav/`` or ``wav_corpus/``.
    strict : bool
        Make skipped files and counts that differ from the known ones an
        error.

    Returns
    -------
    list of dict
    """
    require_folder(data_folder, NAME, LAYOUT)
    wav_folder = next(
        (
            os.path.join(data_folder, name)
            for name in ("wav", "wav_corpus")
            if os.path.isdir(os.path.join(data_folder, name))
        ),
        None,
    )
    if wav_folder is None:
        raise FileNotFoundError(
            f"EmoDB: neither wav/ nor wav_corpus/ in {data_folder}"
        )
    builder = ManifestBuilder("EmoDB")
    for name in sorted(os.listdir(wav_folder)):
        stem, extension = os.path.splitext(name)
        if extension.lower() != ".wav":
            continue
        path = os.path.join(wav_folder, name)
        match = _NAME.match(stem)
        if not match:
            builder.skip(path, "name does not follow EmoDB's 03a01Fa pattern")
            continue
        speaker, text, letter, _ = match.groups()
        if letter not in EMOTIONS:
            builder.skip(path, f"unknown emotion letter {letter!r}")
            continue
        if speaker not in SPEAKER_GENDER:
            builder.skip(path, f"unknown speaker {speaker!r}")
            continue
        builder.add(
            path,
            ID=stem,
            label=EMOTIONS[letter],
            speaker=speaker,
            gender=SPEAKER_GENDER[speaker],
            text=text,
        )
    builder.check(EXPECTED_TOTAL, {"label": EXPECTED_PER_LABEL}, strict)
    return builder.rows


def fold_count(protocol="leave_one_speaker_out", **_):
    """Folds of a protocol: one per speaker (1 for the random split)."""
    return 1 if protocol == RANDOM_PROTOCOL else len(SPEAKERS)


def prepare_emodb(
    data_folder,
    save_folder,
    fold=1,
    strict=False,
    protocol="leave_one_speaker_out",
    **split_options,
):
    """Writes the manifest and the splits of one leave-one-speaker-out fold.

    Fold ``k`` tests on the k-th speaker of ``03 08 09 10 11 12 13 14 15
    16`` and validates on the next one.

    ``split_options`` (``validation``, ``speaker_normalization``,
    ``normalized_folder``, ``text_disjoint``): see
    :func:`~sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, strict)
    groups = [[speaker] for speaker in SPEAKERS]
    return prepare_fold(
        rows, save_folder, fold, protocol, groups, corpus=NAME, **split_options
    )
