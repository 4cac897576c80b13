"""A found passage widened to its section for the model (app/core/index/context.py), on a
real library (real LanceDB, real embedder, real DOCX and PDF files) and through the chat."""

from __future__ import annotations

import pytest
from docgen import make_docx, make_pdf
from test_chat import ScriptedLLM

from app.core.chat.answers import ChatConfig, ChatEngine
from app.core.chat.history import ChatStore
from app.core.documents.splitter import SplitterConfig
from app.core.documents.tokens import encoding
from app.core.index.context import merge_passages, widen
from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import Library
from app.core.index.search import hybrid_search

WATERING = [
    "Tomato plants want deep watering twice a week rather than a little every day.",
    "Water early in the morning so the leaves dry before the sun is strong.",
    "A layer of straw mulch keeps the soil moist for several extra days.",
    "In a heat wave, add a third watering and shade the plants at noon.",
    "Containers dry out faster than beds and may need water every evening.",
    "Yellow lower leaves often mean the roots stand in water for too long.",
]
PRUNING = [
    "Pinch out the side shoots that grow between the stem and a leaf.",
    "Do it while the shoots are shorter than five centimetres.",
    "Bush varieties need no pruning at all.",
]
SOIL = [f"Soil note {i}: compost number {i} feeds the beds for season {i}." for i in range(1, 9)]


def count(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


@pytest.fixture(scope="module")
def lib(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("contextlib")
    docs = root / "docs"
    docs.mkdir()
    make_docx(docs / "tomatoes.docx", {"Watering": WATERING, "Pruning": PRUNING},
              title="Tomato notes")
    # One section running over two pages, then another.
    make_pdf(docs / "soil.pdf", ["\n\n".join(SOIL[:4]), "\n\n".join(SOIL[4:]),
                                 "Harvest when the fruit is fully red and slightly soft."],
             toc=[[1, "Soil", 1], [1, "Harvest", 3]], title="Soil book")
    library = Library.open(root / "library", embedder)
    options = IngestOptions(splitter=SplitterConfig(chunk_tokens=40, overlap_tokens=10,
                                                    min_chunk_tokens=8))
    for _ in ingest(library, [docs], options):
        pass
    yield library
    library.close()


def chunks_of(lib, name):
    doc = next(d for d in lib.documents() if d.path.endswith(name))
    return doc.doc_id, lib.document_chunks(doc.doc_id)


def as_source(n, doc_id, row):
    return {"n": n, "doc_id": doc_id, **row}


def section_rows(rows, heading):
    return [r for r in rows if heading in (r["section"] or "")]


def test_the_library_holds_sections_of_several_overlapping_passages(lib):
    _, rows = chunks_of(lib, "tomatoes.docx")
    watering = section_rows(rows, "Watering")
    assert len(watering) >= 4
    # consecutive passages share text: the overlap the merge must take out
    assert any(a["char_end"] > b["char_start"] for a, b in zip(watering, watering[1:]))


def test_merged_passages_hold_each_sentence_once_in_reading_order(lib):
    _, rows = chunks_of(lib, "tomatoes.docx")
    merged = merge_passages(section_rows(rows, "Watering"))
    positions = [merged.find(s) for s in WATERING]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert all(merged.count(s) == 1 for s in WATERING)


def test_a_passage_is_widened_within_its_section_only(lib):
    doc_id, rows = chunks_of(lib, "tomatoes.docx")
    watering = section_rows(rows, "Watering")
    middle = watering[len(watering) // 2]
    [window] = widen(lib, [as_source(1, doc_id, middle)], count=count, per_source=2000,
                     budget=2000)
    assert window is not None and window.passages > 1
    assert middle["text"] in window.text
    # neighbours before and after are read, nothing of the next section is
    assert sum(s in window.text for s in WATERING) > sum(s in middle["text"] for s in WATERING)
    assert not any(s in window.text for s in PRUNING)
    assert window.added_tokens == count(window.text) - count(middle["text"])


def test_per_source_and_the_shared_budget_bound_what_is_added(lib):
    doc_id, rows = chunks_of(lib, "tomatoes.docx")
    watering = section_rows(rows, "Watering")
    first = as_source(1, doc_id, watering[0])
    [small] = widen(lib, [first], count=count, per_source=count(first["text"]) + 30,
                    budget=2000)
    assert small is not None and count(small.text) <= count(first["text"]) + 30
    [large] = widen(lib, [first], count=count, per_source=2000, budget=2000)
    assert large.passages > small.passages
    # nothing fits: the passage alone
    assert widen(lib, [first], count=count, per_source=count(first["text"]), budget=2000) == [
        None]
    assert widen(lib, [first], count=count, per_source=2000, budget=0) == [None]
    # two sources in two sections share one budget, the better-ranked one first
    _, soil_rows = chunks_of(lib, "soil.pdf")
    soil_id = next(d.doc_id for d in lib.documents() if d.path.endswith("soil.pdf"))
    sources = [first, as_source(2, soil_id, soil_rows[0])]
    windows = widen(lib, sources, count=count, per_source=2000, budget=40)
    assert sum(w.added_tokens for w in windows if w) <= 40
    assert windows[0] is not None


def test_another_sources_passage_is_left_to_it_so_no_text_is_read_twice(lib):
    doc_id, rows = chunks_of(lib, "tomatoes.docx")
    watering = section_rows(rows, "Watering")
    a, b = as_source(1, doc_id, watering[1]), as_source(2, doc_id, watering[2])
    windows = widen(lib, [a, b], count=count, per_source=2000, budget=2000)
    texts = [w.text if w else s["text"] for s, w in zip([a, b], windows, strict=True)]
    for sentence in WATERING:
        assert sum(sentence in t for t in texts) <= 1, sentence
    assert b["text"] not in texts[0]


def test_a_section_over_two_pages_widens_the_pages_read(lib):
    doc_id, rows = chunks_of(lib, "soil.pdf")
    soil = section_rows(rows, "Soil")
    assert {r["page"] for r in soil} == {1, 2}
    last_on_one = max((r for r in soil if r["page"] == 1), key=lambda r: r["chunk_index"])
    [window] = widen(lib, [as_source(1, doc_id, last_on_one)], count=count, per_source=2000,
                     budget=2000)
    assert (window.page, window.page_end) == (1, 2)
    assert "Harvest" not in window.text


def test_a_passage_changed_since_it_was_found_is_not_widened(lib):
    doc_id, rows = chunks_of(lib, "tomatoes.docx")
    stale = as_source(1, doc_id, {**rows[1], "text": "text from before a re-index"})
    assert widen(lib, [stale], count=count, per_source=2000, budget=2000) == [None]
    assert widen(lib, [{**stale, "doc_id": ""}], count=count, per_source=2000,
                 budget=2000) == [None]


# -- through the chat ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = ChatStore(tmp_path / "folio.sqlite")
    yield s
    s.close()


QUESTION = "How often should tomato plants be watered in a heat wave?"


def scripted_answer(lib, store, section_tokens, library=None):
    llm = ScriptedLLM(["Three times a week [1]."], chars_per_token=4)
    engine = ChatEngine(library or lib, llm, store,
                        config=ChatConfig(k=1, section_tokens=section_tokens))
    chat = store.create_chat()
    events = list(engine.ask(chat.id, QUESTION))
    return llm.prompts[-1], events, store.messages(chat.id)[-1]


def test_the_model_reads_the_section_and_the_passage_is_what_is_cited(lib, store):
    top = hybrid_search(lib, QUESTION, k=1)[0]
    assert "Watering" in top.section
    prompt, events, saved = scripted_answer(lib, store, 600)
    text = str(prompt)
    # what the model reads: sentences of the section beyond the found passage
    beyond = [s for s in WATERING if s not in top.text]
    assert beyond and all(s in text for s in beyond)
    done = events[-1]
    assert done.kind == "done" and done.sources[0]["text"] == top.text
    # what is shown and stored: the found passage, not the widened text
    assert all("context" not in s for s in done.sources)
    assert saved.sources[0].text == top.text
    # off: the passage alone
    prompt_off, _, _ = scripted_answer(lib, store, 0)
    assert not all(s in str(prompt_off) for s in beyond)
    assert len(str(prompt_off)) < len(text)


def test_a_widened_sources_header_names_the_pages_it_spans(lib, store):
    engine = ChatEngine(lib, ScriptedLLM([]), store)
    source = {"n": 1, "title": "Soil book", "name": "soil.pdf", "page": 1, "page_end": 1,
              "section": "Soil", "text": SOIL[3], "context": "\n\n".join(SOIL[2:6]),
              "context_page": 1, "context_page_end": 2}
    prompt, _ = engine.build_prompt("What feeds the beds?", [source], [], "")
    assert "[1] Soil book, page 1-2 (Soil)" in str(prompt)
    assert all(s in str(prompt) for s in SOIL[2:6])


def test_with_sections_on_a_small_context_still_fits(lib, store):
    llm = ScriptedLLM(["ok"], n_ctx=300, chars_per_token=4)
    engine = ChatEngine(lib, llm, store, config=ChatConfig(section_tokens=4000))
    chat = store.create_chat()
    events = list(engine.ask(chat.id, QUESTION, overrides={"max_tokens": 64}))
    assert events[-1].kind == "done"
    assert llm.count_tokens(llm.prompts[-1]) <= 300 - 64 - 8


class BrokenWindows:
    """A library whose neighbour reads fail (a file vanished under it, say)."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def chunk_windows(self, *args):
        raise OSError("the library's files went away")


def test_a_failed_section_read_costs_the_widening_not_the_answer(lib, store):
    prompt, events, saved = scripted_answer(lib, store, 600, library=BrokenWindows(lib))
    assert events[-1].kind == "done" and saved.status == "complete"
    top = hybrid_search(lib, QUESTION, k=1)[0]
    assert top.text in str(prompt)


def test_the_real_model_answers_with_sections_within_its_context(lib, llm, store):
    """The starter model (real llama.cpp) prompt grows by the section and still fits."""
    def prompt_tokens(section_tokens):
        engine = ChatEngine(lib, llm, store, config=ChatConfig(section_tokens=section_tokens))
        chat = store.create_chat()
        events = list(engine.ask(chat.id, QUESTION, overrides={"max_tokens": 4, "seed": 1}))
        assert events[-1].kind == "done", events[-1].text
        return events[-1].stats["prompt_tokens"]

    alone, widened = prompt_tokens(0), prompt_tokens(600)
    assert alone < widened <= llm.info.n_ctx
