"""MemVault: the encrypted store of MemCubes, their versions, links, audit log and settings.

Owns every read and write of the database. Every change writes a new version row; delete is a
tombstone; restore and rollback are new versions too. Every read path applies the access rules
(a profile sees its own cubes and shared ones; expired and deleted cubes are never returned).
The audit log is hash-chained: each entry's hash covers the previous hash and the entry itself.
Versions written on other devices arrive through `import_versions`, in the importer's transaction.
Search *primitives* (FTS5, vector KNN) live here; ranking and fusion live in `operator.py`.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from memos_desktop import paths
from memos_desktop.errors import CorruptVault, MemosError, NotFound, VaultError
from memos_desktop.vault import db, keys
from memos_desktop.vault.blobs import BlobStore
from memos_desktop.vault.cube import COLUMNS, EDITABLE, KINDS, MemCube

# bm25 weight of each FTS column (db.FTS_COLUMNS): title, content, tags, context. A word of the
# context (the text a cube only makes sense with, e.g. the chat turn before it) counts 0.3 of one
# of the content: enough to find "It's a mix of drama and romance!" for "What genre is it?".
FTS_WEIGHTS = "2.0, 1.0, 1.5, 0.3"

SELECT_CUBE = f"SELECT {', '.join(COLUMNS)} FROM cubes"
VISIBLE = (
    "state = 'active' AND (expires_at IS NULL OR expires_at > :now) AND (owner = :profile OR visibility = 'shared')"
)
GENESIS = "0" * 64
# Below this many vectors KNN is exact (vec0, float); above it three passes: Hamming distance of
# sign bits picks a wide shortlist, the query's float vector against those sign bits (asymmetric
# scoring, no SQLite read) narrows it, and the float vectors rescore what is left. vec0's KNN cost
# grows with n x k (measured 100k x 384: float k=10 ~50 ms), a numpy scan does not. Measured on
# 10.5k real all-MiniLM-L6-v2 vectors (recall of the exact top 50, off-topic / on-topic queries):
# Hamming 200 → float 0.51 / 0.88; Hamming 1600 → asymmetric 400 → float 0.84 / 0.995.
# `bench knn` measures it (7.5k stdlib docstrings: 0.945 → 0.999 on-topic, 0.927 → 0.998 short).
# Products go through einsum, not `@`: BLAS spreads a 1600 x 384 product over threads that spin
# (measured 7 ms of CPU on a busy machine instead of 0.3 ms).
COARSE_MIN_VECTORS = 10_000
HAMMING_SHORTLIST, HAMMING_MIN = 32, 1600  # shortlist: HAMMING_SHORTLIST x k, at least HAMMING_MIN
RESCORE_SHORTLIST, RESCORE_MIN = 8, 400  # kept for float rescoring: RESCORE_SHORTLIST x k, at least RESCORE_MIN


def _now() -> float:
    return time.time()


def _ulid() -> str:
    from ulid import ULID

    return str(ULID())


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: each word quoted, OR'ed (bm25 ranks the overlap)."""
    import re

    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class Vault:
    """An open vault. Use `Vault.open(...)` or `Vault.create(...)`; close it when done."""

    def __init__(self, conn, data_dir: Path, data_key: bytes | None, vault_id: str, embedder=None):
        self.conn = conn
        self.data_dir = data_dir
        self.vault_id = vault_id
        self._data_key = data_key
        self.embedder = embedder
        self._bits = None  # (rowids, packed sign bits) of every vector, loaded by knn
        self._bits_pending: list[tuple[int, bytes]] = []
        self._data_version = None
        self.blobs = BlobStore(data_dir / "blobs", keys.subkey(data_key, "blobs") if data_key else None)
        self.device_id = self._device_id()

    # ----- opening -------------------------------------------------------------------------
    @classmethod
    def exists(cls, data_dir: Path) -> bool:
        return (Path(data_dir) / paths.VAULT_HEADER).exists() or (Path(data_dir) / paths.VAULT_DB).exists()

    @classmethod
    def create(cls, data_dir: Path, passphrase: str, embedder=None) -> "Vault":
        """Create a new encrypted vault in `data_dir` (which must not hold one already)."""
        data_dir = Path(data_dir)
        if cls.exists(data_dir):
            raise VaultError(f"A vault already exists in {data_dir}.")
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        vault_id = _ulid()
        data_key = keys.create_header(data_dir / paths.VAULT_HEADER, passphrase, vault_id)
        return cls._connect(data_dir, data_key, vault_id, embedder)

    @classmethod
    def open(cls, data_dir: Path, passphrase: str, embedder=None) -> "Vault":
        """Unlock the vault in `data_dir` with `passphrase`."""
        data_dir = Path(data_dir)
        header = data_dir / paths.VAULT_HEADER
        if not header.exists():
            if (data_dir / paths.VAULT_DB).exists():
                raise VaultError(
                    f"The vault key header {header} is missing; the database cannot be decrypted "
                    "without it. Restore vault.key from a backup."
                )
            raise VaultError(f"No vault in {data_dir}. Run `memos-desktop init` first.")
        data_key, vault_id = keys.unwrap(header, passphrase)
        return cls._connect(data_dir, data_key, vault_id, embedder)

    @classmethod
    def open_plain(cls, db_path: Path, embedder=None) -> "Vault":
        """An unencrypted vault, only for benchmarks comparing against encryption."""
        db_path = Path(db_path)
        conn = db.connect(str(db_path), None)
        db.migrate(conn)
        return cls(conn, db_path.parent, None, "plain", embedder)

    @classmethod
    def _connect(cls, data_dir: Path, data_key: bytes, vault_id: str, embedder) -> "Vault":
        conn = db.connect(str(data_dir / paths.VAULT_DB), keys.subkey(data_key, "db"))
        try:
            db.migrate(conn)
        except MemosError:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise CorruptVault(f"The vault in {data_dir} is damaged: {exc}") from exc
        return cls(conn, data_dir, data_key, vault_id, embedder)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def change_passphrase(self, old: str, new: str) -> None:
        keys.rewrap(self.data_dir / paths.VAULT_HEADER, old, new)

    # ----- settings ------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with db.write_txn(self.conn):
            self._set_setting(key, value)

    def _set_setting(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def _device_id(self) -> str:
        device = self.get_setting("device_id")
        if device is None:
            device = _ulid()
            self.set_setting("device_id", device)
        return device

    # ----- audit ---------------------------------------------------------------------------
    def _audit(self, action: str, cube_id: str | None, actor: str, detail: dict | None = None) -> None:
        row = self.conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        at = _now()
        body = json.dumps([prev, at, action, cube_id, actor, detail or {}], sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()
        self.conn.execute(
            "INSERT INTO audit (at, action, cube_id, actor, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, action, cube_id, actor, json.dumps(detail or {}, sort_keys=True), prev, digest),
        )

    def audit(self, action: str, cube_id: str | None = None, actor: str = "user", detail: dict | None = None) -> None:
        """Record one event (a read, an export, ...) in the hash-chained audit log."""
        with db.write_txn(self.conn):
            self._audit(action, cube_id, actor, detail)

    def audit_log(self, limit: int = 50, cube_id: str | None = None) -> list[dict]:
        sql = "SELECT seq, at, action, cube_id, actor, detail, prev_hash, hash FROM audit"
        args: tuple = ()
        if cube_id:
            sql += " WHERE cube_id = ?"
            args = (cube_id,)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self.conn.execute(sql, (*args, limit)).fetchall()
        names = ("seq", "at", "action", "cube_id", "actor", "detail", "prev_hash", "hash")
        out = [dict(zip(names, r, strict=True)) for r in rows]
        for entry in out:
            entry["detail"] = json.loads(entry["detail"])
        return out[::-1]

    def verify_audit(self) -> int:
        """Check the whole hash chain; return the number of entries, or raise CorruptVault."""
        prev = GENESIS
        count = 0
        for seq, at, action, cube_id, actor, detail, prev_hash, digest in self.conn.execute(
            "SELECT seq, at, action, cube_id, actor, detail, prev_hash, hash FROM audit ORDER BY seq"
        ):
            body = json.dumps([prev, at, action, cube_id, actor, json.loads(detail)], sort_keys=True)
            if prev_hash != prev or hashlib.sha256(body.encode()).hexdigest() != digest:
                raise CorruptVault(f"The audit log was altered at entry {seq}.")
            prev = digest
            count += 1
        return count

    # ----- writes --------------------------------------------------------------------------
    def add(
        self,
        content: str,
        *,
        kind: str = "plaintext",
        title: str = "",
        tags: Iterable[str] = (),
        source: dict | None = None,
        meta: dict | None = None,
        profile: str = "default",
        visibility: str = "private",
        ttl: float | None = None,
        expires_at: float | None = None,
        valid_from: float | None = None,
        valid_to: float | None = None,
        importance: float = 0.5,
        pinned: bool = False,
        payload_ref: str | None = None,
        actor: str = "user",
        id: str | None = None,
    ) -> MemCube:
        """Store a new cube (version 1) and return it."""
        return self.add_many(
            [
                dict(
                    content=content,
                    kind=kind,
                    title=title,
                    tags=list(tags),
                    source=source or {},
                    meta=meta or {},
                    owner=profile,
                    visibility=visibility,
                    expires_at=expires_at if ttl is None else _now() + ttl,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    importance=importance,
                    pinned=pinned,
                    payload_ref=payload_ref,
                    id=id,
                )
            ],
            actor=actor,
        )[0]

    def add_many(self, items: Sequence[dict], actor: str = "user", embed: bool = True) -> list[MemCube]:
        """Store several new cubes in one transaction, embedding their text in one batch; with
        `embed=False` they are searchable by words at once and wait for `embed_pending`."""
        now = _now()
        cubes = []
        for item in items:
            fields = {k: v for k, v in item.items() if v is not None}
            if fields.get("kind", "plaintext") not in KINDS:
                raise MemosError(f"Unknown memory kind {fields['kind']!r}; use one of {', '.join(KINDS)}.")
            fields.setdefault("id", _ulid())
            fields["tags"] = sorted(set(fields.get("tags", [])))
            cube = MemCube(created_at=now, updated_at=now, **fields)
            cube.content_hash = content_hash(cube.content)
            cubes.append(cube)
        vectors = self._embed([c for c in cubes if c.kind == "plaintext"]) if embed else {}
        for cube in cubes:
            if cube.id in vectors:
                cube.embed_model = self.embedder.model_id
        with db.write_txn(self.conn):
            for cube in cubes:
                self._insert(cube)
                self._index(cube, vectors.get(cube.id))
                self._snapshot(cube, "create", None, actor)
                self._audit("create", cube.id, actor, {"kind": cube.kind})
        return cubes

    def _insert(self, cube: MemCube) -> None:
        self.conn.execute(
            f"INSERT INTO cubes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            cube.to_row(),
        )

    def _rowid(self, cube_id: str) -> int:
        return self.conn.execute("SELECT rowid FROM cubes WHERE id = ?", (cube_id,)).fetchone()[0]

    def _snapshot(self, cube: MemCube, op: str, parent: int | None, actor: str) -> None:
        self.conn.execute(
            "INSERT INTO cube_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cube.id, cube.version, parent, op, cube.updated_at, actor, json.dumps(cube.to_dict())),
        )

    def edit(
        self,
        cube_id: str,
        *,
        profile: str = "default",
        actor: str = "user",
        op: str = "edit",
        embed: bool = True,
        **changes,
    ) -> MemCube:
        """Write a new version of a visible cube with `changes` applied; with `embed=False` a changed
        text is searchable by words at once and its new vector waits for `embed_pending`."""
        bad = set(changes) - set(EDITABLE) - {"ttl"}
        if bad:
            raise MemosError(f"These fields cannot be edited: {', '.join(sorted(bad))}.")
        if "ttl" in changes:
            ttl = changes.pop("ttl")
            changes["expires_at"] = None if ttl is None else _now() + ttl
        if "tags" in changes:
            changes["tags"] = sorted(set(changes["tags"]))
        old = self.get(cube_id, profile=profile, touch=False, include_inactive=op in ("restore", "rollback"))
        return self._new_version(old, op, actor, changes, embed)

    def _new_version(self, old: MemCube, op: str, actor: str, changes: dict, embed: bool = True) -> MemCube:
        new = MemCube(**{**old.to_dict(), **changes})
        new.version = old.version + 1
        new.updated_at = _now()
        new.content_hash = content_hash(new.content)
        content_changed = new.content != old.content or new.title != old.title or new.tags != old.tags
        reindex = new.state == "active" and (content_changed or old.state != "active")
        vectors = self._embed([new]) if embed and reindex and new.kind == "plaintext" else {}
        if vectors:
            new.embed_model = self.embedder.model_id
        elif reindex:
            new.embed_model = None  # its old vector is dropped below; embed_pending makes the new one
        with db.write_txn(self.conn):
            current = self.conn.execute("SELECT version FROM cubes WHERE id = ?", (old.id,)).fetchone()[0]
            if current != old.version:
                raise VaultError(f"Memory {old.id} changed while it was being edited; try again.")
            rowid = self._rowid(old.id)
            sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
            self.conn.execute(f"UPDATE cubes SET {sets} WHERE rowid = ?", (*new.to_row()[1:], rowid))
            if new.state != "active":
                self._unindex(rowid)
            elif reindex:
                self._unindex(rowid)
                self._index(new, vectors.get(new.id))
            self._snapshot(new, op, old.version, actor)
            self._audit(op, new.id, actor, {"version": new.version, "fields": sorted(changes)})
            if content_changed or new.state != "active":
                self._invalidate_dependents(new.id, actor)
        return new

    def forget(self, cube_id: str, *, profile: str = "default", actor: str = "user") -> MemCube:
        """Tombstone a cube: it disappears from every read path but its history stays."""
        return self.edit(cube_id, profile=profile, actor=actor, op="forget", state="deleted")

    def archive(self, cube_id: str, *, profile: str = "default", actor: str = "user", reason: str = "") -> MemCube:
        meta = {**self.get(cube_id, profile=profile, touch=False).meta}
        if reason:
            meta["archived_reason"] = reason
        return self.edit(cube_id, profile=profile, actor=actor, op="archive", state="archived", meta=meta)

    def restore(self, cube_id: str, *, profile: str = "default", actor: str = "user") -> MemCube:
        """Bring a forgotten or archived cube back as a new active version."""
        cube = self.get(cube_id, profile=profile, touch=False, include_inactive=True)
        if cube.state == "active":
            raise MemosError(f"Memory {cube_id} is not forgotten; nothing to restore.")
        return self.edit(cube_id, profile=profile, actor=actor, op="restore", state="active")

    def rollback(self, cube_id: str, version: int, *, profile: str = "default", actor: str = "user") -> MemCube:
        """Make the content and metadata of an earlier version current again (as a new version)."""
        snap = self.version(cube_id, version, profile=profile)
        changes = {k: snap[k] for k in EDITABLE if k in snap}
        return self.edit(cube_id, profile=profile, actor=actor, op="rollback", **changes)

    def touch(self, cube_ids: Iterable[str]) -> None:
        """Count an access to each cube (used by retrieval; not a new version)."""
        ids = list(cube_ids)
        if not ids:
            return
        now = _now()
        with db.write_txn(self.conn):
            self.conn.executemany(
                "UPDATE cubes SET access_count = access_count + 1, last_accessed_at = ? WHERE id = ?",
                [(now, i) for i in ids],
            )

    def link(self, src: str, dst: str, rel: str, at: float | None = None) -> None:
        """Link two cubes (`at`: when, kept as is for a link imported from another device)."""
        with db.write_txn(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO links VALUES (?, ?, ?, ?)", (src, dst, rel, _now() if at is None else at)
            )

    def links(self, cube_id: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT src, dst, rel, at FROM links WHERE src = ? OR dst = ? ORDER BY at",
            (cube_id, cube_id),
        ).fetchall()
        return [dict(src=s, dst=d, rel=r, at=a) for s, d, r, a in rows]

    def _invalidate_dependents(self, cube_id: str, actor: str) -> None:
        """Archive cubes built from this one (e.g. activation states) when it changes."""
        rows = self.conn.execute(
            "SELECT c.rowid, c.id FROM links l JOIN cubes c ON c.id = l.src"
            " WHERE l.dst = ? AND l.rel = 'built_from' AND c.state = 'active'",
            (cube_id,),
        ).fetchall()
        for rowid, dep in rows:
            self.conn.execute("UPDATE cubes SET state = 'archived', updated_at = ? WHERE rowid = ?", (_now(), rowid))
            self._unindex(rowid)
            self._audit("invalidate", dep, actor, {"because": cube_id})

    # ----- versions written on other devices (import, sync) ---------------------------------
    def import_versions(self, versions: Sequence[tuple], heads: Sequence[dict] = (), *, new: bool = False) -> None:
        """Store versions written on another device as they are, and make `heads` current.

        `versions` are rows of the version history, `(cube_id, version, parent_version, op, at,
        actor, snapshot JSON text)`, kept exactly: their ops, actors and times are the provenance.
        Each of `heads` (a cube's fields, as in a snapshot, with its local `version`,
        `access_count` and `last_accessed_at`) becomes the current state of its id: inserted when
        the id is new, else updated in place. A new cube, or one whose text or state changed, gets
        its word index (FTS) rebuilt here and no vector (`embed_model` cleared; `reembed` embeds
        it); cubes built from a changed cube are archived, as for a local edit. `new=True`: the
        caller knows no head's id is stored yet (a bulk import skips looking them up; an id that
        is stored after all fails on the unique constraint).

        Runs inside the caller's write transaction (`db.write_txn`) and never commits, so an
        import applies a whole bundle or nothing. The caller has verified what it passes.
        """
        rows: dict[str, tuple] = {}
        if heads and not new:
            for start in range(0, len(heads), _ID_BATCH):
                ids = [h["id"] for h in heads[start : start + _ID_BATCH]]
                marks = ", ".join("?" * len(ids))
                for row in self.conn.execute(
                    f"SELECT rowid, {', '.join(COLUMNS)} FROM cubes WHERE id IN ({marks})", ids
                ):
                    rows[row[1]] = row
        added = [h for h in heads if h["id"] not in rows] if rows else heads
        if added:
            self._insert_heads(added)
        for head in heads:
            if head["id"] in rows:
                self._replace_head(rows[head["id"]], head)
        self.conn.executemany("INSERT INTO cube_versions VALUES (?, ?, ?, ?, ?, ?, ?)", versions)

    def _insert_heads(self, heads: Sequence[dict]) -> None:
        """Insert new cubes from imported heads and index the active plaintext ones for words.

        Rowids are given, not left to SQLite (inside the write transaction nobody else inserts),
        so one statement over that rowid range fills the word index, without looking up ids."""
        (last,) = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM cubes").fetchone()
        self.conn.executemany(
            f"INSERT INTO cubes (rowid, {', '.join(COLUMNS)}) VALUES (?, {', '.join('?' * len(COLUMNS))})",
            [(rowid, *_head_row(h)) for rowid, h in enumerate(heads, start=last + 1)],
        )
        self.conn.execute(
            f"INSERT INTO cube_fts (rowid, {db.FTS_COLUMNS}) SELECT {db.FTS_ROW_SQL} FROM cubes"
            " WHERE rowid > ? AND kind = 'plaintext' AND state = 'active'",
            (last,),
        )

    def _replace_head(self, row: tuple, head: dict) -> None:
        rowid, old = row[0], MemCube.from_row(row[1:])
        new = _head_cube(head, old.embed_model)
        text_changed = (new.title, new.content, new.tags, new.kind) != (old.title, old.content, old.tags, old.kind)
        reindex = text_changed or new.state != old.state
        if reindex:
            new.embed_model = None
        sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
        self.conn.execute(f"UPDATE cubes SET {sets} WHERE rowid = ?", (*new.to_row()[1:], rowid))
        if reindex:
            self._unindex(rowid)
            self._index(new, None)
            self._invalidate_dependents(new.id, "sync")

    def expire(self) -> int:
        """Tombstone cubes whose TTL has passed; return how many."""
        rows = self.conn.execute(
            f"{SELECT_CUBE} WHERE state = 'active' AND expires_at IS NOT NULL AND expires_at <= ?",
            (_now(),),
        ).fetchall()
        for row in rows:
            self._new_version(MemCube.from_row(row), "expire", "system", {"state": "deleted"})
        return len(rows)

    # ----- reads ---------------------------------------------------------------------------
    def get(
        self, cube_id: str, *, profile: str = "default", touch: bool = True, include_inactive: bool = False
    ) -> MemCube:
        """One cube visible to `profile`; deleted/archived ones only with include_inactive."""
        row = self.conn.execute(f"{SELECT_CUBE} WHERE id = ?", (cube_id,)).fetchone()
        if row is None:
            raise NotFound(f"No memory with id {cube_id}.")
        cube = MemCube.from_row(row)
        hidden = cube.owner != profile and cube.visibility != "shared"
        expired = cube.expires_at is not None and cube.expires_at <= _now() and cube.state == "active"
        if hidden or ((cube.state != "active" or expired) and not include_inactive):
            raise NotFound(f"No memory with id {cube_id}.")
        if touch:
            self.touch([cube_id])
        return cube

    def get_many(self, rowids: Sequence[int], *, profile: str = "default") -> dict[int, MemCube]:
        """Visible cubes by rowid (the search primitives return rowids)."""
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = self.conn.execute(
            f"SELECT rowid, {', '.join(COLUMNS)} FROM cubes WHERE rowid IN ({marks}) AND "
            + VISIBLE.replace(":now", "?").replace(":profile", "?"),
            (*rowids, _now(), profile),
        ).fetchall()
        return {r[0]: MemCube.from_row(r[1:]) for r in rows}

    def cubes(
        self,
        *,
        profile: str = "default",
        kind: str | None = None,
        tag: str | None = None,
        state: str = "active",
        source_path: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MemCube]:
        """Cubes visible to `profile`, newest first, filtered by kind, tag, state or source file."""
        where = ["(owner = :profile OR visibility = 'shared')", "state = :state"]
        if state == "active":
            where.append("(expires_at IS NULL OR expires_at > :now)")
        if kind:
            where.append("kind = :kind")
        if tag:
            where.append("EXISTS (SELECT 1 FROM json_each(tags) WHERE value = :tag)")
        if source_path:
            where.append("json_extract(source, '$.path') = :path")
        rows = self.conn.execute(
            f"{SELECT_CUBE} WHERE {' AND '.join(where)} ORDER BY updated_at DESC LIMIT :limit OFFSET :offset",
            dict(
                profile=profile,
                state=state,
                now=_now(),
                kind=kind,
                tag=tag,
                path=source_path,
                limit=limit,
                offset=offset,
            ),
        ).fetchall()
        return [MemCube.from_row(r) for r in rows]

    def history(self, cube_id: str, *, profile: str = "default") -> list[dict]:
        """Every version of a cube, oldest first."""
        self.get(cube_id, profile=profile, touch=False, include_inactive=True)
        rows = self.conn.execute(
            "SELECT version, parent_version, op, at, actor, snapshot FROM cube_versions"
            " WHERE cube_id = ? ORDER BY version",
            (cube_id,),
        ).fetchall()
        return [
            dict(version=v, parent_version=p, op=op, at=at, actor=a, snapshot=json.loads(s))
            for v, p, op, at, a, s in rows
        ]

    def version(self, cube_id: str, version: int, *, profile: str = "default") -> dict:
        for entry in self.history(cube_id, profile=profile):
            if entry["version"] == version:
                return entry["snapshot"]
        raise NotFound(f"Memory {cube_id} has no version {version}.")

    def stats(self) -> dict:
        by = self.conn.execute(
            "SELECT kind, state, count(*) FROM cubes GROUP BY kind, state ORDER BY kind, state"
        ).fetchall()
        versions = self.conn.execute("SELECT count(*) FROM cube_versions").fetchone()[0]
        audit = self.conn.execute("SELECT count(*) FROM audit").fetchone()[0]
        vectors = self.vector_count()
        size = sum(f.stat().st_size for f in self.data_dir.glob(paths.VAULT_DB + "*"))
        return {
            "cubes": {f"{k}/{s}": n for k, s, n in by},
            "versions": versions,
            "audit_entries": audit,
            "vectors": vectors,
            "embed_model": self.get_setting("embed_model"),
            "encrypted": self._data_key is not None,
            "db_bytes": size,
            "device_id": self.device_id,
        }

    # ----- indexes -------------------------------------------------------------------------
    def _index(self, cube: MemCube, vector) -> None:
        if cube.kind != "plaintext" or cube.state != "active":
            return
        rowid = self._rowid(cube.id)
        self.conn.execute(
            f"INSERT INTO cube_fts (rowid, {db.FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (rowid, cube.title, cube.content, " ".join(cube.tags), context_text(cube)),
        )
        if vector is not None:
            self._put_vector(rowid, vector)

    def _unindex(self, rowid: int) -> None:
        self.conn.execute("DELETE FROM cube_fts WHERE rowid = ?", (rowid,))
        if self._has_vec_table():
            self.conn.execute("DELETE FROM cube_vec WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_bits WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_float WHERE rowid = ?", (rowid,))

    def _put_vector(self, rowid: int, vector: bytes) -> None:
        """Store a float32 vector for exact KNN (vec0), the coarse pass (bits) and rescoring."""
        import numpy as np

        bits = np.packbits(np.frombuffer(vector, dtype=np.float32) > 0, bitorder="little").tobytes()
        self.conn.execute("INSERT INTO cube_vec (rowid, embedding) VALUES (?, ?)", (rowid, vector))
        self.conn.execute("INSERT OR REPLACE INTO cube_vec_bits VALUES (?, ?)", (rowid, bits))
        self.conn.execute("INSERT OR REPLACE INTO cube_vec_float VALUES (?, ?)", (rowid, vector))
        if self._bits is not None:
            self._bits_pending.append((rowid, bits))

    def _has_vec_table(self) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cube_vec'").fetchone())

    def vector_count(self) -> int:
        if not self._has_vec_table():
            return 0
        return self.conn.execute("SELECT count(*) FROM cube_vec").fetchone()[0]

    def _embed(self, cubes: Sequence[MemCube]) -> dict[str, bytes]:
        """Vectors (float32 bytes) for cubes' text, or {} when no embedder is set."""
        if self.embedder is None or not cubes:
            return {}
        self.sync_vectors()
        import numpy as np

        vecs = self.embedder.embed([embed_text(c) for c in cubes])
        return {c.id: np.asarray(v, dtype=np.float32).tobytes() for c, v in zip(cubes, vecs, strict=True)}

    def sync_vectors(self, reembed: bool = True) -> None:
        """Create the vector table for the embedder's dimension; a changed model re-embeds (now,
        or with `reembed=False` later, through `embed_pending`)."""
        model, dim = self.embedder.model_id, self.embedder.dim
        if self.get_setting("embed_model") == model and self._has_vec_table():
            return
        with db.write_txn(self.conn):
            self.conn.execute("DROP TABLE IF EXISTS cube_vec")
            self.conn.execute("DELETE FROM cube_vec_bits")
            self.conn.execute("DELETE FROM cube_vec_float")
            self._bits = None
            self.conn.execute(
                f"CREATE VIRTUAL TABLE cube_vec USING vec0(embedding float[{dim}] distance_metric=cosine)"
            )
            self.conn.execute("UPDATE cubes SET embed_model = NULL")
            self._set_setting("embed_model", model)
            self._set_setting("embed_dim", dim)
        if reembed:
            self.reembed()

    def reembed(self, batch: int = 64, progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every active plaintext cube that has no vector from the current model, `batch`
        at a time (each batch its own transaction); `progress(done, total)` after each."""
        if self.embedder is None:
            return 0
        total = self.pending_embeddings()
        done = 0
        while n := self.embed_pending(batch):
            done += n
            if progress:
                progress(done, max(total, done))
        return done

    def pending_embeddings(self) -> int:
        """Active plaintext cubes still without a vector from the current model."""
        model = self.embedder.model_id if self.embedder is not None else None
        return self.conn.execute(
            "SELECT count(*) FROM cubes WHERE kind = 'plaintext' AND state = 'active'"
            " AND (embed_model IS NULL OR embed_model IS NOT ?)",
            (model,),
        ).fetchone()[0]

    def embed_pending(self, limit: int = 64) -> int:
        """Embed up to `limit` cubes that wait for a vector (one embedder call, one transaction);
        return how many. Cubes without any vector come first (found by index)."""
        if self.embedder is None:
            return 0
        self.sync_vectors()
        model = self.embedder.model_id
        select = f"SELECT rowid, {', '.join(COLUMNS)} FROM cubes WHERE kind = 'plaintext' AND state = 'active'"
        rows = self.conn.execute(f"{select} AND embed_model IS NULL LIMIT ?", (limit,)).fetchall()
        if not rows:
            rows = self.conn.execute(f"{select} AND embed_model != ? LIMIT ?", (model, limit)).fetchall()
        if not rows:
            return 0
        import numpy as np

        cubes = [MemCube.from_row(r[1:]) for r in rows]
        vecs = self.embedder.embed([embed_text(c) for c in cubes])
        with db.write_txn(self.conn):
            for cube, (rowid, *_), vec in zip(cubes, rows, vecs, strict=True):
                # fetchall: a cursor left unfinished across COMMIT pins this connection to an old snapshot
                current = self.conn.execute("SELECT content_hash, state FROM cubes WHERE rowid = ?", (rowid,))
                if current.fetchall() != [(cube.content_hash, "active")]:
                    continue  # changed while it was embedded: its new text waits for the next call
                self.conn.execute("DELETE FROM cube_vec WHERE rowid = ?", (rowid,))
                self._put_vector(rowid, np.asarray(vec, dtype=np.float32).tobytes())
                self.conn.execute("UPDATE cubes SET embed_model = ? WHERE rowid = ?", (model, rowid))
        return len(rows)

    def fts(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Rowids matching `query` in FTS5 with their bm25 score (higher is better). No ACL here."""
        q = fts_query(query)
        if not q:
            return []
        rows = self.conn.execute(
            f"SELECT rowid, bm25(cube_fts, {FTS_WEIGHTS}) FROM cube_fts WHERE cube_fts MATCH ?"
            f" ORDER BY bm25(cube_fts, {FTS_WEIGHTS}) LIMIT ?",
            (q, k),
        ).fetchall()
        return [(r, -s) for r, s in rows]

    def knn(self, vector, k: int = 50) -> list[tuple[int, float]]:
        """Rowids nearest to `vector` with their cosine distance. No ACL here.

        Exact in small vaults; from COARSE_MIN_VECTORS on, a Hamming pass over sign bits picks
        max(HAMMING_SHORTLIST x k, HAMMING_MIN) candidates, the query against their sign bits keeps
        max(RESCORE_SHORTLIST x k, RESCORE_MIN), and their float vectors are rescored exactly.
        """
        if self.embedder is not None:
            self.sync_vectors()  # vectors of another model are replaced before comparing
        if not self._has_vec_table():
            return []
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        rowids, bits = self._coarse_index()
        if len(rowids) < COARSE_MIN_VECTORS:
            rows = self.conn.execute(
                "SELECT rowid, distance FROM cube_vec WHERE embedding MATCH ? AND k = ?",
                (query.tobytes(), min(k, 4096)),
            ).fetchall()
            return [(r, d) for r, d in rows]
        qbits = np.packbits(query > 0, bitorder="little").view(np.uint64)
        hamming = np.bitwise_count(bits[0] ^ qbits[0]).astype(np.uint16)
        for word in range(1, len(qbits)):
            hamming += np.bitwise_count(bits[word] ^ qbits[word])
        # Distances are small integers: a histogram gives the cut-off for the shortlist size.
        size = max(HAMMING_SHORTLIST * k, HAMMING_MIN)
        cutoff = int(np.searchsorted(np.cumsum(np.bincount(hamming)), size))
        picked = np.flatnonzero(hamming <= cutoff)
        if len(picked) > 2 * size:  # many ties at the cut-off
            picked = picked[np.argpartition(hamming[picked], size - 1)[:size]]
        keep = max(RESCORE_SHORTLIST * k, RESCORE_MIN)
        if len(picked) > keep:  # the float query against the candidates' sign bits (0/1: same order as ±1)
            signs = np.unpackbits(np.ascontiguousarray(bits[:, picked].T).view(np.uint8), axis=1, bitorder="little")
            scores = np.einsum("ij,j->i", signs[:, : len(query)].astype(np.float32), query)
            picked = picked[np.argpartition(-scores, keep - 1)[:keep]]
        shortlist = np.unique(rowids[picked])
        marks = ",".join("?" * len(shortlist))
        rows = self.conn.execute(
            f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({marks})",
            shortlist.tolist(),
        ).fetchall()
        return _nearest(rows, query, k)

    def valid_between(self, windows: Sequence[tuple[float, float]], vector, k: int = 50) -> list[tuple[int, float]]:
        """Rowids of active cubes that started to hold (`valid_from`, else `created_at`) in one of
        `windows` ([start, end) timestamps), nearest to `vector` first, with their cosine distance;
        at most DATED_MAX are compared. No ACL here."""
        import numpy as np

        rowids: dict[int, None] = {}  # windows may overlap
        for start, end in windows:
            rowids.update(
                dict.fromkeys(
                    r
                    for (r,) in self.conn.execute(
                        f"SELECT rowid FROM cubes WHERE {db.VALID_START} >= ? AND {db.VALID_START} < ?"
                        " AND state = 'active' LIMIT ?",
                        (start, end, DATED_MAX),
                    )
                )
            )
        wanted = list(rowids)[:DATED_MAX]
        rows = []
        for begin in range(0, len(wanted), _ID_BATCH):
            batch = wanted[begin : begin + _ID_BATCH]
            rows += self.conn.execute(
                f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({', '.join('?' * len(batch))})", batch
            ).fetchall()
        return _nearest(rows, np.asarray(vector, dtype=np.float32), k)

    def _coarse_index(self):
        """(rowids, sign bits as uint64 words x vectors) of every vector, cached; reloaded when
        another connection has written. Word-major, so each word is one contiguous scan."""
        import numpy as np

        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._bits is None or version != self._data_version:
            rows = self.conn.execute("SELECT rowid, bits FROM cube_vec_bits").fetchall()
            self._bits_pending.clear()
            self._data_version = version
            self._bits = self._bits_matrix(rows)
        elif self._bits_pending:
            rowids, bits = self._bits
            extra = self._bits_matrix(self._bits_pending)
            self._bits_pending.clear()
            self._bits = (np.concatenate([rowids, extra[0]]), np.hstack([bits, extra[1]]))
        return self._bits

    def _bits_matrix(self, rows: Sequence[tuple[int, bytes]]):
        import numpy as np

        dim = self.get_setting("embed_dim") or 0
        words = (dim + 63) // 64
        rowids = np.array([r for r, _ in rows], dtype=np.int64)
        padded = b"".join(b.ljust(words * 8, b"\0") for _, b in rows)
        matrix = np.frombuffer(padded, dtype=np.uint64).reshape(len(rows), words)
        return rowids, np.ascontiguousarray(matrix.T)


_ID_BATCH = 500  # ids per `IN (...)` list
DATED_MAX = 4000  # cubes valid in a date window that `valid_between` compares with the query


def _nearest(rows: list[tuple[int, bytes]], query, k: int) -> list[tuple[int, float]]:
    """The `k` of `rows` (rowid, float32 vector bytes) nearest to `query`, with cosine distance."""
    import numpy as np

    if not rows:
        return []
    matrix = np.frombuffer(b"".join(e for _, e in rows), np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    distance = 1.0 - np.einsum("ij,j->i", matrix, query) / np.where(norms == 0, 1.0, norms)
    return [(rows[i][0], float(distance[i])) for i in np.argsort(distance)[:k]]


def _head_row(head: dict) -> tuple:
    """The `cubes` row of a new imported head: `_head_cube(head, None).to_row()`, built directly."""
    return MemCube.row_of(head, embed_model=None, content_hash=content_hash(head.get("content", "")))


def _head_cube(head: dict, embed_model: str | None) -> MemCube:
    """An imported head as a cube, with this vault's content hash and `embed_model`; fields the
    head lacks take MemCube's defaults, fields it has beyond COLUMNS are ignored."""
    fields = {c: head[c] for c in COLUMNS if c in head}
    fields.update(embed_model=embed_model, content_hash=content_hash(fields.get("content", "")))
    return MemCube(**fields)


def context_text(cube: MemCube) -> str:
    """The start of `meta["context"]` that is embedded and indexed with the cube."""
    return str(cube.meta.get("context") or "")[: db.CONTEXT_CHARS]


def embed_text(cube: MemCube) -> str:
    """The text a cube is embedded from: its title (heading path), content and `meta["context"]`.

    The context is the text a cube only makes sense with (for a chat turn, the turn before it:
    "Yeah, it was amazing!" says nothing on its own). It comes last so that a model truncating
    its input drops context before content. Its words are indexed too, at a lower weight
    (`FTS_WEIGHTS`): a turn answering "What genre is it?" is found by the question's words.
    """
    parts = [cube.title, cube.content, context_text(cube)]
    return "\n".join(p for p in parts if p)
