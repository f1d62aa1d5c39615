"""The vault's key header: a random 256-bit data key wrapped by a passphrase-derived key.

The header (`vault.key`, JSON) holds Argon2id parameters, a salt and the data key sealed with
ChaCha20-Poly1305; the header's own fields are the associated data, so editing any of them is
detected. Changing the passphrase rewraps the same data key, so the database is never rewritten.
Everything read from the header is checked before use: a damaged or hostile file (bad JSON, wrong
types, Argon2 parameters asking for hours of work or terabytes of memory) is a one-line error
before any key derivation runs. This module never stores or logs a passphrase or an unwrapped key.
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
MAX_HEADER_BYTES = 64 * 1024
# Bounds on Argon2id parameters read from a header (the defaults are 3 / 4 / 64 MiB): beyond them
# deriving would hang the app or exhaust memory, so such a header is refused before deriving.
MAX_ITERATIONS = 64
MAX_LANES = 64
MIN_MEMORY_KIB, MAX_MEMORY_KIB = 32, 1024 * 1024
MAX_WORK = 32 * 3 * 65536  # iterations x KiB: 32 times the default's work, a few seconds at most


@dataclass(frozen=True)
class KdfParams:
    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 65536

    @classmethod
    def default(cls) -> "KdfParams":
        """Argon2id parameters for new headers; `MEMOS_ARGON2_MEMORY_KIB` lowers memory on small devices."""
        text = os.environ.get("MEMOS_ARGON2_MEMORY_KIB", "65536")
        if not text.isdigit() or not MIN_MEMORY_KIB <= int(text) <= MAX_MEMORY_KIB:
            raise VaultError(
                f"MEMOS_ARGON2_MEMORY_KIB must be a number of KiB from {MIN_MEMORY_KIB} to {MAX_MEMORY_KIB}."
            )
        return cls(memory_kib=max(int(text), 8 * 4))

    @classmethod
    def read(cls, kdf: object) -> "KdfParams":
        """Parameters from a header's `kdf` object; ValueError unless they are bounded integers."""
        if not isinstance(kdf, dict) or kdf.get("name", "argon2id") != "argon2id":
            raise ValueError("kdf")
        iterations, lanes, memory = (kdf.get(name) for name in ("iterations", "lanes", "memory_kib"))
        if type(iterations) is not int or type(lanes) is not int or type(memory) is not int:
            raise ValueError("kdf parameters")
        if not (1 <= iterations <= MAX_ITERATIONS and 1 <= lanes <= MAX_LANES):
            raise ValueError("kdf iterations or lanes out of bounds")
        if not max(MIN_MEMORY_KIB, 8 * lanes) <= memory <= MAX_MEMORY_KIB or iterations * memory > MAX_WORK:
            raise ValueError("kdf memory out of bounds")
        return cls(iterations, lanes, memory)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, size: int) -> bytes:
    """`size` bytes from base64 text; ValueError for anything else."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64 text")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != size:
        raise ValueError(f"{len(raw)} bytes where {size} were expected")
    return raw


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    try:
        secret = passphrase.encode("utf-8", "surrogateescape")  # bytes a terminal or env var gave as is
    except UnicodeEncodeError:
        raise VaultError("The passphrase holds characters that cannot be encoded; type it again.") from None
    return kdf.derive(secret)


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
    tmp.unlink(missing_ok=True)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
        fh.write(json.dumps(header, indent=2))
        fh.flush()
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
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HEADER_BYTES + 1)
    except OSError as exc:
        raise VaultError(f"The vault key header {path} cannot be read ({exc.strerror}).") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise CorruptVault(f"The vault key header {path} is far too large to be one; it is damaged.")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptVault(f"The vault key header {path} is damaged (not valid JSON).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptVault(f"{path} is not a memos-desktop vault key header.")
    version = header.get("version")
    if version != VERSION or type(version) is not int:
        if type(version) is int and VERSION < version < 1000:
            raise VaultError(
                f"The vault key header {path} has version {version}; "
                f"this memos-desktop reads version {VERSION}. Upgrade memos-desktop."
            )
        raise CorruptVault(f"The vault key header {path} is damaged (bad version).")
    return header


def unwrap(path: Path, passphrase: str) -> tuple[bytes, str]:
    """Return (data key, vault id) from the header at `path`, or raise WrongPassphrase."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    header = read_header(path)
    try:
        params = KdfParams.read(header.get("kdf"))
    except ValueError:
        raise CorruptVault(
            f"The vault key header {path} is damaged: its Argon2 parameters are missing, not integers, or beyond "
            f"the limits ({MAX_ITERATIONS} iterations, {MAX_MEMORY_KIB // 1024} MiB)."
        ) from None
    fields = {}
    for name, source, size in (("salt", header["kdf"], 16), ("nonce", header, 12), ("wrapped_key", header, 48)):
        try:
            fields[name] = _unb64(source.get(name), size)
        except ValueError:
            raise CorruptVault(f"The vault key header {path} is damaged (missing or bad field {name!r}).") from None
    salt, nonce, sealed = fields["salt"], fields["nonce"], fields["wrapped_key"]
    vault_id = header.get("vault_id")
    if not isinstance(vault_id, str) or not 0 < len(vault_id) <= 64 or not vault_id.isalnum():
        raise CorruptVault(f"The vault key header {path} is damaged (missing or bad field 'vault_id').")
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
