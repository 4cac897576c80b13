"""Check benchmarks/octave_questions.json against the PDF it describes.

For every question, each listed page (1-based physical page of octave.pdf, i.e. page
index + 1) must contain the answer hint in PyMuPDF's text of that page. A question may
carry "page_hints": {"<page>": "phrase"} for pages where the answer is worded differently
(e.g. the function's reference entry and a later example); those pages are checked
against their own phrase instead of answer_hint.

Both sides are normalised before comparing: case, Unicode compatibility forms (ligatures),
typographic quotes and dashes, the Unicode minus, soft hyphens and runs of whitespace. A word
broken across a line with a hyphen is accepted both joined ("broad-\\ncasts" -> "broadcasts")
and with its hyphen kept ("built-\\nin" -> "built-in").

It also asserts that no answer page is a table-of-contents page (before the first bookmark,
the Preface) or an index page (from the "Concept Index" bookmark on), that ids are unique,
and it warns when a question shares a long run of words with its answer page (questions are
meant to be paraphrased).

    python benchmarks/check_questions.py [--pdf PATH] [--questions PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PDF = HERE / ".corpus" / "octave.pdf"
DEFAULT_QUESTIONS = HERE / "octave_questions.json"

_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2014": "-",
    "\u00ad": "", "\u00a0": " ",
})

# Longest run of consecutive words a question may share with its answer page before the
# check warns that it looks copied rather than paraphrased.
COPY_WARN_WORDS = 7


def _base(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_TRANSLATE).lower()


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page_variants(text: str) -> tuple[str, str]:
    """The page text normalised two ways: end-of-line hyphens joined, and kept."""
    t = _base(text)
    joined = re.sub(r"-[ \t]*\n\s*", "", t)
    kept = re.sub(r"-[ \t]*\n\s*", "-", t)
    return _squash(joined), _squash(kept)


def norm_hint(hint: str) -> str:
    return _squash(_base(hint))


def answer_page_range(doc) -> tuple[int, int]:
    """First and last 1-based page that may hold an answer: from the first bookmark (the
    Preface, after the title and contents pages) to the page before the Concept Index."""
    toc = doc.get_toc()
    if not toc:
        return 1, len(doc)
    first = min(entry[2] for entry in toc if entry[2] > 0)
    index_pages = [e[2] for e in toc if e[0] == 1 and "index" in e[1].lower()]
    last = (min(index_pages) - 1) if index_pages else len(doc)
    return first, last


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", _base(text))


def longest_shared_run(question: str, page_text: str) -> int:
    qw, pw = _words(question), _words(page_text)
    if not qw or not pw:
        return 0
    page_ngrams: set[tuple[str, ...]] = set()
    best = 0
    for n in range(3, len(qw) + 1):
        page_ngrams = {tuple(pw[i:i + n]) for i in range(len(pw) - n + 1)}
        if any(tuple(qw[i:i + n]) in page_ngrams for i in range(len(qw) - n + 1)):
            best = n
        else:
            break
    return best


def check(pdf_path: Path, questions_path: Path) -> int:
    import pymupdf

    doc = pymupdf.open(str(pdf_path))
    questions = json.loads(questions_path.read_text(encoding="utf-8"))
    first, last = answer_page_range(doc)
    cache: dict[int, tuple[str, str]] = {}
    raw: dict[int, str] = {}

    def page(p: int) -> tuple[str, str]:
        if p not in cache:
            raw[p] = doc[p - 1].get_text()
            cache[p] = page_variants(raw[p])
        return cache[p]

    failures: list[str] = []
    warnings: list[str] = []
    ids = [q["id"] for q in questions]
    if len(ids) != len(set(ids)):
        failures.append("duplicate question ids")
    for q in questions:
        qid = q["id"]
        for key in ("question", "pages", "answer_hint"):
            if not q.get(key):
                failures.append(f"{qid}: missing {key}")
        pages = q.get("pages") or []
        if len(pages) != len(set(pages)):
            failures.append(f"{qid}: repeated page in {pages}")
        extra = set(q.get("page_hints", {})) - {str(p) for p in pages}
        if extra:
            failures.append(f"{qid}: page_hints for pages not listed: {sorted(extra)}")
        for p in pages:
            if not isinstance(p, int) or not (first <= p <= last):
                failures.append(
                    f"{qid}: page {p} outside the answer range {first}..{last} "
                    "(title/contents/index pages are not answers)"
                )
                continue
            hint = q.get("page_hints", {}).get(str(p), q["answer_hint"])
            h = norm_hint(hint)
            if not any(h in variant for variant in page(p)):
                failures.append(f"{qid}: hint {hint!r} not found on page {p}")
        if pages and all(isinstance(p, int) and first <= p <= last for p in pages):
            run = max(longest_shared_run(q["question"], raw.get(p) or doc[p - 1].get_text())
                      for p in pages)
            if run >= COPY_WARN_WORDS:
                warnings.append(f"{qid}: shares {run} consecutive words with its answer page")

    spread = sorted(p for q in questions for p in q.get("pages", [])[:1])
    print(f"{len(questions)} questions, answer pages {first}..{last} allowed; "
          f"first-listed pages span {spread[0]}..{spread[-1]}" if spread else "no questions")
    for w in warnings:
        print("warning:", w)
    for f in failures:
        print("FAIL:", f)
    if failures:
        print(f"{len(failures)} problem(s)")
        return 1
    print("all hints found on their pages")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    ap.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    args = ap.parse_args(argv)
    if not args.pdf.exists():
        print(f"{args.pdf} not found: run "
              "bash /work/shared/corpus/fetch-octave-docs.sh benchmarks/.corpus", file=sys.stderr)
        return 2
    return check(args.pdf, args.questions)


if __name__ == "__main__":
    sys.exit(main())
