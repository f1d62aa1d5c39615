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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.errors import MemosError

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
EXCLUDED_FROM_OVERALL = ("adversarial",)
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


def bm25_baseline(vault: "Vault", question: str, conv_id: str, k: int) -> list[str]:
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


def run(directory: Path, ks: tuple[int, ...] = (5, 10, 20), embedder=None) -> dict:
    """Measure recall@k of `operator.search` and of the bm25 baseline on every question."""
    from memos_desktop.operation.search import Filters, search
    from memos_desktop.vault import Vault

    started = time.perf_counter()
    conversations = load(directory)
    top = max(ks)
    ours: dict[str, list[dict]] = {}
    base: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="memos-locomo-") as tmp:
        vault = Vault.create(Path(tmp) / "vault", "bench-locomo")
        try:
            if embedder is None:
                from memos_desktop.embed.config import embedder_for

                embedder = embedder_for(vault)
            vault.embedder = embedder
            fill(vault, conversations)
            build_baseline(vault)
            for conv in conversations:
                known = {t.get("dia_id") for _, _, turns in conv["sessions"] for t in turns}
                for qa in conv["qa"]:
                    evidence = evidence_ids(qa.get("evidence"), known)
                    if not evidence or not qa.get("question"):
                        continue
                    category = CATEGORIES.get(qa.get("category"), f"category {qa.get('category')}")
                    hits = search(
                        vault,
                        qa["question"],
                        k=top,
                        filters=Filters(source_path=conv["id"]),
                        record=False,
                    )
                    found = [h.cube.source.get("turn_id") for h in hits]
                    ours.setdefault(category, []).append(_recalls(found, evidence, ks))
                    baseline = bm25_baseline(vault, qa["question"], conv["id"], top)
                    base.setdefault(category, []).append(_recalls(baseline, evidence, ks))
        finally:
            vault.close()
    questions = sum(len(v) for v in ours.values())
    if not questions:
        raise MemosError(f"No question in {directory} has evidence naming a dialog turn.")
    return {
        "overall": _mean(ours, exclude=EXCLUDED_FROM_OVERALL),
        "overall_with_adversarial": _mean(ours),
        "categories": {c: {**_mean({c: v}), "questions": len(v)} for c, v in sorted(ours.items())},
        "baseline_bm25": {
            "overall": _mean(base, exclude=EXCLUDED_FROM_OVERALL),
            "overall_with_adversarial": _mean(base),
            "categories": {c: _mean({c: v}) for c, v in sorted(base.items())},
        },
        "questions": questions,
        "questions_in_overall": sum(len(v) for c, v in ours.items() if c not in EXCLUDED_FROM_OVERALL),
        "conversations": len(conversations),
        "turns": sum(len(t) for c in conversations for _, _, t in c["sessions"]),
        "embedder": getattr(embedder, "model_id", None),
        "definition": DEFINITION,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _recalls(found: list[str], evidence: list[str], ks: tuple[int, ...]) -> dict:
    return {f"recall@{k}": len(set(found[:k]) & set(evidence)) / len(evidence) for k in ks}


def _mean(groups: dict[str, list[dict]], exclude: tuple[str, ...] = ()) -> dict:
    rows = [r for c, rs in groups.items() if c not in exclude for r in rs]
    if not rows:
        return {}
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]}


def rows(result: dict) -> list[dict]:
    """The table for people: one row per category, ours beside the bm25 baseline."""
    keys = list(result["overall"])
    out = []
    named = [(c, result["categories"][c], result["baseline_bm25"]["categories"][c]) for c in result["categories"]]
    named.append(("overall (1-4)", result["overall"], result["baseline_bm25"]["overall"]))
    named.append(
        (
            "overall with adversarial",
            result["overall_with_adversarial"],
            result["baseline_bm25"]["overall_with_adversarial"],
        )
    )
    for name, mine, theirs in named:
        row = {"category": name, "questions": mine.get("questions", "")}
        for key in keys:
            row[key] = mine[key]
            row[f"bm25 {key}"] = theirs[key]
        out.append(row)
    return out
