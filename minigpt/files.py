"""Files that are never half-written, and checked when read: the helpers checkpoints, exports,
downloads and tokenizers share.

- ``sha256_file(path)``: the hex sha256 of a file, read in 1 MiB blocks (memory stays flat).
- ``is_sha256(text)``: 64 hex digits (either case).
- ``is_disk_full(error)``: whether an exception means "no space left on device", whatever library
  raised it (Python's ``OSError`` 28, safetensors' ``os error 28``, torch's stream errors).
- ``default_file_mode()``: the mode a new file gets under the current umask (0644 under 022), for
  files written by libraries that create theirs with 0600.

    >>> is_sha256("AB" * 32), is_sha256("abc")
    (True, False)
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

__all__ = ["sha256_file", "is_sha256", "is_disk_full", "free_bytes", "default_file_mode"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_FULL_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """The sha256 of the file at ``path`` as 64 lowercase hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            h.update(block)
    return h.hexdigest()


def is_sha256(text) -> bool:
    """True when ``text`` is a sha256 hex digest (64 hex digits, upper or lower case)."""
    return isinstance(text, str) and _HEX64.fullmatch(text.strip()) is not None


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_disk_full(error: BaseException, folder: str | Path | None = None) -> bool:
    """Whether ``error`` (raised while writing into ``folder``) means the disk or quota is full.

    Python raises ``OSError(ENOSPC)``; safetensors and torch wrap the same failure in their own
    exception types with only a text, and torch's zip writer may report a bare stream error. So:
    the errno, then the text, then (for a RuntimeError) whether the folder's disk has under 1 MiB free.
    """
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error).lower()
    if any(t in text for t in _FULL_TEXTS):
        return True
    if folder is not None and isinstance(error, RuntimeError):
        free = free_bytes(folder)
        return free is not None and free < (1 << 20)
    return False


def default_file_mode() -> int:
    """The permission bits ``open(..., "w")`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
