"""Prompt templates: defaults, a user's edits, and a broken edit falling back safely."""

from __future__ import annotations

import pytest

from app.core.chat.prompts import TEMPLATES, PromptError, PromptSet


@pytest.fixture
def prompts(tmp_path):
    return PromptSet(user_dir=tmp_path / "prompts")


SOURCES = [
    {"n": 1, "title": "Manual", "name": "manual.pdf", "page": 3, "page_end": 4,
     "section": "Setup", "text": "Plug it in."},
    {"n": 2, "title": "", "name": "notes.md", "page": None, "page_end": None, "section": "",
     "text": "Call Ana."},
]


def test_every_default_renders(prompts):
    context = prompts.render("context", sources=SOURCES)
    assert "[1] Manual, page 3-4 (Setup)\nPlug it in." in context
    assert "[2] notes.md\nCall Ana." in context
    values = dict(sources=SOURCES, context=context, question="Q?", system="S", summary="",
                  history=[{"question": "a", "answer": "b"}], title="T", pages="1-2",
                  text="body", parts=["p1", "p2"])
    for name in TEMPLATES:
        assert prompts.render(name, **values).strip(), name


def test_completion_prompt_ends_where_the_model_continues(prompts):
    text = prompts.render("completion", system="S", summary="", sources=SOURCES,
                          context="[1] x", history=[], question="Where?")
    assert text.endswith("Question: Where?\nAnswer:")
    assert text.index("[1] x") < text.index("Question: Where?")


def test_user_template_overrides_and_broken_one_falls_back(prompts):
    prompts.save_user_template("system", "You are a pirate.")
    assert prompts.is_customised("system")
    assert prompts.render("system") == "You are a pirate."
    # A template that parses but fails to render (unknown variable, strict) falls back.
    (prompts.user_dir / "system.j2").write_text("Hello {{ nobody.knows }}")
    text = prompts.render("system")
    assert "Folio" in text  # the default
    assert "system.j2" in prompts.errors["system"] and "default" in prompts.errors["system"]
    prompts.reset_user_template("system")
    assert not prompts.is_customised("system") and "system" not in prompts.errors


def test_saving_a_template_that_does_not_parse_is_refused(prompts):
    with pytest.raises(PromptError, match="does not parse"):
        prompts.save_user_template("question", "{% for x in %}")
    assert not prompts.is_customised("question")
    with pytest.raises(PromptError):
        prompts.save_user_template("no-such-template", "x")


def test_document_text_is_data_not_template(prompts):
    evil = "{{ 7*7 }} {% for x in range(3) %}boom{% endfor %} {{ ''.__class__.__mro__ }}"
    out = prompts.render("context", sources=[{**SOURCES[0], "text": evil}])
    assert evil in out and "49" not in out


def test_sandbox_blocks_unsafe_user_templates(prompts):
    (prompts.user_dir).mkdir(parents=True, exist_ok=True)
    (prompts.user_dir / "system.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    text = prompts.render("system")
    assert "subclasses" not in text and "Folio" in text
    assert "system" in prompts.errors
