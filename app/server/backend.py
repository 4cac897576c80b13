"""What the HTTP API and the MCP server ask of the engine, on one `Folio`.

Answers go through the same `ChatEngine` as `folio ask` (rewrite, retrieve, budget, stream,
cite), over a scratch chat store in a temporary folder: an API client's conversation is
replayed into a scratch chat, answered, and the chat deleted, so the library's own chats
never fill with other programs' traffic. Model `folio` answers from the library; any other
installed model chats without documents (the chat scope "none", as `folio ask --no-docs`).

Every message that leaves here goes through `scrub`, so no error shows a path outside the
library's documents (a model folder, a log file, this temporary folder).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FOLIO_MODEL = "folio"  # the model id that answers from the library
ROLES = ("system", "developer", "user", "assistant")

# An absolute path in a message: POSIX (/a/b) or Windows (C:\a\b). Its file name is kept.
_PATH = re.compile(r"(?<![\w.~/\\])(?:[A-Za-z]:[\\/]|/)(?:[^\s'\"()<>,;:|\\/]+[\\/])+"
                   r"([^\s'\"()<>,;:|\\/]*)")


def scrub(text: str, allowed: Sequence[str] = ()) -> str:
    """`text` with every absolute path replaced by its file name, except the `allowed` ones
    (the library's documents): errors come from deep in the engine and may name a model's
    folder, a log file or a temporary folder, none of which a client should learn."""
    allowed_set = set(allowed)

    def one(m: re.Match) -> str:
        whole = m.group(0)
        if whole in allowed_set:
            return whole
        return m.group(1) or "(a folder)"

    return _PATH.sub(one, str(text))


class BadRequest(ValueError):
    """A request the engine cannot answer as asked; `param` names the field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownModel(BadRequest):
    pass


@dataclass
class Delta:
    text: str


@dataclass
class Final:
    """The end of an answer: its sources (`folio ask --json`'s shape), token counts, and why
    it stopped ("stop", "length", "cancelled"), or the error that stopped it."""

    finish_reason: str = "stop"
    sources: list[dict] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


def message_text(content) -> str:
    """An OpenAI message content as text: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else getattr(part, "type", None)
        if kind != "text":
            raise BadRequest(f"Only text content is supported, not {kind!r}.", "messages")
        parts.append(part["text"] if isinstance(part, Mapping) else part.text)
    return "".join(parts)


def split_conversation(messages: Sequence[Mapping]) -> tuple[str, list[tuple[str, str]], str]:
    """(the question: the last user message, the earlier user/assistant messages in order,
    the system text the client gave). The last message must be the user's."""
    if not messages:
        raise BadRequest("messages must hold at least one message.", "messages")
    system: list[str] = []
    history: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            raise BadRequest(f"messages[{i}].role {role!r} is not supported "
                             f"(use one of {', '.join(ROLES)}).", f"messages[{i}].role")
        text = message_text(m.get("content"))
        if role in ("system", "developer"):
            if text.strip():
                system.append(text.strip())
        else:
            history.append((role, text))
    if not history or history[-1][0] != "user":
        raise BadRequest("The last message must be the user's question.", "messages")
    question = history.pop()[1]
    if not question.strip():
        raise BadRequest("The last user message is empty.", "messages")
    return question, history, "\n\n".join(system)


class Backend:
    """One `Folio` seen from outside. `switch_models`: a request for another installed model
    loads it (`folio serve`, where the server's queue is the only user of the model); False
    in the window, where the model is the user's and a request for another one is refused
    rather than swapped in under the user's chat."""

    def __init__(self, folio, *, switch_models: bool = True) -> None:
        from app.core.chat.history import ChatStore

        self.folio = folio
        self.switch_models = switch_models
        self._scratch = Path(tempfile.mkdtemp(prefix="folio-serve-"))
        self.store = ChatStore(self._scratch / "api-chats.sqlite")
        self._embed_lock = threading.Lock()

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- models ------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """`folio`, then every installed model whose header reads (file names)."""
        try:
            names = [e.name for e in self.folio.models.list() if e.error is None]
        except OSError:
            names = []
        return [FOLIO_MODEL, *names]

    def check_model(self, model: str) -> None:
        if model not in self.model_ids():
            raise UnknownModel(f"The model {model!r} does not exist; GET /v1/models lists "
                               "the ones here.", "model", "model_not_found")
        if (model != FOLIO_MODEL and not self.switch_models
                and self.folio.model_name not in (None, model)):
            raise BadRequest(f"Folio's window has {self.folio.model_name} loaded; ask for "
                             f"'folio' or '{self.folio.model_name}', or load {model} in the "
                             "window.", "model", "model_not_loaded")

    def warm_up(self) -> None:
        """Open the library, load the model and the embedder now, so the first request
        does not pay for them."""
        self.folio.library  # noqa: B018 - opens it
        self.folio.runtime  # noqa: B018 - loads the default model
        self.folio.library.embedder.embed_query("warm up")

    def _prepare(self, model: str, engine, client_system: str) -> None:
        """Before each answer (under the server's turn): the model, and the system prompt."""
        folio = self.folio
        if self.switch_models:
            if model == FOLIO_MODEL:
                folio.use_model(folio.model_path)  # the pinned model, else the default one
            else:
                folio.use_model(model)
        elif model != FOLIO_MODEL and folio.model_name != model:
            raise RuntimeError(f"Folio's window has {folio.model_name} loaded, not {model}")
        own = folio.system_prompt
        if model == FOLIO_MODEL:
            # Folio's own instructions (cite the sources) stay; the client's are added.
            base = own or folio.prompts.render("system")
            engine.system_prompt = f"{base}\n\n{client_system}" if client_system else own
        else:
            engine.system_prompt = client_system or own

    # -- answers -----------------------------------------------------------------------

    def answer(self, model: str, messages: Sequence[Mapping], overrides: dict,
               cancel: threading.Event) -> Iterator[Delta | Final]:
        """Answer the conversation's last user message; a generator of `Delta`s and one
        `Final`. Runs on a worker thread; `cancel` stops it within a token."""
        question, history, system = split_conversation(messages)
        scope = {"mode": "all"} if model == FOLIO_MODEL else {"mode": "none"}
        chat = self.store.create_chat(scope=scope)
        try:
            for role, text in history:
                self.store.add_message(chat.id, role, text)
            engine = self.folio.engine_for(self.store)
            engine.before_answer = lambda _chat: self._prepare(model, engine, system)
            final = Final()
            events = engine.ask(chat.id, question, cancel=cancel, overrides=overrides)
            for ev in events:
                if cancel.is_set():
                    # Closing the engine's generator tells the model host at once; its own
                    # look at the flag waits for a pause between tokens, which a fast
                    # model never makes.
                    events.close()
                    final = Final(finish_reason="cancelled")
                    break
                if ev.kind == "token":
                    yield Delta(ev.text)
                elif ev.kind == "done":
                    stats = ev.stats or {}
                    reason = stats.get("finish_reason") or "stop"
                    final = Final(
                        finish_reason=reason,
                        sources=self.public_sources(ev.sources) if model == FOLIO_MODEL else [],
                        prompt_tokens=int(stats.get("prompt_tokens") or 0),
                        completion_tokens=int(stats.get("completion_tokens") or 0))
                elif ev.kind == "error":
                    final = Final(finish_reason="error", error=self.scrub(ev.text))
            yield final
        finally:
            try:
                self.store.delete_chat(chat.id)
            except Exception:  # noqa: BLE001 - a scratch chat left behind harms nothing
                log.debug("could not delete scratch chat %s", chat.id, exc_info=True)

    def public_sources(self, sources: Sequence[dict]) -> list[dict]:
        from app.core.chat.answers import public_source

        return [public_source(s) for s in sources]

    def scrub(self, text: str) -> str:
        try:
            allowed = [d.path for d in self.folio.library.documents()]
        except Exception:  # noqa: BLE001 - the library itself may be what failed
            allowed = []
        return scrub(text, allowed)

    # -- the library -------------------------------------------------------------------

    def embedder_name(self) -> str:
        return self.folio.library.embedder_name

    def embed(self, texts: Sequence[str]) -> tuple[list, int]:
        """(vectors as float32 arrays, tokens counted) with the library's own embedder."""
        embedder = self.folio.library.embedder
        with self._embed_lock:
            vectors = embedder.embed_documents(list(texts))
            tokens = sum(int(n) for n in embedder.count_tokens(list(texts)))
        return [v for v in vectors], tokens

    def search(self, query: str, k: int = 5, collection: str | None = None) -> list[dict]:
        """Passages for a query, ranked as `folio search` ranks them by default (hybrid, no
        MMR), in `folio ask --json`'s source shape."""
        from app.core.index.search import hybrid_search

        if not query.strip():
            raise BadRequest("The query is empty.", "query")
        if not 1 <= k <= 50:
            raise BadRequest("k must be from 1 to 50.", "k")
        lib = self.folio.library
        if collection and collection not in lib.collections():
            raise BadRequest(f"There is no collection {collection!r}.", "collection")
        results = hybrid_search(lib, query, k=k, reranker=self.folio.reranker(),
                                collections=[collection] if collection else None)
        return [public_source_of(r) for r in results]

    def documents(self) -> list[dict]:
        keep = ("path", "title", "kind", "status", "pages", "chunks", "collections", "error")
        return [{k: d.public().get(k) for k in keep} for d in self.folio.library.documents()]


def public_source_of(result) -> dict:
    from app.core.chat.answers import public_source

    return public_source(result.to_json())
