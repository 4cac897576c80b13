"""A model file cannot hang or exhaust Folio: its chat template is screened before anything
compiles it, the sandbox bounds what a template may build and how long it may run, a refused
template leaves the model loadable with Folio's own prompt format (and says so), and a GGUF
header is capped in total.

The models are small real GGUFs (tests/ggufgen.py) that llama.cpp loads; the loads that could
go wrong run in the model host's child process, as in the app.
"""

from __future__ import annotations

import threading
import time

import pytest
from ggufgen import make_chat_model

from app.core.models import gguf as gguf_mod
from app.core.llm.templates import ChatTemplateError, render_chat_template, screen_chat_template
from app.core.llm.provider import GenerationSettings, LoadSettings
from app.core.llm.runtime import LLMRuntime
from app.core.models.files import ModelError
from app.core.models.manager import ModelManager
from app.core.chat.prompts import PromptSet

CHAT = [{"role": "user", "content": "Hello"}]
# Each of these hangs or exhausts a process that compiles or renders it naively.
BOMBS = {
    "folded multiplication": "{{ 'x' * 8000000000 }}",
    "folded filter": "{{ 'x' | center(8000000000) }}",
    "power": "{{ 10 ** 100000000 }}",
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}"),
    "doubling": ("{% set ns = namespace(s='x') %}{% for i in range(64) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"),
    "join amplification": "{{ range(100000) | join('x' * 100000) }}",
    "format width": "{{ '%0999999999d' % 1 }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "ljust": "{{ 'x'.ljust(10 ** 10) }}",
}
# Generous on a loaded 2-core machine; the render limit itself is 2 s.
SECONDS = 30.0


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_the_sandbox_bounds_what_a_template_may_build_and_how_long_it_runs(name):
    started = time.monotonic()
    with pytest.raises(ChatTemplateError, match="refused"):
        render_chat_template(BOMBS[name], CHAT)
    assert time.monotonic() - started < SECONDS
    assert screen_chat_template(BOMBS[name])  # a reason, so the model loads without it


def test_ordinary_templates_still_render_and_pass_the_screen():
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert screen_chat_template(chatml) is None
    long_chat = [{"role": "user", "content": "word " * 200_000}]  # a 1 MB conversation
    assert render_chat_template(chatml, long_chat).count("word") == 200_000
    assert render_chat_template("{{ 'ab' * 3 }}|{{ 2 ** 10 }}|{{ '%05d' % 7 }}", CHAT) == \
        "ababab|1024|00007"
    # Templates that want no system turn are kept: Folio's single-question prompts work.
    picky = ("{% for m in messages %}{% if m.role == 'system' %}"
             "{{ raise_exception('no system role') }}{% endif %}{{ m.content }}{% endfor %}")
    assert screen_chat_template(picky) is None
    assert "refuses every conversation" in screen_chat_template(
        "{{ raise_exception('never') }}")


def test_a_user_prompt_template_bomb_falls_back_to_the_default(tmp_path):
    prompts = PromptSet(user_dir=tmp_path)
    (tmp_path / "system.j2").write_text("{{ 'x' * 8000000000 }}")
    started = time.monotonic()
    text = prompts.render("system")
    assert time.monotonic() - started < SECONDS
    assert text.startswith("You are Folio")
    assert "would build a value of 8,000,000,000" in prompts.errors["system"]


def _load_in_host(path, **settings):
    """Load in the model host's child, as the app does, within a time budget."""
    from app.core.llm.host import ModelHost

    host = ModelHost(log_path=None, start_timeout=SECONDS)
    box: dict = {}

    def run():
        try:
            box["info"] = host.load(path, LoadSettings(n_ctx=1024, **settings))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(SECONDS * 2)
    if worker.is_alive():
        host.close(timeout=1)
        pytest.fail("loading the model did not finish")
    return host, box


@pytest.mark.parametrize("template,why", [
    ("{{ 'x' * 8000000000 }}", "8,000,000,000"),
    ("{% for %}", "does not parse"),
    (BOMBS["nested loops"], "longer than"),
])
def test_a_hostile_chat_template_leaves_the_model_loadable_in_folios_format(
        tmp_path, template, why):
    path = make_chat_model(tmp_path / "hostile.gguf", template=template)
    host, box = _load_in_host(path)
    try:
        assert "error" not in box, box.get("error")
        info = box["info"]
        assert info.chat_template is None and not info.is_chat_model
        note = " ".join(info.notes)
        assert "chat template cannot be used" in note and why in note
        assert "Folio's own prompt format" in note
        # It answers, prompted as a base model.
        prompt, stops = host.format_chat(CHAT)
        assert prompt.endswith("Answer:")
        done = list(host.generate(prompt, GenerationSettings(max_tokens=2, seed=1)))[-1]
        assert done.finish_reason in ("length", "stop"), done
    finally:
        host.close()


def test_a_refused_settings_template_falls_back_to_the_models_own(tmp_path):
    path = make_chat_model(tmp_path / "chat.gguf", family="gemma")
    runtime = LLMRuntime()
    try:
        info = runtime.load(path, LoadSettings(n_ctx=1024, chat_template=BOMBS["power"]))
        assert info.chat_template and "<start_of_turn>" in info.chat_template
        assert any("settings cannot be used" in n and "model's own template" in n
                   for n in info.notes)
    finally:
        runtime.close()


# -- the GGUF header is capped in total -------------------------------------------------------

MiB = 1024 * 1024


def test_a_header_over_the_cap_is_refused_before_llama_cpp_reads_it(tmp_path):
    """tests/test_gguf.py checks the reader; here, loading and listing."""
    n = gguf_mod.MAX_HEADER_BYTES // MiB + 4
    big = make_chat_model(tmp_path / "big-header.gguf",
                          extra_meta={f"folio.test.s{i}": "y" * MiB for i in range(n)})
    runtime = LLMRuntime()
    try:
        with pytest.raises(ModelError, match="header larger than"):
            runtime.load(big, LoadSettings(n_ctx=512))
    finally:
        runtime.close()
    manager = ModelManager(tmp_path, state_path=tmp_path / "models.json")
    entry = next(e for e in manager.list() if e.name == "big-header.gguf")
    assert entry.error and "header larger than" in entry.error
