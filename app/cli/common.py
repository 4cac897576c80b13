"""What the command modules share: opening the library or the engine, JSON output, Ctrl+C.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
from pathlib import Path

from app.core.base.paths import default_library, library_location


def library_path(args) -> Path | str:
    """The --library folder (or s3:// URI), else the default."""
    return library_location(args.library) if args.library else default_library()


def user_settings():
    """The user's settings (the defaults when they can't be read: a broken settings file
    must not stop a command)."""
    from app.core.settings import AppSettings

    try:
        return AppSettings.load()
    except Exception:  # noqa: BLE001
        return AppSettings()


def file_time_limit() -> float:
    """The per-file time limit from the user's settings."""
    return float(user_settings().file_time_limit)


def open_library(args, embedder_name: str | None = None, read_only: bool | None = False):
    """read_only=None (read commands): read-only when another Folio process writes it."""
    from app.core.index.library import Library

    lib = Library.open(library_path(args), embedder_name=embedder_name, read_only=read_only)
    if lib.read_only:
        note_read_only(lib.root)
    return lib


def note_read_only(root) -> None:
    from app.core.index import remote
    from app.core.index.lock import holder

    if remote.is_remote(root):  # reads of a shared library never take its lease
        return
    pid = (holder(root) or {}).get("pid")
    who = f" (pid {pid})" if pid else ""
    print(f"folio: the library is open in another Folio window or command{who}; reading it "
          f"as it is now, without changes.", file=sys.stderr)


def print_json(value) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")
    sys.stdout.flush()


def clear_line(tty: bool) -> None:
    if tty:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def open_folio(args):
    from app.core.service import Folio

    ctx = getattr(args, "ctx", None)  # an explicit --ctx beats the model's own setting
    provider, key = provider_for(args)  # --provider NAME: a remote provider answers
    folio = Folio(library_path(args), model_path=getattr(args, "model", None),
                  load_overrides={"n_ctx": ctx} if ctx else None,
                  allow_oversize=bool(getattr(args, "allow_oversize", False)),
                  provider=provider, provider_key=key)
    folio.reranker_choice = user_settings().reranker  # ranked as `folio search` and the window
    return folio


def load_overrides(args) -> dict:
    out = {}
    for key in ("max_tokens", "temperature", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def chat_scope(args) -> dict:
    if getattr(args, "no_docs", False):
        return {"mode": "none"}
    if getattr(args, "doc", None):
        return {"mode": "documents", "documents": args.doc}
    if getattr(args, "collection", None):
        return {"mode": "collections", "collections": args.collection}
    return {"mode": "all"}


def with_cancel(run):
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


KEY_ENV = "FOLIO_PROVIDER_KEY"


def ask_key(name: str) -> str:
    """The key from FOLIO_PROVIDER_KEY, else typed (hidden) at a terminal; "" for none."""
    key = os.environ.get(KEY_ENV)
    if key is not None:
        return key.strip()
    if not sys.stdin.isatty():
        return ""
    return getpass.getpass(f"API key for {name} (empty for none): ").strip()


def provider_for(args):
    """(ProviderConfig, key or None) for `--provider NAME`; (None, None) without it.
    UnknownProvider when there is no such provider."""
    name = getattr(args, "provider", None)
    if not name:
        return None, None
    from app.core import settings as app_settings
    from app.core.llm.remote import get_key, keyring_available, session_key

    config = app_settings.load().find_provider(name)
    key = get_key(name)
    if key is None:
        if not keyring_available():
            print(f"folio: there is no system keyring, so the key for {name} is asked for "
                  f"each session (or set {KEY_ENV}).", file=sys.stderr)
        key = ask_key(name)
        session_key(name, key)
    return config, key
