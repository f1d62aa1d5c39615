"""MemOperator: hybrid retrieval over the vault (operation layer).

Owns ranking: query handling (stopwords, question cues, names), FTS5 bm25 and vector KNN
candidates (a long memory scored by its best passages; for a question naming a date, also the
memories valid on it) fused by reciprocal rank, then neighbour, temporal, importance and recency
adjustments; then a second pass for questions whose evidence is spread out: the first hits'
rare terms (entities, topics, tags, dates the vault links memories by) bring in the memories
sharing them, ranked by link strength and their own similarity to the query, as one more fused
list; filters, de-duplication and neighbouring context. Access rules come from the vault: every
candidate is resolved through `Vault.get_many(..., profile=...)`, which drops other profiles' private cubes and expired,
archived or deleted ones. This module never writes cubes; it only records accesses
(`Vault.touch`) and one audit read entry per search.
"""

import heapq
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memos_desktop.vault.cube import MemCube

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from memos_desktop.embed import Embedder
    from memos_desktop.vault import Vault

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
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec"
MONTHS = {m: i for i, m in enumerate(_MONTHS.split(), 1)}
DAY_DATE = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.I)
MONTH_FIRST_DATE = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
MONTH_YEAR = re.compile(rf"\b{_MONTH},?\s+(\d{{4}})\b", re.I)


@dataclass
class Filters:
    """Hard filters applied after candidate retrieval (all must hold)."""

    kind: str | None = None
    tags: Sequence[str] = ()  # every tag must be on the cube
    source_path: str | None = None  # a file, a folder holding files, or a chat conversation id
    since: float | None = None  # the cube's validity [valid_from, valid_to] overlaps [since, until]
    until: float | None = None

    def narrows(self) -> bool:
        """Whether any filter is set."""
        windowed = self.since is not None or self.until is not None
        return bool(self.kind or self.tags or self.source_path or windowed)

    def accepts(self, cube: MemCube) -> bool:
        if self.kind and cube.kind != self.kind:
            return False
        if self.tags and not set(self.tags) <= set(cube.tags):
            return False
        if self.source_path and not _within(source_key(cube), self.source_path):
            return False
        start = cube.valid_from if cube.valid_from is not None else cube.created_at
        end = cube.valid_to if cube.valid_to is not None else math.inf
        if self.since is not None and end < self.since:
            return False
        return not (self.until is not None and start > self.until)


@dataclass(frozen=True)
class Weights:
    """How much each signal counts. Defaults were set on LoCoMo and RealMemBench dev sets together
    (see `bench locomo`, `bench realmem`); frozen, so one instance can serve every search."""

    rrf_k: float = 20.0  # reciprocal rank fusion: a list's item at rank r adds weight / (rrf_k + r)
    bm25: float = 1.0
    script: float = 1.0  # the script index: words inside CJK/Thai text, folded non-ASCII words (bench lang)
    vector: float = 0.8
    follow: float = 0.4  # share of the previous turn's/chunk's fused score added to a hit
    lead: float = 0.35  # share of the next turn's/chunk's fused score added to a hit
    date: float = 1.0  # boost for memories valid (valid_from, else stored) on a date the query names
    dated: float = 0.5  # weight of a third list: memories valid on a date the query names, by cosine
    temporal: float = 0.5  # boost for time expressions when the question asks "when"
    # Boost for chat turns spoken by a person the query names; when set, speakers' names are
    # also left out of the bm25 query (they match every turn of that speaker).
    speaker: float = 0.6
    importance: float = 0.2  # (importance - 0.5) scaled by this, pinned counts as importance 1
    recency: float = 0.05  # boost for recently valid/updated memories, half-life below
    recency_half_life_days: float = 180.0
    # Link expansion: the first `link_seeds` hits' terms shared by at most index.TERM_MAX_SHARED
    # memories bring in the memories sharing them, as a fused list of this weight (0: off).
    link: float = 0.5
    link_seeds: int = 5
    link_terms: int = 24  # the rarest terms of the seeds that are followed


DEFAULT_WEIGHTS = Weights()


class TopicVectors:
    """A bounded cache of query vectors without the speakers' names (see `_blend_without`), by
    (embedder, query, names): a question asked again, or a search that fetches deeper, embeds
    its name-free form once. Least recently used entries go first; safe across threads."""

    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[tuple[str, str, frozenset[str]], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, embedder: "Embedder", query: str, vector: "np.ndarray", names: set[str]) -> "np.ndarray":
        key = (embedder.model_id, query, frozenset(names))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        blended = _blend_without(embedder, query, vector, names)
        with self._lock:
            self._entries[key] = blended
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return blended

    def __len__(self) -> int:
        return len(self._entries)


TOPIC_VECTORS = TopicVectors()


@dataclass
class Hit:
    """One search result: the cube, its final score, every signal behind it, optional context."""

    cube: MemCube
    score: float
    signals: dict[str, float]
    context: list[MemCube] = field(default_factory=list)
    rowid: int = field(default=0, repr=False)
    # For a long memory found by one of its passages: that passage's (first, last) line of the
    # memory's content; the citation points at those lines.
    passage: tuple[int, int] | None = None

    def lines(self) -> tuple[int, int] | None:
        """The lines the hit points at: the passage's, in the file when the memory is a file chunk."""
        if self.passage is None:
            return None
        first, last = self.passage
        span = self.cube.source.get("lines")
        if span:
            return span[0] + first - 1, min(span[0] + last - 1, span[1])
        return first, last

    def citation(self) -> str:
        lines = self.lines()
        if lines is None:
            return self.cube.citation()
        first, last = lines
        where = f"line {first}" if first == last else f"lines {first}–{last}"
        src = self.cube.source
        if src.get("path") and src.get("lines"):
            text = str(src["path"]) + (f" §{src['heading']}" if src.get("heading") else "")
            return f"{text}, {where}"
        return f"{self.cube.citation()}, {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.cube.id,
            "score": self.score,
            "signals": self.signals,
            "citation": self.citation(),
            "lines": list(lines) if (lines := self.lines()) else None,
            "content": self.cube.content,
            "title": self.cube.title,
            "tags": self.cube.tags,
            "context": [{"id": c.id, "citation": c.citation(), "content": c.content} for c in self.context],
        }


def source_key(cube: MemCube) -> str | None:
    """What a cube came from as one string: its file path, or its chat conversation id."""
    src = cube.source
    return src.get("path") or src.get("conversation")


def _within(key: str | None, wanted: str) -> bool:
    """Whether a source is `wanted` itself or lies in the folder `wanted`."""
    if key is None:
        return False
    return key == wanted or key.startswith(wanted.rstrip("/") + "/")


def query_terms(query: str) -> list[str]:
    """The words of `query` that carry its topic (stopwords and one-letter words dropped)."""
    words = re.findall(r"\w+", query.lower())
    return [w for w in dict.fromkeys(words) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


# Query vectors by (model id, query), most recent last: a query asked again (the TUI's live
# search re-runs it, an agent repeats itself) skips the embedder, which costs more than the search.
QUERY_CACHE_SIZE = 256
_query_vectors: "OrderedDict[tuple[str, str], np.ndarray]" = OrderedDict()
_query_lock = threading.Lock()
# One thread embeds the query while the caller reads the keyword lists: llama.cpp releases the
# GIL, so the two overlap on two cores (`bench search`, columns embed_ms and p95_ms).
_embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memos-query-embed")


def query_vector(embedder: "Embedder", query: str) -> "Future[np.ndarray]":
    """The embedding of `query` by `embedder`, from the cache or computed in the background."""
    key = (str(embedder.model_id), query)
    with _query_lock:
        if key in _query_vectors:
            _query_vectors.move_to_end(key)
            done: Future[np.ndarray] = Future()
            done.set_result(_query_vectors[key])
            return done
    return _embedding.submit(_embed_and_keep, embedder, key)


def _embed_and_keep(embedder: "Embedder", key: tuple[str, str]) -> "np.ndarray":
    embed = getattr(embedder, "embed_query", embedder.embed)  # a model may run queries faster (minilm.py)
    vector = embed([key[1]])[0]
    with _query_lock:
        _query_vectors[key] = vector
        while len(_query_vectors) > QUERY_CACHE_SIZE:
            _query_vectors.popitem(last=False)
    return vector


def search(
    vault: "Vault",
    query: str,
    k: int = 10,
    profile: str = "default",
    filters: Filters | None = None,
    *,
    weights: Weights | None = None,
    vector: "npt.ArrayLike | None" = None,
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
    weights = weights or DEFAULT_WEIGHTS
    terms = query_terms(query) or re.findall(r"\w+", query.lower())
    embedder = None
    wanted: np.ndarray | Future[np.ndarray] | None = None if vector is None else _as_vector(vector)
    if use_vectors and vector is None and vault.embedder is not None and query.strip():
        embedder = vault.embedder
        wanted = query_vector(embedder, query)  # being computed while the keyword lists are read
    if not use_vectors:
        wanted = None
    # Filters and access rules apply after each list's top-k: fetch deeper when filtering.
    fetch = max(4 * k, 50) * (4 if filters.narrows() else 1)
    while True:
        ranked, exhausted = _rank(vault, query, terms, wanted, fetch, profile, filters, weights, embedder)
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


def _rank(
    vault: "Vault",
    query: str,
    terms: list[str],
    wanted: "np.ndarray | Future[np.ndarray] | None",
    fetch: int,
    profile: str,
    filters: Filters,
    weights: Weights,
    embedder: "Embedder | None",
) -> tuple[list[Hit], bool]:
    """Fuse the candidate lists, add their neighbours, resolve them through the ACL, filter and
    adjust the scores; then fuse one more list, the memories linked to the first hits, and rank
    again. `embedder` is set when `vector` was made here (the name-free vector can be too)."""
    passages: dict[int, tuple[int, int]] = {}
    lexical = vault.fts(" ".join(terms), fetch, passages=passages) if terms else []
    scripted = vault.fts_script(query, fetch) if weights.script else []
    # Read while the query is being embedded: the keyword lists' cubes.
    cubes = vault.get_many([r for r, _ in lexical + scripted], profile=profile)
    vector = wanted.result() if isinstance(wanted, Future) else wanted
    dense = vault.knn(vector, fetch, passages=passages) if vector is not None else []
    cubes.update(vault.get_many([r for r, _ in dense if r not in cubes], profile=profile))
    cubes = dict(sorted(cubes.items()))  # in rowid order, as one read of all three lists gives them (ties)
    # A speaker's name matches all their turns; it picks the speaker, not the topic.
    speakers = {str(c.source.get("speaker", "")).lower() for c in cubes.values()}
    topic = [t for t in terms if t not in speakers]
    topic_vector = vector
    if weights.speaker and topic and len(topic) < len(terms):
        lexical = vault.fts(" ".join(topic), fetch, passages=passages)
        # Names dominate a short query's embedding too: every turn of that speaker looks alike.
        # The vector searched is the mean of the query's and the query's without the names.
        if embedder is not None and vector is not None:
            topic_vector = TOPIC_VECTORS.get(embedder, query, vector, speakers)
            if topic_vector is not vector:
                dense = vault.knn(topic_vector, fetch, passages=passages)
    windows = date_windows(query)
    # A question naming a date is also asked of what was said that day, even in other words.
    dated = []
    if windows and topic_vector is not None:
        dated = vault.valid_between(windows, topic_vector, fetch)
    exhausted = len(lexical) < fetch and len(dense) < fetch and len(scripted) < fetch
    signals: dict[int, dict[str, float]] = {}
    fused: dict[int, float] = {}
    for rank, (rowid, score) in enumerate(lexical, 1):
        signals.setdefault(rowid, {})["bm25"] = score
        fused[rowid] = fused.get(rowid, 0.0) + weights.bm25 / (weights.rrf_k + rank)
    for rank, (rowid, score) in enumerate(scripted, 1):
        signals.setdefault(rowid, {})["script"] = score
        fused[rowid] = fused.get(rowid, 0.0) + weights.script / (weights.rrf_k + rank)
    for rank, (rowid, distance) in enumerate(dense, 1):
        signals.setdefault(rowid, {})["cosine"] = 1.0 - distance
        fused[rowid] = fused.get(rowid, 0.0) + weights.vector / (weights.rrf_k + rank)
    for rank, (rowid, distance) in enumerate(dated, 1):
        signals.setdefault(rowid, {}).setdefault("cosine", 1.0 - distance)
        fused[rowid] = fused.get(rowid, 0.0) + weights.dated / (weights.rrf_k + rank)
    cubes.update(vault.get_many([r for r in fused if r not in cubes], profile=profile))
    _add_adjacent(vault, cubes, fused, fetch, profile)
    hits = _score(query, cubes, fused, signals, filters, weights, windows, passages)
    if weights.link and weights.link_seeds and hits:
        linked = _linked(vault, hits[: weights.link_seeds], topic_vector, weights, fetch)
        if linked:
            cubes.update(vault.get_many([r for r, _ in linked if r not in cubes], profile=profile))
            for rank, (rowid, strength) in enumerate(linked, 1):
                signals.setdefault(rowid, {})["link"] = strength
                fused[rowid] = fused.get(rowid, 0.0) + weights.link / (weights.rrf_k + rank)
            _add_adjacent(vault, cubes, fused, fetch, profile)
            hits = _score(query, cubes, fused, signals, filters, weights, windows, passages)
    return hits, exhausted


def _add_adjacent(vault: "Vault", cubes: dict[int, MemCube], fused: dict[int, float], fetch: int, profile: str) -> None:
    """The turn after a relevant one often holds the answer (and the one before, the question):
    fetch the neighbours of the best fused candidates that come from a source."""
    best = sorted(fused, key=fused.__getitem__, reverse=True)[: fetch // 2]
    sourced = [r for r in best if r in cubes and source_key(cubes[r]) is not None]
    adjacent = {r + d for r in sourced for d in (-1, 1)} - cubes.keys()
    cubes.update(vault.get_many(sorted(adjacent), profile=profile))


def _score(
    query: str,
    cubes: dict[int, MemCube],
    fused: dict[int, float],
    signals: dict[int, dict[str, float]],
    filters: Filters,
    weights: Weights,
    windows: list[tuple[float, float]],
    passages: dict[int, tuple[int, int]],
) -> list[Hit]:
    """Every accepted candidate as a Hit: its fused score plus its neighbours' shares, times
    the temporal, date, speaker, importance and recency boosts; best first."""
    visible = {r: fused[r] for r in fused if r in cubes}
    temporal = bool(TEMPORAL_QUESTION.search(query))
    lowered = set(re.findall(r"\w+", query.lower()))
    now = time.time()
    hits = []
    for rowid, cube in cubes.items():
        if not filters.accepts(cube):
            continue
        key = source_key(cube)
        before = _same_source(cubes, rowid - 1, key, visible)
        after = _same_source(cubes, rowid + 1, key, visible)
        sig = dict(signals.get(rowid, {}))
        sig["rrf"] = visible.get(rowid, 0.0)
        sig["neighbour"] = weights.follow * before + weights.lead * after
        score = sig["rrf"] + sig["neighbour"]
        if score <= 0:
            continue
        boost = 1.0
        if temporal and TIME_EXPRESSION.search(cube.content):
            boost += weights.temporal
            sig["temporal"] = 1.0
        when = cube.valid_from if cube.valid_from is not None else cube.created_at
        if windows and any(lo <= when < hi for lo, hi in windows):
            boost += weights.date
            sig["date"] = 1.0
        speaker = str(cube.source.get("speaker", "")).lower()
        if speaker and speaker in lowered:
            boost += weights.speaker
            sig["speaker"] = 1.0
        importance = 1.0 if cube.pinned else cube.importance
        boost += weights.importance * (importance - 0.5)
        when = cube.valid_from or cube.updated_at
        age_days = max(0.0, now - when) / 86400
        boost += weights.recency * 0.5 ** (age_days / weights.recency_half_life_days)
        score *= boost
        hits.append(Hit(cube=cube, score=score, signals=sig, rowid=rowid, passage=passages.get(rowid)))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits


def _linked(
    vault: "Vault", seeds: list[Hit], vector: "np.ndarray | None", weights: Weights, fetch: int
) -> list[tuple[int, float]]:
    """Memories sharing the seeds' rare terms, strongest link first. Seeds are the first hits
    scoring at least half the best; a term counts when 2 to index.TERM_MAX_SHARED memories (and
    at most TERM_MAX_SHARE of them) carry it, weighted by its rarity (log of memories over
    carriers) times the score share of the seeds carrying it. A memory's link strength is the
    sum over its shared terms, times (1 + its own cosine with the query) / 2 with a vector."""
    from memos_desktop.vault.index import TERM_MAX_SHARE, TERM_MAX_SHARED

    top = seeds[0].score or 1.0
    share = {h.rowid: h.score / top for h in seeds if h.score >= top / 2}
    extent = max(vault.linked_extent(), 1)
    limit = min(TERM_MAX_SHARED, max(2, int(extent * TERM_MAX_SHARE)))
    weight: dict[int, float] = {}
    for rowid, found in vault.terms_of(list(share)).items():
        for tid, _kind, _name, shared in found:
            if 2 <= shared <= limit:
                weight[tid] = weight.get(tid, 0.0) + share[rowid] * math.log(extent / shared + 1.0)
    chosen = sorted(weight, key=weight.__getitem__, reverse=True)[: weights.link_terms]
    if not chosen:
        return []
    strength = {
        rowid: sum(weight[t] for t in tids)
        for rowid, tids in vault.sharing(chosen, limit).items()
        if rowid not in share
    }
    if vector is not None and strength:
        strength = _times_cosine(vault, strength, vector, fetch // 2)
    ranked = sorted(strength.items(), key=lambda item: item[1], reverse=True)
    return [(r, s) for r, s in ranked[: fetch // 2] if s > 0]


def _times_cosine(vault: "Vault", strength: dict[int, float], vector: "np.ndarray", n: int) -> dict[int, float]:
    """The `n` (or more) strongest of `strength` once each is multiplied by (1 + its cosine with
    `vector`) / 2, in `strength`'s order. That factor is at most 1, so memories are scored
    strongest link first, in growing chunks, and the rest is skipped once the n-th best score
    beats the strongest link left: the same top `n` as scoring all (thousands at 100k memories)
    for a few vector reads."""
    order = sorted(strength, key=strength.__getitem__, reverse=True)
    scored: dict[int, float] = {}
    at, chunk = 0, max(2 * n, 1)
    while at < len(order):
        batch = order[at : at + chunk]
        cosine = vault.similarity(batch, vector)
        scored.update((r, strength[r] * (1.0 + cosine.get(r, 0.0)) / 2) for r in batch)
        at, chunk = at + len(batch), 2 * chunk
        if at < len(order) and len(scored) >= n and heapq.nlargest(n, scored.values())[-1] > strength[order[at]]:
            break
    return {r: scored[r] for r in strength if r in scored}


def without_names(query: str, names: set[str]) -> str:
    """`query` without the words that are one of `names` (lower case), possessive or not."""
    kept = [w for w in query.split() if re.sub(r"('s)?\W*$", "", w.lower()).strip("\"'(") not in names]
    return " ".join(kept)


def _blend_without(embedder: "Embedder", query: str, vector: "np.ndarray", names: set[str]) -> "np.ndarray":
    """The normalised mean of `vector` (the query's) and the embedding of `query` without `names`."""
    import numpy as np

    stripped = without_names(query, names)
    if not stripped.strip() or stripped == query:
        return vector
    both = np.asarray(vector, dtype=np.float32) + embedder.embed([stripped])[0]
    norm = float(np.linalg.norm(both))
    return both / norm if norm else vector


def _same_source(cubes: dict[int, MemCube], rowid: int, key: str | None, fused: dict[int, float]) -> float:
    """The fused score of cube `rowid` when it is a visible candidate from source `key`."""
    near = cubes.get(rowid)
    if key is None or near is None or source_key(near) != key:
        return 0.0
    return fused.get(rowid, 0.0)


def date_windows(query: str) -> list[tuple[float, float]]:
    """Time spans named in `query` ('9 November, 2022', 'October 13 2023', 'May 2023'), as
    local-time [start, end) timestamps, a day either side for days."""
    from datetime import datetime, timedelta

    spans = []
    for day, month, year in DAY_DATE.findall(query) + [(d, m, y) for m, d, y in MONTH_FIRST_DATE.findall(query)]:
        try:
            start = datetime(int(year), MONTHS[month.lower()[:3]], int(day))
        except ValueError:
            continue
        spans.append((start - timedelta(days=1), start + timedelta(days=2)))
    if not spans:
        for month, year in MONTH_YEAR.findall(query):
            start = datetime(int(year), MONTHS[month.lower()[:3]], 1)
            spans.append((start, (start + timedelta(days=32)).replace(day=1)))
    return [(a.timestamp(), b.timestamp()) for a, b in spans]


def _as_vector(vector: "npt.ArrayLike") -> "np.ndarray":
    import numpy as np

    return np.asarray(vector, dtype=np.float32)


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


def _attach_context(vault: "Vault", hits: list[Hit], n: int, profile: str) -> None:
    """Attach the `n` cubes before and after each hit that come from the same source."""
    wanted = sorted({h.rowid + d for h in hits for d in range(-n, n + 1) if d})
    near = vault.get_many(wanted, profile=profile)
    for hit in hits:
        rowid, key = hit.rowid, source_key(hit.cube)
        if key is None:
            continue
        hit.context = [
            near[r] for r in range(rowid - n, rowid + n + 1) if r != rowid and r in near and source_key(near[r]) == key
        ]
