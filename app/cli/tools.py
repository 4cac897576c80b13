"""`folio tools list | add-mcp | remove`: the tools Folio's own chat may call, and the MCP
servers (app/core/tools/mcp_source.py) the user adds as tool sources, kept in settings.
"""

from __future__ import annotations

import sys

from app.cli.common import print_json

BUILT_IN = ("calculator", "search_library")


def cmd_tools(args) -> int:
    return {"list": _tools_list, "add-mcp": _tools_add, "remove": _tools_remove}[
        args.tools_command](args)


def _tools_list(args) -> int:
    from app.core.settings import AppSettings

    servers = AppSettings.load().mcp_servers
    rows = [{"name": s["name"], "command": s["command"], "args": s.get("args", []),
             "env": sorted(s.get("env", {})), "tools": None, "problem": None}
            for s in servers]
    if args.check:  # start each server and ask for its tools
        from app.core.tools.mcp_source import load_sources
        from app.core.tools.runner import needs_approval

        for row, server in zip(rows, servers, strict=True):
            loaded = load_sources([server], taken=BUILT_IN)
            try:
                row["tools"] = [{"name": t.name, "capability": t.capability.value,
                                 "asks": needs_approval(t)} for t in loaded.tools]
                row["problem"] = "; ".join(loaded.problems) or None
            finally:
                loaded.close()
    if args.json:  # env: the variable names only; values may be secrets
        print_json({"built_in": list(BUILT_IN), "mcp_servers": rows})
        return 0
    print("built-in: " + ", ".join(BUILT_IN))
    if not rows:
        print("no MCP servers (add one: folio tools add-mcp NAME -- COMMAND ARGS...)")
    for row in rows:
        print(f"{row['name']}: {' '.join([row['command'], *row['args']])}"
              + (f"  (env: {', '.join(row['env'])})" if row["env"] else ""))
        if row["problem"]:
            print(f"  problem: {row['problem']}")
        for tool in row["tools"] or ():
            print(f"  {tool['name']}  {tool['capability']}"
                  f"{'  (asks before running)' if tool['asks'] else ''}")
    return 0


def _tools_add(args) -> int:
    from app.core.settings import AppSettings, mcp_server_problem

    # NAME [--env K=V]... -- COMMAND ARGS...: argparse's remainder holds all after NAME.
    rest = list(args.server)
    before, server = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) \
        if "--" in rest else ([], rest)
    env: dict[str, str] = {}
    while before:
        flag = before.pop(0)
        if flag.startswith("--env="):
            before.insert(0, flag[len("--env="):])
            flag = "--env"
        if flag != "--env" or not before or "=" not in before[0]:
            print(f"folio tools add-mcp: before -- only --env NAME=VALUE may come, not "
                  f"{flag!r}", file=sys.stderr)
            return 2
        key, _, value = before.pop(0).partition("=")
        env[key] = value
    if not server:
        print("folio tools add-mcp: give the server's command after --, e.g. "
              "folio tools add-mcp docs -- npx some-mcp-server", file=sys.stderr)
        return 2
    settings = AppSettings.load()
    entry = {"name": args.name, "command": server[0], "args": server[1:], "env": env}
    problem = mcp_server_problem(entry, settings.mcp_servers)
    if problem:
        print(f"folio tools add-mcp: {args.name!r}: {problem}", file=sys.stderr)
        return 2
    settings.mcp_servers.append(entry)
    settings.save()
    print(f"added MCP server {args.name!r}; its tools ask before running "
          "(folio tools list --check starts it and lists them)")
    return 0


def _tools_remove(args) -> int:
    from app.core.settings import AppSettings

    settings = AppSettings.load()
    kept = [s for s in settings.mcp_servers if s["name"] != args.name]
    if len(kept) == len(settings.mcp_servers):
        known = ", ".join(s["name"] for s in settings.mcp_servers) or "none"
        print(f"folio tools remove: no MCP server named {args.name!r} (servers: {known})",
              file=sys.stderr)
        return 2
    settings.mcp_servers = kept
    settings.save()
    print(f"removed MCP server {args.name!r}")
    return 0
