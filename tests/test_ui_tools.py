"""Tools in the window's chat (pytest-qt, offscreen, the real window): a scripted model at the
runtime seam calls tools; the calls and results are shown and kept in the history; a tool that
needs approval is asked in the chat (Allow, Deny, Stop while waiting); a model whose chat
template has no place for tools is said so near the question box."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from test_tools import HERMES, ScriptedToolModel, _call
from test_ui_progress import window_on  # noqa: F401  (fixture)

from app.core.models.gguf import read_gguf_info
from app.core.tools.base import Capability, Tool
from app.core.tools.calculator import CALCULATOR
from app.core.tools.runner import ToolRunner
from app.ui.chat_panel import NO_TOOLS_NOTICE
from tests.ggufgen import FAMILIES, make_gguf

ANSWER_TIMEOUT = 60_000


@pytest.fixture
def tool_window(window_on, tmp_path):  # noqa: F811
    """The window with a scripted model loaded (pinned, so no chat loads another)."""

    def make(outputs, template=HERMES, tools=None):
        window = window_on(tmp_path / "library")
        folio = window.folio
        llm = ScriptedToolModel(outputs, template=template)
        folio.model_path = Path("scripted.gguf")  # pinned: _prepare_for_chat loads nothing
        folio._model_path = folio.model_path
        folio._runtime = llm
        if tools is not None:
            window.chat.tools = lambda: ToolRunner(tools)
        return window, llm

    return make


def _writer(wrote: list) -> Tool:
    return Tool(name="save_note", description="Save a note", capability=Capability.WRITES,
                parameters={"type": "object", "properties": {"text": {"type": "string"}},
                            "required": ["text"]},
                run=lambda text: wrote.append(text) or "saved")


def _idle(qtbot, chat):
    qtbot.waitUntil(lambda: not chat.busy, timeout=ANSWER_TIMEOUT)


def _shown(chat) -> str:
    return chat.view.toPlainText()


def test_tool_calls_and_results_are_shown_and_kept_in_history(qtbot, tool_window):
    window, llm = tool_window([
        "Let me work it out.\n" + _call("calculator", expression="6 * 7"),
        _call("search_library", query="harbour cranes") + _call("calculator", expression="1/0"),
        "Six times seven is 42.",
    ])
    chat = window.chat
    chat.ask("What is 6 times 7?")
    _idle(qtbot, chat)
    shown = _shown(chat)
    assert 'Tool call: calculator {"expression": "6 * 7"}' in shown
    assert 'Result: {"expression": "6 * 7", "value": 42}' in shown
    assert 'Tool call: search_library {"query": "harbour cranes"}' in shown
    assert 'Result: {"passages": []}' in shown  # the window's (empty) real library
    assert "Error: division by zero" in shown
    assert "Six times seven is 42." in shown
    assert len(llm.prompts) == 3 and '"value": 42' in llm.prompts[1]
    # The notice says this model may use tools.
    assert chat.tools_notice.isVisible() and "may use tools" in chat.tools_notice.text()

    # Kept in history: the stored answer carries them, and reopening the chat shows them.
    chat_id = chat.chat_id
    answer = window.folio.store.messages(chat_id)[-1]
    assert [c["call"]["name"] for c in answer.meta["tool_calls"]] == [
        "calculator", "search_library", "calculator"]
    chat.open_chat(None)
    assert "6 * 7" not in _shown(chat)
    chat.open_chat(chat_id)
    reopened = _shown(chat)
    assert 'Tool call: calculator {"expression": "6 * 7"}' in reopened
    assert "Error: division by zero" in reopened and "Six times seven is 42." in reopened


def _waiting_for_approval(qtbot, tool_window, replies, extra=()):
    """A window whose model asks to save a note (a tool that needs approval), with the chat
    waiting on the user: (window, llm, chat, the notes written)."""
    wrote: list = []
    window, llm = tool_window(replies, tools=[_writer(wrote), *extra])
    chat = window.chat
    chat.ask("Note: buy rope")
    qtbot.waitUntil(lambda: chat.approval_box.isVisible(), timeout=ANSWER_TIMEOUT)
    return window, llm, chat, wrote


def test_a_tool_that_needs_approval_runs_when_allowed(qtbot, tool_window):
    window, llm, chat, wrote = _waiting_for_approval(
        qtbot, tool_window, [_call("save_note", text="buy rope"), "Saved your note."],
        [CALCULATOR])
    # The exact call is shown, in the approval bar and in the conversation.
    assert "save_note" in chat.approval_label.text()
    assert html.escape('{"text": "buy rope"}') in chat.approval_label.text()
    assert 'Tool call: save_note {"text": "buy rope"}' in _shown(chat)
    assert "Waiting for your approval" in _shown(chat)
    assert chat.busy and wrote == []
    qtbot.mouseClick(chat.allow_btn, Qt.MouseButton.LeftButton)
    _idle(qtbot, chat)
    assert wrote == ["buy rope"]
    assert not chat.approval_box.isVisible()
    assert 'Result: "saved"' in _shown(chat) and "Saved your note." in _shown(chat)
    kept = window.folio.store.messages(chat.chat_id)[-1].meta["tool_calls"]
    assert kept == [{"call": {"name": "save_note", "arguments": {"text": "buy rope"}},
                     "result": {"tool": "save_note", "ok": True, "result": "saved"}}]


def test_a_denied_tool_call_is_an_error_and_the_chat_goes_on(qtbot, tool_window):
    window, llm, chat, wrote = _waiting_for_approval(
        qtbot, tool_window, [_call("save_note", text="buy rope"),
                             "I could not save it: you did not allow it."])
    qtbot.mouseClick(chat.deny_btn, Qt.MouseButton.LeftButton)
    _idle(qtbot, chat)
    assert wrote == []
    shown = _shown(chat)
    assert "Error: the user did not allow this call" in shown
    assert "I could not save it: you did not allow it." in shown
    assert "the user did not allow this call" in llm.prompts[1]  # the model heard it
    answer = window.folio.store.messages(chat.chat_id)[-1]
    assert answer.status == "complete" and answer.meta["tool_calls"][0]["result"]["ok"] is False


def test_stop_while_waiting_for_approval_releases_the_answer(qtbot, tool_window):
    window, llm, chat, wrote = _waiting_for_approval(
        qtbot, tool_window, [_call("save_note", text="buy rope"), "A second answer."],
        [CALCULATOR])
    request = chat.approval
    qtbot.mouseClick(chat.stop_btn, Qt.MouseButton.LeftButton)
    _idle(qtbot, chat)
    assert request.decided and request.allowed is False
    assert wrote == [] and not chat.approval_box.isVisible() and chat.approval is None
    # Stopped: the model gets no further turn, the refused call is kept with the stopped answer.
    assert len(llm.prompts) == 1
    assert chat.state_label.text() == "Stopped. The answer so far is kept."
    answer = window.folio.store.messages(chat.chat_id)[-1]
    assert answer.status == "cancelled"
    assert answer.meta["tool_calls"][0]["result"]["error"] == "the user did not allow this call"
    assert "Error: the user did not allow this call" in _shown(chat)
    # The model thread is free again: the next question is answered.
    chat.ask("Anything else?")
    _idle(qtbot, chat)
    assert "A second answer." in _shown(chat)


def test_a_model_without_a_tool_template_is_said_so(qtbot, tool_window, tmp_path):
    # Gemma's template (the starter model's family) as a real GGUF's metadata: no tools.
    gguf = make_gguf(tmp_path / "gemma-like.gguf", arch="gemma3",
                     chat_template=FAMILIES["gemma"]["template"])
    template = read_gguf_info(gguf).chat_template
    window, llm = tool_window(["A plain answer with no tools."], template=template)
    chat = window.chat
    assert not chat.tools_notice.isVisible()  # nothing known before the model is used
    chat.ask("What is 6 times 7?")
    _idle(qtbot, chat)
    assert chat.tools_notice.isVisible() and chat.tools_notice.text() == NO_TOOLS_NOTICE
    assert "Tool call" not in _shown(chat) and not chat.approval_box.isVisible()
    assert all("<tools>" not in p and "calculator" not in p for p in llm.prompts)
    # A model (re)loaded later tells the panel through Folio's model listeners.
    assert chat._listener in window.folio.model_listeners
    chat._listener(dataclasses.replace(llm.info, chat_template=HERMES))
    qtbot.waitUntil(lambda: "may use tools" in chat.tools_notice.text(), timeout=10_000)

