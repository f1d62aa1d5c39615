"""MemStore: what another local agent may do with the vault, as one named client (operation layer).

Owns the registry of MCP clients (name → profile, read-only flag, hashed token, kept in the vault's
settings) and `MemStore`, the service every MCP tool calls: search, read, write, forget, recent,
context building and history, each under the client's profile (the vault's own access rules: a
profile sees its memories and shared ones; another profile's memory is "not found", never
"forbidden"), with its arguments checked, its writes carrying the client as provenance, and every
call, refused ones too, in the audit log. It never speaks a protocol and never prints.
"""

import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memos_desktop.errors import MemosError, NotFound
from memos_desktop.operation.session import Session
from memos_desktop.vault import MemCube, Vault

CLIENTS_SETTING = "mcp_clients"
DEFAULT_MAX_TEXT = 100_000  # characters of one memory's text; a bigger write is refused
LOCAL_CLIENT = "local"  # the stdio server's client when no --client is named
TOKEN_PREFIX = "memos_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CHARS_PER_TOKEN = 4  # build_context's budget estimate (English text averages ~4 characters a token)


class AccessDenied(MemosError):
    """The client may not do this (a read-only client writing)."""


@dataclass(frozen=True)
class Client:
    """One agent allowed to use the vault: what it is called, whose memories it sees, whether it writes."""

    name: str
    profile: str = "default"
    read_only: bool = False

    @property
    def actor(self) -> str:
        """How the audit log and version history name this client."""
        return f"mcp:{self.name}"


# ----- the client registry ------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise MemosError(f"A {what} name is 1-64 letters, digits, dots, dashes or underscores; {name!r} is not.")
    return name


def add_client(vault: Vault, name: str, profile: str = "default", read_only: bool = False) -> str:
    """Register client `name` for `profile`; return its bearer token (stored only as a hash)."""
    _check_name(name, "client")
    _check_name(profile, "profile")
    clients = vault.get_setting(CLIENTS_SETTING, {})
    if name in clients and not clients[name].get("revoked_at"):
        raise MemosError(f"A client named {name} exists already; revoke it first to issue a new token.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    clients[name] = {
        "profile": profile,
        "read_only": read_only,
        "token_sha256": _hash(token),
        "created_at": time.time(),
        "revoked_at": None,
    }
    vault.set_setting(CLIENTS_SETTING, clients)
    vault.audit("mcp-client-add", None, "user", {"client": name, "profile": profile, "read_only": read_only})
    return token


def list_clients(vault: Vault) -> list[dict[str, Any]]:
    """Every registered client (revoked ones too), without token hashes."""
    clients = vault.get_setting(CLIENTS_SETTING, {})
    return [
        {"name": name, **{k: v for k, v in entry.items() if k != "token_sha256"}}
        for name, entry in sorted(clients.items())
    ]


def revoke_client(vault: Vault, name: str) -> None:
    """Revoke client `name`: its token stops working at its next request."""
    clients = vault.get_setting(CLIENTS_SETTING, {})
    if name not in clients or clients[name].get("revoked_at"):
        raise NotFound(f"No active client named {name}.")
    clients[name]["revoked_at"] = time.time()
    vault.set_setting(CLIENTS_SETTING, clients)
    vault.audit("mcp-client-revoke", None, "user", {"client": name})


def client_named(vault: Vault, name: str) -> Client:
    """The active client `name` (for a stdio server started with --client NAME)."""
    entry = vault.get_setting(CLIENTS_SETTING, {}).get(name)
    if entry is None or entry.get("revoked_at"):
        raise NotFound(f"No active client named {name}; add it with `memos-desktop mcp clients add {name}`.")
    return Client(name, entry["profile"], bool(entry["read_only"]))


def client_for_token(vault: Vault, token: str) -> Client | None:
    """The active client holding `token`, or None (unknown or revoked)."""
    digest = _hash(token)
    for name, entry in vault.get_setting(CLIENTS_SETTING, {}).items():
        if not entry.get("revoked_at") and secrets.compare_digest(entry["token_sha256"], digest):
            return Client(name, entry["profile"], bool(entry["read_only"]))
    return None


# ----- what a client does -----------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def item(cube: MemCube, score: float | None = None) -> dict[str, Any]:
    """A memory as a client sees it (no owner, no internal bookkeeping)."""
    source = {k: v for k, v in cube.source.items() if k in ("type", "path", "lines", "pages", "heading", "client")}
    return {
        "id": cube.id,
        "title": cube.title,
        "text": cube.content,
        "tags": list(cube.tags),
        "source": {**source, "citation": _citation(cube)},
        "score": None if score is None else round(score, 4),
        "version": cube.version,
        "created_at": iso(cube.created_at),
        "updated_at": iso(cube.updated_at),
        "expires_at": iso(cube.expires_at),
        "shared": cube.visibility == "shared",
    }


class MemStore:
    """The vault as one client may use it. Every method holds the session's vault lock while it
    runs, checks its arguments first, and writes one audit entry (action `mcp`, actor `mcp:NAME`,
    detail: tool and memory ids, or the refusal)."""

    def __init__(self, session: Session, client: Client, max_text: int | None = None) -> None:
        self.session = session
        self.client = client
        self.max_text = max_text or DEFAULT_MAX_TEXT

    # ----- reads -----
    def search(
        self,
        query: str,
        k: int = 10,
        tags: list[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        from memos_desktop.operation.search import Filters, search

        if not query.strip():
            raise self._refuse("search_memories", MemosError("The query is empty; say what to look for."))
        self._check_size("search_memories", query, "query")
        window = self._date("search_memories", since, "since"), self._date("search_memories", until, "until")
        filters = Filters(tags=tuple(tags or ()), since=window[0], until=window[1])
        with self.session.access() as vault:
            hits = search(vault, query, k=k, profile=self.client.profile, filters=filters, record=False)
        self._record("search_memories", [h.cube.id for h in hits], touch=True)
        return [item(h.cube, h.score) for h in hits]

    def get(self, cube_id: str, via: str = "get_memory") -> dict[str, Any]:
        with self.session.access() as vault:
            cube = self._visible(vault, via, cube_id)
        self._record(via, [cube.id])
        return item(cube)

    def tagged(self, tag: str, n: int = 50) -> list[dict[str, Any]]:
        """The newest `n` memories carrying `tag`."""
        with self.session.access() as vault:
            found = vault.cubes(profile=self.client.profile, kind="plaintext", tag=tag, limit=n)
        self._record("read_resource", [c.id for c in found])
        return [item(c) for c in found]

    def recent(self, n: int = 10, since: str | None = None) -> list[dict[str, Any]]:
        after = self._date("list_recent", since, "since")
        with self.session.access() as vault:
            found: list[MemCube] = []
            offset = 0
            while len(found) < n:
                page = vault.cubes(profile=self.client.profile, kind="plaintext", limit=max(n, 50), offset=offset)
                found += [c for c in page if after is None or c.updated_at >= after]
                if len(page) < max(n, 50) or (after is not None and page and page[-1].updated_at < after):
                    break
                offset += len(page)
            found = found[:n]
        self._record("list_recent", [c.id for c in found])
        return [item(c) for c in found]

    def history(self, cube_id: str) -> list[dict[str, Any]]:
        with self.session.access() as vault:
            try:
                versions = vault.history(cube_id, profile=self.client.profile)
            except NotFound:
                raise self._refuse("memory_history", NotFound(f"No memory with id {cube_id}."), [cube_id]) from None
        self._record("memory_history", [cube_id])
        return [
            {
                "version": v["version"],
                "op": v["op"],
                "at": iso(v["at"]),
                "actor": v["actor"],
                "state": v["snapshot"].get("state"),
                "title": v["snapshot"].get("title", ""),
                "text": v["snapshot"].get("content", ""),
                "tags": v["snapshot"].get("tags", []),
            }
            for v in versions
        ]

    def context(self, question: str, max_tokens: int = 800) -> dict[str, Any]:
        """The best memories for `question` as a prompt section that fits `max_tokens` (estimated at
        ~4 characters a token), each line led by its citation id."""
        from memos_desktop.operation.search import search

        if not question.strip():
            raise self._refuse("build_context", MemosError("The question is empty; say what the context is for."))
        self._check_size("build_context", question, "question")
        budget = max_tokens * _CHARS_PER_TOKEN
        header = "Memories that may help (cite them by their [id]):"
        with self.session.access() as vault:
            hits = search(vault, question, k=20, profile=self.client.profile, record=False)
            lines, used, cited = [header], len(header), []
            for hit in hits:
                line = _context_line(hit.cube)
                room = budget - used - 1
                if len(line) > room:
                    if room < 80:  # a stub of a memory says nothing; stop at a whole line
                        break
                    line = line[: room - 1] + "…"
                lines.append(line)
                used += len(line) + 1
                cited.append(hit.cube)
        self._record("build_context", [c.id for c in cited], touch=True)
        text = "\n".join(lines) if cited else ""
        return {
            "context": text,
            "estimated_tokens": math.ceil(len(text) / _CHARS_PER_TOKEN),
            "citations": [{"id": c.id, "citation": _citation(c)} for c in cited],
        }

    # ----- writes -----
    def add(self, text: str, tags: list[str] | None = None, title: str = "", ttl: str | None = None) -> dict[str, Any]:
        from memos_desktop.parsing import parse_duration

        self._writable("add_memory")
        if not text.strip():
            raise self._refuse("add_memory", MemosError("The text is empty; there is nothing to remember."))
        self._check_size("add_memory", text, "text")
        self._check_size("add_memory", title, "title")
        try:
            seconds = parse_duration(ttl) if ttl else None
        except MemosError as exc:
            raise self._refuse("add_memory", exc) from None
        with self.session.access() as vault:
            cube = vault.add(
                text.strip(),
                title=title.strip(),
                tags=[t.strip() for t in tags or () if t.strip()],
                ttl=seconds,
                profile=self.client.profile,
                source={"type": "mcp", "client": self.client.name},
                actor=self.client.actor,
            )
            self._audit(vault, "add_memory", [cube.id])
        return item(cube)

    def update(self, cube_id: str, text: str) -> dict[str, Any]:
        self._writable("update_memory", cube_id)
        if not text.strip():
            raise self._refuse("update_memory", MemosError("The new text is empty; use forget_memory to remove it."))
        self._check_size("update_memory", text, "text")
        with self.session.access() as vault:
            self._visible(vault, "update_memory", cube_id)
            cube = vault.edit(cube_id, profile=self.client.profile, actor=self.client.actor, content=text.strip())
            self._audit(vault, "update_memory", [cube.id])
        return item(cube)

    def forget(self, cube_id: str) -> dict[str, Any]:
        self._writable("forget_memory", cube_id)
        with self.session.access() as vault:
            self._visible(vault, "forget_memory", cube_id)
            cube = vault.forget(cube_id, profile=self.client.profile, actor=self.client.actor)
            self._audit(vault, "forget_memory", [cube.id])
        return {"id": cube.id, "version": cube.version, "state": cube.state}

    def refuse(self, tool: str, message: str) -> None:
        """Record a call refused before it reached this store (bad arguments, unknown tool)."""
        self._refuse(tool, MemosError(message))

    # ----- checks and the audit trail -----
    def _visible(self, vault: Vault, tool: str, cube_id: str) -> MemCube:
        """The active plaintext cube `cube_id` as this client's profile sees it, else "not found"
        (the same words whether it is missing, another profile's, expired or forgotten)."""
        try:
            cube = vault.get(cube_id, profile=self.client.profile, touch=False)
        except NotFound:
            cube = None
        if cube is None or cube.kind != "plaintext":
            raise self._refuse(tool, NotFound(f"No memory with id {cube_id}."), [cube_id], vault)
        vault.touch([cube.id])
        return cube

    def _writable(self, tool: str, cube_id: str | None = None) -> None:
        if self.client.read_only:
            error = AccessDenied(f"Client {self.client.name} is read-only; it cannot add, change or forget memories.")
            raise self._refuse(tool, error, [cube_id] if cube_id else [])

    def _check_size(self, tool: str, text: str, what: str) -> None:
        if len(text) > self.max_text:
            raise self._refuse(
                tool,
                MemosError(
                    f"The {what} is {len(text):,} characters; this server accepts at most {self.max_text:,}"
                    " (split it, or raise the limit with `memos-desktop mcp --max-text`)."
                ),
            )

    def _date(self, tool: str, text: str | None, what: str) -> float | None:
        from memos_desktop.parsing import parse_date

        try:
            return parse_date(text)
        except MemosError:
            raise self._refuse(
                tool, MemosError(f"Cannot read the date {text!r} given as {what}; use e.g. 2026-05-01.")
            ) from None

    def _record(self, tool: str, ids: list[str], touch: bool = False) -> None:
        """Count the access (with `touch`) and audit a read after the call has answered: the
        session writes it right after (`Session.defer`), before anything else uses the vault."""

        def write(vault: Vault) -> None:
            if touch:
                vault.touch(ids)
            self._audit(vault, tool, ids)

        self.session.defer(write)

    def _audit(self, vault: Vault, tool: str, ids: list[str], error: str | None = None) -> None:
        detail: dict[str, Any] = {"client": self.client.name, "profile": self.client.profile, "tool": tool, "ids": ids}
        if error:
            detail["refused"] = error
        vault.audit("mcp", ids[0] if len(ids) == 1 else None, self.client.actor, detail)

    def _refuse(
        self, tool: str, error: MemosError, ids: list[str] | None = None, vault: Vault | None = None
    ) -> MemosError:
        """Record a refused call and hand back `error` for the caller to raise."""
        if vault is not None:
            self._audit(vault, tool, ids or [], str(error))
        else:
            with self.session.access() as held:
                self._audit(held, tool, ids or [], str(error))
        return error


def _citation(cube: MemCube) -> str:
    if cube.source.get("type") == "mcp" and cube.source.get("client"):
        return f"added by MCP client {cube.source['client']}"
    return cube.citation()


def _context_line(cube: MemCube) -> str:
    when = iso(cube.valid_from if cube.valid_from is not None else cube.created_at)
    text = " ".join(cube.content.split())
    title = f"{cube.title}: " if cube.title and cube.title not in text else ""
    return f"[{cube.id}] ({_citation(cube)}; {when[:10] if when else '?'}) {title}{text}"
