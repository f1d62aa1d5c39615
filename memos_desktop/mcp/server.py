"""`memos-desktop mcp`: the MemStore MCP server over one unlocked vault (interface layer).

Owns building the server on the official SDK (`MCPServer`): the tools (`tools.py`), the
`memory://{id}` and `memory://tag/{tag}` resources, subscriptions and the change watcher
(`changes.py`), and the two transports. Over stdio the server is one client (named with --client,
else the local default-profile client). Over streamable HTTP it listens on a loopback address
only, every request carries a client's bearer token (checked against the vault's client registry
on each request, so a revoked token is refused at once with 401), and Host and Origin headers must
name this loopback server (DNS rebinding). The vault is unlocked once, by the caller; the
passphrase never reaches a client. What a client may do lives in `operation.memstore`.
"""

import ipaddress
import socket
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, ValidationError

from memos_desktop import __version__
from memos_desktop.errors import MemosError
from memos_desktop.mcp.changes import ChangeWatcher, Subscriptions
from memos_desktop.mcp.tools import Tools, _card
from memos_desktop.operation.memstore import Client, MemStore, client_for_token
from memos_desktop.operation.session import Session

INSTRUCTIONS = """\
The user's own long-term memory (memos-desktop): notes, facts, preferences and past conversations,
stored encrypted on this machine. Search it (search_memories, or build_context for a ready prompt
section) before answering questions that may depend on what the user said or wrote; cite memories by
id. Store durable facts the user tells you with add_memory, one fact per memory. Subscribe to
memory://ID or memory://tag/TAG to hear when they change."""


def check_loopback(host: str) -> str:
    """`host` if it is a loopback address (127.0.0.1, ::1, localhost), else a clear refusal."""
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise MemosError(
            f"Refusing to listen on {host}: the MCP server only binds a loopback address (127.0.0.1 or ::1), "
            "so nothing outside this machine can reach the vault."
        )
    return host


def _check_port(host: str, port: int) -> None:
    """Refuse clearly, before unlocking anything for clients, a port another program holds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise MemosError(f"Port {port} on {host} is in use; choose another with --port.") from None


class VaultTokens:
    """The bearer-token check: a token is good while its client is registered and not revoked."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _lookup(self, token: str) -> Client | None:
        with self.session.access() as vault:
            return client_for_token(vault, token)

    async def verify_token(self, token: str) -> AccessToken | None:
        client = await anyio.to_thread.run_sync(self._lookup, token)
        if client is None:
            return None
        claims = {"profile": client.profile, "read_only": client.read_only}
        scopes = ["memories:read"] if client.read_only else ["memories:read", "memories:write"]
        return AccessToken(token=token, client_id=client.name, scopes=scopes, claims=claims)


class _Server(MCPServer):
    """MCPServer whose argument errors read as one line per bad argument, not pydantic's report, and
    reach the audit log like every other refused call (`refused(tool, message)`)."""

    refused: Any = None

    async def call_tool(self, name: str, arguments: dict[str, Any], context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.__cause__.errors()
                )
                error = ToolError(f"Invalid arguments for {name}: {problems}.")
            elif self._tool_manager.get_tool(name) is None:
                error = ToolError(f"There is no tool named {name!r}.")
            else:
                raise  # the tool's own refusal, audited where it was made
            await anyio.to_thread.run_sync(self.refused, name, str(error))
            raise error from exc.__cause__


class MemStoreServer:
    """One MCP server over `session`: stdio for `client`, or HTTP for token-holding clients."""

    def __init__(
        self, session: Session, client: Client | None = None, max_text: int | None = None, http_url: str | None = None
    ) -> None:
        self.session = session
        self.client = client
        self.max_text = max_text
        self._stores: dict[Client, MemStore] = {}
        auth: dict[str, Any] = {}
        if http_url:
            settings = AuthSettings(issuer_url=AnyHttpUrl(http_url), resource_server_url=None)
            auth = dict(auth=settings, token_verifier=VaultTokens(session))
        self.server = _Server(
            "memos-desktop",
            title="memos-desktop memory",
            instructions=INSTRUCTIONS,
            version=__version__,
            subscriptions=False,
            log_level="WARNING",
            **auth,
        )
        self.server.refused = lambda tool, message: self.store().refuse(tool, message)
        Tools(self.store).register(self.server)
        self.subscriptions = Subscriptions(session, self.calling_client)
        self.subscriptions.install(self.server._lowlevel_server)
        self.watcher = ChangeWatcher(session, self.subscriptions.publish)
        self._resources()

    def calling_client(self) -> Client:
        """The client making the current request: the stdio client, or the HTTP token's."""
        if self.client is not None:
            return self.client
        token = get_access_token()
        if token is None or not token.claims:
            raise MemosError("This request carries no client token.")
        return Client(token.client_id, token.claims["profile"], bool(token.claims["read_only"]))

    def store(self) -> MemStore:
        client = self.calling_client()
        if client not in self._stores:
            self._stores[client] = MemStore(self.session, client, self.max_text)
        return self._stores[client]

    def _resources(self) -> None:
        @self.server.resource(
            "memory://{id}",
            name="memory",
            title="A memory",
            description="One memory of the user's, current version, as text with its id, source and tags.",
            mime_type="text/markdown",
        )
        def memory(id: str, ctx: Context) -> str:
            try:
                return _card(self.store().get(id, via="read_resource"))
            except MemosError as exc:
                raise ResourceError(str(exc)) from None

        @self.server.resource(
            "memory://tag/{tag}",
            name="tag",
            title="Memories with a tag",
            description="The newest memories carrying a tag (subscribe to hear when any of them changes).",
            mime_type="text/markdown",
        )
        def tagged(tag: str, ctx: Context) -> str:
            try:
                found = self.store().tagged(tag)
            except MemosError as exc:
                raise ResourceError(str(exc)) from None
            return "\n".join(f"- [{m['id']}] {m['text'][:200]}" for m in found) or f"No memories tagged {tag}."

    async def _serve(self, run) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.watcher.run)
            await run()
            tasks.cancel_scope.cancel()

    def run_stdio(self) -> None:
        anyio.run(self._serve, self.server.run_stdio_async)

    def http_app(self, host: str, port: int):
        hosts = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts,
            allowed_origins=[f"http://{h}" for h in hosts],
        )
        return self.server.streamable_http_app(transport_security=security, host=host)

    def run_http(self, host: str, port: int) -> None:
        import uvicorn

        _check_port(check_loopback(host), port)
        config = uvicorn.Config(self.http_app(host, port), host=host, port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        anyio.run(self._serve, server.serve)
