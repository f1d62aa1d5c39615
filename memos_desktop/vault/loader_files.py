"""The loader's table, `loader_files`: per-file ingestion state (path, content hash, mtime, size,
status and reason, chunk → cube mapping, outgoing links).

Owns every read and write of that table and the summaries shown by `memos-desktop sources` and the
TUI; the loader (`memos_desktop.loader`) decides what to write. It is a record of what the loader
did, never the truth about cubes: the cubes themselves (found by their source path) are, so a
crash between the two is repaired by the next scan.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memos_desktop.vault import db

if TYPE_CHECKING:
    from memos_desktop.vault.store import Vault

STATUSES = ("indexed", "pending", "skipped", "error")
COLUMNS = (
    "path",
    "content_hash",
    "mtime_ns",
    "size",
    "status",
    "reason",
    "chunks",
    "links",
    "unresolved",
    "updated_at",
)


@dataclass
class FileState:
    path: str
    status: str
    reason: str = ""
    content_hash: str = ""
    mtime_ns: int = 0
    size: int = 0
    chunks: list[dict[str, Any]] = field(default_factory=list)  # {cube, hash, heading, range}
    links: list[list[Any]] = field(default_factory=list)  # [chunk index, kind, target, anchor]
    unresolved: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> FileState:
        values = dict(zip(COLUMNS, row, strict=True))
        values["chunks"] = json.loads(values["chunks"])
        values["links"] = json.loads(values["links"])
        return cls(**values)

    def to_row(self) -> tuple[Any, ...]:
        return (
            self.path,
            self.content_hash,
            self.mtime_ns,
            self.size,
            self.status,
            self.reason,
            json.dumps(self.chunks),
            json.dumps(self.links),
            self.unresolved,
            time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "chunks": len(self.chunks),
            "size": self.size,
            "content_hash": self.content_hash,
            "updated_at": self.updated_at,
        }


def _under(prefix: str | None) -> tuple[str, tuple[Any, ...]]:
    if prefix is None:
        return "", ()
    return " WHERE (path = ? OR substr(path, 1, ?) = ?)", (
        prefix,
        len(prefix) + 1,
        prefix.rstrip("/") + "/",
    )


def load(vault: Vault, prefix: str | None = None) -> dict[str, FileState]:
    """Every file state, or those at or under the path `prefix`."""
    where, args = _under(prefix)
    rows = vault.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM loader_files{where}", args)
    return {row[0]: FileState.from_row(row) for row in rows}


def get(vault: Vault, path: str) -> FileState | None:
    row = vault.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM loader_files WHERE path = ?", (path,)).fetchone()
    return FileState.from_row(row) if row else None


def put(vault: Vault, states: Iterable[FileState]) -> None:
    """Insert or replace states, all in one transaction."""
    rows = [s.to_row() for s in states]
    if not rows:
        return
    with db.write_txn(vault.conn):
        vault.conn.executemany(
            f"INSERT OR REPLACE INTO loader_files ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            rows,
        )


def mark_pending(vault: Vault, paths: Iterable[str]) -> None:
    """Record that these files are waiting to be (re)indexed; known files keep their mapping."""
    now = time.time()
    rows = [(p, now) for p in paths]
    if not rows:
        return
    with db.write_txn(vault.conn):
        vault.conn.executemany(
            "INSERT INTO loader_files (path, status, updated_at) VALUES (?, 'pending', ?)"
            " ON CONFLICT(path) DO UPDATE SET status = 'pending', updated_at = excluded.updated_at",
            rows,
        )


def delete(vault: Vault, paths: Iterable[str]) -> None:
    paths = list(paths)
    if not paths:
        return
    with db.write_txn(vault.conn):
        vault.conn.executemany("DELETE FROM loader_files WHERE path = ?", [(p,) for p in paths])


def indexed_paths(vault: Vault) -> list[str]:
    return [r[0] for r in vault.conn.execute("SELECT path FROM loader_files WHERE status = 'indexed'")]


def with_unresolved_links(vault: Vault) -> list[str]:
    return [r[0] for r in vault.conn.execute("SELECT path FROM loader_files WHERE unresolved > 0")]


def counts(vault: Vault, prefix: str | None = None) -> dict[str, int]:
    """How many files are in each status (under `prefix` if given)."""
    where, args = _under(prefix)
    rows = vault.conn.execute(f"SELECT status, count(*) FROM loader_files{where} GROUP BY status", args)
    out = dict.fromkeys(STATUSES, 0)
    out.update(dict(rows))
    return out


def unembedded(vault: Vault, prefix: str | None = None) -> int:
    """Chunks of files (under `prefix` if given) searchable by words but still waiting for a
    vector. Counts what the loader left for the embedder, whichever embedder the vault uses."""
    sql = (
        "SELECT count(*) FROM cubes WHERE embed_model IS NULL AND kind = 'plaintext' AND state = 'active'"
        " AND json_extract(source, '$.type') = 'file'"
    )
    args: tuple[Any, ...] = ()
    if prefix is not None:
        sql += " AND (json_extract(source, '$.path') = ? OR substr(json_extract(source, '$.path'), 1, ?) = ?)"
        args = (prefix, len(prefix) + 1, prefix.rstrip("/") + "/")
    return vault.conn.execute(sql, args).fetchall()[0][0]


def files(vault: Vault, prefix: str | None = None, status: str | None = None, limit: int = 1000) -> list[FileState]:
    """File states (newest change first), optionally under `prefix` and with `status`."""
    where, args = _under(prefix)
    if status:
        where += (" AND" if where else " WHERE") + " status = ?"
        args = (*args, status)
    rows = vault.conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM loader_files{where} ORDER BY updated_at DESC LIMIT ?",
        (*args, limit),
    )
    return [FileState.from_row(r) for r in rows]
