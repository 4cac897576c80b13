"""One writer per library: an inter-process lock on `LIBRARY/folio.lock`.

Two Folio processes writing one library could interleave their LanceDB commits with each
other's `recover()` (which deletes chunks no document claims yet) and lose data. So the process
that opens a library for writing holds an exclusive OS lock on a file inside it: `fcntl.flock`
on POSIX, `msvcrt.locking` on Windows. The OS drops the lock when the process dies, however it
dies (kill -9 included), so there is never a stale lock to clean up by hand. The file also
records who holds it (pid, host, start time) for the message the second process shows.

Within one process the lock is shared: every `Library` opened on the same folder holds a
reference, and the lock is released when the last one is closed or collected.

Read-only opens take no lock (LanceDB readers see committed versions only), see
`Library.open(read_only=...)`. The lock is advisory and, on network file systems, only as
good as the file system's own locking.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "folio.lock"
_WINDOWS_OFFSET = 1 << 30  # Windows locks are mandatory: lock a byte far past the holder info


class LibraryInUse(Exception):
    """The library is open for writing in another process. `holder` says which, if known."""

    def __init__(self, root: Path | str, holder: dict | None):
        self.root, self.holder = str(root), holder or {}
        pid = self.holder.get("pid")
        who = f"(pid {pid}" if pid else "(another process"
        host = self.holder.get("host")
        if host and host != socket.gethostname():
            who += f" on {host}"
        started = self.holder.get("started")
        if started:
            who += ", since " + time.strftime("%Y-%m-%d %H:%M", time.localtime(started))
        who += ")"
        super().__init__(
            f"This library is open in another Folio window or command {who}: {self.root}. "
            f"Close it there first, or use another library (--library DIR). Read commands "
            f"(search, docs list, info, ask) still work while it is open."
        )


@dataclass
class _Held:
    fd: int
    refs: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(root: Path | str) -> dict | None:
    """Who holds (or last held) the lock, from the file: {"pid", "host", "started"}."""
    try:
        text = (Path(root) / LOCK_FILE).read_text("utf-8")
        info = json.loads(text)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def acquire(root: Path | str) -> str:
    """Take the write lock on the library folder `root` (which must exist) or raise
    `LibraryInUse`. Returns the key to pass to `release`."""
    key = str(Path(root).resolve())
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.refs += 1
            return key
        path = Path(key) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                raise LibraryInUse(key, holder(key))
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": round(time.time(), 3)}).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, info)
        except BaseException:
            os.close(fd)  # closing drops a lock taken just before a failed write
            raise
        _held[key] = _Held(fd, 1)
        return key


def release(key: str) -> None:
    """Drop one reference; the last one releases the OS lock."""
    with _guard:
        held = _held.get(key)
        if held is None:
            return
        held.refs -= 1
        if held.refs > 0:
            return
        del _held[key]
        _unlock(held.fd)


def is_held_here(root: Path | str) -> bool:
    with _guard:
        return str(Path(root).resolve()) in _held


def held_elsewhere(root: Path | str) -> bool:
    """Whether another process holds the write lock on `root` now. Looks only where a lock
    file exists already (so it never creates one in a folder that is not a library)."""
    if not (Path(root) / LOCK_FILE).exists():
        return False
    try:
        key = acquire(root)
    except LibraryInUse:
        return True
    except OSError:  # a read-only folder: nobody can be writing there through Folio
        return False
    release(key)
    return False
