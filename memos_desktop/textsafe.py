"""Text from notes, file names, memories, bundles and models, made safe to show on a terminal.

Everything a user did not type into this program is data: it must never move the cursor, set the
window title or the clipboard (OSC 52), make links (OSC 8), ring the bell, or reorder what is shown
(bidi overrides). `clean` replaces every such character with a visible escape (`\\x1b`, `\\u202e`);
`SafeStream` applies it to all a command prints; `json_text` makes JSON output carry them escaped.
Rich/Textual markup is the interfaces' concern: they build `rich.text.Text` from cleaned strings and
never parse user data as markup. This module never decides what is shown, only how it is spelled.
"""

import contextlib
import io
import re
import sys
from collections.abc import Iterator

# C0 controls except tab and newline, DEL, C1 controls, and the bidirectional embeddings, overrides
# and isolates (U+202A–U+202E, U+2066–U+2069) that can make a line read differently from its bytes.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object) -> str:
    """`text` as a string in which no character can act on the terminal (each shown as an escape)."""
    return UNSAFE.sub(_escape, str(text))


def json_text(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with the unsafe characters that JSON
    leaves raw (DEL, C1, bidi controls) written as `\\uXXXX` escapes: the same data, safe to print."""
    return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class SafeStream(io.TextIOBase):
    """A text stream that cleans everything written to it before passing it on to `raw`."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes streams with write(b"") to tell binary ones apart
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.raw.write(clean(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    # typeshed declares TextIOBase.encoding a writable attribute; at runtime it is a read-only property.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8")

    # typeshed declares TextIOBase.errors a writable attribute; at runtime it is a read-only property.
    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.raw, "errors", None)

    @property
    def buffer(self):
        """The byte stream beneath: a binary protocol (an MCP server on stdio) writes there, unchanged."""
        return self.raw.buffer


@contextlib.contextmanager
def safe_output() -> Iterator[None]:
    """Clean everything printed to stdout and stderr until the block ends."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (None if s is None else SafeStream(s) for s in (out, err))  # None: no console
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def raw(stream):
    """The terminal under `stream`, for a writer that cleans its own text (a Rich table of cleaned
    cells, a progress bar of fixed labels) and needs its own escape sequences to reach the terminal."""
    return stream.raw if isinstance(stream, SafeStream) else stream
