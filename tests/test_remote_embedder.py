"""A provider's embedder model as the library's embedder (`provider:NAME`,
app/core/llm/remote_embedder.py, registered by app/core/settings.py), against a real OpenAI-compatible server: Folio's own
`folio serve`, whose /v1/embeddings answers with the packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
from docgen import make_pdf
from serverproc import API_KEY, ServeProcess

from app.cli import main
from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import EmbedderMismatch, Library
from app.core.index.search import hybrid_search
from app.core.llm import remote
from app.core.llm.remote import ProviderConfig, RemoteError
from app.core.settings import AppSettings

pytestmark = pytest.mark.slow

NAME = "embedbox"
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("embed-serve")
    (home / "library").mkdir()
    proc = ServeProcess(home, "--api-key", API_KEY)
    yield proc
    proc.stop()


@pytest.fixture
def provider(server, folio_home):
    """The provider in this test's Settings, its key for this session only."""
    settings = AppSettings.load()
    settings.add_provider(ProviderConfig(NAME, server.url, "folio", embedder_model=MODEL))
    settings.save()
    remote.session_key(NAME, API_KEY)
    yield f"provider:{NAME}"
    remote._session_keys.pop(NAME, None)


def _docs(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "bread.pdf": ["Sourdough bread needs a starter fed with flour and water every day."],
        "boats.pdf": ["Let out chain five times the depth of the water before anchoring."],
        "bees.pdf": ["A beehive needs an entrance that faces away from the wind."],
    }
    for name in names:
        make_pdf(folder / name, texts[name])
    return folder


def _ingest(lib, *paths):
    return list(ingest(lib, list(paths), IngestOptions()))


def test_a_library_embedded_by_a_provider_searches_and_reopens(provider, tmp_path, embedder):
    docs = _docs(tmp_path / "docs", "bread.pdf", "boats.pdf")
    root = tmp_path / "lib"
    lib = Library.open(root, new_embedder=provider)
    assert lib.embedder_name == f"provider:{NAME}/{MODEL}"
    _ingest(lib, docs)
    assert lib.meta["dims"] == 384 and lib.meta["embedder_source"] == provider
    hits = hybrid_search(lib, "how deep should the anchor chain go?", k=1)
    assert hits and hits[0].path.endswith("boats.pdf")
    # The server's vectors are the packaged MiniLM's: the same passages, the same vectors.
    text = "Sourdough bread needs a starter."
    here = embedder.embed_documents([text])[0]
    there = lib.embedder.embed_documents([text])[0]
    assert there.dtype == np.float32 and abs(float(np.linalg.norm(there)) - 1) < 1e-5
    assert float(here @ there) > 0.999
    lib.close()

    again = Library.open(root)  # the source is recorded: no embedder named on reopening
    hits = hybrid_search(again, "feeding a sourdough starter", k=1)
    assert hits and hits[0].path.endswith("bread.pdf")
    again.close()


def test_a_changed_embedder_model_is_a_mismatch_not_mixed_vectors(provider, tmp_path):
    root = tmp_path / "lib"
    lib = Library.open(root, new_embedder=provider)
    _ingest(lib, _docs(tmp_path / "docs", "bread.pdf"))
    lib.close()
    settings = AppSettings.load()
    config = settings.find_provider(NAME)
    settings.add_provider(ProviderConfig(NAME, config.base_url, "folio",
                                         embedder_model="another-model"))
    settings.save()
    again = Library.open(root)
    with pytest.raises(EmbedderMismatch, match="another-model"):
        hybrid_search(again, "sourdough", k=1)
    again.close()


def test_a_provider_without_an_embedder_model_says_what_to_do(folio_home, tmp_path, server):
    settings = AppSettings.load()
    settings.add_provider(ProviderConfig("chatonly", server.url, "folio"))
    settings.save()
    with pytest.raises(ValueError, match="has no embedder model.*--embedder-model"):
        Library.open(tmp_path / "lib", new_embedder="provider:chatonly")


def _move(name: str, url: str) -> None:
    settings = AppSettings.load()
    settings.add_provider(ProviderConfig(name, url, "folio", embedder_model=MODEL))
    settings.save()


def test_a_provider_gone_mid_ingest_fails_the_file_and_keeps_the_library(provider, tmp_path,
                                                                         server):
    """A refused connection while indexing: the run stops with the provider's reason, the new
    file shows failed with it, what the library held is still there, and once the provider
    answers again the file is added."""
    root = tmp_path / "lib"
    lib = Library.open(root, new_embedder=provider)
    _ingest(lib, _docs(tmp_path / "docs", "bread.pdf"))
    lib.close()
    before = Library.open(root).chunk_count()

    _move(NAME, "http://127.0.0.1:9/v1")  # the same provider, its server not there now
    lib = Library.open(root)
    more = _docs(tmp_path / "more", "bees.pdf")
    events = []
    with pytest.raises(RemoteError, match=NAME):
        for ev in ingest(lib, [more], IngestOptions()):
            events.append(ev)
    failed = [e for e in events if e.kind == "file" and e.status == "failed"]
    assert [e.path for e in failed] == [str(more / "bees.pdf")]
    assert NAME in failed[0].message and "continues from where it stopped" in failed[0].message
    assert lib.get(more / "bees.pdf").status == "failed"
    assert [d.name for d in lib.documents() if d.status == "ready"] == ["bread.pdf"]
    assert lib.chunk_count() == before
    lib.close()

    _move(NAME, server.url)
    lib = Library.open(root)
    _ingest(lib, more)
    hits = hybrid_search(lib, "which way should a hive's entrance face?", k=1)
    assert hits and hits[0].path.endswith("bees.pdf")
    lib.close()


def test_cli_reindex_with_a_provider_embedder_checks_it_first(provider, folio_home, tmp_path,
                                                                capsys, embedder):
    root = tmp_path / "lib"
    lib = Library.open(root, embedder)  # built here, with the packaged MiniLM
    _ingest(lib, _docs(tmp_path / "docs", "bread.pdf", "bees.pdf"))
    lib.close()

    settings = AppSettings.load()
    settings.add_provider(ProviderConfig("gone", "http://127.0.0.1:9/v1", "folio",
                                         embedder_model=MODEL))
    settings.save()
    assert main(["reindex", "--library", str(root), "--embedder", "provider:gone"]) == 2
    err = capsys.readouterr().err
    assert "folio reindex:" in err and "gone" in err
    kept = Library.open(root)  # nothing was dropped: the old vectors still answer
    assert kept.embedder_name == MODEL and kept.chunk_count() > 0
    kept.close()

    assert main(["reindex", "--library", str(root), "--embedder", provider]) == 0
    assert f"with provider:{NAME}/{MODEL}" in capsys.readouterr().out
    again = Library.open(root)
    assert again.embedder_name == f"provider:{NAME}/{MODEL}"
    hits = hybrid_search(again, "where should the hive entrance face?", k=1)
    assert hits and hits[0].path.endswith("bees.pdf")
    again.close()

    assert main(["embedders", "list"]) == 0
    assert f"provider:{NAME}  remote  {MODEL} at {settings.find_provider(NAME).base_url}" \
        in capsys.readouterr().out
