"""`folio`: the engine from a terminal. The window drives the same engine; scripts and tests
drive this. The JSON shapes printed here are a contract: keep them stable.

Exit codes: 0 success, 1 some files failed (ingest) or nothing found is NOT an error,
2 usage errors and problems that stop the command (unknown library state, wrong embedder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from app import __version__
from app.core.base.paths import default_library
from app.core.base.units import human_bytes, human_duration, page_label
from app.core.index.search import hybrid_search

log = logging.getLogger("app.cli")


def _library_arg(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument(
        "--library",
        metavar="DIR",
        default=None if top else argparse.SUPPRESS,
        help="library folder (default: $FOLIO_LIBRARY or the platform data folder)",
    )


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH",
                        help="GGUF model file (default: the starter model)")
    parser.add_argument("--ctx", type=int, default=None, metavar="N",
                        help="context length in tokens (default 4096)")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="longest answer")
    parser.add_argument("--temperature", type=float, metavar="T")
    parser.add_argument("--seed", type=int, metavar="N")
    parser.add_argument("--allow-oversize", action="store_true",
                        help="load the model even when its memory estimate says it will not "
                             "fit (the system may swap, or stop Folio)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="folio",
        description="Chat with your own documents, entirely on your own machine. "
        "Run without a command to open the window.",
    )
    parser.add_argument("--version", action="version", version=f"folio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--self-test", action="store_true",
                        help="check the whole pipeline on bundled samples (headless) and exit")
    _library_arg(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", help="add files and folders to the library")
    _library_arg(p)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="files or folders; none: continue an interrupted ingest")
    p.add_argument("--collection", metavar="NAME", help="put the documents in this collection")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only files matching (repeatable), e.g. '*.pdf'")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip files matching (repeatable)")
    p.add_argument("--no-ocr", action="store_true", help="never OCR scanned pages")
    p.add_argument("--force", action="store_true", help="re-index unchanged files too")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="give up on a file that takes longer than this to read and split "
                        "(default: the settings' file time limit, 300)")
    p.add_argument("--chunk-tokens", type=int, metavar="N", help="chunk size in tokens")
    p.add_argument("--overlap-tokens", type=int, metavar="N", help="chunk overlap in tokens")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")

    p = sub.add_parser("search", help="find the passages that answer a question")
    _library_arg(p)
    p.add_argument("query", nargs="+", metavar="QUERY")
    p.add_argument("--k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--collection", action="append", default=[], metavar="NAME",
                   help="limit to a collection (repeatable)")
    p.add_argument("--doc", action="append", default=[], metavar="PATH",
                   help="limit to a document (repeatable)")
    p.add_argument("--mode", choices=["hybrid", "vector", "fts"], default="hybrid")
    p.add_argument("--mmr", action="store_true", help="diversify results (MMR)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    docs = sub.add_parser("docs", help="see and manage the library's documents")
    _library_arg(docs)
    dsub = docs.add_subparsers(dest="docs_command", metavar="ACTION")
    p = dsub.add_parser("list", help="list documents")
    _library_arg(p)
    p.add_argument("--collection", metavar="NAME", help="only this collection")
    p.add_argument("--json", action="store_true")
    p = dsub.add_parser("remove", help="remove documents (files on disk are not touched)")
    _library_arg(p)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p = dsub.add_parser("collect", help="add documents to a collection, or --remove them")
    _library_arg(p)
    p.add_argument("collection", metavar="NAME")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--remove", action="store_true", help="take them out of the collection")

    p = sub.add_parser("collections", help="list collections")
    _library_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="library statistics")
    _library_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", help="answer a question from the documents, with sources")
    _library_arg(p)
    _model_args(p)
    p.add_argument("question", nargs="+", metavar="QUESTION")
    p.add_argument("--collection", action="append", default=[], metavar="NAME",
                   help="answer from this collection only (repeatable)")
    p.add_argument("--doc", action="append", default=[], metavar="PATH",
                   help="answer from this document only (repeatable)")
    p.add_argument("--no-docs", action="store_true", help="chat without the documents")
    p.add_argument("--chat", type=int, metavar="ID", help="continue this chat")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("chat", help="an interactive chat in the terminal")
    _library_arg(p)
    _model_args(p)
    p.add_argument("--chat", type=int, metavar="ID", help="continue this chat")
    p.add_argument("--collection", action="append", default=[], metavar="NAME")
    p.add_argument("--no-docs", action="store_true", help="chat without the documents")

    p = sub.add_parser("summarize", help="summarise a whole document")
    _library_arg(p)
    _model_args(p)
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true")

    chats = sub.add_parser("chats", help="list, show, rename, delete, search or export chats")
    _library_arg(chats)
    csub = chats.add_subparsers(dest="chats_command", metavar="ACTION")
    p = csub.add_parser("list", help="list chats (newest first)")
    _library_arg(p)
    p.add_argument("--search", metavar="TEXT", help="only chats whose text contains this")
    p.add_argument("--json", action="store_true")
    p = csub.add_parser("show", help="print a chat as Markdown with its citations")
    _library_arg(p)
    p.add_argument("id", type=int)
    p = csub.add_parser("export", help="write a chat to a Markdown file")
    _library_arg(p)
    p.add_argument("id", type=int)
    p.add_argument("output", metavar="FILE.md")
    p = csub.add_parser("rename", help="rename a chat")
    _library_arg(p)
    p.add_argument("id", type=int)
    p.add_argument("title")
    p = csub.add_parser("delete", help="delete a chat")
    _library_arg(p)
    p.add_argument("id", type=int)

    models = sub.add_parser("models", help="list, add, download, remove GGUF models; "
                            "choose the default")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    p = msub.add_parser("list", help="the models with what their headers say and the "
                        "memory they need")
    _library_arg(p)
    p.add_argument("--ctx", type=int, metavar="N",
                   help="estimate memory for this context (default: each model's setting)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: models_dir, default, models, "
                        "partial_downloads")
    p = msub.add_parser("add", help="copy (or --link) a .gguf file into the models folder")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--link", action="store_true", help="link to the file instead of copying")
    p.add_argument("--json", action="store_true")
    p = msub.add_parser("download", help="download a GGUF (Ctrl+C pauses; run again to "
                        "resume)")
    p.add_argument("url", metavar="URL_OR_CATALOG_ID")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 of the file")
    p.add_argument("--name", metavar="FILE", help="file name in the models folder")
    p.add_argument("--restart", action="store_true", help="discard a partial download first")
    p.add_argument("--cancel", action="store_true", help="delete a partial download and exit")
    p.add_argument("--json", action="store_true")
    p = msub.add_parser("remove", help="delete a model from the models folder")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = msub.add_parser("default", help="show or set the default model")
    p.add_argument("name", nargs="?", metavar="NAME")

    p = sub.add_parser("reindex", help="rebuild every vector, e.g. with another embedder")
    _library_arg(p)
    p.add_argument("--embedder", metavar="NAME_OR_DIR",
                   help="all-MiniLM-L6-v2 (default), all-mpnet-base-v2, or a model folder")
    p.add_argument("--json", action="store_true")

    embedders = sub.add_parser("embedders", help="list the embedders; install "
                               "all-mpnet-base-v2")
    esub = embedders.add_subparsers(dest="embedders_command", metavar="ACTION")
    p = esub.add_parser("list", help="the embedders Folio knows: installed or not, where, "
                        "dimensions, size")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = esub.add_parser("install", help="download an embedder from PyPI with pip "
                        "(Ctrl+C cancels and leaves nothing)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from app.core.base.logs import setup_logging

    setup_logging(verbose=args.verbose)
    if args.self_test:  # headless end to end; checks a packaged build as much as the source
        from app.selftest import run as run_self_test

        return run_self_test(args.library)
    if args.command is None:  # no subcommand: the desktop window
        if (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
                and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
            parser.print_help()
            print("\nfolio: no display to open the window on; use a command above.",
                  file=sys.stderr)
            return 2
        from app.ui.platform_check import check_window_libraries

        if not check_window_libraries():  # say which packages, before Qt aborts on xcb
            return 1
        from app.ui.app import run as run_window

        return run_window(args.library)
    if args.command == "docs" and not getattr(args, "docs_command", None):
        parser.parse_args(["docs", "--help"])
    if args.command == "chats" and not getattr(args, "chats_command", None):
        parser.parse_args(["chats", "--help"])
    if args.command == "models" and not getattr(args, "models_command", None):
        parser.parse_args(["models", "--help"])
    handler = {
        "ingest": cmd_ingest,
        "search": cmd_search,
        "docs": cmd_docs,
        "collections": cmd_collections,
        "info": cmd_info,
        "reindex": cmd_reindex,
        "embedders": cmd_embedders,
        "ask": cmd_ask,
        "chat": cmd_chat,
        "summarize": cmd_summarize,
        "chats": cmd_chats,
        "models": cmd_models,
    }[args.command]
    from app.core.index.library import LibraryError
    from app.core.models.files import ModelError

    try:
        return handler(args)
    except (LibraryError, ModelError) as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("folio: interrupted", file=sys.stderr)
        return 130


def _library_path(args) -> Path:
    return Path(args.library).expanduser() if args.library else default_library()


def _file_time_limit() -> float:
    """The per-file time limit from the user's settings (the default when they can't be read)."""
    from app.core.settings import AppSettings

    try:
        return float(AppSettings.load().file_time_limit)
    except Exception:  # noqa: BLE001 - a broken settings file must not stop an ingest
        return float(AppSettings().file_time_limit)


def _open(args, embedder_name: str | None = None, read_only: bool | None = False):
    """read_only=None (read commands): read-only when another Folio process writes it."""
    from app.core.index.library import Library

    lib = Library.open(_library_path(args), embedder_name=embedder_name, read_only=read_only)
    if lib.read_only:
        _note_read_only(lib.root)
    return lib


def _note_read_only(root) -> None:
    from app.core.index.lock import holder

    pid = (holder(root) or {}).get("pid")
    who = f" (pid {pid})" if pid else ""
    print(f"folio: the library is open in another Folio window or command{who}; reading it "
          f"as it is now, without changes.", file=sys.stderr)


def _print_json(value) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")
    sys.stdout.flush()


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
                _clear_line(tty)
                print(f"failed  {ev.path}: {ev.message}", file=sys.stderr)
            elif ev.kind == "file" and ev.status == "ready" and ev.message and not as_json:
                _clear_line(tty)
                print(f"warning {ev.path}: {ev.message}", file=sys.stderr)
            if tty and ev.kind in ("batch", "file", "file_start"):
                name = Path(ev.current or ev.path).name[:40]
                sys.stderr.write(
                    f"\r[{ev.files_done}/{ev.files_total} files] {ev.chunks_done} chunks "
                    f"{ev.rate:5.1f}/s  ETA {human_duration(ev.eta)}  {name}\033[K"
                )
                sys.stderr.flush()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
        _clear_line(tty)
    return summary


def _clear_line(tty: bool) -> None:
    if tty:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


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
        time_limit=args.time_limit if args.time_limit is not None else _file_time_limit(),
    )
    lib = _open(args)
    summary = _run_ingest(lib, args.paths or None, options, args.json)
    if args.json:
        _print_json(summary.to_json())
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
    lib = _open(args, read_only=None)
    results = hybrid_search(lib,
        " ".join(args.query), k=args.k, collections=args.collection or None,
        documents=args.doc or None, mode=args.mode, mmr=args.mmr,
    )
    if args.json:
        _print_json([r.to_json() for r in results])
        return 0
    if not results:
        print("No matching passages.")
    for n, r in enumerate(results, 1):
        where = page_label(r.page, r.page_end)
        head = " · ".join(x for x in (r.path, where, r.section) if x)
        snippet = " ".join(r.text.split())
        print(f"[{n}] {head}  (score {r.score:.4f})\n    {snippet[:300]}")
    return 0


def cmd_docs(args) -> int:
    lib = _open(args, read_only=None if args.docs_command == "list" else False)
    if args.docs_command == "list":
        docs = lib.documents()
        if args.collection:
            docs = [d for d in docs if args.collection in d.collections]
        if args.json:
            _print_json([d.public() for d in docs])
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
    lib = _open(args, read_only=None)
    cols = lib.collections()
    if args.json:
        _print_json([{"name": k, "documents": v} for k, v in cols.items()])
    else:
        for name, count in cols.items():
            print(f"{name}\t{count} documents")
    return 0


def cmd_info(args) -> int:
    lib = _open(args, read_only=None)
    stats = lib.stats()
    stats["llama_cpp"] = _llama_build()
    if args.json:
        _print_json(stats)
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
    from app.core.index.embedder import resolve_spec
    from app.core.index.ingest import IngestOptions
    from app.core.index.library import Library

    root = _library_path(args)
    current = Library(root)  # no embedder check: switching embedders is the point
    source = args.embedder or current.meta.get("embedder_source") or current.embedder_name
    try:
        name = resolve_spec(source).name
    except ValueError as exc:
        print(f"folio reindex: {exc}", file=sys.stderr)
        return 2
    paths = current.reset_for_embedder(source)
    lib = Library.open(root)
    summary = _run_ingest(lib, paths, IngestOptions(force=True), args.json)
    if args.json:
        _print_json(summary.to_json())
    else:
        print(f"re-indexed {summary.ingested} documents with {name} "
              f"({len(summary.failed)} failed)")
    return 1 if summary.failed else 0


# -- embedders -----------------------------------------------------------------------------
# Exit codes: 0 done (or already installed); 2 the install failed or was refused, leaving
# nothing behind; 130 cancelled with Ctrl+C, leaving nothing behind.


def cmd_embedders(args) -> int:
    if not getattr(args, "embedders_command", None):
        build_parser().parse_args(["embedders", "--help"])
    if args.embedders_command == "list":
        return _embedders_list(args)
    return _embedders_install(args)


def _embedders_list(args) -> int:
    from app.core.index import embedder_install as ei
    from app.core.index.embedder import known_specs

    try:
        paths = {name: spec.path for name, spec in known_specs().items()}
    except ImportError:  # the MiniLM package is missing: still list what can be installed
        paths = {}
    for spec in ei.downloadable_embedders():
        paths.setdefault(spec.name, ei.install_path(spec.name))
    rows = []
    for name, path in paths.items():
        download = ei.DOWNLOADABLE.get(name)
        installed = ei.looks_like_model(path)
        rows.append({
            "name": name, "installed": installed, "path": str(path),
            "dims": (ei.model_dims(path) if installed else None)
            or (download.dims if download else None),
            "size_bytes": ei.folder_size(path) if installed else None,
            "downloadable": download is not None,
            "download_bytes": download.download_size if download else None,
        })
    if args.json:
        _print_json({"embedders_dir": str(ei.embedders_dir()), "embedders": rows})
        return 0
    print(f"embedders folder: {ei.embedders_dir()}")
    for r in rows:
        dims = f"{r['dims']} dims" if r["dims"] else "? dims"
        if r["installed"]:
            print(f"  {r['name']}  installed  {dims}  {human_bytes(r['size_bytes'])}  "
                  f"{r['path']}")
        elif r["downloadable"]:
            size = f"{human_bytes(r['download_bytes'])} download" if r["download_bytes"] else ""
            print(f"  {r['name']}  not installed  {dims}  {size}  "
                  f"(folio embedders install {r['name']})")
        else:
            print(f"  {r['name']}  not installed  {dims}  expected at {r['path']}")
    return 0


def _embedders_install(args) -> int:
    import time

    from app.core.index.embedder_install import (
        EmbedderInstallCancelled,
        EmbedderInstallError,
        folder_size,
        install_embedder,
        is_installed,
    )

    name = args.name
    tty = sys.stderr.isatty() and not args.json
    already = is_installed(name)
    state = {"stage": None, "last": 0.0}
    started = time.monotonic()

    def progress(stage, done, total):
        now = time.monotonic()
        if stage == "done" or (stage == state["stage"]
                               and now - state["last"] < (0.2 if tty else 5)):
            return
        state.update(stage=stage, last=now)
        amount = f": {human_bytes(done)} of {human_bytes(total)}" if total > 1 else ""
        text = f"{stage} {name}{amount}"
        if tty:
            sys.stderr.write(f"\r{text}\033[K")
            sys.stderr.flush()
        elif not args.json:
            print(text, file=sys.stderr)

    try:
        path = _with_cancel(lambda cancel: install_embedder(name, progress=progress,
                                                            cancel=cancel))
    except EmbedderInstallCancelled:
        _clear_line(tty)
        print(f"folio embedders install: cancelled; nothing of {name} was kept",
              file=sys.stderr)
        if args.json:
            _print_json({"ok": False, "name": name, "cancelled": True})
        return 130
    except EmbedderInstallError as exc:
        _clear_line(tty)
        print(f"folio embedders install: {exc}", file=sys.stderr)
        if args.json:
            _print_json({"ok": False, "name": name, "error": str(exc)})
        return 2
    _clear_line(tty)
    seconds = time.monotonic() - started
    size = folder_size(path)
    if args.json:
        _print_json({"ok": True, "name": name, "path": str(path), "size_bytes": size,
                     "already_installed": already, "seconds": round(seconds, 1)})
    elif already:
        print(f"{name} is already installed at {path}")
    else:
        print(f"installed {name} ({human_bytes(size)}) in {human_duration(seconds)}: {path}\n"
              f"use it with: folio reindex --embedder {name}")
    return 0


def _folio(args):
    from app.core.service import Folio

    ctx = getattr(args, "ctx", None)  # an explicit --ctx beats the model's own setting
    return Folio(_library_path(args), model_path=getattr(args, "model", None),
                 load_overrides={"n_ctx": ctx} if ctx else None,
                 allow_oversize=bool(getattr(args, "allow_oversize", False)))


def _overrides(args) -> dict:
    out = {}
    for key in ("max_tokens", "temperature", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _scope(args) -> dict:
    if getattr(args, "no_docs", False):
        return {"mode": "none"}
    if getattr(args, "doc", None):
        return {"mode": "documents", "documents": args.doc}
    if getattr(args, "collection", None):
        return {"mode": "collections", "collections": args.collection}
    return {"mode": "all"}


def _format_source(s: dict) -> str:
    where = page_label(s.get("page"), s.get("page_end"))
    where = f", {where}" if where else ""
    section = f" ({s['section']})" if s.get("section") else ""
    return f"[{s['n']}] {s['path']}{where}{section}"


def _stream_answer(events, *, quiet: bool) -> dict:
    """Print tokens as they come (unless quiet) and return the final state."""
    result = {"answer": "", "sources": [], "stats": {}, "error": None, "message_id": None}
    for ev in events:
        if ev.kind == "token" and not quiet:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif ev.kind == "done":
            result.update(answer=ev.text, sources=ev.sources, stats=ev.stats,
                          message_id=ev.message_id)
        elif ev.kind == "error":
            result["error"] = ev.text
    if not quiet:
        sys.stdout.write("\n")
        if result["sources"]:
            print("\nSources:")
            for s in result["sources"]:
                print("  " + _format_source(s))
    return result


def _with_cancel(run):
    """Run `run(cancel)`; the first Ctrl+C stops the answer cleanly, keeping what was said."""
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        return run(cancel)
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_ask(args) -> int:
    import time

    folio = _folio(args)
    folio.library_read_only = None  # answering only reads the library
    if folio.library.read_only:
        _note_read_only(folio.library.root)
    try:
        started = time.monotonic()
        store = folio.store
        if args.chat:
            chat_id = store.get_chat(args.chat).id
            store.update_chat(chat_id, scope=_scope(args))
        else:
            chat_id = store.create_chat(scope=_scope(args)).id
        engine = folio.chat
        question = " ".join(args.question)
        result = _with_cancel(lambda cancel: _stream_answer(
            engine.ask(chat_id, question, cancel=cancel, overrides=_overrides(args)),
            quiet=args.json))
        if args.json:
            _print_json({
                "answer": result["answer"],
                "sources": [
                    {k: s.get(k) for k in ("path", "page", "page_end", "section", "score",
                                           "text")}
                    for s in result["sources"]
                ],
                "cited": result["stats"].get("cited", []),
                "model": folio.runtime.info.name,
                "prompt_tokens": result["stats"].get("prompt_tokens", 0),
                "completion_tokens": result["stats"].get("completion_tokens", 0),
                "seconds": round(time.monotonic() - started, 3),
                "chat_id": chat_id,
                "error": result["error"],
            })
        elif result["error"]:
            print(f"folio: {result['error']}", file=sys.stderr)
        return 1 if result["error"] else 0
    finally:
        folio.close()


def cmd_chat(args) -> int:
    folio = _folio(args)
    try:
        store = folio.store
        chat = store.get_chat(args.chat) if args.chat else store.create_chat(scope=_scope(args))
        engine = folio.chat
        print(f"Folio chat {chat.id} with {folio.runtime.info.name}. Type a question; "
              "/new starts a new chat, /regen answers again, /quit leaves. "
              "Ctrl+C stops an answer.")
        for m in store.messages(chat.id):
            who = "you" if m.role == "user" else "folio"
            print(f"{who}> {m.content}")
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return 0
            if line == "/new":
                chat = store.create_chat(scope=_scope(args))
                print(f"(new chat {chat.id})")
                continue
            if line == "/regen":
                events = lambda cancel: engine.regenerate(chat.id, cancel=cancel)  # noqa: E731
            else:
                events = lambda cancel, q=line: engine.ask(chat.id, q, cancel=cancel)  # noqa: E731
            sys.stdout.write("folio> ")
            result = _with_cancel(lambda cancel: _stream_answer(events(cancel), quiet=False))
            if result["error"]:
                print(f"(error: {result['error']})")
    finally:
        folio.close()


def cmd_summarize(args) -> int:
    folio = _folio(args)
    try:
        engine = folio.chat
        tty = sys.stderr.isatty() and not args.json

        def run(cancel):
            final = {"text": "", "error": None, "stats": {}}
            for ev in engine.summarize(args.path, cancel=cancel):
                if ev.kind == "progress" and tty:
                    sys.stderr.write(f"\r{ev.text} ({ev.done}/{ev.total})\033[K")
                    sys.stderr.flush()
                elif ev.kind == "done":
                    final.update(text=ev.text, stats=ev.stats)
                elif ev.kind == "error":
                    final["error"] = ev.text
            _clear_line(tty)
            return final

        final = _with_cancel(run)
        if args.json:
            _print_json({"path": args.path, "summary": final["text"], "error": final["error"],
                         **{k: v for k, v in final["stats"].items() if k != "document"}})
        elif final["error"]:
            print(f"folio: {final['error']}", file=sys.stderr)
        else:
            print(final["text"])
        return 1 if final["error"] else 0
    finally:
        folio.close()


def cmd_chats(args) -> int:
    from app.core.chat.history import ChatStore

    store = ChatStore.for_library(_library_path(args))
    try:
        if args.chats_command == "list":
            chats = store.list_chats(args.search)
            if args.json:
                _print_json([{"id": c.id, "title": c.title, "updated_at": c.updated_at}
                             for c in chats])
            for c in chats if not args.json else ():
                print(f"{c.id:5}  {c.title}")
            return 0
        try:
            store.get_chat(args.id)
        except KeyError:
            print(f"folio: there is no chat {args.id}", file=sys.stderr)
            return 1
        if args.chats_command == "show":
            print(store.export_markdown(args.id))
        elif args.chats_command == "export":
            Path(args.output).write_text(store.export_markdown(args.id), "utf-8")
            print(f"wrote {args.output}")
        elif args.chats_command == "rename":
            store.rename_chat(args.id, args.title)
        elif args.chats_command == "delete":
            store.delete_chat(args.id)
        return 0
    finally:
        store.close()


# -- models --------------------------------------------------------------------------------
# Exit codes: 0 done; 1 the download stopped (paused with Ctrl+C, or failed: run it again to
# resume); 2 a refusal (not a GGUF, unknown model, name clash) or a failure that left nothing.


def _model_manager(args):
    from app.core.models.manager import ModelManager

    store = None
    if getattr(args, "models_command", None) in ("list", "remove"):
        from app.core.chat.history import ChatStore

        root = _library_path(args)
        if (root / "folio.sqlite").exists():
            store = ChatStore.for_library(root)
    return ModelManager(history=store), store


def cmd_models(args) -> int:
    manager, store = _model_manager(args)
    try:
        return _MODEL_COMMANDS[args.models_command](manager, args)
    finally:
        if store is not None:
            store.close()


def _models_list(manager, args) -> int:
    rows = []
    for e in manager.list():
        row = e.to_json()
        est = None
        if e.info is not None:
            est = manager.estimate_memory(e, context_length=args.ctx)
        row["memory"] = est.to_json() if est else None
        row["fits"] = est.fits if est else None
        rows.append(row)
    partials = [
        {"url": p.url, "filename": p.filename, "done_bytes": p.done_bytes,
         "total_bytes": p.total_bytes, "error": p.error}
        for p in manager.partial_downloads()
    ]
    if args.json:
        _print_json({"models_dir": str(manager.models_dir), "default": manager.default_name(),
                     "models": rows, "partial_downloads": partials})
        return 0
    print(f"models folder: {manager.models_dir}")
    if not rows:
        print("(no models yet: `folio models add FILE.gguf` or `folio models download URL`)")
    for r in rows:
        mark = "*" if r["is_default"] else " "
        if r["error"]:
            print(f"{mark} {r['name']}  UNREADABLE: {r['error']}")
            continue
        i = r["info"]
        mem = r["memory"]
        print(f"{mark} {r['name']}  {i['architecture'] or '?'} {i['parameters']} "
              f"{i['quantization'] or '?'}  ctx {i['context_length'] or '?'}  "
              f"{'chat' if i['has_chat_template'] else 'base'}  "
              f"{human_bytes(r['size_bytes'])}  license {i['license'] or '-'}  "
              f"chats {r['used_by_chats']}")
        print(f"    memory at {mem['context_length']:,} tokens: {mem['reason']}")
    for p in partials:
        done = human_bytes(p["done_bytes"])
        total = human_bytes(p["total_bytes"]) if p["total_bytes"] else "?"
        print(f"  partial download {p['filename']} {done} of {total} ({p['url']})"
              + (f": {p['error']}" if p["error"] else ""))
    return 0


def _models_add(manager, args) -> int:
    from app.core.models.files import ModelError

    try:
        entry = manager.add(args.path, link=args.link)
    except ModelError as exc:
        print(f"folio models add: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(entry.to_json())
    else:
        print(f"added {entry.name} ({'linked' if entry.is_link else 'copied'})")
    return 0


def _models_download(manager, args) -> int:
    import time

    from app.core.models.download import DownloadDone, DownloadError
    from app.core.models.files import ModelError

    from app.core.models.catalog import catalog_size_tolerance

    url, sha, name = args.url, args.sha256, args.name
    size, tolerance = None, 0
    if "://" not in url:  # a catalog id
        found = [c for c in manager.catalog() if c.id == url]
        if not found:
            print(f"folio models download: {url!r} is neither a URL nor a catalog id "
                  f"({', '.join(c.id for c in manager.catalog())})", file=sys.stderr)
            return 2
        url, sha, name = found[0].url, sha or found[0].sha256, name or found[0].filename
        size = found[0].size_bytes or None
        tolerance = catalog_size_tolerance(size) if size else 0
    if args.cancel:
        manager.cancel_download(url)
        print(f"cancelled {url}", file=sys.stderr)
        return 0
    tty = sys.stderr.isatty()
    if not sha:
        print("note: no sha256 given: the file is verified against the sha256 the server "
              "publishes (Hugging Face does for its large files); without one, only its size "
              "and GGUF layout are checked", file=sys.stderr)

    def run(cancel):
        done = None
        last = 0.0
        for ev in manager.download(url, sha256=sha, filename=name, discard=args.restart,
                                   should_stop=cancel.is_set, expected_size=size,
                                   size_tolerance=tolerance):
            if isinstance(ev, DownloadDone):
                done = ev
            elif ev.stage == "paused":
                _clear_line(tty)
                print(f"paused at {human_bytes(ev.done_bytes)}; run the same command to resume",
                      file=sys.stderr)
            elif tty or time.monotonic() - last > 5 or ev.stage == "verifying":
                last = time.monotonic()
                total = f" of {human_bytes(ev.total_bytes)}" if ev.total_bytes else ""
                eta = f", {human_duration(ev.eta_s)} left" if ev.eta_s else ""
                text = (f"{ev.stage} {ev.filename}: {human_bytes(ev.done_bytes)}{total} "
                        f"({human_bytes(ev.speed_bps)}/s{eta})")
                if ev.resumed_from:
                    text += f", resumed at {human_bytes(ev.resumed_from)}"
                if tty:
                    sys.stderr.write(f"\r{text}\033[K")
                    sys.stderr.flush()
                else:
                    print(text, file=sys.stderr)
        _clear_line(tty)
        return done

    try:
        done = _with_cancel(run)
    except DownloadError as exc:
        _clear_line(tty)
        print(f"folio models download: {exc}", file=sys.stderr)
        if args.json:
            _print_json({"ok": False, "error": str(exc), "url": url})
        resumable = any(p.url == url for p in manager.partial_downloads())
        return 1 if resumable else 2
    except ModelError as exc:
        print(f"folio models download: {exc}", file=sys.stderr)
        return 2
    if done is None:
        if args.json:
            _print_json({"ok": False, "paused": True, "url": url})
        return 1
    if args.json:
        _print_json({"ok": True, "url": url, **done.entry.to_json(), "sha256": done.sha256,
                     "verified": done.verified, "checksum_source": done.checksum_source,
                     "verification": done.verification})
    else:
        print(f"downloaded {done.entry.name} to {done.path} ({done.verification})")
    return 0


def _models_remove(manager, args) -> int:
    from app.core.models.files import ModelError

    try:
        entry = manager.get(args.name)
    except ModelError as exc:
        print(f"folio models remove: {exc}", file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print("folio models remove: add --yes to remove without a prompt", file=sys.stderr)
            return 2
        used = f" ({entry.used_by_chats} chats use it)" if entry.used_by_chats else ""
        answer = input(f"Remove {entry.name}{used}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("kept", file=sys.stderr)
            return 1
    manager.remove(entry.name)
    print(f"removed {entry.name}")
    return 0


def _models_default(manager, args) -> int:
    from app.core.models.files import ModelError

    if not args.name:
        print(manager.default_name())
        return 0
    try:
        manager.set_default(args.name)
    except ModelError as exc:
        print(f"folio models default: {exc}", file=sys.stderr)
        return 2
    print(f"default model: {manager.default_name()}")
    return 0


_MODEL_COMMANDS = {
    "list": _models_list, "add": _models_add, "download": _models_download,
    "remove": _models_remove, "default": _models_default,
}


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
