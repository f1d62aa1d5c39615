"""Device keys and the age encryption layer of bundles.

Each device has an age X25519 identity (bundles and change-sets are encrypted to recipients) and an
Ed25519 signing key (bundles say which device wrote them). Both live in the vault's encrypted
settings and never leave it, except when the user asks `keys show --secret` for use with `age`.
Peers are other devices the user trusts, added as a one-line card. Passphrase bundles seal an
ephemeral X25519 identity with age's scrypt recipient in a small header, then stream the payload
to that identity (`pyrage.passphrase` only works on whole byte strings). No home-made ciphers:
every byte of ciphertext here is written by pyrage in the standard age v1 format.
"""

import base64
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

from memos_desktop.errors import BundleError, MemosError

AGE_MAGIC = b"age-encryption.org/v1\n"
PASSPHRASE_MAGIC = b"memos-bundle/1 passphrase "
MAX_KEY_PART = 64 * 1024
CARD_PREFIX = "memos-device"
_KEYS_SETTING = "dumper.keys"
_PEERS_SETTING = "dumper.peers"
_RECIPIENT = re.compile(r"^age1[0-9a-z]{58}$")
_DEVICE = re.compile(r"^[0-9A-Za-z]{1,64}$")
_NAME = re.compile(r"^[\w.-]{1,64}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DeviceKeys:
    device: str
    age_identity: str
    signing_key: bytes

    @property
    def recipient(self) -> str:
        from pyrage import x25519

        return str(x25519.Identity.from_str(self.age_identity).to_public())

    @property
    def verify_key(self) -> str:
        """The Ed25519 public key, base64url (what peers use to check this device's signatures)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return _b64(Ed25519PrivateKey.from_private_bytes(self.signing_key).public_key().public_bytes_raw())

    def card(self) -> str:
        """One line another device adds with `keys add` to trust and encrypt to this one."""
        return f"{CARD_PREFIX}:{self.device}:{self.recipient}:{self.verify_key}"

    def sign(self, data: bytes) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return _b64(Ed25519PrivateKey.from_private_bytes(self.signing_key).sign(data))


@dataclass(frozen=True)
class Peer:
    name: str
    recipient: str | None
    device: str | None = None
    verify_key: str | None = None


def device_keys(vault) -> DeviceKeys:
    """This device's keys, created and stored in the vault's encrypted settings on first use."""
    stored = vault.get_setting(_KEYS_SETTING)
    if stored is None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from pyrage import x25519

        stored = {
            "age_identity": str(x25519.Identity.generate()),
            "signing_key": _b64(Ed25519PrivateKey.generate().private_bytes_raw()),
        }
        vault.set_setting(_KEYS_SETTING, stored)
    return DeviceKeys(vault.device_id, stored["age_identity"], _unb64(stored["signing_key"]))


def verify(verify_key: str, signature: str, data: bytes) -> bool:
    """True when `signature` (base64url) is `verify_key`'s Ed25519 signature over `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(_unb64(verify_key)).verify(_unb64(signature), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def raw_verify_key(text: object) -> bytes:
    """The 32 bytes of an Ed25519 verify key written in base64url; MemosError if it is not one."""
    try:
        raw = _unb64(text) if isinstance(text, str) and text.isascii() else b""
    except ValueError:
        raw = b""
    if len(raw) != 32 or _b64(raw) != text:
        raise MemosError("Not an Ed25519 verify key (43 base64url characters).")
    return raw


def valid_device(text: object) -> bool:
    return isinstance(text, str) and bool(_DEVICE.match(text))


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise MemosError(f"Invalid key name {name!r}: use letters, digits, '.', '_' or '-'.")


def parse_card(name: str, text: str) -> Peer:
    """A peer from a device card (`memos-device:ID:age1...:KEY`) or a bare age recipient."""
    text = text.strip()
    check_name(name)
    if _RECIPIENT.match(text):
        return Peer(name, text)
    parts = text.split(":")
    if len(parts) == 4 and parts[0] == CARD_PREFIX and _DEVICE.match(parts[1]) and _RECIPIENT.match(parts[2]):
        try:
            raw = _unb64(parts[3])
        except ValueError:
            raw = b""
        if len(raw) == 32:
            return Peer(name, parts[2], parts[1], parts[3])
    raise MemosError("Not a device card or age recipient: copy the line `memos-desktop keys show` prints.")


def add_peer(vault, name: str, text: str) -> Peer:
    """Trust another device (or just encrypt to an age recipient) under `name`."""
    return store_peer(vault, parse_card(name, text))


def store_peer(vault, peer: Peer) -> Peer:
    """Pin `peer` under its name; a device is pinned once (a new key for it replaces the old)."""
    if peer.device == vault.device_id:
        raise MemosError("That card is this device's own; add the card of another device.")
    stored = vault.get_setting(_PEERS_SETTING, {})
    taken = stored.get(peer.name)
    if taken is not None and taken.get("device") != peer.device:
        raise MemosError(f"The name {peer.name!r} is already used by another device; revoke it first or pick another.")
    peers = {
        name: fields for name, fields in stored.items() if peer.device is None or fields.get("device") != peer.device
    }
    peers[peer.name] = {
        "recipient": peer.recipient,
        "device": peer.device,
        "verify_key": peer.verify_key,
    }
    vault.set_setting(_PEERS_SETTING, peers)
    vault.audit("trust-device", detail={"name": peer.name, "device": peer.device, "recipient": peer.recipient})
    return peer


def remove_peer(vault, name: str) -> None:
    peers = vault.get_setting(_PEERS_SETTING, {})
    peers.pop(name, None)
    vault.set_setting(_PEERS_SETTING, peers)


def peers(vault) -> list[Peer]:
    return [Peer(name, **fields) for name, fields in sorted(vault.get_setting(_PEERS_SETTING, {}).items())]


def trusted_key(vault, device: str) -> str | None:
    """The verify key the user trusts for `device`, or None when the device is unknown."""
    for peer in peers(vault):
        if peer.device == device:
            return peer.verify_key
    return None


def resolve_recipients(vault, specs: list[str]) -> list[str]:
    """age recipients for `--recipient` values: peer names, cards or age1 strings."""
    by_name = {p.name: p.recipient for p in peers(vault) if p.recipient}
    out = []
    for spec in specs:
        if spec in by_name:
            out.append(by_name[spec])
        else:
            recipient = parse_card("recipient", spec).recipient
            assert recipient is not None  # parse_card always returns a peer with a recipient
            out.append(recipient)
    return out


def encrypt_stream(
    source: BinaryIO | io.RawIOBase,
    out: BinaryIO,
    recipients: list[str] | None = None,
    passphrase: str | None = None,
) -> None:
    """Encrypt everything `source` yields into `out`: to age recipients, or to a passphrase."""
    import pyrage
    from pyrage import x25519

    if passphrase is not None:
        ephemeral = x25519.Identity.generate()
        key_part = pyrage.passphrase.encrypt(str(ephemeral).encode(), passphrase)
        out.write(PASSPHRASE_MAGIC + str(len(key_part)).encode() + b"\n")
        out.write(key_part)
        keys = [ephemeral.to_public()]
    else:
        try:
            keys = [x25519.Recipient.from_str(r) for r in recipients or []]
        except pyrage.RecipientError as exc:
            raise BundleError(f"Invalid age recipient: {exc}.") from None
        if not keys:
            raise BundleError("A bundle needs at least one recipient or a passphrase.")
    try:
        pyrage.encrypt_io(source, out, keys)
    except pyrage.EncryptError as exc:
        raise BundleError(f"The bundle could not be written ({exc}).") from None


def decrypt_stream(
    fh: BinaryIO, sink: BinaryIO | io.RawIOBase, identities: list[str], passphrase: str | None = None
) -> None:
    """Decrypt the bundle in `fh` into `sink`; BundleError for wrong keys, tampering or truncation.

    The sink may raise BundleError itself (a bad record); that error passes through unchanged.
    """
    import pyrage
    from pyrage import x25519

    start = fh.tell()
    line = fh.readline(128)
    if line.startswith(PASSPHRASE_MAGIC):
        size_text = line[len(PASSPHRASE_MAGIC) : -1]
        if not line.endswith(b"\n") or not size_text.isdigit() or not 0 < int(size_text) <= MAX_KEY_PART:
            raise BundleError("This bundle's passphrase header is damaged.")
        key_part = fh.read(int(size_text))
        if passphrase is None:
            raise BundleError("This bundle is protected by a passphrase: pass --passphrase or --passphrase-env.")
        try:
            secret = pyrage.passphrase.decrypt(key_part, passphrase).decode("ascii")
            keys = [x25519.Identity.from_str(secret)]
        except (pyrage.DecryptError, pyrage.IdentityError, UnicodeDecodeError, ValueError):
            raise BundleError("Wrong passphrase, or the bundle's passphrase header was tampered with.") from None
    elif line == AGE_MAGIC:
        fh.seek(start)
        keys = [x25519.Identity.from_str(i) for i in identities]
    else:
        raise BundleError("This file is not a memos-desktop bundle (no age header).")
    try:
        pyrage.decrypt_io(fh, sink, keys)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise BundleError("This bundle is not encrypted to this device's key (or needs a passphrase).") from None
        raise BundleError(f"The bundle cannot be decrypted: it is damaged or was tampered with ({exc}).") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"The bundle is damaged, truncated or was tampered with ({exc}).") from None
