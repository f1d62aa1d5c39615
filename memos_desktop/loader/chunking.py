"""Chunking: cut a parsed `Document` into cube-sized chunks that keep their provenance.

Each heading section is a chunk; a section longer than the limit is split at paragraph breaks,
then at line breaks, then (a single huge line) at the character limit — every piece keeps its line
(or page) range and heading path. It never reads files or writes cubes. A chunk's `hash` covers
its heading, text and tags but not the file name, so a renamed file's chunks compare equal.
"""

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from memos_desktop.loader.parsers import Document, Link, Section

MIN_CHUNK_CHARS = 200


@dataclass
class Chunk:
    heading: str  # "A > B", empty for text before the first heading
    content: str
    start: int
    end: int
    unit: str  # "lines", "pages" or "paragraphs"
    tags: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @cached_property
    def hash(self) -> str:
        body = json.dumps([self.heading, self.content, sorted(self.tags)], ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def title(self, path: Path) -> str:
        return f"{path.name} § {self.heading}" if self.heading else path.name

    def source(self, path: Path) -> dict:
        return {
            "type": "file",
            "path": str(path),
            "heading": self.heading,
            self.unit: [self.start, self.end],
        }


def _pieces(sec: Section, limit: int) -> list[tuple[str, int, int]]:
    """(text, first, last) pieces of a section, each at most `limit` characters."""
    if len(sec.text) <= limit:
        return [(sec.text, sec.start, sec.end)]
    step = 1 if sec.unit == "lines" else 0
    lines = sec.text.split("\n")
    out: list[tuple[str, int, int]] = []
    buf: list[str] = []
    buf_start = sec.start
    size = 0

    def flush(last: int) -> None:
        nonlocal buf, size
        text = "\n".join(buf).strip("\n")
        if text.strip():
            out.append((text, buf_start, max(buf_start, last)))
        buf, size = [], 0

    for i, line in enumerate(lines):
        number = sec.start + i * step
        if len(line) > limit:
            flush(number - step)
            out.extend((line[j : j + limit], number, number) for j in range(0, len(line), limit))
            buf_start = number + step
            continue
        blank = not line.strip()
        if buf and (size + len(line) + 1 > limit or (blank and size >= limit // 2)):
            flush(number - step)
            buf_start = number
        if not buf and blank:
            buf_start = number + step
            continue
        buf.append(line)
        size += len(line) + 1
    flush(sec.end)
    return out


def chunk_document(doc: Document, max_chars: int = 1500) -> list[Chunk]:
    """The chunks of `doc`, in file order, none longer than `max_chars` characters."""
    limit = max(max_chars, MIN_CHUNK_CHARS)
    chunks: list[Chunk] = []
    first_of: dict[int, int] = {}
    for si, sec in enumerate(doc.sections):
        tags = sorted(set(doc.tags) | set(doc.section_tags.get(si, [])))
        first_of[si] = len(chunks)
        for text, start, end in _pieces(sec, limit):
            chunks.append(Chunk(" > ".join(sec.heading), text, start, end, sec.unit, tags))
    for link in doc.links:
        if link.section in first_of and first_of[link.section] < len(chunks):
            chunks[first_of[link.section]].links.append(link)
    return chunks
