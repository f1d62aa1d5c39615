"""A vault whose files are missing, cut short or replaced: hard errors that say how to recover, never a
silently created new vault; `init` never replaces a vault without --force and a confirmation."""

import json
import os

import pytest
from click.testing import CliRunner

from memos_desktop.cli import cli as memos


@pytest.fixture
def run(isolated_home, monkeypatch):
    """memos-desktop in-process (keyword-only embedder), after `init` and one memory."""
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(memos, list(args), input=input, catch_exceptions=False)

    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    assert invoke("init").exit_code == 0
    assert invoke("remember", "the spare key is under the blue pot").exit_code == 0
    return invoke


def _damage(home, how: str) -> None:
    db = home / "vault.db"
    if how == "missing":
        db.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    else:  # truncated mid-page
        os.truncate(db, db.stat().st_size // 2 + 100)


@pytest.mark.parametrize("how", ["missing", "empty", "truncated"])
@pytest.mark.parametrize("command", [("stats",), ("audit",), ("audit", "--verify"), ("search", "key")])
def test_a_missing_or_cut_database_is_a_hard_error_naming_the_files_and_the_way_back(run, isolated_home, how, command):
    _damage(isolated_home, how)
    before = sorted(os.listdir(isolated_home))
    size = (isolated_home / "vault.db").stat().st_size if (isolated_home / "vault.db").exists() else None
    result = run(*command)
    assert result.exit_code == 1
    assert "vault.db" in result.output and "backup" in result.output and "import" in result.output
    assert result.output.count("\n") == 1  # one line
    # nothing was created in its place
    assert sorted(os.listdir(isolated_home)) == before
    if size is not None:
        assert (isolated_home / "vault.db").stat().st_size == size


@pytest.mark.parametrize("how", ["missing", "empty", "truncated"])
def test_doctor_reports_a_missing_or_cut_database(run, isolated_home, how):
    _damage(isolated_home, how)
    result = run("doctor", "--json")
    assert result.exit_code == 1
    checks = {c["check"]: c for c in json.loads(result.output)}
    assert not checks["vault"]["ok"] and "vault.db" in checks["vault"]["detail"]
    assert not (isolated_home / "vault.db").exists() or how != "missing"


def test_init_over_an_existing_vault_is_refused_without_force(run, isolated_home):
    key = (isolated_home / "vault.key").read_bytes()
    result = run("init")
    assert result.exit_code == 1 and "--force" in result.output
    assert (isolated_home / "vault.key").read_bytes() == key


def test_init_over_a_lone_key_file_is_refused(run, isolated_home):
    (isolated_home / "vault.db").unlink()
    key = (isolated_home / "vault.key").read_bytes()
    assert run("init").exit_code == 1
    assert (isolated_home / "vault.key").read_bytes() == key and not (isolated_home / "vault.db").exists()


def test_init_force_without_a_terminal_needs_yes(run, isolated_home):
    key = (isolated_home / "vault.key").read_bytes()
    result = run("init", "--force")
    assert result.exit_code == 1 and "--yes" in result.output
    assert (isolated_home / "vault.key").read_bytes() == key
    assert "blue pot" in run("search", "blue pot").output


def test_init_force_yes_moves_the_old_vault_aside_and_it_still_opens(run, isolated_home, monkeypatch):
    from memos_desktop.vault import Vault

    result = run("init", "--force", "--yes")
    assert result.exit_code == 0, result.output
    aside = [p for p in isolated_home.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and str(aside[0]) in result.output
    assert "blue pot" not in run("search", "blue pot").output  # a new, empty vault
    with Vault.open(aside[0], os.environ["MEMOS_PASSPHRASE"]) as old:
        assert [c.content for c in old.cubes()] == ["the spare key is under the blue pot"]


def _in_terminal(args: list[str], typed: str) -> str:
    """Run memos-desktop with a pseudo-terminal as stdin, type `typed`, return what it printed."""
    import pty
    import subprocess
    import sys

    from tests.support import REPO

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(slave)
    os.write(master, typed.encode())
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return out.decode()


@pytest.mark.parametrize("typed, replaced", [("yes\n", False), ("replace\n", True)])
def test_init_force_in_a_terminal_needs_the_typed_word(run, isolated_home, typed, replaced):
    key = (isolated_home / "vault.key").read_bytes()
    out = _in_terminal(["init", "--force"], typed)
    assert "Type `replace`" in out
    assert ((isolated_home / "vault.key").read_bytes() != key) is replaced
    assert ("Not confirmed" in out) is not replaced
