"""MemStore over MCP: the real server (`python -m memos_desktop mcp`) driven by the SDK's own client.

Every test starts the server as a subprocess, over stdio or loopback HTTP, keyword search only
(MEMOS_EMBEDDER=none) except the one test that proves meaning search with the real embedder.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support import PASSPHRASE, REPO, run_cli

TOOLS = {
    "search_memories",
    "get_memory",
    "add_memory",
    "update_memory",
    "forget_memory",
    "list_recent",
    "build_context",
    "memory_history",
}


def server_env(home: Path, embedder: str | None = "none") -> dict[str, str]:
    env = {
        "PYTHONPATH": str(REPO),
        "MEMOS_HOME": str(home),
        "MEMOS_PASSPHRASE": PASSPHRASE,
        "MEMOS_ARGON2_MEMORY_KIB": "8192",
    }
    if embedder:
        env["MEMOS_EMBEDDER"] = embedder
    return env


@pytest.fixture
def home(isolated_home):
    from memos_desktop.vault import Vault

    Vault.create(isolated_home, PASSPHRASE).close()
    return isolated_home


def add_client(home: Path, name: str, profile: str = "default", read_only: bool = False) -> str:
    from memos_desktop.operation.memstore import add_client as register
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        return register(vault, name, profile, read_only)


def stdio(home: Path, *args: str, embedder: str | None = "none") -> Client:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memos_desktop", "mcp", *args], env=server_env(home, embedder)
    )
    return Client(params)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(home):
    """A running `mcp --http` server on a free loopback port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", "mcp", "--http", "--port", str(port)],
        env={**os.environ, **server_env(home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(timeout=10)


def http(url: str, token: str) -> Client:
    headers = {"Authorization": f"Bearer {token}"}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30)))


def run(fn):
    """Run an async test body to completion (the server subprocesses are real; give them time)."""

    async def bounded():
        with anyio.fail_after(120):
            return await fn()

    return anyio.run(bounded)


async def call(client: Client, tool: str, **args):
    return await client.call_tool(tool, args)


async def data(client: Client, tool: str, **args) -> dict:
    """The structured result of a call that must succeed."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error_text(result) -> str:
    assert result.is_error, result
    return result.content[0].text


# ----- stdio --------------------------------------------------------------------------------


def test_stdio_lists_the_eight_tools_with_schemas_and_annotations(home):
    async def body():
        async with stdio(home) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        return tools, templates

    tools, templates = run(body)
    assert set(tools) == TOOLS
    assert templates == {"memory://{id}", "memory://tag/{tag}"}
    for tool in tools.values():
        assert tool.title and tool.description and "Example" in tool.description
        assert tool.output_schema is not None
    assert tools["search_memories"].annotations.read_only_hint is True
    assert tools["forget_memory"].annotations.destructive_hint is True
    assert tools["add_memory"].annotations.destructive_hint is False
    search = tools["search_memories"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["k"]["type"] == "integer" and search["properties"]["k"]["description"]


def test_stdio_round_trip_of_every_tool(home):
    async def body():
        async with stdio(home) as client:
            added = await data(client, "add_memory", text="Ana's dentist is Dr Ruiz", tags=["health"], title="Ana")
            mid = added["id"]
            found = await data(client, "search_memories", query="dentist", tags=["health"])
            got = await data(client, "get_memory", id=mid)
            updated = await data(client, "update_memory", id=mid, text="Ana's dentist is Dr Ortiz now")
            recent = await data(client, "list_recent", n=5)
            context = await data(client, "build_context", question="who is Ana's dentist", max_tokens=200)
            resource = await client.read_resource(f"memory://{mid}")
            tagged = await client.read_resource("memory://tag/health")
            history = await data(client, "memory_history", id=mid)
            forgotten = await data(client, "forget_memory", id=mid)
            after = await call(client, "get_memory", id=mid)
            gone = await data(client, "search_memories", query="dentist")
        return locals()

    r = run(body)
    mid = r["mid"]
    assert r["added"]["source"] == {"type": "mcp", "client": "local", "citation": "added by MCP client local"}
    assert [m["id"] for m in r["found"]["memories"]] == [mid]
    assert r["got"]["text"] == "Ana's dentist is Dr Ruiz" and r["got"]["tags"] == ["health"]
    assert r["updated"]["version"] == 2 and "Ortiz" in r["updated"]["text"]
    assert r["recent"]["memories"][0]["id"] == mid
    assert f"[{mid}]" in r["context"]["context"] and "Ortiz" in r["context"]["context"]
    assert r["context"]["citations"][0]["id"] == mid and r["context"]["estimated_tokens"] <= 200
    assert "Ortiz" in r["resource"].contents[0].text
    assert r["tagged"].contents[0].text.startswith(f"- [{mid}] Ana's dentist is Dr Ortiz")
    assert [(v["version"], v["op"], v["actor"]) for v in r["history"]["versions"]] == [
        (1, "create", "mcp:local"),
        (2, "edit", "mcp:local"),
    ]
    assert r["forgotten"] == {"id": mid, "version": 3, "state": "deleted"}
    assert "No memory with id" in error_text(r["after"])
    assert r["gone"]["memories"] == []
    restored = run_cli("restore", mid, env=server_env(home))  # a tombstone, restorable
    assert restored.returncode == 0, restored.stderr


def test_every_call_is_audited_with_client_tool_and_ids(home):
    add_client(home, "notes-agent", "default")

    async def body():
        async with stdio(home, "--client", "notes-agent") as client:
            mid = (await data(client, "add_memory", text="Standup moved to 9:30"))["id"]
            await call(client, "search_memories", query="standup")
            await call(client, "get_memory", id="01NOTAREALID0000000000000")
            await call(client, "search_memories", k=3)
            unknown = await call(client, "drop_all_memories")
        return mid, unknown

    mid, unknown = run(body)
    assert "There is no tool named 'drop_all_memories'" in error_text(unknown)

    result = run_cli("audit", "--client", "notes-agent", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert {e["actor"] for e in entries} == {"mcp:notes-agent"}
    calls = [(e["detail"]["tool"], e["detail"]["ids"]) for e in entries if e["action"] == "mcp"]
    assert calls == [
        ("add_memory", [mid]),
        ("search_memories", [mid]),
        ("get_memory", ["01NOTAREALID0000000000000"]),
        ("search_memories", []),
        ("drop_all_memories", []),
    ]
    refusals = [e["detail"].get("refused", "") for e in entries if e["action"] == "mcp"][2:]
    assert refusals[0] == "No memory with id 01NOTAREALID0000000000000."
    assert refusals[1].startswith("Invalid arguments for search_memories: query: Field required")
    assert refusals[2] == "There is no tool named 'drop_all_memories'."
    assert any(e["action"] == "create" and e["cube_id"] == mid for e in entries)
    listing = run_cli("audit", "--client", "nobody")
    assert listing.returncode == 0 and listing.stdout.strip() == ""


def test_bad_input_is_a_clear_error_and_the_server_stays_up(home):
    async def body():
        async with stdio(home, "--max-text", "1000") as client:
            missing = await call(client, "search_memories")
            wrong = await client.call_tool("search_memories", {"query": "x", "k": "many"})
            out_of_range = await client.call_tool("list_recent", {"n": 0})
            unknown = await call(client, "update_memory", id="01NOTAREALID0000000000000", text="x")
            huge = await call(client, "add_memory", text="word " * 1000)
            empty = await call(client, "add_memory", text="   ")
            bad_ttl = await call(client, "add_memory", text="x", ttl="soonish")
            bad_date = await call(client, "search_memories", query="x", since="the day after never")
            still_up = await call(client, "add_memory", text="still here")
        return locals()

    r = run(body)
    assert "Invalid arguments for search_memories: query: Field required" in error_text(r["missing"])
    assert "k: Input should be a valid integer" in error_text(r["wrong"])
    assert "n: Input should be greater than or equal to 1" in error_text(r["out_of_range"])
    assert "No memory with id 01NOTAREALID0000000000000" in error_text(r["unknown"])
    assert "5,000 characters; this server accepts at most 1,000" in error_text(r["huge"])
    assert "empty" in error_text(r["empty"])
    assert "Cannot read the duration 'soonish'" in error_text(r["bad_ttl"])
    assert "Cannot read the date 'the day after never'" in error_text(r["bad_date"])
    assert not r["still_up"].is_error


def test_expired_memories_are_never_returned(home):
    async def body():
        async with stdio(home) as client:
            mid = (await data(client, "add_memory", text="Door code 4411", ttl="1s"))["id"]
            await anyio.sleep(1.5)
            return (
                mid,
                await call(client, "get_memory", id=mid),
                await data(client, "search_memories", query="door code"),
            )

    mid, got, found = run(body)
    assert "No memory with id" in error_text(got)
    assert found["memories"] == []


def test_stdio_client_must_be_registered_and_active(home):
    result = subprocess.run(
        [sys.executable, "-m", "memos_desktop", "mcp", "--client", "ghost"],
        env={**os.environ, **server_env(home)},
        capture_output=True,
        text=True,
        input="",
        timeout=60,
    )
    assert result.returncode == 1
    assert "No active client named ghost" in result.stderr


def test_without_a_passphrase_the_server_explains_how_to_unlock(home):
    env = {k: v for k, v in {**os.environ, **server_env(home)}.items() if k != "MEMOS_PASSPHRASE"}
    result = subprocess.run(
        [sys.executable, "-m", "memos_desktop", "mcp"], env=env, capture_output=True, text=True, input="", timeout=60
    )
    assert result.returncode == 1
    assert "set MEMOS_PASSPHRASE, store it in the OS keyring" in result.stderr
    assert result.stdout == ""  # stdout is the protocol: nothing else is ever written there


# ----- HTTP ---------------------------------------------------------------------------------


def test_profiles_are_isolated_and_another_profile_reads_as_not_found(home, http_server):
    alice, bob = add_client(home, "alice-agent", "alice"), add_client(home, "bob-agent", "bob")

    async def body():
        async with http(http_server, alice) as a, http(http_server, bob) as b:
            mid = (await data(a, "add_memory", text="Alice's surprise party is on Friday"))["id"]
            found = await data(b, "search_memories", query="surprise party")
            recent = await data(b, "list_recent")
            answers = [
                await call(b, "get_memory", id=mid),
                await call(b, "update_memory", id=mid, text="cancelled"),
                await call(b, "forget_memory", id=mid),
                await call(b, "memory_history", id=mid),
            ]
            unknown = await call(b, "get_memory", id="01NOTAREALID0000000000000")
            mine = await data(a, "get_memory", id=mid)
            return mid, found, recent, answers, unknown, mine

    mid, found, recent, answers, unknown, mine = run(body)
    assert found["memories"] == [] and recent["memories"] == []
    for answer in answers:
        assert error_text(answer).endswith(f"No memory with id {mid}.")
    assert error_text(unknown).endswith("No memory with id 01NOTAREALID0000000000000.")
    assert mine["text"] == "Alice's surprise party is on Friday" and mine["version"] == 1


def test_read_only_client_reads_but_cannot_write(home, http_server):
    writer, reader = add_client(home, "writer", "team"), add_client(home, "reader", "team", read_only=True)

    async def body():
        async with http(http_server, writer) as w, http(http_server, reader) as r:
            mid = (await data(w, "add_memory", text="Team offsite in Lisbon"))["id"]
            got = await call(r, "get_memory", id=mid)
            refused = [
                await call(r, "add_memory", text="sneaky"),
                await call(r, "update_memory", id=mid, text="sneaky"),
                await call(r, "forget_memory", id=mid),
            ]
            after = await data(w, "get_memory", id=mid)
            return got, refused, after

    got, refused, after = run(body)
    assert not got.is_error
    for answer in refused:
        assert "Client reader is read-only" in error_text(answer)
    assert after["version"] == 1 and after["text"] == "Team offsite in Lisbon"


def test_revoked_or_unknown_token_gets_401(home, http_server):
    token = add_client(home, "soon-gone", "default")

    async def works():
        async with http(http_server, token) as client:
            return await call(client, "list_recent")

    assert not run(works).is_error
    revoked = run_cli("mcp", "clients", "revoke", "soon-gone")
    assert revoked.returncode == 0, revoked.stderr
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for bearer in (token, "memos_not-a-token", None):
        auth = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        response = httpx2.post(http_server, json=ping, headers={**headers, **auth})
        assert response.status_code == 401, bearer

    with pytest.raises(BaseException) as refused:
        run(works)
    assert all(isinstance(e, MCPError) for e in _leaves(refused.value)), refused.value  # the SDK client is refused too


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def test_wrong_origin_or_host_is_refused(home, http_server):
    token = add_client(home, "browser-victim", "default")
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    base = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
    }
    evil_origin = httpx2.post(http_server, json=ping, headers={**base, "Origin": "http://evil.example"})
    assert evil_origin.status_code == 403
    evil_host = httpx2.post(http_server, json=ping, headers={**base, "Host": "evil.example"})
    assert evil_host.status_code in (403, 421)
    port = http_server.split(":")[2].split("/")[0]
    own_origin = httpx2.post(http_server, json=ping, headers={**base, "Origin": f"http://127.0.0.1:{port}"})
    assert own_origin.status_code not in (401, 403, 421)


def test_non_loopback_bind_is_refused(home):
    result = run_cli("mcp", "--http", "--host", "0.0.0.0", env=server_env(home))
    assert result.returncode == 1
    assert "only binds a loopback address" in result.stderr


def test_a_busy_port_is_a_clear_error(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("mcp", "--http", "--port", str(port), env=server_env(home))
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is in use" in result.stderr


# ----- subscriptions ------------------------------------------------------------------------


@pytest.fixture
def gym(home) -> str:
    """A memory of alice's stored before the server starts (so its creation is no change to hear)."""
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        return vault.add("Gym on Mondays", tags=["routine"], profile="alice").id


def test_subscription_hears_a_change_made_through_the_cli(home, gym, http_server):
    alice, bob = add_client(home, "alice-agent", "alice"), add_client(home, "bob-agent", "bob")
    mid = gym

    async def body():
        async with http(http_server, alice) as a, http(http_server, bob) as b:
            uris = [f"memory://{mid}", "memory://tag/routine"]
            async with a.listen(resource_subscriptions=uris) as heard, b.listen(resource_subscriptions=uris) as other:
                assert set(heard.honored.resource_subscriptions) == set(uris)
                # bob cannot subscribe to alice's memory: not honored, like an id that does not exist
                assert other.honored.resource_subscriptions == ["memory://tag/routine"]
                edit = await anyio.to_thread.run_sync(
                    lambda: run_cli(
                        "edit", mid, "--text", "Gym on Tuesdays", "--profile", "alice", env=server_env(home)
                    )
                )
                assert edit.returncode == 0, edit.stderr
                events = set()
                with anyio.fail_after(10):
                    async for event in heard:
                        events.add(event.uri)
                        if events == set(uris):
                            break
                bob_events = []
                with anyio.move_on_after(1):
                    async for event in other:
                        bob_events.append(event.uri)
            text = (await a.read_resource(f"memory://{mid}")).contents[0].text
            return events, uris, bob_events, text

    events, uris, bob_events, text = run(body)
    assert events == set(uris)
    assert bob_events == []  # alice's private change is not announced to bob, even on a shared tag
    assert "Gym on Tuesdays" in text


def test_legacy_subscribe_gets_resource_updated_notifications(home, gym):
    """Clients on the 2025 protocol (most desktop apps today) use resources/subscribe."""
    import warnings

    from mcp_types import ResourceUpdatedNotification

    heard: list[str] = []
    mid = gym
    add_client(home, "alice-desktop", "alice")

    async def handler(message) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            heard.append(str(message.params.uri))

    async def body():
        args = ["-m", "memos_desktop", "mcp", "--client", "alice-desktop"]
        params = StdioServerParameters(command=sys.executable, args=args, env=server_env(home))
        async with Client(params, mode="legacy", message_handler=handler) as client:
            assert client.server_capabilities.resources.subscribe is True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource(f"memory://{mid}")
            forget = await anyio.to_thread.run_sync(
                lambda: run_cli("forget", mid, "--profile", "alice", env=server_env(home))
            )
            assert forget.returncode == 0, forget.stderr
            with anyio.fail_after(10):
                while not heard:
                    await anyio.sleep(0.05)
            await anyio.sleep(1)  # time for a duplicate, were one to come

    run(body)
    assert heard == [f"memory://{mid}"]


# ----- clients and configuration ------------------------------------------------------------


def test_clients_add_shows_the_token_once_and_stores_only_its_hash(home):
    added = run_cli("mcp", "clients", "add", "cursor", "--profile", "work", "--read-only")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("memos_") and len(token) > 40
    listed = json.loads(run_cli("mcp", "clients", "list", "--json").stdout)
    assert listed[0]["name"] == "cursor" and listed[0]["profile"] == "work" and listed[0]["read_only"] is True
    assert token not in json.dumps(listed)
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        assert token not in json.dumps(vault.get_setting("mcp_clients"))
    again = run_cli("mcp", "clients", "add", "cursor")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert run_cli("mcp", "clients", "revoke", "cursor").returncode == 0
    assert "revoked" in run_cli("mcp", "clients", "list").stdout
    assert run_cli("mcp", "clients", "revoke", "cursor").returncode == 1


@pytest.mark.parametrize("app", ["claude-desktop", "cursor", "vscode", "zed", "http"])
@pytest.mark.parametrize("over_http", [False, True])
def test_config_snippets_are_valid_json_pointing_at_this_vault(home, app, over_http):
    from memos_desktop.cli.mcp import config_snippet

    snippet = json.loads(config_snippet(app, str(home), http=over_http, port=9999, client="me"))
    text = json.dumps(snippet)
    if over_http or app == "http":
        assert "http://127.0.0.1:9999/mcp" in text and "Bearer <TOKEN>" in text
    else:
        assert str(home) in text and '"--client", "me"' in text


def test_claude_code_and_stdio_snippets_are_commands(home):
    from memos_desktop.cli.mcp import config_snippet

    assert config_snippet("claude-code", str(home)).startswith("claude mcp add memos")
    assert "--transport http" in config_snippet("claude-code", str(home), http=True)
    assert config_snippet("stdio", str(home)).startswith(f"MEMOS_HOME={home} ")


# ----- concurrency and the real embedder -----------------------------------------------------


@pytest.mark.slow
def test_watcher_cli_and_two_clients_write_at_once_without_locks_or_lost_writes(home, http_server, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    assert run_cli("watch", "add", str(notes), env=server_env(home)).returncode == 0
    watcher = subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", "watch", "run"],
        env={**os.environ, **server_env(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    one, two = add_client(home, "one", "default"), add_client(home, "two", "default")
    n = 15

    def cli_writer() -> list[str]:
        ids = []
        for i in range(n):
            done = run_cli("remember", f"cli fact number {i}", "--tag", "cli", env=server_env(home))
            assert done.returncode == 0, done.stderr
            ids.append(done.stdout.strip())
        return ids

    async def agent(token: str, name: str, out: dict) -> None:
        async with http(http_server, token) as client:
            for i in range(n):
                result = await call(client, "add_memory", text=f"{name} fact number {i}", tags=[name])
                assert not result.is_error, result.content[0].text
                mid = result.structured_content["id"]
                edited = await call(client, "update_memory", id=mid, text=f"{name} fact number {i}, edited")
                assert not edited.is_error, edited.content[0].text
                out.setdefault(name, []).append(mid)

    def write_notes() -> None:
        for i in range(n):
            (notes / f"note{i}.md").write_text(f"# Note {i}\n\nwatched fact number {i}\n")
            time.sleep(0.05)

    async def body():
        out: dict = {}
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(agent, one, "one", out)
            tasks.start_soon(agent, two, "two", out)
            tasks.start_soon(anyio.to_thread.run_sync, write_notes)
            out["cli"] = await anyio.to_thread.run_sync(cli_writer)
        return out

    try:
        out = run(body)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(watched_paths(home, notes)) < n:
            time.sleep(0.5)
    finally:
        watcher.terminate()
        watcher.wait(timeout=20)
        errors = watcher.stderr.read()
    assert "locked" not in errors.lower(), errors
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        for name in ("one", "two"):
            cubes = [vault.get(i, touch=False) for i in out[name]]
            assert [c.version for c in cubes] == [2] * n and all(c.content.endswith("edited") for c in cubes)
        assert all(vault.get(i, touch=False).content.startswith("cli fact") for i in out["cli"])
    assert len(watched_paths(home, notes)) == n


def watched_paths(home: Path, notes: Path) -> set[str]:
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        return {c.source["path"] for c in vault.cubes(limit=1000) if c.source.get("path", "").startswith(str(notes))}


@pytest.mark.slow
def test_meaning_search_with_the_real_embedder(home):
    pytest.importorskip("llama_cpp")

    async def body():
        async with stdio(home, embedder=None) as client:
            await call(client, "add_memory", text="My sister Ana lives in Porto")
            await call(client, "add_memory", text="The car needs new tyres before winter")
            return await data(client, "search_memories", query="where does my sibling reside", k=1)

    found = run(body)
    assert found["memories"][0]["text"] == "My sister Ana lives in Porto"
