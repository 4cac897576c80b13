"""Starting the window: a QApplication on qasync's event loop, the window shown first.

Only Qt and the window's own modules are imported before `show()`; the library (LanceDB),
the embedder (torch) and the model (llama.cpp) are opened by jobs started right after the
first paint, so the window appears in well under two seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


def run(library: Path | str | None = None, argv: list[str] | None = None) -> int:
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        _high_dpi_defaults()
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

    window = MainWindow(library, guide=True)
    _set_window_icon(app)
    window.show()
    QTimer.singleShot(0, window.start)
    if os.environ.get("FOLIO_STARTUP_PROBE"):
        _startup_probe(window)
    with loop:
        loop.run_until_complete(closed.wait())
    # Closed during a model load: the window is gone; let the load finish and release it.
    window.wait_released()
    return 0


def _high_dpi_defaults() -> None:
    """Qt 6 scales for high-DPI screens by itself; only make sure a fractional scale (125 %,
    150 %) is used as it is rather than rounded, unless the user chose a policy."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    if not os.environ.get("QT_SCALE_FACTOR_ROUNDING_POLICY"):
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


def _set_window_icon(app) -> None:
    from PySide6.QtGui import QIcon

    from app.core.base.paths import resource_path

    svg = resource_path("icons", "folio.svg")  # vector: crisp at any scale
    if svg.exists():
        app.setWindowIcon(QIcon(str(svg)))


def _startup_probe(window) -> None:
    """FOLIO_STARTUP_PROBE=1 (benchmarks/bench_gui.py): print "READY <seconds since the process
    started>" on the first idle tick after the window is shown, painted and started; then
    close it (the model is still loading) and print "CLOSED <seconds close() took>"."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class Painted(QObject):
        seen = False

        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Paint:
                self.seen = True
            return False

    painted = Painted(window)
    window.installEventFilter(painted)

    def check() -> None:
        handle = window.windowHandle()
        if not (painted.seen and window._started and handle is not None and handle.isExposed()):
            QTimer.singleShot(1, check)
            return
        print(f"READY {_seconds_since_process_start():.3f}", flush=True)
        window.removeEventFilter(painted)
        import time

        t0 = time.perf_counter()
        window.close()  # while the model is still loading: how long does closing block?
        print(f"CLOSED {time.perf_counter() - t0:.3f} hidden={not window.isVisible()}",
              flush=True)

    QTimer.singleShot(0, check)


def _seconds_since_process_start() -> float:
    try:  # Linux: both in clock ticks since boot, 10 ms resolution
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # psutil's create_time: whole-second boot time
        import time

        import psutil

        return time.time() - psutil.Process().create_time()
