"""The library search tool: hybrid search over the user's indexed documents, the passages
returned with path, page and section as `folio ask --json` gives its sources."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.core.index.search import hybrid_search
from app.core.tools.base import Capability, Tool, ToolError

if TYPE_CHECKING:
    from app.core.index.library import Library

MAX_K = 20
MAX_TEXT = 1500  # characters of each passage the model gets back


def search_tool(library: Library | Callable[[], Library | None],
                reranker: Callable[[], Any] | None = None) -> Tool:
    """A `search_library` tool over `library` (or a function giving the current one),
    ranked as the chat ranks: `reranker` gives the reranking stage (index/rerank.py)."""

    def run(query: str, k: int = 5, collection: str | None = None) -> dict[str, Any]:
        lib = library() if callable(library) else library
        if lib is None:
            raise ToolError("no library is open")
        if not query.strip():
            raise ToolError("the query is empty")
        if collection and collection not in lib.collections():
            raise ToolError(f"there is no collection {collection!r}")
        results = hybrid_search(lib, query, k=k, reranker=reranker() if reranker else None,
                                collections=[collection] if collection else None)
        return {"passages": [
            {"path": r.path, "page": r.page, "page_end": r.page_end, "section": r.section,
             "score": round(float(r.score), 6), "text": r.text[:MAX_TEXT]}
            for r in results]}

    return Tool(
        name="search_library",
        description="Search the user's documents; returns passages with path, page and section.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 1000},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
                "collection": {"type": "string"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        capability=Capability.READS_LIBRARY,
        run=run,
        time_limit=30.0,
    )
