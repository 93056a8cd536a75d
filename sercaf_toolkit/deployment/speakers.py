"""Speaker-normalised models at inference: the record and its enrolment.

A model trained with ``speaker_normalization: True`` never saw raw audio:
every utterance was filtered so that its speaker's mean log-mel spectrum
became the training corpus's mean (see
:mod:`sercaf_toolkit.corpora.speaker_normalization`). Its export records
that (:data:`RECORD_FILE` in a model folder, the ``input_normalization``
metadata of an ONNX file): the target spectrum, the log-mel settings and
the gain limit. At inference the same normalisation needs the speaker's
statistics, computed from some unlabeled audio of that speaker (the
*enrolment* audio) exactly as in training, cached per speaker by content
(:func:`~sercaf_toolkit.corpora.speaker_normalization.cached_speaker_spectra`),
and applied to every recording of that speaker before the model.

Without enrolment audio such a model is refused in one line
(:func:`refusal`), and SpeechBrain's ``EncoderClassifier`` on the folder
refuses too: the folder's ``compute_features`` is a
:class:`SpeakerNormalizedInput`, which raises unless the caller said that
it normalised the audio.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os

import numpy as np
import torch

# What training records lives with the normalisation it describes; kept
# importable here, where inference reads it back.
from sercaf_toolkit.corpora.speaker_normalization import (  # noqa: F401
    KIND,
    training_record,
)
from sercaf_toolkit.errors import UserError

RECORD_FILE = "input_normalization.json"
SAMPLE_RATE = 16000


def default_cache_folder():
    """Where enrolment statistics are kept: ``$SERCAF_CACHE/speakers``.

    ``SERCAF_CACHE`` defaults to ``~/.cache/sercaf``.

    Example
    -------
    >>> default_cache_folder().endswith("speakers")
    True
    """
    root = os.environ.get("SERCAF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "sercaf"
    )
    return os.path.join(root, "speakers")


def read_record(model):
    """The normalisation a model folder or ONNX file was trained with.

    Arguments
    ---------
    model : str
        A model folder (its :data:`RECORD_FILE`) or an ``.onnx`` file (its
        ``input_normalization`` metadata; the file is loaded).

    Returns
    -------
    dict or None
        The record, or None for a model trained on raw audio.

    Example
    -------
    >>> import tempfile
    >>> read_record(tempfile.mkdtemp()) is None
    True
    """
    if str(model).lower().endswith(".onnx"):
        from sercaf_toolkit.deployment.onnx_runtime import OnnxModel

        return OnnxModel(model).input_normalization
    path = os.path.join(str(model), RECORD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as source:
        return json.load(source)


def refusal(model, record):
    """One line refusing raw audio for a speaker-normalised model.

    Example
    -------
    >>> print(refusal("m", {}))  # doctest: +ELLIPSIS
    model m was trained on speaker-normalised audio ...
    """
    return (
        f"model {model} was trained on speaker-normalised audio "
        "(speaker_normalization: True) and cannot label raw audio; give "
        "enrolment "
        "audio of the same speaker with --speaker_audio FILES|DIR (Python: "
        "speaker_audio=...), or a list file with a speaker column"
    )


class SpeakerNormalizedInput(torch.nn.Module):
    """``compute_features`` of a speaker-normalised model folder: a guard.

    Passes its input through once :attr:`normalized` is set by a caller
    that applied the speaker normalisation (``EmotionPredictor`` does);
    otherwise it raises, so that ``EncoderClassifier.classify_file`` on
    raw audio fails instead of giving labels the model was not trained
    for.

    Example
    -------
    >>> guard = SpeakerNormalizedInput()
    >>> guard(torch.zeros(1, 4))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: this model was trained on speaker-normalised audio ...
    >>> guard.normalized = True
    >>> guard(torch.zeros(1, 4)).shape
    torch.Size([1, 4])
    """

    def __init__(self):
        super().__init__()
        self.normalized = False

    def forward(self, wavs, *args, **kwargs):
        """Returns ``wavs`` if the caller normalised them, else raises."""
        if not self.normalized:
            raise RuntimeError(
                "this model was trained on speaker-normalised audio and "
                "refuses raw audio; use sercaf predict --speaker_audio or "
                "EmotionPredictor(speaker_audio=...), which normalise it"
            )
        return wavs


class SpeakerNormalizer:
    """Applies a model's speaker normalisation, from enrolment audio.

    Arguments
    ---------
    record : dict
        What the export recorded (see :func:`training_record`).
    cache_folder : str, optional
        Where each speaker's statistics are kept, keyed by the identity of
        its files and the settings (default :func:`default_cache_folder`).

    Example
    -------
    >>> import tempfile, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> path = os.path.join(folder, "enrol.wav")
    >>> soundfile.write(path, 0.1 * rng.normal(size=16000), 16000)
    >>> record = {"kind": KIND, "target_db": [0.0] * 64, "n_mels": 64,
    ...           "max_gain_db": 30.0}
    >>> normalizer = SpeakerNormalizer(record, cache_folder=folder)
    >>> gains = normalizer.gains([path], "spk")
    >>> out = normalizer.apply(torch.ones(800), gains)
    >>> out.dtype, out.shape
    (torch.float32, torch.Size([800]))
    """

    def __init__(self, record, cache_folder=None):
        if record.get("kind") != KIND:
            raise UserError(
                f"unknown input normalisation {record.get('kind')!r} in the "
                "model; export it again with this toolkit"
            )
        self.record = record
        self.n_mels = int(record["n_mels"])
        self.target = np.asarray(record["target_db"], dtype=float)
        self.max_gain_db = float(record["max_gain_db"])
        self.cache_folder = cache_folder or default_cache_folder()
        self._centres = None

    def gains(self, paths, speaker):
        """Per-band gains (dB) of a speaker, from the speaker's audio files.

        The statistics are computed as in training (mean log-mel spectrum
        over every valid frame of the files) and cached by content.
        """
        from sercaf_toolkit.corpora.speaker_normalization import (
            cached_speaker_spectra,
        )

        rows = [{"speaker": str(speaker), "wav": path} for path in paths]
        mean = cached_speaker_spectra(
            rows, self.cache_folder, self.n_mels, SAMPLE_RATE
        )[str(speaker)]
        return np.clip(self.target - mean, -self.max_gain_db, self.max_gain_db)

    def apply(self, wav, gains):
        """A 16 kHz waveform filtered by the speaker's gains (float32)."""
        from sercaf_toolkit.corpora.speaker_normalization import (
            apply_band_gains,
            band_centres,
        )

        if self._centres is None:
            self._centres = band_centres(self.n_mels, SAMPLE_RATE)
        # In double, then float32: what training wrote to its FLOAT WAVs
        # and read back.
        out = apply_band_gains(
            wav.double().numpy(), gains, self._centres, SAMPLE_RATE
        )
        return torch.from_numpy(out.astype(np.float32))
