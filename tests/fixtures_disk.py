"""A small real disk for disk-full tests: a tmpfs of a few MiB mounted for one test.

Mounting needs CAP_SYS_ADMIN. As root (CI, and the machines these tests were written on)
`mount -t tmpfs` works in place. As an ordinary user, the kernel usually allows a user and
mount namespace of one's own (`unshare -Urm`) in which one may mount a tmpfs; but only
processes inside it see that mount, and a running pytest cannot move into one (it has threads).
So the fixture then runs the test again in a child pytest inside such a namespace, with the
tmpfs mounted for it (`FOLIO_SMALL_DISK` names it), and hands the test None: the test returns
at once, having passed only if the child passed.

Where neither works (a container without either right) the test is skipped with the reason,
or fails when `FOLIO_REQUIRE_DISK_FULL=1` (set in .ci/run): a disk-full test that silently did
nothing would be worse than none. `FOLIO_SMALL_DISK_VIA=namespace` takes the namespace way even
where mounting in place works (to test that way as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INSIDE = "FOLIO_SMALL_DISK"  # set for the child pytest: where its tmpfs is mounted
REQUIRE = "FOLIO_REQUIRE_DISK_FULL"
VIA = "FOLIO_SMALL_DISK_VIA"
ROOT = Path(__file__).resolve().parents[1]


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


def _tmpfs_args(where: Path, size_mb: int) -> list[str]:
    return ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0777", "tmpfs", str(where)]


def _mount_tmpfs(where: Path, size_mb: int) -> str | None:
    """Mount a tmpfs here; None on success, else why it could not be mounted."""
    if not shutil.which("mount"):
        return "no mount command"
    try:
        out = subprocess.run(_tmpfs_args(where, size_mb), capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")


def _namespace_mount_works(where: Path, size_mb: int) -> str | None:
    """Whether `unshare -Urm` may mount a tmpfs at `where`; None if so, else why not."""
    if not shutil.which("unshare"):
        return "no unshare command"
    mount = " ".join(_tmpfs_args(where, size_mb))
    try:
        out = subprocess.run(["unshare", "-Urm", "sh", "-c", f"{mount} && umount {where}"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")


def _run_in_namespace(request, where: Path, size_mb: int) -> None:
    """Run this one test in a child pytest inside a user and mount namespace whose tmpfs is
    mounted at `where`; fail with the child's output unless it passed."""
    mount = " ".join(_tmpfs_args(where, size_mb))
    nodeid = request.node.nodeid
    basetemp = where.parent / "namespace-child"
    cmd = ["unshare", "-Urm", "sh", "-c", f'{mount} && exec "$@"', "sh",
           sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"--basetemp={basetemp}", nodeid]
    env = {k: v for k, v in os.environ.items() if k != VIA}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                         env={**env, INSIDE: str(where)}, timeout=500)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, f"the test failed in its mount namespace:\n{tail}"
    assert " passed" in out.stdout and " skipped" not in out.stdout, tail


def small_disk_at(request, where: Path, size_mb: int):
    """Yield a SmallDisk of `size_mb` MiB at `where`, or None when the test has been run (and
    passed) in a child process instead (see the module docstring)."""
    inside = os.environ.get(INSIDE)
    if inside:  # the child: its tmpfs is mounted already
        disk = Path(inside)
        assert os.path.ismount(disk), f"{INSIDE}={disk} is not a mount point"
        for entry in disk.iterdir():  # a fresh disk for each test of this process
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        yield SmallDisk(disk)
        return
    where.mkdir(parents=True, exist_ok=True)
    if os.environ.get(VIA) == "namespace":
        why = f"not tried: {VIA}=namespace"
    else:
        why = _mount_tmpfs(where, size_mb)
    if why is None:
        try:
            yield SmallDisk(where)
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        return
    why_not_ns = _namespace_mount_works(where, size_mb)
    if why_not_ns is None:
        _run_in_namespace(request, where, size_mb)
        yield None
        return
    reason = (f"disk-full test needs a small real disk: mounting a {size_mb} MiB tmpfs at "
              f"{where} failed ({why}), and so did mounting one in a user namespace "
              f"(unshare -Urm: {why_not_ns}); run the tests as root, or where unprivileged "
              f"user namespaces are allowed, to include it")
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1: {reason}")
    pytest.skip(reason)
