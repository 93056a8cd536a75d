"""IEMOCAP preparation (the standard 4-class set, or the dimensions).

Layout (``<data_folder>`` is ``IEMOCAP_full_release/``):
``SessionN/sentences/wav/<dialog>/<utt>.wav`` and labels in
``SessionN/dialog/EmoEvaluation/<dialog>.txt`` (top level only; the
Attribute/, Categorical/ and Self-evaluation/ subfolders hold other
files), on lines like
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, ...]``.

The 4-class set keeps neu, hap (with exc merged in), ang and sad: 5531
utterances. The speaker is the session plus the *first letter of the last*
``_`` token (``Ses03M_impro08a_F012`` is the female speaker of session 3:
the letter after SesNN names the dialog, not the talker). Protocols:
leave-one-session-out (5 folds, validation on the next session's two
speakers) and leave-one-speaker-out (10 folds, validation on the other
speaker of the test session).

For ``task: dimensional`` every labelled turn with a ``[V, A, D]`` (the
evaluators' mean valence, activation and dominance, 1-5) is used, whatever
its category (frustrated, excited, no agreement ...): the rows get
``arousal``, ``valence`` and ``dominance`` columns; ``task: joint`` keeps
the 4-class set and adds the same columns.

Each row also says how the dialog was elicited (``elicitation``:
``improvised`` or ``scripted``) and its ``text`` key (see
:func:`text_and_elicitation`): every session performs the same scripts, so
scripted utterances share their script's text across sessions.

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
from sercaf_toolkit.errors import UserError

CODES = (
    "neu",
    "hap",
    "sad",
    "ang",
    "exc",
    "fru",
    "fea",
    "sur",
    "dis",
    "oth",
    "xxx",
)
FOUR_CLASS = {
    "neu": "neu",
    "hap": "hap",
    "exc": "hap",
    "ang": "ang",
    "sad": "sad",
}
# The 4-class labels in the shared vocabulary (common.SHARED_EMOTIONS).
VOCABULARY = {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad"}
SESSIONS = (1, 2, 3, 4, 5)
NAME = "IEMOCAP"
LAYOUT = "IEMOCAP_full_release with Session1..Session5"
# Where its audio is (glob patterns): a folder without any is not IEMOCAP.
CORPUS_FILES = ("Session*/sentences/wav/*/*.[wW][aA][vV]",)
EXPECTED_TOTAL = 5531
EXPECTED_PER_LABEL = {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
EXPECTED_PER_SESSION = {1: 1085, 2: 1023, 3: 1151, 4: 1031, 5: 1241}
PROTOCOLS = ("leave_one_session_out", "leave_one_speaker_out")
# The [V, A, D] of a turn line: valence, activation (arousal), dominance.
DIMENSIONS = ("arousal", "valence", "dominance")
DIMENSION_SCALE = (1.0, 5.0)
_LINE = re.compile(r"^\[(\d+(?:\.\d+)?) - (\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t\[")
_VAD = re.compile(r"\t\[\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+)\s*\]\s*$")


def speaker_of(utterance_id):
    """Session and gender of the talker of an utterance.

    Example
    -------
    >>> speaker_of("Ses03M_impro08a_F012")
    ('Ses03F', 'F')
    >>> speaker_of("Ses05M_script01_1b_M025")
    ('Ses05M', 'M')
    """
    gender = utterance_id.rsplit("_", 1)[1][0]
    return utterance_id[:5] + gender, gender


def text_and_elicitation(utterance_id):
    """The text key and the elicitation of an utterance, from its id.

    Every session performs the same scripts (``Ses01F_script01_1``,
    ``Ses04M_script01_1``, ...), so a scripted utterance's text key is its
    script without the session: ``script01_1``. A letter after the part
    number marks another take of the same script part (``Ses05M_script01_1b``)
    and is dropped. Improvised dialogs have words of their own: their text
    is ``""``, which means unique (shared with no other utterance, never
    removed by text-disjoint folds).

    Arguments
    ---------
    utterance_id : str
        An IEMOCAP utterance id such as ``Ses01F_script01_1_F000``.

    Returns
    -------
    text, elicitation : str
        ``elicitation`` is ``"scripted"`` or ``"improvised"``.

    Example
    -------
    >>> text_and_elicitation("Ses01F_script01_1_F000")
    ('script01_1', 'scripted')
    >>> text_and_elicitation("Ses05M_script01_1b_M025")
    ('script01_1', 'scripted')
    >>> text_and_elicitation("Ses03M_impro08a_F012")
    ('', 'improvised')
    """
    # Between the session-and-dialog-letter token and the turn token.
    dialog = utterance_id.split("_")[1:-1]
    if dialog and dialog[0].startswith("script"):
        return re.sub(r"(?<=\d)[a-z]+$", "", "_".join(dialog)), "scripted"
    return "", "improvised"


def read_labels(label_file, builder, values=None):
    """Utterance id -> emotion code of one EmoEvaluation file.

    Lines that start like a label line but do not parse, and unknown codes,
    are reported (file and line) and left out. Given a dict ``values``,
    fills it with utterance id -> ``{"arousal", "valence", "dominance"}``
    from the line's ``[V, A, D]`` (a line without readable values is left
    out of it).

    Example
    -------
    >>> import tempfile
    >>> from sercaf_toolkit.corpora.common import ManifestBuilder
    >>> path = tempfile.mktemp(suffix=".txt")
    >>> fields = ["[6.29 - 8.23]", "Ses01F_impro01_F000", "fru", "[2, 3.5, 3]"]
    >>> line = chr(9).join(fields) + chr(10)
    >>> _ = open(path, "w").write(line)
    >>> values = {}
    >>> read_labels(path, ManifestBuilder("IEMOCAP"), values)
    {'Ses01F_impro01_F000': 'fru'}
    >>> values["Ses01F_impro01_F000"]["arousal"]
    3.5
    """
    labels = {}
    with open(label_file, encoding="utf-8", errors="replace") as source:
        for number, line in enumerate(source, start=1):
            if not line.startswith("["):
                continue  # annotator details (C-E2:, A-E3:), headers, blanks
            match = _LINE.match(line)
            if not match:
                builder.skip(f"{label_file}:{number}", "malformed label line")
                continue
            utterance_id, code = match.group(3), match.group(4)
            if code not in CODES:
                builder.skip(
                    f"{label_file}:{number}", f"unknown label {code!r}"
                )
                continue
            labels[utterance_id] = code
            found = _VAD.search(line)
            if values is not None and found:
                valence, arousal, dominance = map(float, found.groups())
                values[utterance_id] = {
                    "arousal": arousal,
                    "valence": valence,
                    "dominance": dominance,
                }
    return labels


def build_manifest(data_folder, strict=False, task="categorical"):
    """Manifest rows of the 4-class set, or of every turn with dimensions.

    ``task``: ``categorical`` (the 4-class set), ``joint`` (the same rows
    with their dimension values) or ``dimensional`` (every turn with
    values, its code or 4-class label in ``label``); see the module
    docstring.
    """
    require_folder(data_folder, NAME, LAYOUT)
    builder = ManifestBuilder("IEMOCAP")
    for session in SESSIONS:
        session_dir = os.path.join(data_folder, f"Session{session}")
        require_folder(session_dir, "IEMOCAP", "dialog/ and sentences/")
        label_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
        require_folder(label_dir, "IEMOCAP", "<dialog>.txt label files")
        for name in sorted(os.listdir(label_dir)):
            label_file = os.path.join(label_dir, name)
            if not name.endswith(".txt") or not os.path.isfile(label_file):
                continue  # Attribute/, Categorical/, Self-evaluation/
            values = {}
            for utterance_id, code in sorted(
                read_labels(label_file, builder, values).items()
            ):
                if task == "dimensional":
                    if utterance_id not in values:
                        continue  # no [V, A, D] to learn from
                elif code not in FOUR_CLASS:
                    continue
                dialog = utterance_id.rsplit("_", 1)[0]
                wav = os.path.join(
                    session_dir,
                    "sentences",
                    "wav",
                    dialog,
                    utterance_id + ".wav",
                )
                if not os.path.exists(wav):
                    builder.skip(wav, "labelled but missing")
                    continue
                speaker, gender = speaker_of(utterance_id)
                text, elicitation = text_and_elicitation(utterance_id)
                if task != "categorical" and utterance_id not in values:
                    builder.skip(label_file, f"{utterance_id}: no [V, A, D]")
                    continue
                builder.add(
                    wav,
                    ID=utterance_id,
                    label=FOUR_CLASS.get(code, code),
                    speaker=speaker,
                    gender=gender,
                    session=session,
                    elicitation=elicitation,
                    text=text,
                    **(values[utterance_id] if task != "categorical" else {}),
                )
    if task == "dimensional":  # no published count of that set to check
        builder.check(len(builder.rows), {}, strict)
        return builder.rows
    builder.check(
        EXPECTED_TOTAL,
        {"label": EXPECTED_PER_LABEL, "session": EXPECTED_PER_SESSION},
        strict,
    )
    return builder.rows


def fold_count(protocol="leave_one_session_out", **_):
    """Folds of a protocol: 5 sessions, 10 speakers, or 1 random split."""
    if protocol == RANDOM_PROTOCOL:
        return 1
    if protocol not in PROTOCOLS:
        raise UserError(
            f"unknown IEMOCAP protocol {protocol!r}; use one of "
            f"{', '.join(PROTOCOLS)} or {RANDOM_PROTOCOL}"
        )
    return len(SESSIONS) * (2 if protocol == "leave_one_speaker_out" else 1)


def prepare_iemocap(
    data_folder,
    save_folder,
    fold=1,
    protocol="leave_one_session_out",
    strict=False,
    task="categorical",
    **split_options,
):
    """Writes the manifest and one fold's speaker-independent splits.

    Arguments
    ---------
    data_folder : str
        ``IEMOCAP_full_release``.
    save_folder : str
        Where the manifests go.
    fold : int
        1-5 (sessions) or 1-10 (speakers ``Ses01F, Ses01M, Ses02F, ...``).
    protocol : str
        One of :data:`PROTOCOLS`, or ``random_speaker_dependent``.
    strict : bool
        Make skipped files and unknown counts an error.
    task : str
        ``categorical``, ``dimensional`` or ``joint`` (see
        :func:`build_manifest`).
    **split_options
        ``validation`` (``"speaker"``, ``"group"`` or ``"none"``),
        ``speaker_normalization``, ``normalized_folder``,
        ``text_disjoint``: see
        :func:`sercaf_toolkit.corpora.common.prepare_fold`.
    """
    rows = build_manifest(data_folder, strict, task)
    speakers = [f"Ses{s:02d}{g}" for s in SESSIONS for g in "FM"]
    if protocol == "leave_one_speaker_out":
        groups = [[speaker] for speaker in speakers]
        # Validation: the other speaker of the test speaker's session.
        valid = [[speakers[i ^ 1]] for i in range(len(speakers))]
        return prepare_fold(
            rows,
            save_folder,
            fold,
            protocol,
            groups,
            valid,
            corpus=NAME,
            **split_options,
        )
    groups = [speakers[i : i + 2] for i in range(0, len(speakers), 2)]
    return prepare_fold(
        rows, save_folder, fold, protocol, groups, corpus=NAME, **split_options
    )
