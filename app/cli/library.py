"""`folio ingest`, `search`, `docs`, `collections`, `info`, `reindex`: the library from a terminal.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from app.cli.common import (
    clear_line,
    file_time_limit,
    library_path,
    open_library,
    print_json,
    user_settings,
)
from app.core.base.units import human_duration, page_label
from app.core.index.search import hybrid_search


def _run_ingest(lib, paths, options, as_json: bool):
    from app.core.index.ingest import IngestSummary, ingest

    summary = IngestSummary()
    cancel = threading.Event()
    tty = sys.stderr.isatty() and not as_json
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl+C: stop cleanly; the work so far is kept
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nfolio: stopping after the current batch (Ctrl+C again to abort)",
              file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_sigint)
    try:
        for ev in ingest(lib, paths, options, cancel=cancel, summary=summary):
            if ev.kind == "file" and ev.status == "failed" and not as_json:
                clear_line(tty)
                print(f"failed  {ev.path}: {ev.message}", file=sys.stderr)
            elif ev.kind == "file" and ev.status == "ready" and ev.message and not as_json:
                clear_line(tty)
                print(f"warning {ev.path}: {ev.message}", file=sys.stderr)
            if tty and ev.kind in ("batch", "file", "file_start"):
                name = Path(ev.current or ev.path).name[:40]
                sys.stderr.write(
                    f"\r[{ev.files_done}/{ev.files_total} files] {ev.chunks_done} chunks "
                    f"{ev.rate:5.1f}/s  ETA {human_duration(ev.eta)}  {name}\033[K"
                )
                sys.stderr.flush()
        if lib.indexing():  # past the ANN threshold: the process must not exit mid-build
            if not as_json:
                clear_line(tty)
                print(f"building the vector search index ({lib.chunk_count():,} passages)",
                      file=sys.stderr)
            lib.wait_for_index()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
        clear_line(tty)
    return summary


def cmd_ingest(args) -> int:
    from app.core.index.ingest import IngestOptions
    from app.core.documents.splitter import SplitterConfig

    config = SplitterConfig()
    try:
        if args.chunk_tokens:
            config.chunk_tokens = args.chunk_tokens
        if args.overlap_tokens is not None:
            config.overlap_tokens = args.overlap_tokens
        if hasattr(config, "validate"):
            config.validate()
    except ValueError as exc:
        print(f"folio ingest: {exc}", file=sys.stderr)
        return 2
    if args.time_limit is not None and args.time_limit <= 0:
        print("folio ingest: --time-limit must be more than 0 seconds", file=sys.stderr)
        return 2
    options = IngestOptions(
        collection=args.collection, include=args.include, exclude=args.exclude,
        ocr=False if args.no_ocr else None, force=args.force, splitter=config,
        time_limit=args.time_limit if args.time_limit is not None else file_time_limit(),
    )
    lib = open_library(args)
    summary = _run_ingest(lib, args.paths or None, options, args.json)
    if args.json:
        print_json(summary.to_json())
    else:
        state = "cancelled" if summary.cancelled else "done"
        print(
            f"{state}: {summary.ingested} ingested, {summary.skipped} unchanged, "
            f"{len(summary.failed)} failed; {summary.pages} pages, {summary.chunks} chunks "
            f"in {summary.seconds:.1f} s"
        )
        for item in summary.failed:
            print(f"  failed: {item['path']}: {item['reason']}")
    if summary.cancelled:
        return 130
    return 1 if summary.failed else 0


def cmd_search(args) -> int:
    if args.k < 1:
        print("folio search: --k must be at least 1", file=sys.stderr)
        return 2
    from app.core.index import rerank

    try:
        reranker = rerank.find(args.rerank or user_settings().reranker)
    except rerank.RerankerError as exc:
        print(f"folio search: {exc}", file=sys.stderr)
        return 2
    lib = open_library(args, read_only=None)
    results = hybrid_search(lib,
        " ".join(args.query), k=args.k, collections=args.collection or None,
        documents=args.doc or None, mode=args.mode, mmr=args.mmr, reranker=reranker,
    )
    if args.json:
        print_json([r.to_json() for r in results])
        return 0
    if not results:
        print("No matching passages.")
    for n, r in enumerate(results, 1):
        where = page_label(r.page, r.page_end)
        head = " · ".join(x for x in (r.path, where, r.section) if x)
        snippet = " ".join(r.text.split())
        kind = "reranked" if r.reranked else "score"
        print(f"[{n}] {head}  ({kind} {r.score:.4f})\n    {snippet[:300]}")
    return 0


def cmd_docs(args) -> int:
    lib = open_library(args, read_only=None if args.docs_command == "list" else False)
    if args.docs_command == "list":
        docs = lib.documents()
        if args.collection:
            docs = [d for d in docs if args.collection in d.collections]
        if args.json:
            print_json([d.public() for d in docs])
            return 0
        if not docs:
            print("The library is empty. Add documents with: folio ingest PATH")
        for d in docs:
            extra = f"  {d.error}" if d.error else ""
            cols = f"  [{', '.join(d.collections)}]" if d.collections else ""
            pages = f"{d.pages} p." if d.pages else "-"
            print(f"{d.status:9} {pages:>7} {d.chunks:6} chunks  {d.path}{cols}{extra}")
        return 0
    if args.docs_command == "remove":
        missing = 0
        for item in args.paths:
            found = lib.find(item)
            if not found:
                print(f"not in the library: {item}", file=sys.stderr)
                missing += 1
            for doc in found:
                lib.remove(doc)
                print(f"removed {doc.path}")
        lib.optimize()
        return 1 if missing else 0
    if args.docs_command == "collect":
        missing = 0
        for item in args.paths:
            found = lib.find(item)
            if not found:
                print(f"not in the library: {item}", file=sys.stderr)
                missing += 1
            for doc in found:
                names = set(doc.collections)
                names = names - {args.collection} if args.remove else names | {args.collection}
                lib.set_collections(doc, names)
        return 1 if missing else 0
    return 2


def cmd_collections(args) -> int:
    lib = open_library(args, read_only=None)
    cols = lib.collections()
    if args.json:
        print_json([{"name": k, "documents": v} for k, v in cols.items()])
    else:
        for name, count in cols.items():
            print(f"{name}\t{count} documents")
    return 0


def cmd_info(args) -> int:
    lib = open_library(args, read_only=None)
    stats = lib.stats()
    stats["llama_cpp"] = _llama_build()
    if args.json:
        print_json(stats)
    else:
        for key, value in stats.items():
            if key == "llama_cpp":
                value = f"{value['version']}, CPU features: {value['cpu_features']}"
            print(f"{key}: {value}")
    return 0


def _llama_build() -> dict:
    """The llama.cpp build: its version and the CPU features it uses (asked of a short-lived
    child process, as the model runs in one: this process never runs llama.cpp's kernels)."""
    from importlib.metadata import PackageNotFoundError, version

    from app.core.llm.host import system_cpu_features

    try:
        ver = version("llama-cpp-python")
    except PackageNotFoundError:  # a frozen app without the dist-info
        ver = None
    try:
        features = system_cpu_features()
    except Exception as exc:  # noqa: BLE001 - info must answer even when llama.cpp cannot
        features = f"unknown ({exc})"
    return {"version": ver, "cpu_features": features}


def cmd_reindex(args) -> int:
    from app.core.index.embedder import ready_embedder_name
    from app.core.index.ingest import IngestOptions
    from app.core.llm.remote import RemoteError
    from app.core.index.library import Library

    root = library_path(args)
    current = Library(root)  # no embedder check: switching embedders is the point
    source = args.embedder or current.meta.get("embedder_source") or current.embedder_name
    try:
        name = ready_embedder_name(source)  # before the library's vectors are dropped
    except (ValueError, FileNotFoundError, RemoteError) as exc:
        print(f"folio reindex: {exc}", file=sys.stderr)
        return 2
    paths = current.reset_for_embedder(source)
    lib = Library.open(root)
    summary = _run_ingest(lib, paths, IngestOptions(force=True), args.json)
    if args.json:
        print_json(summary.to_json())
    else:
        print(f"re-indexed {summary.ingested} documents with {name} "
              f"({len(summary.failed)} failed)")
    return 1 if summary.failed else 0


# -- embedders -----------------------------------------------------------------------------
# Exit codes: 0 done (or already installed); 2 the install failed or was refused, leaving
# nothing behind; 130 cancelled with Ctrl+C, leaving nothing behind.
