"""A Jinja sandbox for templates Folio did not write: chat templates inside downloaded GGUF
files, and prompt templates a user may have copied from anywhere.

Jinja's own sandbox stops a template from reaching Python internals, but not from asking for
an enormous amount of work: `{{ 'x' * 8000000000 }}` is folded into an 8 GB string while the
template compiles, `'x' | center(10**10)` likewise, and two nested `range(100000)` loops run
for hours. Here:

* `*`, `**`, `+` and `%` are intercepted (so the compiler never folds them) and refused when
  the value they would build is larger than `MAX_VALUE_CHARS` items;
* the filters and `str` methods that take a width or a count (center, indent, format, join,
  replace, batch, slice, ljust, zfill, ...) check it before they run, and so does
  `str.format`;
* rendering runs under a trace function that stops it after `RENDER_SECONDS` and refuses a
  template whose variables or output grow past the limits (string doubling in a loop).

A refused template raises `TemplateRefused` (a `jinja2.sandbox.SecurityError`) with the reason.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_VALUE_CHARS = 1_000_000  # the longest string or list a template may build
MAX_OUTPUT_CHARS = 4_000_000  # beyond the text it is given (see render_limited)
MAX_TEMPLATE_CHARS = 256 * 1024  # real chat templates are a few KB; the largest about 30 KB
RENDER_SECONDS = 2.0
MAX_EXPONENT_BITS = 4096  # 2 ** 4096 is a big enough number for any template


class TemplateRefused(SecurityError):
    """The template asked for more than the sandbox allows (size, time)."""


def _size(value: Any) -> int | None:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return None


def _refuse_size(n: float, what: str) -> None:
    if n > MAX_VALUE_CHARS:
        raise TemplateRefused(
            f"{what} would build a value of {int(n):,} items (the limit is {MAX_VALUE_CHARS:,})"
        )


_FORMAT_NUMBER = re.compile(r"\d{5,}")  # a width or precision of 10,000 or more


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str):
        if _FORMAT_NUMBER.search(fmt):
            raise TemplateRefused("a format width or precision of 10,000 or more")
        if "*" in fmt and "%" in fmt:
            raise TemplateRefused("a '*' width in a % format")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(n, int) and not isinstance(n, bool):
                _refuse_size(size * max(n, 0), "'*'")
        if isinstance(left, int) and isinstance(right, int):
            bits = abs(left).bit_length() + abs(right).bit_length()
            if bits > MAX_EXPONENT_BITS:
                raise TemplateRefused("'*' of numbers that large")
    elif operator == "**":
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            base = abs(left)
            if base > 1 and right > 0 and right * math.log2(base) > MAX_EXPONENT_BITS:
                raise TemplateRefused(f"'**' with an exponent of {right}")
            if isinstance(right, int) and right > MAX_EXPONENT_BITS * 4:
                raise TemplateRefused(f"'**' with an exponent of {right}")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None:
            _refuse_size(a + b, "'+'")
    elif operator == "%":
        _check_format(left)


def _width(value: Any, what: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _refuse_size(abs(value), what)


def _lines(value: Any) -> int:
    return value.count("\n") + 1 if isinstance(value, str) else 1


def _bounded_filters(filters: dict[str, Callable]) -> dict[str, Callable]:
    """The filters that take a width or a count, checked before they run."""
    out: dict[str, Callable] = {}
    base = dict(filters)

    def center(value: Any, width: int = 80) -> Any:
        _width(width, "center")
        return base["center"](value, width)

    def indent(value: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
        w = len(width) if isinstance(width, str) else width
        _width(w, "indent")
        if isinstance(w, int):
            _refuse_size(w * _lines(value) + (_size(value) or 0), "indent")
        return base["indent"](value, width, first, blank)

    def wordwrap(env: Any, s: Any, width: int = 79, *args: Any, **kwargs: Any) -> Any:
        _width(width, "wordwrap")
        return base["wordwrap"](env, s, width, *args, **kwargs)

    def join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, (str, list, tuple)) else value
        _refuse_size(len(items), "join")
        if isinstance(d, str):
            total = len(d) * max(0, len(items) - 1)
            total += sum(len(x) for x in items if isinstance(x, str))
            _refuse_size(total, "join")
        return base["join"](eval_ctx, items, d, attribute)

    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
            hits = len(s) + 1 if not old else s.count(old)
            if count is not None and isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _refuse_size(len(s) + hits * len(new), "replace")
        return base["replace"](eval_ctx, s, old, new, count)

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_format(value)
        return base["format"](value, *args, **kwargs)

    def batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
        _width(linecount, "batch")
        return base["batch"](value, linecount, fill_with)

    def slice_(value: Any, slices: int, fill_with: Any = None) -> Any:
        _width(slices, "slice")
        return base["slice"](value, slices, fill_with)

    def truncate(env: Any, s: Any, length: int = 255, *args: Any, **kwargs: Any) -> Any:
        _width(length, "truncate")
        return base["truncate"](env, s, length, *args, **kwargs)

    for name, fn in (("center", center), ("indent", indent), ("wordwrap", wordwrap),
                     ("join", join), ("replace", replace), ("format", format_),
                     ("batch", batch), ("slice", slice_), ("truncate", truncate)):
        original = base.get(name)
        if original is None:
            continue
        # Keep Jinja's pass_eval_context/pass_environment mark: it decides the arguments.
        if hasattr(original, "jinja_pass_arg"):
            fn.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
        out[name] = fn
    return out


_STR_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill"}


def _check_method(obj: Any, args: tuple, kwargs: dict) -> None:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name in _STR_WIDTH_METHODS and args:
            _width(args[0], name)
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            _width(size * (owner.count("\t") + 1) if isinstance(size, int) else 0, name)
        elif name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
            old, new = args[0], args[1]
            hits = len(owner) + 1 if not old else owner.count(old)
            _refuse_size(len(owner) + hits * len(new), "replace")
        elif name == "join" and args:
            items = args[0]
            if isinstance(items, (list, tuple)):
                _refuse_size(len(owner) * len(items)
                             + sum(len(x) for x in items if isinstance(x, str)), "join")


def _grown(value: Any) -> int:
    size = _size(value)
    if size is not None:
        return size
    attrs = getattr(value, "_Namespace__attrs", None)  # jinja2.utils.Namespace
    if isinstance(attrs, dict):
        return max((_size(v) or 0 for v in attrs.values()), default=0)
    return 0


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with bounded arithmetic, widths and counts."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(_bounded_filters(self.filters))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt)
            return wrapped(*args, **kwargs)

        return checked


def check_source(source: str) -> None:
    """Refuse a template source too long to be a template."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRefused(
            f"it is {len(source):,} characters long (the limit is {MAX_TEMPLATE_CHARS:,})"
        )


def render_limited(
    template: Template,
    values: Mapping[str, Any],
    *,
    seconds: float = RENDER_SECONDS,
    max_chars: int | None = None,
) -> str:
    """Render under a time limit and a size limit (`max_chars`, default MAX_OUTPUT_CHARS).

    A trace function runs on the template's own lines (Jinja compiles a template to Python
    code named "<template>"): every few dozen lines it checks the clock and the size of the
    template's variables, and raises TemplateRefused to stop it. Work done inside one call
    of a filter or method is bounded by the checks above instead."""
    limit = MAX_OUTPUT_CHARS if max_chars is None else max_chars
    deadline = time.monotonic() + seconds
    count = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        if not count & 31:
            if time.monotonic() > deadline:
                raise TemplateRefused(f"it took longer than {seconds:g} s to render")
            for value in frame.f_locals.values():
                if _grown(value) > MAX_VALUE_CHARS:
                    raise TemplateRefused(
                        f"it built a value of more than {MAX_VALUE_CHARS:,} items")
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == "<template>":
            return local
        return None

    previous = sys.gettrace()
    out: list[str] = []
    size = 0
    sys.settrace(calls)
    try:
        for piece in template.generate(**values):
            size += len(piece)
            if size > limit:
                raise TemplateRefused(f"its output passed {limit:,} characters")
            out.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(out)


def values_size(values: Iterable[Any]) -> int:
    """Characters of text in message-like values, to size a render's output limit."""
    total = 0
    for v in values:
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, Mapping):
            total += values_size(v.values())
        elif isinstance(v, (list, tuple)):
            total += values_size(v)
    return total
