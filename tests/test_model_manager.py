"""The model manager: listing, adding, removing, settings, memory estimates, and downloads
against a real HTTP server on 127.0.0.1 (Range, dropped connections, 404, bad checksums, a
full disk, no network). In every failure case no half file appears among the models."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from ggufgen import CHATML, make_gguf

from app.core.models import catalog, download, fit
from app.core.models.starter import STARTER_MODEL_FILE
from app.core.models.download import DownloadDone, DownloadError, DownloadProgress
from app.core.models.files import ModelError
from app.core.models.manager import ModelManager, ModelSettings
from app.core.models.fit import WontFitError
from app.core.models.catalog import load_catalog

# -- a real HTTP server -------------------------------------------------------------------


class FileServer:
    """Serves files from disk with ETag, optional Range support (416 for a range past the
    end, as real servers answer), a 404 for unknown paths, and a mode that drops the
    connection after `drop_after` body bytes. `headers` are added to every file response;
    `redirects` maps a path to (target path, headers) answered with a 302, the way Hugging
    Face redirects to its CDN with `X-Linked-Etag` on the redirect; `status` answers every
    file request with that error. Records every request."""

    def __init__(self, files: dict[str, Path]):
        self.files = files
        self.range_support = True
        self.drop_after: int | None = None
        self.hide_length = False
        self.headers: dict[str, str] = {}
        self.redirects: dict[str, tuple[str, dict[str, str]]] = {}
        self.status: int | None = None
        self.etag: str | None = None  # None: size-mtime, like many servers
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0,
                          "status": 0}
                server.requests.append(record)
                if self.path in server.redirects:
                    target, extra = server.redirects[self.path]
                    record["status"] = 302
                    self.send_response(302)
                    self.send_header("Location", server.url(target))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                src = server.files.get(self.path)
                if src is None:
                    record["status"] = 404
                    self.send_error(404, "Not Found")
                    return
                if server.status is not None:
                    record["status"] = server.status
                    self.send_error(server.status)
                    return
                size = src.stat().st_size
                etag = server.etag or f'"{size}-{src.stat().st_mtime_ns}"'
                start = 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and server.range_support and (if_range in (None, etag)):
                    start = int(rng.split("=")[1].split("-")[0])
                if start >= size > 0:
                    record["status"] = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                if server.range_support:
                    self.send_header("Accept-Ranges", "bytes")
                if server.hide_length:  # the body ends when the connection closes
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(size - start))
                self.send_header("ETag", etag)
                for k, v in server.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                record["status"] = 206 if start else 200
                limit = server.drop_after
                with src.open("rb") as f:
                    f.seek(start)
                    while block := f.read(256 * 1024):
                        if limit is not None and record["sent"] + len(block) > limit:
                            block = block[: limit - record["sent"]]
                            self.wfile.write(block)
                            record["sent"] += len(block)
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        try:
                            self.wfile.write(block)
                        except (BrokenPipeError, ConnectionResetError):
                            return  # the client paused
                        record["sent"] += len(block)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{name}"

    def sent(self) -> int:
        return sum(r["sent"] for r in self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tiny(tmp_path):
    """A real 3 MB GGUF (chat template, licence) to download."""
    (tmp_path / "src").mkdir()
    return make_gguf(tmp_path / "src" / "tiny-chat.gguf", chat_template=CHATML,
                     license="mit", tensor_mb=3)


@pytest.fixture
def server(tiny):
    srv = FileServer({"/models/tiny-chat.gguf": tiny, "/page.html": Path(__file__)})
    yield srv
    srv.close()


@pytest.fixture
def manager(tmp_path):
    return ModelManager(tmp_path / "models")


@pytest.fixture
def cpu_only(monkeypatch):
    """Estimates as on a CPU-only llama.cpp build, whatever this machine's build is."""
    monkeypatch.setattr(fit, "_gpu_offload_supported", lambda: False)


GB = 1024 ** 3


@pytest.fixture
def gpu(monkeypatch):
    """A llama.cpp build with a GPU backend on a machine with 8 GB of RAM free; the test
    sets the free VRAM (None: nvidia-smi gave no figure)."""
    monkeypatch.setattr(fit, "_gpu_offload_supported", lambda: True)
    monkeypatch.setattr(fit, "_unified_memory", lambda: False)
    monkeypatch.setattr(fit, "available_ram", lambda: 8 * GB)
    vram: dict[str, int | None] = {"free": 8 * GB}
    monkeypatch.setattr(fit, "_free_vram", lambda read=True: vram["free"])
    return vram


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def models_on_disk(m: ModelManager) -> list[str]:
    """What is among the models: every visible file in the folder."""
    if not m.models_dir.is_dir():
        return []
    return sorted(p.name for p in m.models_dir.iterdir() if not p.name.startswith("."))


def drain(gen):
    events = list(gen)
    done = [e for e in events if isinstance(e, DownloadDone)]
    return events, (done[0] if done else None)


def stop_after(blocks: int):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > blocks

    return should_stop


# -- downloads ------------------------------------------------------------------------------


def test_download_verifies_and_lists_the_model(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    events, done = drain(manager.download(url, sha256=sha(tiny)))
    assert done is not None and done.path == manager.models_dir / "tiny-chat.gguf"
    assert sha(done.path) == sha(tiny)
    progress = [e for e in events if isinstance(e, DownloadProgress)]
    assert progress[-1].stage == "verifying" and progress[-1].done_bytes == tiny.stat().st_size
    assert all(e.total_bytes == tiny.stat().st_size for e in progress)
    assert done.entry.info.has_chat_template and done.entry.info.license == "mit"
    assert [e.name for e in manager.list()] == ["tiny-chat.gguf"]
    assert models_on_disk(manager) == ["tiny-chat.gguf", "tiny-chat.gguf.sha256"]
    assert manager.partial_downloads() == []
    # Downloading it again is refused: it is already there.
    with pytest.raises(DownloadError, match="already in the models folder"):
        drain(manager.download(url))


def test_pause_then_resume_uses_range(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    size = tiny.stat().st_size
    events, done = drain(manager.download(url, should_stop=stop_after(1)))
    assert done is None and events[-1].stage == "paused"
    assert models_on_disk(manager) == []  # the partial is hidden in .downloads
    [partial] = manager.partial_downloads()
    assert partial.url == url and 0 < partial.done_bytes < size
    assert partial.total_bytes == size and partial.filename == "tiny-chat.gguf"

    events, done = drain(manager.download(url, sha256=sha(tiny)))
    assert done is not None and sha(done.path) == sha(tiny)
    assert server.requests[-1]["range"] == f"bytes={partial.done_bytes}-"
    assert server.requests[-1]["status"] == 206
    assert events[0].resumed_from == partial.done_bytes
    assert server.sent() < 2 * size
    assert manager.partial_downloads() == []


def test_resume_after_restart_with_a_new_manager(tmp_path, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    first = ModelManager(tmp_path / "models")
    drain(first.download(url, sha256=sha(tiny), should_stop=stop_after(2)))
    del first
    again = ModelManager(tmp_path / "models")  # "after the app restarted"
    [partial] = again.partial_downloads()
    assert partial.sha256 == sha(tiny)  # remembered from the first attempt
    _, done = drain(again.download(url))  # no sha256 given this time: the sidecar has it
    assert done is not None and sha(done.path) == sha(tiny)
    assert server.requests[-1]["range"] == f"bytes={partial.done_bytes}-"
    assert server.sent() < 2 * tiny.stat().st_size


def test_server_ignoring_range_restarts_from_zero(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    drain(manager.download(url, should_stop=stop_after(1)))
    server.range_support = False
    events, done = drain(manager.download(url, sha256=sha(tiny)))
    assert server.requests[-1]["range"] is not None and server.requests[-1]["status"] == 200
    assert events[0].resumed_from == 0
    assert done is not None and sha(done.path) == sha(tiny)


def test_dropped_connection_keeps_the_partial_and_resumes(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    size = tiny.stat().st_size
    server.drop_after = size // 2
    with pytest.raises(DownloadError, match="dropped after .* run the download again"):
        drain(manager.download(url, sha256=sha(tiny)))
    assert models_on_disk(manager) == []
    [partial] = manager.partial_downloads()
    assert partial.done_bytes == size // 2 and "dropped" in partial.error
    server.drop_after = None
    _, done = drain(manager.download(url, sha256=sha(tiny)))
    assert done is not None and sha(done.path) == sha(tiny)
    assert server.requests[-1]["range"] == f"bytes={size // 2}-"


def test_404_leaves_nothing(manager, server):
    url = server.url("/models/missing.gguf")
    with pytest.raises(DownloadError, match="HTTP 404"):
        drain(manager.download(url))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_wrong_checksum_deletes_the_download(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    with pytest.raises(DownloadError, match="failed its checksum.*deleted"):
        drain(manager.download(url, sha256="0" * 64))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    assert not list(manager.downloads_dir.iterdir())


def test_a_web_page_is_not_a_model(manager, server):
    with pytest.raises(DownloadError, match="not a usable GGUF"):
        drain(manager.download(server.url("/page.html"), filename="page.gguf"))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_no_network_connection_refused(manager):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="connection was refused"):
        drain(manager.download(f"http://127.0.0.1:{port}/x.gguf"))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_bad_arguments_are_refused(manager):
    with pytest.raises(DownloadError, match="not an http"):
        manager.download("file:///etc/passwd")
    with pytest.raises(DownloadError, match="not a sha256"):
        manager.download("http://127.0.0.1/x.gguf", sha256="abc")
    with pytest.raises(ModelError, match="not a valid model file name"):
        manager.download("http://127.0.0.1/x.gguf", filename="../../evil.gguf")


def test_cancel_deletes_the_partial(manager, server):
    url = server.url("/models/tiny-chat.gguf")
    drain(manager.download(url, should_stop=stop_after(1)))
    assert manager.partial_downloads()
    manager.cancel_download(url)
    assert manager.partial_downloads() == [] and not list(manager.downloads_dir.iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: the disk fills up during a 3 MB download."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full(small_disk, server, tiny):
    m = ModelManager(small_disk / "models")
    url = server.url("/models/tiny-chat.gguf")
    with pytest.raises(DownloadError, match="the disk is full before the end"):
        drain(m.download(url, sha256=sha(tiny)))  # told by the Content-Length
    assert models_on_disk(m) == [] and m.partial_downloads() == []
    server.hide_length = True  # no size given: the disk fills up while writing
    with pytest.raises(DownloadError, match="the disk is full after"):
        drain(m.download(url, sha256=sha(tiny)))
    assert models_on_disk(m) == []
    m.cancel_download(url)
    # Adding (copying) a model that does not fit leaves no temp file either.
    with pytest.raises(ModelError, match="the disk is full"):
        m.add(tiny)
    assert models_on_disk(m) == []
    assert not [p for p in m.models_dir.iterdir() if p.name.endswith(".partial")]


def test_real_starter_model_download_with_pause(tmp_path, starter_model):
    """One download of the real 253 MB starter GGUF, paused and resumed, checked against the
    sha256 its package publishes."""
    from app.core.models.starter import _starter_package

    expected, _ = _starter_package()
    srv = FileServer({"/gemma.gguf": starter_model})
    try:
        m = ModelManager(tmp_path / "models")
        url = srv.url("/gemma.gguf")
        drain(m.download(url, sha256=expected, filename=STARTER_MODEL_FILE,
                         should_stop=stop_after(100)))
        [partial] = m.partial_downloads()
        assert 0 < partial.done_bytes < starter_model.stat().st_size
        _, done = drain(m.download(url, sha256=expected, filename=STARTER_MODEL_FILE))
        assert done is not None and done.path.stat().st_size == starter_model.stat().st_size
        assert done.entry.info.architecture == "gemma3" and done.entry.is_starter
        assert srv.requests[-1]["range"] == f"bytes={partial.done_bytes}-"
        assert srv.sent() < 2 * starter_model.stat().st_size
    finally:
        srv.close()


# -- the models folder ----------------------------------------------------------------------


def test_list_reads_headers_and_shows_broken_files(manager, tmp_path):
    manager.models_dir.mkdir()
    make_gguf(manager.models_dir / "chat.gguf", chat_template=CHATML, license="mit")
    make_gguf(manager.models_dir / "base.gguf")
    (manager.models_dir / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 10)
    (manager.models_dir / "notes.txt").write_text("not a model")
    (manager.models_dir / ".downloads").mkdir()
    (manager.models_dir / ".downloads" / "x.part").write_bytes(b"GGUF")
    entries = {e.name: e for e in manager.list()}
    assert set(entries) == {"base.gguf", "broken.gguf", "chat.gguf"}
    assert entries["chat.gguf"].info.has_chat_template and entries["chat.gguf"].error is None
    assert not entries["base.gguf"].info.has_chat_template
    assert entries["broken.gguf"].info is None and "truncated" in entries["broken.gguf"].error
    assert entries["chat.gguf"].to_json()["info"]["license"] == "mit"
    json.dumps([e.to_json() for e in entries.values()])  # the CLI prints this


def test_add_copy_link_refusals_and_clash(manager, tmp_path):
    src = make_gguf(tmp_path / "m.gguf", chat_template=CHATML)
    entry = manager.add(src)
    assert entry.name == "m.gguf" and not entry.is_link
    assert sha(manager.models_dir / "m.gguf") == sha(src)
    assert manager.add(src).name == "m.gguf"  # the same bytes again: nothing to do

    (tmp_path / "other").mkdir()
    other = make_gguf(tmp_path / "other" / "m.gguf", blocks=3)
    with pytest.raises(ModelError, match="different model named m.gguf"):
        manager.add(other)

    linked = manager.add(make_gguf(tmp_path / "linked.gguf"), link=True)
    assert linked.is_link and (manager.models_dir / "linked.gguf").resolve() == \
        (tmp_path / "linked.gguf").resolve()

    junk = tmp_path / "photo.gguf"
    junk.write_bytes(b"\x89PNG\r\n" + b"\0" * 100)
    with pytest.raises(ModelError, match="photo.gguf is not a GGUF model file"):
        manager.add(junk)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(ModelError, match="cut.gguf is truncated"):
        manager.add(cut)
    assert sorted(e.name for e in manager.list()) == ["linked.gguf", "m.gguf"]
    assert not [p for p in manager.models_dir.iterdir() if p.name.startswith(".")]


def test_remove_default_and_settings(manager, tmp_path):
    manager.add(make_gguf(tmp_path / "a.gguf"))
    target = make_gguf(tmp_path / "b.gguf")
    manager.add(target, link=True)
    assert manager.default_name() == STARTER_MODEL_FILE
    manager.set_default("a.gguf")
    assert manager.default_name() == "a.gguf" and manager.get("a.gguf").is_default
    s = ModelSettings(context_length=1024, threads=1, system_prompt="Be brief.")
    manager.save_settings("a.gguf", s)
    assert ModelManager(manager.models_dir).settings_for("a.gguf") == s  # persisted
    with pytest.raises(ModelError, match="context_length"):
        manager.save_settings("a.gguf", ModelSettings(context_length=10))
    with pytest.raises(ModelError, match="no model"):
        manager.set_default("nope.gguf")

    manager.remove("a.gguf")
    assert manager.default_name() == STARTER_MODEL_FILE
    assert manager.settings_for("a.gguf") == ModelSettings()
    manager.remove("b.gguf")  # a link: the link goes, the file it points to stays
    assert target.exists()
    assert manager.list() == []
    with pytest.raises(ModelError, match="no model"):
        manager.remove("b.gguf")


def test_used_by_chats(tmp_path):
    from app.core.chat.history import ChatStore

    store = ChatStore.for_library(tmp_path / "lib")
    try:
        m = ModelManager(tmp_path / "models", history=store)
        m.add(make_gguf(tmp_path / "a.gguf"))
        m.add(make_gguf(tmp_path / "b.gguf"))
        store.create_chat(model="a.gguf")
        store.create_chat(model="a.gguf")
        store.create_chat()  # follows the default
        counts = {e.name: e.used_by_chats for e in m.list()}
        assert counts == {"a.gguf": 2, "b.gguf": 0}
    finally:
        store.close()


# -- memory --------------------------------------------------------------------------------


def test_memory_estimate_formula(manager, starter_model, cpu_only):
    from app.core.models.gguf import cached_gguf_info

    info = cached_gguf_info(starter_model)
    est = manager.estimate_memory(info, context_length=1024)
    per_token = 2 * info.head_count_kv * (info.key_length + info.value_length)
    assert est.kv_cache_bytes == info.block_count * 1024 * per_token
    assert est.weights_bytes == starter_model.stat().st_size
    assert est.total_bytes == est.weights_bytes + est.kv_cache_bytes + est.overhead_bytes
    assert est.device == "cpu" and est.free_vram_bytes is None
    assert est.free_ram_bytes > 0 and est.fits and "needs about" in est.reason
    bigger = manager.estimate_memory(info, context_length=8192)
    assert bigger.kv_cache_bytes == 8 * est.kv_cache_bytes


def test_a_model_that_cannot_fit(manager, tmp_path, cpu_only):
    """80 layers with 8 KV heads: at a 16M-token context the KV cache alone is ~690 GB."""
    from app.core.models.gguf import cached_gguf_info

    manager.add(make_gguf(tmp_path / "big.gguf", blocks=80, embd=128, heads=8, heads_kv=8))
    info = cached_gguf_info(manager.models_dir / "big.gguf")
    est = manager.estimate_memory("big.gguf", context_length=1 << 24)
    assert est.kv_cache_bytes == 80 * (1 << 24) * 2 * 8 * (info.key_length + info.value_length)
    assert est.kv_cache_bytes > est.free_ram_bytes
    assert not est.fits and est.reason.startswith("will not fit")
    assert manager.estimate_memory("big.gguf", context_length=512).fits


def test_runtime_refuses_a_model_that_will_not_fit(starter_model, monkeypatch, cpu_only):
    from app.core.llm.runtime import LLMRuntime
    from app.core.llm.provider import LoadSettings

    monkeypatch.setattr(fit, "available_ram", lambda: 64 * 1024 * 1024)  # a 64 MB machine
    with LLMRuntime() as rt:
        with pytest.raises(WontFitError, match="will not fit.*--allow-oversize"):
            rt.load(starter_model, LoadSettings(n_ctx=1024))
        assert rt.info is None
        info = rt.load(starter_model, LoadSettings(n_ctx=1024, allow_oversize=True))
        assert info.n_ctx == 1024


# -- the catalog ---------------------------------------------------------------------------


def test_catalog_schema():
    from app.core.base.paths import resource_path

    raw = json.loads(resource_path("models_catalog.json").read_text("utf-8"))
    assert raw["schema_version"] == 1 and "sha256" in raw["note"]
    entries = load_catalog()
    assert 4 <= len(entries) <= 6 == len(raw["models"])
    assert len({e.id for e in entries}) == len(entries)
    for item, e in zip(raw["models"], entries, strict=True):
        assert set(item) >= {"id", "name", "url", "filename", "size_bytes", "sha256", "license",
                             "ram_bytes", "description"}
        assert e.url.startswith("https://huggingface.co/") and "/resolve/" in e.url
        assert e.url.endswith("/" + e.filename) and e.filename.endswith(".gguf")
        assert e.sha256 is None or (len(e.sha256) == 64 and int(e.sha256, 16) >= 0)
        assert isinstance(e.size_bytes, int) and 100_000_000 < e.size_bytes < 5_000_000_000
        assert isinstance(e.ram_bytes, int) and e.ram_bytes > e.size_bytes
        assert e.license and e.description and e.name
        # Sizes are given to three significant figures; the download tolerates that rounding.
        unit = 10 ** (len(str(e.size_bytes)) - 3)
        assert e.size_bytes % unit == 0
        assert unit // 2 <= catalog.catalog_size_tolerance(e.size_bytes) <= e.size_bytes // 100


# -- settings applied on load ---------------------------------------------------------------


@pytest.fixture
def two_models(tmp_path, starter_model):
    """A models folder with the starter model linked under two names."""
    folder = tmp_path / "models"
    m = ModelManager(folder)
    for name in ("first.gguf", "second.gguf"):
        alias = tmp_path / "aliases" / name
        alias.parent.mkdir(exist_ok=True)
        alias.symlink_to(starter_model)
        m.add(alias, link=True)
    return m


def test_settings_are_applied_on_load(two_models, tmp_path):
    from app.core.service import Folio

    m = two_models
    m.set_default("first.gguf")
    m.save_settings("first.gguf", ModelSettings(
        context_length=1024, threads=1, batch_size=256, chat_template=CHATML,
        system_prompt="You are a terse librarian."))
    folio = Folio(tmp_path / "lib", models_dir=m.models_dir)
    try:
        rt = folio.runtime
        # info.n_ctx is llama.cpp's own context (llm.n_ctx() in the model process).
        assert rt.pid is not None and rt.info.n_ctx == 1024 and rt.info.threads == 1 and rt.info.batch_size == 256
        assert rt.info.chat_template == CHATML and rt.is_chat_model  # the override
        prompt, _ = folio.chat.build_prompt("What is here?", [], [], "")
        assert "You are a terse librarian." in prompt and "<|im_start|>system" in prompt
        # An explicit override (the CLI's --ctx) beats the model's setting.
        folio2 = Folio(tmp_path / "lib", models_dir=m.models_dir,
                       load_overrides={"n_ctx": 512})
        try:
            assert folio2.runtime.info.n_ctx == 512
        finally:
            folio2.close()
    finally:
        folio.close()


def test_each_chat_uses_its_model_and_remove_unloads(two_models, tmp_path):
    from app.core.service import Folio

    m = two_models
    m.set_default("first.gguf")
    m.save_settings("second.gguf", ModelSettings(context_length=512))
    folio = Folio(tmp_path / "lib", models_dir=m.models_dir)
    try:
        store = folio.store
        plain = store.create_chat()
        pinned = store.create_chat(model="second.gguf")
        folio._prepare_for_chat(store.get_chat(plain.id))
        assert folio.model_name == "first.gguf"
        assert store.get_chat(plain.id).model == "first.gguf"  # remembered on the chat
        folio._prepare_for_chat(store.get_chat(pinned.id))
        assert folio.model_name == "second.gguf" and folio.runtime.info.n_ctx == 512
        assert {e.name: e.used_by_chats for e in folio.models.list()} == \
            {"first.gguf": 1, "second.gguf": 1}

        assert folio.use_model(None).n_ctx == 4096  # the default model, Folio's default ctx
        assert folio.model_name == "first.gguf"
        assert folio.use_model("second.gguf").n_ctx == 512

        folio.remove_model("second.gguf")  # in use: unloaded first
        assert folio._runtime.info is None
        assert [e.name for e in m.list()] == ["first.gguf"]
        # The chat's model is gone: it falls back to the default model.
        folio._prepare_for_chat(store.get_chat(pinned.id))
        assert folio.model_name == "first.gguf"
    finally:
        folio.close()


# -- memory with a GPU backend --------------------------------------------------------------


def test_gpu_offload_compares_the_offloaded_share_with_free_vram(manager, starter_model, gpu):
    from app.core.models.gguf import cached_gguf_info

    info = cached_gguf_info(starter_model)
    layers = info.block_count + 1  # and the output layer
    full = manager.estimate_memory(info, context_length=1024)  # auto: every layer offloaded
    assert full.device == "gpu" and full.gpu_layers == layers
    assert full.vram_bytes == full.weights_bytes + full.kv_cache_bytes
    assert full.free_vram_bytes == 8 * GB and not full.vram_unknown
    assert full.fits and "in VRAM" in full.reason and "8.0 GB VRAM free" in full.reason

    half = manager.estimate_memory(info, context_length=1024, gpu_layers=layers // 2)
    assert half.gpu_layers == layers // 2
    assert half.vram_bytes == int(half.weights_bytes * (layers // 2) / layers
                                  + half.kv_cache_bytes * (layers // 2) / info.block_count)
    assert full.vram_bytes > half.vram_bytes > 0

    cpu = manager.estimate_memory(info, context_length=1024, gpu_layers=0)
    assert cpu.device == "cpu" and cpu.vram_bytes == 0 and cpu.free_vram_bytes is None


def test_gpu_share_that_does_not_fit_in_vram_is_refused(manager, starter_model, gpu):
    from app.core.models.gguf import cached_gguf_info
    from app.core.models.fit import check_fits

    info = cached_gguf_info(starter_model)
    gpu["free"] = 64 * 1024 * 1024  # a GPU with 64 MB free; the weights alone are 253 MB
    est = manager.estimate_memory(info, context_length=1024)
    assert not est.fits and est.free_vram_bytes == 64 * 1024 * 1024
    assert est.reason.startswith("will not fit") and "64.0 MB of VRAM is free" in est.reason
    assert "fewer GPU layers" in est.reason
    with pytest.raises(WontFitError, match="VRAM.*--allow-oversize"):
        check_fits(starter_model, 1024, -1, 512)
    # CPU only, the same model fits the 8 GB of RAM.
    assert manager.estimate_memory(info, context_length=1024, gpu_layers=0).fits
    check_fits(starter_model, 1024, 0, 512)


def test_unknown_vram_is_said_not_claimed_to_fit(manager, starter_model, gpu, monkeypatch):
    from app.core.models.gguf import cached_gguf_info
    from app.core.models.fit import check_fits

    info = cached_gguf_info(starter_model)
    gpu["free"] = None  # no nvidia-smi, or it failed
    est = manager.estimate_memory(info, context_length=1024)
    assert est.vram_unknown and est.free_vram_bytes is None and est.device == "gpu"
    assert est.fits  # nothing known says it will not: loading is not refused...
    assert est.reason.startswith("VRAM unknown") and "not checked" in est.reason
    assert "needs about" not in est.reason.split(":")[0]  # ...but it is not said to fit
    check_fits(starter_model, 1024, -1, 512)
    # What stays in RAM is still judged.
    monkeypatch.setattr(fit, "available_ram", lambda: 16 * 1024 * 1024)
    est = manager.estimate_memory(info, context_length=1024)
    assert not est.fits and est.reason.startswith("will not fit") and "RAM" in est.reason


def test_free_vram_reading(monkeypatch, tmp_path):
    from app.core.models.fit import parse_nvidia_smi_free

    mib = 1024 * 1024
    assert parse_nvidia_smi_free("81004\n") == 81004 * mib
    assert parse_nvidia_smi_free("8000\n 1000 \n") == 9000 * mib  # two GPUs: layers split
    assert parse_nvidia_smi_free("[N/A]\n") is None
    assert parse_nvidia_smi_free("") is None
    # No nvidia-smi on PATH: unknown, not zero.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(fit, "_vram_cache", None)
    assert fit._free_vram() is None


def test_the_gui_threads_estimate_never_runs_nvidia_smi(monkeypatch):
    """The model editor estimates at every keystroke on the GUI thread: it takes the last
    reading, however old, and never waits for nvidia-smi (which may take seconds)."""
    runs = []
    monkeypatch.setattr(fit, "_read_nvidia_smi", lambda: runs.append(1) or 4096)
    monkeypatch.setattr(fit, "_vram_cache", None)
    assert fit._free_vram(read=False) is None and runs == []  # no reading yet: unknown
    assert fit._free_vram() == 4096 and runs == [1]  # a worker's reading
    monkeypatch.setattr(fit, "_vram_cache", (-1e9, 4096))  # long expired
    assert fit._free_vram(read=False) == 4096 and runs == [1]
    assert fit._free_vram() == 4096 and runs == [1, 1]  # expired: read again


# -- what a download was verified against ----------------------------------------------------


def test_a_checksum_the_server_publishes_is_verified(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    server.headers["X-Linked-Etag"] = f'"{sha(tiny)}"'  # as Hugging Face sends for LFS files
    _, done = drain(manager.download(url))  # no sha256 given
    assert done is not None and done.verified and done.checksum_source == "server"
    assert done.sha256 == sha(tiny) and done.verification.startswith("verified: sha256")
    assert sha(done.path) == sha(tiny)


def test_a_wrong_checksum_from_the_server_deletes_the_download(manager, server):
    server.headers["X-Linked-Etag"] = '"' + "ab" * 32 + '"'
    with pytest.raises(DownloadError, match="failed its checksum.*the server published is "
                                            + "ab" * 32):
        drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    assert not list(manager.downloads_dir.iterdir())


def test_the_checksum_on_a_redirect_is_used(manager, server, tiny):
    """Hugging Face answers /resolve/ with a 302 to its CDN carrying X-Linked-Etag; the CDN's
    own ETag is not a sha256."""
    server.redirects["/resolve/tiny-chat.gguf"] = (
        "/models/tiny-chat.gguf", {"X-Linked-Etag": f'"{sha(tiny)}"'})
    _, done = drain(manager.download(server.url("/resolve/tiny-chat.gguf")))
    assert [r["status"] for r in server.requests] == [302, 200]
    assert done is not None and done.checksum_source == "server" and done.verified

    manager.remove("tiny-chat.gguf")
    server.redirects["/resolve/tiny-chat.gguf"] = (
        "/models/tiny-chat.gguf", {"X-Linked-Etag": '"' + "0" * 64 + '"'})
    with pytest.raises(DownloadError, match="failed its checksum"):
        drain(manager.download(server.url("/resolve/tiny-chat.gguf")))
    assert models_on_disk(manager) == [] and not list(manager.downloads_dir.iterdir())


def test_a_sha256_etag_is_used_and_other_etags_are_not(manager, server, tiny):
    server.etag = f'"{sha(tiny)}"'
    _, done = drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert done.checksum_source == "server"
    manager.remove("tiny-chat.gguf")
    server.etag = f'W/"{sha(tiny)}"'  # weak: names no exact bytes
    _, done = drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert done.checksum_source is None and not done.verified
    assert done.verification == ("not verified: no checksum (its size and GGUF layout were "
                                 "checked)")


def test_a_given_checksum_is_reported_as_given(manager, server, tiny):
    server.headers["X-Linked-Etag"] = f'"{sha(tiny)}"'
    _, done = drain(manager.download(server.url("/models/tiny-chat.gguf"), sha256=sha(tiny)))
    assert done.checksum_source == "given" and done.verification.startswith("verified")


def test_the_server_checksum_is_remembered_for_a_resume(tmp_path, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    server.headers["X-Linked-Etag"] = '"' + "0" * 64 + '"'  # published wrong, then...
    drain(ModelManager(tmp_path / "models").download(url, should_stop=stop_after(1)))
    server.headers.clear()  # ...the resumed response does not repeat it
    with pytest.raises(DownloadError, match="failed its checksum"):
        drain(ModelManager(tmp_path / "models").download(url))


# -- the expected size (the catalog's size_bytes) ---------------------------------------------


def test_a_size_mismatch_is_refused_before_downloading(manager, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    size = tiny.stat().st_size
    with pytest.raises(DownloadError, match=r"wrong size: the server reports "
                                            rf"{size:,} bytes, but {size + 5_000_000:,} bytes"):
        drain(manager.download(url, expected_size=size + 5_000_000, size_tolerance=1_000_000))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    assert not list(manager.downloads_dir.iterdir())
    # Within the tolerance (the catalog rounds to the MB): downloaded.
    _, done = drain(manager.download(url, expected_size=size + 400_000,
                                     size_tolerance=1_000_000))
    assert done is not None and sha(done.path) == sha(tiny)


def test_a_size_mismatch_without_content_length_is_refused_at_the_end(manager, server, tiny):
    """A body shorter than expected is refused once it ends; one longer is stopped as soon
    as it passes the expected size (issue 19: no unbounded download). Both are deleted."""
    server.hide_length = True
    size = tiny.stat().st_size
    url = server.url("/models/tiny-chat.gguf")
    with pytest.raises(DownloadError, match=rf"wrong size: it is {size:,} bytes.*deleted"):
        drain(manager.download(url, expected_size=size + 1))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    with pytest.raises(DownloadError, match=r"more than the size the file was expected to "
                                            r"have.*stopped and deleted"):
        drain(manager.download(url, expected_size=size - 1))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_the_expected_size_is_remembered_for_a_resume(tmp_path, server, tiny):
    url = server.url("/models/tiny-chat.gguf")
    size = tiny.stat().st_size
    first = ModelManager(tmp_path / "models")
    drain(first.download(url, expected_size=size, should_stop=stop_after(1)))
    _, done = drain(ModelManager(tmp_path / "models").download(url))
    assert done is not None and done.path.stat().st_size == size
    with pytest.raises(DownloadError, match="not a file size"):
        first.download(url, expected_size=0)


# -- publishing, 416, HTTP errors, DNS and timeouts ----------------------------------------


def test_two_downloads_of_one_name_never_overwrite(manager, tmp_path, tiny):
    (tmp_path / "other").mkdir()
    other = make_gguf(tmp_path / "other" / "same.gguf", tensor_mb=2, blocks=3)
    srv = FileServer({"/a/same.gguf": tiny, "/b/same.gguf": other})
    try:
        url_a, url_b = srv.url("/a/same.gguf"), srv.url("/b/same.gguf")
        first = manager.download(url_a)
        second = manager.download(url_b)
        assert isinstance(next(first), DownloadProgress)  # both under way, the name free
        assert isinstance(next(second), DownloadProgress)
        _, done = drain(first)
        assert done.path == manager.models_dir / "same.gguf"
        with pytest.raises(DownloadError, match="same.gguf appeared in the models folder "
                                                "while this download ran.*kept"):
            drain(second)
        assert sha(manager.models_dir / "same.gguf") == sha(tiny)  # the first one, intact
        assert models_on_disk(manager) == ["same.gguf", "same.gguf.sha256"]
        [partial] = manager.partial_downloads()
        assert partial.url == url_b and partial.done_bytes == other.stat().st_size

        # Under another name: the finished partial is asked for from its end; the server
        # answers 416 (nothing past the end) and the file is published without downloading
        # it again.
        _, done = drain(manager.download(url_b, filename="same-2.gguf"))
        assert srv.requests[-1]["status"] == 416
        assert srv.requests[-1]["range"] == f"bytes={other.stat().st_size}-"
        assert sha(done.path) == sha(other) and done.path.name == "same-2.gguf"
        assert manager.partial_downloads() == [] and not list(manager.downloads_dir.iterdir())
    finally:
        srv.close()


def test_416_for_a_partial_file_discards_it(manager, server):
    url = server.url("/models/tiny-chat.gguf")
    drain(manager.download(url, should_stop=stop_after(1)))
    assert manager.partial_downloads()
    server.status = 416
    with pytest.raises(DownloadError, match=r"refused to resume the download \(HTTP 416\)"):
        drain(manager.download(url))
    assert manager.partial_downloads() == [] and models_on_disk(manager) == []


@pytest.mark.parametrize(("status", "hint"), [(401, "licence"), (403, "gated")])
def test_401_and_403_say_the_repository_may_be_gated(manager, server, status, hint):
    server.status = status
    with pytest.raises(DownloadError, match=rf"HTTP {status} .*{hint}"):
        drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_unknown_host_says_no_network(manager, monkeypatch):
    """Name resolution fails (offline, or a typo in the host): no lookup is really made."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    asked: list[str] = []

    def no_dns(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError, match="Cannot find models.example.invalid: no network "
                                            "or an unknown host"):
        drain(manager.download("http://models.example.invalid/m.gguf"))
    assert asked == ["models.example.invalid"]
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_a_server_that_never_answers_times_out(manager, monkeypatch):
    monkeypatch.setattr(download, "HTTP_TIMEOUT", 1.0)
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(DownloadError, match=r"did not answer within 1 s \(no network\?\)"):
            drain(manager.download(f"http://127.0.0.1:{port}/m.gguf"))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []


def test_progress_has_speed_and_eta(manager, server, tiny, monkeypatch):
    monkeypatch.setattr(download, "_PROGRESS_EVERY", 0.0)  # an event for every block
    events, done = drain(manager.download(server.url("/models/tiny-chat.gguf")))
    size = tiny.stat().st_size
    moving = [e for e in events if isinstance(e, DownloadProgress) and e.stage ==
              "downloading" and e.done_bytes > 0]
    assert done is not None and len(moving) >= 2
    for e in moving:
        assert e.speed_bps > 0 and e.total_bytes == size
        assert e.eta_s == pytest.approx((size - e.done_bytes) / e.speed_bps)
    assert moving[0].eta_s > 0 and moving[-1].done_bytes == size and moving[-1].eta_s == 0


# -- hostile servers: a downgrade to http, a body without end, a catalog that moves -----------


def test_the_redirect_policy_keeps_https_on_https():
    problem = download.redirect_problem
    assert problem("https://huggingface.co/a/b", "https://cdn-lfs.hf.co/x") is None
    assert problem("http://127.0.0.1:8000/a", "http://127.0.0.1:8000/b") is None  # the user's own
    assert problem("http://example.org/a", "https://example.org/a") is None  # an upgrade
    for target in ("http://cdn.example.org/model.gguf", "HTTP://cdn.example.org/m.gguf",
                   "ftp://cdn.example.org/m.gguf"):
        reason = problem("https://huggingface.co/a/b", target)
        assert reason and "from https to an insecure address" in reason
        assert "cdn.example.org" in reason


LOOPBACK_TLS = Path(__file__).parent / "data" / "loopback-tls.pem"  # self-signed, 127.0.0.1


class TLSFileServer(FileServer):
    """FileServer over https with the loopback certificate (trusted through SSL_CERT_FILE)."""

    def __init__(self, files):
        import ssl

        super().__init__(files)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(LOOPBACK_TLS)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    def url(self, name: str) -> str:
        """An address on this server, or `name` itself when it is a whole URL (a redirect
        to another server)."""
        return name if "://" in name else f"https://127.0.0.1:{self.httpd.server_port}{name}"


def test_a_redirect_from_https_to_http_is_refused(manager, server, tiny, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(LOOPBACK_TLS))
    secure = TLSFileServer({"/models/tiny-chat.gguf": tiny})
    try:
        # The https server itself works: https -> https is followed and verified.
        secure.redirects["/same"] = ("/models/tiny-chat.gguf", {})
        _, done = drain(manager.download(secure.url("/same"), filename="over-tls.gguf"))
        assert done is not None and sha(done.path) == sha(tiny)
        # https -> http: refused before a byte is asked of the http server.
        secure.redirects["/down"] = (server.url("/models/tiny-chat.gguf"), {})
        with pytest.raises(DownloadError, match="from https to an insecure address"):
            drain(manager.download(secure.url("/down"), filename="downgraded.gguf"))
    finally:
        secure.close()
    assert [r["path"] for r in server.requests] == []
    assert models_on_disk(manager) == ["over-tls.gguf", "over-tls.gguf.sha256"]
    assert manager.partial_downloads() == []


@pytest.fixture
def endless(tmp_path):
    """A 48 MB file served without a Content-Length: a server that never says when it ends."""
    big = tmp_path / "src" / "endless.gguf"
    big.parent.mkdir(exist_ok=True)
    with big.open("wb") as f:
        f.write(b"GGUF" + b"\0" * (48 * 1024 * 1024 - 4))
    srv = FileServer({"/endless.gguf": big})
    srv.hide_length = True
    yield srv, big.stat().st_size
    srv.close()


def test_a_download_without_a_length_stops_past_the_expected_size(manager, endless):
    srv, size = endless
    with pytest.raises(DownloadError, match=r"sent more than the size the file was expected"):
        drain(manager.download(srv.url("/endless.gguf"), expected_size=3_000_000,
                               size_tolerance=1_000_000))
    assert srv.sent() < size  # it stopped reading, it did not take it all and check after
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    assert not list(manager.downloads_dir.iterdir())


def test_a_download_of_unknown_size_stops_at_the_hard_cap(manager, server, tiny, monkeypatch):
    monkeypatch.setattr(download, "UNSIZED_DOWNLOAD_CAP", 2 * 1024 * 1024)
    server.hide_length = True
    with pytest.raises(DownloadError, match=r"sent more than the most Folio downloads"):
        drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert models_on_disk(manager) == [] and manager.partial_downloads() == []
    # With a length announced, the same file is not capped by it.
    server.hide_length = False
    _, done = drain(manager.download(server.url("/models/tiny-chat.gguf")))
    assert done is not None and sha(done.path) == sha(tiny)


def test_every_catalog_entry_is_pinned_to_a_commit():
    for e in load_catalog():
        assert len(e.revision) == 40 and int(e.revision, 16) >= 0, e.id
        assert f"/resolve/{e.revision}/{e.filename}" in e.url and "/resolve/main/" not in e.url
        assert catalog.pin_problem(e) is None


@pytest.mark.parametrize("change, reason", [
    ({"url": "https://huggingface.co/o/r/resolve/main/m.gguf"}, "not pinned"),
    ({"url": "https://huggingface.co/o/r/resolve/v1.0/m.gguf"}, "not pinned"),
    ({"url": "http://huggingface.co/o/r/resolve/" + "a" * 40 + "/m.gguf"}, "must be https"),
    ({"url": "https://evil.example/o/r/resolve/" + "a" * 40 + "/m.gguf"}, "must be https"),
    ({"revision": "b" * 40}, "names the revision"),
    ({"filename": "other.gguf"}, "names the file"),
    ({"revision": None}, "names the revision"),
])
def test_an_unpinned_or_inconsistent_catalog_entry_is_refused(tmp_path, change, reason):
    entry = {"id": "m", "name": "M", "url": "https://huggingface.co/o/r/resolve/" + "a" * 40
             + "/m.gguf", "revision": "a" * 40, "filename": "m.gguf", "size_bytes": 491000000,
             "sha256": None, "license": "MIT", "ram_bytes": 1000000000, "description": "d"}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"schema_version": 1, "models": [entry]}), "utf-8")
    assert [e.id for e in load_catalog(path)] == ["m"]
    path.write_text(json.dumps({"schema_version": 1, "models": [{**entry, **change}]}), "utf-8")
    with pytest.raises(ModelError, match=reason):
        load_catalog(path)
