"""Labelling audio with a trained model: files, folders, long recordings.

:class:`EmotionPredictor` wraps any ``EncoderClassifier``-compatible model
folder (such as a recipe's ``inference/``) and returns one record per file,
or, for recordings longer than ``long_threshold`` seconds, an emotion
timeline: overlapping windows are classified, the recording is tiled into
one segment per window (boundaries halfway between window centres), and
adjacent segments with the same label are merged. ``sercaf predict`` is
the same thing on the command line.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import json
import os
import sys
import tempfile
import time

import soundfile
import torch

from sercaf_toolkit.data import AudioError, read_audio

SAMPLE_RATE = 16000
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".scp")


def audio_extensions():
    """File extensions of the formats soundfile can read (lower case)."""
    return {f".{name.lower()}" for name in soundfile.available_formats()}


def expand_inputs(inputs):
    """Files, folders (searched recursively) and path lists -> file paths.

    A ``.txt``/``.lst``/``.list``/``.scp`` file lists one path per line
    (relative paths are relative to the list). Folders contribute files
    whose extension soundfile reads; files named directly are always kept
    (a bad one then gets an error row rather than vanishing).

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a" / "b").mkdir(parents=True)
    >>> for name in ("a/x.wav", "a/b/y.flac", "a/notes.md"):
    ...     _ = (root / name).write_bytes(b"")
    >>> _ = (root / "list.txt").write_text("a/x.wav\\n\\n")
    >>> found = expand_inputs([root / "a", root / "list.txt"])
    >>> [os.path.relpath(path, root) for path in found]
    ['a/b/y.flac', 'a/x.wav', 'a/x.wav']
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
            base = os.path.dirname(os.path.abspath(item))
            with open(item, encoding="utf-8") as listing:
                for line in listing:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        paths.append(os.path.join(base, line))
        else:
            paths.append(item)
    return paths


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


class EmotionPredictor:
    """Labels audio files with an ``EncoderClassifier``-compatible model.

    Arguments
    ---------
    model_dir : str
        A model folder (``hyperparams.yaml`` and checkpoints), loaded
        offline with SpeechBrain's ``EncoderClassifier.from_hparams``. Load
        only folders you trust: a ``hyperparams.yaml`` can run code.
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``, ...).
    batch_size : int
        Files (or windows) per forward pass; files are batched by length.
    window, hop : float
        Window length and shift, in seconds, for long recordings.
    long_threshold : float
        Recordings longer than this (seconds) get a timeline; ``None``: never.
    savedir : str, optional
        Where SpeechBrain links the model files (default: a temporary
        folder removed with the predictor).
    """

    def __init__(
        self,
        model_dir,
        device="cpu",
        batch_size=8,
        window=4.0,
        hop=2.0,
        long_threshold=30.0,
        savedir=None,
    ):
        from speechbrain.inference.classifiers import EncoderClassifier

        if not os.path.isfile(os.path.join(model_dir, "hyperparams.yaml")):
            raise FileNotFoundError(
                f"{model_dir} is not a model folder (no hyperparams.yaml)"
            )
        if hop <= 0 or window <= 0 or hop > window:
            raise ValueError("need 0 < hop <= window")
        self._tmp = None
        if savedir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sercaf_model_")
            savedir = self._tmp.name
        self.classifier = EncoderClassifier.from_hparams(
            source=os.path.abspath(model_dir),
            savedir=savedir,
            run_opts={"device": device},
        )
        encoder = self.classifier.hparams.label_encoder
        self.labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        self.device = device
        self.batch_size = batch_size
        self.window = window
        self.hop = hop
        self.long_threshold = long_threshold

    # Core -----------------------------------------------------------------

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
            ``[len(waveforms), n_classes]`` probabilities, input order.
        """
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
        result = torch.zeros(len(waveforms), len(self.labels))
        bar = _progress_bar(len(waveforms), progress, "classifying")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            longest = max(len(waveforms[i]) for i in chunk)
            batch = torch.zeros(len(chunk), longest)
            for row, index in enumerate(chunk):
                batch[row, : len(waveforms[index])] = waveforms[index]
            lengths = torch.tensor([len(waveforms[i]) / longest for i in chunk])
            scores, _, _, _ = self.classifier.classify_batch(batch, lengths)
            # Softmax turns logits into probabilities and leaves normalised
            # log-probabilities (what our head gives) as they are.
            result[chunk] = torch.softmax(scores.float().cpu(), dim=-1)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return result

    def _record(self, path, start, end, probs, error=""):
        probs = [float(p) for p in probs] if probs is not None else None
        best = max(range(len(probs)), key=probs.__getitem__) if probs else None
        record = {
            "path": path,
            "start": round(start, 3),
            "end": round(end, 3),
            "label": self.labels[best] if probs else "",
            "score": probs[best] if probs else None,
        }
        for index, label in enumerate(self.labels):
            record[f"prob_{label}"] = probs[index] if probs else None
        record["error"] = error
        return record

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
        from sercaf_toolkit.recipe import describe_model

        model = self.classifier.mods.embedding_model
        fusions = [
            m for m in model.modules() if isinstance(m, CrossAttentionFusion)
        ]
        if not fusions:
            raise ValueError(
                "the model has no CrossAttentionFusion block: "
                "no attention to show"
            )
        fusion = fusions[0]
        wav = read_audio(path, SAMPLE_RATE).to(self.classifier.device)
        fusion.keep_attention = True
        try:
            log_probs = model.log_probabilities(wav.unsqueeze(0))
            maps = [m[0].float().cpu().numpy() for m in fusion.attention_maps]
        finally:
            fusion.keep_attention = False
            fusion.attention_maps = None
        duration = len(wav) / SAMPLE_RATE
        return {
            "maps": maps,
            "streams": describe_model(model)["streams"],
            "frame_seconds": [duration / m.shape[0] for m in maps],
            "label": self.labels[int(log_probs.argmax())],
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
        probs = self.probabilities(pieces)
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
            label = int(p.argmax())
            if merge and segments and segments[-1][2] == label:
                previous = segments[-1]
                weight = (previous[1] - previous[0], end - start)
                mixed = (previous[3] * weight[0] + p * weight[1]) / sum(weight)
                segments[-1] = (previous[0], end, label, mixed)
            else:
                segments.append((start, end, label, p))
        records = [self._record(path, a, b, p) for a, b, _, p in segments]
        return records, windows

    def predict(self, inputs, progress=False):
        """Labels every input; a bad file gets an error record.

        Arguments
        ---------
        inputs : list of str
            Files, folders and path lists (see :func:`expand_inputs`).
        progress : bool
            Show a progress bar.

        Returns
        -------
        records : list of dict
            Per file (or per timeline segment): ``path, start, end, label,
            score, prob_<class>..., error``; ``error`` is empty on success.
        report : dict
            ``files``, ``failures``, ``audio_seconds``, ``wall_seconds``,
            ``real_time_factor`` and ``windows`` (raw per-window records
            of long recordings, by path).
        """
        began = time.time()
        paths = expand_inputs(inputs)
        waveforms, records_by_path, windows_by_path = {}, {}, {}
        for path in _progress(paths, progress, "reading"):
            try:
                waveforms[path] = read_audio(path, SAMPLE_RATE)
            except AudioError as error:
                records_by_path[path] = [
                    self._record(path, 0.0, 0.0, None, str(error))
                ]
        short = [
            p
            for p, wav in waveforms.items()
            if self.long_threshold is None
            or len(wav) / SAMPLE_RATE <= self.long_threshold
        ]
        if short:
            probs = self.probabilities([waveforms[p] for p in short], progress)
            for path, p in zip(short, probs):
                duration = len(waveforms[path]) / SAMPLE_RATE
                records_by_path[path] = [self._record(path, 0.0, duration, p)]
        long_paths = [p for p in waveforms if p not in records_by_path]
        for path in _progress(long_paths, progress, "long recordings"):
            segments, windows = self.timeline(waveforms[path], path)
            records_by_path[path] = segments
            windows_by_path[path] = windows
        records = [r for path in paths for r in records_by_path.pop(path, [])]
        audio = sum(len(w) for w in waveforms.values()) / SAMPLE_RATE
        wall = time.time() - began
        report = {
            "files": len(paths),
            "failures": sum(1 for r in records if r["error"]),
            "audio_seconds": audio,
            "wall_seconds": wall,
            "real_time_factor": wall / audio if audio else None,
            "windows": windows_by_path,
        }
        return records, report


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
    """Writes records as JSON (``.json``) or CSV (other path, or stdout)."""
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
