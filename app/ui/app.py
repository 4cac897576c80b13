"""Starting the window: a QApplication on qasync's event loop, the window shown first.

Only Qt and the window's own modules are imported before `show()`; the library (LanceDB),
the embedder (torch) and the model (llama.cpp) are opened by jobs started right after the
first paint, so the window appears in well under two seconds.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def run(library: Path | str | None = None, argv: list[str] | None = None) -> int:
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setOrganizationName("Folio")
    app.setApplicationName("Folio")
    app.setApplicationDisplayName("Folio")

    from app.ui.main_window import MainWindow

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    app.lastWindowClosed.connect(closed.set)

    window = MainWindow(library)
    window.show()
    QTimer.singleShot(0, window.start)
    with loop:
        loop.run_until_complete(closed.wait())
    return 0
