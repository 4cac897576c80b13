"""Search at scale: the approximate vector index Folio builds past a size threshold (in the
background, after an ingest publishes), kept current as documents come and go, and the
full-text index updated in place rather than rebuilt. Small libraries with the threshold
lowered (FOLIO_ANN_THRESHOLD) stand in for large ones; the speed is benchmarks/bench_scale.py's.
"""

from __future__ import annotations

import random
import threading

import pytest

from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import FTS_INDEX, Library
from app.core.index.search import hybrid_search
from tests.test_library import add_doc

THRESHOLD = 600
WORDS = ("matrix plot vector function value array string file default option error axis "
         "legend figure solve linear sparse cell struct loop index window print format").split()


def texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(8)) + f" w{seed}x{i}" for i in range(n)]


def fill(lib: Library, tmp_path, docs: int, per_doc: int = 100, start: int = 0) -> None:
    for d in range(start, start + docs):
        add_doc(lib, tmp_path / f"doc{d}.txt", texts(d, per_doc))


class CreateIndexSpy:
    """Counts the chunks table's create_index calls (LanceDB's own runs underneath) and can
    hold the vector index build at its start until released, so a test can look at the
    library while the build is in flight."""

    def __init__(self, table, monkeypatch, hold: bool = False):
        self.calls: list[str] = []
        self.started, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        real = table.create_index

        def create_index(column, *args, **kwargs):
            self.calls.append(column)
            if column == "vector":
                self.started.set()
                assert self.release.wait(120), "the test never released the index build"
            return real(column, *args, **kwargs)

        monkeypatch.setattr(table, "create_index", create_index)


@pytest.fixture
def lowered(monkeypatch):
    monkeypatch.setenv("FOLIO_ANN_THRESHOLD", str(THRESHOLD))


def exact_similarities(lib: Library, vector, k: int) -> list[float]:
    rows = (lib.chunks_table().search(vector, vector_column_name="vector")
            .distance_type("cosine").bypass_vector_index()
            .where("live = true", prefilter=True).limit(k).select(["id", "_distance"])
            .to_list())
    return [round(1 - r["_distance"], 4) for r in rows]


def test_the_vector_index_is_built_in_the_background_past_the_threshold(
        lowered, library_dir, hash_embedder, tmp_path, monkeypatch):
    lib = Library.open(library_dir, hash_embedder)
    assert lib.ann_threshold == THRESHOLD
    fill(lib, tmp_path, 5)  # 500 passages: below the threshold
    lib.optimize()
    assert not lib.indexing() and lib.index_stats() is None

    fill(lib, tmp_path, 3, start=5)  # 800: past it
    spy = CreateIndexSpy(lib.chunks_table(), monkeypatch, hold=True)
    lib.optimize()  # returns while the build is held at its start: it runs in the background
    assert spy.started.wait(60)
    assert lib.indexing() and lib.index_stats() is None
    query = hash_embedder.embed_query("sparse matrix solve")
    during = hybrid_search(lib, "sparse matrix solve", 5, mode="vector")  # exact meanwhile
    assert [round(r.similarity, 4) for r in during] == exact_similarities(lib, query, 5)

    spy.release.set()
    assert lib.wait_for_index(120)
    stats = lib.index_stats()
    assert lib.index_error is None
    assert stats.index_type == "IVF_SQ" and stats.distance_type == "cosine"
    assert stats.num_indexed_rows == 800 and lib.meta["ann_trained_rows"] == 800
    assert spy.calls == ["vector"]

    # With the index, the top hits are the exact ones (nprobes and refine_factor).
    for seed in range(8):
        question = " ".join(random.Random(seed).sample(WORDS, 4))
        got = hybrid_search(lib, question, 5, mode="vector")
        assert [round(r.similarity, 4) for r in got] == \
            exact_similarities(lib, hash_embedder.embed_query(question), 5), question


def test_the_index_follows_added_and_removed_documents_without_a_rebuild(
        lowered, library_dir, hash_embedder, tmp_path, monkeypatch):
    lib = Library.open(library_dir, hash_embedder)
    fill(lib, tmp_path, 8)
    lib.optimize()
    assert lib.wait_for_index(120) and lib.index_stats() is not None
    spy = CreateIndexSpy(lib.chunks_table(), monkeypatch)

    new = add_doc(lib, tmp_path / "new.txt", ["quaternion rotation gimbal lock avoided"])
    query = hash_embedder.embed_query("quaternion rotation gimbal lock avoided")
    assert lib.index_stats().num_unindexed_rows > 0  # not yet in the index: scanned beside it
    assert hybrid_search(lib, "quaternion gimbal", 1, query_vector=query)[0].doc_id == new.doc_id

    lib.optimize()  # as after an ingest: the new rows are folded into the index
    lib.wait_for_index(120)
    stats = lib.index_stats()
    assert stats.num_unindexed_rows == 0 and stats.num_indexed_rows >= 801
    assert hybrid_search(lib, "quaternion gimbal", 1, mode="vector",
                         query_vector=query)[0].doc_id == new.doc_id
    assert spy.calls == []  # updated, not built again

    lib.remove(new)
    lib.optimize()
    lib.wait_for_index(120)
    hits = hybrid_search(lib, "quaternion gimbal", 20, query_vector=query)
    assert hits and new.doc_id not in {h.doc_id for h in hits}
    assert spy.calls == []


def test_the_index_is_built_again_when_the_library_has_doubled_and_dropped_when_it_shrinks(
        lowered, library_dir, hash_embedder, tmp_path, monkeypatch):
    lib = Library.open(library_dir, hash_embedder)
    fill(lib, tmp_path, 7)
    lib.optimize()
    assert lib.wait_for_index(120) and lib.meta["ann_trained_rows"] == 700
    spy = CreateIndexSpy(lib.chunks_table(), monkeypatch)
    fill(lib, tmp_path, 8, start=7)  # 1,500 passages: more than twice what it was trained on
    lib.optimize()
    assert lib.wait_for_index(120)
    assert spy.calls == ["vector"] and lib.meta["ann_trained_rows"] == 1500
    query = hash_embedder.embed_query("legend figure axis")
    got = hybrid_search(lib, "legend figure axis", 5, mode="vector", query_vector=query)
    assert [round(r.similarity, 4) for r in got] == exact_similarities(lib, query, 5)

    for doc in lib.documents()[:13]:  # 200 passages left: below half the threshold
        lib.remove(doc)
    lib.optimize()
    assert lib.index_stats() is None and "ann_trained_rows" not in lib.meta
    assert len(hybrid_search(lib, "legend", 300, mode="vector")) == 200


def test_full_text_index_takes_new_documents_without_being_recreated(
        library_dir, embedder, tmp_path, monkeypatch):
    """Through the real ingest and the real embedder: the full-text index made by the first
    ingest takes the second one's words in place."""
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("The optimiser stops when the tolerance is reached.\n")
    second.write_text("Zanzibar ferries leave from the harbour at dawn.\n")
    lib = Library.open(library_dir, embedder)
    list(ingest(lib, [first], IngestOptions()))
    before = lib.index_stats(FTS_INDEX)
    assert before is not None and before.num_unindexed_rows == 0
    spy = CreateIndexSpy(lib.chunks_table(), monkeypatch)

    list(ingest(lib, [second], IngestOptions()))
    after = lib.index_stats(FTS_INDEX)
    assert spy.calls == []
    assert after.num_unindexed_rows == 0 and after.num_indexed_rows > before.num_indexed_rows
    hits = hybrid_search(lib, "Zanzibar", 3, mode="fts")
    assert hits and hits[0].path == str(second.resolve())

    # Between a publish and its optimize the new words are found too (scanned, not indexed).
    third = tmp_path / "third.txt"
    third.write_text("Quokkas smile for the camera.\n")
    list(ingest(lib, [third], IngestOptions(optimize=False)))
    assert lib.index_stats(FTS_INDEX).num_unindexed_rows > 0
    assert hybrid_search(lib, "Quokkas", 3, mode="fts")[0].path == str(third.resolve())
    assert spy.calls == []


def test_a_library_from_before_the_index_opens_and_searches_exactly(
        library_dir, hash_embedder, tmp_path, monkeypatch):
    lib = Library.open(library_dir, hash_embedder)
    fill(lib, tmp_path, 8)  # 800 passages under the default threshold: no index, as before
    lib.optimize()
    lib.close()
    assert lib.index_stats() is None and "ann_trained_rows" not in lib.meta

    monkeypatch.setenv("FOLIO_ANN_THRESHOLD", str(THRESHOLD))
    old = Library.open(library_dir, hash_embedder)
    query = hash_embedder.embed_query("string format print")
    got = hybrid_search(old, "string format print", 5, mode="vector", query_vector=query)
    assert old.index_stats() is None  # opening builds nothing; search is exact
    assert [round(r.similarity, 4) for r in got] == exact_similarities(old, query, 5)
    assert hybrid_search(old, "string format print", 5)
    old.optimize()  # its next ingest's optimize indexes it
    assert old.wait_for_index(120) and old.index_stats().num_indexed_rows == 800


def test_a_bad_threshold_setting_falls_back_to_the_default(monkeypatch, library_dir,
                                                           hash_embedder):
    from app.core.index.library import ANN_THRESHOLD

    monkeypatch.setenv("FOLIO_ANN_THRESHOLD", "lots")
    assert Library.open(library_dir, hash_embedder).ann_threshold == ANN_THRESHOLD



def test_closing_the_library_finishes_a_running_index_build_first(
        lowered, library_dir, hash_embedder, tmp_path, monkeypatch):
    """The write lock keeps other writers from compacting away the files the build reads, and
    a CLI command must not exit with the index half built: close waits for the build."""
    lib = Library.open(library_dir, hash_embedder)
    fill(lib, tmp_path, 7)
    spy = CreateIndexSpy(lib.chunks_table(), monkeypatch, hold=True)
    lib.optimize()
    assert spy.started.wait(60)
    closer = threading.Thread(target=lib.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive()  # the build is held, so close cannot have returned
    spy.release.set()
    closer.join(120)
    assert not closer.is_alive() and not lib.indexing()
    reopened = Library.open(library_dir, hash_embedder)  # the lock was released after it
    assert reopened.index_stats().num_indexed_rows == 700


def test_a_library_indexed_with_ivf_pq_before_still_searches_and_moves_to_ivf_sq_on_growth(
        lowered, library_dir, hash_embedder, tmp_path):
    """Libraries indexed before IVF_SQ became the index carry an IVF_PQ one: they open and
    search as before (exact top hits, through probes and re-ranking), the index is kept
    current, and it is trained again, as IVF_SQ, when the library has doubled."""
    from lancedb.index import IvfPq

    lib = Library.open(library_dir, hash_embedder)
    fill(lib, tmp_path, 8)  # 800 passages
    lib.chunks_table().create_index("vector", config=IvfPq(distance_type="cosine"),
                                    name="vector_idx", replace=True)
    lib.meta["ann_trained_rows"] = 800
    lib._save_meta()
    lib.close()

    lib = Library.open(library_dir, hash_embedder)
    assert lib.index_stats().index_type == "IVF_PQ"
    for seed in range(4):
        question = " ".join(random.Random(seed).sample(WORDS, 4))
        got = hybrid_search(lib, question, 5, mode="vector")
        assert [round(r.similarity, 4) for r in got] == \
            exact_similarities(lib, hash_embedder.embed_query(question), 5), question
    fill(lib, tmp_path, 2, start=8)  # 1,000: folded into the old index, not rebuilt
    lib.optimize()
    assert lib.wait_for_index(120)
    assert lib.index_stats().index_type == "IVF_PQ"
    assert lib.index_stats().num_unindexed_rows == 0
    fill(lib, tmp_path, 9, start=10)  # 1,900: past twice what it was trained on
    lib.optimize()
    assert lib.wait_for_index(120)
    assert lib.index_stats().index_type == "IVF_SQ"
    assert lib.meta["ann_trained_rows"] == 1900
    lib.close()
