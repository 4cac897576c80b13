"""The model manager window and the Model tab (PySide6)."""
