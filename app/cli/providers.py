"""`folio providers add | list | remove`, and the key for `--provider` on ask and chat.

A provider is a remote OpenAI-compatible server (app/core/llm/remote.py). Settings keep its
name, URL and model; its API key goes to the system keyring. Where there is no keyring the
user is told, and the key is asked for (or read from FOLIO_PROVIDER_KEY) in each session.
"""

from __future__ import annotations

import sys

from app.cli.common import KEY_ENV, ask_key, print_json


def cmd_providers(args) -> int:
    from app.core import settings as app_settings

    settings = app_settings.load()
    if args.providers_command == "list":
        return _list(settings, args)
    if args.providers_command == "remove":
        return _remove(settings, args)
    return _add(settings, args)


def _list(settings, args) -> int:
    from app.core.llm.remote import get_key, keyring_available

    rows = [{**c.to_dict(), "key_stored": get_key(c.name) is not None}
            for c in settings.provider_configs()]
    if args.json:
        print_json({"providers": rows, "keyring": keyring_available()})
        return 0
    if not rows:
        print("No providers. Add one with: folio providers add NAME --url URL --model MODEL")
        return 0
    for r in rows:
        embed = f"  embedder {r['embedder_model']}" if r["embedder_model"] else ""
        key = "key in keyring" if r["key_stored"] else "no key stored"
        print(f"  {r['name']}  {r['base_url']}  model {r['model']}{embed}  "
              f"context {r['context']}  ({key})")
    return 0


def _add(settings, args) -> int:
    from app.core.llm.remote import NoKeyring, ProviderConfig, store_key

    try:
        config = ProviderConfig(name=args.name, base_url=args.url, model=args.model,
                                embedder_model=args.embedder_model,
                                context=args.context or 8192)
    except ValueError as exc:
        print(f"folio: {exc}", file=sys.stderr)
        return 2
    key = ask_key(config.name)
    settings.add_provider(config)
    settings.save()
    print(f"Added provider {config.name}: {config.base_url}, model {config.model}.")
    if key:
        try:
            store_key(config.name, key)
            print("Its API key is in the system keyring.")
        except NoKeyring as exc:
            print(f"folio: {exc} Set {KEY_ENV} or type it when asked.", file=sys.stderr)
    return 0


def _remove(settings, args) -> int:
    from app.core.llm.remote import delete_key

    if not settings.remove_provider(args.name):
        print(f"folio: there is no provider called {args.name!r}", file=sys.stderr)
        return 2
    settings.save()
    delete_key(args.name)
    print(f"Removed provider {args.name} (and its key).")
    return 0
