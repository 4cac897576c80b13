"""What a tool is: a name, a description, a JSON schema of its arguments, a capability that
decides whether it may run without asking, a time limit, and a function to run.

A tool's function raises `ToolError` for a refusal it means the model to read; any other
exception is reported by its type only, so an error never carries a path or a traceback
from outside the library to the model."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Capability(str, enum.Enum):
    READS_LIBRARY = "reads_library"  # searches or reads the user's indexed documents
    READS_CHOSEN_FILES = "reads_chosen_files"  # reads files the user picked for it
    NETWORK = "network"  # reaches another machine
    WRITES = "writes"  # changes something on disk or elsewhere
    COMPUTES = "computes"  # touches nothing outside its arguments (the calculator)


class ToolError(Exception):
    """A refusal or failure whose message is meant for the model (no paths, no traces)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments (an object schema)
    capability: Capability
    run: Callable[..., Any]  # called with the validated arguments as keywords
    time_limit: float = 10.0  # seconds

    def declaration(self) -> dict[str, Any]:
        """The tool as chat templates expect it (OpenAI's function-tool shape)."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": dict(self.parameters)}}


@dataclass
class ToolCall:
    """A call the model made. `error` is set when the call itself could not be read."""

    name: str
    arguments: Any = field(default_factory=dict)
    error: str | None = None
    raw: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


def error_result(name: str, message: str) -> dict[str, Any]:
    return {"tool": name, "ok": False, "error": message}


def ok_result(name: str, value: Any) -> dict[str, Any]:
    return {"tool": name, "ok": True, "result": value}
