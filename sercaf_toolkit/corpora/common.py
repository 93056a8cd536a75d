"""What every corpus preparation shares: checks, manifests, folds.

A preparation module knows one corpus's layout and naming and nothing else.
It turns the corpus into manifest rows (``ID, duration, wav, label, speaker``
plus ``gender`` and session or fold fields) and hands them to
:func:`prepare_fold`, which writes ``data.csv`` and one fold's speaker-
independent ``train.csv``, ``valid.csv`` and ``test.csv``.

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import difflib
import json
import logging
import os
import random

from sercaf_toolkit.corpora.speaker_normalization import normalize_speakers
from sercaf_toolkit.data import (
    AudioError,
    audio_duration,
    manifest_fields,
    write_manifest,
)
from sercaf_toolkit.errors import UserError

logger = logging.getLogger(__name__)

RANDOM_PROTOCOL = "random_speaker_dependent"

# How a fold's validation speakers are chosen from its training pool:
# "speaker": one speaker of the protocol's validation group (the rest of
# the group trains); "group": the whole group; "none": no validation (train
# on every non-test speaker, test the last epoch).
VALIDATION_POLICIES = ("speaker", "group", "none")
# The one default, wherever a caller gives no policy (the recipes' shared
# wiring states the same value).
DEFAULT_VALIDATION = "speaker"


def uses_validation(validation=DEFAULT_VALIDATION):
    """Whether a policy keeps validation speakers (all but ``"none"``).

    Example
    -------
    >>> uses_validation("group"), uses_validation("none"), uses_validation()
    (True, False, True)
    """
    return str(validation) != "none"


# The shared emotion vocabulary: every corpus module maps its own labels
# onto these names in its ``VOCABULARY`` (own label -> shared label), so
# that models and corpora can be compared and mixed across corpora. The
# first four are the classes nearly every corpus has.
SHARED_EMOTIONS = (
    "neutral", "happy", "angry", "sad",
    "fear", "disgust", "surprise", "calm", "boredom",
)  # fmt: skip


class CorpusError(ValueError):
    """A corpus that does not look as expected (strict mode)."""


class CorpusFolderError(UserError, FileNotFoundError):
    """A corpus folder that is not there: the user's path is wrong."""


def require_folder(path, corpus, hint):
    """Fails clearly when a corpus folder is missing.

    Arguments
    ---------
    path : str
        The folder that must exist.
    corpus : str
        The corpus name, for the message.
    hint : str
        What the folder should contain.
    """
    if not os.path.isdir(path):
        raise CorpusFolderError(
            f"{corpus} folder not found: {path} (expected {hint}); "
            "set --data_folder to where the corpus is"
        )


class ManifestRows(list):
    """Manifest rows that remember which files were left out, and why."""

    def __init__(self, rows=(), problems=None):
        super().__init__(rows)
        self.problems = [] if problems is None else problems


class ManifestBuilder:
    """Collects manifest rows and the problems met on the way.

    Arguments
    ---------
    corpus : str
        The corpus name, for messages.

    Example
    -------
    >>> builder = ManifestBuilder("Test")
    >>> builder.skip("a.wav", "unknown label x")
    >>> builder.problems
    ['a.wav: unknown label x']
    """

    def __init__(self, corpus):
        self.corpus = corpus
        self.rows = ManifestRows()
        self.problems = self.rows.problems

    def skip(self, path, reason):
        """Records a file that is left out, and why."""
        message = f"{path}: {reason}"
        logger.warning("%s: skipped %s", self.corpus, message)
        self.problems.append(message)

    def add(self, wav, **fields):
        """Adds one utterance; an unreadable file is skipped and reported."""
        try:
            duration = audio_duration(wav)
        except AudioError as error:
            self.skip(wav, str(error).split(": ", 1)[-1])
            return
        row = {"duration": f"{duration:.3f}", "wav": os.path.abspath(wav)}
        row.update(fields)
        self.rows.append(row)

    def check(self, expected_total, expected_counts, strict):
        """Compares counts with the corpus's known figures.

        Arguments
        ---------
        expected_total : int
            The known number of utterances.
        expected_counts : dict
            Field -> {value: known count}, e.g. ``{"label": {...}}``.
        strict : bool
            Make any difference, and any skipped file, an error; otherwise
            differences are logged with their size.

        Returns
        -------
        list of str
            The differences found.
        """
        differences = []
        if len(self.rows) != expected_total:
            differences.append(
                f"{len(self.rows)} utterances, expected {expected_total} "
                f"({len(self.rows) - expected_total:+d})"
            )
        for field, expected in expected_counts.items():
            counts = collections.Counter(str(row[field]) for row in self.rows)
            for value, count in expected.items():
                if counts[str(value)] != count:
                    found = counts[str(value)]
                    differences.append(
                        f"{field} {value}: {found}, expected {count} "
                        f"({found - count:+d})"
                    )
        if differences:
            logger.warning(
                "%s counts differ from the known ones: %s",
                self.corpus,
                "; ".join(differences),
            )
        if strict and (differences or self.problems):
            raise CorpusError(
                f"{self.corpus} (strict): "
                + "; ".join(differences + self.problems)
            )
        if not self.rows:
            raise CorpusError(f"{self.corpus}: no usable utterance found")
        return differences


def check_validation(validation):
    """Fails in one line on an unknown validation policy.

    Example
    -------
    >>> check_validation("speakers")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: unknown validation policy \
'speakers'; use one of speaker, group, none; did you mean speaker?
    """
    if validation not in VALIDATION_POLICIES:
        close = difflib.get_close_matches(
            str(validation), VALIDATION_POLICIES, n=1
        )
        raise UserError(
            f"unknown validation policy {validation!r}; use one of "
            + ", ".join(VALIDATION_POLICIES)
            + (f"; did you mean {close[0]}?" if close else "")
        )


def speaker_folds(groups, fold, valid="next", validation=DEFAULT_VALIDATION):
    """Test and validation speakers of one fold of a speaker-group protocol.

    Arguments
    ---------
    groups : list of list of str
        The test speakers of each fold, in fold order.
    fold : int
        1-based fold number.
    valid : str or list of list of str
        The validation group: ``"next"``, the next fold's group (wrapping
        around), so validation speakers come from the training pool only;
        or, per fold, an explicit list of validation speakers.
    validation : str
        ``"group"``: validate on the whole group; ``"speaker"``: on one
        speaker of it (the ``fold``-th, cycling, so that folds take turns
        among a group's speakers), the others train; ``"none"``: no
        validation speaker.

    Returns
    -------
    test, valid : list of str

    Example
    -------
    >>> speaker_folds([["a"], ["b"], ["c"]], 3)
    (['c'], ['a'])
    >>> groups = [["a", "b"], ["c", "d"], ["e", "f"]]
    >>> speaker_folds(groups, 1, validation="speaker")
    (['a', 'b'], ['c'])
    >>> speaker_folds(groups, 2, validation="speaker")
    (['c', 'd'], ['f'])
    >>> speaker_folds(groups, 2, validation="none")
    (['c', 'd'], [])
    """
    check_validation(validation)
    fold = int(fold)
    if not 1 <= fold <= len(groups):
        raise UserError(f"--fold={fold} is out of range: use 1..{len(groups)}")
    test = list(groups[fold - 1])
    if valid == "next":
        group = list(groups[fold % len(groups)])
    else:
        group = list(valid[fold - 1])
    if not uses_validation(validation):
        return test, []
    if validation == "speaker":
        return test, [group[(fold - 1) % len(group)]]
    return test, group


def write_speaker_splits(rows, test_speakers, valid_speakers, save_folder):
    """Writes ``train/valid/test.csv`` with disjoint speakers.

    Every speaker in neither list trains. The split is audited: a speaker in
    two splits, or an empty split, is an error (but for an empty
    ``valid_speakers``, which asks for no validation: ``valid.csv`` then
    has no rows).

    Arguments
    ---------
    rows : list of dict
        Manifest rows with a ``speaker`` field.
    test_speakers, valid_speakers : list of str
        Speakers of the test and validation splits.
    save_folder : str
        Where to write the three CSV files.

    Returns
    -------
    dict
        Split name -> list of rows.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"ID": str(i), "speaker": s} for i, s in enumerate("aabbcc")]
    >>> splits = write_speaker_splits(rows, ["a"], ["b"], tempfile.mkdtemp())
    >>> {name: len(part) for name, part in splits.items()}
    {'train': 2, 'valid': 2, 'test': 2}
    """
    test, valid = set(test_speakers), set(valid_speakers)
    splits = {
        "train": [r for r in rows if r["speaker"] not in test | valid],
        "valid": [r for r in rows if r["speaker"] in valid],
        "test": [r for r in rows if r["speaker"] in test],
    }
    audit_speaker_splits(splits, allow_empty=() if valid else ("valid",))
    fields = manifest_fields(rows)  # also for a valid.csv without rows
    for name, split_rows in splits.items():
        write_manifest(
            split_rows, os.path.join(save_folder, f"{name}.csv"), fields
        )
    return splits


def audit_speaker_splits(splits, allow_empty=()):
    """Fails if a speaker is in two splits, or if a split is empty.

    Arguments
    ---------
    splits : dict
        Split name -> manifest rows with a ``speaker`` field.
    allow_empty : tuple of str
        Splits that may be empty (``valid`` without validation).

    Example
    -------
    >>> rows = [{"speaker": "a"}]
    >>> audit_speaker_splits({"train": rows, "test": rows})
    Traceback (most recent call last):
    ...
    ValueError: speaker-independence broken: speaker 'a' is in train and test
    """
    seen = {}
    for name, rows in splits.items():
        if not rows and name not in allow_empty:
            raise ValueError(f"split {name!r} is empty")
        for speaker in sorted({row["speaker"] for row in rows}):
            if speaker in seen:
                raise ValueError(
                    "speaker-independence broken: speaker "
                    f"{speaker!r} is in {seen[speaker]} and {name}"
                )
            seen[speaker] = name


def prepare_fold(
    rows,
    save_folder,
    fold,
    protocol,
    groups,
    valid="next",
    seed=1,
    validation=DEFAULT_VALIDATION,
    speaker_normalization=False,
    normalized_folder=None,
):
    """Writes ``data.csv``, one fold's splits and ``split_info.json``.

    Files the corpus module left out (``rows.problems``) are listed in
    ``split_info.json`` and ``skipped_files.txt``.

    Arguments
    ---------
    rows : list of dict
        The manifest rows of the corpus.
    save_folder : str
        Where to write.
    fold : int
        1-based fold.
    protocol : str
        The protocol's name; :data:`RANDOM_PROTOCOL` splits utterances at
        random (80/10/10), which is speaker-*dependent* and only there to
        reproduce such published figures.
    groups : list of list of str
        Test speaker groups per fold (see :func:`speaker_folds`).
    valid : str or list of list of str
        Validation group rule (see :func:`speaker_folds`).
    seed : int
        Seed of the random protocol.
    validation : str
        Validation policy (see :data:`VALIDATION_POLICIES`); ``"none"``
        writes a ``valid.csv`` without rows.
    speaker_normalization : bool
        Point the manifests at speaker-normalised copies of the audio,
        written once into ``normalized_folder`` (see
        :mod:`sercaf_toolkit.corpora.speaker_normalization`). Transductive:
        each speaker's statistics come from its own unlabeled audio, test
        speakers included; ``split_info.json`` says so.
    normalized_folder : str
        Where the normalised audio goes (shared by every fold and run).

    Returns
    -------
    dict
        Split name -> rows.
    """
    if speaker_normalization:
        if not normalized_folder:
            raise UserError(
                "speaker_normalization: True needs normalized_folder, where "
                "the normalised audio is written"
            )
        rows = ManifestRows(
            normalize_speakers(rows, normalized_folder),
            getattr(rows, "problems", []),
        )
    write_manifest(rows, os.path.join(save_folder, "data.csv"))
    if protocol == RANDOM_PROTOCOL:
        logger.warning(
            "protocol %s: utterances split at random, speakers shared between"
            " train, valid and test; figures are speaker-DEPENDENT",
            RANDOM_PROTOCOL,
        )
        splits = _random_splits(rows, seed, validation)
        for name, part in splits.items():
            write_manifest(part, os.path.join(save_folder, f"{name}.csv"))
        info = {
            "protocol": protocol,
            "fold": int(fold),
            "speaker_independent": False,
        }
    else:
        test, valid_speakers = speaker_folds(groups, fold, valid, validation)
        splits = write_speaker_splits(rows, test, valid_speakers, save_folder)
        info = {
            "protocol": protocol,
            "fold": int(fold),
            "speaker_independent": True,
            "test_speakers": test,
            "valid_speakers": valid_speakers,
            "train_speakers": sorted({r["speaker"] for r in splits["train"]}),
        }
    info["validation"] = validation
    info["speaker_normalization"] = (
        "transductive: each speaker's mean log-mel spectrum moved to the "
        f"corpus mean, audio in {normalized_folder}"
        if speaker_normalization
        else False
    )
    info["counts"] = {name: len(part) for name, part in splits.items()}
    # The share of the non-test utterances that trains (1.0 without
    # validation): what the validation policy costs in training data.
    info["training_share"] = round(
        len(splits["train"]) / (len(splits["train"]) + len(splits["valid"])),
        4,
    )
    info["skipped"] = list(getattr(rows, "problems", []))
    if info["skipped"]:
        with open(os.path.join(save_folder, "skipped_files.txt"), "w") as out:
            out.write("\n".join(info["skipped"]) + "\n")
    with open(os.path.join(save_folder, "split_info.json"), "w") as out:
        json.dump(info, out, indent=2)
    return splits


def _random_splits(rows, seed, validation=DEFAULT_VALIDATION):
    order = sorted(rows, key=lambda row: row["ID"])
    random.Random(seed).shuffle(order)
    n_test = n_valid = max(1, len(order) // 10)
    if not uses_validation(validation):
        n_valid = 0
    return {
        "train": order[n_test + n_valid :],
        "valid": order[n_test : n_test + n_valid],
        "test": order[:n_test],
    }
