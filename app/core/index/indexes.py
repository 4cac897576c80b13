"""The chunks table's search indexes, kept by `Library` (a mixin: these methods use its
table, lock, meta and root): the full-text index, created once and then updated in place by
`optimize`, and the approximate vector index, built in the background once a library is large
enough that exact search is slow, kept current, rebuilt when the library has grown well past
what it was trained on and dropped when it shrinks (search is exact again). Kept apart from
library.py, which holds the two tables' transactions (staging, publishing, recovery).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings

log = logging.getLogger("app.core.index.library")

# Vector search is exact (a flat scan of the live chunks) while that is fast; from this many
# live chunks on, an approximate index is built in the background after an ingest publishes
# (`Library.optimize`). See docs/BENCHMARKS.md "Search at scale" for the measurements that
# chose it. FOLIO_ANN_THRESHOLD overrides it (tests use a small library).
ANN_THRESHOLD = 50_000
VECTOR_INDEX = "vector_idx"
FTS_INDEX = "fts_idx"
# The index's partitions are trained on the rows it was built from; new rows are folded into
# them by every optimize. Once the table has grown this much past what the index was trained
# on, or shrunk below half the threshold, the index is built again (or dropped: exact again).
ANN_REBUILD_GROWTH = 2.0
# The index: IVF_SQ (8-bit scalar-quantised vectors in inverted lists), cosine. Chosen by
# benchmarks/bench_ann_index.py over IVF_PQ, Folio's first index: at 100k passages it kept
# recall@10 at 1.0 for off-cluster queries too (IVF_PQ 0.52, IVF_HNSW_SQ 0.92), built in 3 s
# instead of 29 s, and searched as fast. Probing and re-ranking for recall@10 >= 0.98 against
# exact search (hybrid_search passes them; LanceDB ignores them when there is no index):
# refine_factor multiplies the candidate pool (50), re-ranked on their full vectors.
ANN_NPROBES = 20
ANN_REFINE_FACTOR = 10


def ann_threshold() -> int:
    try:
        return max(1, int(os.environ.get("FOLIO_ANN_THRESHOLD", ANN_THRESHOLD)))
    except ValueError:
        log.warning("FOLIO_ANN_THRESHOLD=%r is not a number; using %d",
                    os.environ.get("FOLIO_ANN_THRESHOLD"), ANN_THRESHOLD)
        return ANN_THRESHOLD


class SearchIndexes:
    """What `Library` does with its indexes; see the module's docstring."""

    def _ensure_fts_index(self) -> None:
        """Create the full-text index once, when the first chunks arrive. After that it is
        never rebuilt: rows added later are searched unindexed (LanceDB scans them beside the
        index) until `optimize` folds them into it."""
        if self._chunks_table is None or self._fts_ready:
            return
        names = {idx.name for idx in self._chunks_table.list_indices()}
        if FTS_INDEX not in names and self._chunks_table.count_rows() > 0:
            from lancedb.index import FTS

            self._chunks_table.create_index("fts", config=FTS(with_position=False),
                                            name=FTS_INDEX)
        self._fts_ready = FTS_INDEX in names or self._chunks_table.count_rows() > 0

    # -- the approximate vector index ---------------------------------------------------------

    def index_stats(self, name: str = VECTOR_INDEX):
        """LanceDB's statistics of an index of the chunks table (rows indexed and not yet,
        how many parts), None when there is no such index."""
        if self._chunks_table is None:
            return None
        try:
            return self._chunks_table.index_stats(name)
        except Exception:  # noqa: BLE001 - an index LanceDB cannot describe is as good as none
            return None

    def indexing(self) -> bool:
        """Whether a background vector index build is running."""
        return self._index_thread is not None and self._index_thread.is_alive()

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for the background vector index build, if one runs; True once none runs."""
        thread = self._index_thread
        if thread is not None:
            thread.join(timeout)
        return not self.indexing()

    def _plan_vector_index(self) -> str | None:
        """"build", "drop" or None: what the vector index needs now."""
        if self._chunks_table is None:
            return None
        stats = self.index_stats()
        live = self._chunks_table.count_rows("live = true")
        if stats is None:
            return "build" if live >= self.ann_threshold else None
        if live < self.ann_threshold / 2:
            return "drop"
        trained = int(self.meta.get("ann_trained_rows") or stats.num_indexed_rows or 1)
        total = stats.num_indexed_rows + stats.num_unindexed_rows
        if total > ANN_REBUILD_GROWTH * trained or stats.num_unindexed_rows > trained:
            return "build"
        return None

    def _start_vector_index(self) -> None:
        try:
            plan = self._plan_vector_index()
        except Exception as exc:  # noqa: BLE001 - exact search still works; retried next time
            log.warning("could not check the vector index: %s", exc)
            return
        if plan == "drop":
            log.info("library %s shrank below %d passages: exact vector search again",
                     self.root, self.ann_threshold // 2)
            self._chunks_table.drop_index(VECTOR_INDEX)
            self.meta.pop("ann_trained_rows", None)
            self._save_meta()
        elif plan == "build":
            self._index_thread = threading.Thread(
                target=self._build_vector_index, name="folio-vector-index", daemon=True)
            self._index_thread.start()

    def _build_vector_index(self) -> None:
        """Train and write the approximate vector index (IVF_SQ, cosine), replacing any older
        one in the same commit. Searches meanwhile stay exact; ingests go on (their optimize
        skips compacting the chunks table until this ends). A failure loses nothing: search
        stays exact and the next optimize tries again."""
        from lancedb.index import IvfSq

        table = self._chunks_table
        started = time.monotonic()
        try:
            rows = table.count_rows()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table.create_index("vector", config=IvfSq(distance_type="cosine"),
                                   name=VECTOR_INDEX, replace=True)
            with self._lock:
                self.meta["ann_trained_rows"] = rows
                self._save_meta()
            self.index_error = None
            log.info("vector index of %s built over %d passages in %.1f s", self.root, rows,
                     time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - exact search goes on; retried next optimize
            self.index_error = str(exc)
            log.warning("building the vector index of %s failed (search stays exact): %s",
                        self.root, exc)
