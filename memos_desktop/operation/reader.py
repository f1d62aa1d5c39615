"""MemReader: turns each chat exchange, and each explicit memory command, into memory operations.

Extraction asks the local model for durable facts and preferences as JSON constrained by the
extraction schema: on llama.cpp by its grammar sampler (`generate_json`, one pass), elsewhere
(MLX) by `structured.GuidedJSON` (the model only fills schema-constrained slots), and validated
again here. It resolves time expressions to absolute dates relative to the message time (stored
in `valid_from`), compares each fact with similar existing memories and chooses ADD, UPDATE (a
new version), DELETE (a tombstone) or NOOP; a contradiction archives the old fact with a
`superseded_by` link to the new one. The commands `/remember`, `/forget`, `/pin`, `/unpin` and
`/ttl` work without any model. Output that does not validate (or a cut-off extraction) is dropped
whole: the reader never stores a fragment of a bad extraction.
"""

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from memos_desktop.errors import MemosError, ModelError, NotFound
from memos_desktop.parsing import parse_duration
from memos_desktop.vault import MemCube, Vault

MEMORY_TAG = "memory"  # tag of the facts and preferences the reader keeps about the person
MAX_FACTS = 3
MAX_FACT_CHARS = 120
MAX_WHEN_CHARS = 24
EXTRACT_MAX_TOKENS = 640
SIMILAR_CHARS = 2000  # how much of a message is compared with existing memories
CANDIDATES = 5  # similar existing memories shown to the model and compared against
DUPLICATE = 0.92  # similarity at or above which a new fact is the same as an existing one
RELATED = 0.3  # similarity a fact needs with its target before it may update/delete/supersede it
COMMANDS = ("/remember", "/forget", "/pin", "/unpin", "/ttl")

EXTRACTION_SCHEMA = {
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
From the exchange in the message, list at most {MAX_FACTS} facts or preferences worth remembering
for months (not small talk, not questions). For each give:
- op: "add" for a new fact; "update" when it refines existing memory number ref; "contradict" when
  it replaces existing memory number ref; "delete" when the user says memory number ref is no
  longer true; ref is 0 when no existing memory is meant.
- text: one short sentence about the user; kind: fact, preference or event;
- when: the time expression it refers to, copied from the text ("last Tuesday"), or "".
Answer with JSON only, like {{"memories": []}}."""


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
    """The outcome of reading one exchange: the ops applied and, when it failed, why."""

    ops: list[MemoryOp] = field(default_factory=list)
    error: str | None = None
    raw: str = ""


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


def parse_extraction(raw: str, candidates: int) -> list[dict]:
    """The facts in the model's JSON, checked against the extraction schema (else ModelError)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"The model's memory extraction is not valid JSON ({exc}).") from None
    items = data.get("memories") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ModelError("The model's memory extraction has no list of memories.")
    facts = []
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
        llm=None,
        profile: str = "default",
        clock: Callable[[], float] = time.time,
        activation: bool = False,
    ):
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

    def _add(self, text: str, kind: str, at: float, source: dict, reason: str, when: str = "") -> MemoryOp:
        valid_from = resolve_time(when or text, at)
        best = self.similar(text, k=1)
        if best and best[0][1] >= DUPLICATE:
            return MemoryOp("NOOP", text, best[0][0].id, best[0][0].id, "already remembered", valid_from)
        tags = [MEMORY_TAG, kind, *re.findall(r"#(\w+)", text)]
        cube = self.vault.add(
            text,
            tags=tags,
            source=source,
            valid_from=valid_from,
            profile=self.profile,
            actor="reader" if "turn_id" in source else "user",
            meta={"said_at": at},
        )
        return MemoryOp("ADD", text, cube.id, reason=reason, valid_from=valid_from)

    # ----- extraction -----------------------------------------------------------------------
    def extraction_messages(self, user: str, answer: str, candidates: list[MemCube]) -> list[dict]:
        existing = "\n".join(f"{i}. {c.content}" for i, c in enumerate(candidates, 1)) or "(none)"
        exchange = f"Existing memories:\n{existing}\n\nExchange:\nUser: {_cut(user)}\nAssistant: {_cut(answer)}"
        return [{"role": "system", "content": EXTRACTION_PROMPT}, {"role": "user", "content": exchange}]

    def read(
        self, user: str, answer: str, at: float, source: dict, cancel: threading.Event | None = None
    ) -> Extraction:
        """Extract and apply memory ops for one exchange (`source` is the user turn's provenance).
        Without a model, when the model's output does not validate, or when `cancel` is set during
        extraction, nothing is written."""
        if self.llm is None:
            return Extraction(error="no model loaded")
        candidates = [c for c, _ in self.similar(user[:SIMILAR_CHARS])]
        messages = self.extraction_messages(user, answer, candidates)
        raw = ""
        try:
            if self.activation:
                self._warm(messages)
            raw = self._generate_json(messages, len(candidates), cancel)
            if cancel is not None and cancel.is_set():
                return Extraction(error="stopped before any memory was written", raw=raw)
            facts = parse_extraction(raw, len(candidates))
        except ModelError as exc:
            return Extraction(error=str(exc), raw=raw)
        except Exception as exc:  # a crashing runtime must not lose the exchange already stored
            return Extraction(error=f"the model failed during extraction: {exc}", raw=raw)
        ops = [self.apply(fact, candidates, at, source) for fact in facts if fact["text"]]
        return Extraction(ops=ops, raw=raw)

    def _generate_json(self, messages: list[dict], candidates: int, cancel: threading.Event | None) -> str:
        """The extraction JSON: from the runtime's own schema-constrained decoding if it has one
        (llama.cpp's grammar, where `ref` may only name a shown memory), else slot by slot."""
        if hasattr(self.llm, "generate_json"):
            schema = copy.deepcopy(EXTRACTION_SCHEMA)
            schema["properties"]["memories"]["items"]["properties"]["ref"] = {"enum": list(range(candidates + 1))}
            prompt = self.llm.tokenize(self.llm.chat_prompt(messages))
            return self.llm.generate_json(prompt, schema, EXTRACT_MAX_TOKENS, cancel)
        from memos_desktop.runtime.guided import GuidedJSON

        return GuidedJSON(self.llm, messages, cancel).generate(EXTRACTION_SCHEMA, EXTRACT_MAX_TOKENS)

    def _warm(self, messages: list[dict]) -> None:
        """Serve the extraction instructions (the same every time) from activation memory."""
        from memos_desktop.runtime.activation import ActivationMemory
        from memos_desktop.runtime.base import common_prefix

        head = self.llm.tokenize(self.llm.chat_prompt(messages[:1], add_generation_prompt=False))
        full = self.llm.tokenize(self.llm.chat_prompt(messages))
        ActivationMemory(self.vault, profile=self.profile).prepare(self.llm, full[: common_prefix(head, full)])

    def apply(self, fact: dict, candidates: list[MemCube], at: float, source: dict) -> MemoryOp:
        """Decide ADD / UPDATE / DELETE / NOOP for one validated fact and carry it out."""
        text, op = fact["text"], fact["op"]
        target = candidates[fact["ref"] - 1] if fact["ref"] else None
        related = target is not None and self.similarity(text, target.content) >= RELATED
        if op == "delete":
            if not related:
                return MemoryOp("NOOP", text, reason="delete of an unrelated or unknown memory ignored")
            self.vault.forget(target.id, profile=self.profile, actor="reader")
            return MemoryOp("DELETE", text, target.id, target.id, "the user said it is no longer true")
        if op == "update" and related:
            valid_from = resolve_time(fact["when"] or text, at)
            cube = self.vault.edit(
                target.id,
                profile=self.profile,
                actor="reader",
                content=text,
                valid_from=valid_from if valid_from is not None else target.valid_from,
            )
            return MemoryOp("UPDATE", text, cube.id, target.id, f"refines version {target.version}", valid_from)
        result = self._add(text, fact["kind"], at, source, "new fact", fact["when"])
        if op == "contradict" and related and result.op == "ADD":
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
