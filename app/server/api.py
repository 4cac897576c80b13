"""The OpenAI-compatible HTTP API: `GET /v1/models`, `POST /v1/chat/completions` (streamed as
server-sent events ending with `data: [DONE]`, or not), `POST /v1/embeddings`.

Model `folio` answers from the library as `folio ask` does and adds `sources` (path, page,
section, score, text) at the top level of the response, or in the stream's last chunk. Any
installed model chats without documents.

What every request goes through, in this order (`Guard`, then the route):
1. the API key, a bearer token compared in constant time (401);
2. the body's size, from Content-Length and while it is read (413);
3. JSON, and the request's fields: unknown ones are refused, as OpenAI does (400), and so
   are fields OpenAI knows but Folio would have to ignore (`UNSUPPORTED`: penalties,
   logit_bias, logprobs, n > 1, tools, response_format...), each by name, unless its value
   is the neutral one (0, false, null, empty) that ignoring changes nothing about. `user`
   (an id for OpenAI's abuse monitoring) is accepted: it changes no answer;
4. the model (404), then a place in the queue for the one model (429 when the line is full).
Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, never a
traceback; their messages go through `backend.scrub`, so they name no path outside the
library's documents.

Generation runs on a thread of its own and the event loop relays its tokens. A client that
hangs up sets the engine's cancel flag (the stream's disconnect listener, or a watcher on
the request for a plain answer); the model stops within a token, and the next request gets
its turn only once it has.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
import uuid
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.server.backend import FOLIO_MODEL, Backend, BadRequest, Delta, Final, UnknownModel
from app.server.turns import QueueFull, TurnQueue

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a long chat fits many times over
MAX_EMBED_INPUTS = 256
# A body over the limit is still read (and dropped) up to this many times the limit, so an
# ordinary client gets its 413; past that the connection is closed.
DRAIN_FACTOR = 16


# -- errors ------------------------------------------------------------------------------------

def error_response(status: int, message: str, *, kind: str = "invalid_request_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status, headers=headers)


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.response = error_response(status, message, kind=kind, param=param, code=code,
                                       headers=headers)


# -- requests ----------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**32 - 1)
    n: Literal[1] | None = None
    user: str | None = None

    def overrides(self) -> dict:
        out: dict[str, Any] = {}
        tokens = self.max_completion_tokens or self.max_tokens
        if tokens:
            out["max_tokens"] = tokens
        for name in ("temperature", "top_p", "seed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.stop:
            stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
            if len(stops) > 4 or not all(stops):
                raise ApiError(400, "stop takes up to 4 non-empty strings.", param="stop")
            out["stop"] = tuple(stops)
        return out


class EmbeddingRequest(_Strict):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# Chat fields OpenAI knows that Folio does not do, and why; refused when not neutral.
UNSUPPORTED: dict[str, str] = {
    "frequency_penalty": "Folio's sampler has no frequency penalty",
    "presence_penalty": "Folio's sampler has no presence penalty",
    "logit_bias": "Folio does not bias tokens",
    "logprobs": "Folio does not return log probabilities",
    "top_logprobs": "Folio does not return log probabilities",
    "tools": "Folio's server does not call tools",
    "tool_choice": "Folio's server does not call tools",
    "parallel_tool_calls": "Folio's server does not call tools",
    "functions": "Folio's server does not call functions",
    "function_call": "Folio's server does not call functions",
    "response_format": "Folio answers in text only (no JSON mode or schema)",
    "modalities": "Folio answers in text only",
    "audio": "Folio answers in text only",
    "prediction": "Folio does not take predicted outputs",
    "reasoning_effort": "Folio's models have no reasoning effort setting",
    "verbosity": "Folio has no verbosity setting",
    "web_search_options": "Folio does not search the web",
    "store": "Folio does not store completions for later",
    "metadata": "Folio does not store completions for later",
    "service_tier": "Folio has one service tier",
    "prompt_cache_key": "Folio does not take prompt cache keys",
    "safety_identifier": "Folio does not take safety identifiers",
}
# Values that ask for nothing beyond what Folio does: sent by clients filling in defaults.
_NEUTRAL_OF: dict[str, tuple[Any, ...]] = {
    "tool_choice": ("none",), "function_call": ("none",),
    "service_tier": ("auto", "default"), "response_format": ({"type": "text"},),
    "modalities": (["text"],),
}


def _is_neutral(name: str, value: Any) -> bool:
    if value is None or value is False or value == "" or value == {} or value == []:
        return True
    if type(value) in (int, float) and value == 0:
        return True
    return value in _NEUTRAL_OF.get(name, ())


def refuse_unsupported(data: dict[str, Any]) -> dict[str, Any]:
    """A 400 naming the first field OpenAI knows but Folio would ignore (see UNSUPPORTED);
    else `data` without the neutral ones (which ask for nothing Folio does not do)."""
    for name, why in UNSUPPORTED.items():
        if name in data and not _is_neutral(name, data[name]):
            raise ApiError(400, f"Unsupported parameter: '{name}' is not supported by Folio "
                                f"({why}).", param=name, code="unsupported_parameter")
    n = data.get("n")
    if n is not None and not (type(n) is int and n == 1):
        raise ApiError(400, "Unsupported value: 'n' must be 1; Folio gives one choice per "
                            "request.", param="n", code="unsupported_value")
    messages = data.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(message, dict) and message.get("name") not in (None, ""):
            raise ApiError(400, f"Unsupported parameter: 'messages.{i}.name' is not supported "
                                "by Folio (the model is not told who wrote a message).",
                           param=f"messages.{i}.name", code="unsupported_parameter")
    return {k: v for k, v in data.items() if k not in UNSUPPORTED}


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {where}", where
    if first.get("type") == "missing":
        return f"Missing required parameter: {where}", where
    return f"Invalid value for {where or 'the request'}: {first.get('msg')}", where or None


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    """The body, at most MAX_BODY_BYTES however it is sent, as `model`."""
    body = bytearray()
    limit = request.app.state.max_body
    too_big = False
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if too_big:
            if seen > DRAIN_FACTOR * limit:  # not worth reading on: the client hears a close
                break
            continue
        body += chunk
        if len(body) > limit:
            too_big = True
            body = bytearray()
    if too_big:
        raise ApiError(413, f"The request body is larger than {limit} bytes.",
                       code="body_too_large")
    try:
        data = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON ({type(exc).__name__}: "
                            f"{str(exc)[:200]}).", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    if model is ChatRequest:
        data = refuse_unsupported(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise ApiError(400, message, param=param) from None


# -- the guard ---------------------------------------------------------------------------------

class Guard:
    """ASGI middleware: the API key (constant-time compare) and the declared body size,
    before any route runs."""

    def __init__(self, app, api_key: str, max_body: int) -> None:
        self.app = app
        self.key = api_key.encode()
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get(b"authorization", b"")
        token = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        if not token or not hmac.compare_digest(token, self.key):
            response = error_response(
                401, "Missing or wrong API key: send it as 'Authorization: Bearer KEY' (Folio's "
                     "Settings show the key; `folio serve --api-key` sets one).",
                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                too_big = True
            if too_big:
                await _drain(receive, DRAIN_FACTOR * self.max_body)
                response = error_response(
                    413, f"The request body is larger than {self.max_body} bytes.",
                    code="body_too_large")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _drain(receive, limit: int) -> None:
    """Read and drop a refused body (up to `limit` bytes), so that a client that sends its
    body before reading the answer hears 413 rather than a broken connection."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


# -- generation on a thread --------------------------------------------------------------------

class Generation:
    """The backend's answer generator on a thread of its own; its events come back to the
    event loop through a queue. `stop()` sets the cancel flag and waits for the thread, so
    the model is free when it returns."""

    def __init__(self, backend: Backend, model: str, messages: list[dict], overrides: dict):
        self.cancel = threading.Event()
        self.stopped_after: float | None = None  # seconds from cancel to the thread's end
        self._args = (backend, model, messages, overrides)
        self._thread: threading.Thread | None = None
        self._done: asyncio.Event | None = None
        self._ended = False  # the answer's last event was read

    async def events(self):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = self._done = asyncio.Event()
        end = object()
        cancel = self.cancel

        def deliver(item) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # the event loop is closed: nobody is listening
                cancel.set()
                return False

        def work() -> None:
            backend, model, messages, overrides = self._args
            try:
                for ev in backend.answer(model, messages, overrides, cancel):
                    deliver(ev)
            except BaseException as exc:  # noqa: BLE001 - becomes the answer's error
                log.exception("answer failed")
                deliver(Final(finish_reason="error", error=backend.scrub(
                    f"The answer failed: {type(exc).__name__}: {exc}")))
            finally:
                deliver(end)
                try:
                    loop.call_soon_threadsafe(done.set)
                except RuntimeError:
                    pass

        self._thread = threading.Thread(target=work, name="folio-serve-answer", daemon=True)
        self._thread.start()
        while True:
            item = await queue.get()
            if item is end:
                self._ended = True
                return
            yield item

    async def stop(self) -> bool:
        """Stop the generation if it still runs; True if it had to be stopped (the answer
        had not ended), False if it had ended or never started."""
        if self._thread is None or self._done is None:
            return False
        cut = not self._ended
        asked = time.monotonic()
        if cut:
            self.cancel.set()
        with anyio.CancelScope(shield=True):
            await self._done.wait()
        if cut:
            self.stopped_after = time.monotonic() - asked
        return cut


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None,
           **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _usage(final: Final) -> dict:
    return {"prompt_tokens": final.prompt_tokens, "completion_tokens": final.completion_tokens,
            "total_tokens": final.prompt_tokens + final.completion_tokens}


# -- the app -----------------------------------------------------------------------------------

def create_app(backend: Backend, api_key: str, *, max_waiting: int = 64,
               max_body: int = MAX_BODY_BYTES) -> Any:
    """The ASGI app: the routes behind the guard. `api_key` must be non-empty."""
    if not api_key:
        raise ValueError("the server needs an API key")
    app = FastAPI(title="Folio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend
    app.state.turns = TurnQueue(max_waiting)
    app.state.max_body = max_body

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(404, f"There is no route {request.method} "
                                       f"{request.url.path}.", code="not_found")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on "
                                       f"{request.url.path}.", code="method_not_allowed")
        return error_response(exc.status_code, "The request was refused.")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("request failed")
        return error_response(500, "Folio failed to answer this request; its log says why.",
                              kind="server_error")

    @app.get("/v1/models")
    async def models():
        ids = await anyio.to_thread.run_sync(backend.model_ids)
        return {"object": "list", "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "folio"} for i in ids]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        req = await read_json(request, EmbeddingRequest)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or len(texts) > MAX_EMBED_INPUTS:
            raise ApiError(400, f"input takes 1 to {MAX_EMBED_INPUTS} strings.", param="input")
        if any(not t for t in texts):
            raise ApiError(400, "input strings must not be empty.", param="input")
        name = await anyio.to_thread.run_sync(backend.embedder_name)
        if req.model not in (FOLIO_MODEL, name):
            raise ApiError(404, f"Embeddings come from the library's embedder: use model "
                                f"'{FOLIO_MODEL}' or '{name}'.", param="model",
                           code="model_not_found")
        vectors, tokens = await anyio.to_thread.run_sync(backend.embed, texts)
        if req.dimensions is not None and req.dimensions != len(vectors[0]):
            raise ApiError(400, f"This embedder gives {len(vectors[0])} dimensions.",
                           param="dimensions")
        data = []
        for i, v in enumerate(vectors):
            if req.encoding_format == "base64":
                value: Any = base64.b64encode(v.astype("<f4").tobytes()).decode()
            else:
                value = [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = await read_json(request, ChatRequest)
        overrides = req.overrides()
        messages = [m.model_dump() for m in req.messages]
        try:
            await anyio.to_thread.run_sync(backend.check_model, req.model)
            from app.server.backend import split_conversation

            split_conversation(messages)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), param=exc.param, code=exc.code) from None
        except BadRequest as exc:
            raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
        try:
            place = app.state.turns.reserve()
        except QueueFull as exc:
            raise ApiError(429, f"Folio is busy: {exc}. Try again shortly.",
                           kind="rate_limit_error", code="queue_full",
                           headers={"Retry-After": "1"}) from None
        gen = Generation(backend, req.model, messages, overrides)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if req.stream:
            usage_wanted = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _stream(gen, place, cid, created, req.model, usage_wanted),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                background=BackgroundTask(_finish, gen, place, cid))
        return await _complete(request, gen, place, cid, created, req.model)

    async def _finish(gen: Generation, place, cid: str) -> None:
        """After an answer, however it ended: the model stopped, the turn given back."""
        try:
            stopped = await gen.stop()
        finally:
            place.release()
        if stopped:
            log.info("%s: the client left; generation stopped %.3f s after", cid,
                     gen.stopped_after)

    async def _stream(gen: Generation, place, cid: str, created: int, model: str,
                      usage_wanted: bool):
        try:
            await place.wait()
            yield _chunk(cid, created, model, {"role": "assistant", "content": ""}, None)
            async for ev in gen.events():
                if isinstance(ev, Delta):
                    yield _chunk(cid, created, model, {"content": ev.text}, None)
                elif isinstance(ev, Final):
                    if ev.error:
                        body = {"error": {"message": ev.error, "type": "server_error",
                                          "param": None, "code": "generation_failed"}}
                        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
                        break
                    extra: dict[str, Any] = {}
                    if model == FOLIO_MODEL:
                        extra["sources"] = ev.sources
                    if usage_wanted:
                        extra["usage"] = _usage(ev)
                    reason = ev.finish_reason if ev.finish_reason in ("stop", "length") \
                        else "stop"
                    yield _chunk(cid, created, model, {}, reason, **extra)
            yield "data: [DONE]\n\n"
        finally:
            await _finish(gen, place, cid)

    async def _complete(request: Request, gen: Generation, place, cid: str, created: int,
                        model: str):
        parts: list[str] = []
        final = Final(finish_reason="error", error="The answer ended without a result.")
        gone = False
        try:
            async with anyio.create_task_group() as tg:
                async def watch() -> None:
                    nonlocal gone
                    while True:
                        message = await request.receive()
                        if message["type"] == "http.disconnect":
                            gone = True
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch)
                await place.wait()
                async for ev in gen.events():
                    if isinstance(ev, Delta):
                        parts.append(ev.text)
                    elif isinstance(ev, Final):
                        final = ev
                tg.cancel_scope.cancel()
        finally:
            await _finish(gen, place, cid)
        if gone:
            return error_response(499, "The client closed the request.", code="client_closed")
        if final.error:
            return error_response(500, final.error, kind="server_error",
                                  code="generation_failed")
        body: dict[str, Any] = {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": "".join(parts).strip()},
                         "finish_reason": final.finish_reason
                         if final.finish_reason in ("stop", "length") else "stop"}],
            "usage": _usage(final),
        }
        if model == FOLIO_MODEL:
            body["sources"] = final.sources
        return JSONResponse(body)

    return Guard(app, api_key, max_body)
