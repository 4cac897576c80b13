"""`folio mcp`: a real MCP server process on stdio, driven by the `mcp` SDK's own client, as
a desktop chat app would start it."""

from __future__ import annotations

import sys

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from serverproc import ROOT, build_library, folio_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory, starter_model):
    home = tmp_path_factory.mktemp("mcp-home")
    build_library(home)
    return home


def _session(home, body):
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "app", "mcp", "--library", str(home / "library")],
                                   env=folio_env(home), cwd=str(ROOT))

    async def main():
        async with Client(params, read_timeout_seconds=300) as client:
            return await body(client)

    return anyio.run(main)


def test_the_tools_are_offered_read_only(home):
    async def body(client):
        return (await client.list_tools()).tools

    tools = {t.name: t for t in _session(home, body)}
    assert set(tools) == {"search_library", "ask", "list_documents"}
    for tool in tools.values():
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.destructive_hint is False
        assert tool.description
    props = tools["search_library"].input_schema["properties"]
    assert {"query", "k", "collection"} <= set(props)
    assert tools["search_library"].input_schema["required"] == ["query"]
    assert tools["ask"].input_schema["required"] == ["question"]


def test_search_ask_and_list_documents(home):
    async def body(client):
        search = await client.call_tool("search_library", {
            "query": "how much chain should I let out before anchoring?", "k": 2})
        in_collection = await client.call_tool("search_library", {
            "query": "who cooks on Fridays?", "k": 1, "collection": "sailing"})
        no_collection = await client.call_tool("search_library", {
            "query": "anchor", "collection": "no-such-collection"})
        bad_k = await client.call_tool("search_library", {"query": "anchor", "k": 0})
        docs = await client.call_tool("list_documents", {})
        answer = await client.call_tool("ask", {
            "question": "How much chain should I let out when anchoring?"})
        return search, in_collection, no_collection, bad_k, docs, answer

    search, in_collection, no_collection, bad_k, docs, answer = _session(home, body)

    assert not search.is_error
    passages = search.structured_content["passages"]
    assert 1 <= len(passages) <= 2
    best = passages[0]
    assert {"path", "page", "section", "score", "text"} <= set(best)
    assert best["path"] == str(home / "docs" / "boats.pdf")
    assert best["page"] == 2 and "Anchoring" in best["section"]
    assert "Let out chain" in search.content[0].text  # the text form carries the same

    assert in_collection.structured_content["passages"][0]["path"].endswith("crew.docx")
    assert no_collection.is_error and "no-such-collection" in no_collection.content[0].text
    assert bad_k.is_error

    listed = docs.structured_content["documents"]
    assert sorted(d["path"].rsplit("/", 1)[-1] for d in listed) == ["boats.pdf", "crew.docx"]
    assert all(d["status"] == "ready" and d["collections"] == ["sailing"] for d in listed)

    assert not answer.is_error
    result = answer.structured_content
    assert result["answer"].strip()
    assert result["sources"] and result["sources"][0]["path"].endswith("boats.pdf")
    assert set(result["sources"][0]) == {"path", "page", "page_end", "section", "score",
                                         "text"}


def test_the_library_is_not_changed(home):
    """Read-only: the tools leave the library's documents and chats as they were."""
    from app.core.chat.history import ChatStore

    before = (home / "library" / "lancedb").stat().st_mtime_ns
    store = ChatStore.for_library(home / "library")
    chats_before = len(store.list_chats())
    store.close()

    async def body(client):
        return await client.call_tool("ask", {"question": "Who cooks on Mondays?"})

    assert not _session(home, body).is_error
    store = ChatStore.for_library(home / "library")
    assert len(store.list_chats()) == chats_before
    store.close()
    assert (home / "library" / "lancedb").stat().st_mtime_ns == before
