"""Export: write the selected cubes with all their versions, links and audit excerpt to a bundle.

The bundle is streamed (one cube's records at a time) into pyrage, so memory does not grow with
the vault. Redaction rules rewrite text in every exported version (and are recorded in the
manifest); cubes tagged secret are left out. The bundle appears under its final name only when
complete (temp file + fsync + rename). The export is written to the audit log. Never writes
plaintext to disk.
"""

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from memos_desktop.dumper import crypto, oplog
from memos_desktop.dumper.canonical import vid_of
from memos_desktop.dumper.format import FORMAT, VERSION, BundleSource
from memos_desktop.errors import BundleError, MemosError
from memos_desktop.vault import Vault, sync_log

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{7,}\d(?!\w)")


@dataclass
class Selection:
    """Which cubes to export; empty fields select everything."""

    tags: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    profile: str | None = None

    def cube_filter(self, exclude_tags: tuple[str, ...] = ()) -> sync_log.CubeFilter:
        """The vault's filter for these cubes, leaving out those tagged with any of `exclude_tags`."""
        return sync_log.CubeFilter(self.tags, self.kinds, self.since, self.until, self.profile, exclude_tags)


@dataclass
class Redaction:
    """What is removed at export: e-mail addresses, phone numbers, cubes carrying `secret_tags`."""

    emails: bool = False
    phones: bool = False
    secret_tags: tuple[str, ...] = ("secret",)
    counts: dict = field(default_factory=lambda: {"emails": 0, "phones": 0, "secret_cubes": 0})

    def rules(self) -> list[str]:
        out = ["email -> [email]"] if self.emails else []
        if self.phones:
            out.append("phone (9-15 digits) -> [phone]")
        out += [f"tag:{t} -> cube left out" for t in self.secret_tags]
        return out

    @property
    def rewrites(self) -> bool:
        return self.emails or self.phones

    def text(self, value: str) -> str:
        if self.emails:
            value, n = EMAIL.subn("[email]", value)
            self.counts["emails"] += n
        if self.phones:
            value = PHONE.sub(self._phone, value)
        return value

    def _phone(self, match: re.Match) -> str:
        digits = sum(ch.isdigit() for ch in match.group(0))
        if 9 <= digits <= 15:
            self.counts["phones"] += 1
            return "[phone]"
        return match.group(0)


def _redact_events(cube_events: list[oplog.Event], redaction: Redaction) -> list[oplog.Event]:
    """Rewrite text in every version and re-derive ids, so the redacted history stays consistent."""
    renamed: dict[str, str] = {}
    out = []
    for ev in cube_events:
        snap = {
            **ev.snapshot,
            "title": redaction.text(ev.snapshot["title"]),
            "content": redaction.text(ev.snapshot["content"]),
        }
        parents = [renamed.get(p, p) for p in ev.parents]
        vid = vid_of(snap["id"], parents, ev.hlc, ev.device, ev.op, ev.actor, ev.at, snap)
        renamed[ev.vid] = vid
        out.append(oplog.Event(vid, parents, ev.hlc, ev.device, ev.op, ev.actor, ev.at, snap))
    return out


class _Export:
    def __init__(self, vault: Vault, selection: Selection, redaction: Redaction, with_blobs: bool):
        self.vault = vault
        self.selection = selection
        self.redaction = redaction
        self.with_blobs = with_blobs
        self.summary = {
            "cubes": 0,
            "versions": 0,
            "links": 0,
            "audit": 0,
            "blobs": 0,
            "blobs_skipped": 0,
        }

    def records(self) -> Iterator[dict | bytes]:
        exported = self.selection.cube_filter(exclude_tags=tuple(self.redaction.secret_tags))
        secret = sync_log.count_cubes(self.vault, self.selection.cube_filter())
        rows = sync_log.export_rows(self.vault, exported)
        cube, group = None, []
        for row in rows:
            if cube is not None and row[0] != cube[0]:
                yield from self._cube(cube, group)
                group = []
            cube = row[:5]
            group.append(row[5:])
        if cube is not None:
            yield from self._cube(cube, group)
        self.redaction.counts["secret_cubes"] = secret - self.summary["cubes"]
        for src, dst, rel, at in sync_log.export_links(self.vault, exported):
            self.summary["links"] += 1
            yield orjson.dumps({"t": "link", "src": src, "dst": dst, "rel": rel, "at": at})
        for seq, at, action, cube_id, actor, detail, digest in sync_log.export_audit(self.vault, exported):
            self.summary["audit"] += 1
            yield orjson.dumps(
                {
                    "t": "audit",
                    "seq": seq,
                    "at": at,
                    "action": action,
                    "cube_id": cube_id,
                    "actor": actor,
                    "detail": detail,
                    "hash": digest,
                }
            )
        yield {"t": "summary", **self.summary, "redacted": dict(self.redaction.counts)}

    def _cube(self, cube: tuple, rows: list[tuple]) -> Iterator[dict | bytes]:
        """The record of one cube (and its blob): pre-serialized unless redaction rewrites text."""
        cube_id, access_count, last_accessed, payload_ref, blob_context = cube
        self.summary["cubes"] += 1
        self.summary["versions"] += len(rows)
        if self.redaction.rewrites:
            evs = [
                oplog.Event(vid, json.loads(parents), stamp, device, op, actor, at, json.loads(snapshot))
                for vid, parents, stamp, device, op, actor, at, snapshot in rows
            ]
            evs = _redact_events(evs, self.redaction)
            yield {
                "t": "cube",
                "id": cube_id,
                "access": [access_count, last_accessed],
                "events": [e.to_record() for e in evs],
            }
        else:
            q = orjson.dumps
            parts = [
                b'{"vid":%b,"parents":%b,"hlc":%b,"device":%b,"op":%b,"actor":%b,"at":%b,'
                b'"snapshot":%b}'
                % (
                    q(vid),
                    parents.encode(),
                    q(stamp),
                    q(device),
                    q(op),
                    q(actor),
                    q(at),
                    snapshot.encode(),
                )
                for vid, parents, stamp, device, op, actor, at, snapshot in rows
            ]
            yield b'{"t":"cube","id":%b,"access":[%d,%b],"events":[%b]}' % (
                q(cube_id),
                access_count,
                q(last_accessed),
                b",".join(parts),
            )
        if self.with_blobs and payload_ref:
            blob = self._blob(payload_ref, blob_context or "")
            if blob is not None:
                yield blob

    def _blob(self, name: str, context: str) -> dict | None:
        try:
            data = self.vault.blobs.get(name, context=context.encode())
        except (MemosError, ValueError):
            self.summary["blobs_skipped"] += 1
            return None
        self.summary["blobs"] += 1
        return {
            "t": "blob",
            "name": name,
            "context": context,
            "data": base64.b64encode(data).decode("ascii"),
        }


def write_atomic(out: Path, write: Callable[[BinaryIO], object]) -> int:
    """`write(fh)` into a temp file beside `out`, fsync, rename to `out`; return its size."""
    out = Path(out)
    if out.is_dir():
        raise BundleError(f"{out} is a directory; give a file name for the bundle.")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return out.stat().st_size


def export_bundle(
    vault: Vault,
    out: Path,
    *,
    selection: Selection | None = None,
    redaction: Redaction | None = None,
    recipients: list[str] | None = None,
    passphrase: str | None = None,
    with_blobs: bool = False,
) -> dict:
    """Write a signed, encrypted bundle of the selected cubes to `out`; return what it holds."""
    from ulid import ULID

    selection = selection or Selection()
    redaction = redaction or Redaction()
    keys = crypto.device_keys(vault)
    if passphrase is None:
        recipients = list(dict.fromkeys([keys.recipient, *(recipients or [])]))
    vault.expire()  # a memory whose TTL passed since the vault opened never leaves in a bundle
    with vault.transaction():
        oplog.tag_local(vault, oplog.load_clock(vault))
    bundle_id = str(ULID())
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "export",
        "bundle_id": bundle_id,
        "created_at": time.time(),
        "device": vault.device_id,
        "signing_key": keys.verify_key,
        "selection": asdict(selection),
        "redaction": redaction.rules(),
        "encryption": "passphrase" if passphrase is not None else {"recipients": recipients},
        "blobs": with_blobs,
    }
    job = _Export(vault, selection, redaction, with_blobs)
    started = time.perf_counter()
    with vault.read_snapshot():
        source = BundleSource(manifest, job.records(), keys.sign)
        size = write_atomic(out, lambda fh: crypto.encrypt_stream(source, fh, recipients, passphrase))
    seconds = time.perf_counter() - started
    result = {
        "bundle_id": bundle_id,
        "path": str(out),
        "bytes": size,
        "plaintext_bytes": source.bytes,
        "seconds": seconds,
        **job.summary,
        "redacted": dict(redaction.counts),
        "rules": redaction.rules(),
    }
    vault.audit("export", None, "user", {k: v for k, v in result.items() if k not in ("seconds",)})
    return result
