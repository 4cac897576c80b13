"""Folio: chat with your own documents, entirely on your own machine."""

__version__ = "0.1.0"
APP_NAME = "Folio"
