"""The window's settings: typed, with their defaults in one place and a schema version.

Stored as JSON in `<data dir>/settings.json`. Loading is forgiving, because a settings file
that stops the app from starting is worse than a lost preference: unknown keys are ignored,
a value of the wrong type or out of range falls back to its default (with a warning in the
log), and an unreadable file is set aside as `settings.json.bad` and the defaults are used.
Saving writes a temp file and renames it over the old one, so a crash never leaves half a file.

Older files are brought up to date by `migrate()`, one schema step at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.base.files import write_atomically
from app.core.base.paths import data_dir, default_library, make_private_dir

if TYPE_CHECKING:  # the engine's modules pull in numpy/pyarrow: the window reads settings first
    from app.core.chat.answers import ChatConfig
    from app.core.documents.splitter import SplitterConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
THEMES = ("system", "light", "dark")
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"

# Valid ranges, shared with the settings dialog so its widgets cannot offer what load rejects.
CHUNK_TOKENS_RANGE = (32, 2048)
RETRIEVAL_K_RANGE = (1, 50)
SECTION_TOKENS_RANGE = (0, 4000)  # a source widened to its section for the model; 0: off
N_CTX_RANGE = (0, 1_048_576)  # 0: the model's own training context
FILE_TIME_LIMIT_RANGE = (1, 86_400)  # seconds to load and split one file while indexing
SERVER_PORT_RANGE = (1024, 65535)
MCP_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # = app/core/tools/mcp_source.NAME_RE


def settings_path() -> Path:
    return data_dir() / "settings.json"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class AppSettings:
    schema_version: int = SCHEMA_VERSION
    library: str = field(default_factory=lambda: str(default_library()))
    embedder: str = DEFAULT_EMBEDDER  # a known name or a model folder
    chunk_tokens: int = 200
    overlap_tokens: int = 40
    retrieval_k: int = 5
    mmr: bool = True
    min_similarity: float = 0.25
    # A cross-encoder reranking stage (app/core/index/rerank.py): "auto" uses an installed
    # reranker (none installed: off), "off", or a reranker's name or folder.
    reranker: str = "auto"
    # Each source the model reads is widened to its section up to this many tokens
    # (app/core/index/context.py); 0 hands it the found passages alone.
    section_tokens: int = 600
    theme: str = "system"
    model_path: str | None = None  # None: the model manager's default (the starter model)
    n_ctx: int = 4096
    n_gpu_layers: str | int = "auto"
    file_time_limit: int = 300  # = types.DEFAULT_FILE_TIME_LIMIT; IngestOptions.time_limit
    # The local OpenAI-compatible server (app/server/): started with the window when on, on
    # loopback at this port. The key is generated once (app/server/runner.py) and shown in
    # Settings; this file is written with the owner's permissions only (mkstemp).
    server_enabled: bool = False
    server_port: int = 8080
    server_api_key: str = ""
    # MCP servers whose tools Folio's own chat may call (app/core/tools/mcp_source.py):
    # [{"name", "command", "args": [...], "env": {...}}]. A bad entry is dropped, not the list.
    mcp_servers: list[dict[str, Any]] = field(default_factory=list)
    # Folders kept indexed while the window is open (app/core/index/watch.py); rescanned at
    # start, so what changed while Folio was closed is found by content hash.
    watched_folders: list[str] = field(default_factory=list)
    # Remote OpenAI-compatible providers (app/core/llm/remote.py), as ProviderConfig dicts:
    # name, base_url, model, embedder_model, context. Never their API keys: those are in the
    # system keyring (or asked for each session where there is none).
    providers: list = field(default_factory=list)
    chat_provider: str = ""  # the provider the window's chat answers with; "": the local model

    # -- the engine's configs -------------------------------------------------------------

    def splitter_config(self) -> SplitterConfig:
        from app.core.documents.splitter import SplitterConfig

        return SplitterConfig(chunk_tokens=self.chunk_tokens, overlap_tokens=self.overlap_tokens)

    def chat_config(self) -> ChatConfig:
        from app.core.chat.answers import ChatConfig

        return ChatConfig(k=self.retrieval_k, mmr=self.mmr, min_similarity=self.min_similarity,
                          reranker=self.reranker, section_tokens=self.section_tokens)

    # -- validation -----------------------------------------------------------------------

    def problems(self) -> dict[str, str]:
        """Field name -> why its value is not acceptable. Empty when all is well."""
        bad: dict[str, str] = {}
        if not isinstance(self.library, str) or not self.library.strip():
            bad["library"] = "must be a folder path"
        if not isinstance(self.embedder, str) or not self.embedder.strip():
            bad["embedder"] = "must be an embedder name or a model folder"
        lo, hi = CHUNK_TOKENS_RANGE
        if not _is_int(self.chunk_tokens) or not lo <= self.chunk_tokens <= hi:
            bad["chunk_tokens"] = f"must be an integer from {lo} to {hi}"
        if (
            not _is_int(self.overlap_tokens)
            or self.overlap_tokens < 0
            or (_is_int(self.chunk_tokens) and self.overlap_tokens >= self.chunk_tokens)
        ):
            bad["overlap_tokens"] = "must be an integer from 0 to chunk_tokens - 1"
        lo, hi = RETRIEVAL_K_RANGE
        if not _is_int(self.retrieval_k) or not lo <= self.retrieval_k <= hi:
            bad["retrieval_k"] = f"must be an integer from {lo} to {hi}"
        lo, hi = SECTION_TOKENS_RANGE
        if not _is_int(self.section_tokens) or not lo <= self.section_tokens <= hi:
            bad["section_tokens"] = f"must be an integer from {lo} to {hi} (0: off)"
        if not isinstance(self.mmr, bool):
            bad["mmr"] = "must be true or false"
        if not isinstance(self.reranker, str) or not self.reranker.strip():
            bad["reranker"] = "must be auto, off, or a reranker's name or folder"
        if (
            isinstance(self.min_similarity, bool)
            or not isinstance(self.min_similarity, int | float)
            or not -1.0 <= self.min_similarity <= 1.0
        ):
            bad["min_similarity"] = "must be a number from -1 to 1"
        if self.theme not in THEMES:
            bad["theme"] = f"must be one of {', '.join(THEMES)}"
        if self.model_path is not None and (
            not isinstance(self.model_path, str) or not self.model_path.strip()
        ):
            bad["model_path"] = "must be a file path or null"
        lo, hi = N_CTX_RANGE
        if not _is_int(self.n_ctx) or not lo <= self.n_ctx <= hi:
            bad["n_ctx"] = f"must be an integer from {lo} to {hi}"
        gl = self.n_gpu_layers
        if gl != "auto" and (not _is_int(gl) or gl < -1):
            bad["n_gpu_layers"] = '"auto", -1 (all) or a number of layers'
        lo, hi = FILE_TIME_LIMIT_RANGE
        if not _is_int(self.file_time_limit) or not lo <= self.file_time_limit <= hi:
            bad["file_time_limit"] = f"must be a number of seconds from {lo} to {hi}"
        if not isinstance(self.server_enabled, bool):
            bad["server_enabled"] = "must be true or false"
        lo, hi = SERVER_PORT_RANGE
        if not _is_int(self.server_port) or not lo <= self.server_port <= hi:
            bad["server_port"] = f"must be a port number from {lo} to {hi}"
        if not isinstance(self.server_api_key, str) or (
                self.server_api_key and len(self.server_api_key.strip()) < 16):
            bad["server_api_key"] = "must be empty (generate one) or at least 16 characters"
        if not isinstance(self.mcp_servers, list) or any(
                mcp_server_problem(e, self.mcp_servers[:i])
                for i, e in enumerate(self.mcp_servers)):
            bad["mcp_servers"] = "must be a list of {name, command, args, env}"
        if not isinstance(self.watched_folders, list) or not all(
                isinstance(f, str) and f.strip() for f in self.watched_folders):
            bad["watched_folders"] = "must be a list of folder paths"
        try:
            self.provider_configs()
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            bad["providers"] = f"must be a list of providers ({exc})"
        if not isinstance(self.chat_provider, str):
            bad["chat_provider"] = "must be a provider's name or empty"
        return bad

    # -- remote providers -----------------------------------------------------------------

    def provider_configs(self) -> list:
        """The remote providers as ProviderConfigs (ValueError/TypeError for a bad entry)."""
        from app.core.llm.remote import ProviderConfig

        if not isinstance(self.providers, list):
            raise TypeError("not a list")
        configs = [ProviderConfig.from_dict(p) for p in self.providers]
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError("two providers have the same name")
        return configs

    def provider_embedders(self) -> list:
        """The providers that name an embedder model (choosing one as the library's embedder
        sends passages and questions to it); none while the providers entry is bad (the
        Providers tab and `folio providers list` say why)."""
        try:
            return [c for c in self.provider_configs() if c.embedder_model]
        except (ValueError, TypeError):
            return []

    def find_provider(self, name: str):
        """The provider called `name`; UnknownProvider naming the known ones when none is."""
        from app.core.llm.remote import UnknownProvider

        configs = self.provider_configs()
        for config in configs:
            if config.name == name:
                return config
        known = ", ".join(c.name for c in configs) or "none yet"
        raise UnknownProvider(f"There is no provider called {name!r} (known: {known}). "
                       f"Add one with: folio providers add {name} --url URL --model MODEL")

    def add_provider(self, config) -> None:
        """Add a provider, replacing one of the same name."""
        self.providers = [p for p in self.providers if p.get("name") != config.name]
        self.providers.append(config.to_dict())

    def remove_provider(self, name: str) -> bool:
        before = len(self.providers)
        self.providers = [p for p in self.providers if p.get("name") != name]
        return len(self.providers) != before

    # -- files ----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSettings:
        """Settings from a (migrated) dict: unknown keys ignored, bad values defaulted."""
        known = {f.name for f in fields(cls)} - {"schema_version"}
        unknown = sorted(set(data) - known - {"schema_version"})
        if unknown:
            log.info("settings: ignoring unknown keys %s", ", ".join(unknown))
        settings = cls(**{k: v for k, v in data.items() if k in known})
        if isinstance(settings.min_similarity, int) and not isinstance(
            settings.min_similarity, bool
        ):
            settings.min_similarity = float(settings.min_similarity)
        if isinstance(settings.mcp_servers, list):  # keep the good entries of a list
            kept = []
            for entry in settings.mcp_servers:
                why = mcp_server_problem(entry, kept)
                if why:
                    log.warning("settings: MCP server %r dropped: %s", entry, why)
                else:
                    kept.append(entry)
            settings.mcp_servers = kept
        defaults = cls()
        # The overlap is judged against the chunk size, so that is settled first.
        for skip in ({"overlap_tokens"}, set()):
            for name, why in settings.problems().items():
                if name in skip:
                    continue
                default = getattr(defaults, name)
                log.warning(
                    "settings: %s = %r %s; using the default %r",
                    name,
                    getattr(settings, name),
                    why,
                    default,
                )
                setattr(settings, name, default)
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path | str | None = None) -> AppSettings:
        path = Path(path) if path is not None else settings_path()
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text("utf-8"))
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, found {type(data).__name__}")
            data = migrate(data)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            bad = path.with_name(path.name + ".bad")
            log.warning(
                "settings: %s is unreadable (%s); kept as %s, using defaults", path, exc, bad.name
            )
            try:
                os.replace(path, bad)
            except OSError as move_exc:
                log.warning("settings: could not set %s aside: %s", path, move_exc)
            return cls()
        return cls.from_dict(data)

    def save(self, path: Path | str | None = None) -> Path:
        path = Path(path) if path is not None else settings_path()
        make_private_dir(path.parent)
        data = self.to_dict()
        data["schema_version"] = SCHEMA_VERSION
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        return write_atomically(path, text)


def mcp_server_problem(entry: Any, before: list[Any] = ()) -> str | None:
    """Why `entry` is not a usable MCP server setting (None when it is). `before`: the
    entries ahead of it, whose names it may not repeat."""
    if not isinstance(entry, dict):
        return "must be an object {name, command, args, env}"
    name = entry.get("name")
    if not isinstance(name, str) or not MCP_NAME_RE.match(name):
        return "name must be 1-32 letters, digits, '_' or '-'"
    if any(isinstance(e, dict) and e.get("name") == name for e in before):
        return f"the name {name!r} is used twice"
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip() or "\0" in command:
        return "command must be a program to run"
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) and "\0" not in a for a in args):
        return "args must be a list of strings"
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str)
            for k, v in env.items()):
        return "env must map variable names to strings"
    unknown = set(entry) - {"name", "command", "args", "env"}
    if unknown:
        return f"unknown keys {', '.join(sorted(unknown))}"
    return None


# -- migrations ---------------------------------------------------------------------------

# schema_version N -> a function that turns a version-N dict into a version-(N+1) dict.
# Version 1 is the first; add `MIGRATIONS[1] = _v1_to_v2` when the schema changes.
MIGRATIONS: dict[int, Any] = {}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings dict from its schema_version up to SCHEMA_VERSION, step by step.

    A file without a version is taken as version 1. A file from a newer Folio is read as is
    (unknown keys are ignored and bad values defaulted), so a downgrade keeps working.
    """
    data = dict(data)
    version = data.get("schema_version", 1)
    if not _is_int(version) or version < 1:
        log.warning("settings: schema_version %r is not valid; reading as version 1", version)
        version = 1
    if version > SCHEMA_VERSION:
        log.warning(
            "settings: written by a newer Folio (schema %d > %d); reading what we know",
            version,
            SCHEMA_VERSION,
        )
        data["schema_version"] = SCHEMA_VERSION
        return data
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ValueError(f"no migration from settings schema {version}")
        data = step(dict(data))
        version += 1
        data["schema_version"] = version
    data["schema_version"] = version
    return data


def load(path: Path | str | None = None) -> AppSettings:
    return AppSettings.load(path)


def save(settings: AppSettings, path: Path | str | None = None) -> Path:
    return settings.save(path)


# -- a provider's embedder model as the library's embedder (`provider:NAME`) ------------------


def _provider_for_embedding(source: str):
    """The ProviderConfig `provider:NAME` names; ValueError saying what to do when there is
    no such provider or it has no embedder model."""
    from app.core.llm.remote import UnknownProvider
    from app.core.llm.remote_embedder import PREFIX

    name = source[len(PREFIX):].split("/", 1)[0]
    try:
        config = AppSettings.load().find_provider(name)
    except UnknownProvider as exc:
        raise ValueError(str(exc)) from None
    if not config.embedder_model:
        raise ValueError(f"The provider {name} has no embedder model: set one in Settings > "
                         f"Providers, or: folio providers add {name} --url {config.base_url} "
                         f"--model {config.model} --embedder-model MODEL")
    return config


def _provider_embedder_name(source: str) -> str:
    """What a library built with `provider:NAME` records: `provider:NAME/MODEL`."""
    from app.core.llm.remote_embedder import PREFIX

    config = _provider_for_embedding(source)
    return f"{PREFIX}{config.name}/{config.embedder_model}"


def _provider_embedder(source: str):
    """The provider's embedder, its key from the keyring (or this session)."""
    from app.core.llm.remote import get_key
    from app.core.llm.remote_embedder import RemoteEmbedder

    config = _provider_for_embedding(source)
    return RemoteEmbedder(config, get_key(config.name))


def _register_provider_embedders() -> None:
    from app.core.base import embedder_sources

    # "provider:" is remote_embedder.PREFIX, written out: importing it here would load numpy
    # with the settings, which the window reads before anything else.
    embedder_sources.register("provider:", _provider_embedder_name, _provider_embedder)


_register_provider_embedders()
