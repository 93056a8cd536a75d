"""Audio I/O (reading, downmix, resampling, damaged-file checks), manifests
and datasets.

A *manifest* is a CSV file with one row per utterance and at least the
columns ``ID, duration, wav, label, speaker`` (corpus preparation modules
write it; nothing downstream knows a corpus's file naming). Splits are
manifests too: ``train.csv``, ``valid.csv`` and ``test.csv``.

Authors
 * sercaf-toolkit developers 2026
"""

import csv
import os
import struct

import soundfile
import speechbrain as sb
import torch
import torchaudio

from sercaf_toolkit.errors import UserError

MANIFEST_FIELDS = ["ID", "duration", "wav", "label", "speaker"]


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def read_audio(path, sample_rate=16000):
    """Reads an audio file as a mono float waveform at ``sample_rate``.

    Any format soundfile reads; several channels are averaged; other sample
    rates are resampled.

    Arguments
    ---------
    path : str
        The audio file.
    sample_rate : int
        The sample rate to return.

    Returns
    -------
    torch.Tensor
        ``[samples]`` float32.

    Raises
    ------
    AudioError
        When the file is unreadable, empty or holds non-finite samples.

    Example
    -------
    >>> import tempfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo_8k.wav")
    >>> soundfile.write(path, numpy.ones((8000, 2)) * 0.5, 8000)
    >>> wav = read_audio(path)
    >>> wav.shape, round(float(wav[8000]), 3)
    (torch.Size([16000]), 0.5)
    >>> read_audio(path + ".missing")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sercaf_toolkit.data.AudioError: ...missing: file not found
    """
    if not os.path.isfile(path):
        raise AudioError(f"{path}: file not found")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types
        raise AudioError(f"{path}: cannot read audio ({error})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (no samples)")
    wav = torch.from_numpy(data).mean(dim=1)
    if not torch.isfinite(wav).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    if rate != sample_rate:
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    return wav


def audio_duration(path):
    """Duration in seconds, read from the file header (no decoding).

    Raises
    ------
    AudioError
        When the header cannot be read or announces no samples.
    """
    if not os.path.isfile(path):
        raise AudioError(f"{path}: file not found")
    try:
        info = soundfile.info(path)
    except Exception as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from error
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (no samples)")
    return info.frames / info.samplerate


def audio_extensions():
    """File extensions of the formats soundfile can read (lower case)."""
    return {f".{name.lower()}" for name in soundfile.available_formats()}


# WAVE format tags whose frames all take ``block_align`` bytes (PCM, float,
# A-law, mu-law, extensible); other (compressed) tags are compared in bytes.
_FIXED_FRAME_TAGS = {1, 3, 6, 7, 0xFFFE}
# Data sizes that streaming writers leave when they cannot seek back.
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}
# Bytes per sample of the AU encodings (mu-law, 8/16/24/32-bit, float,
# double, A-law).
_AU_WIDTHS = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def truncation(path):
    """What a cut file's header promises against what it holds, or None.

    libsndfile reads a WAV, AIFF or AU file cut short as far as its data
    go: a file that lost most of its bytes would be labelled like a short
    recording. This compares the audio data the header announces with the
    bytes after the data offset. Other formats, and headers too short to
    tell, give None: their decoders fail on missing data themselves.

    Arguments
    ---------
    path : str
        An audio file.

    Returns
    -------
    str or None
        ``"truncated: header says N frames, file holds M"`` (bytes instead
        of frames for compressed WAV data), or None when the file holds
        what its header says or the header does not say.

    Example
    -------
    >>> import tempfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.zeros(16000), 16000, subtype="PCM_16")
    >>> truncation(path) is None
    True
    >>> with open(path, "r+b") as wav:
    ...     _ = wav.truncate(44 + 3000)  # header and 1500 16-bit frames
    >>> truncation(path)
    'truncated: header says 16000 frames, file holds 1500'
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as source:
            head = source.read(24)
            if len(head) < 24:
                return None
            for reader in (_wav_data, _aiff_data, _au_data):
                found = reader(source, head, size)
                if found is not None:
                    declared, held, unit = found
                    if declared <= held:
                        return None
                    return (
                        f"truncated: header says {declared} {unit}, "
                        f"file holds {held}"
                    )
    except (OSError, struct.error):
        return None  # the decoder reports unreadable files
    return None


def _in_units(declared_bytes, held_bytes, frame_bytes):
    held_bytes = max(held_bytes, 0)
    if not frame_bytes:
        return declared_bytes, held_bytes, "bytes of audio data"
    return declared_bytes // frame_bytes, held_bytes // frame_bytes, "frames"


def _chunks(source, order, size, start=12):
    """(id, length, position) of the RIFF/IFF chunks from ``start``."""
    position = start
    while position + 8 <= size:
        source.seek(position)
        chunk, length = struct.unpack(order + "4sI", source.read(8))
        yield chunk, length, position
        position += 8 + length + (length & 1)  # chunks are word aligned


def _wav_data(source, head, size):
    riff = head[:4]
    if riff not in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return None
    if head[8:12] != b"WAVE":
        return None
    order = ">" if riff == b"RIFX" else "<"
    tag = block = long_size = None
    for chunk, length, position in _chunks(source, order, size):
        if chunk == b"ds64":  # RF64: the real sizes, 64-bit
            long_size = struct.unpack("<QQ", source.read(16))[1]
        elif chunk == b"fmt ":
            tag, _, _, _, block = struct.unpack(
                order + "HHIIH", source.read(14)
            )
        elif chunk == b"data":
            if length == 0xFFFFFFFF and long_size is not None:
                length = long_size
            elif length in _UNKNOWN_SIZES:
                return None
            fixed = block if tag in _FIXED_FRAME_TAGS else None
            return _in_units(length, size - position - 8, fixed)
    return None


def _aiff_data(source, head, size):
    if head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    frames = frame_bytes = data_start = None
    for chunk, _, position in _chunks(source, ">", size):
        if chunk == b"COMM":
            body = source.read(22)
            channels, frames, bits = struct.unpack(">hIh", body[:8])
            kind = body[18:22] if head[8:12] == b"AIFC" else b"NONE"
            width = {b"fl32": 4, b"FL32": 4, b"fl64": 8, b"FL64": 8}.get(
                kind,
                (bits + 7) // 8 if kind in (b"NONE", b"sowt", b"twos") else 0,
            )
            frame_bytes = channels * width
        elif chunk == b"SSND":
            offset = struct.unpack(">I", source.read(4))[0]
            data_start = position + 16 + offset
    if frames is None or not frame_bytes or data_start is None:
        return None
    return frames, max(size - data_start, 0) // frame_bytes, "frames"


def _au_data(source, head, size):
    if head[:4] not in (b".snd", b"dns."):
        return None
    order = ">" if head[:4] == b".snd" else "<"
    offset, length, encoding, _, channels = struct.unpack(
        order + "5I", head[4:24]
    )
    if length == 0xFFFFFFFF:
        return None
    width = _AU_WIDTHS.get(encoding, 0)
    return _in_units(length, size - offset, width * channels)


def read_checked(path, sample_rate=16000):
    """:func:`read_audio` with two more checks.

    A missing file's message says where it was looked for, and a file
    whose header promises more than it holds (see :func:`truncation`) is
    refused rather than read as a short recording.

    Raises
    ------
    AudioError
        When the file is missing, truncated, unreadable, empty or holds
        non-finite samples; the message names the file.
    """
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise AudioError(f"{path}: a folder, not an audio file")
        hint = (
            ""
            if os.path.isabs(path)
            else " (relative paths, in list files too, start from the "
            "current folder)"
        )
        raise AudioError(
            f"{path}: file not found: looked for {os.path.abspath(path)}" + hint
        )
    problem = truncation(path)
    if problem:
        raise AudioError(f"{path}: {problem}")
    return read_audio(path, sample_rate)


def is_empty_audio(path):
    """Whether an audio file's header announces no samples at all."""
    try:
        return soundfile.info(path).frames == 0
    except Exception:  # soundfile raises several types; not audio: not empty
        return False


def manifest_fields(rows):
    """The standard manifest columns, then the other fields of ``rows``."""
    extra = sorted({k for row in rows for k in row} - set(MANIFEST_FIELDS))
    return MANIFEST_FIELDS + extra


def write_manifest(rows, path, fields=None):
    """Writes manifest rows (dicts) to a CSV file, atomically.

    Arguments
    ---------
    rows : list of dict
        One dict per utterance with at least :data:`MANIFEST_FIELDS`.
    path : str
        The CSV file to write.
    fields : list of str, optional
        Columns, in order (default: the standard ones, then the rest).
    """
    if fields is None:
        fields = manifest_fields(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def read_manifest(path):
    """Reads a manifest CSV file into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as source:
        return list(csv.DictReader(source))


def build_datasets(hparams, label_encoder):
    """Builds SpeechBrain datasets for the train/valid/test manifests.

    Items provide ``id``, ``wav`` (the file), ``sig`` (read with
    :func:`read_audio` at ``hparams["sample_rate"]``) and
    ``label_encoded``. The label encoder is
    fitted on ``hparams["labels"]`` when given (fixing the class order for
    every fold), otherwise on the training labels, and saved next to the
    experiment so that a resumed run reuses it.

    Arguments
    ---------
    hparams : dict
        Needs ``train_csv``, ``valid_csv``, ``test_csv``, ``output_folder``;
        optional ``labels``, ``sample_rate``.
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Filled (or loaded) here.

    Returns
    -------
    dict
        ``train``, ``valid`` and ``test`` ``DynamicItemDataset`` objects
        (``None`` for a split without rows).
    """
    sample_rate = hparams.get("sample_rate", 16000)
    # A split without rows (valid.csv under `validation: none`) is None:
    # SpeechBrain's dataset cannot be empty.
    datasets = {
        split: sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=hparams[f"{split}_csv"]
        )
        if read_manifest(hparams[f"{split}_csv"])
        else None
        for split in ("train", "valid", "test")
    }
    known = hparams.get("labels")
    encoder_file = os.path.join(hparams["output_folder"], "label_encoder.txt")
    if known:
        # Not load_or_create: it fills the encoder, then loads the file
        # into the filled encoder (a warning at every run).
        if os.path.isfile(encoder_file):
            label_encoder.load(encoder_file)  # a resumed run keeps its order
        else:
            label_encoder.update_from_iterable(known)
            if sb.utils.distributed.if_main_process():
                label_encoder.save(encoder_file)
        label_encoder.expect_len(len(known))
    else:
        label_encoder.load_or_create(
            encoder_file,
            from_didatasets=[datasets["train"]],
            output_key="label",
        )
        label_encoder.ignore_len()

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, sample_rate)

    @sb.utils.data_pipeline.takes("label")
    @sb.utils.data_pipeline.provides("label_encoded")
    def label_pipeline(label):
        return label_encoder.encode_label_torch(label)

    task = hparams.get("task", "categorical")
    # A dimensional task uses every utterance with values (IEMOCAP's
    # frustrated ones too): its labels are not encoded, nor checked.
    categorical = task != "dimensional"
    dimensions = list(hparams["dimensions"]) if task != "categorical" else []

    @sb.utils.data_pipeline.takes(*dimensions)
    @sb.utils.data_pipeline.provides("dims")
    def dimension_pipeline(*values):
        return torch.tensor([float(v) for v in values])

    for split, dataset in datasets.items():
        for utt_id, item in (dataset.data if dataset else {}).items():
            if categorical and item["label"] not in label_encoder.lab2ind:
                raise ValueError(
                    f"{hparams[f'{split}_csv']}: utterance {utt_id} has "
                    f"unknown label {item['label']!r} "
                    f"(known: {sorted(label_encoder.lab2ind)})"
                )
            _check_dimensions(hparams[f"{split}_csv"], utt_id, item, dimensions)
    keys = ["id", "wav", "sig"] + (["label_encoded"] if categorical else [])
    for dataset in filter(None, datasets.values()):
        dataset.add_dynamic_item(audio_pipeline)
        if categorical:
            dataset.add_dynamic_item(label_pipeline)
        if dimensions:
            dataset.add_dynamic_item(dimension_pipeline)
        # The file path keys the SSL feature cache (sercaf_toolkit.ssl_cache).
        dataset.set_output_keys(keys + (["dims"] if dimensions else []))
    speakers = hparams.get("train_speakers")
    if speakers and datasets["train"] is not None:
        # The speaker adversary's targets: training speakers only (the
        # valid and test sets have none, and their speakers are unknown
        # to it).
        index = {speaker: i for i, speaker in enumerate(speakers)}

        @sb.utils.data_pipeline.takes("speaker")
        @sb.utils.data_pipeline.provides("speaker_encoded")
        def speaker_pipeline(speaker):
            return torch.tensor([index[speaker]])

        datasets["train"].add_dynamic_item(speaker_pipeline)
        datasets["train"].set_output_keys(
            keys + (["dims"] if dimensions else []) + ["speaker_encoded"]
        )
    return datasets


def manifest_speakers(manifest_path):
    """The distinct speakers of a manifest, sorted.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest(
    ...     [
    ...         {"ID": "a", "duration": 1.0, "wav": "a.wav", "label": "sad",
    ...          "speaker": "s2"},
    ...         {"ID": "b", "duration": 1.0, "wav": "b.wav", "label": "sad",
    ...          "speaker": "s1"},
    ...     ],
    ...     path,
    ... )
    >>> manifest_speakers(path)
    ['s1', 's2']
    """
    return sorted({row["speaker"] for row in read_manifest(manifest_path)})


def _check_dimensions(manifest, utt_id, item, dimensions):
    """Fails in one line on a missing or non-numeric dimension value."""
    for name in dimensions:
        value = item.get(name)
        try:
            float(value)
        except (TypeError, ValueError):
            raise UserError(
                f"{manifest}: utterance {utt_id} has no {name} value "
                f"({value!r}); a dimensional task needs a number for "
                "every utterance"
            ) from None


def class_counts(manifest_path, label_encoder):
    """Number of utterances per class (encoder order) in a manifest."""
    counts = [0] * len(label_encoder)
    for row in read_manifest(manifest_path):
        counts[label_encoder.lab2ind[row["label"]]] += 1
    return counts


def loader_kwargs(hparams, stage_key, dataset, shuffle):
    """Data loader options of a stage, batching by duration if asked.

    With ``dynamic_batching: True`` in the YAML, batches are formed by
    SpeechBrain's ``DynamicBatchSampler``: each holds at most
    ``max_batch_length`` seconds of audio, drawn from ``num_buckets``
    buckets of similar durations, so that little of a batch is padding and
    no batch is too large. Otherwise ``batch_size`` utterances per batch.
    The loader gets its own random generator, so that creating one never
    draws from torch's global generator (which a resumed run must find
    exactly as it was saved).

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters.
    stage_key : str
        ``"train_dataloader_opts"`` or ``"valid_dataloader_opts"``.
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        The stage's data (with a ``duration`` field).
    shuffle : bool
        Whether batches come in random order (training).

    Returns
    -------
    dict
        Keyword arguments for ``Brain.fit`` / ``Brain.evaluate``.
    """
    options = dict(hparams.get(stage_key) or {})
    seed = int(hparams.get("seed", 0))
    options.setdefault("generator", torch.Generator().manual_seed(seed))
    if hparams.get("dynamic_batching"):
        options.pop("batch_size", None)
        options.pop("shuffle", None)
        options["batch_sampler"] = sb.dataio.sampler.DynamicBatchSampler(
            dataset,
            max_batch_length=float(hparams["max_batch_length"]),
            num_buckets=int(hparams.get("num_buckets", 10)),
            length_func=lambda item: float(item["duration"]),
            shuffle=shuffle,
            batch_ordering="random" if shuffle else "descending",
            seed=seed,
        )
    return options


def label_encoder_of_size(n_labels):
    """An empty CategoricalEncoder that expects ``n_labels`` labels.

    The exported ``hyperparams.yaml`` builds its label encoder with this,
    so that the labels the Pretrainer loads into it are checked and
    SpeechBrain does not warn that ``expect_len`` was never called.

    Example
    -------
    >>> label_encoder_of_size(4).expected_len
    4
    """
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.expect_len(n_labels)
    return encoder
