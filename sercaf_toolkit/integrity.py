"""Sizes and SHA-256 hashes of a folder's files, written and checked.

Checkpoints and exported model folders carry a ``checksums.json`` that
lists every file they hold with its size and hash. It is written last,
once the other files are complete (and flushed to disk), so a folder whose
files all match it is the folder that was written; a file truncated by a
full disk, a bad block or an interrupted copy does not match, and is found
before anything is loaded from it.

Authors
 * sercaf-toolkit developers 2026
"""

import errno
import hashlib
import json
import os
import pathlib

CHECKSUMS = "checksums.json"
_CHUNK = 1 << 20
# fsync on a file or filesystem that has nothing to flush
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP}


def file_digest(path, sync=False):
    """The SHA-256 hex digest of a file (flushed to disk first if ``sync``).

    Example
    -------
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> file_digest(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        if sync:
            _fsync(source.fileno())
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder, names=None):
    """Writes ``checksums.json`` for ``folder``'s files, atomically.

    Each file is flushed to disk before it is hashed, so that a full disk
    that only reports itself when data reaches it (network filesystems)
    fails here, not later.

    Arguments
    ---------
    folder : str or pathlib.Path
        The folder.
    names : list of str, optional
        The files to list (paths relative to ``folder``); default: every
        file in it and below, but ``checksums.json`` itself.

    Returns
    -------
    pathlib.Path
        The written ``checksums.json``.

    Example
    -------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.ckpt").write_bytes(b"weights")
    >>> write_checksums(folder).name
    'checksums.json'
    >>> print(damage(folder))
    None
    >>> _ = (folder / "model.ckpt").write_bytes(b"weig")
    >>> damage(folder)
    'model.ckpt is 4 bytes, expected 7'
    """
    folder = pathlib.Path(folder)
    if names is None:
        names = sorted(
            path.relative_to(folder).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and path.name != CHECKSUMS
        )
    files = {
        name: {
            "size": (folder / name).stat().st_size,
            "sha256": file_digest(folder / name, sync=True),
        }
        for name in names
    }
    target = folder / CHECKSUMS
    temporary = folder / (CHECKSUMS + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump({"algorithm": "sha256", "files": files}, out, indent=1)
        out.write("\n")
        out.flush()
        _fsync(out.fileno())
    os.replace(temporary, target)
    return target


def damage(folder, required=True):
    """Why ``folder`` does not match its ``checksums.json``; None if it does.

    Sizes are compared first (cheap, and what truncation changes), then
    hashes. Files that the checksums do not list are ignored.

    Arguments
    ---------
    folder : str or pathlib.Path
        The folder.
    required : bool
        Whether a folder without ``checksums.json`` is damaged (else it is
        accepted unchecked: a folder written before checksums existed).

    Returns
    -------
    str or None
        A short reason (``"model.ckpt is 1000 bytes, expected 52340"``).
    """
    folder = pathlib.Path(folder)
    path = folder / CHECKSUMS
    if not path.exists():
        return f"no {CHECKSUMS}" if required else None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        expected = {
            str(name): (int(entry["size"]), str(entry["sha256"]))
            for name, entry in files.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{CHECKSUMS} is unreadable"
    for name, (size, _) in expected.items():
        try:
            held = (folder / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if held != size:
            return f"{name} is {held} bytes, expected {size}"
    for name, (_, digest) in expected.items():
        try:
            if file_digest(folder / name) != digest:
                return f"{name} does not match its sha256 in {CHECKSUMS}"
        except OSError as error:
            return f"{name} is unreadable ({error.strerror or error})"
    return None


def _fsync(fileno):
    try:
        os.fsync(fileno)
    except OSError as error:
        if error.errno not in _FSYNC_UNSUPPORTED:
            raise
