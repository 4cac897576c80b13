"""Remote OpenAI-compatible providers (app/core/llm/remote.py): real loopback servers only.

A small misbehaving server (tests/remoteservers.py) for each failure: refused, 401, 429 with
Retry-After, a hang, a stream cut mid-answer, malformed SSE. `python -m llama_cpp.server` on
the starter model for the real thing: streaming, cancel, cited answers through the chat
engine and `folio ask --provider`. Keys: an in-memory keyring backend, and keyring's `fail`
backend for the machine without one.
"""

from __future__ import annotations

import json
import threading
import time

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from remoteservers import FakeOpenAI, LlamaServer, free_port

from app.core.chat.answers import ChatConfig, ChatEngine
from app.core.chat.history import ChatStore
from app.core.llm import remote
from app.core.llm.provider import Done, GenerationSettings, LLMProvider, Token
from app.core.llm.remote import Messages, ProviderConfig, RemoteProvider, retry_after_words

SECRET = "sk-test-" + "s3cr3t" * 6


class MemoryKeyring(KeyringBackend):
    priority = 10

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def set_password(self, service, username, password):
        self.items[service, username] = password

    def get_password(self, service, username):
        return self.items.get((service, username))

    def delete_password(self, service, username):
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    remote._session_keys.clear()
    yield ring
    keyring.set_keyring(previous)
    remote._session_keys.clear()


@pytest.fixture
def no_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    remote._session_keys.clear()
    yield
    keyring.set_keyring(previous)
    remote._session_keys.clear()


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


def provider(url: str, key: str | None = SECRET, **kw) -> RemoteProvider:
    return RemoteProvider(ProviderConfig("test", url, "some-model"), key, **kw)


def run(p: RemoteProvider, prompt=None, **kw) -> tuple[str, Done]:
    prompt = prompt or p.format_chat([{"role": "user", "content": "Hello?"}])[0]
    events = list(p.generate(prompt, GenerationSettings(max_tokens=32, **kw)))
    done = events[-1]
    assert isinstance(done, Done) and all(isinstance(e, Token) for e in events[:-1])
    return "".join(e.text for e in events[:-1]), done


# -- the protocol and the request -----------------------------------------------------------


def test_satisfies_the_seam_and_sends_messages_with_the_key(fake):
    p = provider(fake.url("ok"))
    assert isinstance(p, LLMProvider)
    info = p.load()
    assert info.provider == "test" and info.device == "remote" and p.is_chat_model
    prompt, stops = p.format_chat([{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "How often?"}])
    assert isinstance(prompt, Messages) and stops == []
    text, done = run(p, prompt, temperature=0.0, seed=7, stop=("\nQ:",))
    assert text == "Water twice a week [1]."
    assert done.finish_reason == "stop" and done.error is None
    assert done.prompt_tokens == 42 and done.completion_tokens == 3
    sent = fake.requests[-1]
    assert sent["path"] == "/ok/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = sent["body"]
    assert body["stream"] is True and body["model"] == "some-model"
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "How often?"}]
    assert body["temperature"] == 0.0 and body["seed"] == 7 and body["stop"] == ["\nQ:"]
    assert SECRET not in repr(p)


def test_stops_are_honoured_on_this_side_too(fake):
    # The server ignores the stop string here; the provider cuts the text at it.
    text, done = run(provider(fake.url("ok")), stop=("a week",))
    assert text == "Water twice " and done.finish_reason == "stop"


def test_token_count_is_cl100k_with_the_stated_margin():
    from app.core.documents.tokens import encoding

    p = provider("http://127.0.0.1:9/v1")
    text = "Water tomato plants deeply twice a week, early in the morning."
    raw = len(encoding().encode(text))
    assert p.count_tokens(text) == -(-raw * 12 // 10)
    msgs, _ = p.format_chat([{"role": "user", "content": text}])
    assert p.count_tokens(msgs) > p.count_tokens(text)


# -- failures -------------------------------------------------------------------------------


def test_connection_refused_says_so():
    port = free_port()  # nothing listens there now
    text, done = run(provider(f"http://127.0.0.1:{port}/v1"))
    assert text == "" and done.finish_reason == "error"
    assert "Could not reach the provider test" in done.error
    assert "connection refused" in done.error


def test_401_says_the_key_was_refused(fake):
    text, done = run(provider(fake.url("unauthorized")))
    assert done.finish_reason == "error" and "refused the API key (HTTP 401" in done.error
    assert "Incorrect API key provided" in done.error


def test_429_says_when_to_retry(fake):
    text, done = run(provider(fake.url("limited")))
    assert done.finish_reason == "error" and "HTTP 429" in done.error
    assert "try again in 30 seconds (at " in done.error


def test_retry_after_as_an_http_date():
    now = 1_700_000_000.0
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 90))
    assert retry_after_words(stamp, now=now).startswith("try again in 90 seconds")
    assert retry_after_words(None) == "try again later"
    assert retry_after_words("soon") == "try again later"


def test_a_server_that_hangs_times_out(fake):
    fake.release.clear()
    text, done = run(provider(fake.url("hang"), timeout=0.5))
    fake.release.set()
    assert done.finish_reason == "error" and "stopped answering" in done.error


def test_a_stream_cut_mid_answer_keeps_the_text(fake):
    text, done = run(provider(fake.url("cut")))
    assert text == "Water the tomatoes "
    assert done.finish_reason == "error" and "was cut" in done.error


def test_malformed_sse_keeps_the_text_and_names_the_event(fake):
    text, done = run(provider(fake.url("malformed")))
    assert text == "Partial "
    assert done.finish_reason == "error" and "malformed stream event" in done.error
    assert "{this is not json" in done.error


def test_cancel_returns_while_the_server_still_holds_the_stream(fake):
    fake.release.clear()
    fake.waiting.clear()
    p = provider(fake.url("trickle"), timeout=120)
    cancel = threading.Event()
    events = []
    for event in p.generate(p.format_chat([{"role": "user", "content": "Hi"}])[0],
                            GenerationSettings(max_tokens=32), cancel):
        events.append(event)
        if isinstance(event, Token):
            assert fake.waiting.wait(30)
            cancel.set()
    # The server never sent more and never closed: the generation ended on the cancel alone.
    assert not fake.release.is_set()
    fake.release.set()
    assert [e.text for e in events[:-1]] == ["First "]
    assert events[-1].finish_reason == "cancelled" and events[-1].error is None


def test_a_failed_answer_is_kept_and_said_in_the_chat(fake, tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite")
    try:
        engine = ChatEngine(None, provider(fake.url("cut")), store)
        engine.llm.load()
        chat = store.create_chat(scope={"mode": "none"})
        events = list(engine.ask(chat.id, "How do I water tomatoes?"))
        assert events[-1].kind == "error" and "was cut" in events[-1].text
        saved = store.messages(chat.id)[-1]
        assert saved.status == "error" and saved.content == "Water the tomatoes"
        assert saved.meta["remote"] is True and saved.meta["provider"] == "test"
    finally:
        store.close()


# -- keys and settings ----------------------------------------------------------------------


def test_settings_keep_providers_without_the_key(memory_keyring, folio_home):
    from app.core import settings as app_settings

    s = app_settings.AppSettings()
    s.add_provider(ProviderConfig("work", "https://api.example.com/v1/", "gpt-x",
                                  embedder_model="embed-x"))
    remote.store_key("work", SECRET)
    path = s.save()
    assert SECRET not in path.read_text()
    assert memory_keyring.items[remote.KEYRING_SERVICE, "work"] == SECRET
    loaded = app_settings.load(path)
    config = loaded.find_provider("work")
    assert config.base_url == "https://api.example.com/v1" and config.embedder_model == "embed-x"
    remote._session_keys.clear()
    assert remote.get_key("work") == SECRET  # from the keyring
    with pytest.raises(remote.UnknownProvider, match="known: work"):
        loaded.find_provider("home")
    assert loaded.remove_provider("work") and loaded.providers == []


def test_a_bad_provider_entry_in_settings_falls_back(folio_home):
    from app.core import settings as app_settings

    s = app_settings.AppSettings.from_dict({"providers": [{"name": "x y", "base_url": "ftp:",
                                                           "model": ""}]})
    assert s.providers == []


def test_no_keyring_keeps_the_key_for_the_session_only(no_keyring):
    assert not remote.keyring_available()
    with pytest.raises(remote.NoKeyring, match="this session only"):
        remote.store_key("work", SECRET)
    assert remote.get_key("work") == SECRET  # this session
    remote._session_keys.clear()
    assert remote.get_key("work") is None  # a new session asks again


def test_cli_providers_add_list_remove(memory_keyring, folio_home, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("FOLIO_PROVIDER_KEY", SECRET)
    assert main(["-v", "providers", "add", "work", "--url", "https://api.example.com/v1",
                 "--model", "gpt-x", "--embedder-model", "embed-x"]) == 0
    out = capsys.readouterr()
    assert "Added provider work" in out.out and "keyring" in out.out
    assert main(["providers", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["providers"][0]["name"] == "work" and listed["providers"][0]["key_stored"]
    assert listed["keyring"] is True
    assert main(["providers", "remove", "work"]) == 0
    assert (remote.KEYRING_SERVICE, "work") not in memory_keyring.items
    assert main(["providers", "remove", "work"]) == 2
    assert main(["ask", "--provider", "nope", "hello"]) == 2
    assert "no provider called 'nope'" in capsys.readouterr().err
    files = [p for p in folio_home.rglob("*") if p.is_file()]
    assert any(p.name == "settings.json" for p in files)
    for p in files:  # the settings file and the logs never hold the key
        assert SECRET.encode() not in p.read_bytes(), p


def test_cli_without_keyring_tells_the_user(no_keyring, folio_home, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("FOLIO_PROVIDER_KEY", SECRET)
    assert main(["providers", "add", "work", "--url", "http://127.0.0.1:9/v1",
                 "--model", "m"]) == 0
    assert "no system keyring" in capsys.readouterr().err
    assert main(["providers", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keyring"] is False


# -- a real server: llama_cpp.server on the starter model ----------------------------------


@pytest.fixture(scope="module")
def llama_server(starter_model):
    with LlamaServer(starter_model, n_ctx=2048) as server:
        yield server


@pytest.fixture(scope="module")
def garden_library(tmp_path_factory, embedder):
    from docgen import make_pdf

    from app.core.index.ingest import IngestOptions, ingest
    from app.core.index.library import Library

    root = tmp_path_factory.mktemp("remotelib")
    (root / "docs").mkdir()
    make_pdf(root / "docs" / "garden.pdf", [
        "Watering. Water tomato plants deeply twice a week, early in the morning.",
        "Pruning. Remove the side shoots of tomatoes when they are five centimetres long.",
    ], toc=[[1, "Watering", 1], [1, "Pruning", 2]], title="Garden Guide")
    lib = Library.open(root / "library", embedder)
    for _ in ingest(lib, [root / "docs"], IngestOptions()):
        pass
    return lib


def llama_provider(server: LlamaServer) -> RemoteProvider:
    p = RemoteProvider(ProviderConfig("llama", server.url, "starter", context=2048), None,
                       timeout=300)
    p.load()
    return p


@pytest.mark.slow
def test_real_server_streams_and_cancels(llama_server):
    p = llama_provider(llama_server)
    msgs, _ = p.format_chat([{"role": "user", "content": "Name three colours."}])
    text, done = run(p, msgs, temperature=0.0, seed=1)
    assert text.strip() and done.finish_reason in ("stop", "length") and done.error is None
    assert done.completion_tokens > 0 and done.ttft_seconds is not None
    cancel = threading.Event()
    events = []
    for event in p.generate(msgs, GenerationSettings(max_tokens=400, temperature=0.7), cancel):
        events.append(event)
        if isinstance(event, Token):
            cancel.set()
    assert events[-1].finish_reason == "cancelled"
    assert sum(isinstance(e, Token) for e in events) >= 1
    text, done = run(p, msgs, temperature=0.0, seed=1)  # still usable after a cancel
    assert done.error is None and text.strip()


@pytest.mark.slow
def test_real_server_answers_with_citations_and_marks_remote(llama_server, garden_library,
                                                             tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite")
    try:
        engine = ChatEngine(garden_library, llama_provider(llama_server), store,
                            config=ChatConfig(answer_tokens=48))
        chat = store.create_chat()
        events = list(engine.ask(chat.id, "When should I cut the side shoots off tomatoes?",
                                 overrides={"max_tokens": 48, "temperature": 0.0, "seed": 1}))
        done = events[-1]
        assert done.kind == "done", [e.text for e in events if e.kind == "error"]
        assert done.sources and done.sources[0]["path"].endswith("garden.pdf")
        assert done.sources[0]["page"] == 2
        answer = "".join(e.text for e in events if e.kind == "token").strip()
        assert answer == done.text and answer
        saved = store.messages(chat.id)[-1]
        assert saved.meta["remote"] is True and saved.meta["provider"] == "llama"
        assert saved.sources[0].page == 2
        # A follow-up uses the history the same way: the rewrite goes to the server too.
        events = list(engine.ask(chat.id, "And how often should I water them?",
                                 overrides={"max_tokens": 24, "temperature": 0.0, "seed": 1}))
        assert events[-1].kind == "done"
        assert [m.role for m in store.messages(chat.id)] == ["user", "assistant"] * 2
    finally:
        store.close()


@pytest.mark.slow
def test_cli_ask_with_a_provider_marks_the_answer_remote(llama_server, garden_library,
                                                         memory_keyring, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("FOLIO_PROVIDER_KEY", SECRET)
    assert main(["providers", "add", "llama", "--url", llama_server.url, "--model", "starter",
                 "--context", "2048"]) == 0
    capsys.readouterr()
    code = main(["ask", "--library", str(garden_library.root), "--provider", "llama",
                 "--json", "--max-tokens", "24", "--seed", "1",
                 "How often should tomatoes be watered?"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["remote"] is True and out["provider"] == "llama" and out["model"] == "starter"
    assert out["sources"][0]["path"].endswith("garden.pdf") and out["answer"]


@pytest.mark.slow
def test_folio_serve_as_a_provider_with_its_key(tmp_path_factory, starter_model):
    """Folio's own `folio serve` is a second real OpenAI-compatible server: its model `folio`
    answers from its library; the provider sends the key; a wrong key is a clear 401."""
    from serverproc import API_KEY, ServeProcess, build_library

    home = tmp_path_factory.mktemp("serve-home")
    build_library(home)
    server = ServeProcess(home, "--api-key", API_KEY)
    try:
        config = ProviderConfig("folio", server.url, "folio")
        p = RemoteProvider(config, API_KEY, timeout=300)
        p.load()
        msgs, _ = p.format_chat([{"role": "user",
                                  "content": "How much chain should I let out when anchoring?"}])
        text, done = run(p, msgs, temperature=0.0, seed=7)
        assert done.error is None and text.strip()
        text, done = run(RemoteProvider(config, "wrong-key-" + "w" * 20), msgs)
        assert done.finish_reason == "error" and "refused the API key (HTTP 401" in done.error
    finally:
        server.stop()


def test_each_chat_answers_with_its_own_model_or_provider(fake, memory_keyring, folio_home,
                                                          tmp_path, starter_model):
    """The chat's model picker: a chat that chose a provider answers through it, one that
    chose a model file answers locally, and a chat that chose nothing answers with the
    default (Settings' provider) and then keeps it."""
    from app.core.service import Folio
    from app.core.settings import AppSettings

    settings = AppSettings()
    work = ProviderConfig("work", fake.url("ok"), "gpt-work")
    other = ProviderConfig("other", fake.url("ok"), "gpt-other")
    settings.add_provider(work)
    settings.add_provider(other)
    remote.store_key("other", "other-key-" + "o" * 20)
    folio = Folio(tmp_path / "lib", settings=settings)
    try:
        folio.use_provider(work, SECRET)  # Settings > Providers: new chats answer with work
        store = folio.store
        plain = store.create_chat(scope={"mode": "none"})
        chosen = store.create_chat(scope={"mode": "none"})
        store.update_chat(chosen.id, model="provider:other")
        local = store.create_chat(scope={"mode": "none"})
        store.update_chat(local.id, model=starter_model.name)

        def ask(chat_id):
            events = list(folio.chat.ask(chat_id, "How often?",
                                         overrides={"max_tokens": 4, "seed": 1}))
            assert events[-1].kind == "done", events[-1]
            return store.messages(chat_id)[-1].meta

        meta = ask(chosen.id)
        assert meta["remote"] is True and meta["provider"] == "other"
        sent = fake.requests[-1]
        assert sent["body"]["model"] == "gpt-other"
        assert sent["headers"]["Authorization"] == "Bearer other-key-" + "o" * 20

        meta = ask(plain.id)
        assert meta["provider"] == "work" and fake.requests[-1]["body"]["model"] == "gpt-work"
        assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"
        assert store.get_chat(plain.id).model == "provider:work"  # the chat keeps its model

        before = len(fake.requests)
        meta = ask(local.id)
        assert not meta.get("remote") and len(fake.requests) == before
        assert folio.provider is None and folio.model_name == starter_model.name
        folio.use_provider(None)  # Settings drop their provider: the loaded model stays
        assert folio.default_provider is None and folio.model_name == starter_model.name
        folio.use_provider(work, SECRET)

        meta = ask(chosen.id)  # and back to the remote one, without a restart
        assert meta["provider"] == "other" and folio.default_provider == work
    finally:
        folio.close()
