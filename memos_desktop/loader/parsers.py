"""Parsers: turn the bytes of one notes file into a `Document` of structured sections.

Owns the knowledge of each format (Markdown, plain text, reStructuredText, Org, HTML, PDF, DOCX):
where its headings are, which lines or pages a section spans, its front matter, tags and links.
It never touches the vault or the file system (the caller reads the bytes) and never decides chunk
sizes (that is `chunking.py`). A file it cannot read raises `IngestError` with the reason.
Line numbers are 1-based and inclusive; pages likewise.
"""

import functools
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from memos_desktop.errors import IngestError

WIKILINK = re.compile(r"\[\[([^\]|#\n]*)(?:#([^\]|\n]*))?(?:\|[^\]\n]*)?\]\]")
TAG = re.compile(r"(?<![\w#/&])#([A-Za-z][\w/-]*)")
ORG_HEADING = re.compile(r"^(\*+)\s+(.*?)(?:\s+(:[\w@#%:]+:))?\s*$")
ORG_KEYWORD = re.compile(r"^#\+(\w+):\s*(.*)$", re.IGNORECASE)
RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")


@dataclass(frozen=True)
class Limits:
    """What one file may cost to parse; past a limit it is skipped with the reason (`LimitExceeded`).

    Notes are small: these bound what a hostile or broken file (a zip bomb, a DOCX of 300k empty
    paragraphs, a PDF page whose content stream inflates to gigabytes) can make the loader do, far
    above what real notes need. `cpu_seconds` is this thread's CPU time, so a busy machine does
    not count against a file.
    """

    unpacked_bytes: int = 100_000_000  # all members of an archive-based file (DOCX), decompressed
    archive_members: int = 10_000
    paragraphs: int = 100_000  # DOCX
    pages: int = 5_000  # PDF
    page_content_bytes: int = 8_000_000  # one PDF page's content streams, decompressed
    html_elements: int = 100_000
    cpu_seconds: float = 60.0


LIMITS = Limits()


class LimitExceeded(IngestError):
    """A file is over one of the parsing limits; it is skipped, not an error of the loader."""


class Budget:
    """The CPU time one file may take to parse, checked cooperatively by the parsers' loops."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.thread_time()

    def check(self, where: str) -> None:
        if time.thread_time() - self.start > self.seconds:
            raise LimitExceeded(f"parsing took more than the {self.seconds:g} s limit (CPU), at {where}")


@dataclass
class Section:
    """A run of text under one heading path, with where it sits in the file."""

    heading: tuple[str, ...]
    text: str
    start: int
    end: int
    unit: str = "lines"  # "lines", "pages" (PDF) or "paragraphs" (DOCX)


@dataclass
class Link:
    """A reference from a section to another note: a wikilink name or a relative path."""

    section: int
    kind: str  # "wiki" or "path"
    target: str
    anchor: str = ""


@dataclass
class Document:
    sections: list[Section]
    meta: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    section_tags: dict[int, list[str]] = field(default_factory=dict)
    warning: str = ""  # a reason recorded with an indexed file, e.g. replaced invalid bytes


def decode_text(data: bytes) -> tuple[str, str]:
    """Text of `data` as UTF-8 (BOM allowed); invalid bytes are replaced and reported."""
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return data.decode("utf-8", errors="replace"), f"invalid UTF-8 at byte {exc.start} (replaced)"


def _lines_sections(lines: list[str], marks: list[tuple[int, tuple[str, ...]]], first: int) -> list[Section]:
    """Sections from heading marks (0-based line index, heading path); text before the first mark
    belongs to the empty heading path. `first` is the 0-based line where the body starts."""
    bounds: list[tuple[int, tuple[str, ...]]] = [(first, ())] if not marks or marks[0][0] > first else []
    bounds += marks
    out = []
    for i, (start, heading) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else len(lines)
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start < end:
            out.append(Section(heading, "\n".join(lines[start:end]), start + 1, end))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _front_matter(text: str) -> tuple[dict, list[str]]:
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}, []
    if not isinstance(data, dict):
        return {}, []
    meta = _jsonable(data)
    raw = meta.get("tags") or meta.get("tag") or []
    if isinstance(raw, str):
        raw = re.split(r"[,\s]+", raw)
    tags = [str(t).lstrip("#") for t in raw if str(t).strip()]
    return meta, tags


def _section_of(sections: list[Section], line: int) -> int:
    for i, sec in enumerate(sections):
        if sec.start <= line <= sec.end:
            return i
    return max(0, len(sections) - 1)


@functools.cache
def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.front_matter import front_matter_plugin

    return MarkdownIt("commonmark").use(front_matter_plugin)


def parse_markdown(data: bytes) -> Document:
    """Markdown (CommonMark): front matter, top-level headings, [[wikilinks]], links, #tags."""
    text, warning = decode_text(data)
    lines = text.split("\n")
    tokens = _markdown().parse(text)
    meta: dict = {}
    tags: list[str] = []
    body_start = 0
    marks: list[tuple[int, tuple[str, ...]]] = []
    stack: list[tuple[int, str]] = []
    inlines: list[tuple[int, Any]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "front_matter":
            meta, tags = _front_matter(tok.content)
            body_start = tok.map[1] if tok.map else 0
        elif tok.type == "heading_open" and tok.level == 0 and tok.map:
            level = int(tok.tag[1])
            title = tokens[i + 1].content.strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            marks.append((tok.map[0], tuple(t for _, t in stack)))
        elif tok.type == "inline" and tok.map:
            inlines.append((tok.map[0] + 1, tok))
    sections = _lines_sections(lines, marks, body_start)
    doc = Document(sections, meta=meta, tags=tags, warning=warning)
    if not sections:
        return doc
    for line, tok in inlines:
        sec = _section_of(sections, line)
        for m in WIKILINK.finditer(tok.content):
            if m.group(1).strip():
                doc.links.append(Link(sec, "wiki", m.group(1).strip(), (m.group(2) or "").strip()))
        for child in tok.children or []:
            if child.type == "link_open":
                href = str(child.attrs.get("href", ""))
                if href and not re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I):
                    target, _, anchor = href.partition("#")
                    if target:
                        doc.links.append(Link(sec, "path", target, anchor))
            elif child.type == "text":
                found = TAG.findall(child.content)
                if found:
                    doc.section_tags.setdefault(sec, []).extend(found)
    return doc


def parse_text(data: bytes) -> Document:
    """Plain text: one section without a heading (chunking splits it by paragraphs)."""
    text, warning = decode_text(data)
    lines = text.split("\n")
    return Document(_lines_sections(lines, [], 0), warning=warning)


def parse_org(data: bytes) -> Document:
    """Org mode: `*` headings (with :tags:), #+TITLE and #+FILETAGS keywords."""
    text, warning = decode_text(data)
    lines = text.split("\n")
    meta: dict = {}
    tags: list[str] = []
    marks: list[tuple[int, tuple[str, ...]]] = []
    section_tags: dict[int, list[str]] = {}
    stack: list[tuple[int, str]] = []
    in_block = False
    for i, line in enumerate(lines):
        lower = line.strip().lower()
        if lower.startswith("#+begin_"):
            in_block = True
        elif lower.startswith("#+end_"):
            in_block = False
        if in_block:
            continue
        kw = ORG_KEYWORD.match(line) if not marks else None
        if kw:
            key, value = kw.group(1).lower(), kw.group(2).strip()
            meta[key] = value
            lines[i] = ""
            if key == "filetags":
                tags += [t for t in value.split(":") if t]
            continue
        m = ORG_HEADING.match(line)
        if m:
            level = len(m.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, m.group(2).strip()))
            marks.append((i, tuple(t for _, t in stack)))
            if m.group(3):
                section_tags[len(marks) - 1] = [t for t in m.group(3).split(":") if t]
    sections = _lines_sections(lines, marks, 0)
    by_start = {sec.start: i for i, sec in enumerate(sections)}
    tagged = {by_start[marks[k][0] + 1]: v for k, v in section_tags.items() if marks[k][0] + 1 in by_start}
    return Document(sections, meta=meta, tags=tags, section_tags=tagged, warning=warning)


def parse_rst(data: bytes) -> Document:
    """reStructuredText: docutils finds the section titles and their nesting; the adornment
    lines in the source give their line numbers."""
    from docutils import nodes
    from docutils.core import publish_doctree

    text, warning = decode_text(data)
    lines = text.split("\n")
    try:
        tree = publish_doctree(
            text,
            settings_overrides={
                "report_level": 5,
                "halt_level": 5,
                "file_insertion_enabled": False,
                "raw_enabled": False,
                "warning_stream": io.StringIO(),
                "doctitle_xform": False,
                "sectsubtitle_xform": False,
            },
        )
    except Exception as exc:  # docutils raises many unrelated types on broken input
        raise IngestError(f"reStructuredText could not be parsed: {exc}") from exc
    titles: list[tuple[str, ...]] = []

    def walk(node, path: tuple[str, ...]) -> None:
        for child in node.children:
            if isinstance(child, nodes.section):
                title = child.next_node(nodes.title)
                here = (*path, title.astext().strip()) if title else path
                titles.append(here)
                walk(child, here)

    walk(tree, ())
    marks: list[tuple[int, tuple[str, ...]]] = []
    pos = 0
    for path in titles:
        for i in range(pos, len(lines)):
            line = lines[i].strip()
            if line == path[-1] and i + 1 < len(lines) and RST_ADORNMENT.match(lines[i + 1]):
                start = i - 1 if i > 0 and RST_ADORNMENT.match(lines[i - 1]) else i
                marks.append((start, path))
                pos = i + 2
                break
    return Document(_lines_sections(lines, marks, 0), warning=warning)


def parse_html(data: bytes, limits: Limits = LIMITS) -> Document:
    """HTML: h1–h6 make the heading path; visible text only (no scripts, styles)."""
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import Comment

    budget = Budget(limits.cpu_seconds)
    tags = data.count(b"<")
    if tags > limits.html_elements:
        raise LimitExceeded(f"{tags} tags, more than the {limits.html_elements} limit for HTML")
    text, warning = decode_text(data)
    soup = BeautifulSoup(text, "html.parser")
    budget.check("the HTML tree")
    meta = {"title": soup.title.get_text(strip=True)} if soup.title else {}
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    total = text.count("\n") + 1
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    heading: tuple[str, ...] = ()
    start = 1
    parts: list[str] = []

    def close(end: int) -> None:
        body = re.sub(r"[ \t]*\n\s*\n\s*", "\n\n", "".join(parts)).strip()
        if body:
            sections.append(Section(heading, body, start, max(start, end)))

    for count, node in enumerate(soup.descendants):
        if count % 1000 == 0:
            budget.check(f"element {count}")
        name = getattr(node, "name", None)
        if isinstance(node, Tag) and name and re.fullmatch(r"h[1-6]", name):
            line = node.sourceline or start
            close(line - 1)
            level = int(name[1])
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, node.get_text(" ", strip=True)))
            heading = tuple(t for _, t in stack)
            start, parts = line, []
        elif name in ("p", "li", "br", "div", "tr", "pre", "blockquote"):
            parts.append("\n\n" if name != "br" else "\n")
        elif isinstance(node, NavigableString) and not isinstance(node, Comment):
            parts.append(str(node))
    close(total)
    return Document(sections, meta=meta, warning=warning)


def parse_pdf(data: bytes, limits: Limits = LIMITS) -> Document:
    """PDF: the text of each page (pypdf); sections are pages, cited by page range."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    budget = Budget(limits.cpu_seconds)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError("the PDF is encrypted")
        if len(reader.pages) > limits.pages:
            raise LimitExceeded(f"{len(reader.pages)} pages, more than the {limits.pages} limit for PDF")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            contents = page.get_contents()
            size = len(contents.get_data()) if contents is not None else 0
            if size > limits.page_content_bytes:
                raise LimitExceeded(
                    f"page {number} holds {size / 1e6:.0f} MB of drawing instructions,"
                    f" more than the {limits.page_content_bytes / 1e6:g} MB limit"
                )
            pages.append(page.extract_text() or "")
            budget.check(f"page {number}")
    except IngestError:
        raise
    except LimitReachedError as exc:  # pypdf's own limits (tokens per stream, inflated sizes)
        raise LimitExceeded(f"the PDF is over a pypdf limit: {exc}") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"the PDF cannot be read: {exc}") from exc
    meta = {}
    info = reader.metadata
    if info and info.title:
        meta["title"] = str(info.title)
    sections = [Section((), t.strip(), i + 1, i + 1, unit="pages") for i, t in enumerate(pages) if t.strip()]
    return Document(sections, meta=meta)


def check_archive(data: bytes, limits: Limits = LIMITS) -> None:
    """Raise LimitExceeded for a zip (DOCX) whose members would inflate past the limits, before
    anything decompresses them; sizes are the ones the archive declares, and zipfile refuses to
    inflate a member past its declared size."""
    import zipfile

    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise IngestError(f"the DOCX cannot be read: {exc}") from exc
    if len(members) > limits.archive_members:
        raise LimitExceeded(f"{len(members)} archive members, more than the {limits.archive_members} limit")
    unpacked = sum(m.file_size for m in members)
    if unpacked > limits.unpacked_bytes:
        raise LimitExceeded(
            f"it unpacks to {unpacked / 1e6:.0f} MB, more than the {limits.unpacked_bytes / 1e6:g} MB limit"
        )


def parse_docx(data: bytes, limits: Limits = LIMITS) -> Document:
    """DOCX: paragraphs under "Heading N" styles make sections, cited by paragraph range."""
    import zipfile

    import docx
    from docx.enum.style import WD_STYLE_TYPE

    budget = Budget(limits.cpu_seconds)
    check_archive(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"the DOCX cannot be read: {exc}") from exc
    budget.check("the document's XML")
    paragraphs = document.paragraphs
    if len(paragraphs) > limits.paragraphs:
        raise LimitExceeded(f"{len(paragraphs)} paragraphs, more than the {limits.paragraphs} limit for DOCX")
    styles: dict[str | None, str] = {}  # python-docx looks a style up among all of them for each paragraph

    def style_name(para) -> str:
        style_id = para._p.style
        if style_id not in styles:
            style = document.part.get_style(style_id, WD_STYLE_TYPE.PARAGRAPH)
            styles[style_id] = style.name if style is not None else ""
        return styles[style_id]

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    heading: tuple[str, ...] = ()
    start = 1
    parts: list[str] = []
    for i, para in enumerate(paragraphs, start=1):
        if i % 1000 == 0:
            budget.check(f"paragraph {i}")
        style = style_name(para)
        m = re.match(r"(?:Heading (\d)|Title)$", style)
        if m and para.text.strip():
            if any(p.strip() for p in parts):
                sections.append(Section(heading, "\n".join(parts).strip(), start, i - 1, "paragraphs"))
            level = int(m.group(1) or 0)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, para.text.strip()))
            heading = tuple(t for _, t in stack)
            start, parts = i, [para.text]
        else:
            parts.append(para.text)
    if any(p.strip() for p in parts):
        sections.append(Section(heading, "\n".join(parts).strip(), start, len(paragraphs), "paragraphs"))
    meta = {"title": document.core_properties.title} if document.core_properties.title else {}
    return Document(sections, meta=meta)


PARSERS: dict[str, Callable[[bytes], Document]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".mdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".rst": parse_rst,
    ".org": parse_org,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}
BINARY_FORMATS = (".pdf", ".docx")
BINARY_REASON = "binary content in a text file"


def supported(path: Path) -> bool:
    return path.suffix.lower() in PARSERS


def is_binary(path: Path, data: bytes) -> bool:
    """True when a file of a text format holds binary data (a NUL byte in its first 8 KiB)."""
    return path.suffix.lower() not in BINARY_FORMATS and b"\0" in data[:8192]


def parse(path: Path, data: bytes) -> Document:
    """Parse `data` (the bytes of `path`) with the parser for its extension."""
    suffix = path.suffix.lower()
    if is_binary(path, data):
        raise IngestError(BINARY_REASON)
    if suffix not in PARSERS:
        raise IngestError(f"unsupported file type {suffix or '(none)'}")
    return PARSERS[suffix](data)
