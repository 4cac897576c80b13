"""`folio embedders list | install`.
"""

from __future__ import annotations

import sys

from app.cli.common import clear_line, print_json, with_cancel
from app.core.base.units import human_bytes, human_duration


def cmd_embedders(args) -> int:
    if args.embedders_command == "list":
        return _embedders_list(args)
    return _embedders_install(args)


def _embedders_list(args) -> int:
    from app.core.index import embedder_install as ei
    from app.core.index.embedder import downloadable_embedders, embedders_dir, known_specs, looks_like_model

    try:
        paths = {name: spec.path for name, spec in known_specs().items()}
    except ImportError:  # the MiniLM package is missing: still list what can be installed
        paths = {}
    for spec in downloadable_embedders():
        paths.setdefault(spec.name, ei.install_path(spec.name))
    rows = []
    for name, path in paths.items():
        download = ei.DOWNLOADABLE.get(name)
        installed = looks_like_model(path)
        rows.append({
            "name": name, "installed": installed, "path": str(path),
            "dims": (ei.model_dims(path) if installed else None)
            or (download.dims if download else None),
            "size_bytes": ei.folder_size(path) if installed else None,
            "downloadable": download is not None,
            "download_bytes": download.download_size if download else None,
        })
    rows += _provider_rows()
    if args.json:
        print_json({"embedders_dir": str(embedders_dir()), "embedders": rows})
        return 0
    print(f"embedders folder: {embedders_dir()}")
    for r in rows:
        if r.get("provider"):
            print(f"  {r['name']}  remote  {r['model']} at {r['url']}")
            continue
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
        path = with_cancel(lambda cancel: install_embedder(name, progress=progress,
                                                            cancel=cancel))
    except EmbedderInstallCancelled:
        clear_line(tty)
        print(f"folio embedders install: cancelled; nothing of {name} was kept",
              file=sys.stderr)
        if args.json:
            print_json({"ok": False, "name": name, "cancelled": True})
        return 130
    except EmbedderInstallError as exc:
        clear_line(tty)
        print(f"folio embedders install: {exc}", file=sys.stderr)
        if args.json:
            print_json({"ok": False, "name": name, "error": str(exc)})
        return 2
    clear_line(tty)
    seconds = time.monotonic() - started
    size = folder_size(path)
    if args.json:
        print_json({"ok": True, "name": name, "path": str(path), "size_bytes": size,
                     "already_installed": already, "seconds": round(seconds, 1)})
    elif already:
        print(f"{name} is already installed at {path}")
    else:
        print(f"installed {name} ({human_bytes(size)}) in {human_duration(seconds)}: {path}\n"
              f"use it with: folio reindex --embedder {name}")
    return 0


def _provider_rows() -> list[dict]:
    """Providers with an embedder model: `--embedder provider:NAME` embeds through them.
    Nothing is sent to list them."""
    from app.cli.common import user_settings

    return [{"name": f"provider:{c.name}", "provider": c.name, "model": c.embedder_model,
             "url": c.base_url, "installed": True, "remote": True}
            for c in user_settings().provider_embedders()]
