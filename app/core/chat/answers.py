"""The cited-answer chain: retrieve -> prompt (within the context budget) -> stream -> cite.

`ChatEngine` composes the library (search), an LLM provider (generation and its tokenizer),
the chat store (history that survives restarts) and the prompt templates. Every long operation
is a generator of `ChatEvent`s that honours a cancel flag; the CLI prints them and the window
turns them into signals.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core.chat.history import Chat, ChatStore, Message
from app.core.chat.prompts import PromptSet
from app.core.index import rerank
from app.core.index.context import widen
from app.core.index.library import Library
from app.core.index.search import SearchResult, hybrid_search
from app.core.llm.prompt_parts import Prompt
from app.core.llm.provider import Done, GenerationSettings, LLMProvider, Token, defaults_for
from app.core.tools.calls import supports_tools

log = logging.getLogger(__name__)

NOTHING_FOUND = (
    "I couldn't find anything about this in your documents{scope}. "
    "Try rephrasing the question, or check that the right documents are in the library."
)
CITATION = re.compile(r"\[(\d{1,3})\]")
# Document text reaches the model as untrusted prompt parts (app/core/llm/prompt_parts.py): the
# runtime never reads a control token in it, whatever the model's spelling. What remains is
# the prompt's own structure, which text could imitate. Each source starts with a header line
# "[n] Title, page p" (context.j2); a passage, title or section never starts a line with
# "[n]", so the headers are the only such lines and a passage cannot pose as source 3.
# (Tags around each source were tried and dropped: the starter model answered with
# underscores; see docs/BENCHMARKS.md.)
_SOURCE_HEADER = re.compile(r"^([^\S\n]*)\[(\d{1,3})\]", re.M)
_OTHER_BREAKS = re.compile(r"\r\n?|[\v\f\x1c-\x1e\x85\u2028\u2029]")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def neutralise_source_text(text: str) -> str:
    """A passage as it goes under its source's header: a line that starts like a source
    header ("[3] ...") starts with "(3)" instead; the rest is kept as it is."""
    text = _OTHER_BREAKS.sub("\n", text)  # "\r[3]" would start a line for the model too
    return _SOURCE_HEADER.sub(lambda m: f"{m.group(1)}({m.group(2)})", text)


def one_line(text: str) -> str:
    """A title, file name or section as one line, neutralised like a passage."""
    return neutralise_source_text(_LINE_BREAKS.sub(" ", text or "")).strip()


# A base model continues a transcript; these end its answer where a new turn would begin.
COMPLETION_STOPS = ["\nQuestion:", "\nSources:", "\n\n\n", "\nUser:", "<end_of_turn>"]


@dataclass
class ChatConfig:
    k: int = 5  # sources per answer
    candidates: int = 50  # retrieval pool before fusion/MMR
    mmr: bool = True
    min_similarity: float = 0.25  # below this, a source is not about the question
    reranker: str = "auto"  # index/rerank.py: an installed cross-encoder, or "off"
    # Each source is handed to the model widened to its section, up to this many tokens
    # (index/context.py), while the context has room; 0 hands over the passages alone.
    section_tokens: int = 600
    answer_tokens: int = 512  # room kept for the answer
    keep_turns: int = 4  # recent turns always kept verbatim
    condense_over_turns: int = 8  # older turns beyond this are condensed into a summary
    rewrite_tokens: int = 48
    flush_seconds: float = 0.5  # how often a streaming answer is saved


@dataclass
class ChatEvent:
    """kind: query (the search query used), sources, token, done, error, progress, status."""

    kind: str
    text: str = ""
    sources: list[dict] = field(default_factory=list)
    message_id: int | None = None
    done: int = 0
    total: int = 0
    stats: dict = field(default_factory=dict)


@dataclass
class _Turn:
    question: str
    answer: str
    answer_id: int


def source_dict(n: int, r: SearchResult) -> dict:
    return {
        "n": n, "path": r.path, "page": r.page, "page_end": r.page_end, "section": r.section,
        "score": r.score, "similarity": r.similarity, "text": r.text, "title": r.title,
        "name": Path(r.path).name, "chunk_id": r.chunk_id, "doc_id": r.doc_id,
        "chunk_index": r.chunk_index, "char_start": r.char_start, "char_end": r.char_end,
    }


# What a cited source shows outside Folio: `folio ask --json`, the local server's `sources`
# and its MCP `ask` tool all give these fields, in this order.
PUBLIC_SOURCE_FIELDS = ("path", "page", "page_end", "section", "score", "text")


def public_source(source: dict) -> dict:
    return {k: source.get(k) for k in PUBLIC_SOURCE_FIELDS}


def cited_numbers(answer: str, count: int) -> list[int]:
    """The source numbers an answer cites, in first-cited order, ignoring out-of-range ones."""
    seen: list[int] = []
    for match in CITATION.finditer(answer):
        n = int(match.group(1))
        if 1 <= n <= count and n not in seen:
            seen.append(n)
    return seen


class ChatEngine:
    def __init__(
        self,
        library: Library | None,
        llm: LLMProvider,
        store: ChatStore,
        prompts: PromptSet | None = None,
        config: ChatConfig | None = None,
    ):
        self.library = library
        self.llm = llm
        self.store = store
        self.prompts = prompts or PromptSet()
        self.config = config or ChatConfig()
        # The model's own system prompt (a per-model setting) instead of the template's.
        self.system_prompt: str | None = None
        # Called with the chat before each answer: Folio loads the chat's model there.
        self.before_answer: Callable[[Chat], None] | None = None

    @property
    def supports_tools(self) -> bool:
        """Whether the loaded model's chat template can be offered tools (the starter model's
        cannot: the window says so instead of offering them; app/core/chat/tool_chat.py)."""
        info = self.llm.info
        return info is not None and supports_tools(info.chat_template)

    # -- public operations ---------------------------------------------------------------

    def ask(
        self, chat_id: int, question: str, *, cancel: threading.Event | None = None,
        overrides: dict | None = None,
    ) -> Iterator[ChatEvent]:
        question = question.strip()
        if not question:
            yield ChatEvent("error", text="The question is empty.")
            return
        user = self.store.add_message(chat_id, "user", question)
        yield from self._answer(chat_id, user, cancel, overrides)

    def regenerate(
        self, chat_id: int, *, cancel: threading.Event | None = None,
        overrides: dict | None = None,
    ) -> Iterator[ChatEvent]:
        """Answer the last question again, replacing the previous answer."""
        users = [m for m in self.store.messages(chat_id) if m.role == "user"]
        if not users:
            yield ChatEvent("error", text="There is no question to answer again.")
            return
        self.store.truncate_after(users[-1].id)
        yield from self._answer(chat_id, users[-1], cancel, overrides)

    def edit_and_resend(
        self, chat_id: int, message_id: int, question: str, *,
        cancel: threading.Event | None = None, overrides: dict | None = None,
    ) -> Iterator[ChatEvent]:
        """Change an earlier question and continue from there; later turns are replaced."""
        user = self.store.edit_message(message_id, question.strip())
        yield from self._answer(chat_id, user, cancel, overrides)

    # -- the chain -----------------------------------------------------------------------

    def _answer(
        self, chat_id: int, user: Message, cancel: threading.Event | None,
        overrides: dict | None,
    ) -> Iterator[ChatEvent]:
        cancel = cancel or threading.Event()
        cfg = self.config
        chat = self.store.get_chat(chat_id)
        if self.before_answer is not None:
            try:
                self.before_answer(chat)
            except Exception as exc:  # the chat's model failed to load: say so, keep the chat
                log.warning("could not load the model for chat %s: %s", chat_id, exc)
                yield ChatEvent("error", text=f"The chat's model could not be loaded: {exc}")
                return
        info = self.llm.info
        if info is None:
            yield ChatEvent("error", text="No model is loaded.")
            return
        settings = defaults_for(info).merged(chat.settings or {}).merged(overrides or {})
        turns, summary = self._history(chat_id, user.id)
        scope = chat.scope or {"mode": "all"}
        use_docs = scope.get("mode", "all") != "none" and self.library is not None

        sources: list[dict] = []
        query = user.content
        if use_docs:
            query = self.rewrite_query(user.content, turns, cancel)
            yield ChatEvent("query", text=query)
            results = self._retrieve(query, scope)
            relevant = [r for r in results if r.similarity >= cfg.min_similarity]
            sources = [source_dict(i, r) for i, r in enumerate(relevant, 1)]
            yield ChatEvent("sources", sources=sources)
            if not sources:
                text = NOTHING_FOUND.format(scope=_scope_words(scope))
                msg = self.store.add_message(
                    chat_id, "assistant", text,
                    meta={"model": info.name, "no_sources": True, "rewritten_query": query},
                )
                yield ChatEvent("token", text=text, message_id=msg.id)
                yield ChatEvent("done", text=text, message_id=msg.id,
                                stats={"no_sources": True, "prompt_tokens": 0,
                                       "completion_tokens": 0, "seconds": 0.0})
                return

        if len(turns) > cfg.condense_over_turns:
            summary, turns = self._condense(chat_id, turns, summary, cancel)

        answer_budget = min(settings.max_tokens, max(64, info.n_ctx // 3))
        settings = settings.merged({"max_tokens": answer_budget})
        try:
            prompt, stops, sources, turns = self._fit_prompt(
                user.content, sources, turns, summary, info.n_ctx - answer_budget - 8
            )
        except _TooLong as exc:
            msg = self.store.add_message(chat_id, "assistant", "", status="error",
                                         meta={"model": info.name})
            self.store.finish_answer(msg.id, "", status="error", error=str(exc))
            yield ChatEvent("error", text=str(exc), message_id=msg.id)
            return
        prompt, stops = self._read_sections(
            user.content, sources, turns, summary, info.n_ctx - answer_budget - 8, prompt, stops)
        settings = settings.merged({"stop": [*settings.stop, *stops]})

        meta = {"model": info.name, "rewritten_query": query if use_docs else None}
        if info.provider:  # a remote provider wrote this answer (app/core/llm/remote.py)
            meta.update(provider=info.provider, remote=True)
        msg = self.store.start_answer(chat_id, meta=meta)
        parts: list[str] = []
        last_flush = time.monotonic()
        done: Done | None = None
        try:
            for event in self.llm.generate(prompt, settings, cancel):
                if isinstance(event, Token):
                    parts.append(event.text)
                    yield ChatEvent("token", text=event.text, message_id=msg.id)
                    if time.monotonic() - last_flush >= cfg.flush_seconds:
                        self.store.update_answer(msg.id, "".join(parts))
                        last_flush = time.monotonic()
                elif isinstance(event, Done):
                    done = event
        except Exception as exc:  # a runtime failure must not lose the chat
            log.exception("generation failed")
            answer = "".join(parts).strip()
            try:
                self.store.finish_answer(msg.id, answer, status="error", sources=sources,
                                         meta=meta, error=str(exc))
            except KeyError:
                pass
            yield ChatEvent("error", text=f"The model failed while answering: {exc}",
                            message_id=msg.id)
            return
        answer = "".join(parts).strip()
        status = "cancelled" if done and done.finish_reason == "cancelled" else "complete"
        if done and done.finish_reason == "error":
            status = "error"
        stats = {
            "prompt_tokens": done.prompt_tokens if done else 0,
            "completion_tokens": done.completion_tokens if done else 0,
            "seconds": round(done.seconds, 3) if done else 0.0,
            "ttft": round(done.ttft_seconds, 3) if done and done.ttft_seconds else None,
            "finish_reason": done.finish_reason if done else None,
            "cited": cited_numbers(answer, len(sources)),
        }
        meta.update(stats)
        error = None
        if status == "error":
            # The model failed mid-answer (its process crashed, say): keep what was written,
            # say plainly that it was cut off and why.
            error = done.error or "The model failed while answering."
            if answer:
                error += " The answer above was cut off there."
            meta["cut_off"] = bool(answer)
        try:
            self.store.finish_answer(msg.id, answer, status=status, sources=sources, meta=meta,
                                     error=error)
        except KeyError:  # the chat was deleted while the answer streamed: nothing to keep
            log.info("chat %s was deleted while answering", chat_id)
        if error is not None:
            yield ChatEvent("error", text=error, sources=sources, message_id=msg.id,
                            stats=stats)
            return
        yield ChatEvent("done", text=answer, sources=sources, message_id=msg.id, stats=stats)

    def _retrieve(self, query: str, scope: dict) -> list[SearchResult]:
        assert self.library is not None
        mode = scope.get("mode", "all")
        return hybrid_search(self.library,
            query, k=self.config.k, candidates=self.config.candidates, mmr=self.config.mmr,
            reranker=rerank.find(self.config.reranker),
            collections=scope.get("collections") if mode == "collections" else None,
            documents=scope.get("documents") if mode == "documents" else None,
        )

    def _history(self, chat_id: int, before_id: int) -> tuple[list[_Turn], str]:
        """Question/answer pairs before `before_id`, after what the summary already covers."""
        chat = self.store.get_chat(chat_id)
        upto = chat.summary_upto or 0
        turns: list[_Turn] = []
        question: str | None = None
        for m in self.store.messages(chat_id):
            if m.id >= before_id:
                break
            if m.id <= upto:
                continue
            if m.role == "user":
                question = m.content
            elif m.role == "assistant" and question is not None and m.content:
                turns.append(_Turn(question, m.content, m.id))
                question = None
        return turns, chat.summary or ""

    # -- follow-ups and long chats --------------------------------------------------------

    def rewrite_query(
        self, question: str, turns: Sequence[_Turn], cancel: threading.Event | None = None
    ) -> str:
        """A standalone search query for a follow-up question.

        With a chat model the LLM rewrites it; a base model (or a failed rewrite) falls back
        to joining the recent questions, which keeps their subject in the query.
        """
        if not turns:
            return question
        fallback = " ".join([t.question for t in turns[-2:]] + [question])
        info = self.llm.info
        if info is None or not info.chat_template:
            return fallback
        text = self.prompts.render_prompt("rewrite", history=[t.__dict__ for t in turns[-3:]],
                                          question=question)
        prompt, stops = self.llm.format_chat([{"role": "user", "content": text}])
        settings = GenerationSettings(temperature=0.0, max_tokens=self.config.rewrite_tokens,
                                      stop=tuple(stops) + ("\n",))
        rewritten = self._complete(prompt, settings, cancel).strip().strip('"').strip()
        if not rewritten or len(rewritten) > 4 * len(fallback) + 100:
            return fallback
        return rewritten

    def _condense(
        self, chat_id: int, turns: list[_Turn], summary: str, cancel: threading.Event | None
    ) -> tuple[str, list[_Turn]]:
        """Fold the older turns into the chat's running summary, kept with the chat."""
        keep = self.config.keep_turns
        old, recent = turns[:-keep], turns[-keep:]
        text = self.prompts.render_prompt("condense", summary=summary,
                                          history=[t.__dict__ for t in old])
        prompt, stops = self._as_prompt(text)
        new_summary = self._complete(
            prompt, GenerationSettings(temperature=0.2, max_tokens=200, stop=tuple(stops)),
            cancel,
        ).strip()
        if not new_summary:  # the model could not summarise: keep the old summary
            return summary, turns
        self.store.update_chat(chat_id, summary=new_summary, summary_upto=old[-1].answer_id)
        return new_summary, recent

    def _as_prompt(self, instruction: Prompt) -> tuple[Prompt, list[str]]:
        """An instruction as a prompt: a chat turn for chat models, plain text otherwise."""
        info = self.llm.info
        if info is not None and info.chat_template:
            return self.llm.format_chat([{"role": "user", "content": instruction}])
        return instruction + Prompt.trusted(" "), list(COMPLETION_STOPS)

    def _complete(
        self, prompt: Prompt, settings: GenerationSettings, cancel: threading.Event | None
    ) -> str:
        parts = []
        for event in self.llm.generate(prompt, settings, cancel):
            if isinstance(event, Token):
                parts.append(event.text)
        return "".join(parts)

    # -- budgeting ------------------------------------------------------------------------

    def build_prompt(
        self, question: str, sources: list[dict], turns: Sequence[_Turn], summary: str
    ) -> tuple[Prompt, list[str]]:
        """The answer's prompt as parts: the templates' text (and the system prompt, the
        user's own setting) trusted; the question, the sources (text, titles, file names),
        the earlier turns and the summary untrusted: the runtime never reads a control token
        in them (app/core/llm/prompt_parts.py). Each source starts with its "[n] ..." header
        line, which its text cannot imitate (`neutralise_source_text`)."""
        info = self.llm.info
        system = Prompt.trusted(
            self.system_prompt.strip() if self.system_prompt and self.system_prompt.strip()
            else self.prompts.render("system"))
        sources = [_for_prompt(s) for s in sources]
        history = [{"question": Prompt.untrusted(t.question), "answer": Prompt.untrusted(t.answer)}
                   for t in turns]
        context = (self.prompts.render_prompt("context", sources=sources) if sources
                   else Prompt())
        if info is not None and info.chat_template:
            if summary:
                system += (Prompt.trusted("\n\nSummary of the earlier conversation: ")
                           + Prompt.untrusted(summary))
            messages: list[dict] = [{"role": "system", "content": system}]
            for h in history:
                messages += [{"role": "user", "content": h["question"]},
                             {"role": "assistant", "content": h["answer"]}]
            messages.append({"role": "user", "content": self.prompts.render_prompt(
                "question", question=question, sources=sources, context=context)})
            prompt, stops = self.llm.format_chat(messages)
            return prompt, stops
        prompt = self.prompts.render_prompt(
            "completion", system=system, summary=summary, sources=sources, context=context,
            history=history, question=question,
        )
        return prompt + Prompt.trusted(" "), list(COMPLETION_STOPS)

    def _fit_prompt(
        self, question: str, sources: list[dict], turns: list[_Turn], summary: str, budget: int
    ) -> tuple[Prompt, list[str], list[dict], list[_Turn]]:
        """Drop the lowest-ranked sources first, then the oldest turns, then the summary,
        until the prompt fits `budget` tokens of the model's own tokenizer."""
        sources, turns = list(sources), list(turns)
        while True:
            prompt, stops = self.build_prompt(question, sources, turns, summary)
            used = self.llm.count_tokens(prompt)
            if used <= budget:
                return prompt, stops, sources, turns
            if len(sources) > 1:
                sources.pop()
            elif turns:
                turns.pop(0)
            elif summary:
                summary = ""
            elif sources and len(sources[0]["text"]) > 200:
                excess = used - budget
                cut = max(200, len(sources[0]["text"]) - 4 * excess - 100)
                sources[0] = {**sources[0], "text": sources[0]["text"][:cut] + " ..."}
            else:
                raise _TooLong(
                    f"The question is too long for this model's context ({used} tokens of "
                    f"{budget} available). Shorten it or use a model with a longer context."
                )

    def _read_sections(
        self, question: str, sources: list[dict], turns: list[_Turn], summary: str,
        budget: int, prompt: Prompt, stops: list[str],
    ) -> tuple[Prompt, list[str]]:
        """The fitted prompt again with each source widened to its section (index/context.py)
        in the room the prompt leaves. The sources themselves (cited, stored, shown) stay the
        found passages. Whatever goes wrong here costs the widening, never the answer."""
        per_source = self.config.section_tokens
        if not sources or self.library is None or per_source <= 0:
            return prompt, stops
        room = budget - self.llm.count_tokens(prompt)
        for _ in range(3):  # the headers' page ranges can grow a little: shrink and try again
            if room <= 0:
                return prompt, stops
            try:
                windows = widen(self.library, sources, count=self.llm.count_tokens,
                                per_source=per_source, budget=room)
            except Exception as exc:  # noqa: BLE001 - a library read failed: the passages do
                log.warning("could not read the sources' sections: %s", exc)
                return prompt, stops
            if not any(windows):
                return prompt, stops
            read = [s if w is None else {**s, "context": w.text, "context_page": w.page,
                                         "context_page_end": w.page_end}
                    for s, w in zip(sources, windows, strict=True)]
            wider, wider_stops = self.build_prompt(question, read, turns, summary)
            over = self.llm.count_tokens(wider) - budget
            if over <= 0:
                return wider, wider_stops
            room -= over + 16
        return prompt, stops

    # -- summarising a document ----------------------------------------------------------

    def summarize(
        self, path: str | Path, *, cancel: threading.Event | None = None,
        part_tokens: int = 200,
    ) -> Iterator[ChatEvent]:
        """Map-reduce summary of a whole document: summarise windows of consecutive chunks
        that fit the context, then combine the summaries (recursively) into one."""
        cancel = cancel or threading.Event()
        if self.library is None:
            yield ChatEvent("error", text="No library is open.")
            return
        docs = self.library.find(str(path))
        if not docs:
            yield ChatEvent("error", text=f"{path} is not in the library.")
            return
        doc = docs[0]
        chunks = self.library.document_chunks(doc.doc_id)
        if not chunks:
            yield ChatEvent("error", text=f"{doc.name} has no indexed text to summarise.")
            return
        info = self.llm.info
        title = one_line(doc.title or doc.name)
        overhead = self.llm.count_tokens(self._as_prompt(
            self.prompts.render_prompt("summary_map", title=title, pages="", text=""))[0]) + 16
        window = max(128, info.n_ctx - part_tokens - overhead)
        groups = _pack(chunks, window, self.llm.count_tokens)
        total = len(groups) + max(1, len(groups) // 4)
        started = time.monotonic()
        yield ChatEvent("progress", done=0, total=total, text=f"Reading {title}")
        parts: list[str] = []
        settings = GenerationSettings(temperature=0.2, max_tokens=part_tokens)
        for i, group in enumerate(groups, 1):
            if cancel.is_set():
                yield ChatEvent("done", text="", stats={"cancelled": True})
                return
            pages = _pages(group)
            prompt, stops = self._as_prompt(self.prompts.render_prompt(
                "summary_map", title=title, pages=pages,
                text="\n\n".join(c["text"] for c in group)))
            part = self._complete(prompt, settings.merged({"stop": stops}), cancel).strip()
            if part:
                parts.append(part)
            yield ChatEvent("progress", done=i, total=total, text=f"Summarised part {i}")
        done_steps = len(groups)
        while len(parts) > 1 and not cancel.is_set():
            batches = _pack([{"text": p} for p in parts], window, self.llm.count_tokens)
            reduced = []
            for batch in batches:
                if cancel.is_set():
                    break
                prompt, stops = self._as_prompt(self.prompts.render_prompt(
                    "summary_reduce", title=title, parts=[b["text"] for b in batch]))
                reduced.append(self._complete(
                    prompt, settings.merged({"stop": stops, "max_tokens": part_tokens * 2}),
                    cancel).strip() or " ".join(b["text"] for b in batch))
                done_steps += 1
                yield ChatEvent("progress", done=done_steps, total=max(total, done_steps),
                                text="Combining summaries")
            if len(reduced) >= len(parts):  # no progress: stop rather than loop
                parts = [" ".join(reduced)]
                break
            parts = reduced
        if cancel.is_set():
            yield ChatEvent("done", text="", stats={"cancelled": True})
            return
        summary = parts[0] if parts else ""
        yield ChatEvent("done", text=summary, stats={
            "document": doc.path, "parts": len(groups), "seconds": time.monotonic() - started})


class _TooLong(Exception):
    pass


def _for_prompt(source: dict) -> dict:
    """A source as the context template gets it: its text neutralised, its names one line.
    A source widened to its section (`context`) is read as the section, with its pages."""
    widened = source.get("context")
    pages = ({"page": source.get("context_page"), "page_end": source.get("context_page_end")}
             if widened else {})
    return {**source, **pages, "text": neutralise_source_text(widened or source.get("text") or ""),
            "title": one_line(source.get("title") or ""),
            "name": one_line(source.get("name") or ""),
            "section": one_line(source.get("section") or "")}


def _pack(items: list[dict], budget: int, count) -> list[list[dict]]:
    """Consecutive items grouped so each group's text fits `budget` tokens."""
    sizes = [count(item["text"]) for item in items]
    groups: list[list[dict]] = []
    current: list[dict] = []
    used = 0
    for item, size in zip(items, sizes, strict=True):
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        groups.append(current)
    return groups


def _pages(group: list[dict]) -> str:
    pages = [p for c in group for p in (c.get("page"), c.get("page_end")) if p]
    if not pages:
        return ""
    lo, hi = min(pages), max(pages)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _scope_words(scope: dict) -> str:
    mode = scope.get("mode", "all")
    if mode == "collections" and scope.get("collections"):
        return " (in " + ", ".join(scope["collections"]) + ")"
    if mode == "documents" and scope.get("documents"):
        return " (in the chosen documents)"
    return ""
