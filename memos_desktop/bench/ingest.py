"""Benchmark `bench ingest`: MemLoader throughput, unchanged re-scan cost, save→searchable latency.

Indexes a synthetic notes vault (N Markdown notes with front matter, headings, wikilinks and
links; English words by default, see `generate`) or a copy of a real folder into a fresh encrypted
vault, then measures: the initial index in its two phases (every note searchable by words, then
every chunk embedded; files/s, MB/s, tokens per note and the embedder's tokens/s), an unchanged
re-scan and a re-scan after touching every file (both must re-embed nothing), and, under the
live watcher, the time from saving an edit to the edit being searchable (p50/p95).
Targets: 10k notes ≤ 300 s, unchanged re-scan ≤ 5 s with 0 re-embedded, p95 save→searchable ≤ 1 s.
CPU time and the load average are reported beside wall time: a shared machine inflates the latter.
It never touches the user's own vault or folders.
"""

import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.bench import percentile

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

PASSPHRASE = "bench ingest passphrase"
TOPICS = (
    "garden",
    "budget",
    "lisbon",
    "kubernetes",
    "sourdough",
    "marathon",
    "piano",
    "taxes",
    "camera",
    "violin",
    "compost",
    "router",
    "novel",
    "chess",
    "climbing",
    "espresso",
)


def _vocabulary(rng: random.Random, text: str) -> tuple[list[str], list[int] | None]:
    """Words and their weights for note bodies.

    "english": the words of the English prose that ships with CPython (`pydoc_data.topics`, the
    language reference), drawn with their frequency there, so "the" is common and rare words are
    rare, as in notes people write. "syllables": 4000 pseudo-words of 2-4 random syllables, drawn
    uniformly (the generator before; WordPiece cuts each into several pieces, so it overstates
    the embedding work per note: see `bench ingest`'s tokens per note)."""
    if text == "syllables":
        syllables = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "de", "po", "an", "el"]
        return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(4000)], None
    if text != "english":
        raise ValueError(f"unknown note text {text!r}: use english or syllables")
    from collections import Counter
    from pydoc_data.topics import topics

    counts = Counter(re.findall(r"\b[a-z][a-z']*[a-z]\b|\b[a-z]\b", " ".join(topics.values()).lower()))
    words = sorted(counts)
    return words, [counts[w] for w in words]


def _words(rng: random.Random, vocab: tuple[list[str], list[int] | None], n: int) -> str:
    words, weights = vocab
    if weights is None:  # uniform, drawn exactly as the generator always did
        return " ".join(rng.choice(words) for _ in range(n))
    return " ".join(rng.choices(words, weights, k=n))


def generate(folder: Path, n: int, seed: int = 0, text: str = "english") -> int:
    """Write `n` Markdown notes (in 1 + n/500 subfolders); return their total size in bytes.
    `text` is what the paragraphs are made of (see `_vocabulary`); the shape of the notes
    (front matter, 2-4 sections of 1-3 paragraphs of 25-70 words, links) is the same for both."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, text)
    names = [f"note-{i:05d}" for i in range(n)]
    total = 0
    for i, name in enumerate(names):
        sub = folder / f"area-{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        topic = rng.choice(TOPICS)
        other = rng.sample(names, k=min(3, n))
        sections = []
        for s in range(rng.randint(2, 4)):
            paragraphs = "\n\n".join(_words(rng, vocab, rng.randint(25, 70)) for _ in range(rng.randint(1, 3)))
            sections.append(f"## {topic.title()} part {s + 1}\n\n{paragraphs}")
        text = (
            f"---\ntitle: {name}\ntags: [{topic}, bench]\ndate: 2025-0{1 + i % 9}-1{i % 10}\n---\n"
            f"# {topic.title()} {i}\n\nAbout {topic}: see [[{other[0]}]] and "
            f"[this note](../area-{names.index(other[1]) // 500:03d}/{other[1]}.md) #{topic}\n\n"
            + "\n\n".join(sections)
            + f"\n\nRelated: [[{other[2]}]]\n"
        )
        path = sub / f"{name}.md"
        path.write_text(text, encoding="utf-8")
        total += len(text.encode())
    return total


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(
    n: int = 10_000,
    path: Path | None = None,
    edits: int = 40,
    fts_only: bool = False,
    seed: int = 0,
    text: str = "english",
) -> dict:
    """Measure MemLoader on `n` synthetic notes (or the folder `path`); see the module docstring."""
    from memos_desktop.loader.config import add_root
    from memos_desktop.loader.ingest import Loader
    from memos_desktop.loader.watcher import Watcher
    from memos_desktop.vault import Vault

    work = Path(tempfile.mkdtemp(prefix="memos-bench-ingest-"))
    try:
        notes = work / "notes"
        t0 = time.perf_counter()
        if path is None:
            size = generate(notes, n, seed, text)
        else:  # a copy: the live-latency phase edits files
            shutil.copytree(Path(path).expanduser().resolve(), notes, symlinks=True)
            size = _folder_bytes(notes)
        generated_s = time.perf_counter() - t0
        home = work / "home"
        vault = Vault.create(home, PASSPHRASE)
        embedder = None
        if not fts_only:
            from memos_desktop.embed.config import embedder_for

            embedder = embedder_for(vault)
        vault.embedder = embedder
        add_root(vault, notes)

        loader = Loader(vault)
        load_before = os.getloadavg()[0]
        cpu = time.process_time()
        started = time.perf_counter()
        first = loader.scan([notes], embed=False)
        keyword_cpu_s = time.process_time() - cpu
        load_keyword = os.getloadavg()[0]
        first.vectors = loader.embed_pending()
        initial_s = time.perf_counter() - started
        initial_cpu_s = time.process_time() - cpu
        load_embedded = os.getloadavg()[0]
        tokens = _tokens_per_chunk(vault, embedder)
        again = Loader(vault).scan([notes])
        for file in notes.rglob("*"):
            if file.is_file():
                os.utime(file)
        touched = Loader(vault).scan([notes])

        latencies = _live_latencies(Watcher, Vault, home, embedder, vault, notes, edits, seed)
        result = {
            "source": str(path) if path else f"synthetic ({n} Markdown notes)",
            "embedder": embedder.model_id if embedder else "none (FTS only)",
            "files": first.files,
            "mb": size / 1e6,
            "generate_s": generated_s,
            "text": "real folder" if path else text,
            "keyword_s": first.index_seconds,
            "keyword_cpu_s": keyword_cpu_s,
            "initial_s": initial_s,
            "initial_cpu_s": initial_cpu_s,
            "embed_s": initial_s - first.index_seconds,
            "embed_cpu_s": initial_cpu_s - keyword_cpu_s,
            "load_average": os.getloadavg()[0],
            "load_average_initial": [load_before, load_keyword, load_embedded],
            "initial_files_per_s": first.files / initial_s if initial_s else 0.0,
            "initial_mb_per_s": size / 1e6 / initial_s if initial_s else 0.0,
            "keyword_files_per_s": first.files / first.index_seconds if first.index_seconds else 0.0,
            "chunks": first.cubes_added,
            "chunks_per_note": first.cubes_added / first.files if first.files else 0.0,
            "vectors": first.vectors,
            "tokens_per_chunk": tokens,
            "tokens_per_note": tokens * first.cubes_added / first.files if first.files else 0.0,
            "embed_tokens_per_s": (
                tokens * first.vectors / (initial_s - first.index_seconds) if first.vectors else 0.0
            ),
            "links": first.links,
            "errors": first.errors,
            "skipped": first.skipped,
            "rescan_unchanged_s": again.seconds,
            "rescan_unchanged_embedded": again.embedded,
            "rescan_touched_s": touched.seconds,
            "rescan_touched_embedded": touched.embedded,
            "edits": len(latencies),
            "save_to_searchable_p50_s": percentile(latencies, 50),
            "save_to_searchable_p95_s": percentile(latencies, 95),
            "save_to_searchable_max_s": max(latencies) if latencies else float("nan"),
        }
        vault.close()
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tokens_per_chunk(vault: "Vault", embedder, sample: int = 2000) -> float:
    """Mean tokens the embedder sees per chunk (title + text, truncated as the model does), over
    a sample of the vault's chunks; 0 without an embedder."""
    if embedder is None or not hasattr(embedder, "tokens"):
        return 0.0
    from memos_desktop.vault.index import embed_text

    cubes = vault.cubes(limit=sample)
    return sum(len(embedder.tokens(embed_text(c))) for c in cubes) / len(cubes) if cubes else 0.0


def _live_latencies(
    Watcher, Vault, home: Path, embedder, vault: "Vault", notes: Path, edits: int, seed: int
) -> list[float]:
    """Save `edits` notes under the live watcher; time each until its new word is searchable."""
    watcher = Watcher(lambda: Vault.open(home, PASSPHRASE, embedder=embedder))
    watcher.start()
    if not watcher.wait_ready(timeout=600) or watcher.status.state != "watching":
        watcher.stop()
        raise RuntimeError(f"the watcher did not start: {watcher.status.last_error}")
    rng = random.Random(seed + 1)
    files = sorted(p for p in notes.rglob("*.md") if not any(part.startswith(".") for part in p.parts))
    latencies = []
    try:
        for i in range(edits):
            file = rng.choice(files)
            word = f"zqx{i}edit{rng.randrange(10**9)}"
            text = file.read_text(encoding="utf-8", errors="replace")
            started = time.perf_counter()
            file.write_text(text + f"\n\nA fresh thought: {word}\n", encoding="utf-8")
            deadline = started + 30
            while not vault.fts(word, 1):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"edit {i} was not searchable within 30 s")
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        watcher.stop()
    return latencies


ROWS = (
    ("files", "files", ""),
    ("note text", "text", ""),
    ("embedder", "embedder", ""),
    ("chunks (per note)", "chunks_per_note", ""),
    ("embedder tokens per note", "tokens_per_note", ""),
    ("all notes searchable by words (s)", "keyword_s", ""),
    ("  CPU (s)", "keyword_cpu_s", ""),
    ("all notes embedded (s)", "initial_s", "≤ 300 for 10k"),
    ("  CPU (s, all threads)", "initial_cpu_s", ""),
    ("  embedding only (s)", "embed_s", ""),
    ("  embedder tokens/s", "embed_tokens_per_s", ""),
    ("initial files/s", "initial_files_per_s", ""),
    ("initial MB/s", "initial_mb_per_s", ""),
    ("chunks embedded", "vectors", ""),
    ("unchanged re-scan (s)", "rescan_unchanged_s", "≤ 5"),
    ("unchanged re-scan re-embedded", "rescan_unchanged_embedded", "0"),
    ("touched re-scan (s)", "rescan_touched_s", ""),
    ("touched re-scan re-embedded", "rescan_touched_embedded", "0"),
    ("save→searchable p50 (s)", "save_to_searchable_p50_s", ""),
    ("save→searchable p95 (s)", "save_to_searchable_p95_s", "≤ 1"),
    ("load average: start, words done, embedded", "load_average_initial", ""),
    ("machine load average (1 min, at the end)", "load_average", ""),
)


def rows(result: dict) -> list[dict]:
    """The table printed by `memos-desktop bench ingest`."""
    return [{"measure": label, "value": result[key], "target": target} for label, key, target in ROWS]
