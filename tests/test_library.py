"""The LanceDB store: atomic replacement, recovery after a crash, scopes, embedder identity."""

from __future__ import annotations

import json

import pytest

from app.core.index.library import (
    FAILED,
    INDEXING,
    READY,
    REMOVING,
    DocumentRecord,
    EmbedderMismatch,
    Library,
    doc_id_for,
)
from app.core.documents.base import Chunk
from app.core.index.search import hybrid_search


def make_chunks(texts, page=1):
    return [
        Chunk(text=t, index=i, page=page + i, page_end=page + i, section=("Intro",),
              char_start=0, char_end=len(t), tokens=len(t.split()), context="Doc > Intro")
        for i, t in enumerate(texts)
    ]


def add_doc(lib, path, texts, version="v1", collections=(), publish=True):
    doc = lib.get(path) or DocumentRecord(doc_id=doc_id_for(path), path=str(path), name=path.name)
    doc.collections = list(collections)
    doc.status, doc.pending_version, doc.title = INDEXING, version, path.stem
    lib.put_document(doc)
    chunks = make_chunks(texts)
    lib.stage_chunks([(doc.doc_id, version, c) for c in chunks],
                     lib.embedder.embed_documents([c.embed_text for c in chunks]))
    if publish:
        lib.publish([(doc, version, len(chunks))])
    return doc


def texts_in(lib, query="", k=50):
    return sorted(r.text for r in hybrid_search(lib, query or "the", k=k, mode="vector"))


def test_new_library_records_its_embedder(library_dir, hash_embedder):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, library_dir.parent / "a.txt", ["alpha beta"])
    meta = json.loads((library_dir / "library.json").read_text())
    assert meta["embedder"] == "hash-test-embedder"
    assert meta["dims"] == 64
    assert (library_dir / "lancedb").is_dir()


def test_switching_embedder_asks_for_reindex(library_dir, hash_embedder):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, library_dir.parent / "a.txt", ["alpha beta"])
    with pytest.raises(EmbedderMismatch) as err:
        Library.open(library_dir, embedder_name="all-mpnet-base-v2")
    assert "re-index" in str(err.value).lower()
    assert "hash-test-embedder" in str(err.value)


def test_staged_chunks_are_invisible_until_published(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    doc = add_doc(lib, tmp_path / "a.txt", ["apples grow on trees"], publish=False)
    assert hybrid_search(lib, "apples", k=5) == []
    lib.publish([(doc, "v1", 1)])
    hits = hybrid_search(lib, "apples", k=5)
    assert [h.text for h in hits] == ["apples grow on trees"]
    assert lib.get(tmp_path / "a.txt").status == READY


def test_replacing_a_document_never_shows_both_versions(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    path = tmp_path / "a.txt"
    add_doc(lib, path, ["old apples text", "old pears text"], version="v1")
    # The new version is staged: searches still see exactly the old one.
    doc = add_doc(lib, path, ["new apples text"], version="v2", publish=False)
    assert texts_in(lib, "apples text") == ["old apples text", "old pears text"]
    lib.publish([(doc, "v2", 1)])
    assert texts_in(lib, "apples text") == ["new apples text"]
    # and the old version's rows are gone, not merely hidden
    assert lib.chunk_count(live_only=False) == 1


def test_remove_deletes_chunks(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    a = add_doc(lib, tmp_path / "a.txt", ["apples"])
    add_doc(lib, tmp_path / "b.txt", ["bananas"])
    lib.remove(a)
    assert [d.name for d in lib.documents()] == ["b.txt"]
    assert texts_in(lib, "apples") == ["bananas"]
    assert lib.chunk_count(live_only=False) == 1


def test_recover_finishes_interrupted_removal(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    doc = add_doc(lib, tmp_path / "a.txt", ["apples"])
    doc.status = REMOVING  # the process died right after marking it
    lib.put_document(doc)
    lib2 = Library.open(library_dir, hash_embedder)
    assert lib2.documents() == []
    assert lib2.chunk_count(live_only=False) == 0


def test_recover_completes_publish_that_died_before_the_document_row(
    library_dir, hash_embedder, tmp_path
):
    lib = Library.open(library_dir, hash_embedder)
    path = tmp_path / "a.txt"
    add_doc(lib, path, ["old text"], version="v1")
    doc = add_doc(lib, path, ["new text", "more new text"], version="v2", publish=False)
    # Simulate a crash between the `live` flip and the document update.
    lib.chunks_table().update(where=f"doc_id = '{doc.doc_id}'", values_sql={"live": "version = 'v2'"})
    lib2 = Library.open(library_dir, hash_embedder)
    rec = lib2.get(path)
    assert rec.status == READY and rec.version == "v2" and rec.chunks == 2
    assert texts_in(lib2, "text") == ["more new text", "new text"]
    assert lib2.chunk_count(live_only=False) == 2


def test_recover_drops_orphan_chunks_and_keeps_resumable_ones(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    kept = add_doc(lib, tmp_path / "a.txt", ["kept text"])
    resumable = add_doc(lib, tmp_path / "b.txt", ["half done"], version="v9", publish=False)
    # chunks of a document whose row never got written
    orphan = make_chunks(["orphan text"])
    lib.stage_chunks([("no-such-doc", "v1", orphan[0])], lib.embedder.embed_documents(["x"]))
    lib2 = Library.open(library_dir, hash_embedder)
    assert lib2.chunk_count(live_only=False) == 2
    assert lib2.staged_indices(resumable.doc_id, "v9") == {0}
    assert lib2.get(tmp_path / "a.txt").chunks == kept.chunks


def test_scope_by_collection_and_document(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "a.txt", ["shared words apples"], collections=["fruit"])
    add_doc(lib, tmp_path / "b.txt", ["shared words bolts"], collections=["tools"])
    add_doc(lib, tmp_path / "c.txt", ["shared words cherries"], collections=["fruit", "red"])
    fruit = hybrid_search(lib, "shared words", k=10, collections=["fruit"])
    assert sorted(r.text for r in fruit) == ["shared words apples", "shared words cherries"]
    only_b = hybrid_search(lib, "shared words", k=10, documents=[str(tmp_path / "b.txt")])
    assert [r.text for r in only_b] == ["shared words bolts"]
    assert hybrid_search(lib, "shared words", k=10, collections=["nothing"]) == []
    assert lib.collections() == {"fruit": 2, "red": 1, "tools": 1}


def test_search_result_fields(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "a.txt", ["first page text", "second page apples"])
    lib.optimize()
    [hit] = hybrid_search(lib, "apples", k=1)
    assert hit.path == str(tmp_path / "a.txt")
    assert hit.page == 2 and hit.section == "Intro" and hit.text == "second page apples"
    assert hit.score > 0
    data = hit.to_json()
    assert {"path", "page", "section", "score", "text"} <= data.keys()


def test_fts_and_vector_modes(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "a.txt", ["the fminsearch function minimises", "plots and axes"])
    lib.optimize()
    assert hybrid_search(lib, "fminsearch", k=1, mode="fts")[0].text.startswith("the fminsearch")
    assert hybrid_search(lib, "plots axes", k=1, mode="vector")[0].text == "plots and axes"
    with pytest.raises(ValueError):
        hybrid_search(lib, "x", mode="nonsense")


def test_fts_handles_query_syntax_characters(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "a.txt", ["x^2 + y^2 AND (z) \"quoted\""])
    lib.optimize()
    assert hybrid_search(lib, 'what is "x^2" AND (z)? OR NOT: -', k=3)


def test_mmr_prefers_variety(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "a.txt", [
        "apples apples red fruit", "apples apples red fruit tree", "apples green orchard soil",
    ])
    lib.optimize()
    plain = [r.text for r in hybrid_search(lib, "apples red fruit", k=2)]
    diverse = [r.text for r in hybrid_search(lib, "apples red fruit", k=2, mmr=True,
                                              mmr_lambda=0.1)]  # diversity first
    assert plain[0] == diverse[0]
    assert "apples green orchard soil" in diverse and "apples green orchard soil" not in plain


def test_optimize_keeps_versions_from_piling_up(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    for i in range(6):
        add_doc(lib, tmp_path / f"d{i}.txt", [f"text number {i}"])
    lib.optimize()
    assert len(lib.chunks_table().list_versions()) <= 2
    assert lib.chunk_count() == 6
    assert len(hybrid_search(lib, "text number", k=10)) == 6


def test_failed_update_keeps_the_old_version_searchable(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    path = tmp_path / "a.txt"
    doc = add_doc(lib, path, ["precious content"])
    doc.status, doc.error = FAILED, "the file is not a valid PDF"
    lib.put_document(doc)
    lib2 = Library.open(library_dir, hash_embedder)
    assert [r.text for r in hybrid_search(lib2, "precious", k=3)] == ["precious content"]
