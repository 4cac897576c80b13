"""`folio watch DIR...`: keep folders indexed until Ctrl+C, printing every change applied."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from app.cli.common import file_time_limit, open_library


def print_batch(batch, out=sys.stdout) -> None:
    for path in batch.indexed:
        print(f"indexed {path}", file=out, flush=True)
    for old, new in batch.moved:
        print(f"moved   {old} -> {new}", file=out, flush=True)
    for path in batch.removed:
        print(f"removed {path}", file=out, flush=True)
    for path, reason in batch.failed:
        print(f"failed  {path}: {reason}", file=out, flush=True)


def cmd_watch(args) -> int:
    from app.core.index.ingest import IngestOptions
    from app.core.index.watch import FolderWatcher

    if args.quiet <= 0:
        print("folio watch: --quiet must be more than 0 seconds", file=sys.stderr)
        return 2
    folders = [Path(p).expanduser() for p in args.folders]
    for folder in folders:
        if not folder.is_dir():
            print(f"folio watch: {folder}: not a folder", file=sys.stderr)
            return 2
    lib = open_library(args)
    options = IngestOptions(collection=args.collection, time_limit=file_time_limit())
    watcher = FolderWatcher(lib, folders, quiet=args.quiet, options=options,
                            on_batch=print_batch)
    # Start watching before the catch-up scan, so nothing saved during the scan is missed.
    watcher.start()
    stop = threading.Event()
    try:
        print_batch(watcher.rescan())
        print(f"watching {', '.join(str(f) for f in watcher.folders)} (Ctrl+C to stop)",
              flush=True)
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        print("folio watch: stopped", file=sys.stderr)
    finally:
        watcher.stop()
        lib.close()
    return 0
