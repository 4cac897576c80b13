"""The tools layer (app/core/tools/) and the chat's tool loop (app/core/chat/tool_chat.py):
safe arithmetic, schema validation, every failure as an error result, the approval policy,
a scripted model calling tools at the runtime seam, and a real GGUF tool template rendered."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from app.core.chat.answers import ChatEngine
from app.core.chat.history import ChatStore
from app.core.chat.tool_chat import NO_TOOLS, ask_with_tools, run_with_tools
from app.core.index.library import Library
from app.core.llm.provider import Done, ModelInfo, Token
from app.core.llm.templates import format_chat_for
from app.core.models.gguf import read_gguf_info
from app.core.tools.base import Capability, Tool, ToolCall, ToolError
from app.core.tools.calculator import CALCULATOR, calculate
from app.core.tools.calls import parse_tool_calls, supports_tools
from app.core.tools.library import search_tool
from app.core.tools.runner import ToolRunner, needs_approval
from tests.ggufgen import CHATML, FAMILIES, make_gguf
from tests.test_library import add_doc

# A Hermes/Qwen2.5-style template: tools declared in the system turn, calls written as
# <tool_call>{...}</tool_call>, results given back in <tool_response> turns.
HERMES = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n"
    "{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role == 'system' %}"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# -- the calculator -------------------------------------------------------------------------


@pytest.mark.parametrize("expr, value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("7 // 2", 3), ("7 % 4", 3),
    ("-2 ** 2", -4), ("2 ** 10", 1024), ("2 ** -1", 0.5), ("1.5e3 + 0.5", 1500.5),
    ("  +3 - -3 ", 6),
])
def test_calculator_evaluates_arithmetic(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr, why", [
    ("x + 1", "names are not allowed"),
    ("__import__('os').system('true')", "function calls are not allowed"),
    ("abs(-1)", "function calls are not allowed"),
    ("(1).real", "attributes are not allowed"),
    ("9 ** 9 ** 9", "exponents above"),
    ("99 ** 999", "the power is too large"),
    ("2 ** 5000", "exponents above"),
    ("1 / 0", "division by zero"),
    ("5 // 0", "division by zero"),
    ("5 % 0", "division by zero"),
    ("10.0 ** 400", "too large"),
    ("1e308 * 10", "not a finite number"),
    ("(-8) ** 0.5", "not a real number"),
    ("[1, 2]", "List is not allowed"),
    ("'a' * 3", "only numbers"),
    ("True + 1", "only numbers"),
    ("1 +", "does not parse"),
    ("", "empty"),
    ("1+" * 400 + "1", "longer than"),
    ("-" * 100 + "1", "nested too deeply"),
    ("1 << 100000", "BinOp is not allowed"),
])
def test_calculator_refuses_what_is_not_bounded_arithmetic(expr, why):
    with pytest.raises(ToolError, match=why):
        calculate(expr)


def test_large_products_are_refused_before_they_grow():
    with pytest.raises(ToolError, match="too large"):
        calculate("2 ** 1000 * 2 ** 1000 * 2 ** 1000 * 2 ** 1000 * 2 ** 1000")


# -- the runner: validation and errors as results -----------------------------------------


def _tool(name="t", run=lambda **kw: kw, capability=Capability.COMPUTES, limit=5.0, schema=None):
    return Tool(name=name, description="test tool", capability=capability, run=run,
                time_limit=limit, parameters=schema or {
                    "type": "object", "properties": {"n": {"type": "integer", "maximum": 10}},
                    "required": ["n"], "additionalProperties": False})


def test_calculator_through_the_runner():
    runner = ToolRunner([CALCULATOR])
    ok = runner.run(ToolCall("calculator", {"expression": "6 * 7"}))
    assert ok == {"tool": "calculator", "ok": True,
                  "result": {"expression": "6 * 7", "value": 42}}
    refused = runner.run(ToolCall("calculator", {"expression": "open('x')"}))
    assert refused["ok"] is False and "function calls are not allowed" in refused["error"]


@pytest.mark.parametrize("arguments, why", [
    ({}, "'n' is a required property"),
    ({"n": "3"}, "at n: '3' is not of type 'integer'"),
    ({"n": 11}, "at n: 11 is greater than the maximum of 10"),
    ({"n": 1, "extra": 2}, "Additional properties are not allowed"),
    ([1], "must be a JSON object"),
    ("n=1", "must be a JSON object"),
])
def test_arguments_are_validated_against_the_schema(arguments, why):
    ran = []
    runner = ToolRunner([_tool(run=lambda n: ran.append(n))])
    result = runner.run(ToolCall("t", arguments))
    assert result["ok"] is False and why in result["error"]
    assert ran == []  # never run on bad arguments


def test_a_tool_with_a_broken_schema_is_not_added():
    import jsonschema

    with pytest.raises(jsonschema.SchemaError):
        ToolRunner([_tool(schema={"type": "no-such-type"})])


def test_unknown_tool_is_an_error_result():
    result = ToolRunner([CALCULATOR]).run(ToolCall("rm_rf", {"path": "/"}))
    assert result == {"tool": "rm_rf", "ok": False,
                      "error": "there is no tool named 'rm_rf' (tools: calculator)"}


def test_malformed_call_is_an_error_result():
    text = 'Let me compute.\n<tool_call>{"name": "calculator", "arguments": {oops}</tool_call>'
    before, calls = parse_tool_calls(text)
    assert before == "Let me compute."
    result = ToolRunner([CALCULATOR]).run(calls[0])
    assert result["ok"] is False and "the tool call is malformed: not JSON" in result["error"]
    _, calls = parse_tool_calls('<tool_call>["calculator"]</tool_call>')
    assert "needs a string 'name'" in ToolRunner([CALCULATOR]).run(calls[0])["error"]


def test_tool_calls_are_parsed_with_string_arguments_too():
    text = ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n'
            '</tool_call>\n<tool_call>{"name": "calculator", '
            '"arguments": "{\\"expression\\": \\"2+2\\"}"}</tool_call>')
    before, calls = parse_tool_calls(text)
    assert before == ""
    assert [c.arguments for c in calls] == [{"expression": "1+1"}, {"expression": "2+2"}]
    assert parse_tool_calls("no calls here") == ("no calls here", [])


def test_a_raising_tool_is_an_error_result_without_its_message():
    def leaky(n):
        raise OSError(f"cannot read /home/someone/secret-{n}.txt")

    result = ToolRunner([_tool(run=leaky)]).run(ToolCall("t", {"n": 1}))
    assert result == {"tool": "t", "ok": False, "error": "the tool failed (OSError)"}
    assert "secret" not in json.dumps(result)


def test_a_tool_error_message_reaches_the_model():
    def refuses(n):
        raise ToolError("n must be even")

    result = ToolRunner([_tool(run=refuses)]).run(ToolCall("t", {"n": 1}))
    assert result == {"tool": "t", "ok": False, "error": "n must be even"}


def test_a_slow_tool_times_out_and_the_runner_goes_on():
    release = threading.Event()

    def slow(n):
        release.wait(30)
        return n

    runner = ToolRunner([_tool(run=slow, limit=0.2), CALCULATOR])
    try:
        result = runner.run(ToolCall("t", {"n": 1}))
        assert result == {"tool": "t", "ok": False,
                          "error": "the tool took longer than its 0.2 s limit"}
        assert runner.run(ToolCall("calculator", {"expression": "1+1"}))["result"]["value"] == 2
    finally:
        release.set()


def test_an_abandoned_tool_thread_does_not_block_the_next_calls():
    """A timed-out tool's thread cannot be stopped, only abandoned: the error comes at the
    limit (not when the tool ends), and the same tool can be called again while the first
    thread still runs."""
    release = threading.Event()
    started: list[int] = []

    def stuck(n):
        started.append(n)
        if n == 1:
            release.wait(60)  # never released before the assertions below
        return n

    runner = ToolRunner([_tool(run=stuck, limit=0.5)])
    try:
        first = runner.run(ToolCall("t", {"n": 1}))
        assert first["ok"] is False and "0.5 s limit" in first["error"]
        assert not release.is_set()  # the error came while the first call still runs
        assert runner.run(ToolCall("t", {"n": 2})) == {"tool": "t", "ok": True, "result": 2}
        assert started == [1, 2]
    finally:
        release.set()


def test_built_in_tools_bound_their_own_work(library):
    """The runner only abandons a runaway thread, so the built-ins refuse work that could
    run long: the calculator bounds sizes and exponents, the search bounds k and the query."""
    big = ToolRunner([CALCULATOR]).run(ToolCall("calculator", {"expression": "9**9**9**9"}))
    assert big["ok"] is False and "exponents above" in big["error"]
    search = ToolRunner([search_tool(library)])
    many = search.run(ToolCall("search_library", {"query": "roses", "k": 10_000}))
    assert many["ok"] is False and "maximum" in many["error"]
    long_query = search.run(ToolCall("search_library", {"query": "rose " * 1000}))
    assert long_query["ok"] is False and "too long" in long_query["error"]


def test_a_result_that_is_not_json_is_an_error():
    result = ToolRunner([_tool(run=lambda n: object())]).run(ToolCall("t", {"n": 1}))
    assert result == {"tool": "t", "ok": False,
                      "error": "the tool returned something that is not JSON"}


# -- the policy -----------------------------------------------------------------------------


def test_only_library_reads_and_pure_tools_run_without_asking():
    assert not needs_approval(_tool(capability=Capability.READS_LIBRARY))
    assert not needs_approval(CALCULATOR)
    for cap in (Capability.READS_CHOSEN_FILES, Capability.NETWORK, Capability.WRITES):
        assert needs_approval(_tool(capability=cap))


@pytest.mark.parametrize("cap", [Capability.READS_CHOSEN_FILES, Capability.NETWORK,
                                 Capability.WRITES])
def test_a_tool_that_needs_approval_asks_with_the_exact_call(cap):
    ran, asked = [], []
    runner = ToolRunner([_tool(run=lambda n: ran.append(n) or n, capability=cap)])
    call = ToolCall("t", {"n": 3})
    # No one to ask: refused, not run.
    assert runner.run(call)["error"] == "the user did not allow this call"
    # The user says no.
    assert runner.run(call, lambda tool, c: asked.append(c.as_dict()) or False)["ok"] is False
    # The user's prompt fails: a refusal too.
    assert runner.run(call, lambda tool, c: 1 / 0)["ok"] is False
    assert ran == []
    assert asked == [{"name": "t", "arguments": {"n": 3}}]
    assert runner.run(call, lambda tool, c: True) == {"tool": "t", "ok": True, "result": 3}
    assert ran == [3]


def test_a_library_tool_runs_without_asking():
    runner = ToolRunner([_tool(run=lambda n: n, capability=Capability.READS_LIBRARY)])
    asked = []
    assert runner.run(ToolCall("t", {"n": 2}), lambda *a: asked.append(a) or False)["ok"]
    assert asked == []


# -- the library search tool on a real LanceDB library ------------------------------------


@pytest.fixture
def library(library_dir, hash_embedder, tmp_path):
    lib = Library.open(library_dir, hash_embedder)
    add_doc(lib, tmp_path / "garden.txt",
            ["tomatoes need pruning of side shoots", "roses like sun"], collections=["home"])
    return lib


def test_library_search_returns_passages_with_path_page_section(library, tmp_path):
    runner = ToolRunner([search_tool(library)])
    result = runner.run(ToolCall("search_library", {"query": "pruning tomatoes", "k": 2}))
    assert result["ok"] is True
    top = result["result"]["passages"][0]
    assert top["text"] == "tomatoes need pruning of side shoots"
    assert top["path"] == str(tmp_path / "garden.txt")
    assert top["page"] == 1 and top["section"]
    scoped = runner.run(ToolCall("search_library", {"query": "roses", "collection": "home"}))
    assert scoped["ok"] and scoped["result"]["passages"]
    missing = runner.run(ToolCall("search_library", {"query": "roses", "collection": "work"}))
    assert missing == {"tool": "search_library", "ok": False,
                       "error": "there is no collection 'work'"}
    too_many = runner.run(ToolCall("search_library", {"query": "roses", "k": 500}))
    assert too_many["ok"] is False and "maximum" in too_many["error"]


def test_library_search_without_a_library_is_an_error_result():
    result = ToolRunner([search_tool(lambda: None)]).run(
        ToolCall("search_library", {"query": "x"}))
    assert result == {"tool": "search_library", "ok": False, "error": "no library is open"}


# -- a real GGUF tool template --------------------------------------------------------------


def test_a_gguf_tool_template_renders_the_declarations(tmp_path, library):
    info = read_gguf_info(make_gguf(tmp_path / "qwenish.gguf", chat_template=HERMES))
    assert supports_tools(info.chat_template)
    runner = ToolRunner([search_tool(library), CALCULATOR])
    messages = [{"role": "system", "content": "You answer from documents."},
                {"role": "user", "content": "What is 6 * 7?"},
                {"role": "assistant", "content": '<tool_call>\n{"name": "calculator", '
                 '"arguments": {"expression": "6 * 7"}}\n</tool_call>'},
                {"role": "tool", "content": json.dumps({"ok": True, "result": 42})}]
    prompt, stops = format_chat_for(None, messages, template=info.chat_template,
                                    tools=runner.declarations())
    assert "<tools>" in prompt and "</tools>" in prompt
    for decl in runner.declarations():
        assert json.dumps(decl, ensure_ascii=False) in prompt
    assert '"name": "search_library"' in prompt and '"name": "calculator"' in prompt
    assert "<tool_response>\n{\"ok\": true, \"result\": 42}\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_end|>" in stops
    # Without tools the same template renders no declarations.
    plain, _ = format_chat_for(None, messages[:2], template=info.chat_template)
    assert "<tools>" not in plain and "You answer from documents." in plain


def test_templates_without_tools_are_said_so():
    assert not supports_tools(None) and not supports_tools("")
    assert not supports_tools(CHATML)
    assert supports_tools(HERMES)


# -- the chat loop with a scripted model at the runtime seam ------------------------------


class ScriptedToolModel:
    """The LLMProvider protocol with canned outputs; records each prompt it is given."""

    def __init__(self, outputs, template=HERMES):
        self.outputs = list(outputs)
        self.prompts: list[str] = []
        self._info = ModelInfo(path=Path("scripted.gguf"), name="scripted", n_ctx=4096,
                               n_ctx_train=4096, device="cpu", gpu_layers=0, threads=1,
                               chat_template=template, bos_token="", eos_token="",
                               architecture="test", load_seconds=0.0)

    @property
    def info(self):
        return self._info

    def count_tokens(self, text):
        return len(str(text)) // 4 + 1

    def format_chat(self, messages, add_generation_prompt=True):
        return format_chat_for(self._info, messages, add_generation_prompt)

    def generate(self, prompt, settings=None, cancel=None):
        self.prompts.append(str(prompt))
        text = self.outputs.pop(0) if self.outputs else "out of script"
        for i in range(0, len(text), 7):
            yield Token(text[i:i + 7])
        yield Done("stop", prompt_tokens=1, completion_tokens=1, seconds=0.01)

    def close(self):
        pass


def _call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def test_chat_runs_calls_gives_results_back_and_keeps_them(library, tmp_path):
    llm = ScriptedToolModel([
        "I will look.\n" + _call("search_library", query="pruning tomatoes", k=1),
        _call("calculator", expression="6 * 7") + _call("nope") + _call("calculator"),
        "Prune side shoots; and 6 * 7 = 42.",
    ])
    store = ChatStore(tmp_path / "chats.sqlite")
    engine = ChatEngine(library, llm, store)
    assert engine.supports_tools
    chat = store.create_chat()
    runner = ToolRunner([search_tool(library), CALCULATOR])
    events = list(ask_with_tools(engine, chat.id, "How to prune, and 6*7?", runner))
    kinds = [e.kind for e in events]
    assert kinds == ["token", "tool_call", "tool_result", "tool_call", "tool_result",
                     "tool_call", "tool_result", "tool_call", "tool_result", "token", "done"]
    results = [e.stats["result"] for e in events if e.kind == "tool_result"]
    assert results[0]["ok"] and results[0]["result"]["passages"][0]["text"].startswith("tomatoes")
    assert results[1] == {"tool": "calculator", "ok": True,
                          "result": {"expression": "6 * 7", "value": 42}}
    assert results[2]["ok"] is False and "no tool named 'nope'" in results[2]["error"]
    assert results[3]["ok"] is False and "'expression' is a required property" in results[3]["error"]
    assert events[-1].text == "Prune side shoots; and 6 * 7 = 42."
    # The model was offered the tools and saw each result.
    assert all('"name": "calculator"' in p for p in llm.prompts)
    assert '"value": 42' in llm.prompts[2] and "no tool named 'nope'" in llm.prompts[2]
    assert "tomatoes need pruning" in llm.prompts[1]
    # The history keeps the calls and results with the answer.
    answer = store.messages(chat.id)[-1]
    assert answer.role == "assistant" and answer.content == events[-1].text
    kept = answer.meta["tool_calls"]
    assert [k["call"].get("name") for k in kept] == ["search_library", "calculator", "nope",
                                                     "calculator"]
    assert kept[1]["result"]["result"]["value"] == 42


def test_a_tool_that_needs_approval_is_shown_and_asked_in_the_chat(library):
    wrote = []
    writer = Tool(name="save_note", description="Save a note", capability=Capability.WRITES,
                  parameters={"type": "object", "properties": {"text": {"type": "string"}},
                              "required": ["text"]},
                  run=lambda text: wrote.append(text) or "saved")
    llm = ScriptedToolModel([_call("save_note", text="hi"), "I could not save it.",
                             _call("save_note", text="hi"), "Saved."])
    runner = ToolRunner([writer])
    messages = [{"role": "user", "content": "save hi"}]
    asked = []
    events = list(run_with_tools(llm, runner, messages,
                                 approve=lambda t, c: asked.append(c.as_dict()) or False))
    call = next(e for e in events if e.kind == "tool_call")
    assert call.stats["needs_approval"] is True
    assert call.stats["call"] == {"name": "save_note", "arguments": {"text": "hi"}}
    assert asked == [{"name": "save_note", "arguments": {"text": "hi"}}] and wrote == []
    assert events[-1].kind == "done" and events[-1].text == "I could not save it."
    events = list(run_with_tools(llm, runner, messages, approve=lambda t, c: True))
    assert wrote == ["hi"] and events[-1].text == "Saved."


def test_a_model_that_never_stops_calling_tools_is_ended(library):
    llm = ScriptedToolModel([_call("calculator", expression="1+1")] * 10)
    events = list(run_with_tools(llm, ToolRunner([CALCULATOR]),
                                 [{"role": "user", "content": "go"}], max_rounds=2))
    assert [e.kind for e in events].count("tool_result") == 2
    # The last round is offered no tools, so its call is plain text and the chat ends.
    assert '"name": "calculator"' not in llm.prompts[-1].split("<|im_start|>user")[0]
    assert events[-1].kind == "done"


def test_the_starter_models_template_gets_no_tools(tmp_path):
    llm = ScriptedToolModel(["never"], template=None)
    events = list(run_with_tools(llm, ToolRunner([CALCULATOR]),
                                 [{"role": "user", "content": "1+1?"}]))
    assert [(e.kind, e.text) for e in events] == [("error", NO_TOOLS)]
    assert llm.prompts == []
    engine = ChatEngine(None, llm, ChatStore(tmp_path / "c.sqlite"))
    assert engine.supports_tools is False


def test_a_model_failing_mid_loop_is_an_error_the_chat_keeps(library, tmp_path):
    class Failing(ScriptedToolModel):
        def generate(self, prompt, settings=None, cancel=None):
            self.prompts.append(str(prompt))
            if len(self.prompts) > 1:
                raise RuntimeError("the model process died")
            yield from super().generate(prompt, settings, cancel)

    llm = Failing([_call("calculator", expression="2+2")])
    store = ChatStore(tmp_path / "chats.sqlite")
    engine = ChatEngine(library, llm, store)
    chat = store.create_chat()
    events = list(ask_with_tools(engine, chat.id, "2+2?", ToolRunner([CALCULATOR])))
    assert events[-1].kind == "error" and "the model process died" in events[-1].text
    saved = store.messages(chat.id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[-1].status == "error" and "the model process died" in saved[-1].error
    assert saved[-1].meta["tool_calls"][0]["result"]["result"]["value"] == 4


# -- folio ask: the tool path chosen by itself ---------------------------------------------


def _scripted_folio(monkeypatch, llm):
    """Folio's model load answered by `llm` (the runtime seam), for the CLI in-process."""
    from app.core.service import Folio

    def load(self, path, allow_oversize=None):
        self._runtime, self._model_path = llm, path
        return llm

    monkeypatch.setattr(Folio, "_load", load)


def test_ask_takes_the_tool_path_when_the_model_has_tools(capsys, monkeypatch, library_dir,
                                                          tmp_path):
    from app.cli import main

    model = tmp_path / "qwenish.gguf"
    lib = ["--library", str(library_dir), "--model", str(model)]
    _scripted_folio(monkeypatch, ScriptedToolModel([
        _call("calculator", expression="6 * 7"), "6 * 7 = 42.",
        _call("calculator", expression="2 ** 10"), "2 ** 10 = 1024.",
    ]))
    assert main(["ask", *lib, "--json", "what is 6 * 7?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "6 * 7 = 42." and out["error"] is None
    assert out["tool_calls"] == [{
        "call": {"name": "calculator", "arguments": {"expression": "6 * 7"}},
        "result": {"tool": "calculator", "ok": True,
                   "result": {"expression": "6 * 7", "value": 42}}}]
    # The keys ask --json always had are all still there.
    assert {"answer", "sources", "cited", "model", "prompt_tokens", "completion_tokens",
            "seconds", "chat_id", "error"} <= set(out)
    assert main(["ask", *lib, "what is 2 ** 10?"]) == 0
    text = capsys.readouterr().out
    assert '[tool call] calculator {"expression": "2 ** 10"}' in text
    assert '[tool result] {"expression": "2 ** 10", "value": 1024}' in text
    assert "2 ** 10 = 1024." in text


def test_ask_takes_the_cited_path_when_the_model_has_no_tools(capsys, monkeypatch,
                                                              library_dir, tmp_path):
    from app.cli import main

    gemma = make_gguf(tmp_path / "gemma-like.gguf", arch="gemma3",
                      chat_template=FAMILIES["gemma"]["template"])
    llm = ScriptedToolModel([_call("calculator", expression="1+1"), "unused"],
                            template=read_gguf_info(gemma).chat_template)
    _scripted_folio(monkeypatch, llm)
    code = main(["ask", "--library", str(library_dir), "--model", str(gemma), "--json",
                 "--no-docs", "what is 1 + 1?"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tool_calls"] == []
    # The model was not offered tools, and its "call" is only text of the plain answer.
    assert all("calculator" not in p for p in llm.prompts)
    assert len(llm.prompts) == 1 and "<start_of_turn>user\nwhat is 1 + 1?" in llm.prompts[0]
    assert out["answer"].startswith("<tool_call>")  # plain text here, never run


def test_stopping_while_a_call_waits_ends_the_loop_without_another_turn(library):
    from app.core.tools.runner import ApprovalRequest

    cancel = threading.Event()
    writer = Tool(name="save_note", description="Save a note", capability=Capability.WRITES,
                  parameters={"type": "object", "properties": {"text": {"type": "string"}}},
                  run=lambda text: text)
    llm = ScriptedToolModel([_call("save_note", text="hi"), "never asked"])
    requests = []

    def approve(tool, call):
        requests.append(ApprovalRequest(tool, call))
        cancel.set()  # the user presses Stop while the call waits
        return requests[-1].wait(cancel, poll=0.01)

    events = list(run_with_tools(llm, ToolRunner([writer]), [{"role": "user", "content": "x"}],
                                 approve=approve, cancel=cancel))
    assert requests[0].decided and requests[0].allowed is False
    assert len(llm.prompts) == 1
    assert events[-1].kind == "done" and events[-1].stats["finish_reason"] == "cancelled"
    assert events[-1].stats["tool_calls"][0]["result"]["error"] == \
        "the user did not allow this call"
