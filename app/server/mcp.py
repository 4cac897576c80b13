"""`folio mcp`: the library as Model Context Protocol tools, on stdio (the `mcp` SDK's
MCPServer). Desktop chat apps and agents start it as a child process and call:

- `search_library(query, k, collection)`: passages with path, page, section, score, text;
- `ask(question)`: an answer from the library with its sources, as `folio ask` gives it;
- `list_documents()`: what the library holds.

All three only read (annotated `readOnlyHint`); the library is opened read-only when another
Folio process writes it. The tools are the backend's (app/server/backend.py), the same the
HTTP API uses. stdout is the protocol: nothing else may print there (logs go to stderr).
"""

from __future__ import annotations

import threading
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from app.server.backend import FOLIO_MODEL, Backend, BadRequest, Delta, Final

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True,
                            openWorldHint=False)

INSTRUCTIONS = (
    "Folio holds the user's own documents (PDF, Word, text, web pages...). Use search_library "
    "to find passages, ask for a cited answer written by the local model, list_documents to "
    "see what is there. Cite passages by their path and page.")


def build_server(backend: Backend) -> MCPServer:
    server = MCPServer(name="folio", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(annotations=READ_ONLY, structured_output=True)
    def search_library(query: str, k: int = 5, collection: str | None = None) -> dict[str, Any]:
        """Find the passages of the user's documents that best match `query` (hybrid
        keyword and meaning search). `k`: how many (1-50); `collection`: only documents in
        this collection. Each passage has its path, page, section, score and text."""
        try:
            return {"passages": backend.search(query, k, collection)}
        except BadRequest as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=READ_ONLY, structured_output=True)
    def ask(question: str) -> dict[str, Any]:
        """Answer `question` from the user's documents with Folio's local model, citing
        sources as [n]; `sources` lists them (path, page, section, score, text)."""
        parts: list[str] = []
        final = Final(finish_reason="error", error="no answer")
        try:
            for ev in backend.answer(FOLIO_MODEL, [{"role": "user", "content": question}], {},
                                     threading.Event()):
                if isinstance(ev, Delta):
                    parts.append(ev.text)
                else:
                    final = ev
        except BadRequest as exc:
            raise ToolError(str(exc)) from None
        if final.error:
            raise ToolError(final.error)
        return {"answer": "".join(parts).strip(), "sources": final.sources}

    @server.tool(annotations=READ_ONLY, structured_output=True)
    def list_documents() -> dict[str, Any]:
        """The documents in the library: path, title, kind, status (ready, failed...),
        pages, chunks, collections, and the error of a document that failed."""
        return {"documents": backend.documents()}

    return server


def run_stdio(backend: Backend) -> None:
    build_server(backend).run("stdio")
