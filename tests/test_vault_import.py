"""Vault.import_versions: versions written on another device, stored as they are (memos_desktop/vault)."""

import json

import pytest

from memos_desktop.vault import db
from memos_desktop.vault.cube import COLUMNS, MemCube
from memos_desktop.vault.store import content_hash


def _foreign(cube_id: str, version: int, **fields) -> tuple[dict, tuple]:
    """A head and its version row as another device wrote them."""
    snapshot = MemCube(id=cube_id, created_at=100.0, updated_at=100.0 + version, version=version, **fields)
    snapshot.content_hash = ""
    head = snapshot.to_dict()
    row = (cube_id, version, version - 1 or None, "edit", 100.0 + version, "alice", json.dumps(head))
    return head, row


def test_a_new_cube_keeps_its_id_version_op_actor_and_time(vault):
    head, row = _foreign("C1", 1, content="zebras graze", title="Zebra", tags=["animals"])
    with db.write_txn(vault.conn):
        vault.import_versions([row], [head])
    got = vault.get("C1", touch=False)
    assert (got.content, got.tags, got.version, got.embed_model) == ("zebras graze", ["animals"], 1, None)
    assert got.content_hash  # computed here, not taken from the other device
    (entry,) = vault.history("C1")
    assert (entry["op"], entry["actor"], entry["at"]) == ("edit", "alice", 101.0)
    assert [r for r, _ in vault.fts("zebras")] == [vault.conn.execute("SELECT rowid FROM cubes").fetchone()[0]]


def test_imported_rows_are_written_as_the_vault_writes_its_own(vault):
    head, _ = _foreign("C1", 3, content="x", tags=["b", "a"], source={"path": "n.md", "lines": [1, 2]}, pinned=True)
    head.update(access_count=4, last_accessed_at=5.0, meta={"k": [1.5, None], "é": "ü"}, embed_model="other")
    expected = MemCube(**{**head, "embed_model": None, "content_hash": content_hash("x")}).to_row()
    with db.write_txn(vault.conn):
        vault.import_versions([], [head])
    stored = vault.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM cubes WHERE id = 'C1'").fetchone()
    assert stored == expected


def test_nothing_is_stored_when_the_callers_transaction_fails(vault):
    head, row = _foreign("C1", 1, content="never stored")
    with pytest.raises(RuntimeError), db.write_txn(vault.conn):
        vault.import_versions([row], [head])
        vault.audit("import", None, "user", {"n": 1})
        vault.link("C1", "C1", "related", at=1.0)
        raise RuntimeError("the bundle's last byte was wrong")
    assert vault.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 0
    assert vault.conn.execute("SELECT count(*) FROM cube_versions").fetchone()[0] == 0
    assert vault.conn.execute("SELECT count(*) FROM cube_fts").fetchone()[0] == 0
    assert not [e for e in vault.audit_log() if e["action"] == "import"]
    assert vault.links("C1") == []


def test_a_changed_text_reindexes_and_archives_cubes_built_from_it(vault):
    cube = vault.add("the cat is grey")
    state = vault.add("activation of the cat note", kind="activation")
    vault.link(state.id, cube.id, "built_from")
    head, row = _foreign(cube.id, 2, content="the cat is black")
    with db.write_txn(vault.conn):
        vault.import_versions([row], [head])
    got = vault.get(cube.id, touch=False)
    assert got.content == "the cat is black" and got.embed_model is None
    assert vault.fts("black") and not vault.fts("grey")
    assert vault.get(state.id, touch=False, include_inactive=True).state == "archived"
    assert vault.reembed() == 1  # the changed cube gets a vector of the new text


def test_a_cube_deleted_then_restored_elsewhere_gets_its_vector_back(vault):
    cube = vault.add("penguins slide on ice")
    for version, state in ((2, "deleted"), (3, "active")):
        head, row = _foreign(cube.id, version, content="penguins slide on ice", state=state)
        with db.write_txn(vault.conn):
            vault.import_versions([row], [head])
    assert vault.reembed() == 1
    query = vault.embedder.embed(["penguins slide on ice"])[0]
    assert vault.knn(query, k=1)[0][0] == vault.conn.execute("SELECT rowid FROM cubes").fetchone()[0]


def test_new_heads_get_the_next_rowids_and_only_active_plaintext_ones_are_indexed(vault):
    local = vault.add("a local walrus")
    heads, rows = zip(
        _foreign("C1", 1, content="an imported walrus", tags=["arctic", "zoo"]),
        _foreign("C2", 1, content="a forgotten walrus", state="deleted"),
        _foreign("C3", 1, content="an activation walrus", kind="activation"),
        strict=True,
    )
    with db.write_txn(vault.conn):
        vault.import_versions(rows, heads, new=True)
    rowid = {c: vault._rowid(c) for c in (local.id, "C1", "C2", "C3")}
    assert [rowid[c] for c in ("C1", "C2", "C3")] == [rowid[local.id] + 1, rowid[local.id] + 2, rowid[local.id] + 3]
    assert sorted(r for r, _ in vault.fts("walrus")) == [rowid[local.id], rowid["C1"]]
    assert [r for r, _ in vault.fts("zoo")] == [rowid["C1"]]


def test_a_head_said_to_be_new_that_is_stored_fails_and_changes_nothing(vault):
    import apsw

    cube = vault.add("the original text")
    head, row = _foreign(cube.id, 2, content="a replacement")
    with pytest.raises(apsw.ConstraintError), db.write_txn(vault.conn):
        vault.import_versions([row], [head], new=True)
    assert vault.get(cube.id, touch=False).content == "the original text"
    assert [r for r, _ in vault.fts("original")] == [vault._rowid(cube.id)] and vault.fts("replacement") == []
