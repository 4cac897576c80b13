"""Prompt templates: Jinja2 files in resources/prompts/, which a user may override.

A user's copy lives in `<data dir>/prompts/NAME.j2`. If it fails to load or render, the error
is logged and kept (the window shows it) and the default template is used instead, so a typo
in a template never stops answers.

Templates are rendered in a bounded sandbox (app/core/llm/sandbox.py: a user may paste one from
anywhere), and document text only ever enters as variable values, which Jinja never
evaluates: a PDF containing `{{ ... }}` is just text. `render_prompt` returns a `Prompt` in
which everything a template prints with `{{ ... }}` is an untrusted part (document text,
titles, the chat) and the template's own text is trusted, so the model tokenizes a control
token only where a template writes it (see app/core/llm/prompt_parts.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError

from app.core.base.paths import data_dir, make_private_dir, resource_path
from app.core.llm.prompt_parts import Holes, Prompt
from app.core.llm.sandbox import BoundedSandbox, check_source, render_limited

log = logging.getLogger(__name__)

TEMPLATES = (
    "system", "context", "question", "completion", "rewrite", "condense",
    "summary_map", "summary_reduce",
)


class PromptError(Exception):
    pass


def user_prompts_dir() -> Path:
    return data_dir() / "prompts"


@dataclass
class PromptSet:
    """The prompt templates in use: defaults from resources, overridden by the user's files."""

    default_dir: Path = field(default_factory=lambda: resource_path("prompts"))
    user_dir: Path | None = field(default_factory=user_prompts_dir)
    errors: dict[str, str] = field(default_factory=dict)  # template name -> last error

    def __post_init__(self) -> None:
        self._holes = threading.local()  # the Holes of the render running on this thread
        self._env = BoundedSandbox(
            autoescape=False, keep_trailing_newline=False, undefined=StrictUndefined,
            trim_blocks=False, lstrip_blocks=False, finalize=self._finalize,
        )

    def _finalize(self, value: Any) -> Any:
        """Every value a template prints: a marker for it while `render_prompt` runs (so it
        becomes an untrusted part), the value itself otherwise. Constants are finalized when
        the template compiles, with no render running: they stay template text."""
        holes = getattr(self._holes, "current", None)
        if holes is None or value is None:
            return value
        return holes.hole(value if isinstance(value, Prompt) else str(value))

    def source(self, name: str, *, default: bool = False) -> str:
        if name not in TEMPLATES:
            raise PromptError(f"unknown prompt template {name!r}")
        if not default and self.user_dir is not None:
            user_file = self.user_dir / f"{name}.j2"
            if user_file.exists():
                return user_file.read_text("utf-8")
        path = self.default_dir / f"{name}.j2"
        if not path.exists():
            raise PromptError(f"the default prompt template {path} is missing")
        return path.read_text("utf-8")

    def is_customised(self, name: str) -> bool:
        return self.user_dir is not None and (self.user_dir / f"{name}.j2").exists()

    def render(self, name: str, **values) -> str:
        """Render the user's template, falling back to the default if it is broken."""
        return self._render(name, values, None).strip()

    def render_prompt(self, name: str, **values) -> Prompt:
        """The template as a Prompt: its own text trusted, every printed value untrusted
        (a Prompt value keeps its parts)."""
        holes = Holes()
        return holes.fill(self._render(name, values, holes)).strip()

    def _run(self, source: str, values: dict, holes: Holes | None) -> str:
        check_source(source)
        template = self._env.from_string(source)  # compiled before markers are handed out
        self._holes.current = holes
        try:
            return render_limited(template, values)
        finally:
            self._holes.current = None

    def _render(self, name: str, values: dict, holes: Holes | None) -> str:
        if self.is_customised(name):
            try:
                text = self._run(self.source(name), values, holes)
                self.errors.pop(name, None)
                return text
            except (TemplateError, OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
                message = f"your prompt template {name}.j2 could not be used ({exc}); " \
                          "the default template was used instead"
                if self.errors.get(name) != message:
                    log.warning(message)
                self.errors[name] = message
        try:
            return self._run(self.source(name, default=True), values, holes)
        except TemplateError as exc:  # a broken default is a bug: say which file
            raise PromptError(f"the default prompt template {name}.j2 failed: {exc}") from exc

    def save_user_template(self, name: str, text: str) -> Path:
        """Store a user's edited template after checking that it parses."""
        if name not in TEMPLATES:
            raise PromptError(f"unknown prompt template {name!r}")
        try:
            check_source(text)
            self._env.parse(text)
        except TemplateError as exc:
            raise PromptError(f"the template does not parse: {exc}") from exc
        assert self.user_dir is not None
        make_private_dir(self.user_dir)
        path = self.user_dir / f"{name}.j2"
        tmp = path.with_suffix(".j2.tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(path)
        return path

    def reset_user_template(self, name: str) -> None:
        if self.user_dir is not None:
            (self.user_dir / f"{name}.j2").unlink(missing_ok=True)
        self.errors.pop(name, None)
