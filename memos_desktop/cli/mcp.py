"""MemStore commands: `mcp` (serve the vault to local agents), `mcp config`, `mcp clients`, `bench mcp`."""

import json
import os
import shutil
import sys

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.bench import bench
from memos_desktop.cli.output import echo_json, when
from memos_desktop.errors import MemosError

DEFAULT_PORT = 8765
KEYRING_SERVICE = "memos-desktop"
CLIENT_APPS = ("claude-desktop", "claude-code", "cursor", "vscode", "zed", "stdio", "http")


@cli.group(invoke_without_command=True)
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP on a loopback port instead of stdio.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address: 127.0.0.1 or ::1.")
@click.option("--client", "client_name", help="Over stdio: serve as this registered client (its profile, rights).")
@click.option("--max-text", type=click.IntRange(100), help="Longest memory text accepted, in characters.")
@click.pass_context
def mcp(ctx: click.Context, http: bool, port: int, host: str, client_name: str | None, max_text: int | None) -> None:
    """Serve the vault to local agents over MCP (stdio by default).

    The vault is unlocked once at start: $MEMOS_PASSPHRASE, the OS keyring (service "memos-desktop",
    user: the data directory), or a prompt on the terminal. Over HTTP each agent authenticates with
    its own token from `mcp clients add`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from memos_desktop.mcp.server import MemStoreServer, check_loopback
    from memos_desktop.operation.memstore import LOCAL_CLIENT, Client, client_named
    from memos_desktop.operation.session import Session

    obj: Context = ctx.obj
    if http:
        check_loopback(host)
        if client_name:
            raise MemosError("--client is for stdio; over HTTP each agent is known by its token.")
    session = Session.open(obj.data_dir, _unlock(obj), shared=True)
    try:
        with session.access() as vault:
            client = None if http else (client_named(vault, client_name) if client_name else Client(LOCAL_CLIENT))
        who = f"client {client.name} (profile {client.profile})" if client else "token-holding clients"
        status = session.embedder_notice or "keyword search only"
        if http:
            url = f"http://{'[::1]' if host == '::1' else host}:{port}"
            click.echo(f"memos-desktop MCP on {url}/mcp for {who}; {status}.", err=True)
            MemStoreServer(session, max_text=max_text, http_url=url).run_http(host, port)
        else:
            click.echo(f"memos-desktop MCP on stdio for {who}; {status}.", err=True)
            MemStoreServer(session, client, max_text=max_text).run_stdio()
    finally:
        session.close()


def _unlock(obj: Context) -> str:
    """The passphrase: $MEMOS_PASSPHRASE, else the OS keyring when the `keyring` package has it,
    else a prompt on the terminal (written to stderr: over stdio, stdout is the protocol)."""
    if os.environ.get("MEMOS_PASSPHRASE"):
        return os.environ["MEMOS_PASSPHRASE"]
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, str(obj.data_dir))
    except Exception:  # no keyring package or no usable backend: fall through to the prompt
        stored = None
    if stored:
        return stored
    if not sys.stdin.isatty():
        raise MemosError(
            "No passphrase: set MEMOS_PASSPHRASE, store it in the OS keyring "
            f"(keyring set {KEYRING_SERVICE} {obj.data_dir}), or start the server in a terminal."
        )
    return click.prompt("Passphrase", hide_input=True, err=True)


@mcp.command("config")
@click.argument("app", type=click.Choice(CLIENT_APPS))
@click.option("--http", "http", is_flag=True, help="Connect over HTTP (start `memos-desktop mcp --http` yourself).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--client", "client_name", help="The registered client the agent runs as.")
@pass_ctx
def config(obj: Context, app: str, http: bool, port: int, client_name: str | None) -> None:
    """Print the configuration snippet that connects APP to this vault."""
    click.echo(config_snippet(app, str(obj.data_dir), http=http, port=port, client=client_name))
    if http:
        click.echo(
            "\nReplace <TOKEN> with the token `memos-desktop mcp clients add NAME --profile P` printed.", err=True
        )
    else:
        click.echo(
            "\nThe server unlocks the vault with the OS keyring "
            f"(keyring set {KEYRING_SERVICE} {obj.data_dir}), or with MEMOS_PASSPHRASE added to the env above"
            " (the agent's config file then holds it in clear).",
            err=True,
        )


def config_snippet(app: str, data_dir: str, *, http: bool = False, port: int = DEFAULT_PORT, client=None) -> str:
    """The text to paste into APP's settings (JSON, or a command for claude-code and stdio)."""
    exe = shutil.which("memos-desktop")
    command, args = (exe, ["mcp"]) if exe else (sys.executable, ["-m", "memos_desktop", "mcp"])
    if client:
        args += ["--client", client]
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"Authorization": "Bearer <TOKEN>"}
    env = {"MEMOS_HOME": data_dir}
    stdio = {"command": command, "args": args, "env": env}
    if app == "claude-code":
        if http:
            return f"claude mcp add --transport http memos {url} --header 'Authorization: Bearer <TOKEN>'"
        return f"claude mcp add memos --env MEMOS_HOME={data_dir} -- {command} {' '.join(args)}"
    if app in ("stdio", "http"):
        if http or app == "http":
            return json.dumps({"url": url, "headers": headers}, indent=2)
        return f"MEMOS_HOME={data_dir} {command} {' '.join(args)}"
    if app in ("claude-desktop", "cursor"):
        server = {"url": url, "headers": headers} if http else stdio
        return json.dumps({"mcpServers": {"memos": server}}, indent=2)
    if app == "vscode":
        server = {"type": "http", "url": url, "headers": headers} if http else {"type": "stdio", **stdio}
        return json.dumps({"servers": {"memos": server}}, indent=2)
    server = {"url": url, "headers": headers} if http else {"source": "custom", **stdio}
    return json.dumps({"context_servers": {"memos": server}}, indent=2)  # zed


@mcp.group()
def clients() -> None:
    """The agents allowed to use the vault over MCP."""


@clients.command("add")
@click.argument("name")
@click.option("--profile", default="default", show_default=True, help="Whose memories the client sees and writes.")
@click.option("--read-only", is_flag=True, help="The client can search and read, never write.")
@pass_ctx
def clients_add(obj: Context, name: str, profile: str, read_only: bool) -> None:
    """Register client NAME and print its token (shown once; only its hash is stored)."""
    from memos_desktop.operation.memstore import add_client

    token = add_client(obj.vault(embedder=False), name, profile, read_only)
    click.echo(token)
    click.echo(
        f"Client {name} ({'read-only, ' if read_only else ''}profile {profile}) added. "
        "This token is shown once: keep it in the agent's config.",
        err=True,
    )


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def clients_list(obj: Context, as_json: bool) -> None:
    """List registered clients."""
    from memos_desktop.operation.memstore import list_clients

    found = list_clients(obj.vault(embedder=False))
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No MCP clients yet; add one with `memos-desktop mcp clients add NAME`.")
    for c in found:
        state = f"revoked {when(c['revoked_at'])}" if c["revoked_at"] else "active"
        rights = "read-only" if c["read_only"] else "read-write"
        click.echo(f"{c['name']:<20} profile {c['profile']:<12} {rights:<10} {state}, added {when(c['created_at'])}")


@clients.command("revoke")
@click.argument("name")
@pass_ctx
def clients_revoke(obj: Context, name: str) -> None:
    """Revoke client NAME: its token stops working at its next request."""
    from memos_desktop.operation.memstore import revoke_client

    revoke_client(obj.vault(embedder=False), name)
    click.echo(f"Client {name} revoked.")


@bench.command("mcp")
@click.option("-n", "n", type=int, default=100_000, show_default=True, help="Memories in the vault.")
@click.option("--queries", type=int, default=200, show_default=True)
@click.option("--adds", type=int, default=200, show_default=True, help="add_memory calls timed.")
@click.option("--json", "as_json", is_flag=True)
def bench_mcp(n: int, queries: int, adds: int, as_json: bool) -> None:
    """search_memories round trip over stdio and HTTP, and add_memory throughput, with a real server."""
    from memos_desktop.bench import mcp as bench_module
    from memos_desktop.bench import report

    result = bench_module.run(n=n, queries=queries, adds=adds)
    report(f"MCP search round trip, {n:,} memories", bench_module.rows(result), result, as_json)
