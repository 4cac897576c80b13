"""MCP servers as tool sources for Folio's chat (app/core/tools/mcp_source.py), with real
servers over stdio: tests/mcp_testserver.py (echo, sleep, fail, crash, a read-only tool) and
Folio's own `folio mcp`. Also their settings, `folio tools` and the runner's time limits."""

from __future__ import annotations

import json
import sys

import psutil
import pytest

from app.cli import main
from app.core.chat.tool_chat import run_with_tools
from app.core.settings import AppSettings
from app.core.tools.base import Capability, ToolCall
from app.core.tools.calculator import CALCULATOR
from app.core.tools.mcp_source import (
    McpServerConfig,
    is_folio_library_server,
    load_sources,
)
from app.core.tools.runner import ToolRunner, needs_approval
from tests.serverproc import ROOT, build_library, folio_env
from tests.test_tools import ScriptedToolModel, _call

TEST_SERVER = {"name": "t", "command": sys.executable,
               "args": [str(ROOT / "tests" / "mcp_testserver.py")]}
YES = lambda tool, call: True  # noqa: E731 - the user allows every call


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE}


@pytest.fixture
def test_tools():
    before = _children()
    loaded = load_sources([TEST_SERVER], time_limit=5)
    assert loaded.problems == []
    yield loaded
    loaded.close()
    assert _children() <= before  # closing ends the server process


def test_a_servers_tools_become_folio_tools_that_ask_first(test_tools):
    tools = {t.name: t for t in test_tools.tools}
    assert set(tools) == {"t__echo", "t__sleep", "t__fail", "t__crash", "t__peek"}
    assert tools["t__echo"].description == "[t] Give `text` back."
    assert tools["t__echo"].parameters["required"] == ["text"]
    assert tools["t__echo"].capability is Capability.WRITES
    # readOnlyHint from another program is a hint, not a promise: it still asks.
    assert tools["t__peek"].capability is Capability.NETWORK
    assert all(needs_approval(t) for t in tools.values())
    runner = ToolRunner([*test_tools.tools, CALCULATOR])
    refused = runner.run(ToolCall("t__echo", {"text": "hi"}))
    assert refused == {"tool": "t__echo", "ok": False, "error": "the user did not allow this call"}
    assert runner.run(ToolCall("t__echo", {"text": "hi"}), approve=YES) == {
        "tool": "t__echo", "ok": True, "result": {"result": "hi"}}
    bad = runner.run(ToolCall("t__echo", {"txt": "hi"}), approve=YES)  # checked by its schema
    assert bad["ok"] is False and "text" in bad["error"]


def test_a_failure_a_timeout_and_a_crash_are_error_results(test_tools):
    runner = ToolRunner([*test_tools.tools, CALCULATOR])
    failed = runner.run(ToolCall("t__fail", {"reason": "no such page"}), approve=YES)
    assert failed["ok"] is False and "no such page" in failed["error"]

    slow = runner.run(ToolCall("t__sleep", {"seconds": 120}), approve=YES)
    assert slow["ok"] is False and "longer than its 5 s limit" in slow["error"]
    # The timed-out request was cancelled: the same server answers the next call.
    assert runner.run(ToolCall("t__echo", {"text": "after"}), approve=YES)["ok"] is True

    assert test_tools.alive
    crashed = runner.run(ToolCall("t__crash", {}), approve=YES)
    assert crashed["ok"] is False and "'t'" in crashed["error"]
    assert not test_tools.alive
    after = runner.run(ToolCall("t__echo", {"text": "x"}), approve=YES)
    assert after["ok"] is False and "'t'" in after["error"]
    assert runner.run(ToolCall("calculator", {"expression": "2+2"}))["result"]["value"] == 4


def test_the_chat_goes_on_when_a_tool_source_crashes(test_tools):
    llm = ScriptedToolModel([_call("t__crash"), "The tool failed, so here is what I know."])
    events = list(run_with_tools(llm, ToolRunner(test_tools.tools),
                                 [{"role": "user", "content": "go"}], approve=YES))
    results = [e for e in events if e.kind == "tool_result"]
    assert len(results) == 1 and json.loads(results[0].text)["ok"] is False
    assert events[-1].kind == "done"
    assert events[-1].text == "The tool failed, so here is what I know."


def test_servers_that_cannot_start_are_problems_not_failures(tmp_path):
    python = sys.executable
    mute = load_sources([{"name": "mute", "command": python,
                          "args": ["-c", "import time; time.sleep(60)"]}], start_timeout=2)
    assert mute.problems == ["the MCP server 'mute' did not start within 2 s"]
    assert mute.tools == [] and mute.sources == []
    loaded = load_sources([
        {"name": "missing", "command": str(tmp_path / "no-such-program")},
        {"name": "quits", "command": python, "args": ["-c", "import sys; sys.exit(1)"]},
        TEST_SERVER,
    ], taken={"t__echo"})
    try:
        problems = "\n".join(loaded.problems)
        assert "'missing' could not start" in problems
        assert "'quits' could not start" in problems
        assert "t: a tool named 't__echo' exists already" in problems
        assert {t.name for t in loaded.tools} == {"t__sleep", "t__fail", "t__crash", "t__peek"}
    finally:
        loaded.close()


def test_only_folio_itself_counts_as_its_own_library():
    assert is_folio_library_server(McpServerConfig("f", sys.executable, ("-m", "app", "mcp")))
    assert is_folio_library_server(McpServerConfig("f", "/opt/Folio/folio", ("mcp",)))
    assert not is_folio_library_server(McpServerConfig("f", "/opt/Folio/folio", ("serve",)))
    assert not is_folio_library_server(McpServerConfig("f", "npx", ("folio", "mcp")))
    assert not is_folio_library_server(McpServerConfig("f", sys.executable,
                                                       ("tests/mcp_testserver.py",)))


@pytest.mark.slow
def test_folios_own_mcp_server_as_a_source(tmp_path):
    home = tmp_path / "home"
    build_library(home)
    env = {k: v for k, v in folio_env(home).items() if k.startswith(("FOLIO_", "HF_", "TRANS"))}
    env["PYTHONPATH"] = str(ROOT)
    loaded = load_sources([{"name": "folio", "command": sys.executable,
                            "args": ["-m", "app", "mcp", "--library", str(home / "library")],
                            "env": env}], time_limit=120)
    try:
        assert loaded.problems == []
        tools = {t.name: t for t in loaded.tools}
        assert set(tools) == {"folio__search_library", "folio__ask", "folio__list_documents"}
        # Folio's own read-only library tools run at once, as the built-in search does.
        assert all(t.capability is Capability.READS_LIBRARY for t in tools.values())
        result = ToolRunner(loaded.tools).run(ToolCall("folio__search_library", {
            "query": "how much chain should I let out before anchoring?", "k": 2}))
        assert result["ok"] is True, result
        best = result["result"]["passages"][0]
        assert best["path"] == str(home / "docs" / "boats.pdf") and best["page"] == 2
    finally:
        loaded.close()


# -- settings and `folio tools` -----------------------------------------------------------

def test_settings_keep_good_mcp_servers_and_drop_bad_ones(tmp_path):
    path = tmp_path / "settings.json"
    good = {"name": "docs", "command": "npx", "args": ["-y", "docs-mcp"], "env": {"K": "v"}}
    path.write_text(json.dumps({"mcp_servers": [
        good, {"name": "docs", "command": "again"}, {"name": "bad name!", "command": "x"},
        {"name": "noargs", "command": "x", "args": "not a list"}, "junk",
        {"name": "other", "command": "x", "cwd": "/"}]}))
    assert AppSettings.load(path).mcp_servers == [good]
    path.write_text(json.dumps({"mcp_servers": "nope"}))
    assert AppSettings.load(path).mcp_servers == []
    AppSettings(mcp_servers=[good]).save(path)
    assert AppSettings.load(path).mcp_servers == [good]


def test_folio_tools_add_list_remove(capsys):
    assert main(["tools", "add-mcp", "t", "--env", "A=1", "--env=B=2", "--",
                 sys.executable, *TEST_SERVER["args"]]) == 0
    assert AppSettings.load().mcp_servers == [{**TEST_SERVER, "env": {"A": "1", "B": "2"}}]
    assert main(["tools", "add-mcp", "t", "--", "other"]) == 2
    assert "used twice" in capsys.readouterr().err
    assert main(["tools", "add-mcp", "u"]) == 2
    assert "after --" in capsys.readouterr().err
    assert main(["tools", "add-mcp", "u", "--bogus", "--", "x"]) == 2
    assert "'--bogus'" in capsys.readouterr().err
    assert main(["tools", "list", "--check", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["built_in"] == ["calculator", "search_library"]
    (row,) = listed["mcp_servers"]
    assert row["env"] == ["A", "B"]  # names only: values may be secrets
    assert row["problem"] is None
    assert {t["name"] for t in row["tools"]} >= {"t__echo", "t__crash"}
    assert all(t["asks"] for t in row["tools"])
    assert main(["tools", "remove", "nope"]) == 2
    assert "no MCP server named 'nope'" in capsys.readouterr().err
    assert main(["tools", "remove", "t"]) == 0
    assert AppSettings.load().mcp_servers == []
    assert main(["tools", "list"]) == 0
    assert "no MCP servers" in capsys.readouterr().out


def test_folio_starts_the_configured_servers_once_and_stops_them(tmp_path):
    from app.core.service import Folio

    before = _children()
    folio = Folio(tmp_path / "library", settings=AppSettings(mcp_servers=[TEST_SERVER]))
    try:
        first = folio.mcp_tools()
        assert first.problems == [] and "t__echo" in {t.name for t in first.tools}
        assert folio.mcp_tools() is first  # kept while the settings stay
        folio.configure(AppSettings(mcp_servers=[]))
        assert folio.mcp_tools().tools == []  # the list changed: the server is stopped
        assert _children() <= before
        folio.configure(AppSettings(mcp_servers=[TEST_SERVER]))
        running = folio.mcp_tools()
        crash = next(t for t in running.tools if t.name == "t__crash")
        assert ToolRunner([crash]).run(ToolCall("t__crash", {}), approve=YES)["ok"] is False
        assert not running.alive
        again = folio.mcp_tools()  # a crashed server is started again for the next question
        assert again is not running and again.alive
        echo = next(t for t in again.tools if t.name == "t__echo")
        assert ToolRunner([echo]).run(ToolCall("t__echo", {"text": "back"}), approve=YES)[
            "result"] == {"result": "back"}
    finally:
        folio.close()
    assert _children() <= before


def test_the_chat_offers_the_configured_servers_tools(tmp_path, capsys):
    """The window's runner offers every MCP tool (each asks first in the chat); the command
    line, which has no one to ask, offers only those that run at once; and a server that
    would not start is named on stderr, the built-ins still offered."""
    from app.cli.chat import _cli_runner
    from app.core.chat.tool_chat import default_runner
    from app.core.service import Folio

    broken = {"name": "gone", "command": str(tmp_path / "no-such-program"), "args": []}
    folio = Folio(tmp_path / "library",
                  settings=AppSettings(mcp_servers=[TEST_SERVER, broken]))
    try:
        window = default_runner(lambda: folio.library, folio.mcp_tools().tools)
        assert {"search_library", "calculator", "t__echo", "t__peek"} <= set(window.tools)
        cli = _cli_runner(folio)
        assert set(cli.tools) == {"search_library", "calculator"}  # the t__ tools all ask first
        assert "gone" in capsys.readouterr().err
    finally:
        folio.close()
