"""The plaintext inside a bundle: a manifest line, JSON-lines records and a signed trailer.

`BundleSource` is a readable stream that produces the plaintext record by record (what pyrage
encrypts, in bounded memory); `BundleSink` is a writable stream that parses decrypted plaintext
line by line, hands each record on, and at the end checks the record count, the SHA-256 of
everything before the trailer and the exporting device's Ed25519 signature over it. Both know
nothing about cubes; `docs/bundle-format.md` describes the layout. Every malformed input is a
`BundleError`, never another exception.
"""

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import orjson

from memos_desktop.errors import BundleError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

FORMAT = "memos-bundle"
VERSION = 1
SIGNATURE_CONTEXT = b"memos-bundle/1 signature\n"
MAX_LINE = 256 * 1024 * 1024
CHUNK = 256 * 1024
KINDS = ("export", "changeset")
SAFE_ID = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z_.:-]{0,127}$")
# Every digit as "0": a line holds a run of 19+ digits when it then holds _LONG_RUN.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
BLOB_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def check_id(value: object, what: str = "memory id") -> str:
    """`value` when it is a safe id (no path separators, no '..'), else BundleError."""
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise BundleError(f"The bundle holds an invalid {what} {str(value)[:80]!r}; it was rejected.")
    return value


def check_blob_name(value: object) -> str:
    if not isinstance(value, str) or not BLOB_NAME.match(value) or ".." in value:
        raise BundleError(f"The bundle holds an invalid blob name {str(value)[:80]!r}; it was rejected.")
    return value


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def loads(line: bytes | str) -> object:
    """One JSON value, read exactly as the standard parser reads it (BundleError if invalid).

    orjson is several times faster, but turns integers beyond 64 bits into floats and refuses
    NaN and infinities; lines that may hold such numbers (a run of 19+ digits) or that orjson
    refuses go to the standard parser, so every line the exporter can write reads back unchanged.
    """
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    if _LONG_RUN not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BundleError("The bundle holds a record that is not valid JSON; it is damaged.") from None


def signed_bytes(digest: str) -> bytes:
    return SIGNATURE_CONTEXT + bytes.fromhex(digest)


class BundleSource(io.RawIOBase):
    """Readable plaintext of a bundle: `manifest`, then each of `records`, then the trailer.

    A record is a dict, or bytes already holding one JSON object (no newline) for speed. Lines
    are handed out in chunks of about `CHUNK` bytes, so the reader makes few, large reads.
    """

    def __init__(self, manifest: dict, records: Iterator[dict | bytes], sign: Callable[[bytes], str]) -> None:
        self._chunks = self._generate(manifest, records)
        self._sign = sign
        self._buf = memoryview(b"")
        self.records = 0
        self.bytes = 0

    def _generate(self, manifest: dict, records: Iterator[dict | bytes]) -> Iterator[bytes]:
        digest = hashlib.sha256()
        pending, size = [_line({"t": "manifest", **manifest})], 0
        for record in records:
            line = record + b"\n" if isinstance(record, bytes) else _line(record)
            self.records += 1
            if len(line) >= CHUNK and pending:  # a large line (a blob) goes on without a copy
                chunk = b"".join(pending)
                digest.update(chunk)
                yield chunk
                pending, size = [], 0
            pending.append(line)
            size += len(line)
            if size >= CHUNK:
                chunk = b"".join(pending)
                digest.update(chunk)
                yield chunk
                pending, size = [], 0
        chunk = b"".join(pending)
        digest.update(chunk)
        hexdigest = digest.hexdigest()
        yield chunk + _line(
            {
                "t": "end",
                "records": self.records,
                "sha256": hexdigest,
                "signature": self._sign(signed_bytes(hexdigest)),
            }
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        view = memoryview(buffer)
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.bytes += n
        return n


class BundleSink(io.RawIOBase):
    """Writable decrypted plaintext: parses lines, calls `on_manifest` then `on_record` for each.

    `verify(manifest, signature, data)` checks the trailer's signature; `finish()` must be called
    after the last write and raises BundleError when the trailer is missing (a truncated bundle).
    """

    def __init__(
        self,
        on_manifest: Callable[[dict], None],
        on_record: Callable[[dict], None],
        verify: Callable[[dict, str, bytes], bool],
    ) -> None:
        self._on_manifest = on_manifest
        self._on_record = on_record
        self._verify = verify
        self._pending: list[bytes] = []
        self._size = 0
        self._digest = hashlib.sha256()
        self.manifest: dict | None = None
        self.records = 0
        self.ended = False

    def writable(self) -> bool:
        return True

    def write(self, data: "ReadableBuffer") -> int:
        data = bytes(data)
        cut = data.find(b"\n")
        if cut < 0:
            self._pending.append(data)
            self._size += len(data)
        else:
            self._pending.append(data[: cut + 1])
            first = b"".join(self._pending)
            *lines, rest = data[cut + 1 :].split(b"\n")
            self._pending, self._size = [rest], len(rest)
            self._line(first)
            for line in lines:
                self._line(line + b"\n")
        if self._size > MAX_LINE:
            raise BundleError("The bundle holds a record larger than 256 MiB; it is damaged.")
        return len(data)

    def _line(self, line: bytes) -> None:
        if self.ended:
            raise BundleError("The bundle has data after its signed end; it was tampered with.")
        record = loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("t"), str):
            raise BundleError("The bundle holds a malformed record; it is damaged.")
        kind = record["t"]
        if self.manifest is None:
            if kind != "manifest":
                raise BundleError("The bundle does not start with a manifest; it is damaged.")
            self._digest.update(line)
            self.manifest = check_manifest(record)
            self._on_manifest(self.manifest)
        elif kind == "end":
            self._end(self.manifest, record)
        elif kind == "manifest":
            raise BundleError("The bundle holds a second manifest; it was tampered with.")
        else:
            self._digest.update(line)
            self.records += 1
            self._on_record(record)

    def _end(self, manifest: dict, record: dict) -> None:
        hexdigest = self._digest.hexdigest()
        if record.get("records") != self.records or record.get("sha256") != hexdigest:
            raise BundleError("The bundle's records do not match its signed trailer; it was tampered with.")
        signature = record.get("signature")
        if not isinstance(signature, str) or not self._verify(manifest, signature, signed_bytes(hexdigest)):
            raise BundleError("The bundle's signature does not verify; it was tampered with or forged.")
        self.ended = True

    def finish(self) -> dict:
        """The manifest of a complete bundle; BundleError when it ended early."""
        if self._size or not self.ended or self.manifest is None:
            raise BundleError("The bundle is incomplete (truncated); nothing was imported.")
        return self.manifest


def check_manifest(record: dict) -> dict:
    """Validate a manifest's required fields; a newer format version is a clear error."""
    if record.get("format") != FORMAT:
        raise BundleError("This file is not a memos-desktop bundle.")
    version = record.get("version")
    if not isinstance(version, int):
        raise BundleError("The bundle manifest has no format version; it is damaged.")
    if version > VERSION:
        raise BundleError(
            f"This bundle uses format version {version}; this memos-desktop reads up to version "
            f"{VERSION}. Upgrade memos-desktop to import it."
        )
    if record.get("kind") not in KINDS:
        raise BundleError("The bundle manifest has an unknown kind; it is damaged.")
    for name in ("bundle_id", "device"):
        check_id(record.get(name), name.replace("_", " "))
    if not isinstance(record.get("signing_key"), str):
        raise BundleError("The bundle manifest names no signing key; it is damaged.")
    return record
