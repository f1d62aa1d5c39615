"""Publish/subscribe over the vault: tell subscribed clients when a memory or a tag changes (interface layer).

Changes come from anywhere (this server's clients, the CLI, the TUI, the folder watcher, sync), so
nothing here hooks the writers: `ChangeWatcher` polls the vault's change mark a few times a second
(one indexed query; `Vault.changes_since` only when it moved) and publishes `memory://ID` and
`memory://tag/TAG` updates. Each event carries whose memory changed, and is delivered only to
clients whose profile sees that memory: on `subscriptions/listen` streams (protocol 2026-07-28)
through `ProfileBus`, on older connections through `resources/subscribe` and
`notifications/resources/updated` (`LegacySubscriptions`). A client cannot subscribe to a memory
it cannot see; the refusal looks the same as for an id that does not exist.
"""

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp_types import EmptyResult, SubscribeRequestParams, SubscriptionsListenRequestParams, UnsubscribeRequestParams

from memos_desktop.errors import NotFound
from memos_desktop.operation.memstore import Client
from memos_desktop.operation.session import Session

POLL_SECONDS = 0.25
MEMORY_URI = "memory://{id}"
TAG_URI = "memory://tag/{tag}"
TAG_PREFIX = "memory://tag/"
log = logging.getLogger(__name__)

_listening_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar("listening_client", default=None)


@dataclass(frozen=True)
class MemoryUpdated(ResourceUpdated):
    """A memory (or a tag's set of memories) changed; `owner`/`shared` say who may hear of it."""

    owner: str = "default"
    shared: bool = False

    def visible_to(self, client: Client) -> bool:
        return self.shared or self.owner == client.profile


class ProfileBus(InMemorySubscriptionBus):
    """The listen streams' fan-out, keeping each stream to what its client's profile may see."""

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        client = _listening_client.get()

        def deliver(event: Any) -> None:
            if isinstance(event, MemoryUpdated) and (client is None or not event.visible_to(client)):
                return
            listener(event)

        return super().subscribe(deliver)


class Subscriptions:
    """Serves `subscriptions/listen` and the older `resources/subscribe` for one server."""

    def __init__(self, session: Session, client_of: Callable[[], Client]) -> None:
        self.session = session
        self.client_of = client_of
        self.bus = ProfileBus()
        self._listen = ListenHandler(self.bus)
        self._legacy: dict[Any, tuple[Client, set[str]]] = {}  # server session → (client, uris)

    def install(self, lowlevel) -> None:
        lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, self.listen)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self.subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self.unsubscribe)

    async def listen(self, ctx, params: SubscriptionsListenRequestParams):
        client = self.client_of()
        wanted = params.notifications.resource_subscriptions or []
        allowed = await anyio.to_thread.run_sync(self._allowed, client, wanted)
        params = params.model_copy(
            update={"notifications": params.notifications.model_copy(update={"resource_subscriptions": allowed})}
        )
        token = _listening_client.set(client)
        try:
            return await self._listen(ctx, params)
        finally:
            _listening_client.reset(token)

    async def subscribe(self, ctx, params: SubscribeRequestParams) -> EmptyResult:
        client = self.client_of()
        uri = str(params.uri)
        if not await anyio.to_thread.run_sync(self._allowed, client, [uri]):
            from mcp.shared.exceptions import MCPError
            from mcp_types import INVALID_PARAMS

            raise MCPError(INVALID_PARAMS, f"No such resource: {uri} (use memory://ID or memory://tag/TAG).")
        self._legacy.setdefault(ctx.session, (client, set()))[1].add(uri)
        return EmptyResult()

    async def unsubscribe(self, ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        entry = self._legacy.get(ctx.session)
        if entry is not None:
            entry[1].discard(str(params.uri))
        return EmptyResult()

    def _allowed(self, client: Client, uris: list[str]) -> list[str]:
        """The subscribable `uris`: tags, and memories `client` can see now."""
        out = []
        with self.session.access() as vault:
            for uri in uris:
                if uri.startswith(TAG_PREFIX) and len(uri) > len(TAG_PREFIX):
                    out.append(uri)
                elif uri.startswith("memory://"):
                    try:
                        vault.get(uri.removeprefix("memory://"), profile=client.profile, touch=False)
                    except NotFound:
                        continue
                    out.append(uri)
        return out

    async def publish(self, change: dict) -> None:
        """Tell every subscriber allowed to see it that this memory (and its tags) changed."""
        uris = [MEMORY_URI.format(id=change["id"])] + [TAG_URI.format(tag=t) for t in change["tags"]]
        for uri in uris:
            event = MemoryUpdated(uri=uri, owner=change["owner"], shared=change["shared"])
            await self.bus.publish(event)
            for server_session, (client, wanted) in list(self._legacy.items()):
                if uri in wanted and event.visible_to(client):
                    try:
                        await server_session.send_resource_updated(uri)
                    except Exception:  # a connection that went away: forget its subscriptions
                        self._legacy.pop(server_session, None)


class ChangeWatcher:
    """Polls the vault for new versions and hands each changed memory to `publish`."""

    def __init__(self, session: Session, publish: Callable[[dict], Any], interval: float = POLL_SECONDS) -> None:
        self.session = session
        self.publish = publish
        self.interval = interval
        with session.access() as vault:
            self.mark = vault.change_mark()

    def poll(self) -> list[dict]:
        with self.session.access() as vault:
            if vault.change_mark() == self.mark:
                return []
            self.mark, changes = vault.changes_since(self.mark)
        return changes

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            try:
                changes = await anyio.to_thread.run_sync(self.poll)
            except Exception:  # a busy or briefly unreadable vault: try again next tick
                log.warning("could not read the vault's changes; retrying", exc_info=True)
                continue
            for change in changes:
                await self.publish(change)
