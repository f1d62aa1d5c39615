"""MemReader: turns the user's words in each chat exchange, and each explicit memory command, into
memory operations. A memory comes only from what the user said; the assistant's reply is context
for the model, never a source.

Extraction asks the local model for durable facts and preferences as JSON constrained by the
extraction schema: on llama.cpp by its grammar sampler (`generate_json`, one pass), elsewhere
(MLX) by `structured.GuidedJSON` (the model only fills schema-constrained slots), and validated
again here. Every extracted fact is then grounded in the user's turn (`ground`): its content words
must appear there and it must be close in meaning to one user sentence (kept as the memory's
`quote`); fragments, list markers, echoes of a question and anything found only in the
assistant's reply are rejected with their reason. Output that does not validate, an empty
extraction or one where nothing survives grounding falls back to the deterministic path
(`statements`: first-person statements such as "my sister lives in Lyon", "I prefer tea"),
never to a fragment of a bad extraction. It resolves time expressions to absolute dates relative
to the message time (stored in `valid_from`), compares each fact with similar existing memories
and chooses ADD, UPDATE (a new version; also for a near-duplicate), DELETE (a tombstone) or NOOP;
a contradiction archives the old fact with a `superseded_by` link to the new one. The commands
`/remember`, `/forget`, `/pin`, `/unpin` and `/ttl` work without any model.
"""

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from memos_desktop.errors import MemosError, ModelError, NotFound
from memos_desktop.parsing import parse_duration
from memos_desktop.runtime.base import LLMBackend
from memos_desktop.vault import MemCube, Vault

MEMORY_TAG = "memory"  # tag of the facts and preferences the reader keeps about the person
MAX_FACTS = 3
MAX_FACT_CHARS = 120
MAX_WHEN_CHARS = 24
EXTRACT_MAX_TOKENS = 640
SIMILAR_CHARS = 2000  # how much of a message is compared with existing memories
CANDIDATES = 5  # similar existing memories shown to the model and compared against
DUPLICATE = 0.92  # similarity at or above which a new fact is the same as an existing one
NEAR_DUPLICATE = 0.86  # similarity at or above which a read fact is a new version of an existing one
LEXICAL_SUPPORT = 0.75  # share of a fact's content words that must appear in the user's words
SEMANTIC_SUPPORT = 0.25  # similarity a fact needs with its best-supporting user sentence
MIN_FACT_WORDS = 3
ANSWER_CONTEXT_CHARS = 300  # how much of the assistant's reply the model sees, as context only
RELATED = 0.3  # similarity a fact needs with its target before it may update/delete/supersede it
COMMANDS = ("/remember", "/forget", "/pin", "/unpin", "/ttl")

EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "memories": {
            "type": "array",
            "maxItems": MAX_FACTS,
            "items": {
                "type": "object",
                "properties": {
                    "op": {"enum": ["add", "update", "delete", "contradict"]},
                    "text": {"type": "string", "maxLength": MAX_FACT_CHARS},
                    "kind": {"enum": ["fact", "preference", "event"]},
                    "when": {"type": "string", "maxLength": MAX_WHEN_CHARS},
                    "ref": {"type": "integer", "minimum": 0, "maximum": CANDIDATES},
                },
                "required": ["op", "text", "kind", "when", "ref"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["memories"],
    "additionalProperties": False,
}

EXTRACTION_PROMPT = f"""You maintain a memory of durable facts about the user.
From what the USER says in the message, list at most {MAX_FACTS} durable facts or preferences worth
remembering for months (not small talk, not questions, never what the assistant said). For each give:
- op: "add" for a new fact; "update" when it refines existing memory number ref; "contradict" when
  it replaces existing memory number ref; "delete" when the user says memory number ref is no
  longer true; ref is 0 when no existing memory is meant.
- text: one short sentence about the user; kind: fact, preference or event;
- when: the time expression it refers to, copied from the text ("last Tuesday"), or "".
Answer with JSON only, like {{"memories": []}}."""


class Fact(TypedDict):
    """One fact of an extraction, validated (`parse_extraction`); `quote` once it is grounded."""

    op: str  # add, update, delete, contradict
    text: str
    kind: str  # fact, preference, event
    when: str  # the time expression it refers to, or ""
    ref: int  # the existing memory it names (1-based among the candidates), 0 for none
    quote: NotRequired[str]  # the user's sentence that supports it


@dataclass
class MemoryOp:
    """One operation the reader decided on, and what it did."""

    op: str  # ADD, UPDATE, DELETE, NOOP, PIN, UNPIN, TTL
    text: str = ""
    cube_id: str | None = None  # the cube written or affected
    target: str | None = None  # the existing cube it was compared with, if any
    reason: str = ""
    valid_from: float | None = None


@dataclass
class Extraction:
    """The outcome of reading one exchange: the ops applied, the facts rejected (text, reason),
    whether the deterministic path produced them, and, when the model's extraction failed, why."""

    ops: list[MemoryOp] = field(default_factory=list)
    error: str | None = None
    raw: str = ""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    fallback: bool = False


# Words that carry no fact of their own; "user" stands for the speaker in the model's facts.
_FUNCTION_WORDS = """a an the and or but of to in on at for with from by as is are was were be been being am do does did
    has have had i me my mine myself we our ours you your he she it its they them their this that these those
    there here so very just also not no now then than too user users user's person people who what which"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
LIST_MARKER = re.compile(r"^\W*([a-z]{0,3}[-.)]?\s*\d+[a-z]?|[a-z][.)]|[ivx]+[.)])\W*$", re.I)
SENTENCE = re.compile(r"[^.!?;\n]+[.!?]?")
FIRST_PERSON = re.compile(r"\b(i|i'm|i’m|i've|i’ve|i'd|my|we|our|we're)\b", re.I)
# A first-person statement worth keeping says who the user is, what they have, do or like.
DURABLE = re.compile(
    r"\b(i|we)\s+(am|'m|’m|was|have|'ve|’ve|has|had|own|live|lived|work|worked|study|studied|prefer|like|love|"
    r"enjoy|hate|dislike|can't stand|cannot stand|moved|grew up|was born|speak|play|drive|use|eat|drink|"
    r"don't|do not|never|always|usually|visit|go|went|started|finished|bought|adopted|got|married|teach|"
    r"run|ride|cook|collect|volunteer|need|avoid|'m allergic|am allergic)\b"
    r"|\bmy\s+[\w' -]{1,40}?\s+(is|are|was|were|lives|live|works|work|has|have|likes|loves|"
    r"studies|moved|turns|called|named|costs|starts|ends|expires|leaves)\b",
    re.I,
)
# First-person phrases that are about the conversation, not about the user.
CHATTER = re.compile(
    r"^\W*(i\s+(think|guess|wonder|was wondering|want to know|would like to know|need help|need you|"
    r"am not sure|'m not sure|’m not sure|don't know|do not know|mean|see|agree|understand|hope you)|"
    r"thanks|thank you|please|can you|could you|would you|tell me|do you|what|where|when|who|why|how)\b",
    re.I,
)
CLAUSE = re.compile(r",?\s+(?:and|but|so)\s+(?=(?:i|my|we|i'm|i’m)\b)|,\s+(?=(?:i|my)\s)", re.I)
FILLER = re.compile(r"^\W*(oh|well|so|ok|okay|by the way|btw|also|and|but|yes|no|hi|hello|hey)\b[,!.]?\s*", re.I)


def _content_words(text: str) -> list[str]:
    """The distinct content words of `text`, lowercased, in order."""
    return list(dict.fromkeys(w for w in re.findall(r"[\w']+", text.lower()) if w not in FUNCTION_WORDS))


def _is_fragment(text: str) -> bool:
    """A list marker, or too few words to state anything: fewer than MIN_FACT_WORDS words, or
    nothing but names ("Pixel and Tofu")."""
    if LIST_MARKER.match(text) or len(re.findall(r"[^\W\d_]{2,}", text)) < MIN_FACT_WORDS:
        return True
    words = re.findall(r"[^\W\d_][\w']*", text)[1:]  # the first word's case says nothing
    return not [w for w in words if w.islower() and w not in FUNCTION_WORDS]


def same_word(a: str, b: str) -> bool:
    """Equal, or the same stem ("lives"/"live", "moved"/"move"): a common prefix of at least four
    letters that leaves at most three letters over on either side."""
    if a == b:
        return True
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    if n == min(len(a), len(b)) >= 3:  # "own"/"owns", "like"/"liked"
        return max(len(a), len(b)) - n <= 2
    return n >= 4 and len(a) - n <= 3 and len(b) - n <= 3


def lexical_support(fact: str, source: str) -> float:
    """The share of `fact`'s content words found in `source`; 0 when one of its names or
    numbers (capitalised words after the first, digits) is not there."""
    words = _content_words(fact)
    if not words:
        return 0.0
    have = set(re.findall(r"[\w']+", source.lower()))
    tokens = re.findall(r"[\w']+", fact)
    names = {
        t.lower()
        for i, t in enumerate(tokens)
        if t.isdigit() or (i > 0 and t[0].isupper() and t.lower() not in FUNCTION_WORDS)
    }
    if names - have:
        return 0.0
    return sum(any(same_word(w, h) for h in have) for w in words) / len(words)


def sentences(text: str) -> list[str]:
    """The sentences of `text`, trimmed, in order."""
    return [m.group(0).strip() for m in SENTENCE.finditer(text) if m.group(0).strip()]


def statements(text: str) -> list[str]:
    """The deterministic path: the user's first-person statements of durable facts, verbatim
    (fillers trimmed), in order; questions, requests and chatter are not statements."""
    out = []
    clauses = [c for s in sentences(text) if not s.endswith("?") for c in CLAUSE.split(s)]
    for sentence in clauses:
        sentence = FILLER.sub("", sentence).strip(" ,")
        if len(sentence.split()) < MIN_FACT_WORDS or len(sentence) > 2 * MAX_FACT_CHARS:
            continue
        if CHATTER.search(sentence) or not DURABLE.search(sentence):
            continue
        out.append(sentence[0].upper() + sentence[1:].rstrip(".!") + ".")
    return out[:MAX_FACTS]


def fact_kind(text: str) -> str:
    if re.search(r"\b(prefer|like|love|enjoy|hate|dislike|favou?rite|can't stand)\b", text, re.I):
        return "preference"
    return "fact"


def resolve_time(text: str, at: float) -> float | None:
    """The first time expression in `text` as a Unix time, relative to the moment `at` (UTC)."""
    if not text or not text.strip():
        return None
    from dateparser.search import search_dates

    base = datetime.fromtimestamp(at, tz=UTC).replace(tzinfo=None)
    found = search_dates(
        text,
        languages=["en"],
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "past",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    if not found:
        return None
    _phrase, moment = found[0]
    return moment.replace(tzinfo=UTC).timestamp()


def parse_extraction(raw: str, candidates: int) -> list[Fact]:
    """The facts in the model's JSON, checked against the extraction schema (else ModelError)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"The model's memory extraction is not valid JSON ({exc}).") from None
    items = data.get("memories") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ModelError("The model's memory extraction has no list of memories.")
    facts: list[Fact] = []
    for item in items[:MAX_FACTS]:
        if not isinstance(item, dict):
            raise ModelError("The model's memory extraction holds a non-object entry.")
        op, text, kind = item.get("op"), item.get("text"), item.get("kind")
        when, ref = item.get("when", ""), item.get("ref", 0)
        if op not in ("add", "update", "delete", "contradict") or kind not in (
            "fact",
            "preference",
            "event",
        ):
            raise ModelError("The model's memory extraction uses an unknown op or kind.")
        if not isinstance(text, str) or not isinstance(when, str) or type(ref) is not int:
            raise ModelError("The model's memory extraction has fields of the wrong type.")
        facts.append(
            {
                "op": op,
                "text": _clean(text)[:MAX_FACT_CHARS],
                "kind": kind,
                "when": _clean(when)[:MAX_WHEN_CHARS],
                "ref": ref if 0 <= ref <= candidates else 0,
            }
        )
    return facts


def _cut(text: str) -> str:
    """At most SIMILAR_CHARS of `text`: a long one keeps its head and tail."""
    if len(text) <= SIMILAR_CHARS:
        return text
    half = SIMILAR_CHARS // 2
    return f"{text[:half]} […] {text[-half:]}"


def _clean(text: str) -> str:
    """Text with control characters removed and whitespace collapsed."""
    return " ".join("".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text).split())


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class MemReader:
    """Reads exchanges into memory operations on `vault`; `llm` (optional) extracts facts."""

    def __init__(
        self,
        vault: Vault,
        llm: LLMBackend | None = None,
        profile: str = "default",
        clock: Callable[[], float] = time.time,
        activation: bool = False,
    ) -> None:
        self.vault = vault
        self.llm = llm
        self.profile = profile
        self.clock = clock
        self.activation = activation  # serve the fixed extraction instructions from activation memory

    # ----- similarity -----------------------------------------------------------------------
    def similar(self, text: str, k: int = CANDIDATES) -> list[tuple[MemCube, float]]:
        """Existing memories (tag `memory`) most similar to `text`, best first, with a 0–1 score."""
        rowids = [r for r, _ in self.vault.fts(text, k * 4)]
        if self.vault.embedder is not None:
            vec = self.vault.embedder.embed([text])[0]
            rowids += [r for r, _ in self.vault.knn(vec, k * 4)]
        cubes = self.vault.get_many(list(dict.fromkeys(rowids)), profile=self.profile)
        memories = [c for c in cubes.values() if MEMORY_TAG in c.tags]
        scored = [(c, self.similarity(text, c.content)) for c in memories]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0].id))[:k]

    def similarity(self, a: str, b: str) -> float:
        """Cosine of the two texts' embeddings, or word overlap (Jaccard) without an embedder."""
        if _clean(a).lower() == _clean(b).lower():
            return 1.0
        if self.vault.embedder is not None:
            va, vb = self.vault.embedder.embed([a, b])
            return float(max(0.0, (va * vb).sum()))
        wa, wb = _words(a), _words(b)
        return len(wa & wb) / len(wa | wb) if wa | wb else 0.0

    # ----- explicit commands ----------------------------------------------------------------
    @staticmethod
    def is_command(text: str) -> bool:
        return text.strip().split(" ", 1)[0].lower() in COMMANDS

    def command(self, text: str, at: float | None = None) -> MemoryOp:
        """Run one explicit command (`/remember TEXT`, `/forget ID|TEXT`, `/pin ID`, `/unpin ID`,
        `/ttl ID DURATION`) without any model."""
        at = self.clock() if at is None else at
        name, _, rest = text.strip().partition(" ")
        name, rest = name.lower(), _clean(rest)
        if name not in COMMANDS:
            raise MemosError(f"Unknown command {name}; the commands are {', '.join(COMMANDS)}.")
        if not rest:
            raise MemosError(f"{name} needs an argument, e.g. {_usage(name)}.")
        if name == "/remember":
            return self._add(rest, "fact", at, source={"command": "/remember"}, reason="asked by the user")
        if name == "/forget":
            cube = self._find(rest)
            self.vault.forget(cube.id, profile=self.profile, actor="user")
            return MemoryOp("DELETE", cube.content, cube.id, reason="asked by the user")
        if name in ("/pin", "/unpin"):
            cube = self._find(rest)
            self.vault.edit(cube.id, profile=self.profile, actor="user", pinned=name == "/pin")
            return MemoryOp(name[1:].upper(), cube.content, cube.id, reason="asked by the user")
        ref, _, duration = rest.rpartition(" ")
        if not ref:
            raise MemosError(f"/ttl needs a memory and a duration, e.g. {_usage('/ttl')}.")
        seconds = parse_duration(duration)
        cube = self._find(ref)
        self.vault.edit(cube.id, profile=self.profile, actor="user", ttl=seconds)
        reason = "never expires" if seconds is None else f"expires in {duration}"
        return MemoryOp("TTL", cube.content, cube.id, reason=reason)

    def _find(self, ref: str) -> MemCube:
        """A visible cube by id, unique id prefix (≥ 6 characters), or the best-matching memory."""
        ref = ref.strip()
        if re.fullmatch(r"[0-9A-Za-z]{6,26}", ref):
            ids = self.vault.ids_with_prefix(ref)
            if len(ids) == 1:
                return self.vault.get(ids[0], profile=self.profile, touch=False)
        matches = self.similar(ref, k=1)
        if not matches or matches[0][1] < RELATED:
            raise NotFound(f"No memory matches {ref!r}.")
        return matches[0][0]

    def _add(
        self,
        text: str,
        kind: str,
        at: float,
        source: dict[str, Any],
        reason: str,
        when: str = "",
        quote: str | None = None,
    ) -> MemoryOp:
        """Add `text` as a memory, unless it is already remembered (NOOP) or, when read from a
        turn (`quote` given), a near-duplicate of an existing memory, which gets it as a new
        version (UPDATE) instead of a second memory."""
        valid_from = resolve_time(when or text, at)
        best = self.similar(text, k=1)
        if best and best[0][1] >= DUPLICATE:
            return MemoryOp("NOOP", text, best[0][0].id, best[0][0].id, "already remembered", valid_from)
        meta = {"said_at": at} if quote is None else {"said_at": at, "quote": quote, "source_turn": source}
        if quote is not None and best and best[0][1] >= NEAR_DUPLICATE:
            target = best[0][0]
            cube = self.vault.edit(
                target.id,
                profile=self.profile,
                actor="reader",
                content=text,
                meta={**target.meta, **meta},
                valid_from=valid_from if valid_from is not None else target.valid_from,
            )
            return MemoryOp(
                "UPDATE", text, cube.id, target.id, f"near-duplicate of version {target.version}", valid_from
            )
        tags = [MEMORY_TAG, kind, *re.findall(r"#(\w+)", text)]
        cube = self.vault.add(
            text,
            tags=tags,
            source=source,
            valid_from=valid_from,
            profile=self.profile,
            actor="reader" if "turn_id" in source else "user",
            meta=meta,
        )
        return MemoryOp("ADD", text, cube.id, reason=reason, valid_from=valid_from)

    # ----- extraction -----------------------------------------------------------------------
    def extraction_messages(self, user: str, answer: str, candidates: list[MemCube]) -> list[dict[str, str]]:
        existing = "\n".join(f"{i}. {c.content}" for i, c in enumerate(candidates, 1)) or "(none)"
        reply = _clean(answer)[:ANSWER_CONTEXT_CHARS]
        exchange = (
            f"Existing memories:\n{existing}\n\nThe user said:\n{_cut(user)}\n\n"
            f"(The assistant replied, for context only, never a source: {reply})"
        )
        return [{"role": "system", "content": EXTRACTION_PROMPT}, {"role": "user", "content": exchange}]

    def read(
        self, user: str, answer: str, at: float, source: dict[str, Any], cancel: threading.Event | None = None
    ) -> Extraction:
        """Extract, ground and apply memory ops for the user's words `user` (`answer`, the
        assistant's reply, is context only; `source` is the user turn's provenance).

        The model's facts that survive `ground` are applied; when the model's output does not
        validate, is empty, or nothing of it survives, the deterministic path (`statements`)
        reads the user's words instead. Without a model only that path runs. `cancel` set
        during extraction writes nothing."""
        candidates = [c for c, _ in self.similar(user[:SIMILAR_CHARS])]
        raw, error = "", None
        facts: list[Fact] = []
        rejected: list[tuple[str, str]] = []
        llm = self.llm
        if llm is None:
            error = "no model loaded"
        else:
            messages = self.extraction_messages(user, answer, candidates)
            try:
                if self.activation:
                    self._warm(llm, messages)
                raw = self._generate_json(llm, messages, len(candidates), cancel)
                if cancel is not None and cancel.is_set():
                    return Extraction(error="stopped before any memory was written", raw=raw)
                facts = parse_extraction(raw, len(candidates))
            except ModelError as exc:
                error = str(exc)
            except Exception as exc:  # a crashing runtime must not lose the exchange already stored
                error = f"the model failed during extraction: {exc}"
        grounded: list[Fact] = []
        for fact in facts:
            quote, why = self.ground(fact, user, answer)
            if why:
                rejected.append((fact["text"], why))
            else:
                grounded.append({**fact, "quote": quote})
        fallback = not grounded
        if fallback:
            grounded = [
                {
                    "op": "add",
                    "text": text[:MAX_FACT_CHARS],
                    "kind": fact_kind(text),
                    "when": "",
                    "ref": 0,
                    "quote": text,
                }
                for text in statements(user)
            ]
        ops = [self.apply(fact, candidates, at, source) for fact in grounded]
        return Extraction(ops=ops, error=error, raw=raw, rejected=rejected, fallback=fallback and bool(ops))

    def ground(self, fact: Fact, user: str, answer: str = "") -> tuple[str, str]:
        """(the user sentence that supports `fact`, "") or ("", why it is rejected): a fragment or
        list marker, not in the user's words (or only in the assistant's), an echo of a question,
        or not close in meaning to what the user said."""
        text = fact["text"]
        if _is_fragment(text):
            return "", "a fragment, not a fact"
        said = set(re.findall(r"[\w']+", user.lower()))
        replied = set(re.findall(r"[\w']+", answer.lower()))
        borrowed = [
            w
            for w in _content_words(text)
            if not any(same_word(w, h) for h in said) and any(same_word(w, h) for h in replied)
        ]
        if borrowed:
            return "", "only in the assistant's reply"
        needed = 0.34 if fact["op"] == "delete" else LEXICAL_SUPPORT
        scored = sorted(((lexical_support(text, s), s) for s in sentences(user)), key=lambda p: -p[0])
        best, quote = scored[0] if scored else (0.0, "")
        if lexical_support(text, user) < needed:
            if answer and lexical_support(text, answer) >= needed:
                return "", "only in the assistant's reply"
            return "", "not in the user's words"
        if quote.endswith("?") and best >= needed:
            return "", "an echo of the user's question"
        if fact["op"] != "delete" and CHATTER.search(FILLER.sub("", quote)):
            return "", "small talk, not a durable fact"
        whole = lexical_support(text, user) >= 1.0  # every content word and name is the user's own
        if fact["op"] != "delete" and not whole and self.similarity(text, quote or user) < SEMANTIC_SUPPORT:
            return "", "not what the user said"
        return quote or user[:MAX_FACT_CHARS], ""

    def _generate_json(
        self, llm: LLMBackend, messages: list[dict[str, str]], candidates: int, cancel: threading.Event | None
    ) -> str:
        """The extraction JSON: from the runtime's own schema-constrained decoding if it has one
        (llama.cpp's grammar, where `ref` may only name a shown memory), else slot by slot."""
        if hasattr(llm, "generate_json"):
            schema = copy.deepcopy(EXTRACTION_SCHEMA)
            schema["properties"]["memories"]["items"]["properties"]["ref"] = {"enum": list(range(candidates + 1))}
            prompt = llm.tokenize(llm.chat_prompt(messages))
            return llm.generate_json(prompt, schema, EXTRACT_MAX_TOKENS, cancel)
        from memos_desktop.runtime.guided import GuidedJSON

        return GuidedJSON(llm, messages, cancel).generate(EXTRACTION_SCHEMA, EXTRACT_MAX_TOKENS)

    def _warm(self, llm: LLMBackend, messages: list[dict[str, str]]) -> None:
        """Serve the extraction instructions (the same every time) from activation memory."""
        from memos_desktop.runtime.activation import ActivationMemory
        from memos_desktop.runtime.base import common_prefix

        head = llm.tokenize(llm.chat_prompt(messages[:1], add_generation_prompt=False))
        full = llm.tokenize(llm.chat_prompt(messages))
        ActivationMemory(self.vault, profile=self.profile).prepare(llm, full[: common_prefix(head, full)])

    def apply(self, fact: Fact, candidates: list[MemCube], at: float, source: dict[str, Any]) -> MemoryOp:
        """Decide ADD / UPDATE / DELETE / NOOP for one validated fact and carry it out."""
        text, op = fact["text"], fact["op"]
        named = candidates[fact["ref"] - 1] if fact["ref"] else None
        # the memory the fact names, if it is close enough in meaning to be the one it changes
        target = named if named is not None and self.similarity(text, named.content) >= RELATED else None
        if op == "delete":
            if target is None:
                return MemoryOp("NOOP", text, reason="delete of an unrelated or unknown memory ignored")
            self.vault.forget(target.id, profile=self.profile, actor="reader")
            return MemoryOp("DELETE", text, target.id, target.id, "the user said it is no longer true")
        if op == "update" and target is not None:
            valid_from = resolve_time(fact["when"] or text, at)
            cube = self.vault.edit(
                target.id,
                profile=self.profile,
                actor="reader",
                content=text,
                meta={**target.meta, "said_at": at, "quote": fact.get("quote", text), "source_turn": source},
                valid_from=valid_from if valid_from is not None else target.valid_from,
            )
            return MemoryOp("UPDATE", text, cube.id, target.id, f"refines version {target.version}", valid_from)
        quote = fact.get("quote", text)
        result = self._add(text, fact["kind"], at, source, "new fact", fact["when"], quote)
        if op == "contradict" and target is not None and result.op == "ADD" and result.cube_id is not None:
            self.vault.archive(
                target.id,
                profile=self.profile,
                actor="reader",
                reason=f"superseded by {result.cube_id}",
            )
            self.vault.link(target.id, result.cube_id, "superseded_by")
            result.target, result.reason = target.id, f"replaces {target.id}, which was archived"
        return result


def _usage(name: str) -> str:
    return {
        "/remember": "/remember I prefer window seats",
        "/forget": "/forget 01J9Z3 (an id) or /forget window seats",
        "/pin": "/pin 01J9Z3",
        "/unpin": "/unpin 01J9Z3",
        "/ttl": "/ttl 01J9Z3 7d",
    }[name]
