"""`folio --self-test` from source, in a real process: the pipeline the packaged app runs
(tests/test_packaged.py runs the same self-test inside the built artifact)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["offline", "resources", "library", "ingest", "search", "model", "answer", "window"]


def _self_test(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "app", "--self-test", *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
                          check=False)


@pytest.mark.slow
def test_self_test_passes_end_to_end(starter_model):
    run = _self_test()
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "from source" in lines[0]
    for step in STEPS:
        assert any(line.split()[:2] == ["ok", step] for line in lines), (step, run.stdout)
    assert "karnvik-guide.pdf p. 2" in run.stdout  # search and the answer's source
    assert lines[-1].startswith("self-test passed")
    # The temporary library is gone afterwards.
    library = next(line.split()[2] for line in lines if line.split()[:2] == ["ok", "library"])
    assert not Path(library).exists()


def test_self_test_fails_with_the_step_and_reason_when_online():
    """An explicit HF_HUB_OFFLINE=0 would let a model hub be contacted: that is a failure."""
    run = _self_test(env={"HF_HUB_OFFLINE": "0"})
    assert run.returncode == 1
    assert "FAIL  offline" in run.stdout and "HF_HUB_OFFLINE is '0'" in run.stdout
    assert "self-test FAILED at step 'offline'" in run.stdout


def test_self_test_fails_cleanly_on_an_unusable_library(tmp_path):
    """A library path that is a file: the library step fails with a message, no crash."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the library should go")
    run = _self_test("--library", str(blocker))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL  library" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert blocker.read_text() == "a file where the library should go"
