"""Sealed blob files beside the database (activation states, adapters): AEAD with a vault subkey.

Each blob is one file `blobs/<name>`: a 12-byte nonce then AES-256-GCM ciphertext (hardware-
accelerated on current CPUs: activation states of tens of MB are opened on every restore), with the
blob's name and the caller's context as associated data, so a blob renamed, swapped or altered
fails to open. Writes are atomic (temp file + rename). Never writes plaintext to disk.
A caller that opens large blobs again and again (activation restores) passes a `Scratch`: the file
is mapped from the page cache and decrypted into a buffer the caller keeps, with no copy of the
file and no fresh page-faulted allocation of the blob's size.
"""

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from memos_desktop.errors import CorruptVault, NotFound
from memos_desktop.vault import files

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class Scratch:
    """A reusable plaintext buffer for `BlobStore.get(..., scratch=)`.

    Fresh multi-MB allocations are page-faulted in on every use; a reused buffer is not. A view
    returned through a scratch is valid until the next `get` with the same scratch.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()

    def view(self, n: int) -> memoryview:
        """A writable view of `n` bytes (the buffer is replaced when too small, never resized)."""
        if len(self.buffer) < n:
            self.buffer = bytearray(n)
        return memoryview(self.buffer)[:n]


class BlobStore:
    def __init__(self, root: Path, key: bytes | None):
        self.root = root
        self._key = key

    def _path(self, name: str) -> Path:
        if not _NAME.match(name) or name.startswith("."):
            raise ValueError(f"Invalid blob name {name!r}.")
        return self.root / name

    def _aead(self) -> "AESGCM":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if self._key is None:
            raise CorruptVault("This vault has no encryption key; sealed blobs are unavailable.")
        return AESGCM(self._key)

    def put(self, name: str, data: bytes, context: bytes = b"") -> int:
        """Seal and store `data`; return the size on disk."""
        path = self._path(name)
        if not self.root.is_dir():
            files.private_dir(self.root)
        nonce = os.urandom(12)
        sealed = nonce + self._aead().encrypt(nonce, data, name.encode() + b"\0" + context)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, files.FILE_MODE), "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return len(sealed)

    def get(self, name: str, context: bytes = b"", scratch: Scratch | None = None) -> bytes | memoryview:
        """Open a sealed blob, or raise NotFound / CorruptVault (tampered, truncated, swapped).

        With `scratch`, returns a view into its plaintext buffer instead of new bytes.
        """
        from cryptography.exceptions import InvalidTag

        path = self._path(name)
        aad = name.encode() + b"\0" + context
        try:
            with open(path, "rb") as fh:
                if scratch is None:
                    sealed = fh.read()
                    return self._aead().decrypt(sealed[:12], sealed[12:], aad)
                return self._open_mapped(fh, aad, scratch)
        except FileNotFoundError:
            raise NotFound(f"No stored blob {name}.") from None
        except (InvalidTag, ValueError):
            raise CorruptVault(f"The stored blob {name} is damaged or was tampered with.") from None

    def _open_mapped(self, fh: BinaryIO, aad: bytes, scratch: Scratch) -> memoryview:
        """Decrypt straight from the page cache (mmap) into the scratch buffer: no copy of the file."""
        import mmap

        size = os.fstat(fh.fileno()).st_size
        if size < 28:
            raise ValueError("too short")
        plain = scratch.view(size - 28)
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
        with mmap.mmap(fh.fileno(), size, flags=flags, prot=mmap.PROT_READ) as mapped, memoryview(mapped) as sealed:
            self._aead().decrypt_into(bytes(sealed[:12]), sealed[12:], aad, plain)
        return plain

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.endswith(".tmp"))
