"""Benchmark `reader`: MemReader on scripted user conversations with known stated facts.

`data/reader.json` holds ~30 short conversations: what the user states (each expected fact as the
words a correct memory must contain), questions and chatter that state nothing, and assistant
replies full of things the user never said (lists such as "A-1, A-2", suggestions, guesses).
Every exchange is read into one fresh encrypted vault with the configured embedder, once with the
model and once with the deterministic path alone (no model). Reports, for each: precision (stored
memories that are a stated fact), recall (stated facts stored), how many memories came from the
assistant's words, how often the deterministic path took over, and the CPU time per read.
"""

import json
import tempfile
import time
from importlib import resources
from pathlib import Path


def load() -> list[dict]:
    return json.loads(resources.files("memos_desktop.bench").joinpath("data/reader.json").read_text())["conversations"]


def _matches(text: str, words: list[str]) -> bool:
    low = text.lower()
    return all(w.lower() in low for w in words)


def _read_all(conversations: list[dict], llm) -> dict:
    import secrets

    from memos_desktop.embed.config import embedder_status
    from memos_desktop.operation.reader import MemReader
    from memos_desktop.vault import Vault

    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.create(Path(tmp), secrets.token_hex(16))
        try:
            vault.embedder, _ = embedder_status(vault)
            reader = MemReader(vault, llm, activation=llm is not None)
            stored, found, from_assistant, fallbacks, errors, reads = [], 0, [], 0, 0, 0
            rejected: dict[str, int] = {}
            cpu0 = time.process_time()
            for i, conv in enumerate(conversations):
                texts = []
                for j, turn in enumerate(conv["turns"]):
                    source = {"conversation": f"bench-{i}", "turn_id": j + 1, "role": "user"}
                    result = reader.read(turn["user"], turn["assistant"], time.time(), source)
                    reads += 1
                    fallbacks += result.fallback
                    errors += result.error is not None and llm is not None
                    for _text, why in result.rejected:
                        rejected[why] = rejected.get(why, 0) + 1
                    texts += [op.text for op in result.ops if op.op in ("ADD", "UPDATE")]
                for text in texts:
                    correct = any(_matches(text, fact) for fact in conv["facts"])
                    stored.append({"conversation": i, "text": text, "correct": correct})
                    if any(w.lower() in text.lower() for w in conv["assistant_only"]):
                        from_assistant.append(text)
                found += sum(any(_matches(t, fact) for t in texts) for fact in conv["facts"])
            cpu = time.process_time() - cpu0
        finally:
            vault.close()
    facts = sum(len(c["facts"]) for c in conversations)
    n_correct = sum(bool(s["correct"]) for s in stored)
    return {
        "stored": len(stored),
        "correct": n_correct,
        "precision": n_correct / len(stored) if stored else 1.0,
        "recall": found / facts if facts else 1.0,
        "from_assistant": len(from_assistant),
        "from_assistant_texts": from_assistant,
        "wrong": [s["text"] for s in stored if not s["correct"]],
        "fallback_reads": fallbacks,
        "model_errors": errors,
        "rejected": rejected,
        "reads": reads,
        "cpu_s_per_read": cpu / reads if reads else 0.0,
    }


def run(model: Path, threads: int = 2) -> dict:
    """Read every scripted conversation with the model at `model`, then with no model."""
    from memos_desktop.runtime import LoadSettings, load_backend

    conversations = load()
    backend = load_backend(Path(model), LoadSettings(n_ctx=4096, threads=threads))
    try:
        with_model = _read_all(conversations, backend)
    finally:
        backend.close()
    rules = _read_all(conversations, None)
    return {
        "model": Path(model).name,
        "conversations": len(conversations),
        "facts": sum(len(c["facts"]) for c in conversations),
        "threads": threads,
        "with_model": with_model,
        "deterministic_only": rules,
    }


def rows(result: dict) -> list[dict]:
    out = []
    for name, key in (("model + grounding", "with_model"), ("deterministic path only", "deterministic_only")):
        r = result[key]
        out.append(
            {
                "reader": name,
                "stored": r["stored"],
                "precision": r["precision"],
                "recall": r["recall"],
                "from assistant": r["from_assistant"],
                "fallback reads": r["fallback_reads"],
                "CPU s/read": r["cpu_s_per_read"],
            }
        )
    return out
