"""Errors that more than one room of the engine raises or catches."""

from __future__ import annotations


class RemoteError(Exception):
    """A remote provider's failure (app/core/llm/remote.py), with a message a user can act on.
    Here so that the index can catch a remote embedder's failure without loading HTTP."""
