"""Running the model's tool calls: look the tool up, validate its arguments against its schema,
ask the user where the policy says so, run it under its time limit. Whatever goes wrong comes
back as an error result (a dict the model reads), never as an exception: the chat goes on.

Time limits: a tool runs in its own daemon thread and the runner stops waiting at the limit,
answering with an error result at once. A Python thread cannot be stopped, so a timed-out
tool is abandoned, not ended: it runs on until it returns, and its result is dropped. The
next call does not wait for it (each call has its own thread). So every tool must bound its
own work, and the built-ins do:

- the calculator (calculator.py) refuses long expressions, deep nesting, exponents above
  MAX_EXPONENT and numbers wider than MAX_BITS, so no expression runs long;
- search_library (library.py) is one hybrid search with k at most MAX_K and a query of at
  most 1000 characters (its schema), on a library that answers in well under a second;
- an MCP server's tool (mcp_source.py) is cancelled inside the MCP client at the same limit,
  so its request ends too, and the server is told.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jsonschema

from app.core.tools.base import Capability, Tool, ToolCall, ToolError, error_result, ok_result

log = logging.getLogger(__name__)

# Capabilities that run without asking: they read only the user's own library, or nothing.
RUNS_AT_ONCE = frozenset({Capability.READS_LIBRARY, Capability.COMPUTES})

# Called with the tool and the exact call before a tool that needs approval runs; True runs it.
Approve = Callable[[Tool, ToolCall], bool]


def needs_approval(tool: Tool) -> bool:
    """The policy: a tool that only reads the library (or computes) runs at once; one that
    reads chosen files, reaches the network or writes asks the user first."""
    return tool.capability not in RUNS_AT_ONCE


def _validate(tool: Tool, arguments: Any) -> str | None:
    if not isinstance(arguments, Mapping):
        return "the arguments must be a JSON object"
    try:
        jsonschema.Draft202012Validator(tool.parameters).validate(dict(arguments))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"invalid arguments{f' at {where}' if where else ''}: {exc.message}"
    except jsonschema.SchemaError:
        return "the tool's own argument schema is broken"
    return None


def _run_limited(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Run in a daemon thread and stop waiting at the time limit. A Python thread cannot be
    killed; a runaway tool is abandoned (its result dropped), which is why built-in tools
    bound their own work too."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = tool.run(**arguments)
        except ToolError as exc:
            box["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error result
            log.warning("tool %s raised", tool.name, exc_info=True)
            # The type only: a message may carry paths or data from outside the library.
            box["error"] = f"the tool failed ({type(exc).__name__})"

    thread = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(tool.time_limit)
    if thread.is_alive():
        return error_result(tool.name, f"the tool took longer than its {tool.time_limit:g} s limit")
    if "error" in box:
        return error_result(tool.name, box["error"])
    value = box.get("value")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return error_result(tool.name, "the tool returned something that is not JSON")
    return ok_result(tool.name, value)


class ApprovalRequest:
    """A call waiting for the user's decision, handed from the thread running the chat to
    the one that asks (the window's GUI thread). `decide` may be called from any thread,
    once; `wait` returns False when the wait is cancelled (Stop, closing)."""

    def __init__(self, tool: Tool, call: ToolCall):
        self.tool = tool.name
        self.call = call.as_dict()
        self.allowed: bool | None = None
        self._decided = threading.Event()

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def decide(self, allowed: bool) -> None:
        if not self._decided.is_set():
            self.allowed = bool(allowed)
            self._decided.set()

    def wait(self, cancel: threading.Event | None = None, poll: float = 0.2) -> bool:
        while not self._decided.wait(poll):
            if cancel is not None and cancel.is_set():
                self.decide(False)
        return bool(self.allowed)


class ToolRunner:
    def __init__(self, tools: Iterable[Tool] = ()):
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"two tools are named {tool.name!r}")
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self.tools[tool.name] = tool

    def declarations(self) -> list[dict[str, Any]]:
        return [t.declaration() for t in self.tools.values()]

    def run(self, call: ToolCall, approve: Approve | None = None) -> dict[str, Any]:
        """The result of one call, always a dict: {"tool", "ok": True, "result"} or
        {"tool", "ok": False, "error"}."""
        name = call.name if isinstance(call.name, str) else ""
        if call.error:
            return error_result(name, f"the tool call is malformed: {call.error}")
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return error_result(name, f"there is no tool named {name[:80]!r} (tools: {known})")
        problem = _validate(tool, call.arguments)
        if problem:
            return error_result(name, problem)
        if needs_approval(tool):
            try:
                allowed = approve is not None and bool(approve(tool, call))
            except Exception:  # noqa: BLE001 - a failing prompt is a refusal
                log.warning("approval for %s failed", name, exc_info=True)
                allowed = False
            if not allowed:
                return error_result(name, "the user did not allow this call")
        return _run_limited(tool, dict(call.arguments))
