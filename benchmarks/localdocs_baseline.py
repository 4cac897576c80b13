"""GPT4All LocalDocs-style retrieval, as a baseline for Folio's retrieval benchmark.

What it reproduces (GPT4All chat client, ``gpt4all-chat/src/database.cpp`` in nomic-ai/gpt4all
at commit a7457f44b033337b7000f51fb9abf87c9e6cce36, the 3.x LocalDocs):

* ``PdfDocumentReader`` walks the PDF page by page (``QPdfDocument::getAllText``) and hands
  out whitespace-separated words (``QTextStream >> word``) as one continuous stream for the
  whole document: nothing resets at a page boundary, so chunks run across pages.
* ``ChunkStreamer::step`` appends ``word + " "`` to the current chunk until its length reaches
  ``chunkSize + 1`` (the LocalDocs "chunk size" setting, 512 characters by default). A chunk
  that overshoots is cut before its last word and that word starts the next chunk; a single
  word longer than the limit is cut at the limit. Chunks are therefore at most 512
  characters, never overlap, and only end mid-word when one word alone is too long.
* A chunk records ``m_page = m_reader->page()``, read when the chunk is empty and its first
  word is about to be taken: the 1-based page of the chunk's first word.
* The chunk text alone is embedded: no title, heading or neighbouring context.

Here the PDF text comes from PyMuPDF (``page.get_text()``) instead of Qt's PDFium wrapper, and
the embedder is whatever the caller passes in (Folio's all-MiniLM-L6-v2 by default, which
truncates at 256 word pieces like the real model; nothing is done about that, it is part of
the baseline). Search is brute-force cosine similarity over normalised vectors, top k chunks,
no re-ranking, no merging of neighbours.

Differences from GPT4All to keep in mind when reading the numbers:

* GPT4All 3.x also runs an SQLite FTS5 BM25 query and merges it with the vector ranking by
  weighted reciprocal-rank fusion (``Database::searchDatabase``, ``reciprocalRankFusion``);
  earlier LocalDocs releases (2.x) searched the embeddings only. This baseline is the pure
  vector search.
* GPT4All embeds with nomic-embed-text-v1.5 (with "search_document: "/"search_query: "
  prefixes) by default; here both systems share one embedder, so the comparison isolates
  chunking and search.
* Page labels: in that GPT4All source a chunk that starts with the word carried over from an
  overshooting chunk is not empty when its first word is read, so ``m_page`` is not updated
  and the chunk keeps the page of the chunk before it. Most chunks overshoot, so GPT4All's
  page labels lag behind the text. By default this module labels each chunk with the page
  of its actual first word (the evident intent); ``gpt4all_page_quirk=True`` reproduces the
  lagging labels.

    python -m benchmarks.localdocs_baseline            # run the baseline on the question set
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

log = logging.getLogger(__name__)

CHUNK_SIZE = 512  # GPT4All's default LocalDocs "chunk size", in characters
EMBED_BATCH = 256  # texts per embed_documents call (progress logging only; no effect on results)


class DocumentEmbedder(Protocol):
    def embed_documents(self, texts: list[str]) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class LocalDocsChunk:
    text: str
    page: int  # 1-based physical page of the first word (see gpt4all_page_quirk)
    index: int
    page_end: int | None = None  # page of the last word; GPT4All does not record this


def iter_pdf_words(pdf_path: str | Path) -> Iterator[tuple[str, int]]:
    """(word, 1-based page) for every whitespace-separated word of the PDF, in page order."""
    import pymupdf

    with pymupdf.open(str(pdf_path)) as doc:
        for index, page in enumerate(doc):
            for word in page.get_text().split():
                yield word, index + 1


def chunk_words(
    words: Iterable[tuple[str, int]],
    chunk_size: int = CHUNK_SIZE,
    gpt4all_page_quirk: bool = False,
) -> list[LocalDocsChunk]:
    """Pack a (word, page) stream into chunks as GPT4All's ``ChunkStreamer::step`` does."""
    limit = chunk_size + 1  # the chunk being built carries a trailing space
    chunks: list[LocalDocsChunk] = []
    stream = iter(words)
    pending = next(stream, None)  # m_reader->word(): the next word, already read
    chunk = ""  # m_chunk
    m_page = 0  # GPT4All's label: set only when a word is taken into an empty chunk
    word_pages: list[int] = []  # page of each word (or word part) in `chunk`

    def emit(text: str, pages: list[int]) -> None:
        chunks.append(LocalDocsChunk(text, m_page if gpt4all_page_quirk else pages[0],
                                     len(chunks), pages[-1]))

    while True:
        have_word = True
        if len(chunk) < limit:
            if pending is None:
                have_word = False
            else:
                if not chunk:
                    m_page = pending[1]
                chunk += pending[0] + " "
                word_pages.append(pending[1])
                pending = next(stream, None)
        if not have_word or len(chunk) >= limit:
            if chunk:
                if len(chunk) > limit:
                    end = chunk.rfind(" ", 0, len(chunk) - 1)  # QString::lastIndexOf(' ', -2)
                    if end >= 0:  # drop the last word; it starts the next chunk
                        emit(chunk[:end], word_pages[:-1])
                        chunk = chunk[end + 1:]
                    else:  # a single word longer than the limit: cut it
                        emit(chunk[:chunk_size], word_pages)
                        chunk = chunk[chunk_size:]
                    word_pages = word_pages[-1:]
                else:
                    emit(chunk[:-1], word_pages)
                    chunk = ""
                    word_pages = []
            if not have_word:
                break
    return chunks


@dataclass
class LocalDocsIndex:
    """Chunks of one PDF and their embeddings; ``search`` is brute-force cosine top-k."""

    chunks: list[LocalDocsChunk]
    vectors: np.ndarray  # (n, d) float32, rows L2-normalised
    embedder: DocumentEmbedder = field(repr=False)
    build_seconds: float = 0.0
    embed_seconds: float = 0.0

    def search(self, query: str, k: int = 10) -> list[tuple[int, float, str]]:
        """The k chunks most similar to the query: (page, cosine score, chunk text)."""
        return [(c.page, score, c.text) for c, score in self.search_chunks(query, k)]

    def search_chunks(self, query: str, k: int = 10) -> list[tuple[LocalDocsChunk, float]]:
        """Like ``search``, but returns the chunks themselves (with index and page_end)."""
        if not self.chunks or k <= 0:
            return []
        q = np.asarray(self.embedder.embed_query(query), dtype=np.float32).reshape(-1)
        q /= np.linalg.norm(q) or 1.0
        scores = self.vectors @ q
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by document order
        return [(self.chunks[i], float(scores[i])) for i in top]

    def with_pages(self, pages: list[int]) -> "LocalDocsIndex":
        """The same vectors with other page labels (e.g. GPT4All's lagging ones)."""
        chunks = [LocalDocsChunk(c.text, p, c.index, c.page_end)
                  for c, p in zip(self.chunks, pages)]
        return LocalDocsIndex(chunks, self.vectors, self.embedder,
                              self.build_seconds, self.embed_seconds)


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def _cache_file(cache_dir: Path, pdf_path: Path, embedder, chunks: list[LocalDocsChunk]) -> Path:
    h = hashlib.sha256()
    h.update(str(getattr(embedder, "name", type(embedder).__name__)).encode())
    for c in chunks:
        h.update(c.text.encode())
        h.update(b"\0")
    return cache_dir / f"localdocs-{pdf_path.stem}-{h.hexdigest()[:16]}.npy"


def build_localdocs_index(
    pdf_path: str | Path,
    embedder: DocumentEmbedder,
    chunk_size: int = CHUNK_SIZE,
    gpt4all_page_quirk: bool = False,
    cache_dir: str | Path | None = None,
) -> LocalDocsIndex:
    """Chunk the PDF the LocalDocs way and embed every chunk with ``embedder``.

    ``cache_dir``, when given, keeps the chunk vectors in a .npy file keyed by the embedder's
    name and the exact chunk texts, so a second run skips the embedding.
    """
    pdf_path = Path(pdf_path)
    t0 = time.perf_counter()
    chunks = chunk_words(iter_pdf_words(pdf_path), chunk_size, gpt4all_page_quirk)
    vectors = None
    cache = _cache_file(Path(cache_dir), pdf_path, embedder, chunks) if cache_dir else None
    if cache is not None and cache.exists():
        vectors = np.load(cache)
        if vectors.shape[0] != len(chunks):
            vectors = None
    t1 = time.perf_counter()
    if vectors is None:
        texts = [c.text for c in chunks]
        parts = []
        for start in range(0, len(texts), EMBED_BATCH):
            parts.append(np.asarray(embedder.embed_documents(texts[start:start + EMBED_BATCH]),
                                    dtype=np.float32))
            log.info("embedded %d/%d chunks", min(start + EMBED_BATCH, len(texts)), len(texts))
        dims = parts[0].shape[1] if parts else 0
        vectors = np.concatenate(parts) if parts else np.zeros((0, dims), np.float32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, vectors)
    t2 = time.perf_counter()
    return LocalDocsIndex(chunks, _normalise_rows(vectors), embedder,
                          build_seconds=t2 - t0, embed_seconds=t2 - t1)


def main(argv: list[str] | None = None) -> int:
    """Build the index for octave.pdf, run the question set, print hit@1/hit@5/MRR."""
    import argparse
    import sys

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    from benchmarks.retrieval_metrics import hit_at, mrr

    ap = argparse.ArgumentParser(description="Run the LocalDocs baseline on the question set.")
    ap.add_argument("--pdf", type=Path, default=here / ".corpus" / "octave.pdf")
    ap.add_argument("--questions", type=Path, default=here / "octave_questions.json")
    ap.add_argument("--embedder", default=None, help="Folio embedder name or model folder")
    ap.add_argument("--cache-dir", type=Path, default=here / ".work")
    ap.add_argument("--out", type=Path, default=None, help="write per-question results (JSON)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from app.core.index.embedder import get_embedder

    embedder = get_embedder(args.embedder)
    questions = json.loads(args.questions.read_text(encoding="utf-8"))
    index = build_localdocs_index(args.pdf, embedder, cache_dir=args.cache_dir)
    lengths = [len(c.text) for c in index.chunks]
    print(f"chunks: {len(index.chunks)} (mean {np.mean(lengths):.0f} chars, max {max(lengths)}); "
          f"index built in {index.build_seconds:.1f}s, of which embedding {index.embed_seconds:.1f}s")

    quirk_pages = [c.page for c in chunk_words(iter_pdf_words(args.pdf), gpt4all_page_quirk=True)]
    gold = [q["pages"] for q in questions]
    ranked: dict[str, list[list]] = {"first-word page": [], "GPT4All m_page quirk": [],
                                     "first..last word span": []}
    rows = []
    embedder.embed_query("warm-up")  # the model loads lazily; keep that out of the timing
    t0 = time.perf_counter()
    for q in questions:
        results = index.search_chunks(q["question"], 10)
        ranked["first-word page"].append([c.page for c, _ in results])
        ranked["GPT4All m_page quirk"].append([quirk_pages[c.index] for c, _ in results])
        ranked["first..last word span"].append([(c.page, c.page_end) for c, _ in results])
        rows.append({"id": q["id"], "gold": q["pages"],
                     "ranked_pages": [c.page for c, _ in results],
                     "ranked_spans": [[c.page, c.page_end] for c, _ in results],
                     "scores": [round(s, 4) for _, s in results]})
    per_query = (time.perf_counter() - t0) / max(1, len(questions))
    for label, lists in ranked.items():
        print(f"{label:>22}: hit@1 {hit_at(lists, gold, 1):.3f}  hit@5 {hit_at(lists, gold, 5):.3f}  "
              f"hit@10 {hit_at(lists, gold, 10):.3f}  MRR@10 {mrr(lists, gold):.3f}  (n={len(gold)})")
    print(f"search: {per_query * 1000:.1f} ms/query (query embedding + brute-force scan)")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
