"""CASIA (public 1200-utterance set) preparation.

Layout: ``<data_folder>/<speaker>/<emotion>/<NNN>.wav``, e.g.
``CASIA/wangzhe/angry/201.wav``; the file number is the sentence (201-250,
the same 50 sentences under every speaker and emotion), the row's
``text``. Speaker folders are matched without
regard to case (``ZhaoZuoxiang``); ``normal`` is ``neutral``. Copies differ
in sample rate: audio is always resampled when read. Protocol:
leave-one-speaker-out, 4 folds; validation on the next speaker.

Authors
 * sercaf-toolkit developers 2026
"""

import os

from sercaf_toolkit.corpora.common import (
    RANDOM_PROTOCOL,
    ManifestBuilder,
    prepare_fold,
    require_folder,
)

SPEAKER_GENDER = {
    "liuchanhg": "F",  # sic: the corpus's spelling
    "wangzhe": "M",
    "zhaoquanyin": "F",
    "zhaozuoxiang": "M",
}
SPEAKERS = list(SPEAKER_GENDER)
EMOTIONS = {
    "angry": "angry",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "normal": "neutral",
    "sad": "sad",
    "surprise": "surprise",
}
# CASIA's labels (after "normal" -> "neutral") are shared names already.
VOCABULARY = {label: label for label in set(EMOTIONS.values())}
NAME = "CASIA"
LAYOUT = "<speaker>/<emotion>/<NNN>.wav"
# Where its audio is (glob patterns): a folder without any is not CASIA.
CORPUS_FILES = ("*/*/*.[wW][aA][vV]",)
PROTOCOLS = ("leave_one_speaker_out",)  # and RANDOM_PROTOCOL
EXPECTED_TOTAL = 1200
EXPECTED_PER_LABEL = {label: 200 for label in set(EMOTIONS.values())}


def build_manifest(data_folder, strict=False):
    """Manifest rows of every CASIA utterance (see the module docstring)."""
    require_folder(data_folder, NAME, LAYOUT)
    builder = ManifestBuilder("CASIA")
    for speaker_dir in sorted(os.listdir(data_folder)):
        speaker_path = os.path.join(data_folder, speaker_dir)
        if not os.path.isdir(speaker_path):
            continue
        speaker = speaker_dir.lower()
        if speaker not in SPEAKER_GENDER:
            builder.skip(speaker_path, "not a CASIA speaker folder")
            continue
        for emotion_dir in sorted(os.listdir(speaker_path)):
            emotion_path = os.path.join(speaker_path, emotion_dir)
            if not os.path.isdir(emotion_path):
                continue
            label = EMOTIONS.get(emotion_dir.lower())
            if label is None:
                builder.skip(emotion_path, f"unknown emotion {emotion_dir!r}")
                continue
            for name in sorted(os.listdir(emotion_path)):
                stem, extension = os.path.splitext(name)
                if extension.lower() != ".wav":
                    continue
                builder.add(
                    os.path.join(emotion_path, name),
                    ID=f"{speaker}_{label}_{stem}",
                    label=label,
                    speaker=speaker,
                    gender=SPEAKER_GENDER[speaker],
                    # The file number is the sentence, the same one under
                    # every speaker and emotion.
                    text=stem,
                )
    builder.check(EXPECTED_TOTAL, {"label": EXPECTED_PER_LABEL}, strict)
    return builder.rows


def fold_count(protocol="leave_one_speaker_out", **_):
    """Folds of a protocol: one per speaker (1 for the random split)."""
    return 1 if protocol == RANDOM_PROTOCOL else len(SPEAKERS)


def prepare_casia(
    data_folder,
    save_folder,
    fold=1,
    strict=False,
    protocol="leave_one_speaker_out",
    **split_options,
):
    """Writes the manifest and one leave-one-speaker-out fold's splits.

    Fold ``k`` tests on the k-th of liuchanhg, wangzhe, zhaoquanyin,
    zhaozuoxiang and validates on the next one.

    ``split_options`` (``validation``, ``speaker_normalization``,
    ``normalized_folder``, ``text_disjoint``): see
    :func:`~sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, strict)
    groups = [[speaker] for speaker in SPEAKERS]
    return prepare_fold(
        rows, save_folder, fold, protocol, groups, corpus=NAME, **split_options
    )
