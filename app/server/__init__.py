"""Folio as a local server: the library and the models to other programs.

- `backend.py`: what both servers ask of the engine (answers, search, documents, embeddings),
  on the same `Folio` the CLI and the window use; nothing here answers or searches by itself.
- `api.py`: the OpenAI-compatible HTTP API (`folio serve`, and the window's switch).
- `turns.py`: the fair queue in front of the one model.
- `runner.py`: the API key, the loopback check, and running the API in the foreground or in
  a thread of the window's process.
- `mcp.py`: the library as read-only MCP tools over stdio (`folio mcp`).
"""
