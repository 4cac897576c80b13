"""The tool loop of a chat: offer the tools in the model's own chat template, read the calls
it writes, run them (asking the user where the policy says so), give it the results, and let
it go on until it answers in plain text. Calls and results are events the window shows and a
record kept with the answer in the chat history."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from app.core.chat.answers import ChatEvent
from app.core.llm.prompt_parts import Prompt
from app.core.llm.provider import Done, GenerationSettings, LLMProvider, Token
from app.core.llm.templates import format_chat_for
from app.core.tools.calculator import CALCULATOR
from app.core.tools.calls import parse_tool_calls, supports_tools
from app.core.tools.library import search_tool
from app.core.tools.runner import Approve, ToolRunner, needs_approval

log = logging.getLogger(__name__)

MAX_ROUNDS = 4  # model turns that may call tools before it must answer
NO_TOOLS = ("This model's chat template has no place for tools, so Folio does not offer "
            "them with it.")


def model_supports_tools(llm: LLMProvider) -> bool:
    info = llm.info
    return info is not None and supports_tools(info.chat_template)


def default_runner(library: Any, extra: Sequence[Any] = (), reranker=None) -> ToolRunner:
    """The tools Folio's chat offers: search the library (`library` or a function giving
    it) and the calculator, neither needing the user's approval, then `extra` (the MCP
    servers' tools, `Folio.mcp_tools().tools`), which ask first unless they only read the
    library. `reranker`: a function giving the reranking stage the search ranks with."""
    return ToolRunner([search_tool(library, reranker), CALCULATOR, *extra])


def run_with_tools(
    llm: LLMProvider,
    runner: ToolRunner,
    messages: Sequence[Mapping[str, Any]],
    settings: GenerationSettings | None = None,
    *,
    approve: Approve | None = None,
    cancel: threading.Event | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> Iterator[ChatEvent]:
    """Events: token, tool_call (stats: call, needs_approval), tool_result (stats: result),
    then done (text: the answer; stats: tool_calls, the record of calls and results) or
    error. `messages` are {"role", "content"} turns, system first."""
    cancel = cancel or threading.Event()
    if not model_supports_tools(llm):
        yield ChatEvent("error", text=NO_TOOLS)
        return
    chat: list[dict[str, Any]] = [dict(m) for m in messages]
    record: list[dict[str, Any]] = []
    declarations = runner.declarations()
    for round_ in range(max_rounds + 1):
        if cancel.is_set():  # stopped while a tool ran or waited for the user: no next turn
            yield ChatEvent("done", text="",
                            stats={"tool_calls": record, "finish_reason": "cancelled"})
            return
        offer = declarations if round_ < max_rounds else None  # the last round must answer
        parts: list[str] = []
        done: Done | None = None
        try:
            prompt, stops = format_chat_for(llm.info, chat, tools=offer)
            run_settings = (settings or GenerationSettings()).merged(
                {"stop": [*(settings.stop if settings else ()), *stops]})
            for event in llm.generate(prompt, run_settings, cancel):
                if isinstance(event, Token):
                    parts.append(event.text)
                elif isinstance(event, Done):
                    done = event
        except Exception as exc:  # a template or runtime failure ends this answer, not Folio
            log.warning("the tool chat failed", exc_info=True)
            yield ChatEvent("error", text=f"The model failed while answering: {exc}",
                            stats={"tool_calls": record})
            return
        text = "".join(parts)
        if done is not None and done.finish_reason == "error":
            yield ChatEvent("error", text=done.error or "The model failed while answering.",
                            stats={"tool_calls": record})
            return
        before, calls = parse_tool_calls(text) if offer else (text, [])
        if before:
            yield ChatEvent("token", text=before)
        if not calls or cancel.is_set():
            stats: dict[str, Any] = {"tool_calls": record}
            if cancel.is_set():
                stats["finish_reason"] = "cancelled"
            yield ChatEvent("done", text=before.strip(), stats=stats)
            return
        chat.append({"role": "assistant", "content": Prompt.untrusted(text.strip())})
        for call in calls:
            tool = runner.tools.get(call.name)
            shown = {"name": call.name, "arguments": call.arguments} if not call.error \
                else {"raw": call.raw[:500], "error": call.error}
            yield ChatEvent("tool_call", text=json.dumps(shown, ensure_ascii=False),
                            stats={"call": shown,
                                   "needs_approval": bool(tool and needs_approval(tool))})
            result = runner.run(call, approve)
            record.append({"call": shown, "result": result})
            yield ChatEvent("tool_result", text=json.dumps(result, ensure_ascii=False),
                            stats={"result": result})
            chat.append({"role": "tool", "content": Prompt.untrusted(
                json.dumps(result, ensure_ascii=False))})
    yield ChatEvent("error", text="The model kept calling tools without answering.",
                    stats={"tool_calls": record})


def ask_with_tools(
    engine: Any,
    chat_id: int,
    question: str,
    runner: ToolRunner,
    *,
    approve: Approve | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[ChatEvent]:
    """A question in a chat where the model may call tools (`engine` is a ChatEngine). The
    answer is stored with its calls and results in its meta["tool_calls"], so the history
    keeps them; the chat's earlier turns go to the model as they are kept."""
    question = question.strip()
    if not question:
        yield ChatEvent("error", text="The question is empty.")
        return
    user = engine.store.add_message(chat_id, "user", question)
    turns, summary = engine._history(chat_id, user.id)
    system = Prompt.trusted(engine.system_prompt or engine.prompts.render("system"))
    if summary:
        system += (Prompt.trusted("\n\nSummary of the earlier conversation: ")
                   + Prompt.untrusted(summary))
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for t in turns:
        messages += [{"role": "user", "content": Prompt.untrusted(t.question)},
                     {"role": "assistant", "content": Prompt.untrusted(t.answer)}]
    messages.append({"role": "user", "content": Prompt.untrusted(question)})
    info = engine.llm.info
    last: ChatEvent | None = None
    for event in run_with_tools(engine.llm, runner, messages, approve=approve, cancel=cancel):
        last = event
        if event.kind in ("done", "error"):
            break
        yield event
    assert last is not None
    meta = {"model": info.name if info else None,
            "tool_calls": last.stats.get("tool_calls", [])}
    if last.kind == "error":
        msg = engine.store.add_message(chat_id, "assistant", "", status="error", meta=meta)
        engine.store.finish_answer(msg.id, "", status="error", meta=meta, error=last.text)
        yield ChatEvent("error", text=last.text, message_id=msg.id, stats=last.stats)
        return
    cancelled = last.stats.get("finish_reason") == "cancelled"
    msg = engine.store.add_message(chat_id, "assistant", last.text, meta=meta,
                                   status="cancelled" if cancelled else "complete")
    yield ChatEvent("done", text=last.text, message_id=msg.id, stats=last.stats)


def ask_auto(engine: Any, chat_id: int, question: str,
             runner: ToolRunner | Callable[[], ToolRunner], *,
             overrides: dict | None = None, **options: Any) -> Iterator[ChatEvent]:
    """A question answered the way the chat's model can: with tools when its chat template
    has a place for them (`runner`, or a function building it only then, so MCP servers
    start only for a model that can call them; `options`: ask_with_tools' approve and
    cancel), else the cited
    answer (`engine.ask`, with the same cancel and `overrides`). First yields a "tools" event
    (stats: supported) once the chat's model is loaded, so a window can say which it is."""
    cancel = options.get("cancel")
    chat = engine.store.get_chat(chat_id)
    if engine.before_answer is not None:
        try:
            engine.before_answer(chat)
        except Exception:  # engine.ask reports the failure as its error event
            log.warning("could not load the model for chat %s", chat_id, exc_info=True)
            yield from engine.ask(chat_id, question, cancel=cancel, overrides=overrides)
            return
    supported = engine.supports_tools
    yield ChatEvent("tools", text="" if supported else NO_TOOLS,
                    stats={"supported": supported})
    if supported:
        if not isinstance(runner, ToolRunner):
            runner = runner()
        yield from ask_with_tools(engine, chat_id, question, runner, **options)
    else:
        yield from engine.ask(chat_id, question, cancel=cancel, overrides=overrides)
