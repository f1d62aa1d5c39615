"""`bench embed`: embedding throughput (texts/s, tokens/s) by batch size, on LoCoMo dialog turns
or on the chunks of synthetic notes (as `bench ingest` writes them and the loader embeds them).

The same texts are embedded in calls of 1, 16, 64... texts each, with the same loaded model, so
the ratio against one text per call shows what packing several texts into one llama.cpp batch
buys; `batch_tokens` compares llama.cpp batch sizes, `threads` thread counts. CPU seconds are
reported beside wall time, since a shared machine inflates the latter. Model loading (and,
the first time, converting MiniLM) is timed on its own. The default model is the packaged
all-MiniLM-L6-v2; `model` is the path of any GGUF embedding model.
"""

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.bench import median
from memos_desktop.errors import MemosError

if TYPE_CHECKING:
    from memos_desktop.embed.llamacpp import LlamaCppEmbedder
    from memos_desktop.embed.minilm import MiniLM


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
                if key.startswith("session_") and key.split("_")[1].isdigit() and isinstance(turns, list)
            )
            texts.extend(t["text"] for _, turns in sessions for t in turns if t.get("text"))
    if not texts:
        raise MemosError(f"No LoCoMo dialog turns found in {directory}.")
    return texts


def note_texts(n_notes: int) -> list[str]:
    """The texts the loader embeds for `n_notes` synthetic notes (`bench ingest`'s, English)."""
    import tempfile

    from memos_desktop.bench.ingest import generate
    from memos_desktop.loader.chunking import chunk_document
    from memos_desktop.loader.parsers import parse
    from memos_desktop.vault.cube import MemCube
    from memos_desktop.vault.index import embed_text

    texts = []
    with tempfile.TemporaryDirectory(prefix="memos-bench-embed-") as folder:
        generate(Path(folder), n_notes)
        for path in sorted(Path(folder).rglob("*.md")):
            for chunk in chunk_document(parse(path, path.read_bytes())):
                texts.append(embed_text(MemCube(id="", content=chunk.content, title=chunk.title(path))))
    return texts


def run(
    locomo: Path | None,
    batch_sizes: Sequence[int] = (1, 16, 64),
    n_texts: int = 256,
    threads: Sequence[int] = (2,),
    rounds: int = 2,
    model: Path | None = None,
    notes: int = 0,
    batch_tokens: Sequence[int | None] = (None,),
) -> dict:
    """Texts/s and tokens/s for each thread count, llama.cpp batch size (`batch_tokens`, None:
    the model's default) and texts per call over the first `n_texts` LoCoMo turns, or, with
    `notes`, the chunks of that many synthetic notes. Every round runs every setting once,
    interleaved, so a machine whose load drifts during the run biases no setting; the figures
    are medians over rounds and the ratio column is against the first row."""
    if notes:
        texts = note_texts(notes)[:n_texts]
    elif locomo is not None:
        texts = turn_texts(locomo)[:n_texts]
    else:
        raise MemosError("Give a LoCoMo directory or --notes N.")
    engines = [(n_threads, tokens) for n_threads in threads for tokens in batch_tokens]
    embedders, load_s = {}, {}
    for engine in engines:
        embedders[engine] = _embedder(model, *engine)
        start = time.perf_counter()
        embedders[engine].embed(texts[:1])
        load_s[engine[0]] = time.perf_counter() - start
    first = embedders[engines[0]]
    n_tokens = sum(len(first.tokens(t)) for t in texts)

    settings = [(*engine, size) for engine in engines for size in batch_sizes]
    passes: dict[tuple, list[float]] = {s: [] for s in settings}
    cpu: dict[tuple, list[float]] = {s: [] for s in settings}
    calls: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(rounds):
        for setting in settings:
            embedder = embedders[setting[:2]]
            size = setting[2]
            start, start_cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(texts), size):
                t0 = time.perf_counter()
                embedder.embed(texts[i : i + size])
                calls[setting].append(time.perf_counter() - t0)
            passes[setting].append(time.perf_counter() - start)
            cpu[setting].append(time.process_time() - start_cpu)
    for embedder in embedders.values():
        embedder.close()

    rows = []
    for setting in settings:
        seconds = median(passes[setting])
        rows.append(
            {
                "threads": setting[0],
                "batch tokens": setting[1] or embedders[setting[:2]].batch_tokens,
                "batch": setting[2],
                "texts/s": len(texts) / seconds,
                "tokens/s": n_tokens / seconds,
                "tokens per CPU-s": n_tokens / median(cpu[setting]),
                "ms/call (median)": 1000 * median(calls[setting]),
            }
        )
    for row in rows:
        row["x vs first row"] = row["texts/s"] / rows[0]["texts/s"]
    return {
        "model": first.model_id,
        "source": f"chunks of {notes} synthetic notes" if notes else "LoCoMo turns",
        "texts": len(texts),
        "mean_tokens": n_tokens / len(texts),
        "rounds": rounds,
        "load_s": load_s,
        "rows": rows,
    }


def _embedder(model: Path | None, n_threads: int, batch_tokens: int | None) -> "MiniLM | LlamaCppEmbedder":
    """The packaged MiniLM, or the GGUF `model`; `batch_tokens` None keeps the embedder's default."""
    if model is None:
        from memos_desktop.embed.minilm import MiniLM

        return MiniLM(n_threads=n_threads, batch_tokens=batch_tokens) if batch_tokens else MiniLM(n_threads=n_threads)
    from memos_desktop.embed.llamacpp import LlamaCppEmbedder

    if batch_tokens:
        return LlamaCppEmbedder(model, n_threads=n_threads, batch_tokens=batch_tokens)
    return LlamaCppEmbedder(model, n_threads=n_threads)
