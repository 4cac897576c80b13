"""A small real disk for disk-full tests: a tmpfs of a few MiB mounted for one test.

We run as root in CI and here, so `mount -t tmpfs` works. Where it does not (an ordinary user,
a container without CAP_SYS_ADMIN) the fixture says so in the skip reason: a disk-full test
that silently did nothing would be worse than none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, root: Path):
        self.root = root
        self.ballast = root / ".ballast"

    def free(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Take up all but `leave` bytes of the disk with a ballast file."""
        take = self.free() - leave
        if take > 0:
            with open(self.ballast, "ab") as fh:
                fh.write(b"\0" * take)

    def make_room(self) -> None:
        self.ballast.unlink(missing_ok=True)


def _mount_tmpfs(where: Path, size_mb: int) -> str | None:
    """Mount a tmpfs; None on success, else why it could not be mounted."""
    if not shutil.which("mount"):
        return "no mount command"
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0777",
                              "tmpfs", str(where)], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")


def small_disk_at(where: Path, size_mb: int):
    where.mkdir(parents=True, exist_ok=True)
    why = _mount_tmpfs(where, size_mb)
    if why is not None:
        pytest.skip(f"disk-full test needs a small real disk: mounting a {size_mb} MiB tmpfs "
                    f"at {where} failed ({why}); run the tests as root to include it")
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
