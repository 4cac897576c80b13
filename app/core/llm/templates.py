"""Prompts for local models: the GGUF's own Jinja chat template, screened at load
(`screen_chat_template`) and rendered in a bounded sandbox (`sandbox.py`: templates come from
downloaded files), or, for base models without one such as the starter model, a
Question/Answer document (`format_completion_prompt`) with stop strings where a new turn
would begin.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from app.core.llm.prompt_parts import Holes, Prompt
from app.core.llm.provider import ModelInfo
from app.core.llm.sandbox import (
    BoundedSandbox,
    TemplateRefused,
    check_source,
    render_limited,
    values_size,
)
from app.core.models.files import ModelError


class ChatTemplateError(ModelError):
    """The model's chat template failed to render (bad syntax, refused by the sandbox, or the
    template itself raised, e.g. on roles it does not support)."""


# -- prompt formats ----------------------------------------------------------------------------

# Markers that end (or start) a turn in common templates. A chat model normally ends its turn
# with an end-of-generation token, which stops generation by itself; these catch models that
# write the marker as plain text or run on into the next turn.
_TURN_MARKERS = (
    "<end_of_turn>",
    "<start_of_turn>",
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end|>",
    "<|user|>",
    "<|endoftext|>",
    "<|END_OF_TURN_TOKEN|>",
    "</s>",
    "[INST]",
)

# Base models continue documents. "Question:/Answer:" pairs are everywhere in what they were
# trained on (FAQ pages, exams, QA datasets, the prompts of most benchmarks), so a base model
# continues "Answer:" with an answer and then starts the next "Question:", which is where we
# stop it. "User:/Assistant:" transcripts are rarer in web text and invite role-play.
COMPLETION_STOPS = ("\nQuestion:", "\nUser:", "\nAnswer:")


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role', 'content'} mappings")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise ValueError(f"message {i} needs a string 'role'")
        if not isinstance(m.get("content"), (str, Prompt)):
            raise ValueError(f"message {i} needs a string 'content'")
        checked.append(dict(m))
    return checked


def format_completion_prompt(
    messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
) -> tuple[str, list[str]]:
    """A chat as a document a base model continues: system text as a preamble, then
    "Question: ...\\nAnswer: ..." turns, ending with an open "Answer:"."""
    parts: list[str] = []
    preamble = []
    for m in _check_messages(messages):
        role, content = m["role"].lower(), m["content"].strip()
        if role == "system":
            preamble.append(content)
        elif role == "user":
            parts.append(f"Question: {content}")
        elif role == "assistant":
            parts.append(f"Answer: {content}")
        else:
            parts.append(f"{m['role'].capitalize()}: {content}")
    text = "\n\n".join(p for p in preamble if p)
    turns = []
    for p in parts:
        # An answer follows its question on the next line; each Q/A pair is its own paragraph.
        if p.startswith("Answer:") and turns and turns[-1].startswith("Question:"):
            turns[-1] += "\n" + p
        else:
            turns.append(p)
    body = "\n\n".join(turns)
    if add_generation_prompt:
        if turns and turns[-1].startswith("Question:"):
            body += "\nAnswer:"
        else:
            body += ("\n\n" if body else "") + "Answer:"
    prompt = f"{text}\n\n{body}" if text and body else (text or body)
    return prompt, list(COMPLETION_STOPS)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"The chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
    # Hugging Face's tojson: no HTML escaping (Jinja's default turns '<' into \u003c).
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 16):
        raise TemplateRefused(f"tojson with an indent of {indent!r}")
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=False)


@lru_cache(maxsize=16)
def _compile_template(template: str) -> Any:
    """Compile in the bounded sandbox (app/core/llm/sandbox.py): the compiler folds constant
    expressions, and `*`, `**`, widths and counts are checked before it can."""
    import jinja2
    from jinja2.sandbox import SecurityError

    class Sandbox(BoundedSandbox):
        # Jinja's sandbox turns an unsafe attribute into a silent Undefined (printed as "");
        # refuse loudly instead, so a hostile template fails rather than half-renders.
        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            raise SecurityError(
                f"access to attribute {attribute!r} of a {type(obj).__name__!r} is unsafe"
            )

    try:
        check_source(template)
    except TemplateRefused as exc:
        raise ChatTemplateError(f"The chat template was refused: {exc}") from exc
    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"The chat template does not parse: {exc}") from exc
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        raise ChatTemplateError(f"The chat template does not compile: {exc!r}") from exc


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, str]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Render a Hugging Face style Jinja chat template in the bounded sandbox: templates ship
    inside downloaded model files, so they may not touch Python internals, mutate data, build
    huge values or run for more than a couple of seconds (app/core/llm/sandbox.py)."""
    import jinja2

    checked = _check_messages(messages)
    compiled = _compile_template(template)
    values = dict(messages=checked, add_generation_prompt=add_generation_prompt,
                  bos_token=bos_token, eos_token=eos_token, **extra)
    try:
        from app.core.llm.sandbox import MAX_OUTPUT_CHARS

        # Room for the conversation itself, which may be long, and for the template's text.
        return render_limited(compiled, values,
                              max_chars=MAX_OUTPUT_CHARS + 4 * values_size(checked))
    except ChatTemplateError:
        raise
    except TemplateRefused as exc:
        raise ChatTemplateError(f"The chat template was refused: {exc}") from exc
    except jinja2.TemplateError as exc:  # SecurityError and UndefinedError included
        raise ChatTemplateError(f"The chat template failed to render: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a template can fail in many ways
        raise ChatTemplateError(f"The chat template failed to render: {exc!r}") from exc


# Conversations a template is tried on before it is used: one of them must render.
_TRIAL_CHATS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "system", "content": "You answer from documents."},
     {"role": "user", "content": "What is in the document?"},
     {"role": "assistant", "content": "A list of animals [1]."},
     {"role": "user", "content": "Which ones?"}),
    ({"role": "user", "content": "What is in the document?"},),
)


def screen_chat_template(template: str, bos_token: str = "", eos_token: str = "") -> str | None:
    """Why a chat template (from a GGUF or the model's settings) cannot be used, or None when
    it can: it must compile in the bounded sandbox and render a small conversation within the
    sandbox's limits. A template that refuses one trial conversation by raise_exception (one
    that wants no system turn, say) is kept when it renders the other."""
    try:
        _compile_template(template)
    except ChatTemplateError as exc:
        return str(exc)
    last: str | None = None
    for chat in _TRIAL_CHATS:
        try:
            render_chat_template(template, chat, bos_token=bos_token, eos_token=eos_token)
            return None
        except ChatTemplateError as exc:
            if "refused the conversation" not in str(exc):
                return str(exc)
            last = str(exc)
    return f"it refuses every conversation Folio would send ({last})"


def chat_stop_strings(template: str, eos_token: str = "") -> list[str]:
    """Stop strings for a chat template: the turn markers it uses, and the EOS text."""
    stops = [m for m in _TURN_MARKERS if m in template]
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    return stops


def format_chat(
    messages: Sequence[Mapping[str, str]],
    *,
    template: str | None,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Any, list[str]]:
    """(prompt, stop strings): the chat template when there is one, else the completion format.
    `tools` (function declarations) reach the template as its `tools` variable; the
    completion format has no place for them and leaves them out.

    When a message's content is a `Prompt`, so is the result: the template's own text is
    trusted (its control-token spellings are meant), the contents' untrusted parts are spliced
    in where the template put them, unseen by it (`Holes`). A plain str content is then
    untrusted too."""
    if any(isinstance(m, Mapping) and isinstance(m.get("content"), Prompt) for m in messages):
        holes = Holes()
        marked = [{**m, "content": holes.embed(m.get("content"))} if isinstance(m, Mapping)
                  else m for m in messages]
        text, stops = format_chat(marked, template=template, bos_token=bos_token,
                                  eos_token=eos_token,
                                  add_generation_prompt=add_generation_prompt, tools=tools)
        return holes.fill(text), stops
    if not template:
        return format_completion_prompt(messages, add_generation_prompt)
    prompt = render_chat_template(
        template,
        messages,
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
        **({"tools": [dict(t) for t in tools]} if tools else {}),
    )
    return prompt, chat_stop_strings(template, eos_token)


# -- streaming text: UTF-8 and stop strings ----------------------------------------------------


def format_chat_for(
    info: ModelInfo | None,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    template: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Any, list[str]]:
    """`format_chat` for a loaded model (`info`), as every provider's format_chat does it."""
    if template is None:
        if info is None:
            raise ModelError("No model is loaded")
        template = info.chat_template
    return format_chat(
        messages,
        template=template,
        bos_token=info.bos_token if info else "",
        eos_token=info.eos_token if info else "",
        add_generation_prompt=add_generation_prompt,
        tools=tools,
    )
