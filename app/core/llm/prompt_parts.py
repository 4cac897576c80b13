"""A prompt as parts: template text Folio trusts, and text it does not.

The model tokenizes Folio's prompt templates and the model's chat template with special-token
parsing on: "<start_of_turn>" written there must become the control token. Anything that came
from a document (its text, title, file name), from the chat or from the user is data: a
control-token spelling in it must stay text, or a PDF could close the user's turn and speak
as the system. A defusing pattern cannot know every model's spellings, so the boundary is
kept structurally instead: a `Prompt` is a sequence of parts, each marked `special` (parse
control tokens: template text) or not (untrusted text), and the runtime tokenizes each part
with its own flag and splices the token ids (`LLMRuntime`). Budgets count the same parts.

Templates are rendered around untrusted text without seeing it: each untrusted piece is
swapped for a marker (`Holes`), the template renders the markers, and the rendered string is
cut back into parts at them. A template that copies a marker copies the text; one that
mangles a marker loses that text, never lets it in as template text.

For a provider that only takes a string (a remote server), `Prompt.flatten` escapes every
control-token spelling of the model's vocabulary inside the untrusted parts.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Holes", "Prompt", "PromptPart", "escape_control_tokens"]

_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # Unicode private use: never in Folio's templates


@dataclass(frozen=True, slots=True)
class PromptPart:
    text: str
    special: bool  # True: template text, whose control-token spellings are control tokens


@dataclass(frozen=True, slots=True)
class Prompt:
    """Parts in order; adjacent parts with the same flag are merged, empty ones dropped."""

    parts: tuple[PromptPart, ...] = ()

    def __post_init__(self) -> None:
        merged: list[PromptPart] = []
        for part in self.parts:
            if not isinstance(part, PromptPart):
                raise TypeError(f"a Prompt holds PromptParts, not {type(part).__name__}")
            if not part.text:
                continue
            if merged and merged[-1].special == part.special:
                merged[-1] = PromptPart(merged[-1].text + part.text, part.special)
            else:
                merged.append(part)
        object.__setattr__(self, "parts", tuple(merged))

    @classmethod
    def trusted(cls, text: str) -> Prompt:
        return cls((PromptPart(str(text), True),))

    @classmethod
    def untrusted(cls, text: str) -> Prompt:
        return cls((PromptPart(str(text), False),))

    @classmethod
    def concat(cls, items: Iterable[Prompt]) -> Prompt:
        return cls(tuple(p for item in items for p in item.parts))

    def __add__(self, other: Prompt) -> Prompt:
        if not isinstance(other, Prompt):
            return NotImplemented  # a str is not said to be trusted or not: be explicit
        return Prompt(self.parts + other.parts)

    @property
    def text(self) -> str:
        """All parts as one string (for display and tests; never tokenize it with specials)."""
        return "".join(p.text for p in self.parts)

    def __str__(self) -> str:
        return self.text

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __contains__(self, text: str) -> bool:
        return text in self.text

    def strip(self) -> Prompt:
        """Without leading and trailing whitespace (across parts)."""
        parts = list(self.parts)
        while parts and not parts[0].text.strip():
            parts.pop(0)
        while parts and not parts[-1].text.strip():
            parts.pop()
        if parts:
            parts[0] = PromptPart(parts[0].text.lstrip(), parts[0].special)
            parts[-1] = PromptPart(parts[-1].text.rstrip(), parts[-1].special)
        return Prompt(tuple(parts))

    @property
    def untrusted_text(self) -> str:
        return "".join(p.text for p in self.parts if not p.special)

    def flatten(self, control_tokens: Iterable[str] = ()) -> str:
        """One string, with every spelling in `control_tokens` (the model's control tokens)
        broken inside the untrusted parts: for providers that only take a string."""
        pattern = _spelling_pattern(tuple(control_tokens))
        return "".join(p.text if p.special else escape_control_tokens(p.text, pattern)
                       for p in self.parts)


def _spelling_pattern(spellings: Sequence[str]) -> re.Pattern[str] | None:
    words = sorted({s for s in spellings if len(s) > 1}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words))


def escape_control_tokens(text: str, spellings: Iterable[str] | re.Pattern[str] | None) -> str:
    """`text` with a WORD JOINER (U+2060) after the first character of each control-token
    spelling in it, so no tokenizer reads it as that token; the text reads the same."""
    pattern = spellings if isinstance(spellings, re.Pattern) or spellings is None \
        else _spelling_pattern(tuple(spellings))
    if pattern is None:
        return text
    return pattern.sub(lambda m: m.group(0)[0] + "\u2060" + m.group(0)[1:], text)


class Holes:
    """Untrusted text swapped for markers while a template renders around it."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(6)
        self._filled: list[Prompt] = []
        self._pattern = re.compile(
            re.escape(_MARK_OPEN + self._nonce) + r"(\d+)" + re.escape(_MARK_CLOSE), re.I)

    def hole(self, value: Prompt | str) -> str:
        """A marker for `value`: a Prompt keeps its parts, a str is untrusted text."""
        prompt = value if isinstance(value, Prompt) else Prompt.untrusted(str(value))
        self._filled.append(prompt)
        return f"{_MARK_OPEN}{self._nonce}{len(self._filled) - 1}{_MARK_CLOSE}"

    def embed(self, prompt: Prompt | str) -> str:
        """A Prompt as template input: trusted parts as they are, untrusted ones as markers.
        A plain str is untrusted."""
        if not isinstance(prompt, Prompt):
            return self.hole(prompt) if prompt else ""
        return "".join(p.text if p.special else self.hole(p.text) for p in prompt.parts)

    def fill(self, rendered: str) -> Prompt:
        """The rendered template as a Prompt: its own text trusted, the markers replaced by
        what they stand for."""
        parts: list[PromptPart] = []
        pos = 0
        for m in self._pattern.finditer(rendered):
            parts.append(PromptPart(_unmarked(rendered[pos:m.start()]), True))
            index = int(m.group(1))
            if index < len(self._filled):
                parts.extend(self._filled[index].parts)
            pos = m.end()
        parts.append(PromptPart(_unmarked(rendered[pos:]), True))
        return Prompt(tuple(parts))


def _unmarked(text: str) -> str:
    """Template text without stray marker characters (a template that cut a marker)."""
    if _MARK_OPEN in text or _MARK_CLOSE in text:
        return text.replace(_MARK_OPEN, "").replace(_MARK_CLOSE, "")
    return text
