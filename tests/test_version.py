"""The version is written once, in pyproject.toml; `app.__version__` (the window's title,
`folio --version`, the self-test's first line) must say the same."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import app

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]


def test_version_is_pyprojects():
    assert app.__version__ == PYPROJECT, (
        f"app.__version__ is {app.__version__}, pyproject.toml says {PYPROJECT}: "
        "the installed metadata is stale, reinstall (`make install` or pip install -e .)"
    )


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert app._read_version() == PYPROJECT


def test_folio_version_prints_it():
    run = subprocess.run([sys.executable, "-m", "app", "--version"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["folio", PYPROJECT]
