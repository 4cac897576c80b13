"""A remote OpenAI-compatible provider: chat over HTTP, behind the same seam as the local model.

`ProviderConfig` is what Settings keep about a provider (name, base URL, model, an optional
remote embedder model): never its API key. The key lives in the system keyring
(`store_key` / `get_key`); where there is no keyring backend the caller asks for it once per
session and keeps it in memory only (`session_key`).

`RemoteProvider` satisfies `LLMProvider`. Rendering is behind the seam: `format_chat` returns
the chat as `Messages` (the server renders its own chat template) and `generate` posts them to
`{base}/chat/completions` with `stream=true`, parsing the server-sent events as they come.
Cancelling closes the stream at once. A failure (refused, 401, 429, timeout, a stream cut
mid-answer, a malformed event) ends the generation with `Done(finish_reason="error")` and a
message that says what happened; the tokens already streamed stay with the caller.

Token counts: the remote tokenizer cannot be asked, so prompts are counted with tiktoken's
cl100k and multiplied by `TOKEN_MARGIN` (1.2: cl100k splits English prose into fewer tokens
than the small models' vocabularies do), plus a few tokens per message for the chat template.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2

from app.core.base.errors import RemoteError  # noqa: F401 - callers import it from here too
from app.core.llm.prompt_parts import Prompt
from app.core.llm.provider import Done, GenerationSettings, LoadSettings, ModelInfo, Token

log = logging.getLogger(__name__)

KEYRING_SERVICE = "folio-provider"
TOKEN_MARGIN = 1.2  # cl100k counts x this: the remote tokenizer usually splits finer
TOKENS_PER_MESSAGE = 6  # the chat template's role markers around each message
DEFAULT_CONTEXT = 8192
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# -- what Settings keep -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A remote provider as Settings keep it. No API key here: see `store_key`."""

    name: str
    base_url: str
    model: str
    embedder_model: str | None = None
    context: int = DEFAULT_CONTEXT  # the model's context window, in tokens

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"A provider name is letters, digits, '.', '_' or '-' (up to 64), "
                             f"got {self.name!r}")
        url = self.base_url.strip().rstrip("/") if isinstance(self.base_url, str) else ""
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"The provider's URL must start with http:// or https://, "
                             f"got {self.base_url!r}")
        object.__setattr__(self, "base_url", url)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("The provider needs a model name")
        object.__setattr__(self, "model", self.model.strip())
        if self.embedder_model is not None and not str(self.embedder_model).strip():
            object.__setattr__(self, "embedder_model", None)
        if isinstance(self.context, bool) or not isinstance(self.context, int) \
                or self.context < 256:
            raise ValueError(f"The provider's context must be at least 256 tokens, "
                             f"got {self.context!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderConfig:
        return cls(name=data["name"], base_url=data["base_url"], model=data["model"],
                   embedder_model=data.get("embedder_model"),
                   context=data.get("context", DEFAULT_CONTEXT))


# -- the key ---------------------------------------------------------------------------------

_session_keys: dict[str, str] = {}  # keys asked this session where no keyring exists


class NoKeyring(RuntimeError):
    """There is no usable system keyring: the key must be asked for each session."""


def keyring_available() -> bool:
    """Whether a real keyring backend is there (not keyring's `fail` backend)."""
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken keyring install is "no keyring"
        return False
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 1) > 0


def store_key(name: str, key: str) -> None:
    """Keep the provider's key in the system keyring; NoKeyring when there is none (the key is
    then kept for this session only)."""
    _session_keys[name] = key
    if not keyring_available():
        raise NoKeyring("There is no system keyring here, so the key is kept for this "
                        "session only and asked for again next time.")
    import keyring

    try:
        keyring.set_password(KEYRING_SERVICE, name, key)
    except Exception as exc:  # noqa: BLE001 - locked or broken keyring
        raise NoKeyring(f"The system keyring refused the key ({type(exc).__name__}), so it "
                        "is kept for this session only.") from None


def get_key(name: str) -> str | None:
    """The provider's key: this session's, else the keyring's; None when neither has it."""
    if name in _session_keys:
        return _session_keys[name]
    if not keyring_available():
        return None
    import keyring

    try:
        return keyring.get_password(KEYRING_SERVICE, name)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not read provider %s's key from the keyring: %s",
                    name, type(exc).__name__)
        return None


def session_key(name: str, key: str) -> None:
    """Use this key for the provider in this session only (no keyring)."""
    _session_keys[name] = key


def delete_key(name: str) -> None:
    _session_keys.pop(name, None)
    if not keyring_available():
        return
    import keyring

    with contextlib.suppress(Exception):
        keyring.delete_password(KEYRING_SERVICE, name)


# -- rendering behind the seam ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Messages:
    """A chat as a remote provider takes it: role and text per message; the server renders
    its own template. What `RemoteProvider.format_chat` gives and `generate` takes."""

    messages: tuple[tuple[str, str], ...]

    def as_json(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @property
    def text(self) -> str:
        return "\n".join(content for _, content in self.messages)


def _plain(content: Any) -> str:
    return content.text if isinstance(content, Prompt) else str(content)


# -- errors ----------------------------------------------------------------------------------


class UnknownProvider(ValueError):
    """No provider of that name is in Settings."""


def retry_after_words(value: str | None, now: float | None = None) -> str:
    """"try again in 30 seconds (at 18:04:10 UTC)" from a Retry-After header (seconds or an
    HTTP date); a plain "try again later" without one."""
    now = time.time() if now is None else now
    seconds: float | None = None
    if value:
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                seconds = max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    if seconds is None:
        return "try again later"
    at = time.strftime("%H:%M:%S UTC", time.gmtime(now + seconds))
    return f"try again in {math.ceil(seconds)} seconds (at {at})"


def _describe_status(name: str, response: httpx2.Response, body: str) -> str:
    code = response.status_code
    detail = _error_detail(body)
    if code in (401, 403):
        return (f"The provider {name} refused the API key (HTTP {code}{detail}). Check the key: "
                f"remove the provider and add it again with the right one.")
    if code == 429:
        return (f"The provider {name} is limiting requests (HTTP 429{detail}); "
                f"{retry_after_words(response.headers.get('retry-after'))}.")
    if code == 404:
        return (f"The provider {name} has no such model or endpoint (HTTP 404{detail}). Check "
                f"the URL (it usually ends in /v1) and the model name.")
    return f"The provider {name} answered HTTP {code}{detail}."


def _error_detail(body: str) -> str:
    text = body.strip()
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        text = err.get("message", "") if isinstance(err, dict) else str(err)
    text = " ".join(str(text).split())[:200]
    return f": {text}" if text else ""


# -- the provider ----------------------------------------------------------------------------


class RemoteProvider:
    """An OpenAI-compatible chat server as an `LLMProvider`. `timeout` is how long to wait for
    the connection and for each piece of the stream."""

    def __init__(self, config: ProviderConfig, api_key: str | None, *,
                 timeout: float = 60.0, connect_timeout: float = 10.0) -> None:
        self.config = config
        self._key = api_key or ""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._info: ModelInfo | None = None
        self._client: httpx2.Client | None = None

    def __repr__(self) -> str:  # never the key
        return f"RemoteProvider({self.config.name!r}, {self.config.base_url!r})"

    # -- LLMProvider ------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def is_chat_model(self) -> bool:
        return True

    def load(self, path: Path | str | None = None,
             settings: LoadSettings | None = None) -> ModelInfo:
        """"Loading" a remote model sends nothing: the first question reaches the server."""
        cfg = self.config
        n_ctx = settings.n_ctx if settings is not None and settings.n_ctx else cfg.context
        self._info = ModelInfo(
            path=Path(cfg.base_url), name=cfg.model, n_ctx=n_ctx, n_ctx_train=n_ctx,
            device="remote", gpu_layers=0, threads=0, chat_template="remote",
            bos_token="", eos_token="", architecture="remote", load_seconds=0.0,
            notes=(f"remote provider {cfg.name} at {cfg.base_url}",), provider=cfg.name,
        )
        return self._info

    def unload(self) -> None:
        self._info = None

    def close(self) -> None:
        self._info = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def format_chat(self, messages: Sequence[Mapping[str, Any]],
                    add_generation_prompt: bool = True) -> tuple[Messages, list[str]]:
        return Messages(tuple((str(m["role"]), _plain(m["content"])) for m in messages)), []

    def count_tokens(self, text: str | Prompt | Messages) -> int:
        from app.core.documents.tokens import encoding

        enc = encoding()
        if isinstance(text, Messages):
            raw = sum(len(enc.encode(c, disallowed_special=())) + TOKENS_PER_MESSAGE
                      for _, c in text.messages)
        else:
            raw = len(enc.encode(_plain(text), disallowed_special=()))
        return math.ceil(raw * TOKEN_MARGIN)

    def generate(self, prompt: str | Prompt | Messages,
                 settings: GenerationSettings | None = None,
                 cancel: threading.Event | None = None) -> Iterator[Token | Done]:
        settings = settings or GenerationSettings()
        cancel = cancel or threading.Event()
        if self._info is None:
            self.load()
        messages = (prompt.as_json() if isinstance(prompt, Messages)
                    else [{"role": "user", "content": _plain(prompt)}])
        body: dict[str, Any] = {
            "model": self.config.model, "messages": messages, "stream": True,
            "temperature": settings.temperature, "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)[:4]  # OpenAI takes 4; the rest are cut here
        if settings.seed is not None:
            body["seed"] = settings.seed
        yield from _Stream(self, body, settings, cancel).run()

    # -- embeddings (the optional remote embedder) -------------------------------------------

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors from the provider's embedder model (POST {base}/embeddings)."""
        model = self.config.embedder_model
        if not model:
            raise RemoteError(f"The provider {self.config.name} has no embedder model set.")
        try:
            response = self.client().post("/embeddings", json={"model": model,
                                                                "input": list(texts)})
        except httpx2.HTTPError as exc:
            raise RemoteError(_transport_message(self.config, exc, self.timeout)) from None
        if response.status_code != 200:
            raise RemoteError(_describe_status(self.config.name, response, response.text))
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            return [list(map(float, d["embedding"])) for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"The provider {self.config.name} sent malformed embeddings "
                              f"({exc}).") from None

    def client(self) -> httpx2.Client:
        if self._client is None:
            headers = {"Accept": "text/event-stream"}
            if self._key:
                headers["Authorization"] = f"Bearer {self._key}"
            self._client = httpx2.Client(
                base_url=self.config.base_url + "/", headers=headers, follow_redirects=False,
                timeout=httpx2.Timeout(self.timeout, connect=self.connect_timeout))
        return self._client


def _transport_message(cfg: ProviderConfig, exc: BaseException, timeout: float) -> str:
    if isinstance(exc, httpx2.ConnectTimeout):
        return (f"Could not reach the provider {cfg.name} at {cfg.base_url}: the connection "
                f"timed out.")
    if isinstance(exc, httpx2.ConnectError):
        return (f"Could not reach the provider {cfg.name} at {cfg.base_url}: "
                f"{_reason(exc)}. Is the server running, and is the URL right?")
    if isinstance(exc, httpx2.TimeoutException):
        return (f"The provider {cfg.name} stopped answering: nothing came for {timeout:g} "
                f"seconds.")
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return f"The connection to the provider {cfg.name} was cut ({_reason(exc)})."
    return f"The request to the provider {cfg.name} failed: {_reason(exc)}."


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


_END = object()


class _Stream:
    """One streamed chat completion. The HTTP reading runs on its own thread and hands events
    over a queue, so the caller sees a cancel at once, however long the server takes; the
    cancel also shuts the socket, which ends the reader."""

    def __init__(self, provider: RemoteProvider, body: dict, settings: GenerationSettings,
                 cancel: threading.Event) -> None:
        self.provider = provider
        self.cfg = provider.config
        self.body = body
        self.stops = list(settings.stop)
        self.cancel = cancel
        self.events: queue.Queue = queue.Queue()
        self.response: httpx2.Response | None = None
        self.lock = threading.Lock()
        self.closed = False

    def run(self) -> Iterator[Token | Done]:
        started = time.monotonic()
        first: float | None = None
        pieces = 0
        usage: dict = {}
        held = ""  # text that could be the start of a stop string
        text_so_far = ""
        finish = None
        error: str | None = None
        reader = threading.Thread(target=self._read, name="remote-stream", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    item = self.events.get(timeout=0.05)
                except queue.Empty:
                    if self.cancel.is_set():
                        finish = "cancelled"
                        break
                    continue
                if self.cancel.is_set():
                    finish = "cancelled"
                    break
                if item is _END:
                    break
                kind, value = item
                if kind == "error":
                    error = value
                    break
                if kind == "usage":
                    usage = value
                    continue
                if kind == "finish":
                    finish = finish if value == "[DONE]" and finish else value
                    continue
                # kind == "text"
                if first is None:
                    first = time.monotonic()
                pieces += 1
                held += value
                cut = _find_stop(held, self.stops)
                if cut is not None:
                    out = held[:cut]
                    if out:
                        text_so_far += out
                        yield Token(out)
                    held = ""
                    finish = "stop"
                    break
                keep = _stop_prefix_len(held, self.stops)
                out = held[: len(held) - keep]
                held = held[len(held) - keep:]
                if out:
                    text_so_far += out
                    yield Token(out)
        finally:
            self._shut()
            reader.join(timeout=1.0)  # the shut socket ends it; a reader still waiting on
            # the server's headers ends when they come (it then sees `closed`)
        if held and finish != "cancelled" and error is None:
            text_so_far += held
            yield Token(held)
        elapsed = time.monotonic() - started
        if error is None and finish is None and not self.cancel.is_set():
            error = (f"The connection to the provider {self.cfg.name} ended before the answer "
                     f"was finished.")
        completion = int(usage.get("completion_tokens") or pieces)
        decode = (time.monotonic() - first) if first is not None else 0.0
        done = Done(
            finish_reason="error" if error else ("length" if finish == "length" else
                                                 "cancelled" if finish == "cancelled" else "stop"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=completion, seconds=elapsed,
            ttft_seconds=(first - started) if first is not None else None,
            tokens_per_second=(completion / decode) if decode > 0 else 0.0,
            prefill_seconds=(first - started) if first is not None else 0.0, error=error,
        )
        if error:
            log.warning("remote provider %s: %s", self.cfg.name, error)
        yield done

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        put = self.events.put
        try:
            client = self.provider.client()
            request = client.build_request("POST", "chat/completions", json=self.body)
            response = client.send(request, stream=True)
            with self.lock:
                self.response = response
                if self.closed:
                    response.close()
                    return
            try:
                if response.status_code != 200:
                    response.read()
                    put(("error", _describe_status(self.cfg.name, response, response.text)))
                    return
                self._parse(response)
            finally:
                response.close()
        except httpx2.HTTPError as exc:
            if not self.cancel.is_set() and not self.closed:
                put(("error", _transport_message(self.cfg, exc, self.provider.timeout)))
        except Exception as exc:  # noqa: BLE001 - any failure ends this answer, not the app
            if not self.cancel.is_set() and not self.closed:
                put(("error", f"The provider {self.cfg.name} failed: {exc}"))
        finally:
            put(_END)

    def _parse(self, response: httpx2.Response) -> None:
        put = self.events.put
        data_lines: list[str] = []
        for line in response.iter_lines():
            if self.closed:
                return
            if line.startswith(":"):  # an SSE comment (keep-alive)
                continue
            if line:
                field, _, value = line.partition(":")
                if field == "data":
                    data_lines.append(value[1:] if value.startswith(" ") else value)
                elif field not in ("event", "id", "retry"):
                    put(("error", f"The provider {self.cfg.name} sent a malformed stream "
                                  f"(not server-sent events): {line[:120]!r}"))
                    return
                continue
            if not data_lines:
                continue
            data, data_lines = "\n".join(data_lines), []
            if data.strip() == "[DONE]":
                put(("finish", "[DONE]"))
                return
            if not self._event(data):
                return
        if data_lines:  # the last event was not closed by a blank line
            data = "\n".join(data_lines)
            if data.strip() != "[DONE]":
                self._event(data)

    def _event(self, data: str) -> bool:
        put = self.events.put
        try:
            event = json.loads(data)
            if not isinstance(event, dict):
                raise TypeError("not an object")
            if "error" in event:
                put(("error", f"The provider {self.cfg.name} reported an error mid-answer"
                              f"{_error_detail(json.dumps(event))}."))
                return False
            if event.get("usage"):
                put(("usage", event["usage"]))
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text is None and "text" in choice:  # a completions-style server
                    text = choice["text"]
                if text:
                    put(("text", str(text)))
                if choice.get("finish_reason"):
                    put(("finish", str(choice["finish_reason"])))
            return True
        except (ValueError, TypeError, AttributeError) as exc:
            put(("error", f"The provider {self.cfg.name} sent a malformed stream event "
                          f"({exc}): {data[:120]!r}"))
            return False

    def _shut(self) -> None:
        """Stop reading: close the response and shut its socket, which wakes a blocked read."""
        with self.lock:
            self.closed = True
            response = self.response
        if response is None:
            return
        with contextlib.suppress(Exception):
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could begin a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
