"""The vault's key header: a random 256-bit data key wrapped by a passphrase-derived key.

The header (`vault.key`, JSON) holds Argon2id parameters, a salt and the data key sealed with
ChaCha20-Poly1305; the header's own fields are the associated data, so editing any of them is
detected. Changing the passphrase rewraps the same data key, so the database is never rewritten.
This module never stores or logs a passphrase or an unwrapped key.
"""

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memos_desktop.errors import CorruptVault, VaultError, WrongPassphrase

FORMAT = "memos-vault-key"
VERSION = 1


@dataclass(frozen=True)
class KdfParams:
    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 65536

    @classmethod
    def default(cls) -> "KdfParams":
        """Argon2id parameters for new headers; `MEMOS_ARGON2_MEMORY_KIB` lowers memory on small devices."""
        memory = int(os.environ.get("MEMOS_ARGON2_MEMORY_KIB", "65536"))
        return cls(memory_kib=max(memory, 8 * 4))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase.encode("utf-8"))


def _aad(vault_id: str, salt: bytes, params: KdfParams) -> bytes:
    fields = [FORMAT, VERSION, vault_id, _b64(salt), params.iterations, params.lanes, params.memory_kib]
    return json.dumps(fields).encode()


def _seal(data_key: bytes, passphrase: str, vault_id: str, params: KdfParams) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    if not passphrase:
        raise VaultError("The passphrase must not be empty.")
    salt = os.urandom(16)
    nonce = os.urandom(12)
    wrapping = _derive(passphrase, salt, params)
    sealed = ChaCha20Poly1305(wrapping).encrypt(nonce, data_key, _aad(vault_id, salt, params))
    return {
        "format": FORMAT,
        "version": VERSION,
        "vault_id": vault_id,
        "kdf": {
            "name": "argon2id",
            "salt": _b64(salt),
            "iterations": params.iterations,
            "lanes": params.lanes,
            "memory_kib": params.memory_kib,
        },
        "cipher": "chacha20-poly1305",
        "nonce": _b64(nonce),
        "wrapped_key": _b64(sealed),
    }


def _write_atomic(path: Path, header: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(header, indent=2))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def create_header(path: Path, passphrase: str, vault_id: str) -> bytes:
    """Write a new header at `path` for a fresh random data key and return that key."""
    data_key = os.urandom(32)
    _write_atomic(path, _seal(data_key, passphrase, vault_id, KdfParams.default()))
    return data_key


def read_header(path: Path) -> dict[str, Any]:
    """The parsed header, or a clear error when it is missing or not a vault key header."""
    if not path.exists():
        raise VaultError(f"The vault key header {path} is missing; without it the vault cannot be opened.")
    try:
        header = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptVault(f"The vault key header {path} is damaged ({exc}).") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptVault(f"{path} is not a memos-desktop vault key header.")
    if header.get("version") != VERSION:
        raise VaultError(
            f"The vault key header {path} has version {header.get('version')}; "
            f"this memos-desktop reads version {VERSION}. Upgrade memos-desktop."
        )
    return header


def unwrap(path: Path, passphrase: str) -> tuple[bytes, str]:
    """Return (data key, vault id) from the header at `path`, or raise WrongPassphrase."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    header = read_header(path)
    try:
        kdf = header["kdf"]
        params = KdfParams(int(kdf["iterations"]), int(kdf["lanes"]), int(kdf["memory_kib"]))
        salt = _unb64(kdf["salt"])
        nonce = _unb64(header["nonce"])
        sealed = _unb64(header["wrapped_key"])
        vault_id = str(header["vault_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptVault(f"The vault key header {path} is damaged (missing or bad field {exc}).") from exc
    wrapping = _derive(passphrase, salt, params)
    try:
        data_key = ChaCha20Poly1305(wrapping).decrypt(nonce, sealed, _aad(vault_id, salt, params))
    except InvalidTag:
        raise WrongPassphrase("Wrong passphrase: it does not unlock this vault.") from None
    return data_key, vault_id


def rewrap(path: Path, old_passphrase: str, new_passphrase: str) -> None:
    """Wrap the same data key under a new passphrase; the database is untouched."""
    data_key, vault_id = unwrap(path, old_passphrase)
    _write_atomic(path, _seal(data_key, new_passphrase, vault_id, KdfParams.default()))


def subkey(data_key: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose ("db", "blobs", ...) derived from the data key with HKDF."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"memos:{purpose}".encode()).derive(data_key)
