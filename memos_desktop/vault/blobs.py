"""Sealed blob files beside the database (activation states, adapters): AEAD with a vault subkey.

Each blob is one file `blobs/<name>`: a 12-byte nonce then AES-256-GCM ciphertext (hardware-
accelerated on current CPUs: activation states of tens of MB are opened on every restore), with the
blob's name and the caller's context as associated data, so a blob renamed, swapped or altered
fails to open. Writes are atomic (temp file + rename). Never writes plaintext to disk.
"""

import os
import re
from pathlib import Path

from memos_desktop.errors import CorruptVault, NotFound

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class BlobStore:
    def __init__(self, root: Path, key: bytes | None):
        self.root = root
        self._key = key

    def _path(self, name: str) -> Path:
        if not _NAME.match(name) or name.startswith("."):
            raise ValueError(f"Invalid blob name {name!r}.")
        return self.root / name

    def _aead(self):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if self._key is None:
            raise CorruptVault("This vault has no encryption key; sealed blobs are unavailable.")
        return AESGCM(self._key)

    def put(self, name: str, data: bytes, context: bytes = b"") -> int:
        """Seal and store `data`; return the size on disk."""
        path = self._path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        nonce = os.urandom(12)
        sealed = nonce + self._aead().encrypt(nonce, data, name.encode() + b"\0" + context)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return len(sealed)

    def get(self, name: str, context: bytes = b"") -> bytes:
        """Open a sealed blob, or raise NotFound / CorruptVault (tampered, truncated, swapped)."""
        from cryptography.exceptions import InvalidTag

        path = self._path(name)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"No stored blob {name}.") from None
        try:
            return self._aead().decrypt(sealed[:12], sealed[12:], name.encode() + b"\0" + context)
        except (InvalidTag, ValueError):
            raise CorruptVault(f"The stored blob {name} is damaged or was tampered with.") from None

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
