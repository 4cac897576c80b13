"""The provider seam: what the chat engine needs from a model, whoever runs it.

`LLMProvider` is the protocol; `LoadSettings`, `GenerationSettings` and `ModelInfo` are what
goes in and what a loaded model says about itself; generation yields typed events, `Token` then
one `Done`. The local llama.cpp runtime (`runtime.LLMRuntime`, run out of process by
`host.ModelHost`) is the first provider; an OpenAI-compatible HTTP provider is the next one,
in its own module beside these, satisfying the same protocol.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from app.core.llm.prompt_parts import Prompt

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]

RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed

# -- settings and results ----------------------------------------------------------------------


def default_threads() -> int:
    """Physical cores, but leave one logical core free for the UI and the embedder.

    ggml's worker threads spin at barriers: with every core busy, one preempted thread stalls
    the others (seen here on 2 cores: 2 threads beside one busy process ran 40x slower than 1).
    """
    try:
        logical = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
    except Exception:  # noqa: BLE001 - psutil is optional here
        physical = logical
    return max(1, min(physical, logical - 1))


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How to load a model. n_ctx 0 means the model's own training context (can be huge)."""

    n_ctx: int = 4096
    n_gpu_layers: str | int = "auto"  # "auto": all layers when the build has a GPU, else 0
    threads: int | None = None  # None: default_threads()
    batch_size: int = 512
    chat_template: str | None = None  # overrides the GGUF's own (a per-model setting)
    allow_oversize: bool = False  # load even when the memory estimate says it will not fit

    def __post_init__(self) -> None:
        if not isinstance(self.n_ctx, int) or self.n_ctx < 0 or 0 < self.n_ctx < 64:
            raise ValueError(f"n_ctx must be 0 (model default) or at least 64, got {self.n_ctx!r}")
        gl = self.n_gpu_layers
        if gl != "auto" and (isinstance(gl, bool) or not isinstance(gl, int) or gl < -1):
            raise ValueError(f'n_gpu_layers must be "auto", -1 (all) or >= 0, got {gl!r}')
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or >= 1, got {self.threads!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What was loaded and how. `device` says where it actually runs, after any fallback."""

    path: Path
    name: str
    n_ctx: int
    n_ctx_train: int
    device: str  # "cpu" | "gpu"
    gpu_layers: int  # layers actually offloaded (0 on CPU)
    threads: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    architecture: str
    load_seconds: float
    notes: tuple[str, ...] = ()
    batch_size: int = 512
    n_params: int = 0
    size_bytes: int = 0
    cpu_features: str = ""  # what the llama.cpp build uses, e.g. "SSE3 ... AVX2 FMA"
    provider: str = ""  # "": the local runtime; else the remote provider's name (remote.py)

    @property
    def is_chat_model(self) -> bool:
        return bool(self.chat_template)


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    """Sampling settings. temperature 0 is greedy; top_k 0 and min_p 0 turn those filters off;
    seed None draws a fresh random seed per generation."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if value > hi or value < lo or (lo_open and value == lo):
                bracket = "(" if lo_open else "["
                raise ValueError(f"{name} must be in {bracket}{lo}, {hi}], got {value!r}")

        number("temperature", 0.0, 5.0)
        number("top_p", 0.0, 1.0, lo_open=True)
        number("min_p", 0.0, 1.0)
        number("repeat_penalty", 0.0, 5.0, lo_open=True)
        for name in ("top_k", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.seed is not None and (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < RANDOM_SEED
        ):
            raise ValueError(f"seed must be None or an integer in [0, 2**32-1), got {self.seed!r}")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        stop = tuple(stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be non-empty strings, got {stop!r}")
        object.__setattr__(self, "stop", stop)

    def merged(self, overrides: Mapping[str, Any] | None) -> GenerationSettings:
        """These settings with per-chat overrides applied (validated; unknown keys are errors)."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown generation settings: {', '.join(unknown)}")
        return replace(self, **dict(overrides))


def defaults_for(info: ModelInfo | None) -> GenerationSettings:
    """Per-model defaults. Base models and tiny models wander and loop at 0.7, so they get a
    cooler temperature and a firmer repeat penalty; chat models keep the usual defaults."""
    base = GenerationSettings()
    if info is None:
        return base
    small = 0 < info.n_params < 1_000_000_000
    if not info.is_chat_model:
        return replace(base, temperature=0.3 if small else 0.5, top_p=0.9, repeat_penalty=1.15)
    if small:
        return replace(base, temperature=0.5)
    return base


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of generated text (complete UTF-8 characters, never part of a stop string)."""

    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """The last event of a generation. ttft is measured from when the worker started the job
    to the first sampled token; tokens_per_second is the decode rate after the prompt."""

    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    ttft_seconds: float | None = None
    tokens_per_second: float = 0.0
    prefill_seconds: float = 0.0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache
    error: str | None = None
    token_ids: tuple[int, ...] = ()


LLMEvent = Token | Done


@runtime_checkable
class LLMProvider(Protocol):
    """What the chat engine needs from a language model. `LLMRuntime` is the local one; an
    OpenAI-compatible HTTP provider will be another."""

    @property
    def info(self) -> ModelInfo | None: ...
    @property
    def is_chat_model(self) -> bool: ...
    def load(self, path: Path | str, settings: LoadSettings | None = None) -> ModelInfo: ...
    def unload(self) -> None: ...
    def generate(
        self,
        prompt: str | Prompt,
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[LLMEvent]: ...
    def format_chat(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> tuple[str | Prompt, list[str]]: ...
    def count_tokens(self, text: str | Prompt) -> int: ...
    def close(self) -> None: ...
