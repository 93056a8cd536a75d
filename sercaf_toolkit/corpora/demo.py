"""Synthetic emotional speech: the embedded demo corpus, no download needed.

A small source-filter synthesiser writes sentence-like syllable sequences
for several synthetic speakers (different pitch ranges and vocal-tract
lengths) in four emotions that differ the way acted emotions do:

=========  =========  ===========  ===========  ==========  =============
emotion    F0 level   F0 range     syllables/s  loudness    voice quality
=========  =========  ===========  ===========  ==========  =============
neutral    baseline   narrow       4.0          medium      modal
happy      raised     wide         5.0          raised      bright
angry      raised     medium       5.5          loud        tense
sad        lowered    very narrow  2.8          quiet       breathy
=========  =========  ===========  ===========  ==========  =============

Speaker differences are as large as emotion differences (a female speaker's
neutral F0 is above a male speaker's angry F0), so a model has to learn
emotion relative to the speaker, and evaluation on unseen speakers means
something. Everything is deterministic given the seed.

Layout written (``<speaker>_<emotion>_<NN>.wav``, 16 kHz mono)::

    <folder>/spk1_f/spk1_f_angry_00.wav
    <folder>/spk2_m/spk2_m_sad_03.wav
    ...

Authors
 * sercaf-toolkit developers 2026
"""

import os

import numpy as np
import soundfile
from scipy.signal import lfilter

from sercaf_toolkit.corpora.common import ManifestBuilder, prepare_fold

EMOTIONS = ("neutral", "happy", "angry", "sad")
NAME = "Demo"
# The demo's labels are shared names already (common.SHARED_EMOTIONS).
VOCABULARY = {emotion: emotion for emotion in EMOTIONS}

# Synthetic dimensional labels, so that the dimensional recipes run on the
# demo: each emotion's place in valence-arousal-dominance space on a 1-5
# scale (IEMOCAP's), in the spirit of circumplex placements (Russell
# 1980; anger and joy aroused, sadness not; anger dominant, sadness
# submissive). Our own round numbers, not measured ratings: every
# utterance of an emotion gets its emotion's values. Arousal follows the
# synthesis's arousal cues (level and F0 range, see _STYLE): angry >
# happy > neutral > sad in level, and happy and angry above neutral and
# sad in F0 range. See docs/dimensional.md for what such a mapping is not.
DIMENSIONS = ("arousal", "valence", "dominance")
DIMENSION_SCALE = (1.0, 5.0)
EMOTION_DIMENSIONS = {
    "neutral": {"arousal": 2.5, "valence": 3.0, "dominance": 3.0},
    "happy": {"arousal": 3.7, "valence": 4.3, "dominance": 3.4},
    "angry": {"arousal": 4.3, "valence": 1.7, "dominance": 4.0},
    "sad": {"arousal": 1.6, "valence": 1.8, "dominance": 2.0},
}

# Speaker name (gender in the suffix), F0 baseline in Hz, vocal-tract scale
# (formant frequencies are multiplied by it: shorter tract = higher).
SPEAKERS = (
    ("spk1_f", 215.0, 1.17),
    ("spk2_m", 112.0, 0.95),
    ("spk3_f", 190.0, 1.10),
    ("spk4_m", 128.0, 1.00),
    ("spk5_f", 240.0, 1.20),
    ("spk6_m", 100.0, 0.90),
    ("spk7_f", 205.0, 1.12),
    ("spk8_m", 120.0, 0.97),
)

# F0 factor, F0 range (octaves), syllables per second, level (dB),
# glottal spectral tilt (one-pole coefficient: higher = darker), breath.
_STYLE = {
    "neutral": (1.00, 0.15, 4.0, -20.0, 0.80, 0.02),
    "happy": (1.30, 0.55, 5.0, -15.0, 0.65, 0.02),
    "angry": (1.22, 0.30, 5.5, -10.0, 0.45, 0.03),
    "sad": (0.86, 0.06, 2.8, -27.0, 0.93, 0.20),
}

# First three formants (Hz) of five vowels for a reference tract.
_VOWELS = np.array(
    [
        [730, 1090, 2440],  # a
        [270, 2290, 3010],  # i
        [300, 870, 2240],  # u
        [530, 1840, 2480],  # e
        [570, 840, 2410],  # o
    ],
    dtype=float,
)

SAMPLE_RATE = 16000


def _resonator(signal, frequency, bandwidth, sample_rate):
    """Second-order resonance (one formant), unit gain at DC removed."""
    r = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2 * np.pi * frequency / sample_rate
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, signal)


def synthesize_utterance(speaker, emotion, seed, sample_rate=SAMPLE_RATE):
    """Synthesises one utterance.

    Arguments
    ---------
    speaker : str
        One of the names in :data:`SPEAKERS`.
    emotion : str
        One of :data:`EMOTIONS`.
    seed : int
        Seed of the utterance's randomness (text, timing, jitter).
    sample_rate : int
        Output sample rate.

    Returns
    -------
    numpy.ndarray
        float32 mono waveform in [-1, 1].

    Example
    -------
    >>> wav = synthesize_utterance("spk1_f", "angry", seed=0)
    >>> wav.dtype, 1.0 < len(wav) / SAMPLE_RATE < 4.0, bool(abs(wav).max() <= 1)
    (dtype('float32'), True, True)
    """
    speakers = {name: (f0, tract) for name, f0, tract in SPEAKERS}
    if speaker not in speakers:
        raise ValueError(f"unknown demo speaker {speaker!r}")
    if emotion not in _STYLE:
        raise ValueError(f"unknown demo emotion {emotion!r}")
    base_f0, tract = speakers[speaker]
    f0_factor, f0_range, rate, level_db, tilt, breath = _STYLE[emotion]
    rng = np.random.default_rng(seed)
    n_syllables = int(rng.integers(6, 11))
    rate = rate * rng.uniform(0.9, 1.1)
    pieces = [np.zeros(int(0.1 * sample_rate))]
    # Sentence intonation: a declining line plus per-syllable accents.
    accents = rng.uniform(-1.0, 1.0, n_syllables)
    for index in range(n_syllables):
        syllable_seconds = rng.uniform(0.75, 1.25) / rate
        consonant = int(0.25 * syllable_seconds * sample_rate)
        vowel = int(0.75 * syllable_seconds * sample_rate)
        # Unvoiced consonant: a short burst of high-passed noise.
        burst = rng.normal(0, 1, consonant)
        burst = lfilter([1, -0.95], [1], burst) * 0.05
        burst *= np.hanning(consonant)
        # Voiced vowel: glottal source with F0 movement, through formants.
        position = index / max(n_syllables - 1, 1)
        octave = f0_range * (0.5 * accents[index] + 0.5 - position)
        start_f0 = base_f0 * f0_factor * 2.0**octave
        glide = 2.0 ** (f0_range * rng.uniform(-0.5, 0.5))
        f0 = np.geomspace(start_f0, start_f0 * glide, vowel)
        f0 *= 1 + 0.01 * rng.normal(0, 1, vowel)  # jitter
        phase = np.cumsum(f0 / sample_rate)
        source = 2 * (phase % 1.0) - 1  # sawtooth: all harmonics
        source = lfilter([1 - tilt], [1, -tilt], source)
        source += breath * rng.normal(0, 1, vowel)
        formants = _VOWELS[rng.integers(len(_VOWELS))] * tract
        voiced = source
        for formant, bandwidth in zip(formants, (80, 120, 160)):
            voiced = _resonator(voiced, formant, bandwidth, sample_rate)
        voiced /= np.abs(voiced).max() + 1e-9
        voiced *= np.hanning(vowel) ** 0.5
        pieces += [burst, voiced]
        if rng.uniform() < 0.2:  # occasional short pause
            pieces.append(np.zeros(int(rng.uniform(0.05, 0.2) * sample_rate)))
    pieces.append(np.zeros(int(0.1 * sample_rate)))
    wav = np.concatenate(pieces)
    wav = wav / (np.sqrt(np.mean(wav**2)) + 1e-9)  # unit RMS
    wav *= 10 ** ((level_db + rng.uniform(-2, 2)) / 20)
    wav += 10 ** (-60 / 20) * rng.normal(0, 1, len(wav))  # noise floor
    return np.clip(wav, -1, 1).astype(np.float32)


def generate_demo_corpus(folder, utterances_per_emotion=10, seed=1234):
    """Writes the demo corpus (skips files already there) and lists it.

    Arguments
    ---------
    folder : str
        Root folder of the corpus.
    utterances_per_emotion : int
        Utterances per speaker and emotion.
    seed : int
        Base seed; the same seed writes the same corpus.

    Returns
    -------
    list of str
        Paths of all wav files, in a fixed order.

    Example
    -------
    >>> import tempfile
    >>> paths = generate_demo_corpus(tempfile.mkdtemp(), 1)
    >>> len(paths), os.path.basename(paths[0])
    (32, 'spk1_f_neutral_00.wav')
    """
    paths = []
    for speaker_index, (speaker, _, _) in enumerate(SPEAKERS):
        os.makedirs(os.path.join(folder, speaker), exist_ok=True)
        for emotion_index, emotion in enumerate(EMOTIONS):
            for number in range(utterances_per_emotion):
                name = f"{speaker}_{emotion}_{number:02d}.wav"
                path = os.path.join(folder, speaker, name)
                paths.append(path)
                if os.path.exists(path):
                    continue
                utterance_seed = seed + (
                    speaker_index * 1000 + emotion_index * 100 + number
                )
                wav = synthesize_utterance(speaker, emotion, utterance_seed)
                # Write to a temporary name first: an interrupted run never
                # leaves a truncated file under the final name. The name is
                # this process's own: two runs generating the corpus at once
                # each write whole files, and the first one's stays (a
                # hard link fails on an existing name), so that a file never
                # changes under a run that has recorded it (its size and
                # time are in the run's data fingerprint).
                partial = f"{path}.{os.getpid()}.part.wav"
                soundfile.write(partial, wav, SAMPLE_RATE)
                try:
                    os.link(partial, path)
                except FileExistsError:
                    pass  # another run wrote the same file first
                except OSError:  # a file system without hard links
                    os.replace(partial, path)
                    continue
                os.remove(partial)
    return paths


def build_manifest(data_folder, utterances_per_emotion=10, task="categorical"):
    """Manifest rows of the demo corpus (generated first if needed).

    With ``task`` ``dimensional`` or ``joint``, each row gets its
    emotion's synthetic values (:data:`EMOTION_DIMENSIONS`) in the
    columns ``arousal``, ``valence`` and ``dominance``; a categorical
    manifest has no such columns (it is what it was before tasks).

    Example
    -------
    >>> import tempfile
    >>> rows = build_manifest(tempfile.mkdtemp(), 1)
    >>> len(rows), rows[0]["speaker"], rows[0]["label"]
    (32, 'spk1_f', 'neutral')
    >>> rows = build_manifest(tempfile.mkdtemp(), 1, task="dimensional")
    >>> rows[-1]["label"], rows[-1]["arousal"]
    ('sad', 1.6)
    """
    values = {} if task == "categorical" else EMOTION_DIMENSIONS
    builder = ManifestBuilder(NAME)
    for path in generate_demo_corpus(data_folder, utterances_per_emotion):
        utt_id = os.path.splitext(os.path.basename(path))[0]
        speaker, gender_letter, emotion, _ = utt_id.split("_")
        builder.add(
            path,
            ID=utt_id,
            label=emotion,
            speaker=f"{speaker}_{gender_letter}",
            gender=gender_letter.upper(),
            # Each utterance draws its own syllables from its own seed: no
            # two share a text ("" is unique for text-disjoint folds).
            text="",
            **values.get(emotion, {}),
        )
    return builder.rows


def fold_count(**_):
    """Four folds: one per speaker pair."""
    return len(SPEAKERS) // 2


def prepare_demo(
    data_folder,
    save_folder,
    fold=1,
    utterances_per_emotion=10,
    task="categorical",
    **split_options,
):
    """Generates the demo corpus if needed and writes one fold's splits.

    Four speaker-independent folds: fold ``k`` tests on speaker pair ``k``
    (one female, one male), validates on the next pair, and trains on the
    other four speakers.

    Arguments
    ---------
    data_folder : str
        Where the corpus lives (generated there on first use).
    save_folder : str
        Where ``data.csv`` (all utterances) and ``train/valid/test.csv`` go.
    fold : int
        1 to 4.
    utterances_per_emotion : int
        Utterances per speaker and emotion.
    task : str
        ``categorical``, or ``dimensional`` / ``joint``: the manifests
        get the synthetic dimension values (see :func:`build_manifest`).

    **split_options
        ``validation`` (``"speaker"``, ``"group"`` or ``"none"``),
        ``speaker_normalization``, ``normalized_folder``,
        ``text_disjoint``: see
        :func:`sercaf_toolkit.corpora.common.prepare_fold`.

    Returns
    -------
    dict
        Split name -> manifest rows.

    Example
    -------
    >>> import tempfile
    >>> splits = prepare_demo(tempfile.mkdtemp(), tempfile.mkdtemp(), 2, 1)
    >>> sorted({row["speaker"] for row in splits["test"]})
    ['spk3_f', 'spk4_m']
    """
    pairs = [[SPEAKERS[i][0], SPEAKERS[i + 1][0]] for i in range(0, 8, 2)]
    return prepare_fold(
        build_manifest(data_folder, utterances_per_emotion, task),
        save_folder,
        fold,
        "demo_speaker_pairs",
        pairs,
        corpus=NAME,
        **split_options,
    )
