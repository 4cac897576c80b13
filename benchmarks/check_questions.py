"""Check the retrieval question sets against the documents they describe (issue 13).

Every accepted answer location must hold its hint:

* a PDF page (1-based physical page, i.e. page index + 1) in PyMuPDF's text of that page.
  A question may carry "page_hints": {"<page>": "phrase"} for pages where the answer is worded
  differently (e.g. a function's reference entry and a later example);
* an HTML or DOCX section in the text of the blocks Folio's own loader puts in that section
  or its subsections (the same headings a search result's section path carries), so the gold
  matches what search returns. A location may carry its own "hint".

Both sides are normalised before comparing: case, Unicode compatibility forms (ligatures),
typographic quotes and dashes, the Unicode minus, soft hyphens and runs of whitespace. A word
broken across a line with a hyphen is accepted both joined ("broad-\\ncasts" -> "broadcasts")
and with its hyphen kept ("built-\\nin" -> "built-in").

It also fails an answer page that is a table-of-contents page (before the first bookmark) or an
index page (from a top-level "... Index" bookmark on), repeated ids, a question without its
fields, and a question that shares a run of COPY_FAIL_WORDS (5) or more consecutive words with
the text of its answer locations (questions are paraphrased, not copied).

    python benchmarks/check_questions.py                  # every set in question_sets.py
    python benchmarks/check_questions.py --set debian-faq
    python benchmarks/check_questions.py --pdf PATH --questions PATH   # one PDF, any questions
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from question_sets import (  # noqa: E402
    COPY_FAIL_WORDS,
    CORPUS,
    FETCH,
    SETS,
    Location,
    QuestionSet,
    get_set,
    gold_locations,
    norm_heading,
    section_headings,
)

_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2014": "-",
    "\u00ad": "", "\u00a0": " ",
})

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


class _Texts:
    """Texts of answer locations, read once per file: PDF pages (with each PDF's answer page
    range) and, for other files, the blocks of Folio's loader with their sections."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        self._pdfs: dict[str, object] = {}
        self._ranges: dict[str, tuple[int, int]] = {}
        self._pages: dict[tuple[str, int], str] = {}
        self._blocks: dict[str, list] = {}

    def _pdf(self, path: str):
        if path not in self._pdfs:
            import pymupdf

            doc = pymupdf.open(str(self.corpus / path))
            self._pdfs[path] = doc
            self._ranges[path] = answer_page_range(doc)
        return self._pdfs[path]

    def page_range(self, path: str) -> tuple[int, int]:
        self._pdf(path)
        return self._ranges[path]

    def page(self, path: str, page: int) -> str:
        key = (path, page)
        if key not in self._pages:
            self._pages[key] = self._pdf(path)[page - 1].get_text()
        return self._pages[key]

    def section(self, path: str, heading: str) -> str | None:
        """Text of the blocks in `heading`'s section or its subsections; None when no block
        of the file has that heading in its section path."""
        if path not in self._blocks:
            _ = __import__("_common")  # puts the repository on sys.path
            from app.core.documents.formats import load

            self._blocks[path] = load(self.corpus / path).blocks
        want = norm_heading(heading)
        texts = [b.text for b in self._blocks[path] if want in section_headings(b.section)]
        return "\n".join(texts) if texts else None

    def close(self) -> None:
        for doc in self._pdfs.values():
            doc.close()


def check_questions(questions: list[dict], corpus: Path, default_document: str,
                    texts: _Texts | None = None) -> tuple[list[str], list[str]]:
    """Failures and notes for one question list; `default_document` is the PDF that `pages`
    refer to when a question names no `path`."""
    texts = texts or _Texts(corpus)
    failures: list[str] = []
    notes: list[str] = []
    ids = [q.get("id") for q in questions]
    dupes = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if dupes:
        failures.append(f"duplicate question ids: {dupes}")
    for q in questions:
        qid = q.get("id", "?")
        for key in ("id", "question", "answer_hint"):
            if not q.get(key):
                failures.append(f"{qid}: missing {key}")
        has_pages, has_locs = bool(q.get("pages")), bool(q.get("locations"))
        if has_pages == has_locs:
            failures.append(f"{qid}: needs either pages (PDF) or locations (HTML/DOCX)")
            continue
        pages = q.get("pages") or []
        if len(pages) != len(set(map(str, pages))):
            failures.append(f"{qid}: repeated page in {pages}")
        extra = set(q.get("page_hints", {})) - {str(p) for p in pages}
        if extra:
            failures.append(f"{qid}: page_hints for pages not listed: {sorted(extra)}")
        gold_text: list[str] = []
        for loc in gold_locations(q, default_document):
            text = _location_text(texts, corpus, qid, loc, failures)
            if text is None:
                continue
            if not loc.hint:
                failures.append(f"{qid}: no hint for {_where(loc)}")
                continue
            h = norm_hint(loc.hint)
            if not any(h in variant for variant in page_variants(text)):
                failures.append(f"{qid}: hint {loc.hint!r} not found at {_where(loc)}")
            gold_text.append(text)
        if gold_text and q.get("question"):
            run = max(longest_shared_run(q["question"], t) for t in gold_text)
            if run >= COPY_FAIL_WORDS:
                failures.append(f"{qid}: shares {run} consecutive words with its answer "
                                "(paraphrase the question)")
            elif run == COPY_FAIL_WORDS - 1:
                notes.append(f"{qid}: shares {run} consecutive words with its answer")
    return failures, notes


def _where(loc: Location) -> str:
    if loc.page is not None:
        return f"{loc.path} page {loc.page}"
    return f"{loc.path} § {loc.section!r}"


def _location_text(texts: _Texts, corpus: Path, qid: str, loc: Location,
                   failures: list[str]) -> str | None:
    if not (corpus / loc.path).is_file():
        failures.append(f"{qid}: {loc.path} not found under {corpus}")
        return None
    if loc.page is not None:
        if not loc.path.lower().endswith(".pdf"):
            failures.append(f"{qid}: a page given for {loc.path}, which is not a PDF")
            return None
        first, last = texts.page_range(loc.path)
        page = loc.page
        if isinstance(page, bool) or not isinstance(page, int) or not first <= page <= last:
            failures.append(f"{qid}: page {loc.page} of {loc.path} outside the answer range "
                            f"{first}..{last} (title/contents/index pages are not answers)")
            return None
        return texts.page(loc.path, loc.page)
    if not loc.section:
        failures.append(f"{qid}: a location in {loc.path} without a section")
        return None
    text = texts.section(loc.path, loc.section)
    if text is None:
        failures.append(f"{qid}: no section {loc.section!r} in {loc.path} as Folio reads it")
    return text


def _report(label: str, questions: list[dict], failures: list[str], notes: list[str]) -> int:
    print(f"{label}: {len(questions)} questions")
    for n in notes:
        print("  note:", n)
    for f in failures:
        print("  FAIL:", f)
    print(f"  {len(failures)} problem(s)" if failures else "  every hint found at its location")
    return 1 if failures else 0


def check_set(qset: QuestionSet, corpus: Path = CORPUS, base: Path = HERE) -> int:
    missing = [d for d in qset.documents if not (corpus / d).exists()]
    if missing:
        print(f"{qset.name}: {', '.join(missing)} not found under {corpus}: run {FETCH}",
              file=sys.stderr)
        return 2
    questions = qset.load(base)
    texts = _Texts(corpus)
    try:
        failures, notes = check_questions(questions, corpus, qset.documents[0], texts)
    finally:
        texts.close()
    return _report(f"{qset.name} ({qset.kind})", questions, failures, notes)


def check(pdf_path: Path, questions_path: Path) -> int:
    """One PDF and a question file of `pages` questions (the original interface)."""
    questions = json.loads(questions_path.read_text(encoding="utf-8"))
    pdf_path = pdf_path.resolve()
    texts = _Texts(pdf_path.parent)
    try:
        failures, notes = check_questions(questions, pdf_path.parent, pdf_path.name, texts)
    finally:
        texts.close()
    return _report(f"{questions_path.name} on {pdf_path.name}", questions, failures, notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", dest="sets", metavar="NAME",
                    help=f"check only this set (repeatable): {', '.join(s.name for s in SETS)}")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="folder the sets' documents are in")
    ap.add_argument("--pdf", type=Path, help="check --questions against this one PDF instead")
    ap.add_argument("--questions", type=Path, help="a question file (with --pdf)")
    args = ap.parse_args(argv)
    if args.pdf or args.questions:
        pdf = args.pdf or args.corpus / "octave.pdf"
        questions = args.questions or HERE / "octave_questions.json"
        if not pdf.exists():
            print(f"{pdf} not found: run {FETCH}", file=sys.stderr)
            return 2
        return check(pdf, questions)
    try:
        chosen = [get_set(n) for n in args.sets] if args.sets else list(SETS)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    return max(check_set(s, args.corpus) for s in chosen)


if __name__ == "__main__":
    sys.exit(main())
