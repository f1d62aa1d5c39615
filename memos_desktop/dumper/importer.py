"""Import: apply a bundle to the vault in one write transaction, or not at all.

The bundle is decrypted and parsed as a stream; every record is validated (ids, blob names,
version hashes) and applied inside one transaction that commits only after the signed trailer
verifies, so a truncated, tampered or unreadable bundle leaves the vault untouched. Versions keep
their ids and provenance; the origin device is recorded per version and in the audit log.
Importing the same bundle twice changes nothing; concurrent edits become conflict versions.
Only pinned signers are imported from (`trust.py`), except passphrase bundles; every new version
must be written by the signer (or a device this vault trusts, relayed), and every field is
checked (`validate.py`) before it is stored.
"""

import base64
import binascii
from pathlib import Path

from memos_desktop.dumper import canonical, crypto, oplog, trust, validate
from memos_desktop.dumper.clock import HybridClock
from memos_desktop.dumper.crypto import PASSPHRASE_MAGIC
from memos_desktop.dumper.format import BundleSink, check_blob_name, check_id
from memos_desktop.errors import BundleError
from memos_desktop.vault import Vault, sync_log

_AUDIT_FIELDS = ("hash", "seq", "at", "action", "actor", "detail")


class AlreadyApplied(Exception):
    """The bundle was imported before; stop reading it."""


class Applier:
    """Applies the records of one bundle or change-set (inside the caller's transaction)."""

    def __init__(
        self,
        vault: Vault,
        clock: HybridClock,
        *,
        shared: bool,
        expect_device: str | None = None,
        expect_kind: str | None = None,
    ):
        self.vault = vault
        self.clock = clock
        self.shared = shared
        self.expect_device = expect_device
        self.expect_kind = expect_kind
        self.manifest: dict = {}
        self.trusted = False
        self.passphrase_bundle = False
        self.signer_status = trust.UNKNOWN
        self._relayers: set[str] = set()
        self._cube_ids: set[str] = set()  # links may only join memories this bundle carries
        self._payloads: set[str] = set()  # and blobs may only be ones its memories refer to
        self.created_blobs: list[str] = []
        self.new_cubes = oplog.NewCubes(vault, origin="", shared=shared, clock=clock)  # replaced per bundle
        self.empty = False
        self._audit_rows: list[tuple] = []
        self.counts = {"cubes": 0, "versions_added": 0, "updated": 0, "links": 0, "audit": 0, "blobs": 0}

    def on_manifest(self, manifest: dict) -> None:
        if self.expect_kind and manifest["kind"] != self.expect_kind:
            raise BundleError(f"Expected a {self.expect_kind} but this bundle is a {manifest['kind']}.")
        if self.expect_device and manifest["device"] != self.expect_device:
            raise BundleError("This change-set claims to come from another device than its folder says.")
        validate.manifest(manifest)
        what = "change-set" if manifest["kind"] == "changeset" else "bundle"
        self.signer_status = trust.check_signer(
            self.vault,
            manifest["device"],
            manifest["signing_key"],
            passphrase_bundle=self.passphrase_bundle,
            what=what,
        )
        self.trusted = self.signer_status in (trust.OWN, trust.TRUSTED)
        # Versions may be relayed from devices this vault trusts; from any device only when the
        # user vouched for the whole file by typing its passphrase.
        self._relayers = {p.device for p in crypto.peers(self.vault) if p.device and p.verify_key}
        self.manifest = manifest
        self.empty = not sync_log.has_cubes(self.vault)
        self.new_cubes = oplog.NewCubes(self.vault, origin=manifest["bundle_id"], shared=self.shared, clock=self.clock)
        if sync_log.is_applied(self.vault, manifest["bundle_id"]):
            raise AlreadyApplied

    def verify(self, manifest: dict, signature: str, data: bytes) -> bool:
        return crypto.verify(manifest["signing_key"], signature, data)

    def on_record(self, record: dict) -> None:
        kind = record["t"]
        if kind == "cube":
            self._cube(record)
        elif kind == "link":
            self._link(record)
        elif kind == "audit":
            self._audit(record)
        elif kind == "blob":
            self._blob(record)
        elif kind != "summary":
            raise BundleError(f"The bundle holds an unknown record type {kind[:40]!r}.")

    def _cube(self, record: dict) -> None:
        cube_id = check_id(record.get("id"))
        validate.ulid(cube_id, "memory id")
        raw_events = record.get("events")
        if not isinstance(raw_events, list) or not raw_events:
            raise BundleError(f"The bundle holds a malformed record for memory {cube_id}.")
        access = validate.access(record.get("access", [0, None]), cube_id)
        for raw in raw_events:
            if not isinstance(raw, dict) or not isinstance(raw.get("snapshot"), dict):
                raise BundleError(f"The bundle holds a malformed version of memory {cube_id}.")
            validate.event(cube_id, raw)
            validate.snapshot(cube_id, raw["snapshot"])
        evs = [oplog.parse_event(cube_id, e) for e in raw_events]
        if cube_id in self.new_cubes.ids:
            if self.empty:
                raise BundleError(f"The bundle holds memory {cube_id} twice; it is damaged.")
            self.new_cubes.flush()
        self._check_authors(cube_id, evs)
        try:
            # Into an empty vault every cube is new; a crafted repeat fails on the unique id.
            exists = not self.empty and sync_log.has_cube(self.vault, cube_id)
            if not exists and self.new_cubes.fits(evs):
                added = self.new_cubes.add(cube_id, evs, access)
            else:
                added = oplog.apply_cube(
                    self.vault,
                    cube_id,
                    evs,
                    origin=self.manifest["bundle_id"],
                    shared=self.shared,
                    clock=self.clock,
                    access=access,
                )
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"Memory {cube_id} in the bundle cannot be stored ({exc}).") from None
        self._cube_ids.add(cube_id)
        self._payloads.update(ev.snapshot["payload_ref"] for ev in evs if ev.snapshot.get("payload_ref"))
        self.counts["cubes"] += 1
        self.counts["versions_added"] += added
        self.counts["updated"] += bool(exists and added)  # memories already here that changed

    def _check_authors(self, cube_id: str, evs: list[oplog.Event]) -> None:
        """Every version this vault lacks is the signer's (or relayed from a device it trusts);
        a conflict version is exactly the one its parents make (so it cannot carry other text)."""
        signer = self.manifest["device"]
        suspect = [
            ev
            for ev in evs
            if ev.device != signer and (ev.device == sync_log.CONFLICT_DEVICE or not self.passphrase_bundle)
        ]
        if not suspect:
            return
        known = set() if self.empty else sync_log.known_vids(self.vault, [ev.vid for ev in suspect])
        in_bundle = {ev.vid: ev for ev in evs}
        for ev in suspect:
            if ev.vid in known:
                continue
            if ev.device == sync_log.CONFLICT_DEVICE:
                self._check_conflict(cube_id, ev, in_bundle)
            elif ev.device not in self._relayers:
                raise trust.UntrustedSigner(
                    f"The bundle signed by device {signer} holds a version of memory {cube_id} attributed to "
                    f"device {ev.device}, which this vault does not trust; nothing was imported."
                )

    def _check_conflict(self, cube_id: str, ev: oplog.Event, in_bundle: dict) -> None:
        parents = {vid: (in_bundle[vid].hlc, in_bundle[vid].snapshot) for vid in ev.parents if vid in in_bundle}
        parents.update(sync_log.stored_versions(self.vault, [vid for vid in ev.parents if vid not in parents]))
        if len(parents) < len(ev.parents):
            raise oplog.MissingParent(f"A conflict version of memory {cube_id} refers to versions not received yet.")
        if len(parents) < 2:
            raise BundleError(f"The bundle holds a forged conflict version of memory {cube_id}; nothing was imported.")
        stamp, vid = max((stamp, vid) for vid, (stamp, _) in parents.items())
        snapshot = parents[vid][1]
        expected = canonical.vid_of(
            cube_id,
            sorted(parents),
            stamp + "~c",
            sync_log.CONFLICT_DEVICE,
            "conflict",
            "sync",
            snapshot.get("updated_at", 0.0),
            snapshot,
        )
        if ev.vid != expected:
            raise BundleError(f"The bundle holds a forged conflict version of memory {cube_id}; nothing was imported.")

    def _link(self, record: dict) -> None:
        src, dst = check_id(record.get("src")), check_id(record.get("dst"))
        validate.link(record)
        rel, at = record["rel"], record.get("at")  # a name and a moment (or None), as validated
        if src not in self._cube_ids or dst not in self._cube_ids:
            raise BundleError("The bundle holds a link to a memory it does not carry; nothing was imported.")
        self.vault.link(src, dst, rel, at)
        self.counts["links"] += 1

    def _audit(self, record: dict) -> None:
        cube_id = record.get("cube_id")
        if cube_id is not None:
            check_id(cube_id)
        validate.audit(record)
        digest, seq, at, action, actor, detail = map(record.get, _AUDIT_FIELDS)
        if not (
            all(isinstance(text, str) for text in (digest, action, actor, detail))
            and isinstance(seq, int)
            and isinstance(at, int | float)
        ):
            raise BundleError("The bundle holds a malformed audit entry.")
        device, bundle = self.manifest["device"], self.manifest["bundle_id"]
        self._audit_rows.append((digest, device, bundle, seq, at, action, cube_id, actor, detail))
        if len(self._audit_rows) >= 500:
            self.flush()
        self.counts["audit"] += 1

    def flush(self) -> None:
        """Write buffered rows; runs before the transaction commits."""
        try:
            self.new_cubes.flush()
            sync_log.insert_imported_audit(self.vault, self._audit_rows)
        except Exception as exc:
            raise BundleError(f"The bundle cannot be stored ({exc}); nothing was imported.") from None
        self._audit_rows = []

    def _blob(self, record: dict) -> None:
        name = check_blob_name(record.get("name"))
        context, data = record.get("context"), record.get("data")
        if not isinstance(context, str) or len(context) > 4096 or not isinstance(data, str):
            raise BundleError("The bundle holds a malformed blob.")
        if name not in self._payloads:
            raise BundleError(f"The bundle holds a blob {name!r} no memory in it refers to; nothing was imported.")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BundleError("The bundle holds a blob that is not valid base64.") from None
        if self.vault.blobs.size(name) == 0:
            self.vault.blobs.put(name, raw, context.encode())
            self.created_blobs.append(name)
        self.counts["blobs"] += 1

    def discard_blobs(self) -> None:
        """Remove blob files written by an import that then failed."""
        for name in self.created_blobs:
            self.vault.blobs.delete(name)


def read_into(applier: Applier, path: Path, identities: list[str], passphrase: str | None) -> dict:
    """Decrypt `path` through `applier` (in the caller's transaction); return the manifest."""
    sink = BundleSink(applier.on_manifest, applier.on_record, applier.verify)
    try:
        with open(path, "rb") as fh:
            applier.passphrase_bundle = fh.read(len(PASSPHRASE_MAGIC)) == PASSPHRASE_MAGIC
            fh.seek(0)
            crypto.decrypt_stream(fh, sink, identities, passphrase)
    except FileNotFoundError:
        raise BundleError(f"No bundle at {path}.") from None
    except IsADirectoryError:
        raise BundleError(f"{path} is a directory, not a bundle.") from None
    manifest = sink.finish()
    applier.flush()
    return manifest


def import_bundle(vault: Vault, path: Path, *, passphrase: str | None = None) -> dict:
    """Import the bundle at `path` (all or nothing); return what changed."""
    keys = crypto.device_keys(vault)
    clock = oplog.load_clock(vault)
    applier = Applier(vault, clock, shared=False, expect_kind="export")
    conflicts_before = sync_log.conflict_count(vault)
    try:
        with vault.bulk_write():
            oplog.tag_local(vault, clock)
            manifest = read_into(applier, Path(path), [keys.age_identity], passphrase)
            sync_log.mark_applied(vault, manifest["bundle_id"], manifest["device"])
            conflicts = sync_log.conflict_count(vault)
            oplog.save_clock(vault, clock)
            result = {
                "bundle_id": manifest["bundle_id"],
                "origin_device": manifest["device"],
                "trusted_device": applier.trusted,
                "signing_key": manifest["signing_key"],
                "signer_fingerprint": trust.fingerprint(manifest["signing_key"]),
                "passphrase_bundle": applier.passphrase_bundle,
                "redaction": manifest.get("redaction", []),
                **applier.counts,
                "conflicts": conflicts - conflicts_before,
            }
            vault.audit("import", None, "user", result)
    except AlreadyApplied:
        return {
            "bundle_id": applier.manifest["bundle_id"],
            "origin_device": applier.manifest["device"],
            "already_imported": True,
        }
    except BaseException:
        applier.discard_blobs()
        raise
    rebuild_vectors(vault)
    return result


def rebuild_vectors(vault: Vault) -> int:
    """Embed cubes that arrived without a vector (derived indexes are never carried in bundles)."""
    if vault.embedder is None:
        return 0
    vault.sync_vectors()
    return vault.reembed()
