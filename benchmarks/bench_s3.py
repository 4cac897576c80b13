"""Ingest and search latency on an S3 library (moto's server on loopback) against the same
library on local disk.

    python benchmarks/bench_s3.py [--docs 20] [--queries 30]

Both runs ingest the same generated PDFs with the real embedder, then time searches (query
embedding excluded: it is the same for both). moto keeps objects in memory on this machine,
so the S3 figures are the protocol's and LanceDB's object-store overhead, not a network's:
a real bucket adds its round trips on top.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, percentile

sys.path.insert(0, str(ROOT / "tests"))
from docgen import make_pdf  # noqa: E402

from app.core.index.embedder import get_embedder  # noqa: E402
from app.core.index.ingest import IngestOptions, ingest  # noqa: E402
from app.core.index.library import Library  # noqa: E402
from app.core.index.search import hybrid_search  # noqa: E402

QUERIES = ["how do I bake bread", "anchoring a boat", "apple tree pruning", "violin strings",
           "bicycle brake pads", "green tea temperature"]
TOPICS = ["sailing and anchoring boats", "baking sourdough bread", "pruning apple trees",
          "tuning a violin", "repairing bicycle brakes", "brewing green tea"]


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("moto server did not start") from None
            time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="bench")
    return proc, url


def run(root, folder: Path, embedder, queries: int) -> dict:
    t0 = time.perf_counter()
    lib = Library.open(root, embedder)
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in ingest(lib, [folder], IngestOptions()):
        pass
    ingest_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {"hybrid": [], "vector": []}
    for i in range(queries):
        q = QUERIES[i % len(QUERIES)]
        vec = embedder.embed_query(q)
        for mode in times:
            t0 = time.perf_counter()
            hybrid_search(lib, q, k=5, mode=mode, query_vector=vec)
            times[mode].append((time.perf_counter() - t0) * 1000)
    lib.close()
    out = {"open_s": round(opened, 2), "ingest_s": round(ingest_s, 2),
           "chunks": lib.chunk_count()}
    for mode, values in times.items():
        out[f"{mode}_p50_ms"] = round(percentile(values, 50), 1)
        out[f"{mode}_p95_ms"] = round(percentile(values, 95), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    embedder = get_embedder()
    proc, url = start_moto()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "docs"
            folder.mkdir()
            for i in range(args.docs):
                topic = TOPICS[i % len(TOPICS)]
                make_pdf(folder / f"doc{i}.pdf", [f"Document {i} is about {topic}. " * 40,
                                                  f"More on {topic}, doc {i}. " * 40])
            results = {"local": run(Path(tmp) / "library", folder, embedder, args.queries),
                       "s3 (moto)": run("s3://bench/library", folder, embedder, args.queries)}
    finally:
        proc.kill()
        proc.wait()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
