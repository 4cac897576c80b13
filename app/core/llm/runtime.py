"""The local LLM runtime: one GGUF model in llama.cpp, driven from one worker thread.

llama.cpp contexts are not thread-safe, and a desktop app calls the model from the UI thread,
the chat engine and background jobs. So `LLMRuntime` owns one daemon thread that holds the only
reference to the loaded `Llama`; every public method turns into a job on that thread's queue and
waits for (or streams) the result. Calls from any thread are serialised; there is never a second
model in memory (switching frees the old one before the new one loads).

Generation is a generator of events (`Token`, then one `Done`) that the caller iterates on its
own thread while the worker produces into a queue. The prompt is evaluated in full batches, as
plain llama.cpp does (slicing it small to check a cancel flag cost ~40% of prompt speed), and
llama.cpp's abort callback checks the cancel flag while a batch is computed, so a cancel lands
within milliseconds even in a long prompt; between tokens the flag is checked too. The model
stays usable after a cancel: the KV cache keeps the completed batches, and the next prompt
reuses the longest common prefix instead of starting over.

llama-cpp-python's own compilation of chat templates is switched off; a template that fails or
is refused leaves the model loaded with Folio's own prompt format, and a note says why.
Prompts built from documents are `Prompt`s (`prompt_parts.py`): template text is tokenized with
control tokens parsed, document and chat text without, and the ids are spliced, so no spelling
in a document ever becomes a control token (`LLMRuntime._parts_tokens`).
"""

from __future__ import annotations

import atexit
import codecs
import ctypes
import gc
import logging
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.llm.prompt_parts import Prompt
from app.core.llm.provider import (
    RANDOM_SEED,
    Done,
    FinishReason,
    GenerationSettings,
    LLMEvent,
    LoadSettings,
    ModelInfo,
    Token,
    default_threads,
)
from app.core.llm.templates import format_chat_for, screen_chat_template
from app.core.models.files import ModelError, is_gguf
from app.core.models.fit import check_fits

log = logging.getLogger(__name__)


_ISA = re.compile(r"\b([A-Z][A-Z0-9_]*) = 1\b")
_NOT_ISA = {"LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI", "ACCELERATE", "BLAS"}


def build_cpu_features() -> str:
    """The instruction sets the loaded llama.cpp build was compiled to use, e.g.
    "SSE3 SSSE3 AVX AVX2 F16C FMA BMI2" (from llama_print_system_info)."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    seen: list[str] = []
    for name in _ISA.findall(text):
        if name not in _NOT_ISA and name not in seen:
            seen.append(name)
    return " ".join(seen)


class _Utf8Stream:
    """Token pieces are bytes; a multi-byte character can straddle tokens. Bytes are held until
    they decode; a sequence that can never decode becomes U+FFFD (that is real garbage)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def pending(self) -> bool:
        return bool(self._decoder.getstate()[0])


class _StopFilter:
    """Emits text as it comes, except any tail that could be the start of a stop string, which
    is held until the next text shows whether it is. A stop string therefore always begins in
    the held text, never in what was emitted, and is never emitted itself."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was found)."""
        held = self.held + text
        if not self.stops:
            self.held = ""
            return held, False
        first = -1
        for s in self.stops:
            i = held.find(s)
            if i != -1 and (first == -1 or i < first):
                first = i
        if first != -1:
            self.held = ""
            return held[:first], True
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(held)), keep, -1):
                if held.endswith(s[:n]):
                    keep = n
                    break
        self.held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


# -- the runtime -------------------------------------------------------------------------------


class _Job:
    """A unit of work for the worker thread: run it, or fail it (runtime closed)."""

    __slots__ = ("fn", "on_fail")

    def __init__(self, fn: Callable[[], None], on_fail: Callable[[BaseException], None]) -> None:
        self.fn = fn
        self.on_fail = on_fail


_STOP_WORKER = object()
_live_runtimes: weakref.WeakSet[LLMRuntime] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    # The worker is a daemon thread: stop it before the interpreter tears llama.cpp down.
    for rt in list(_live_runtimes):
        try:
            rt.close(timeout=5.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class LLMRuntime:
    """One loaded model, owned by one worker thread. Thread-safe; satisfies LLMProvider."""

    def __init__(self, *, name: str = "folio-llm") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._info: ModelInfo | None = None
        self._active_cancel: threading.Event | None = None
        # Touched only on the worker thread:
        self._llm: Any = None
        self._abort_check: Callable[[], bool] | None = None
        self._abort_callback: Any = None  # the ctypes callback; kept alive with the model
        # The loaded vocabulary's control tokens, id -> spelling (see _control_tokens).
        self._controls: dict[int, str] = {}
        self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
        self._thread.start()
        _live_runtimes.add(self)

    # -- public API --------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def is_chat_model(self) -> bool:
        info = self._info
        return bool(info and info.is_chat_model)

    def load(self, path: Path | str, settings: LoadSettings | None = None) -> ModelInfo:
        """Load a GGUF model, freeing the current one first. On failure nothing is loaded."""
        settings = settings or LoadSettings()
        return self._call(lambda: self._load_now(Path(path).expanduser(), settings))

    def unload(self) -> None:
        self._call(self._free_model)

    def tokenize(self, text: str, add_bos: bool = False, special: bool = False) -> list[int]:
        """The model's own tokens for `text`. add_bos adds BOS only where the model uses one."""
        return self._call(lambda: self._tokenize_now(text, add_bos, special))

    def count_tokens(self, text: str | Prompt) -> int:
        """Tokens of a text (plain, no control tokens parsed), or of a Prompt exactly as
        generate() tokenizes it (without the BOS it may add)."""
        if isinstance(text, Prompt):
            return self._call(lambda: len(self._parts_tokens(self._require_llm(), text)))
        return len(self.tokenize(text))

    def control_token_spellings(self) -> tuple[str, ...]:
        """The loaded model's control-token spellings: what `Prompt.flatten` must escape when
        a prompt has to go out as one string."""
        return tuple(self._controls.values())

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        ids = [int(i) for i in ids]
        return self._call(lambda: self._detokenize_now(ids, special))

    def format_chat(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        template: str | None = None,
    ) -> tuple[str, list[str]]:
        """(prompt, stop strings) for the loaded model: its chat template, or the completion
        format when it has none. `template` overrides the model's (no model needed then)."""
        return format_chat_for(self._info, messages, add_generation_prompt, template)

    def generate(
        self,
        prompt: str | Prompt,
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
        *,
        parse_special: bool = True,
    ) -> Iterator[LLMEvent]:
        """Stream `Token` events and one final `Done`. Setting `cancel` (or abandoning the
        iterator) stops generation at the next slice or token; the model stays usable.
        A `Prompt` is tokenized part by part (`_parts_tokens`): control-token spellings count
        only in its trusted parts. For a str, parse_special: text like "<end_of_turn>" becomes
        the special token (what rendered chat templates need)."""
        if not isinstance(prompt, (str, Prompt)):
            raise TypeError("prompt must be a str or a Prompt")
        settings = settings or GenerationSettings()
        self._check_open()
        if self._info is None:
            raise ModelError("No model is loaded")
        return self._stream(prompt, settings, cancel, parse_special)

    def close(self, timeout: float = 30.0) -> None:
        """Stop any generation, free the model and stop the worker. Safe to call twice."""
        with self._lock:
            first = not self._closed
            self._closed = True
            active = self._active_cancel
        if active is not None:
            active.set()
        if first:
            self._jobs.put(_STOP_WORKER)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("The LLM worker did not stop within %.0f s", timeout)
        _live_runtimes.discard(self)

    def __enter__(self) -> LLMRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- job plumbing ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError("The LLM runtime is closed")

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise ModelError("The LLM runtime is closed")
            self._jobs.put(job)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the worker thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                box["error"] = exc
            finally:
                done.set()

        def fail(exc: BaseException) -> None:
            box["error"] = exc
            done.set()

        self._submit(_Job(run, fail))
        while not done.wait(0.5):
            if not self._thread.is_alive():
                raise ModelError("The LLM worker thread has stopped")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP_WORKER:
                break
            if self._closed:
                job.on_fail(ModelError("The LLM runtime is closed"))
                continue
            try:
                job.fn()
            except BaseException:  # noqa: BLE001 - the worker must outlive a bad job
                log.exception("LLM job failed")
        try:
            self._free_model()
        except Exception:  # noqa: BLE001
            log.exception("Freeing the model failed")
        # Fail whatever was queued behind the stop.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP_WORKER:
                job.on_fail(ModelError("The LLM runtime is closed"))

    # -- worker-side: loading ----------------------------------------------------------------

    def _free_model(self) -> None:
        llm, self._llm = self._llm, None
        self._info = None
        self._controls = {}
        if llm is not None:
            name = getattr(llm, "model_path", "?")
            try:
                llm.close()
            finally:
                del llm
                gc.collect()
            log.info("Unloaded %s", name)

    def _construct(self, path: Path, settings: LoadSettings, layers: int, threads: int) -> Any:
        import llama_cpp

        _no_library_chat_templates()
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_batch=settings.batch_size,
            n_ubatch=settings.batch_size,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=layers,
            seed=RANDOM_SEED,
            verbose=False,
        )

    def _load_now(self, path: Path, settings: LoadSettings) -> ModelInfo:
        if not path.is_file():
            raise ModelError(f"Model file not found: {path}")
        if not is_gguf(path):
            raise ModelError(
                f"{path.name} is not a GGUF model file (llama.cpp loads .gguf files only)"
            )
        # Free the old model before the new one allocates: two models may not fit in memory.
        self._free_model()

        import llama_cpp

        gpu_build = bool(llama_cpp.llama_supports_gpu_offload())
        requested = settings.n_gpu_layers
        layers = (-1 if gpu_build else 0) if requested == "auto" else int(requested)
        threads = settings.threads or default_threads()
        _check_header(path)
        if not settings.allow_oversize:
            # "Will not fit" before llama.cpp allocates (and the OS starts swapping or kills).
            check_fits(path, settings.n_ctx, layers, settings.batch_size)
        notes: list[str] = []
        started = time.perf_counter()
        try:
            llm = self._construct(path, settings, layers, threads)
        except Exception as exc:  # noqa: BLE001 - llama.cpp reports failures as ValueError etc.
            if layers == 0:
                raise ModelError(f"llama.cpp could not load {path.name}: {exc}") from exc
            log.warning("Loading %s on %s GPU layers failed (%s); using CPU", path, layers, exc)
            notes.append(f"GPU load failed: {exc}; running on CPU")
            gc.collect()
            try:
                llm = self._construct(path, settings, 0, threads)
            except Exception as exc2:  # noqa: BLE001
                raise ModelError(f"llama.cpp could not load {path.name}: {exc2}") from exc2
            layers = 0
        load_seconds = time.perf_counter() - started

        try:
            info = self._describe(llm, path, settings, layers, threads, gpu_build, notes)
        except Exception:
            llm.close()
            raise
        info = replace(info, load_seconds=load_seconds)
        info = _screened(info, settings.chat_template)
        try:
            self._controls = self._control_tokens(llm)
        except Exception:
            llm.close()
            raise
        self._llm = llm
        self._info = info
        self._install_abort_callback(llm)
        log.info(
            "Loaded %s (%s, n_ctx %d, %s, %d threads) in %.2f s%s",
            info.name,
            info.architecture,
            info.n_ctx,
            info.device,
            info.threads,
            load_seconds,
            "".join(f"; {n}" for n in info.notes),
        )
        return info

    def _describe(
        self,
        llm: Any,
        path: Path,
        settings: LoadSettings,
        layers: int,
        threads: int,
        gpu_build: bool,
        notes: list[str],
    ) -> ModelInfo:
        import llama_cpp

        meta: dict[str, str] = dict(getattr(llm, "metadata", None) or {})
        arch = meta.get("general.architecture") or "unknown"
        try:
            n_ctx_train = int(meta.get(f"{arch}.context_length", 0))
        except ValueError:
            n_ctx_train = 0
        n_ctx_train = n_ctx_train or int(llama_cpp.llama_model_n_ctx_train(llm.model))
        n_layer = int(llama_cpp.llama_model_n_layer(llm.model))
        if layers != 0 and not gpu_build:
            notes.append(
                f"GPU offload requested ({layers} layers) but this llama.cpp build has no GPU "
                "support; running on CPU"
            )
        offloaded = 0
        if layers != 0 and gpu_build:
            offloaded = n_layer + 1 if layers < 0 else min(layers, n_layer + 1)
        n_ctx = int(llm.n_ctx())
        if n_ctx_train and n_ctx > n_ctx_train:
            notes.append(
                f"context {n_ctx} exceeds the model's training context {n_ctx_train}; "
                "answers may degrade past it"
            )
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        return ModelInfo(
            path=path,
            name=meta.get("general.name") or path.stem,
            n_ctx=n_ctx,
            n_ctx_train=n_ctx_train,
            device="gpu" if offloaded else "cpu",
            gpu_layers=offloaded,
            threads=threads,
            chat_template=meta.get("tokenizer.chat_template") or None,
            bos_token=self._special_text(vocab, llama_cpp.llama_vocab_bos(vocab)),
            eos_token=self._special_text(vocab, llama_cpp.llama_vocab_eos(vocab)),
            architecture=arch,
            load_seconds=0.0,
            notes=tuple(notes),
            batch_size=min(settings.batch_size, n_ctx),
            n_params=int(llama_cpp.llama_model_n_params(llm.model)),
            size_bytes=path.stat().st_size,
            cpu_features=build_cpu_features(),
        )

    @staticmethod
    def _special_text(vocab: Any, token: int) -> str:
        if token is None or token < 0:
            return ""
        return _piece(vocab, token, special=True).decode("utf-8", errors="replace")

    # -- worker-side: tokens -----------------------------------------------------------------

    def _require_llm(self) -> Any:
        if self._llm is None:
            raise ModelError("No model is loaded")
        return self._llm

    def _tokenize_now(self, text: str, add_bos: bool, special: bool) -> list[int]:
        llm = self._require_llm()
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def _detokenize_now(self, ids: list[int], special: bool) -> str:
        import llama_cpp

        llm = self._require_llm()
        if not ids:
            return ""
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        arr = (llama_cpp.llama_token * len(ids))(*ids)
        size = max(64, len(ids) * 8)
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, special)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = -n
        raise ModelError("detokenize failed")

    def _prompt_tokens(self, llm: Any, prompt: str | Prompt, parse_special: bool) -> list[int]:
        import llama_cpp

        if isinstance(prompt, Prompt):
            tokens = self._parts_tokens(llm, prompt)
        else:
            tokens = list(llm.tokenize(prompt.encode("utf-8"), add_bos=False,
                                       special=parse_special))
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        bos = llama_cpp.llama_vocab_bos(vocab)
        # BOS once: a rendered chat template usually writes it as text already.
        wants_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab)) and bos >= 0
        if wants_bos and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def _parts_tokens(self, llm: Any, prompt: Prompt) -> list[int]:
        """The token ids of a Prompt: its trusted parts with control tokens parsed, its
        untrusted parts as plain text, spliced.

        llama.cpp tokenizes a string by cutting it at its special tokens and tokenizing each
        run of text between them on its own. This does the same, except that only trusted
        parts are searched for special tokens: the text between two control tokens (template
        text and document text together) is tokenized as one run, so the ids are those of
        the whole prompt (merges and the SentencePiece space prefix included), minus any
        control token the untrusted text spelled. Each untrusted character is tokenized once."""
        controls = self._controls
        out: list[int] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                out.extend(self._plain_tokens(llm, "".join(run)))
                run.clear()

        for part in prompt.parts:
            if not part.special:
                run.append(part.text)
                continue
            data = part.text.encode("utf-8")
            ids = llm.tokenize(data, add_bos=False, special=True)
            cursor = 0
            for tid in ids:
                spelling = controls.get(int(tid))
                if spelling is None:
                    continue
                raw = spelling.encode("utf-8")
                at = data.find(raw, cursor)
                if at < 0:
                    continue
                run.append(data[cursor:at].decode("utf-8", "replace"))
                flush()
                out.append(int(tid))
                cursor = at + len(raw)
            run.append(data[cursor:].decode("utf-8", "replace"))
        flush()
        return out

    def _plain_tokens(self, llm: Any, text: str, depth: int = 0) -> list[int]:
        """`text` as plain text: no control token, even one llama.cpp matches with special
        parsing off (user-defined tokens such as Gemma's <start_of_image>, or DeepSeek's
        <｜User｜> in some conversions). Such a spelling is cut in two and each half
        tokenized on its own, so it stays text. (A SentencePiece vocabulary that prefixes text
        with a space, Llama 2's, then reads a space at each cut; Gemma's and BPE ones do not.)"""
        if not text:
            return []
        ids = [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)]
        controls = self._controls
        bad = next((t for t in ids if t in controls), None)
        if bad is None:
            return ids
        spelling = controls[bad]
        pieces = text.split(spelling)
        if len(pieces) == 1 or depth > 32:  # not spelled out literally: drop it
            log.warning("A control token %r in document text was dropped", spelling)
            return [t for t in ids if t not in controls]
        half = max(1, len(spelling) // 2)
        out: list[int] = []
        for k, piece in enumerate(pieces):
            if k:
                out += self._plain_tokens(llm, spelling[:half], depth + 1)
                out += self._plain_tokens(llm, spelling[half:], depth + 1)
            out += self._plain_tokens(llm, piece, depth + 1)
        return out

    @staticmethod
    def _control_tokens(llm: Any) -> dict[int, str]:
        """id -> spelling of every token that document text must never produce: control
        tokens, and user-defined ones other than runs of whitespace (Gemma's "\n\n" and
        "    " are user-defined and belong to ordinary text). Single characters are left
        out: they cannot be split, and cannot spell a role."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
        user = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        get_attr = llama_cpp.llama_vocab_get_attr
        found: dict[int, str] = {}
        for tid in range(int(llama_cpp.llama_vocab_n_tokens(vocab))):
            attr = get_attr(vocab, tid)
            if not attr & (control | user):
                continue
            text = _piece(vocab, tid, special=True).decode("utf-8", errors="replace")
            if len(text) < 2 or (not attr & control and not text.strip()):
                continue
            found[tid] = text
        return found

    # -- worker-side: generation -------------------------------------------------------------

    def _stream(
        self,
        prompt: str | Prompt,
        settings: GenerationSettings,
        cancel: threading.Event | None,
        parse_special: bool,
    ) -> Iterator[LLMEvent]:
        events: queue.SimpleQueue[LLMEvent] = queue.SimpleQueue()
        abandon = threading.Event()  # set when the consumer stops iterating early

        def cancelled() -> bool:
            return abandon.is_set() or (cancel is not None and cancel.is_set()) or self._closed

        def run() -> None:
            with self._lock:
                self._active_cancel = abandon
            try:
                self._generate_now(prompt, settings, parse_special, cancelled, events.put)
            except BaseException as exc:  # noqa: BLE001 - always end with Done
                log.exception("Generation failed")
                events.put(Done("error", error=str(exc) or repr(exc)))
            finally:
                with self._lock:
                    self._active_cancel = None

        def fail(exc: BaseException) -> None:
            events.put(Done("error", error=str(exc)))

        try:
            self._submit(_Job(run, fail))
            while True:
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    if not self._thread.is_alive():
                        yield Done("error", error="The LLM worker thread has stopped")
                        return
                    continue
                yield event
                if isinstance(event, Done):
                    return
        finally:
            abandon.set()

    def _generate_now(
        self,
        prompt: str | Prompt,
        settings: GenerationSettings,
        parse_special: bool,
        cancelled: Callable[[], bool],
        emit: Callable[[LLMEvent], None],
    ) -> None:
        import llama_cpp

        started = time.perf_counter()
        llm = self._llm
        if llm is None:
            emit(Done("error", error="No model is loaded"))
            return
        tokens = self._prompt_tokens(llm, prompt, parse_special)
        n_prompt = len(tokens)
        n_ctx = int(llm.n_ctx())
        if n_prompt >= n_ctx:
            emit(
                Done(
                    "error",
                    prompt_tokens=n_prompt,
                    error=f"The prompt is {n_prompt} tokens but the context holds {n_ctx}",
                )
            )
            return

        def finish(reason: FinishReason, **kw: Any) -> None:
            emit(Done(reason, prompt_tokens=n_prompt, seconds=time.perf_counter() - started, **kw))

        if cancelled():
            finish("cancelled")
            return
        try:
            cached = self._prefill(llm, tokens, cancelled, seeded=settings.seed is not None)
        except Exception as exc:  # noqa: BLE001
            log.exception("Prompt evaluation failed")
            llm.reset()
            finish("error", error=f"Prompt evaluation failed: {exc}")
            return
        prefill_done = time.perf_counter()
        prefill_seconds = prefill_done - started
        if cached is None:
            finish("cancelled", prefill_seconds=prefill_seconds)
            return

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        llm.set_seed(settings.seed if settings.seed is not None else RANDOM_SEED)
        sampler = llm.generate(
            tokens,
            top_k=settings.top_k,
            top_p=settings.top_p,
            min_p=settings.min_p,
            temp=settings.temperature,
            repeat_penalty=settings.repeat_penalty,
        )
        text = _Utf8Stream()
        stops = _StopFilter(settings.stop)
        ids: list[int] = []
        ttft: float | None = None
        reason: FinishReason = "stop"
        stop_hit = False
        error: str | None = None
        try:
            while True:
                if cancelled():
                    reason = "cancelled"
                    break
                if ids and llm.n_tokens >= n_ctx:
                    reason = "length"  # the next token would not fit in the context
                    break
                token = int(next(sampler))
                if ttft is None:
                    ttft = time.perf_counter() - started
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                ids.append(token)
                piece = text.feed(_piece(vocab, token))
                if piece:
                    out, stop_hit = stops.feed(piece)
                    if out:
                        emit(Token(out))
                    if stop_hit:
                        reason = "stop"
                        break
                if len(ids) >= settings.max_tokens:
                    reason = "length"
                    break
        except Exception as exc:  # noqa: BLE001
            log.exception("Generation failed")
            llm.reset()
            reason, error = "error", f"Generation failed: {exc}"
        finally:
            sampler.close()
            _release_sampler(llm)
        if not stop_hit:
            rest = stops.flush()
            if rest:
                emit(Token(rest))
        end = time.perf_counter()
        decode_seconds = end - prefill_done
        finish(
            reason,
            completion_tokens=len(ids),
            ttft_seconds=ttft,
            tokens_per_second=len(ids) / decode_seconds if ids and decode_seconds > 0 else 0.0,
            prefill_seconds=prefill_seconds,
            cached_tokens=cached,
            error=error,
            token_ids=tuple(ids),
        )

    def _prefill(
        self, llm: Any, tokens: list[int], cancelled: Callable[[], bool], *, seeded: bool
    ) -> int | None:
        """Evaluate the prompt in full batches, as llama.cpp does on its own, while its abort
        callback watches `cancelled`: a cancel stops the batch being computed within a few
        milliseconds. Returns the number of prompt tokens reused from the KV cache, or None
        when cancelled (the batches completed so far stay cached for the next prompt).

        The logits depend on how the prompt was cut into batches (llama.cpp runs different
        kernels for different batch sizes), and a reused prefix was cut by an earlier call, so
        a seeded run starts from an empty cache: same seed, same prompt, same text."""
        reuse = 0 if seeded else self._reusable_prefix(llm, tokens)
        if reuse:
            llm.n_tokens = reuse
        else:
            llm.reset()
        if cancelled():
            return None
        self._abort_check = cancelled
        try:
            llm.eval(tokens[reuse:])
        except RuntimeError:
            if cancelled():  # llama_decode returned 2: aborted by the callback
                return None
            raise
        finally:
            self._abort_check = None
        return reuse

    def _install_abort_callback(self, llm: Any) -> None:
        """Let llama.cpp ask, while it computes a batch, whether to stop (CPU backend: between
        graph nodes; GPU backends: between batches)."""
        import llama_cpp

        def should_abort(_data: Any) -> bool:
            check = self._abort_check
            try:
                return bool(check and check())
            except Exception:  # noqa: BLE001 - never raise into C
                return False

        callback = llama_cpp.ggml_abort_callback(should_abort)
        try:
            llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)
        except Exception as exc:  # noqa: BLE001 - older bindings: cancel between tokens only
            log.warning("llama.cpp abort callback unavailable (%s)", exc)
            return
        self._abort_callback = callback

    @staticmethod
    def _reusable_prefix(llm: Any, tokens: list[int]) -> int:
        """How many leading prompt tokens the KV cache already holds and can keep. At least
        the last prompt token is always re-evaluated, to get fresh logits to sample from."""
        import llama_cpp
        import numpy as np

        n_cached = int(llm.n_tokens)
        if n_cached == 0 or len(tokens) < 2:
            return 0
        n = min(n_cached, len(tokens) - 1)
        cached = np.asarray(llm.input_ids[:n])
        wanted = np.asarray(tokens[:n], dtype=cached.dtype)
        mismatch = np.flatnonzero(cached != wanted)
        common = int(mismatch[0]) if mismatch.size else n
        if common == 0:
            return 0
        mem = llama_cpp.llama_get_memory(llm.ctx)
        if mem is None:
            return 0
        # A sliding-window cache that has dropped early positions cannot be rewound.
        if llama_cpp.llama_memory_seq_pos_min(mem, 0) > 0:
            return 0
        if not llama_cpp.llama_memory_seq_rm(mem, -1, common, -1):
            return 0  # recurrent models cannot drop a suffix
        return common


def _screened(info: ModelInfo, override: str | None) -> ModelInfo:
    """`info` with the chat template Folio will use: the model settings' one, else the
    GGUF's, each only when `screen_chat_template` passes it. A refused one is dropped with a
    note saying why (the model view shows notes); with none left, the model is prompted in
    Folio's own format, as a base model."""
    notes = list(info.notes)
    template = info.chat_template
    if template:
        reason = screen_chat_template(template, info.bos_token, info.eos_token)
        if reason:
            log.warning("The chat template of %s cannot be used: %s", info.name, reason)
            notes.append(f"The model's own chat template cannot be used ({reason}); Folio's "
                         "own prompt format is used instead")
            template = None
    if override and override.strip():
        reason = screen_chat_template(override, info.bos_token, info.eos_token)
        if reason:
            log.warning("The chat template in the settings of %s cannot be used: %s",
                        info.name, reason)
            instead = "the model's own template" if template else "Folio's own prompt format"
            notes.append(f"The chat template in the model's settings cannot be used ({reason}); "
                         f"{instead} is used instead")
        else:
            template = override
            notes.append("chat template overridden by the model settings")
    return replace(info, chat_template=template, notes=tuple(notes))


def _check_header(path: Path) -> None:
    """Refuse a file whose GGUF header is over Folio's caps (app/core/models/gguf.py) before
    llama.cpp reads it whole; other header problems are left to llama.cpp, which names them."""
    from app.core.models.gguf import HeaderTooLarge, cached_gguf_info

    try:
        cached_gguf_info(path)
    except HeaderTooLarge:
        raise
    except ModelError:
        pass


def _no_library_chat_templates() -> None:
    """Keep llama-cpp-python from compiling a model's chat templates.

    Building a `Llama` compiles every tokenizer.chat_template* in the file's metadata (for
    its create_chat_completion, which Folio never calls) with a Jinja environment that folds
    constants: {{ 'x' * 8000000000 }} builds an 8 GB string before Folio could look at the
    template. Folio renders templates itself, in the bounded sandbox, after screening them;
    so the library's formatter is replaced, process-wide, by one that compiles nothing."""
    from llama_cpp import llama_chat_format

    if getattr(llama_chat_format.Jinja2ChatFormatter, "folio_inert", False):
        return

    class InertChatFormatter:
        folio_inert = True

        def __init__(self, template: str = "", *args: Any, **kwargs: Any) -> None:
            self.template = template

        def to_chat_handler(self) -> Callable[..., Any]:
            def handler(*args: Any, **kwargs: Any) -> Any:
                raise ModelError("Folio renders chat templates itself (app/core/llm/templates.py)")

            return handler

    llama_chat_format.Jinja2ChatFormatter = InertChatFormatter  # type: ignore[misc,assignment]


def _release_sampler(llm: Any) -> None:
    """Free the sampler chain `Llama.generate` leaves in `llm._sampler`, now.

    A llama-cpp-python `LlamaSampler` is a reference cycle (its ExitStack callback closes over
    it), so dropping it frees nothing until Python's cyclic GC runs, and generating allocates
    too few Python objects for that to happen often. Each chain holds native buffers sized by
    the vocabulary (about 2.4 MB for the starter model's 262k tokens), so answers piled them
    up: RSS grew about 2.4 MB per answer until a full collection (benchmarks/bench_memory.py).
    """
    sampler = getattr(llm, "_sampler", None)
    llm._sampler = None
    if sampler is not None:
        try:
            sampler.close()
        except Exception:  # noqa: BLE001 - freeing must not turn an answer into an error
            log.exception("Freeing the sampler failed")


def _piece(vocab: Any, token: int, special: bool = False) -> bytes:
    """The bytes of one token (special tokens render as "" unless `special`)."""
    import llama_cpp

    size = 64
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n
    return b""
