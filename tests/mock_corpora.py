"""Mock corpus trees with the real naming (and its pitfalls), tiny audio."""

import csv
import os

import numpy as np
import soundfile


def tiny_wav(path, sample_rate=16000, seconds=0.3, seed=0, channels=1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (int(seconds * sample_rate), channels)
    soundfile.write(path, 0.1 * rng.standard_normal(shape), sample_rate)


IEMOCAP_CODES = ["neu", "hap", "exc", "ang", "sad", "fru", "xxx"]
IEMOCAP_FOUR = {
    "neu": "neu",
    "hap": "hap",
    "exc": "hap",
    "ang": "ang",
    "sad": "sad",
}


def iemocap_vad(utterance_id):
    """The mock's [V, A, D] of a turn: varied, on the 1-5 scale."""
    rng = np.random.default_rng(sum(map(ord, utterance_id)))
    return [round(float(v), 4) for v in rng.uniform(1, 5, 3)]


def make_iemocap(root):
    """Writes IEMOCAP_full_release; returns the expected 4-class rows."""
    expected = []
    for session in range(1, 6):
        base = os.path.join(root, f"Session{session}")
        # Every session performs script 2, part 1 (as every real session
        # performs every script); script 1, part 1 is in sessions 1 and 5
        # only (5 as a second take, "1b"), so that a text-disjoint fold
        # removes some scripted utterances and keeps others.
        dialogs = [f"Ses0{session}F_impro01", f"Ses0{session}M_script02_1"]
        if session == 1:
            dialogs.append("Ses01F_script01_1")
        if session == 3:
            dialogs.append("Ses03M_impro08a")  # dialog letter M, talker F
        if session == 5:
            dialogs.append("Ses05M_script01_1b")  # extra "_" in the dialog
        label_dir = os.path.join(base, "dialog", "EmoEvaluation")
        for sub in ("Attribute", "Categorical", "Self-evaluation"):
            os.makedirs(os.path.join(label_dir, sub), exist_ok=True)
            with open(
                os.path.join(label_dir, sub, dialogs[0] + ".txt"), "w"
            ) as f:
                f.write(f"[1.0 - 2.0]\t{dialogs[0]}_F000\tang\t[1, 1, 1]\n")
        for d_index, dialog in enumerate(dialogs):
            lines = [
                "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]",
                "",
            ]
            for u_index in range(2 * len(IEMOCAP_CODES)):
                talker = "FM"[u_index % 2]
                utt = f"{dialog}_{talker}{u_index:03d}"
                code = IEMOCAP_CODES[(u_index // 2 + d_index + session) % 7]
                start = f"[{u_index}.0000 - {u_index}.5000]"
                lines += [
                    f"{start}\t{utt}\t{code}\t"
                    + "[{:.4f}, {:.4f}, {:.4f}]".format(*iemocap_vad(utt)),
                    "C-E2:\tNeutral;\t()",
                    "A-E3:\tval 3; act 2; dom  2;\t()",
                    "",
                ]
                wav = os.path.join(
                    base, "sentences", "wav", dialog, utt + ".wav"
                )
                tiny_wav(wav, seed=u_index)
                if code in IEMOCAP_FOUR:
                    speaker = f"Ses0{session}{talker}"
                    label = IEMOCAP_FOUR[code]
                    expected.append(
                        {"ID": utt, "label": label, "speaker": speaker}
                    )
            with open(os.path.join(label_dir, dialog + ".txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
    return expected


EMODB_LETTERS = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happiness", "T": "sadness", "N": "neutral",
}  # fmt: skip
EMODB_SPEAKERS = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
# EmoDB's ten texts; every real speaker says each of them.
EMODB_TEXTS = [
    "a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10",
]  # fmt: skip


def make_emodb(root, folder="wav", texts_of=None):
    """Writes an EmoDB tree (2 files per speaker and emotion).

    ``texts_of(speaker)`` lists the texts a speaker says (default: all
    ten, as in the real corpus); the 14 files of a speaker cycle through
    them from the second, so with ten texts each speaker says every one,
    and the second happiness file says the first text (``03a01Fb``).
    """
    expected = []
    for speaker in EMODB_SPEAKERS:
        texts = texts_of(speaker) if texts_of else EMODB_TEXTS
        for e_index, (letter, label) in enumerate(EMODB_LETTERS.items()):
            for v_index, version in enumerate("ab"):
                text = texts[(2 * e_index + v_index + 1) % len(texts)]
                name = f"{speaker}{text}{letter}{version}"
                tiny_wav(os.path.join(root, folder, name + ".wav"))
                expected.append(
                    {
                        "ID": name,
                        "label": label,
                        "speaker": speaker,
                        "text": text,
                    }
                )
    return expected


CASIA_SPEAKERS = ["liuchanhg", "wangzhe", "zhaoquanyin", "ZhaoZuoxiang"]
CASIA_EMOTIONS = ["angry", "fear", "happy", "neutral", "sad", "surprise"]


def make_casia(root, per_class=2):
    """Writes a CASIA tree; one speaker says "normal", one is at 22.05 kHz."""
    expected = []
    for s_index, speaker in enumerate(CASIA_SPEAKERS):
        rate = 22050 if speaker == "wangzhe" else 16000
        for emotion in CASIA_EMOTIONS:
            folder = (
                "normal" if (emotion == "neutral" and s_index == 2) else emotion
            )
            for number in range(per_class):
                name = f"{201 + number}.wav"
                tiny_wav(
                    os.path.join(root, speaker, folder, name), rate, seed=number
                )
                expected.append(
                    {
                        "label": emotion,
                        "speaker": speaker.lower(),
                        "text": str(201 + number),
                    }
                )
    return expected


RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip


def make_ravdess(root):
    """Writes 24 actors, one speech file per emotion, plus song and AV.

    Odd emotion codes say statement 01, even ones 02: every actor says
    both statements, as in the real corpus.
    """
    expected = []
    for actor in range(1, 25):
        folder = os.path.join(root, f"Actor_{actor:02d}")
        for code, label in RAVDESS_EMOTIONS.items():
            statement = "01" if int(code) % 2 else "02"
            name = f"03-01-{code}-01-{statement}-01-{actor:02d}"
            tiny_wav(os.path.join(folder, name + ".wav"), 48000, seconds=0.1)
            expected.append(
                {
                    "ID": name,
                    "label": label,
                    "speaker": f"Actor_{actor:02d}",
                    "text": statement,
                }
            )
        # Song and audio-visual files must not leak in.
        tiny_wav(
            os.path.join(folder, f"03-02-03-01-01-01-{actor:02d}.wav"),
            48000,
            0.1,
        )
        tiny_wav(
            os.path.join(folder, f"01-01-03-01-01-01-{actor:02d}.wav"),
            48000,
            0.1,
        )
    return expected


MSP_CLASSES = "ASHUFDCNOX"  # the 8 classes, then other and no agreement


def make_msppodcast(root, per_partition=20, test3=True):
    """Writes an MSP-Podcast release; returns its label rows (dicts).

    Real naming (``MSP-PODCAST_<podcast>_<segment>.wav``), the four
    partitions and a Test3 without labels, speakers numbered per
    partition (disjoint) with some ``Unknown``, every class with O and X,
    and varied 1-7 dimensions (a few files without them).
    """
    rng = np.random.default_rng(26)
    partitions = ["Train"] * 3 + ["Development", "Test1", "Test2"]
    rows = []
    for p_index, partition in enumerate(dict.fromkeys(partitions)):
        count = per_partition * partitions.count(partition)
        for number in range(count):
            name = f"MSP-PODCAST_{p_index:04d}_{number:04d}.wav"
            code = MSP_CLASSES[number % len(MSP_CLASSES)]
            speaker = (
                "Unknown"
                if number % 7 == 3
                else str(100 * p_index + number % 4)
            )
            act, val, dom = (round(float(v), 4) for v in rng.uniform(1, 7, 3))
            rows.append(
                {
                    "FileName": name,
                    "EmoClass": code,
                    "EmoAct": "" if number == 5 else act,
                    "EmoVal": val,
                    "EmoDom": dom,
                    "SpkrID": speaker,
                    "Gender": "Female" if number % 2 else "Male",
                    "Split_Set": partition,
                }
            )
    if test3:  # a later release's test set, its labels withheld
        rows.append(
            {
                "FileName": "MSP-PODCAST_0900_0000.wav",
                "EmoClass": "", "EmoAct": "", "EmoVal": "", "EmoDom": "",
                "SpkrID": "Unknown", "Gender": "", "Split_Set": "Test3",
            }
        )  # fmt: skip
    for index, row in enumerate(rows):
        tiny_wav(os.path.join(root, "Audios", row["FileName"]), seed=index)
    os.makedirs(os.path.join(root, "Labels"), exist_ok=True)
    with open(
        os.path.join(root, "Labels", "labels_consensus.csv"), "w", newline=""
    ) as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
