"""A library on S3-compatible object storage (`s3://bucket/prefix`), against moto's S3 server
on loopback: real LanceDB, the real embedder, real processes for the write lease."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from docgen import make_pdf

from app.core.index import remote
from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import READY, Library, LibraryLocked, LibraryUnreachable
from app.core.index.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server as a real process on loopback, so it can also be made to go away."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, "moto server exited"
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def s3(monkeypatch):
    server = MotoServer()
    env = {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "FOLIO_S3_SETTLE": "0.2", "FOLIO_S3_TIMEOUT": "3"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="folio")
    yield server
    server.stop()


def _docs(folder: Path, n: int) -> Path:
    folder.mkdir(exist_ok=True)
    topics = ["sailing and anchoring boats", "baking sourdough bread", "pruning apple trees",
              "tuning a violin", "repairing bicycle brakes", "brewing green tea"]
    for i in range(n):
        topic = topics[i % len(topics)]
        make_pdf(folder / f"doc{i}.pdf", [f"Document {i} is about {topic}. " * 8,
                                          f"More notes on {topic}, part two of doc {i}. " * 8])
    return folder


def _consistent(lib: Library, expected: int) -> None:
    """Every document ready once, its live chunks exactly its own, nothing staged left over."""
    docs = lib.documents()
    assert len(docs) == expected
    assert all(d.status == READY for d in docs), [(d.path, d.status) for d in docs]
    rows = lib.chunks_table().to_arrow().to_pylist()
    live = [r for r in rows if r["live"]]
    keys = [(r["doc_id"], r["version"], r["chunk_index"]) for r in live]
    assert len(keys) == len(set(keys)), "a chunk is live twice"
    for d in docs:
        assert sum(1 for r in live if r["doc_id"] == d.doc_id) == d.chunks > 0
    assert len(rows) == len(live), "staged chunks left behind"


def test_ingest_search_and_remove_on_s3(s3, tmp_path, embedder):
    folder = _docs(tmp_path / "docs", 3)
    uri = "s3://folio/libs/team/"
    lib = Library.open(uri, embedder)
    assert lib.remote and lib.root == "s3://folio/libs/team"
    for _ in ingest(lib, [folder], IngestOptions()):
        pass
    _consistent(lib, 3)
    hits = hybrid_search(lib, "how do I bake bread?", k=2)
    assert hits and "sourdough" in hits[0].text
    lib.remove(lib.get(folder / "doc1.pdf"))
    lib.optimize()
    lib.close()
    assert remote.holder(uri) is None  # closing dropped the lease

    again = Library.open(uri, embedder, read_only=True)  # another machine, reading
    assert sorted(Path(d.path).name for d in again.documents()) == ["doc0.pdf", "doc2.pdf"]
    assert all("sourdough" not in h.text for h in hybrid_search(again, "sourdough bread", k=5))
    assert remote.read_bytes(f"{uri}library.json")  # library.json lives in the bucket


HOLDER = textwrap.dedent("""
    import sys
    from app.core.index.library import Library
    lib = Library.open(sys.argv[1])
    print("HELD", flush=True)
    sys.stdin.read()
    lib.close()
""")


def test_a_second_writer_is_refused_naming_the_holder(s3, tmp_path, monkeypatch):
    # Renewed every third of the lease: it outlives its expiry. Long enough that a renewal
    # held up for several seconds on a busy machine does not let it lapse.
    monkeypatch.setenv("FOLIO_S3_LEASE", "9")
    uri = "s3://folio/shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, uri], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = holder.stdout.readline()
        assert line.startswith("HELD"), (line, holder.stderr.read())
        for _ in range(3):  # well past the first lease's expiry: the renewals keep it
            with pytest.raises(LibraryLocked) as info:
                Library.open(uri, embedder_name="all-MiniLM-L6-v2")
            assert f"pid {holder.pid}" in str(info.value)
            time.sleep(4)
        reader = Library.open(uri, read_only=None)  # readers still read
        assert reader.read_only
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert remote.holder(uri) is None
    Library.open(uri).close()  # free again once the holder closed


DRIVER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, os.environ["FOLIO_TESTS_DIR"])
    from app.core.index import library as libmod
    from app.core.index.ingest import IngestOptions, ingest

    published = []
    original = libmod.Library.publish
    def publish(self, items):
        original(self, items)
        published.append(items)
        if len(published) == 2:  # two documents in, the rest staged or not started
            print("SELF-KILL", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    libmod.Library.publish = publish
    lib = libmod.Library.open(sys.argv[1])
    for _ in ingest(lib, [sys.argv[2]], IngestOptions()):
        pass
    print("DONE", flush=True)
""")


def test_a_killed_writers_lease_expires_and_the_next_writer_finishes(s3, tmp_path, embedder,
                                                                      monkeypatch):
    monkeypatch.setenv("FOLIO_S3_LEASE", "4")
    folder = _docs(tmp_path / "docs", 5)
    uri = "s3://folio/crash"
    run = subprocess.run([sys.executable, "-c", DRIVER, uri, str(folder)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT),
                              "FOLIO_TESTS_DIR": str(TESTS)})
    assert run.returncode == -signal.SIGKILL, (run.stdout, run.stderr)
    assert "SELF-KILL" in run.stdout
    assert remote.holder(uri) is not None  # the dead writer never dropped its lease

    deadline = time.monotonic() + 120  # the dead writer's lease runs out by itself
    while True:
        try:
            lib = Library.open(uri, embedder)
            break
        except LibraryLocked as exc:
            assert "pid" in str(exc)
            assert time.monotonic() < deadline, "the dead writer's lease never expired"
            time.sleep(0.5)
    for _ in ingest(lib, [folder], IngestOptions()):
        pass
    _consistent(lib, 5)
    lib.close()


def test_the_server_going_away_mid_search_gives_an_error_not_a_hang(s3, tmp_path, embedder):
    folder = _docs(tmp_path / "docs", 2)
    uri = "s3://folio/gone"
    lib = Library.open(uri, embedder)
    for _ in ingest(lib, [folder], IngestOptions()):
        pass
    assert hybrid_search(lib, "apple trees", k=1)
    s3.stop()
    outcome: dict = {}

    def search():
        try:
            outcome["hits"] = hybrid_search(lib, "violin tuning", k=3, mode="vector")
        except Exception as exc:  # noqa: BLE001 - what it raises is what the test checks
            outcome["error"] = exc

    worker = threading.Thread(target=search, daemon=True)
    worker.start()
    worker.join(timeout=300)  # bounded by the storage options' timeouts, far below this
    assert not worker.is_alive(), "search hung with the server gone"
    assert isinstance(outcome.get("error"), LibraryUnreachable), outcome
    message = str(outcome["error"])
    assert "could not reach the library s3://folio/gone while searching" in message
    assert "AWS_ENDPOINT_URL" in message
    lib.close()  # the lease cannot be dropped with the server gone: a warning, not a hang


def test_the_cli_takes_an_s3_library_and_keeps_chats_locally(s3, tmp_path, capsys,
                                                            monkeypatch):
    from app.cli import main
    from app.core.base.paths import local_library_dir
    from app.core.chat.history import ChatStore

    monkeypatch.setenv("FOLIO_HOME", str(tmp_path / "home"))
    folder = _docs(tmp_path / "docs", 3)
    uri = "s3://folio/cli"
    assert main(["--library", uri, "ingest", str(folder)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("FOLIO_LIBRARY", uri)
    assert main(["search", "pruning apple trees", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]).name == "doc2.pdf"  # the one about apple trees
    assert remote.holder(uri) is None  # searching took no lease: writers are not held off
    local = local_library_dir(uri)
    assert local == tmp_path / "home" / "remote-libraries" / local.name
    store = ChatStore.for_library(local)
    store.create_chat("kept here")
    store.close()
    assert main(["chats", "list"]) == 0
    assert "kept here" in capsys.readouterr().out


def test_a_writer_whose_lease_was_taken_over_stops_writing(s3, tmp_path, monkeypatch):
    from app.core.index.library import DocumentRecord, ReadOnlyLibrary

    monkeypatch.setenv("FOLIO_S3_LEASE", "3")  # renewed (and checked) every second
    uri = "s3://folio/stolen"
    lib = Library.open(uri, embedder_name="all-MiniLM-L6-v2")
    other = {"pid": 4242, "host": "elsewhere", "started": time.time(), "token": "theirs",
             "expires": time.time() + 60}
    remote.write_bytes(f"{uri}/{remote.LEASE_FILE}", json.dumps(other).encode())
    deadline = time.monotonic() + 60
    while not remote.lost(uri):
        assert time.monotonic() < deadline, "the renewal never noticed the lease was taken"
        time.sleep(0.2)
    doc = DocumentRecord(doc_id="x", path="/x.txt", name="x.txt")
    with pytest.raises(ReadOnlyLibrary, match="lost the write lease"):
        lib.put_documents([doc])
    lib.close()
    assert remote.holder(uri)["pid"] == 4242  # closing left the new holder's lease alone
