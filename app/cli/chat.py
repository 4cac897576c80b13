"""`folio ask`, `chat`, `summarize`, `chats`: cited answers from a terminal.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

from app.core.base.paths import local_library_dir
from app.cli.common import (
    chat_scope,
    clear_line,
    library_path,
    load_overrides,
    note_read_only,
    open_folio,
    print_json,
    with_cancel,
)
from app.core.base.units import page_label

TOOL_RESULT_CHARS = 300  # of a tool's result shown in text output (--json has it whole)


def _format_source(s: dict) -> str:
    where = page_label(s.get("page"), s.get("page_end"))
    where = f", {where}" if where else ""
    section = f" ({s['section']})" if s.get("section") else ""
    return f"[{s['n']}] {s['path']}{where}{section}"


def _format_tool(ev) -> str:
    """A tool call or its result as one line of text output."""
    if ev.kind == "tool_call":
        call = ev.stats.get("call", {})
        if "error" in call:
            return f"[tool call, malformed: {call['error']}]"
        arguments = json.dumps(call.get("arguments"), ensure_ascii=False)
        return f"[tool call] {call.get('name')} {arguments}"
    result = ev.stats.get("result", {})
    if not result.get("ok"):
        return f"[tool error] {result.get('error')}"
    shown = json.dumps(result.get("result"), ensure_ascii=False)
    if len(shown) > TOOL_RESULT_CHARS:
        shown = shown[:TOOL_RESULT_CHARS] + "…"
    return f"[tool result] {shown}"


def _stream_answer(events, *, quiet: bool) -> dict:
    """Print tokens (and tool calls with their results) as they come, unless quiet, and
    return the final state."""
    result = {"answer": "", "sources": [], "stats": {}, "error": None, "message_id": None}
    for ev in events:
        if ev.kind == "token" and not quiet:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif ev.kind in ("tool_call", "tool_result") and not quiet:
            lead = "\n" if ev.kind == "tool_call" else ""
            sys.stdout.write(f"{lead}{_format_tool(ev)}\n")
            sys.stdout.flush()
        elif ev.kind == "done":
            result.update(answer=ev.text, sources=ev.sources, stats=ev.stats,
                          message_id=ev.message_id)
        elif ev.kind == "error":
            result["error"] = ev.text
            result["stats"] = ev.stats or result["stats"]
    if not quiet:
        sys.stdout.write("\n")
        if result["sources"]:
            print("\nSources:")
            for s in result["sources"]:
                print("  " + _format_source(s))
    return result


def _cli_runner(folio):
    """The chat's tools on the command line: the built-ins and the MCP servers' tools that
    run without approval (a terminal answer has no one to ask, so the others are not
    offered); a server that would not start is named on stderr."""
    from app.core.chat.tool_chat import default_runner
    from app.core.tools.runner import needs_approval

    sources = folio.mcp_tools()
    for problem in sources.problems:
        print(f"folio: MCP tool source: {problem}", file=sys.stderr)
    return default_runner(lambda: folio.library,
                          [t for t in sources.tools if not needs_approval(t)], folio.reranker)


def cmd_ask(args) -> int:
    import time

    from app.core.chat.answers import public_source
    from app.core.chat.tool_chat import ask_auto

    folio = open_folio(args)
    folio.library_read_only = None  # answering only reads the library
    if folio.library.read_only:
        note_read_only(folio.library.root)
    try:
        started = time.monotonic()
        store = folio.store
        if args.chat:
            chat_id = store.get_chat(args.chat).id
            store.update_chat(chat_id, scope=chat_scope(args))
        else:
            chat_id = store.create_chat(scope=chat_scope(args)).id
        engine = folio.chat
        question = " ".join(args.question)
        runner = partial(_cli_runner, folio)
        result = with_cancel(lambda cancel: _stream_answer(
            ask_auto(engine, chat_id, question, runner, cancel=cancel,
                     overrides=load_overrides(args)),
            quiet=args.json))
        if args.json:
            print_json({
                "answer": result["answer"],
                "sources": [public_source(s) for s in result["sources"]],
                "cited": result["stats"].get("cited", []),
                "model": folio.runtime.info.name,
                "provider": folio.provider.name if folio.provider else "local",
                "remote": folio.provider is not None,
                "prompt_tokens": result["stats"].get("prompt_tokens", 0),
                "completion_tokens": result["stats"].get("completion_tokens", 0),
                "seconds": round(time.monotonic() - started, 3),
                "chat_id": chat_id,
                "error": result["error"],
                "tool_calls": result["stats"].get("tool_calls", []),
            })
        elif result["error"]:
            print(f"folio: {result['error']}", file=sys.stderr)
        return 1 if result["error"] else 0
    finally:
        folio.close()


def cmd_chat(args) -> int:
    folio = open_folio(args)
    try:
        store = folio.store
        chat = store.get_chat(args.chat) if args.chat else store.create_chat(scope=chat_scope(args))
        engine = folio.chat
        from app.core.chat.tool_chat import ask_auto

        runner = partial(_cli_runner, folio)
        print(f"Folio chat {chat.id} with {folio.runtime.info.name}. Type a question; "
              "/new starts a new chat, /regen answers again, /quit leaves. "
              "Ctrl+C stops an answer.")
        for m in store.messages(chat.id):
            who = "you" if m.role == "user" else "folio"
            print(f"{who}> {m.content}")
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return 0
            if line == "/new":
                chat = store.create_chat(scope=chat_scope(args))
                print(f"(new chat {chat.id})")
                continue
            if line == "/regen":
                events = lambda cancel: engine.regenerate(chat.id, cancel=cancel)  # noqa: E731
            else:
                events = lambda cancel, q=line: ask_auto(  # noqa: E731
                    engine, chat.id, q, runner, cancel=cancel)
            sys.stdout.write("folio> ")
            result = with_cancel(lambda cancel: _stream_answer(events(cancel), quiet=False))
            if result["error"]:
                print(f"(error: {result['error']})")
    finally:
        folio.close()


def cmd_summarize(args) -> int:
    folio = open_folio(args)
    try:
        engine = folio.chat
        tty = sys.stderr.isatty() and not args.json

        def run(cancel):
            final = {"text": "", "error": None, "stats": {}}
            for ev in engine.summarize(args.path, cancel=cancel):
                if ev.kind == "progress" and tty:
                    sys.stderr.write(f"\r{ev.text} ({ev.done}/{ev.total})\033[K")
                    sys.stderr.flush()
                elif ev.kind == "done":
                    final.update(text=ev.text, stats=ev.stats)
                elif ev.kind == "error":
                    final["error"] = ev.text
            clear_line(tty)
            return final

        final = with_cancel(run)
        if args.json:
            print_json({"path": args.path, "summary": final["text"], "error": final["error"],
                         **{k: v for k, v in final["stats"].items() if k != "document"}})
        elif final["error"]:
            print(f"folio: {final['error']}", file=sys.stderr)
        else:
            print(final["text"])
        return 1 if final["error"] else 0
    finally:
        folio.close()


def cmd_chats(args) -> int:
    from app.core.chat.history import ChatStore

    store = ChatStore.for_library(local_library_dir(library_path(args)))
    try:
        if args.chats_command == "list":
            chats = store.list_chats(args.search)
            if args.json:
                print_json([{"id": c.id, "title": c.title, "updated_at": c.updated_at}
                             for c in chats])
            for c in chats if not args.json else ():
                print(f"{c.id:5}  {c.title}")
            return 0
        try:
            store.get_chat(args.id)
        except KeyError:
            print(f"folio: there is no chat {args.id}", file=sys.stderr)
            return 1
        if args.chats_command == "show":
            print(store.export_markdown(args.id))
        elif args.chats_command == "export":
            Path(args.output).write_text(store.export_markdown(args.id), "utf-8")
            print(f"wrote {args.output}")
        elif args.chats_command == "rename":
            store.rename_chat(args.id, args.title)
        elif args.chats_command == "delete":
            store.delete_chat(args.id)
        return 0
    finally:
        store.close()


# -- models --------------------------------------------------------------------------------
# Exit codes: 0 done; 1 the download stopped (paused with Ctrl+C, or failed: run it again to
# resume); 2 a refusal (not a GGUF, unknown model, name clash) or a failure that left nothing.
