"""The encrypted vault: cubes, versions, tombstones, access rules, audit chain, encryption at rest."""

import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from memos_desktop import paths
from memos_desktop.errors import CorruptVault, MemosError, NotFound, VaultError, WrongPassphrase
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, REPO, FakeEmbedder, run_cli


def test_add_and_get_round_trip(vault):
    cube = vault.add("I prefer window seats", tags=["travel", "pref"], importance=0.8)
    got = vault.get(cube.id)
    assert got.content == "I prefer window seats"
    assert got.tags == ["pref", "travel"]
    assert got.version == 1 and got.state == "active" and got.importance == 0.8
    assert len(cube.id) == 26  # a ULID


def test_get_counts_access(vault):
    cube = vault.add("fact")
    vault.get(cube.id)
    vault.get(cube.id)
    again = vault.get(cube.id, touch=False)
    assert again.access_count == 2 and again.last_accessed_at is not None


def test_edit_writes_a_new_version_and_keeps_the_old(vault):
    cube = vault.add("My dentist is Dr. Alves")
    new = vault.edit(cube.id, content="My dentist is Dr. Costa")
    assert new.version == 2
    history = vault.history(cube.id)
    assert [h["op"] for h in history] == ["create", "edit"]
    assert history[0]["snapshot"]["content"] == "My dentist is Dr. Alves"
    assert history[1]["parent_version"] == 1


def test_edit_reindexes_text(vault):
    cube = vault.add("the blue notebook")
    vault.edit(cube.id, content="the red notebook")
    assert vault.fts("blue") == []
    assert [r for r, _ in vault.fts("red")] == [vault._rowid(cube.id)]


def test_context_words_are_indexed_below_the_cubes_own_words(vault):
    # A chat turn that answers a question is found by the question's words, stored as its context.
    question = "What genre is your screenplay?"
    answer = vault.add("Thanks, Nate! It's a mix of drama and romance!", meta={"context": question})
    (batch,) = vault.add_many([{"content": "Sure!", "meta": {"context": "Is the screenplay done yet?"}}])
    own = vault.add("My screenplay has a genre nobody expects.")
    ranked = [r for r, _ in vault.fts("screenplay genre")]
    assert ranked == [vault._rowid(own.id), vault._rowid(answer.id), vault._rowid(batch.id)]
    vault.forget(answer.id)
    assert vault._rowid(answer.id) not in [r for r, _ in vault.fts("genre")]


def test_old_word_index_is_rebuilt_with_the_context_column(isolated_home):
    """A vault made before `_m008_fts_context` (title, content, tags only) is migrated on open."""
    with Vault.create(isolated_home, PASSPHRASE) as v:
        context = {"context": "What genre is your screenplay?"}
        kept = v.add("Thanks, Nate! It's a mix of drama and romance!", meta=context)
        gone = v.add("an archived thought about romance")
        v.forget(gone.id)
        _old_word_index(v, ", content = '', contentless_delete = 1", ["_m008_fts_context"], stale=[gone.id])
        assert v.fts("screenplay") == [] and len(v.fts("romance")) == 2
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert [r for r, _ in v.fts("romance")] == [v._rowid(kept.id)]
        assert [r for r, _ in v.fts("screenplay")] == [v._rowid(kept.id)]


def _old_word_index(vault, options: str, undo: list[str], stale: list[str] = ()) -> None:
    """Put back the word index of an older schema (title, content, tags; `options`), holding
    what the vault's current code would have indexed, plus the cubes `stale`, and forget the
    migrations `undo`, as in a vault made before them."""
    conn = vault.conn
    conn.execute("DROP TABLE cube_fts")
    conn.execute(
        f"CREATE VIRTUAL TABLE cube_fts USING fts5(title, content, tags{options},"
        " tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    marks = ", ".join("?" * len(stale))
    conn.execute(
        "INSERT INTO cube_fts (rowid, title, content, tags)"
        " SELECT rowid, title, content, (SELECT group_concat(value, ' ') FROM json_each(tags)) FROM cubes"
        f" WHERE (kind = 'plaintext' AND state = 'active') OR id IN ({marks})",
        list(stale),
    )
    conn.executemany("DELETE FROM _migrations WHERE name = ?", [(name,) for name in undo])


def test_forget_is_a_tombstone_and_restore_brings_it_back(vault):
    cube = vault.add("temporary secret plan")
    vault.forget(cube.id)
    with pytest.raises(NotFound):
        vault.get(cube.id)
    assert vault.fts("secret") == []
    assert vault.vector_count() == 0
    assert vault.get(cube.id, include_inactive=True).state == "deleted"
    vault.restore(cube.id)
    assert vault.get(cube.id).version == 3
    assert vault.fts("secret") and vault.vector_count() == 1


def test_restore_of_an_active_memory_is_refused(vault):
    cube = vault.add("x")
    with pytest.raises(MemosError, match="not forgotten"):
        vault.restore(cube.id)


def test_rollback_makes_an_old_version_current_as_a_new_version(vault):
    cube = vault.add("v1 text", tags=["a"])
    vault.edit(cube.id, content="v2 text", tags=["b"])
    back = vault.rollback(cube.id, 1)
    assert back.content == "v1 text" and back.tags == ["a"] and back.version == 3
    assert vault.history(cube.id)[-1]["op"] == "rollback"


def test_rollback_to_a_missing_version_is_not_found(vault):
    cube = vault.add("x")
    with pytest.raises(NotFound):
        vault.rollback(cube.id, 9)


def test_private_cubes_of_another_profile_are_invisible(vault):
    mine = vault.add("alice's diary", profile="alice")
    shared = vault.add("family wifi password hint", profile="alice", visibility="shared")
    with pytest.raises(NotFound):
        vault.get(mine.id, profile="bob")
    assert vault.get(shared.id, profile="bob").id == shared.id
    assert [c.id for c in vault.cubes(profile="bob")] == [shared.id]
    with pytest.raises(NotFound):
        vault.edit(mine.id, profile="bob", content="hacked")
    rowids = [vault._rowid(mine.id), vault._rowid(shared.id)]
    assert set(vault.get_many(rowids, profile="bob")) == {rowids[1]}


def test_expired_cubes_are_never_returned(vault):
    cube = vault.add("parking spot 42", ttl=0.05)
    time.sleep(0.1)
    with pytest.raises(NotFound):
        vault.get(cube.id)
    assert vault.get_many([vault._rowid(cube.id)]) == {}
    assert vault.cubes() == []
    assert vault.expire() == 1
    with pytest.raises(NotFound, match="purged"):
        vault.get(cube.id, include_inactive=True)


def test_built_from_links_invalidate_derived_cubes(vault):
    fact = vault.add("I live in Porto")
    state = vault.add("kv state", kind="activation")
    vault.link(state.id, fact.id, "built_from")
    vault.edit(fact.id, content="I live in Braga")
    assert vault.get(state.id, include_inactive=True).state == "archived"


def test_audit_chain_is_intact_and_detects_tampering(vault):
    cube = vault.add("a")
    vault.edit(cube.id, content="b")
    vault.audit("read", cube.id)
    assert vault.verify_audit() == 3
    vault.conn.execute("UPDATE audit SET action = 'nothing' WHERE seq = 2")
    with pytest.raises(CorruptVault, match="entry 2"):
        vault.verify_audit()


def test_changing_the_embedder_re_embeds(vault):
    vault.add("first")
    vault.add("second")

    class Other(FakeEmbedder):
        model_id = "test/other-32"
        dim = 32

    vault.embedder = Other()
    vault.add("third")
    assert vault.vector_count() == 3
    models = {r[0] for r in vault.conn.execute("SELECT embed_model FROM cubes")}
    assert models == {"test/other-32"}


def test_a_cubes_context_is_embedded_with_it(vault):
    reply = vault.add("Yeah, it was amazing!", meta={"context": "I ran the Porto marathon last week"})
    vault.add("Lovely weather today, it was sunny")
    (query,) = vault.embedder.embed(["Porto marathon"])
    nearest, _ = vault.knn(query, 1)[0]
    assert vault.get_many([nearest])[nearest].id == reply.id


def test_no_embedder_still_indexes_keywords(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as v:
        v.add("keywords only")
        assert v.fts("keywords") and v.vector_count() == 0


def test_unknown_kind_is_refused(vault):
    with pytest.raises(MemosError, match="Unknown memory kind"):
        vault.add("x", kind="dream")


def test_uneditable_field_is_refused(vault):
    cube = vault.add("x")
    with pytest.raises(MemosError, match="cannot be edited"):
        vault.edit(cube.id, owner="mallory")


# ----- encryption at rest --------------------------------------------------------------------


def _files(root):
    return [p for p in root.rglob("*") if p.is_file()]


def test_no_plaintext_reaches_any_file(isolated_home, fake_embedder):
    marker = "Zanzibarquux"
    with Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder) as v:
        cube = v.add(f"{marker} is the name of my secret cat", tags=["pettag" + marker])
        v.edit(cube.id, content=f"{marker} the cat likes tuna")
        v.blobs.put("state-1", f"{marker} kv state".encode())
        vector = fake_embedder.embed([f"{marker} the cat likes tuna"])[0].astype(np.float32).tobytes()
        files = _files(isolated_home)
        assert any(p.name.endswith("-wal") for p in files)  # the WAL is checked too
        for path in files:
            raw = path.read_bytes()
            for needle in (marker.encode(), marker.lower().encode(), b"tuna", vector[:16]):
                assert needle not in raw, f"{needle!r} found in {path.name}"
    for path in _files(isolated_home):
        assert marker.lower().encode() not in path.read_bytes()


def test_database_file_is_not_a_plain_sqlite_file(vault):
    vault.add("x")
    head = (vault.data_dir / paths.VAULT_DB).read_bytes()[:16]
    assert not head.startswith(b"SQLite format 3")


def _digest(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}


def test_wrong_passphrase_is_a_clear_error_and_changes_nothing(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as v:
        v.add("precious")
    before = _digest(isolated_home)
    with pytest.raises(WrongPassphrase, match="Wrong passphrase"):
        Vault.open(isolated_home, "not the passphrase")
    assert _digest(isolated_home) == before
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert v.cubes()[0].content == "precious"


def test_missing_key_header_is_a_clear_error(isolated_home):
    Vault.create(isolated_home, PASSPHRASE).close()
    (isolated_home / paths.VAULT_HEADER).rename(isolated_home / "elsewhere.key")
    with pytest.raises(VaultError, match="key header .* is missing"):
        Vault.open(isolated_home, PASSPHRASE)


def test_tampered_key_header_is_detected(isolated_home):
    Vault.create(isolated_home, PASSPHRASE).close()
    header = isolated_home / paths.VAULT_HEADER
    header.write_text(header.read_text().replace('"iterations": 3', '"iterations": 4'))
    with pytest.raises(WrongPassphrase):
        Vault.open(isolated_home, PASSPHRASE)
    header.write_text("{not json")
    with pytest.raises(CorruptVault, match="damaged"):
        Vault.open(isolated_home, PASSPHRASE)


def test_flipped_byte_in_the_database_is_a_clear_error(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as v:
        v.add_many([{"content": f"memory number {i} " * 20} for i in range(200)])
        v.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = isolated_home / paths.VAULT_DB
    raw = bytearray(db.read_bytes())
    raw[4096 * 3 + 100] ^= 0x01
    db.write_bytes(bytes(raw))
    result = run_cli("search", "memory", "-k", "100")
    assert result.returncode == 1
    assert "damaged or was tampered with" in result.stderr
    assert "Traceback" not in result.stderr


def test_header_from_another_vault_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Vault.create(a, PASSPHRASE).close()
    Vault.create(b, PASSPHRASE).close()
    (a / paths.VAULT_HEADER).write_bytes((b / paths.VAULT_HEADER).read_bytes())
    with pytest.raises(WrongPassphrase, match="another vault"):
        Vault.open(a, PASSPHRASE)


def test_passphrase_change_rewraps_without_rewriting_the_database(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as v:
        v.add("kept")
        v.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db_before = hashlib.sha256((isolated_home / paths.VAULT_DB).read_bytes()).hexdigest()
    with Vault.open(isolated_home, PASSPHRASE) as v:
        v.change_passphrase(PASSPHRASE, "new passphrase")
    assert hashlib.sha256((isolated_home / paths.VAULT_DB).read_bytes()).hexdigest() == db_before
    with pytest.raises(WrongPassphrase):
        Vault.open(isolated_home, PASSPHRASE)
    with Vault.open(isolated_home, "new passphrase") as v:
        assert v.cubes()[0].content == "kept"


def test_sealed_blob_tampering_is_detected(vault):
    vault.blobs.put("kv-abc", b"state bytes", context=b"model-x")
    assert vault.blobs.get("kv-abc", context=b"model-x") == b"state bytes"
    with pytest.raises(CorruptVault):
        vault.blobs.get("kv-abc", context=b"model-y")
    path = vault.blobs.root / "kv-abc"
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x80
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptVault, match="tampered"):
        vault.blobs.get("kv-abc", context=b"model-x")
    with pytest.raises(NotFound):
        vault.blobs.get("kv-missing")


@pytest.mark.parametrize("scratch", [False, True], ids=["bytes", "scratch"])
def test_sealed_blob_bad_files_are_corrupt_not_crashes(vault, scratch):
    from memos_desktop.vault.blobs import Scratch

    buffers = Scratch() if scratch else None
    big = os.urandom(3 * 1024 * 1024)
    vault.blobs.put("kv-big", big, context=b"m")
    vault.blobs.put("kv-small", b"tiny", context=b"m")
    assert bytes(vault.blobs.get("kv-big", b"m", scratch=buffers)) == big
    # a smaller blob through the same scratch: exactly its bytes, not the tail of the last one
    assert bytes(vault.blobs.get("kv-small", b"m", scratch=buffers)) == b"tiny"
    path = vault.blobs.root / "kv-big"
    for damaged in (b"", b"\x00" * 27, path.read_bytes()[:-1], path.read_bytes()[:12]):
        path.write_bytes(damaged)
        with pytest.raises(CorruptVault):
            vault.blobs.get("kv-big", b"m", scratch=buffers)
    with pytest.raises(NotFound):
        vault.blobs.get("kv-none", b"m", scratch=buffers)


# ----- concurrency ---------------------------------------------------------------------------

WRITER = """
import sys
from memos_desktop.vault import Vault
v = Vault.open(sys.argv[1], sys.argv[2])
for i in range(60):
    c = v.add(f"writer {sys.argv[3]} memory {i}")
    v.edit(c.id, content=f"writer {sys.argv[3]} memory {i} edited")
v.close()
"""


def test_two_writers_never_see_database_is_locked(isolated_home):
    Vault.create(isolated_home, PASSPHRASE).close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(isolated_home), PASSPHRASE, str(n)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert len(v.cubes(limit=1000)) == 120
        assert v.verify_audit() == 240


def test_cube_columns_are_exactly_the_dataclass_fields():
    import dataclasses

    from memos_desktop.vault.cube import COLUMNS, MemCube

    assert tuple(f.name for f in dataclasses.fields(MemCube)) == COLUMNS


def test_a_vault_made_before_the_contentless_word_index_keeps_finding_its_cubes(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as old:
        kept = old.add("the walrus sleeps on the ice", title="Arctic", tags=["zoology"])
        edited = old.add("the blue notebook")
        old.edit(edited.id, content="the red notebook")
        gone = old.add("a forgotten walrus")
        old.forget(gone.id)
        _old_word_index(old, "", ["_m007_contentless_fts", "_m008_fts_context"])
        assert "content=''" not in _fts_sql(old)
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert "contentless_delete" in _fts_sql(v)
        assert [r for r, _ in v.fts("walrus")] == [v._rowid(kept.id)]
        assert [r for r, _ in v.fts("arctic zoology")] == [v._rowid(kept.id)]
        assert v.fts("blue") == [] and [r for r, _ in v.fts("red")] == [v._rowid(edited.id)]
        v.edit(kept.id, content="the seal sleeps on the ice")
        assert v.fts("walrus") == [] and [r for r, _ in v.fts("seal")] == [v._rowid(kept.id)]
        v.forget(kept.id)
        assert v.fts("seal") == []
        v.restore(gone.id)
        assert [r for r, _ in v.fts("walrus")] == [v._rowid(gone.id)]


def _fts_sql(vault) -> str:
    return vault.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'cube_fts'").fetchone()[0].replace(" ", "")


def test_a_rows_list_and_dict_fields_are_written_as_json_dumps_with_sorted_keys():
    import json

    from memos_desktop.vault.cube import COLUMNS, MemCube

    meta = {"z": {"b": [1.5, None, float("nan"), 1e16, 2**70]}, "a": "é\x7f\U0001d11e", "m": True}
    cube = MemCube(id="C1", tags=["b", "ä"], source={"path": "n.md", "lines": [1, 2]}, meta=meta, pinned=True)
    row = dict(zip(COLUMNS, cube.to_row(), strict=True))
    for name in ("tags", "source", "meta"):
        assert row[name] == json.dumps(getattr(cube, name), sort_keys=True)
    assert row["pinned"] == 1 and row["id"] == "C1"


def test_a_row_built_from_fields_is_the_row_of_the_cube_they_make():
    from memos_desktop.vault.cube import MemCube

    full = MemCube(id="C1", content="x", tags=["a"], meta={"k": 1.5}, pinned=True).to_dict()
    partial = {"id": "C2", "content": "y", "source": {"path": "n.md"}, "not_a_column": 1}
    assert MemCube.row_of(full, version=3) == MemCube(**{**full, "version": 3}).to_row()
    assert MemCube.row_of(partial) == MemCube(id="C2", content="y", source={"path": "n.md"}).to_row()
    with pytest.raises(TypeError):
        MemCube.row_of({"content": "no id"})


def test_a_nested_transaction_is_a_savepoint_undone_alone(vault):
    with vault.transaction():
        kept = vault.add("kept")
        with pytest.raises(MemosError), vault.transaction():
            vault.add("undone")
            raise MemosError("stop")
    assert [c.content for c in vault.cubes()] == [kept.content]


def test_bulk_write_checks_foreign_keys_at_commit_and_restores_the_page_cache(vault):
    (before,) = vault.conn.execute("PRAGMA cache_size").fetchone()
    with vault.bulk_write():
        assert vault.conn.execute("PRAGMA defer_foreign_keys").fetchone()[0] == 1
        assert vault.conn.execute("PRAGMA cache_size").fetchone()[0] != before
    assert vault.conn.execute("PRAGMA cache_size").fetchone()[0] == before


def test_visibility_and_id_prefixes_follow_the_access_rules(vault):
    mine = vault.add("mine")
    theirs = vault.add("theirs", profile="alice")
    gone = vault.add("gone", ttl=-1)
    assert vault.is_visible(mine.id) and not vault.is_visible(theirs.id) and not vault.is_visible(gone.id)
    assert vault.is_visible(theirs.id, profile="alice")
    assert vault.ids_with_prefix(mine.id[:20].lower()) == [mine.id]
    vault.forget(mine.id)
    assert vault.ids_with_prefix(mine.id) == [] and not vault.is_visible(mine.id)
    assert vault.state_of(mine.id) == ("deleted", mine.content_hash)
    assert vault.state_of("01NOSUCHCUBE0000000000000") is None


def test_metadata_that_only_pythons_json_reads_comes_back_intact(vault):
    """Rows are read with orjson, falling back to json for what orjson refuses (NaN, huge ints)."""
    import math

    meta = {"score": float("nan"), "big": 2**70 + 1, "low": -(2**63) - 1, "inf": float("inf")}
    cube = vault.add("Odd metadata", tags=["é"], source={"path": "ü.md"}, meta=meta)
    back = vault.get(cube.id)
    assert math.isnan(back.meta["score"]) and back.meta["inf"] == float("inf")
    assert back.meta["big"] == 2**70 + 1 and back.meta["low"] == -(2**63) - 1
    assert type(back.meta["big"]) is int and type(back.meta["low"]) is int
    assert back.tags == ["é"] and back.source == {"path": "ü.md"}
