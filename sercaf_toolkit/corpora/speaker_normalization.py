"""Speaker-level normalisation of the log-mel spectrum (transductive).

Each speaker's recordings carry a fixed colouring: the microphone and room
(the channel), the speaker's vocal tract and habitual loudness. A model
trained on a few speakers learns these as if they were emotion cues. Here
every utterance of a speaker is filtered so that the speaker's *average*
log-mel spectrum (mean over all valid frames of all the speaker's
utterances, in dB per mel band) becomes the corpus average: a per-band
gain, the log-mel counterpart of cepstral mean normalisation per speaker.
What varies *within* a speaker (emotion: louder, brighter, higher) is kept.

**Transductive.** The statistics come from each speaker's own audio,
without labels, test speakers included. Leave-speakers-out evaluation
permits this (the test speakers' unlabeled audio is available at test
time in that protocol), and deployment needs some audio of each new
speaker (their statistics) before classifying. Results obtained with it
are not comparable with results that see one test utterance at a time;
say which one a table reports.

The normalised audio is written once (32-bit float WAV, no clipping) to a
folder beside the corpus, and the manifest rows are pointed at it, so
every stream and every epoch reads normalised audio at no extra cost.

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import json
import os

import numpy as np
import soundfile
import torch

from sercaf_toolkit.data import read_audio


def speaker_mean_spectra(rows, n_mels=64, sample_rate=16000):
    """Mean log-mel spectrum (dB per band) of every speaker.

    Arguments
    ---------
    rows : list of dict
        Manifest rows with ``wav`` and ``speaker``.
    n_mels : int
        Number of mel bands.
    sample_rate : int
        Sample rate of the audio.

    Returns
    -------
    dict
        Speaker -> ``[n_mels]`` numpy array (dB).
    """
    from sercaf_toolkit.lobes.spectrogram import LogMel

    logmel = LogMel(sample_rate=sample_rate, n_mels=n_mels)
    sums = collections.defaultdict(lambda: np.zeros(n_mels))
    counts = collections.Counter()
    with torch.no_grad():
        for row in rows:
            feats, mask = logmel(read_audio(row["wav"], sample_rate)[None])
            frames = feats[0][mask[0]].double().numpy()
            sums[row["speaker"]] += frames.sum(axis=0)
            counts[row["speaker"]] += len(frames)
    return {spk: sums[spk] / counts[spk] for spk in sums}


def band_centres(n_mels=64, sample_rate=16000, n_fft=2048):
    """Centre frequencies (Hz) of the log-mel bands of the toolkit."""
    from sercaf_toolkit.lobes.spectrogram import LogMel

    bank = LogMel(sample_rate, n_fft=n_fft, n_mels=n_mels).mel.mel_scale.fb
    freqs = np.linspace(0, sample_rate / 2, bank.shape[0])
    return freqs[bank.argmax(dim=0).numpy()]


def apply_band_gains(wav, gains_db, centres, sample_rate=16000):
    """Filters a waveform by per-band gains (zero phase, FFT domain).

    Example
    -------
    >>> wav = np.random.default_rng(0).normal(size=16000)
    >>> out = apply_band_gains(wav, np.full(4, 6.0), np.array(
    ...     [100.0, 1000.0, 3000.0, 6000.0]))
    >>> round(float(np.std(out) / np.std(wav)), 2)  # +6 dB everywhere
    2.0
    """
    pad = 2048
    length = len(wav)
    spectrum = np.fft.rfft(np.concatenate([wav, np.zeros(pad)]))
    freqs = np.fft.rfftfreq(length + pad, 1 / sample_rate)
    gains = 10 ** (np.interp(freqs, centres, gains_db) / 20)
    return np.fft.irfft(spectrum * gains, n=length + pad)[:length]


def normalize_speakers(rows, folder, n_mels=64, max_gain_db=30.0):
    """Writes speaker-normalised copies of the audio; returns new rows.

    Every speaker's mean log-mel spectrum is moved to the mean over all
    speakers (each speaker counted once). Files already written are
    reused; ``speaker_gains.json`` in ``folder`` records the gains.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (``wav``, ``speaker``, ``ID``).
    folder : str
        Where the normalised audio goes (one subfolder per speaker).
    n_mels : int
        Mel bands of the statistics.
    max_gain_db : float
        Gains are clipped to +- this.

    Returns
    -------
    list of dict
        The rows with ``wav`` pointing at the normalised files.
    """
    gains_file = os.path.join(folder, "speaker_gains.json")
    if os.path.exists(gains_file):
        with open(gains_file, encoding="utf-8") as source:
            gains = {k: np.asarray(v) for k, v in json.load(source).items()}
    else:
        means = speaker_mean_spectra(rows, n_mels)
        target = np.mean(list(means.values()), axis=0)
        gains = {
            spk: np.clip(target - mean, -max_gain_db, max_gain_db)
            for spk, mean in means.items()
        }
        os.makedirs(folder, exist_ok=True)
        with open(gains_file + ".tmp", "w", encoding="utf-8") as out:
            json.dump({k: v.tolist() for k, v in gains.items()}, out)
        os.replace(gains_file + ".tmp", gains_file)
    centres = band_centres(n_mels)
    new_rows = []
    for row in rows:
        path = os.path.join(folder, row["speaker"], row["ID"] + ".wav")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            wav = read_audio(row["wav"]).double().numpy()
            out = apply_band_gains(wav, gains[row["speaker"]], centres)
            soundfile.write(path + ".part.wav", out, 16000, subtype="FLOAT")
            os.replace(path + ".part.wav", path)
        new_rows.append({**row, "wav": os.path.abspath(path)})
    return new_rows
