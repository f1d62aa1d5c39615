"""The vault commands, driven the way a user drives them."""

import json

import pytest
from click.testing import CliRunner

from memos_desktop.cli import cli as memos
from tests.support import run_cli


@pytest.fixture
def run(isolated_home, monkeypatch):
    """Invoke memos-desktop in-process with the keyword-only embedder (fast), after `init`."""
    runner = CliRunner()

    def invoke(*args, input=None):
        result = runner.invoke(memos, list(args), input=input, catch_exceptions=False)
        return result

    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    assert invoke("init").exit_code == 0
    return invoke


def remember(run, *args) -> str:
    result = run("remember", *args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_init_twice_is_refused(run):
    result = run("init")
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_remember_then_search_finds_it_with_provenance(run):
    cube_id = remember(run, "My", "passport", "expires", "in", "March", "--tag", "docs")
    result = run("search", "passport", "--json")
    data = json.loads(result.output)
    assert data["hits"][0]["id"] == cube_id
    assert data["hits"][0]["tags"] == ["docs"]


def test_search_without_embedder_says_it_is_keyword_only(run):
    remember(run, "keyword memory")
    result = run("search", "keyword")
    assert "keyword" in result.output
    assert "note:" in result.output  # the notice that meaning search is off


def test_show_history_edit_forget_restore(run):
    cube_id = remember(run, "The wifi password is on the fridge")
    assert run("edit", cube_id, "--text", "The wifi password is in the drawer").exit_code == 0
    shown = json.loads(run("show", cube_id, "--json").output)
    assert shown["content"] == "The wifi password is in the drawer" and shown["version"] == 2
    assert run("forget", cube_id).exit_code == 0
    assert json.loads(run("search", "wifi", "--json").output)["hits"] == []
    assert run("restore", cube_id).exit_code == 0
    assert run("restore", cube_id, "--version", "1").exit_code == 0
    versions = json.loads(run("history", cube_id, "--json").output)
    assert [v["op"] for v in versions] == ["create", "edit", "forget", "restore", "rollback"]
    assert versions[-1]["snapshot"]["content"] == "The wifi password is on the fridge"


def test_ttl_is_parsed_and_bad_ttl_is_a_clear_error(run):
    cube_id = remember(run, "parking level 3", "--ttl", "2h")
    shown = json.loads(run("show", cube_id, "--json").output)
    assert 7100 < shown["expires_at"] - shown["created_at"] < 7300
    bad = run("remember", "x", "--ttl", "soon")
    assert bad.exit_code == 1 and "Cannot read the duration" in bad.output


def test_unknown_id_is_a_clear_error(run):
    result = run("show", "01NOSUCHMEMORY0000000000000")
    assert result.exit_code == 1
    assert "No memory with id" in result.output


def test_empty_remember_is_refused(run):
    result = run("remember", "   ")
    assert result.exit_code == 1 and "empty" in result.output


def test_stats_and_audit(run):
    cube_id = remember(run, "a fact")
    run("show", cube_id)
    stats = json.loads(run("stats", "--json").output)
    assert stats["cubes"] == {"plaintext/active": 1} and stats["encrypted"] is True
    actions = [e["action"] for e in json.loads(run("audit", "--json").output)]
    assert actions == ["create", "read"]
    assert "intact: 2 entries" in run("audit", "--verify").output


def test_passwd_changes_the_passphrase(run, monkeypatch):
    remember(run, "survives the change")
    monkeypatch.setenv("MEMOS_NEW_PASSPHRASE", "a brand new passphrase")
    assert run("passwd").exit_code == 0
    assert run("stats").exit_code == 1  # the old one no longer works
    monkeypatch.setenv("MEMOS_PASSPHRASE", "a brand new passphrase")
    assert "survives" in run("search", "survives").output


def test_doctor_reports_encryption_and_extensions(run):
    result = run("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(result.output)}
    assert checks["encryption"]["ok"] and checks["sqlite-vec"]["ok"] and checks["vault"]["ok"]


def test_wrong_passphrase_is_one_line_exit_1_no_traceback(isolated_home):
    assert run_cli("init").returncode == 0
    result = run_cli("stats", env={"MEMOS_PASSPHRASE": "wrong"})
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: Wrong passphrase: it does not unlock this vault."


def test_no_vault_yet_says_how_to_create_one(isolated_home):
    result = run_cli("stats")
    assert result.returncode == 1
    assert "memos-desktop init" in result.stderr and "Traceback" not in result.stderr


def test_switching_the_embedder_re_embeds_every_memory(run, monkeypatch):
    monkeypatch.delenv("MEMOS_EMBEDDER")
    remember(run, "first memory")
    remember(run, "second memory")
    result = run("embedder", "none")
    assert "keyword-only" in result.output
    result = run("embedder", "minilm")
    assert result.exit_code == 0, result.output
    assert "2 memories embedded" in result.output
    assert json.loads(run("stats", "--json").output)["embed_model"].startswith("all-MiniLM-L6-v2@")


def test_choosing_a_missing_embedder_file_is_refused(run):
    result = run("embedder", "/nonexistent/model.gguf")
    assert result.exit_code == 1 and "No GGUF embedding model" in result.output
