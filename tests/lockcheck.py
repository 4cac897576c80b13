"""Reading the dependency locks (locks/*.txt), shared by tests/test_dependency_lock.py and
packaging/lock.sh. Standard library only: lock.sh runs it before any venv exists."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
EXTRAS = ("test", "package")  # what the locks carry beside Folio's own dependencies
# What a lock was resolved from; changing any of these asks for `make lock`.
INPUTS = ("locks/build-tools.in", "locks/linux-constraints.txt")
DIGEST_LINE = re.compile(r"^# folio-requirements-digest: ([0-9a-f]{64})$", re.M)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def project_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return reqs


def requirements_digest() -> str:
    """sha256 over the requirements and the lock inputs, as written in every lock's header."""
    blob = {
        "requirements": sorted(project_requirements()),
        "inputs": {p: (ROOT / p).read_text("utf-8") for p in INPUTS},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> dict[str, dict]:
    """{normalized name: {"version": str, "hashes": [str]}} for every pin in a lock."""
    pins: dict[str, dict] = {}
    current = None
    for line in path.read_text("utf-8").splitlines():
        m = PIN.match(line)
        if m:
            current = {"version": m.group(3), "hashes": []}
            pins[normalize(m.group(1))] = current
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"].append(line.split("--hash=sha256:")[1].split()[0])
        elif not line.startswith((" ", "\t")):
            current = None
    return pins


def lock_digest(path: Path) -> str | None:
    m = DIGEST_LINE.search(path.read_text("utf-8"))
    return m.group(1) if m else None
