"""MSP-Podcast preparation (8 classes, or arousal, valence and dominance).

Layout (``<data_folder>`` holds the release, v1.x): ``Audios/<FileName>``
(16 kHz wav files) and ``Labels/labels_consensus.csv`` with the columns
``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set``.

- Categories (``EmoClass``): A angry, S sad, H happy, U surprise, F fear,
  D disgust, C contempt, N neutral; O (other) and X (no agreement) are
  left out of the 8-class task, and counted in the log.
- Dimensions (``EmoAct``, ``EmoVal``, ``EmoDom``): arousal, valence and
  dominance on 1-7; ``task: dimensional`` uses every file with the three
  values, whatever its class (O and X too).
- Partitions (``Split_Set``): the official Train, Development, Test1 and
  Test2 (later releases add Test3, whose labels may be withheld: files
  of other partitions, or without the labels the task needs, are counted
  and skipped). Fold 1 tests on Test1, fold 2 on Test2; validation is the
  Development set (``validation: group``, the recipe's default; ``speaker``
  would validate on one Development speaker and train on the others,
  ``none`` trains on Development too). The other test set is not used.
- Speakers (``SpkrID``): the partitions are speaker-disjoint by design,
  and checked so for the speakers that are known. A file whose speaker is
  ``Unknown`` counts as a speaker of its own (``unknown_<file>``): the
  check cannot cover it, and ``split_info.json`` counts such files.

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import csv
import json
import logging
import os

from sercaf_toolkit.corpora.common import (
    ManifestBuilder,
    prepare_fold,
    require_folder,
)
from sercaf_toolkit.errors import UserError

logger = logging.getLogger(__name__)

NAME = "MSPPodcast"
LAYOUT = "Audios/ and Labels/labels_consensus.csv"
CORPUS_FILES = ("Labels/labels_consensus.csv",)
LABELS_FILE = os.path.join("Labels", "labels_consensus.csv")
COLUMNS = (
    "FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
    "Split_Set",
)  # fmt: skip
EMOTIONS = {
    "A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear",
    "D": "disgust", "C": "contempt", "N": "neutral",
}  # fmt: skip
LEFT_OUT = {"O": "other", "X": "no agreement"}
# The classes are the shared names already (common.SHARED_EMOTIONS).
VOCABULARY = {label: label for label in EMOTIONS.values()}
DIMENSIONS = ("arousal", "valence", "dominance")
DIMENSION_SCALE = (1.0, 7.0)
_DIMENSION_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal",
                      "dominance": "EmoDom"}  # fmt: skip
PROTOCOLS = ("official_partitions",)
TEST_SETS = ("Test1", "Test2")
PARTITIONS = ("Train", "Development", *TEST_SETS)


def read_labels(data_folder):
    """The rows of ``Labels/labels_consensus.csv``; one line if it is not.

    Example
    -------
    >>> import tempfile
    >>> read_labels(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    sercaf_toolkit.corpora.common.CorpusFolderError: MSPPodcast folder not \
found: ... (expected Audios/ and Labels/labels_consensus.csv); set \
--data_folder to where the corpus is
    """
    require_folder(os.path.join(data_folder, "Labels"), NAME, LAYOUT)
    require_folder(os.path.join(data_folder, "Audios"), NAME, LAYOUT)
    path = os.path.join(data_folder, LABELS_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{NAME}: {path} is missing ({LAYOUT})")
    with open(path, newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path} has no column {', '.join(missing)} (expected "
                f"{', '.join(COLUMNS)})"
            )
        return list(reader)


def speaker_of(row):
    """The manifest speaker of a label row: known, or the file's own.

    Example
    -------
    >>> speaker_of({"SpkrID": "127", "FileName": "MSP-PODCAST_0001_0008.wav"})
    'msp127'
    >>> speaker_of({"SpkrID": "Unknown", "FileName": "MSP-PODCAST_0002.wav"})
    'unknown_MSP-PODCAST_0002'
    """
    speaker = (row.get("SpkrID") or "").strip()
    if not speaker or speaker.lower() == "unknown":
        return "unknown_" + os.path.splitext(row["FileName"])[0]
    return f"msp{speaker}"


def _values(row):
    """The row's dimensions as floats, or None when one is missing."""
    try:
        return {
            name: float(row[column])
            for name, column in _DIMENSION_COLUMNS.items()
        }
    except (TypeError, ValueError):
        return None


def build_manifest(data_folder, task="categorical"):
    """Manifest rows of the official partitions (see the module docstring).

    Returns
    -------
    list of dict
        With ``partition`` (the ``Split_Set``) and, for ``dimensional`` or
        ``joint``, ``arousal``, ``valence`` and ``dominance`` (1-7). The
        list's ``left_out`` counts what was left out, and why.
    """
    builder = ManifestBuilder(NAME)
    left_out = collections.Counter()
    audio = os.path.join(data_folder, "Audios")
    for row in read_labels(data_folder):
        partition = row["Split_Set"].strip()
        if partition not in PARTITIONS:
            left_out[f"partition {partition or '(none)'}"] += 1
            continue
        code = row["EmoClass"].strip()
        values = _values(row)
        if task != "dimensional" and code not in EMOTIONS:
            reason = LEFT_OUT.get(code, f"unknown class {code!r}")
            left_out[f"class {code} ({reason})"] += 1
            continue
        if task != "categorical" and values is None:
            left_out["no dimension values"] += 1
            continue
        wav = os.path.join(audio, row["FileName"])
        if not os.path.exists(wav):
            builder.skip(wav, "labelled but missing")
            continue
        builder.add(
            wav,
            ID=os.path.splitext(row["FileName"])[0],
            label=EMOTIONS.get(code, code),
            speaker=speaker_of(row),
            gender=(row["Gender"].strip()[:1] or "").upper(),
            partition=partition,
            # Podcast segments have words of their own: unique texts.
            text="",
            **(values if task != "categorical" else {}),
        )
    if left_out:
        logger.warning(
            "%s: left out %s",
            NAME,
            "; ".join(f"{n} of {why}" for why, n in sorted(left_out.items())),
        )
    builder.check(len(builder.rows), {}, False)  # no counts to compare
    builder.rows.left_out = dict(left_out)
    return builder.rows


def fold_count(**_):
    """Two folds: the official Test1 and Test2."""
    return len(TEST_SETS)


def prepare_msppodcast(
    data_folder,
    save_folder,
    fold=1,
    task="categorical",
    protocol="official_partitions",
    validation="group",
    **split_options,
):
    """Writes the manifest and the splits of one official test set.

    Arguments
    ---------
    data_folder : str
        The release's folder (``Audios/``, ``Labels/``).
    save_folder : str
        Where the manifests go.
    fold : int
        1: test on Test1; 2: on Test2.
    task : str
        ``categorical``, ``dimensional`` or ``joint`` (see
        :func:`build_manifest`).
    protocol : str
        ``official_partitions``.
    validation : str
        ``group`` (the Development set), ``speaker`` or ``none``.
    **split_options
        ``speaker_normalization``, ``normalized_folder``,
        ``text_disjoint``: see
        :func:`sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, task)
    test_set = TEST_SETS[int(fold) - 1]
    present = {row["partition"] for row in rows}
    missing = [
        p for p in ("Train", "Development", test_set) if p not in present
    ]
    if missing:
        raise UserError(
            f"{NAME}: {os.path.join(data_folder, LABELS_FILE)} has no usable "
            f"file of the partition(s) {', '.join(missing)} (Split_Set) "
            f"for fold {fold}; the official partitions are needed"
        )
    kept = type(rows)(
        [row for row in rows if row["partition"] != TEST_SETS[2 - int(fold)]],
        rows.problems,
    )

    def speakers(partition):
        return sorted(
            {r["speaker"] for r in kept if r["partition"] == partition}
        )

    test = speakers(test_set)
    splits = prepare_fold(
        kept,
        save_folder,
        fold,
        protocol,
        [test if k == int(fold) else [] for k in (1, 2)],
        [speakers("Development")] * 2,
        validation=validation,
        corpus=NAME,
        **split_options,
    )
    info_path = os.path.join(save_folder, "split_info.json")
    with open(info_path, encoding="utf-8") as source:
        info = json.load(source)
    info["test_set"] = test_set
    info["left_out"] = rows.left_out
    info["unknown_speaker_files"] = {
        name: sum(r["speaker"].startswith("unknown_") for r in part)
        for name, part in splits.items()
    }
    with open(info_path, "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)
    return splits
