"""The scheduler's tables: `memory_tiers` (which memories are hot) and `schedule_log` (every
placement, use, promotion, demotion and distillation proposal, in order).

Owns their SQL. What the decisions mean lives in `operation/scheduler.py`; this module stores and
reads rows and never decides. `training/data.py` reads distillation proposals from here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memos_desktop.vault import db

if TYPE_CHECKING:
    from memos_desktop.vault.store import Vault

# One decision: (turn_id, cube_id, decision, reason, detail).
Entry = tuple[str | None, str | None, str, str, dict[str, Any]]
_NAMES = ("seq", "at", "turn_id", "cube_id", "decision", "reason", "detail")


def resident_rows(vault: Vault) -> list[tuple[int, bool]]:
    """Plaintext cubes that are pinned or hot, whatever their visibility: `(rowid, pinned)`."""
    rows = vault.conn.execute(
        "SELECT c.rowid, c.pinned FROM cubes c"
        " LEFT JOIN memory_tiers t ON t.cube_id = c.id"
        " WHERE c.kind = 'plaintext' AND (c.pinned = 1 OR t.tier = 'hot')"
    ).fetchall()
    return [(rowid, bool(pinned)) for rowid, pinned in rows]


def hot_ids(vault: Vault) -> set[str]:
    return {r[0] for r in vault.conn.execute("SELECT cube_id FROM memory_tiers WHERE tier = 'hot'")}


def is_hot(vault: Vault, cube_id: str) -> bool:
    row = vault.conn.execute("SELECT 1 FROM memory_tiers WHERE cube_id = ? AND tier = 'hot'", (cube_id,))
    return row.fetchone() is not None


def set_tier(vault: Vault, cube_id: str, tier: str | None, at: float, entry: Entry) -> None:
    """Put a cube in `tier` (None: back to plain memory) and log `entry`, in one transaction."""
    with db.write_txn(vault.conn):
        if tier is None:
            vault.conn.execute("DELETE FROM memory_tiers WHERE cube_id = ?", (cube_id,))
        else:
            vault.conn.execute("INSERT OR REPLACE INTO memory_tiers VALUES (?, ?, ?)", (cube_id, tier, at))
        _insert(vault, at, [entry])


def log(vault: Vault, at: float, entries: Sequence[Entry]) -> None:
    """Record decisions, all stamped `at`, in one transaction."""
    if entries:
        with db.write_txn(vault.conn):
            _insert(vault, at, entries)


def _insert(vault: Vault, at: float, entries: Sequence[Entry]) -> None:
    vault.conn.executemany(
        "INSERT INTO schedule_log (at, turn_id, cube_id, decision, reason, detail) VALUES (?, ?, ?, ?, ?, ?)",
        [(at, t, c, d, r, json.dumps(x, sort_keys=True)) for t, c, d, r, x in entries],
    )


def uses(vault: Vault, cube_id: str, since: float = 0.0) -> int:
    """How often a cube was used in a turn since `since`."""
    return vault.conn.execute(
        "SELECT count(*) FROM schedule_log WHERE cube_id = ? AND decision = 'use' AND at >= ?",
        (cube_id, since),
    ).fetchone()[0]


def last_use(vault: Vault, cube_id: str) -> float | None:
    return vault.conn.execute(
        "SELECT max(at) FROM schedule_log WHERE cube_id = ? AND decision = 'use'", (cube_id,)
    ).fetchone()[0]


def proposals(vault: Vault) -> list[dict[str, Any]]:
    """Distillation proposals, oldest first: `{"at", "reason", **detail}`."""
    rows = vault.conn.execute(
        "SELECT at, reason, detail FROM schedule_log WHERE decision = 'propose_distill' ORDER BY seq"
    ).fetchall()
    return [{"at": at, "reason": reason, **json.loads(detail)} for at, reason, detail in rows]


def proposal(vault: Vault, seq: int) -> dict[str, Any] | None:
    """The detail of the distillation proposal logged as entry `seq`, or None."""
    row = vault.conn.execute(
        "SELECT detail FROM schedule_log WHERE seq = ? AND decision = 'propose_distill'", (seq,)
    ).fetchone()
    return json.loads(row[0]) if row else None


def decisions(
    vault: Vault, turn_id: str | None = None, cube_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The latest `limit` decisions, oldest first, for one turn, one memory, or overall."""
    where, args = [], []
    if turn_id:
        where.append("turn_id = ?")
        args.append(turn_id)
    if cube_id:
        where.append("cube_id = ?")
        args.append(cube_id)
    sql = "SELECT seq, at, turn_id, cube_id, decision, reason, detail FROM schedule_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = vault.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    out = [dict(zip(_NAMES, r, strict=True)) for r in rows[::-1]]
    for entry in out:
        entry["detail"] = json.loads(entry["detail"])
    return out
