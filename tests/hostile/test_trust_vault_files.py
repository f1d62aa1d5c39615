"""The smaller holes of issue #14 item 8, driven as a user (or an attacker at the keyboard) would.

File modes of the vault, the audit log's gaps and reads, export of the active profile only,
`edit` never putting plaintext on a disk, and very weak passphrases.
"""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from memos_desktop import paths
from memos_desktop.cli import cli as memos
from memos_desktop.cli.editor import edit_in_ram
from memos_desktop.errors import CorruptVault, MemosError
from memos_desktop.vault import Vault
from memos_desktop.vault.strength import weakness
from tests.support import PASSPHRASE, run_cli


@pytest.fixture(autouse=True)
def no_embedder(monkeypatch):
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")


@pytest.fixture
def run(isolated_home):
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(memos, list(args), env=env)

    return invoke


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----- file modes ----------------------------------------------------------------------------------
def test_vault_files_are_owner_only_including_wal_shm_and_blobs(isolated_home):
    old = os.umask(0o022)  # a usual umask: files would be world-readable by default
    try:
        with Vault.create(isolated_home, PASSPHRASE) as vault:
            vault.add("written through the WAL")
            vault.blobs.put("kv-1", b"state", b"ctx")
            assert (isolated_home / (paths.VAULT_DB + "-wal")).exists()
            files = [isolated_home / n for n in (paths.VAULT_HEADER, paths.VAULT_DB, paths.VAULT_DB + "-wal")]
            files += [isolated_home / (paths.VAULT_DB + "-shm"), isolated_home / "blobs" / "kv-1"]
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
            assert _mode(isolated_home) == 0o700 and _mode(isolated_home / "blobs") == 0o700
    finally:
        os.umask(old)


def test_a_loosely_copied_vault_is_made_owner_only_when_opened(isolated_home):
    Vault.create(isolated_home, PASSPHRASE).close()
    os.chmod(isolated_home, 0o755)
    for name in (paths.VAULT_HEADER, paths.VAULT_DB):
        os.chmod(isolated_home / name, 0o644)
    Vault.open(isolated_home, PASSPHRASE).close()
    assert _mode(isolated_home) == 0o700
    assert _mode(isolated_home / paths.VAULT_HEADER) == _mode(isolated_home / paths.VAULT_DB) == 0o600


def test_passwd_rewrites_the_key_header_owner_only(run, isolated_home, monkeypatch):
    assert run("init").exit_code == 0
    os.chmod(isolated_home / paths.VAULT_HEADER, 0o644)
    monkeypatch.setenv("MEMOS_NEW_PASSPHRASE", "another long and fine passphrase")
    assert run("passwd").exit_code == 0
    assert _mode(isolated_home / paths.VAULT_HEADER) == 0o600


# ----- audit log -----------------------------------------------------------------------------------
def test_reads_are_recorded_in_the_audit_log(run, isolated_home):
    assert run("init").exit_code == 0
    cube_id = run("remember", "a private fact").output.strip()
    run("show", cube_id)
    run("history", cube_id)
    entries = json.loads(run("audit", "--json").output)
    reads = [(e["cube_id"], e["detail"]["via"]) for e in entries if e["action"] == "read"]
    assert reads == [(cube_id, "show"), (cube_id, "history")]


def test_conflicts_listing_is_recorded_as_reads(isolated_home):
    from memos_desktop.dumper import conflicts

    with Vault.create(isolated_home, PASSPHRASE) as vault:
        cube = vault.add("x")
        vault.record_read([cube.id], "conflicts")
        assert conflicts.conflicts(vault) == []
        assert vault.audit_log(limit=1)[0]["detail"] == {"via": "conflicts"}
    out = run_cli("conflicts")
    assert out.returncode == 0 and out.stdout.strip() == "No conflicts."


def _audit_rows(vault: Vault) -> list:
    return vault.conn.execute("SELECT seq, at, action, cube_id, actor, detail FROM audit ORDER BY seq").fetchall()


def test_audit_verify_finds_a_gap_even_when_the_chain_was_recomputed(isolated_home):
    """Someone holding the key removes an entry and rewrites every later hash: only the missing
    sequence number shows it."""
    import hashlib

    from memos_desktop.vault.store import GENESIS

    with Vault.create(isolated_home, PASSPHRASE) as vault:
        for i in range(5):
            vault.add(f"fact {i}")
        assert vault.verify_audit() == 5
        rows = [r for r in _audit_rows(vault) if r[0] != 3]
        with vault.conn:
            vault.conn.execute("DELETE FROM audit")
            prev = GENESIS
            for seq, at, action, cube_id, actor, detail in rows:
                body = json.dumps([prev, at, action, cube_id, actor, json.loads(detail)], sort_keys=True)
                digest = hashlib.sha256(body.encode()).hexdigest()
                vault.conn.execute(
                    "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, at, action, cube_id, actor, detail, prev, digest),
                )
                prev = digest
        with pytest.raises(CorruptVault, match="gap: entries 3 to 3 are missing"):
            vault.verify_audit()
    out = run_cli("audit", "--verify")
    assert out.returncode == 1 and "gap" in out.stderr and "Traceback" not in out.stderr


def test_audit_verify_reports_a_damaged_detail_in_one_line(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as vault:
        vault.add("x")
        with vault.conn:
            vault.conn.execute("UPDATE audit SET detail = '{not json' WHERE seq = 1")
        with pytest.raises(CorruptVault, match="altered at entry 1"):
            vault.verify_audit()


# ----- export takes the active profile only ------------------------------------------------------------
def test_export_without_profile_takes_the_default_profile_only(run, tmp_path):
    assert run("init").exit_code == 0
    run("remember", "mine")
    run("remember", "work secret", "--profile", "work")
    only_mine = json.loads(run("export", str(tmp_path / "a.age"), "--json").output)
    everything = json.loads(run("export", str(tmp_path / "b.age"), "--all-profiles", "--json").output)
    work = json.loads(run("export", str(tmp_path / "c.age"), "--profile", "work", "--json").output)
    assert (only_mine["cubes"], everything["cubes"], work["cubes"]) == (1, 2, 1)
    both = run("export", str(tmp_path / "d.age"), "--profile", "work", "--all-profiles")
    assert both.exit_code == 1 and "not both" in both.output


# ----- edit never writes plaintext to a disk ---------------------------------------------------------
EDITOR = """#!{python}
import json, os, stat, sys
path = sys.argv[-1]
parent = os.path.dirname(path)
with open(os.environ["EDITOR_LOG"], "w") as log:
    json.dump({{"path": path, "dir_mode": stat.S_IMODE(os.stat(parent).st_mode),
               "file_mode": stat.S_IMODE(os.stat(path).st_mode), "text": open(path).read()}}, log)
with open(path, "a") as fh:
    fh.write(" (edited)")
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a tmpfs at /dev/shm")
def test_edit_opens_the_editor_on_a_private_ram_backed_file_and_removes_it(run, tmp_path, monkeypatch):
    assert run("init").exit_code == 0
    cube_id = run("remember", "the secret plan").output.strip()
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR.format(python=sys.executable))
    editor.chmod(0o700)
    disk = tmp_path / "disk-runtime"
    disk.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(disk))  # on a disk: must be passed over
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.setenv("EDITOR_LOG", str(tmp_path / "log.json"))
    result = run("edit", cube_id)
    assert result.exit_code == 0, result.output
    seen = json.loads((tmp_path / "log.json").read_text())
    assert seen["text"] == "the secret plan"
    assert seen["path"].startswith("/dev/shm/") and seen["dir_mode"] == 0o700 and seen["file_mode"] == 0o600
    assert not Path(seen["path"]).parent.exists()
    assert "the secret plan (edited)" in run("show", cube_id).output


def test_edit_refuses_when_no_ram_backed_directory_exists(tmp_path):
    with pytest.raises(MemosError, match="--text"):
        edit_in_ram("plaintext", candidates=[tmp_path])
    assert list(tmp_path.iterdir()) == []


# ----- weak passphrases --------------------------------------------------------------------------------
@pytest.mark.parametrize("weak", ["hunter2", "password123", "qwertyuiop", "zzzzzzzzzzzz", "abcdefghij", "iloveyou!"])
def test_very_weak_passphrases_are_named(weak):
    assert weakness(weak) is not None


@pytest.mark.parametrize("fine", [PASSPHRASE, "a brand new passphrase", "Tr0ub4dor&3x", "vélo rouge 1987"])
def test_reasonable_passphrases_pass(fine):
    assert weakness(fine) is None


def test_init_refuses_a_weak_passphrase_in_scripts_unless_allowed(run, isolated_home):
    refused = run("init", env={"MEMOS_PASSPHRASE": "password1"})
    assert refused.exit_code == 1 and "very weak" in refused.output and "MEMOS_ALLOW_WEAK_PASSPHRASE" in refused.output
    assert not Vault.exists(isolated_home)
    allowed = run("init", env={"MEMOS_PASSPHRASE": "password1", "MEMOS_ALLOW_WEAK_PASSPHRASE": "1"})
    assert allowed.exit_code == 0 and "Warning: this passphrase is very weak" in allowed.output


def test_passwd_refuses_a_weak_new_passphrase_unless_the_flag_says_so(run, monkeypatch):
    assert run("init").exit_code == 0
    monkeypatch.setenv("MEMOS_NEW_PASSPHRASE", "12345678")
    refused = run("passwd")
    assert refused.exit_code == 1 and "very weak" in refused.output
    assert run("stats").exit_code == 0  # the old passphrase still opens it
    assert run("passwd", "--allow-weak-passphrase").exit_code == 0
