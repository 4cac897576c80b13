"""The curated download catalog (resources/models_catalog.json).

Every entry is pinned: its URL names the Hugging Face commit (`resolve/<40 hex>/`), never a
branch such as `main`, so the file the catalog lists, and the sha256 Hugging Face publishes
for it, cannot change under the catalog; `load_catalog` refuses an entry that is not pinned.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from app.core.models.files import ModelError


@dataclass
class CatalogEntry:
    id: str
    name: str
    url: str
    filename: str
    size_bytes: int
    sha256: str | None  # None: none published here; the server's (X-Linked-Etag) is used
    license: str
    ram_bytes: int
    description: str
    revision: str = ""  # the Hugging Face commit the URL names (40 hex digits)
    parameters: str = ""
    quantization: str = ""
    context_length: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def catalog_size_tolerance(size_bytes: int) -> int:
    """How far a download may be from the catalog's size_bytes and still be the file it
    lists. The catalog gives the published sizes to three significant figures, as Hugging
    Face shows them ("491 MB", "1.12 GB"): half a unit of the third figure is at most 0.5 %
    of the size; at least 1 MB. Another quantization of the same model differs by far more."""
    return max(1_000_000, int(size_bytes) // 200)


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The curated download catalog (resources/models_catalog.json)."""
    from app.core.base.paths import resource_path

    path = path or resource_path("models_catalog.json")
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The model catalog {path} is unreadable: {exc}") from exc
    known = {f.name for f in fields(CatalogEntry)}
    items = data.get("models", []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ModelError(f"The model catalog {path} has no list of models")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ModelError(f"The model catalog {path} lists {item!r}, not a model")
        try:
            entry = CatalogEntry(**{k: v for k, v in item.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"The model catalog {path}: {item.get('id')!r} is incomplete "
                             f"({exc})") from exc
        problem = pin_problem(entry)
        if problem:
            raise ModelError(f"The model catalog {path}: {entry.id!r} {problem}")
        out.append(entry)
    return out


_HF_RESOLVE = re.compile(r"^/[^/]+/[^/]+/resolve/([^/]+)/(.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def pin_problem(entry: CatalogEntry) -> str | None:
    """Why a catalog entry does not name one exact file, or None when it does: an https
    Hugging Face `resolve` URL at a commit (40 lowercase hex digits, not a branch or tag),
    the same commit as the entry's `revision`, ending in the entry's file name."""
    url = urllib.parse.urlsplit(entry.url)
    match = _HF_RESOLVE.match(url.path)
    if url.scheme != "https" or url.netloc != "huggingface.co" or not match or url.query:
        return (f"has the URL {entry.url!r}; a catalog URL must be "
                "https://huggingface.co/OWNER/REPO/resolve/COMMIT/FILE")
    revision, filename = match.groups()
    if not _COMMIT.match(revision):
        return (f"is not pinned: its URL names {revision!r}, not a commit (40 hex digits), "
                "so the file could change under the catalog")
    if entry.revision != revision:
        return f"names the revision {entry.revision!r} but its URL names {revision!r}"
    if urllib.parse.unquote(filename) != entry.filename:
        return f"names the file {entry.filename!r} but its URL names {filename!r}"
    return None


# -- downloading -------------------------------------------------------------------------------
