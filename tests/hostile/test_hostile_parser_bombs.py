"""Parser bombs: small files that would inflate or take minutes are skipped fast, with the reason;
the loader and the watcher go on with the other files. The bombs are built here, on the fly."""

import io
import time
import zipfile

import pytest

from memos_desktop.loader import parsers
from memos_desktop.loader.ingest import Loader
from memos_desktop.loader.parsers import LimitExceeded, Limits
from memos_desktop.vault import loader_files as status


def _docx(body_xml: str = "", extra: tuple[str, bytes] | None = None) -> bytes:
    """A real DOCX (python-docx's template) with `body_xml` put at the start of its body."""
    import docx

    buf = io.BytesIO()
    d = docx.Document()
    d.add_heading("Title here", 1)
    d.add_paragraph("a real paragraph")
    d.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml" and body_xml:
                text = data.decode()
                at = text.index("<w:body>") + len("<w:body>")
                data = (text[:at] + body_xml + text[at:]).encode()
            z.writestr(item, data)
        if extra:
            z.writestr(extra[0], extra[1])
    return out.getvalue()


def paragraph_bomb(n: int = 300_000) -> bytes:
    return _docx("<w:p/>" * n)


def zip_bomb() -> bytes:
    """A DOCX with a member declaring 120 MB of zeros (about 120 KB compressed)."""
    out = io.BytesIO(_docx())
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as z, z.open("word/media/filler.bin", "w") as fh:
        chunk = bytes(1 << 20)
        for _ in range(120):
            fh.write(chunk)
    return out.getvalue()


def pdf_page_bomb(content: bytes = b"BT /F1 12 Tf 10 10 Td (boom) Tj ET\n" * 1_200_000) -> bytes:
    """A one-page PDF (120 KB) whose content stream inflates to 43 MB of text-drawing operators:
    about a minute of CPU to extract (100k operators, 3.6 MB, took 5 s)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(200, 200)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    stream = DecodedStreamObject()
    stream.set_data(content)
    stream = stream.flate_encode()
    page[NameObject("/Contents")] = writer._add_object(stream)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def html_bomb() -> bytes:
    """150k nested elements (750 KB)."""
    return b"<html><body>" + b"<div>" * 150_000 + b"deep" + b"</div>" * 150_000 + b"</body></html>"


BOMBS = {
    "paragraphs.docx": (paragraph_bomb, "paragraphs"),
    "zip.docx": (zip_bomb, "unpacks to"),
    "page.pdf": (pdf_page_bomb, "MB of drawing instructions"),
    "tags.html": (html_bomb, "tags"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_each_bomb_is_small_and_refused_fast_with_the_reason(name):
    build, reason = BOMBS[name]
    data = build()
    assert len(data) < 2_000_000
    started = time.thread_time()
    with pytest.raises(LimitExceeded, match=reason):
        parsers.parse(parsers.Path(name), data)
    assert time.thread_time() - started < 10  # today: over a minute of CPU (DOCX), or gigabytes of memory


def test_a_folder_of_bombs_is_skipped_with_reasons_and_its_good_notes_indexed(vault, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, (build, _) in BOMBS.items():
        (folder / name).write_bytes(build())
    (folder / "fine.md").write_text("# Fine\n\nthe otter swims upstream\n")
    report = Loader(vault).scan([folder])
    assert vault.fts("otter upstream", 5)
    states = {parsers.Path(p).name: s for p, s in status.load(vault).items()}
    for name, (_, reason) in BOMBS.items():
        assert states[name].status == "skipped" and reason in states[name].reason, states[name]
    assert report.skipped == len(BOMBS) and report.errors == 0
    again = Loader(vault).scan([folder])  # unchanged bombs are not read again
    assert again.bytes_read == 0 and again.unchanged == len(BOMBS) + 1


def test_the_time_budget_stops_a_slow_parse_cooperatively():
    data = paragraph_bomb(60_000)
    started = time.thread_time()
    with pytest.raises(LimitExceeded, match=r"more than the 0.2 s limit \(CPU\)"):
        parsers.parse_docx(data, Limits(cpu_seconds=0.2))
    assert time.thread_time() - started < 5


def test_a_large_honest_docx_still_parses(tmp_path):
    body = "".join(f"<w:p><w:r><w:t>paragraph {i} about the weather</w:t></w:r></w:p>" for i in range(20_000))
    started = time.thread_time()
    doc = parsers.parse_docx(_docx(body))
    assert "paragraph 19999 about the weather" in "\n".join(s.text for s in doc.sections)
    assert time.thread_time() - started < 20


def test_a_pdf_over_pypdfs_own_limits_is_skipped_not_an_error():
    """A page small enough for our limits holding an array past pypdf's element limit."""
    data = pdf_page_bomb(b"BT /F1 12 Tf 10 10 Td [" + b"(a) " * 120_000 + b"] TJ ET\n")
    with pytest.raises(LimitExceeded, match="pypdf limit"):
        parsers.parse_pdf(data)
