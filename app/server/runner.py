"""Running the API: its key, where it listens, and the server in the foreground (`folio
serve`) or in a thread of the window's process (the switch in Settings).

The key is generated once (`secrets`, 256 bits) and kept with the settings, which are written
with the owner's permissions only; `--api-key` overrides it for one run without storing it.
Loopback is the default; any other address is the user's explicit choice and is warned
about, because then other machines can reach the library with the key.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import threading

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def new_api_key() -> str:
    return "folio-" + secrets.token_urlsafe(32)


def stored_api_key(settings=None, *, create: bool = True) -> str:
    """The API key kept with the settings, made and saved the first time it is needed."""
    from app.core.settings import AppSettings

    settings = settings if settings is not None else AppSettings.load()
    if not settings.server_api_key and create:
        settings.server_api_key = new_api_key()
        settings.save()
    return settings.server_api_key


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """What to tell the user when the server listens beyond this machine, else None."""
    if is_loopback(host):
        return None
    return (f"listening on {host}, not only on this machine: other computers on the "
            "network can reach this server, and anyone with the API key can read your "
            "library and use your models. Use --host 127.0.0.1 to keep it local.")


def _config(app, host: str, port: int):
    import uvicorn

    # No access log (it would show every question's route, nothing more useful), no
    # "Server" header; uvicorn's own errors still reach the log.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          server_header=False, lifespan="off", timeout_graceful_shutdown=5)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow starts, so a taken port is said at
    once; port 0 gets a free one (`sock.getsockname()` tells which)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        # Listening now: a client that comes as soon as "ready" is printed waits in the
        # backlog until uvicorn accepts, rather than being refused.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve_on(app, sock: socket.socket) -> None:
    """Run on a bound socket until Ctrl+C (uvicorn handles SIGINT and SIGTERM in the main
    thread)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    try:
        uvicorn.Server(_config(app, host, port)).run(sockets=[sock])
    finally:
        sock.close()


class ServerThread:
    """The API in a daemon thread with its own event loop, for the window. `start` returns
    once the socket listens (or raises why it could not); `stop` waits for the thread."""

    def __init__(self, app, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        import uvicorn

        sock = bind(self.host, self.port)  # OSError (port in use) reaches the caller
        self.port = sock.getsockname()[1]
        self._server = server = uvicorn.Server(_config(self.app, self.host, self.port))

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - reported through `error`
                self.error = exc
                log.exception("the local server stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="folio-server", daemon=True)
        self._thread.start()
        waited = 0.0
        while not server.started and self._thread.is_alive() and waited < timeout:
            threading.Event().wait(0.02)
            waited += 0.02
        if not server.started:
            self.stop()
            raise RuntimeError(f"the local server did not start: {self.error or 'timed out'}")

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._server = None
