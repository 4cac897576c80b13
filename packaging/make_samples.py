"""Write the self-test's sample documents into resources/samples/ (run once; the files are
committed). Each holds facts found nowhere else, so `folio --self-test` can check that search
and the answer point at the right file and page.

    .venv/bin/python packaging/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import docx
import pymupdf

OUT = Path(__file__).resolve().parents[1] / "resources" / "samples"

PDF_PAGES = [
    ("Karnvik Harbour Guide. This small guide describes the harbour town of Karnvik, its "
    "ferries, its market and its lighthouse. It is a sample document that Folio's self-test "
    "reads; every fact in it is made up."),
    ("The Lighthouse. The Karnvik lighthouse was built in 1894 from grey granite. Its keeper "
    "is Ingrid Solberg, who climbs its 212 steps every evening to light the lamp. The light "
    "can be seen 18 nautical miles out at sea."),
    ("The Market. The fish market opens on Saturdays at six in the morning. Smoked mackerel "
    "and salted cod are sold on the quay until noon."),
]

DOCX_SECTIONS = {
    "Ferry timetable": [
        "The harbour ferry to the island of Vesterholm leaves Karnvik at 7:45 every morning.",
        "The crossing takes forty minutes, and bicycles travel free of charge.",
    ],
    "Tickets": ["Tickets are sold at the kiosk beside pier three."],
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    for text in PDF_PAGES:
        page = doc.new_page()
        rect = pymupdf.Rect(56, 56, page.rect.width - 56, page.rect.height - 56)
        page.insert_textbox(rect, text, fontsize=11)
    doc.set_toc([[1, "Karnvik Harbour Guide", 1], [1, "The Lighthouse", 2],
                 [1, "The Market", 3]])
    doc.set_metadata({"title": "Karnvik Harbour Guide", "author": "Folio",
                      "creationDate": "D:20260101000000Z", "modDate": "D:20260101000000Z"})
    doc.save(OUT / "karnvik-guide.pdf", garbage=4, deflate=True, no_new_id=True)
    doc.close()

    d = docx.Document()
    d.core_properties.title = "Karnvik ferry notes"
    for heading, paragraphs in DOCX_SECTIONS.items():
        d.add_heading(heading, level=1)
        for p in paragraphs:
            d.add_paragraph(p)
    d.save(OUT / "ferry-notes.docx")


if __name__ == "__main__":
    main()
