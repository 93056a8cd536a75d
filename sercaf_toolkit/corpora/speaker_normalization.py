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
That folder is a cache keyed by content (:mod:`sercaf_toolkit.cache`),
not by corpus or file names: each speaker's statistics are keyed by the
identity of every one of the speaker's files and the log-mel settings,
each normalised file by its source file's identity, the gains applied
and the settings, so a second corpus with the same speaker and file
names, an edited source file or other settings get entries of their own,
and a damaged entry is built again with a one-line warning naming it.

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import logging
import os

import numpy as np
import soundfile
import torch

from sercaf_toolkit.cache import (
    content_key,
    entry_problem,
    file_identity,
    keyed_path,
    read_json,
    safe_name,
    write_atomic,
    write_json_atomic,
    write_key_file,
)
from sercaf_toolkit.data import read_audio

logger = logging.getLogger(__name__)

# The log-mel analysis of the statistics (and the band centres of the
# gains); part of every cache key.
N_FFT = 2048
HOP_LENGTH = 512
STATISTICS_FOLDER = "statistics"
# The kind of input normalisation an export records (training_record).
KIND = "speaker_mean_logmel"


def logmel_settings(n_mels=64, sample_rate=16000):
    """The settings that shape a speaker's statistics (a cache key part)."""
    return {
        "n_mels": int(n_mels),
        "sample_rate": int(sample_rate),
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
    }


def _logmel(n_mels, sample_rate):
    from sercaf_toolkit.lobes.spectrogram import LogMel

    return LogMel(
        sample_rate=sample_rate,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        n_mels=n_mels,
    )


def _mean_spectrum(paths, logmel, sample_rate):
    """Mean log-mel spectrum (dB per band) over all valid frames of files."""
    total, count = 0.0, 0
    with torch.no_grad():
        for path in paths:
            feats, mask = logmel(read_audio(path, sample_rate)[None])
            frames = feats[0][mask[0]].double().numpy()
            total = total + frames.sum(axis=0)
            count += len(frames)
    return total / count, count


def _speaker_paths(rows):
    paths = collections.defaultdict(list)
    for row in rows:
        paths[row["speaker"]].append(row["wav"])
    return {speaker: sorted(found) for speaker, found in paths.items()}


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
    logmel = _logmel(n_mels, sample_rate)
    return {
        speaker: _mean_spectrum(paths, logmel, sample_rate)[0]
        for speaker, paths in _speaker_paths(rows).items()
    }


def cached_speaker_spectra(rows, folder, n_mels=64, sample_rate=16000):
    """:func:`speaker_mean_spectra`, each speaker's kept in ``folder``.

    A speaker's entry (``<folder>/statistics/<speaker>-<key>.json``) is
    keyed by the identity of every file of the speaker and the log-mel
    settings: a speaker the cache has not seen, or whose files changed,
    is computed; a damaged entry is computed again with a warning.

    Returns
    -------
    dict
        Speaker -> ``[n_mels]`` numpy array (dB).
    """
    settings = logmel_settings(n_mels, sample_rate)
    logmel = None
    means = {}
    for speaker, paths in sorted(_speaker_paths(rows).items()):
        sources = [file_identity(path) for path in paths]
        key = content_key("speaker-statistics", sources=sources, **settings)
        entry = keyed_path(
            os.path.join(folder, STATISTICS_FOLDER), speaker, key, ".json"
        )
        problem = entry_problem(entry, key, _statistics_problem(n_mels))
        if problem is None:
            means[speaker] = np.asarray(read_json(entry)["mean_db"])
            continue
        if problem != "missing":
            logger.warning(
                "speaker statistics %s: %s; computing them again",
                entry,
                problem,
            )
        if logmel is None:
            logmel = _logmel(n_mels, sample_rate)
        mean, frames = _mean_spectrum(paths, logmel, sample_rate)
        write_json_atomic(
            entry,
            {"speaker": speaker, "frames": frames, "mean_db": mean.tolist()},
        )
        write_key_file(
            entry,
            key,
            size=os.path.getsize(entry),
            speaker=speaker,
            settings=settings,
            sources=sources,
        )
        means[speaker] = mean
    return means


def _statistics_problem(n_mels):
    def check(entry, _):
        data = read_json(entry)
        mean = (data or {}).get("mean_db")
        if (
            not isinstance(mean, list)
            or len(mean) != n_mels
            or not np.all(np.isfinite(np.asarray(mean, dtype=float)))
        ):
            return f"it holds no mean spectrum of {n_mels} finite values"
        return None

    return check


def _wav_problem(entry, record):
    try:
        info = soundfile.info(entry)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        return f"it is not a readable audio file ({error})"
    if info.frames != record.get("frames"):
        return f"it holds {info.frames} frames, its key file says " + str(
            record.get("frames")
        )
    if info.samplerate != record.get("sample_rate"):
        return f"its sample rate is {info.samplerate}"
    return None


def band_centres(n_mels=64, sample_rate=16000, n_fft=N_FFT):
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


def normalize_speakers(
    rows, folder, n_mels=64, max_gain_db=30.0, sample_rate=16000
):
    """Writes speaker-normalised copies of the audio; returns new rows.

    Every speaker's mean log-mel spectrum is moved to the mean over all
    speakers (each speaker counted once). ``folder`` is a cache keyed by
    content (see the module docstring): a file is reused only when it was
    made from the same source file (path, size, times), with the same
    gains and settings; otherwise it is made again.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (``wav``, ``speaker``, ``ID``).
    folder : str
        Where the normalised audio goes (one subfolder per speaker, the
        speakers' statistics in ``statistics/``).
    n_mels : int
        Mel bands of the statistics.
    max_gain_db : float
        Gains are clipped to +- this.
    sample_rate : int
        Sample rate the audio is read at and written with.

    Returns
    -------
    list of dict
        The rows with ``wav`` pointing at the normalised files.
    """
    means = cached_speaker_spectra(rows, folder, n_mels, sample_rate)
    target = np.mean([means[speaker] for speaker in sorted(means)], axis=0)
    gains = {
        speaker: np.clip(target - mean, -max_gain_db, max_gain_db)
        for speaker, mean in means.items()
    }
    centres = band_centres(n_mels, sample_rate)
    settings = logmel_settings(n_mels, sample_rate)
    new_rows, built = [], 0
    for row in rows:
        speaker = row["speaker"]
        source = file_identity(row["wav"])
        key = content_key(
            "speaker-normalized-audio",
            source=source,
            gains_db=gains[speaker].tolist(),
            **settings,
        )
        path = keyed_path(
            os.path.join(folder, safe_name(speaker)), row["ID"], key, ".wav"
        )
        problem = entry_problem(path, key, _wav_problem)
        if problem is not None:
            if problem != "missing":
                logger.warning(
                    "speaker-normalised audio %s: %s; writing it again",
                    path,
                    problem,
                )
            wav = read_audio(row["wav"], sample_rate).double().numpy()
            out = apply_band_gains(wav, gains[speaker], centres, sample_rate)
            write_atomic(
                path,
                lambda temporary, out=out: soundfile.write(
                    temporary, out, sample_rate, subtype="FLOAT", format="WAV"
                ),
            )
            write_key_file(
                path,
                key,
                size=os.path.getsize(path),
                frames=len(out),
                sample_rate=int(sample_rate),
                source=source,
                speaker=speaker,
                gains_db=gains[speaker].tolist(),
            )
            built += 1
        new_rows.append({**row, "wav": os.path.abspath(path)})
    logger.info(
        "speaker normalisation: %d files written, %d reused from %s",
        built,
        len(rows) - built,
        folder,
    )
    return new_rows


def training_record(
    rows, folder, n_mels=64, max_gain_db=30.0, sample_rate=16000
):
    """What an export records of a run's speaker normalisation.

    The target is the mean over the corpus's speakers (each counted once)
    of their mean log-mel spectra, as
    :func:`~sercaf_toolkit.corpora.speaker_normalization.normalize_speakers`
    computes it; the speakers' statistics come from its cache in
    ``folder``, so this reads what training wrote.

    Arguments
    ---------
    rows : list of dict
        The corpus's manifest rows (``wav``, ``speaker``), raw audio.
    folder : str
        The normalised-audio folder of the run.
    n_mels, max_gain_db, sample_rate : int, float, int
        As given to ``normalize_speakers``.

    Returns
    -------
    dict
        JSON-ready: ``kind``, ``target_db``, ``max_gain_db`` and the
        log-mel settings.
    """
    means = cached_speaker_spectra(rows, folder, n_mels, sample_rate)
    target = np.mean([means[speaker] for speaker in sorted(means)], axis=0)
    return {
        "kind": KIND,
        "target_db": target.tolist(),
        "max_gain_db": float(max_gain_db),
        "speakers": len(means),
        **logmel_settings(n_mels, sample_rate),
    }
