"""The model host: llama.cpp runs in a child process that Folio starts and owns.

A crash in native code (a segfault in a CPU kernel, an abort on a bad model file, the kernel's
out-of-memory killer) ends only that child. The window, the chat history and the library stay;
the answer streamed so far is kept; the next request starts a new child and loads the same
model again. LM Studio, Jan and Ollama run their models out of process for the same reason.

`ModelHost` has the same API as `LLMRuntime` (it satisfies `LLMProvider`); the child runs an
`LLMRuntime` and serves it over a multiprocessing pipe:

    parent -> child   ("call", id, method, args)          load, unload, tokenize, detokenize...
                      ("generate", id, prompt, settings, parse_special)
                      ("cancel", id)                       stop that generation
                      ("exit",)
    child -> parent   ("ready", pid) once, ("alive",) every second (a heartbeat)
                      ("result", id, value) / ("error", id, exception)
                      ("event", id, Token | Done)

Each message is one pickle on the pipe (about 20 us a token, against 20-40 ms of decoding).
Cancel is forwarded within `POLL` seconds and lands through llama.cpp's abort callback, as in
process. A child that stops sending its heartbeat for `silence` seconds (a hang that holds the
GIL, a stopped process) is killed and reported; so is one that does not honour a cancel within
`cancel_grace` seconds (stuck inside native code). Unloading a model ends its child, so the
memory llama.cpp allocated goes back to the OS (glibc keeps freed heap in the process).

The child writes llama.cpp's own messages (stderr) to `model-host.log` in the log folder; after
a crash its last lines give the hint the user sees ("GGML_ASSERT ...").

Test-only switch: FOLIO_MODEL_HOST_CRASH, read by the child, makes it crash for real, e.g.
"segv@token:3" (SIGSEGV after the third token), "abort@load", "kill@prefill", "stop@load"
(SIGSTOP: a child that never answers). Never set outside tests.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.llm.prompt_parts import Prompt
from app.core.llm.provider import Done, GenerationSettings, LLMEvent, LoadSettings, ModelInfo, Token
from app.core.llm.templates import format_chat_for
from app.core.models.files import ModelError

log = logging.getLogger(__name__)

POLL = 0.02  # how often a waiting generator looks at its cancel flag (s)
HEARTBEAT = 1.0  # the child's sign of life (s)
DEFAULT_SILENCE = 45.0  # no sign of life for this long: the child is hung (s)
DEFAULT_CANCEL_GRACE = 5.0  # a cancel not honoured within this: stuck in native code (s)
CRASH_ENV = "FOLIO_MODEL_HOST_CRASH"
SILENCE_ENV = "FOLIO_MODEL_HOST_SILENCE"


class ModelProcessError(ModelError):
    """The model process stopped (crashed, was killed, or hung and was stopped)."""


# -- the child -----------------------------------------------------------------------------------


class _CrashSwitch:
    """FOLIO_MODEL_HOST_CRASH: "<how>@<when>", how in segv|abort|kill|stop, when in load,
    prefill or token:N. A real signal, so the parent sees what a real crash looks like."""

    SIGNALS = {"segv": signal.SIGSEGV, "abort": signal.SIGABRT, "kill": signal.SIGKILL,
               "stop": getattr(signal, "SIGSTOP", signal.SIGTERM)}

    def __init__(self, spec: str) -> None:
        how, _, when = spec.partition("@")
        self.signal = self.SIGNALS.get(how)
        self.when, _, n = when.partition(":")
        self.after = int(n) if n.isdigit() else 0

    def fire(self, when: str, count: int = 0) -> None:
        if self.signal is not None and when == self.when and count >= self.after:
            sys.stderr.write(f"model host: test crash {self.signal!r} at {when}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), self.signal)
            time.sleep(5)  # a stopped process is continued by nothing; others are gone by now


def _child_main(conn: Any, log_path: str | None) -> None:
    """The child's whole life: serve one LLMRuntime until "exit" or the pipe closes."""
    if log_path:
        try:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)  # llama.cpp writes to fd 2 directly
            os.close(fd)
            sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace")
        except OSError:
            pass
    try:  # a Ctrl+C in the terminal goes to the whole group: the parent decides, not us
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    import faulthandler

    faulthandler.enable(sys.stderr)
    from app.core.llm.runtime import LLMRuntime

    crash = _CrashSwitch(os.environ.get(CRASH_ENV, ""))
    runtime = LLMRuntime(name="folio-llm-child")
    send_lock = threading.Lock()
    cancels: dict[int, threading.Event] = {}
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stopping = threading.Event()

    def send(msg: tuple) -> None:
        with send_lock:
            conn.send(msg)

    def heartbeat() -> None:
        while not stopping.wait(HEARTBEAT):
            try:
                send(("alive",))
            except (OSError, EOFError, ValueError):
                return

    def run_call(rid: int, method: str, args: tuple) -> None:
        try:
            if method == "load":
                crash.fire("load")
            value = getattr(runtime, method)(*args)
            send(("result", rid, value))
        except Exception as exc:  # noqa: BLE001 - the parent re-raises it
            send(("error", rid, _picklable(exc)))

    def run_generate(rid: int, prompt: str, settings: GenerationSettings,
                     parse_special: bool) -> None:
        cancel = cancels.setdefault(rid, threading.Event())
        count = 0
        try:
            crash.fire("prefill")
            for event in runtime.generate(prompt, settings, cancel, parse_special=parse_special):
                send(("event", rid, event))
                if isinstance(event, Token):
                    count += 1
                    crash.fire("token", count)
        except Exception as exc:  # noqa: BLE001 - always end the stream with a Done
            send(("event", rid, Done("error", error=str(exc) or repr(exc))))
        finally:
            cancels.pop(rid, None)

    def worker() -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            job()

    threading.Thread(target=heartbeat, name="folio-host-heartbeat", daemon=True).start()
    work = threading.Thread(target=worker, name="folio-host-worker", daemon=True)
    work.start()
    send(("ready", os.getpid()))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone
            kind = msg[0]
            if kind == "exit":
                break
            if kind == "cancel":
                cancels.setdefault(msg[1], threading.Event()).set()
            elif kind == "call":
                _, rid, method, args = msg
                jobs.put(lambda rid=rid, method=method, args=args: run_call(rid, method, args))
            elif kind == "generate":
                _, rid, prompt, settings, parse_special = msg
                cancels.setdefault(rid, threading.Event())
                jobs.put(lambda rid=rid, p=prompt, s=settings, ps=parse_special:
                         run_generate(rid, p, s, ps))
    finally:
        # Asked to exit (unload, switch, close) or the parent is gone: stop what runs, give a
        # cancelled generation a moment to end cleanly, then leave. No need to free the model
        # first: the process's exit returns all of its memory, and a load in progress (which
        # cannot be interrupted) would only delay the exit.
        stopping.set()
        for ev in list(cancels.values()):
            ev.set()
        jobs.put(None)
        work.join(2)
        try:
            conn.close()
        finally:
            sys.stderr.flush()
            os._exit(0)


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a ModelError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return ModelError(str(exc) or repr(exc))


# -- the parent ----------------------------------------------------------------------------------


def describe_exit(exitcode: int | None) -> str:
    """"signal 11 (SIGSEGV)" / "exit code 3" for a multiprocessing exit code."""
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown"
        return f"signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


def crash_hint(exitcode: int | None, log_tail: str) -> str:
    """What the user can do about it, where there is something to say."""
    last = next((ln.strip() for ln in reversed(log_tail.splitlines())
                 if ln.strip() and "test crash" not in ln), "")
    sig = -exitcode if exitcode is not None and exitcode < 0 else None
    if sig == signal.SIGKILL:
        return ("Something killed it, most often the system running out of memory: try a "
                "smaller model or a shorter context in the model's settings.")
    if sig == getattr(signal, "SIGILL", None):
        return ("llama.cpp used an instruction this CPU does not have: reinstall Folio's "
                "portable build (make install).")
    if sig == signal.SIGABRT and last:
        return f"llama.cpp stopped itself: {last[:300]}"
    if sig in (signal.SIGSEGV, getattr(signal, "SIGBUS", None)):
        return ("A crash inside llama.cpp: the model file may be damaged or of a kind this "
                "build does not support. Folio started a fresh model process for the next "
                "question.")
    return ""


# What Folio's portable llama.cpp build needs (packaging/install_deps.py's baseline).
REQUIRED_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2")


def missing_cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The instruction sets the llama.cpp build needs that this CPU lacks (Linux x86-64 only;
    elsewhere, or when /proc/cpuinfo cannot be read, an empty list: let llama.cpp try)."""
    if cpuinfo is None:
        import platform

        if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
            return []
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text("utf-8", "replace")
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return [f for f in REQUIRED_CPU_FLAGS if f not in flags]
    return []


def _default_log_path() -> Path | None:
    try:
        from app.core.base.paths import log_dir, make_private_dir

        folder = make_private_dir(log_dir())
        return folder / "model-host.log"
    except Exception:  # noqa: BLE001 - logging is a help, never a reason to fail
        return None


class _Pending:
    """One request in flight: a call waiting for its result, or a generation's event queue."""

    __slots__ = ("events", "cancel_sent")

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.cancel_sent: float | None = None


class _Child:
    """One child process and the thread that reads its pipe."""

    def __init__(self, host: ModelHost) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        log_path = host.log_path
        self.proc = ctx.Process(target=_child_main, name="folio-model-host", daemon=True,
                                args=(child_conn, str(log_path) if log_path else None))
        self.log_path = log_path
        self.log_start = _file_size(log_path)
        self.proc.start()
        child_conn.close()  # else the parent holds the child's end open and never sees EOF
        self.pid = self.proc.pid
        self.host = weakref.ref(host)
        self.pending: dict[int, _Pending] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.last_sign = time.monotonic()
        self.ready = threading.Event()
        self.dead_reason: str | None = None  # set once, when the child is gone
        self.killed_because: str | None = None
        self.stopping = False  # asked to exit (unload, switch, close): not a crash
        self.reader = threading.Thread(target=self._read, name="folio-host-reader", daemon=True)
        self.reader.start()

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    def send(self, msg: tuple) -> None:
        with self.send_lock:
            self.conn.send(msg)

    def kill(self, because: str) -> None:
        """Stop the child now (SIGKILL); the reader reports `because` to every request."""
        if self.killed_because is None:
            self.killed_because = because
        try:
            self.proc.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _read(self) -> None:
        silence = self.host_silence()
        while True:
            try:
                if not self.conn.poll(0.25):
                    if time.monotonic() - self.last_sign > silence and self.proc.is_alive():
                        self.kill(f"it stopped answering (no sign of life for {silence:.0f} s)")
                    continue
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            self.last_sign = time.monotonic()
            kind = msg[0]
            if kind == "alive":
                continue
            if kind == "ready":
                self.ready.set()
                continue
            with self.lock:
                pending = self.pending.get(msg[1])
            if pending is not None:
                pending.events.put(msg)
        self._died()

    def host_silence(self) -> float:
        host = self.host()
        return host.silence if host is not None else DEFAULT_SILENCE

    def _died(self) -> None:
        self.proc.join(5)
        code = self.proc.exitcode
        how = describe_exit(code)
        if self.stopping:  # asked to exit (killed only if it was slow to): not a crash
            reason = "The model was unloaded."
        elif self.killed_because:
            reason = f"The model process was stopped: {self.killed_because}."
        else:
            reason = f"The model process stopped: {how}."
            hint = crash_hint(code, self.log_tail())
            if hint:
                reason += " " + hint
        self.dead_reason = reason
        self.ready.set()
        if not _exiting:  # at exit, logging may already be shut down
            level = logging.INFO if reason == "The model was unloaded." else logging.WARNING
            log.log(level, "%s (pid %s, %s)", reason, self.pid, how)
        with self.lock:
            waiting = list(self.pending.values())
        for pending in waiting:
            pending.events.put(("dead", None, reason))
        try:
            self.conn.close()
        except OSError:
            pass
        host = self.host()
        if host is not None:
            host._child_died(self, reason)

    def log_tail(self, limit: int = 4000) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(self.log_start, _file_size(self.log_path) - limit))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float) -> None:
        """Ask the child to exit; kill it when it does not within `timeout`."""
        self.stopping = True
        if self.alive:
            try:
                self.send(("exit",))
            except (OSError, ValueError):
                pass
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.kill("it did not exit when asked")
        self.reader.join(timeout + 5)


def _file_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


_live_hosts: weakref.WeakSet[ModelHost] = weakref.WeakSet()
_exiting = False


@atexit.register
def _close_all_at_exit() -> None:
    # Runs before multiprocessing's own exit handler (registered earlier), which would
    # terminate the children under the reader threads.
    global _exiting
    _exiting = True
    for host in list(_live_hosts):
        try:
            host.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class ModelHost:
    """One model, loaded in a child process. Thread-safe; satisfies LLMProvider.

    After the child dies the host keeps `info` (the model is still the one chosen) and the next
    request starts a new child and loads the model again; if that load fails too, `info` is
    cleared and the error says why."""

    def __init__(
        self,
        *,
        log_path: Path | str | None = "default",
        silence: float | None = None,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        start_timeout: float = 120.0,
    ) -> None:
        self.log_path = _default_log_path() if log_path == "default" else (
            Path(log_path) if log_path else None)
        env_silence = os.environ.get(SILENCE_ENV)
        self.silence = float(silence if silence is not None else env_silence or DEFAULT_SILENCE)
        self.cancel_grace = cancel_grace
        self.start_timeout = start_timeout
        self._lock = threading.RLock()  # one request set-up at a time; held while (re)starting
        self._ids = itertools.count(1)
        self._child: _Child | None = None
        self._info: ModelInfo | None = None
        self._loaded: tuple[Path, LoadSettings] | None = None
        self._closed = False
        self.last_crash: str | None = None  # why the last child died, for the UI and tests
        self.restarts = 0
        _live_hosts.add(self)

    # -- LLMProvider ------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def is_chat_model(self) -> bool:
        info = self._info
        return bool(info and info.is_chat_model)

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs (tests kill it; the model view shows it)."""
        child = self._child
        return child.pid if child is not None and child.alive else None

    def load(self, path: Path | str, settings: LoadSettings | None = None) -> ModelInfo:
        """Load a GGUF model in the child (starting one), freeing the current model first."""
        settings = settings or LoadSettings()
        path = Path(path).expanduser()
        lacking = missing_cpu_flags()
        if lacking:  # the child would die of SIGILL on the first decode: say why instead
            raise ModelError(
                "This computer's processor lacks " + ", ".join(f.upper() for f in lacking)
                + ", which Folio's llama.cpp build needs (x86-64 processors since about 2015 "
                "have them). Use a remote model server instead.")
        if not settings.allow_oversize:
            # "Will not fit" before a process starts and llama.cpp allocates (then the child
            # need not check again). The same estimate LLMRuntime makes in process.
            from app.core.models.fit import _gpu_offload_supported, check_fits

            wanted = settings.n_gpu_layers
            layers = ((-1 if _gpu_offload_supported() else 0) if wanted == "auto"
                      else int(wanted))
            check_fits(path, settings.n_ctx, layers, settings.batch_size)
            settings = replace(settings, allow_oversize=True)
        with self._lock:
            self._check_open()
            # A fresh process for every model: what the last one allocated goes back to the OS.
            self._stop_child()
            self._info = None
            self._loaded = None
            info = self._load_in(self._start_child(), path, settings)
            self._loaded = (path, settings)
            self._info = info
            return info

    def unload(self) -> None:
        """Free the model by ending its process, so its memory returns to the OS."""
        with self._lock:
            self._info = None
            self._loaded = None
            self._stop_child()

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        return self._call("tokenize", text, add_bos, special)

    def count_tokens(self, text: str | Prompt) -> int:
        if isinstance(text, Prompt):  # counted in the child, part by part, as generate does
            return self._call("count_tokens", text)
        return len(self.tokenize(text))

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        return self._call("detokenize", [int(i) for i in ids], special)

    def format_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        template: str | None = None,
    ) -> tuple[str, list[str]]:
        return format_chat_for(self._info, messages, add_generation_prompt, template)

    def generate(
        self,
        prompt: str | Prompt,
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
        *,
        parse_special: bool = True,
    ) -> Iterator[LLMEvent]:
        """Stream `Token` events and one final `Done`, as LLMRuntime.generate. If the child
        dies meanwhile, the stream ends with Done("error") saying how; the tokens already
        yielded stay the caller's. A Prompt crosses to the child as its parts."""
        if not isinstance(prompt, (str, Prompt)):
            raise TypeError("prompt must be a str or a Prompt")
        settings = settings or GenerationSettings()
        self._check_open()
        if self._info is None:
            raise ModelError("No model is loaded")
        return self._stream(prompt, settings, cancel, parse_special)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child (and any generation in it). Safe to call twice."""
        with self._lock:
            self._closed = True
            self._info = None
            self._loaded = None
            self._stop_child(timeout)
        _live_hosts.discard(self)

    def __enter__(self) -> ModelHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError("The model host is closed")

    def _start_child(self) -> _Child:
        child = _Child(self)
        if not child.ready.wait(self.start_timeout) or not child.alive:
            reason = child.dead_reason or "it did not start within {:.0f} s".format(
                self.start_timeout)
            child.kill(reason)
            raise ModelProcessError(f"The model process could not start: {reason}")
        self._child = child
        return child

    def _stop_child(self, timeout: float = 10.0) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop(timeout)

    def _child_died(self, child: _Child, reason: str) -> None:
        self.last_crash = reason

    def _load_in(self, child: _Child, path: Path, settings: LoadSettings) -> ModelInfo:
        try:
            return self._request(child, "load", path, settings)
        except ModelProcessError as exc:
            self._child = None
            raise ModelProcessError(f"{path.name} could not be loaded. {exc}") from None

    def _live_child(self) -> _Child:
        """The running child with the model loaded: a new one (and the model loaded again)
        after a crash."""
        with self._lock:
            self._check_open()
            child = self._child
            if child is not None and child.alive:
                return child
            self._child = None
            if self._loaded is None:
                raise ModelError("No model is loaded")
            path, settings = self._loaded
            log.info("Starting a new model process for %s", path.name)
            self.restarts += 1
            try:
                child = self._start_child()
                self._info = self._load_in(child, path, settings)
            except BaseException:
                self._info = None
                self._loaded = None
                raise
            return child

    def _register(self, child: _Child) -> tuple[int, _Pending]:
        rid = next(self._ids)
        pending = _Pending()
        with child.lock:
            child.pending[rid] = pending
        if not child.alive:  # died between the check and the registration
            pending.events.put(("dead", None, child.dead_reason))
        return rid, pending

    def _request(self, child: _Child, method: str, *args: Any) -> Any:
        rid, pending = self._register(child)
        try:
            try:
                child.send(("call", rid, method, args))
            except (OSError, ValueError):
                pass  # the reader reports the death
            msg = pending.events.get()
        finally:
            with child.lock:
                child.pending.pop(rid, None)
        if msg[0] == "result":
            return msg[2]
        if msg[0] == "error":
            raise msg[2]
        raise ModelProcessError(msg[2])

    def _call(self, method: str, *args: Any) -> Any:
        return self._request(self._live_child(), method, *args)

    def _stream(
        self,
        prompt: str,
        settings: GenerationSettings,
        cancel: threading.Event | None,
        parse_special: bool,
    ) -> Iterator[LLMEvent]:
        child = self._live_child()
        rid, pending = self._register(child)
        finished = False
        try:
            try:
                child.send(("generate", rid, prompt, settings, parse_special))
            except (OSError, ValueError):
                pass
            while True:
                try:
                    msg = pending.events.get(timeout=POLL)
                except queue.Empty:
                    self._watch_cancel(child, rid, pending, cancel)
                    continue
                if msg[0] == "dead":
                    finished = True
                    if pending.cancel_sent is not None:  # the user stopped it; it was stuck
                        yield Done("cancelled", error=msg[2])
                    else:
                        yield Done("error", error=msg[2])
                    return
                event = msg[2]
                if isinstance(event, Done):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            if not finished and child.alive:  # the consumer stopped iterating early
                try:
                    child.send(("cancel", rid))
                except (OSError, ValueError):
                    pass
            with child.lock:
                child.pending.pop(rid, None)

    def _watch_cancel(self, child: _Child, rid: int, pending: _Pending,
                      cancel: threading.Event | None) -> None:
        if cancel is None or not cancel.is_set():
            return
        now = time.monotonic()
        if pending.cancel_sent is None:
            pending.cancel_sent = now
            try:
                child.send(("cancel", rid))
            except (OSError, ValueError):
                pass
        elif now - pending.cancel_sent > self.cancel_grace:
            child.kill(f"it did not stop within {self.cancel_grace:.0f} s of being asked "
                       "(stuck inside llama.cpp)")


def system_cpu_features(timeout: float = 60.0) -> str:
    """The CPU features of the llama.cpp build, asked of a short-lived child (the parent never
    loads llama.cpp's kernels itself)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply_async(_cpu_features_in_child).get(timeout)


def _cpu_features_in_child() -> str:
    from app.core.llm.runtime import build_cpu_features

    return build_cpu_features()


__all__ = [
    "ModelHost",
    "ModelProcessError",
    "describe_exit",
    "crash_hint",
    "system_cpu_features",
]
