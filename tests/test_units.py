"""The one format for sizes and times left, shared by the window and the CLI."""

import pytest

from app.core.base.units import human_bytes, human_duration


@pytest.mark.parametrize(("n", "text"), [
    (None, "–"),
    (0, "0 B"),
    (1023, "1023 B"),
    (1536, "2 KB"),
    (253 * 1024 * 1024, "253.0 MB"),
    (3.5 * 2**30, "3.5 GB"),
    (2 * 2**40, "2.0 TB"),
])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "–"),
    (-3, "0 s"),
    (0.4, "0 s"),
    (42, "42 s"),
    (59.6, "1 min 00 s"),
    (187, "3 min 07 s"),
    (3600, "1 h 00 min"),
    (3900, "1 h 05 min"),
    (90061, "25 h 01 min"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_human_date_reads_as_a_date():
    import time

    from app.core.base.units import human_date

    now = time.mktime((2026, 12, 6, 15, 30, 0, 0, 0, -1))
    at = lambda *t: time.mktime((*t, 0, 0, -1))  # noqa: E731
    assert human_date(at(2026, 12, 6, 14, 2, 0), now) == "today 14:02"
    assert human_date(at(2026, 12, 5, 9, 15, 0), now) == "yesterday 09:15"
    assert human_date(at(2026, 12, 3, 23, 59, 0), now) == "3 Dec"
    assert human_date(at(2025, 12, 3, 8, 0, 0), now) == "3 Dec 2025"
    assert human_date(None, now) == "" and human_date(0, now) == ""
