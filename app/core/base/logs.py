"""Logging: a rotating file in the log folder, and warnings on stderr for the CLI."""

from __future__ import annotations

import logging
import logging.handlers
import os
import warnings

from app.core.base.paths import log_dir, make_private_dir

_configured = False


def setup_logging(verbose: bool = False, console: bool = True) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder = log_dir()
        make_private_dir(folder)
        handler = logging.handlers.RotatingFileHandler(
            folder / "folio.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError:
        pass  # a read-only home must not stop Folio
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.INFO if verbose else logging.WARNING)
        stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(stream)
    # Libraries' chatter is not the user's business unless asked for.
    for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3", "lance"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)
    os.environ.setdefault("RUST_LOG", "error")  # LanceDB's Rust log lines
    os.environ.setdefault("LANCE_LOG", "error")
    if not verbose:
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
