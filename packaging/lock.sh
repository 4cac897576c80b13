#!/usr/bin/env bash
# `make lock`: resolve every dependency, direct and transitive, with hashes, for Python 3.11:
#   locks/build-tools.txt      pip, setuptools, scikit-build-core, CMake, Ninja (all platforms)
#   locks/linux-x86_64.txt     Folio with its test and package extras, Linux x86-64
#   locks/windows-x86_64.txt   the same for the Windows release job
#   locks/macos-arm64.txt      the same for the macOS release job (macOS 14+, Apple silicon)
# Run it deliberately: after changing a requirement in pyproject.toml (tests/test_lock.py fails
# until then) or to take newer releases. Commit the locks with the change that needs them.
# Uses uv (pinned below) in a throwaway venv; only PyPI and the local torch wheel are read.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
UV_VERSION=0.13.8
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
uv="$tools/venv/bin/uv"
# Every lock names the command that made it, and the pyproject digest the test compares.
digest="$("$PYTHON" -c 'import sys; sys.path.insert(0, "tests"); import lockcheck; print(lockcheck.requirements_digest())')"
common=(--generate-hashes --python-version 3.11 --quiet --custom-compile-command "make lock")

compile() {  # compile OUT PLATFORM [extra uv args...]
    local out="$1" platform="$2"; shift 2
    "$uv" pip compile "${common[@]}" --python-platform "$platform" "$@" -o "$out.tmp"
    { echo "# folio-requirements-digest: $digest"; cat "$out.tmp"; } > "$out"
    rm -f "$out.tmp"
    echo "$out: $(grep -c '^[A-Za-z0-9]' "$out") packages"
}

compile locks/build-tools.txt x86_64-manylinux_2_34 locks/build-tools.in
# Linux: the CPU torch lies in /opt/wheels on this kind of machine (PyPI's Linux torch is the
# CUDA build); on GitHub's runners the same file comes from PyTorch's CPU index.
links=()
[[ -d /opt/wheels ]] && links=(--find-links /opt/wheels)
compile locks/linux-x86_64.txt x86_64-manylinux_2_34 pyproject.toml --extra test --extra package \
    -c locks/build-tools.in -c locks/linux-constraints.txt "${links[@]}"
compile locks/windows-x86_64.txt x86_64-pc-windows-msvc pyproject.toml --extra test --extra package \
    -c locks/build-tools.in
MACOSX_DEPLOYMENT_TARGET=14.0 compile locks/macos-arm64.txt aarch64-apple-darwin pyproject.toml \
    --extra test --extra package -c locks/build-tools.in
