"""Model downloads: resumable (Range + If-Range), verified (sha256 given or published by the
server, size, GGUF header) and published without ever replacing a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from app.core.base.files import sha256_file
from app.core.base.paths import make_private_dir
from app.core.base.units import human_bytes
from app.core.models.files import (
    ModelError,
    check_model_name,
    fsync_dir,
    os_reason,
    sidecar_for,
    write_sidecar,
)

if TYPE_CHECKING:
    from app.core.models.manager import ModelEntry, ModelManager

log = logging.getLogger(__name__)


HTTP_TIMEOUT = 30.0  # seconds without a byte before a download is called dropped
_PROGRESS_EVERY = 0.25  # seconds between progress events
_DOWNLOAD_BLOCK = 1024 * 1024  # bytes written (and pause checked) at a time
_USER_AGENT = "Folio model manager (https://github.com/folio)"
# The most a download may bring when neither the server (no Content-Length) nor the caller
# (no expected size) says how big it is: a server that streams without end stops here, not
# at a full disk. Hugging Face stores no file over 50 GB (bigger models come split), so a
# GGUF past this is not one file a person meant to fetch.
UNSIZED_DOWNLOAD_CAP = 64 * 1024 ** 3


class DownloadError(ModelError):
    """A download failed; the message says why (HTTP status, dropped connection, checksum,
    disk full, no network) and whether running it again resumes."""


def redirect_problem(from_url: str, to_url: str) -> str | None:
    """Why a redirect from `from_url` to `to_url` must not be followed, or None when it may.
    A download that started over https stays on https: a hop to plain http would let anyone
    on the way change the file (and the checksum the server publishes with it)."""
    src = urllib.parse.urlsplit(from_url)
    dst = urllib.parse.urlsplit(to_url)
    if src.scheme.lower() == "https" and dst.scheme.lower() != "https":
        return (f"The server redirected the download from https to an insecure address "
                f"({dst.scheme or 'no scheme'}://{dst.netloc}); it was refused, as the file "
                f"could be changed on the way. Download it from an https address that stays "
                f"on https")
    return None


class _RedirectRefused(Exception):
    """Raised from the client's response hook to stop a redirect (see `redirect_problem`)."""


def _check_redirect(response: httpx2.Response) -> None:
    """httpx2 response hook: runs on every response, the redirects included, before the
    client follows one."""
    if not response.has_redirect_location:
        return
    current = response.request.url
    target = current.join(response.headers["Location"])
    problem = redirect_problem(str(current), str(target))
    if problem:
        raise _RedirectRefused(problem)


@dataclass
class DownloadProgress:
    done_bytes: int
    total_bytes: int | None
    speed_bps: float
    eta_s: float | None
    resumed_from: int
    url: str = ""
    filename: str = ""
    stage: str = "downloading"  # "downloading" | "verifying" | "paused"


@dataclass
class DownloadDone:
    path: Path
    entry: ModelEntry
    sha256: str = ""  # what the downloaded bytes hash to
    checksum_source: str | None = None  # "given" | "server" | None: nothing to compare with

    @property
    def verified(self) -> bool:
        """The bytes matched a sha256 that was known before they arrived."""
        return self.checksum_source is not None

    @property
    def verification(self) -> str:
        """What was verified, in words, for the CLI and the window."""
        if self.checksum_source == "given":
            return "verified: sha256 matches the one given"
        if self.checksum_source == "server":
            return "verified: sha256 matches the one the server published"
        return "not verified: no checksum (its size and GGUF layout were checked)"


@dataclass
class PartialDownload:
    """A download that stopped (paused, dropped, app closed) and can be resumed."""

    url: str
    filename: str
    sha256: str | None
    done_bytes: int
    total_bytes: int | None
    path: Path  # the partial file under .downloads/
    error: str | None = None  # why it stopped, when it failed


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def server_sha256(headers: Any) -> str | None:
    """The sha256 a server publishes for the file, from response headers: Hugging Face sends
    `X-Linked-Etag: "<sha256>"` for files stored in LFS (on the redirect to its CDN and on
    the file itself); some servers use the sha256 as the plain ETag. None when neither is 64
    hex digits (an ETag is often an MD5 or a version stamp, which says nothing here)."""
    if headers is None:
        return None
    for name in ("X-Linked-Etag", "ETag"):
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        if value.startswith("W/"):  # a weak ETag names no exact bytes
            continue
        value = value.strip('"').lower()
        if _SHA256_RE.match(value):
            return value
    return None


class _Blocks:
    """The response's bytes in blocks of `size`, as reading a file gives them (the last one
    shorter): progress and pause are checked once a block. What arrived before the
    connection failed is left in `rest`, so a drop loses nothing that came."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self.chunks = chunks
        self.size = size
        self.rest = b""

    def read(self) -> bytes:
        buf = bytearray()
        try:
            while len(buf) < self.size:
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                buf += chunk
        except BaseException:
            self.rest = bytes(buf)
            raise
        return bytes(buf)


class _Download:
    def __init__(self, manager: ModelManager, url: str, sha256: str | None,
                 filename: str | None, should_stop: Callable[[], bool] | None,
                 discard: bool, expected_size: int | None = None,
                 size_tolerance: int = 0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise DownloadError(f"{url!r} is not an http(s) URL")
        self.m = manager
        self.url = url
        if sha256 is not None:
            sha256 = sha256.strip().lower()
            if not _SHA256_RE.match(sha256):
                raise DownloadError(f"{sha256!r} is not a sha256 (64 hex digits)")
        self.sha256 = sha256
        name = filename or urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
        self.filename = check_model_name(name or "model.gguf")
        self.should_stop = should_stop or (lambda: False)
        self.discard = discard
        if expected_size is not None and (not isinstance(expected_size, int)
                                          or expected_size <= 0):
            raise DownloadError(f"{expected_size!r} is not a file size in bytes")
        self.expected_size = expected_size
        self.size_tolerance = max(0, int(size_tolerance))
        self.server_sha256: str | None = None
        self.part, self.meta_path = manager._partial_paths(url)

    def _cap(self, total: int | None) -> tuple[int, str]:
        """The most bytes this download may bring, and what sets it, in words: the length
        the server announced (httpx2 also refuses a body longer than that), else the expected
        size with its tolerance (the catalog's), else `UNSIZED_DOWNLOAD_CAP`."""
        if total is not None:
            return total, "the length it announced"
        if self.expected_size is not None:
            return (self.expected_size + self.size_tolerance,
                    "the size the file was expected to have")
        return UNSIZED_DOWNLOAD_CAP, "the most Folio downloads of a file of unknown size"

    def _size_problem(self, size: int, when: str) -> str | None:
        """Why `size` is not the expected one (None when it is, or nothing is expected)."""
        want = self.expected_size
        if want is None or abs(size - want) <= self.size_tolerance:
            return None
        about = (f"{want:,} bytes (± {human_bytes(self.size_tolerance)})"
                 if self.size_tolerance else f"{want:,} bytes")
        return (f"{self.filename} is the wrong size: {when} {size:,} bytes, but "
                f"{about} was expected, so it is not the file that was asked for (the "
                "catalog may be out of date, or the server changed the file)")

    # sidecar ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta_path.read_text("utf-8"))
            return data if isinstance(data, dict) and data.get("url") == self.url else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, **changes: Any) -> None:
        data = self._meta() or {"url": self.url}
        data.update(changes)
        tmp = self.meta_path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2), "utf-8")
            os.replace(tmp, self.meta_path)
        except OSError as exc:  # a full disk: the download itself reports it
            tmp.unlink(missing_ok=True)
            log.warning("Could not write %s: %s", self.meta_path, exc)

    def _fail(self, message: str, *, keep: bool) -> DownloadError:
        if keep and self.part.exists():
            self._write_meta(error=message)
        else:
            self.m.cancel_download(self.url)
        log.info("Download of %s failed: %s", self.url, message)
        return DownloadError(message)

    # the transfer ----------------------------------------------------------------------

    def run(self) -> Iterator[DownloadProgress | DownloadDone]:
        m = self.m
        target = m.models_dir / self.filename
        if target.exists() or target.is_symlink():
            raise DownloadError(f"{self.filename} is already in the models folder")
        try:
            make_private_dir(m.downloads_dir)
        except OSError as exc:
            raise DownloadError(f"Cannot create {m.downloads_dir}: {os_reason(exc)}") from exc
        if self.discard:
            m.cancel_download(self.url)
        meta = self._meta()
        if not meta:
            self.part.unlink(missing_ok=True)  # an orphan partial of unknown origin
        if self.sha256 and meta.get("sha256") and meta["sha256"] != self.sha256:
            self.part.unlink(missing_ok=True)  # another file is expected now
            meta = {}
        if self.expected_size is not None and meta.get("expected_size") not in (
                None, self.expected_size):
            self.part.unlink(missing_ok=True)  # another file is expected now
            meta = {}
        self.sha256 = self.sha256 or meta.get("sha256")
        if self.expected_size is None and isinstance(meta.get("expected_size"), int):
            self.expected_size = meta["expected_size"]
            self.size_tolerance = int(meta.get("size_tolerance") or 0)
        self.server_sha256 = meta.get("server_sha256")
        self._write_meta(url=self.url, filename=self.filename, sha256=self.sha256, error=None,
                         expected_size=self.expected_size, size_tolerance=self.size_tolerance)
        have = self.part.stat().st_size if self.part.exists() else 0

        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        validator = meta.get("etag") or meta.get("last_modified")
        if have and validator:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = validator
        elif have:
            headers["Range"] = f"bytes={have}-"
        client = httpx2.Client(follow_redirects=True, timeout=HTTP_TIMEOUT,
                               event_hooks={"response": [_check_redirect]})
        try:
            # The user's own http(s) URL, checked above. httpx2 follows the redirects (never
            # from https to http: `_check_redirect`) and keeps each one's response in
            # `resp.history` (Hugging Face's sha256 is on its 302).
            resp = client.send(client.build_request("GET", self.url, headers=headers),
                               stream=True)
        except _RedirectRefused as exc:
            client.close()
            raise self._fail(str(exc), keep=have > 0) from None
        except (httpx2.HTTPError, OSError) as exc:
            client.close()
            raise self._fail(_network_reason(self.url, exc), keep=have > 0) from exc
        if resp.status_code >= 400:
            code, reason = resp.status_code, resp.reason_phrase
            resp.close()
            client.close()
            if code == 416 and have:  # we already have everything the server has
                total = meta.get("total")
                if total == have:
                    yield from self._finish(have, total, have)
                    return
                raise self._fail("The server refused to resume the download (HTTP 416); "
                                 "it was discarded, run it again to start over", keep=False)
            keep = code >= 500 and have > 0
            hint = _HTTP_HINTS.get(code, "")
            raise self._fail(f"The server answered HTTP {code} {reason} for {self.url}{hint}",
                             keep=keep)

        with contextlib.closing(client), contextlib.closing(resp):
            status = resp.status_code
            start = 0
            if status == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != have:
                    raise self._fail(f"The server resumed at byte {start}, not {have}",
                                     keep=False)
            elif have:
                log.info("%s ignored the Range request: starting over", self.url)
            length = resp.headers.get("Content-Length")
            remaining = int(length) if length and length.isdigit() else None
            total = start + remaining if remaining is not None else None
            published = next((v for v in (server_sha256(r.headers) for r in
                                          [*resp.history, resp]) if v), None)
            if published:
                self.server_sha256 = published
            self._write_meta(
                total=total, etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                server_sha256=self.server_sha256,
            )
            wrong = self._size_problem(total, "the server reports") if total is not None \
                else None
            if wrong:
                raise self._fail(f"{wrong}; nothing more was downloaded", keep=False)
            if remaining:
                try:
                    free = shutil.disk_usage(self.m.downloads_dir).free
                except OSError:
                    free = remaining
                if free < remaining:
                    raise self._fail(
                        f"Not enough disk space for {self.filename}: the disk is full before "
                        f"the end (needs {human_bytes(remaining)} more, {human_bytes(free)} "
                        f"free in {self.m.models_dir}); free some space and run it again",
                        keep=start > 0)
            cap, why_cap = self._cap(total)
            overflow = False
            done = start
            blocks = _Blocks(resp.iter_raw(), _DOWNLOAD_BLOCK)  # the bytes as sent
            try:
                with self.part.open("r+b" if start else "wb") as out:
                    out.seek(start)
                    out.truncate()
                    started = time.monotonic()
                    last = 0.0
                    yield DownloadProgress(done, total, 0.0, None, start, self.url,
                                           self.filename)
                    while True:
                        if self.should_stop():
                            out.flush()
                            yield DownloadProgress(done, total, 0.0, None, start, self.url,
                                                   self.filename, stage="paused")
                            log.info("Paused %s at %d bytes", self.url, done)
                            return
                        try:
                            block = blocks.read()
                        except (OSError, httpx2.HTTPError) as exc:
                            out.write(blocks.rest)  # what came before the drop is kept
                            done += len(blocks.rest)
                            # reset, timeout, IncompleteRead: the server went away mid-file
                            out.flush()
                            raise self._fail(_dropped(self.url, done, total, exc),
                                             keep=True) from exc
                        if not block:
                            break
                        if done + len(block) > cap:
                            overflow = True  # failed below, once the file is closed
                            break
                        out.write(block)
                        done += len(block)
                        now = time.monotonic()
                        if now - last >= _PROGRESS_EVERY:
                            last = now
                            elapsed = now - started
                            speed = (done - start) / elapsed if elapsed > 0 else 0.0
                            eta = (total - done) / speed if total and speed > 0 else None
                            yield DownloadProgress(done, total, speed, eta, start, self.url,
                                                   self.filename)
                    out.flush()
                    os.fsync(out.fileno())
            except DownloadError:
                raise
            except OSError as exc:
                raise self._fail(
                    f"Could not write {self.filename} into {self.m.downloads_dir}: "
                    f"{os_reason(exc)} after {human_bytes(done)}; the partial file was kept: "
                    "free some space and run the download again to resume, or cancel it",
                    keep=True) from exc
        if overflow:
            raise self._fail(
                f"{self.filename}: the server sent more than {why_cap} ({human_bytes(cap)}); "
                "the download was stopped and deleted", keep=False)
        if total is not None and done < total:
            raise self._fail(_dropped(self.url, done, total, None), keep=True)
        yield from self._finish(done, total, start)

    def _finish(self, done: int, total: int | None, start: int
                ) -> Iterator[DownloadProgress | DownloadDone]:
        yield DownloadProgress(done, total, 0.0, 0.0, start, self.url, self.filename,
                               stage="verifying")
        wrong = self._size_problem(done, "it is")
        if wrong:
            raise self._fail(f"{wrong}. The download was deleted", keep=False)
        digest = sha256_file(self.part)
        expected, source = ((self.sha256, "given") if self.sha256 else
                            (self.server_sha256, "server") if self.server_sha256 else
                            (None, None))
        if expected and digest != expected:
            whose = "the one given" if source == "given" else "the one the server published"
            raise self._fail(
                f"{self.filename} failed its checksum: sha256 {digest}, but {whose} is "
                f"{expected}. The download was deleted; run it again to start over",
                keep=False)
        if source == "given" and self.server_sha256 and self.server_sha256 != expected:
            log.warning("%s: the server publishes sha256 %s, the given one %s matched",
                        self.url, self.server_sha256, expected)
        try:
            from app.core.models.gguf import read_gguf_info

            read_gguf_info(self.part)
        except ModelError as exc:
            raise self._fail(
                f"The downloaded file is not a usable GGUF model ({exc}); it was deleted",
                keep=False) from exc
        target = self.m.models_dir / self.filename
        try:
            _publish(self.part, target)
        except FileExistsError as exc:
            raise self._fail(
                f"{self.filename} appeared in the models folder while this download ran "
                "(another download or a copy of the same name); it was left as it is. This "
                "download is complete and kept: download it again under another name "
                "(--name, or “Download from URL…”) to keep both, or cancel it",
                keep=True) from exc
        except OSError as exc:
            raise self._fail(
                f"Could not move {self.filename} into {self.m.models_dir}: {os_reason(exc)}; "
                "the download is kept: run it again to retry", keep=True) from exc
        fsync_dir(self.m.models_dir)
        self.meta_path.unlink(missing_ok=True)
        write_sidecar(sidecar_for(target), digest, target.name)
        log.info("Downloaded %s to %s (%s)", self.url, target,
                 "sha256 verified" if source else "no sha256 to verify against")
        yield DownloadDone(target, self.m.get(target.name), sha256=digest,
                           checksum_source=source)


_HTTP_HINTS = {
    401: " (the repository is gated or private: sign in on the site and accept the model's "
         "licence there, then download it with a link that works without signing in, or "
         "download it in a browser and add the file)",
    403: " (access denied: the repository may be gated, needing its licence accepted on the "
         "site first, or the link may have expired)",
    404: " (the address is wrong or the file is gone)",
    410: " (the address is wrong or the file is gone)",
}


def _publish(part: Path, target: Path) -> None:
    """Move a finished download to its name in the models folder without ever replacing a
    file there: FileExistsError when the name is taken. A hard link is created only if the
    name is free (atomic, also against another process); where the file system has no hard
    links, the name is claimed with an exclusive create and the file renamed over the claim
    (an empty file of that name exists for that instant)."""
    try:
        os.link(part, target)
    except FileExistsError:
        raise
    except OSError as exc:
        log.info("Cannot hard-link %s (%s); claiming the name instead", target, exc)
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError
        os.close(fd)
        try:
            os.replace(part, target)
        except OSError:
            target.unlink(missing_ok=True)
            raise
        return
    try:
        part.unlink()
    except OSError as exc:  # the model is in place; the hidden partial is only clutter
        log.warning("Could not delete %s: %s", part, exc)


def _content_range_start(value: str | None) -> int:
    match = re.match(r"bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else -1


def _dropped(url: str, done: int, total: int | None, exc: BaseException | None) -> str:
    of = f" of {human_bytes(total)}" if total else ""
    why = f" ({exc})" if exc else ""
    return (f"The connection to {urllib.parse.urlsplit(url).netloc} dropped after "
            f"{human_bytes(done)}{of}{why}; run the download again to resume")


def _network_reason(url: str, exc: BaseException) -> str:
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(exc, httpx2.TimeoutException):
        return f"{host} did not answer within {HTTP_TIMEOUT:.0f} s (no network?)"
    reason: BaseException = exc
    while reason.__cause__ is not None or reason.__context__ is not None:  # the OS's own error
        reason = reason.__cause__ or reason.__context__  # type: ignore[assignment]
    if isinstance(reason, ConnectionRefusedError):
        return f"Cannot connect to {host}: the connection was refused (no network, or no server)"
    if isinstance(reason, socket.gaierror):
        return f"Cannot find {host}: no network or an unknown host ({reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} did not answer within {HTTP_TIMEOUT:.0f} s (no network?)"
    return f"Cannot download from {host}: {exc}"
