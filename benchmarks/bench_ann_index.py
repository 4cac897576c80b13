"""Which approximate vector index: IVF_PQ (Folio's first choice) against the scalar-quantised
IVF_SQ and IVF_HNSW_SQ, on the same synthetic library as bench_scale.py.

    python benchmarks/bench_ann_index.py [--size 100000] [--queries 50]

For each index type, in turn on the same table (`create_index(replace=True)`): the time to
build it, recall@10 against exact search for queries near the clusters and
for off-cluster (uniformly random) queries, the hard case bench_scale found PQ losing, at a
few nprobes/refine_factor pairs, and vector-search p50/p95 (ms, query embedding excluded,
the pool of 50 `hybrid_search` asks for, `live = true` prefilter). The library is the one
bench_scale.py builds under benchmarks/.scale/ (built here when missing).

`--current --probes 20 40 80 160` measures the index the library has now (as Folio built it,
bench_scale.py) at those probe counts, refine 10, without building any:

    python benchmarks/bench_ann_index.py --size 1000000 --queries 30 --current --probes 20 40 80 160
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_scale import (
    CACHE,
    DIMS,
    POOL,
    QueryVectorsOnly,
    build,
    centres_for,
    clustered,
    p50_p95,
    sentences,
    timed,
)

from app.core.index.library import Library

PAIRS = ((10, 1), (20, 1), (20, 10), (40, 10))  # nprobes, refine_factor (20/10: Folio's)


def index_configs():
    from lancedb.index import IvfHnswSq, IvfPq, IvfSq

    return {"IVF_PQ": IvfPq(distance_type="cosine"),
            "IVF_SQ": IvfSq(distance_type="cosine"),
            "IVF_HNSW_SQ": IvfHnswSq(distance_type="cosine")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--current", action="store_true",
                    help="measure the library's own index, build none")
    ap.add_argument("--probes", type=int, nargs="+", help="nprobes values (refine 10)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    root = CACHE / f"lib-{args.size}"
    if not (root / "library.json").exists():
        build(root, args.size, sentences())
    lib = Library.open(root, QueryVectorsOnly())
    table = lib.chunks_table()
    rng = np.random.default_rng(7)
    near = clustered(rng, centres_for(), args.queries)
    far = rng.standard_normal((args.queries, DIMS)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)

    def ids(q, exact=False, nprobes=20, refine=10) -> list[str]:
        query = table.search(q, vector_column_name="vector").distance_type("cosine")
        query = query.bypass_vector_index() if exact else query.nprobes(nprobes).refine_factor(
            refine)
        return [h["id"] for h in query.where("live = true", prefilter=True).limit(POOL)
                .select(["id", "_distance"]).to_list()][:10]

    truth = {"near": [ids(q, True) for q in near], "far": [ids(q, True) for q in far]}
    out = {"passages": table.count_rows(), "queries": args.queries, "indexes": {}}
    pairs = [(p, 10) for p in args.probes] if args.probes else PAIRS
    configs = {"current": None} if args.current else index_configs()
    for name, config in configs.items():
        t0 = time.perf_counter()
        if config is None:
            name = lib.index_stats().index_type if lib.index_stats() else "none (exact)"
        else:
            table.create_index("vector", config=config, name="vector_idx", replace=True)
        row = {"build_s": round(time.perf_counter() - t0, 1) if config is not None else "-"}
        for nprobes, refine in pairs:
            recall = {}
            for kind, queries in (("near", near), ("far", far)):
                got = [len(set(ids(q, False, nprobes, refine)) & set(t)) / 10
                       for q, t in zip(queries, truth[kind], strict=True)]
                recall[kind] = round(float(np.mean(got)), 3)
            ms = timed(lambda i, p=nprobes, r=refine: ids(near[i], False, p, r),
                       range(args.queries))
            row[f"{nprobes}/{refine}"] = {"recall_near": recall["near"],
                                          "recall_far": recall["far"],
                                          "vector_ms": p50_p95(ms)}
        out["indexes"][name] = row
    lib.close()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['passages']:,} passages, {args.queries} queries near the clusters and "
          f"{args.queries} off-cluster; recall@10 against exact, vector p50 / p95 ms")
    print("| index | build s | nprobes / refine | recall near | recall off-cluster | "
          "vector ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in out["indexes"].items():
        for key, cell in row.items():
            if "/" not in key:
                continue
            print(f"| {name} | {row['build_s']} | {key} | {cell['recall_near']} | "
                  f"{cell['recall_far']} | {cell['vector_ms']} |")


if __name__ == "__main__":
    main()
