"""Data files that the bundled packages carry inside their import packages, which PyInstaller
does not collect by itself (it follows imports, not open()).

    .venv/bin/python packaging/runtime_data.py [--dist dist/folio]

transformers 5.25 imports `kernels`, which reads kernels/_internals/python_depends.json at run
time: a frozen app without that file failed its ingest ("Cannot load dependency data").
folio.spec therefore collects, for every installed distribution the bundle includes, every
non-code file inside that distribution's import packages, except the kinds listed here with
the reason they are not needed at run time (headers, sources, build files, tests, programs,
and a few large, named, unused folders). It also copies every such distribution's metadata
(dist-info), since packages read their own and each other's versions at run time.

The command line reports, for a built folder, each bundled distribution's data files that the
folder lacks (exit 1 when there are any) and what was left out on purpose, with the reason.

`unwanted()` is the spec's filter over everything the hooks collect (Qt plugins, CUDA, torch's
tests...); it lives here so that the report and the spec agree.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata as md
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd", ".dll", ".dylib"}
TYPED_MARKERS = {"py.typed"}
# Read only when compiling against a package (C/C++/CUDA/Cython sources and headers, static
# libraries, object files, CMake and pkg-config files), never by the package at run time.
# Headers are the bulk: torch's alone are 37 MB.
BUILD_ONLY_SUFFIXES = {
    ".h", ".hh", ".hpp", ".hxx", ".cuh", ".c", ".cc", ".cpp", ".cxx", ".cu", ".pxd", ".pyx",
    ".pxi", ".tp", ".a", ".lib", ".o", ".obj", ".cmake", ".pc", ".la",
}
BUILD_ONLY_FOLDERS = {"include", "cmake", "pkgconfig"}
TEST_FOLDERS = {"tests", "test"}
# Named folders of bundled packages that Folio never uses at run time, with the reason.
UNUSED: dict[str, str] = {
    "pymupdf/layout/*": "pymupdf.layout's ONNX page-layout models (51 MB): they need "
                        "onnxruntime, which the bundle leaves out, and Folio never asks for a "
                        "page layout (Page.get_layout); pymupdf imports it only if present",
    "pymupdf4llm/*": "pymupdf4llm (Markdown export, OCR model), left out with pymupdf.layout",
    "pymupdf/mupdf-devel/*": "MuPDF's headers and static library, for building against it",
    "PySide6/Qt/qml/*": "Qt Quick/QML modules: Folio's window is Qt Widgets (QtQml and QtQuick "
                        "are excluded modules)",
    "PySide6/Qt/metatypes/*": "moc's type descriptions, read when compiling Qt code",
    "PySide6/typesystems/*": "shiboken's binding-generator input (build time)",
    "PySide6/glue/*": "shiboken's binding-generator input (build time)",
    "PySide6/scripts/*": "pyside6-deploy and the other PySide6 developer tools' files",
}
PROGRAM = "a program, not data: PyInstaller's hooks collect those a package runs " \
          "(torch_shm_manager); the rest are developer tools (Qt Designer, protoc, ...)"
BINARY_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")


def unwanted(dest: str, keep_cuda: bool = False) -> bool:
    """Files the hooks collect that Folio never loads (folio.spec filters a.datas and
    a.binaries with this)."""
    d = dest.replace("\\", "/")
    parts = d.split("/")
    if parts[0].endswith(".dist-info"):  # metadata and licence texts (some lie under
        return False                     # licenses/.../include/ or .../test/): all kept
    if not keep_cuda and any(
        s in d for s in ("libcudnn", "libcublas", "libcufft", "libcurand", "libcusparse",
                         "libcusolver", "libnccl", "libnvrtc", "libnvJitLink", "libcudart",
                         "libcupti", "nvidia/", "libtorch_cuda", "libc10_cuda")
    ):
        return True
    if d.startswith("PySide6/Qt/plugins/"):
        # Keep only what the window needs: platforms (incl. offscreen and xcb), image
        # formats, icon engines (SVG icons), platform themes, input contexts, xcb GL.
        keep = ("platforms", "imageformats", "iconengines", "platformthemes",
                "platforminputcontexts", "xcbglintegrations", "wayland-shell-integration",
                "wayland-decoration-client", "wayland-graphics-integration-client",
                "egldeviceintegrations", "generic", "styles")
        return len(parts) > 3 and parts[3] not in keep
    if d.startswith("PySide6/Qt/translations/") and not d.endswith(("qtbase_en.qm",)):
        return True
    if d.startswith(("PySide6/Qt/qml/", "PySide6/Qt/resources/qtwebengine")):
        return True
    if "/include/" in d or d.endswith((".pyi", ".h", ".hpp", ".cmake", ".a", ".pyx", ".pxd")):
        return True
    if d.startswith("pyarrow/") and ("flight" in d or "libarrow_s3" in d):
        return True
    # torch's C++ test programs and test libraries, protoc, headers and CMake files; torch
    # needs torch_shm_manager to be there at import time, so that one stays.
    if d.startswith("torch/bin/") and parts[-1] != "torch_shm_manager":
        return True
    if d.startswith(("torch/include/", "torch/share/")) or "/test/" in d:
        return True
    if d.startswith("torch/lib/") and parts[-1].startswith((
            "libtorchbind_test", "libjitbackend_test", "libbackend_with_compiler",
            "libaoti_custom_ops")):
        return True
    return False


@dataclass
class DataFile:
    dist: str
    dest: str  # path inside the bundle (= inside site-packages), with "/"
    src: Path
    size: int
    why_not: str | None  # None: collected; otherwise the reason it is left out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_of(top_levels: set[str]) -> dict[str, md.Distribution]:
    """The installed distributions that provide any of these top-level import names."""
    owners = md.packages_distributions()
    found: dict[str, md.Distribution] = {}
    for top in sorted(top_levels):
        for name in owners.get(top, []):
            key = _norm(name)
            if key not in found:
                try:
                    found[key] = md.distribution(name)
                except md.PackageNotFoundError:
                    pass
    return found


def _is_program(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(BINARY_MAGIC)
    except OSError:
        return False


def classify(rel: PurePosixPath, src: Path, drop=None) -> str | None:
    """None for a data file the bundle needs; otherwise why it is not collected."""
    dest = rel.as_posix()
    for pattern, reason in UNUSED.items():
        if fnmatch.fnmatchcase(dest, pattern):
            return reason
    if rel.suffix.lower() in BUILD_ONLY_SUFFIXES or BUILD_ONLY_FOLDERS & set(rel.parts[:-1]):
        return "build-time only: headers, C/C++/Cython sources, static libraries, CMake and " \
               "pkg-config files are read when compiling against the package, never at run time"
    if TEST_FOLDERS & set(rel.parts[:-1]):
        return "a package's own tests"
    if rel.suffix == "" and _is_program(src):
        return PROGRAM
    if drop is not None and drop(dest):
        return "left out by runtime_data.unwanted (the spec's filter: Qt plugins and " \
               "translations, CUDA, torch's test programs)"
    return None


def is_code(rel: PurePosixPath) -> bool:
    name = rel.name
    return (rel.suffix in CODE_SUFFIXES or ".so." in name or name in TYPED_MARKERS
            or "__pycache__" in rel.parts)


def scan(top_levels: set[str], drop=None) -> list[DataFile]:
    """Every non-code file inside the bundled import packages of the distributions that
    provide `top_levels`, classified."""
    out: list[DataFile] = []
    for key, dist in sorted(distributions_of(top_levels).items()):
        for f in dist.files or []:
            rel = PurePosixPath(str(f).replace("\\", "/"))
            if rel.parts[0] == ".." or rel.parts[0] not in top_levels or len(rel.parts) < 2:
                continue  # scripts, dist-info, top-level modules, other distributions' names
            if is_code(rel):
                continue
            src = Path(dist.locate_file(f))
            if not src.is_file():
                continue
            out.append(DataFile(key, rel.as_posix(), src, src.stat().st_size,
                                classify(rel, src, drop)))
    return out


def metadata_files(dists: dict[str, md.Distribution]) -> list[tuple[str, Path]]:
    """(dest, src) for every file of each distribution's .dist-info folder."""
    out = []
    for dist in dists.values():
        folder = Path(getattr(dist, "_path", ""))
        if not folder.name.endswith(".dist-info") or not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                out.append((f"{folder.name}/{p.relative_to(folder).as_posix()}", p))
    return out


def top_levels_of_toc(*tocs) -> set[str]:
    """Top-level import names in PyInstaller TOCs: module names (a.pure), extension modules
    (a.binaries, by destination path), and the .pyc/.py files of a.datas, where a noarchive
    build puts every pure module (a.pure is then empty)."""
    tops: set[str] = set()
    for toc in tocs:
        for entry in toc:
            name, typecode = entry[0], entry[-1]
            dest = name.replace("\\", "/")
            if typecode.startswith(("PYMODULE", "PYSOURCE")):
                tops.add(name.split(".")[0])
            elif typecode == "EXTENSION":
                tops.add(dest.split("/")[0].split(".")[0])
            elif typecode == "DATA" and dest.endswith((".pyc", ".py")):
                tops.add(dest.split("/")[0].rsplit(".", 1)[0])
    return tops


def left_out_report(found: list[DataFile], limit: int = 12) -> list[str]:
    """One line per reason a file was left out: count, size, which distributions."""
    by_reason: dict[str, list[DataFile]] = defaultdict(list)
    for f in found:
        if f.why_not:
            by_reason[f.why_not].append(f)
    lines = []
    for reason, files in sorted(by_reason.items(), key=lambda x: -sum(f.size for f in x[1])):
        dists = sorted({f.dist for f in files})
        lines.append(f"  left out: {len(files)} files, {sum(f.size for f in files) / 1e6:.1f} MB "
                     f"({', '.join(dists[:limit])}{' ...' if len(dists) > limit else ''}): "
                     f"{reason}")
    return lines


def summary(found: list[DataFile], added: list[str]) -> str:
    """The spec's report (in build/pyinstaller.log)."""
    taken = [f for f in found if f.why_not is None]
    lines = [f"runtime data: {len(taken)} data files ({sum(f.size for f in taken) / 1e6:.1f} MB) "
             f"in {len({f.dist for f in taken})} bundled distributions; {len(added)} were not "
             "collected by the hooks and are added: " + ", ".join(added[:20])
             + (" ..." if len(added) > 20 else "")]
    return "\n".join(lines + left_out_report(found))


def _bundled_top_levels(internal: Path) -> set[str]:
    """Top-level import names present in a built folder's _internal/."""
    tops: set[str] = set()
    for p in internal.iterdir():
        if p.is_dir() and not p.name.endswith((".dist-info", ".egg-info")):
            tops.add(p.name)
        elif p.suffix in (".pyc", ".so", ".pyd") or ".cpython-" in p.name:
            tops.add(p.name.split(".")[0])
    return tops


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", type=Path, default=root / "dist" / "folio",
                    help="the built one-folder app (default dist/folio)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every file")
    args = ap.parse_args(argv)
    internal = args.dist / "_internal"
    if not internal.is_dir():
        raise SystemExit(f"runtime_data: {internal} is missing; build first (make package)")
    tops = _bundled_top_levels(internal)
    found = scan(tops, drop=lambda d: unwanted(d, os.environ.get("FOLIO_KEEP_CUDA") == "1"))
    needed = [f for f in found if f.why_not is None]
    missing = [f for f in needed if not (internal / f.dest).exists()]
    print(f"{args.dist}: {len(needed)} data files ({sum(f.size for f in needed) / 1e6:.1f} MB) "
          f"in {len({f.dist for f in needed})} bundled distributions are needed; "
          f"{len(needed) - len(missing)} are in the folder")
    print("\n".join(left_out_report(found)))
    extra = [f for f in found if f.why_not and (internal / f.dest).exists()]
    if extra:
        print(f"  carried although left out above: {len(extra)} files "
              f"({sum(f.size for f in extra) / 1e6:.1f} MB), collected by a hook: "
              + ", ".join(sorted({f.dest.split('/')[0] for f in extra})))
    metas = metadata_files(distributions_of(tops))
    meta_missing = sorted({d.split("/")[0] for d, _ in metas if not (internal / d).exists()})
    if args.verbose:
        for f in found:
            print(f"  {'ok ' if (internal / f.dest).exists() else '-- '} {f.dest}  "
                  f"{f.why_not or ''}")
    if missing or meta_missing:
        by_dist: dict[str, list[str]] = defaultdict(list)
        for f in missing:
            by_dist[f.dist].append(f.dest)
        if missing:
            print(f"NOT COLLECTED: {len(missing)} data files of bundled packages:")
        for dist, files in sorted(by_dist.items()):
            print(f"  {dist}: {', '.join(files[:6])}{' ...' if len(files) > 6 else ''}"
                  f" ({len(files)})")
        if meta_missing:
            print(f"NOT COLLECTED: the metadata of {len(meta_missing)} bundled distributions: "
                  + ", ".join(meta_missing))
        return 1
    print("every data file and the metadata of every bundled distribution is in the folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
