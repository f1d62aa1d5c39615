"""`bench realmem`: RealMemBench conversations converted to the LoCoMo format `bench locomo` reads.

RealMemBench (zhiyuan5986/RealMemBench, `dataset/*_dialogues_256k.json`, MIT) holds one persona
per file: a person talking to an assistant over many sessions, assistant answers often several
paragraphs long. Each session lists its `dialogue_turns` and the memories extracted from it
(`extracted_memory`: content, the session's uuid, and `source_turn`, the 1-based turn it came
from). A query turn (`is_query`) is a user turn that needs earlier memory; the assistant turn
answering it lists the memories it used (`memory_used`: session uuid + content). Converted: one
LoCoMo session per RealMem session (its date as '12:00 am on 19 December, 2025'), turns with ids
`D<session>:<turn>`, and one question per query turn whose evidence is the source turns of the
memories used, asked at that turn (`asked_at`: only earlier turns may answer it). A question's
category is "multi-hop" when its evidence lies in two or more sessions, else RealMem's own
category name. This module reads files and returns dicts; it never writes a vault.
"""

import json
import re
from datetime import datetime
from pathlib import Path

from memos_desktop.errors import MemosError

MULTI_HOP = "multi-hop"


def files(path: Path) -> list[Path]:
    """The RealMem persona files at `path` (a file, or a directory of `*_dialogues_*.json`)."""
    path = Path(path)
    found = sorted(path.glob("*_dialogues_*.json")) if path.is_dir() else [path]
    if not found:
        raise MemosError(f"No RealMemBench persona files (*_dialogues_*.json) in {path}.")
    return found


def load(path: Path) -> list[dict]:
    """Every persona at `path` as a LoCoMo-format sample (sample_id, conversation, qa)."""
    samples = []
    for file in files(path):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MemosError(f"{file} is not a readable RealMemBench JSON file: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("dialogues"), list):
            raise MemosError(f"{file} does not look like a RealMemBench persona (no dialogues).")
        name = str((data.get("_metadata") or {}).get("person_name") or file.stem.split("_dialogues")[0])
        samples.append(convert(name, data["dialogues"]))
    return samples


def convert(name: str, dialogues: list[dict]) -> dict:
    """One persona's sessions as a LoCoMo sample."""
    conversation: dict = {"speaker_a": "User", "speaker_b": "Assistant"}
    memory_turn: dict[tuple[str, str], str] = {}  # (session uuid, memory content) -> turn id
    for n, session in enumerate(dialogues, 1):
        turns = session.get("dialogue_turns") or []
        conversation[f"session_{n}"] = [
            {"speaker": str(t.get("speaker", "")), "dia_id": f"D{n}:{i}", "text": str(t.get("content", ""))}
            for i, t in enumerate(turns, 1)
        ]
        conversation[f"session_{n}_date_time"] = _date(session.get("current_time"))
        for memory in session.get("extracted_memory") or []:
            turn = _source_turn(memory, turns)
            if turn is not None:
                key = (str(memory.get("session_uuid") or session.get("session_uuid")), str(memory.get("content")))
                memory_turn.setdefault(key, f"D{n}:{turn}")
    qa = []
    for n, session in enumerate(dialogues, 1):
        turns = session.get("dialogue_turns") or []
        for i, turn in enumerate(turns):
            if not _is_query(turn):
                continue
            used = turn.get("memory_used") or (turns[i + 1].get("memory_used") if i + 1 < len(turns) else None)
            evidence = []
            for memory in used or []:
                found = memory_turn.get((str(memory.get("session_uuid")), str(memory.get("content"))))
                if found and found not in evidence:
                    evidence.append(found)
            if not evidence:
                continue
            sessions = {e.split(":")[0] for e in evidence}
            category = MULTI_HOP if len(sessions) > 1 else str(turn.get("category_name") or "other").lower()
            qa.append(
                {
                    "question": str(turn.get("content", "")),
                    "evidence": evidence,
                    "category": category,
                    "asked_at": f"D{n}:{i + 1}",
                    "query_id": turn.get("query_id"),
                }
            )
    return {"sample_id": name, "conversation": conversation, "qa": qa}


def _is_query(turn: dict) -> bool:
    return turn.get("is_query") is True or str(turn.get("is_query")).lower() == "true"


def _source_turn(memory: dict, turns: list[dict]) -> int | None:
    """The 1-based turn a memory came from: `source_turn`, checked against the snapshot of its
    text (a few files count from 0, or point one turn off); None when nothing matches."""
    snapshot = str(memory.get("source_content_snapshot") or "")[:80].strip()
    try:
        raw = memory.get("source_turn")
        stated = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        stated = None
    if not snapshot:
        return stated if stated is not None and 1 <= stated <= len(turns) else None
    candidates = [stated, stated + 1] if stated is not None else []
    candidates += list(range(1, len(turns) + 1))
    for number in candidates:
        if 1 <= number <= len(turns) and str(turns[number - 1].get("content", "")).strip().startswith(snapshot):
            return number
    return stated if stated is not None and 1 <= stated <= len(turns) else None


def _date(text) -> str | None:
    """'2025-12-19 (Friday)' as LoCoMo writes dates: '12:00 am on 19 December, 2025'."""
    match = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", str(text or ""))
    if not match:
        return None
    try:
        year, month, day_of_month = map(int, match.groups())
        day = datetime(year, month, day_of_month)
    except ValueError:
        return None
    return f"12:00 am on {day.day} {day:%B}, {day.year}"
