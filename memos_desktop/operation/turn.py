"""THE chat-turn pipeline (operation layer): retrieve → prompt with memory ids → generate → cite →
read → schedule. Every interface (CLI `chat`, the TUI chat screen, any server) answers through
`Assistant.turn`; none of them builds a prompt or stores a turn itself.

One turn: hybrid retrieval over memories, notes and past conversations (`search`, with the
profile's access rules), kept only above a relevance floor relative to the best hit; MemScheduler's
plan within a memory budget scaled to the model's context and size (cached prefix vs plaintext
prompt memories, what was left out and why); streaming generation with the settings' sampling
(the model's recommendation when known), bounded in tokens and stopped on a degenerate loop; the
answer's [n] citations; then the two turns stored as cubes with their conversation and turn as
provenance, and MemReader on the user's words. A turn is stored only once the answer is complete:
a cancelled or crashed generation keeps nothing. Without a model the assistant answers with how to
add one and still shows what memory search found. Vault work runs inside `access()` (the session's
lock), generation outside it. This module never touches the UI.
"""

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from memos_desktop.errors import MemosError, ModelError
from memos_desktop.operation.reader import Extraction, MemoryOp, MemReader
from memos_desktop.operation.scheduler import MemScheduler, Placement, Plan, estimate_tokens, memory_line
from memos_desktop.runtime.base import LLMBackend, Sampling
from memos_desktop.vault import MemCube, Vault

if TYPE_CHECKING:
    from memos_desktop.runtime.chat import ChatTurn

CHAT_TAG = "chat"
CONVERSATIONS = "chat.conversations"  # setting: {id: {"title", "created_at", "updated_at", "turns"}}
MAX_MESSAGE_CHARS = 200_000
RETRIEVE_K = 12
QUERY_CHARS = 2000  # retrieval looks at most at this much of a message
HISTORY_TURNS = 8
RELEVANCE_FLOOR = 0.5  # a retrieved memory enters the prompt only with this share of the best hit's score
MIN_COSINE = 0.3  # ... and only if its meaning is this close to the message's, or it has most of its words
LOOP_SPAN = 96  # an answer whose last tokens are one short pattern repeated over this many tokens is stopped
SETTING = "assistant"  # vault setting holding the TurnSettings fields that differ from the defaults
# Worded for small models (SmolLM2-135M answers from memory with this and not with a "Facts: /
# Question:" layout), compared by hand on questions about facts the user had stated.
SYSTEM_PROMPT = (
    "You are memos, a personal assistant on the user's own computer. Answer briefly. "
    "Use what the user told you earlier when it answers the question, citing it as [n]."
)
MEMORY_HEADING = "Earlier I told you:"
NO_MODEL = (
    "No language model is set up yet, so I cannot write an answer. Add one with "
    "`memos-desktop model add PATH` (a GGUF file or an MLX folder) or "
    "`memos-desktop model pull NAME` (`model list --available` shows the models that fit), or in the "
    "Models screen. "
    "Memory commands (/remember, /forget, /pin, /ttl) and search work without a model."
)


@dataclass(frozen=True)
class TurnSettings:
    """How the assistant answers and remembers: the one place these defaults live (settings
    screen, config and CLI read them here). `sampling == "recommended"` uses the model's own
    recommended sampling where it has one (GGUF metadata, catalogue entry), these values otherwise;
    "custom" always uses these values. Temperature 0 is greedy (deterministic) decoding."""

    answer_tokens: int = 512
    sampling: str = "recommended"
    temperature: float = 0.6
    top_p: float = 0.9
    min_p: float = 0.05
    repeat_penalty: float = 1.15
    activation: bool = True
    extract: bool = True

    def check(self) -> "TurnSettings":
        """These settings, or MemosError naming the first value out of range."""
        limits = {
            "answer_tokens": (1, 8192),
            "temperature": (0.0, 2.0),
            "top_p": (0.05, 1.0),
            "min_p": (0.0, 0.5),
            "repeat_penalty": (1.0, 2.0),
        }
        for name, (low, high) in limits.items():
            if not low <= getattr(self, name) <= high:
                raise MemosError(f"{name.replace('_', ' ')} must be between {low:g} and {high:g}.")
        if self.sampling not in ("recommended", "custom"):
            raise MemosError('sampling must be "recommended" or "custom".')
        return self


class TurnOverrides(TypedDict, total=False):
    """Some of TurnSettings' fields, by name (`Assistant(..., **overrides)`); the same names and types."""

    answer_tokens: int
    sampling: str
    temperature: float
    top_p: float
    min_p: float
    repeat_penalty: float
    activation: bool
    extract: bool


def load_settings(vault: Vault) -> TurnSettings:
    """The vault's stored settings over the defaults (unknown or mistyped stored keys are ignored)."""
    stored = vault.get_setting(SETTING) or {}
    defaults = TurnSettings()
    known: dict[str, Any] = {}  # each value checked against its field's type below
    for f in dataclasses.fields(TurnSettings):
        value = stored.get(f.name)
        default = getattr(defaults, f.name)
        if isinstance(default, bool) and isinstance(value, bool):
            known[f.name] = value
        elif isinstance(default, int | float) and not isinstance(default, bool) and isinstance(value, int | float):
            known[f.name] = type(default)(value)
        elif isinstance(default, str) and isinstance(value, str):
            known[f.name] = value
    try:
        return replace(defaults, **known).check()
    except MemosError:
        return defaults


def save_settings(vault: Vault, settings: TurnSettings) -> None:
    """Store `settings` (checked first) in the vault."""
    vault.set_setting(SETTING, dataclasses.asdict(settings.check()))


def sampling_for(
    settings: TurnSettings, llm: LLMBackend | None, model: dict[str, Any] | None = None, seed: int = 0
) -> Sampling:
    """The runtime `Sampling` for one answer: the model's recommendation (when the settings ask for
    it and it has one) over the settings' values, bounded by `answer_tokens`."""
    from memos_desktop.runtime.base import recommended_sampling

    sampling = Sampling(
        max_tokens=settings.answer_tokens,
        seed=seed,
        temperature=settings.temperature,
        top_p=settings.top_p,
        min_p=settings.min_p,
        repeat_penalty=settings.repeat_penalty,
    )
    if settings.sampling == "recommended" and llm is not None:
        sampling = replace(sampling, **recommended_sampling(llm, model))
    return sampling


def memory_budget(n_ctx: int, size_bytes: int) -> int:
    """Tokens of memories a prompt may hold: a share of the context, smaller for smaller models
    (a 135M model follows two facts, not twenty)."""
    if size_bytes < 400 * 1024**2:
        cap = 320
    elif size_bytes < 2 * 1024**3:
        cap = 768
    elif size_bytes < 6 * 1024**3:
        cap = 1536
    else:
        cap = 2048
    return max(64, min(cap, n_ctx // 4))


def looping(tokens: Sequence[int], span: int = LOOP_SPAN) -> bool:
    """Whether the answer has degenerated into a loop that only max_tokens would otherwise end:
    its last `span` tokens are one short pattern repeated, or use fewer than span/6 distinct
    tokens (a list such as "A-1, A-2, A-3, …" never repeats exactly but draws on a dozen tokens)."""
    if len(tokens) < span:
        return False
    tail = list(tokens[-span:])
    if len(set(tail)) < span // 6:
        return True
    return any(all(tail[i] == tail[i - p] for i in range(p, span)) for p in range(1, span // 3 + 1))


def query_terms(text: str) -> list[str]:
    """The words of a message that say what it is about (no stopwords), lowercased, distinct."""
    from memos_desktop.operation.search import STOPWORDS

    return list(dict.fromkeys(w for w in re.findall(r"\w+", text[:QUERY_CHARS].lower()) if w not in STOPWORDS))


def coverage(terms: Sequence[str], content: str) -> float:
    """The share of `terms` found in `content`, a word's other forms counting ("live"/"lives")."""
    from memos_desktop.operation.reader import same_word

    if not terms:
        return 0.0
    words = set(re.findall(r"\w+", content.lower()))
    return sum(any(same_word(t, w) for w in words) for t in terms) / len(terms)


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.cube_id,
            "n": self.n,
            "title": self.title,
            "source": self.where,
            "tier": self.tier,
            "cited": self.cited,
            "excerpt": self.excerpt,
        }


@dataclass
class LeftOut:
    """A retrieved (or resident) memory that did not go into the prompt, and why."""

    cube_id: str
    title: str
    reason: str
    score: float | None = None


class TurnRecord(TypedDict):
    """One stored turn of a conversation: the user's message or the assistant's answer."""

    turn: int
    role: str  # "user" or "assistant"
    content: str
    at: float
    cube_id: str


@dataclass
class Conversation:
    id: str
    title: str = ""
    turns: list[TurnRecord] = field(default_factory=list)

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
    messages: list[dict[str, str]]
    prefix_messages: int  # how many leading messages form the cacheable prefix
    citations: list[Citation]
    left_out: list[LeftOut] = field(default_factory=list)
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
    stored: bool = False  # the exchange was kept (False: cancelled, no model, a command, --no-memory)
    cancelled: bool = False
    left_out: list[LeftOut] = field(default_factory=list)
    stop_reason: str = ""  # "end", "length", "loop", "cancelled" or "" (no generation)

    @property
    def written(self) -> list[str]:
        """Ids of the memories this turn wrote (added or updated)."""
        return [op.cube_id for op in self.ops if op.op in ("ADD", "UPDATE") and op.cube_id]


class Assistant:
    """Chat with memory over one unlocked vault and an optional loaded model (`llm`).

    `settings` (else `TurnSettings()`, with `overrides` applied) say how to answer; `model` is the
    loaded model's registry entry (for its recommended sampling); `access` is the session's lock
    as a context manager factory (`Session.access`): `turn` holds it for each vault step and
    releases it while the model generates. Other methods expect the caller to hold it.
    """

    def __init__(
        self,
        vault: Vault,
        llm: LLMBackend | None = None,
        settings: TurnSettings | None = None,
        *,
        profile: str = "default",
        model: dict[str, Any] | None = None,
        access: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
        clock: Callable[[], float] = time.time,
        system: str = SYSTEM_PROMPT,
        **overrides: Unpack[TurnOverrides],
    ) -> None:
        self.vault = vault
        self.system = system
        self.seed: int | None = None  # sampling seed; None: the turn number
        self.llm = llm
        self.settings = replace(settings or TurnSettings(), **overrides).check()
        self.profile = profile
        self.model = model
        self.access: Callable[[], contextlib.AbstractContextManager[object]] = access or contextlib.nullcontext
        self.clock = clock
        count = llm.count_tokens if llm is not None else estimate_tokens
        self.count_tokens = count
        self.scheduler = MemScheduler(vault, count_tokens=count, profile=profile, clock=clock)
        self.reader = MemReader(vault, llm, profile=profile, clock=clock, activation=self.settings.activation)

    @property
    def extract(self) -> bool:
        return self.settings.extract

    @property
    def model_name(self) -> str | None:
        if self.model is not None:
            return self.model.get("name")
        return self.llm.path.name if self.llm is not None else None

    # ----- conversations --------------------------------------------------------------------
    def conversations(self) -> list[dict[str, Any]]:
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
        turns: list[TurnRecord] = [
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
        on_token: Callable[[str], object] | None = None,
        cancel: threading.Event | None = None,
        *,
        on_plan: Callable[[PreparedTurn], object] | None = None,
        on_stored: Callable[[TurnResult], object] | None = None,
        memory: bool = True,
    ) -> TurnResult:
        """Answer `text` in `conversation`, the whole pipeline.

        /commands run directly. Otherwise: retrieve and plan (`on_plan` sees the citations and
        what was left out before the first token), stream the answer through `on_token`, store
        the complete exchange (`on_stored`; MemReader runs next), read memories from the user's
        words. `cancel` stops the answer (nothing is kept) or MemReader (the exchange stays).
        `memory=False` is a plain chat: no retrieval, nothing stored or read.
        """
        text = checked_message(text)
        if MemReader.is_command(text):
            with self.access():
                op = self.reader.command(text, at=self.clock())
            return TurnResult(conversation.id, describe(op), ops=[op])
        with self.access():
            prepared = self.prepare(conversation, text, memory=memory)
        if on_plan is not None:
            on_plan(prepared)
        if self.llm is None:
            return TurnResult(
                conversation.id, NO_MODEL, prepared.citations, timings=prepared.timings, left_out=prepared.left_out
            )
        with self.access():
            stream = self.generate(prepared, cancel)
        pieces = []
        for piece in stream:
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
        answer = "".join(pieces)
        if cancel is not None and cancel.is_set():
            return TurnResult(
                conversation.id,
                answer,
                prepared.citations,
                timings=prepared.timings,
                cancelled=True,
                left_out=prepared.left_out,
                stop_reason="cancelled",
            )
        if not memory:
            _mark_cited(prepared.citations, answer)
            return TurnResult(
                conversation.id, answer, prepared.citations, timings=prepared.timings, stop_reason=stream.reason
            )
        with self.access():
            result = self.store(prepared, answer)
        result.stop_reason = stream.reason
        if on_stored is not None:
            on_stored(result)
        with self.access():
            return self.remember(prepared, result, cancel)

    def prepare(self, conversation: Conversation, text: str, memory: bool = True) -> PreparedTurn:
        """Retrieve, schedule and build the prompt messages for `text` (cleaned and checked here).

        Retrieved memories below RELEVANCE_FLOOR × the best hit's score, past assistant turns
        (the model's own words are never evidence) and what exceeds the memory budget are left
        out, each with its reason."""
        text = checked_message(text)
        at = self.clock()
        turn = conversation.next_turn
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        history = self._history(conversation)
        hits, left_out = self._retrieve(text, {h["cube_id"] for h in history}) if memory else ([], [])
        timings["retrieve_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        context = self.llm.n_ctx if self.llm is not None else 4096
        fixed = sum(self.count_tokens(m["content"]) for m in history) + self.count_tokens(self.system)
        room = context - self.settings.answer_tokens - fixed - self.count_tokens(text)
        budget = max(0, min(self._memory_budget(context), room)) if memory else 0
        plan = self.scheduler.plan(hits, budget, turn_id=f"{conversation.id}:{turn}") if memory else Plan("", 0)
        left_out += [LeftOut(p.cube.id, _label(p.cube), p.reason, p.score) for p in plan.dropped]
        timings["schedule_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prompt = list(reversed(plan.prompt))  # the most relevant nearest the question
        citations = [
            Citation(n, p.cube.id, _title_of(p.cube), p.cube.citation(), p.tier, excerpt=_excerpt(p.cube))
            for n, p in enumerate(plan.prefix + prompt, 1)
        ]
        messages = self._messages(plan.prefix, prompt, plan.tokens, history, text, context)
        timings["prompt_s"] = time.perf_counter() - t0
        return PreparedTurn(conversation, text, at, turn, plan, messages, 1, citations, left_out, timings)

    def _retrieve(self, text: str, in_history: set[str]) -> tuple[list[tuple[MemCube, float]], list[LeftOut]]:
        """Plaintext hits worth a place in the prompt, best first, and those left out with why."""
        from memos_desktop.operation.search import search

        hits, left_out = [], []
        found = search(self.vault, _query(text), k=RETRIEVE_K, profile=self.profile, record=False)
        best = max((h.score for h in found), default=0.0)
        read = {_turn_key(h.cube.source) for h in found if "memory" in h.cube.tags and "turn_id" in h.cube.source}
        terms = query_terms(text)
        for h in found:
            cube = h.cube
            if cube.id in in_history or cube.kind != "plaintext":
                continue
            if cube.source.get("role") == "assistant":
                left_out.append(LeftOut(cube.id, _label(cube), "the assistant's own words", h.score))
            elif CHAT_TAG in cube.tags and _turn_key(cube.source) in read:
                left_out.append(LeftOut(cube.id, _label(cube), "its memories are given instead", h.score))
            elif CHAT_TAG in cube.tags and cube.content.rstrip().endswith("?"):
                left_out.append(LeftOut(cube.id, _label(cube), "a question, it states nothing", h.score))
            elif h.signals.get("cosine", 0.0) < MIN_COSINE and coverage(terms, cube.content) <= 0.5:
                left_out.append(LeftOut(cube.id, _label(cube), "not related enough to the message", h.score))
            elif h.score < best * RELEVANCE_FLOOR:
                left_out.append(LeftOut(cube.id, _label(cube), "less relevant than the best match", h.score))
            else:
                hits.append((cube, h.score))
        return hits, left_out

    def _memory_budget(self, context: int) -> int:
        from memos_desktop.runtime.base import model_size

        size = model_size(self.llm.path) if self.llm is not None else 1024**3
        return memory_budget(context, size)

    def _history(self, conversation: Conversation) -> list[dict[str, str]]:
        recent = conversation.turns[-2 * HISTORY_TURNS :]
        return [{"role": t["role"], "content": t["content"], "cube_id": t["cube_id"]} for t in recent]

    def _messages(
        self,
        prefix: list[Placement],
        prompt: list[Placement],
        memory_tokens: int,
        history: list[dict[str, str]],
        text: str,
        context: int,
    ) -> list[dict[str, str]]:
        system = self.system
        if prefix:
            system += f"\n{MEMORY_HEADING}\n" + "\n".join(
                f"[{n}] {memory_line(p.cube)}" for n, p in enumerate(prefix, 1)
            )
        user = text
        if prompt:
            start = len(prefix) + 1
            lines = "\n".join(f"[{n}] {memory_line(p.cube)}" for n, p in enumerate(prompt, start))
            user = f"{MEMORY_HEADING}\n{lines}\n\n{text}"
        room = context - self.settings.answer_tokens - self.count_tokens(system) - memory_tokens
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

    def sampling(self, seed: int = 0) -> Sampling:
        """The runtime Sampling this assistant answers with."""
        return sampling_for(self.settings, self.llm, self.model, seed)

    def generate(self, prepared: PreparedTurn, cancel: threading.Event | None = None) -> "Answer":
        """Start the answer and return its text pieces as the model produces them.

        The prompt's stable prefix (system prompt + pinned/hot memories) is served from activation
        memory now, before the first piece (restored, or computed and saved: this touches the
        vault); iterating the result only runs the model. Setting `cancel` stops it early; so does
        a degenerate loop (`looping`). The answer is at most `answer_tokens` long.
        """
        if self.llm is None:
            raise ModelError(NO_MODEL)
        from memos_desktop.runtime.activation import ActivationMemory
        from memos_desktop.runtime.chat import chat

        t0 = time.perf_counter()
        sampling = self.sampling(seed=prepared.turn if self.seed is None else self.seed)
        memory = ActivationMemory(self.vault, profile=self.profile) if self.settings.activation else None
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
        return Answer(turn, timings, t0, sampling.max_tokens, cancel)

    def store(self, prepared: PreparedTurn, answer: str) -> TurnResult:
        """Store a completed exchange (both turns in one transaction) and record memory use."""
        conv = prepared.conversation
        _mark_cited(prepared.citations, answer)
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
            conv.id,
            answer,
            prepared.citations,
            turn=prepared.turn,
            timings=prepared.timings,
            stored=True,
            left_out=prepared.left_out,
        )

    def remember(self, prepared: PreparedTurn, result: TurnResult, cancel: threading.Event | None = None) -> TurnResult:
        """Let MemReader turn the user's words of a stored exchange into memory ops (when on)."""
        if not self.settings.extract:
            return result
        t0 = time.perf_counter()
        source = {"conversation": result.conversation_id, "turn_id": prepared.turn, "role": "user"}
        extraction = self.reader.read(prepared.text, result.answer, prepared.at, source, cancel)
        prepared.timings["extract_s"] = time.perf_counter() - t0
        return replace(result, extraction=extraction, ops=extraction.ops, timings=prepared.timings)


class Answer:
    """The text pieces of one answer as the model produces them; `reason` says why it ended
    ("end": the model's end token, "length": answer_tokens or the context, "loop": a degenerate
    loop, "cancelled"). A model's invalid UTF-8 arrives as U+FFFD, never as an exception."""

    def __init__(
        self, turn: "ChatTurn", timings: dict[str, float], t0: float, max_tokens: int, cancel: threading.Event | None
    ) -> None:
        self.turn = turn
        self.timings = timings
        self.t0 = t0
        self.max_tokens = max_tokens
        self.cancel = cancel
        self.reason = ""

    @property
    def tokens(self) -> list[int]:
        return self.turn.tokens

    def __iter__(self) -> Iterator[str]:
        timings, tokens = self.timings, self.turn.tokens
        self.reason = "end"
        try:
            for raw in self.turn:
                if "ttft_s" not in timings:
                    timings["ttft_s"] = time.perf_counter() - self.t0
                yield printable(raw)
                if self.cancel is not None and self.cancel.is_set():
                    self.reason = "cancelled"
                    break
                if looping(tokens):
                    self.reason = "loop"
                    break
        except MemosError:
            raise
        except Exception as exc:
            raise ModelError(f"The model stopped while answering: {exc}") from exc
        if self.reason == "end" and len(tokens) >= self.max_tokens:
            self.reason = "length"
        timings["generate_s"] = time.perf_counter() - self.t0
        timings["answer_tokens"] = len(tokens)


def _mark_cited(citations: list[Citation], answer: str) -> None:
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    for c in citations:
        c.cited = c.n in cited


def _label(cube: MemCube) -> str:
    """A chat turn's title is its conversation's, so a turn is named by its own words."""
    return _excerpt(cube) if CHAT_TAG in cube.tags else cube.title or _excerpt(cube)


def _title_of(cube: MemCube) -> str:
    """A memory's title; none for a chat turn (its title is its conversation's)."""
    return "" if CHAT_TAG in cube.tags else cube.title


def _turn_key(source: dict[str, Any]) -> tuple[object, object]:
    return source.get("conversation"), source.get("turn_id")


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


def _previous(turns: list[TurnRecord]) -> str:
    """The text said just before a new exchange, embedded with its question as context."""
    return turns[-1]["content"] if turns else ""


def _title(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return first[:60] + ("…" if len(first) > 60 else "")


def _excerpt(cube: MemCube) -> str:
    text = " ".join(cube.content.split())
    return text[:160] + ("…" if len(text) > 160 else "")
