"""Folder sync between several real vaults (memos_desktop/dumper/sync.py)."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memos_desktop.dumper import conflicts, crypto
from memos_desktop.dumper.sync import STATUS_SETTING, sync_folder
from memos_desktop.errors import MemosError
from tests.dumper_helpers import new_vault, state


def _devices(root: Path, n: int, trust: bool = True) -> list:
    vaults = [new_vault(root / f"dev{i}") for i in range(n)]
    if trust:
        for v in vaults:
            for w in vaults:
                if v is not w:
                    crypto.add_peer(v, f"dev-{w.device_id[-6:]}", crypto.device_keys(w).card())
    return vaults


def _settle(vaults, folder: Path, rounds: int = 6) -> None:
    """Sync every device until a whole round changes nothing."""
    for _ in range(rounds):
        moved = 0
        for v in vaults:
            status = sync_folder(v, folder)
            assert not status["errors"], status["errors"]
            moved += status["applied_versions"] + status["published_versions"]
        if not moved:
            return
    raise AssertionError("sync did not settle")


def test_two_devices_exchange_edits(tmp_path):
    a, b = _devices(tmp_path, 2)
    cube = a.add("written on a", tags=["x"])
    _settle([a, b], tmp_path / "shared")
    assert b.get(cube.id, touch=False).content == "written on a"
    b.edit(cube.id, content="edited on b")
    _settle([a, b], tmp_path / "shared")
    assert a.get(cube.id, touch=False).content == "edited on b"
    assert [r for r, _ in a.fts("edited")] == [a._rowid(cube.id)]
    assert state(a) == state(b)


def test_sync_folder_holds_no_plaintext(tmp_path):
    a, b = _devices(tmp_path, 2)
    a.add("a very private sentence about zanzibar")
    _settle([a, b], tmp_path / "shared")
    for path in (tmp_path / "shared").rglob("*"):
        if path.is_file():
            assert b"zanzibar" not in path.read_bytes()


def test_change_sets_of_untrusted_devices_are_skipped(tmp_path):
    a, b = _devices(tmp_path, 2)
    stranger = new_vault(tmp_path / "stranger")
    crypto.add_peer(stranger, "a", crypto.device_keys(a).card())
    crypto.add_peer(a, "stranger", crypto.device_keys(stranger).card())
    folder = tmp_path / "shared"
    sync_folder(a, folder)
    sync_folder(stranger, folder)
    crypto.add_peer(b, "a", crypto.device_keys(a).card())
    stranger.add("from a device b never trusted")
    sync_folder(stranger, folder)
    status = sync_folder(b, folder)
    assert status["untrusted_devices"] == [stranger.device_id]
    assert b.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 0


def test_a_new_device_waits_until_it_is_admitted(tmp_path):
    a = new_vault(tmp_path / "a")
    b = new_vault(tmp_path / "b")
    folder = tmp_path / "shared"
    a.add("before b joined")
    sync_folder(a, folder)
    status = sync_folder(b, folder)
    assert status["waiting"] and "keys add" in status["errors"][0]
    crypto.add_peer(a, "b", crypto.device_keys(b).card())
    crypto.add_peer(b, "a", crypto.device_keys(a).card())
    assert sync_folder(a, folder)["admitted"] == ["b"]
    assert sync_folder(b, folder)["applied_versions"] == 1


def test_status_and_conflicts_are_kept_for_the_tui(tmp_path):
    a, b = _devices(tmp_path, 2)
    cube = a.add("base")
    _settle([a, b], tmp_path / "shared")
    a.edit(cube.id, content="from a")
    b.edit(cube.id, content="from b")
    _settle([a, b], tmp_path / "shared")
    status = a.get_setting(STATUS_SETTING)
    assert status["conflicts"] == 1 and status["last_sync"] > 0
    assert {h["content"] for h in conflicts.conflicts(a)[0]["heads"]} == {"from a", "from b"}


def test_a_resolution_on_one_device_closes_the_conflict_everywhere(tmp_path):
    a, b = _devices(tmp_path, 2)
    cube = a.add("base")
    _settle([a, b], tmp_path / "shared")
    a.edit(cube.id, content="from a")
    b.edit(cube.id, content="from b")
    _settle([a, b], tmp_path / "shared")
    keep = next(h["version"] for h in conflicts.conflicts(b)[0]["heads"] if h["content"] == "from a")
    conflicts.resolve(b, cube.id, keep)
    _settle([a, b], tmp_path / "shared")
    assert conflicts.conflicts(a) == [] and a.get(cube.id, touch=False).content == "from a"
    assert state(a) == state(b)


def test_a_damaged_change_set_is_reported_and_retried(tmp_path):
    a, b = _devices(tmp_path, 2)
    a.add("x" * 1000)
    folder = tmp_path / "shared"
    sync_folder(a, folder)
    [changeset] = (folder / "changes" / a.device_id).glob("*.age")
    good = changeset.read_bytes()
    changeset.write_bytes(good[:-30])
    status = sync_folder(b, folder)
    assert status["applied_versions"] == 0 and "truncated" in status["errors"][0]
    changeset.write_bytes(good)
    assert sync_folder(b, folder)["applied_versions"] == 1


# ----- the property: three devices, random concurrent edits, random sync order ----------------
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 0)),
        st.tuples(st.sampled_from(["edit", "forget", "restore"]), st.integers(0, 2), st.integers(0, 5)),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 0)),
    ),
    min_size=1,
    max_size=25,
)


def _apply(vault, op: str, n: int, written: list[str]) -> None:
    ids = [r[0] for r in vault.conn.execute("SELECT id FROM cubes ORDER BY id")]
    text = f"{op}-{len(written)}"
    try:
        if op == "add":
            vault.add(text)
        elif not ids:
            return
        elif op == "edit":
            vault.edit(ids[n % len(ids)], content=text)
        elif op == "forget":
            vault.forget(ids[n % len(ids)])
        else:
            vault.restore(ids[n % len(ids)])
    except MemosError:
        return
    written.append(text)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_three_devices_converge_without_losing_a_version(ops):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vaults = _devices(root, 3)
        folder = root / "shared"
        written: list[str] = []
        try:
            for op, device, n in ops:
                if op == "sync":
                    sync_folder(vaults[device], folder)
                else:
                    _apply(vaults[device], op, n, written)
            _settle(vaults, folder)
            states = [state(v) for v in vaults]
            assert states[0] == states[1] == states[2]
            for v in vaults:
                contents = {
                    r[0] for r in v.conn.execute("SELECT json_extract(snapshot, '$.content') FROM cube_versions")
                }
                kept = [t for t in written if t.startswith(("add", "edit"))]
                assert set(kept) <= contents
                versions = v.conn.execute("SELECT count(*) FROM cube_versions").fetchone()[0]
                assert versions == len(states[0]["events"])
        finally:
            for v in vaults:
                v.close()


def test_a_replayed_change_set_under_a_new_name_changes_nothing(tmp_path):
    a, b = _devices(tmp_path, 2)
    cube = a.add("once")
    folder = tmp_path / "shared"
    _settle([a, b], folder)
    b.edit(cube.id, content="later edit on b")
    _settle([a, b], folder)
    [first, *_] = sorted((folder / "changes" / a.device_id).glob("*.age"))
    (folder / "changes" / a.device_id / "0000000099.age").write_bytes(first.read_bytes())
    before = state(b)
    status = sync_folder(b, folder)
    assert status["applied_versions"] == 0 and not status["errors"]
    assert state(b) == before and b.get(cube.id, touch=False).content == "later edit on b"
