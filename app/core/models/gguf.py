"""Read what a GGUF file says about itself, without llama.cpp and without reading the weights.

A GGUF file is: magic "GGUF", a version, the tensor and key/value counts, the metadata
key/value pairs, the tensor descriptions (name, shape, type, offset), then the tensor data.
The model manager needs the metadata (architecture, context length, chat template, licence...)
and the tensor shapes (parameter count, dominant quantisation) for every file in the models
folder, so this reader stops before the tensor data and never loads a model.

Files come from the internet, so every length is checked against the bytes that are really
there before anything is allocated: a header that claims a 2^60-byte string or a billion
array items is refused with a reason instead of exhausting memory. Big arrays (a tokenizer's
262,144 tokens) are skipped, not kept: only their element type and length are recorded.
The header is capped in total too, not only per value: what is kept (`MAX_KEPT_TOTAL`: a file
could repeat a 4 MB string a thousand times) and how long the metadata is (`MAX_HEADER_BYTES`:
reading a billion empty strings one by one would take minutes). Real models keep well under a
megabyte, and their metadata, a 262,144-token vocabulary included, takes about 10 MB.
Versions 2 and 3 (64-bit counts) are read, and version 1 (32-bit counts) too; a big-endian
file (version bytes swapped) is read big-endian.

Why not the `gguf` package that llama.cpp publishes (gguf-py): its `GGUFReader` maps the file
and builds every field and tensor up front, a Python object per array item (a 262k-token
vocabulary included), trusting the counts in the header; this reader checks each length
against the bytes really there before it reads, skips big arrays, and stops before the tensor
data, which is what keeps the hostile-header tests in tests/test_gguf.py passing. gguf-py would
also bring PyYAML, requests and tqdm into the app. What goes stale here is the type tables
below (ggml gains quantisations), so tests/test_gguf.py compares them with `gguf.constants`
(`GGMLQuantizationType`, `GGML_QUANT_SIZES`, `LlamaFileType`), the package being a test
dependency: bumping its pin shows what to add.
"""

from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.models.files import ModelError

MAGIC = b"GGUF"
MAX_KEPT_STRING = 4 * 1024 * 1024  # a chat template is a few KB; longer strings are skipped
MAX_KEPT_ARRAY = 4096  # per-layer arrays are kept; tokenizer vocabularies are skipped
MAX_KEPT_TOTAL = 16 * 1024 * 1024  # all kept values together (string bytes; 8 per array item)
MAX_HEADER_BYTES = 64 * 1024 * 1024  # the metadata and tensor descriptions, whether kept or not
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_DIMS = 8

# GGUF value types -> (struct code, size); 8 STRING and 9 ARRAY are variable-length.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
_STRING, _ARRAY = 8, 9

# llama.cpp's general.file_type (enum llama_ftype) -> the name people use for the file.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
# ggml tensor types -> (elements per block, bytes per block): how long each tensor's data is.
BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54),
    35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}
# ggml tensor types (enum ggml_type) -> name.
TENSOR_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
}


class HeaderTooLarge(ModelError):
    """The header is over Folio's caps: refused before anything (llama.cpp included) reads
    it whole."""


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (e.g. tokenizer.ggml.tokens): its type and length."""

    item_type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: int

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return TENSOR_TYPES.get(self.type, f"type {self.type}")


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    file_size: int
    version: int
    architecture: str | None
    name: str | None
    parameter_count: int | None
    quantization: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    sliding_window: int | None
    chat_template: str | None
    license: str | None
    # Beyond the contract: what the memory estimate and the views can use.
    sliding_window_pattern: int | tuple[bool, ...] | None = None
    tensor_count: int = 0
    size_label: str | None = None  # general.size_label, e.g. "270M"
    vocab_size: int | None = None  # the tokenizer's token count
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template and self.chat_template.strip())

    def parameters_label(self) -> str:
        """"268M", "1.5B": the parameter count as people write it ("?" when unknown)."""
        n = self.parameter_count
        if not n:
            return self.size_label or "?"
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= scale:
                value = n / scale
                text = f"{value:.0f}" if value >= 100 else f"{value:.1f}".rstrip("0").rstrip(".")
                return f"{text}{unit}"
        return str(n)

    def swa_layers(self) -> int:
        """How many of the block_count layers use the sliding window (0 without one)."""
        layers = self.block_count or 0
        if not self.sliding_window or not layers:
            return 0
        pattern = self.sliding_window_pattern
        if isinstance(pattern, tuple):
            return sum(1 for p in pattern[:layers] if p)
        if isinstance(pattern, int) and pattern > 0:
            # llama.cpp: every pattern-th layer is global, the others slide.
            return layers - layers // pattern
        if self.architecture in _DEFAULT_SWA_PATTERN:
            every = _DEFAULT_SWA_PATTERN[self.architecture]
            return layers - layers // every
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "file_size": self.file_size, "version": self.version,
            "architecture": self.architecture, "name": self.name,
            "parameter_count": self.parameter_count, "parameters": self.parameters_label(),
            "quantization": self.quantization, "context_length": self.context_length,
            "block_count": self.block_count, "embedding_length": self.embedding_length,
            "head_count": self.head_count, "head_count_kv": self.head_count_kv,
            "key_length": self.key_length, "value_length": self.value_length,
            "sliding_window": self.sliding_window, "has_chat_template": self.has_chat_template,
            "chat_template": self.chat_template, "license": self.license,
        }


# Architectures whose sliding-window layout llama.cpp hard-codes when the file does not say.
_DEFAULT_SWA_PATTERN = {"gemma3": 6, "gemma3n": 5, "cohere2": 4}


class _Reader:
    """Bounds-checked little/big-endian reads from a memory map."""

    def __init__(self, buf: Any, size: int, name: str) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.name = name
        self.order = "<"
        self.count_fmt = "Q"
        self.kept = 0  # bytes of values kept so far (MAX_KEPT_TOTAL)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelError(
                f"{self.name} is truncated or corrupt: {what} at byte {self.pos} needs {n:,} "
                f"bytes but the file has {max(0, self.size - self.pos):,} left"
            )
        if self.pos + n > MAX_HEADER_BYTES:
            raise HeaderTooLarge(
                f"{self.name} has a GGUF header larger than {MAX_HEADER_BYTES // 2**20} MB "
                f"({what} at byte {self.pos:,}); real models need about 10 MB, so Folio does "
                "not read it"
            )

    def keep(self, n: int) -> bool:
        """Whether a value of `n` bytes still fits the kept total (and count it if so)."""
        if self.kept + n > MAX_KEPT_TOTAL:
            return False
        self.kept += n
        return True

    def unpack(self, fmt: str, n: int, what: str) -> Any:
        self.need(n, what)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def count(self, what: str) -> int:
        return self.unpack(self.count_fmt, 8 if self.count_fmt == "Q" else 4, what)

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.count(f"the length of {what}")
        self.need(n, f"{what} ({n:,} bytes)")
        start = self.pos
        self.pos += n
        if not keep or n > MAX_KEPT_STRING or not self.keep(n):
            return None
        return bytes(self.buf[start : start + n]).decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            code, size = _SCALARS[vtype]
            return self.unpack(code, size, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            if depth > 2:
                raise ModelError(f"{self.name}: {what} nests arrays too deeply")
            item_type = self.unpack("I", 4, f"the item type of {what}")
            n = self.count(f"the length of {what}")
            if item_type in _SCALARS:
                code, size = _SCALARS[item_type]
                self.need(n * size, f"{what} ({n:,} items)")
                if n > MAX_KEPT_ARRAY or not self.keep(8 * n):
                    self.pos += n * size
                    return ArrayInfo(item_type, n)
                values = struct.unpack_from(f"{self.order}{n}{code}", self.buf, self.pos)
                self.pos += n * size
                return tuple(values)
            if item_type not in (_STRING, _ARRAY):
                raise ModelError(f"{self.name}: {what} has unknown item type {item_type}")
            # Every string or array item takes at least its 8-byte length: bound n first.
            self.need(n * 4, f"{what} ({n:,} items)")
            keep = n <= MAX_KEPT_ARRAY and self.keep(8 * n)
            items = []
            for i in range(n):
                if item_type == _STRING:
                    s = self.string(f"item {i} of {what}", keep=keep)
                    if keep:
                        items.append(s)
                else:
                    v = self.value(_ARRAY, f"item {i} of {what}", depth + 1)
                    if keep:
                        items.append(v)
            return tuple(items) if keep else ArrayInfo(item_type, n)
        raise ModelError(f"{self.name}: {what} has unknown value type {vtype}")


def read_gguf_info(path: Path | str) -> GGUFInfo:
    """The header of a GGUF file. Raises ModelError naming the file and the reason when it is
    missing, not a GGUF, from an unknown version, truncated or corrupt."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            if size < 8:
                f.seek(0)
                if f.read(4) != MAGIC:
                    raise ModelError(f"{path.name} is not a GGUF model file (no GGUF signature)")
                raise ModelError(f"{path.name} is truncated: the GGUF header is incomplete")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(path, mm, size)
    except FileNotFoundError as exc:
        raise ModelError(f"Model file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ModelError(f"{path} is a folder, not a GGUF model file") from exc
    except (OSError, ValueError) as exc:  # permission, mmap of a special file
        raise ModelError(f"Cannot read {path}: {exc}") from exc


def _parse(path: Path, mm: Any, size: int) -> GGUFInfo:
    r = _Reader(mm, size, path.name)
    if mm[:4] != MAGIC:
        raise ModelError(f"{path.name} is not a GGUF model file (no GGUF signature)")
    r.pos = 4
    version = r.unpack("I", 4, "the version")
    if version & 0xFFFF == 0 and version >> 16:  # written big-endian
        r.order = ">"
        version = struct.unpack_from(">I", mm, 4)[0]
    if version not in (1, 2, 3):
        raise ModelError(f"{path.name} uses GGUF version {version}; Folio reads versions 1-3")
    if version == 1:
        r.count_fmt = "I"
    n_tensors = r.count("the tensor count")
    n_kv = r.count("the metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelError(
            f"{path.name} is corrupt: it claims {n_tensors:,} tensors and {n_kv:,} metadata "
            "entries"
        )

    meta: dict[str, Any] = {}
    for i in range(n_kv):
        key = r.string(f"metadata key {i}") or f"#{i}"
        vtype = r.unpack("I", 4, f"the type of {key}")
        meta[key] = r.value(vtype, key)

    # Each tensor description is at least 8 (name) + 4 (dims) + 4 (type) + 8 (offset) bytes.
    r.need(n_tensors * 24, f"{n_tensors:,} tensor descriptions")
    tensors: list[TensorInfo] = []
    ends: list[tuple[int, int, int, str]] = []
    for i in range(n_tensors):
        name = r.string(f"the name of tensor {i}") or f"#{i}"
        n_dims = r.unpack("I", 4, f"the dimensions of {name}")
        if n_dims > MAX_DIMS:
            raise ModelError(f"{path.name} is corrupt: tensor {name} has {n_dims} dimensions")
        shape = tuple(r.count(f"the shape of {name}") for _ in range(n_dims))
        ttype = r.unpack("I", 4, f"the type of {name}")
        offset = r.unpack("Q", 8, f"the offset of {name}")
        tensors.append(TensorInfo(name, shape, ttype))
        ends.append((offset, ttype, tensors[-1].elements, name))

    # The header is whole; is the tensor data? (A cut-off download has a perfect header.)
    align = meta.get("general.alignment", 32)
    if isinstance(align, bool) or not isinstance(align, int) or align <= 0:
        align = 32
    data_start = (r.pos + align - 1) // align * align
    need = data_start
    for offset, ttype, elements, _name in ends:
        block = BLOCK_SIZES.get(ttype)
        if block is not None:
            need = max(need, data_start + offset + -(-elements // block[0]) * block[1])
    if need > size:
        raise ModelError(
            f"{path.name} is truncated: its tensors need {need:,} bytes but the file has "
            f"{size:,} (an interrupted download or copy?)"
        )
    return _info(path, size, version, meta, tensors)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
            return max(value)  # per-layer values (e.g. head_count_kv): the largest
        return None
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _info(
    path: Path, size: int, version: int, meta: dict[str, Any], tensors: list[TensorInfo]
) -> GGUFInfo:
    arch = _str(meta.get("general.architecture"))

    def arch_key(suffix: str) -> Any:
        return meta.get(f"{arch}.{suffix}") if arch else None

    params = _int(meta.get("general.parameter_count"))
    if not params and tensors:
        params = sum(t.elements for t in tensors)
    quant = None
    ftype = _int(meta.get("general.file_type"))
    if ftype is not None and ftype in FILE_TYPES:
        quant = FILE_TYPES[ftype]
    elif tensors:
        weight: dict[int, int] = {}
        for t in tensors:
            if len(t.shape) >= 2:  # matrices carry the quantisation; norms stay F32
                weight[t.type] = weight.get(t.type, 0) + t.elements
        if weight:
            quant = TENSOR_TYPES.get(max(weight, key=weight.__getitem__))
    embedding = _int(arch_key("embedding_length"))
    heads = _int(arch_key("attention.head_count"))
    heads_kv = _int(arch_key("attention.head_count_kv")) or heads
    key_len = _int(arch_key("attention.key_length"))
    value_len = _int(arch_key("attention.value_length"))
    if embedding and heads:
        key_len = key_len or embedding // heads
        value_len = value_len or embedding // heads
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.count if isinstance(tokens, ArrayInfo) else (
        len(tokens) if isinstance(tokens, tuple) else _int(arch_key("vocab_size")))
    pattern = arch_key("attention.sliding_window_pattern")
    if isinstance(pattern, tuple):
        pattern = tuple(bool(p) for p in pattern)
    elif isinstance(pattern, bool) or not isinstance(pattern, int):
        pattern = None
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        architecture=arch,
        name=_str(meta.get("general.name")),
        parameter_count=params or None,
        quantization=quant,
        context_length=_int(arch_key("context_length")),
        block_count=_int(arch_key("block_count")),
        embedding_length=embedding,
        head_count=heads,
        head_count_kv=heads_kv,
        key_length=key_len,
        value_length=value_len,
        sliding_window=_int(arch_key("attention.sliding_window")),
        chat_template=_str(meta.get("tokenizer.chat_template")),
        license=_str(meta.get("general.license")),
        sliding_window_pattern=pattern,
        tensor_count=len(tensors),
        size_label=_str(meta.get("general.size_label")),
        vocab_size=vocab or None,
        metadata={k: v for k, v in meta.items() if not isinstance(v, ArrayInfo)},
    )


_info_cache: dict[tuple[str, int, int], GGUFInfo] = {}
_info_cache_lock = threading.Lock()


def cached_gguf_info(path: Path) -> GGUFInfo:
    """read_gguf_info, remembered while the file's size and mtime stay the same (reading a
    header with a 262k-token vocabulary takes a few tenths of a second)."""
    from app.core.models.gguf import read_gguf_info

    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"Cannot read {path}: {exc}") from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _info_cache_lock:
        hit = _info_cache.get(key)
    if hit is not None:
        return hit
    info = read_gguf_info(path)
    with _info_cache_lock:
        if len(_info_cache) > 256:
            _info_cache.clear()
        _info_cache[key] = info
    return info
