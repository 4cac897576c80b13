"""A small real MCP server on stdio for tests/test_mcp_source.py: a tool that echoes, one that
sleeps (for time limits), one that fails, one that ends the whole process (a crash), and one
with a readOnlyHint. Run as `python tests/mcp_testserver.py`."""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer(name="testserver", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Give `text` back."""
    return text


@server.tool()
def sleep(seconds: float) -> str:
    """Sleep for `seconds`, then say so."""
    time.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(reason: str) -> str:
    """Refuse with `reason`."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """End the server process at once."""
    os._exit(3)


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def peek() -> dict:
    """Read nothing; declared read-only."""
    return {"seen": True}


if __name__ == "__main__":
    server.run("stdio")
