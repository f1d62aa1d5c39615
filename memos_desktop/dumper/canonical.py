"""Canonical JSON: the exact bytes that version ids hash, written fast.

Owns `canonical_json` (what `json.dumps(sort_keys=..., separators=(",", ":"))` writes, through
orjson when that gives the same bytes), a snapshot's canonical text without its local version
number, and `vid_of`, the global id of an event. Pure functions: no I/O, no vault.
"""

import codecs
import hashlib
import json

import orjson

# Reused encoders: the same output as json.dumps with these options, without building one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_MAX_ESCAPES = 64  # more non-ASCII bytes than this: the json module is faster


def canonical_json(value: dict | list, sort_keys: bool) -> str:
    """`json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))`: what version ids hash.

    orjson writes the same bytes several times faster once DEL and non-ASCII characters are
    escaped as json escapes them, unless a float needs an exponent in Python's repr (orjson
    writes 1e16 and 0.00001 where json writes 1e+16 and 1e-05) or is NaN or infinite (orjson
    writes null); those values, integers beyond 64 bits and lone surrogates (which orjson
    refuses), and text with many characters to escape go to the json module.
    """
    if _plain_floats(value):
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except TypeError:
            fast = b""
        if fast and b"\x7f" not in fast:  # json escapes DEL, orjson does not
            if fast.isascii():
                return fast.decode("ascii")
            text = fast.decode("utf-8")
            if len(fast) - len(text) <= _MAX_ESCAPES:
                return text.encode("ascii", _ESCAPE_HANDLER).decode("ascii")
    return (_CANONICAL if sort_keys else _COMPACT)(value)


def _plain_floats(value: dict | list) -> bool:
    """True when every float in `value` is written without an exponent by repr (or is zero)."""
    stack = [value]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is str:
                continue
            if kind is float:
                if not (1e-4 <= abs(item) < 1e16 or item == 0.0):
                    return False
            elif kind is dict or kind is list:
                stack.append(item)
    return True


def _escape(error: UnicodeError) -> tuple[str, int]:
    """Non-ASCII characters as json writes them (\\uXXXX; a surrogate pair beyond the BMP)."""
    assert isinstance(error, UnicodeEncodeError)  # registered for encoding only
    out = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    return "".join(out), error.end


# An encode error handler: the C encoder copies ASCII and calls _escape once per non-ASCII run.
_ESCAPE_HANDLER = "memos-json-ascii"
codecs.register_error(_ESCAPE_HANDLER, _escape)


def canonical_snapshot(snapshot: dict) -> str:
    """A snapshot as canonical JSON (sorted keys, no spaces) without its local version number."""
    return canonical_json({k: v for k, v in snapshot.items() if k != "version"}, True)


def stored_snapshot(canonical: str, version: int) -> str:
    """The text stored in `cube_versions.snapshot` for local version number `version`."""
    return f'{{"version":{version}' + (f",{canonical[1:]}" if canonical != "{}" else "}")


def vid_of(
    cube_id: str,
    parents: list[str],
    stamp: str,
    device: str,
    op: str,
    actor: str,
    at: float,
    snapshot: dict,
    canonical: str | None = None,
) -> str:
    """The global id of an event: a hash of everything in it but the local version number."""
    head = canonical_json([cube_id, parents, stamp, device, op, actor, at], False)
    body = canonical if canonical is not None else canonical_snapshot(snapshot)
    return hashlib.blake2b(f"{head}\n{body}".encode(), digest_size=16).hexdigest()
