"""CSV and TSV: rows in blocks of `CSV_ROWS_PER_BLOCK`, each block a Markdown table with the header.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument, LoadError
from app.core.documents.common import CSV_ROWS_PER_BLOCK, check_deadline, collapse
from app.core.documents.text import read_text

# ---- CSV / TSV -----------------------------------------------------------------------


def load_csv(path: Path) -> LoadedDocument:
    """Each row as "header: value; ..." so a chunk of rows stands alone; 20 rows a block."""
    text, encoding = read_text(path)
    sample = text[: 64 * 1024]
    tsv = path.suffix.lower() == ".tsv"
    sniffer = csv.Sniffer()
    try:
        dialect: type[csv.Dialect] | csv.Dialect = sniffer.sniff(
            sample, delimiters="\t" if tsv else ",;\t|"
        )
    except csv.Error:
        dialect = csv.excel_tab if tsv else csv.excel
    try:
        has_header = sniffer.has_header(sample)
    except csv.Error:
        has_header = False

    rows = (r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r))
    blocks: list[Block] = []
    lines: list[str] = []
    header: list[str] | None = None
    count = 0
    try:
        for row in rows:
            if header is None:
                first = [collapse(c) for c in row]
                looks_like_names = (
                    all(first)
                    and len(set(first)) == len(first)
                    and not any(_is_number(c) for c in first)
                )
                if has_header or looks_like_names:
                    header = [h or f"column {i + 1}" for i, h in enumerate(first)]
                    continue
                header = [f"column {i + 1}" for i in range(len(first))]
            count += 1
            cells = []
            for i, value in enumerate(row):
                value = collapse(value)
                if value:
                    name = header[i] if i < len(header) else f"column {i + 1}"
                    cells.append(f"{name}: {value}")
            if cells:
                lines.append("; ".join(cells))
            if len(lines) >= CSV_ROWS_PER_BLOCK:
                blocks.append(Block("\n".join(lines), None, (), "table"))
                lines = []
                if not len(blocks) % 256:
                    check_deadline()
    except csv.Error as exc:
        raise LoadError(f"could not parse the table: {exc}") from None
    if header is None:
        raise LoadError("the file contains no rows")
    if lines:
        blocks.append(Block("\n".join(lines), None, (), "table"))
    if not blocks:  # only a header line: keep it, it is all there is
        blocks.append(Block("; ".join(header), None, (), "table"))
    metadata = {"encoding": encoding, "columns": ", ".join(header), "rows": str(count)}
    return LoadedDocument(path=path, kind="csv", title=path.name, blocks=blocks, metadata=metadata)


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
        return True
    except ValueError:
        return False
