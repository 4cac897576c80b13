"""MCP servers as tool sources for Folio's own chat: a server the user configured (a stdio
command, its arguments, optionally environment variables; settings' `mcp_servers`) is started
with the `mcp` SDK's client, its tools are listed, and each becomes a Folio `Tool`:

- named `<source>__<tool>`, so two servers (or a server and Folio's built-ins) never clash;
- its description (marked as coming from that server) and its JSON schema as the server gave
  them; a tool whose schema is broken is left out, with the reason in `McpSource.problems`;
- capability: another program can do anything, so a tool needs the user's approval
  (`Capability.WRITES`, or `NETWORK` when the server declares it `readOnlyHint`: a hint from
  that program, not a promise). Only Folio's own library server (`folio mcp`, whose tools are
  all read-only) gets `READS_LIBRARY` and runs at once, as the built-in search does.

Each source keeps one client session on its own event-loop thread (an anyio blocking portal).
A call is bounded by the tool's time limit inside the client too (the request is cancelled,
not just abandoned); a timeout, a server error, a crashed server: each is a `ToolError`, so the
runner turns it into an error result and the chat goes on. A crashed server stays down
(`McpTools.alive` turns False) until the sources are loaded again; `Folio.mcp_tools()` does
that on its next call, so the next question gets a fresh server.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import jsonschema

from app.core.tools.base import Capability, Tool, ToolError

log = logging.getLogger(__name__)

SEPARATOR = "__"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # a source's name, as settings accept it
START_TIMEOUT = 120.0  # seconds for a server to start and list its tools
TIME_LIMIT = 60.0  # seconds per call
MAX_DESCRIPTION = 1000
MAX_RESULT_TEXT = 8000  # characters of a result's text the model gets back
MAX_TOOLS = 64  # per server: a server offering hundreds would drown the prompt


def _server_errlog():
    """Where MCP servers' stderr goes: the process's own stderr when it is a real file
    (a terminal, the log a desktop launcher keeps), else nowhere."""
    for stream in (sys.__stderr__, sys.stderr):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server


class McpSourceError(Exception):
    """A source that could not start or list its tools; the message names it and says why."""


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> McpServerConfig:
        return cls(name=str(data["name"]), command=str(data["command"]),
                   args=tuple(str(a) for a in data.get("args") or ()),
                   env={str(k): str(v) for k, v in (data.get("env") or {}).items()})


def is_folio_library_server(config: McpServerConfig) -> bool:
    """The command is Folio's own `folio mcp` (the installed script, the bundle, or this
    Python running `-m app mcp`)."""
    exe = Path(config.command).name.lower()
    args = list(config.args)
    if exe in ("folio", "folio.exe"):
        return args[:1] == ["mcp"]
    try:
        same_python = Path(config.command).resolve() == Path(sys.executable).resolve()
    except OSError:
        same_python = False
    return same_python and args[:3] == ["-m", "app", "mcp"]


def _result_value(result: Any) -> Any:
    """A CallToolResult as the model reads it: its structured content, else its text."""
    texts = [getattr(c, "text", None) for c in result.content or ()]
    text = "\n".join(t for t in texts if isinstance(t, str))
    if result.is_error:
        raise ToolError((text or "the MCP tool failed")[:MAX_RESULT_TEXT])
    if result.structured_content is not None:
        return result.structured_content
    return {"text": text[:MAX_RESULT_TEXT]}


class McpSource:
    """One configured server: `start()` lists its tools as Folio `Tool`s; `close()` stops it."""

    def __init__(self, config: McpServerConfig, *, time_limit: float = TIME_LIMIT,
                 start_timeout: float = START_TIMEOUT, cwd: str | None = None):
        self.config = config
        self.time_limit = time_limit
        self.start_timeout = start_timeout
        self.cwd = cwd
        self.problems: list[str] = []
        self._portal_cm: Any = None
        self._portal: Any = None
        self._client: Any = None
        self._stop: anyio.Event | None = None
        self._task: concurrent.futures.Future[Any] | None = None
        self._down: str | None = None
        self._lock = threading.Lock()

    # -- the session, on the portal's event loop --------------------------------------------

    async def _serve(self, ready: concurrent.futures.Future[Any]) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=self.config.command, args=list(self.config.args),
                                       env=dict(self.config.env) or None, cwd=self.cwd)
        self._stop = anyio.Event()
        try:
            # The server's stderr goes to a real file: the SDK's default is whatever sys.stderr
            # was when it was imported, which in a windowed app (or under capture) has no fd.
            transport = stdio_client(params, errlog=_server_errlog())
            async with Client(transport, read_timeout_seconds=self.start_timeout) as client:
                listing = await client.list_tools()
                self._client = client
                ready.set_result((client.server_info, listing.tools))
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            self._down = f"the MCP server {self.config.name!r} stopped"
            raise
        finally:
            self._client = None

    async def _call(self, name: str, arguments: dict[str, Any], limit: float) -> Any:
        client = self._client
        if client is None:
            raise ToolError(self._down or f"the MCP server {self.config.name!r} is not running")
        try:
            with anyio.fail_after(limit):
                result = await client.call_tool(name, arguments, read_timeout_seconds=limit)
        except TimeoutError:
            raise ToolError(f"the tool took longer than its {limit:g} s limit") from None
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken connection, a protocol error
            log.warning("MCP server %s: call %s failed", self.config.name, name, exc_info=True)
            from mcp.types import CONNECTION_CLOSED

            if getattr(exc, "code", None) == CONNECTION_CLOSED:  # the server is gone
                self._down = f"the MCP server {self.config.name!r} stopped"
            raise ToolError(f"the MCP server {self.config.name!r} failed "
                            f"({type(exc).__name__})") from None
        return _result_value(result)

    # -- from any thread -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Started, not closed, and its server has not gone away."""
        return self._portal is not None and self._down is None

    def start(self) -> list[Tool]:
        """Start the server and list its tools. Raises `McpSourceError` (and leaves nothing
        running) when it cannot start, fails or is too slow to answer."""
        with self._lock:
            self._portal_cm = anyio.from_thread.start_blocking_portal()
            self._portal = self._portal_cm.__enter__()
            ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._task = self._portal.start_task_soon(self._serve, ready)
        try:
            server_info, listed = ready.result(timeout=self.start_timeout)
        except concurrent.futures.TimeoutError:
            self.close()
            raise McpSourceError(f"the MCP server {self.config.name!r} did not start within "
                                 f"{self.start_timeout:g} s") from None
        except BaseException as exc:  # noqa: BLE001 - whatever stopped it, the source is off
            self.close()
            raise McpSourceError(f"the MCP server {self.config.name!r} could not start "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from None
        own = (is_folio_library_server(self.config)
               and getattr(server_info, "name", None) == "folio")
        tools = []
        for listed_tool in listed[:MAX_TOOLS]:
            tool = self._wrap(listed_tool, own)
            if tool is not None:
                tools.append(tool)
        if len(listed) > MAX_TOOLS:
            self.problems.append(f"{self.config.name}: only the first {MAX_TOOLS} of "
                                 f"{len(listed)} tools are offered")
        return tools

    def _wrap(self, listed: Any, own_library: bool) -> Tool | None:
        schema = dict(listed.input_schema or {"type": "object"})
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError:
            self.problems.append(f"{self.config.name}: tool {listed.name!r} has a broken "
                                 "argument schema; left out")
            return None
        annotations = listed.annotations
        read_only = bool(annotations is not None and annotations.read_only_hint)
        if own_library and read_only:
            capability = Capability.READS_LIBRARY
        elif read_only:
            capability = Capability.NETWORK
        else:
            capability = Capability.WRITES
        remote_name = listed.name
        limit = self.time_limit

        def run(**arguments: Any) -> Any:
            portal = self._portal
            if portal is None:
                raise ToolError(f"the MCP server {self.config.name!r} is closed")
            try:
                return portal.call(self._call, remote_name, arguments, limit)
            except RuntimeError:  # the portal's loop has stopped (closed meanwhile)
                raise ToolError(f"the MCP server {self.config.name!r} is closed") from None

        description = (listed.description or listed.title or listed.name).strip()
        return Tool(
            name=f"{self.config.name}{SEPARATOR}{remote_name}"[:64],
            description=f"[{self.config.name}] {description}"[:MAX_DESCRIPTION],
            parameters=schema,
            capability=capability,
            run=run,
            time_limit=limit,
        )

    def close(self) -> None:
        """Stop the server (its session ends, the SDK ends the process) and the loop thread."""
        with self._lock:
            portal, portal_cm, task = self._portal, self._portal_cm, self._task
            self._portal = self._portal_cm = self._task = None
        if portal is None:
            return
        stop = self._stop
        try:
            if stop is not None:
                portal.call(stop.set)
            if task is not None:
                try:
                    task.result(timeout=30)
                except BaseException:  # noqa: BLE001 - it stopped; how is logged already
                    pass
        except RuntimeError:
            pass
        finally:
            try:
                portal_cm.__exit__(None, None, None)
            except BaseException:  # noqa: BLE001 - a crashed session's error, already seen
                log.debug("MCP server %s: closing", self.config.name, exc_info=True)


@dataclass
class McpTools:
    """The tools of every configured source that started, and why the others did not."""

    tools: list[Tool] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[McpSource] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        """Every source that started still runs (False after a crash: load them again)."""
        return all(source.alive for source in self.sources)

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.sources.clear()


def load_sources(configs: Iterable[Mapping[str, Any] | McpServerConfig], *,
                 time_limit: float = TIME_LIMIT, start_timeout: float = START_TIMEOUT,
                 taken: Iterable[str] = ()) -> McpTools:
    """Start every configured server; one that fails is a problem, not an exception.
    `taken`: tool names already in use (the built-ins), which a source's tool may not take."""
    loaded = McpTools()
    names = set(taken)
    for entry in configs:
        config = entry if isinstance(entry, McpServerConfig) else McpServerConfig.from_dict(entry)
        source = McpSource(config, time_limit=time_limit, start_timeout=start_timeout)
        try:
            tools = source.start()
        except McpSourceError as exc:
            loaded.problems.append(str(exc))
            continue
        loaded.sources.append(source)
        loaded.problems.extend(source.problems)
        for tool in tools:
            if tool.name in names:
                loaded.problems.append(f"{config.name}: a tool named {tool.name!r} exists "
                                       "already; left out")
                continue
            names.add(tool.name)
            loaded.tools.append(tool)
    return loaded
