"""The curated download catalog (resources/models_catalog.json).
"""

from __future__ import annotations

import json
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
    out = []
    for item in data.get("models", []):
        out.append(CatalogEntry(**{k: v for k, v in item.items() if k in known}))
    return out


# -- downloading -------------------------------------------------------------------------------
