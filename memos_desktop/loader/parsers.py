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
    bounds = [(first, ())] if not marks or marks[0][0] > first else []
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


def parse_html(data: bytes) -> Document:
    """HTML: h1–h6 make the heading path; visible text only (no scripts, styles)."""
    from bs4 import BeautifulSoup, NavigableString
    from bs4.element import Comment

    text, warning = decode_text(data)
    soup = BeautifulSoup(text, "html.parser")
    meta = {"title": soup.title.get_text(strip=True)} if soup.title else {}
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    total = text.count("\n") + 1
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    heading: tuple[str, ...] = ()
    start, parts = 1, []

    def close(end: int) -> None:
        body = re.sub(r"[ \t]*\n\s*\n\s*", "\n\n", "".join(parts)).strip()
        if body:
            sections.append(Section(heading, body, start, max(start, end)))

    for node in soup.descendants:
        name = getattr(node, "name", None)
        if name and re.fullmatch(r"h[1-6]", name):
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


def parse_pdf(data: bytes) -> Document:
    """PDF: the text of each page (pypdf); sections are pages, cited by page range."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"the PDF cannot be read: {exc}") from exc
    meta = {}
    info = reader.metadata
    if info and info.title:
        meta["title"] = str(info.title)
    sections = [Section((), t.strip(), i + 1, i + 1, unit="pages") for i, t in enumerate(pages) if t.strip()]
    return Document(sections, meta=meta)


def parse_docx(data: bytes) -> Document:
    """DOCX: paragraphs under "Heading N" styles make sections, cited by paragraph range."""
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(f"the DOCX cannot be read: {exc}") from exc
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    heading: tuple[str, ...] = ()
    start, parts = 1, []
    for i, para in enumerate(document.paragraphs, start=1):
        style = para.style.name if para.style is not None else ""
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
        sections.append(Section(heading, "\n".join(parts).strip(), start, len(document.paragraphs), "paragraphs"))
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
