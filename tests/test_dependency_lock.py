"""The locks (locks/*.txt) and pyproject.toml agree, and what is installed is what is locked.

`make lock` writes the locks; these tests fail when a requirement changes in pyproject.toml
without it, or when an environment drifts from the lock."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lockcheck import (
    LOCKS,
    ROOT,
    lock_digest,
    normalize,
    parse_lock,
    project_requirements,
    requirements_digest,
)
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

PLATFORM_LOCKS = {
    "linux-x86_64.txt": {"sys_platform": "linux", "platform_system": "Linux",
                         "platform_machine": "x86_64"},
    "windows-x86_64.txt": {"sys_platform": "win32", "platform_system": "Windows",
                           "platform_machine": "AMD64", "os_name": "nt"},
    "macos-arm64.txt": {"sys_platform": "darwin", "platform_system": "Darwin",
                        "platform_machine": "arm64"},
}


@pytest.mark.parametrize("name", [*PLATFORM_LOCKS, "build-tools.txt"])
def test_every_lock_was_made_from_this_pyproject(name):
    digest = lock_digest(LOCKS / name)
    assert digest == requirements_digest(), (
        f"locks/{name} was resolved from other requirements than pyproject.toml now has: "
        "run `make lock` and commit the locks")


@pytest.mark.parametrize("name", PLATFORM_LOCKS)
def test_every_requirement_is_locked_at_a_version_it_allows(name):
    pins = parse_lock(LOCKS / name)
    env = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7",
           **PLATFORM_LOCKS[name]}
    for line in project_requirements():
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        pin = pins.get(normalize(req.name))
        assert pin is not None, f"{req.name} is required by pyproject.toml but not in {name}"
        assert req.specifier.contains(Version(pin["version"]), prereleases=True), (
            f"{name} pins {req.name}=={pin['version']}, outside pyproject's {req.specifier}")


@pytest.mark.parametrize("name", [*PLATFORM_LOCKS, "build-tools.txt"])
def test_every_pin_is_exact_and_hashed(name):
    text = (LOCKS / name).read_text("utf-8")
    pins = parse_lock(LOCKS / name)
    assert len(pins) > 5
    for pkg, pin in pins.items():
        assert pin["hashes"], f"{pkg} has no hash in {name}"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pin["hashes"])
    # Nothing unpinned slipped in (a bare name, a range, a URL without hash).
    for line in text.splitlines():
        if line and not line.startswith((" ", "#", "-")):
            assert "==" in line, line


def test_linux_lock_takes_the_cpu_torch_and_no_cuda():
    pins = parse_lock(LOCKS / "linux-x86_64.txt")
    assert pins["torch"]["version"].endswith("+cpu")
    assert not [p for p in pins if p.startswith("nvidia-")]


def test_the_build_tools_agree_with_the_project_lock():
    """pip installs the build tools first, then the lock: a package in both at two versions
    would be swapped under the build."""
    tools = parse_lock(LOCKS / "build-tools.txt")
    project = parse_lock(LOCKS / "linux-x86_64.txt")
    for name in tools.keys() & project.keys():
        assert tools[name]["version"] == project[name]["version"], name


def test_this_environment_is_the_locked_one():
    """What `make install` put in .venv is exactly the lock (plus the build tools): nothing
    newer, nothing missing. Skipped outside a venv made by make install."""
    if sys.prefix == sys.base_prefix or not (Path(sys.prefix) / ".folio-llama-wheel").is_file():
        pytest.skip("not a venv made by make install")
    locked = parse_lock(LOCKS / "linux-x86_64.txt") | parse_lock(LOCKS / "build-tools.txt")
    installed = {normalize(d.metadata["Name"]): d.version for d in md.distributions()}
    for name, pin in locked.items():
        assert installed.get(name) == pin["version"], (name, installed.get(name), pin)
    extra = set(installed) - set(locked) - {"folio"}
    assert not extra, f"installed but not locked: {sorted(extra)}"


def test_make_install_never_builds_llama_cpp_natively():
    """The flags the installer compiles llama.cpp with: a portable baseline, never native."""
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import install_deps
    finally:
        sys.path.pop(0)
    args = install_deps.LLAMA_CMAKE_ARGS
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args
    for flag in ("AVX512", "AMX_TILE", "AMX_INT8"):
        assert f"-DGGML_{flag}=OFF" in args
    assert "march=native" not in args
    # The objdump pattern catches what it must, and not what a baseline build has.
    bad = ["vpaddd %zmm1,%zmm2,%zmm3", "kmovw %k1,%eax", "tdpbssd %tmm1,%tmm2,%tmm3",
           "vmovups %zmm0,(%rax){%k1}", "ldtilecfg (%rax)"]
    good = ["vpaddd %ymm1,%ymm2,%ymm3", "vfmadd231ps %ymm1,%ymm2,%ymm3", "shlx %rax,%rbx,%rcx",
            "vcvtph2ps %xmm0,%ymm1", "movq %rax,%k_label"]
    assert all(install_deps.FORBIDDEN.search(s) for s in bad)
    assert not any(install_deps.FORBIDDEN.search(s) for s in good)


def test_the_installed_llama_cpp_has_no_avx512_or_amx():
    """The before-stop hook's check, as a test: a native build would crash on AMX Xeons."""
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import install_deps
    finally:
        sys.path.pop(0)
    import llama_cpp

    libs = install_deps.ggml_libs(Path(llama_cpp.__file__).parent)
    assert libs
    for lib in libs:
        assert install_deps.forbidden_instructions(lib) == [], lib


def test_lock_script_runs_the_pinned_uv():
    text = (ROOT / "packaging" / "lock.sh").read_text()
    assert re.search(r"UV_VERSION=\d+\.\d+\.\d+", text)
    assert "--generate-hashes" in text
    out = subprocess.run(["bash", "-n", str(ROOT / "packaging" / "lock.sh")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
