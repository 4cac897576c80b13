"""One library = one folder: `lancedb/` (documents, chunks) and `library.json` (what built it).

The chunks of a document are written while it is being indexed with `live = false`, then made
visible in one LanceDB commit that flips `live` for the whole document (new version on, old
version off). Search only reads live chunks, so no search ever sees both versions of a file or
neither, and a process that dies mid-document leaves its finished batches staged for the next
run to continue from. `recover()` repairs whatever a crash left between the two tables.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from app.core.base.files import write_atomically
from app.core.base.paths import make_private_dir
from app.core.documents.base import Chunk
from app.core.index import lock as folio_lock
from app.core.index.indexes import (  # noqa: F401 - also Library's public names
    ANN_NPROBES,
    ANN_REFINE_FACTOR,
    ANN_THRESHOLD,
    FTS_INDEX,
    VECTOR_INDEX,
    SearchIndexes,
    ann_threshold,
)
from app.core.index import remote

log = logging.getLogger(__name__)
# LanceDB's Rust side logs deprecation chatter to stderr unless told otherwise.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("RUST_LOG", "error")

SCHEMA_VERSION = 1
META_FILE = "library.json"

# Document status values, in the order a document goes through them.
QUEUED, INDEXING, READY, FAILED, REMOVING = "queued", "indexing", "ready", "failed", "removing"


class LibraryError(Exception):
    """A library problem the user must act on; the message says what to do."""


class DiskFull(LibraryError):
    """The disk holding the library filled up during a write. The write did not happen (a
    LanceDB commit is all or nothing); what the library held before it is intact."""

    def __init__(self, root: Path | str, doing: str = "writing to the library"):
        self.root, self.doing = str(root), doing
        super().__init__(
            f"Disk full while {doing}: there is no space left on the disk that holds the "
            f"library ({root}). Free some space, then add the file again; the documents "
            f"already indexed are kept and the rest continues where it stopped."
        )


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) is "no space left on device": an OSError
    with errno ENOSPC, or LanceDB's Rust error, which only says so in its message."""
    import errno

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text or \
                "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class LibraryBusy(LibraryError):
    """A read lost the race with a compaction several times in a row (see `read_again`)."""


def is_stale_read(exc: BaseException | None) -> bool:
    """Whether a LanceDB read failed because the files of the table version it had started
    from were removed under it: the writer (another process, or another thread here) compacted
    the table and dropped the old versions (`Library.optimize`) while the read ran. LanceDB
    says so only in its message: "Not found: .../chunks.lance/data/....lance"."""
    text = str(exc)
    return "Not found" in text and ".lance/" in text


READ_TRIES = 3


def read_again(read, what: str = "reading the library"):
    """Run `read()`, again when it lost the race with a compaction: the retry reads the new
    version (tables check for the latest version on every read), whose files are all there.
    Compactions come once per ingest, so a second loss in a row is already unlikely."""
    for attempt in range(READ_TRIES):
        try:
            return read()
        except Exception as exc:
            if not is_stale_read(exc):
                raise
            if attempt == READ_TRIES - 1:
                raise LibraryBusy(
                    f"The library changed {READ_TRIES} times while {what} (another Folio "
                    f"process is compacting it); try again in a moment."
                ) from exc
            log.info("%s: the version being read was compacted away; reading the new one", what)
    raise AssertionError("unreachable")


def reading_again(what: str):
    """`read_again` as a decorator: the whole call runs again after a lost race."""

    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return read_again(lambda: fn(*args, **kwargs), what)
            except LibraryError:
                raise
            except Exception as exc:
                root = getattr(args[0], "root", None) if args else None
                if root is None or not is_storage_error(exc):
                    raise
                raise LibraryUnreachable(root, what, exc) from exc

        return wrapper

    return wrap


def is_storage_error(exc: BaseException) -> bool:
    """Whether LanceDB failed talking to object storage (an s3:// library's server is down,
    unreachable or timing out); it says so only in its message."""
    text = str(exc)
    return "LanceError(IO)" in text or "S3 error" in text or "Error performing" in text


class LibraryUnreachable(LibraryError):
    """The storage of an s3:// library did not answer (timeouts bound every request)."""

    def __init__(self, root, what: str, exc: BaseException):
        reason = str(exc).split(", /")[0].removeprefix("lance error: ")
        super().__init__(
            f"Folio could not reach the library {root} while {what}: {reason[:300]}. Check the "
            f"network and the storage server (AWS_ENDPOINT_URL), then try again."
        )


class LibraryLocked(LibraryError):
    """Another process has the library open for writing (app/core/index/lock.py); `holder` has
    its pid, host and start time when known."""

    def __init__(self, exc: folio_lock.LibraryInUse):
        self.holder = exc.holder
        super().__init__(str(exc))


class ReadOnlyLibrary(LibraryError):
    pass


class EmbedderMismatch(LibraryError):
    def __init__(self, built_with: str, requested: str):
        self.built_with, self.requested = built_with, requested
        super().__init__(
            f"This library was built with the embedder {built_with!r}; searching or adding "
            f"with {requested!r} would mix incompatible vectors. Re-index the library with "
            f"{requested!r} (folio reindex --embedder {requested}) or keep using {built_with!r}."
        )


def doc_id_for(path: Path) -> str:
    """A stable id for a file: its absolute path, hashed (paths can hold any character)."""
    return hashlib.sha1(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(_sql_str(v) for v in values)})"


@dataclass(slots=True)
class DocumentRecord:
    doc_id: str
    path: str
    name: str
    kind: str = ""
    sha256: str = ""  # of the version whose chunks are live
    version: str = ""  # live chunk version (sha + splitter fingerprint)
    pending_version: str = ""  # version being indexed; its chunks are staged, not live
    size: int = 0
    mtime: float = 0.0
    status: str = QUEUED
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    pages: int | None = None
    title: str = ""
    author: str = ""
    collections: list[str] = field(default_factory=list)
    embedder: str = ""
    chunks: int = 0
    added_at: float = 0.0
    updated_at: float = 0.0

    def to_row(self) -> dict:
        row = {name: getattr(self, name) for name in self.__slots__}
        row["warnings"] = json.dumps(self.warnings)
        return row

    @classmethod
    def from_row(cls, row: dict) -> DocumentRecord:
        data = dict(row)
        data["warnings"] = json.loads(data.get("warnings") or "[]")
        data["collections"] = list(data.get("collections") or [])
        return cls(**{k: data[k] for k in cls.__slots__ if k in data})

    def public(self) -> dict:
        """The fields `folio docs list --json` shows."""
        return {
            "path": self.path,
            "title": self.title,
            "kind": self.kind,
            "status": self.status,
            "pages": self.pages,
            "chunks": self.chunks,
            "error": self.error or None,
            "warnings": self.warnings,
            "collections": self.collections,
            "size": self.size,
            "sha256": self.sha256 or None,
            "embedder": self.embedder or None,
            "added_at": self.added_at,
            "updated_at": self.updated_at,
        }


DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("name", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("version", pa.string()),
        pa.field("pending_version", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("warnings", pa.string()),
        pa.field("pages", pa.int32()),
        pa.field("title", pa.string()),
        pa.field("author", pa.string()),
        pa.field("collections", pa.list_(pa.string())),
        pa.field("embedder", pa.string()),
        pa.field("chunks", pa.int32()),
        pa.field("added_at", pa.float64()),
        pa.field("updated_at", pa.float64()),
    ]
)


def chunks_schema(dims: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string()),
            pa.field("version", pa.string()),
            pa.field("live", pa.bool_()),
            pa.field("chunk_index", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("context", pa.string()),
            pa.field("fts", pa.string()),
            pa.field("section", pa.string()),
            pa.field("page", pa.int32()),
            pa.field("page_end", pa.int32()),
            pa.field("char_start", pa.int32()),
            pa.field("char_end", pa.int32()),
            pa.field("tokens", pa.int32()),
            pa.field("vector", pa.list_(pa.float32(), dims)),
        ]
    )


class Library(SearchIndexes):
    """A library folder opened for reading and writing by this process."""

    def __init__(self, root: Path, embedder=None, *, embedder_name: str | None = None,
                 read_only: bool | None = False, new_embedder: str | None = None):
        """Open (creating if needed) the library at `root`.

        `embedder` is a ready embedder object; `embedder_name` a known name or a model folder.
        Either must match what built the library, else `EmbedderMismatch`. `new_embedder`
        (a name or folder) is only the choice for a library that has none recorded yet: an
        existing library keeps the embedder that built it (the window's Settings choice).

        `read_only`: False takes the library's write lock (`LibraryLocked` when another
        process holds it); True takes no lock and refuses every write; None writes when the
        lock is free, else opens read-only (`self.read_only` says which).
        """
        import lancedb

        self.remote = remote.is_remote(root)
        lock = remote if self.remote else folio_lock
        if self.remote:  # s3://bucket/prefix: see app/core/index/remote.py
            self.root = remote.normalize(root)
        else:
            self.root = Path(root).expanduser().resolve()
            make_private_dir(self.root)
        # Reads on a shared s3:// library take no lease: searching machines would otherwise
        # hold writers off (and pay the lease's round trips) whenever none was writing.
        self.read_only = read_only is True or (self.remote and read_only is None)
        if not self.read_only:
            try:
                key = lock.acquire(self.root)
            except folio_lock.LibraryInUse as exc:
                if read_only is not None:
                    raise LibraryLocked(exc) from None
                log.info("%s", exc)
                self.read_only = True
            else:
                self._release = weakref.finalize(self, lock.release, key)
                self._lease_key = key if self.remote else None
        self._embedder = embedder
        self._lock = threading.RLock()
        if self.remote:
            self._db = lancedb.connect(f"{self.root}/lancedb",
                                       read_consistency_interval=timedelta(0),
                                       storage_options=remote.storage_options())
        else:
            make_private_dir(self.root / "lancedb")
            self._db = lancedb.connect(str(self.root / "lancedb"),
                                       read_consistency_interval=timedelta(0))
        self.repaired: str | None = None  # why library.json was rebuilt on this open, if it was
        self.meta = self._load_meta()
        source = embedder_name
        requested = embedder.name if embedder is not None else _embedder_name(source)
        built_with = self.meta.get("embedder")
        if built_with and requested and built_with != requested:
            raise EmbedderMismatch(built_with, requested)
        if self.repaired and built_with and source and not self.meta.get("embedder_source"):
            self.meta["embedder_source"] = source  # a model folder the rebuild could not know
            if not self.read_only:
                self._save_meta()
        if not built_with and not requested and new_embedder:
            source, requested = new_embedder, _embedder_name(new_embedder)
        if not built_with:
            self.meta["embedder"] = requested or _default_embedder_name()
            if source:
                self.meta["embedder_source"] = source
            if not self.read_only:  # a library still empty reopens with the same choice
                self._save_meta()
        self.embedder_name: str = self.meta["embedder"]
        self._docs_table = self._open_or_create("documents", DOCUMENTS_SCHEMA)
        self._chunks_table = None
        if "dims" in self.meta:
            self._chunks_table = self._open_or_create("chunks", chunks_schema(self.meta["dims"]))
        self._docs_cache: dict[str, DocumentRecord] | None = None
        self._docs_version: int | None = None  # the documents table version cached
        self._fts_ready = False
        self.ann_threshold = ann_threshold()
        self._index_thread: threading.Thread | None = None
        self.index_error: str | None = None  # why the last background index build failed

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, embedder=None, *, embedder_name: str | None = None,
             read_only: bool | None = False, new_embedder: str | None = None) -> Library:
        lib = cls(root if remote.is_remote(root) else Path(root), embedder,
                  embedder_name=embedder_name, read_only=read_only,
                  new_embedder=new_embedder)
        if not lib.read_only:  # only the lock holder may repair: others could race a writer
            lib.recover()
        return lib

    def close(self) -> None:
        """Release the write lock now (it is also released when this object is collected);
        this object then refuses writes, as another process may be writing.

        A background vector index build still running is finished first: the lock is what
        keeps another writer from compacting away the files it reads, and a CLI command that
        ingested past the threshold would otherwise exit with its index half built."""
        if self.indexing():
            log.info("finishing the vector index of %s before closing it", self.root)
            self.wait_for_index()
        release = getattr(self, "_release", None)
        if release is not None:
            release()
            self.read_only = True

    def _writable(self) -> None:
        if self.remote and getattr(self, "_lease_key", None) and remote.lost(self._lease_key):
            self.read_only = True  # another writer took the lease over: stop writing at once
            raise ReadOnlyLibrary(
                f"This process lost the write lease on the library {self.root} (it could not "
                f"renew it in time and another Folio took it over); open the library again."
            )
        if self.read_only:
            raise ReadOnlyLibrary(
                f"The library {self.root} is open read-only here (another Folio process is "
                f"writing to it); close that one to change the library."
            )

    def _load_meta(self) -> dict:
        """library.json, or, when it is empty or damaged (a power cut before it was written
        durably, a bad copy), what it said rebuilt from the tables (see `_rebuild_meta`)."""
        path = self._meta_path()
        try:
            raw = remote.read_bytes(path) if self.remote else path.read_bytes()
            if raw is None:
                raise FileNotFoundError(path)
        except FileNotFoundError:
            return {"schema_version": SCHEMA_VERSION, "created_at": time.time()}
        except OSError as exc:
            raise LibraryError(
                f"Folio cannot read the library file {path}: {exc.strerror or exc}. Check that "
                f"you may read and write the folder {self.root}, then open it again."
            ) from exc
        try:
            meta = json.loads(raw.decode("utf-8"))
            problem = _meta_problem(meta)
        except (UnicodeDecodeError, ValueError) as exc:
            meta, problem = None, ("it is empty" if not raw.strip() else f"it is not JSON ({exc})")
        if problem is None and not {"dims", "embedder"} <= set(meta) \
                and "chunks" in _table_names(self._db):
            problem = "it does not say which embedder built the passages, or their dimension"
        if problem is not None:
            return self._rebuild_meta(path, problem)
        if meta.get("schema_version", 1) > SCHEMA_VERSION:
            raise LibraryError(
                f"The library at {self.root} was made by a newer Folio "
                f"(schema {meta['schema_version']}); update Folio to open it."
            )
        return meta

    def _rebuild_meta(self, path: Path, problem: str) -> dict:
        """library.json again from what the tables hold: the embedder the ready documents were
        embedded with, the vectors' dimension from the chunks table's schema. The damaged
        file is kept beside it as library.json.bad. A read-only opening repairs in memory."""
        meta: dict = {"schema_version": SCHEMA_VERSION, "created_at": time.time()}
        try:
            names = _table_names(self._db)
            embedders: dict[str, int] = {}
            if "documents" in names:
                column = self._db.open_table("documents").to_arrow().column("embedder")
                for name in column.to_pylist():
                    if name:
                        embedders[name] = embedders.get(name, 0) + 1
            if "chunks" in names:
                vector = self._db.open_table("chunks").schema.field("vector").type
                meta["dims"] = int(vector.list_size)
        except Exception as exc:  # noqa: BLE001 - whatever LanceDB raises, say what to do
            raise LibraryError(
                f"The library file {path} is damaged ({problem}) and the library's tables "
                f"could not be read to rebuild it ({exc}). Restore {META_FILE} from a backup, "
                f"or move the folder {self.root} aside and add your documents again."
            ) from exc
        if embedders:  # a known name loads by itself; a model folder is recorded when the
            # library is next opened with it (`embedder_name`), as the name cannot find it
            meta["embedder"] = max(embedders, key=lambda n: embedders[n])
        self.repaired = (
            f"The library file {META_FILE} was damaged ({problem}); it was rebuilt from the "
            f"library's tables (embedder {meta.get('embedder') or 'not yet chosen'}"
            + (f", {meta['dims']} dimensions" if "dims" in meta else "") + ")"
        )
        if not self.read_only:
            bad = f"{path}.bad" if self.remote else path.with_name(path.name + ".bad")
            try:
                if self.remote:
                    remote.filesystem().move(path[len(remote.SCHEME):], bad[len(remote.SCHEME):])
                else:
                    os.replace(path, bad)
                self.repaired += f"; the damaged file was kept as {META_FILE}.bad"
            except OSError as exc:
                log.warning("could not set %s aside: %s", path, exc)
            self.meta = meta
            self._save_meta()
        log.warning("%s: %s", self.root, self.repaired)
        return meta

    def _meta_path(self):
        return f"{self.root}/{META_FILE}" if self.remote else self.root / META_FILE

    def _save_meta(self) -> None:
        text = json.dumps(self.meta, indent=2, sort_keys=True)
        if self.remote:
            remote.write_bytes(self._meta_path(), text.encode("utf-8"))
        else:
            write_atomically(self._meta_path(), text)

    def _open_or_create(self, name: str, schema: pa.Schema):
        try:
            return self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            return self._db.create_table(name, schema=schema, exist_ok=True)

    @property
    def embedder(self):
        """The embedder that built (or will build) this library, loaded on first use."""
        if self._embedder is None:
            from app.core.index.embedder import get_embedder

            embedder = get_embedder(self.meta.get("embedder_source") or self.embedder_name)
            if embedder.name != self.embedder_name:  # e.g. a provider's embedder model changed
                raise EmbedderMismatch(self.embedder_name, embedder.name)
            self._embedder = embedder
        return self._embedder

    def _chunks(self):
        """The chunks table, created when the first vectors reveal their dimension."""
        if self._chunks_table is None:
            dims = int(self.embedder.dims)
            self.meta["dims"] = dims
            self.meta["embedder"] = self.embedder.name
            self._save_meta()
            self._chunks_table = self._open_or_create("chunks", chunks_schema(dims))
        return self._chunks_table

    # -- documents ---------------------------------------------------------------------

    def documents(self) -> list[DocumentRecord]:
        return sorted(self._docs().values(), key=lambda d: d.path)

    def _docs(self) -> dict[str, DocumentRecord]:
        """The document rows, cached. The writer keeps its cache current itself; a read-only
        library reloads it whenever the documents table has a new version, so a reader beside
        a running ingest sees the documents it publishes (search drops chunks of documents
        it does not know)."""
        with self._lock:
            if self.read_only and self._docs_cache is not None:
                if self._docs_table.version != self._docs_version:
                    self._docs_cache = None
            if self._docs_cache is None:
                self._docs_version = self._docs_table.version  # then read: never older
                rows = read_again(self._docs_table.to_arrow).to_pylist()
                self._docs_cache = {r["doc_id"]: DocumentRecord.from_row(r) for r in rows}
            return self._docs_cache

    def get(self, path: Path | str) -> DocumentRecord | None:
        return self._docs().get(doc_id_for(Path(path)))

    def find(self, path_or_name: str) -> list[DocumentRecord]:
        """Documents matching an exact path, else a file name, else a path suffix."""
        docs = self.documents()
        target = str(Path(path_or_name).expanduser().resolve())
        exact = [d for d in docs if d.path == target]
        if exact:
            return exact
        by_name = [d for d in docs if d.name == path_or_name]
        return by_name or [d for d in docs if d.path.endswith(os.sep + path_or_name)]

    def put_document(self, doc: DocumentRecord) -> None:
        self.put_documents([doc])

    def put_documents(self, docs: Sequence[DocumentRecord]) -> None:
        """Insert or update document rows in one commit."""
        self._writable()
        if not docs:
            return
        now = time.time()
        for doc in docs:
            doc.updated_at = now
            doc.added_at = doc.added_at or now
        with self._lock:
            table = pa.Table.from_pylist([d.to_row() for d in docs], schema=DOCUMENTS_SCHEMA)
            (
                self._docs_table.merge_insert("doc_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(table)
            )
            cache = self._docs()
            for doc in docs:
                cache[doc.doc_id] = doc

    def collections(self) -> dict[str, int]:
        """Collection name -> number of documents in it."""
        counts: dict[str, int] = {}
        for doc in self._docs().values():
            for name in doc.collections:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def set_collections(self, doc: DocumentRecord, collections: Sequence[str]) -> None:
        doc.collections = sorted(set(collections))
        self.put_document(doc)

    # -- chunks ------------------------------------------------------------------------

    def staged_indices(self, doc_id: str, version: str) -> set[int]:
        """Chunk indices already written for a version still being indexed (for resume)."""
        if self._chunks_table is None:
            return set()
        rows = (
            self._chunks_table.search()
            .where(f"doc_id = {_sql_str(doc_id)} AND version = {_sql_str(version)}")
            .select(["chunk_index"])
            .limit(None)
            .to_arrow()
        )
        return set(rows.column("chunk_index").to_pylist())

    def stage_chunks(self, batch: Sequence[tuple[str, str, Chunk]], vectors: np.ndarray) -> None:
        """Write (doc_id, version, chunk) rows in one commit, invisible to search until
        `publish`."""
        self._writable()
        if not batch:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        chunks = [c for _, _, c in batch]
        table = pa.table(
            {
                "id": [f"{d}:{v}:{c.index}" for d, v, c in batch],
                "doc_id": [d for d, _, _ in batch],
                "version": [v for _, v, _ in batch],
                "live": [False] * len(batch),
                "chunk_index": [c.index for c in chunks],
                "text": [c.text for c in chunks],
                "context": [c.context for c in chunks],
                "fts": [c.embed_text for c in chunks],
                "section": [" > ".join(c.section) for c in chunks],
                "page": [c.page for c in chunks],
                "page_end": [c.page_end for c in chunks],
                "char_start": [c.char_start for c in chunks],
                "char_end": [c.char_end for c in chunks],
                "tokens": [c.tokens for c in chunks],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1)), vectors.shape[1]
                ),
            },
            schema=self._chunks().schema,
        )
        with self._lock:
            self._chunks().add(table)

    def publish(self, items: Sequence[tuple[DocumentRecord, str, int]]) -> None:
        """Make each (document, version, chunk count) searchable: one commit flips `live` for
        all of them (new version on, old off), then the documents and the cleanup follow.

        Versions are unique per document (they hash the document id), so `version IN (...)`
        can only switch on the versions being published.
        """
        self._writable()
        if not items:
            return
        with self._lock:
            ids = _sql_in("doc_id", [doc.doc_id for doc, _, _ in items])
            versions = [version for _, version, _ in items]
            self._chunks().update(where=ids, values_sql={"live": _sql_in("version", versions)})
            for doc, version, count in items:
                doc.version = version
                doc.pending_version = ""
                doc.status = READY
                doc.error = ""
                doc.chunks = count
                doc.embedder = self.embedder_name
            self.put_documents([doc for doc, _, _ in items])
            self._chunks().delete(f"{ids} AND NOT {_sql_in('version', versions)}")

    def remove(self, doc: DocumentRecord) -> None:
        """Remove a document and its chunks; a crash midway is finished by `recover`."""
        self._writable()
        with self._lock:
            doc.status = REMOVING
            self.put_document(doc)
            if self._chunks_table is not None:
                self._chunks_table.delete(f"doc_id = {_sql_str(doc.doc_id)}")
            self._docs_table.delete(f"doc_id = {_sql_str(doc.doc_id)}")
            self._docs().pop(doc.doc_id, None)

    def move_document(self, doc: DocumentRecord, new_path: Path, version: str) -> DocumentRecord:
        """Give a document a new path without embedding it again (its file was renamed, the
        content is the same): its live chunks, vectors included, are staged under the new
        path's id and `version`, published, and the old document removed. A crash midway
        leaves the new document staged (the next ingest of it resumes) beside the old one."""
        self._writable()
        new_path = Path(new_path)
        new_id = doc_id_for(new_path)
        with self._lock:
            names = self._chunks().schema.names
            rows = read_again(lambda: (
                self._chunks().search().where(f"doc_id = {_sql_str(doc.doc_id)} AND live = true")
                .select(names).limit(None).to_arrow()))
            moved = replace(doc, doc_id=new_id, path=str(new_path), name=new_path.name,
                            status=INDEXING, pending_version=version, added_at=0.0,
                            collections=list(doc.collections), warnings=list(doc.warnings))
            self.put_document(moved)
            n = rows.num_rows
            index = rows.column("chunk_index").to_pylist()
            columns = {
                "id": pa.array([f"{new_id}:{version}:{i}" for i in index]),
                "doc_id": pa.array([new_id] * n),
                "version": pa.array([version] * n),
                "live": pa.array([False] * n),
            }
            table = pa.table({name: columns.get(name, rows.column(name)) for name in names},
                             schema=self._chunks().schema)
            self._chunks().add(table)
            self.publish([(moved, version, n)])
            self.remove(doc)
        return moved

    def document_chunks(self, doc_id: str) -> list[dict]:
        """A document's live chunks in reading order (text, page, page_end, section...)."""
        return self._live_chunks(f"doc_id = {_sql_str(doc_id)}")

    def chunk_windows(self, spans: Sequence[tuple[str, int, int]]) -> list[dict]:
        """The live chunks of each (doc_id, first, last) span of chunk indexes, with their
        doc_id, in one read: found passages' neighbours (index/context.py)."""
        if not spans:
            return []
        where = " OR ".join(
            f"(doc_id = {_sql_str(doc_id)} AND chunk_index >= {int(first)}"
            f" AND chunk_index <= {int(last)})" for doc_id, first, last in spans)
        return self._live_chunks(f"({where})", extra=["doc_id"])

    def _live_chunks(self, where: str, extra: Sequence[str] = ()) -> list[dict]:
        if self._chunks_table is None:
            return []
        rows = read_again(lambda: (
            self._chunks_table.search()
            .where(f"{where} AND live = true")
            .select(["chunk_index", "text", "page", "page_end", "section", "char_start",
                     "char_end", *extra])
            .limit(None)
            .to_arrow()
            .to_pylist()
        ))
        return sorted(rows, key=lambda r: r["chunk_index"])

    def chunk_count(self, live_only: bool = True) -> int:
        if self._chunks_table is None:
            return 0
        return read_again(
            lambda: self._chunks_table.count_rows("live = true" if live_only else None))

    def recover(self) -> dict[str, int]:
        """Repair what an interrupted run left: finish removals and publishes, drop orphans.

        Safe to run at any time by the process that writes the library.
        """
        self._writable()
        fixed = {"removed": 0, "published": 0, "orphans": 0}
        with self._lock:
            docs = self._docs()
            for doc in list(docs.values()):
                if doc.status == REMOVING:
                    self.remove(doc)
                    fixed["removed"] += 1
            if self._chunks_table is None:
                return fixed
            table = self._chunks_table
            live_versions = self._live_versions_by_doc()
            for doc in docs.values():
                # Died after flipping `live` but before recording it on the document.
                if doc.pending_version and live_versions.get(doc.doc_id) == {doc.pending_version}:
                    count = table.count_rows(
                        f"doc_id = {_sql_str(doc.doc_id)} AND live = true"
                    )
                    self.publish([(doc, doc.pending_version, count)])
                    fixed["published"] += 1
            stale = self._stale_versions()
            if stale:
                clauses = [
                    f"(doc_id = {_sql_str(d)} AND version = {_sql_str(v)})" for d, v in stale
                ]
                for start in range(0, len(clauses), 200):
                    where = " OR ".join(clauses[start : start + 200])
                    fixed["orphans"] += table.count_rows(where)
                    table.delete(where)
            if any(fixed.values()):
                log.info("library %s recovered: %s", self.root, fixed)
        return fixed

    def _chunk_versions(self) -> pa.Table:
        return (
            self._chunks_table.search()
            .select(["doc_id", "version", "live"])
            .limit(None)
            .to_arrow()
        )

    def _live_versions_by_doc(self) -> dict[str, set[str]]:
        rows = self._chunk_versions().filter(pa.compute.field("live"))
        out: dict[str, set[str]] = {}
        for doc_id, version in zip(
            rows.column("doc_id").to_pylist(), rows.column("version").to_pylist(), strict=True
        ):
            out.setdefault(doc_id, set()).add(version)
        return out

    def _stale_versions(self) -> set[tuple[str, str]]:
        """(doc_id, version) pairs in the chunks table that no document claims."""
        rows = self._chunk_versions()
        pairs = set(zip(rows.column("doc_id").to_pylist(), rows.column("version").to_pylist()))
        docs = self._docs()
        return {
            (doc_id, version)
            for doc_id, version in pairs
            if doc_id not in docs
            or version not in {docs[doc_id].version, docs[doc_id].pending_version}
        }

    # -- maintenance -------------------------------------------------------------------

    def optimize(self) -> None:
        """Compact small fragments, fold new rows into the indexes (full-text and vector: they
        are updated in place, not rebuilt), drop old table versions; then start the background
        vector index build when the library has grown past `ann_threshold` (`_plan_vector_index`).

        While a background build runs the chunks table is left as it is (compacting it would
        remove the files the build reads); the next optimize catches up."""
        if self.read_only:
            return
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._ensure_fts_index()
            building = self.indexing()
            for table in (self._docs_table, self._chunks_table):
                if table is None or (building and table is self._chunks_table):
                    continue
                try:
                    table.optimize(cleanup_older_than=timedelta(0))
                except Exception as exc:  # a failed compaction loses nothing; retry next time
                    log.warning("optimize of %s failed: %s", table.name, exc)
            if not building:
                self._start_vector_index()

    def reset_for_embedder(self, embedder_source: str) -> list[str]:
        """Drop every vector and record a new embedder (a known name or a model folder);
        returns the paths to index again.

        The order is what a crash at any point needs: every document is marked queued (one
        commit) before a chunk is dropped, so the library never holds a "ready" document
        without passages that a later ingest would skip as unchanged; the chunks the queued
        documents no longer claim are orphans that `recover()` deletes. library.json names
        the new embedder last, after the old vectors are gone: until then it still describes
        them, and the queued documents are indexed again with whichever embedder it names."""
        self._writable()
        self.wait_for_index()  # a build still running would index the table dropped below
        with self._lock:
            docs = self.documents()
            paths = [d.path for d in docs]
            for doc in docs:
                doc.sha256 = doc.version = doc.pending_version = ""
                doc.status, doc.chunks, doc.embedder = QUEUED, 0, ""
            self.put_documents(docs)
            if self._chunks_table is not None or "chunks" in _table_names(self._db):
                self._db.drop_table("chunks")
                self._chunks_table = None
            self.meta.pop("dims", None)
            self.meta.pop("ann_trained_rows", None)
            self.meta["embedder"] = _embedder_name(embedder_source)
            self.meta["embedder_source"] = embedder_source
            self.embedder_name = self.meta["embedder"]
            self._save_meta()
            self._embedder = None
            self._fts_ready = False
            return paths

    def stats(self) -> dict:
        docs = self.documents()
        by_status: dict[str, int] = {}
        for d in docs:
            by_status[d.status] = by_status.get(d.status, 0) + 1
        return {
            "path": str(self.root),
            "embedder": self.embedder_name,
            "documents": len(docs),
            "by_status": by_status,
            "chunks": self.chunk_count(),
            "pages": sum(d.pages or 0 for d in docs if d.status == READY),
            "collections": self.collections(),
        }

    # -- search (app.core.index.search.hybrid_search reads through these two) --------------

    def scope_filter(
        self, collections: Sequence[str] | None, documents: Sequence[str] | None
    ) -> str | None:
        """SQL over chunks for the live chunks in scope; None when the scope holds nothing."""
        clauses = ["live = true"]
        if collections or documents:
            wanted = set()
            docs = self._docs().values()
            if collections:
                chosen = set(collections)
                wanted |= {d.doc_id for d in docs if chosen & set(d.collections)}
            if documents:
                for item in documents:
                    wanted |= {d.doc_id for d in self.find(item)}
            if not wanted:
                return None
            clauses.append(_sql_in("doc_id", sorted(wanted)))
        return " AND ".join(clauses)

    def chunks_table(self):
        return self._chunks_table


def _table_names(db) -> set[str]:
    """The tables in a LanceDB folder (a library has two)."""
    return set(db.list_tables().tables)


def _meta_problem(meta) -> str | None:
    """What is wrong with a parsed library.json, in words; None when it can be used."""
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    version = meta.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"its schema_version is {version!r}"
    for key in ("embedder", "embedder_source"):
        if key in meta and not (isinstance(meta[key], str) and meta[key]):
            return f"its {key} is {meta[key]!r}"
    dims = meta.get("dims")
    if "dims" in meta and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        return f"its dims is {dims!r}"
    return None


def _embedder_name(source: str | None) -> str | None:
    """The name an embedder is recorded under, from a known name or a model folder."""
    if not source:
        return None
    from app.core.index.embedder import embedder_name

    return embedder_name(source)


def _default_embedder_name() -> str:
    from app.core.index.embedder import DEFAULT_EMBEDDER

    return DEFAULT_EMBEDDER


@contextlib.contextmanager
def opened(root: Path | str, embedder=None):
    lib = Library.open(root, embedder)
    try:
        yield lib
    finally:
        lib.optimize()
