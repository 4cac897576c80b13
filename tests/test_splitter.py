"""The splitter: sizes, structure, overlap, pages, offsets, coverage, and the embedder window.

Documents are built by hand so these tests do not depend on the loaders. Only the last
tests use the real MiniLM tokenizer (the `embedder` fixture; counting never loads the model).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.core.documents import tokens
from app.core.documents.splitter import Splitter, SplitterConfig, _split_sentences
from app.core.documents.base import Block, Chunk, LoadedDocument, document_text

WORDS = (
    "folio reads documents and splits them into passages each passage keeps its page the "
    "library stores vectors text so that questions find answers quickly retrieval needs "
    "chunks about one thing while embedders truncate silently beyond their window"
).split()


def sentences(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def make_doc(blocks: list[Block], title: str = "Guide", kind: str = "pdf") -> LoadedDocument:
    pages = max((b.page or 0 for b in blocks), default=0) or None
    return LoadedDocument(Path("guide.pdf"), kind, title, blocks, pages=pages)


def body(c: Chunk, text: str) -> str:
    return text[c.char_start : c.char_end]


def assert_covered(doc: LoadedDocument, chunks: list[Chunk]) -> None:
    """Every non-space character of the document text lies inside some chunk's span."""
    text = document_text(doc.blocks)
    spans = sorted((c.char_start, c.char_end) for c in chunks)
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    pos = 0
    for s, e in merged:
        assert not text[pos:s].strip(), f"uncovered text at {pos}: {text[pos:s][:60]!r}"
        pos = e
    assert not text[pos:].strip(), f"uncovered text at {pos}: {text[pos:][:60]!r}"


def assert_well_formed(doc: LoadedDocument, chunks: list[Chunk]) -> None:
    text = document_text(doc.blocks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == c.text.strip() and c.text
        assert c.tokens == tokens.count(c.text)
        # The text is the slice itself, or a repeated table header row on top of it.
        assert c.text == body(c, text) or (
            c.text.endswith("\n" + body(c, text)) and c.text.startswith("|")
        )
        if c.page is not None:
            assert c.page_end is not None and c.page <= c.page_end
    assert_covered(doc, chunks)


def block_spans(doc: LoadedDocument) -> list[tuple[int, int, Block]]:
    spans, pos = [], 0
    for b in doc.blocks:
        spans.append((pos, pos + len(b.text), b))
        pos += len(b.text) + 2
    return spans


def sections_of(doc: LoadedDocument, c: Chunk) -> set[tuple[str, ...]]:
    """Sections of the non-heading blocks a chunk's span touches."""
    return {
        b.section
        for s, e, b in block_spans(doc)
        if s < c.char_end and c.char_start < e and b.kind != "heading"
    }


def manual(n_sections: int = 6, paras: int = 5) -> LoadedDocument:
    blocks = []
    page = 1
    for s in range(n_sections):
        sec = ("Guide", f"Chapter {s // 3 + 1}", f"Part {s + 1}")
        blocks.append(Block(f"Part {s + 1}", page, sec, "heading"))
        for p in range(paras):
            blocks.append(Block(sentences(3 + (p * 7 + s) % 15, seed=s * 100 + p), page, sec))
            if p % 2:
                page += 1
    return make_doc(blocks)


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_tokens": 16},
        {"chunk_tokens": 100, "overlap_tokens": 100},
        {"overlap_tokens": -1},
        {"min_chunk_tokens": 200},
        {"chunk_tokens": 200.5},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SplitterConfig(**kwargs)


def test_limit_counter_and_tokens_go_together():
    with pytest.raises(ValueError):
        Splitter(limit_tokens=254)
    with pytest.raises(ValueError):
        Splitter(limit_counter=lambda texts: [len(t) for t in texts])
    with pytest.raises(ValueError):
        Splitter(limit_counter=lambda texts: [len(t) for t in texts], limit_tokens=4)


def test_empty_document():
    doc = make_doc([Block("   "), Block("")])
    assert Splitter().split(doc) == []


# --- sizes, structure, offsets ---------------------------------------------------------------


def test_sizes_offsets_and_coverage():
    doc = manual()
    chunks = Splitter().split(doc)
    assert len(chunks) > 10
    assert_well_formed(doc, chunks)
    assert max(c.tokens for c in chunks) <= 200 + 10
    # Chunks are reasonably full, not a stream of fragments.
    assert sum(c.tokens for c in chunks) / len(chunks) > 100


def test_sections_never_mix_and_overlap_stays_inside_a_section():
    doc = manual()
    text = document_text(doc.blocks)
    chunks = Splitter(SplitterConfig(chunk_tokens=120, overlap_tokens=30)).split(doc)
    for c in chunks:
        assert sections_of(doc, c) == {c.section}
        assert c.context.startswith("Guide > Chapter")
    overlaps = 0
    for a, b in zip(chunks, chunks[1:]):
        if a.section != b.section:
            assert b.char_start >= a.char_end  # no overlap across sections
            continue
        if b.char_start < a.char_end and b.page == a.page_end:
            overlaps += 1
            shared = text[b.char_start : a.char_end]
            assert b.char_start > a.char_start
            assert text[b.char_start - 1].isspace()  # starts at a word boundary
            assert text[a.char_end - 1] == "."  # the previous chunk ends a sentence
            assert 5 <= tokens.count(shared) <= 30 + 2
    assert overlaps >= 5


def test_overlap_prefers_whole_sentences():
    blocks = [Block(sentences(40, seed=3), 1, ("A",))]
    doc = make_doc(blocks)
    text = document_text(blocks)
    chunks = Splitter(SplitterConfig(chunk_tokens=100, overlap_tokens=30)).split(doc)
    assert len(chunks) >= 5
    starts_sentence = 0
    for a, b in zip(chunks, chunks[1:]):
        assert b.char_start < a.char_end
        if text[b.char_start].isupper() and text[: b.char_start].rstrip().endswith("."):
            starts_sentence += 1
    assert starts_sentence >= len(chunks) // 2


def test_headings_start_chunks_and_stay_attached():
    intro = sentences(30, seed=1)
    blocks = [
        Block("Installation", 1, ("Installation",), "heading"),
        Block(intro, 1, ("Installation",)),
        Block("Configuration", 2, ("Configuration",), "heading"),
        Block("Options", 2, ("Configuration", "Options"), "heading"),
        Block(sentences(4, seed=2), 2, ("Configuration", "Options")),
        Block(sentences(3, seed=4), 2, ("Configuration", "Options")),
        Block("Advanced", 2, ("Configuration", "Options"), "heading"),
        Block(sentences(6, seed=5), 2, ("Configuration", "Options")),
    ]
    doc = make_doc(blocks, title="Manual")
    text = document_text(blocks)
    chunks = Splitter(SplitterConfig(chunk_tokens=150, overlap_tokens=20)).split(doc)
    assert_well_formed(doc, chunks)
    headings = {b.text for b in blocks if b.kind == "heading"}
    for s, _, b in block_spans(doc):
        if b.kind != "heading":
            continue
        holder = [c for c in chunks if c.char_start <= s < c.char_end]
        assert len(holder) == 1  # overlap never reaches back into a heading
        c = holder[0]
        assert c.text != b.text  # never alone when text follows
        # It starts its chunk, or follows only the headings above it.
        before = text[c.char_start : s].split("\n\n")
        assert all(part in headings for part in before if part)
    first_chunk = chunks[0]
    assert first_chunk.text.startswith("Installation\n\n")
    assert first_chunk.context == "Manual > Installation"
    nested = next(c for c in chunks if "Options" in c.text.split("\n\n")[:2])
    assert nested.text.startswith("Configuration\n\nOptions\n\n")
    assert nested.section == ("Configuration", "Options")


def test_heading_in_parent_section_convention_is_attached_too():
    blocks = [
        Block("Part One", 1, (), "heading"),
        Block(sentences(3, seed=1), 1, ("Part One",)),
        Block("Part Two", 1, (), "heading"),
        Block(sentences(3, seed=2), 1, ("Part Two",)),
    ]
    chunks = Splitter().split(make_doc(blocks, title=""))
    assert [c.text.split("\n\n")[0] for c in chunks] == ["Part One", "Part Two"]
    assert [c.section for c in chunks] == [("Part One",), ("Part Two",)]
    assert [c.context for c in chunks] == ["Part One", "Part Two"]


def test_chunk_spanning_a_page_boundary():
    sec = ("Intro",)
    blocks = [
        Block(sentences(2, seed=1), 1, sec),  # short: the chunk carries on to page 2
        Block(sentences(2, seed=2), 2, sec),
        Block(sentences(40, seed=3), 3, sec),
    ]
    doc = make_doc(blocks)
    chunks = Splitter().split(doc)
    assert_well_formed(doc, chunks)
    assert (chunks[0].page, chunks[0].page_end) == (1, 2)
    # Page 3 starts a new chunk (the first is already half full), with no overlap back.
    assert chunks[1].page == 3 and chunks[1].char_start == block_spans(doc)[2][0]
    assert all(c.page == c.page_end == 3 for c in chunks[1:])


def test_page_boundary_is_soft():
    sec = ("Intro",)
    # Each page is over half a chunk: every page starts a new chunk, with no overlap back.
    blocks = [Block(sentences(14, seed=i), i + 1, sec) for i in range(5)]
    doc = make_doc(blocks)
    assert all(150 < tokens.count(b.text) < 300 for b in blocks)
    chunks = Splitter(SplitterConfig(chunk_tokens=300)).split(doc)
    assert_well_formed(doc, chunks)
    assert [(c.page, c.page_end) for c in chunks] == [(i, i) for i in range(1, 6)]
    # Small pages are packed two at a time rather than three.
    blocks = [Block(sentences(4, seed=i), i + 1, sec) for i in range(6)]
    chunks = Splitter(SplitterConfig(chunk_tokens=300)).split(make_doc(blocks))
    assert [(c.page, c.page_end) for c in chunks] == [(1, 2), (3, 4), (5, 6)]


def test_tiny_pages_may_span_more_than_two():
    sec = ("Slides",)
    blocks = [Block(f"Slide {i}.", i, sec) for i in range(1, 6)]
    chunks = Splitter().split(make_doc(blocks))
    assert len(chunks) == 1
    assert (chunks[0].page, chunks[0].page_end) == (1, 5)


def test_tiny_trailing_piece_is_merged():
    sec = ("A",)
    blocks = [Block(sentences(8, seed=1), 1, sec), Block("Done.", 2, sec)]
    # The page break closes the first chunk, but the tail is tiny: it is folded back in.
    chunks = Splitter(SplitterConfig(chunk_tokens=300)).split(make_doc(blocks))
    assert len(chunks) == 1
    assert chunks[0].text.endswith("Done.") and (chunks[0].page, chunks[0].page_end) == (1, 2)


def test_deterministic():
    doc = manual()
    a = Splitter().split(doc)
    b = Splitter().split(manual())
    assert a == b


def test_sentence_splitter_respects_abbreviations_and_decimals():
    text = (
        "Use a stable value, e.g. 3.14 for pi. Dr. Smith agreed. Prices rose 2.5% in the U.S. "
        "market. See Fig. 4 for details! Is it done? 数据已经保存。下一步开始。"
    )
    parts = [text[s:e] for s, e in _split_sentences(text, 0, len(text))]
    assert parts == [
        "Use a stable value, e.g. 3.14 for pi.",
        "Dr. Smith agreed.",
        "Prices rose 2.5% in the U.S. market.",
        "See Fig. 4 for details!",
        "Is it done?",
        "数据已经保存。",
        "下一步开始。",
    ]


def test_context_line_skips_repeated_title_and_keeps_deepest_parts():
    long = tuple(f"Section about a rather long topic number {i}" for i in range(8))
    blocks = [Block("Hello there.", None, ("Guide", "Setup")), Block("More text.", None, long)]
    chunks = Splitter().split(make_doc(blocks, title="Guide", kind="markdown"))
    assert chunks[0].context == "Guide > Setup"
    assert chunks[0].page is None and chunks[0].page_end is None
    ctx = chunks[1].context
    assert tokens.count(ctx) <= 40
    assert ctx.endswith(long[-1]) and not ctx.startswith("Guide")


# --- oversized blocks ------------------------------------------------------------------------


def test_giant_token_without_spaces():
    rng = random.Random(7)
    blob = "".join(rng.choice("abcdefghij0123456789") for _ in range(5000))
    blocks = [Block("Before the blob.", 1, ("A",)), Block(blob, 1, ("A",)),
              Block("After the blob.", 1, ("A",))]
    doc = make_doc(blocks)
    chunks = Splitter().split(doc)
    assert_well_formed(doc, chunks)
    assert len(chunks) >= 5
    assert all(c.tokens <= 210 for c in chunks)
    # The blob is cut into consecutive slices: no overlap inside a word.
    start, end = block_spans(doc)[1][:2]
    parts = [(max(c.char_start, start), min(c.char_end, end)) for c in chunks]
    parts = [(s, e) for s, e in parts if s < e]
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert (parts[0][0], parts[-1][1]) == (start, end)


def test_giant_table_repeats_its_header():
    header = "| Name | Value | Notes |\n|------|------:|-------|"
    rows = [f"| item{i} | {i * 37} | row number {i} of the table |" for i in range(200)]
    table = header + "\n" + "\n".join(rows)
    blocks = [Block("Table 1 lists everything.", 4, ("Data",)), Block(table, 4, ("Data",), "table")]
    doc = make_doc(blocks)
    text = document_text(blocks)
    chunks = Splitter().split(doc)
    assert_well_formed(doc, chunks)
    table_chunks = [c for c in chunks if "| item" in c.text]
    assert len(table_chunks) >= 5
    assert table_chunks[0].text.startswith("Table 1 lists everything.\n\n" + header)
    for c in table_chunks[1:]:
        assert c.text == header + "\n" + body(c, text)  # offsets refer to the slice
        assert body(c, text).startswith("| item") and body(c, text).endswith("|")
        assert c.tokens <= 210
    # Rows are whole and none is lost or repeated across chunks.
    seen = [line for c in table_chunks for line in c.text.splitlines() if "item" in line]
    assert seen == rows


def test_code_block_splits_on_lines():
    code = "\n".join(
        f"    result_{i} = compute(value_{i}, factor={i}) + offset_{i}  # step {i}"
        for i in range(150)
    )
    blocks = [Block(code, None, ("API",), "code")]
    doc = make_doc(blocks, kind="code")
    text = document_text(blocks)
    chunks = Splitter().split(doc)
    assert_well_formed(doc, chunks)
    assert len(chunks) >= 4
    for c in chunks:
        assert c.text.startswith("result_") and c.text.endswith(f"# step {c.text[-3:].split()[-1]}")
        assert text[c.char_start - 4 : c.char_start] == "    "
        assert c.char_end == len(text) or text[c.char_end] == "\n"


def test_a_huge_paragraph_falls_back_to_words():
    words = " ".join(random.Random(2).choice(WORDS) for _ in range(3000))  # no punctuation
    doc = make_doc([Block(words, 1, ("A",))])
    chunks = Splitter().split(doc)
    assert_well_formed(doc, chunks)
    text = document_text(doc.blocks)
    for c in chunks:
        assert c.tokens <= 210
        assert c.char_start == 0 or text[c.char_start - 1] == " "
        assert c.char_end == len(text) or text[c.char_end] == " "


def test_limit_counter_resplits_when_it_disagrees():
    """A counter that is not additive over words (chars / 3) still gets every chunk fitted."""

    def counter(texts: list[str]) -> list[int]:
        return [len(t) // 3 for t in texts]

    doc = manual(n_sections=3)
    splitter = Splitter(limit_counter=counter, limit_tokens=120)
    chunks = splitter.split(doc)
    assert_well_formed(doc, chunks)
    assert all(counter([c.embed_text])[0] <= 120 for c in chunks)


# --- the real embedder window ----------------------------------------------------------------

ADVERSARIAL = [
    "3.14159265358979 2.71828182845904 1.41421356237309 1.73205080756887 " * 6,
    "https://example.org/a/very/long/path?query=param_value&other=123456789#fragment-x " * 5,
    "数据库索引优化需要考虑查询模式和存储结构的平衡以及写入放大的影响。" * 8,
    "Ꭰ𐌰𐌱𐌲 ᚠᚢᚦᚨᚱᚲ ⴰⴱⴳⴷ ꦲꦏ꧀ꦱꦫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ʘǀǁǂ ꙮ ᠮᠣᠩᠭᠣᠯ " * 6,
    "1,3,7-trimethyl-3,7-dihydro-1H-purine-2,6-dione and 2-acetoxybenzoic acid " * 6,
    "🚀🔥✨🎉 mixed ÄÖÜß ελληνικά русский עברית العربية हिन्दी 日本語テキスト " * 6,
    "0x7fffffff 0xdeadbeef 0b10110110 1e-308 6.02214076e23 -273.15°C " * 8,
]


def adversarial_doc() -> LoadedDocument:
    blocks = []
    for i, sample in enumerate(ADVERSARIAL):
        sec = ("Stress", f"Case {i} ünïcødé ✨ 数据")
        blocks.append(Block(f"Case {i}", i + 1, sec, "heading"))
        blocks.append(Block(sample.strip(), i + 1, sec))
        blocks.append(Block(sentences(5, seed=i) + " " + sample[:200], i + 1, sec))
    blocks.append(Block("汉字" * 3000, 9, ("Stress", "No spaces")))
    table = "| a | b |\n|---|---|\n" + "| 数据数据 | 3.14159265 |\n" * 200
    blocks.append(Block(table, 10, ("Stress", "Table"), "table"))
    code = "\n".join(f"K{i} = [{', '.join(['0.31415926535'] * 12)}]  # 数据 {i}" for i in range(30))
    blocks.append(Block(code, 11, ("Stress", "Code"), "code"))
    return make_doc(blocks, title="Stress test 数据")


def test_every_chunk_fits_the_real_embedder_window(embedder):
    doc = adversarial_doc()
    config = SplitterConfig(chunk_tokens=240, overlap_tokens=40)
    # Without the embedder's counter, tiktoken sizes overflow the MiniLM window...
    naive = Splitter(config).split(doc)
    naive_counts = embedder.count_tokens([c.embed_text for c in naive])
    assert max(naive_counts) > embedder.max_tokens
    # ...with it, every chunk fits, context included, and nothing was dropped.
    chunks = Splitter(
        config, limit_counter=embedder.count_tokens, limit_tokens=embedder.max_tokens
    ).split(doc)
    counts = embedder.count_tokens([c.embed_text for c in chunks])
    assert max(counts) <= embedder.max_tokens
    assert_well_formed(doc, chunks)
    assert all(c.tokens <= 240 + 12 for c in chunks)
    # The limit shrinks chunks only where it must: no flood of fragments, and the chunks
    # that are bound by the window use most of it.
    assert len(chunks) <= len(naive) + 10
    assert max(counts) >= embedder.max_tokens - 20
    # Code was still cut at line ends.
    text = document_text(doc.blocks)
    for c in chunks:
        if c.section == ("Stress", "Code"):
            assert c.char_end == len(text) or text[c.char_end] == "\n"


def test_default_config_fits_the_real_window_on_prose(embedder):
    doc = manual()
    chunks = Splitter(
        limit_counter=embedder.count_tokens, limit_tokens=embedder.max_tokens
    ).split(doc)
    assert max(embedder.count_tokens([c.embed_text for c in chunks])) <= embedder.max_tokens
    assert_well_formed(doc, chunks)
    assert sum(c.tokens for c in chunks) / len(chunks) > 100


@pytest.mark.parametrize("seed", range(4))
def test_random_documents_keep_every_guarantee(embedder, seed):
    """Random structure and scripts, a tiny window: deep re-splits, nothing lost or over."""
    rng = random.Random(seed)
    alphabet = [*ADVERSARIAL, sentences(3, seed=seed), "\n", "\n\n", "x" * 300, "e.g. Dr. X. Y"]
    kinds = ["text", "text", "heading", "list", "code", "table"]
    sections = [(), ("A",), ("A", "B"), ("C",)]
    blocks, page = [], 1
    for _ in range(30):
        kind = rng.choice(kinds)
        body_text = " ".join(rng.choice(alphabet)[: rng.randint(1, 300)] for _ in range(4))
        if kind == "table":
            body_text = "| h | v |\n|---|---|\n" + body_text.replace(" ", " |\n| ")
        page += rng.random() < 0.3
        blocks.append(Block(body_text, page, rng.choice(sections), kind))
    doc = make_doc(blocks, title=rng.choice(["", "A", "数据 Guide"]))
    for limit in (embedder.max_tokens, 40):
        splitter = Splitter(
            SplitterConfig(chunk_tokens=rng.choice([32, 120, 240]), overlap_tokens=12),
            limit_counter=embedder.count_tokens,
            limit_tokens=limit,
        )
        chunks = splitter.split(doc)
        assert_well_formed(doc, chunks)
        assert max(embedder.count_tokens([c.embed_text for c in chunks])) <= limit
        assert splitter.split(doc) == chunks
