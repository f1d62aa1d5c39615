"""MemStore's service layer in process: the client registry, access rules, limits, audit, change marks."""

import time

import pytest

from memos_desktop.errors import MemosError, NotFound
from memos_desktop.operation.memstore import (
    AccessDenied,
    Client,
    MemStore,
    add_client,
    client_for_token,
    client_named,
    list_clients,
    revoke_client,
)
from memos_desktop.operation.session import Session


@pytest.fixture
def session(vault, isolated_home):
    return Session(isolated_home, vault)


def store(session, name="agent", profile="default", read_only=False, max_text=None) -> MemStore:
    return MemStore(session, Client(name, profile, read_only), max_text)


def test_token_is_stored_hashed_and_stops_working_when_revoked(vault):
    token = add_client(vault, "cursor", "work", read_only=True)
    assert token not in str(vault.get_setting("mcp_clients"))
    assert client_for_token(vault, token) == Client("cursor", "work", True)
    assert client_for_token(vault, token + "x") is None
    revoke_client(vault, "cursor")
    assert client_for_token(vault, token) is None
    with pytest.raises(NotFound):
        client_named(vault, "cursor")
    assert list_clients(vault)[0]["revoked_at"] is not None
    assert client_for_token(vault, add_client(vault, "cursor", "work")) == Client("cursor", "work", False)


def test_client_and_profile_names_are_checked(vault):
    for bad in ("", "has space", "x" * 65, "../etc"):
        with pytest.raises(MemosError, match="1-64 letters"):
            add_client(vault, bad)
    with pytest.raises(MemosError, match="1-64 letters"):
        add_client(vault, "ok", profile="no/slash")


def test_another_profiles_memory_is_not_found_with_the_same_words_as_a_missing_one(session):
    alice, bob = store(session, "a", "alice"), store(session, "b", "bob")
    mid = alice.add("Alice's locker code is 1234")["id"]
    messages = []
    for call in (bob.get, bob.forget, bob.history, lambda i: bob.update(i, "x")):
        for cube_id in (mid, "01NOTAREALID0000000000000"):
            with pytest.raises(NotFound) as err:
                call(cube_id)
            messages.append(str(err.value).replace(cube_id, "ID"))
    assert set(messages) == {"No memory with id ID."}
    assert bob.search("locker") == [] and bob.recent() == []
    assert alice.get(mid)["text"] == "Alice's locker code is 1234"


def test_shared_memories_are_visible_to_every_profile(session, vault):
    shared = vault.add("The office wifi is memos-guest", profile="alice", visibility="shared")
    bob = store(session, "b", "bob")
    assert bob.get(shared.id)["shared"] is True
    assert [m["id"] for m in bob.search("office wifi")] == [shared.id]


def test_expired_memories_are_never_returned(session, vault):
    cube = vault.add("Temporary gate code 9090", expires_at=time.time() - 1)
    agent = store(session)
    with pytest.raises(NotFound):
        agent.get(cube.id)
    assert agent.search("gate code") == [] and agent.recent() == []
    assert agent.context("gate code")["citations"] == []


def test_read_only_client_is_refused_and_the_refusal_is_audited(session, vault):
    mid = vault.add("Shared plan").id
    reader = store(session, "reader", read_only=True)
    for write in (lambda: reader.add("x"), lambda: reader.update(mid, "x"), lambda: reader.forget(mid)):
        with pytest.raises(AccessDenied, match="read-only"):
            write()
    refused = [e for e in vault.audit_log(actor="mcp:reader") if "refused" in e["detail"]]
    assert [e["detail"]["tool"] for e in refused] == ["add_memory", "update_memory", "forget_memory"]
    assert vault.get(mid).version == 1


def test_text_over_the_limit_is_refused_before_storage(session, vault):
    agent = store(session, max_text=100)
    with pytest.raises(MemosError, match="at most 100"):
        agent.add("x" * 101)
    assert vault.cubes() == []


def test_writes_carry_the_client_as_provenance(session, vault):
    agent = store(session, "zed")
    mid = agent.add("Prefers tabs", tags=["style"], ttl="7d")["id"]
    agent.update(mid, "Prefers spaces")
    cube = vault.get(mid)
    assert cube.source == {"type": "mcp", "client": "zed"}
    assert cube.expires_at == pytest.approx(time.time() + 7 * 86400, abs=60)
    assert [(v["op"], v["actor"]) for v in vault.history(mid)] == [("create", "mcp:zed"), ("edit", "mcp:zed")]


def test_build_context_fits_the_budget_and_cites_ids(session, vault):
    for i in range(30):
        vault.add(f"Project Falcon note {i}: " + "details " * 40)
    section = store(session).context("project falcon", max_tokens=200)
    assert section["estimated_tokens"] <= 200
    assert len(section["context"]) <= 800
    assert section["citations"] and all(f"[{c['id']}]" in section["context"] for c in section["citations"])


def test_changes_since_reports_new_versions_with_old_and_new_tags(vault):
    cube = vault.add("Dentist on Tuesday", tags=["health"])
    mark = vault.change_mark()
    assert vault.changes_since(mark) == (mark, [])
    vault.edit(cube.id, tags=["calendar"])
    new_mark, changes = vault.changes_since(mark)
    assert new_mark > mark
    assert changes == [{"id": cube.id, "owner": "default", "shared": False, "tags": ["calendar", "health"]}]


def test_audit_log_filters_by_actor(vault):
    vault.audit("read", None, "mcp:one")
    vault.audit("read", None, "mcp:two")
    vault.audit("read", None, "user")
    assert [e["actor"] for e in vault.audit_log(actor="mcp:two")] == ["mcp:two"]


def test_a_shared_sessions_reads_are_recorded_after_answering_in_order_and_before_close(isolated_home, fake_embedder):
    """The MCP server's session writes access counts and audit entries of reads on a writer
    thread: the call answers first; entries keep the calls' order; closing writes what is left."""
    from memos_desktop.vault import Vault
    from tests.support import PASSPHRASE

    vault = Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder)
    session = Session(isolated_home, vault, background_writes=True)
    agent = store(session, "bg")
    with session.access() as vault:
        mid = vault.add("The ferry to Santorini leaves at seven").id
        # While the vault is held here the writer thread cannot write: the call still answers.
        assert [m["id"] for m in agent.search("ferry Santorini")] == [mid]
        assert not [e for e in vault.audit_log(actor="mcp:bg")]
    with pytest.raises(NotFound):
        agent.get("01NOTAREALID0000000000000")  # refused: audited at once, after the pending search
    agent.recent()
    session.close()  # the last call's entry was still pending, or just written
    with Vault.open(isolated_home, PASSPHRASE) as vault:
        calls = [(e["detail"]["tool"], e["detail"]["ids"]) for e in vault.audit_log(actor="mcp:bg")]
        assert calls == [
            ("search_memories", [mid]),
            ("get_memory", ["01NOTAREALID0000000000000"]),
            ("list_recent", [mid]),
        ]
        assert vault.get(mid, touch=False).access_count == 1
