"""Data files: sha256 checks, verified downloads written atomically, strict UTF-8 text and JSON readers."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from pathlib import Path


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str | None) -> Path:
    if expected is not None:
        got = sha256_of(path)
        if got != expected:
            raise ValueError(f"{path.name}: sha256 mismatch, expected {expected}, got {got} ({path})")
    return path


def download(url_list, path: Path, expected: str | None, timeout: float = 60.0) -> Path:
    """Download to ``path`` from the first of ``url_list`` that works, checked against ``expected``
    (sha256) before it is moved into place atomically; every failure is reported if none works."""
    name = path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in url_list:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
            verify(Path(tmp), expected)
            os.replace(tmp, path)
            return path
        except Exception as e:  # try the next mirror; report every failure if none works
            errors.append(f"{url}: {e}")
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"could not fetch {name}:\n  " + "\n  ".join(errors))


def read_text(path: str | os.PathLike) -> str:
    """A file's text; a file that is not UTF-8 (gzip, latin-1, binary) raises a ValueError naming it."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        hint = "it is gzip-compressed: decompress it first" if data[:2] == b"\x1f\x8b" else "re-encode it as UTF-8"
        raise ValueError(f"{path}: not UTF-8 text ({hint}; byte {e.start}: {e.reason})") from None


def read_json(path: str | os.PathLike, what: str):
    """JSON from ``path``; a file that is not UTF-8 text or not valid JSON raises a ValueError naming
    it and ``what`` it should hold."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected {what}") from None
