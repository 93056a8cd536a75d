"""What every corpus preparation shares: checks, manifests, folds.

A preparation module knows one corpus's layout and naming and nothing else.
It turns the corpus into manifest rows (``ID, duration, wav, label, speaker``
plus ``gender``, ``text`` and session or fold fields) and hands them to
:func:`prepare_fold`, which writes ``data.csv`` and one fold's speaker-
independent ``train.csv``, ``valid.csv`` and ``test.csv``.

``text`` is a key of what an utterance says, taken from the corpus's naming
(EmoDB's ``a01``, RAVDESS's statement, CASIA's sentence number, IEMOCAP's
script): utterances with the same key say the same words. ``""`` (or no
``text`` field) means a text of its own, shared with no other utterance.
With ``text_disjoint`` a fold's training and validation splits keep no
utterance whose text the test split holds (:func:`remove_test_texts`).

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import difflib
import json
import logging
import os
import random

from sercaf_toolkit.corpora.speaker_normalization import (
    normalize_speakers,
    training_record,
)
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
    "fear", "disgust", "surprise", "calm", "boredom", "contempt",
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
    splits = speaker_splits(rows, test_speakers, valid_speakers)
    audit_speaker_splits(
        splits, allow_empty=() if valid_speakers else ("valid",)
    )
    write_splits(splits, rows, save_folder)
    return splits


def speaker_splits(rows, test_speakers, valid_speakers):
    """Split name -> rows: the speakers in neither list train.

    Example
    -------
    >>> rows = [{"speaker": s} for s in "abcc"]
    >>> {k: len(v) for k, v in speaker_splits(rows, ["a"], ["b"]).items()}
    {'train': 2, 'valid': 1, 'test': 1}
    """
    test, valid = set(test_speakers), set(valid_speakers)
    return {
        "train": [r for r in rows if r["speaker"] not in test | valid],
        "valid": [r for r in rows if r["speaker"] in valid],
        "test": [r for r in rows if r["speaker"] in test],
    }


def write_splits(splits, rows, save_folder):
    """Writes ``train/valid/test.csv``, all with the columns of ``rows``
    (also a ``valid.csv`` without rows)."""
    fields = manifest_fields(rows)
    for name, split_rows in splits.items():
        write_manifest(
            split_rows, os.path.join(save_folder, f"{name}.csv"), fields
        )


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


def text_of(row):
    """The text key of a manifest row; ``""``: a text of its own.

    Example
    -------
    >>> text_of({"text": " a01 "}), text_of({"text": ""}), text_of({})
    ('a01', '', '')
    """
    return str(row.get("text") or "").strip()


def split_texts(splits):
    """Split name -> its shared texts, sorted (texts of their own left out).

    Example
    -------
    >>> split_texts({"train": [{"text": "b"}, {"text": "a"}, {"text": ""}]})
    {'train': ['a', 'b']}
    """
    return {
        name: sorted({text_of(row) for row in rows} - {""})
        for name, rows in splits.items()
    }


def remove_test_texts(splits):
    """Training and validation splits without the test split's texts.

    Every train or valid utterance whose text (:func:`text_of`) some test
    utterance says is left out; utterances with a text of their own
    (``""``) always stay.

    Arguments
    ---------
    splits : dict
        ``train``, ``valid`` and ``test`` -> manifest rows.

    Returns
    -------
    splits : dict
        The same splits, train and valid filtered (new lists).
    removed : dict
        ``train`` and ``valid`` -> how many utterances were left out.

    Example
    -------
    >>> splits = {
    ...     "train": [{"text": "a01"}, {"text": "b02"}, {"text": ""}],
    ...     "valid": [{"text": "a01"}],
    ...     "test": [{"text": "a01"}, {"text": ""}],
    ... }
    >>> kept, removed = remove_test_texts(splits)
    >>> kept["train"], kept["valid"], removed
    ([{'text': 'b02'}, {'text': ''}], [], {'train': 1, 'valid': 1})
    """
    test = {text_of(row) for row in splits["test"]} - {""}
    kept, removed = dict(splits), {}
    for name in ("train", "valid"):
        kept[name] = [row for row in splits[name] if text_of(row) not in test]
        removed[name] = len(splits[name]) - len(kept[name])
    return kept, removed


def audit_text_splits(splits):
    """Fails if a text of the test split is in train or valid.

    Arguments
    ---------
    splits : dict
        Split name -> manifest rows (a ``text`` field where known).

    Example
    -------
    >>> train = [{"ID": "03a01Fa", "text": "a01"}]
    >>> test = [{"ID": "08a01Fa", "text": "a01"}, {"ID": "x", "text": ""}]
    >>> audit_text_splits({"train": train, "valid": [], "test": test})
    Traceback (most recent call last):
    ...
    ValueError: text-disjointness broken: text 'a01' is in test and train \
(03a01Fa)
    """
    test = {text_of(row) for row in splits["test"]} - {""}
    for name in ("train", "valid"):
        leaks = [row for row in splits.get(name, ()) if text_of(row) in test]
        if leaks:
            raise ValueError(
                "text-disjointness broken: text "
                f"{text_of(leaks[0])!r} is in test and {name} "
                f"({', '.join(str(row.get('ID')) for row in leaks[:3])}"
                f"{', ...' if len(leaks) > 3 else ''})"
            )


def check_text_guard(splits, removed, corpus, fold, validating):
    """Fails in one line when ``text_disjoint`` leaves a split empty.

    Arguments
    ---------
    splits : dict
        The splits after :func:`remove_test_texts`.
    removed : dict
        Its counts of removed utterances.
    corpus : str
        The corpus name, for the message.
    fold : int
        The fold, for the message.
    validating : bool
        Whether the validation split must keep rows.

    Example
    -------
    >>> splits = {"train": [], "valid": [], "test": [{"text": "a01"}]}
    >>> check_text_guard(splits, {"train": 8, "valid": 1}, "EmoDB", 3, True)
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: EmoDB fold 3: text_disjoint leaves no \
training data (all 8 training utterances say one of the test split's 1 \
text); set --text_disjoint=False, or use a corpus or protocol whose test \
texts are not all said in training (docs/corpora.md, Text-disjoint folds)
    """
    n_texts = len({text_of(row) for row in splits["test"]} - {""})
    texts = f"{n_texts} text{'' if n_texts == 1 else 's'}"
    cure = (
        "set --text_disjoint=False, or use a corpus or protocol whose test "
        "texts are not all said in training (docs/corpora.md, "
        "Text-disjoint folds)"
    )
    if removed["train"] and not splits["train"]:
        raise UserError(
            f"{corpus} fold {fold}: text_disjoint leaves no training data "
            f"(all {removed['train']} training utterances say one of the "
            f"test split's {texts}); {cure}"
        )
    if validating and removed["valid"] and not splits["valid"]:
        raise UserError(
            f"{corpus} fold {fold}: text_disjoint leaves no validation data "
            f"(all {removed['valid']} validation utterances say one of the "
            f"test split's {texts}); set --validation=none, or " + cure
        )


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
    text_disjoint=False,
    corpus=None,
):
    """Writes ``data.csv``, one fold's splits and ``split_info.json``.

    Files the corpus module left out (``rows.problems``) are listed in
    ``split_info.json`` and ``skipped_files.txt``. The splits are computed
    and checked before anything is written: a fold that cannot be made
    fails in one line and leaves ``save_folder`` as it was.

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
    text_disjoint : bool
        Leave out of train and valid every utterance whose ``text`` the
        test split holds (:func:`remove_test_texts`), and audit it; a
        split left empty is a one-line :class:`UserError`.
    corpus : str, optional
        The corpus name, for messages.

    Returns
    -------
    dict
        Split name -> rows.

    Example
    -------
    >>> import json, tempfile
    >>> rows = [
    ...     {"ID": f"{s}{t}", "duration": "1", "wav": "x.wav",
    ...      "label": "a", "speaker": s, "text": t}
    ...     for s in "abcd" for t in ("t1", "t2", "")
    ... ]
    >>> folder = tempfile.mkdtemp()
    >>> groups = [["a"], ["b"], ["c"], ["d"]]
    >>> splits = prepare_fold(rows, folder, 1, "demo", groups,
    ...                       text_disjoint=True)
    >>> [row["ID"] for row in splits["train"]]  # texts of their own only
    ['c', 'd']
    >>> info = json.load(open(os.path.join(folder, "split_info.json")))
    >>> info["texts"]
    {'train': [], 'valid': [], 'test': ['t1', 't2']}
    >>> info["text_disjoint_removed"], info["training_share"]
    ({'train': 4, 'valid': 2}, 0.6667)
    """
    if speaker_normalization and not normalized_folder:
        raise UserError(
            "speaker_normalization: True needs normalized_folder, where "
            "the normalised audio is written"
        )
    validating = uses_validation(validation)
    if protocol == RANDOM_PROTOCOL:
        logger.warning(
            "protocol %s: utterances split at random, speakers shared between"
            " train, valid and test; figures are speaker-DEPENDENT",
            RANDOM_PROTOCOL,
        )
        splits = _random_splits(rows, seed, validation)
        info = {
            "protocol": protocol,
            "fold": int(fold),
            "speaker_independent": False,
        }
    else:
        test, valid_speakers = speaker_folds(groups, fold, valid, validation)
        splits = speaker_splits(rows, test, valid_speakers)
        info = {
            "protocol": protocol,
            "fold": int(fold),
            "speaker_independent": True,
            "test_speakers": test,
            "valid_speakers": valid_speakers,
        }
    removed = {"train": 0, "valid": 0}
    if text_disjoint:
        splits, removed = remove_test_texts(splits)
        check_text_guard(
            splits, removed, corpus or "the corpus", fold, validating
        )
        audit_text_splits(splits)
    if protocol != RANDOM_PROTOCOL:
        audit_speaker_splits(
            splits, allow_empty=() if info["valid_speakers"] else ("valid",)
        )
        info["train_speakers"] = sorted({r["speaker"] for r in splits["train"]})
    input_normalization = None
    if speaker_normalization:
        # Every utterance of a speaker, test speakers' and removed ones
        # included, makes its statistics: normalise all, then map.
        normalized = normalize_speakers(rows, normalized_folder)
        # What the export records, so that inference can refuse raw audio
        # and normalise enrolled speakers the same way.
        input_normalization = training_record(rows, normalized_folder)
        position = {id(row): index for index, row in enumerate(rows)}
        splits = {
            name: [normalized[position[id(row)]] for row in part]
            for name, part in splits.items()
        }
        rows = ManifestRows(normalized, getattr(rows, "problems", []))
    write_manifest(rows, os.path.join(save_folder, "data.csv"))
    write_splits(splits, rows, save_folder)
    info["validation"] = validation
    info["speaker_normalization"] = (
        "transductive: each speaker's mean log-mel spectrum moved to the "
        f"corpus mean, audio in {normalized_folder}"
        if speaker_normalization
        else False
    )
    if input_normalization is not None:
        info["input_normalization"] = input_normalization
    info["counts"] = {name: len(part) for name, part in splits.items()}
    # The share of the non-test utterances that trains (1.0 without
    # validation): what the validation policy costs in training data. Under
    # text_disjoint, of those the guard kept (text_disjoint_removed says
    # how many it left out).
    info["training_share"] = round(
        len(splits["train"]) / (len(splits["train"]) + len(splits["valid"])),
        4,
    )
    info.update(text_info(splits, text_disjoint, removed))
    info["skipped"] = list(getattr(rows, "problems", []))
    if info["skipped"]:
        with open(os.path.join(save_folder, "skipped_files.txt"), "w") as out:
            out.write("\n".join(info["skipped"]) + "\n")
    with open(os.path.join(save_folder, "split_info.json"), "w") as out:
        json.dump(info, out, indent=2)
    return splits


def text_info(splits, text_disjoint, removed):
    """What ``split_info.json`` says about texts.

    ``text_disjoint`` (on or off), ``text_disjoint_removed`` (utterances
    the guard left out of train and valid), ``texts`` (each split's shared
    texts) and ``test_texts_in_training`` (test texts that train or valid
    also holds: none under the guard).

    Example
    -------
    >>> splits = {"train": [{"text": "a"}], "valid": [],
    ...           "test": [{"text": "a"}, {"text": "b"}]}
    >>> info = text_info(splits, False, {"train": 0, "valid": 0})
    >>> info["texts"]["test"], info["test_texts_in_training"]
    (['a', 'b'], ['a'])
    """
    texts = split_texts(splits)
    training = set(texts["train"]) | set(texts["valid"])
    return {
        "text_disjoint": bool(text_disjoint),
        "text_disjoint_removed": dict(removed),
        "texts": texts,
        "test_texts_in_training": sorted(set(texts["test"]) & training),
    }


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
