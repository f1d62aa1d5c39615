"""Export: write the selected cubes with all their versions, links and audit excerpt to a bundle.

The bundle is streamed (one cube's records at a time) into pyrage, so memory does not grow with
the vault. Redaction rules rewrite text in every exported version (and are recorded in the
manifest); cubes tagged secret are left out. The bundle appears under its final name only when
complete (temp file + fsync + rename). The export is written to the audit log. Never writes
plaintext to disk.
"""

import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from memos_desktop.dumper import crypto, events
from memos_desktop.dumper.format import FORMAT, VERSION, BundleSource
from memos_desktop.errors import BundleError, MemosError
from memos_desktop.vault import db

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

    def where(self) -> tuple[str, dict]:
        clauses, params = ["1"], {}
        if self.tags:
            marks = ", ".join(f":tag{i}" for i in range(len(self.tags)))
            clauses.append(f"EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ({marks}))")
            params.update({f"tag{i}": t for i, t in enumerate(self.tags)})
        if self.kinds:
            marks = ", ".join(f":kind{i}" for i in range(len(self.kinds)))
            clauses.append(f"kind IN ({marks})")
            params.update({f"kind{i}": k for i, k in enumerate(self.kinds)})
        if self.since is not None:
            clauses.append("updated_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("updated_at < :until")
            params["until"] = self.until
        if self.profile:
            clauses.append("owner = :profile")
            params["profile"] = self.profile
        return " AND ".join(clauses), params


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


def _redact_events(cube_events: list[events.Event], redaction: Redaction) -> list[events.Event]:
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
        vid = events.vid_of(snap["id"], parents, ev.hlc, ev.device, ev.op, ev.actor, ev.at, snap)
        renamed[ev.vid] = vid
        out.append(events.Event(vid, parents, ev.hlc, ev.device, ev.op, ev.actor, ev.at, snap))
    return out


class _Export:
    def __init__(self, vault, selection: Selection, redaction: Redaction, with_blobs: bool):
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

    def _where(self) -> tuple[str, dict]:
        where, params = self.selection.where()
        if self.redaction.secret_tags:
            marks = ", ".join(f":secret{i}" for i in range(len(self.redaction.secret_tags)))
            where += f" AND NOT EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ({marks}))"
            params.update({f"secret{i}": t for i, t in enumerate(self.redaction.secret_tags)})
        return where, params

    def records(self) -> Iterator[dict | bytes]:
        conn = self.vault.conn
        where, params = self._where()
        selected, all_params = self.selection.where()
        secret = conn.execute(f"SELECT count(*) FROM cubes WHERE {selected}", all_params).fetchone()[0]
        # Outer scan of the op log in (cube, version) order (CROSS JOIN fixes the join order), so
        # rows stream grouped by cube without a sort that would hold the whole vault in memory.
        rows = conn.execute(
            "SELECT c.id, c.access_count, c.last_accessed_at, c.payload_ref,"
            " json_extract(c.meta, '$.blob_context'),"
            " e.vid, e.parents, e.hlc, e.device, v.op, v.actor, v.at, v.snapshot"
            " FROM sync_events e CROSS JOIN cubes c ON c.id = e.cube_id"
            " CROSS JOIN cube_versions v ON v.cube_id = e.cube_id AND v.version = e.version"
            f" WHERE {where} ORDER BY e.cube_id, e.version",
            params,
        )
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
        for src, dst, rel, at in conn.execute(
            "SELECT src, dst, rel, at FROM links"
            f" WHERE EXISTS (SELECT 1 FROM cubes WHERE id = links.src AND {where})"
            f" AND EXISTS (SELECT 1 FROM cubes WHERE id = links.dst AND {where})",
            params,
        ):
            self.summary["links"] += 1
            yield orjson.dumps({"t": "link", "src": src, "dst": dst, "rel": rel, "at": at})
        for seq, at, action, cube_id, actor, detail, digest in conn.execute(
            "SELECT seq, at, action, cube_id, actor, detail, hash FROM audit"
            f" WHERE EXISTS (SELECT 1 FROM cubes WHERE id = audit.cube_id AND {where})"
            " ORDER BY seq",
            params,
        ):
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
                events.Event(vid, json.loads(parents), stamp, device, op, actor, at, json.loads(snapshot))
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


@contextlib.contextmanager
def bounded_cache(conn, kib: int = 64 * 1024):
    """Cap SQLite's page cache while streaming the whole vault once, so memory stays bounded."""
    (before,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size = -{kib}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {before}")


@contextlib.contextmanager
def _read_snapshot(conn):
    """One consistent read of the vault for the whole export (a deferred read transaction)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def write_atomic(out: Path, write) -> int:
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
    vault,
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
    with db.write_txn(vault.conn):
        events.tag_local(vault, events.load_clock(vault))
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
    with bounded_cache(vault.conn), _read_snapshot(vault.conn):
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
