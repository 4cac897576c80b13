"""`folio models ...`: JSON shapes and exit codes (0 done, 1 download stopped and resumable or
removal declined, 2 refused)."""

from __future__ import annotations

import hashlib
import json

import pytest
from ggufgen import CHATML, make_gguf
from test_model_manager import FileServer

from app.cli import main


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("FOLIO_MODELS", str(folder))
    return folder


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_default_remove(capsys, models_dir, tmp_path):
    src = make_gguf(tmp_path / "chat.gguf", chat_template=CHATML, license="mit")
    code, out, _ = cli(capsys, "models", "add", str(src), "--json")
    assert code == 0 and json.loads(out)["name"] == "chat.gguf"
    code, _, err = cli(capsys, "models", "add", str(make_gguf(tmp_path / "b.gguf")), "--link")
    assert code == 0

    code, out, _ = cli(capsys, "models", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["models_dir"] == str(models_dir)
    assert data["default"] == "gemma-3-270m-q4_k_m.gguf" and data["partial_downloads"] == []
    rows = {r["name"]: r for r in data["models"]}
    assert set(rows) == {"b.gguf", "chat.gguf"}
    chat = rows["chat.gguf"]
    assert {"name", "path", "size_bytes", "is_link", "is_default", "is_starter",
            "used_by_chats", "error", "info", "settings", "memory", "fits"} <= set(chat)
    info = chat["info"]
    assert {"architecture", "parameters", "parameter_count", "quantization", "context_length",
            "has_chat_template", "license", "file_size"} <= set(info)
    assert info["has_chat_template"] is True and info["license"] == "mit"
    assert info["architecture"] == "llama" and info["context_length"] == 2048
    assert chat["fits"] is True and chat["memory"]["context_length"] == 4096
    assert {"weights_bytes", "kv_cache_bytes", "overhead_bytes", "total_bytes",
            "free_ram_bytes", "free_vram_bytes", "device", "reason"} <= set(chat["memory"])
    assert rows["b.gguf"]["is_link"] is True and chat["is_link"] is False

    code, out, _ = cli(capsys, "models", "list", "--json", "--ctx", "1024")
    assert json.loads(out)["models"][0]["memory"]["context_length"] == 1024
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0 and "chat.gguf" in out and "llama" in out and "license mit" in out

    code, out, _ = cli(capsys, "models", "default", "chat.gguf")
    assert code == 0
    code, out, _ = cli(capsys, "models", "default")
    assert out.strip() == "chat.gguf"

    code, _, err = cli(capsys, "models", "remove", "chat.gguf")  # no tty, no --yes
    assert code == 2 and "--yes" in err and (models_dir / "chat.gguf").exists()
    code, out, _ = cli(capsys, "models", "remove", "chat.gguf", "--yes")
    assert code == 0 and not (models_dir / "chat.gguf").exists()
    code, out, _ = cli(capsys, "models", "default")
    assert out.strip() == "gemma-3-270m-q4_k_m.gguf"


def test_refusals_exit_2(capsys, models_dir, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_text("hello")
    code, _, err = cli(capsys, "models", "add", str(junk))
    assert code == 2 and "junk.gguf is not a GGUF model file" in err
    code, _, err = cli(capsys, "models", "remove", "nope.gguf", "--yes")
    assert code == 2 and "no model" in err
    code, _, err = cli(capsys, "models", "default", "nope.gguf")
    assert code == 2
    code, _, err = cli(capsys, "models", "download", "not-in-the-catalog")
    assert code == 2 and "qwen2.5-0.5b-instruct-q4_k_m" in err
    assert not models_dir.exists() or not any(models_dir.glob("*.gguf"))


def test_download_resume_and_failures(capsys, models_dir, tmp_path):
    src = make_gguf(tmp_path / "dl.gguf", chat_template=CHATML, tensor_mb=2)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    srv = FileServer({"/dl.gguf": src})
    try:
        url = srv.url("/dl.gguf")
        srv.drop_after = src.stat().st_size // 2
        code, out, err = cli(capsys, "models", "download", url, "--json")
        assert code == 1 and "dropped" in err  # stopped, resumable
        assert json.loads(out)["ok"] is False
        code, out, _ = cli(capsys, "models", "list", "--json")
        [partial] = json.loads(out)["partial_downloads"]
        assert partial["url"] == url and partial["done_bytes"] == src.stat().st_size // 2

        srv.drop_after = None
        code, out, err = cli(capsys, "models", "download", url, "--sha256", digest,
                             "--name", "mine.gguf", "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["ok"] is True and result["name"] == "mine.gguf"
        assert (models_dir / "mine.gguf").read_bytes() == src.read_bytes()
        assert result["info"]["has_chat_template"] is True
        assert srv.requests[-1]["range"] is not None  # resumed

        code, _, err = cli(capsys, "models", "download", srv.url("/gone.gguf"))
        assert code == 2 and "HTTP 404" in err
        code, _, err = cli(capsys, "models", "download", url, "--name", "mine.gguf")
        assert code == 2 and "already in the models folder" in err
    finally:
        srv.close()


def test_download_says_what_was_verified(capsys, models_dir, tmp_path):
    src = make_gguf(tmp_path / "v.gguf", tensor_mb=1)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    srv = FileServer({"/v.gguf": src})
    try:
        code, out, err = cli(capsys, "models", "download", srv.url("/v.gguf"), "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["verified"] is False and result["checksum_source"] is None
        assert result["verification"].startswith("not verified: no checksum")
        assert result["sha256"] == digest  # what it hashed to, for the record
        cli(capsys, "models", "remove", "v.gguf", "--yes")

        srv.headers["X-Linked-Etag"] = f'"{digest}"'
        code, out, err = cli(capsys, "models", "download", srv.url("/v.gguf"))
        assert code == 0, err
        assert "(verified: sha256 matches the one the server published)" in out
    finally:
        srv.close()


@pytest.fixture
def local_catalog(tmp_path, monkeypatch):
    """A catalog whose one entry is served on 127.0.0.1 (the real one points at Hugging
    Face); `write(size_bytes)` rewrites it. The entry is built as `load_catalog` builds
    them: the file itself would be refused, as only pinned huggingface.co URLs are listed."""
    from app.core.models.catalog import CatalogEntry
    from app.core.models.manager import ModelManager

    src = make_gguf(tmp_path / "cat.gguf", chat_template=CHATML, tensor_mb=2)
    commit = "0123456789abcdef0123456789abcdef01234567"
    srv = FileServer({f"/repo/resolve/{commit}/cat.gguf": src})
    entries: list[CatalogEntry] = []

    def write(size_bytes: int) -> None:
        entries[:] = [CatalogEntry(
            id="cat", name="Cat", url=srv.url(f"/repo/resolve/{commit}/cat.gguf"),
            revision=commit, filename="cat.gguf", size_bytes=size_bytes, sha256=None,
            license="mit", ram_bytes=10 * size_bytes, description="a test model")]

    monkeypatch.setattr(ModelManager, "catalog", lambda self: list(entries))
    yield src, srv, write
    srv.close()


def test_catalog_download_checks_the_catalog_size(capsys, models_dir, local_catalog):
    src, srv, write = local_catalog
    size = src.stat().st_size
    write(size + 30_000_000)  # the catalog says 30 MB more: another file
    code, _, err = cli(capsys, "models", "download", "cat")
    assert code == 2 and "cat.gguf is the wrong size: the server reports" in err
    assert f"{size:,} bytes" in err and "catalog may be out of date" in err
    assert not any(models_dir.glob("*.gguf")) and not any((models_dir / ".downloads").iterdir())

    write(round(size, -6))  # the catalog's rounding to the MB passes
    code, out, err = cli(capsys, "models", "download", "cat", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "cat.gguf"
    assert (models_dir / "cat.gguf").read_bytes() == src.read_bytes()


def test_allow_oversize_is_offered_by_every_command_that_loads():
    from app.cli import build_parser

    parser = build_parser()
    for command in (["ask", "q"], ["chat"], ["summarize", "doc.pdf"]):
        assert parser.parse_args(command).allow_oversize is False
        assert parser.parse_args([*command, "--allow-oversize"]).allow_oversize is True


def test_ask_refuses_a_model_that_will_not_fit_unless_allowed(capsys, monkeypatch, tmp_path,
                                                              starter_model):
    """A 64 MB machine: the starter model will not fit; --allow-oversize loads it anyway."""
    from app.core.models import fit

    monkeypatch.setattr(fit, "_gpu_offload_supported", lambda: False)
    monkeypatch.setattr(fit, "available_ram", lambda: 64 * 1024 * 1024)
    args = ["ask", "--library", str(tmp_path / "lib"), "--model", str(starter_model),
            "--no-docs", "--ctx", "512", "--max-tokens", "4", "--seed", "1", "--json",
            "Say hi."]
    code, out, err = cli(capsys, *args)
    assert code == 2 and "will not fit" in err and "--allow-oversize" in err
    code, out, err = cli(capsys, *args, "--allow-oversize")
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] and result["completion_tokens"] > 0
