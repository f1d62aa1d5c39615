"""`bench embed`: embedding throughput (texts/s) by batch size, on LoCoMo dialog turns.

The same texts are embedded in calls of 1, 16, 64... texts each, with the same loaded model, so
the ratio against one text per call shows what packing several texts into one llama.cpp batch
buys. Model loading (and, the first time, converting MiniLM) is timed on its own. The default
model is the packaged all-MiniLM-L6-v2; `model` is the path of any GGUF embedding model.
"""

import json
import time
from collections.abc import Sequence
from pathlib import Path

from memos_desktop.bench import median
from memos_desktop.errors import MemosError


def turn_texts(directory: Path) -> list[str]:
    """The text of every dialog turn of every LoCoMo conversation file in `directory`, in order."""
    directory = Path(directory)
    files = sorted(directory.glob("*.json")) if directory.is_dir() else [directory]
    texts: list[str] = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MemosError(f"{file} is not a readable LoCoMo JSON file: {exc}") from None
        for sample in data if isinstance(data, list) else [data]:
            body = sample.get("conversation", sample)
            sessions = sorted(
                (int(key.split("_")[1]), turns)
                for key, turns in body.items()
                if key.startswith("session_") and key.split("_")[1].isdigit()
                and isinstance(turns, list)
            )
            texts.extend(t["text"] for _, turns in sessions for t in turns if t.get("text"))
    if not texts:
        raise MemosError(f"No LoCoMo dialog turns found in {directory}.")
    return texts


def run(
    locomo: Path,
    batch_sizes: Sequence[int] = (1, 16, 64),
    n_texts: int = 256,
    threads: Sequence[int] = (2,),
    rounds: int = 2,
    model: Path | None = None,
) -> dict:
    """Texts/s and tokens/s for each thread count and batch size over the first `n_texts`
    LoCoMo turns. Every round runs every setting once, interleaved, so a machine whose load
    drifts during the run biases no setting; the figures are medians over rounds and the ratio
    column is against the first row."""
    texts = turn_texts(locomo)[:n_texts]
    embedders, load_s = {}, {}
    for n_threads in threads:
        embedders[n_threads] = _embedder(model, n_threads)
        start = time.perf_counter()
        embedders[n_threads].embed(texts[:1])
        load_s[n_threads] = time.perf_counter() - start
    first = embedders[threads[0]]
    n_tokens = sum(len(first.tokens(t)) for t in texts)

    settings = [(n_threads, size) for n_threads in threads for size in batch_sizes]
    passes: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
    calls: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
    for _ in range(rounds):
        for n_threads, size in settings:
            embedder = embedders[n_threads]
            start = time.perf_counter()
            for i in range(0, len(texts), size):
                t0 = time.perf_counter()
                embedder.embed(texts[i : i + size])
                calls[n_threads, size].append(time.perf_counter() - t0)
            passes[n_threads, size].append(time.perf_counter() - start)
    for embedder in embedders.values():
        embedder.close()

    rows = []
    for setting in settings:
        seconds = median(passes[setting])
        rows.append(
            {
                "threads": setting[0],
                "batch": setting[1],
                "texts/s": len(texts) / seconds,
                "tokens/s": n_tokens / seconds,
                "ms/call (median)": 1000 * median(calls[setting]),
            }
        )
    for row in rows:
        row["x vs first row"] = row["texts/s"] / rows[0]["texts/s"]
    return {
        "model": first.model_id,
        "texts": len(texts),
        "mean_tokens": n_tokens / len(texts),
        "rounds": rounds,
        "load_s": load_s,
        "rows": rows,
    }


def _embedder(model: Path | None, n_threads: int):
    if model is None:
        from memos_desktop.embed.minilm import MiniLM

        return MiniLM(n_threads=n_threads)
    from memos_desktop.embed.llamacpp import LlamaCppEmbedder

    return LlamaCppEmbedder(model, n_threads=n_threads)
