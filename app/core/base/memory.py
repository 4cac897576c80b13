"""Process memory policy: cap glibc's malloc arenas (Linux).

glibc gives each thread that meets lock contention its own malloc arena, up to 8 per core.
Folio runs many allocating threads at once (torch for the embedder, LanceDB's Rust runtime,
the llama.cpp worker, Qt pools), and memory freed in one arena is not reused by the others,
so RSS kept climbing with every answer that also searched: on the Octave library,
`benchmarks/bench_memory.py -n 30 --phases docs --prime` measured +160-170 MiB per 100
answers with the default arenas (malloc_trim after each answer did not help: +162), +19 with
this call at start (`--arena-max`) and +10 with MALLOC_ARENA_MAX=2 in the environment.

glibc fixes the arena limit the first time a second arena is made, so this must run before
other threads allocate: first thing in an entry point, before torch or lancedb is imported.
The MALLOC_ARENA_MAX environment variable, when set, wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc <malloc.h>
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas. True when applied; False off glibc, when
    MALLOC_ARENA_MAX is already set in the environment, or when mallopt refuses."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    if not ok:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return ok
