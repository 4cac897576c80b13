"""`folio serve` (the OpenAI-compatible HTTP API) and `folio mcp` (MCP tools on stdio).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from app.cli.common import library_path, note_read_only


def _open_backend(args, *, switch_models: bool = True):
    from app.core.service import Folio
    from app.core.settings import AppSettings
    from app.server.backend import Backend

    folio = Folio(library_path(args), settings=AppSettings.load())
    folio.library_read_only = None  # the servers only read the library
    if folio.library.read_only:
        note_read_only(folio.library.root)
    return folio, Backend(folio, switch_models=switch_models)


def _log_to_stderr() -> None:
    """The server's own lines (a client that left, how fast the model stopped) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("folio serve: %(message)s"))
    logger = logging.getLogger("app.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = True


def cmd_serve(args) -> int:
    from app.server.api import create_app
    from app.server.runner import bind, exposure_warning, serve_on, stored_api_key

    if args.max_queue < 0:
        print("folio serve: --max-queue must be 0 or more", file=sys.stderr)
        return 2
    warning = exposure_warning(args.host)
    if warning:
        print(f"folio serve: WARNING: {warning}", file=sys.stderr)
    key = args.api_key or stored_api_key()
    if len(key) < 16:
        print("folio serve: --api-key must be at least 16 characters", file=sys.stderr)
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"folio serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    _log_to_stderr()
    folio, backend = _open_backend(args)
    try:
        print("folio serve: loading the library, the embedder and the model...",
              file=sys.stderr, flush=True)
        backend.warm_up()
        app = create_app(backend, key, max_waiting=args.max_queue)
        host, port = sock.getsockname()[:2]
        shown = "(the one you gave)" if args.api_key else key
        print(f"folio serve: ready at http://{_url_host(host)}:{port}/v1 for the library "
              f"{Path(str(folio.library_path)).name}; model 'folio' answers from it. API key: "
              f"{shown}. Ctrl+C stops.", file=sys.stderr, flush=True)
        serve_on(app, sock)
        return 0
    finally:
        backend.close()
        folio.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cmd_mcp(args) -> int:
    from app.server.mcp import run_stdio

    folio, backend = _open_backend(args)
    try:
        run_stdio(backend)
        return 0
    finally:
        backend.close()
        folio.close()
