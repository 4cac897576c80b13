"""Chat history: chats, their messages and the sources each answer cited, in one SQLite file.

The file lives next to the index (`LIBRARY/folio.sqlite`), so copying the library folder copies
its conversations too. It runs in WAL mode so the window can read while a worker thread writes,
and every write is one transaction: a process that dies mid-write leaves the database as it was
before that write or after it, never between. An answer is saved while it streams (status
`streaming`, partial text written every half second or so); if the process dies, the next open
turns those rows into `interrupted` answers that keep the text they had.

One `ChatStore` holds one connection shared by every thread (`check_same_thread=False`); a lock
serialises its use, since a sqlite3 connection has a single transaction state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

from app.core.base.paths import make_private_dir
from app.core.base.units import page_label

log = logging.getLogger(__name__)

HISTORY_FILE = "folio.sqlite"
SCHEMA_VERSION = 1
DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 60
BUSY_TIMEOUT_S = 10.0

ROLES = ("user", "assistant", "system")
STREAMING, COMPLETE, INTERRUPTED, CANCELLED, ERROR = (
    "streaming", "complete", "interrupted", "cancelled", "error",
)
STATUSES = (COMPLETE, STREAMING, INTERRUPTED, CANCELLED, ERROR)
FINAL_STATUSES = (COMPLETE, INTERRUPTED, CANCELLED, ERROR)
SCOPE_MODES = ("all", "collections", "documents", "none")


class HistoryError(Exception):
    """A chat-history problem the user must act on; the message says what to do."""


@dataclass(slots=True)
class Source:
    """One passage an answer cited as [n]."""

    n: int
    path: str
    page: int | None = None
    page_end: int | None = None
    section: str = ""
    score: float | None = None
    text: str = ""
    chunk_id: str = ""


@dataclass(slots=True)
class Message:
    id: int
    chat_id: int
    position: int
    role: str
    content: str
    status: str = COMPLETE
    error: str | None = None
    created_at: float = 0.0
    meta: dict = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)


@dataclass(slots=True)
class Chat:
    id: int
    title: str
    created_at: float
    updated_at: float
    model: str | None = None
    settings: dict = field(default_factory=dict)
    scope: dict = field(default_factory=lambda: default_scope())
    summary: str = ""
    summary_upto: int | None = None  # id of the last message the summary covers


def default_scope() -> dict:
    return {"mode": "all", "collections": [], "documents": []}


def normalize_scope(scope: Mapping | None) -> dict:
    """Fill in missing keys and reject unknown modes; extra keys are kept for later versions."""
    if scope is None:
        return default_scope()
    mode = scope.get("mode", "all")
    if mode not in SCOPE_MODES:
        raise ValueError(f"scope mode must be one of {SCOPE_MODES}, not {mode!r}")
    return {
        **scope,
        "mode": mode,
        "collections": [str(c) for c in scope.get("collections") or []],
        "documents": [str(d) for d in scope.get("documents") or []],
    }


def title_from(text: str, limit: int = TITLE_LENGTH) -> str:
    """A chat title from its first question: the first `limit` characters, cut between words."""
    words = " ".join(text.split())
    if not words:
        return DEFAULT_TITLE
    if len(words) <= limit:
        return words
    head = words[: limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else words[:limit]
    return cut.rstrip(" ,.;:-") + "…"


# --- schema -----------------------------------------------------------------------------------

# One list of statements per version step (executescript would commit the migration's
# transaction halfway). AUTOINCREMENT so an id is never reused: a worker still holding the id of
# a deleted answer must not write into a newer message that happens to get the same id.
_MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1
        """CREATE TABLE chats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            model TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            scope TEXT NOT NULL DEFAULT '{"mode": "all", "collections": [], "documents": []}',
            summary TEXT NOT NULL DEFAULT '',
            summary_upto INTEGER
        )""",
        "CREATE INDEX chats_by_updated ON chats(updated_at DESC, id DESC)",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'complete',
            error TEXT,
            created_at REAL NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            UNIQUE (chat_id, position)
        )""",
        "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
        """CREATE TABLE sources (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            path TEXT NOT NULL,
            page INTEGER,
            page_end INTEGER,
            section TEXT NOT NULL DEFAULT '',
            score REAL,
            text TEXT NOT NULL DEFAULT '',
            chunk_id TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (message_id, n)
        )""",
    ],
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

# Full-text search is not versioned with the schema: whether it exists depends on the sqlite3
# build that opens the file, so `_ensure_fts` reconciles it on every open (see there).
_FTS_TABLES = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
        content, content='messages', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS chats_fts USING fts5(
        title, content='chats', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
]
_FTS_TRIGGERS = {
    "messages_fts_ai": """CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END""",
    "messages_fts_ad": """CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content); END""",
    "messages_fts_au": """CREATE TRIGGER messages_fts_au AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END""",
    "chats_fts_ai": """CREATE TRIGGER chats_fts_ai AFTER INSERT ON chats BEGIN
        INSERT INTO chats_fts(rowid, title) VALUES (new.id, new.title); END""",
    "chats_fts_ad": """CREATE TRIGGER chats_fts_ad AFTER DELETE ON chats BEGIN
        INSERT INTO chats_fts(chats_fts, rowid, title) VALUES ('delete', old.id, old.title); END""",
    "chats_fts_au": """CREATE TRIGGER chats_fts_au AFTER UPDATE OF title ON chats BEGIN
        INSERT INTO chats_fts(chats_fts, rowid, title) VALUES ('delete', old.id, old.title);
        INSERT INTO chats_fts(rowid, title) VALUES (new.id, new.title); END""",
}

_fts5: bool | None = None


def _fts5_available() -> bool:
    """Whether this sqlite3 build has FTS5 (CPython's bundled builds do; some distro ones not)."""
    global _fts5
    if _fts5 is None:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
            _fts5 = True
        except sqlite3.OperationalError:
            _fts5 = False
        finally:
            probe.close()
    return _fts5


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; returns the version.

    The version is re-read inside each step's write lock, so two processes opening the same
    file at once do not both run a step.
    """
    for _ in range(SCHEMA_VERSION + 1):
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"The chat history was written by a newer Folio (schema {version}; this "
                    f"version reads up to {SCHEMA_VERSION}). Update Folio to open it."
                )
            if version == SCHEMA_VERSION:
                return version
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            log.info("chat history schema migrated to version %d", version + 1)
    raise AssertionError("unreachable")  # pragma: no cover


def _ensure_fts(conn: sqlite3.Connection) -> bool:
    """Create the FTS index and its triggers if this build has FTS5; drop the triggers if not.

    Without FTS5, triggers left by another build would make every message write fail ("no such
    module"), so they go and search falls back to LIKE. When a build with FTS5 opens the file
    again, the triggers are missing, so the index may be stale: it is rebuilt from the tables.
    """
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        present = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        if not _fts5_available():
            for name in _FTS_TRIGGERS:
                if name in present:
                    conn.execute(f"DROP TRIGGER {name}")
            return False
        if all(name in present for name in _FTS_TRIGGERS):
            return True
        for statement in _FTS_TABLES:
            conn.execute(statement)
        for name, statement in _FTS_TRIGGERS.items():
            if name not in present:
                conn.execute(statement)
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        conn.execute("INSERT INTO chats_fts(chats_fts) VALUES ('rebuild')")
        return True


_WORDS = re.compile(r"\w+")


def _fts_match(query: str) -> str | None:
    """The words of a search box as an FTS5 query: every word must occur, each as a prefix
    (so "instal" finds "installation"); quoted, so no word is read as an operator."""
    words = _WORDS.findall(query)
    if not words:
        return None
    return " ".join(f'"{w}"*' for w in words)


def _like_pattern(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- rows <-> objects -------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str | None, default: Any) -> Any:
    """JSON from a column; a damaged value reads as the default rather than hiding the chat."""
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        log.warning("unreadable JSON in chat history: %.80r", text)
        return default


def _chat(row: sqlite3.Row) -> Chat:
    return Chat(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model=row["model"],
        settings=_loads(row["settings"], {}),
        scope=_loads(row["scope"], default_scope()),
        summary=row["summary"],
        summary_upto=row["summary_upto"],
    )


def _message(row: sqlite3.Row, sources: list[Source]) -> Message:
    return Message(
        id=row["id"],
        chat_id=row["chat_id"],
        position=row["position"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        error=row["error"],
        created_at=row["created_at"],
        meta=_loads(row["meta"], {}),
        sources=sources,
    )


def _source(row: sqlite3.Row) -> Source:
    return Source(
        n=row["n"],
        path=row["path"],
        page=row["page"],
        page_end=row["page_end"],
        section=row["section"],
        score=row["score"],
        text=row["text"],
        chunk_id=row["chunk_id"],
    )


def _as_source(item: Any, default_n: int) -> Source:
    """A Source from a Source, a dict, or anything with the same attributes (a SearchResult)."""
    if isinstance(item, Source):
        return item
    get = item.get if isinstance(item, Mapping) else lambda k, d=None: getattr(item, k, d)
    page, page_end, score = get("page"), get("page_end"), get("score")
    return Source(
        n=int(get("n") or default_n),
        path=str(get("path") or ""),
        page=None if page is None else int(page),
        page_end=None if page_end is None else int(page_end),
        section=str(get("section") or ""),
        score=None if score is None else float(score),
        text=str(get("text") or ""),
        chunk_id=str(get("chunk_id") or ""),
    )


_MESSAGE_COLUMNS = "id, chat_id, position, role, content, status, error, created_at, meta"


class ChatStore:
    """The chats of one library. Thread-safe; every method is one transaction."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.RLock()
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writes,
        # so a write never has to upgrade a read lock and fail with "database is locked").
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.row_factory = sqlite3.Row
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":  # e.g. a file system without shared memory
                log.warning("chat history %s runs in %s mode, not WAL", self.path, mode)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn)
            self.has_fts = _ensure_fts(self._conn)
            # A live answer of another Folio process on this library is not interrupted:
            # that process owns it (and recovered its own chats when it opened them).
            from app.core.index.lock import held_elsewhere

            recovered = 0 if held_elsewhere(self.path.parent) else self.recover_interrupted()
        except BaseException:
            self._conn.close()
            raise
        if recovered:
            log.info("marked %d unfinished answer(s) as interrupted", recovered)

    @classmethod
    def for_library(cls, library_root: Path | str) -> ChatStore:
        root = make_private_dir(library_root)
        return cls(root / HISTORY_FILE)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:  # closed already, or the disk went away: closing still matters
                pass
            self._conn.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transactions ---

    @contextlib.contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. `durable`: fsync the WAL at commit (synchronous=FULL); with
        NORMAL a commit survives the process dying but not the machine losing power."""
        with self._lock:
            conn = self._conn
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    yield conn
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so reads spanning several statements see one snapshot."""
        with self._lock:
            conn = self._conn
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    # --- chats ---

    def create_chat(
        self,
        title: str = DEFAULT_TITLE,
        *,
        model: str | None = None,
        settings: Mapping | None = None,
        scope: Mapping | None = None,
    ) -> Chat:
        now = time.time()
        scope = normalize_scope(scope)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO chats (title, created_at, updated_at, model, settings, scope) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (title, now, now, model, _dumps(dict(settings or {})), _dumps(scope)),
            )
            return self._get_chat(conn, cur.lastrowid)

    def get_chat(self, chat_id: int) -> Chat:
        with self._read() as conn:
            return self._get_chat(conn, chat_id)

    def list_chats(self, query: str | None = None) -> list[Chat]:
        """Newest activity first. `query` matches words of titles and of message text."""
        order = " ORDER BY updated_at DESC, id DESC"
        query = (query or "").strip()
        with self._read() as conn:
            if not query:
                rows = conn.execute("SELECT * FROM chats" + order).fetchall()
            elif self.has_fts and (match := _fts_match(query)):
                rows = conn.execute(
                    "SELECT * FROM chats WHERE id IN "
                    "(SELECT rowid FROM chats_fts WHERE chats_fts MATCH :q) OR id IN "
                    "(SELECT m.chat_id FROM messages_fts f JOIN messages m ON m.id = f.rowid "
                    " WHERE messages_fts MATCH :q)" + order,
                    {"q": match},
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM chats WHERE title LIKE :q ESCAPE '\\' OR id IN "
                    "(SELECT chat_id FROM messages WHERE content LIKE :q ESCAPE '\\')" + order,
                    {"q": _like_pattern(query)},
                ).fetchall()
            return [_chat(r) for r in rows]

    def model_usage(self) -> dict[str, int]:
        """Model file name -> how many chats use it (chats without a model are not counted:
        they follow the default model)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT model, COUNT(*) FROM chats WHERE model IS NOT NULL AND model != '' "
                "GROUP BY model"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def rename_chat(self, chat_id: int, title: str) -> None:
        with self._write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute(
                "UPDATE chats SET title = ?, updated_at = ? WHERE id = ?",
                (title, time.time(), chat_id),
            )

    def delete_chat(self, chat_id: int) -> None:
        """Delete a chat with its messages and their sources (ON DELETE CASCADE)."""
        with self._write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    def update_chat(
        self,
        chat_id: int,
        *,
        model: str | None | EllipsisType = ...,
        settings: Mapping | EllipsisType = ...,
        scope: Mapping | None | EllipsisType = ...,
        summary: str | EllipsisType = ...,
        summary_upto: int | None | EllipsisType = ...,
    ) -> Chat:
        """Change only the fields given (pass None to clear `model` or `summary_upto`).

        Does not move the chat in the list: `updated_at` tracks conversation activity.
        """
        changes: dict[str, Any] = {}
        if model is not ...:
            changes["model"] = model
        if settings is not ...:
            changes["settings"] = _dumps(dict(settings or {}))
        if scope is not ...:
            changes["scope"] = _dumps(normalize_scope(scope))
        if summary is not ...:
            changes["summary"] = summary or ""
        if summary_upto is not ...:
            changes["summary_upto"] = summary_upto
        with self._write() as conn:
            self._require_chat(conn, chat_id)
            if changes:
                assignments = ", ".join(f"{name} = :{name}" for name in changes)
                conn.execute(
                    f"UPDATE chats SET {assignments} WHERE id = :id", {**changes, "id": chat_id}
                )
            return self._get_chat(conn, chat_id)

    # --- messages ---

    def add_message(
        self,
        chat_id: int,
        role: str,
        content: str,
        *,
        status: str = COMPLETE,
        sources: Iterable[Any] = (),
        meta: Mapping | None = None,
    ) -> Message:
        """Append a message. The first user message names a chat that still has the default
        title."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        now = time.time()
        with self._write() as conn:
            title = self._require_chat(conn, chat_id)
            position = conn.execute(
                "SELECT COALESCE(MAX(position), 0) + 1 FROM messages WHERE chat_id = ?",
                (chat_id,),
            ).fetchone()[0]
            cur = conn.execute(
                "INSERT INTO messages (chat_id, position, role, content, status, created_at, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chat_id, position, role, content, status, now, _dumps(dict(meta or {}))),
            )
            message_id = cur.lastrowid
            self._write_sources(conn, message_id, sources)
            if role == "user" and title == DEFAULT_TITLE:
                earlier = conn.execute(
                    "SELECT 1 FROM messages WHERE chat_id = ? AND role = 'user' AND id != ?",
                    (chat_id, message_id),
                ).fetchone()
                if earlier is None:
                    title = title_from(content)
            conn.execute(
                "UPDATE chats SET title = ?, updated_at = ? WHERE id = ?", (title, now, chat_id)
            )
            return self._get_message(conn, message_id)

    def messages(self, chat_id: int) -> list[Message]:
        """The chat's messages in order, each with its sources."""
        with self._read() as conn:
            self._require_chat(conn, chat_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY position",
                (chat_id,),
            ).fetchall()
            by_message: dict[int, list[Source]] = {r["id"]: [] for r in rows}
            for s in conn.execute(
                "SELECT s.* FROM sources s JOIN messages m ON m.id = s.message_id "
                "WHERE m.chat_id = ? ORDER BY s.message_id, s.n",
                (chat_id,),
            ):
                by_message[s["message_id"]].append(_source(s))
            return [_message(r, by_message[r["id"]]) for r in rows]

    def get_message(self, message_id: int) -> Message:
        with self._read() as conn:
            return self._get_message(conn, message_id)

    def start_answer(self, chat_id: int, *, meta: Mapping | None = None) -> Message:
        """An empty assistant message with status "streaming", to be filled while it streams."""
        return self.add_message(chat_id, "assistant", "", status=STREAMING, meta=meta)

    def update_answer(self, message_id: int, content: str) -> bool:
        """Save the partial text of a streaming answer. Returns False (and writes nothing) if
        the answer is no longer streaming or was deleted meanwhile (the user regenerated,
        edited or deleted the chat), so a late update from a worker cannot clobber anything."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'",
                (content, message_id),
            )
            return cur.rowcount > 0

    def finish_answer(
        self,
        message_id: int,
        content: str,
        *,
        status: str = COMPLETE,
        sources: Iterable[Any] = (),
        meta: Mapping | None = None,
        error: str | None = None,
    ) -> Message:
        """Write the final text, status, sources and meta in one durable transaction.

        `meta` is merged into what `start_answer` recorded. Raises KeyError if the message
        was deleted meanwhile (a chat deleted while its answer streamed).
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        with self._write(durable=True) as conn:
            old = self._get_message(conn, message_id)
            merged = {**old.meta, **dict(meta or {})}
            conn.execute(
                "UPDATE messages SET content = ?, status = ?, error = ?, meta = ? WHERE id = ?",
                (content, status, error, _dumps(merged), message_id),
            )
            conn.execute("DELETE FROM sources WHERE message_id = ?", (message_id,))
            self._write_sources(conn, message_id, sources)
            conn.execute(
                "UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), old.chat_id)
            )
            return self._get_message(conn, message_id)

    def truncate_after(self, message_id: int) -> int:
        """Delete every message after this one in its chat (to regenerate an answer, pass the
        question's id). Returns how many were deleted."""
        with self._write() as conn:
            chat_id, position = self._locate(conn, message_id)
            deleted = conn.execute(
                "DELETE FROM messages WHERE chat_id = ? AND position > ?", (chat_id, position)
            ).rowcount
            self._drop_stale_summary(conn, chat_id, position + 1)
            conn.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), chat_id))
            return deleted

    def edit_message(self, message_id: int, content: str) -> Message:
        """Replace an earlier question and drop everything after it, in one transaction: the old
        branch goes, and a failure halfway leaves the chat exactly as it was."""
        with self._write() as conn:
            old = self._get_message(conn, message_id)
            if old.role != "user":
                raise ValueError("only a user's question can be edited")
            meta = {**old.meta, "edited_at": time.time()}
            conn.execute(
                "UPDATE messages SET content = ?, meta = ? WHERE id = ?",
                (content, _dumps(meta), message_id),
            )
            conn.execute(
                "DELETE FROM messages WHERE chat_id = ? AND position > ?",
                (old.chat_id, old.position),
            )
            # The summary is stale if it covered the edited question or anything after it.
            self._drop_stale_summary(conn, old.chat_id, old.position)
            conn.execute(
                "UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), old.chat_id)
            )
            return self._get_message(conn, message_id)

    def recover_interrupted(self) -> int:
        """Answers left "streaming" by a process that died become "interrupted", keeping their
        partial text. Returns how many.

        Assumes one process writes the library's chats: a second process opening the same file
        would interrupt the first one's live answers (whose final write then completes them).
        """
        with self._write() as conn:
            return conn.execute(
                "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'"
            ).rowcount

    # --- export ---

    def export_markdown(self, chat_id: int) -> str:
        """The chat as Markdown, safe to render: text that came from documents (through the
        answers, or the sources' paths and sections) cannot add links, images or HTML."""
        with self._read():
            chat = self.get_chat(chat_id)
            messages = self.messages(chat_id)
        lines = [f"# {escape_markdown_text(chat.title)}", ""]
        for m in messages:
            label = {"user": "**You**", "assistant": "**Folio**"}.get(m.role, "**System**")
            marker = {
                INTERRUPTED: " (interrupted)",
                CANCELLED: " (cancelled)",
                ERROR: " (error)",
                STREAMING: " (still being written)",
            }.get(m.status, "")
            lines += [label + marker, ""]
            if m.content.strip():
                lines += [escape_markdown_content(m.content), ""]
            if m.status == ERROR and m.error:
                lines += [f"Error: {escape_markdown_text(m.error)}", ""]
            if m.sources:
                lines += ["Sources:", ""]
                lines += [f"- [{s.n}] {format_source(s)}" for s in m.sources]
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    # --- helpers (call with the lock held, inside a transaction) ---

    @staticmethod
    def _require_chat(conn: sqlite3.Connection, chat_id: int) -> str:
        row = conn.execute("SELECT title FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise KeyError(f"no chat {chat_id!r}")
        return row["title"]

    @staticmethod
    def _get_chat(conn: sqlite3.Connection, chat_id: int) -> Chat:
        row = conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise KeyError(f"no chat {chat_id!r}")
        return _chat(row)

    @staticmethod
    def _get_message(conn: sqlite3.Connection, message_id: int) -> Message:
        row = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no message {message_id!r}")
        sources = conn.execute(
            "SELECT * FROM sources WHERE message_id = ? ORDER BY n", (message_id,)
        ).fetchall()
        return _message(row, [_source(s) for s in sources])

    @staticmethod
    def _locate(conn: sqlite3.Connection, message_id: int) -> tuple[int, int]:
        row = conn.execute(
            "SELECT chat_id, position FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no message {message_id!r}")
        return row["chat_id"], row["position"]

    @staticmethod
    def _write_sources(conn: sqlite3.Connection, message_id: int, sources: Iterable[Any]) -> None:
        rows = []
        for i, item in enumerate(sources, start=1):
            s = _as_source(item, i)
            rows.append(
                (message_id, s.n, s.path, s.page, s.page_end, s.section, s.score, s.text,
                 s.chunk_id)
            )
        conn.executemany(
            "INSERT INTO sources (message_id, n, path, page, page_end, section, score, text, "
            "chunk_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    @staticmethod
    def _drop_stale_summary(conn: sqlite3.Connection, chat_id: int, from_position: int) -> None:
        """Forget the running summary if it covers a message at `from_position` or later (or
        one that no longer exists): it would describe turns that are gone."""
        row = conn.execute(
            "SELECT c.summary_upto, m.position FROM chats c "
            "LEFT JOIN messages m ON m.id = c.summary_upto WHERE c.id = ?",
            (chat_id,),
        ).fetchone()
        if row is None or row["summary_upto"] is None:
            return
        if row["position"] is None or row["position"] >= from_position:
            conn.execute(
                "UPDATE chats SET summary = '', summary_upto = NULL WHERE id = ?", (chat_id,)
            )


# --- Markdown export --------------------------------------------------------------------------


def format_source(s: Source) -> str:
    """"path, p. 3 (Section)", escaped for Markdown."""
    text = escape_markdown_text(s.path)
    if s.page:
        text += f", {page_label(s.page, s.page_end)}"
    if s.section:
        text += f" ({escape_markdown_text(s.section)})"
    return text


_TEXT_SPECIALS = re.compile(r"([\\`*_\[\]~|])")


def escape_markdown_text(text: str) -> str:
    """Plain text (a title, a path, a section heading from a document) that must render as
    itself on one line: nothing in it is formatting."""
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _TEXT_SPECIALS.sub(r"\\\1", text)


# A fence must start at column 0 here: indented fences can belong to a list item whose later,
# less indented lines would leave the fence in a renderer's eyes while we still thought we
# were inside it. Missing an indented fence only costs looks (its `<` show as &lt;).
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})(.*)")
_QUOTE_PREFIX = re.compile(r"(?: {0,3}>[ \t]?)+")
_TAG = re.compile(r"<([A-Za-z/!?][^<>]*)>")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_LINKISH = re.compile(r"\]\s*[(\[:]")
# A run of backslashes is taken whole from its first one (possessive, behind no backslash): tried
# again at every backslash of a long run with no bracket after it, the plain form was quadratic.
_BRACKET = re.compile(r"(?<!\\)(\\*+)\[(?!\d+\](?!\s*[(\[:]))")


def escape_markdown_content(text: str) -> str:
    """A message's own Markdown, kept readable (emphasis, lists, quotes, code blocks), with what
    could reach a browser neutralised: raw HTML and autolinks (`<` before a letter becomes
    &lt;), and links, images and link definitions (their `[` is escaped, and only when the text
    has link syntax at all, so citations like [1] and prose brackets stay as written).

    Fenced code blocks at column 0 are left as they are (a renderer shows them verbatim) and
    an unclosed fence is closed, so it cannot swallow the rest of the export. Inline code is not
    told apart from prose (telling it apart exactly takes a full parser): a tag inside
    backticks shows as &lt;tag&gt; there.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fence: str | None = None
    kinds: list[bool] = []  # True: a line inside (or opening/closing) a fenced code block
    for line in lines:
        if fence is not None:
            kinds.append(True)
            stripped = line.strip()
            # Closing liberally (any indentation) is the safe direction: a line we take out of
            # the fence gets escaped even if a renderer would still show it as code.
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = None
            continue
        m = _FENCE_OPEN.fullmatch(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            kinds.append(True)
            continue
        kinds.append(False)
    prose = "\n".join(line for line, code in zip(lines, kinds, strict=True) if not code)
    neutralise_brackets = bool(_LINKISH.search(prose))
    out = []
    for line, code in zip(lines, kinds, strict=True):
        out.append(line if code else _escape_prose_line(line, neutralise_brackets))
    if fence is not None:
        out.append(fence)
    return "\n".join(out)


def _escape_prose_line(line: str, neutralise_brackets: bool) -> str:
    quote = _QUOTE_PREFIX.match(line)
    prefix = quote.group(0) if quote else ""
    rest = line[len(prefix):]
    rest = _TAG.sub(r"&lt;\1&gt;", rest)
    rest = _TAG_START.sub("&lt;", rest)
    if neutralise_brackets:
        # Keep an already escaped bracket as it is: adding a backslash there would escape the
        # backslash instead and free the bracket.
        rest = _BRACKET.sub(
            lambda m: m.group(1) + ("[" if len(m.group(1)) % 2 else "\\["), rest
        )
    return prefix + rest
