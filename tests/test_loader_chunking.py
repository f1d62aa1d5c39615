"""Chunking: sections become chunks within the size limit, keeping heading paths and ranges."""

from pathlib import Path

from memos_desktop.loader.chunking import chunk_document
from memos_desktop.loader.parsers import Document, Section, parse


def test_each_section_is_a_chunk_titled_by_file_and_heading_path():
    doc = parse(Path("trip.md"), b"# Trip\n\nIntro.\n\n## Flights\n\nTAP 123.\n")
    chunks = chunk_document(doc)
    assert [(c.heading, c.start, c.end) for c in chunks] == [
        ("Trip", 1, 3),
        ("Trip > Flights", 5, 7),
    ]
    assert chunks[1].title(Path("/n/trip.md")) == "trip.md § Trip > Flights"
    assert chunks[1].source(Path("/n/trip.md")) == {
        "type": "file",
        "path": "/n/trip.md",
        "heading": "Trip > Flights",
        "lines": [5, 7],
    }


def test_long_section_splits_at_paragraphs_within_the_limit_with_exact_lines():
    paragraphs = [f"paragraph {i} " + "word " * 60 for i in range(10)]
    text = "# Long\n\n" + "\n\n".join(paragraphs) + "\n"
    chunks = chunk_document(parse(Path("long.md"), text.encode()), max_chars=800)
    assert len(chunks) > 1
    assert all(len(c.content) <= 800 for c in chunks)
    lines = text.split("\n")
    for c in chunks:
        assert c.content.split("\n")[0] == lines[c.start - 1]
        assert c.content.split("\n")[-1] == lines[c.end - 1]
    assert "".join(c.content for c in chunks).count("paragraph") == 10


def test_a_huge_single_line_is_cut_into_bounded_pieces_on_that_line():
    line = "x" * 25_000
    doc = Document([Section((), f"head\n{line}\ntail", 1, 3)])
    chunks = chunk_document(doc, max_chars=1000)
    assert all(len(c.content) <= 1000 for c in chunks)
    middle = [c for c in chunks if set(c.content) == {"x"}]
    assert sum(len(c.content) for c in middle) == 25_000
    assert {(c.start, c.end) for c in middle} == {(2, 2)}


def test_chunk_hash_ignores_the_file_name_but_not_the_text():
    a = chunk_document(parse(Path("a.md"), b"# H\n\ntext\n"))[0]
    b = chunk_document(parse(Path("renamed.md"), b"# H\n\ntext\n"))[0]
    c = chunk_document(parse(Path("a.md"), b"# H\n\ntext!\n"))[0]
    assert a.hash == b.hash
    assert a.hash != c.hash


def test_links_attach_to_the_chunk_of_their_section():
    doc = parse(Path("a.md"), b"# One\n\nplain\n\n# Two\n\nsee [[Other]]\n")
    chunks = chunk_document(doc)
    assert [len(c.links) for c in chunks] == [0, 1]
    assert chunks[1].links[0].target == "Other"
