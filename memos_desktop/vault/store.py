"""MemVault: the encrypted store of MemCubes, their versions, links, audit log and settings.

Owns every read and write of the database. Every change writes a new version row; delete is a
tombstone; restore and rollback are new versions too. Every read path applies the access rules
(a profile sees its own cubes and shared ones; expired and deleted cubes are never returned).
The audit log is hash-chained: each entry's hash covers the previous hash and the entry itself.
Versions written on other devices arrive through `import_versions`, in the importer's transaction.
Search *primitives* (FTS5, vector KNN) live here; ranking and fusion live in `operator.py`.
"""

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos_desktop import paths
from memos_desktop.errors import CorruptVault, MemosError, NotFound, VaultError
from memos_desktop.vault import db, files, keys, migrations
from memos_desktop.vault.backlog import EmbeddingBacklog
from memos_desktop.vault.blobs import BlobStore
from memos_desktop.vault.cube import COLUMNS, EDITABLE, KINDS, MemCube, check_numbers
from memos_desktop.vault.index import _ID_BATCH, VaultIndex, fts_query  # noqa: F401  (fts_query: re-exported)

if TYPE_CHECKING:
    from memos_desktop.embed import Embedder

SELECT_CUBE = f"SELECT {', '.join(COLUMNS)} FROM cubes"
VISIBLE = (
    "state = 'active' AND (expires_at IS NULL OR expires_at > :now) AND (owner = :profile OR visibility = 'shared')"
)
GENESIS = "0" * 64


def _now() -> float:
    return time.time()


def _ulid() -> str:
    from ulid import ULID

    return str(ULID())


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Vault(VaultIndex, EmbeddingBacklog):
    """An open vault. Use `Vault.open(...)` or `Vault.create(...)`; close it when done."""

    def __init__(
        self,
        conn: db.Connection,
        data_dir: Path,
        data_key: bytes | None,
        vault_id: str,
        embedder: "Embedder | None" = None,
    ) -> None:
        self.conn = conn
        self.data_dir = data_dir
        self.vault_id = vault_id
        self._data_key = data_key
        self.embedder = embedder
        self._bits = None  # every vector's sign bits and int8 codes (index.VectorCache), loaded by knn
        self._bits_pending: set[int] = set()  # rowids whose vector this connection wrote since
        self._data_version = None
        self._bits_changes: int | None = None  # vec_changes when the cache last looked (None: inside a transaction)
        self._bits_seq: int | None = None  # the last vec_changed entry the cache took in
        self.vector_loads = 0  # how many times the cache of every vector was loaded in full
        self.blobs = BlobStore(data_dir / "blobs", keys.subkey(data_key, "blobs") if data_key else None)
        self.device_id = self._device_id()

    # ----- opening -------------------------------------------------------------------------
    @classmethod
    def exists(cls, data_dir: Path) -> bool:
        return (Path(data_dir) / paths.VAULT_HEADER).exists() or (Path(data_dir) / paths.VAULT_DB).exists()

    @classmethod
    def create(cls, data_dir: Path, passphrase: str, embedder: "Embedder | None" = None) -> "Vault":
        """Create a new encrypted vault in `data_dir` (which must not hold one already)."""
        data_dir = Path(data_dir)
        if cls.exists(data_dir):
            raise VaultError(f"A vault already exists in {data_dir}.")
        files.private_dir(data_dir)
        vault_id = _ulid()
        data_key = keys.create_header(data_dir / paths.VAULT_HEADER, passphrase, vault_id)
        files.create_private(data_dir / paths.VAULT_DB)
        return cls._connect(data_dir, data_key, vault_id, embedder)

    @classmethod
    def set_aside(cls, data_dir: Path) -> Path:
        """Move the vault's files (key, database, WAL, blobs) into a new `replaced-<time>` folder
        of `data_dir`, so that a new vault can be created there; return that folder."""
        import tempfile

        data_dir = Path(data_dir)
        aside = Path(tempfile.mkdtemp(prefix=time.strftime("replaced-%Y%m%d-%H%M%S-"), dir=data_dir))  # 0700
        for name in (paths.VAULT_HEADER, paths.VAULT_DB, f"{paths.VAULT_DB}-wal", f"{paths.VAULT_DB}-shm", "blobs"):
            if (data_dir / name).exists():
                os.replace(data_dir / name, aside / name)
        return aside

    @classmethod
    def open(cls, data_dir: Path, passphrase: str, embedder: "Embedder | None" = None) -> "Vault":
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
        check_database_file(data_dir)
        data_key, vault_id = keys.unwrap(header, passphrase)
        return cls._connect(data_dir, data_key, vault_id, embedder)

    @classmethod
    def open_plain(cls, db_path: Path, embedder: "Embedder | None" = None) -> "Vault":
        """An unencrypted vault, only for benchmarks comparing against encryption."""
        db_path = Path(db_path)
        conn = db.connect(str(db_path), None)
        migrations.migrate(conn)
        return cls(conn, db_path.parent, None, "plain", embedder)

    @classmethod
    def _connect(cls, data_dir: Path, data_key: bytes, vault_id: str, embedder: "Embedder | None") -> "Vault":
        conn = db.connect(str(data_dir / paths.VAULT_DB), keys.subkey(data_key, "db"))
        try:
            migrations.migrate(conn)
        except MemosError:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            raise CorruptVault(f"The vault in {data_dir} is damaged: {exc}") from exc
        files.lock_down(data_dir)
        vault = cls(conn, data_dir, data_key, vault_id, embedder)
        vault.expire()  # memories whose TTL passed while the vault was closed
        return vault

    def close(self) -> None:
        """Checkpoint the write-ahead log into vault.db (so the file alone holds every write) and
        close; closing twice is allowed."""
        with contextlib.suppress(Exception):  # busy: another process still reads; it checkpoints later
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self.conn.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_integrity(self) -> list[str]:
        """Damage found by SQLite's integrity check, each naming its page and table; [] when whole."""
        from memos_desktop.vault.integrity import check_database

        return check_database(self.conn)

    def backup(self, dest: Path) -> dict[str, Any]:
        """A consistent, encrypted copy of the vault (with its key file) in the new folder `dest`."""
        from memos_desktop.vault.integrity import backup

        return backup(self, dest)

    def change_passphrase(self, old: str, new: str) -> None:
        keys.rewrap(self.data_dir / paths.VAULT_HEADER, old, new)

    # ----- transactions --------------------------------------------------------------------
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction (`db.write_txn`): inside an open one, a savepoint of it."""
        return db.write_txn(self.conn)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the vault's connection."""
        return bool(self.conn.in_transaction)

    @contextlib.contextmanager
    def bulk_write(self) -> Iterator[None]:
        """A write transaction for applying a whole bundle: foreign keys are checked at commit
        (versions may arrive before their cube) and the page cache is capped while it streams."""
        with self.bounded_cache(), db.write_txn(self.conn):
            self.conn.execute("PRAGMA defer_foreign_keys = ON")
            yield

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """One consistent read of the vault for the whole block (a deferred read transaction),
        with the page cache capped so streaming the whole vault keeps memory bounded."""
        with self.bounded_cache():
            self.conn.execute("BEGIN")
            try:
                yield
            finally:
                self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def bounded_cache(self, kib: int = 64 * 1024) -> Iterator[None]:
        """Cap SQLite's page cache while streaming the whole vault once, so memory stays bounded."""
        (before,) = self.conn.execute("PRAGMA cache_size").fetchone()
        self.conn.execute(f"PRAGMA cache_size = -{kib}")
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {before}")

    def data_version(self) -> int:
        """A number that changes when another connection commits to the database."""
        return self.conn.execute("PRAGMA data_version").fetchall()[0][0]

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
    def _audit(self, action: str, cube_id: str | None, actor: str, detail: dict[str, Any] | None = None) -> None:
        row = self.conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        at = _now()
        body = json.dumps([prev, at, action, cube_id, actor, detail or {}], sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()
        self.conn.execute(
            "INSERT INTO audit (at, action, cube_id, actor, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, action, cube_id, actor, json.dumps(detail or {}, sort_keys=True), prev, digest),
        )

    def audit(
        self, action: str, cube_id: str | None = None, actor: str = "user", detail: dict[str, Any] | None = None
    ) -> None:
        """Record one event (a read, an export, ...) in the hash-chained audit log."""
        with db.write_txn(self.conn):
            self._audit(action, cube_id, actor, detail)

    def record_read(self, cube_ids: Iterable[str], via: str, actor: str = "user") -> None:
        """Record in the audit log that memories were shown (`via`: the command or screen)."""
        with db.write_txn(self.conn):
            for cube_id in cube_ids:
                self._audit("read", cube_id, actor, {"via": via})

    def audit_log(self, limit: int = 50, cube_id: str | None = None, actor: str | None = None) -> list[dict[str, Any]]:
        """The last `limit` entries, oldest first; only those about `cube_id` / by `actor` when given."""
        sql = "SELECT seq, at, action, cube_id, actor, detail, prev_hash, hash FROM audit"
        where = [(c, v) for c, v in (("cube_id = ?", cube_id), ("actor = ?", actor)) if v]
        if where:
            sql += " WHERE " + " AND ".join(c for c, _ in where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self.conn.execute(sql, (*(v for _, v in where), limit)).fetchall()
        names = ("seq", "at", "action", "cube_id", "actor", "detail", "prev_hash", "hash")
        out = [dict(zip(names, r, strict=True)) for r in rows]
        for entry in out:
            entry["detail"] = json.loads(entry["detail"])
        return out[::-1]

    def verify_audit(self) -> int:
        """Check the whole hash chain and that no sequence number is missing; return the number of
        entries, or raise CorruptVault."""
        prev = GENESIS
        count = 0
        for seq, at, action, cube_id, actor, detail, prev_hash, digest in self.conn.execute(
            "SELECT seq, at, action, cube_id, actor, detail, prev_hash, hash FROM audit ORDER BY seq"
        ):
            if seq != count + 1:
                raise CorruptVault(
                    f"The audit log has a gap: entries {count + 1} to {seq - 1} are missing (removed or lost)."
                )
            try:
                body = json.dumps([prev, at, action, cube_id, actor, json.loads(detail)], sort_keys=True)
            except ValueError:
                body = ""
            if not body or prev_hash != prev or hashlib.sha256(body.encode()).hexdigest() != digest:
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
        source: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
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

    def add_many(self, items: Sequence[dict[str, Any]], actor: str = "user", embed: bool = True) -> list[MemCube]:
        """Store several new cubes in one transaction, embedding their text in one batch; with
        `embed=False` they are searchable by words at once and wait for `embed_pending`."""
        now = _now()
        cubes = []
        for item in items:
            fields = {k: v for k, v in item.items() if v is not None}
            if fields.get("kind", "plaintext") not in KINDS:
                raise MemosError(f"Unknown memory kind {fields['kind']!r}; use one of {', '.join(KINDS)}.")
            try:
                check_numbers(fields)
            except ValueError as exc:
                raise MemosError(str(exc)) from None
            fields.setdefault("id", _ulid())
            fields["tags"] = sorted(set(fields.get("tags", [])))
            cube = MemCube(created_at=now, updated_at=now, **fields)
            cube.content_hash = content_hash(cube.content)
            cubes.append(cube)
        vectors = self._embed([c for c in cubes if c.kind == "plaintext"]) if embed else {}
        for cube in cubes:
            if cube.id in vectors and self.embedder is not None:
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
        **changes: Any,
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
        try:
            check_numbers(changes)
        except ValueError as exc:
            raise MemosError(str(exc)) from None
        old = self.get(cube_id, profile=profile, touch=False, include_inactive=op in ("restore", "rollback"))
        return self._new_version(old, op, actor, changes, embed)

    def _new_version(self, old: MemCube, op: str, actor: str, changes: dict[str, Any], embed: bool = True) -> MemCube:
        new = MemCube(**{**old.to_dict(), **changes})
        new.version = old.version + 1
        new.updated_at = _now()
        new.content_hash = content_hash(new.content)
        content_changed = new.content != old.content or new.title != old.title or new.tags != old.tags
        reindex = new.state == "active" and (content_changed or old.state != "active")
        vectors = self._embed([new]) if embed and reindex and new.kind == "plaintext" else {}
        if vectors and self.embedder is not None:
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

    def links(self, cube_id: str) -> list[dict[str, Any]]:
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
    def import_versions(
        self, versions: Sequence[tuple[Any, ...]], heads: Sequence[dict[str, Any]] = (), *, new: bool = False
    ) -> None:
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
        rows: dict[str, tuple[Any, ...]] = {}
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

    def _insert_heads(self, heads: Sequence[dict[str, Any]]) -> None:
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
        for rowid, h in enumerate(heads, start=last + 1):
            if h.get("kind", "plaintext") == "plaintext" and h.get("state", "active") == "active":
                self._index_script(rowid, h.get("title", ""), h.get("content", ""), h.get("tags", []))

    def _replace_head(self, row: tuple[Any, ...], head: dict[str, Any]) -> None:
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
        """Purge every memory whose TTL has passed (any state); return how many. See `_purge`."""
        now = _now()
        rows = self.conn.execute(
            f"SELECT rowid, {', '.join(COLUMNS)} FROM cubes WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        ).fetchall()
        for row in rows:
            with db.write_txn(self.conn):
                self._purge(row[0], MemCube.from_row(row[1:]), now)
        return len(rows)

    def _purge(self, rowid: int, cube: MemCube, now: float) -> None:
        """Erase an expired cube's text from its row, every version of it and the indexes.

        What stays is a tombstone without content (its id, kind, owner, times and a `purged` note),
        its version list with each snapshot emptied the same way, and a `purge` audit entry. The
        versions' unshared sync events are dropped so that they are tagged anew from the emptied
        snapshots: a peer receives the purge, never the text. `expires_at` is cleared on the
        tombstone, so a purged cube is purged once.
        """
        purged = {"reason": "ttl", "expired_at": cube.expires_at, "at": now}
        stub = _purged(cube.to_dict(), purged)
        new = MemCube(**{**stub, "version": cube.version + 1, "updated_at": now, "expires_at": None})
        new.content_hash = content_hash("")
        sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
        self.conn.execute(f"UPDATE cubes SET {sets} WHERE rowid = ?", (*new.to_row()[1:], rowid))
        self._unindex(rowid)
        versions = self.conn.execute(
            "SELECT version, snapshot FROM cube_versions WHERE cube_id = ?", (cube.id,)
        ).fetchall()
        self.conn.executemany(
            "UPDATE cube_versions SET snapshot = ? WHERE cube_id = ? AND version = ?",
            [(json.dumps(_purged(json.loads(snap), purged)), cube.id, v) for v, snap in versions],
        )
        self.conn.execute("DELETE FROM sync_events WHERE cube_id = ? AND shared = 0", (cube.id,))
        self._snapshot(new, "expire", cube.version, "system")
        if cube.payload_ref:
            with contextlib.suppress(OSError):
                self.blobs.delete(cube.payload_ref)
        self._audit("purge", cube.id, "system", purged)
        self._invalidate_dependents(cube.id, "system")

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
        expired = cube.expires_at is not None and cube.expires_at <= _now()  # never shown, whatever its state
        if hidden or expired or (cube.state != "active" and not include_inactive):
            raise NotFound(f"No memory with id {cube_id}.")
        if "purged" in cube.meta:
            raise NotFound(f"No memory with id {cube_id}: it expired and was purged.")
        if touch:
            self.touch([cube_id])
        return cube

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of active cubes starting with `prefix` (ULIDs are upper case), at most `limit`;
        whoever asked resolves them through `get`, which applies the access rules."""
        rows = self.conn.execute(
            "SELECT id FROM cubes WHERE id LIKE ? AND state = 'active' LIMIT ?", (prefix.upper() + "%", limit)
        ).fetchall()
        return [r[0] for r in rows]

    def state_of(self, cube_id: str) -> tuple[str, str] | None:
        """`(state, content_hash)` of a stored cube whatever its visibility, or None when unknown."""
        return self.conn.execute("SELECT state, content_hash FROM cubes WHERE id = ?", (cube_id,)).fetchone()

    def is_visible(self, cube_id: str, *, profile: str = "default") -> bool:
        """Whether `get(cube_id, profile=profile)` would find the cube (active, unexpired, visible)."""
        row = self.conn.execute(
            f"SELECT 1 FROM cubes WHERE id = :id AND {VISIBLE}", dict(id=cube_id, now=_now(), profile=profile)
        ).fetchone()
        return row is not None

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
        where.append("(expires_at IS NULL OR expires_at > :now)")
        if state != "active":
            where.append("json_extract(meta, '$.purged') IS NULL")
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

    def history(self, cube_id: str, *, profile: str = "default") -> list[dict[str, Any]]:
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

    def version(self, cube_id: str, version: int, *, profile: str = "default") -> dict[str, Any]:
        for entry in self.history(cube_id, profile=profile):
            if entry["version"] == version:
                return entry["snapshot"]
        raise NotFound(f"Memory {cube_id} has no version {version}.")

    def change_mark(self) -> int:
        """A number that grows with every version written (here or by another process, sync
        included): pass it to `changes_since` to learn what changed after it."""
        return self.conn.execute("SELECT coalesce(max(rowid), 0) FROM cube_versions").fetchone()[0]

    def changes_since(self, mark: int) -> tuple[int, list[dict[str, Any]]]:
        """The cubes given a new version after `mark`, and the new mark. Each is `id`, `owner`,
        `shared` and `tags`: those of its current version and of the version before the change
        (a tag taken off is a change to that tag too)."""
        rows = self.conn.execute(
            "SELECT rowid, cube_id, version, snapshot FROM cube_versions WHERE rowid > ? ORDER BY rowid", (mark,)
        ).fetchall()
        if not rows:
            return mark, []
        first: dict[str, int] = {}
        changed: dict[str, dict[str, Any]] = {}
        for _, cube_id, version, snapshot in rows:
            snap = json.loads(snapshot)
            first.setdefault(cube_id, version)
            entry = changed.setdefault(cube_id, {"id": cube_id, "tags": set()})
            entry.update(owner=snap.get("owner", "default"), shared=snap.get("visibility") == "shared")
            entry["tags"].update(snap.get("tags", []))
        for cube_id, version in first.items():
            if version > 1:
                before = self.conn.execute(
                    "SELECT snapshot FROM cube_versions WHERE cube_id = ? AND version = ?", (cube_id, version - 1)
                ).fetchone()
                if before:
                    changed[cube_id]["tags"].update(json.loads(before[0]).get("tags", []))
        return rows[-1][0], [{**e, "tags": sorted(e["tags"])} for e in changed.values()]

    def stats(self) -> dict[str, Any]:
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


RECOVER = (
    "restore vault.db and vault.key together from a backup (`memos-desktop backup`), or move both aside,"
    " run `memos-desktop init` and import an export bundle (`memos-desktop import`)"
)


def check_database_file(data_dir: Path) -> None:
    """Raise CorruptVault when the key header is present but its database is missing, empty or cut short.

    Opening would otherwise let SQLite create a new, empty database beside the old key: the user's
    memories would silently seem gone and the next write would make it a real (empty) vault.
    """
    db_path = Path(data_dir) / paths.VAULT_DB
    header = Path(data_dir) / paths.VAULT_HEADER
    try:
        size = db_path.stat().st_size
    except FileNotFoundError:
        raise CorruptVault(
            f"The vault key {header} is present but its database {db_path} is missing; nothing was created. "
            f"To recover, {RECOVER}."
        ) from None
    wal = Path(f"{db_path}-wal")
    if size == 0 and wal.exists() and wal.stat().st_size > 0:
        return  # every page still in the write-ahead log (a crash before the first checkpoint)
    if size == 0:
        problem = "is empty"
    elif size % 512:  # SQLite writes whole pages (a power of two, at least 512 bytes)
        problem = f"is truncated ({size} bytes, not a whole number of pages)"
    else:
        return
    raise CorruptVault(f"The vault database {db_path} {problem}; nothing was changed. To recover, {RECOVER}.")


def _purged(fields: dict[str, Any], note: dict[str, Any]) -> dict[str, Any]:
    """A cube's fields (or a version's snapshot) with everything it said removed."""
    return {
        **fields,
        "content": "",
        "title": "",
        "tags": [],
        "source": {},
        "meta": {"purged": note},
        "payload_ref": None,
        "state": "deleted",
        "pinned": False,
    }


def _head_row(head: dict[str, Any]) -> tuple[Any, ...]:
    """The `cubes` row of a new imported head: `_head_cube(head, None).to_row()`, built directly."""
    return MemCube.row_of(head, embed_model=None, content_hash=content_hash(head.get("content", "")))


def _head_cube(head: dict[str, Any], embed_model: str | None) -> MemCube:
    """An imported head as a cube, with this vault's content hash and `embed_model`; fields the
    head lacks take MemCube's defaults, fields it has beyond COLUMNS are ignored."""
    fields = {c: head[c] for c in COLUMNS if c in head}
    fields.update(embed_model=embed_model, content_hash=content_hash(fields.get("content", "")))
    return MemCube(**fields)
