"""The packaging shell scripts run under `set -o pipefail` (packaging/common.sh; GitHub's
`shell: bash` is `bash -eo pipefail` too). There, a reader that stops early (`head`,
`grep -q`, `grep -m N`) kills its writer with SIGPIPE, and the pipeline fails with 141 when
the writer had more to say: `ldd --version | head -1` failed `make package` that way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "packaging").glob("*.sh")) + [ROOT / ".github/workflows/release.yml"]
# A pipe into a reader that may exit before its input ends.
EARLY_EXIT = re.compile(
    r"\|\s*(?:head\b|tail\s+-q\b|grep\s+(?:-\w*[qm]|--quiet|--max-count|-\w*l\b)|sed\s+\S*q\b"
    r"|awk\s+'[^']*\bexit\b)")


def _code_lines(path: Path):
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        code = line.split(" #", 1)[0]
        if not code.lstrip().startswith("#"):
            yield n, code


def test_no_pipe_into_a_reader_that_exits_early():
    found = [f"{p.relative_to(ROOT)}:{n}: {code.strip()}"
             for p in SCRIPTS for n, code in _code_lines(p) if EARLY_EXIT.search(code)]
    assert not found, ("a pipe into head/grep -q/grep -m fails with SIGPIPE (141) under "
                       "pipefail; read the whole input (awk 'NR==1', sed -n 1p, a file or "
                       "a here-string) instead:\n" + "\n".join(found))


def test_the_pattern_catches_the_old_bug():
    assert EARLY_EXIT.search("glibc=$(ldd --version | head -1 | grep -o '[0-9.]*$')")
    assert EARLY_EXIT.search("foo | grep -q bar")
    assert EARLY_EXIT.search("foo | grep -m1 bar")
    assert not EARLY_EXIT.search("foo | awk 'NR == 1' | grep -o x")
    assert not EARLY_EXIT.search("grep -q x \"$log\"")


@pytest.mark.skipif(not (shutil.which("fakeroot") and shutil.which("dpkg-deb")),
                    reason="needs fakeroot and dpkg-deb (Debian)")
def test_deb_script_builds_a_package_from_a_stub_folder(tmp_path):
    """packaging/deb.sh itself, end to end under its pipefail, on a stand-in dist/folio/."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "packaging", tree / "packaging")
    shutil.copytree(ROOT / "resources" / "icons", tree / "resources" / "icons")
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    app = tree / "dist" / "folio"
    app.mkdir(parents=True)
    (app / "folio").write_text("#!/bin/sh\necho stub\n")
    (app / "folio").chmod(0o755)
    run = subprocess.run(["bash", str(tree / "packaging" / "deb.sh")], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "PY": sys.executable},
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    debs = list((tree / "dist").glob("folio_*_amd64.deb"))
    assert len(debs) == 1, run.stdout
    info = subprocess.run(["dpkg-deb", "--field", str(debs[0]), "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert re.search(r"libc6 \(>= \d+\.\d+", info), info
