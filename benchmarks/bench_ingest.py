"""Ingest throughput on a real document, against the embedder alone on the same chunks.

    python benchmarks/bench_ingest.py benchmarks/.corpus/octave.pdf [more files or folders]

Prints pages/s, chunks/s, peak RSS, the share of wall time spent inside the embedder, and
the ratio of ingest wall time to the time the embedder alone needs for the same chunks in
the same batches, measured in the same run (target: at most 1.15).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import PeakRSS, mib

from app.core.index.embedder import get_embedder
from app.core.index.ingest import EMBED_BATCH, IngestOptions, IngestSummary, ingest
from app.core.index.library import Library


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    embedder = get_embedder()
    embedder.embed_documents(["warm up the model"])  # load weights outside both timings

    inside = {"seconds": 0.0, "calls": 0}
    real_embed = embedder.embed_documents

    def timed_embed(texts):
        t0 = time.perf_counter()
        try:
            return real_embed(texts)
        finally:
            inside["seconds"] += time.perf_counter() - t0
            inside["calls"] += 1

    with tempfile.TemporaryDirectory(prefix="folio-bench-") as tmp:
        lib = Library.open(Path(tmp) / "lib", embedder)
        embedder.embed_documents = timed_embed  # type: ignore[method-assign]
        summary = IngestSummary()
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            for _ in ingest(lib, args.paths, IngestOptions(), summary=summary):
                pass
            wall = time.perf_counter() - t0
        embedder.embed_documents = real_embed  # type: ignore[method-assign]

        # The embedder alone: the same texts, in the same batch sizes.
        table = lib.chunks_table().to_arrow()
        order = sorted(range(table.num_rows), key=lambda i: (
            table.column("doc_id")[i].as_py(), table.column("chunk_index")[i].as_py()))
        texts = [table.column("fts")[i].as_py() for i in order]
        t0 = time.perf_counter()
        for start in range(0, len(texts), EMBED_BATCH):
            real_embed(texts[start:start + EMBED_BATCH])
        alone = time.perf_counter() - t0

    result = {
        "files": summary.files,
        "failed": len(summary.failed),
        "pages": summary.pages,
        "chunks": summary.chunks,
        "wall_s": round(wall, 2),
        "pages_per_s": round(summary.pages / wall, 2),
        "chunks_per_s": round(summary.chunks / wall, 2),
        "embedder_inside_ingest_s": round(inside["seconds"], 2),
        "embedder_share": round(inside["seconds"] / wall, 3),
        "embedder_alone_s": round(alone, 2),
        "wall_over_embedder_alone": round(wall / alone, 3),
        "peak_rss": mib(rss.peak),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
