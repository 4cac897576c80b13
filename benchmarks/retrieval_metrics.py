"""Hit@k and MRR for page-level retrieval.

A retrieved result "hits" when the pages it covers include one of the question's gold pages.
A result may be given as

* an int: the result's page;
* a (page, page_end) tuple or list: the result spans page..page_end inclusive (page_end may
  be None, meaning just page);
* a dict with "page" and optionally "page_end";
* any object with ``.page`` and optionally ``.page_end`` attributes (e.g. Folio's chunks).

A result with no page (None) never hits. Pages are 1-based physical page numbers.

    hit_at(ranked, gold, k)   fraction of questions with a hit among their first k results
    mrr(ranked, gold)         mean of 1/rank of the first hit within the first 10 results
                              (0 when there is none)

``ranked`` holds one ranked result list per question, ``gold`` one list of acceptable pages
per question, in the same order.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

MRR_CUTOFF = 10


def result_span(result: Any) -> tuple[int, int] | None:
    """The inclusive page span a result covers, or None when it has no page."""
    if result is None:
        return None
    if isinstance(result, bool):
        raise TypeError("a result page cannot be a bool")
    if isinstance(result, int):
        return result, result
    if isinstance(result, dict):
        page, end = result.get("page"), result.get("page_end")
    elif isinstance(result, (tuple, list)):
        if not result:
            return None
        page, end = result[0], (result[1] if len(result) > 1 else None)
    else:
        page, end = getattr(result, "page", None), getattr(result, "page_end", None)
    if page is None:
        return None
    page = int(page)
    end = page if end is None else int(end)
    return (page, end) if end >= page else (end, page)


def is_hit(result: Any, gold_pages: Iterable[int]) -> bool:
    span = result_span(result)
    if span is None:
        return False
    lo, hi = span
    return any(lo <= g <= hi for g in gold_pages)


def first_hit_rank(results: Sequence[Any], gold_pages: Iterable[int], cutoff: int | None = None) -> int | None:
    """1-based rank of the first hitting result (within the first ``cutoff``), or None."""
    gold = list(gold_pages)
    limit = len(results) if cutoff is None else min(cutoff, len(results))
    for rank in range(limit):
        if is_hit(results[rank], gold):
            return rank + 1
    return None


def _check(ranked_pages_lists: Sequence[Sequence[Any]], gold_pages: Sequence[Iterable[int]]) -> None:
    if len(ranked_pages_lists) != len(gold_pages):
        raise ValueError(
            f"{len(ranked_pages_lists)} result lists for {len(gold_pages)} questions"
        )


def hit_at(ranked_pages_lists: Sequence[Sequence[Any]], gold_pages: Sequence[Iterable[int]], k: int) -> float:
    """Fraction of questions whose first k results include a hit."""
    _check(ranked_pages_lists, gold_pages)
    if not gold_pages:
        return 0.0
    hits = sum(first_hit_rank(r, g, k) is not None for r, g in zip(ranked_pages_lists, gold_pages))
    return hits / len(gold_pages)


def mrr(ranked_pages_lists: Sequence[Sequence[Any]], gold_pages: Sequence[Iterable[int]],
        cutoff: int = MRR_CUTOFF) -> float:
    """Mean reciprocal rank of the first hit within the first ``cutoff`` results."""
    _check(ranked_pages_lists, gold_pages)
    if not gold_pages:
        return 0.0
    total = 0.0
    for results, gold in zip(ranked_pages_lists, gold_pages):
        rank = first_hit_rank(results, gold, cutoff)
        if rank is not None:
            total += 1.0 / rank
    return total / len(gold_pages)


if __name__ == "__main__":
    from types import SimpleNamespace

    gold = [[5], [10, 11], [40], [7]]
    ranked = [
        [5, 6, 7],                                  # hit at rank 1
        [3, (9, 10), 11],                           # span 9..10 covers 10: rank 2
        [{"page": 1}, {"page": 2, "page_end": 3}],  # no hit
        [None, SimpleNamespace(page=6, page_end=None), SimpleNamespace(page=6, page_end=8)],  # rank 3
    ]
    assert first_hit_rank(ranked[0], gold[0]) == 1
    assert first_hit_rank(ranked[1], gold[1]) == 2
    assert first_hit_rank(ranked[2], gold[2]) is None
    assert first_hit_rank(ranked[3], gold[3]) == 3
    assert hit_at(ranked, gold, 1) == 0.25
    assert hit_at(ranked, gold, 2) == 0.5
    assert hit_at(ranked, gold, 5) == 0.75
    assert abs(mrr(ranked, gold) - (1 + 1 / 2 + 0 + 1 / 3) / 4) < 1e-12
    # MRR only counts the first 10 results
    late = [[0] * 10 + [5]]
    assert mrr(late, [[5]]) == 0.0 and hit_at(late, [[5]], 11) == 1.0
    assert mrr(late, [[5]], cutoff=11) == 1 / 11
    # a reversed span still covers its pages; a bool is not a page
    assert is_hit((12, 10), [11])
    try:
        is_hit(True, [1])
    except TypeError:
        pass
    else:
        raise AssertionError("bool accepted as a page")
    assert hit_at([], [], 1) == 0.0
    print("retrieval_metrics self-check passed")
