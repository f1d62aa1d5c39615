"""The MemStore tools an agent calls, with the schemas and descriptions it reads (interface layer).

Each tool is a thin method over `operation.memstore.MemStore` for the calling client: it declares
its typed, documented arguments and result, turns the service's `MemosError` into a tool error
whose text the model can act on, and writes the result both as structured content and as short
readable text. Names are stable: agents and their users configure them.
"""

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from memos_desktop.errors import MemosError, from_storage
from memos_desktop.operation.memstore import MemStore

MemoryId = Annotated[str, Field(description="A memory id from the other tools, e.g. 01JF3Q8ZK4T6W2M9X5R7B1C0DE.")]


class Source(BaseModel):
    citation: str = Field(description="Where the memory came from, to show a person (file and lines, chat, client).")
    type: str | None = None
    path: str | None = None
    lines: list[int] | None = Field(None, description="First and last line in `path`.")
    pages: list[int] | None = None
    heading: str | None = None
    client: str | None = Field(None, description="The MCP client that wrote it, if one did.")


class Memory(BaseModel):
    id: str
    title: str
    text: str
    tags: list[str]
    source: Source
    score: float | None = Field(None, description="Relevance (search only; higher is better).")
    version: int
    created_at: str | None
    updated_at: str | None
    expires_at: str | None = Field(None, description="When it will be forgotten automatically, if ever.")
    shared: bool = Field(description="Visible to every profile, not only yours.")


class Memories(BaseModel):
    memories: list[Memory]


class Forgotten(BaseModel):
    id: str
    version: int
    state: str


class Citation(BaseModel):
    id: str
    citation: str


class ContextSection(BaseModel):
    context: str = Field(description="Paste this into the prompt; it is empty when nothing relevant is stored.")
    estimated_tokens: int
    citations: list[Citation]


class Version(BaseModel):
    version: int
    op: str = Field(description="create, edit, forget, restore, rollback, expire, ...")
    at: str | None
    actor: str = Field(description="Who wrote it: user, mcp:CLIENT, loader, sync, ...")
    state: str | None
    title: str
    text: str
    tags: list[str]


class History(BaseModel):
    id: str
    versions: list[Version]


READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


class Tools:
    """The tools, bound to a function giving the calling client's `MemStore`."""

    def __init__(self, store_for: Callable[[], MemStore]) -> None:
        self._store_for = store_for

    def register(self, server) -> None:
        for fn, title, annotations in (
            (self.search_memories, "Search memories", READ),
            (self.get_memory, "Read a memory", READ),
            (self.add_memory, "Remember something", ADD),
            (self.update_memory, "Correct a memory", CHANGE),
            (self.forget_memory, "Forget a memory", CHANGE),
            (self.list_recent, "Recent memories", READ),
            (self.build_context, "Build a prompt context", READ),
            (self.memory_history, "Memory history", READ),
        ):
            server.add_tool(fn, title=title, annotations=annotations.model_copy(update={"title": title}))

    def _run(self, call: Callable[[MemStore], Any]) -> Any:
        try:
            return call(self._store_for())
        except MemosError as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:
            storage = from_storage(exc)  # a busy or damaged vault: say so, do not crash the call
            if storage is None:
                raise
            raise ToolError(str(storage)) from None

    def search_memories(
        self,
        query: Annotated[str, Field(description="What to look for, in words or as a question.")],
        k: Annotated[int, Field(ge=1, le=100, description="How many memories to return at most.")] = 10,
        tags: Annotated[list[str] | None, Field(description="Only memories carrying every one of these tags.")] = None,
        since: Annotated[str | None, Field(description="Only facts valid on or after this date (2026-05-01).")] = None,
        until: Annotated[str | None, Field(description="Only facts valid on or before this date.")] = None,
    ) -> Annotated[CallToolResult, Memories]:
        """Search the user's long-term memory (notes, facts, preferences, past conversations) by
        meaning and keywords; best matches first, each with its id and where it came from.

        Use it before answering anything that may depend on what the user told you or wrote down.
        Examples: {"query": "which dentist does Ana see"}, {"query": "project deadlines", "tags": ["work"],
        "since": "2026-01-01"}.
        """
        found = self._run(lambda store: store.search(query, k, tags, since, until))
        lines = [f"{i}. [{m['id']}] {_excerpt(m)} — {m['source']['citation']}" for i, m in enumerate(found, 1)]
        return _result({"memories": found}, "\n".join(lines) or "No matching memories.")

    def get_memory(self, id: MemoryId) -> Annotated[CallToolResult, Memory]:
        """Read one memory in full (current version, tags, source, dates) by its id.

        Example: {"id": "01JF3Q8ZK4T6W2M9X5R7B1C0DE"}.
        """
        memory = self._run(lambda store: store.get(id))
        return _result(memory, _card(memory))

    def add_memory(
        self,
        text: Annotated[str, Field(description="The fact, note or preference to remember, self-contained.")],
        tags: Annotated[list[str] | None, Field(description="Short labels to find it by, e.g. ['work'].")] = None,
        title: Annotated[str, Field(description="An optional short title.")] = "",
        ttl: Annotated[
            str | None, Field(description="Forget it automatically after this long: 90s, 15m, 12h, 7d, 2w.")
        ] = None,
    ) -> Annotated[CallToolResult, Memory]:
        """Store a new memory for the user and return its id. Write one self-contained fact per
        memory, in the user's terms; this client is recorded as its source.

        Examples: {"text": "Ana's dentist is Dr. Ruiz, Tuesdays", "tags": ["health"]},
        {"text": "Parking code 4411", "ttl": "7d"}.
        """
        memory = self._run(lambda store: store.add(text, tags, title, ttl))
        return _result(memory, f"Stored as {memory['id']}.")

    def update_memory(
        self,
        id: MemoryId,
        text: Annotated[str, Field(description="The corrected full text (replaces the current text).")],
    ) -> Annotated[CallToolResult, Memory]:
        """Replace a memory's text with a corrected version. The old version stays in its history
        (memory_history) and can be restored by the user.

        Example: {"id": "01JF3Q8ZK4T6W2M9X5R7B1C0DE", "text": "Ana's dentist is Dr. Ruiz, Thursdays now"}.
        """
        memory = self._run(lambda store: store.update(id, text))
        return _result(memory, f"Memory {memory['id']} is now version {memory['version']}.")

    def forget_memory(self, id: MemoryId) -> Annotated[CallToolResult, Forgotten]:
        """Forget a memory: it leaves every search and read at once. Only when the user asks or the
        memory is wrong; it stays restorable by the user from the vault's history.

        Example: {"id": "01JF3Q8ZK4T6W2M9X5R7B1C0DE"}.
        """
        done = self._run(lambda store: store.forget(id))
        return _result(done, f"Forgot {done['id']} (version {done['version']}; the user can restore it).")

    def list_recent(
        self,
        n: Annotated[int, Field(ge=1, le=200, description="How many memories.")] = 10,
        since: Annotated[str | None, Field(description="Only memories added or changed since this date.")] = None,
    ) -> Annotated[CallToolResult, Memories]:
        """The most recently added or changed memories, newest first.

        Examples: {"n": 5}, {"since": "yesterday"}.
        """
        found = self._run(lambda store: store.recent(n, since))
        lines = [f"{m['updated_at']} [{m['id']}] {_excerpt(m)}" for m in found]
        return _result({"memories": found}, "\n".join(lines) or "No memories yet.")

    def build_context(
        self,
        question: Annotated[str, Field(description="The question or task the context is for.")],
        max_tokens: Annotated[int, Field(ge=50, le=32_000, description="Token budget of the section.")] = 800,
    ) -> Annotated[CallToolResult, ContextSection]:
        """A ready prompt section holding the user's memories most relevant to a question, within a
        token budget, each line starting with the [id] to cite.

        Example: {"question": "plan Ana's week", "max_tokens": 600}.
        """
        section = self._run(lambda store: store.context(question, max_tokens))
        return _result(section, section["context"] or "No relevant memories.")

    def memory_history(self, id: MemoryId) -> Annotated[CallToolResult, History]:
        """Every version of a memory, oldest first: what changed, when, and who changed it.

        Example: {"id": "01JF3Q8ZK4T6W2M9X5R7B1C0DE"}.
        """
        versions = self._run(lambda store: store.history(id))
        lines = [f"v{v['version']} {v['at']} {v['op']} by {v['actor']}: {v['text'][:80]}" for v in versions]
        return _result({"id": id, "versions": versions}, "\n".join(lines))


def _result(structured: dict, text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _excerpt(memory: dict, size: int = 160) -> str:
    text = " ".join(memory["text"].split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _card(memory: dict) -> str:
    lines = [f"# {memory['title']}" if memory["title"] else None, memory["text"], ""]
    lines += [f"id: {memory['id']} (version {memory['version']})", f"source: {memory['source']['citation']}"]
    if memory["tags"]:
        lines.append(f"tags: {', '.join(memory['tags'])}")
    lines.append(f"updated: {memory['updated_at']}")
    if memory["expires_at"]:
        lines.append(f"expires: {memory['expires_at']}")
    return "\n".join(line for line in lines if line is not None)
