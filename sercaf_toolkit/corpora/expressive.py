"""A harder synthetic emotional-speech corpus, for learning benchmarks.

The demo corpus (:mod:`sercaf_toolkit.corpora.demo`) is separable: eight
speakers, four emotions with large fixed effects. This one is built so
that unseen speakers are hard, the way they are in small acted corpora:

- 16 speakers (8 female, 8 male) drawn from a seed, each with its own
  baseline of pitch level and range, speaking rate, loudness, voice
  quality (spectral tilt, breathiness, jitter), vocal-tract length,
  recording channel (band limits and a spectral tilt of the microphone)
  and background noise level. The spread of these baselines across
  speakers is as large as the emotion effects;
- emotion effects applied *relative* to each speaker's baseline, scaled by
  the speaker's expressiveness and by a per-utterance intensity (some
  utterances are barely marked):

  =========  ========  ========  =====  =========  ==================
  emotion    F0 level  F0 range  rate   loudness   voice quality
  =========  ========  ========  =====  =========  ==================
  neutral    baseline  baseline  base   baseline   baseline
  happy      +13 %     x 1.6     +8 %   +3 dB      brighter
  angry      +9 %      x 1.2     +12 %  +6 dB      tense (bright)
  sad        -7 %      x 0.6     -18 %  -4 dB      darker, breathy
  fear       +18 %     x 0.8     +15 %  -1 dB      jittery, breathy
  =========  ========  ========  =====  =========  ==================

- six "sentences" (fixed vowel sequences and accent patterns) shared by
  all speakers and emotions (``s0`` .. ``s5`` in the file name, the rows'
  ``text``);
- unequal class counts (per speaker: 8 neutral, 6 angry, 5 happy, 5 sad,
  4 fear at the default size).

Everything is deterministic given the seed. Layout written
(``<speaker>/<speaker>_<emotion>_<sentence>_<NN>.wav``, 16 kHz mono)::

    <folder>/f01/f01_angry_s3_00.wav
    <folder>/m05/m05_sad_s0_02.wav

Protocol: four speaker-independent folds of four speakers (two female, two
male); fold ``k`` tests on group ``k`` and validates on two speakers (one
female, one male) of the next group, so ten speakers train.

Authors
 * sercaf-toolkit developers 2026
"""

import os

import numpy as np
import soundfile
from scipy.signal import butter, lfilter

from sercaf_toolkit.corpora.common import (
    ManifestBuilder,
    prepare_fold,
)
from sercaf_toolkit.corpora.demo import _VOWELS, SAMPLE_RATE, _resonator

EMOTIONS = ("neutral", "happy", "angry", "sad", "fear")
NAME = "Expressive"
# Its labels are shared names already (common.SHARED_EMOTIONS).
VOCABULARY = {emotion: emotion for emotion in EMOTIONS}

# Utterances per speaker and emotion at scale 1 (unequal on purpose).
CLASS_SHARES = {"neutral": 8, "happy": 5, "angry": 6, "sad": 5, "fear": 4}

# Emotion effects relative to the speaker's baseline: F0 factor, F0-range
# factor, rate factor, level change (dB), tilt change (lower = brighter),
# breath factor, jitter factor.
EFFECTS = {
    "neutral": (1.00, 1.0, 1.00, 0.0, 0.00, 1.0, 1.0),
    "happy": (1.13, 1.6, 1.08, 3.0, -0.08, 1.0, 1.0),
    "angry": (1.09, 1.2, 1.12, 6.0, -0.18, 1.2, 1.2),
    "sad": (0.93, 0.6, 0.82, -4.0, 0.06, 2.0, 1.0),
    "fear": (1.18, 0.8, 1.15, -1.0, 0.00, 1.6, 3.0),
}

# Sentences: vowel indices of the syllables (into the demo's vowel table)
# and an accent pattern in [-1, 1] per syllable.
SENTENCES = (
    ((0, 1, 3, 2, 4, 0, 1), (1.0, -0.5, 0.2, -0.8, 0.5, -0.2, -1.0)),
    ((3, 3, 0, 4, 1, 2), (0.2, 1.0, -0.4, 0.0, -0.6, -1.0)),
    ((2, 0, 1, 0, 3, 4, 1, 2), (-0.2, 0.8, 0.0, 0.4, -0.5, 0.3, -0.3, -0.9)),
    ((1, 4, 2, 3, 0), (0.6, -0.6, 1.0, -0.2, -0.8)),
    ((4, 1, 1, 3, 0, 2, 0, 3, 1), (0.0, 0.5, -0.3, 0.9, -0.1, 0.2, -0.5, 0.1,
                                   -1.0)),
    ((0, 2, 4, 1, 3, 0), (0.9, 0.1, -0.4, 0.6, -0.7, -0.9)),
)  # fmt: skip

N_SPEAKERS = 16


def speaker_profiles(seed=2024, n_speakers=N_SPEAKERS):
    """Draws the speakers' baselines.

    Arguments
    ---------
    seed : int
        Seed of the draw.
    n_speakers : int
        Number of speakers (even: half female, half male).

    Returns
    -------
    list of dict
        One dict per speaker: ``name`` (``f01``, ``m01``, ...), ``gender``
        and the baseline values.

    Example
    -------
    >>> profiles = speaker_profiles()
    >>> len(profiles), profiles[0]["name"], profiles[1]["name"]
    (16, 'f01', 'm01')
    """
    rng = np.random.default_rng(seed)
    profiles = []
    for index in range(n_speakers):
        female = index % 2 == 0
        number = index // 2 + 1
        profiles.append(
            {
                "name": f"{'f' if female else 'm'}{number:02d}",
                "gender": "F" if female else "M",
                "f0": rng.uniform(165, 260) if female else rng.uniform(85, 150),
                "f0_range": rng.uniform(0.12, 0.45),  # octaves
                "rate": rng.uniform(3.2, 5.4),  # syllables per second
                "level_db": rng.uniform(-32, -14),
                "tilt": rng.uniform(0.55, 0.88),
                "breath": rng.uniform(0.01, 0.10),
                "jitter": rng.uniform(0.005, 0.02),
                "tract": (
                    rng.uniform(1.05, 1.22)
                    if female
                    else rng.uniform(0.88, 1.02)
                ),
                "expressiveness": rng.uniform(0.6, 1.2),
                # Recording channel: band limits (Hz), microphone tilt
                # (one-pole coefficient, sign = brighter or darker) and the
                # noise level relative to the speech (dB).
                "low_cut": rng.uniform(60, 400),
                "high_cut": rng.uniform(2800, 7200),
                "mic_tilt": rng.uniform(-0.6, 0.6),
                "snr_db": rng.uniform(12, 35),
            }
        )
    return profiles


def synthesize_expressive(profile, emotion, sentence, seed):
    """Synthesises one utterance of a speaker in an emotion.

    Arguments
    ---------
    profile : dict
        A speaker from :func:`speaker_profiles`.
    emotion : str
        One of :data:`EMOTIONS`.
    sentence : int
        Index into :data:`SENTENCES`.
    seed : int
        Seed of the utterance's randomness (intensity, timing, noise).

    Returns
    -------
    numpy.ndarray
        float32 mono waveform at 16 kHz in [-1, 1].

    Example
    -------
    >>> wav = synthesize_expressive(speaker_profiles()[0], "fear", 2, seed=0)
    >>> wav.dtype, 1.0 < len(wav) / SAMPLE_RATE < 5.0
    (dtype('float32'), True)
    """
    if emotion not in EFFECTS:
        raise ValueError(f"unknown emotion {emotion!r}")
    rng = np.random.default_rng(seed)
    sr = SAMPLE_RATE
    # Effect strength: the speaker's expressiveness times this utterance's
    # intensity; effects interpolate between neutral (0) and full (1).
    strength = profile["expressiveness"] * rng.uniform(0.5, 1.3)
    f0_f, range_f, rate_f, level_d, tilt_d, breath_f, jitter_f = EFFECTS[
        emotion
    ]

    def toward(full, neutral):
        return neutral + strength * (full - neutral)

    f0 = profile["f0"] * toward(f0_f, 1.0) * rng.uniform(0.95, 1.05)
    f0_range = profile["f0_range"] * toward(range_f, 1.0)
    rate = profile["rate"] * toward(rate_f, 1.0) * rng.uniform(0.92, 1.08)
    level_db = profile["level_db"] + toward(level_d, 0.0) + rng.uniform(-2, 2)
    tilt = float(np.clip(profile["tilt"] + toward(tilt_d, 0.0), 0.2, 0.97))
    breath = profile["breath"] * toward(breath_f, 1.0)
    jitter = profile["jitter"] * toward(jitter_f, 1.0)

    vowels, accents = SENTENCES[sentence]
    n_syllables = len(vowels)
    pieces = [np.zeros(int(rng.uniform(0.05, 0.2) * sr))]
    for index, vowel_index in enumerate(vowels):
        syllable_seconds = rng.uniform(0.8, 1.2) / rate
        consonant = int(0.25 * syllable_seconds * sr)
        vowel = int(0.75 * syllable_seconds * sr)
        burst = lfilter([1, -0.95], [1], rng.normal(0, 1, consonant)) * 0.05
        burst *= np.hanning(consonant)
        position = index / max(n_syllables - 1, 1)
        accent = accents[index] + rng.uniform(-0.3, 0.3)
        octave = f0_range * (0.5 * accent + 0.5 - position)
        start_f0 = f0 * 2.0**octave
        glide = 2.0 ** (f0_range * rng.uniform(-0.5, 0.5))
        track = np.geomspace(start_f0, start_f0 * glide, vowel)
        track *= 1 + jitter * rng.normal(0, 1, vowel)
        phase = np.cumsum(track / sr)
        source = 2 * (phase % 1.0) - 1
        source = lfilter([1 - tilt], [1, -tilt], source)
        source += breath * rng.normal(0, 1, vowel)
        formants = _VOWELS[vowel_index] * profile["tract"]
        formants = formants * rng.uniform(0.95, 1.05, 3)
        voiced = source
        for formant, bandwidth in zip(formants, (80, 120, 160)):
            voiced = _resonator(voiced, formant, bandwidth, sr)
        voiced /= np.abs(voiced).max() + 1e-9
        # Syllable loudness follows the accent a little (stress).
        voiced *= np.hanning(vowel) ** 0.5 * 10 ** (0.1 * accent)
        pieces += [burst, voiced]
        if rng.uniform() < 0.2:
            pieces.append(np.zeros(int(rng.uniform(0.05, 0.2) * sr)))
    pieces.append(np.zeros(int(rng.uniform(0.05, 0.2) * sr)))
    speech = np.concatenate(pieces)
    speech = speech / (np.sqrt(np.mean(speech**2)) + 1e-9)
    speech *= 10 ** (level_db / 20)
    # Recording channel: band-pass and microphone tilt, then noise at the
    # speaker's SNR (against the speaker's neutral level, so that loud
    # emotions rise above the noise and quiet ones sink into it).
    nyquist = sr / 2
    b, a = butter(
        2, [profile["low_cut"] / nyquist, profile["high_cut"] / nyquist], "band"
    )
    speech = lfilter(b, a, speech)
    speech = lfilter([1.0], [1.0, -profile["mic_tilt"]], speech)
    speech *= 10 ** (level_db / 20) / (np.sqrt(np.mean(speech**2)) + 1e-12)
    noise = lfilter([1.0], [1.0, -0.9], rng.normal(0, 1, len(speech)))
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    noise_db = profile["level_db"] - profile["snr_db"]
    wav = speech + 10 ** (noise_db / 20) * noise
    return np.clip(wav, -1, 1).astype(np.float32)


def corpus_plan(scale=1.0, seed=2024, n_speakers=N_SPEAKERS):
    """Lists the utterances of the corpus: (speaker, emotion, sentence, n).

    Arguments
    ---------
    scale : float
        Multiplies the per-speaker class counts (:data:`CLASS_SHARES`);
        every class keeps at least one utterance per speaker.
    seed : int
        Seed of the speakers and of the sentence choice.
    n_speakers : int
        Number of speakers.

    Returns
    -------
    list of tuple
        ``(profile, emotion, sentence, number, utterance_seed)``.
    """
    profiles = speaker_profiles(seed, n_speakers)
    plan = []
    for s_index, profile in enumerate(profiles):
        for e_index, emotion in enumerate(EMOTIONS):
            count = max(1, int(round(CLASS_SHARES[emotion] * scale)))
            for number in range(count):
                utt_seed = seed * 7 + s_index * 10007 + e_index * 101 + number
                sentence = (number + s_index + e_index) % len(SENTENCES)
                plan.append((profile, emotion, sentence, number, utt_seed))
    return plan


def generate_expressive_corpus(
    folder, scale=1.0, seed=2024, n_speakers=N_SPEAKERS
):
    """Writes the corpus (skipping files already there) and lists it.

    Arguments
    ---------
    folder : str
        Root folder of the corpus.
    scale : float
        Corpus size (see :func:`corpus_plan`); 1.0 gives 28 utterances per
        speaker, 448 in all.
    seed : int
        The same seed writes the same corpus.
    n_speakers : int
        Number of speakers.

    Returns
    -------
    list of str
        Paths of all wav files, in a fixed order.

    Example
    -------
    >>> import tempfile
    >>> paths = generate_expressive_corpus(tempfile.mkdtemp(), 0.1, 1, 2)
    >>> len(paths), os.path.basename(paths[0])
    (10, 'f01_neutral_s0_00.wav')
    """
    paths = []
    for profile, emotion, sentence, number, utt_seed in corpus_plan(
        scale, seed, n_speakers
    ):
        speaker = profile["name"]
        os.makedirs(os.path.join(folder, speaker), exist_ok=True)
        name = f"{speaker}_{emotion}_s{sentence}_{number:02d}.wav"
        path = os.path.join(folder, speaker, name)
        paths.append(path)
        if os.path.exists(path):
            continue
        wav = synthesize_expressive(profile, emotion, sentence, utt_seed)
        # A name of this process's own: two runs generating the corpus at
        # once each write whole files, and the last rename wins.
        partial = f"{path}.{os.getpid()}.part.wav"
        soundfile.write(partial, wav, SAMPLE_RATE)
        os.replace(partial, path)
    return paths


def speaker_groups(n_speakers=N_SPEAKERS, n_folds=4):
    """Test speaker groups of the folds, each half female, half male.

    Example
    -------
    >>> speaker_groups(8, 2)
    [['f01', 'm01', 'f02', 'm02'], ['f03', 'm03', 'f04', 'm04']]
    """
    names = [p["name"] for p in speaker_profiles(0, n_speakers)]
    pairs = [names[i : i + 2] for i in range(0, n_speakers, 2)]
    per_fold = len(pairs) // n_folds
    if per_fold < 1:
        raise ValueError(f"{n_speakers} speakers cannot make {n_folds} folds")
    return [
        [
            name
            for pair in pairs[k * per_fold : (k + 1) * per_fold]
            for name in pair
        ]
        for k in range(n_folds)
    ]


def build_manifest(data_folder, scale=1.0, seed=2024, n_speakers=N_SPEAKERS):
    """Manifest rows of the corpus (generated first if needed).

    Arguments: see :func:`generate_expressive_corpus`.
    """
    builder = ManifestBuilder(NAME)
    for path in generate_expressive_corpus(
        data_folder, scale, seed, n_speakers
    ):
        utt_id = os.path.splitext(os.path.basename(path))[0]
        speaker, emotion, sentence, _ = utt_id.split("_")
        builder.add(
            path,
            ID=utt_id,
            label=emotion,
            speaker=speaker,
            gender=speaker[0].upper(),
            sentence=sentence,
            # Every speaker says the six sentences: the text key of
            # text-disjoint folds (common.prepare_fold).
            text=sentence,
        )
    return builder.rows


def fold_count(n_folds=4, **_):
    """The number of folds (four by default)."""
    return int(n_folds)


def prepare_expressive(
    data_folder,
    save_folder,
    fold=1,
    scale=1.0,
    seed=2024,
    n_speakers=N_SPEAKERS,
    n_folds=4,
    **split_options,
):
    """Generates the corpus if needed and writes one fold's splits.

    Fold ``k`` tests on speaker group ``k`` and validates on the first two
    speakers (one female, one male) of the next group; every other speaker
    trains.

    Arguments
    ---------
    data_folder : str
        Where the corpus lives (generated there on first use; different
        ``scale``, ``seed`` or ``n_speakers`` need different folders).
    save_folder : str
        Where ``data.csv`` and ``train/valid/test.csv`` go.
    fold : int
        1 to ``n_folds``.
    scale, seed, n_speakers : see :func:`generate_expressive_corpus`.
    n_folds : int
        Number of speaker groups.
    **split_options
        ``validation``, ``speaker_normalization``, ``normalized_folder``,
        ``text_disjoint`` of
        :func:`sercaf_toolkit.corpora.common.prepare_fold`; validation is
        ``"group"`` here (two speakers, as the learning benchmark measured)
        and the normalised audio goes to ``<data_folder>/speaker_normalized``
        by default.

    Returns
    -------
    dict
        Split name -> manifest rows.

    Example
    -------
    >>> import tempfile
    >>> splits = prepare_expressive(
    ...     tempfile.mkdtemp(), tempfile.mkdtemp(), 2, 0.2, 1, 8, 2,
    ...     validation="group")
    >>> sorted({row["speaker"] for row in splits["test"]})
    ['f03', 'f04', 'm03', 'm04']
    >>> sorted({row["speaker"] for row in splits["valid"]})
    ['f01', 'm01']
    """
    groups = speaker_groups(n_speakers, n_folds)
    valid = [groups[k % n_folds][:2] for k in range(1, n_folds + 1)]
    rows = build_manifest(data_folder, scale, seed, n_speakers)
    split_options.setdefault("validation", "group")
    split_options.setdefault(
        "normalized_folder", os.path.join(data_folder, "speaker_normalized")
    )
    return prepare_fold(
        rows, save_folder, fold, "expressive_speaker_groups", groups,
        valid=valid, corpus=NAME,
        **split_options,
    )  # fmt: skip
