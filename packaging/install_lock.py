"""Install Folio's locked dependencies on Windows or macOS (the release workflow's jobs).

    python packaging/install_lock.py --lock locks/windows-x86_64.txt
    python packaging/install_lock.py --lock locks/macos-arm64.txt

Linux uses packaging/install_deps.py, which also caches the llama.cpp build and disassembles it
(objdump, ELF only). This is the same sequence for the other two platforms:

1. the build tools from locks/build-tools.txt (hash-checked);
2. llama-cpp-python compiled from its hash-checked sdist (it has no wheels on PyPI):
   - Windows x86-64: the portable baseline of install_deps.LLAMA_CMAKE_ARGS (GGML_NATIVE=OFF,
     AVX2/FMA/F16C, no AVX-512, no AMX): a native build on the runner's CPU could use
     instructions the user's CPU lacks;
   - macOS arm64: llama.cpp's default build (Metal, Accelerate), as the brief for the release
     allows: GitHub's arm64 runners are M1-class, the oldest Apple silicon, so a native build
     there runs on every Apple-silicon Mac;
3. everything else from the lock, hash-checked, wheels only (`--require-hashes --no-deps
   --only-binary :all:`), the llama-cpp-python pin taken out (installed in 2);
4. Folio itself (editable) and `pip check`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import install_deps  # noqa: E402 (lock_block, LLAMA_CMAKE_ARGS, the pip helper)

ROOT = install_deps.ROOT


def cmake_args(platform: str) -> str | None:
    if platform == "win32":
        return install_deps.LLAMA_CMAKE_ARGS
    if platform == "darwin":
        return None  # llama.cpp's defaults: Metal on Apple silicon
    raise SystemExit("install_lock: Linux installs with packaging/install_deps.py")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", type=Path, required=True)
    ap.add_argument("--build-lock", type=Path, default=ROOT / "locks" / "build-tools.txt")
    args = ap.parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SystemExit("install_lock: run it with a virtual environment's python")
    say = install_deps.say
    pip = install_deps.pip
    flags = cmake_args(sys.platform)

    say(f"build tools from {args.build_lock}")
    pip("install", "--quiet", "--require-hashes", "--no-deps", "-r", str(args.build_lock))

    block = install_deps.lock_block(args.lock, install_deps.LLAMA)
    with tempfile.TemporaryDirectory(prefix="folio-lock-") as tmp:
        tmpd = Path(tmp)
        (tmpd / "llama.txt").write_text(block, "utf-8")
        say(f"{install_deps.LLAMA}: compiling llama.cpp, CMAKE_ARGS={flags or '(defaults)'}")
        env = dict(os.environ, FORCE_CMAKE="1",
                   CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        env.pop("CMAKE_ARGS", None)
        if flags:
            env["CMAKE_ARGS"] = flags
        pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", "--require-hashes",
            "--no-cache-dir", "-r", str(tmpd / "llama.txt"), "-d", str(tmpd / "sdist"))
        sdist = next((tmpd / "sdist").iterdir())
        pip("wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
            "-w", str(tmpd / "wheel"), str(sdist), env=env)
        wheel = next((tmpd / "wheel").glob("llama_cpp_python-*.whl"))
        pip("install", "--quiet", "--no-deps", "--no-index", "--force-reinstall", str(wheel))

        say(f"everything else from {args.lock} (hash-checked, wheels only)")
        rest = tmpd / "lock.txt"
        rest.write_text(args.lock.read_text("utf-8").replace(block, ""), "utf-8")
        pip("install", "--quiet", "--require-hashes", "--no-deps", "--only-binary", ":all:",
            "-r", str(rest))
    pip("install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    pip("check")
    subprocess.run([sys.executable, "-c", "import llama_cpp; print('llama_cpp',"
                    " llama_cpp.__version__)"], check=True)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
