"""The MemDumper commands driven as a user drives them: real processes, real files, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memos_desktop.dumper import crypto
from memos_desktop.dumper.sync import sync_folder
from memos_desktop.vault import Vault
from tests.dumper_helpers import PASSPHRASE, new_vault, state
from tests.support import REPO, run_cli


@pytest.fixture(autouse=True)
def no_embedder(monkeypatch):
    """These commands' embedding step is the embedder's business; keep the processes light."""
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")


@pytest.fixture
def home(isolated_home):
    v = Vault.create(isolated_home, PASSPHRASE)
    yield v
    v.close()


def _other(tmp_path: Path) -> Path:
    path = tmp_path / "other"
    new_vault(path).close()
    return path


def test_keys_show_and_add(home, cli, tmp_path):
    other = _other(tmp_path)
    card = json.loads(cli("--data-dir", str(other), "keys", "show", "--json").stdout)["card"]
    added = cli("keys", "add", "laptop", card)
    assert added.returncode == 0 and "Added laptop" in added.stdout
    shown = json.loads(cli("keys", "show", "--json").stdout)
    assert shown["trusted"][0]["name"] == "laptop" and shown["card"].startswith("memos-device:")
    assert "age_identity" not in shown
    assert cli("keys", "add", "bad", "not-a-card").stderr.startswith("Error: Not a device card")


def test_export_then_import_into_a_new_vault_with_a_passphrase(home, cli, tmp_path):
    cube = home.add("moving to a new laptop")
    env = {"BUNDLE_PASS": "s3cret"}
    out = cli("export", str(tmp_path / "b.age"), "--passphrase-env", "BUNDLE_PASS", "--json", env=env)
    assert out.returncode == 0, out.stderr
    fresh = tmp_path / "fresh"
    imported = cli(
        "--data-dir",
        str(fresh),
        "import",
        str(tmp_path / "b.age"),
        "--passphrase-env",
        "BUNDLE_PASS",
        env=env,
    )
    assert imported.returncode == 0, imported.stderr
    assert "Imported 1 memories" in imported.stdout
    with Vault.open(fresh, PASSPHRASE) as v:
        assert v.get(cube.id, touch=False).content == "moving to a new laptop"
    again = cli(
        "--data-dir",
        str(fresh),
        "import",
        str(tmp_path / "b.age"),
        "--passphrase-env",
        "BUNDLE_PASS",
        env=env,
    )
    assert "already imported" in again.stdout


def test_import_errors_are_one_line(home, cli, tmp_path):
    (tmp_path / "junk.age").write_bytes(b"\x00garbage" * 100)
    for args in (["import", str(tmp_path / "missing.age")], ["import", str(tmp_path / "junk.age")]):
        result = cli(*args)
        assert result.returncode == 1 and result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    home.add("x")
    cli("export", str(tmp_path / "p.age"), "--passphrase-env", "P", env={"P": "right"})
    wrong = cli("import", str(tmp_path / "p.age"), "--passphrase-env", "P", env={"P": "wrong"})
    assert wrong.stderr.strip() == "Error: Wrong passphrase, or the bundle's passphrase header was tampered with."


def test_conflicts_and_resolve_commands(home, cli, tmp_path):
    other_dir = _other(tmp_path)
    cube = home.add("lunch at noon")
    with Vault.open(other_dir, PASSPHRASE) as other:
        recipient = crypto.device_keys(other).recipient
    home_card = json.loads(cli("keys", "show", "--json").stdout)["card"]
    assert cli("--data-dir", str(other_dir), "keys", "trust", "home", home_card).returncode == 0
    cli("export", str(tmp_path / "1.age"), "--recipient", recipient)
    cli("--data-dir", str(other_dir), "import", str(tmp_path / "1.age"))
    home.edit(cube.id, content="lunch at one")
    with Vault.open(other_dir, PASSPHRASE) as other:
        other.edit(cube.id, content="lunch at two")
    cli("export", str(tmp_path / "2.age"), "--recipient", recipient)
    assert "1 conflicts" in cli("--data-dir", str(other_dir), "import", str(tmp_path / "2.age")).stdout
    listed = json.loads(cli("--data-dir", str(other_dir), "conflicts", "--json").stdout)
    keep = next(h["version"] for h in listed[0]["heads"] if h["content"] == "lunch at one")
    resolved = cli("--data-dir", str(other_dir), "resolve", cube.id, str(keep))
    assert resolved.returncode == 0, resolved.stderr
    assert cli("--data-dir", str(other_dir), "conflicts").stdout.strip() == "No conflicts."


def _fill(vault: Vault, n: int) -> None:
    for start in range(0, n, 5000):
        vault.add_many([{"content": f"memory {i} " + "filler text " * 20} for i in range(start, min(n, start + 5000))])


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_during_export_leaves_no_bundle_under_the_final_name(home, tmp_path):
    _fill(home, 8_000)
    out = tmp_path / "b.age"
    proc = _spawn("export", str(out))
    _kill_when(proc, lambda: any(p.name.startswith(".b.age.partial") for p in tmp_path.iterdir()))
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert run_cli("export", str(out)).returncode == 0 and out.exists()


@pytest.mark.slow
def test_kill_9_during_import_applies_nothing(home, tmp_path):
    _fill(home, 8_000)
    other_dir = _other(tmp_path)
    with Vault.open(other_dir, PASSPHRASE) as other:
        recipient = crypto.device_keys(other).recipient
        crypto.add_peer(other, "home", crypto.device_keys(home).card())
        before = state(other)
    assert run_cli("export", str(tmp_path / "b.age"), "--recipient", recipient).returncode == 0
    wal = other_dir / "vault.db-wal"
    size = wal.stat().st_size if wal.exists() else 0
    proc = _spawn("--data-dir", str(other_dir), "import", str(tmp_path / "b.age"))
    _kill_when(proc, lambda: wal.exists() and wal.stat().st_size > size + 1_000_000)
    assert proc.returncode == -signal.SIGKILL
    with Vault.open(other_dir, PASSPHRASE) as other:
        assert state(other) == before
    assert run_cli("--data-dir", str(other_dir), "import", str(tmp_path / "b.age")).returncode == 0
    with Vault.open(other_dir, PASSPHRASE) as other:
        assert other.conn.execute("SELECT count(*) FROM cubes").fetchone()[0] == 8_000


@pytest.mark.slow
def test_kill_9_during_sync_applies_nothing_and_the_next_sync_completes(home, tmp_path):
    folder = tmp_path / "shared"
    other_dir = _other(tmp_path)
    with Vault.open(other_dir, PASSPHRASE) as other:
        crypto.add_peer(other, "home", crypto.device_keys(home).card())
        crypto.add_peer(home, "other", crypto.device_keys(other).card())
        sync_folder(other, folder)
        sync_folder(home, folder)
        _fill(other, 8_000)
        sync_folder(other, folder)
    before = state(home)
    wal = home.data_dir / "vault.db-wal"
    size = wal.stat().st_size
    proc = _spawn("sync", str(folder))
    _kill_when(proc, lambda: wal.stat().st_size > size + 1_000_000)
    assert state(home) == before
    assert sync_folder(home, folder)["applied_versions"] == 8_000


def test_sync_watch_applies_changes_as_they_arrive(home, tmp_path):
    folder = tmp_path / "shared"
    other = new_vault(tmp_path / "other")
    crypto.add_peer(other, "home", crypto.device_keys(home).card())
    crypto.add_peer(home, "other", crypto.device_keys(other).card())
    sync_folder(other, folder)
    proc = _spawn("sync", str(folder), "--watch", "--interval", "0.5", "--json")
    try:
        first = json.loads(proc.stdout.readline())
        assert first["waiting"] is False
        cube = other.add("sent while watching")
        sync_folder(other, folder)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads(proc.stdout.readline())
            if status["applied_versions"]:
                break
        assert status["applied_versions"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        other.close()
    # Ctrl-C ends the loop between syncs: a clean exit, not a traceback from inside a transaction
    assert proc.returncode == 0 and rest.rstrip().endswith(b"Stopped."), rest
    assert home.get(cube.id, touch=False).content == "sent while watching"
    assert home.get_setting("sync.status")["last_sync"] > 0


def test_sync_watch_stops_cleanly_on_sigterm_between_syncs(home, tmp_path):
    proc = _spawn("sync", str(tmp_path / "shared"), "--watch", "--interval", "60", "--json")
    try:
        assert json.loads(proc.stdout.readline())["waiting"] is False
        proc.send_signal(signal.SIGTERM)  # while it waits out a 60 s interval: noticed well before
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and rest.rstrip().endswith(b"Stopped."), (rest, err)
