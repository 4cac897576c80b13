"""`folio models list | add | download | remove | default`: the model manager from a terminal.

Exit codes: 0 done; 1 a download stopped and can be resumed (or a removal was declined);
2 refused or failed with nothing kept.
"""

from __future__ import annotations

import sys

from app.cli.common import clear_line, library_path, print_json, with_cancel
from app.core.base.units import human_bytes, human_duration


def _model_manager(args):
    from app.core.models.manager import ModelManager

    store = None
    if getattr(args, "models_command", None) in ("list", "remove"):
        from app.core.base.paths import local_library_dir
        from app.core.chat.history import ChatStore

        root = local_library_dir(library_path(args))
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
        print_json({"models_dir": str(manager.models_dir), "default": manager.default_name(),
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
        print_json(entry.to_json())
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
                clear_line(tty)
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
        clear_line(tty)
        return done

    try:
        done = with_cancel(run)
    except DownloadError as exc:
        clear_line(tty)
        print(f"folio models download: {exc}", file=sys.stderr)
        if args.json:
            print_json({"ok": False, "error": str(exc), "url": url})
        resumable = any(p.url == url for p in manager.partial_downloads())
        return 1 if resumable else 2
    except ModelError as exc:
        print(f"folio models download: {exc}", file=sys.stderr)
        return 2
    if done is None:
        if args.json:
            print_json({"ok": False, "paused": True, "url": url})
        return 1
    if args.json:
        print_json({"ok": True, "url": url, **done.entry.to_json(), "sha256": done.sha256,
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
