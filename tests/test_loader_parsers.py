"""Parsers: each format yields sections with heading paths, line/page ranges, tags and links."""

from pathlib import Path

import pytest

from memos_desktop.errors import IngestError
from memos_desktop.loader.parsers import parse

NOTE = b"""---
title: Lisbon trip
tags: [travel, 2025]
date: 2025-05-01
---
# Trip

We fly to Lisbon, see [[Budget#Flights|the budget]] and [packing](lists/packing.md). #plans

## Flights

```
# a comment in code, not a heading
```

- TAP 123 on Monday #flight
"""


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            f" /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_markdown_front_matter_becomes_metadata_and_tags():
    doc = parse(Path("trip.md"), NOTE)
    assert doc.meta["title"] == "Lisbon trip"
    assert doc.meta["date"] == "2025-05-01"
    assert doc.tags == ["travel", "2025"]


def test_markdown_headings_give_paths_and_line_ranges():
    doc = parse(Path("trip.md"), NOTE)
    assert [(s.heading, s.start, s.end) for s in doc.sections] == [
        (("Trip",), 6, 8),
        (("Trip", "Flights"), 10, 16),
    ]
    assert "TAP 123" in doc.sections[1].text


def test_markdown_heading_inside_code_fence_is_not_a_section():
    doc = parse(Path("trip.md"), NOTE)
    assert all("comment in code" not in " ".join(s.heading) for s in doc.sections)


def test_markdown_wikilinks_links_and_inline_tags_are_found():
    doc = parse(Path("trip.md"), NOTE)
    links = [(link.section, link.kind, link.target, link.anchor) for link in doc.links]
    assert (0, "wiki", "Budget", "Flights") in links
    assert (0, "path", "lists/packing.md", "") in links
    assert doc.section_tags == {0: ["plans"], 1: ["flight"]}


def test_markdown_external_links_are_not_note_links():
    doc = parse(Path("a.md"), b"# A\n\nSee [site](https://example.org/x.md) and [mail](mailto:a@b.c).\n")
    assert doc.links == []


def test_plain_text_is_one_section_with_its_lines():
    doc = parse(Path("a.txt"), b"\n\nfirst line\nsecond\n\nthird\n\n")
    assert [(s.heading, s.start, s.end) for s in doc.sections] == [((), 3, 6)]


def test_invalid_utf8_is_replaced_and_reported():
    doc = parse(Path("a.txt"), b"caf\xe9 au lait\n")
    assert "au lait" in doc.sections[0].text
    assert "invalid UTF-8" in doc.warning


def test_binary_content_in_a_text_file_is_rejected():
    with pytest.raises(IngestError, match="binary"):
        parse(Path("a.md"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")


def test_restructuredtext_sections_follow_docutils_titles():
    rst = b"Guide\n=====\n\nIntro text.\n\nInstall\n-------\n\nRun pip.\n\nLinux\n~~~~~\n\nUse apt.\n"
    doc = parse(Path("guide.rst"), rst)
    assert [(s.heading, s.start) for s in doc.sections] == [
        (("Guide",), 1),
        (("Guide", "Install"), 6),
        (("Guide", "Install", "Linux"), 11),
    ]


def test_org_headings_tags_and_keywords():
    org = b"#+TITLE: Garden\n#+FILETAGS: :home:\n* Beds :outside:\nTomatoes.\n** North bed\nBasil.\n"
    doc = parse(Path("garden.org"), org)
    assert doc.meta["title"] == "Garden"
    assert doc.tags == ["home"]
    assert [(s.heading, s.start, s.end) for s in doc.sections] == [
        (("Beds",), 3, 4),
        (("Beds", "North bed"), 5, 6),
    ]
    assert doc.section_tags == {0: ["outside"]}


def test_html_headings_and_visible_text_only():
    html = b"""<html><head><title>Recipes</title><style>p{}</style></head><body>
<h1>Bread</h1>
<p>Flour and water.</p>
<script>var hidden = 1;</script>
<h2>Sourdough</h2>
<p>Needs a <b>starter</b>.</p>
</body></html>"""
    doc = parse(Path("r.html"), html)
    assert doc.meta["title"] == "Recipes"
    assert [(s.heading, s.start) for s in doc.sections] == [
        (("Bread",), 2),
        (("Bread", "Sourdough"), 5),
    ]
    assert "starter" in doc.sections[1].text
    assert all("hidden" not in s.text for s in doc.sections)


def test_pdf_pages_become_sections_with_page_numbers():
    doc = parse(Path("paper.pdf"), make_pdf(["Alpha page text", "Beta page text"]))
    assert [(s.text, s.start, s.end, s.unit) for s in doc.sections] == [
        ("Alpha page text", 1, 1, "pages"),
        ("Beta page text", 2, 2, "pages"),
    ]


def test_corrupt_pdf_is_a_clear_ingest_error():
    with pytest.raises(IngestError, match="PDF"):
        parse(Path("broken.pdf"), b"%PDF-1.4\nthis is not a pdf at all")


def test_docx_heading_styles_make_sections(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Minutes", 1)
    document.add_paragraph("We met on Tuesday.")
    document.add_heading("Decisions", 2)
    document.add_paragraph("Ship the release.")
    document.save(tmp_path / "m.docx")
    doc = parse(Path("m.docx"), (tmp_path / "m.docx").read_bytes())
    assert [(s.heading, s.unit) for s in doc.sections] == [
        (("Minutes",), "paragraphs"),
        (("Minutes", "Decisions"), "paragraphs"),
    ]
    assert "Ship the release." in doc.sections[1].text


def test_corrupt_docx_is_a_clear_ingest_error():
    with pytest.raises(IngestError, match="DOCX"):
        parse(Path("broken.docx"), b"PK\x03\x04 not really a zip")
