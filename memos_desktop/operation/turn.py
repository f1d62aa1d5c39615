"""The assistant's chat loop (operation layer): retrieve → schedule → generate → read → store.

One turn: hybrid retrieval over memories, notes and past conversations (`operator.search`, with
the profile's access rules), MemScheduler's plan (cached prefix vs plaintext prompt memories within
the context budget), streaming generation whose answer cites memories as [n], then MemReader on the
exchange, and the two turns stored as cubes with their conversation and turn as provenance, so a
conversation can be resumed. A turn is stored only once the answer is complete: a cancelled or
crashed generation keeps nothing. Without a model the assistant answers with how to add one and
still shows what memory search found. This module never touches the UI.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

from memos_desktop.errors import MemosError, ModelError
from memos_desktop.operation.reader import Extraction, MemoryOp, MemReader
from memos_desktop.operation.scheduler import MemScheduler, Plan, estimate_tokens, memory_line
from memos_desktop.vault import MemCube, Vault

CHAT_TAG = "chat"
CONVERSATIONS = "chat.conversations"  # setting: {id: {"title", "created_at", "updated_at", "turns"}}
MAX_MESSAGE_CHARS = 200_000
RETRIEVE_K = 12
QUERY_CHARS = 2000  # retrieval looks at most at this much of a message
HISTORY_TURNS = 8
MEMORY_BUDGET = 1536  # tokens of memories at most, whatever the context size
SYSTEM_PROMPT = (
    "You are memos, a personal assistant running entirely on the user's own computer. "
    "Use the numbered memories when they help and cite them as [n]. "
    "If you do not know, say so."
)
NO_MODEL = (
    "No language model is set up yet, so I cannot write an answer. Add one with "
    "`memos-desktop model add PATH` (a GGUF file or an MLX folder) or "
    "`memos-desktop model pull REPO FILE`, or in the Models screen. "
    "Memory commands (/remember, /forget, /pin, /ttl) and search work without a model."
)


def printable(text: str) -> str:
    """`text` without control characters (newline and tab kept), safe to show and to store."""
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())


def checked_message(text: str) -> str:
    """The message without control characters (newline and tab kept), trimmed; MemosError when
    nothing is left or it is longer than MAX_MESSAGE_CHARS."""
    text = printable(text).strip()
    if not text:
        raise MemosError("The message is empty.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise MemosError(f"The message is too long: {len(text):,} characters (the limit is {MAX_MESSAGE_CHARS:,}).")
    return text


def _ulid() -> str:
    from ulid import ULID

    return str(ULID())


@dataclass
class Citation:
    """A memory the answer could draw on: its number in the prompt, where it came from."""

    n: int
    cube_id: str
    title: str
    where: str
    tier: str  # "prefix" (activation memory) or "prompt"
    cited: bool = False  # the answer names it as [n]
    excerpt: str = ""


@dataclass
class Conversation:
    id: str
    title: str = ""
    turns: list[dict] = field(default_factory=list)  # {"turn": n, "role", "content", "at", "cube_id"}

    @property
    def next_turn(self) -> int:
        return max((t["turn"] for t in self.turns), default=0) + 1


@dataclass
class PreparedTurn:
    """Everything decided before generation starts."""

    conversation: Conversation
    text: str
    at: float
    turn: int
    plan: Plan
    messages: list[dict]
    prefix_messages: int  # how many leading messages form the cacheable prefix
    citations: list[Citation]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TurnResult:
    conversation_id: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    ops: list[MemoryOp] = field(default_factory=list)
    extraction: Extraction | None = None
    turn: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stored: bool = False


@dataclass(frozen=True)
class AssistantSettings:
    """How the assistant answers and remembers: the one place these defaults live. Stored in the
    vault under `SETTING` (so they travel with it); the TUI's settings screen edits them."""

    answer_tokens: int = 512
    temperature: float = 0.7
    activation: bool = True
    extract: bool = True

    SETTING: ClassVar[str] = "assistant"

    @classmethod
    def load(cls, vault: Vault) -> "AssistantSettings":
        """The stored settings, defaults filled in (unknown stored keys are ignored)."""
        stored = vault.get_setting(cls.SETTING) or {}
        return cls(**{f.name: stored[f.name] for f in fields(cls) if f.name in stored})

    def save(self, vault: Vault) -> None:
        vault.set_setting(self.SETTING, asdict(self))


_DEFAULTS = AssistantSettings()


class Assistant:
    """Chat with memory over one unlocked vault and an optional loaded model (`llm`)."""

    def __init__(
        self,
        vault: Vault,
        llm=None,
        profile: str = "default",
        answer_tokens: int = _DEFAULTS.answer_tokens,
        temperature: float = _DEFAULTS.temperature,
        activation: bool = _DEFAULTS.activation,
        extract: bool = _DEFAULTS.extract,
        clock: Callable[[], float] = time.time,
    ):
        self.vault = vault
        self.llm = llm
        self.profile = profile
        self.answer_tokens = answer_tokens
        self.temperature = temperature
        self.activation = activation
        self.extract = extract
        self.clock = clock
        count = llm.count_tokens if llm is not None else estimate_tokens
        self.count_tokens = count
        self.scheduler = MemScheduler(vault, count_tokens=count, profile=profile, clock=clock)
        self.reader = MemReader(vault, llm, profile=profile, clock=clock, activation=activation)

    # ----- conversations --------------------------------------------------------------------
    def conversations(self) -> list[dict]:
        """Stored conversations, most recent first: id, title, created_at, updated_at, turns."""
        index = self.vault.get_setting(CONVERSATIONS, {})
        items = [{"id": cid, **meta} for cid, meta in index.items() if meta.get("profile", "default") == self.profile]
        return sorted(items, key=lambda c: (-c["updated_at"], c["id"]))

    def new_conversation(self) -> Conversation:
        return Conversation(id=_ulid())

    def resume(self, conversation_id: str) -> Conversation:
        """A stored conversation with its turns in order."""
        index = self.vault.get_setting(CONVERSATIONS, {})
        if conversation_id not in index:
            raise MemosError(f"No conversation with id {conversation_id}.")
        cubes = self.vault.cubes(profile=self.profile, tag=f"conv:{conversation_id}", limit=100_000)
        order = {"user": 0, "assistant": 1}
        turns = [
            {
                "turn": c.source["turn_id"],
                "role": c.source["role"],
                "content": c.content,
                "at": c.meta.get("said_at", c.created_at),
                "cube_id": c.id,
            }
            for c in cubes
        ]
        turns.sort(key=lambda t: (t["turn"], order[t["role"]]))
        return Conversation(conversation_id, index[conversation_id]["title"], turns)

    # ----- one turn -------------------------------------------------------------------------
    def turn(
        self,
        conversation: Conversation,
        text: str,
        on_token: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> TurnResult:
        """Answer `text` in `conversation`: commands run directly; with a model the answer streams
        through `on_token`; the exchange is stored only when complete."""
        text = checked_message(text)
        if MemReader.is_command(text):
            op = self.reader.command(text, at=self.clock())
            return TurnResult(conversation.id, describe(op), ops=[op])
        prepared = self.prepare(conversation, text)
        if self.llm is None:
            return TurnResult(conversation.id, NO_MODEL, prepared.citations, timings=prepared.timings)
        pieces = []
        for piece in self.generate(prepared, cancel):
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
        answer = "".join(pieces)
        if cancel is not None and cancel.is_set():
            return TurnResult(conversation.id, answer, prepared.citations, timings=prepared.timings)
        return self.commit(prepared, answer)

    def prepare(self, conversation: Conversation, text: str) -> PreparedTurn:
        """Retrieve, schedule and build the prompt messages for `text` (cleaned and checked here)."""
        from memos_desktop.operation.search import search

        text = checked_message(text)
        at = self.clock()
        turn = conversation.next_turn
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        history = self._history(conversation)
        in_history = {h["cube_id"] for h in history}
        hits = [
            (h.cube, h.score)
            for h in search(self.vault, _query(text), k=RETRIEVE_K, profile=self.profile, record=False)
            if h.cube.id not in in_history and h.cube.kind == "plaintext"
        ]
        timings["retrieve_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        context = self.llm.n_ctx if self.llm is not None else 4096
        fixed = sum(self.count_tokens(m["content"]) for m in history) + self.count_tokens(SYSTEM_PROMPT)
        budget = max(0, min(MEMORY_BUDGET, context - self.answer_tokens - fixed - self.count_tokens(text)))
        plan = self.scheduler.plan(hits, budget, turn_id=f"{conversation.id}:{turn}")
        timings["schedule_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        citations = [
            Citation(n, p.cube.id, p.cube.title, p.cube.citation(), p.tier, excerpt=_excerpt(p.cube))
            for n, p in enumerate(plan.prefix + plan.prompt, 1)
        ]
        messages = self._messages(plan, history, text, context)
        timings["prompt_s"] = time.perf_counter() - t0
        return PreparedTurn(conversation, text, at, turn, plan, messages, 1, citations, timings)

    def _history(self, conversation: Conversation) -> list[dict]:
        recent = conversation.turns[-2 * HISTORY_TURNS :]
        return [{"role": t["role"], "content": t["content"], "cube_id": t["cube_id"]} for t in recent]

    def _messages(self, plan: Plan, history: list[dict], text: str, context: int) -> list[dict]:
        system = SYSTEM_PROMPT
        if plan.prefix:
            system += "\nMemories:\n" + "\n".join(f"[{n}] {memory_line(p.cube)}" for n, p in enumerate(plan.prefix, 1))
        user = text
        if plan.prompt:
            start = len(plan.prefix) + 1
            lines = "\n".join(f"[{n}] {memory_line(p.cube)}" for n, p in enumerate(plan.prompt, start))
            user = f"Relevant memories:\n{lines}\n\nMessage: {text}"
        room = context - self.answer_tokens - self.count_tokens(system) - plan.tokens
        user = self._fit(user, max(64, room - sum(self.count_tokens(h["content"]) for h in history)))
        return [
            {"role": "system", "content": system},
            *({"role": h["role"], "content": h["content"]} for h in history),
            {"role": "user", "content": user},
        ]

    def _fit(self, text: str, tokens: int) -> str:
        """`text` cut in the middle to fit in `tokens` (a huge paste keeps its head and tail)."""
        chars = len(text)
        cut = text
        while self.count_tokens(cut) > tokens and chars > 32:
            chars = min(chars // 2, tokens * 4)
            head, tail = text[: chars // 2], text[-(chars // 2) :]
            cut = f"{head}\n[… {len(text) - len(head) - len(tail):,} characters left out …]\n{tail}"
        return cut

    def generate(self, prepared: PreparedTurn, cancel: threading.Event | None = None) -> Iterator[str]:
        """Start the answer and return its text pieces as the model produces them.

        The prompt's stable prefix (system prompt + pinned/hot memories) is served from activation
        memory now, before the first piece (restored, or computed and saved: this touches the
        vault); iterating the result only runs the model. Setting `cancel` stops it early.
        """
        if self.llm is None:
            raise ModelError(NO_MODEL)
        from memos_desktop.runtime.activation import ActivationMemory
        from memos_desktop.runtime.base import Sampling
        from memos_desktop.runtime.chat import chat

        t0 = time.perf_counter()
        sampling = Sampling(max_tokens=self.answer_tokens, temperature=self.temperature, top_p=0.9, seed=prepared.turn)
        memory = ActivationMemory(self.vault, profile=self.profile) if self.activation else None
        try:
            turn = chat(
                self.llm,
                prepared.messages,
                prefix_messages=prepared.prefix_messages,
                memory=memory,
                sources=[p.cube.id for p in prepared.plan.prefix],
                sampling=sampling,
                cancel=cancel,
            )
        except MemosError:
            raise
        except Exception as exc:
            raise ModelError(f"The model could not start answering: {exc}") from exc
        timings = prepared.timings
        timings["prompt_tokens"] = turn.prompt_tokens
        timings["prefix_tokens"] = turn.prefix_tokens
        timings["prefix_restored_tokens"] = turn.prepared.restored_tokens if turn.prepared else 0
        timings["prefix_computed_tokens"] = turn.prepared.computed_tokens if turn.prepared else 0
        timings["activation_s"] = time.perf_counter() - t0
        return self._pieces(turn, timings, t0, cancel)

    @staticmethod
    def _pieces(turn, timings: dict, t0: float, cancel: threading.Event | None) -> Iterator[str]:
        try:
            for raw in turn:
                if "ttft_s" not in timings:
                    timings["ttft_s"] = time.perf_counter() - t0
                yield printable(raw)
                if cancel is not None and cancel.is_set():
                    return
        except MemosError:
            raise
        except Exception as exc:
            raise ModelError(f"The model stopped while answering: {exc}") from exc
        timings["generate_s"] = time.perf_counter() - t0
        timings["answer_tokens"] = len(turn.tokens)

    def commit(self, prepared: PreparedTurn, answer: str, cancel: threading.Event | None = None) -> TurnResult:
        """Store a completed exchange, record memory use and let MemReader extract memories."""
        return self.remember(prepared, self.store(prepared, answer), cancel)

    def store(self, prepared: PreparedTurn, answer: str) -> TurnResult:
        """Store a completed exchange (both turns in one transaction) and record memory use."""
        conv = prepared.conversation
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
        for c in prepared.citations:
            c.cited = c.n in cited
        title = conv.title or _title(prepared.text)
        now = self.clock()
        base = {"conversation": conv.id, "turn_id": prepared.turn}
        tags = [CHAT_TAG, f"conv:{conv.id}"]
        user_cube, answer_cube = self.vault.add_many(
            [
                dict(
                    content=prepared.text,
                    title=title,
                    tags=tags,
                    owner=self.profile,
                    source={**base, "role": "user"},
                    meta={"said_at": prepared.at, "context": _previous(conv.turns)},
                ),
                dict(
                    content=answer,
                    title=title,
                    tags=tags,
                    owner=self.profile,
                    source={**base, "role": "assistant"},
                    meta={
                        "said_at": now,
                        "context": prepared.text,
                        "cites": [c.cube_id for c in prepared.citations if c.cited],
                    },
                ),
            ],
            actor="assistant",
        )
        conv.title = title
        conv.turns += [
            {
                "turn": prepared.turn,
                "role": "user",
                "content": prepared.text,
                "at": prepared.at,
                "cube_id": user_cube.id,
            },
            {
                "turn": prepared.turn,
                "role": "assistant",
                "content": answer,
                "at": now,
                "cube_id": answer_cube.id,
            },
        ]
        index = self.vault.get_setting(CONVERSATIONS, {})
        entry = index.get(conv.id, {"title": title, "created_at": prepared.at, "profile": self.profile})
        index[conv.id] = {**entry, "updated_at": now, "turns": prepared.turn}
        self.vault.set_setting(CONVERSATIONS, index)
        self.scheduler.record_use(prepared.plan, [c.cube_id for c in prepared.citations if c.cited])
        return TurnResult(
            conv.id, answer, prepared.citations, turn=prepared.turn, timings=prepared.timings, stored=True
        )

    def remember(self, prepared: PreparedTurn, result: TurnResult, cancel: threading.Event | None = None) -> TurnResult:
        """Let MemReader turn a stored exchange into memory ops (when extraction is on)."""
        if not self.extract:
            return result
        t0 = time.perf_counter()
        source = {"conversation": result.conversation_id, "turn_id": prepared.turn, "role": "user"}
        extraction = self.reader.read(prepared.text, result.answer, prepared.at, source, cancel)
        prepared.timings["extract_s"] = time.perf_counter() - t0
        return replace(result, extraction=extraction, ops=extraction.ops, timings=prepared.timings)


def describe(op: MemoryOp) -> str:
    """One line telling the user what a memory operation did."""
    short = op.cube_id or ""
    return {
        "ADD": f"Remembered: {op.text} ({short})",
        "NOOP": f"Already remembered: {op.text} ({short})",
        "UPDATE": f"Updated: {op.text} ({short})",
        "DELETE": f"Forgot: {op.text} ({short}); restore it from the Memories screen.",
        "PIN": f"Pinned: {op.text} ({short})",
        "UNPIN": f"Unpinned: {op.text} ({short})",
        "TTL": f"{op.text} ({short}) {op.reason}.",
    }[op.op]


def _query(text: str) -> str:
    """What retrieval searches for: the message, or the head and tail of a huge paste."""
    if len(text) <= QUERY_CHARS:
        return text
    return f"{text[: QUERY_CHARS // 2]}\n{text[-QUERY_CHARS // 2 :]}"


def _previous(turns: list[dict]) -> str:
    """The text said just before a new exchange, embedded with its question as context."""
    return turns[-1]["content"] if turns else ""


def _title(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return first[:60] + ("…" if len(first) > 60 else "")


def _excerpt(cube: MemCube) -> str:
    text = " ".join(cube.content.split())
    return text[:160] + ("…" if len(text) > 160 else "")
