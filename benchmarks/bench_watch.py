"""Watched folders: the delay from a file's save to the change being searchable.

    python benchmarks/bench_watch.py [--saves 15] [--quiet 1.0] [--files 50]

A library of `--files` small text files in a watched folder (real embedder, real LanceDB);
then, `--saves` times, one file is saved with a sentence holding a new made-up word (every
other save the way editors do it: a temp file renamed over the original) and the clock runs
until `hybrid_search` returns that passage. The delay includes the debounce (`--quiet`
seconds of no events before a batch is applied), so it can never be below it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import percentile

from app.core.index.embedder import get_embedder
from app.core.index.library import Library
from app.core.index.search import hybrid_search
from app.core.index.watch import FolderWatcher

WORDS = "amber basalt cedar delta ember fjord garnet harbor indigo juniper".split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saves", type=int, default=15)
    ap.add_argument("--quiet", type=float, default=1.0, help="the watcher's debounce (s)")
    ap.add_argument("--files", type=int, default=50, help="files in the watched folder")
    ap.add_argument("--deadline", type=float, default=120.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "watched"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"note{i:03}.txt").write_text(
                f"Note {i}. " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40)))
        lib = Library.open(tmp / "library", get_embedder())
        watcher = FolderWatcher(lib, [folder], quiet=args.quiet)
        t0 = time.perf_counter()
        watcher.rescan()
        print(f"initial scan of {args.files} files: {time.perf_counter() - t0:.2f} s")
        delays = []
        with watcher:
            for n in range(args.saves):
                token = f"zorblax{n}quin"
                target = folder / f"note{n % args.files:03}.txt"
                text = f"The {token} is a lantern found in the attic on day {n}."
                start = time.perf_counter()
                if n % 2:
                    tmp_file = target.with_name(target.name + ".tmp")
                    tmp_file.write_text(text)
                    os.replace(tmp_file, target)
                else:
                    target.write_text(text)
                end = start + args.deadline
                while time.perf_counter() < end:
                    hits = hybrid_search(lib, f"{token} lantern attic", k=3)
                    if any(token in h.text for h in hits):
                        break
                    time.sleep(0.02)
                else:
                    raise SystemExit(f"save {n} was not searchable after {args.deadline} s")
                delays.append(time.perf_counter() - start)
                print(f"save {n + 1:2}: {delays[-1]:.2f} s")
        lib.close()
    print(f"\nsave -> searchable over {len(delays)} saves (debounce {args.quiet} s): "
          f"median {statistics.median(delays):.2f} s, p95 {percentile(delays, 95):.2f} s, "
          f"max {max(delays):.2f} s; {watcher.batches - 1} batches for {args.saves} saves")


if __name__ == "__main__":
    main()
