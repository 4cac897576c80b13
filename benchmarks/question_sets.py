"""The retrieval question sets (issue 13): which documents each set asks about, where its
questions are, and when a search result counts as answering one.

Each set is a different kind of documentation, so that no default can be tuned into one
manual. All documents come from Debian documentation packages (fetch_question_sets.sh puts
them under benchmarks/.corpus/); the R manuals, gnuplot and debmake-doc are kept out: they
are the held-out set.

A question file is a JSON list of questions: ``id``, ``question`` (paraphrased: it must not
share a run of COPY_FAIL_WORDS words with its answer) and ``answer_hint`` (a phrase that is
on every accepted location, unless that location carries its own hint), plus where the
answer is:

* PDF sets: ``pages`` (1-based physical pages of the set's document, or of ``path`` when the
  question names one) and optionally ``page_hints`` {"<page>": phrase}, as
  octave_questions.json always had;
* HTML and DOCX sets: ``locations``, a list of {"path": file under the corpus folder,
  "section": a heading as Folio records it in a chunk's section path, "hint": optional
  phrase for this location}. A result in that section or in one of its subsections hits.

A search result hits when it comes from the gold file (its path ends with the gold path)
and, for a page, its page span covers the page; for a section, one of the headings of its
section path is the gold heading (compared without Sphinx's pilcrow, case or spacing).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / ".corpus"
FETCH = "bash benchmarks/fetch_question_sets.sh"

# A question sharing this many consecutive words with its answer's text is copied, not
# paraphrased: check_questions.py fails it.
COPY_FAIL_WORDS = 5


@dataclass(frozen=True)
class QuestionSet:
    name: str
    kind: str
    questions: str  # file name in benchmarks/
    documents: tuple[str, ...]  # files or folders under the corpus folder, ingested whole

    def questions_path(self, base: Path = HERE) -> Path:
        return base / self.questions

    def load(self, base: Path = HERE) -> list[dict]:
        return json.loads(self.questions_path(base).read_text(encoding="utf-8"))


SETS: tuple[QuestionSet, ...] = (
    QuestionSet("octave", "reference manual, PDF (GNU Octave, 1,158 pages)",
                "octave_questions.json", ("octave.pdf",)),
    QuestionSet("debian-faq", "FAQ, PDF (the Debian FAQ, 73 pages)",
                "debian_faq_questions.json", ("debian-faq/debian-faq.en.pdf",)),
    QuestionSet("python-docs", "tutorial, FAQ and HOWTOs, HTML (Python 3.11, 45 pages)",
                "python_docs_questions.json", ("python-docs",)),
)


def get_set(name: str) -> QuestionSet:
    for s in SETS:
        if s.name == name:
            return s
    raise KeyError(f"unknown question set {name!r}; known: {', '.join(s.name for s in SETS)}")


@dataclass(frozen=True)
class Location:
    """One accepted answer place: a page of a file, or a section of a file."""

    path: str  # relative to the corpus folder
    page: int | None = None
    section: str | None = None
    hint: str = ""


def gold_locations(question: dict, default_document: str) -> list[Location]:
    """Where a question's answer is, with the hint that must be found at each place."""
    hint = question.get("answer_hint", "")
    if "locations" in question:
        return [
            Location(loc["path"], None, loc.get("section"), loc.get("hint") or hint)
            for loc in question["locations"]
        ]
    path = question.get("path", default_document)
    page_hints = question.get("page_hints", {})
    return [Location(path, p, None, page_hints.get(str(p), hint))
            for p in question.get("pages", [])]


_PILCROW = re.compile(r"[\u00b6\u00a7]\s*$")


def norm_heading(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_PILCROW.sub("", text.strip()).split()).casefold()


def section_headings(section: Any) -> list[str]:
    """A result's or block's section path as normalised headings (a chunk's section is the
    headings joined with " > ", a block's a tuple)."""
    if not section:
        return []
    parts = section.split(" > ") if isinstance(section, str) else list(section)
    return [norm_heading(p) for p in parts]


def _same_file(result_path: str, gold_path: str) -> bool:
    r = Path(result_path).as_posix()
    return r == gold_path or r.endswith("/" + gold_path.lstrip("/"))


def is_hit(result: Any, locations: list[Location]) -> bool:
    """Whether a search result (Folio's SearchResult or anything with path, page, page_end,
    section) is at one of the accepted locations."""
    path = getattr(result, "path", None)
    if not path:
        return False
    page, page_end = getattr(result, "page", None), getattr(result, "page_end", None)
    headings = None
    for loc in locations:
        if not _same_file(path, loc.path):
            continue
        if loc.page is not None:
            if page is None:
                continue
            lo, hi = page, (page if page_end is None else page_end)
            if not min(lo, hi) <= loc.page <= max(lo, hi):
                continue
        if loc.section is not None:
            if headings is None:
                headings = section_headings(getattr(result, "section", ""))
            if norm_heading(loc.section) not in headings:
                continue
        return True
    return False


def first_hit_rank(results: list, locations: list[Location],
                   cutoff: int | None = None) -> int | None:
    limit = len(results) if cutoff is None else min(cutoff, len(results))
    for rank in range(limit):
        if is_hit(results[rank], locations):
            return rank + 1
    return None


def scores(ranks: list[int | None], ks: tuple[int, ...] = (1, 3, 5, 10),
           mrr_cutoff: int = 10) -> dict:
    """hit@k for each k and MRR (first hit within mrr_cutoff), from each question's first-hit
    rank (None: no hit)."""
    n = len(ranks) or 1
    out = {f"hit@{k}": round(sum(r is not None and r <= k for r in ranks) / n, 3) for k in ks}
    out["mrr"] = round(sum(1 / r for r in ranks if r is not None and r <= mrr_cutoff) / n, 3)
    return out
