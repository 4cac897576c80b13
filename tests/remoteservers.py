"""Real loopback HTTP servers for the remote-provider tests: a small misbehaving
OpenAI-compatible server (each path prefix one behaviour), and `python -m llama_cpp.server` on
the starter model, a real OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunk(text: str | None = None, finish: str | None = None) -> bytes:
    event = {"choices": [{"index": 0, "delta": {"content": text} if text else {},
                          "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n".encode()


class FakeOpenAI:
    """ThreadingHTTPServer on 127.0.0.1. The base URL's first path segment picks the
    behaviour: /ok, /unauthorized, /limited, /hang, /cut, /malformed, /trickle (one token,
    then waits for `release`). Requests (path, headers, body) are kept in `requests`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.waiting = threading.Event()  # set when /hang or /trickle is holding a request
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                mode = self.path.strip("/").split("/")[0]
                getattr(owner, f"_{mode}")(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- behaviours ------------------------------------------------------------------------

    @staticmethod
    def _start_stream(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()

    def _ok(self, h) -> None:
        self._start_stream(h)
        for piece in ("Water ", "twice a week ", "[1]."):
            h.wfile.write(chunk(piece))
            h.wfile.flush()
        h.wfile.write(chunk(finish="stop"))
        h.wfile.write(b'data: {"choices": [], "usage": {"prompt_tokens": 42, '
                      b'"completion_tokens": 3}}\n\n')
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()

    @staticmethod
    def _error(h, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _unauthorized(self, h) -> None:
        self._error(h, 401, {"error": {"message": "Incorrect API key provided"}})

    def _limited(self, h) -> None:
        self._error(h, 429, {"error": {"message": "Rate limit reached"}},
                    {"Retry-After": "30"})

    def _hang(self, h) -> None:
        self.waiting.set()
        self.release.wait(60)

    def _cut(self, h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        data = chunk("Water the tomatoes ")
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)  # gone, mid-answer, without the last chunk
        h.close_connection = True

    def _malformed(self, h) -> None:
        self._start_stream(h)
        h.wfile.write(chunk("Partial "))
        h.wfile.write(b"data: {this is not json\n\n")
        h.wfile.write(chunk("never seen"))
        h.wfile.flush()

    def _trickle(self, h) -> None:
        self._start_stream(h)
        h.wfile.write(chunk("First "))
        h.wfile.flush()
        self.waiting.set()
        self.release.wait(60)


class LlamaServer:
    """`python -m llama_cpp.server` on the starter model, on a free loopback port."""

    def __init__(self, model: Path, n_ctx: int = 2048, api_key: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx),
               "--n_threads", "1", "--verbose", "false", "--chat_format", "gemma"]
        if api_key:
            cmd += ["--api_key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def wait_ready(self, deadline_s: float = 300.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("llama_cpp.server exited: "
                                   + self.proc.stderr.read().decode(errors="replace")[-2000:])
            try:
                if httpx2.get(self.url + "/models", timeout=2.0).status_code in (200, 401):
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("llama_cpp.server did not start")

    def __enter__(self) -> LlamaServer:
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
