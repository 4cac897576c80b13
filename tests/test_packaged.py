"""The packaged app (PyInstaller's dist/folio/, or an installed /opt/folio) runs Folio's
self-test and opens its window in a clean environment: no virtualenv, no PYTHONPATH, a new
HOME. Opt-in, because a build takes many minutes:

    FOLIO_TEST_PACKAGED=1 .venv/bin/pytest -m packaged tests/test_packaged.py   (make test-packaged)

FOLIO_PACKAGED_APP=/opt/folio/folio tests an installed copy instead of dist/folio/folio; when
neither exists the test builds dist/folio/ first (packaging/build.sh).

The bundle-contents test records a real session from source (packaging/session_manifest.py:
ingest, search, ask in the model-host child, the window) and has the packaged app import
every module it imported and look for every data file it opened (`folio --check-bundle`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = "folio.exe" if sys.platform == "win32" else "folio"

pytestmark = [
    pytest.mark.packaged,
    pytest.mark.skipif(
        os.environ.get("FOLIO_TEST_PACKAGED") != "1",
        reason="tests the packaged app, which takes minutes to build: "
        "set FOLIO_TEST_PACKAGED=1 (or run `make test-packaged`)",
    ),
]


@pytest.fixture(scope="module")
def packaged_app() -> Path:
    chosen = os.environ.get("FOLIO_PACKAGED_APP")
    app = Path(chosen) if chosen else ROOT / "dist" / "folio" / EXE
    if not app.exists() and not chosen:
        build = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], cwd=ROOT,
                               capture_output=True, text=True, timeout=3600, check=False)
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    assert app.exists(), f"no packaged app at {app}"
    return app


# The programs Folio may start (a shell, opening a file, OCR, ctypes' library lookup).
TOOLS = ("sh", "xdg-open", "tesseract", "ldconfig")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a new user on a machine without Python has: a HOME, and a PATH on which no python3
    or python can be found. /usr/bin has python3 here, so the PATH is a folder of links to the
    few programs Folio may start (as packaging/common.sh's use_clean_env)."""
    if sys.platform == "win32":  # Windows cannot start a process without these
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        return {"HOME": str(home), "LANG": "C.UTF-8", "SYSTEMROOT": root,
                "USERPROFILE": str(home), "PATH": root, **extra}
    bin_dir = home / ".clean-path"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool, path=SYSTEM_PATH)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return {"HOME": str(home), "PATH": str(bin_dir), "LANG": "C.UTF-8", **extra}


@pytest.mark.skipif(sys.platform == "win32", reason="checks a POSIX shell's PATH")
def test_the_clean_environment_has_no_python(tmp_path):
    env = clean_env(tmp_path)
    for name in ("python3", "python"):
        assert shutil.which(name, path=env["PATH"]) is None, name
    look = subprocess.run(["/bin/sh", "-c", "command -v python3 || command -v python"],
                          env=env, capture_output=True, text=True, check=False)
    assert look.returncode != 0, look.stdout
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env


def test_packaged_self_test_passes_in_a_clean_environment(packaged_app, tmp_path):
    run = subprocess.run([str(packaged_app), "--self-test"], capture_output=True, text=True,
                         env=clean_env(tmp_path), cwd=tmp_path, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "(packaged," in lines[0], lines[0]
    # The bundle knows its version (folio's dist-info is copied in): pyproject.toml's.
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert lines[0].startswith(f"Folio {version} self-test"), lines[0]
    assert lines[-1].startswith("self-test passed"), run.stdout
    # Resources come from inside the artifact, never from this source tree's resources/.
    where = next(line for line in lines if line.split()[:2] == ["ok", "resources"])
    assert str(ROOT / "resources") not in where
    assert str(packaged_app.resolve().parent) in where, where
    # The starter model was assembled into the clean HOME, as on a user's first run.
    assert list(tmp_path.rglob("gemma-3-270m-q4_k_m.gguf"))


@pytest.mark.skipif(sys.platform != "linux", reason="the offscreen probe is checked on Linux")
def test_packaged_window_comes_up_and_closes(packaged_app, tmp_path):
    env = clean_env(tmp_path, QT_QPA_PLATFORM="offscreen", FOLIO_STARTUP_PROBE="1")
    run = subprocess.run([str(packaged_app)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    ready = [line for line in run.stdout.splitlines() if line.startswith("READY ")]
    assert ready, run.stdout + run.stderr
    assert float(ready[0].split()[1]) > 0


@pytest.fixture(scope="module")
def session_manifest(tmp_path_factory) -> Path:
    """What a real session imports and opens, recorded from this source tree's environment
    (the one the package was built from)."""
    out = tmp_path_factory.mktemp("manifest") / "session-manifest.json"
    run = subprocess.run([sys.executable, str(ROOT / "packaging" / "session_manifest.py"),
                          "--out", str(out)], capture_output=True, text=True, timeout=900,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def test_packaged_app_carries_every_module_and_data_file_a_session_uses(
        packaged_app, session_manifest, tmp_path):
    run = subprocess.run([str(packaged_app), "--check-bundle", str(session_manifest)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=clean_env(tmp_path, QT_QPA_PLATFORM="offscreen"), check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "(frozen, " in out, out[:500]
    assert "check-bundle passed" in out, out[-2000:]
    # What may be missing is named with its reason, never skipped silently.
    assert "MISSING" not in out
