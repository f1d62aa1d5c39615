"""Export and import of bundles between two real encrypted vaults (memos_desktop/dumper)."""

import json

import pytest

from memos_desktop.dumper import conflicts, crypto, oplog
from memos_desktop.dumper.export import Redaction, Selection, export_bundle
from memos_desktop.dumper.importer import import_bundle
from memos_desktop.errors import BundleError
from tests.dumper_helpers import craft_bundle, new_vault, state


@pytest.fixture
def other(tmp_path, fake_embedder, vault):
    """A second device that has paired with `vault` (trusts its signing key)."""
    v = new_vault(tmp_path / "other", fake_embedder)
    crypto.add_peer(v, "laptop", crypto.device_keys(vault).card())
    yield v
    v.close()


def _to(vault, other, path, **kw):
    return export_bundle(vault, path, recipients=[crypto.device_keys(other).recipient], **kw)


def test_import_preserves_ids_versions_and_provenance(vault, other, tmp_path):
    cube = vault.add(
        "the cat is grey",
        title="Cat",
        tags=["pets"],
        source={"path": "notes/cat.md", "lines": [3, 4]},
    )
    vault.edit(cube.id, content="the cat is black")
    vault.forget(cube.id)
    vault.restore(cube.id)
    _to(vault, other, tmp_path / "b.age")
    result = import_bundle(other, tmp_path / "b.age")
    assert result["versions_added"] == 4 and result["origin_device"] == vault.device_id
    mine, theirs = vault.history(cube.id), other.history(cube.id)
    assert [(h["version"], h["parent_version"], h["op"], h["snapshot"]) for h in theirs] == [
        (h["version"], h["parent_version"], h["op"], h["snapshot"]) for h in mine
    ]
    got = other.get(cube.id, touch=False)
    assert got.content == "the cat is black" and got.source["lines"] == [3, 4]
    origin = other.conn.execute("SELECT DISTINCT device FROM sync_events WHERE cube_id = ?", (cube.id,)).fetchall()
    assert origin == [(vault.device_id,)]


def test_import_rebuilds_fts_and_vectors_locally(vault, other, tmp_path):
    cube = vault.add("zebras graze in the savanna")
    _to(vault, other, tmp_path / "b.age")
    import_bundle(other, tmp_path / "b.age")
    rowid = other._rowid(cube.id)
    assert [r for r, _ in other.fts("zebras")] == [rowid]
    assert other.knn(other.embedder.embed(["zebras graze in the savanna"])[0], k=1)[0][0] == rowid


def test_importing_twice_changes_nothing(vault, other, tmp_path):
    vault.add("one")
    _to(vault, other, tmp_path / "b.age")
    import_bundle(other, tmp_path / "b.age")
    before = (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone())
    again = import_bundle(other, tmp_path / "b.age")
    assert again["already_imported"]
    assert (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone()) == before


def test_more_cubes_than_one_write_batch_round_trip_exactly(vault, other, tmp_path):
    vault.add_many([{"content": f"note {i}", "meta": {"n": 2**70 + i}} for i in range(oplog.BATCH + 100)])
    _to(vault, other, tmp_path / "b.age")
    assert import_bundle(other, tmp_path / "b.age")["cubes"] == oplog.BATCH + 100
    assert state(other) == state(vault)
    assert len(other.fts("note", 10 * oplog.BATCH)) == oplog.BATCH + 100


def test_a_fresh_export_of_the_same_data_adds_no_versions(vault, other, tmp_path):
    vault.add("one")
    _to(vault, other, tmp_path / "1.age")
    _to(vault, other, tmp_path / "2.age")
    import_bundle(other, tmp_path / "1.age")
    before = state(other)
    assert import_bundle(other, tmp_path / "2.age")["versions_added"] == 0
    assert state(other) == before


def test_links_and_audit_excerpt_travel(vault, other, tmp_path):
    a, b = vault.add("a"), vault.add("b")
    vault.link(a.id, b.id, "built_from")
    vault.add("not exported", tags=["private"])
    _to(vault, other, tmp_path / "b.age", selection=Selection(tags=()))
    result = import_bundle(other, tmp_path / "b.age")
    assert other.links(a.id)[0]["rel"] == "built_from"
    excerpt = other.conn.execute("SELECT cube_id, action, device FROM imported_audit").fetchall()
    assert {(a.id, "create", vault.device_id), (b.id, "create", vault.device_id)} <= set(excerpt)
    assert result["audit"] == len(excerpt) and other.verify_audit() > 0


def test_export_is_audited(vault, other, tmp_path):
    vault.add("x")
    result = _to(vault, other, tmp_path / "b.age")
    entry = vault.audit_log(limit=1)[0]
    assert entry["action"] == "export" and entry["detail"]["bundle_id"] == result["bundle_id"]


def test_selection_by_tag_kind_profile_and_time(vault, other, tmp_path):
    keep = vault.add("work note", tags=["work"], profile="alice")
    vault.add("home note", tags=["home"], profile="alice")
    vault.add("work of bob", tags=["work"], profile="bob")
    sel = Selection(tags=("work",), kinds=("plaintext",), profile="alice", since=keep.created_at - 1)
    result = _to(vault, other, tmp_path / "b.age", selection=sel)
    import_bundle(other, tmp_path / "b.age")
    assert result["cubes"] == 1
    assert [r[0] for r in other.conn.execute("SELECT id FROM cubes")] == [keep.id]
    assert _to(vault, other, tmp_path / "none.age", selection=Selection(until=keep.created_at - 1))["cubes"] == 0


def test_redaction_rewrites_every_version_and_is_recorded(vault, other, tmp_path):
    cube = vault.add("mail bob@example.org or call +44 20 7946 0958 on 2024-01-02")
    vault.edit(cube.id, content="now alice@example.com")
    vault.add("the safe code is 1234", tags=["secret"])
    result = _to(vault, other, tmp_path / "b.age", redaction=Redaction(emails=True, phones=True))
    imported = import_bundle(other, tmp_path / "b.age")
    texts = [h["snapshot"]["content"] for h in other.history(cube.id)]
    assert texts == ["mail [email] or call [phone] on 2024-01-02", "now [email]"]
    assert other.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 1
    assert result["redacted"] == {"emails": 2, "phones": 1, "secret_cubes": 1}
    assert "email -> [email]" in imported["redaction"] and "tag:secret -> cube left out" in imported["redaction"]


def test_blobs_travel_when_asked(vault, other, tmp_path):
    vault.blobs.put("kv-123", b"\x00state bytes", context=b"model-x")
    vault.add("", kind="activation", payload_ref="kv-123", meta={"blob_context": "model-x"})
    result = _to(vault, other, tmp_path / "b.age", with_blobs=True)
    import_bundle(other, tmp_path / "b.age")
    assert result["blobs"] == 1
    assert other.blobs.get("kv-123", context=b"model-x") == b"\x00state bytes"


def test_passphrase_bundle_round_trip_and_wrong_passphrase(vault, other, tmp_path):
    vault.add("by passphrase")
    export_bundle(vault, tmp_path / "p.age", passphrase="open sesame")
    with pytest.raises(BundleError, match="Wrong passphrase"):
        import_bundle(other, tmp_path / "p.age", passphrase="wrong")
    with pytest.raises(BundleError, match="passphrase"):
        import_bundle(other, tmp_path / "p.age")
    assert import_bundle(other, tmp_path / "p.age", passphrase="open sesame")["versions_added"] == 1


def test_bundle_for_another_device_is_a_clear_error(vault, other, tmp_path):
    vault.add("x")
    export_bundle(vault, tmp_path / "mine.age")
    with pytest.raises(BundleError, match="not encrypted to this device"):
        import_bundle(other, tmp_path / "mine.age")


def test_concurrent_edits_become_a_conflict_version_then_resolve(vault, other, tmp_path):
    cube = vault.add("meeting at 10")
    _to(vault, other, tmp_path / "1.age")
    import_bundle(other, tmp_path / "1.age")
    vault.edit(cube.id, content="meeting at 11")
    other.edit(cube.id, content="meeting at 12")
    _to(vault, other, tmp_path / "2.age")
    result = import_bundle(other, tmp_path / "2.age")
    assert result["conflicts"] == 1
    [conflict] = conflicts.conflicts(other)
    contents = {h["content"]: h["version"] for h in conflict["heads"]}
    assert set(contents) == {"meeting at 11", "meeting at 12"}
    assert other.history(cube.id)[-1]["op"] == "conflict"
    conflicts.resolve(other, cube.id, contents["meeting at 12"])
    assert other.get(cube.id, touch=False).content == "meeting at 12"
    assert conflicts.conflicts(other) == []


def test_rejected_import_leaves_vault_untouched_when_the_end_is_corrupt(vault, other, tmp_path):
    for i in range(300):
        vault.add(f"memory number {i} " + "x" * 200)
    _to(vault, other, tmp_path / "b.age")
    other.add("already here")
    before = (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone())
    data = bytearray((tmp_path / "b.age").read_bytes())
    data[-5] ^= 0x40
    (tmp_path / "bad.age").write_bytes(bytes(data))
    with pytest.raises(BundleError):
        import_bundle(other, tmp_path / "bad.age")
    (tmp_path / "short.age").write_bytes(bytes(data[: len(data) - 100]))
    with pytest.raises(BundleError):
        import_bundle(other, tmp_path / "short.age")
    assert (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone()) == before


def test_newer_format_version_is_a_clear_error(vault, other, tmp_path):
    path = craft_bundle(
        crypto.device_keys(vault),
        tmp_path / "new.age",
        [],
        [crypto.device_keys(other).recipient],
        version=2,
    )
    with pytest.raises(BundleError, match="format version 2.*Upgrade"):
        import_bundle(other, path)


def _cube_record(vault, cube_id: str) -> dict:
    return {
        "t": "cube",
        "id": cube_id,
        "access": [0, None],
        "events": [e.to_record() for e in oplog.cube_events(vault, cube_id)],
    }


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a/b", "..", "x" * 200, ""])
def test_crafted_ids_are_rejected(vault, other, tmp_path, bad_id):
    keys = crypto.device_keys(vault)
    snapshot = {"id": bad_id, "content": "evil"}
    record = {
        "t": "cube",
        "id": bad_id,
        "events": [
            {
                "vid": "0",
                "parents": [],
                "hlc": f"{0:013d}-{0:010d}-{keys.device}",
                "device": keys.device,
                "op": "create",
                "actor": "user",
                "at": 0.0,
                "snapshot": snapshot,
            }
        ],
    }
    path = craft_bundle(keys, tmp_path / "evil.age", [record], [crypto.device_keys(other).recipient])
    with pytest.raises(BundleError, match="invalid memory id"):
        import_bundle(other, path)
    assert other.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 0


def test_blob_names_escaping_the_data_dir_are_rejected(vault, other, tmp_path):
    keys = crypto.device_keys(vault)
    cube = vault.add("fine")
    with vault.conn:
        oplog.tag_local(vault, oplog.load_clock(vault))
    records = [
        _cube_record(vault, cube.id),
        {"t": "blob", "name": "../../../evil", "context": "", "data": "AAAA"},
    ]
    path = craft_bundle(keys, tmp_path / "evil.age", records, [crypto.device_keys(other).recipient])
    with pytest.raises(BundleError, match="invalid blob name"):
        import_bundle(other, path)
    assert other.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 0
    assert not (other.data_dir.parent / "evil").exists() and not list(other.data_dir.glob("**/evil"))


def test_a_version_altered_before_signing_does_not_match_its_id(vault, other, tmp_path):
    keys = crypto.device_keys(vault)
    cube = vault.add("true text")
    with vault.conn:
        oplog.tag_local(vault, oplog.load_clock(vault))
    record = _cube_record(vault, cube.id)
    record["events"][0]["snapshot"]["content"] = "forged text"
    path = craft_bundle(keys, tmp_path / "forged.age", [record], [crypto.device_keys(other).recipient])
    with pytest.raises(BundleError, match="does not match its id"):
        import_bundle(other, path)


def test_trusted_device_signed_by_another_key_is_rejected(vault, other, tmp_path):
    crypto.add_peer(other, "laptop", crypto.device_keys(vault).card())
    impostor = crypto.DeviceKeys(vault.device_id, crypto.device_keys(vault).age_identity, b"\x01" * 32)
    path = craft_bundle(impostor, tmp_path / "imp.age", [], [crypto.device_keys(other).recipient])
    with pytest.raises(BundleError, match="signed with another key"):
        import_bundle(other, path)


def test_trusted_origin_is_reported(vault, other, tmp_path):
    crypto.add_peer(other, "laptop", crypto.device_keys(vault).card())
    vault.add("x")
    _to(vault, other, tmp_path / "b.age")
    result = import_bundle(other, tmp_path / "b.age")
    assert result["trusted_device"] is True
    entry = [e for e in other.audit_log() if e["action"] == "import"][0]
    assert entry["detail"]["origin_device"] == vault.device_id


def test_manifest_records_selection_and_redaction_rules(vault, other, tmp_path):
    import pyrage
    from pyrage import x25519

    vault.add("x", tags=["t"])
    _to(
        vault,
        other,
        tmp_path / "b.age",
        selection=Selection(tags=("t",)),
        redaction=Redaction(emails=True),
    )
    identity = x25519.Identity.from_str(crypto.device_keys(other).age_identity)
    plaintext = pyrage.decrypt((tmp_path / "b.age").read_bytes(), [identity])
    manifest = json.loads(plaintext.split(b"\n", 1)[0])
    assert manifest["selection"]["tags"] == ["t"] and manifest["device"] == vault.device_id
    assert manifest["redaction"] == ["email -> [email]", "tag:secret -> cube left out"]


def test_export_to_an_unwritable_place_is_a_clear_error(vault, tmp_path):
    vault.add("x")
    with pytest.raises(BundleError, match="Cannot write"):
        export_bundle(vault, tmp_path / "no" / "such" / "dir" / "b.age")


def test_a_bundle_claiming_to_be_from_this_device_with_another_key_is_rejected(vault, tmp_path):
    own = crypto.device_keys(vault)
    forger = crypto.DeviceKeys(vault.device_id, own.age_identity, b"\x02" * 32)
    path = craft_bundle(forger, tmp_path / "forged.age", [], [own.recipient])
    with pytest.raises(BundleError, match="signed with another key"):
        import_bundle(vault, path)


def test_a_bad_version_found_after_earlier_records_were_written_changes_nothing(vault, other, tmp_path):
    keys = crypto.device_keys(vault)
    cubes = vault.add_many([{"content": f"note {i}"} for i in range(oplog.BATCH + 300)], embed=False)
    with vault.conn:
        oplog.tag_local(vault, oplog.load_clock(vault))
    records = [_cube_record(vault, c.id) for c in cubes]
    records[oplog.BATCH + 200]["events"][0]["snapshot"]["content"] = "forged text"
    path = craft_bundle(keys, tmp_path / "forged.age", records, [crypto.device_keys(other).recipient])
    other.add("already here")
    before = (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone())
    with pytest.raises(BundleError, match="does not match its id"):
        import_bundle(other, path)
    assert (state(other), other.conn.execute("SELECT count(*) FROM audit").fetchone()) == before
    assert not other.fts("note")
    assert import_bundle(other, _to(vault, other, tmp_path / "good.age")["path"])["cubes"] == oplog.BATCH + 300
