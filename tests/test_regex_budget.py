"""No pattern can be made slow by input (issue 19, item 2).

Python's `re` backtracks, holding the interpreter lock: a pattern that tries a long run from
every start position costs the square of the run's length, and the window freezes with it
(`_SENTENCE_END` took 2.3 s on 16,000 dots, minutes on a Markdown file with one long run).

Every compiled pattern in the loaders, the splitter and the chat modules (which see document
text in prompts, citations and exports) is found here by walking the modules, so a new pattern
is fuzzed without anyone listing it; a source check makes sure no pattern hides inline in a
call. Each is run with `finditer` (a match tried at every position, the worst way any caller
uses it) over long runs of every character class, alone and after each literal the pattern
itself contains (a "#" before a run of blanks, "<meta" repeated, ...), at sizes that grow by
four up to 256K characters (twice the block cap, `common.MAX_BLOCK_CHARS`), and must stay
within a time budget per megabyte. A quadratic pattern blows its budget already at a few
thousand characters, so a failure here is quick.

End to end, files made of one long run go through the real loader and splitter within a
budget per megabyte, and every character of the run reaches a chunk.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import random
import re
import string
import time
from pathlib import Path

import pytest

import app.core.chat
import app.core.documents
from app.core.chat import history
from app.core.documents import common, html, pdf, splitter
from app.core.documents import text as text_loader
from app.core.documents.base import Block, LoadedDocument, document_text
from app.core.documents.formats import load
from app.core.documents.splitter import Splitter

MB = 1024 * 1024  # characters: a "megabyte" of text here is 2**20 characters
# Seconds per megabyte of input for one pass of one pattern. A linear pattern takes a few
# hundredths of a second per megabyte here; the budget leaves room for a loaded 2-core machine.
S_PER_MB = 2.0
# Small runs are allowed what this many megabytes are (31 ms): timer and scheduler noise. A
# time over budget is measured twice more, and only the fastest counts.
MIN_MB = 1 / 64
SIZES = (4096, 16384, 65536, 262144)  # runs alone, up to 256K characters (past the block cap)
END_SIZES = SIZES[:3]  # runs with something after or before them (many of them), up to 64K

PACKAGES = (app.core.documents, app.core.chat)


def _modules():
    for pkg in PACKAGES:
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            yield importlib.import_module(f"{pkg.__name__}.{info.name}")


def _patterns() -> dict[str, re.Pattern]:
    found: dict[str, re.Pattern] = {}
    seen: set[int] = set()
    for module in _modules():
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and id(value) not in seen:
                seen.add(id(value))
                found[f"{module.__name__.rsplit('.', 2)[-2]}.{module.__name__.rsplit('.', 1)[-1]}"
                      f".{name}"] = value
    return found


PATTERNS = _patterns()

# Runs of one character of each class, and short mixes known to trouble backtracking engines.
CHARS = (
    list(string.punctuation)
    + [" ", "\t", "\n", "\r", "\f", "\v", "\u00a0", "\u2003", "\u3000", "\u2028", "\x01"]
    + ["a", "Z", "\u00e9", "0", "\u0663", "\u4e00", "\u3042", "\ud55c"]  # letters, digits, CJK
    + ["\u3002", "\uff01", "\uff1f", "\u300d", "\uff09", "\u2026", "\u201d", "\u2019", "\u00bb"]
    + ["\u2022", "\u2013", "\u00a8", "\ufffd", "\U0001f600"]
)
MIXES = [
    "a.", ". ", ".)", ".\"", "a ", " .", " a", "a\n", "\n\n", " \n", "\t.", ". .", "1.", "1. ",
    "<a", "</", "<p>", "&#", "&#1", "# ", "#\t", "| ", "|-", "-|", "|:-", ":-", "- ", "* ",
    "\\[", "[1", "[1]", "](", "``", "~~", "=\"", ".\u201d ", "\u3002\u300d", "a=", "\\\\[",
]
TAILS = ("", "x", "\x01")
# What may stand between a literal of the pattern and the run: "# a" then blanks is what made
# the old ATX heading pattern quadratic (a title, then a long run before the end).
BRIDGES = ("", " a", "a", "1")


def _literals(pattern: re.Pattern) -> list[str]:
    """The literal strings a pattern contains ("#", "<meta", "charset", "code-block"...), so a
    run can follow the text that gets a match started. Walks the parse tree of `re` itself
    (re._parser: private, but stable across the Python versions Folio supports)."""
    src = pattern.pattern
    if isinstance(src, bytes):
        src = src.decode("latin-1")
    tree = re._parser.parse(src, pattern.flags & ~re.UNICODE if isinstance(pattern.pattern, bytes)
                            else pattern.flags)
    out: list[str] = []

    def walk(items, prefix: str = "") -> None:
        # `prefix`: literals just before a group or an alternation (the parser moves the
        # common start of alternatives out: "<meta...|<?xml..." becomes "<" then a branch).
        run: list[str] = [prefix] if prefix else []
        for op, arg in items:
            if op is re._constants.LITERAL:
                run.append(chr(arg))
                continue
            joined = "".join(run)
            if run:
                out.append(joined)
                run = []
            carry = joined if op in (re._constants.BRANCH, re._constants.SUBPATTERN) else ""
            for sub in _children(op, arg):
                walk(sub, carry)
        if run:
            out.append("".join(run))

    walk(tree)
    return sorted({s for s in out if s.strip() or s in ("\t", " ")}, key=lambda s: (len(s), s))


def _children(op, arg):
    c = re._constants
    if op is c.SUBPATTERN:
        return [arg[-1]]
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return [arg[2]]
    if op is c.BRANCH:
        return list(arg[1])
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [arg[1]]
    if op is c.ATOMIC_GROUP:
        return [arg]
    if op is c.GROUPREF_EXISTS:
        return [x for x in arg[1:] if x is not None]
    return []


def _seconds(pattern: re.Pattern, text, starts: range | None) -> float:
    started = time.perf_counter()
    if starts is None:
        for _ in pattern.finditer(text):
            pass
    else:
        for i in starts:
            pattern.match(text, i)
    return time.perf_counter() - started


def _budget(chars: int) -> float:
    return S_PER_MB * max(chars / MB, MIN_MB)


def _within_budget(pattern: re.Pattern, make, sizes, starts: range | None = None):
    """None, or the first (size, seconds) over budget. Sizes grow by four, so a pattern that
    is quadratic is caught at the first size where it shows, long before it would hang.
    `starts`: only matches tried at these offsets (else at every one, as `finditer` does)."""
    as_bytes = isinstance(pattern.pattern, bytes)
    for size in sizes:
        text = make(size)
        if as_bytes:
            text = text.encode("utf-8")
        took = _seconds(pattern, text, starts)
        if took > _budget(size):
            took = min(took, _seconds(pattern, text, starts), _seconds(pattern, text, starts))
            if took > _budget(size):
                return size, took
    return None


def _run(unit: str, head: str = "", tail: str = ""):
    def make(size: int) -> str:
        return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail
    return make


def test_patterns_are_found():
    """The enumeration sees the patterns this issue is about (a rename must not hide one)."""
    names = set(PATTERNS)
    assert "documents.splitter._SENTENCE_END" in names
    assert "documents.text._MD_ATX_RE" in names
    assert "documents.pdf._LEADER_RE" in names
    assert "documents.html._META_CHARSET_RE" in names
    assert "chat.answers.CITATION" in names
    assert len(PATTERNS) >= 40


def _source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in Path(pkg.__path__[0]).glob("*.py"))


def test_every_pattern_is_a_module_level_constant():
    """Patterns written inline (`re.sub(r"...", ...)`) or kept anywhere but a module-level
    name would escape the fuzzing below: only `re.compile` assigned at module level (and
    `re.escape`) may be called."""
    offenders = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {
            id(node.value) for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "re":
                offenders.append(f"{path.name}:{node.lineno}: from re import ...")
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"):
                continue
            if node.func.attr == "escape":
                continue
            if node.func.attr == "compile" and id(node) in top_level:
                continue
            offenders.append(f"{path.name}:{node.lineno}: re.{node.func.attr}(...)")
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_is_linear_on_long_runs(name):
    pattern = PATTERNS[name]
    literals = [s for s in _literals(pattern) if len(s) <= 40]

    def check(head: str, unit: str, tail: str, sizes, starts: range | None = None) -> None:
        over = _within_budget(pattern, _run(unit, head, tail), sizes, starts)
        assert over is None, (
            f"{name} took {over[1]:.2f} s on {head!r} + {unit!r} * {over[0]:,} + {tail!r} "
            f"(budget {_budget(over[0]):.2f} s)"
        )

    # Runs alone, a match tried at every offset: each character class, each mix and each
    # literal of the pattern; then each class with an end that breaks a match at the last
    # moment.
    for unit in CHARS:
        check("", unit, "", SIZES)
    for unit in dict.fromkeys(MIXES + literals):
        if unit not in CHARS:
            check("", unit, "", SIZES)
    for unit in CHARS:
        for tail in TAILS[1:]:
            check("", unit, tail, END_SIZES)
    # A run after what gets a match going: a literal of the pattern ("#", "<meta", "|") and
    # what may follow it. Offsets inside the run behave as in the runs above, so matches are
    # tried at the offsets of the head and at the run's first character.
    for head in dict.fromkeys(lit + bridge for lit in literals for bridge in BRIDGES):
        for unit in CHARS:
            for tail in TAILS:
                check(head, unit, tail, END_SIZES, range(len(head) + 1))


def test_the_old_patterns_fail_this_budget():
    """The fuzzing above catches the pattern the issue measured, the sentence end as it was
    (a run of dots), the old ATX heading (a title, then a long run of blanks) and the old
    declared charset ("<meta" repeated)."""
    assert _within_budget(OLD_SENTENCE_END, _run("."), SIZES) is not None
    assert _within_budget(OLD_ATX, _run(" ", "# a", "x"), END_SIZES, range(4)) is not None
    assert _within_budget(OLD_META, _run("<meta"), SIZES) is not None  # 12 s on 100K


# --------------------------------------------------------------------------------------
# end to end: a file of one long run through the real loader and splitter
# --------------------------------------------------------------------------------------

# Loading and splitting, tiktoken counts included, take about 1 to 3 s per megabyte of such
# runs on a quiet 2-core machine; the old sentence end alone took minutes on a few hundred KB.
E2E_S_PER_MB = 30.0
RUN = MB

HOSTILE_FILES = {
    "dots.md": "# Dots\n\n" + "." * RUN + "\n",
    "bangs.md": "Some text" + "!?\u2026." * (RUN // 4) + "\n",
    "dots.txt": "Dots follow." + "." * RUN + "x\n",
    "spaces.txt": "Start." + " " * RUN + "end.\n",
    # one paragraph: a run of blanks this long made tiktoken's own pattern panic
    "spaces.md": "Start." + " " * RUN + "end.\n",
    "punctuation.html": "<html><body><h1>Bang</h1><p>" + "!?." * (RUN // 3) + "</p></body></html>",
    "closers.txt": ".)" * (RUN // 2) + " end\n",
    "blank-heading.md": "#" + " " * RUN + "x\n\nUnder the blank heading lives a tapir.\n",
    "tab-table.md": "| a |\n|" + "\t" * RUN + "x\n",
    "backticks.md": "`" * RUN + "\ncode\n",
    "cjk-stops.txt": "\u3002" * RUN,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_file_of_one_long_run_loads_and_splits_within_budget(tmp_path, name):
    path = tmp_path / name
    path.write_text(HOSTILE_FILES[name], encoding="utf-8")
    started = time.perf_counter()
    doc = load(path)
    chunks = Splitter().split(doc)
    took = time.perf_counter() - started
    size_mb = len(HOSTILE_FILES[name]) / MB
    assert took <= E2E_S_PER_MB * max(size_mb, MIN_MB), f"{took:.1f} s for {size_mb:.1f} MB"
    # Nothing is lost: every visible character of the text is in a chunk.
    assert max(len(b.text) for b in doc.blocks) <= common.MAX_BLOCK_CHARS
    text = document_text(doc.blocks)
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.char_start : c.char_end] = b"\x01" * (c.char_end - c.char_start)
    assert not [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    visible = _visible(HOSTILE_FILES[name])
    middle = visible[len(visible) // 2 :][:64]  # a slice of the run itself
    assert middle in _visible(text)


def _visible(text: str) -> str:
    return "".join(text.split())


def test_long_block_is_cut_not_dropped():
    """A block longer than the cap is cut at a line end, else a blank, else hard; the pieces
    hold all of its text and keep its kind, page and section."""
    cap = common.MAX_BLOCK_CHARS
    lines = "\n".join("Line %d of a long section." % i for i in range(cap // 10))
    one_line = ("word " * (cap // 2)).strip()
    solid = "." * (cap * 2 + 17)
    table = "| h |\n| --- |\n" + "\n".join(f"| row {i} |" for i in range(cap // 8))
    blocks = [
        Block("Short.", 3, ("A",), "text"),
        Block(lines, 4, ("A", "B"), "list"),
        Block(one_line, 5, ("C",), "text"),
        Block(solid, None, (), "code"),
        Block(table, 6, ("T",), "table"),
    ]
    capped = common.cap_blocks(blocks)
    assert all(len(b.text) <= cap for b in capped)
    assert capped[0] is blocks[0]
    for original in blocks:
        pieces = [b for b in capped if (b.page, b.section, b.kind) ==
                  (original.page, original.section, original.kind)]
        joined = "".join(p.text for p in pieces)
        if original.kind == "table":
            # continued pieces repeat the header row and rule on top
            assert all(p.text.startswith("| h |\n| --- |\n") for p in pieces)
            joined = pieces[0].text + "".join(p.text[len("| h |\n| --- |\n"):]
                                              for p in pieces[1:])
        assert _visible(joined) == _visible(original.text), original.kind
    assert len([b for b in capped if b.kind == "code"]) == 3  # 2 caps and 17 dots: hard cuts
    assert all(not p.text.startswith(" ") for p in capped if p.section == ("C",))  # at blanks


def test_blocks_under_the_cap_are_left_alone():
    """The cap touches only blocks longer than itself."""
    blocks = [Block("Dr. Smith arrived. He sat... Then? Yes!", 1, ("A",), "text"),
              Block("x" * common.MAX_BLOCK_CHARS, 2, (), "code")]
    assert common.cap_blocks(blocks) is blocks


# --------------------------------------------------------------------------------------
# the rewritten patterns find what the old ones found
# --------------------------------------------------------------------------------------

OLD_SENTENCE_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*\s+"
    r"|[\u3002\uff01\uff1f]+[\u201d\u2019\u300d\u300f\uff09)]*\s*"
)
OLD_LEADER = re.compile(r"(?:[ \t]*\.){4,}[ \t]*|[ \t]*\u2026{2,}[ \t]*")
OLD_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
OLD_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
OLD_BRACKET = re.compile(r"(\\*)\[(?!\d+\](?!\s*[(\[:]))")
OLD_META = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)"""
    rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""",
    re.I,
)
TRIES = 20_000


def _random_texts(alphabet, longest: int, seed: int):
    rnd = random.Random(seed)
    for _ in range(TRIES):
        yield "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(longest)))


def _old_sentence_starts(text: str, s: int, e: int) -> list[int]:
    """splitter._sentence_starts as it was, with the old pattern."""
    starts = []
    for m in OLD_SENTENCE_END.finditer(text, s, e):
        nxt = m.end()
        if nxt >= e:
            break
        mark = text[m.start()]
        if mark in ".!?\u2026":
            if text[nxt].islower():
                continue
            if mark == "." and text[m.start() + 1] != ".":
                k = m.start()
                while k > s and not text[k - 1].isspace():
                    k -= 1
                word = text[k : m.start()].lstrip("\"'([\u201c\u2018").lower()
                if word in splitter._ABBREVIATIONS or splitter._DOTTED.fullmatch(word):
                    continue
        starts.append(nxt)
    return starts


def test_sentences_are_found_where_they_were():
    rnd = random.Random(5)
    for t in _random_texts(".!?\u2026\"')]\u201d \n\u3002\uff01\u300daAe", 24, 1):
        s = rnd.randrange(len(t) + 1)
        e = rnd.randrange(s, len(t) + 1)
        assert splitter._sentence_starts(t, s, e) == _old_sentence_starts(t, s, e), (t, s, e)


def test_leaders_table_rules_headings_and_brackets_match_as_they_did():
    for t in _random_texts(" \t.\u2026a", 24, 2):
        assert [m.span() for m in pdf._LEADER_RE.finditer(t)] == [
            m.span() for m in OLD_LEADER.finditer(t)], t
    for t in _random_texts(" \t|:-x", 16, 3):
        assert bool(text_loader._MD_TABLE_SEP_RE.match(t)) == bool(OLD_TABLE_SEP.match(t)), t
    for t in _random_texts(" #\tab", 16, 4):
        old, new = OLD_ATX.match(t), text_loader._MD_ATX_RE.match(t)
        assert bool(old) == bool(new), t
        if old:
            assert len(new.group(1)) == len(old.group(1)), t
            assert text_loader._atx_title(t[new.end():]) == (old.group(2) or ""), t

    def keep(m: re.Match) -> str:
        return m.group(1) + ("[" if len(m.group(1)) % 2 else "\\[")

    for t in _random_texts(["\\", "[", "]", "1", " ", "(", "a"], 16, 5):
        assert history._BRACKET.sub(keep, t) == OLD_BRACKET.sub(keep, t), t


def test_declared_charset_is_read_as_it_was():
    """The same, except that a tag's attributes no longer run over a "<" (no real page has
    one inside a <meta> or <?xml> tag)."""
    words = ["<meta", " ", "charset", "=", "'", "\"", "utf-8", ">", "<?xml", "encoding", "x"]
    for t in _random_texts(words, 8, 6):
        data = t.encode()
        if data.count(b"<") > 1:
            continue
        old, new = OLD_META.search(data), html._META_CHARSET_RE.search(data)
        assert (old and old.groups()) == (new and new.groups()), data
