"""Embedders that a room above the index supplies, by a prefix of the name they are chosen by
(a remote provider's embedder model as `provider:NAME`, registered by app/core/settings.py,
which knows the providers). The index names and builds them through here without importing
what sits above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# prefix -> (the name a library records for a source, a function that builds the embedder)
_sources: dict[str, tuple[Callable[[str], str], Callable[[str], Any]]] = {}


def register(prefix: str, name_of: Callable[[str], str], make: Callable[[str], Any]) -> None:
    _sources[prefix] = (name_of, make)


def find(source: str | None) -> tuple[Callable[[str], str], Callable[[str], Any]] | None:
    """(name_of, make) for a source with a registered prefix, else None."""
    if not isinstance(source, str):
        return None
    for prefix, pair in _sources.items():
        if source.startswith(prefix):
            return pair
    return None
