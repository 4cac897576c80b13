"""Prompt templates: Jinja2 files in resources/prompts/, which a user may override.

A user's copy lives in `<data dir>/prompts/NAME.j2`. If it fails to load or render, the error
is logged and kept (the window shows it) and the default template is used instead, so a typo
in a template never stops answers.

Templates are rendered in Jinja's immutable sandbox, and document text only ever enters as
variable values, which Jinja never evaluates: a PDF containing `{{ ... }}` is just text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.base.paths import data_dir, resource_path

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
        self._env = ImmutableSandboxedEnvironment(
            autoescape=False, keep_trailing_newline=False, undefined=StrictUndefined,
            trim_blocks=False, lstrip_blocks=False,
        )

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
        if self.is_customised(name):
            try:
                text = self._env.from_string(self.source(name)).render(**values)
                self.errors.pop(name, None)
                return text.strip()
            except (TemplateError, OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
                message = f"your prompt template {name}.j2 could not be used ({exc}); " \
                          "the default template was used instead"
                if self.errors.get(name) != message:
                    log.warning(message)
                self.errors[name] = message
        try:
            return self._env.from_string(self.source(name, default=True)).render(**values).strip()
        except TemplateError as exc:  # a broken default is a bug: say which file
            raise PromptError(f"the default prompt template {name}.j2 failed: {exc}") from exc

    def save_user_template(self, name: str, text: str) -> Path:
        """Store a user's edited template after checking that it parses."""
        if name not in TEMPLATES:
            raise PromptError(f"unknown prompt template {name!r}")
        try:
            self._env.parse(text)
        except TemplateError as exc:
            raise PromptError(f"the template does not parse: {exc}") from exc
        assert self.user_dir is not None
        self.user_dir.mkdir(parents=True, exist_ok=True)
        path = self.user_dir / f"{name}.j2"
        tmp = path.with_suffix(".j2.tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(path)
        return path

    def reset_user_template(self, name: str) -> None:
        if self.user_dir is not None:
            (self.user_dir / f"{name}.j2").unlink(missing_ok=True)
        self.errors.pop(name, None)
