"""The `folio` CLI contract: JSON shapes and exit codes other tools depend on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docgen import make_docx, make_pdf

from app.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "boats.pdf", [
        "Sailing basics. Always wear a life jacket when you are on deck.",
        "Anchoring. Let out chain five times the depth of the water before setting the anchor.",
    ], toc=[[1, "Basics", 1], [1, "Anchoring", 2]])
    make_docx(folder / "crew.docx", {"Roster": ["Ana cooks on Mondays; Ben cooks on Fridays."]})
    return folder


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_search_docs_json(capsys, docs, library_dir):
    lib = ["--library", str(library_dir)]
    code, out, _ = cli(capsys, "ingest", *lib, "--json", str(docs))
    assert code == 0
    summary = json.loads(out)
    assert {"files", "ingested", "skipped", "failed", "pages", "chunks", "seconds"} <= set(summary)
    assert summary["files"] == 2 and summary["ingested"] == 2 and summary["failed"] == []
    assert summary["pages"] == 2 and summary["chunks"] >= 3

    code, out, _ = cli(capsys, "search", *lib, "--json", "--k", "3",
                       "how much chain should I let out before anchoring?")
    assert code == 0
    results = json.loads(out)
    assert 1 <= len(results) <= 3
    best = results[0]
    assert {"path", "page", "section", "score", "text"} <= set(best)
    assert best["path"] == str(docs / "boats.pdf") and Path(best["path"]).is_absolute()
    assert best["page"] == 2 and isinstance(best["page"], int)
    assert "Anchoring" in best["section"]
    assert results == sorted(results, key=lambda r: -r["score"])

    code, out, _ = cli(capsys, "docs", "list", *lib, "--json")
    listed = {Path(d["path"]).name: d for d in json.loads(out)}
    assert set(listed) == {"boats.pdf", "crew.docx"}
    for d in listed.values():
        assert {"path", "status", "pages", "chunks", "error", "collections"} <= set(d)
    assert listed["boats.pdf"]["status"] == "ready" and listed["boats.pdf"]["pages"] == 2

    code, out, _ = cli(capsys, "docs", "remove", *lib, str(docs / "crew.docx"))
    assert code == 0
    code, out, _ = cli(capsys, "docs", "list", *lib, "--json")
    assert [Path(d["path"]).name for d in json.loads(out)] == ["boats.pdf"]


def test_ingest_exit_code_1_when_some_fail(capsys, docs, library_dir):
    (docs / "bad.docx").write_bytes(os.urandom(2048))
    code, out, _ = cli(capsys, "ingest", "--library", str(library_dir), "--json", str(docs))
    assert code == 1
    summary = json.loads(out)
    assert summary["ingested"] == 2
    assert [Path(f["path"]).name for f in summary["failed"]] == ["bad.docx"]
    assert summary["failed"][0]["reason"]


def test_usage_errors_exit_2(capsys, library_dir):
    with pytest.raises(SystemExit) as err:
        main(["ingest", "--no-such-flag"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["search"])
    assert err.value.code == 2
    code, _, err_text = cli(capsys, "search", "--library", str(library_dir), "--k", "0", "q")
    assert code == 2 and "--k" in err_text


def test_collection_scope(capsys, docs, library_dir):
    lib = ["--library", str(library_dir)]
    cli(capsys, "ingest", *lib, "--collection", "sea", str(docs / "boats.pdf"))
    cli(capsys, "ingest", *lib, "--collection", "home", str(docs / "crew.docx"))
    code, out, _ = cli(capsys, "search", *lib, "--json", "--collection", "home", "anchor")
    assert all(r["path"].endswith("crew.docx") for r in json.loads(out))
    code, out, _ = cli(capsys, "collections", *lib, "--json")
    assert json.loads(out) == [{"name": "home", "documents": 1}, {"name": "sea", "documents": 1}]


def test_library_from_environment(capsys, docs, tmp_path, monkeypatch):
    target = tmp_path / "env-lib"
    monkeypatch.setenv("FOLIO_LIBRARY", str(target))
    code, _, _ = cli(capsys, "ingest", "--json", str(docs / "crew.docx"))
    assert code == 0
    assert (target / "lancedb").is_dir()


def test_folio_command_in_a_real_process(docs, library_dir):
    """The entry point as a user runs it: a new process, offline, JSON on stdout only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "app", "ingest", "--library", str(library_dir), "--json",
         str(docs)], capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["ingested"] == 2
    run = subprocess.run(
        [sys.executable, "-m", "app", "search", "--library", str(library_dir), "--json",
         "life jacket"], capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["page"] == 1
    # With no command `folio` opens the window (tests/test_ui_window.py); --help still prints.
    run = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0 and "ingest" in run.stdout


def test_reindex_with_another_embedder_folder(capsys, docs, library_dir, embedder, tmp_path):
    """A library built by one embedder refuses another until re-indexed with it; a model
    given as a folder is found again when the library is reopened."""
    import shutil

    other = tmp_path / "my-embedder"
    shutil.copytree(embedder.spec.path, other)
    lib = ["--library", str(library_dir)]
    assert cli(capsys, "ingest", *lib, "--json", str(docs))[0] == 0
    code, out, _ = cli(capsys, "reindex", *lib, "--json", "--embedder", str(other))
    assert code == 0 and json.loads(out)["ingested"] == 2
    meta = json.loads((library_dir / "library.json").read_text())
    assert meta["embedder"] == "my-embedder" and meta["embedder_source"] == str(other)
    code, out, _ = cli(capsys, "search", *lib, "--json", "life jacket")
    assert code == 0 and json.loads(out)[0]["page"] == 1
    listed = json.loads(cli(capsys, "docs", "list", *lib, "--json")[1])
    assert {d["embedder"] for d in listed} == {"my-embedder"}
    code, _, err = cli(capsys, "reindex", *lib, "--embedder", "no-such-model")
    assert code == 2 and "Unknown embedder" in err


def test_ingest_time_limit(capsys, docs, library_dir):
    from app.cli.common import file_time_limit as _file_time_limit
    from app.core.settings import AppSettings

    lib = ["--library", str(library_dir)]
    code, out, _ = cli(capsys, "ingest", *lib, "--json", "--time-limit", "0.000001",
                       str(docs / "boats.pdf"), str(docs / "crew.docx"))
    summary = json.loads(out)
    assert code == 1 and summary["ingested"] == 0
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {"boats.pdf", "crew.docx"}
    assert all("took longer than" in r for r in reasons.values())
    # Without the flag the user's setting applies, and the files ingest.
    AppSettings(file_time_limit=120).save()
    assert _file_time_limit() == 120.0
    code, out, _ = cli(capsys, "ingest", *lib, "--json", str(docs))
    assert code == 0 and json.loads(out)["ingested"] == 2
    code, _, err = cli(capsys, "ingest", *lib, "--time-limit", "0", str(docs))
    assert code == 2 and "--time-limit" in err


def test_info_names_the_llama_cpp_builds_cpu_features(capsys, library_dir):
    """A portable build: AVX2, never AVX-512 or AMX (those crash or are missing on some
    users' CPUs)."""
    code, out, _ = cli(capsys, "info", "--library", str(library_dir), "--json")
    assert code == 0
    build = json.loads(out)["llama_cpp"]
    features = build["cpu_features"].split()
    assert build["version"] and "AVX2" in features and "FMA" in features
    assert not [f for f in features if f.startswith(("AVX512", "AMX"))]


def test_ingest_past_the_ann_threshold_leaves_the_vector_index_built(
        capsys, tmp_path, library_dir, monkeypatch):
    """The index is built in a background thread; the command waits for it before exiting,
    or the process would end with the build half done (tests/test_scale.py has the rest)."""
    from app.core.index.library import Library

    monkeypatch.setenv("FOLIO_ANN_THRESHOLD", "300")
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(
        f"Note {i}. The {['red', 'green', 'blue'][i % 3]} valve number {i} was checked on day "
        f"{i % 31} and its pressure read {i * 7 % 101} units." for i in range(360)))
    code, out, err = cli(capsys, "ingest", "--library", str(library_dir), "--chunk-tokens",
                         "40", "--overlap-tokens", "0", str(notes))
    assert code == 0, err
    lib = Library.open(library_dir, read_only=True)
    stats = lib.index_stats()
    assert lib.chunk_count() >= 300 and stats is not None
    assert stats.num_indexed_rows == lib.chunk_count()
    assert "building the vector search index" in err
