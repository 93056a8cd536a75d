"""Your own corpus, described by a CSV file.

The CSV has a header and the columns ``path`` (absolute, or relative to the
CSV file's folder), ``label`` and ``speaker``, and optionally ``fold``
(1-based test fold of each speaker) and ``text`` (what is said: a sentence
or a key of it; utterances with the same text say the same words, an empty
cell is a text of its own; used by ``text_disjoint`` folds). Without
``fold``, speakers are dealt into ``n_folds`` folds in sorted order. Each
fold tests on its speakers and validates on the next fold's.

For ``task: dimensional`` or ``joint``, the columns ``arousal``,
``valence`` and ``dominance`` (those the recipe's ``dimensions`` name; on
the scale given as ``dimension_scale``) hold each file's values; a row
with an empty value is skipped and reported.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import os

from sercaf_toolkit.corpora.common import (
    RANDOM_PROTOCOL,
    SHARED_EMOTIONS,
    CorpusError,
    CorpusFolderError,
    ManifestBuilder,
    prepare_fold,
)
from sercaf_toolkit.errors import UserError

REQUIRED = ("path", "label", "speaker")
NAME = "Custom"
# The dimension columns a CSV may have (task: dimensional or joint).
DIMENSIONS = ("arousal", "valence", "dominance")
# A CSV's labels that are shared names already map to themselves; any
# other label is left out of cross-corpus use (its own recipe keeps it).
VOCABULARY = {label: label for label in SHARED_EMOTIONS}


PROTOCOLS = ("custom_speaker_folds",)  # and RANDOM_PROTOCOL


def check_data_folder(data_folder):
    """Fails in one line when the corpus CSV file is not there or empty."""
    if not os.path.isfile(data_folder):
        raise CorpusFolderError(
            f"corpus CSV file not found: {data_folder}; set --data_folder "
            "to a CSV file with the columns path, label, speaker[, fold, "
            "text]"
        )
    try:
        rows = _read_rows(data_folder)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusFolderError(
            f"corpus CSV file {data_folder} cannot be read ({error}); give "
            "a UTF-8 CSV file with the columns path, label, speaker[, fold, "
            "text]"
        ) from None
    if not rows:  # other problems (columns, paths) are build_manifest's
        raise CorpusFolderError(
            f"corpus CSV file {data_folder} lists no audio file; expected "
            "a header and one row per file with the columns path, label, "
            "speaker[, fold, text]"
        )


def labels_of(data_folder, **_):
    """The labels of the corpus: the CSV's label column (read, not the
    audio), rows without a label left out."""
    return {
        (row.get("label") or "").strip() for row in _read_rows(data_folder)
    } - {""}


def _read_rows(csv_file):
    with open(csv_file, newline="", encoding="utf-8") as source:
        return list(csv.DictReader(source))


def fold_count(data_folder, n_folds=5, protocol="custom_speaker_folds", **_):
    """Folds of the CSV: its ``fold`` column, else ``n_folds`` groups."""
    if protocol == RANDOM_PROTOCOL:
        return 1
    rows = _read_rows(data_folder)
    if rows and all((row.get("fold") or "").strip() for row in rows):
        return len({int(row["fold"]) for row in rows})
    speakers = {(row.get("speaker") or "").strip() for row in rows} - {""}
    return max(1, min(int(n_folds), len(speakers)))


def dimensions_of(data_folder, **_):
    """The dimension columns the corpus CSV has (its header, in order).

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".csv")
    >>> _ = open(path, "w").write("path,label,speaker,valence,arousal\\n")
    >>> dimensions_of(path)
    ('arousal', 'valence')
    """
    with open(data_folder, newline="", encoding="utf-8") as source:
        header = next(csv.reader(source), [])
    return tuple(name for name in DIMENSIONS if name in header)


def build_manifest(csv_file, strict=False, task="categorical"):
    """Manifest rows of the files listed in ``csv_file``.

    With ``task`` ``dimensional`` or ``joint``, the rows keep the CSV's
    dimension columns (:data:`DIMENSIONS`); a row with an empty or
    non-numeric value is skipped.
    """
    check_data_folder(csv_file)
    root = os.path.dirname(os.path.abspath(csv_file))
    builder = ManifestBuilder(os.path.basename(csv_file))
    with open(csv_file, newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{csv_file}: missing column(s) {missing}")
        seen_ids = set()
        for line, record in enumerate(reader, start=2):
            if any(not (record.get(c) or "").strip() for c in REQUIRED):
                builder.skip(
                    f"{csv_file}:{line}", "empty path, label or speaker"
                )
                continue
            path = os.path.join(root, record["path"])
            speaker = record["speaker"].strip()
            stem = os.path.splitext(os.path.basename(path))[0]
            utterance_id = f"{speaker}_{stem}"
            if utterance_id in seen_ids:
                utterance_id = f"{utterance_id}_{line}"
            seen_ids.add(utterance_id)
            fields = {
                "ID": utterance_id,
                "label": record["label"].strip(),
                "speaker": speaker,
            }
            if (record.get("fold") or "").strip():
                fields["fold"] = record["fold"].strip()
            if "text" in reader.fieldnames:
                fields["text"] = (record.get("text") or "").strip()
            if task != "categorical":
                try:
                    for name in DIMENSIONS:
                        if name in reader.fieldnames:
                            fields[name] = float(record[name])
                except (TypeError, ValueError):
                    builder.skip(f"{csv_file}:{line}", f"no {name} value")
                    continue
            builder.add(path, **fields)
    if strict and builder.problems:
        raise CorpusError(
            f"{csv_file} (strict): " + "; ".join(builder.problems)
        )
    if not builder.rows:
        raise CorpusError(f"{csv_file}: no usable utterance")
    return builder.rows


def prepare_custom(
    data_folder,
    save_folder,
    fold=1,
    n_folds=5,
    strict=False,
    protocol="custom_speaker_folds",
    task="categorical",
    **split_options,
):
    """Writes the manifest and one fold's speaker-independent splits.

    Arguments
    ---------
    data_folder : str
        The corpus CSV file (the recipe key keeps its usual name).
    save_folder : str
        Where the manifests go.
    fold : int
        1-based fold.
    n_folds : int
        Folds to deal speakers into when the CSV has no ``fold`` column.
    strict : bool
        Make skipped rows an error.
    protocol : str
        ``random_speaker_dependent`` splits utterances at random instead.
    task : str
        ``categorical``, or ``dimensional`` / ``joint``: the dimension
        columns are kept (see :func:`build_manifest`).
    **split_options
        ``validation`` (``"speaker"``, ``"group"`` or ``"none"``),
        ``speaker_normalization``, ``normalized_folder``,
        ``text_disjoint``: see
        :func:`sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, strict, task)
    if split_options.get("text_disjoint") and not any(
        "text" in row for row in rows
    ):
        # Without texts the guard would pass every fold unchanged: the
        # user asked for something the CSV cannot give.
        raise UserError(
            f"text_disjoint: True needs a text column in {data_folder} (what "
            "each file says; an empty cell is a text of its own); add one, "
            "or set --text_disjoint=False"
        )
    if all("fold" in row for row in rows):
        fold_of = {}
        for row in rows:
            if fold_of.setdefault(row["speaker"], row["fold"]) != row["fold"]:
                raise CorpusError(
                    f"{data_folder}: speaker {row['speaker']!r} is in folds "
                    f"{fold_of[row['speaker']]} and {row['fold']}"
                )
        numbers = sorted({int(f) for f in fold_of.values()})
        groups = [
            sorted(s for s, f in fold_of.items() if int(f) == n)
            for n in numbers
        ]
    else:
        speakers = sorted({row["speaker"] for row in rows})
        if len(speakers) < 3:
            raise CorpusError(
                f"{data_folder}: {len(speakers)} speakers; speaker-independent "
                "train, validation and test need at least 3"
            )
        n_folds = min(n_folds, len(speakers))
        groups = [speakers[i::n_folds] for i in range(n_folds)]
    return prepare_fold(
        rows,
        save_folder,
        fold,
        protocol,
        groups,
        corpus=f"{NAME} ({data_folder})",
        **split_options,
    )
