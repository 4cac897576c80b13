"""What the package must carry: the data-file scan the spec uses (packaging/runtime_data.py),
the session recorder (packaging/session_manifest.py) and the bundle check the frozen app runs
(packaging/folio_bundle_check.py, `folio --check-bundle`), all from source. The check against
the built package itself is in tests/test_packaged.py (opt-in) and packaging/verify.sh.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

import folio_bundle_check  # noqa: E402
import runtime_data  # noqa: E402


def test_scan_collects_the_kernels_dependency_table():
    """transformers imports kernels, which reads this file at run time: the bug that failed
    the installed package's ingest."""
    found = {f.dest: f for f in runtime_data.scan({"kernels"})}
    table = found["kernels/_internals/python_depends.json"]
    assert table.why_not is None
    assert table.src.is_file()
    assert not any(d.endswith((".py", ".so", ".pyi")) for d in found)


@pytest.mark.parametrize("dest, why", [
    ("torch/include/ATen/core/Tensor.h", "build-time"),
    ("pyarrow/lib.pyx", "build-time"),
    ("numpy/_core/lib/libnpymath.a", "build-time"),
    ("pymupdf/layout/resources/onnx/feature_imf1.onnx", "onnxruntime"),
    ("PySide6/Qt/metatypes/qt6core_relwithdebinfo_metatypes.json", "moc"),
    ("scipy/stats/tests/data/x.npz", "tests"),
])
def test_scan_leaves_out_what_no_one_reads_at_run_time(tmp_path, dest, why):
    src = tmp_path / "f"
    src.write_bytes(b"data")
    reason = runtime_data.classify(PurePosixPath(dest), src)
    assert reason and why in reason, reason


def test_scan_keeps_data_and_calls_programs_programs(tmp_path):
    data = tmp_path / "native_functions.yaml"
    data.write_text("x: 1")
    assert runtime_data.classify(PurePosixPath("torchgen/packaged/x.yaml"), data) is None
    prog = tmp_path / "designer"
    prog.write_bytes(b"\x7fELF" + b"\0" * 60)
    assert runtime_data.classify(PurePosixPath("PySide6/designer"), prog) == runtime_data.PROGRAM


def test_metadata_of_bundled_distributions_is_listed():
    dists = runtime_data.distributions_of({"kernels", "tabulate"})
    dests = {d for d, _ in runtime_data.metadata_files(dists)}
    assert any(d.startswith("kernels-") and d.endswith(".dist-info/METADATA") for d in dests)
    assert any(d.startswith("tabulate-") and d.endswith(".dist-info/METADATA") for d in dests)


def _manifest(tmp_path, **over) -> Path:
    data = {"recorded": "test", "python": sys.version.split()[0],
            "modules": ["json", "kernels", "__editable___folio_0_1_0_finder"],
            "virtual_modules": {"os.path": "another name for posixpath"},
            "files": ["site:kernels/_internals/python_depends.json"],
            "files_not_needed": {"site:pytest-0.dist-info/entry_points.txt": "not bundled"},
            "source_reads": [], "sources_not_needed": {},
            "dirs": ["site:kernels/_internals"]}
    data.update(over)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_bundle_check_passes_from_source_and_names_what_it_skips(tmp_path, capsys):
    assert folio_bundle_check.check(_manifest(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "modules: 2 of 3 imported, 0 failed, 1 not expected" in out
    assert "editable-install finder" in out  # skipped with its reason, not silently
    assert "os.path" in out and "data files: 1 of 1 present" in out
    assert "check-bundle passed" in out


def test_bundle_check_fails_on_a_missing_module_file_or_folder(tmp_path, capsys):
    path = _manifest(tmp_path, modules=["json", "folio_no_such_module"],
                     files=["site:kernels/_internals/no_such.json"],
                     dirs=["site:kernels/no_such_folder"])
    assert folio_bundle_check.check(path) == 1
    out = capsys.readouterr().out
    assert "MISSING module folio_no_such_module: ModuleNotFoundError" in out
    assert "MISSING file site:kernels/_internals/no_such.json" in out
    assert "MISSING folder site:kernels/no_such_folder" in out
    assert "check-bundle FAILED: 1 modules, 1 data files, 0 sources and 1 folders" in out


def test_recorder_records_imports_data_files_and_source_reads(tmp_path):
    """The audit hook in a fresh interpreter: a data file opened inside site-packages, a
    module imported, a source read as text by a package (not by the import system)."""
    log = tmp_path / "rec.jsonl"
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "packaging")!r})
import session_manifest as sm
rec = sm.Recorder(__import__("pathlib").Path({str(log)!r}), "test")
rec.install()
import kernels._internals.python_deps as pd
pd_file = __import__("pathlib").Path(pd.__file__)
open(pd_file.with_name("python_depends.json")).read()
import inspect, anyio
inspect.getsource(anyio)
import csv
rec.finish()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    virtual: dict = {}
    events, kinds, loaded = __import__("session_manifest")._read(log, virtual)
    assert "csv" in events and "csv" in loaded
    assert "site:kernels/_internals/python_depends.json" in kinds["file"]
    assert any(s.startswith("site:anyio/__init__.py\t") for s in kinds["source"]), kinds["source"]
    assert not any(f.endswith((".py", ".pyc")) for f in kinds["file"])


@pytest.mark.slow
def test_a_real_session_is_recorded_and_passes_from_source(tmp_path):
    """The whole recorder: CLI ingest/search/ask and the window, with the model-host child
    recorded too; then the checker, from source, must pass on it."""
    out = tmp_path / "manifest.json"
    run = subprocess.run([sys.executable, str(ROOT / "packaging" / "session_manifest.py"),
                          "--out", str(out)], capture_output=True, text=True, timeout=900,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    m = json.loads(out.read_text())
    assert m["model_host_children"] >= 1
    assert "llama_cpp.llama" in m["modules"]  # imported only in the model-host child
    assert "app.ui.main_window" in m["modules"] and "app.core.index.ingest" in m["modules"]
    assert "site:kernels/_internals/python_depends.json" in m["files"]
    assert "root:resources/prompts/system.j2" in m["files"]
    check = subprocess.run([sys.executable, str(ROOT / "packaging" / "folio_bundle_check.py"),
                            str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]


def _spec_hidden_imports() -> tuple[set[str], set[str]]:
    """The modules packaging/folio.spec names in `hiddenimports` and the packages it passes
    to `collect_submodules`, read from the spec with `ast` (it cannot run outside PyInstaller)."""
    import ast

    tree = ast.parse((ROOT / "packaging" / "folio.spec").read_text("utf-8"))
    named: set[str] = set()
    collected: set[str] = set()
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AugAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "hiddenimports":
            for sub in ast.walk(value):
                if isinstance(sub, ast.Call) and getattr(sub.func, "id", "") == \
                        "collect_submodules":
                    collected.add(sub.args[0].value)
                elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    named.add(sub.value)
    return named, collected - {None}


def _uvicorn_string_imports() -> set[str]:
    """Every module uvicorn imports from a string: the "module:attr" values of its config
    tables, the "()" factories of its logging config, and any such literal in config.py."""
    import re

    import uvicorn.config as config

    strings: list[str] = []
    for name in ("HTTP_PROTOCOLS", "WS_PROTOCOLS", "LIFESPAN", "LOOP_FACTORIES",
                 "LOOP_SETUPS"):
        strings += [v for v in getattr(config, name, {}).values() if isinstance(v, str)]
    modules = {s.partition(":")[0] for s in strings}
    for formatter in config.LOGGING_CONFIG.get("formatters", {}).values():
        if "()" in formatter:
            modules.add(formatter["()"].rpartition(".")[0])
    source = Path(config.__file__).read_text("utf-8")
    modules |= set(re.findall(r'"(uvicorn(?:\.\w+)+):\w+"', source))
    return modules


def test_the_spec_carries_what_uvicorn_and_anyio_import_by_name():
    """`folio serve` in the bundle: uvicorn finds its protocol, loop, lifespan and logging
    classes by name, anyio its backend; PyInstaller's analysis sees neither."""
    named, collected = _spec_hidden_imports()

    def covered(module: str) -> bool:
        return module in named or any(module == p or module.startswith(p + ".")
                                      for p in collected)

    wanted = _uvicorn_string_imports()
    assert {"uvicorn.protocols.http.auto", "uvicorn.protocols.http.h11_impl",
            "uvicorn.loops.auto", "uvicorn.lifespan.on", "uvicorn.logging"} <= wanted
    assert [m for m in sorted(wanted) if not covered(m)] == []
    import anyio._core._eventloop as eventloop

    assert 'import_module(f"anyio._backends._{' in Path(eventloop.__file__).read_text("utf-8")
    assert covered("anyio._backends._asyncio")
