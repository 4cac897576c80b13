"""Libraries on S3-compatible object storage (`s3://bucket/prefix`): where the files go and
the write lease that stands in for `lock.py`'s OS lock.

LanceDB reads and writes the tables itself (`storage_options` below); `library.json` and the
lease object go through pyarrow's S3 file system. Both read the usual AWS variables:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), AWS_REGION / AWS_DEFAULT_REGION,
and AWS_ENDPOINT_URL for a server other than Amazon's (MinIO, Ceph, moto). Every request has a
bounded timeout (FOLIO_S3_TIMEOUT seconds, default 10) so a server that goes away gives an
error, not a hang.

The write lease: many machines may search a library at once, exactly one may write. The writer
holds the object `PREFIX/folio.lease` (pid, host, since, expires, a random token) and a thread
renews it every third of its lifetime (FOLIO_S3_LEASE seconds, default 60). A writer that
crashes stops renewing; once its lease has expired the next writer takes it over and
`Library.recover()` repairs what the crash left, as for a local library. Taking the lease is
write-then-read-back: pyarrow cannot send a conditional put (If-None-Match), so two writers
that both find the lease free both write it, and after a settle delay (FOLIO_S3_SETTLE, default
1 s) each reads it back: only the one whose token is there goes on. The race this leaves: a
writer stalled for longer than the settle delay between finding the lease free and writing it
overwrites a lease the other has already verified, and both go on. The first one's renewal
then finds the foreign token and refuses every further write (`lost`, within a third of the
lease), but commits the two made in between may interleave. (The read-back also needs
read-after-write consistency, which S3 has had since 2020.) Expiry compares the holder's clock
with the taker's: clocks more than a lease apart between machines break it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SCHEME = "s3://"
LEASE_FILE = "folio.lease"


def is_remote(root) -> bool:
    return isinstance(root, str) and root.startswith(SCHEME)


def normalize(uri: str) -> str:
    return uri.rstrip("/")


def _timeout() -> float:
    return float(os.environ.get("FOLIO_S3_TIMEOUT") or 10)


def lease_seconds() -> float:
    return float(os.environ.get("FOLIO_S3_LEASE") or 60)


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def storage_options() -> dict[str, str]:
    """LanceDB's options for an s3:// library (credentials come from the environment)."""
    seconds = max(1, round(_timeout()))
    opts = {"timeout": f"{seconds}s", "connect_timeout": f"{seconds}s",
            "client_max_retries": "2", "client_retry_timeout": str(seconds * 2)}
    endpoint = _endpoint()
    if endpoint:
        opts["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            opts["allow_http"] = "true"
    if _region():
        opts["aws_region"] = _region()
    return opts


def filesystem():
    from pyarrow import fs

    endpoint = _endpoint()
    kwargs: dict = {"connect_timeout": _timeout(), "request_timeout": _timeout(),
                    "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=2)}
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        kwargs.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
    if _region():
        kwargs["region"] = _region()
    return fs.S3FileSystem(**kwargs)


def _key(uri: str) -> str:
    return uri[len(SCHEME):]


def read_bytes(uri: str) -> bytes | None:
    """The object's bytes, or None when there is none."""
    f = filesystem()
    try:
        with f.open_input_stream(_key(uri)) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def write_bytes(uri: str, data: bytes) -> None:
    """One PUT: S3 objects appear whole or not at all, so no temporary file is needed."""
    with filesystem().open_output_stream(_key(uri)) as stream:
        stream.write(data)


def delete(uri: str) -> None:
    try:
        filesystem().delete_file(_key(uri))
    except FileNotFoundError:
        pass


# -- the write lease ---------------------------------------------------------------------


@dataclass
class Lease:
    uri: str
    token: str
    info: dict
    stop: threading.Event = field(default_factory=threading.Event)
    lost: bool = False
    thread: threading.Thread | None = None


_held: dict[str, tuple[Lease, int]] = {}
_guard = threading.Lock()


def holder(root: str) -> dict | None:
    raw = read_bytes(f"{normalize(root)}/{LEASE_FILE}")
    try:
        info = json.loads(raw) if raw else None
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _live(info: dict | None) -> bool:
    return bool(info) and float(info.get("expires") or 0) > time.time()


def acquire(root: str) -> str:
    """Take the write lease on the library at `root` or raise `LibraryInUse` naming its holder.
    Returns the key to pass to `release`."""
    from app.core.index.lock import LibraryInUse

    root = normalize(root)
    with _guard:
        if root in _held:
            lease, refs = _held[root]
            _held[root] = (lease, refs + 1)
            return root
        current = holder(root)
        if _live(current):
            raise LibraryInUse(root, current)
        if current:
            log.warning("%s: taking over the expired write lease of pid %s on %s", root,
                        current.get("pid"), current.get("host"))
        token = secrets.token_hex(16)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": round(time.time(), 3), "token": token}
        uri = f"{root}/{LEASE_FILE}"
        _write_lease(uri, info)
        time.sleep(float(os.environ.get("FOLIO_S3_SETTLE") or 1))
        back = holder(root)
        if not back or back.get("token") != token:
            raise LibraryInUse(root, back)
        lease = Lease(uri, token, info)
        lease.thread = threading.Thread(target=_renew, args=(lease,), daemon=True,
                                        name="folio-s3-lease")
        lease.thread.start()
        if not _held:  # registered after pyarrow's own S3 finalizer, so it runs before it
            atexit.register(_release_all)
        _held[root] = (lease, 1)
        return root


def _write_lease(uri: str, info: dict) -> None:
    info["expires"] = round(time.time() + lease_seconds(), 3)
    write_bytes(uri, json.dumps(info).encode())


def _renew(lease: Lease) -> None:
    while not lease.stop.wait(lease_seconds() / 3):
        try:
            raw = read_bytes(lease.uri)
            current = json.loads(raw) if raw else {}
            if current.get("token") != lease.token:
                lease.lost = True
                log.error("%s: the write lease was taken by pid %s on %s (this process was "
                          "too slow to renew it); writes here are no longer safe", lease.uri,
                          current.get("pid"), current.get("host"))
                return
            _write_lease(lease.uri, lease.info)
        except Exception as exc:  # noqa: BLE001 - keep trying until the lease runs out
            log.warning("%s: could not renew the write lease: %s", lease.uri, exc)


def release(key: str) -> None:
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        lease, refs = entry
        if refs > 1:
            _held[key] = (lease, refs - 1)
            return
        del _held[key]
    lease.stop.set()
    if lease.thread is not None:
        lease.thread.join(timeout=_timeout() * 3)
    try:
        current = holder(key)
        if current and current.get("token") == lease.token:
            delete(lease.uri)
    except Exception as exc:  # noqa: BLE001 - it expires by itself
        log.warning("%s: could not drop the write lease (it expires by itself): %s", key, exc)


def _release_all() -> None:
    """At exit, drop the leases still held (their libraries were never closed)."""
    while _held:
        key = next(iter(_held))
        _held[key] = (_held[key][0], 1)
        release(key)


def lost(key: str) -> bool:
    with _guard:
        entry = _held.get(key)
    return bool(entry and entry[0].lost)
