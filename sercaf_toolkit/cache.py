"""Caches keyed by what produced them: sources, settings, toolkit version.

A cached file is only as good as the record of what made it. A cache
keyed by a name (a corpus name, an utterance id) serves one corpus's
results to another corpus that happens to share the names, and an edited
source file keeps its old result. Here every entry is keyed by a
:func:`content_key` of its inputs: each source file's identity
(:func:`file_identity`), every setting that shapes the result, and
:data:`CACHE_VERSION`. The key is part of the entry's file name
(:func:`keyed_path`), so two runs that need different entries never share
one file, even at the same time; a JSON *key file* beside each entry
(``<entry>.key.json``, :func:`write_key_file`) holds the full key and the
facts that tell a damaged entry from a good one (its size, its frame
count), written last and atomically (a temporary name, then
``os.replace``): an entry whose key file is missing, unreadable or does
not match was never finished, and is built again (:func:`entry_problem`).

Authors
 * sercaf-toolkit developers 2026
"""

import hashlib
import json
import os

# Bump when a cached computation or file format changes: every entry made
# by an older toolkit then has another key and is built again.
CACHE_VERSION = 1

KEY_SUFFIX = ".key.json"
# Characters kept from a name (speaker, utterance id) in an entry's file
# name; the key makes the name unique, so the rest only helps people.
_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)


def file_identity(path):
    """What identifies a source file's content without reading it.

    The absolute path, the size and the modification and change times in
    nanoseconds: an edited, replaced or re-extracted file gets another
    identity (the change time also catches copies that keep the
    modification time), at the cost of a stat call.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> _ = open(path, "wb").write(b"abc")
    >>> identity = file_identity(path)
    >>> identity["size"], sorted(identity)
    (3, ['ctime_ns', 'mtime_ns', 'path', 'size'])
    """
    status = os.stat(path)
    return {
        "path": os.path.abspath(path),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "ctime_ns": status.st_ctime_ns,
    }


def content_key(kind, **inputs):
    """The SHA-256 key of a cache entry: its kind, inputs and the version.

    Arguments
    ---------
    kind : str
        What the entry is (``"speaker-statistics"``): entries of different
        kinds never share a key.
    **inputs
        Everything that shapes the entry, JSON-serialisable: source file
        identities, settings. Floats are written exactly (``repr``).

    Example
    -------
    >>> a = content_key("x", n_mels=64, sources=[{"path": "/a"}])
    >>> a == content_key("x", sources=[{"path": "/a"}], n_mels=64)
    True
    >>> a == content_key("x", n_mels=80, sources=[{"path": "/a"}])
    False
    >>> len(a)
    64
    """
    text = json.dumps(
        {"cache_version": CACHE_VERSION, "kind": kind, "inputs": inputs},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safe_name(name):
    """A name usable in a file name (other characters become ``_``).

    Example
    -------
    >>> safe_name("Ses01F"), safe_name("a/b c")
    ('Ses01F', 'a_b_c')
    """
    return "".join(c if c in _SAFE else "_" for c in str(name)) or "_"


def keyed_path(folder, name, key, suffix):
    """``<folder>/<name>-<first 16 hex digits of key><suffix>``.

    Example
    -------
    >>> keyed_path("cache", "spk 1", "0123456789abcdef0123", ".wav")
    'cache/spk_1-0123456789abcdef.wav'
    """
    return os.path.join(folder, f"{safe_name(name)}-{key[:16]}{suffix}")


def key_file(entry):
    """The key file beside a cache entry."""
    return entry + KEY_SUFFIX


def write_atomic(path, write):
    """Calls ``write(temporary_path)``, then moves the result to ``path``.

    The temporary name is unique to the process, so two runs building
    the same entry at once never write into one file, and a reader never
    sees a half-written one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder, f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomic(path, data):
    """Writes ``data`` as JSON to ``path`` atomically (see above)."""

    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.write("\n")

    write_atomic(path, write)


def read_json(path):
    """The JSON object in ``path``, or ``None`` if missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as source:
            data = json.load(source)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_key_file(entry, key, **facts):
    """Records that ``entry`` is complete, made with ``key``.

    Write it after the entry itself: an entry without its key file was
    never finished.

    Arguments
    ---------
    entry : str
        The cache entry.
    key : str
        Its :func:`content_key`.
    **facts
        What tells a damaged entry from a good one (``size``; for audio,
        ``frames``) and, for people, the inputs that made it.
    """
    write_json_atomic(
        key_file(entry),
        {"key": key, "cache_version": CACHE_VERSION, **facts},
    )


def entry_problem(entry, key, check=None):
    """Why ``entry`` cannot be served for ``key``; ``None`` if it can.

    Arguments
    ---------
    entry : str
        The cache entry.
    key : str
        The key the caller needs.
    check : callable, optional
        ``check(entry, record)`` -> reason or ``None``: an entry-specific
        test (a WAV file's header against the recorded frame count).

    Returns
    -------
    str or None
        ``"missing"`` (never built: build it, no notice needed), or why a
        present entry is damaged or stale (rebuild it, and say so).

    Example
    -------
    >>> import tempfile
    >>> entry = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> entry_problem(entry, "k")
    'missing'
    >>> _ = open(entry, "w").write("abc")
    >>> entry_problem(entry, "k")
    'it has no readable key file'
    >>> write_key_file(entry, "k", size=3)
    >>> print(entry_problem(entry, "k"))
    None
    >>> _ = open(entry, "w").write("ab")
    >>> entry_problem(entry, "k")
    'it is 2 bytes, its key file says 3'
    """
    if not os.path.exists(entry):
        return "missing"
    record = read_json(key_file(entry))
    if record is None:
        return "it has no readable key file"
    if record.get("key") != key:
        return "its key file names other inputs"
    size = record.get("size")
    if size is not None:
        held = os.path.getsize(entry)
        if held != size:
            return f"it is {held} bytes, its key file says {size}"
    return check(entry, record) if check is not None else None
