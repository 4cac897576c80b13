"""The desktop window (PySide6). Nothing in app/core imports from here."""
