"""The op log's tables: `sync_events` (one event per version row), `sync_applied` (bundles and
change-sets already imported) and `imported_audit` (audit entries that came with them).

Owns every SQL statement the dumper needs: tagging local versions, reading a cube's events, the
rows an export streams, conflict lookups. The meaning (event ids, clocks, conflict resolution)
lives in `memos_desktop.dumper`; this module stores and reads rows and never decides. Every
function runs inside the caller's transaction when one is open and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memos_desktop.vault.cube import COLUMNS

if TYPE_CHECKING:
    from memos_desktop.vault.store import Vault

CONFLICT_DEVICE = "conflict"
# (vid, parents JSON, hlc, device, op, actor, at, snapshot JSON): an event joined with its version row.
EventRow = tuple[str, str, str, str, str, str, float, str]

_EVENT_SQL = (
    "INSERT INTO sync_events (vid, cube_id, version, hlc, device, parents, origin, shared)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


# ----- tagging and reading events -------------------------------------------------------------
def untagged_versions(vault: Vault) -> Iterator[tuple[str, int, int | None, str, float, str, str]]:
    """Version rows without an event, `(cube_id, version, parent_version, op, at, actor, snapshot)`,
    streamed in (cube, version) order."""
    return vault.conn.execute(
        "SELECT v.cube_id, v.version, v.parent_version, v.op, v.at, v.actor, v.snapshot"
        " FROM cube_versions v WHERE NOT EXISTS (SELECT 1 FROM sync_events e"
        " WHERE e.cube_id = v.cube_id AND e.version = v.version)"
        " ORDER BY v.cube_id, v.version"
    )


def vid_at(vault: Vault, cube_id: str, version: int) -> str | None:
    """The event id of a cube's local version, or None when it has none."""
    found = vault.conn.execute(
        "SELECT vid FROM sync_events WHERE cube_id = ? AND version = ?", (cube_id, version)
    ).fetchone()
    return found[0] if found else None


def insert_events(vault: Vault, rows: Iterable[tuple[Any, ...]]) -> None:
    """Store events, `(vid, cube_id, version, hlc, device, parents JSON, origin, shared)`."""
    vault.conn.executemany(_EVENT_SQL, rows)


def cube_events(vault: Vault, cube_id: str, only_unshared: bool = False) -> list[EventRow]:
    """The events of one cube joined with their version rows, in local version order."""
    sql = (
        "SELECT e.vid, e.parents, e.hlc, e.device, v.op, v.actor, v.at, v.snapshot"
        " FROM sync_events e JOIN cube_versions v"
        " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.cube_id = ?"
    )
    if only_unshared:
        sql += " AND e.shared = 0"
    return vault.conn.execute(sql + " ORDER BY e.version", (cube_id,)).fetchall()


def head_row(vault: Vault, cube_id: str) -> tuple[Any, ...] | None:
    """The stored `cubes` row of `cube_id` (COLUMNS order), whatever its state, or None."""
    return vault.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM cubes WHERE id = ?", (cube_id,)).fetchone()


def known_events(vault: Vault, cube_id: str) -> list[tuple[str, int, str, list[str]]]:
    """Every event of one cube: `(vid, version, hlc, parents)`."""
    rows = vault.conn.execute("SELECT vid, version, hlc, parents FROM sync_events WHERE cube_id = ?", (cube_id,))
    return [(vid, version, stamp, json.loads(parents)) for vid, version, stamp, parents in rows]


def next_version(vault: Vault, cube_id: str) -> int:
    """The next free local version number of a cube."""
    return vault.conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM cube_versions WHERE cube_id = ?", (cube_id,)
    ).fetchone()[0]


def version_snapshot(vault: Vault, cube_id: str, version: int) -> dict[str, Any]:
    """The stored snapshot of one local version, whatever the cube's visibility."""
    text = vault.conn.execute(
        "SELECT snapshot FROM cube_versions WHERE cube_id = ? AND version = ?", (cube_id, version)
    ).fetchone()[0]
    return json.loads(text)


def has_cubes(vault: Vault) -> bool:
    return vault.conn.execute("SELECT 1 FROM cubes LIMIT 1").fetchone() is not None


def has_cube(vault: Vault, cube_id: str) -> bool:
    """Whether a cube with this id is stored, whatever its state or owner."""
    return vault.conn.execute("SELECT 1 FROM cubes WHERE id = ?", (cube_id,)).fetchone() is not None


def owner_of(vault: Vault, cube_id: str) -> str:
    return vault.conn.execute("SELECT owner FROM cubes WHERE id = ?", (cube_id,)).fetchone()[0]


# ----- sharing ---------------------------------------------------------------------------------
def unshared_cube_ids(vault: Vault) -> Iterator[str]:
    """Cubes with events not yet published to the sync folder."""
    for (cube_id,) in vault.conn.execute("SELECT DISTINCT cube_id FROM sync_events WHERE shared = 0 ORDER BY cube_id"):
        yield cube_id


def unshared_count(vault: Vault) -> int:
    return vault.conn.execute("SELECT count(*) FROM sync_events WHERE shared = 0").fetchone()[0]


def mark_shared(vault: Vault) -> None:
    vault.conn.execute("UPDATE sync_events SET shared = 1 WHERE shared = 0")


# ----- bundles and change-sets already applied ---------------------------------------------------
def applied_names(vault: Vault, prefix: str) -> set[str]:
    """Names of applied bundles or change-set files starting with `prefix`."""
    rows = vault.conn.execute("SELECT name FROM sync_applied WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
    return {row[0] for row in rows}


def is_applied(vault: Vault, name: str) -> bool:
    return vault.conn.execute("SELECT 1 FROM sync_applied WHERE name = ?", (name,)).fetchone() is not None


def mark_applied(vault: Vault, name: str, device: str) -> None:
    vault.conn.execute("INSERT INTO sync_applied VALUES (?, ?, unixepoch('subsec'))", (name, device))


def insert_imported_audit(vault: Vault, rows: Sequence[tuple[Any, ...]]) -> None:
    """Audit entries from another device, `(hash, device, bundle, seq, at, action, cube_id, actor,
    detail)`; an entry already stored is skipped."""
    vault.conn.executemany("INSERT OR IGNORE INTO imported_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


# ----- conflicts -------------------------------------------------------------------------------
def conflict_count(vault: Vault) -> int:
    """How many conflict versions were ever recorded."""
    return vault.conn.execute("SELECT count(*) FROM sync_events WHERE device = ?", (CONFLICT_DEVICE,)).fetchone()[0]


def open_conflicts(vault: Vault) -> list[tuple[str, str, int, list[str]]]:
    """Cubes whose current version is a conflict: `(id, title, version, parents)`, newest first."""
    rows = vault.conn.execute(
        "SELECT c.id, c.title, c.version, e.parents FROM cubes c"
        " JOIN cube_versions v ON v.cube_id = c.id AND v.version = c.version"
        " JOIN sync_events e ON e.cube_id = c.id AND e.version = c.version"
        " WHERE v.op = 'conflict' ORDER BY c.updated_at DESC"
    ).fetchall()
    return [(cube_id, title, version, json.loads(parents)) for cube_id, title, version, parents in rows]


def event_origin(vault: Vault, vid: str) -> tuple[str, list[str]]:
    """`(device, parents)` of one event."""
    device, parents = vault.conn.execute("SELECT device, parents FROM sync_events WHERE vid = ?", (vid,)).fetchone()
    return device, json.loads(parents)


def event_version(vault: Vault, vid: str) -> tuple[int, str, str, str, dict[str, Any]]:
    """`(version, hlc, device, op, snapshot)` of one event."""
    version, stamp, device, op, snapshot = vault.conn.execute(
        "SELECT e.version, e.hlc, e.device, v.op, v.snapshot"
        " FROM sync_events e JOIN cube_versions v"
        " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.vid = ?",
        (vid,),
    ).fetchone()
    return version, stamp, device, op, json.loads(snapshot)


# ----- what an export reads ----------------------------------------------------------------------
@dataclass(frozen=True)
class CubeFilter:
    """Which cubes an export reads; empty fields select everything, `exclude_tags` drops cubes
    carrying any of them."""

    tags: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    profile: str | None = None
    exclude_tags: tuple[str, ...] = ()

    def where(self) -> tuple[str, dict[str, Any]]:
        """A WHERE clause on `cubes` (unqualified columns) and its named parameters."""
        clauses: list[str] = ["1"]
        params: dict[str, Any] = {}
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
        if self.exclude_tags:
            marks = ", ".join(f":secret{i}" for i in range(len(self.exclude_tags)))
            clauses.append(f"NOT EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ({marks}))")
            params.update({f"secret{i}": t for i, t in enumerate(self.exclude_tags)})
        return " AND ".join(clauses), params


def count_cubes(vault: Vault, selected: CubeFilter) -> int:
    where, params = selected.where()
    return vault.conn.execute(f"SELECT count(*) FROM cubes WHERE {where}", params).fetchone()[0]


def export_rows(vault: Vault, selected: CubeFilter) -> Iterator[tuple[Any, ...]]:
    """Every event of the selected cubes, grouped by cube in version order: `(id, access_count,
    last_accessed_at, payload_ref, blob_context, *EventRow)`."""
    where, params = selected.where()
    # Outer scan of the op log in (cube, version) order (CROSS JOIN fixes the join order), so
    # rows stream grouped by cube without a sort that would hold the whole vault in memory.
    return vault.conn.execute(
        "SELECT c.id, c.access_count, c.last_accessed_at, c.payload_ref,"
        " json_extract(c.meta, '$.blob_context'),"
        " e.vid, e.parents, e.hlc, e.device, v.op, v.actor, v.at, v.snapshot"
        " FROM sync_events e CROSS JOIN cubes c ON c.id = e.cube_id"
        " CROSS JOIN cube_versions v ON v.cube_id = e.cube_id AND v.version = e.version"
        f" WHERE {where} ORDER BY e.cube_id, e.version",
        params,
    )


def export_links(vault: Vault, selected: CubeFilter) -> Iterator[tuple[str, str, str, float]]:
    """Links whose both ends are selected: `(src, dst, rel, at)`."""
    where, params = selected.where()
    return vault.conn.execute(
        "SELECT src, dst, rel, at FROM links"
        f" WHERE EXISTS (SELECT 1 FROM cubes WHERE id = links.src AND {where})"
        f" AND EXISTS (SELECT 1 FROM cubes WHERE id = links.dst AND {where})",
        params,
    )


def export_audit(vault: Vault, selected: CubeFilter) -> Iterator[tuple[int, float, str, str, str, str, str]]:
    """Audit entries about selected cubes: `(seq, at, action, cube_id, actor, detail, hash)`."""
    where, params = selected.where()
    return vault.conn.execute(
        "SELECT seq, at, action, cube_id, actor, detail, hash FROM audit"
        f" WHERE EXISTS (SELECT 1 FROM cubes WHERE id = audit.cube_id AND {where})"
        " ORDER BY seq",
        params,
    )


def known_vids(vault: Vault, vids: list[str]) -> set[str]:
    """Which of `vids` this vault's op log holds."""
    found: set[str] = set()
    for start in range(0, len(vids), 500):
        batch = vids[start : start + 500]
        marks = ",".join("?" * len(batch))
        found.update(r[0] for r in vault.conn.execute(f"SELECT vid FROM sync_events WHERE vid IN ({marks})", batch))
    return found


def stored_versions(vault: Vault, vids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{vid: (clock stamp, snapshot)} of the stored versions among `vids`."""
    out = {}
    for vid in vids:
        row = vault.conn.execute(
            "SELECT e.hlc, v.snapshot FROM sync_events e JOIN cube_versions v"
            " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.vid = ?",
            (vid,),
        ).fetchone()
        if row is not None:
            out[vid] = (row[0], json.loads(row[1]))
    return out
