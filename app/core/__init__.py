"""The Qt-free engine. Nothing in this package may import PySide6 (a test checks it)."""
