"""The retrieval evaluation (issue 13): the question files are well formed, the checker
(benchmarks/check_questions.py) catches a wrong answer location and a copied question, and a
gold location matches what Folio's search really returns for PDF, HTML and DOCX chunks.

Tiny generated documents only; the real corpus is the benchmark's business."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.docgen import make_docx, make_pdf

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import check_questions  # noqa: E402
import question_sets  # noqa: E402
from question_sets import (  # noqa: E402
    SETS,
    Location,
    QuestionSet,
    first_hit_rank,
    gold_locations,
    is_hit,
    scores,
)

HELD_OUT = ("r-doc", "r-base", "/r/", "gnuplot", "debmake")

PAGES = [
    "Preface. This manual explains the widget toolkit.",
    "Chapter one. Installing widgets. Run the installer and choose a target folder for the "
    "widget files; the installer never touches your settings.",
    "Chapter two. Colours. The palette command sets the background hue of every widget at "
    "once, and a reset restores the factory colours.",
]
TOC = [[1, "Preface", 1], [1, "Installing", 2], [1, "Colours", 3]]

HTML = """<html><head><title>Gadget guide</title></head><body>
<h1>Gadget guide</h1>
<h2>Charging</h2><p>Plug the gadget into any USB port; a full charge takes two hours.</p>
<h2>Cleaning</h2><p>Wipe the case with a dry cloth and never submerge it in water.</p>
<h3>Screens</h3><p>A microfibre tissue removes fingerprints from the display.</p>
</body></html>"""


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"  # beside the test's library folder, not around it
    (root / "web").mkdir(parents=True)
    make_pdf(root / "manual.pdf", PAGES, toc=TOC)
    (root / "web" / "guide.html").write_text(HTML, encoding="utf-8")
    make_docx(root / "notes.docx", {
        "Travel": ["Pack the charger in hand luggage because airlines forbid spare batteries "
                   "in the hold."],
        "Storage": ["Keep the device somewhere cool and half charged when unused for months."],
    }, title="Notes")
    return root


def _check(questions, corpus, default="manual.pdf"):
    return check_questions.check_questions(questions, corpus, default)


# -- the real question files ---------------------------------------------------------------


def test_question_sets_are_well_formed():
    assert len(SETS) >= 3
    assert len({s.kind for s in SETS}) == len(SETS)
    assert len({s.name for s in SETS}) == len(SETS)
    for qset in SETS:
        assert not any(h in d.lower() for d in qset.documents for h in HELD_OUT), qset.name
        questions = qset.load()
        assert len(questions) >= 40, qset.name
        ids = [q["id"] for q in questions]
        assert len(ids) == len(set(ids)), qset.name
        texts = [q["question"].strip().lower() for q in questions]
        assert len(texts) == len(set(texts)), f"{qset.name}: a question asked twice"
        for q in questions:
            assert q["question"].strip() and q["answer_hint"].strip(), q["id"]
            assert ("pages" in q) != ("locations" in q), q["id"]
            locs = gold_locations(q, qset.documents[0])
            assert locs, q["id"]
            for loc in locs:
                assert any(loc.path == d or loc.path.startswith(d.rstrip("/") + "/")
                           for d in qset.documents), (q["id"], loc.path)
                if "pages" in q:
                    assert isinstance(loc.page, int) and not isinstance(loc.page, bool)
                    assert loc.page >= 1
                else:
                    assert loc.page is None and loc.section and loc.hint, q["id"]
            assert set(q.get("page_hints", {})) <= {str(p) for p in q.get("pages", [])}, q["id"]


def test_every_set_is_checked_and_benchmarked_by_name():
    assert [s.name for s in SETS] == [question_sets.get_set(s.name).name for s in SETS]
    with pytest.raises(KeyError, match="unknown question set"):
        question_sets.get_set("r-manuals")
    assert check_questions.main(["--set", "no-such-set"]) == 2


# -- the checker -----------------------------------------------------------------------------


def test_checker_accepts_right_pages_and_sections(corpus):
    questions = [
        {"id": "a", "question": "How do I change what colour all my gadgets show?",
         "pages": [3], "answer_hint": "sets the background hue"},
        {"id": "b", "question": "How long until the battery is full?",
         "locations": [{"path": "web/guide.html", "section": "Charging"}],
         "answer_hint": "a full charge takes two hours"},
        {"id": "c", "question": "What removes smudges from the display?",  # a subsection counts
         "locations": [{"path": "web/guide.html", "section": "Cleaning"},
                       {"path": "web/guide.html", "section": "Screens",
                        "hint": "microfibre tissue"}],
         "answer_hint": "microfibre tissue"},
        {"id": "d", "question": "Can spare cells go in checked baggage on a plane?",
         "locations": [{"path": "notes.docx", "section": "Travel"}],
         "answer_hint": "airlines forbid spare batteries"},
    ]
    failures, _ = _check(questions, corpus)
    assert failures == []


def test_checker_catches_a_wrong_page(corpus):
    questions = [{"id": "w", "question": "How do I change what colour all my gadgets show?",
                  "pages": [2], "answer_hint": "sets the background hue"}]
    failures, _ = _check(questions, corpus)
    assert len(failures) == 1
    assert "w:" in failures[0] and "not found" in failures[0] and "page 2" in failures[0]


def test_checker_catches_a_wrong_or_missing_section(corpus):
    questions = [
        {"id": "s1", "question": "How long until the battery is full?",
         "locations": [{"path": "web/guide.html", "section": "Cleaning"}],
         "answer_hint": "a full charge takes two hours"},
        {"id": "s2", "question": "Where should the device be kept?",
         "locations": [{"path": "notes.docx", "section": "Warranty"}],
         "answer_hint": "somewhere cool"},
    ]
    failures, _ = _check(questions, corpus)
    assert any(f.startswith("s1:") and "not found" in f for f in failures)
    assert any(f.startswith("s2:") and "no section 'Warranty'" in f for f in failures)


def test_checker_catches_a_copied_question(corpus):
    copied = "What happens when you run the installer and choose a target folder?"
    questions = [{"id": "c", "question": copied, "pages": [2],
                  "answer_hint": "never touches your settings"}]
    failures, _ = _check(questions, corpus)
    assert len(failures) == 1 and "consecutive words" in failures[0]
    # the same question, paraphrased, passes
    questions[0]["question"] = "Where do the installed files end up, and are my preferences kept?"
    assert _check(questions, corpus)[0] == []


def test_checker_catches_pages_outside_the_answer_range_and_malformed_questions(corpus):
    questions = [
        {"id": "x", "question": "Anything about widgets?", "pages": [9], "answer_hint": "widget"},
        {"id": "x", "question": "Both kinds of gold?", "pages": [2],
         "locations": [{"path": "notes.docx", "section": "Travel"}], "answer_hint": "widget"},
        {"id": "y", "question": "", "pages": [2], "answer_hint": "installer"},
    ]
    failures, _ = _check(questions, corpus)
    assert any("outside the answer range" in f for f in failures)
    assert any("duplicate question ids" in f for f in failures)
    assert any("either pages" in f for f in failures)
    assert any(f.startswith("y:") and "missing question" in f for f in failures)


def test_check_set_exit_codes(corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("questions")
    good = [{"id": "g", "question": "How long until the battery is full?",
             "locations": [{"path": "web/guide.html", "section": "Charging"}],
             "answer_hint": "two hours"}]
    (base / "good.json").write_text(json.dumps(good))
    (base / "bad.json").write_text(json.dumps([{**good[0], "answer_hint": "three hours"}]))
    def run(questions: str, document: str) -> int:
        qset = QuestionSet("t", "html", questions, (document,))
        return check_questions.check_set(qset, corpus, base)

    assert run("good.json", "web") == 0
    assert run("bad.json", "web") == 1
    assert run("good.json", "gone") == 2


# -- gold locations against real search results ---------------------------------------------


def test_gold_locations_match_what_search_returns(corpus, library_dir, embedder):
    from app.core.index.ingest import IngestOptions, ingest
    from app.core.index.library import Library
    from app.core.index.search import hybrid_search

    lib = Library.open(library_dir, embedder)
    for _ in ingest(lib, [corpus], IngestOptions()):
        pass
    cases = [
        ("How do I change what colour all my gadgets show?", [Location("manual.pdf", page=3)]),
        ("How long until the battery is full?", [Location("web/guide.html", section="Charging")]),
        ("What removes smudges from the display?",
         [Location("web/guide.html", section="Cleaning")]),
        ("Can spare cells go in checked baggage on a plane?",
         [Location("notes.docx", section="Travel")]),
    ]
    ranks = []
    for question, gold in cases:
        results = hybrid_search(lib, question, k=5)
        assert results, question
        rank = first_hit_rank(results, gold)
        assert rank is not None, (question, [(r.path, r.page, r.section) for r in results])
        ranks.append(rank)
        top = results[rank - 1]
        # the same result at a wrong page or section, or from another file, is no hit
        assert not is_hit(top, [Location(gold[0].path, page=2)] if gold[0].page
                          else [Location(gold[0].path, section="Storage")])
        elsewhere = Location("other/" + Path(gold[0].path).name, gold[0].page, gold[0].section)
        assert not is_hit(top, [elsewhere])
    assert scores(ranks)["hit@5"] == 1.0


def test_scores():
    s = scores([1, 2, None, 4, 11])
    assert s == {"hit@1": 0.2, "hit@3": 0.4, "hit@5": 0.6, "hit@10": 0.6,
                 "mrr": round((1 + 1 / 2 + 1 / 4) / 5, 3)}
