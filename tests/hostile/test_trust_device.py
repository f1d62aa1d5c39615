"""Device trust under attack: bundles and change-sets from keys this vault never pinned.

The attacker knows this vault's age recipient (public by design), so they can encrypt a bundle to
it and sign it with their own key. Each test is a real vault, real age encryption, real Ed25519.
"""

import json
import math
import re
import time

import pytest

from memos_desktop.dumper import canonical, conflicts, crypto, oplog, trust
from memos_desktop.dumper.export import export_bundle
from memos_desktop.dumper.importer import import_bundle
from memos_desktop.dumper.sync import sync_folder
from memos_desktop.errors import BundleError, MemosError
from memos_desktop.vault import Vault
from memos_desktop.vault.cube import MemCube
from tests.dumper_helpers import PASSPHRASE, craft_bundle, new_vault, state
from tests.support import run_cli


@pytest.fixture(autouse=True)
def no_embedder(monkeypatch):
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")


@pytest.fixture
def home(isolated_home):
    v = Vault.create(isolated_home, PASSPHRASE)
    yield v
    v.close()


@pytest.fixture
def attacker(tmp_path):
    v = new_vault(tmp_path / "attacker")
    yield v
    v.close()


def _untouched(vault: Vault) -> tuple:
    return (
        state(vault),
        vault.conn.execute("SELECT count(*) FROM audit").fetchone()[0],
        vault.get_setting("dumper.peers"),
    )


def test_a_bundle_signed_by_an_unknown_key_is_refused_with_its_fingerprint_and_nothing_is_written(
    home, attacker, tmp_path
):
    home.add("the real content")
    attacker.add("planted by a stranger")
    export_bundle(attacker, tmp_path / "evil.age", recipients=[crypto.device_keys(home).recipient])
    before = _untouched(home)
    out = run_cli("import", str(tmp_path / "evil.age"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    fingerprint = trust.fingerprint(crypto.device_keys(attacker).verify_key)
    assert fingerprint in out.stderr and "memos-desktop keys trust" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert _untouched(home) == before


def test_the_command_the_refusal_prints_trusts_the_signer_and_then_the_bundle_imports(home, attacker, tmp_path):
    cube = attacker.add("from my other laptop")
    export_bundle(attacker, tmp_path / "b.age", recipients=[crypto.device_keys(home).recipient])
    refused = run_cli("import", str(tmp_path / "b.age"))
    command = re.search(r"memos-desktop (keys trust \S+ \S+)", refused.stderr).group(1).split()
    trusted = run_cli(*command)
    assert trusted.returncode == 0, trusted.stderr
    assert trust.fingerprint(crypto.device_keys(attacker).verify_key) in trusted.stdout
    assert run_cli("import", str(tmp_path / "b.age")).returncode == 0
    home.conn.execute("SELECT 1").fetchone()  # see the other process's commit
    assert home.get(cube.id, touch=False).content == "from my other laptop"


def test_pairing_shows_the_same_fingerprint_on_both_screens(home, attacker, tmp_path):
    other = attacker.data_dir
    attacker.close()
    shown = json.loads(run_cli("--data-dir", str(other), "keys", "show", "--json").stdout)
    assert re.fullmatch(r"(\d{5} ){5}\d{5}", shown["fingerprint"])
    added = run_cli("keys", "trust", "laptop", shown["card"])
    assert added.returncode == 0 and shown["fingerprint"] in added.stdout
    listed = json.loads(run_cli("keys", "list", "--json").stdout)
    assert listed == [
        {
            "name": "laptop",
            "device": shown["device"],
            "recipient": shown["age_recipient"],
            "fingerprint": shown["fingerprint"],
            "status": "trusted",
        }
    ]
    assert shown["fingerprint"] in run_cli("keys", "list").stdout


def test_a_revoked_device_is_refused_for_bundles_and_listed_as_revoked(home, attacker, tmp_path):
    crypto.add_peer(home, "old-laptop", crypto.device_keys(attacker).card())
    attacker.add("before the laptop was stolen")
    export_bundle(attacker, tmp_path / "1.age", recipients=[crypto.device_keys(home).recipient])
    assert import_bundle(home, tmp_path / "1.age")["trusted_device"]
    revoked = run_cli("keys", "revoke", "old-laptop")
    assert revoked.returncode == 0, revoked.stderr
    home.conn.execute("SELECT 1").fetchone()
    attacker.add("after it was stolen")
    export_bundle(attacker, tmp_path / "2.age", recipients=[crypto.device_keys(home).recipient])
    before = _untouched(home)
    with pytest.raises(trust.UntrustedSigner, match="revoked"):
        import_bundle(home, tmp_path / "2.age")
    assert _untouched(home) == before
    assert [row["status"] for row in trust.listing(home)] == ["revoked"]


def test_revoke_by_fingerprint_and_unknown_names_are_clear(home, attacker):
    crypto.add_peer(home, "phone", crypto.device_keys(attacker).card())
    with pytest.raises(MemosError, match="No trusted device"):
        trust.revoke(home, "nobody")
    fingerprint = trust.fingerprint(crypto.device_keys(attacker).verify_key)
    assert trust.revoke(home, fingerprint[:11]).name == "phone"
    assert crypto.trusted_key(home, attacker.device_id) is None


def test_a_passphrase_bundle_from_an_unknown_signer_imports_and_says_how_to_trust_it(home, attacker, tmp_path):
    cube = attacker.add("moving house")
    export_bundle(attacker, tmp_path / "p.age", passphrase="open sesame")
    out = run_cli("import", str(tmp_path / "p.age"), "--passphrase-env", "P", env={"P": "open sesame"})
    assert out.returncode == 0, out.stderr
    assert "not a trusted device" in out.stdout and "keys trust" in out.stdout
    assert trust.fingerprint(crypto.device_keys(attacker).verify_key) in out.stdout
    home.conn.execute("SELECT 1").fetchone()
    assert home.get(cube.id, touch=False).content == "moving house"
    assert crypto.trusted_key(home, attacker.device_id) is None


def test_trust_signer_pins_the_passphrase_bundles_signer_for_later_recipient_bundles(home, attacker, tmp_path):
    attacker.add("first")
    export_bundle(attacker, tmp_path / "p.age", passphrase="open sesame")
    out = run_cli(
        "import", str(tmp_path / "p.age"), "--passphrase-env", "P", "--trust-signer", env={"P": "open sesame"}
    )
    assert out.returncode == 0 and "Trusted device" in out.stdout
    home.conn.execute("SELECT 1").fetchone()
    assert crypto.trusted_key(home, attacker.device_id) == crypto.device_keys(attacker).verify_key
    later = attacker.add("second")
    export_bundle(attacker, tmp_path / "r.age", recipients=[crypto.device_keys(home).recipient])
    assert import_bundle(home, tmp_path / "r.age")["versions_added"] == 1
    assert home.get(later.id, touch=False).content == "second"


# ----- crafted bundles from a trusted signer: every new version must be the signer's -------------
DROP = object()  # a field left out of the snapshot


def _event(keys, cube_id, snapshot, *, device=None, parents=(), at=None, op="create", hlc_ms=None):
    at = time.time() if at is None else at
    device = device or keys.device
    snapshot = {**MemCube(id=cube_id, created_at=at, updated_at=at).to_dict(), **snapshot}
    snapshot = {k: v for k, v in snapshot.items() if v is not DROP}
    stamp = f"{int(at * 1000) if hlc_ms is None else hlc_ms:013d}-{0:010d}-{device}"
    vid = canonical.vid_of(cube_id, list(parents), stamp, device, op, "user", at, snapshot)
    return {
        "vid": vid,
        "parents": list(parents),
        "hlc": stamp,
        "device": device,
        "op": op,
        "actor": "user",
        "at": at,
        "snapshot": snapshot,
    }


def _cube(cube_id, *evs, access=(0, None)):
    return {"t": "cube", "id": cube_id, "access": list(access), "events": list(evs)}


@pytest.fixture
def paired(home, attacker):
    """`home` trusts `attacker` (a device of the user's that was compromised, or a careless one)."""
    crypto.add_peer(home, "laptop", crypto.device_keys(attacker).card())
    return crypto.device_keys(attacker)


def _new_id() -> str:
    from ulid import ULID

    return str(ULID())


def test_a_version_attributed_to_another_device_than_the_signer_is_refused(home, paired, tmp_path):
    cube_id = _new_id()
    spoofed = _event(paired, cube_id, {"content": "I am home's own words"}, device=home.device_id)
    path = craft_bundle(paired, tmp_path / "s.age", [_cube(cube_id, spoofed)], [crypto.device_keys(home).recipient])
    before = _untouched(home)
    with pytest.raises(trust.UntrustedSigner, match=f"attributed to device {home.device_id}"):
        import_bundle(home, path)
    assert _untouched(home) == before


def test_a_forged_conflict_version_cannot_carry_new_text(home, paired, tmp_path):
    cube = home.add("the truth")
    with home.conn:
        oplog.tag_local(home, oplog.load_clock(home))
    [mine] = oplog.cube_events(home, cube.id)
    theirs = _event(paired, cube.id, {"content": "a rival edit"}, parents=[mine.vid], op="edit")
    winner = max([(mine.hlc, mine.vid), (theirs["hlc"], theirs["vid"])])
    at = time.time()
    forged = _event(
        paired,
        cube.id,
        {"content": "text nobody wrote"},
        device="conflict",
        parents=sorted([mine.vid, theirs["vid"]]),
        op="conflict",
        at=at,
    )
    forged["hlc"] = winner[0] + "~c"
    forged["actor"] = "sync"
    forged["vid"] = canonical.vid_of(
        cube.id, forged["parents"], forged["hlc"], "conflict", "conflict", "sync", at, forged["snapshot"]
    )
    path = craft_bundle(
        paired, tmp_path / "c.age", [_cube(cube.id, theirs, forged)], [crypto.device_keys(home).recipient]
    )
    before = _untouched(home)
    with pytest.raises(BundleError, match="forged conflict version"):
        import_bundle(home, path)
    assert _untouched(home) == before


def test_a_concurrent_edit_from_a_trusted_device_is_a_conflict_not_a_silent_replacement(home, paired, tmp_path):
    cube = home.add("meeting at 10")
    with home.conn:
        oplog.tag_local(home, oplog.load_clock(home))
    [mine] = oplog.cube_events(home, cube.id)
    home.edit(cube.id, content="meeting at 11")
    theirs = _event(paired, cube.id, {"content": "meeting at 12"}, parents=[mine.vid], op="edit")
    path = craft_bundle(paired, tmp_path / "e.age", [_cube(cube.id, theirs)], [crypto.device_keys(home).recipient])
    result = import_bundle(home, path)
    assert (result["conflicts"], result["updated"]) == (1, 1)
    [conflict] = conflicts.conflicts(home)
    assert {h["content"] for h in conflict["heads"]} == {"meeting at 11", "meeting at 12"}
    assert home.history(cube.id)[-1]["op"] == "conflict"


def test_a_clock_stamp_far_in_the_future_cannot_win_conflicts(home, paired, tmp_path):
    cube_id = _new_id()
    future = _event(paired, cube_id, {"content": "from 2100"}, hlc_ms=4_102_444_800_000)
    path = craft_bundle(paired, tmp_path / "f.age", [_cube(cube_id, future)], [crypto.device_keys(home).recipient])
    with pytest.raises(BundleError, match="clock stamp"):
        import_bundle(home, path)


_BAD_SNAPSHOTS = {
    "importance NaN": {"importance": math.nan},
    "importance Infinity": {"importance": math.inf},
    "importance huge": {"importance": 1e308},
    "importance negative": {"importance": -0.1},
    "importance text": {"importance": "1"},
    "importance bool": {"importance": True},
    "created_at NaN": {"created_at": math.nan},
    "updated_at in 2200": {"updated_at": 7_258_118_400.0},
    "valid_from Infinity": {"valid_from": -math.inf},
    "expires_at huge": {"expires_at": 1e300},
    "access_count negative": {"access_count": -1},
    "access_count float": {"access_count": 1.5},
    "kind unknown": {"kind": "executable"},
    "state unknown": {"state": "pending"},
    "visibility unknown": {"visibility": "public"},
    "owner empty": {"owner": ""},
    "owner control chars": {"owner": "me\x1b[31m"},
    "tag control chars": {"tags": ["ok", "bell\x07"]},
    "tags not a list": {"tags": "a,b"},
    "title too long": {"title": "t" * 5000},
    "meta too deep": {"meta": {"a": json.loads("[" * 40 + "]" * 40)}},
    "unknown field": {"exec": "rm -rf"},
    "content null": {"content": None},
    "state missing": {"state": DROP},
    "pinned text": {"pinned": "yes"},
    "version zero": {"version": 0},
}


@pytest.mark.parametrize("mutation", list(_BAD_SNAPSHOTS.values()), ids=list(_BAD_SNAPSHOTS))
def test_every_snapshot_field_is_validated_before_anything_is_written(home, paired, tmp_path, mutation):
    good_id = _new_id()
    good = _cube(good_id, _event(paired, good_id, {"content": "a fine memory"}))
    bad_id = _new_id()
    bad = _cube(bad_id, _event(paired, bad_id, {"content": "x", **mutation}))
    path = craft_bundle(paired, tmp_path / "v.age", [good, bad], [crypto.device_keys(home).recipient])
    before = _untouched(home)
    with pytest.raises(BundleError):
        import_bundle(home, path)
    assert _untouched(home) == before


_BAD_EVENTS = {
    "at NaN": {"at": math.nan},
    "at negative": {"at": -1.0},
    "op with spaces": {"op": "drop table"},
    "op conflict from a device": {"op": "conflict"},
    "actor empty": {"actor": ""},
    "vid not hex": {"vid": "z" * 32},
    "parents not ids": {"parents": ["../x"]},
    "device not a ULID": {"device": "../../etc"},
    "hlc of another device": {"hlc": f"{int(time.time() * 1000):013d}-0000000000-01ARZ3NDEKTSV4RRFFQ69G5FAV"},
}


@pytest.mark.parametrize("mutation", list(_BAD_EVENTS.values()), ids=list(_BAD_EVENTS))
def test_every_version_field_is_validated(home, paired, tmp_path, mutation):
    cube_id = _new_id()
    record = _cube(cube_id, {**_event(paired, cube_id, {"content": "x"}), **mutation})
    path = craft_bundle(paired, tmp_path / "v.age", [record], [crypto.device_keys(home).recipient])
    before = _untouched(home)
    with pytest.raises(BundleError):
        import_bundle(home, path)
    assert _untouched(home) == before


@pytest.mark.parametrize(
    "record",
    [
        {
            "t": "link",
            "src": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "dst": "01ARZ3NDEKTSV4RRFFQ69G5FAW",
            "rel": "x",
            "at": 1e309,
        },
        {"t": "link", "src": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "dst": "01ARZ3NDEKTSV4RRFFQ69G5FAW", "rel": "\x1b]52;"},
        {"t": "audit", "seq": -1, "at": 1.0, "action": "x", "actor": "u", "detail": "{}", "hash": "0" * 64},
    ],
    ids=["link time infinite", "link relation with OSC", "audit seq negative"],
)
def test_links_and_audit_entries_are_validated(home, paired, tmp_path, record):
    cube_id = _new_id()
    path = craft_bundle(
        paired,
        tmp_path / "l.age",
        [_cube(cube_id, _event(paired, cube_id, {"content": "x"})), record],
        [crypto.device_keys(home).recipient],
    )
    before = _untouched(home)
    with pytest.raises(BundleError):
        import_bundle(home, path)
    assert _untouched(home) == before


@pytest.mark.parametrize(
    "fields",
    [{"created_at": math.inf}, {"bundle_id": "not-a-ulid"}, {"kind": "changeset", "seq": -3}],
    ids=["created_at infinite", "bundle id", "change-set number"],
)
def test_manifest_fields_are_validated(home, paired, tmp_path, fields):
    path = craft_bundle(paired, tmp_path / "m.age", [], [crypto.device_keys(home).recipient], **fields)
    with pytest.raises(BundleError):
        import_bundle(home, path)


# ----- sync ----------------------------------------------------------------------------------------
def test_sync_refuses_change_sets_of_an_unknown_device_with_exit_1_and_the_trust_command(home, attacker, tmp_path):
    folder = tmp_path / "shared"
    crypto.add_peer(attacker, "home", crypto.device_keys(home).card())
    sync_folder(attacker, folder)  # creates the group key and grants it to home
    attacker.add("injected through the shared folder")
    sync_folder(attacker, folder)
    before = state(home)
    out = run_cli("sync", str(folder))
    assert out.returncode == 1, out.stdout + out.stderr
    assert trust.fingerprint(crypto.device_keys(attacker).verify_key) in out.stdout
    assert "keys trust" in out.stdout
    home.conn.execute("SELECT 1").fetchone()
    assert state(home) == before


def test_sync_refuses_a_revoked_device(tmp_path):
    a, b = new_vault(tmp_path / "a"), new_vault(tmp_path / "b")
    crypto.add_peer(a, "b", crypto.device_keys(b).card())
    crypto.add_peer(b, "a", crypto.device_keys(a).card())
    folder = tmp_path / "shared"
    sync_folder(a, folder)
    sync_folder(b, folder)
    trust.revoke(b, "a")
    a.add("after revocation")
    sync_folder(a, folder)
    status = sync_folder(b, folder)
    assert status["untrusted_devices"] == [a.device_id] and status["applied_versions"] == 0
    assert b.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 0


# ----- what the user's own commands accept and print -------------------------------------------------
def test_remember_refuses_nan_importance(home):
    out = run_cli("remember", "x", "--importance", "nan")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    with pytest.raises(MemosError, match="Importance"):
        home.add("x", importance=math.inf)


def test_json_output_never_prints_nan_or_infinity(home):
    cube = home.add("odd numbers", meta={"ratio": math.nan, "limit": math.inf})
    out = run_cli("show", cube.id, "--json")
    assert out.returncode == 0, out.stderr
    assert "NaN" not in out.stdout and "Infinity" not in out.stdout
    assert json.loads(out.stdout)["meta"] == {"ratio": None, "limit": None}


def test_a_link_to_a_memory_the_bundle_does_not_carry_is_refused(home, paired, tmp_path):
    """A `built_from` link onto one of this vault's memories would archive it on the next edit."""
    victim = home.add("mine, not in the bundle")
    cube_id = _new_id()
    records = [
        _cube(cube_id, _event(paired, cube_id, {"content": "x"})),
        {"t": "link", "src": victim.id, "dst": cube_id, "rel": "built_from", "at": time.time()},
    ]
    path = craft_bundle(paired, tmp_path / "l.age", records, [crypto.device_keys(home).recipient])
    before = _untouched(home)
    with pytest.raises(BundleError, match="does not carry"):
        import_bundle(home, path)
    assert _untouched(home) == before


def test_a_conflict_of_conflicts_from_trusted_devices_still_syncs(tmp_path):
    """Validation must accept what honest devices write: a conflict version whose winner is itself
    a conflict version has a stamp ending in "~c~c", and it is relayed between devices."""
    a, b, c = (new_vault(tmp_path / name) for name in "abc")
    for v in (a, b, c):
        for w in (a, b, c):
            if v is not w:
                crypto.add_peer(v, w.device_id[-8:].lower(), crypto.device_keys(w).card())
    folder = tmp_path / "shared"
    cube = a.add("base")
    for _ in range(2):
        for v in (a, b, c):
            assert not sync_folder(v, folder)["errors"]
    c.edit(cube.id, content="from c, early")
    time.sleep(0.01)
    a.edit(cube.id, content="from a")
    time.sleep(0.01)
    b.edit(cube.id, content="from b, latest")
    for v in (a, b, a, c, a, b, c):
        status = sync_folder(v, folder)
        assert not status["errors"], status["errors"]
    stamps = [h for (h,) in a.conn.execute("SELECT hlc FROM sync_events WHERE device = 'conflict'")]
    assert any(s.endswith("~c~c") for s in stamps)
    assert state(a) == state(b) == state(c)


def test_on_a_terminal_import_offers_to_trust_a_passphrase_bundles_signer(home, attacker, tmp_path):
    """The move-to-a-new-laptop path typed by a person: the fingerprint is shown and a yes trusts it."""
    import os
    import pty
    import sys

    from tests.support import REPO

    attacker.add("moving house")
    export_bundle(attacker, tmp_path / "p.age", passphrase="open sesame")
    home.close()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(PYTHONPATH=str(REPO), P="open sesame")
        os.execv(
            sys.executable,
            [sys.executable, "-m", "memos_desktop", "import", str(tmp_path / "p.age"), "--passphrase-env", "P"],
        )
    seen, answered = b"", False
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(fd, b"y\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert trust.fingerprint(crypto.device_keys(attacker).verify_key).encode() in seen
    with Vault.open(home.data_dir, PASSPHRASE) as reopened:
        assert crypto.trusted_key(reopened, attacker.device_id) == crypto.device_keys(attacker).verify_key


def test_a_blob_no_memory_in_the_bundle_refers_to_is_refused(home, paired, tmp_path):
    cube_id = _new_id()
    records = [
        _cube(cube_id, _event(paired, cube_id, {"content": "x"})),
        {"t": "blob", "name": "planted-file", "context": "", "data": "AAAA"},
    ]
    path = craft_bundle(paired, tmp_path / "b.age", records, [crypto.device_keys(home).recipient])
    with pytest.raises(BundleError, match="no memory in it refers to"):
        import_bundle(home, path)
    assert not (home.data_dir / "blobs" / "planted-file").exists()
