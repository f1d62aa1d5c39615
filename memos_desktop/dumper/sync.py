"""Folder sync: devices share a folder and exchange encrypted, signed change-sets of their op log.

Layout of the shared folder (Syncthing, Dropbox, a USB stick, NFS...):
`devices/<id>.card` (each device's public card), `keys/<id>.age` (the folder's group age identity,
encrypted to that device; written by a member for each device the user trusted with `keys add`),
`changes/<id>/<seq>.age` (change-sets, bundle format kind "changeset", encrypted to the group
recipient and signed by the writing device). A device only appends files under its own id and
applies change-sets of trusted devices; each sync applies in one transaction (a change-set whose
parents have not arrived waits for the next sync). Derived indexes are rebuilt locally. The
status of the last sync is kept in the vault settings (`sync.status`) for the TUI.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from memos_desktop.dumper import crypto, oplog, trust
from memos_desktop.dumper.clock import HybridClock
from memos_desktop.dumper.conflicts import conflicts
from memos_desktop.dumper.export import write_atomic
from memos_desktop.dumper.format import FORMAT, VERSION, BundleSource
from memos_desktop.dumper.importer import AlreadyApplied, Applier, read_into, rebuild_vectors
from memos_desktop.errors import BundleError, MemosError
from memos_desktop.vault import Vault, sync_log

STATUS_SETTING = "sync.status"
_CHANGESET = re.compile(r"^(\d{10})\.age$")


def _layout(folder: Path, device: str) -> None:
    for sub in ("devices", "keys", f"changes/{device}"):
        (folder / sub).mkdir(parents=True, exist_ok=True)


def _group_identity(vault: Vault, folder: Path, keys: crypto.DeviceKeys) -> str | None:
    """The folder's group identity: ours, or new for the first device; None if not admitted."""
    import pyrage
    from pyrage import x25519

    mine = folder / "keys" / f"{vault.device_id}.age"
    if mine.exists():
        try:
            return pyrage.decrypt(mine.read_bytes(), [x25519.Identity.from_str(keys.age_identity)]).decode("ascii")
        except (pyrage.DecryptError, UnicodeDecodeError) as exc:
            raise BundleError(f"The sync key file {mine} cannot be opened with this device's key ({exc}).") from None
    if any(p.suffix == ".age" for p in (folder / "keys").iterdir()):
        return None
    group = str(x25519.Identity.generate())
    _grant(group, mine, keys.recipient)
    return group


def _grant(group: str, path: Path, recipient: str) -> None:
    import pyrage
    from pyrage import x25519

    sealed = pyrage.encrypt(group.encode("ascii"), [x25519.Recipient.from_str(recipient)])
    write_atomic(path, lambda fh: fh.write(sealed))


def _admit(vault: Vault, folder: Path, group: str) -> list[str]:
    """Give the group key to every trusted peer device that has none yet."""
    admitted = []
    for peer in crypto.peers(vault):
        path = folder / "keys" / f"{peer.device}.age"
        if peer.device and peer.recipient and not path.exists():
            _grant(group, path, peer.recipient)
            admitted.append(peer.name)
    return admitted


def _pending(vault: Vault, folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Change-sets of trusted devices not applied yet (oldest first), and untrusted device ids."""
    applied = sync_log.applied_names(vault, "changes/")
    pending, untrusted = [], []
    for device_dir in sorted((folder / "changes").iterdir()):
        device = device_dir.name
        if device == vault.device_id or not device_dir.is_dir():
            continue
        files = sorted(p for p in device_dir.iterdir() if _CHANGESET.match(p.name))
        todo = [(device, p) for p in files if f"changes/{device}/{p.name}" not in applied]
        if todo and crypto.trusted_key(vault, device) is None:
            untrusted.append(device)
            continue
        pending += todo
    return pending, untrusted


def _untrusted(folder: Path, device: str) -> dict:
    """What the user needs to decide about an untrusted device: its fingerprint and the command
    that trusts it, from its card in the folder (anyone can write that card: compare first)."""
    card = folder / "devices" / f"{device}.card"
    try:
        peer = crypto.parse_card("peer", card.read_text(encoding="ascii", errors="replace")[:512])
    except (OSError, MemosError):
        return {"device": device, "fingerprint": None, "command": None}
    if peer.device != device or peer.verify_key is None:
        return {"device": device, "fingerprint": None, "command": None}
    return {
        "device": device,
        "fingerprint": trust.fingerprint(peer.verify_key),
        "command": f"memos-desktop keys trust {device[-8:].lower()} '{crypto.CARD_PREFIX}:{device}:"
        f"{peer.recipient}:{peer.verify_key}'",
    }


def _apply(vault: Vault, pending: list[tuple[str, Path]], group: str, clock: HybridClock) -> tuple[int, int, list[str]]:
    """Apply what can be applied (parents first); return (files, versions, errors)."""
    files = versions = 0
    errors: list[str] = []
    progress = True
    while progress and pending:
        progress = False
        for device, path in list(pending):
            name = f"changes/{device}/{path.name}"
            applier = Applier(vault, clock, shared=True, expect_device=device, expect_kind="changeset")
            try:
                with vault.transaction():  # a savepoint of the sync's transaction: one change-set or nothing
                    manifest = read_into(applier, path, [group], None)
                    sync_log.mark_applied(vault, manifest["bundle_id"], device)
                    versions += applier.counts["versions_added"]
            except AlreadyApplied:
                pass
            except oplog.MissingParent:
                continue
            except BundleError as exc:
                errors.append(f"{name}: {exc}")
                pending.remove((device, path))
                continue
            sync_log.mark_applied(vault, name, device)
            pending.remove((device, path))
            files += 1
            progress = True
    return files, versions, errors


def _unshared(vault: Vault) -> Iterator[dict]:
    for cube_id in sync_log.unshared_cube_ids(vault):
        evs = oplog.cube_events(vault, cube_id, only_unshared=True)
        yield {
            "t": "cube",
            "id": cube_id,
            "access": [0, None],
            "events": [e.to_record() for e in evs],
        }


def _publish(vault: Vault, folder: Path, keys: crypto.DeviceKeys, group: str) -> int:
    """Write one change-set with every event not yet in the folder; return how many versions."""
    from pyrage import x25519
    from ulid import ULID

    own = folder / "changes" / vault.device_id
    for stale in own.glob(".*.partial-*"):
        stale.unlink(missing_ok=True)
    with vault.transaction():
        clock = oplog.load_clock(vault)
        oplog.tag_local(vault, clock)
        count = sync_log.unshared_count(vault)
        if not count:
            return 0
        seqs = [int(m.group(1)) for p in own.iterdir() if (m := _CHANGESET.match(p.name))]
        seq = max(seqs, default=0) + 1
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "kind": "changeset",
            "bundle_id": str(ULID()),
            "created_at": time.time(),
            "device": vault.device_id,
            "signing_key": keys.verify_key,
            "seq": seq,
        }
        source = BundleSource(manifest, _unshared(vault), keys.sign)
        recipient = str(x25519.Identity.from_str(group).to_public())
        write_atomic(own / f"{seq:010d}.age", lambda fh: crypto.encrypt_stream(source, fh, [recipient]))
        sync_log.mark_shared(vault)
    return count


def sync_folder(vault: Vault, folder: Path) -> dict:
    """One sync with the shared `folder`: apply the others' change-sets, then publish ours."""
    folder = Path(folder)
    vault.expire()  # expired memories are purged before anything is published
    keys = crypto.device_keys(vault)
    _layout(folder, vault.device_id)
    card = folder / "devices" / f"{vault.device_id}.card"
    if not card.exists() or card.read_text().strip() != keys.card():
        write_atomic(card, lambda fh: fh.write(keys.card().encode() + b"\n"))
    status: dict[str, Any] = {
        "folder": str(folder),
        "last_sync": time.time(),
        "applied_files": 0,
        "applied_versions": 0,
        "published_versions": 0,
        "errors": [],
        "untrusted_devices": [],
        "untrusted": [],
        "admitted": [],
        "waiting": False,
    }
    group = _group_identity(vault, folder, keys)
    if group is None:
        status["waiting"] = True
        status["errors"].append(
            "This device is not admitted to the sync folder yet: on a device already syncing, run "
            f"`memos-desktop keys add NAME '{keys.card()}'` and sync there."
        )
    else:
        status["admitted"] = _admit(vault, folder, group)
        pending, status["untrusted_devices"] = _pending(vault, folder)
        status["untrusted"] = [_untrusted(folder, device) for device in status["untrusted_devices"]]
        if pending:
            with vault.bulk_write():
                clock = oplog.load_clock(vault)
                oplog.tag_local(vault, clock)
                files, versions, errors = _apply(vault, pending, group, clock)
                oplog.save_clock(vault, clock)
            status.update(applied_files=files, applied_versions=versions)
            status["errors"] += errors
        status["published_versions"] = _publish(vault, folder, keys, group)
    status["conflicts"] = len(conflicts(vault))
    with vault.transaction():
        vault.set_setting(STATUS_SETTING, status)
        if status["applied_versions"] or status["published_versions"]:
            vault.audit(
                "sync",
                None,
                "user",
                {k: status[k] for k in ("folder", "applied_versions", "published_versions", "conflicts")},
            )
    if status["applied_versions"]:
        rebuild_vectors(vault)
    return status


def watch(
    vault: "Vault",
    folder: Path,
    interval: float,
    report: Callable[[dict], None],
    stop: threading.Event | None = None,
) -> None:
    """Sync now, then again whenever the folder changes (watchdog) or `interval` seconds pass, until
    `stop` is set (noticed within a quarter second; a sync under way is finished first)."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    stop = stop or threading.Event()
    changed = threading.Event()
    tick = 0.25  # how soon a set `stop` is noticed while waiting

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            changed.set()

    folder = Path(folder)
    _layout(folder, vault.device_id)
    observer = Observer()
    observer.schedule(_Wake(), str(folder), recursive=True)
    observer.start()
    try:
        while not stop.is_set():
            changed.clear()
            report(sync_folder(vault, folder))
            until = time.monotonic() + interval
            while not stop.is_set() and not changed.wait(max(0.0, min(tick, until - time.monotonic()))):
                if time.monotonic() >= until:
                    break
    finally:
        observer.stop()
        observer.join()
