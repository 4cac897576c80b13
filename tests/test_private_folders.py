"""Private by default: the folders Folio creates for the library, the models and the logs
(and the data folder above them) are readable by their owner only, whatever the umask; a
folder the user made and chose is left as it is."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from ggufgen import CHATML, make_gguf

from app.core.base import logs
from app.core.base.paths import make_private_dir
from app.core.chat.history import ChatStore
from app.core.index.library import Library
from app.core.models.manager import ModelManager
from app.core.settings import AppSettings

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    """The umask most desktops run with, which would make a new folder world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_library_models_logs_and_data_folders_are_created_owner_only(
        tmp_path, hash_embedder, monkeypatch):
    home = tmp_path / "home" / "Folio"  # nothing of it exists yet
    library, models, logdir = home / "library", home / "models", tmp_path / "state" / "logs"
    monkeypatch.setenv("FOLIO_HOME", str(home))
    monkeypatch.setenv("FOLIO_LOG_DIR", str(logdir))

    lib = Library.open(library, hash_embedder)
    ChatStore.for_library(library).close()
    manager = ModelManager(models, state_path=home / "models.json")
    src = make_gguf(tmp_path / "tiny.gguf", chat_template=CHATML, tensor_mb=1)
    manager.add(src, link=False)
    manager._save_state({"default": "tiny.gguf", "models": {}})
    AppSettings().save()

    monkeypatch.setattr(logs, "_configured", False)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.setup_logging(console=False)
    finally:
        for handler in root.handlers[len(before):]:
            root.removeHandler(handler)
            handler.close()

    for folder in (home, library, library / "lancedb", models, logdir, logdir.parent):
        assert folder.is_dir() and mode(folder) == 0o700, (folder, oct(mode(folder)))
    assert (logdir / "folio.log").exists() and (models / "tiny.gguf").is_file()
    lib.close()


def test_a_download_creates_its_folders_owner_only(tmp_path):
    from test_model_manager import FileServer, drain

    src = make_gguf(tmp_path / "src.gguf", chat_template=CHATML, tensor_mb=1)
    server = FileServer({"/m/tiny.gguf": src})
    try:
        manager = ModelManager(tmp_path / "fresh" / "models")
        _, done = drain(manager.download(server.url("/m/tiny.gguf")))
    finally:
        server.close()
    assert done is not None and done.path.is_file()
    for folder in (tmp_path / "fresh", manager.models_dir, manager.downloads_dir):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))


def test_a_folder_the_user_made_keeps_its_permissions(tmp_path, hash_embedder):
    shared = tmp_path / "shared-library"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    Library.open(shared, hash_embedder).close()
    assert mode(shared) == 0o755
    assert make_private_dir(shared) == shared and mode(shared) == 0o755


def test_a_file_in_the_way_is_an_error_not_a_folder(tmp_path):
    blocker = tmp_path / "library"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        make_private_dir(blocker / "inner")
    with pytest.raises(OSError):
        make_private_dir(blocker)
