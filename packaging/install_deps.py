"""Install Folio's locked dependencies into the running interpreter's venv.

    .venv/bin/python packaging/install_deps.py [--lock locks/linux-x86_64.txt]

`make install` (so `make run` and `make test`), `.ci/run` and `make package` all come here, so
development, CI and the package run the same resolution:

1. the build tools (pip, setuptools, scikit-build-core, CMake, Ninja) from locks/build-tools.txt;
2. llama-cpp-python, compiled by us from its hash-checked sdist with a portable CPU baseline
   (AVX2, no -march=native, no AVX-512, no AMX: llama.cpp's AMX kernels segfault on the first
   decode on some Xeons). The wheel is kept in a cache folder named after everything that went
   into it (version, sdist hash, CMake arguments, build tools), never in pip's wheel cache,
   which ignores CMAKE_ARGS and could hand back a native build silently. Its libraries are
   disassembled before it is used: a wheel with AVX-512 or AMX instructions is refused;
3. everything else, hash-checked, from the lock (`--require-hashes --no-deps`), then Folio
   itself (editable), then `pip check`.

Why no run-time CPU dispatch (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS): llama-cpp-python 0.3.36
installs a fixed list of CMake targets (ggml-cpu, not the ggml-cpu-<variant> libraries), and
ggml looks for backends beside the executable (python, or the frozen app), so the variants
would neither ship nor load. See docs/BENCHMARKS.md for the AVX2 build's speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
LLAMA = "llama-cpp-python"

# The portable baseline: x86-64 with AVX2/FMA/F16C/BMI2 (Intel Haswell 2013+, AMD Zen 2017+,
# Excavator 2015+). GGML_NATIVE=OFF is what keeps -march=native out.
LLAMA_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF "
    "-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
    "-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF "
    "-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF "
    "-DGGML_OPENMP=OFF"
)
# Instructions a portable build must not contain (objdump's AT&T spelling): any AVX-512 form
# (zmm registers, opmask registers) and AMX tiles.
FORBIDDEN = re.compile(
    r"%zmm\d|%k[1-7]\b|\bk(?:mov|and|or|xor|not|test|shift|unpck|add)[bwdq]\b"
    r"|\b(?:tdpbssd|tdpbsud|tdpbusd|tdpbuud|tdpbf16ps|tdpfp16ps|tileloadd|tileloaddt1"
    r"|tilestored|tilezero|ldtilecfg|sttilecfg|tilerelease)\b"
)


def say(msg: str) -> None:
    print(f"install_deps: {msg}", flush=True)


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True, env=env)


def lock_block(lock: Path, name: str) -> str:
    """The lines of one pin (name==version and its hashes) in a pip-compile/uv lock."""
    lines = lock.read_text("utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.lower().startswith(name + "=="):
            block = [line]
            for cont in lines[i + 1:]:
                if not cont.startswith("    --hash="):
                    break
                block.append(cont)
            return "\n".join(block).rstrip("\\ \n") + "\n"
    raise SystemExit(f"install_deps: {name} is not pinned in {lock}")


def cache_root() -> Path:
    env = os.environ.get("FOLIO_WHEEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "folio" / "wheels"


def forbidden_instructions(lib: Path) -> list[str]:
    """Up to five disassembled lines of `lib` that use AVX-512 or AMX (empty: portable)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise SystemExit("install_deps: objdump is missing (Debian: apt-get install binutils)")
    proc = subprocess.Popen([objdump, "-d", "--no-show-raw-insn", str(lib)],
                            stdout=subprocess.PIPE, text=True, errors="replace")
    hits: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if FORBIDDEN.search(line):
            hits.append(line.strip())
            if len(hits) >= 5:
                proc.kill()
                break
    proc.wait()
    return hits


def check_portable(libs: list[Path]) -> None:
    if not libs:
        raise SystemExit("install_deps: no libggml*.so found to check")
    for lib in libs:
        hits = forbidden_instructions(lib)
        if hits:
            raise SystemExit(
                f"install_deps: {lib} contains AVX-512/AMX instructions (a native build, which "
                "crashes on some CPUs):\n  " + "\n  ".join(hits))


def ggml_libs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("libggml*.so*") if p.is_file())


def build_llama_wheel(lock: Path, build_lock: Path) -> Path:
    block = lock_block(lock, LLAMA)
    key = hashlib.sha256("\n".join([
        block, LLAMA_CMAKE_ARGS, build_lock.read_text("utf-8"), sys.version, sys.platform,
    ]).encode()).hexdigest()[:16]
    version = block.split("==", 1)[1].split()[0]
    folder = cache_root() / f"{LLAMA}-{version}-{key}"
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        say(f"{LLAMA} {version}: the portable wheel built earlier ({folder})")
        return wheels[0]
    say(f"{LLAMA} {version}: compiling llama.cpp, portable AVX2 baseline (about 5-10 minutes)")
    with tempfile.TemporaryDirectory(prefix="folio-llama-") as tmp:
        tmpd = Path(tmp)
        req = tmpd / "req.txt"
        req.write_text(block, "utf-8")
        pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", "--require-hashes",
            "--no-cache-dir", "-r", str(req), "-d", str(tmpd / "sdist"))
        sdist = next((tmpd / "sdist").iterdir())
        env = dict(os.environ, CMAKE_ARGS=LLAMA_CMAKE_ARGS, FORCE_CMAKE="1",
                   CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
            "-w", str(tmpd / "out"), str(sdist), env=env)
        wheel = next((tmpd / "out").glob("llama_cpp_python-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmpd / "unpacked")
        check_portable(ggml_libs(tmpd / "unpacked"))
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        shutil.copy2(wheel, staging / wheel.name)
        try:
            staging.rename(folder)
        except OSError:  # another install finished the same build first
            shutil.rmtree(staging, ignore_errors=True)
    return next(folder.glob("llama_cpp_python-*.whl"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", type=Path, default=LOCKS / "linux-x86_64.txt")
    ap.add_argument("--build-lock", type=Path, default=LOCKS / "build-tools.txt")
    ap.add_argument("--no-project", action="store_true", help="skip Folio's own editable install")
    args = ap.parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SystemExit("install_deps: run it with a virtual environment's python")

    say(f"build tools from {args.build_lock}")
    pip("install", "--quiet", "--require-hashes", "--no-deps", "-r", str(args.build_lock))

    wheel = build_llama_wheel(args.lock, args.build_lock)
    marker = Path(sys.prefix) / ".folio-llama-wheel"
    if not marker.is_file() or marker.read_text("utf-8").strip() != wheel.name + " " + str(wheel):
        pip("install", "--quiet", "--no-deps", "--no-index", "--force-reinstall", str(wheel))
        marker.write_text(wheel.name + " " + str(wheel) + "\n", "utf-8")

    say(f"everything else from {args.lock} (hash-checked, wheels only)")
    with tempfile.TemporaryDirectory(prefix="folio-lock-") as tmp:
        # The lock less llama-cpp-python (installed above from our own build): pip must never
        # build it again from the sdist, with whatever flags, or take one from its cache.
        rest = Path(tmp) / "lock.txt"
        rest.write_text(args.lock.read_text("utf-8").replace(lock_block(args.lock, LLAMA), ""),
                        "utf-8")
        pip("install", "--quiet", "--require-hashes", "--no-deps", "--only-binary", ":all:",
            "-r", str(rest))
    if not args.no_project:
        pip("install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    pip("check")

    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    check_portable(ggml_libs(Path(spec.origin).parent))
    say("done; llama.cpp is the portable build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
