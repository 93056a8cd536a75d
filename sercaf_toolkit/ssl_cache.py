"""The SSL feature cache: a frozen SSL model's output, computed once.

A frozen (or partly fine-tuned) SSL stream spends nearly all of a
training step in a forward pass whose result never changes: the same
utterance gives the same hidden states at every epoch, in every fold,
seed and fusion block of a corpus. :class:`SSLFeatureCache` keeps that
result on disk, one file per utterance, and
:class:`~sercaf_toolkit.lobes.ssl.SSLStream` reads it instead of running
the frozen part (see its ``feature_cache``).

Keys follow :mod:`sercaf_toolkit.cache`: an entry's
:func:`~sercaf_toolkit.cache.content_key` holds the SHA-256 of the audio
file's bytes, the sample rate it is read at, the storage precision and
the stream's :meth:`~sercaf_toolkit.lobes.ssl.SSLStream.cache_identity`
(model config, a hash of the frozen weights, the hidden states kept), and
the key is part of the file name: a changed file, model or layer choice
looks for another file and never meets an old one. Each SSL model gets a
folder of its own under the cache folder.

An entry is one file: a JSON header line (key, shape, dtype, CRC-32 of
the data) and the raw tensor. It is written under a unique temporary
name and renamed into place, so DDP ranks or runs filling one folder at
once never see half a file, and two writers of one entry leave one
complete file. A header that does not match (a cut or damaged file) is
named in the log and the entry computed again. A full disk stops the
cache with one line; training goes on without it.

Authors
 * sercaf-toolkit developers 2026
"""

import errno
import hashlib
import json
import logging
import os
import tempfile
import zlib

import numpy
import torch

from sercaf_toolkit.cache import content_key, keyed_path, safe_name

logger = logging.getLogger(__name__)

# Storage precisions: fp16 halves the disk and the reads; features then
# match the uncached path to about 1e-3 (fp32: bit for bit up to the
# batch's rounding).
PRECISIONS = {"fp16": numpy.float16, "fp32": numpy.float32}
SUFFIX = ".ssl"
# Errors that mean "no room": the cache stops, training does not.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class SSLFeatureCache:
    """Per-utterance frozen SSL features on disk, keyed by content.

    Arguments
    ---------
    folder : str
        The cache folder (one per corpus: ``results/<corpus>/ssl_cache``
        in the recipes); each SSL model gets a subfolder.
    sample_rate : int
        The rate the audio is read at (part of the key).
    precision : str
        ``"fp16"`` (default) or ``"fp32"``: how entries are stored.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> wav = os.path.join(folder, "a.wav")
    >>> _ = open(wav, "wb").write(b"not really audio")
    >>> cache = SSLFeatureCache(os.path.join(folder, "cache"))
    >>> model = {"model_type": "wav2vec2", "weights": "abc"}
    >>> cache.load(wav, model) is None
    True
    >>> stored = cache.store(wav, model, torch.ones(1, 3, 2) / 3)
    >>> torch.equal(cache.load(wav, model), stored), stored.dtype
    (True, torch.float32)
    >>> cache.load(wav, {**model, "weights": "other"}) is None
    True
    >>> cache.counts
    {'read': 1, 'written': 1, 'recomputed': 0}
    """

    def __init__(self, folder, sample_rate=16000, precision="fp16"):
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(PRECISIONS)}, "
                f"got {precision!r}"
            )
        self.folder = folder
        self.sample_rate = int(sample_rate)
        self.precision = precision
        #: False once the disk is full: the stream computes everything.
        self.enabled = True
        self.counts = {"read": 0, "written": 0, "recomputed": 0}
        # file identity -> SHA-256 of its bytes: each file is hashed once
        # per process, and again only when its size or times change.
        self._audio_hashes = {}

    def audio_hash(self, path):
        """The SHA-256 of the audio file's bytes (memoised per identity)."""
        status = os.stat(path)
        identity = (
            os.path.abspath(path),
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        digest = self._audio_hashes.get(identity)
        if digest is None:
            hasher = hashlib.sha256()
            with open(path, "rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    hasher.update(block)
            digest = self._audio_hashes[identity] = hasher.hexdigest()
        return digest

    def entry(self, path, model):
        """``(file, key)`` of the entry of audio ``path`` under ``model``.

        Arguments
        ---------
        path : str
            The audio file.
        model : dict
            The stream's ``cache_identity()``.
        """
        model_key = content_key("ssl-model", **model)
        key = content_key(
            "ssl-features",
            model=model_key,
            audio_sha256=self.audio_hash(path),
            sample_rate=self.sample_rate,
            precision=self.precision,
        )
        family = safe_name(model.get("model_type", "ssl"))
        folder = os.path.join(self.folder, f"{family}-{model_key[:12]}")
        name = os.path.splitext(os.path.basename(path))[0]
        return keyed_path(folder, name, key, SUFFIX), key

    def load(self, path, model):
        """The stored ``[states, frames, width]`` float32 features, or None.

        None when the entry is missing (compute it) or damaged (named in
        the log; compute it, and :meth:`store` replaces it).
        """
        if not self.enabled:
            return None
        entry, key = self.entry(path, model)
        try:
            with open(entry, "rb") as source:
                header = json.loads(source.readline())
                data = source.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            return self._damaged(entry, f"unreadable header ({error})")
        problem = _problem(header, key, data)
        if problem is not None:
            return self._damaged(entry, problem)
        array = numpy.frombuffer(data, dtype=header["dtype"])
        self.counts["read"] += 1
        return torch.from_numpy(array.astype(numpy.float32)).reshape(
            header["shape"]
        )

    def _damaged(self, entry, reason):
        logger.warning(
            "SSL feature cache: %s: %s; computing it again", entry, reason
        )
        self.counts["recomputed"] += 1
        return None

    def store(self, path, model, features):
        """Stores ``features`` for audio ``path``; returns them as stored.

        The returned tensor (float32, on the CPU) went through the storage
        precision, so a batch gives the same features whether its entries
        were read or just made. On a full disk the cache stops (one line)
        and the features are still returned.
        """
        array = features.detach().to("cpu", torch.float32).numpy()
        array = numpy.ascontiguousarray(
            array.astype(PRECISIONS[self.precision])
        )
        stored = torch.from_numpy(array.astype(numpy.float32))
        if not self.enabled:
            return stored
        entry, key = self.entry(path, model)
        data = array.tobytes()
        header = {
            "key": key,
            "shape": list(array.shape),
            "dtype": array.dtype.name,
            "crc32": zlib.crc32(data),
            "audio": os.path.abspath(path),
        }
        try:
            _write_atomic(entry, json.dumps(header).encode() + b"\n" + data)
        except OSError as error:
            if error.errno not in _NO_SPACE:
                raise
            self.enabled = False
            print(
                f"SSL feature cache: no space left in {self.folder}; "
                "training goes on without the cache",
                flush=True,
            )
            return stored
        self.counts["written"] += 1
        return stored


def _problem(header, key, data):
    """Why a read entry cannot be served, or None."""
    if not isinstance(header, dict) or header.get("key") != key:
        return "its header names other inputs"
    try:
        expected = (
            int(numpy.prod(header["shape"]))
            * numpy.dtype(header["dtype"]).itemsize
        )
    except (KeyError, TypeError, ValueError):
        return "its header has no valid shape and dtype"
    if len(data) != expected:
        return f"it holds {len(data)} bytes of data, its header says {expected}"
    if zlib.crc32(data) != header.get("crc32"):
        return "its checksum does not match"
    return None


def _write_atomic(path, content):
    """Writes ``content`` under a unique temporary name, then renames it.

    The temporary name comes from ``tempfile`` (unique across processes
    and hosts sharing the folder); ``os.replace`` is atomic, so a reader
    sees the old file, no file or the whole new one.
    """
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def attach_ssl_caches(model, folder, sample_rate=16000, precision="fp16"):
    """Gives every SSL stream of ``model`` that can use one a cache.

    Streams with a frozen part (frozen, or a partial fine-tune whose top
    layers can be replayed) get one :class:`SSLFeatureCache` on
    ``folder``; the others are left alone.

    Returns
    -------
    list
        The streams that got the cache.

    Example
    -------
    >>> attach_ssl_caches(torch.nn.Linear(2, 2), "cache")
    []
    """
    cache = SSLFeatureCache(folder, sample_rate, precision)
    streams = [
        module
        for module in model.modules()
        if getattr(module, "cacheable", False)
        and hasattr(module, "feature_cache")
    ]
    for stream in streams:
        stream.feature_cache = cache
    return streams
