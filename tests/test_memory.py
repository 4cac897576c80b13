"""Memory that must not pile up over many answers (issue 7 endurance).

RSS thresholds would flake, so these check the structure that grew: llama-cpp-python's
sampler chains. Each holds native buffers sized by the vocabulary (~2.4 MB for the starter
model) and is a reference cycle, so one left behind per answer is freed only when Python's
cyclic GC happens to run. benchmarks/bench_memory.py measures the RSS side.
"""

from __future__ import annotations

import gc
import platform
import sys

from app.core.chat.answers import ChatEngine
from app.core.chat.history import ChatStore
from app.core.llm.provider import Done, GenerationSettings, Token


def open_samplers() -> int:
    """LlamaSampler objects whose native chain has not been freed."""
    from llama_cpp._internals import LlamaSampler

    return sum(
        1 for o in gc.get_objects() if type(o) is LlamaSampler and o.sampler is not None
    )


def test_generation_frees_its_sampler_chain(llm):
    settings = GenerationSettings(temperature=0.0, max_tokens=4)
    gc.collect()
    gc.disable()  # what the cyclic GC would free is exactly what must not be left to it
    try:
        for i in range(6):
            events = list(llm.generate(f"Question: what is {i} plus {i}?\nAnswer:", settings))
            assert isinstance(events[-1], Done) and events[-1].finish_reason in ("stop", "length")
            assert open_samplers() == 0
        # Abandoning the stream after the first token frees it too, once the worker is done.
        for event in llm.generate("Question: name a colour.\nAnswer:", settings):
            if isinstance(event, Token):
                break
        llm.count_tokens("sync")  # runs after the abandoned generation on the same worker
        assert open_samplers() == 0
    finally:
        gc.enable()


def test_answers_leave_no_sampler_chains_behind(llm, tmp_path):
    store = ChatStore(tmp_path / "history.sqlite")
    engine = ChatEngine(None, llm, store)
    chat = store.create_chat("memory", scope={"mode": "none"})
    gc.collect()
    gc.disable()
    try:
        for i in range(4):
            events = list(engine.ask(chat.id, f"What is {i} times two?",
                                     overrides={"max_tokens": 4, "temperature": 0.0}))
            assert events[-1].kind == "done", events[-1].text
            assert open_samplers() == 0
        messages = store.messages(chat.id)
        assert [m.role for m in messages] == ["user", "assistant"] * 4
        assert all(m.status == "complete" for m in messages if m.role == "assistant")
    finally:
        gc.enable()
        store.close()


def test_malloc_arena_cap(monkeypatch):
    from app.core.base.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's own setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(2) is True
    else:
        assert limit_malloc_arenas(2) is False
