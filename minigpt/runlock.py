"""One run per folder: an OS lock on ``<run folder>/run.lock`` while a run writes into it.

Two trainings writing to the same ``--out`` folder would delete each other's half-written
checkpoints and interleave their metrics. The first one takes the lock; a second one gets a
`RunLockedError` naming the process that holds it.

The lock is the operating system's (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), not
the mere existence of the file: when a process dies, even by ``kill -9``, the OS drops its lock, so
the next run finds a *stale* lock file (the dead process's PID inside), takes it over and says so.

    >>> import tempfile
    >>> with RunLock(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.errors import RunLockedError
from minigpt.i18n import tr

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None
    import msvcrt

LOCK_NAME = "run.lock"


def _try_lock(fd: int) -> bool:
    """Take the OS lock on `fd` without waiting; False if another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """The lock of one run folder. `acquire()` (or ``with``) takes it; `release()` gives it back.

    `took_over` is the PID of a dead process whose stale lock file was found and taken over (or None).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.took_over: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                pid = _read_pid(fd)
                os.close(fd)
                holder = tr("process {pid}", "プロセス {pid}", pid=pid) if pid else tr("another process", "別のプロセス")
                raise RunLockedError(tr(
                    "{folder} is in use: {holder} is training into it (lock file {lock}). Wait for it to finish, "
                    "stop it, or pass another --out folder",
                    "{folder} は使用中です: {holder} がこのフォルダに学習結果を書いています (ロックファイル {lock})。"
                    "終わるのを待つか、そのプロセスを止めるか、別の --out フォルダを指定してください",
                    folder=self.folder, holder=holder, lock=self.path))
            # The file may have been removed by a run that released it between our open and our
            # lock: then we hold a lock on a file nobody else will open. Try again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            _unlock(fd)
            os.close(fd)
        old = _read_pid(fd)
        if old is not None and old != os.getpid():
            self.took_over = old  # the OS had dropped its lock: that process is gone
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)  # while still locked: nobody can take a half-removed lock
        except OSError:
            pass
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
