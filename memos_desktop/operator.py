"""MemOperator: hybrid retrieval over the vault (operation layer).

Owns ranking: query handling (stopwords, question cues, names), FTS5 bm25 and vector KNN
candidates fused by reciprocal rank, then neighbour, temporal, importance and recency
adjustments, filters, de-duplication and neighbouring context. Access rules come from the vault:
every candidate is resolved through `Vault.get_many(..., profile=...)`, which drops other
profiles' private cubes and expired, archived or deleted ones. This module never writes cubes;
it only records accesses (`Vault.touch`) and one audit read entry per search.
"""

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from memos_desktop.vault.cube import MemCube

# Words that say what kind of question it is, not what it is about; bm25 on them is noise.
_STOPWORDS = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me might more most must my myself no nor not now of off on once only or other ought our
    ours ourselves out over own same shall she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom whose why will with would you your yours yourself
    yourselves kind type sort ever also likely s t d ll re ve
"""
STOPWORDS = frozenset(_STOPWORDS.split())
# Questions asking for a time are answered by text carrying a time expression.
TEMPORAL_QUESTION = re.compile(r"^\s*(when|what (year|month|day|date|time))\b|\bhow long\b", re.I)
TIME_EXPRESSION = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|last|next|this (week|month|year|weekend)|"
    r"recently|since|weekend|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"(19|20)\d\d|\d+ (days?|weeks?|months?|years?))\b",
    re.I,
)
RRF_K = 60


@dataclass
class Filters:
    """Hard filters applied after candidate retrieval (all must hold)."""

    kind: str | None = None
    tags: Sequence[str] = ()  # every tag must be on the cube
    source: str | None = None  # source path, or chat conversation id
    since: float | None = None  # the cube's validity [valid_from, valid_to] overlaps [since, until]
    until: float | None = None

    def accepts(self, cube: MemCube) -> bool:
        if self.kind and cube.kind != self.kind:
            return False
        if self.tags and not set(self.tags) <= set(cube.tags):
            return False
        if self.source and source_key(cube) != self.source:
            return False
        start = cube.valid_from if cube.valid_from is not None else cube.created_at
        end = cube.valid_to if cube.valid_to is not None else math.inf
        if self.since is not None and end < self.since:
            return False
        return not (self.until is not None and start > self.until)


@dataclass
class Weights:
    """How much each signal counts. Defaults were tuned on LoCoMo (see `bench locomo`)."""

    bm25: float = 1.0
    vector: float = 1.0
    neighbour: float = 0.3  # share of the adjacent turns'/chunks' fused score added to a hit
    temporal: float = 0.25  # boost for time expressions when the question asks "when"
    speaker: float = 0.1  # boost for chat turns spoken by a person the query names
    importance: float = 0.2  # (importance - 0.5) scaled by this, pinned counts as importance 1
    recency: float = 0.05  # boost for recently valid/updated memories, half-life below
    recency_half_life_days: float = 180.0


@dataclass
class Hit:
    """One search result: the cube, its final score, every signal behind it, optional context."""

    cube: MemCube
    score: float
    signals: dict[str, float]
    context: list[MemCube] = field(default_factory=list)
    rowid: int = field(default=0, repr=False)

    def citation(self) -> str:
        return self.cube.citation()

    def to_dict(self) -> dict:
        return {
            "id": self.cube.id,
            "score": self.score,
            "signals": self.signals,
            "citation": self.citation(),
            "content": self.cube.content,
            "title": self.cube.title,
            "tags": self.cube.tags,
            "context": [
                {"id": c.id, "citation": c.citation(), "content": c.content} for c in self.context
            ],
        }


def source_key(cube: MemCube) -> str | None:
    """What a cube came from as one string: its file path, or its chat conversation id."""
    src = cube.source
    return src.get("path") or src.get("conversation")


def query_terms(query: str) -> list[str]:
    """The words of `query` that carry its topic (stopwords and one-letter words dropped)."""
    words = re.findall(r"\w+", query.lower())
    return [w for w in dict.fromkeys(words) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def search(
    vault,
    query: str,
    k: int = 10,
    profile: str = "default",
    filters: Filters | None = None,
    *,
    weights: Weights | None = None,
    vector=None,
    context: int = 0,
    use_vectors: bool = True,
    record: bool = True,
    actor: str = "user",
) -> list[Hit]:
    """The `k` best cubes visible to `profile` for `query`, best first.

    `vector` is the query embedding (computed with `vault.embedder` when None and one is set;
    without an embedder, or with `use_vectors=False`, search is FTS-only). `context=n` attaches
    the n cubes before and after each hit from the same source. `record=False` skips access
    counting and the audit entry (benchmarks).
    """
    filters = filters or Filters()
    weights = weights or Weights()
    terms = query_terms(query) or re.findall(r"\w+", query.lower())
    if use_vectors and vector is None and vault.embedder is not None and query.strip():
        vector = vault.embedder.embed([query])[0]
    if not use_vectors:
        vector = None
    fetch = max(4 * k, 50)
    while True:
        ranked, exhausted = _rank(vault, query, terms, vector, fetch, profile, filters, weights)
        if len(ranked) >= k or exhausted or fetch >= 4096:
            break
        fetch = min(fetch * 4, 4096)
    hits = _dedupe(ranked, k)
    if context:
        _attach_context(vault, hits, context, profile)
    if record and hits:
        ids = [h.cube.id for h in hits]
        vault.touch(ids)
        vault.audit("search", None, actor, {"profile": profile, "results": ids})
    return hits


def _rank(vault, query, terms, vector, fetch, profile, filters, weights) -> tuple[list[Hit], bool]:
    """Fuse the candidate lists, resolve them through the ACL, filter and adjust the scores."""
    lexical = vault.fts(" ".join(terms), fetch) if terms else []
    dense = vault.knn(vector, fetch) if vector is not None else []
    exhausted = len(lexical) < fetch and len(dense) < fetch
    signals: dict[int, dict[str, float]] = {}
    fused: dict[int, float] = {}
    for rank, (rowid, score) in enumerate(lexical, 1):
        signals.setdefault(rowid, {})["bm25"] = score
        fused[rowid] = fused.get(rowid, 0.0) + weights.bm25 / (RRF_K + rank)
    for rank, (rowid, distance) in enumerate(dense, 1):
        signals.setdefault(rowid, {})["cosine"] = 1.0 - distance
        fused[rowid] = fused.get(rowid, 0.0) + weights.vector / (RRF_K + rank)
    cubes = vault.get_many(list(fused), profile=profile)
    temporal = bool(TEMPORAL_QUESTION.search(query))
    lowered = set(re.findall(r"\w+", query.lower()))
    now = time.time()
    hits = []
    for rowid, cube in cubes.items():
        if not filters.accepts(cube):
            continue
        sig = signals[rowid]
        sig["rrf"] = fused[rowid]
        neighbour = max(_neighbour_scores(rowid, cube, cubes, fused), default=0.0)
        score = fused[rowid] + weights.neighbour * neighbour
        boost = 1.0
        if temporal and TIME_EXPRESSION.search(cube.content):
            boost += weights.temporal
            sig["temporal"] = 1.0
        speaker = str(cube.source.get("speaker", "")).lower()
        if speaker and speaker in lowered:
            boost += weights.speaker
            sig["speaker"] = 1.0
        importance = 1.0 if cube.pinned else cube.importance
        boost += weights.importance * (importance - 0.5)
        when = cube.valid_from or cube.updated_at
        age_days = max(0.0, now - when) / 86400
        boost += weights.recency * 0.5 ** (age_days / weights.recency_half_life_days)
        sig["neighbour"] = neighbour
        score *= boost
        hits.append(Hit(cube=cube, score=score, signals=sig, rowid=rowid))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits, exhausted


def _neighbour_scores(rowid: int, cube: MemCube, cubes: dict[int, MemCube], fused: dict):
    """Fused scores of the candidates right before and after this one in the same source."""
    key = source_key(cube)
    if key is None:
        return
    for other in (rowid - 1, rowid + 1):
        near = cubes.get(other)
        if near is not None and source_key(near) == key:
            yield fused[other]


def _dedupe(hits: list[Hit], k: int) -> list[Hit]:
    """The first `k` hits, skipping any whose text is (nearly) that of a better-ranked hit."""
    kept: list[Hit] = []
    seen: list[frozenset[str]] = []
    hashes: set[str] = set()
    for hit in hits:
        words = frozenset(re.findall(r"\w+", hit.cube.content.lower()))
        if hit.cube.content_hash in hashes or any(_similar(words, s) for s in seen):
            continue
        hashes.add(hit.cube.content_hash)
        seen.append(words)
        kept.append(hit)
        if len(kept) == k:
            break
    return kept


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b or min(len(a), len(b)) < 4:
        return a == b and bool(a)
    return len(a & b) / len(a | b) >= 0.9


def _attach_context(vault, hits: list[Hit], n: int, profile: str) -> None:
    """Attach the `n` cubes before and after each hit that come from the same source."""
    wanted = sorted({h.rowid + d for h in hits for d in range(-n, n + 1) if d})
    near = vault.get_many(wanted, profile=profile)
    for hit in hits:
        rowid, key = hit.rowid, source_key(hit.cube)
        if key is None:
            continue
        hit.context = [
            near[r]
            for r in range(rowid - n, rowid + n + 1)
            if r != rowid and r in near and source_key(near[r]) == key
        ]
