"""Damage to the database or its write-ahead log is found and named, never reported as fine; backups are
consistent encrypted single-file copies; closing the vault checkpoints the WAL."""

import json
import os

import pytest
from click.testing import CliRunner

from memos_desktop.cli import cli as memos
from memos_desktop.errors import CorruptVault
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE


@pytest.fixture
def run(monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    return lambda *args: runner.invoke(memos, list(args), catch_exceptions=False)


def _filled(home, fake_embedder, n: int) -> None:
    with Vault.create(home, PASSPHRASE, embedder=fake_embedder) as v:
        v.add_many([{"content": f"note {i}: the heron came back to the pond at dawn"} for i in range(n)])


def _flip_middle(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_bit_flip_in_the_middle_is_named_by_doctor_and_audit_verify(isolated_home, fake_embedder, run):
    _filled(isolated_home, fake_embedder, 300)
    _flip_middle(isolated_home / "vault.db")
    doctor = run("doctor", "--json")
    assert doctor.exit_code == 1
    checks = {c["check"]: c for c in json.loads(doctor.output)}
    assert not checks["integrity"]["ok"]
    assert "page" in checks["integrity"]["detail"] and "cube" in checks["integrity"]["detail"]
    verify = run("audit", "--verify")
    assert verify.exit_code == 1
    assert "damaged" in verify.output and "page" in verify.output and "backup" in verify.output


def test_a_whole_vault_passes_the_integrity_check(isolated_home, fake_embedder, run):
    _filled(isolated_home, fake_embedder, 50)
    checks = {c["check"]: c for c in json.loads(run("doctor", "--json").output)}
    assert checks["integrity"]["ok"]
    assert run("audit", "--verify").exit_code == 0


def _vault_with_unsaved_wal(home, fake_embedder):
    """A vault whose last writes are only in vault.db-wal (another connection keeps it from being checkpointed),
    copied as a crash would leave it."""
    import shutil

    with Vault.create(home, PASSPHRASE, embedder=fake_embedder) as v:
        v.add("written before the log")
    reader = Vault.open(home, PASSPHRASE)
    writer = Vault.open(home, PASSPHRASE, embedder=fake_embedder)
    for i in range(6):
        writer.add(f"written into the log, number {i}")
    crashed = home.parent / "crashed"
    crashed.mkdir()
    for name in ("vault.key", "vault.db", "vault.db-wal"):
        shutil.copy(home / name, crashed / name)
    writer.close()
    reader.close()
    return crashed


def test_a_damaged_wal_is_refused_before_it_silently_drops_committed_writes(isolated_home, fake_embedder):
    crashed = _vault_with_unsaved_wal(isolated_home, fake_embedder)
    wal = crashed / "vault.db-wal"
    before = wal.read_bytes()
    page_size = int.from_bytes(before[8:12], "big")
    data = bytearray(before)
    data[32 + 2 * (24 + page_size) + 24 + 100] ^= 0x01  # inside the third frame's page
    wal.write_bytes(bytes(data))
    with pytest.raises(CorruptVault, match=r"write-ahead log .* damaged at frame .* backup"):
        Vault.open(crashed, PASSPHRASE)
    assert wal.read_bytes() == bytes(data)  # nothing was overwritten: the writes can still be recovered
    db_size = (crashed / "vault.db").stat().st_size
    with pytest.raises(CorruptVault):
        Vault.open(crashed, PASSPHRASE)
    assert (crashed / "vault.db").stat().st_size == db_size


def test_an_intact_wal_left_by_a_crash_opens_with_every_write(isolated_home, fake_embedder):
    crashed = _vault_with_unsaved_wal(isolated_home, fake_embedder)
    with Vault.open(crashed, PASSPHRASE) as v:
        assert len(v.cubes()) == 7
        assert v.check_integrity() == []


def test_closing_checkpoints_the_wal_even_while_another_connection_is_open(isolated_home, fake_embedder):
    with Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder) as v:
        v.add("first")
    other = Vault.open(isolated_home, PASSPHRASE)
    v = Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder)
    v.add_many([{"content": f"memory {i}"} for i in range(50)])
    assert (isolated_home / "vault.db-wal").stat().st_size > 0
    v.close()
    assert (isolated_home / "vault.db-wal").stat().st_size == 0  # every write is in vault.db itself
    other.close()


def test_backup_of_a_large_live_vault_is_a_whole_encrypted_copy(isolated_home, fake_embedder, tmp_path, run):
    _filled(isolated_home, fake_embedder, 3000)
    other = Vault.open(isolated_home, PASSPHRASE)  # keeps the last writes in the WAL only
    live = Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder)
    live.add("the very last memory, still only in the write-ahead log")
    result = run("backup", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert "3001 memories" in result.output and "vault.key" in result.output
    copy = tmp_path / "bk"
    assert sorted(p.name for p in copy.iterdir()) == ["vault.db", "vault.key"]
    assert not (copy / "vault.db").read_bytes().startswith(b"SQLite format 3")
    assert b"heron" not in (copy / "vault.db").read_bytes()
    with Vault.open(copy, PASSPHRASE) as restored:
        assert restored.check_integrity() == []
        assert restored.stats()["cubes"] == live.stats()["cubes"]
        mine = {c.id: c.content for c in live.cubes(limit=10_000)}
        assert {c.id: c.content for c in restored.cubes(limit=10_000)} == mine
        assert restored.verify_audit() == live.verify_audit() - 1  # the live vault then audited the backup
        assert live.audit_log(limit=1)[0]["action"] == "backup"
    live.close()
    other.close()


def test_backup_refuses_a_folder_that_is_not_empty(isolated_home, fake_embedder, tmp_path, run):
    _filled(isolated_home, fake_embedder, 3)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = run("backup", str(tmp_path / "full"))
    assert result.exit_code == 1 and "empty folder" in result.output
    assert os.listdir(tmp_path / "full") == ["keep.txt"]


@pytest.mark.slow
def test_opening_while_another_connection_writes_never_reports_a_damaged_wal(isolated_home, fake_embedder):
    import threading

    with Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder) as v:
        v.add("first")
    stop = threading.Event()
    errors = []

    def write() -> None:
        with Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder) as w:
            i = 0
            while not stop.is_set():
                w.add(f"concurrent memory {i} " + "x" * 3000)  # pages enough to restart the log often
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(20):
            try:
                Vault.open(isolated_home, PASSPHRASE).close()  # each close checkpoints, restarting the log
            except CorruptVault as exc:
                errors.append(str(exc))
    finally:
        stop.set()
        writer.join()
    assert errors == []
