"""Labelling audio with a trained model: files, folders, long recordings.

:class:`EmotionPredictor` wraps any ``EncoderClassifier``-compatible model
folder (such as a recipe's ``inference/``) and returns one record per file,
or, for recordings longer than ``long_threshold`` seconds, an emotion
timeline: overlapping windows are classified, the recording is tiled into
one segment per window (boundaries halfway between window centres), and
adjacent segments with the same label are merged; or, with ``segment="vad"``
(the default), speech is found with a voice-activity detector
(:mod:`~sercaf_toolkit.deployment.segmentation`) and only speech segments
are labelled, the rest marked ``non-speech``. A record's ``flag``
says when its label means little (``too_short``, ``silent``) or that the
file held no audio (``empty``) or no speech (``no_speech``). A model
trained on speaker-normalised audio needs enrolment audio of the speaker
(``speaker_audio``, see :mod:`~sercaf_toolkit.deployment.speakers`).
A dimensional or joint model's records add its dimension values (arousal,
valence, dominance on the corpus's scale; see docs/dimensional.md).
``sercaf predict`` is the same thing on the command line.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import json
import os
import sys
import tempfile
import time
import traceback

import torch

from sercaf_toolkit.data import (
    AudioError,
    audio_extensions,
    is_empty_audio,
    read_checked,
)
from sercaf_toolkit.deployment.segmentation import (
    MAX_SEGMENT,
    MIN_GAP,
    SEGMENT_MODES,
    speech_segments,
)
from sercaf_toolkit.deployment.speakers import (
    SpeakerNormalizer,
    read_record,
    refusal,
)
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.integrity import CHECKSUMS, damage

SAMPLE_RATE = 16000
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".scp")
# What write_records writes, by the extension of its path.
OUTPUT_EXTENSIONS = (".csv", ".json")
# Below this many seconds a label says little (acted corpora's utterances
# last 1-10 s), and below the model's receptive field none can be given.
MIN_SECONDS = 1.0
# A peak under -60 dBFS: digital silence, or a line with nothing on it.
SILENT_PEAK = 10 ** (-60 / 20)


def expand_inputs(inputs):
    """Files, folders (searched recursively) and path lists -> file paths.

    A ``.txt``/``.lst``/``.list``/``.scp`` file lists one path per line;
    blank lines and lines starting with ``#`` are skipped. Relative paths
    in a list are relative to the current folder, as ``ls > list.txt``
    writes them, not to the list's folder, and are returned as written.
    Folders contribute files whose extension soundfile reads; files named
    directly are always kept (a bad one then gets an error row rather than
    vanishing).

    Raises
    ------
    UserError
        When a list file cannot be read.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a" / "b").mkdir(parents=True)
    >>> for name in ("a/x.wav", "a/b/y.flac", "a/notes.md"):
    ...     _ = (root / name).write_bytes(b"")
    >>> _ = (root / "a" / "list.txt").write_text("a/x.wav\\n\\n# a note\\n")
    >>> here = os.getcwd()
    >>> os.chdir(root)
    >>> expand_inputs(["a", "a/list.txt"])
    ['a/b/y.flac', 'a/x.wav', 'a/x.wav']
    >>> expand_inputs(["missing.txt"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: list file missing.txt: cannot read ...
    >>> os.chdir(here)
    """
    extensions = audio_extensions()
    paths = []
    for item in map(str, inputs):
        if os.path.isdir(item):
            found = []
            for folder, _, names in os.walk(item):
                found += [
                    os.path.join(folder, name)
                    for name in names
                    if os.path.splitext(name)[1].lower() in extensions
                ]
            paths += sorted(found)
        elif item.lower().endswith(LIST_EXTENSIONS):
            paths += _read_list(item)
        else:
            paths.append(item)
    return paths


def _read_list(path):
    try:
        with open(path, encoding="utf-8") as listing:
            lines = [line.strip() for line in listing]
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise UserError(
            f"list file {path}: cannot read it ({reason}); give a text "
            "file with one audio path per line"
        ) from error
    return [line for line in lines if line and not line.startswith("#")]


def read_speaker_list(path):
    """``(path, speaker)`` pairs of a ``.csv`` list with a speaker column.

    The header names a ``path`` column and, optionally, a ``speaker``
    column; relative paths start from the current folder, as in
    :func:`expand_inputs`.

    Raises
    ------
    UserError
        When the file cannot be read or has no ``path`` column.

    Example
    -------
    >>> import tempfile
    >>> listing = os.path.join(tempfile.mkdtemp(), "list.csv")
    >>> _ = open(listing, "w").write("path,speaker\\na.wav,ann\\nb.wav,bo\\n")
    >>> read_speaker_list(listing)
    [('a.wav', 'ann'), ('b.wav', 'bo')]
    """
    try:
        with open(path, encoding="utf-8", newline="") as listing:
            rows = list(csv.DictReader(listing))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise UserError(
            f"list file {path}: cannot read it ({reason}); give a CSV file "
            "with path and speaker columns"
        ) from error
    if not rows or "path" not in rows[0]:
        raise UserError(
            f"list file {path}: no path column (or no rows); give a CSV "
            "file whose header names path and speaker columns"
        )
    return [
        (row["path"].strip(), (row.get("speaker") or "").strip())
        for row in rows
        if (row["path"] or "").strip()
    ]


def window_spans(duration, window, hop):
    """(start, end) of the analysis windows of a recording, in seconds.

    Windows start every ``hop`` seconds; the last one ends at the end of the
    recording (starting earlier rather than being cut short).

    Example
    -------
    >>> window_spans(9.0, window=4.0, hop=2.0)
    [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (5.0, 9.0)]
    >>> window_spans(3.0, window=4.0, hop=2.0)
    [(0.0, 3.0)]
    """
    if duration <= window:
        return [(0.0, duration)]
    spans, start = [], 0.0
    while start + window < duration:
        spans.append((start, start + window))
        start += hop
    spans.append((duration - window, duration))
    return spans


def audio_flags(wav, min_seconds=MIN_SECONDS):
    """What a row's ``flag`` says about a waveform: too short, silent.

    Arguments
    ---------
    wav : torch.Tensor
        1-D 16 kHz waveform.
    min_seconds : float
        Shorter waveforms are ``too_short``.

    Returns
    -------
    str
        ``""``, ``"too_short"``, ``"silent"`` or ``"too_short;silent"``.

    Example
    -------
    >>> audio_flags(torch.zeros(8000)), audio_flags(torch.ones(32000) / 2)
    ('too_short;silent', '')
    """
    flags = []
    if len(wav) < min_seconds * SAMPLE_RATE:
        flags.append("too_short")
    if not len(wav) or float(wav.abs().max()) < SILENT_PEAK:
        flags.append("silent")
    return ";".join(flags)


def check_output_path(path):
    """Refuses an output file that :func:`write_records` cannot write.

    Raises
    ------
    UserError
        Naming the extension and the ones that can be written.

    Example
    -------
    >>> check_output_path("labels.JSON")
    >>> check_output_path("labels.xlsx")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --out labels.xlsx: cannot write \
.xlsx files; give a file name ending in .csv or .json
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in OUTPUT_EXTENSIONS:
        what = f"{extension} files" if extension else "a name without extension"
        raise UserError(
            f"--out {path}: cannot write {what}; give a file name ending "
            f"in {' or '.join(OUTPUT_EXTENSIONS)}"
        )


def check_model_folder(model_dir):
    """Refuses a model folder whose files do not match its checksums.

    Exported folders carry ``checksums.json``; a folder without one (made
    by hand, or exported before checksums existed) is not checked.

    Raises
    ------
    UserError
        If a file is missing, truncated or altered.
    """
    reason = damage(model_dir, required=False)
    if reason is not None:
        raise UserError(
            f"model folder {model_dir} is damaged: {reason}; export or copy "
            f"it again (if you edited it on purpose, delete its {CHECKSUMS})"
        )


def _package_folder(module):
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


def hyperparams_problem(error, model_dir, savedir):
    """What is wrong with a model folder's ``hyperparams.yaml``, or None.

    SpeechBrain loads the file from a copy (a link in ``savedir``), so
    its own errors name a temporary path: here they name the user's file.
    An error raised while the YAML was read or its objects built (a
    syntax error, an unknown class, a wrong argument) or while the
    weights were put into the model it built (an edited width) is the
    file's; anything else is not, and gives ``None``.

    Arguments
    ---------
    error : Exception
        What loading the folder raised.
    model_dir : str
        The model folder, as the user gave it.
    savedir : str
        Where SpeechBrain put its copy.

    Returns
    -------
    str or None
        One line naming the user's ``hyperparams.yaml`` and the fix.
    """
    import hyperpyyaml
    import ruamel.yaml

    yaml_file = os.path.join(str(model_dir), "hyperparams.yaml")
    packages = (_package_folder(hyperpyyaml), _package_folder(ruamel.yaml))
    frames = traceback.extract_tb(error.__traceback__)
    message = str(error)
    for copy in (os.path.join(savedir, "hyperparams.yaml"), savedir):
        message = message.replace(copy, yaml_file)
        message = message.replace(os.path.realpath(copy), yaml_file)
    message = " ".join(message.split())
    fix = "export the model again, or undo the edit"
    if any(f.filename.startswith(packages) for f in frames):
        return (
            f"{yaml_file} cannot be loaded ({type(error).__name__}: "
            f"{message}); {fix}"
        )
    if isinstance(error, RuntimeError) and "state_dict" in message:
        return (
            f"{yaml_file} builds a model that the weights in "
            f"embedding_model.ckpt do not fit ({message[:300]}); {fix}"
        )
    return None


class EmotionPredictor:
    """Labels audio files with an ``EncoderClassifier``-compatible model.

    Arguments
    ---------
    model_dir : str
        A model folder (``hyperparams.yaml`` and checkpoints), loaded
        offline with SpeechBrain's ``EncoderClassifier.from_hparams``. Load
        only folders you trust: a ``hyperparams.yaml`` can run code. Or an
        ``.onnx`` file written by ``sercaf export-onnx``, run with
        onnxruntime (see
        :class:`~sercaf_toolkit.deployment.onnx_runtime.OnnxModel`); it gives
        the same records, and has no :meth:`attention`.
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``, ...).
    batch_size : int
        Files (or windows) per forward pass; files are batched by length.
    window, hop : float
        Window length and shift, in seconds, for long recordings.
    long_threshold : float
        Recordings longer than this (seconds) get a timeline; ``None``: never.
    min_seconds : float
        Recordings shorter than this are flagged ``too_short`` (see
        :meth:`predict`).
    savedir : str, optional
        Where SpeechBrain links the model files (default: a temporary
        folder removed with the predictor).
    segment : str
        How long recordings are cut: ``"vad"`` (speech segments found by
        a voice-activity detector; needs the ``vad`` extra) or
        ``"window"`` (fixed windows, ``window`` and ``hop``).
    min_gap, max_segment : float
        With ``segment="vad"``: pauses shorter than ``min_gap`` seconds
        are merged into the speech, speech longer than ``max_segment``
        seconds is split.
    speaker_audio : list of str or dict, optional
        Enrolment audio for a model trained on speaker-normalised audio:
        files, folders or lists of one speaker, or a dict speaker ->
        such inputs (then :meth:`predict` takes ``speakers``). Refused for
        a model trained on raw audio; required for a normalised one.
    speaker_cache : str, optional
        Where enrolment statistics are cached (default
        :func:`~sercaf_toolkit.deployment.speakers.default_cache_folder`).

    Raises
    ------
    UserError
        For a speaker-normalised model without ``speaker_audio`` (before
        the model loads), enrolment audio that cannot be read, or
        ``speaker_audio`` for a model trained on raw audio.
    """

    def __init__(
        self,
        model_dir,
        device="cpu",
        batch_size=8,
        window=4.0,
        hop=2.0,
        long_threshold=30.0,
        min_seconds=MIN_SECONDS,
        savedir=None,
        segment="vad",
        min_gap=MIN_GAP,
        max_segment=MAX_SEGMENT,
        speaker_audio=None,
        speaker_cache=None,
    ):
        from sercaf_toolkit.deployment.onnx_runtime import (
            OnnxModel,
            is_onnx_path,
        )

        if hop <= 0 or window <= 0 or hop > window:
            raise ValueError("need 0 < hop <= window")
        if segment not in SEGMENT_MODES:
            raise UserError(
                f"segment {segment!r}: give one of {', '.join(SEGMENT_MODES)}"
            )
        if segment == "vad":
            from sercaf_toolkit.deployment.segmentation import require_vad

            require_vad()
        # A folder's record is read before the model loads (an ONNX
        # file's from its metadata once loaded): a normalised model without
        # enrolment audio, or the reverse, is a mistake whatever the audio.
        if not is_onnx_path(model_dir):
            _check_enrolment(model_dir, read_record(model_dir), speaker_audio)
        self._tmp = None
        # An ONNX file is one file, checked by onnxruntime when it loads;
        # the checksums guard the several files of a model folder.
        self.onnx = None
        self.classifier = None
        if is_onnx_path(model_dir):
            self.onnx = OnnxModel(model_dir, device=device)
            self.labels = list(self.onnx.labels)
            if self.onnx.dimensions:
                self.dimensions = list(self.onnx.dimensions)
                self.dimension_scale = list(self.onnx.dimension_scale)
            record = self.onnx.input_normalization
            _check_enrolment(model_dir, record, speaker_audio)
        else:
            record = read_record(model_dir)
            self._load_folder(model_dir, device, savedir)
        self.device = device
        self.batch_size = batch_size
        self.window = window
        self.hop = hop
        self.long_threshold = long_threshold
        self.min_seconds = min_seconds
        self.segment = segment
        self.min_gap = min_gap
        self.max_segment = max_segment
        self.input_normalization = record
        self.normalizer = None
        self._gains = {}
        if record:
            self._enrol(record, speaker_audio, speaker_cache)

    def _enrol(self, record, speaker_audio, speaker_cache):
        """Each speaker's gains, from the enrolment audio."""
        self.normalizer = SpeakerNormalizer(record, speaker_cache)
        if not isinstance(speaker_audio, dict):
            speaker_audio = {None: speaker_audio}
        for speaker, inputs in speaker_audio.items():
            if isinstance(inputs, str):
                inputs = [inputs]
            paths = expand_inputs(inputs)
            name = speaker or "enrolled"
            if not paths:
                raise UserError(
                    f"speaker audio {' '.join(map(str, inputs))}: no audio "
                    "files; give files or folders of the speaker's audio"
                )
            for path in paths:
                try:
                    read_checked(path)
                except AudioError as error:
                    raise UserError(
                        f"speaker audio of {name}: {error}; give readable "
                        "audio files of the speaker"
                    ) from error
            self._gains[speaker] = self.normalizer.gains(paths, name)
        if self.classifier is not None:
            # The folder's guard lets audio through: it is normalised here.
            self.classifier.mods.compute_features.normalized = True

    def normalize(self, wav, speaker=None):
        """The model's input for a raw 16 kHz waveform.

        Unchanged for a model trained on raw audio; for a speaker-normalised
        one, filtered by the gains of ``speaker`` (a key of the
        ``speaker_audio`` dict; None: the one enrolled speaker).

        Raises
        ------
        UserError
            For a speaker without enrolment audio.
        """
        if self.normalizer is None:
            return wav
        if speaker not in self._gains:
            if speaker is None and len(self._gains) == 1:
                speaker = next(iter(self._gains))
            else:
                raise UserError(
                    f"speaker {speaker}: no enrolment audio; give "
                    "speaker_audio for every speaker"
                )
        return self.normalizer.apply(wav, self._gains[speaker])

    def _load_folder(self, model_dir, device, savedir):
        from speechbrain.inference.classifiers import EncoderClassifier

        if not os.path.isfile(os.path.join(model_dir, "hyperparams.yaml")):
            raise FileNotFoundError(
                f"{model_dir} is not a model folder (no hyperparams.yaml)"
            )
        check_model_folder(model_dir)
        if savedir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sercaf_model_")
            savedir = self._tmp.name
        try:
            self.classifier = EncoderClassifier.from_hparams(
                source=os.path.abspath(model_dir),
                savedir=savedir,
                run_opts={"device": device},
            )
        except Exception as error:
            problem = hyperparams_problem(error, model_dir, savedir)
            if problem is None:
                raise
            raise UserError(problem) from error
        model = self.classifier.mods.embedding_model
        regressor = getattr(model, "regressor", None)
        if getattr(model, "classifier", True) is None:
            # Its `classifier` is the regression head, and its label
            # encoder a placeholder: there are no classes to name.
            self.labels = []
        else:
            encoder = self.classifier.hparams.label_encoder
            self.labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        if regressor is not None:
            self.dimensions = list(regressor.dimensions)
            self.dimension_scale = [
                float(regressor.low),
                float(regressor.high),
            ]

    # Core -----------------------------------------------------------------

    # A categorical model's rows are its class probabilities; a model with
    # dimensions appends their values (on the corpus's scale) to them, so
    # that batching, timelines and merging handle one tensor whatever the
    # task.
    dimensions = ()
    dimension_scale = None

    def _scores(self, batch, lengths):
        """Log-probabilities and dimensions of a padded batch, on the CPU.

        Returns
        -------
        tuple
            ``([B, classes] log-probabilities (or logits), [B, D]
            corpus-scale values)``; either is None where the model has no
            such head.
        """
        if self.onnx is not None:
            return self.onnx.outputs(batch, lengths)
        if not self.dimensions:
            # A categorical folder: SpeechBrain's own path, as always.
            scores, _, _, _ = self.classifier.classify_batch(batch, lengths)
            return scores.float().cpu(), None
        model = self.classifier.mods.embedding_model
        embeddings = self.classifier.encode_batch(batch, lengths)
        embeddings = embeddings.reshape(len(batch), -1)
        scores = None
        if self.labels:
            scores = model.classifier(embeddings).float().cpu()
        return scores, model.regressor(embeddings).float().cpu()

    @torch.no_grad()
    def probabilities(self, waveforms, progress=False):
        """Class probabilities of 16 kHz waveforms, batched by length.

        Arguments
        ---------
        waveforms : list of torch.Tensor
            1-D waveforms.
        progress : bool
            Show a progress bar (in files).

        Returns
        -------
        torch.Tensor
            ``[len(waveforms), n_classes]`` probabilities, input order
            (no columns for a dimensional model: see :meth:`outputs`).
        """
        return self.outputs(waveforms, progress)[:, : len(self.labels)]

    @torch.no_grad()
    def dimension_values(self, waveforms, progress=False):
        """Dimension values of 16 kHz waveforms on the corpus's scale.

        Returns
        -------
        torch.Tensor
            ``[len(waveforms), D]``, in the order of ``self.dimensions``
            (no columns for a categorical model).
        """
        return self.outputs(waveforms, progress)[:, len(self.labels) :]

    @torch.no_grad()
    def outputs(self, waveforms, progress=False):
        """Probabilities, then dimension values, of waveforms, one row each.

        Arguments
        ---------
        waveforms : list of torch.Tensor
            1-D waveforms.
        progress : bool
            Show a progress bar (in files).

        Returns
        -------
        torch.Tensor
            ``[len(waveforms), n_classes + D]``: the class probabilities
            and the values of ``self.dimensions`` on the corpus's scale,
            input order.
        """
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
        width = len(self.labels) + len(self.dimensions)
        result = torch.zeros(len(waveforms), width)
        bar = _progress_bar(len(waveforms), progress, "classifying")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            longest = max(len(waveforms[i]) for i in chunk)
            batch = torch.zeros(len(chunk), longest)
            for row, index in enumerate(chunk):
                batch[row, : len(waveforms[index])] = waveforms[index]
            lengths = torch.tensor([len(waveforms[i]) / longest for i in chunk])
            scores, values = self._scores(batch, lengths)
            if scores is not None:
                # Softmax turns logits into probabilities and leaves
                # normalised log-probabilities (what our head gives) as
                # they are.
                result[chunk, : len(self.labels)] = torch.softmax(
                    scores, dim=-1
                )
            if values is not None:
                result[chunk, len(self.labels) :] = values
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return result

    def _record(self, path, start, end, row, error="", flag="", speech=""):
        row = [float(p) for p in row] if row is not None else None
        probs = row[: len(self.labels)] if row is not None else None
        best = max(range(len(probs)), key=probs.__getitem__) if probs else None
        record = {
            "path": path,
            "start": round(start, 3),
            "end": round(end, 3),
            "speech": speech,
        }
        if self.labels:  # a dimensional model has no label to give
            record["label"] = self.labels[best] if probs else ""
            record["score"] = probs[best] if probs else None
        for index, label in enumerate(self.labels):
            record[f"prob_{label}"] = probs[index] if probs else None
        for index, name in enumerate(self.dimensions):
            value = row[len(self.labels) + index] if row is not None else None
            record[name] = value
        record["flag"] = flag
        record["error"] = error
        return record

    @property
    def _min_samples(self):
        return self.min_seconds * SAMPLE_RATE

    def _file_record(self, path, waveforms, probs):
        wav = waveforms[path]
        duration = len(wav) / SAMPLE_RATE
        flag = audio_flags(wav, self.min_seconds)
        return self._record(path, 0.0, duration, probs, flag=flag)

    def _tiny_record(self, path, waveforms):
        wav = waveforms[path]
        try:
            probs = self.outputs([wav])[0]
        except Exception as error:  # torch's and onnxruntime's own types
            # Only a too-short input comes here: a model that cannot take
            # it gives a row saying so, and the other files are labelled.
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            duration = len(wav) / SAMPLE_RATE
            message = (
                f"{path}: too short for the model ({len(wav)} samples, "
                f"{duration:.3f} s; {reason})"
            )
            flag = audio_flags(wav, self.min_seconds)
            return self._record(path, 0.0, duration, None, message, flag)
        return self._file_record(path, waveforms, probs)

    # Attention ------------------------------------------------------------

    @torch.no_grad()
    def attention(self, path):
        """Cross-attention maps of one recording (models with CAF).

        Arguments
        ---------
        path : str
            An audio file.

        Returns
        -------
        dict
            ``maps``: per stream, ``[T_i, sum of the other streams' T]``
            head-averaged weights (each row sums to one); ``streams``: the
            streams' names; ``frame_seconds``: each stream's frame shift;
            ``label``: the predicted label.
        """
        from sercaf_toolkit.lobes.fusion import CrossAttentionFusion
        from sercaf_toolkit.lobes.model import describe_model

        if self.onnx is not None:
            raise UserError(
                f"{self.onnx.path} is an ONNX model, whose graph returns "
                "only log-probabilities; give the model folder it was "
                "exported from to see its attention"
            )
        model = self.classifier.mods.embedding_model
        fusions = [
            m for m in model.modules() if isinstance(m, CrossAttentionFusion)
        ]
        if not fusions:
            raise UserError(
                "the model has no CrossAttentionFusion block, so no "
                "cross-attention to show; give a model that fuses its "
                "streams with CrossAttentionFusion"
            )
        fusion = fusions[0]
        wav = read_checked(path).to(self.classifier.device)
        fusion.keep_attention = True
        try:
            embeddings = model(wav.unsqueeze(0))
            maps = [m[0].float().cpu().numpy() for m in fusion.attention_maps]
        finally:
            fusion.keep_attention = False
            fusion.attention_maps = None
        duration = len(wav) / SAMPLE_RATE
        return {
            "maps": maps,
            "streams": describe_model(model)["streams"],
            "frame_seconds": [duration / m.shape[0] for m in maps],
            # A dimensional model has no label to name.
            "label": self.labels[int(model.classifier(embeddings).argmax())]
            if self.labels
            else "",
        }

    # Files and timelines ---------------------------------------------------

    def timeline(self, wav, path="", merge=True):
        """Emotion timeline of one long waveform.

        Arguments
        ---------
        wav : torch.Tensor
            1-D 16 kHz waveform.
        path : str
            Name to put in the records.
        merge : bool
            Merge adjacent segments with the same label.

        Returns
        -------
        segments : list of dict
            Records tiling ``[0, duration]`` in order.
        windows : list of dict
            The raw per-window records (for plots).
        """
        duration = len(wav) / SAMPLE_RATE
        spans = window_spans(duration, self.window, self.hop)
        pieces = [
            wav[int(round(a * SAMPLE_RATE)) : int(round(b * SAMPLE_RATE))]
            for a, b in spans
        ]
        probs = self.outputs(pieces)
        windows = [
            self._record(path, a, b, p) for (a, b), p in zip(spans, probs)
        ]
        centres = [(a + b) / 2 for a, b in spans]
        bounds = (
            [0.0]
            + [(x + y) / 2 for x, y in zip(centres, centres[1:])]
            + [duration]
        )
        segments = []
        for index, p in enumerate(probs):
            start, end = bounds[index], bounds[index + 1]
            # Segments merge on equal labels; a dimensional model's values
            # change from window to window: each keeps its own segment.
            label = (
                int(p[: len(self.labels)].argmax()) if self.labels else index
            )
            if merge and segments and segments[-1][2] == label:
                previous = segments[-1]
                weight = (previous[1] - previous[0], end - start)
                mixed = (previous[3] * weight[0] + p * weight[1]) / sum(weight)
                segments[-1] = (previous[0], end, label, mixed)
            else:
                segments.append((start, end, label, p))
        records = [
            self._record(
                path, a, b, p, flag=self._span_flag(wav, a, b, duration)
            )
            for a, b, _, p in segments
        ]
        return records, windows

    def speech_timeline(self, wav, path=""):
        """Emotion timeline of the speech of one long waveform.

        Speech segments (see
        :func:`~sercaf_toolkit.deployment.segmentation.speech_segments`)
        are labelled; the spans between them get a ``non-speech`` record
        without label or probabilities. A recording without speech gives
        one ``non-speech`` record flagged ``no_speech``.

        Arguments
        ---------
        wav : torch.Tensor
            1-D 16 kHz waveform (the model's input).
        path : str
            Name to put in the records.

        Returns
        -------
        segments : list of dict
            Records tiling ``[0, duration]`` in order (``speech`` says
            ``speech`` or ``non-speech``).
        windows : list of dict
            The speech segments' records (for plots).
        """
        spans = speech_segments(wav, self.min_gap, self.max_segment)
        speech = [(a, b) for a, b, is_speech in spans if is_speech]
        pieces = [
            wav[int(round(a * SAMPLE_RATE)) : int(round(b * SAMPLE_RATE))]
            for a, b in speech
        ]
        probs = iter(self.outputs(pieces)) if pieces else iter(())
        duration = len(wav) / SAMPLE_RATE
        records = []
        for start, end, is_speech in spans:
            if is_speech:
                records.append(
                    self._record(
                        path,
                        start,
                        end,
                        next(probs),
                        flag=self._span_flag(wav, start, end, duration),
                        speech="speech",
                    )
                )
            else:
                flag = "" if speech else "no_speech"
                records.append(
                    self._record(
                        path, start, end, None, flag=flag, speech="non-speech"
                    )
                )
        windows = [r for r in records if r["speech"] == "speech"]
        return records, windows

    @staticmethod
    def _span_flag(wav, start, end, duration):
        """``silent`` for a silent stretch of a long recording."""
        if end >= duration:  # the last segment reaches the last sample
            piece = wav[int(round(start * SAMPLE_RATE)) :]
        else:
            piece = wav[
                int(round(start * SAMPLE_RATE)) : int(round(end * SAMPLE_RATE))
            ]
        # Length is no concern here: the recording is long.
        return audio_flags(piece, min_seconds=0)

    def predict(self, inputs, progress=False, expand=True, speakers=None):
        """Labels every input; a bad file gets an error record.

        Arguments
        ---------
        inputs : list of str
            Files, folders and path lists (see :func:`expand_inputs`).
        progress : bool
            Show a progress bar.
        expand : bool
            Expand folders and lists; ``False``: ``inputs`` are already
            the files (as :func:`expand_inputs` returned them), each taken
            as it is.
        speakers : dict, optional
            Path -> speaker (a key of ``speaker_audio``), for a
            speaker-normalised model enrolled with several speakers.

        Returns
        -------
        records : list of dict
            Per file (or per timeline segment): ``path, start, end, label,
            score, prob_<class>..., flag, error``; ``error`` is empty on
            success. A model with dimensions adds their values (on the
            corpus's scale, a column per name of ``dimensions``) before
            ``flag``; a dimensional model's records have no ``label``,
            ``score`` or ``prob_<class>``. ``flag`` warns about the input,
            whether labelled or not: ``too_short`` (under
            ``min_seconds``), ``silent`` (peak under -60 dBFS; for a
            timeline, that segment), both joined by
            ``;``, ``empty`` (no samples: an error row) or ``no_speech``
            (a long recording in which the VAD found no speech); else
            empty. ``speech`` is ``speech`` or ``non-speech`` in a VAD
            timeline, else empty.
        report : dict
            ``files``, ``failures``, ``flags`` (rows per flag value),
            ``audio_seconds``, ``wall_seconds``, ``real_time_factor``,
            ``longest_seconds`` (the longest recording read, 0 if none)
            and ``windows`` (raw per-window records of long recordings, by
            path).
        """
        began = time.time()
        paths = expand_inputs(inputs) if expand else [str(p) for p in inputs]
        waveforms, records_by_path, windows_by_path = {}, {}, {}
        for path in _progress(paths, progress, "reading"):
            try:
                waveforms[path] = self.normalize(
                    read_checked(path), (speakers or {}).get(path)
                )
            except AudioError as error:
                flag = "empty" if is_empty_audio(path) else ""
                records_by_path[path] = [
                    self._record(path, 0.0, 0.0, None, str(error), flag)
                ]
        labelled, windows_by_path = self.label_waveforms(waveforms, progress)
        records_by_path.update(labelled)
        records = [r for path in paths for r in records_by_path.pop(path, [])]
        audio = sum(len(w) for w in waveforms.values()) / SAMPLE_RATE
        wall = time.time() - began
        report = {
            "files": len(paths),
            "failures": sum(1 for r in records if r["error"]),
            "flags": _count_flags(records),
            "audio_seconds": audio,
            "wall_seconds": wall,
            "real_time_factor": wall / audio if audio else None,
            "longest_seconds": max(
                (len(w) / SAMPLE_RATE for w in waveforms.values()), default=0.0
            ),
            "windows": windows_by_path,
        }
        return records, report

    def label_waveforms(self, waveforms, progress=False):
        """Records of model-ready waveforms, as :meth:`predict` makes them.

        Arguments
        ---------
        waveforms : dict
            Name -> 1-D 16 kHz waveform (normalised already, see
            :meth:`normalize`).
        progress : bool
            Show progress bars.

        Returns
        -------
        records : dict
            Name -> its records (one, or a long recording's timeline).
        windows : dict
            Name -> raw per-window records, for long recordings.
        """
        records_by_path, windows_by_path = {}, {}
        short = [
            p
            for p, wav in waveforms.items()
            if self.long_threshold is None
            or len(wav) / SAMPLE_RATE <= self.long_threshold
        ]
        # Too-short recordings go one at a time: one that the model cannot
        # take (shorter than its receptive field) then fails alone.
        tiny = [p for p in short if len(waveforms[p]) < self._min_samples]
        batched = [p for p in short if p not in tiny]
        if batched:
            probs = self.outputs([waveforms[p] for p in batched], progress)
            for path, p in zip(batched, probs):
                records_by_path[path] = [self._file_record(path, waveforms, p)]
        for path in tiny:
            records_by_path[path] = [self._tiny_record(path, waveforms)]
        long_paths = [p for p in waveforms if p not in records_by_path]
        for path in _progress(long_paths, progress, "long recordings"):
            if self.segment == "vad":
                segments, windows = self.speech_timeline(waveforms[path], path)
            else:
                segments, windows = self.timeline(waveforms[path], path)
            records_by_path[path] = segments
            windows_by_path[path] = windows
        return records_by_path, windows_by_path


def _check_enrolment(model, record, speaker_audio):
    if record and not speaker_audio:
        raise UserError(refusal(model, record))
    if speaker_audio and not record:
        raise UserError(
            f"model {model} was trained on raw audio (no speaker "
            "normalisation): it takes no speaker audio; leave it out"
        )


def _count_flags(records):
    counts = {}
    for record in records:
        for flag in filter(None, record["flag"].split(";")):
            counts[flag] = counts.get(flag, 0) + 1
    return counts


def _progress(items, enabled, description):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="file")


def _progress_bar(total, enabled, description):
    if not enabled or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="file")


def write_records(records, path=None):
    """Writes records as JSON (``.json``) or CSV (``.csv``, or stdout).

    Raises
    ------
    UserError
        For another extension (see :func:`check_output_path`), before
        anything is written.
    """
    if path is not None:
        check_output_path(path)
    if path is not None and path.lower().endswith(".json"):
        with open(path, "w", encoding="utf-8") as out:
            json.dump(records, out, indent=2)
        return
    out = (
        sys.stdout
        if path is None
        else open(path, "w", newline="", encoding="utf-8")
    )
    try:
        if records:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    finally:
        if path is not None:
            out.close()
