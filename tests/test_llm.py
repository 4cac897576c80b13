"""The LLM runtime on the real starter model (Gemma 3 270M base, llama.cpp CPU build).

One runtime with the model loaded (n_ctx 1024, 1 thread) is shared by the session; tests
that need another load use their own runtime. Generations are a few tokens each. Tests that
compare exact text pass a seed: seeded runs are reproducible regardless of what the KV cache
held before (see LLMRuntime._prefill). Threads are pinned to 1 so timings hold on a busy
2-core machine (2 spinning ggml threads beside another busy process stall badly).
"""

from __future__ import annotations

import gc
import os
import threading
import time
import uuid
import weakref
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest

from app.core.llm.templates import (
    COMPLETION_STOPS,
    ChatTemplateError,
    chat_stop_strings,
    format_completion_prompt,
    render_chat_template,
)
from app.core.llm.provider import (
    Done,
    GenerationSettings,
    LLMProvider,
    LoadSettings,
    Token,
    defaults_for,
)
from app.core.llm.runtime import LLMRuntime, _StopFilter, _Utf8Stream
from app.core.models.files import ModelError
from app.core.models.starter import ensure_starter_model

GPU_BUILD = bool(llama_cpp.llama_supports_gpu_offload())
COUNTING = "1, 2, 3, 4, 5, 6,"
GREEDY = GenerationSettings(temperature=0.0, seed=0, max_tokens=8)


def _cache_dir() -> Path:
    env = os.environ.get("FOLIO_TEST_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "folio-test-models"


@pytest.fixture(scope="session")
def starter_model() -> Path:
    return ensure_starter_model(_cache_dir())


@pytest.fixture(scope="session")
def runtime(starter_model):
    rt = LLMRuntime()
    rt.load(starter_model, LoadSettings(n_ctx=1024, threads=1))
    yield rt
    rt.close()


def run(rt, prompt, settings=GREEDY, cancel=None):
    """(joined text, token events, Done)."""
    events = list(rt.generate(prompt, settings, cancel))
    assert isinstance(events[-1], Done)
    assert all(isinstance(e, Token) for e in events[:-1])
    tokens = events[:-1]
    return "".join(t.text for t in tokens), tokens, events[-1]


def unique_long_prompt(rt, n_tokens):
    """A prompt of about n_tokens that shares nothing but BOS with earlier prompts."""
    tag = uuid.uuid4().hex[:8]
    words = " ".join(f"item {tag}-{i} is on shelf {i % 17}." for i in range(400))
    ids = rt.tokenize(words)[: n_tokens - 1]
    return rt.detokenize(ids)


# -- loading and model info --------------------------------------------------------------------


def test_model_info(runtime, starter_model):
    info = runtime.info
    assert info.path == starter_model
    assert info.name == "Gemma 3 270m"
    assert info.architecture == "gemma3"
    assert info.n_ctx == 1024
    assert info.n_ctx_train == 32768
    assert info.chat_template is None and not info.is_chat_model
    assert not runtime.is_chat_model
    assert (info.bos_token, info.eos_token) == ("<bos>", "<eos>")
    assert info.threads == 1
    assert 0 < info.load_seconds < 30
    assert 200_000_000 < info.n_params < 400_000_000
    assert info.size_bytes == starter_model.stat().st_size
    assert isinstance(runtime, LLMProvider)


def test_gpu_auto_uses_what_the_build_has(runtime):
    """The shared runtime loaded with n_gpu_layers="auto" (the default)."""
    info = runtime.info
    if GPU_BUILD:
        assert info.device == "gpu" and info.gpu_layers > 0
    else:
        assert info.device == "cpu" and info.gpu_layers == 0
        assert info.notes == ()


@pytest.mark.skipif(GPU_BUILD, reason="checks the CPU-only build")
def test_forced_gpu_layers_on_cpu_build_runs_on_cpu(starter_model):
    with LLMRuntime() as rt:
        info = rt.load(starter_model, LoadSettings(n_ctx=128, n_gpu_layers=99, threads=1))
        assert info.device == "cpu" and info.gpu_layers == 0
        assert any("no GPU support" in n for n in info.notes)
        _, _, done = run(rt, COUNTING, replace(GREEDY, max_tokens=2))
        assert done.finish_reason == "length"


def test_failed_gpu_load_falls_back_to_cpu(starter_model, monkeypatch):
    """No GPU here, so a GPU failure is simulated: the constructor refuses any offload."""
    real = llama_cpp.Llama
    attempts = []

    class GpuFails(real):
        def __init__(self, *args, **kwargs):
            attempts.append(kwargs.get("n_gpu_layers"))
            if kwargs.get("n_gpu_layers", 0) != 0:
                raise ValueError("Failed to load model from file (out of VRAM)")
            super().__init__(*args, **kwargs)

        def close(self):
            if hasattr(self, "_stack"):  # __del__ runs on the refused instance too
                super().close()

    monkeypatch.setattr(llama_cpp, "Llama", GpuFails)
    with LLMRuntime() as rt:
        info = rt.load(starter_model, LoadSettings(n_ctx=128, n_gpu_layers=20, threads=1))
        assert attempts == [20, 0]
        assert info.device == "cpu" and info.gpu_layers == 0
        assert any(
            n.startswith("GPU load failed: ") and n.endswith("; running on CPU") and "VRAM" in n
            for n in info.notes
        )
        _, _, done = run(rt, COUNTING, replace(GREEDY, max_tokens=2))
        assert done.finish_reason == "length"


def test_switching_models_frees_the_old_one_first(starter_model, monkeypatch):
    real = llama_cpp.Llama
    log: list[tuple[str, int]] = []
    refs = []

    class Tracked(real):
        def __init__(self, *args, **kwargs):
            log.append(("init", kwargs["n_ctx"]))
            super().__init__(*args, **kwargs)
            self._test_n_ctx = kwargs["n_ctx"]
            refs.append(weakref.ref(self))

        def close(self):
            if not getattr(self, "_test_closed", False) and hasattr(self, "_test_n_ctx"):
                self._test_closed = True
                log.append(("close", self._test_n_ctx))
            super().close()

    monkeypatch.setattr(llama_cpp, "Llama", Tracked)
    with LLMRuntime() as rt:
        # llama.cpp rounds the context up to a multiple of 256; info reports the real size.
        assert rt.load(starter_model, LoadSettings(n_ctx=512, threads=1)).n_ctx == 512
        _, _, done = run(rt, COUNTING, replace(GREEDY, max_tokens=2))
        assert done.completion_tokens == 2
        info = rt.load(starter_model, LoadSettings(n_ctx=256, threads=1))
        assert info.n_ctx == 256
        assert log == [("init", 512), ("close", 512), ("init", 256)]
        gc.collect()
        assert refs[0]() is None, "the old Llama must be gone, not just closed"
        _, _, done = run(rt, COUNTING, replace(GREEDY, max_tokens=2))
        assert done.finish_reason == "length" and done.completion_tokens == 2

        # A full context ends the answer with "length", even below max_tokens.
        prompt = unique_long_prompt(rt, 245)
        _, _, done = run(rt, prompt, replace(GREEDY, max_tokens=100, repeat_penalty=1.0))
        assert done.finish_reason in ("length", "stop")
        if done.finish_reason == "length":
            assert done.completion_tokens < 100
            assert done.prompt_tokens + done.completion_tokens == 256 + 1  # last one not evaluated

        rt.unload()
        assert rt.info is None and log[-1] == ("close", 256)
        with pytest.raises(ModelError, match="No model is loaded"):
            rt.generate("x")


def test_not_a_gguf_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("just some text")
    fake = tmp_path / "broken.gguf"
    fake.write_bytes(b"GGUF" + os.urandom(2048))
    with LLMRuntime() as rt:
        with pytest.raises(ModelError, match="not a GGUF model file"):
            rt.load(text)
        with pytest.raises(ModelError, match="not found"):
            rt.load(tmp_path / "missing.gguf")
        with pytest.raises(ModelError, match="could not load broken.gguf"):
            rt.load(fake, LoadSettings(n_ctx=128, threads=1))
        assert rt.info is None


def test_load_settings_validation():
    with pytest.raises(ValueError, match="n_gpu_layers"):
        LoadSettings(n_gpu_layers="all")
    with pytest.raises(ValueError, match="n_ctx"):
        LoadSettings(n_ctx=-5)
    with pytest.raises(ValueError, match="threads"):
        LoadSettings(threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        LoadSettings(batch_size=0)
    assert LoadSettings(n_ctx=0, n_gpu_layers=-1).n_gpu_layers == -1


# -- generation --------------------------------------------------------------------------------


def test_streams_tokens_then_done(runtime):
    text, tokens, done = run(runtime, COUNTING)
    assert len(tokens) >= 4
    assert text.startswith(" 7, 8")
    assert done.finish_reason == "length"  # max_tokens
    assert done.completion_tokens == 8 == len(done.token_ids)
    assert done.prompt_tokens == runtime.count_tokens(COUNTING) + 1  # + BOS
    assert done.seconds > 0 and 0 < done.ttft_seconds <= done.seconds
    assert done.tokens_per_second > 0
    assert runtime.detokenize(list(done.token_ids)) == text


def test_max_tokens_gives_length(runtime):
    _, _, done = run(runtime, COUNTING, replace(GREEDY, max_tokens=3))
    assert (done.finish_reason, done.completion_tokens) == ("length", 3)


def test_stop_strings_are_honoured_and_not_emitted(runtime):
    full, _, _ = run(runtime, COUNTING)
    assert full.startswith(" 7, 8, 9")
    # ", 9" spans three tokens (",", " ", "9"): held back until resolved, then dropped.
    text, tokens, done = run(runtime, COUNTING, replace(GREEDY, stop=(", 9", "zzz")))
    assert text == " 7, 8"
    assert done.finish_reason == "stop"
    assert all(", 9" not in t.text for t in tokens)
    # A stop string that never completes holds nothing back for good.
    text, _, done = run(runtime, COUNTING, replace(GREEDY, stop=(", 9, 10, 11, 99",)))
    assert text == full and done.finish_reason == "length"


def test_end_of_generation_token_stops(runtime, monkeypatch):
    """The base model rarely ends on <eos> within a few tokens, so "8" plays the EOG token
    (llama.cpp's own check is what the runtime asks; here it answers for one more token)."""
    eight = runtime.tokenize("8")[-1]
    real_is_eog = llama_cpp.llama_vocab_is_eog
    monkeypatch.setattr(
        llama_cpp, "llama_vocab_is_eog", lambda vocab, tok: tok == eight or real_is_eog(vocab, tok)
    )
    text, _, done = run(runtime, COUNTING)
    assert (text, done.finish_reason) == (" 7, ", "stop")
    assert done.completion_tokens == len(done.token_ids) == 4 and eight not in done.token_ids


def test_completion_stops_end_a_base_model_answer(runtime):
    prompt, stops = runtime.format_chat(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    assert prompt.endswith("Question: What is the capital of France?\nAnswer:")
    settings = defaults_for(runtime.info).merged({"stop": stops, "max_tokens": 40, "seed": 7})
    text, _, done = run(runtime, prompt, settings)
    assert done.finish_reason in ("stop", "length")
    assert not any(s in text for s in stops)


def test_seed_makes_sampling_reproducible(runtime):
    settings = GenerationSettings(temperature=0.7, seed=1234, max_tokens=12)
    first, _, _ = run(runtime, "Once upon a time", settings)
    run(runtime, "Something else entirely", replace(settings, seed=None, max_tokens=3))
    second, _, _ = run(runtime, "Once upon a time", settings)
    third, _, _ = run(runtime, "Once upon a time", settings)
    assert first == second == third
    assert len(first) > 10


def test_multibyte_characters_split_across_tokens(runtime):
    """The hieroglyph is four byte-fallback tokens; the stream must never show half of it."""
    glyph = "\U00013000"
    assert len(runtime.tokenize(glyph)) == 4
    text, tokens, done = run(runtime, glyph * 8, replace(GREEDY, max_tokens=16, repeat_penalty=1.0))
    assert "\ufffd" not in text
    assert text == runtime.detokenize(list(done.token_ids))
    assert glyph in text and done.completion_tokens > len(text)  # several tokens per char
    for t in tokens:
        t.text.encode("utf-8")  # whole characters only: no lone surrogates or partials


def test_japanese_and_emoji_round_trip(runtime):
    prompt = "日本の首都は東京です。🍣と🍜が好きです。"
    ids = runtime.tokenize(prompt)
    assert runtime.detokenize(ids) == prompt
    assert runtime.count_tokens(prompt) == len(ids)
    assert runtime.tokenize(prompt, add_bos=True)[0] == 2
    text, _, done = run(runtime, prompt, replace(GREEDY, max_tokens=10))
    assert "\ufffd" not in text
    assert text == runtime.detokenize(list(done.token_ids))


def test_cancel_during_generation_is_fast_and_the_model_stays_usable(runtime):
    cancel = threading.Event()
    settings = replace(GREEDY, max_tokens=400, repeat_penalty=1.0)
    seen = 0
    set_at = done = None
    for event in runtime.generate("1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", settings, cancel):
        if isinstance(event, Done):
            done = event
            arrived = time.perf_counter()
            break
        seen += 1
        if seen == 5:
            set_at = time.perf_counter()
            cancel.set()
    assert set_at is not None, "generation ended before it could be cancelled"
    assert done.finish_reason == "cancelled"
    latency = arrived - set_at
    assert latency < 0.2, f"cancel took {latency * 1000:.0f} ms"
    assert done.completion_tokens < 400

    _, _, after = run(runtime, COUNTING, replace(GREEDY, max_tokens=3))
    assert (after.finish_reason, after.completion_tokens) == ("length", 3)


def test_cancel_during_prompt_processing(runtime):
    prompt = unique_long_prompt(runtime, 900)
    cancel = threading.Event()
    stamps = {}

    def fire():
        stamps["set"] = time.perf_counter()
        cancel.set()

    timer = threading.Timer(0.15, fire)
    events = []
    timer.start()
    try:
        for event in runtime.generate(prompt, replace(GREEDY, seed=None, max_tokens=5), cancel):
            events.append(event)
        stamps["done"] = time.perf_counter()
    finally:
        timer.cancel()
    done = events[-1]
    assert events == [done], "no tokens: it was still reading the prompt"
    assert done.finish_reason == "cancelled" and done.completion_tokens == 0
    assert 850 <= done.prompt_tokens <= 901
    latency = stamps["done"] - stamps["set"]
    assert latency < 0.2, f"cancel during prefill took {latency * 1000:.0f} ms"

    # Only whole batches that finished stay cached (here the first 512-token batch was cut
    # short, so none did); the prompt is read again and generation works.
    _, _, again = run(runtime, prompt, replace(GREEDY, seed=None, max_tokens=2))
    assert again.finish_reason == "length" and again.completion_tokens == 2
    assert again.cached_tokens < again.prompt_tokens - 1


def test_prompt_longer_than_context_is_an_error(runtime):
    prompt = " ".join(["word"] * 1100)
    _, _, done = run(runtime, prompt)
    assert done.finish_reason == "error"
    assert "context holds 1024" in done.error and done.prompt_tokens > 1024
    _, _, ok = run(runtime, COUNTING, replace(GREEDY, max_tokens=1))
    assert ok.completion_tokens == 1


def test_abandoning_the_stream_stops_the_worker(runtime):
    stream = runtime.generate(COUNTING, replace(GREEDY, max_tokens=400, repeat_penalty=1.0))
    next(stream)
    stream.close()
    started = time.perf_counter()
    assert runtime.count_tokens("hello") == 1  # queued behind the abandoned generation
    assert time.perf_counter() - started < 0.5


def test_calls_from_many_threads_are_serialised(runtime):
    results, errors = [], []

    def worker(i):
        try:
            _, _, done = run(runtime, f"{i}, {i + 1},", replace(GREEDY, max_tokens=2))
            results.append((done.finish_reason, runtime.count_tokens("a b c")))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [("length", 3)] * 4


def test_close_is_idempotent_and_final(starter_model):
    rt = LLMRuntime()
    rt.load(starter_model, LoadSettings(n_ctx=128, threads=1))
    stream = rt.generate(COUNTING, replace(GREEDY, max_tokens=100, repeat_penalty=1.0))
    next(stream)
    rt.close()
    rest = list(stream)
    assert isinstance(rest[-1], Done) and rest[-1].finish_reason == "cancelled"
    rt.close()
    assert not rt._thread.is_alive()
    with pytest.raises(ModelError, match="closed"):
        rt.count_tokens("x")
    with pytest.raises(ModelError, match="closed"):
        rt.generate("x")


# -- settings ----------------------------------------------------------------------------------


def test_generation_settings_validate_and_merge():
    base = GenerationSettings()
    merged = base.merged({"temperature": 0.2, "stop": ["\n\n"], "seed": 3})
    assert (merged.temperature, merged.stop, merged.seed) == (0.2, ("\n\n",), 3)
    assert base.merged({}) is base and base.temperature == 0.7
    for bad in (
        {"temperature": -0.1},
        {"top_p": 0},
        {"top_k": -1},
        {"min_p": 1.5},
        {"repeat_penalty": 0},
        {"max_tokens": 0},
        {"seed": -1},
        {"stop": [""]},
        {"temperature": "hot"},
    ):
        with pytest.raises(ValueError):
            base.merged(bad)
    with pytest.raises(ValueError, match="unknown generation settings: colour"):
        base.merged({"colour": "blue"})


def test_defaults_for_models(runtime):
    base_model = defaults_for(runtime.info)
    assert base_model.temperature < 0.7 and base_model.repeat_penalty > 1.1
    chat_model = defaults_for(replace(runtime.info, chat_template="{{ messages }}"))
    assert base_model.temperature < chat_model.temperature <= 0.7
    assert defaults_for(None) == GenerationSettings()


# -- prompts -----------------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m.role == 'tool' %}{{ raise_exception('tool messages are not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
    "{{ m.content | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]


def test_chat_template_rendering(runtime):
    prompt, stops = runtime.format_chat(CHAT, template=CHATML)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<|im_end|>" in stops and "<|im_start|>" in stops and "<eos>" in stops
    closed, _ = runtime.format_chat(CHAT, add_generation_prompt=False, template=CHATML)
    assert closed.endswith("2+2?<|im_end|>\n")


def test_gemma_style_template_gets_one_bos(runtime):
    prompt, stops = runtime.format_chat(CHAT[1:], template=GEMMA_LIKE)
    assert prompt.startswith("<bos><start_of_turn>user\nHi<end_of_turn>\n")
    assert prompt.endswith("<start_of_turn>model\n")
    assert {"<end_of_turn>", "<start_of_turn>"} <= set(stops)
    ids = runtime.tokenize(prompt, special=True)
    assert ids[0] == 2 and ids[1] != 2 and 106 in ids  # <bos>, <end_of_turn> as tokens
    _, _, done = run(runtime, prompt, replace(GREEDY, max_tokens=2, stop=tuple(stops)))
    assert done.prompt_tokens == len(ids)  # BOS not doubled
    with pytest.raises(ChatTemplateError, match="tool messages are not supported"):
        render_chat_template(GEMMA_LIKE, [{"role": "tool", "content": "x"}])


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ raise_exception.__globals__ }}",
        "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}",
        "{{ messages[0].update({'role': 'x'}) }}",
    ],
)
def test_sandbox_refuses_unsafe_templates(template):
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, CHAT)


def test_template_helpers():
    rendered = render_chat_template(
        "{{ messages | tojson }}|{{ strftime_now('%Y') }}", [{"role": "user", "content": "<b>é"}]
    )
    assert rendered.startswith('[{"role": "user", "content": "<b>é"}]|2')
    with pytest.raises(ChatTemplateError, match="does not parse"):
        render_chat_template("{% for %}", CHAT)
    with pytest.raises(ValueError, match="content"):
        render_chat_template(CHATML, [{"role": "user"}])
    assert chat_stop_strings("<|start_header_id|>x<|eot_id|>", "<|end_of_text|>") == [
        "<|eot_id|>",
        "<|start_header_id|>",
        "<|end_of_text|>",
    ]


def test_completion_format_for_base_models(runtime):
    prompt, stops = runtime.format_chat(CHAT)
    assert prompt == (
        "Be brief.\n\n"
        "Question: Hi\nAnswer: Hello!\n\n"
        "Question: 2+2?\nAnswer:"
    )
    assert stops == list(COMPLETION_STOPS)
    assert "\nQuestion:" in stops and "\nUser:" in stops
    no_prompt, _ = format_completion_prompt(CHAT, add_generation_prompt=False)
    assert no_prompt.endswith("Question: 2+2?")
    assert format_completion_prompt([{"role": "user", "content": "Hi"}])[0] == (
        "Question: Hi\nAnswer:"
    )


# -- stream helpers (no model) -----------------------------------------------------------------


def test_stop_filter_any_split():
    text = "The answer is 4.\nQuestion: and 5?"
    stops = ["\nQuestion:", "\nUser:"]
    expected = "The answer is 4."
    for a in range(len(text) + 1):
        for b in range(a, len(text) + 1):
            f = _StopFilter(stops)
            out, hit = [], False
            for piece in (text[:a], text[a:b], text[b:]):
                emitted, hit = f.feed(piece)
                out.append(emitted)
                if hit:
                    break
            assert hit and "".join(out) == expected, (a, b)
    f = _StopFilter(["\nQuestion:"])
    assert f.feed("one\nQue") == ("one", False)
    assert f.feed("ry") == ("\nQuery", False)
    assert f.feed("\n") == ("", False) and f.flush() == "\n"
    assert _StopFilter([]).feed("abc") == ("abc", False)
    # The earliest stop wins when two complete in the same piece.
    assert _StopFilter(["BB", "AB"]).feed("xAB B") == ("x", True)


def test_utf8_stream_holds_partial_characters():
    text = "a😀日本𓀀é"
    data = text.encode()
    stream = _Utf8Stream()
    pieces = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) == text
    assert all(p == "" or p in text for p in pieces)
    assert not stream.pending()
    assert stream.feed(b"\xf0\x9f") == "" and stream.pending()



def test_a_shared_prompt_prefix_is_reused_from_the_cache(runtime):
    prompt = unique_long_prompt(runtime, 300)
    _, _, first = run(runtime, prompt, replace(GREEDY, seed=None, max_tokens=2))
    _, _, second = run(runtime, prompt + " And one more line.",
                       replace(GREEDY, seed=None, max_tokens=2))
    # Whether the model stops or runs to the limit on these random words does not matter
    # here (CI once saw it end on its first token); what matters is that the second
    # prompt evaluated only what it added to the first.
    assert first.error is None and second.error is None
    assert second.prompt_tokens > first.prompt_tokens > 250
    assert second.cached_tokens >= first.prompt_tokens - 1
    assert second.prompt_tokens - second.cached_tokens < 20
    assert second.prefill_seconds < first.prefill_seconds
