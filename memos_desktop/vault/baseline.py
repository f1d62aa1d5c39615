"""A plain bm25 word index for benchmarks to compare the vault's search against.

Owns a temporary FTS5 table (`temp.baseline_fts`, in memory, gone when the connection closes)
holding each plaintext cube's own words — title, content, tags — with a stock tokenizer and none
of the vault's own weighting or context column. Never touches the vault's tables or files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memos_desktop.vault.store import Vault

_SEARCH_SQL = (
    "SELECT rowid, -bm25(baseline_fts, 2.0, 1.0, 1.5) FROM temp.baseline_fts WHERE baseline_fts MATCH ?"
    " ORDER BY bm25(baseline_fts, 2.0, 1.0, 1.5) LIMIT ?"
)


def build(vault: Vault) -> None:
    """Index every plaintext cube stored now (build once, after the cubes are added)."""
    vault.conn.execute(
        "CREATE VIRTUAL TABLE temp.baseline_fts USING fts5(title, content, tags,"
        " tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    vault.conn.execute(
        "INSERT INTO temp.baseline_fts (rowid, title, content, tags) SELECT rowid, title, content,"
        " (SELECT group_concat(value, ' ') FROM json_each(tags)) FROM cubes WHERE kind = 'plaintext'"
    )


def search(vault: Vault, match: str, k: int) -> list[tuple[int, float]]:
    """The top `k` rowids for an FTS5 `match` expression, with their bm25 score (higher is better)."""
    return vault.conn.execute(_SEARCH_SQL, (match, k)).fetchall()
