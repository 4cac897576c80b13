"""`folio --check-bundle MANIFEST.json`: does the frozen app carry what a real session uses?

The manifest (packaging/session_manifest.py) lists every module a real Folio session imported
from source (ingest, search, ask in the model-host child, the window) and every data file it
opened inside site-packages, the standard library and Folio's resources. The frozen app
imports each module, in the order the session did, and looks for each file inside the bundle
(sys._MEIPASS). It prints what is missing and exits 1 when anything is.

Hidden: packaging/folio_entry.py handles the option before Folio's own command line, so
app/cli/ does not know it. Run from source (`python packaging/folio_bundle_check.py M.json`)
it checks the source environment instead, which must always pass.

What cannot or need not be in the bundle is listed below with the reason, never skipped
silently; the report counts and names them.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import sys
import sysconfig
import time
import warnings
from pathlib import Path

# Modules a source session imports that the frozen app does not have, on purpose. A name, or
# a pattern ending in "*" (fnmatch).
MODULES_NOT_FROZEN: dict[str, str] = {
    "__main__": "the recording script itself (the frozen app's __main__ is its entry point)",
    "__mp_main__": "the recording script again, as multiprocessing's spawn runs the parent's "
                   "main script in the model-host child",
    "session_manifest": "the recorder",
    "folio_bundle_check": "this checker, imported by the recorder for these lists",
    "_distutils_hack": "setuptools' distutils shim, imported at interpreter start-up by a .pth "
                       "file in the venv (the frozen app reads no .pth files)",
    "__editable___*": "pip's editable-install finder for folio (a .pth hook of the "
                      "development venv); the bundle has app/ itself",
    "_virtualenv": "virtualenv's start-up patch (a .pth hook), absent from a frozen app",
    "sitecustomize": "the development interpreter's start-up customisation",
    "usercustomize": "the development interpreter's start-up customisation",
    # Excluded in folio.spec on purpose; their importers catch the ImportError.
    **dict.fromkeys(
        ["pymupdf.layout", "pymupdf.layout.*", "pymupdf.features", "pymupdf._features",
         "pymupdf4llm", "pymupdf4llm.*", "onnxruntime", "onnxruntime.*"],
        "PyMuPDF's ONNX page-layout analysis, its feature extractor, the Markdown exporter on "
        "it and onnxruntime: excluded in folio.spec (51 MB of models Folio never uses: it "
        "asks for no page layout); `import pymupdf` imports them only when present"),
    **dict.fromkeys(
        ["pyarrow._s3fs", "pyarrow._gcsfs", "pyarrow._azurefs", "pyarrow._hdfs",
         "pyarrow._flight", "pyarrow.flight", "pyarrow._orc", "pyarrow.orc",
         "pyarrow._dataset_orc"],
        "pyarrow's network filesystems, Flight RPC and ORC: excluded in folio.spec (LanceDB "
        "works on local folders); pyarrow.fs and pyarrow.dataset import them in try/except"),
}

# Files a source session opens that the bundle does not carry, on purpose. Patterns over
# "area:relative/path" (fnmatch), where area is site (site-packages), stdlib or root (the
# repository).
FILES_NOT_FROZEN: dict[str, str] = {
    "root:pyproject.toml": "app/__init__.py reads the version from pyproject.toml in a "
                           "source tree only; the bundle carries folio's dist-info instead",
    "site:pymupdf/layout/*": "pymupdf.layout's configuration, excluded with it (see modules)",
    "site:onnxruntime-*.dist-info/*": "onnxruntime's metadata, excluded with it (see modules)",
    "site:pymupdf4llm-*.dist-info/*": "pymupdf4llm's metadata, excluded with it (see modules)",
    "site:pymupdf_layout-*.dist-info/*": "pymupdf.layout's metadata, excluded with it",
}


def not_frozen_reason(name: str, table: dict[str, str]) -> str | None:
    for pattern, reason in table.items():
        if name == pattern or ("*" in pattern and fnmatch.fnmatchcase(name, pattern)):
            return reason
    return None


def _bases() -> dict[str, Path]:
    """Where each area of the manifest lies in this process: inside the bundle when frozen,
    the source environment otherwise."""
    if getattr(sys, "frozen", False):
        base = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
        return {"site": base, "stdlib": base, "root": base}
    paths = sysconfig.get_paths()
    return {"site": Path(paths["purelib"]), "stdlib": Path(paths["stdlib"]),
            "root": Path(__file__).resolve().parents[1]}


def check(manifest_path: str | os.PathLike, out=None) -> int:
    out = out or sys.stdout
    started = time.perf_counter()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    data = json.loads(Path(manifest_path).read_text("utf-8"))
    frozen = bool(getattr(sys, "frozen", False))
    bases = _bases()
    where = f"frozen, {bases['site']}" if frozen else "from source"
    say(f"check-bundle: {manifest_path} ({where}; recorded {data.get('recorded', '?')} with "
        f"Python {data.get('python', '?')}, {len(data['modules'])} modules)")
    # A module recorded while it was itself importing may stop this process (SystemExit from
    # a __main__-style module): everything is caught, so the report always comes out.
    skipped: dict[str, list[str]] = {}
    imported = 0
    modules = data["modules"]
    errors: dict[str, str] = {}
    # Two passes: the recorded order is the order imports started in, and a module that a
    # package registers while importing (shiboken's support modules) is only there after it.
    for attempt in (1, 2):
        todo = modules if attempt == 1 else list(errors)
        for name in todo:
            if attempt == 1:
                reason = not_frozen_reason(name, MODULES_NOT_FROZEN)
                if reason:
                    skipped.setdefault(reason, []).append(name)
                    continue
            try:
                with warnings.catch_warnings():  # deprecation notices of import time: noise
                    warnings.simplefilter("ignore")
                    importlib.import_module(name)
                imported += 1
                errors.pop(name, None)
            except BaseException as exc:  # noqa: BLE001 - report every kind of failure
                first = (str(exc).splitlines() or [""])[0]
                errors[name] = f"{name}: {type(exc).__name__}: {first}"
    failed = list(errors.values())
    say(f"modules: {imported} of {len(modules)} imported, {len(failed)} failed, "
        f"{sum(map(len, skipped.values()))} not expected in the bundle")
    virtual = data.get("virtual_modules", {})
    if virtual:  # in sys.modules from source, but made by code, not imported from a file
        say(f"  not imported by name ({len(virtual)} made at run time by the packages "
            f"above, or other names for them; reasons in the manifest): "
            + ", ".join(list(virtual)[:12]) + (" ..." if len(virtual) > 12 else ""))
    for reason, items in skipped.items():
        say(f"  not checked ({reason}): {', '.join(items)}")
    for line in failed:
        say(f"  MISSING module {line}")

    def names(items: list[str]) -> str:
        return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")

    def look(entries: list[str], what: str, label: str, exists,
             not_needed: dict[str, str]) -> list[str]:
        """Check one list of "area:path" entries; return the missing ones."""
        missing: list[str] = []
        excused: dict[str, list[str]] = {}
        for entry, reason in not_needed.items():  # decided by the recorder
            excused.setdefault(reason, []).append(entry)
        checked = 0
        for entry in entries:
            area, rel = entry.split(":", 1)
            reason = not_frozen_reason(entry, FILES_NOT_FROZEN)
            if reason:
                excused.setdefault(reason, []).append(entry)
                continue
            checked += 1
            if not exists(bases[area] / rel):
                missing.append(entry)
        say(f"{what}: {checked - len(missing)} of {checked} present, {len(missing)} missing"
            + (f", {sum(map(len, excused.values()))} not expected in the bundle"
               if excused else ""))
        for reason, items in excused.items():
            say(f"  not checked ({reason}): {names(items)}")
        for entry in missing:
            area, rel = entry.split(":", 1)
            say(f"  MISSING {label} {entry} (looked for {bases[area] / rel})")
        return missing

    missing = look(data["files"], "data files", "file", Path.is_file,
                   data.get("files_not_needed", {}))
    # Python sources that a package reads as text at run time (transformers parses its own
    # sources to build its lazy import table; TorchScript reads function sources).
    sources_missing = look(data.get("source_reads", []), "sources read as text", "source",
                           Path.is_file, data.get("sources_not_needed", {}))
    dirs_missing = look(data.get("dirs", []), "folders listed", "folder", Path.is_dir, {})
    bad = len(failed) + len(missing) + len(sources_missing) + len(dirs_missing)
    took = time.perf_counter() - started
    if bad:
        say(f"check-bundle FAILED: {len(failed)} modules, {len(missing)} data files, "
            f"{len(sources_missing)} sources and {len(dirs_missing)} folders missing "
            f"({took:.1f} s)")
        return 1
    say(f"check-bundle passed: every module imports, every data file is there ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: folio_bundle_check.py MANIFEST.json")
    # From source, check this checkout's app/ (as session_manifest.py records it), not
    # whichever one a development venv's editable install points at.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(check(sys.argv[1]))
