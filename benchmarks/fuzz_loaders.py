"""Fuzz the loaders (and the splitter behind them) with atheris, coverage-guided.

    .venv/bin/pip install atheris==3.0.0        # or: pip install -e '.[fuzz]'
    python benchmarks/fuzz_loaders.py --seconds 120               # every target
    python benchmarks/fuzz_loaders.py --seconds 60 --targets pdf,html

Targets: pdf (raw bytes), docx (raw package bytes), docx-xml (the bytes of
word/document.xml inside an otherwise valid package, so mutations reach python-docx and our
walker instead of dying at the zip CRC), html, text (encoding detection and paragraphs),
markdown, and rst and csv as extras. Seeds are generated (PyMuPDF, python-docx and text in
several encodings), written uncompressed where the format allows so that mutations reach the
content.

Each input is written to a file with the target's extension and read with
`loaders.load(path, deadline=...)`, then split. The contract is: every failure is a
LoadError with a reason for the user. So an input is a *crash* when
  - any other exception escapes load() or the splitter,
  - load() had to wrap an unexpected exception ("could not read: ..."; it keeps it as
    __cause__), which means a loader bug was only caught by the safety net,
  - it takes longer than the per-input deadline (a LoadError "took longer than"), or
    libFuzzer's -timeout (a hang inside C code that never reaches a checkpoint).
A crash stops libFuzzer; the driver keeps the input, records the exception's type and
place, and restarts the target for the rest of its time. Crash inputs are kept in
--out (default /tmp/folio-fuzz/<target>/crash-*). Prints runs, executions and the distinct
crashes per target; --json writes the same as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGETS = {
    "pdf": ".pdf",
    "docx": ".docx",
    "docx-xml": ".docx",
    "html": ".html",
    "text": ".txt",
    "markdown": ".md",
    "rst": ".rst",
    "csv": ".csv",
}
INPUT_DEADLINE = 10.0  # seconds; a small input that takes longer is a hang
MAX_LEN = {"pdf": 65536, "docx": 65536, "docx-xml": 32768}


# --------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------


def _pdf_seeds() -> list[bytes]:
    import pymupdf

    out = []
    doc = pymupdf.open()
    for i in range(3):
        page = doc.new_page()
        page.insert_text((72, 72), f"Chapter {i + 1}", fontsize=18)
        page.insert_text((72, 110), f"Body text on page {i + 1}. It continues here-", fontsize=10)
        page.insert_text((72, 124), "after a hyphen and ends. \u2022 a bullet item", fontsize=10)
        page.insert_text((72, 760), f"Running footer {i + 1}", fontsize=8)
    doc.set_toc([[1, "Chapter 1", 1], [2, "Part", 2], [1, "Chapter 3", 3]])
    doc.set_metadata({"title": "Seed", "author": "Fuzz"})
    out.append(doc.tobytes(garbage=0, deflate=False))
    doc.close()
    doc = pymupdf.open()  # two columns and a monospaced block
    page = doc.new_page()
    for col, x in enumerate((72, 320)):
        for row in range(6):
            page.insert_text((x, 100 + 14 * row), f"column {col} line {row} text", fontsize=10)
    page.insert_text((72, 300), "def main():\n    return 1", fontname="cour", fontsize=9)
    out.append(doc.tobytes(garbage=0, deflate=False))
    doc.close()
    return out


def _docx_seed() -> bytes:
    import docx

    d = docx.Document()
    d.core_properties.title = "Seed"
    d.add_heading("Heading one", level=1)
    d.add_paragraph("A paragraph of body text.")
    d.add_paragraph("first item", style="List Bullet")
    d.add_paragraph("second item", style="List Number 2")
    d.add_heading("Heading two", level=2)
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text, t.cell(1, 0).text = "a", "b", "c"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _docx_parts(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


_DOCX_PARTS: dict[str, bytes] = {}


def _docx_with_body(xml: bytes) -> bytes:
    if not _DOCX_PARTS:
        _DOCX_PARTS.update(_docx_parts(_docx_seed()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in _DOCX_PARTS.items():
            zf.writestr(name, xml if name == "word/document.xml" else data)
    return buf.getvalue()


HTML_SEED = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Seed page</title>
<meta name="author" content="Fuzz"></head><body><nav><a href="#">Home</a></nav>
<main><h1>Title</h1><p>Para with <b>bold</b> and <br> a break &amp; an entity.</p>
<h2>Sub</h2><ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul>
<table><tr><th>h1</th><th>h2</th></tr><tr><td>a</td><td colspan=2>b</td></tr></table>
<pre>code  line
  indented</pre><div class="header">Next: x</div></main></body></html>"""

MD_SEED = """---
title: Seed
author: Fuzz
---
# Heading

Paragraph *text* with `code`.

Setext
======

- item
  - nested
1. one

```python
def f():
    return 1
```

| a | b |
|---|---|
| 1 | 2 |

    indented code
"""

RST_SEED = """=====
Title
=====

Section
-------

A paragraph with a literal block::

    code here

.. code-block:: python
   :linenos:

   print(1)

- item
- item two

.. a comment
"""

TEXT_SEED = "Plain text. Caf\u00e9 na\u00efve \u20ac.\n\nSecond paragraph\r\nwith CRLF.\n"


def seeds(target: str) -> list[bytes]:
    if target == "pdf":
        return _pdf_seeds()
    if target == "docx":
        return [_docx_seed()]
    if target == "docx-xml":
        return [_docx_parts(_docx_seed())["word/document.xml"]]
    if target == "html":
        return [HTML_SEED, HTML_SEED.decode().replace("utf-8", "windows-1252").encode("cp1252")]
    if target == "text":
        return [
            TEXT_SEED.encode("utf-8"),
            TEXT_SEED.encode("utf-8-sig"),
            TEXT_SEED.encode("utf-16"),
            TEXT_SEED.encode("utf-16-le"),
            TEXT_SEED.encode("cp1252"),
            "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440".encode("koi8-r"),
        ]
    if target == "markdown":
        return [MD_SEED.encode("utf-8")]
    if target == "rst":
        return [RST_SEED.encode("utf-8")]
    if target == "csv":
        return [b'name,age,city\nAda,36,London\n"Lovelace, A",,"multi\nline"\n', b"a;b\n1;2\n"]
    raise ValueError(target)


# --------------------------------------------------------------------------------------
# the target (runs inside the libFuzzer process)
# --------------------------------------------------------------------------------------


class Hang(Exception):
    """An input hit the per-input deadline."""


def run_target(target: str, fuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["app", "docx", "charset_normalizer"]):
        from app.core.documents import formats as loaders
        from app.core.documents.splitter import Splitter
        from app.core.documents.base import Deadline, LoadError

    import logging

    logging.disable(logging.CRITICAL)  # load() logs the exceptions it wraps
    work = Path(f"/dev/shm/folio-fuzz-{os.getpid()}")
    if not work.parent.is_dir():
        work = Path(f"/tmp/folio-fuzz-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    path = work / ("input" + TARGETS[target])
    splitter = Splitter()

    def one(data: bytes) -> None:
        payload = _docx_with_body(data) if target == "docx-xml" else data
        path.write_bytes(payload)
        try:
            doc = loaders.load(path, deadline=Deadline(INPUT_DEADLINE))
            splitter.split(doc, Deadline(INPUT_DEADLINE))
        except LoadError as exc:
            if "took longer than" in str(exc):
                raise Hang(str(exc)) from None
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, LoadError):
                raise cause  # with its own traceback, through the loader's frames

    atheris.Setup([sys.argv[0], *fuzzer_args], one)
    atheris.Fuzz()


# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------

_DONE_RE = re.compile(r"Done (\d+) runs in (\d+) second")
_EXECS_RE = re.compile(r"^#(\d+)\s", re.MULTILINE)


def _signature(output: str) -> str:
    """The crash's exception type and its innermost frame in Folio's code."""
    exc = re.findall(
        r"^(?:app\.core\.\w+\.|__main__\.)?(\w+(?:Error|Exception|Hang|Interrupt)\b[^\n]*)",
        output,
        re.MULTILINE,
    )
    frames = re.findall(r'File "([^"]*?/app/core/[^"]+)", line (\d+), in (\w+)', output)
    where = f"{Path(frames[-1][0]).name}:{frames[-1][1]} {frames[-1][2]}" if frames else "?"
    if "libFuzzer: timeout" in output:
        return f"timeout (hang in native code?) at {where}"
    what = exc[-1][:160] if exc else "unknown crash"
    return f"{what} at {where}"


def fuzz(target: str, seconds: int, out: Path) -> dict:
    corpus = out / target / "corpus"
    seed_dir = out / target / "seeds"
    for d in (corpus, seed_dir):
        d.mkdir(parents=True, exist_ok=True)
    for data in seeds(target):
        (seed_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
    result = {"target": target, "seconds": seconds, "runs": 0, "executions": 0, "crashes": {}}
    deadline = time.monotonic() + seconds
    while (left := int(deadline - time.monotonic())) > 2:
        args = [
            f"-max_total_time={left}",
            f"-timeout={int(INPUT_DEADLINE * 3)}",
            f"-artifact_prefix={out / target}/",
            "-print_final_stats=1",
            f"-max_len={MAX_LEN.get(target, 16384)}",
            "-rss_limit_mb=4096",
            str(corpus),
            str(seed_dir),
        ]
        proc = subprocess.run(
            [sys.executable, __file__, "--run-target", target, "--", *args],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        output = proc.stdout + proc.stderr
        result["runs"] += 1
        done = _DONE_RE.search(output)
        stats = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
        if stats:
            result["executions"] += int(stats.group(1))
        elif done:
            result["executions"] += int(done.group(1))
        else:
            execs = _EXECS_RE.findall(output)
            result["executions"] += int(execs[-1]) if execs else 0
        if proc.returncode == 0:
            break
        artifact = re.search(r"Test unit written to (\S+)", output)
        sig = _signature(output)
        entry = result["crashes"].setdefault(sig, {"count": 0, "inputs": []})
        entry["count"] += 1
        if artifact and len(entry["inputs"]) < 3:
            entry["inputs"].append(artifact.group(1))
        (out / target / f"log-{result['runs']}.txt").write_text(output[-20000:])
        if entry["count"] >= 5:  # the same crash over and over: fix it first
            break
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--out", type=Path, default=Path("/tmp/folio-fuzz"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--run-target", help=argparse.SUPPRESS)
    ap.add_argument("fuzzer_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_target:
        run_target(args.run_target, args.fuzzer_args)
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: .venv/bin/pip install atheris==3.0.0")
    results = []
    for target in args.targets.split(","):
        started = time.monotonic()
        res = fuzz(target, args.seconds, args.out)
        res["wall"] = round(time.monotonic() - started, 1)
        results.append(res)
        print(
            f"{target:9} {res['runs']:3} runs  {res['executions']:9,} executions  "
            f"{len(res['crashes'])} distinct crashes  ({res['wall']} s)",
            flush=True,
        )
        for sig, info in res["crashes"].items():
            print(f"    {info['count']}x {sig}")
            for path in info["inputs"]:
                print(f"        {path}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
