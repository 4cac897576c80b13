"""Reading tool calls out of model output. Hermes/Qwen-style templates have the model write
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; a call that does not parse is kept
as a malformed `ToolCall`, so the model hears what was wrong instead of the chat stopping."""

from __future__ import annotations

import json
import re

from app.core.tools.base import ToolCall

_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
MAX_CALLS = 8  # per model turn


def supports_tools(template: str | None) -> bool:
    """Whether a chat template declares tools to the model (it reads the `tools` variable)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """(the text before the first call, the calls). No `<tool_call>` means no calls."""
    start = text.find("<tool_call>")
    if start < 0:
        return text, []
    calls: list[ToolCall] = []
    for match in list(_CALL.finditer(text))[:MAX_CALLS]:
        raw = match.group(1).strip()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            calls.append(ToolCall(name="", error=f"not JSON ({exc.msg})", raw=raw))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            calls.append(ToolCall(name="", error="it needs a string 'name'", raw=raw))
            continue
        args = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except ValueError:
                calls.append(ToolCall(name=data["name"], arguments=args,
                                      error="the arguments are not JSON", raw=raw))
                continue
        calls.append(ToolCall(name=data["name"], arguments=args, raw=raw))
    return text[:start].rstrip(), calls
