"""The model host: llama.cpp in a child process (real processes, the real starter model).

A crash of the child (SIGKILL, SIGSEGV, SIGABRT, a hang) must end one answer with a clear
message, keep what was streamed, and leave the host ready: the next request starts a new child.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from app.core.llm.provider import Done, GenerationSettings, LoadSettings, Token
from app.core.llm.host import (
    CRASH_ENV,
    ModelHost,
    ModelProcessError,
    crash_hint,
    describe_exit,
    missing_cpu_flags,
)
from app.core.models.files import ModelError

pytestmark = pytest.mark.slow

PROMPT = "Question: What is the capital of France?\nAnswer:"
SEEDED = GenerationSettings(max_tokens=24, temperature=0.0, seed=7)
LONG = GenerationSettings(max_tokens=400, temperature=0.8, seed=None, stop=[])


@pytest.fixture
def host(starter_model, tmp_path):
    h = ModelHost(log_path=tmp_path / "model-host.log")
    h.load(starter_model, LoadSettings(n_ctx=2048))
    yield h
    h.close()


def _drain(events):
    tokens, done = [], None
    for ev in events:
        if isinstance(ev, Token):
            tokens.append(ev.text)
        elif isinstance(ev, Done):
            done = ev
    return "".join(tokens), done


def _answer_until(host, n_tokens, then, settings=LONG):
    """Generate; after n_tokens tokens call then(); return (text, done)."""
    tokens, done = [], None
    for ev in host.generate(PROMPT, settings):
        if isinstance(ev, Token):
            tokens.append(ev.text)
            if len(tokens) == n_tokens:
                then()
        elif isinstance(ev, Done):
            done = ev
    return "".join(tokens), done


def _gone(pid, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_the_child_answers_as_llama_cpp_does_in_process(host, llm):
    """Same model, prompt, seed and settings: the same text in the child as in process."""
    child_text, child_done = _drain(host.generate(PROMPT, SEEDED))
    own_text, own_done = _drain(llm.generate(PROMPT, SEEDED))
    assert child_done.finish_reason == own_done.finish_reason
    assert child_text == own_text and child_text.strip()
    assert child_done.completion_tokens == own_done.completion_tokens
    assert host.pid is not None and host.pid != os.getpid()
    assert host.count_tokens("hello world") == llm.count_tokens("hello world")
    assert host.detokenize(host.tokenize("hello world")) == "hello world"


def test_the_model_info_names_the_builds_cpu_features(host):
    feats = host.info.cpu_features.split()
    assert "AVX2" in feats and "FMA" in feats
    assert not [f for f in feats if f.startswith(("AVX512", "AMX"))], feats


def test_sigkill_mid_answer_keeps_the_text_and_the_next_answer_works(host):
    first_pid = host.pid
    text, done = _answer_until(host, 3, lambda: os.kill(first_pid, signal.SIGKILL))
    assert done.finish_reason == "error"
    assert "The model process stopped: signal 9 (SIGKILL)" in done.error
    assert "out of memory" in done.error  # the hint for a kill
    assert len(text) > 0  # the three tokens streamed before the kill are the caller's
    assert _gone(first_pid)
    again, done2 = _drain(host.generate(PROMPT, SEEDED))
    assert done2.finish_reason in ("stop", "length") and again.strip()
    assert host.pid not in (None, first_pid)
    assert host.restarts == 1 and host.info is not None


def test_a_segfault_in_the_child_is_reported_with_its_signal(starter_model, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "segv@token:3")
    with ModelHost(log_path=tmp_path / "host.log") as host:
        host.load(starter_model, LoadSettings(n_ctx=1024))
        text, done = _drain(host.generate(PROMPT, LONG))
        assert done.finish_reason == "error"
        assert "signal 11 (SIGSEGV)" in done.error
        assert "crash inside llama.cpp" in done.error
        assert text  # three tokens came before the crash
        # The new child inherits the switch too: it crashes again, and says so again.
        _, done2 = _drain(host.generate(PROMPT, LONG))
        assert "SIGSEGV" in done2.error
        monkeypatch.delenv(CRASH_ENV)
        again, done3 = _drain(host.generate(PROMPT, SEEDED))
        assert done3.finish_reason in ("stop", "length") and again.strip()


def test_a_model_that_crashes_llama_cpp_on_load_gives_a_clear_error(starter_model, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "abort@load")
    with ModelHost(log_path=tmp_path / "host.log") as host:
        with pytest.raises(ModelProcessError) as err:
            host.load(starter_model, LoadSettings(n_ctx=1024))
        msg = str(err.value)
        assert starter_model.name in msg and "signal 6 (SIGABRT)" in msg
        assert host.info is None
        with pytest.raises(ModelError, match="No model is loaded"):
            host.generate(PROMPT)
        monkeypatch.delenv(CRASH_ENV)
        assert host.load(starter_model, LoadSettings(n_ctx=1024)).name


def test_a_child_that_never_answers_is_stopped(starter_model, tmp_path, monkeypatch):
    """SIGSTOP at load: no result, no heartbeat. The host kills it after `silence` seconds."""
    monkeypatch.setenv(CRASH_ENV, "stop@load")
    with ModelHost(log_path=tmp_path / "host.log", silence=2.0) as host:
        started = time.monotonic()
        with pytest.raises(ModelProcessError, match="stopped answering"):
            host.load(starter_model, LoadSettings(n_ctx=1024))
        assert time.monotonic() - started < 60
        monkeypatch.delenv(CRASH_ENV)
        host.load(starter_model, LoadSettings(n_ctx=1024))
        text, done = _drain(host.generate(PROMPT, SEEDED))
        assert done.finish_reason in ("stop", "length") and text.strip()


def test_a_child_stuck_in_native_code_is_stopped_when_the_user_cancels(starter_model, tmp_path,
                                                                       monkeypatch):
    """The child stops itself after two tokens (as if stuck in a kernel) and sends nothing;
    Stop must still end the answer, within the grace period, and the next answer works."""
    monkeypatch.setenv(CRASH_ENV, "stop@token:2")
    with ModelHost(log_path=tmp_path / "host.log", silence=600, cancel_grace=1.0) as host:
        host.load(starter_model, LoadSettings(n_ctx=1024))
        cancel = threading.Event()
        timer = threading.Timer(1.0, cancel.set)
        timer.start()
        tokens = []
        done = None
        for ev in host.generate(PROMPT, LONG, cancel):
            if isinstance(ev, Token):
                tokens.append(ev.text)
            else:
                done = ev
        timer.cancel()
        assert done.finish_reason == "cancelled"
        assert "did not stop within 1 s" in done.error
        assert len(tokens) == 2
        monkeypatch.delenv(CRASH_ENV)
        text, done2 = _drain(host.generate(PROMPT, SEEDED))
        assert done2.finish_reason in ("stop", "length") and text.strip()


def test_cancel_mid_prompt_reaches_the_child(host):
    cancel = threading.Event()
    prompt = "Question: " + "the quick brown fox jumps over the lazy dog " * 150 + "\nAnswer:"
    threading.Timer(0.2, cancel.set).start()
    _, done = _drain(host.generate(prompt, LONG, cancel))
    assert done.finish_reason == "cancelled"
    text, done2 = _drain(host.generate(PROMPT, SEEDED))  # the same child goes on
    assert done2.finish_reason in ("stop", "length") and text.strip()


def test_unloading_ends_the_process_so_its_memory_goes_back(starter_model, tmp_path):
    parent = psutil.Process()
    before = parent.memory_info().rss
    host = ModelHost(log_path=tmp_path / "host.log")
    try:
        host.load(starter_model, LoadSettings(n_ctx=2048))
        pid = host.pid
        _drain(host.generate(PROMPT, SEEDED))
        child_rss = psutil.Process(pid).memory_info().rss
        assert child_rss > 150 * 2**20  # the model lives in the child...
        assert parent.memory_info().rss - before < 100 * 2**20  # ...not here
        host.unload()
        assert host.info is None and host.pid is None
        assert _gone(pid)
        with pytest.raises(ModelError, match="No model is loaded"):
            host.generate(PROMPT)
    finally:
        host.close()


def test_switching_models_starts_a_fresh_process(host, starter_model):
    first = host.pid
    host.load(starter_model, LoadSettings(n_ctx=1024))
    assert host.pid != first and _gone(first)
    assert host.info.n_ctx == 1024


def test_exit_descriptions_and_hints():
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(3) == "exit code 3"
    assert "out of memory" in crash_hint(-9, "")
    assert "GGML_ASSERT(x) failed" in crash_hint(-6, "loading\nGGML_ASSERT(x) failed\n")
    assert crash_hint(0, "") == ""


def test_a_cpu_without_avx2_is_told_so_before_anything_crashes(starter_model, monkeypatch):
    old_cpu = "processor : 0\nflags : fpu sse sse2 ssse3 sse4_1 sse4_2 avx popcnt\n"
    assert missing_cpu_flags(old_cpu) == ["avx2", "fma", "f16c", "bmi2"]
    assert missing_cpu_flags("flags : avx avx2 fma f16c bmi2 avx512f\n") == []
    monkeypatch.setattr("app.core.llm.host.missing_cpu_flags", lambda: ["avx2", "fma"])
    with ModelHost(log_path=None) as host:
        with pytest.raises(ModelError, match="lacks AVX2, FMA"):
            host.load(starter_model)
        assert host.pid is None  # no process was started to crash
    assert missing_cpu_flags() == []  # this machine runs the tests: it has them
