"""Device trust: which signing keys this vault accepts bundles and change-sets from.

A device is pinned by its Ed25519 verify key (`keys trust`, or `keys add` with a device card);
`keys revoke` unpins it and remembers the key as revoked. Anyone can encrypt to this vault's age
recipient (it is public by design), so a signature only counts when its key is pinned: bundles and
change-sets from an unknown or revoked key are refused before anything is written, except a
passphrase bundle (the move-to-a-new-laptop path), whose passphrase the user typed. People compare
a short fingerprint of a key on both screens (as Signal's safety numbers and Syncthing's device
ids): six groups of five digits from a SHA-256 of the key. This module never holds a secret key.
"""

import hashlib
import time

from memos_desktop.dumper import crypto
from memos_desktop.errors import BundleError, MemosError

SIGNER_PREFIX = "memos-signer"
_REVOKED_SETTING = "dumper.revoked"
_FINGERPRINT_CONTEXT = b"memos-desktop device fingerprint v1\n"

OWN, TRUSTED, UNKNOWN, REVOKED, MISMATCH = "own", "trusted", "unknown", "revoked", "mismatch"


class UntrustedSigner(BundleError):
    """A bundle or change-set is signed by a key this vault does not trust (or revoked)."""


def fingerprint(verify_key: str) -> str:
    """Six groups of five digits naming an Ed25519 verify key (base64url), for people to compare."""
    digest = hashlib.sha256(_FINGERPRINT_CONTEXT + crypto.raw_verify_key(verify_key)).digest()
    return " ".join(f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def signer_card(device: str, verify_key: str) -> str:
    """What `keys trust NAME CARD` accepts to trust a signer whose device card you do not have."""
    return f"{SIGNER_PREFIX}:{device}:{verify_key}"


def trust_command(device: str, verify_key: str) -> str:
    return f"memos-desktop keys trust {device[-8:].lower()} {signer_card(device, verify_key)}"


def revoked(vault) -> dict[str, dict]:
    """Revoked verify keys: {key: {"device", "name", "at"}}."""
    return vault.get_setting(_REVOKED_SETTING, {})


def status(vault, device: str, verify_key: str) -> str:
    """How this vault regards a signature by `verify_key` claiming to come from `device`."""
    own = crypto.device_keys(vault).verify_key
    if device == vault.device_id or verify_key == own:
        return OWN if (device, verify_key) == (vault.device_id, own) else MISMATCH
    if verify_key in revoked(vault):
        return REVOKED
    pinned = crypto.trusted_key(vault, device)
    if pinned is None:
        return UNKNOWN
    return TRUSTED if pinned == verify_key else MISMATCH


def check_signer(vault, device: str, verify_key: str, *, passphrase_bundle: bool, what: str = "bundle") -> str:
    """The signer's status, or UntrustedSigner when this vault must not import from it."""
    found = status(vault, device, verify_key)
    if found == MISMATCH:
        raise UntrustedSigner(
            f"The {what} claims to come from device {device} but is signed with another key than the one "
            "you trust for it; it was not imported."
        )
    print_ = fingerprint(verify_key)
    if found == REVOKED:
        raise UntrustedSigner(
            f"The {what} is signed by device {device} (fingerprint {print_}), whose key you revoked; nothing "
            f"was imported. To trust it again: {trust_command(device, verify_key)}"
        )
    if found == UNKNOWN and not passphrase_bundle:
        raise UntrustedSigner(
            f"The {what} is signed by device {device} (fingerprint {print_}), which this vault does not trust; "
            "nothing was imported. Compare the fingerprint with `memos-desktop keys show` on that device, "
            f"then run: {trust_command(device, verify_key)}"
        )
    return found


def parse(name: str, text: str) -> crypto.Peer:
    """A peer from a device card, a signer card (`memos-signer:DEVICE:KEY`) or an age recipient."""
    text = text.strip()
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == SIGNER_PREFIX:
        crypto.check_name(name)
        if not crypto.valid_device(parts[1]):
            raise MemosError("Not a signer card: its device id is invalid.")
        crypto.raw_verify_key(parts[2])
        return crypto.Peer(name, None, parts[1], parts[2])
    return crypto.parse_card(name, text)


def trust(vault, name: str, text: str) -> crypto.Peer:
    """Pin a device (card or signer card) under `name`; a revoked key becomes trusted again."""
    peer = parse(name, text)
    if peer.device is not None and peer.verify_key is not None:
        gone = revoked(vault)
        if gone.pop(peer.verify_key, None) is not None:
            vault.set_setting(_REVOKED_SETTING, gone)
    return crypto.store_peer(vault, peer)


def revoke(vault, which: str) -> crypto.Peer:
    """Unpin the device named `which` (a name, a device id or a fingerprint) and remember its key
    as revoked, so a later bundle or change-set signed by it is refused."""
    wanted = which.replace(" ", "")
    for peer in crypto.peers(vault):
        fp = fingerprint(peer.verify_key).replace(" ", "") if peer.verify_key else None
        if which in (peer.name, peer.device) or (fp and len(wanted) >= 10 and fp.startswith(wanted)):
            break
    else:
        raise MemosError(f"No trusted device {which!r}; `memos-desktop keys list` shows them.")
    crypto.remove_peer(vault, peer.name)
    if peer.verify_key:
        gone = revoked(vault)
        gone[peer.verify_key] = {"device": peer.device, "name": peer.name, "at": time.time()}
        vault.set_setting(_REVOKED_SETTING, gone)
    vault.audit("revoke-device", detail={"name": peer.name, "device": peer.device})
    return peer


def listing(vault) -> list[dict]:
    """Trusted devices and revoked keys, with fingerprints (what `keys list` prints)."""
    out = [
        {
            "name": p.name,
            "device": p.device,
            "recipient": p.recipient,
            "fingerprint": fingerprint(p.verify_key) if p.verify_key else None,
            "status": TRUSTED if p.verify_key else "recipient-only",
        }
        for p in crypto.peers(vault)
    ]
    for key, info in sorted(revoked(vault).items(), key=lambda item: item[1].get("at", 0)):
        out.append(
            {
                "name": info.get("name"),
                "device": info.get("device"),
                "recipient": None,
                "fingerprint": fingerprint(key),
                "status": REVOKED,
                "revoked_at": info.get("at"),
            }
        )
    return out
