"""`bench locomo`: evidence recall@k of the product's search on LoCoMo-format conversations.

Loads every conversation of a LoCoMo-format directory (one JSON file per conversation, or files
holding a list of samples with a nested "conversation") into a fresh encrypted vault: one cube per
dialog turn, `"Speaker: text"` plus the shared photo's caption, with the turn id, conversation,
session and speaker as provenance, the session date as `valid_from`, and the turn before it in
the session as `meta["context"]` (embedded with the turn and indexed for words at a lower weight,
as the assistant stores chat turns). Each QA question is asked through `operator.search`
restricted to its conversation (a source filter), and, in the same run, through a plain FTS5 bm25
baseline: its own index of each turn's words, as the vault's word index was before it had a context
column (the question's words OR'ed, no query handling, no vectors).

The same run measures two baselines on the same vault and questions: bm25 alone (above) and
dense alone (the question's embedding against each turn's own text, plain cosine over the whole
conversation, same embedder); every category where ours falls below either is marked. A question
carrying `asked_at` (a turn id, as converted sets do) is answered only from the turns before that
turn, by every system alike. Vectors come through an embedding cache kept across runs.

Recall@k of a question = the fraction of its evidence turns found among the top k results; the
reported figure is the mean over questions. Evidence ids are split on `;`, `,` and whitespace;
ids naming no turn are skipped, and questions left with no evidence are not counted.
"overall" covers categories 1-4; category 5 (adversarial: questions built on a false premise)
is reported on its own and in "overall_with_adversarial". This module never changes the search.
"""

import json
import re
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from memos_desktop.errors import MemosError

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
EXCLUDED_FROM_OVERALL = ("adversarial",)
SYSTEMS = ("ours", "bm25", "dense")
BASELINES = ("bm25", "dense")
DEFINITION = (
    "recall@k = |evidence turns in top k| / |evidence turns|, averaged over questions; "
    "overall = categories 1-4 (adversarial reported separately)"
)


def load(directory: Path) -> list[dict]:
    """Every conversation in `directory` as {id, speakers, sessions: [(n, date, turns)], qa}."""
    directory = Path(directory)
    files = sorted(directory.glob("*.json")) if directory.is_dir() else [directory]
    if not files:
        raise MemosError(f"No LoCoMo conversation files (*.json) in {directory}.")
    conversations = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MemosError(f"{file} is not a readable LoCoMo JSON file: {exc}") from None
        samples = data if isinstance(data, list) else [data]
        for i, sample in enumerate(samples):
            conv_id = str(sample.get("sample_id") or (file.stem if len(samples) == 1 else f"{file.stem}-{i}"))
            conversations.append(_conversation(conv_id, sample, file))
    return conversations


def from_samples(samples: list[dict], origin: Path) -> list[dict]:
    """LoCoMo-format samples already in memory (e.g. converted from another set) as conversations."""
    return [_conversation(str(s.get("sample_id") or f"{origin.stem}-{i}"), s, origin) for i, s in enumerate(samples)]


def _conversation(conv_id: str, sample: dict, file: Path) -> dict:
    body = sample.get("conversation", sample)
    if not isinstance(body, dict) or "qa" not in sample:
        raise MemosError(f"{file} does not look like a LoCoMo conversation (no sessions or qa).")
    sessions = []
    for key, turns in body.items():
        match = re.fullmatch(r"session_(\d+)", key)
        if match and isinstance(turns, list):
            n = int(match.group(1))
            sessions.append((n, _session_date(body.get(f"session_{n}_date_time")), turns))
    sessions.sort(key=lambda s: s[0])
    return {"id": conv_id, "sessions": sessions, "qa": sample["qa"]}


def _session_date(text: str | None) -> float | None:
    """LoCoMo dates look like '1:56 pm on 8 May, 2023'."""
    if not text:
        return None
    for fmt in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):
        try:
            return datetime.strptime(text.strip(), fmt).timestamp()
        except ValueError:
            continue
    import dateparser

    parsed = dateparser.parse(text.replace(" on ", " "))
    return parsed.timestamp() if parsed else None


def turn_text(turn: dict) -> str:
    text = f"{turn.get('speaker', '')}: {turn.get('text', '')}"
    if turn.get("blip_caption"):
        text += f" [shares {turn['blip_caption']}]"
    return text


def evidence_ids(raw: list, known: set[str]) -> list[str]:
    """Split malformed evidence strings ('D8:6; D9:17') and keep only ids of real turns."""
    ids = []
    for item in raw or []:
        for part in re.split(r"[;,\s]+", str(item)):
            if part in known and part not in ids:
                ids.append(part)
    return ids


def fill(vault: "Vault", conversations: list[dict]) -> None:
    """Store every dialog turn as one cube, in conversation order, with its previous turn as context."""
    for conv in conversations:
        items = []
        for n, date, turns in conv["sessions"]:
            previous = ""
            for turn in turns:
                text = turn_text(turn)
                items.append(
                    dict(
                        content=text,
                        meta={"context": previous},
                        tags=["chat"],
                        source={
                            "conversation": conv["id"],
                            "session": n,
                            "turn_id": turn.get("dia_id"),
                            "speaker": turn.get("speaker", ""),
                        },
                        valid_from=date,
                    )
                )
                previous = text
        for start in range(0, len(items), 256):
            vault.add_many(items[start : start + 256], actor="bench")


def build_baseline(vault: "Vault") -> None:
    """A plain FTS5 index of every turn's own words (title, content, tags), kept in memory."""
    from memos_desktop.vault import baseline

    baseline.build(vault)


def bm25_baseline(vault: "Vault", question: str, conv_id: str, k: int) -> list[str | None]:
    """Turn ids of the top k plain bm25 matches of the raw question in one conversation
    (`build_baseline` first)."""
    from memos_desktop.vault import baseline
    from memos_desktop.vault.index import fts_query

    words = fts_query(question)
    if not words:
        return []
    fetch = 256
    while True:
        ranked = baseline.search(vault, words, fetch)
        cubes = vault.get_many([r for r, _ in ranked])
        ids = [
            cubes[r].source.get("turn_id")
            for r, _ in ranked
            if r in cubes and cubes[r].source.get("conversation") == conv_id
        ]
        if len(ids) >= k or len(ranked) < fetch or fetch >= 4096:
            return ids[:k]
        fetch *= 4


def run(
    directory: Path,
    ks: tuple[int, ...] = (5, 10, 20),
    embedder=None,
    *,
    conversations: list[dict] | None = None,
    cache: Path | Literal[False] | None = None,
    limit: int | None = None,
) -> dict:
    """Measure recall@k of `operator.search` and, in the same run on the same vault, of the bm25
    and dense baselines on every question. `conversations` (already loaded, e.g. converted from
    another format) replaces reading `directory`; `cache` is the embedding cache file (None: the
    default one, False: none); `limit` keeps the first questions of each conversation."""
    from memos_desktop.operation.search import Filters, search
    from memos_desktop.vault import Vault

    started = time.perf_counter()
    conversations = load(directory) if conversations is None else conversations
    top = max(ks)
    scores: dict[str, dict[str, list[dict]]] = {name: {} for name in SYSTEMS}
    with tempfile.TemporaryDirectory(prefix="memos-locomo-") as tmp:
        vault = Vault.create(Path(tmp) / "vault", "bench-locomo")
        try:
            if embedder is None:
                from memos_desktop.embed.config import embedder_for

                embedder = embedder_for(vault)
            if embedder is not None and cache is not False:
                from memos_desktop.bench.embedcache import CachedEmbedder

                embedder = CachedEmbedder(embedder, cache or None)
            vault.embedder = embedder
            fill(vault, conversations)
            build_baseline(vault)
            for conv in conversations:
                order = {t.get("dia_id"): i for i, t in enumerate(t for _, _, ts in conv["sessions"] for t in ts)}
                said = {t.get("dia_id"): date for _, date, ts in conv["sessions"] for t in ts}
                dense = DenseBaseline(embedder, conv) if embedder is not None else None
                asked = 0
                for qa in conv["qa"]:
                    evidence = evidence_ids(qa.get("evidence"), set(order))
                    if not evidence or not qa.get("question"):
                        continue
                    if limit is not None and asked >= limit:
                        break
                    asked += 1
                    category = category_name(qa.get("category"))
                    # A question asked partway through a conversation is answered from what came before.
                    cutoff = order.get(qa.get("asked_at"), len(order))
                    asked_on = said.get(qa.get("asked_at"))
                    filters = Filters(source_path=conv["id"], until=None if asked_on is None else asked_on + 86400)
                    depth = top if cutoff == len(order) else 3 * top
                    hits = search(vault, qa["question"], k=depth, filters=filters, record=False)
                    found: dict[str, Sequence[str | None]] = {
                        "ours": [h.cube.source.get("turn_id") for h in hits],
                        "bm25": bm25_baseline(vault, qa["question"], conv["id"], depth),
                    }
                    if dense is not None:
                        found["dense"] = dense.ranked(qa["question"])
                    for name, ids in found.items():
                        earlier = [i for i in ids if order.get(i, len(order)) < cutoff][:top]
                        scores[name].setdefault(category, []).append(_recalls(earlier, evidence, ks))
        finally:
            vault.close()
            if hasattr(embedder, "close"):
                embedder.close()
    ours = scores["ours"]
    questions = sum(len(v) for v in ours.values())
    if not questions:
        raise MemosError(f"No question in {directory} has evidence naming a dialog turn.")
    result: dict[str, Any] = {
        "overall": _mean(ours, exclude=EXCLUDED_FROM_OVERALL),
        "overall_with_adversarial": _mean(ours),
        "categories": {c: {**_mean({c: v}), "questions": len(v)} for c, v in sorted(ours.items())},
    }
    for name in BASELINES:
        if scores[name]:
            result[f"baseline_{name}"] = {
                "overall": _mean(scores[name], exclude=EXCLUDED_FROM_OVERALL),
                "overall_with_adversarial": _mean(scores[name]),
                "categories": {c: _mean({c: v}) for c, v in sorted(scores[name].items())},
            }
    result["below_baseline"] = below_baselines(result)
    result.update(
        {
            "questions": questions,
            "questions_in_overall": sum(len(v) for c, v in ours.items() if c not in EXCLUDED_FROM_OVERALL),
            "conversations": len(conversations),
            "turns": sum(len(t) for c in conversations for _, _, t in c["sessions"]),
            "embedder": getattr(embedder, "model_id", None),
            "definition": DEFINITION,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return result


def category_name(raw) -> str:
    """LoCoMo's numbered categories by name; a converted set's named categories as they are."""
    if isinstance(raw, str) and not raw.isdigit():
        return raw
    try:
        return CATEGORIES.get(int(raw), f"category {raw}")
    except (TypeError, ValueError):
        return f"category {raw}"


class DenseBaseline:
    """Plain dense retrieval over one conversation: the cosine of the question's embedding with
    each turn's own text (no context, no passages, no fusion), same embedder as the vault."""

    def __init__(self, embedder, conv: dict):
        import numpy as np

        turns = [t for _, _, ts in conv["sessions"] for t in ts]
        self.ids = [t.get("dia_id") for t in turns]
        self.embedder = embedder
        self.matrix = np.asarray(embedder.embed([turn_text(t) for t in turns]), dtype=np.float32)

    def ranked(self, question: str) -> list[str]:
        import numpy as np

        query = np.asarray(self.embedder.embed([question])[0], dtype=np.float32)
        norms = np.linalg.norm(self.matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        cosine = self.matrix @ query / np.where(norms == 0, 1.0, norms)
        return [self.ids[i] for i in np.argsort(-cosine, kind="stable")]


def below_baselines(result: dict) -> list[str]:
    """Every 'category: recall@k below <baseline>' where ours falls below a baseline."""
    out = []
    groups = [(c, result["categories"][c]) for c in result["categories"]] + [("overall", result["overall"])]
    for name in BASELINES:
        theirs = result.get(f"baseline_{name}")
        if not theirs:
            continue
        for category, mine in groups:
            other = theirs["overall"] if category == "overall" else theirs["categories"].get(category, {})
            for key, value in mine.items():
                if key.startswith("recall@") and key in other and value < other[key]:
                    out.append(f"{category}: {key} below {name}")
    return out


def _recalls(found: Sequence[str | None], evidence: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    return {f"recall@{k}": len(set(found[:k]) & set(evidence)) / len(evidence) for k in ks}


def _mean(groups: dict[str, list[dict]], exclude: tuple[str, ...] = ()) -> dict:
    rows = [r for c, rs in groups.items() if c not in exclude for r in rs]
    if not rows:
        return {}
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]}


def rows(result: dict) -> list[dict]:
    """The table for people: one row per category, ours beside each baseline, and a mark where
    ours falls below one of them (at any cut-off)."""
    keys = list(result["overall"])
    named = [(c, result["categories"][c]) for c in result["categories"]]
    named += [("overall", result["overall"]), ("overall with adversarial", result["overall_with_adversarial"])]
    baselines = [name for name in BASELINES if result.get(f"baseline_{name}")]
    out = []
    for name, mine in named:
        row = {"category": name, "questions": mine.get("questions", "")}
        marks = []
        for base in baselines:
            block = result[f"baseline_{base}"]
            if name == "overall":
                theirs = block["overall"]
            elif name == "overall with adversarial":
                theirs = block["overall_with_adversarial"]
            else:
                theirs = block["categories"].get(name, {})
            for key in keys:
                row[f"{base} {key}"] = theirs.get(key)
                if theirs.get(key) is not None and mine[key] < theirs[key]:
                    marks.append(f"<{base}@{key.split('@')[1]}")
        for key in keys:
            row[key] = mine[key]
        row["below"] = " ".join(dict.fromkeys(marks)) or "ok"
        out.append(row)
    order = ["category", "questions", *keys, *(f"{b} {k}" for b in baselines for k in keys), "below"]
    return [{key: row[key] for key in order} for row in out]
