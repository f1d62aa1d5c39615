"""TTL: once a memory's time is up, no read path returns it (search, show, history, lists, export,
sync, chat retrieval), and it is purged (text erased from the row, every version and the indexes)
on open and by the scheduler, with the purge in the audit log. The clock advances; nobody sleeps."""

import json

import pytest
from click.testing import CliRunner

from memos_desktop.errors import NotFound
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE

SECRET = "the door code is 4711 zebra"


class Clock:
    def __init__(self, monkeypatch):
        import time

        self.now = time.time()
        monkeypatch.setattr("memos_desktop.vault.store._now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def expiring(vault, clock):
    """A memory with a one-hour TTL, edited once (two versions), and a lasting one."""
    cube = vault.add(SECRET, title="door", tags=["home"], ttl=3600)
    vault.edit(cube.id, content=SECRET + " (back door too)")
    keep = vault.add("the garden gate has no code")
    return cube, keep


def _everything_stored(vault) -> str:
    """The text of every row of every table that holds memory text (decrypted)."""
    conn = vault.conn
    parts = [str(r) for r in conn.execute("SELECT * FROM cubes")]
    parts += [str(r) for r in conn.execute("SELECT * FROM cube_versions")]
    return "\n".join(parts)


def test_an_expired_memory_is_hidden_from_every_vault_read_before_the_purge(vault, expiring, clock):
    from memos_desktop.operation.search import search

    cube, keep = expiring
    clock.advance(3601)
    for include_inactive in (False, True):
        with pytest.raises(NotFound):
            vault.get(cube.id, include_inactive=include_inactive)
    with pytest.raises(NotFound):
        vault.history(cube.id)
    for state in ("active", "archived", "deleted"):
        assert cube.id not in [c.id for c in vault.cubes(state=state)]
    assert [h.cube.id for h in search(vault, "door code zebra", k=5)] in ([], [keep.id])
    with pytest.raises(NotFound):
        vault.restore(cube.id)


def test_the_purge_erases_the_text_everywhere_and_is_audited(vault, expiring, clock):
    cube, keep = expiring
    assert "zebra" in _everything_stored(vault)
    vectors = vault.vector_count()
    clock.advance(3601)
    assert vault.expire() == 1
    assert vault.vector_count() == vectors - 1
    assert "zebra" not in _everything_stored(vault) and "door" not in _everything_stored(vault)
    assert vault.fts("zebra", 5) == []
    purge = [e for e in vault.audit_log(cube_id=cube.id) if e["action"] == "purge"]
    assert len(purge) == 1 and purge[0]["actor"] == "system" and purge[0]["detail"]["reason"] == "ttl"
    assert vault.verify_audit() > 0
    assert vault.expire() == 0  # once
    assert vault.get(keep.id).content == "the garden gate has no code"
    with pytest.raises(NotFound):  # a purged memory cannot be restored or rolled back
        vault.restore(cube.id)
    with pytest.raises(NotFound):
        vault.rollback(cube.id, 1)


def test_memories_that_expired_while_closed_are_purged_on_open(isolated_home, fake_embedder, clock):
    with Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder) as v:
        cube = v.add(SECRET, ttl=60)
    clock.advance(61)
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert "zebra" not in _everything_stored(v)
        assert [e["action"] for e in v.audit_log(cube_id=cube.id)][-1] == "purge"


def test_the_scheduler_purges_periodically(vault, expiring, clock):
    from memos_desktop.operation.scheduler import MemScheduler

    clock.advance(3601)
    assert MemScheduler(vault, clock=lambda: clock.now).maintain()["purged"] == 1
    assert "zebra" not in _everything_stored(vault)


def test_chat_retrieval_never_puts_an_expired_memory_in_the_prompt(vault, expiring, clock, scripted_llm):
    from memos_desktop.operation.turn import Assistant

    cube, _ = expiring
    vault.edit(cube.id, pinned=True)  # even a pinned one
    clock.advance(3601)
    llm = scripted_llm(answers=["I do not know."])
    assistant = Assistant(vault, llm, activation=False)
    result = assistant.turn(assistant.new_conversation(), "What is the door code?")
    assert "zebra" not in llm.prompts[0]
    assert cube.id not in [c.cube_id for c in result.citations]


def test_export_never_carries_an_expired_memory(vault, expiring, clock, tmp_path):
    import pyrage
    from pyrage import x25519

    from memos_desktop.dumper import crypto
    from memos_desktop.dumper.export import export_bundle

    clock.advance(3601)  # expired, not yet purged: the export must not rely on a purge having run
    export_bundle(vault, tmp_path / "b.age")
    identity = x25519.Identity.from_str(crypto.device_keys(vault).age_identity)
    plain = pyrage.decrypt((tmp_path / "b.age").read_bytes(), [identity])
    assert b"zebra" not in plain and b"garden gate" in plain


def test_sync_never_publishes_an_expired_memory(tmp_path, clock):
    from memos_desktop.dumper import crypto
    from memos_desktop.dumper.sync import sync_folder
    from tests.dumper_helpers import new_vault

    a, b = new_vault(tmp_path / "a"), new_vault(tmp_path / "b")
    crypto.add_peer(a, "b", crypto.device_keys(b).card())
    crypto.add_peer(b, "a", crypto.device_keys(a).card())
    shared = a.add("shared before it expired: heron", ttl=3600)
    sync_folder(a, tmp_path / "shared")
    sync_folder(b, tmp_path / "shared")
    assert b.get(shared.id).content.endswith("heron")
    late = a.add(SECRET, ttl=60)  # expires before the next sync
    clock.advance(3601)
    sync_folder(a, tmp_path / "shared")
    status = sync_folder(b, tmp_path / "shared")
    assert not status["errors"], status["errors"]
    b.expire()
    for v in (a, b):
        assert "zebra" not in _everything_stored(v) and "heron" not in _everything_stored(v)
    try:  # b either never heard of it or holds the purge: a tombstone without text
        stub = b.get(late.id, include_inactive=True)
    except NotFound:
        stub = None
    assert stub is None or (stub.content == "" and stub.state == "deleted")
    a.close()
    b.close()


@pytest.mark.parametrize("command", ["show", "history", "restore"])
def test_show_history_and_restore_say_not_found_for_an_expired_memory(vault, expiring, clock, monkeypatch, command):
    from memos_desktop.cli import cli as memos

    cube, _ = expiring
    vault.close()
    clock.advance(3601)
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    result = CliRunner().invoke(memos, [command, cube.id], catch_exceptions=False)
    assert result.exit_code == 1 and "zebra" not in result.output
    listing = CliRunner().invoke(memos, ["search", "door code zebra", "--json"], catch_exceptions=False)
    hits = json.loads(listing.output)["hits"]
    assert cube.id not in [h["id"] for h in hits] and "zebra" not in json.dumps(hits), hits


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_tui_drops_a_memory_from_an_open_list_when_it_expires(isolated_home, fake_embedder, clock):
    from memos_desktop.tui.app import MemosApp

    with Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder) as v:
        cube = v.add(SECRET, ttl=3600)
        v.add("the garden gate has no code")
    app = MemosApp(isolated_home, embedder=fake_embedder)
    async with app.run_test(size=(140, 40)) as pilot:
        while app._session is None:
            await pilot.pause(0.05)
        app.switch_mode("memories")
        await pilot.pause(0.3)
        table = app.screen.query_one("#memory-table")
        while table.row_count < 2:
            await pilot.pause(0.05)
        assert "zebra" in app.export_screenshot()
        clock.advance(3601)
        app.maintain()  # what the app's one-minute timer calls
        for _ in range(200):
            if table.row_count == 1:
                break
            await pilot.pause(0.05)
        assert table.row_count == 1 and "zebra" not in app.export_screenshot()
        with app.session.access() as vault:
            assert cube.id not in [c.id for c in vault.cubes()]
