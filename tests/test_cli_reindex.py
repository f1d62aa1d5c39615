"""`memos-desktop reindex --links`: linking the memories of a vault made before links existed."""

import json

import pytest
from click.testing import CliRunner

from memos_desktop.cli import cli as memos
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE


@pytest.fixture
def run(isolated_home, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    assert runner.invoke(memos, ["init"]).exit_code == 0
    return lambda *args: runner.invoke(memos, list(args), catch_exceptions=False)


def test_reindex_links_a_vault_made_before_links_existed(run, isolated_home):
    assert run("remember", "Dinner", "with", "Ana", "Lopez", "in", "Porto").exit_code == 0
    assert run("remember", "Ana", "Lopez", "sent", "the", "photos").exit_code == 0
    with Vault.open(isolated_home, PASSPHRASE) as vault:
        for cube in vault.cubes():
            vault._underive(vault._rowid(cube.id))  # as migrated from before links: nothing derived
        assert vault.derive_pending() == 2
    result = run("reindex", "--links", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["memories"] == 2
    with Vault.open(isolated_home, PASSPHRASE) as vault:
        assert vault.derive_pending() == 0
        assert len(vault.linked("entity", "ana lopez")) == 2
    again = run("reindex", "--links")
    assert "already has its passages and links" in again.output


def test_reindex_without_a_target_says_what_it_can_rebuild(run):
    result = run("reindex")
    assert result.exit_code == 2 and "--links" in result.output
