"""Which parts of torch.distributed and torch.testing Folio imports at run time, to keep
folio.spec's TORCH_UNUSED list true when torch, transformers or sentence-transformers change.

    .venv/bin/python packaging/torch_imports.py

Runs the self-test from source (the real ingest, search, answer and window steps), then lists
the children of those packages that were imported and those that were not: the spec leaves
the latter out (PyInstaller's torch hook would otherwise collect every torch submodule).
"""

from __future__ import annotations

import importlib
import io
import os
import pkgutil
import sys

PACKAGES = [
    "torch.distributed", "torch.distributed.algorithms", "torch.distributed.checkpoint",
    "torch.distributed.tensor", "torch.testing._internal", "torch.testing._internal.distributed",
]


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from app import selftest

    log = io.StringIO()
    if selftest.run(out=log) != 0:
        print(log.getvalue())
        return 1
    import app.ui.main_window  # noqa: F401 - the window's imports too

    used = {m for m in sys.modules if m.startswith(("torch.distributed", "torch.testing"))}
    print(f"{len(used)} torch.distributed / torch.testing modules imported")
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        children = sorted(f"{name}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__))
        unused = [c for c in children if not any(u == c or u.startswith(c + ".") for u in used)]
        print(f"\n{name}: {len(children) - len(unused)} of {len(children)} children imported")
        print("  not imported: " + " ".join(c.rsplit(".", 1)[1] for c in unused))
    return 0


if __name__ == "__main__":
    sys.exit(main())
