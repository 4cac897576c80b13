"""AppSettings: typed defaults, forgiving load, atomic save, migrations."""

from __future__ import annotations

import json
import logging

import pytest

from app.core import settings as settings_mod
from app.core.chat.answers import ChatConfig
from app.core.base.paths import data_dir, default_library
from app.core.settings import SCHEMA_VERSION, AppSettings, migrate, settings_path
from app.core.documents.splitter import SplitterConfig


def test_defaults():
    s = AppSettings()
    assert s.schema_version == SCHEMA_VERSION == 1
    assert s.library == str(default_library())
    assert (s.embedder, s.chunk_tokens, s.overlap_tokens, s.retrieval_k) == (
        "all-MiniLM-L6-v2",
        200,
        40,
        5,
    )
    assert s.mmr is True and s.min_similarity == 0.25 and s.theme == "system"
    assert (s.model_path, s.n_ctx, s.n_gpu_layers) == (None, 4096, "auto")
    assert s.problems() == {}


def test_missing_file_gives_defaults_and_path_is_in_data_dir():
    assert settings_path() == data_dir() / "settings.json"
    assert not settings_path().exists()
    assert AppSettings.load() == AppSettings()


def test_round_trip(tmp_path):
    s = AppSettings(
        library=str(tmp_path / "lib"),
        embedder="all-mpnet-base-v2",
        chunk_tokens=300,
        overlap_tokens=60,
        retrieval_k=8,
        mmr=False,
        min_similarity=0.3,
        theme="dark",
        model_path="/models/x.gguf",
        n_ctx=8192,
        n_gpu_layers=20,
    )
    path = s.save()
    assert path == settings_path()
    assert json.loads(path.read_text("utf-8"))["schema_version"] == SCHEMA_VERSION
    assert AppSettings.load() == s
    assert settings_mod.load() == s
    other = tmp_path / "elsewhere.json"
    settings_mod.save(s, other)
    assert AppSettings.load(other) == s


def test_engine_configs_follow_settings():
    s = AppSettings(
        chunk_tokens=120, overlap_tokens=10, retrieval_k=7, mmr=False, min_similarity=0.4,
        section_tokens=300,
    )
    assert s.splitter_config() == SplitterConfig(chunk_tokens=120, overlap_tokens=10)
    chat = s.chat_config()
    assert isinstance(chat, ChatConfig)
    assert (chat.k, chat.mmr, chat.min_similarity, chat.section_tokens) == (7, False, 0.4, 300)
    assert ChatConfig().section_tokens == AppSettings().section_tokens == 600
    assert chat.candidates == ChatConfig().candidates  # the rest keeps the engine's defaults


def test_corrupt_file_gives_defaults_and_is_kept_aside(caplog):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"theme": "dark", ', "utf-8")
    with caplog.at_level(logging.WARNING, logger="app.core.settings"):
        s = AppSettings.load()
    assert s == AppSettings()
    assert not path.exists()
    assert (path.parent / "settings.json.bad").read_text("utf-8") == '{"theme": "dark", '
    assert "unreadable" in caplog.text
    # Not an object at all is corrupt too.
    path.write_text("[1, 2]", "utf-8")
    assert AppSettings.load() == AppSettings()


def test_bad_values_fall_back_to_defaults_with_a_warning(caplog):
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "theme": "purple",
                "chunk_tokens": "big",
                "retrieval_k": 0,
                "section_tokens": -1,
                "mmr": "yes",
                "min_similarity": 7,
                "n_gpu_layers": -5,
                "n_ctx": True,
                "library": "",
                "embedder": 3,
                "model_path": 12,
                "overlap_tokens": 30,
                "unknown_key": 1,
                "future": {"x": 1},
            }
        ),
        "utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="app.core.settings"):
        s = AppSettings.load()
    d = AppSettings()
    assert (s.theme, s.chunk_tokens, s.retrieval_k, s.mmr) == (
        d.theme,
        d.chunk_tokens,
        d.retrieval_k,
        d.mmr,
    )
    assert (s.min_similarity, s.n_gpu_layers, s.n_ctx) == (0.25, "auto", 4096)
    assert (s.library, s.embedder, s.model_path) == (d.library, d.embedder, None)
    assert s.section_tokens == d.section_tokens and "section_tokens" in caplog.text
    assert s.overlap_tokens == 30  # a good value next to bad ones is kept
    assert "theme" in caplog.text and "chunk_tokens" in caplog.text
    assert not hasattr(s, "unknown_key")


def test_overlap_not_below_chunk_size_is_defaulted():
    s = AppSettings.from_dict({"chunk_tokens": 100, "overlap_tokens": 100})
    assert (s.chunk_tokens, s.overlap_tokens) == (100, 40)
    s = AppSettings.from_dict({"chunk_tokens": 64, "overlap_tokens": 63})
    assert (s.chunk_tokens, s.overlap_tokens) == (64, 63)
    s.splitter_config()  # valid for the engine
    # A bad chunk size reverts to 200; the overlap is then judged against that.
    s = AppSettings.from_dict({"chunk_tokens": 5, "overlap_tokens": 150})
    assert (s.chunk_tokens, s.overlap_tokens) == (200, 150)


def test_migration_hook(monkeypatch):
    # A file without a version is version 1; the current version passes through.
    assert migrate({"theme": "dark"})["schema_version"] == SCHEMA_VERSION
    # A future schema: version 1 files are upgraded step by step on load.
    monkeypatch.setattr(settings_mod, "SCHEMA_VERSION", 2)

    def v1_to_v2(data):
        data["retrieval_k"] = data.pop("top_k")
        return data

    monkeypatch.setitem(settings_mod.MIGRATIONS, 1, v1_to_v2)
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "top_k": 9}), "utf-8")
    s = AppSettings.load()
    assert s.retrieval_k == 9
    s.save()
    assert json.loads(path.read_text("utf-8"))["schema_version"] == 2


def test_newer_schema_is_read_as_far_as_known():
    data = migrate({"schema_version": 99, "theme": "light", "new_thing": 1})
    assert data["schema_version"] == SCHEMA_VERSION
    assert AppSettings.from_dict(data).theme == "light"


def test_atomic_write_leaves_no_temp_file(monkeypatch):
    s = AppSettings(theme="light")
    s.save()
    folder = settings_path().parent
    assert sorted(p.name for p in folder.iterdir()) == ["settings.json"]

    # A failure while writing leaves the old file whole and no temp file behind.
    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(settings_mod.os, "replace", boom)
    with pytest.raises(OSError):
        AppSettings(theme="dark").save()
    assert sorted(p.name for p in folder.iterdir()) == ["settings.json"]
    assert AppSettings.load().theme == "light"


def test_core_settings_does_not_import_qt():
    import subprocess
    import sys

    code = (
        "import sys, app.core.settings; "
        "sys.exit(any(m.split('.')[0] in ('PySide6', 'shiboken6') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
