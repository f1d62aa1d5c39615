"""Benchmark `bench ingest`: MemLoader throughput, unchanged re-scan cost, save→searchable latency.

Indexes a synthetic notes vault (N Markdown notes with front matter, headings, wikilinks and
links) or a copy of a real folder into a fresh encrypted vault, then measures: the initial index
(files/s, MB/s), an unchanged re-scan and a re-scan after touching every file (both must re-embed nothing),
and, under the live watcher, the time from saving an edit to the edit being searchable (p50/p95).
Targets: 10k notes ≤ 300 s, unchanged re-scan ≤ 5 s with 0 re-embedded, p95 save→searchable ≤ 1 s.
CPU time and the load average are reported beside wall time: a shared machine inflates the latter.
It never touches the user's own vault or folders.
"""

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from memos_desktop.bench import percentile

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


def _words(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n))


def generate(folder: Path, n: int, seed: int = 0) -> int:
    """Write `n` Markdown notes (in 1 + n/500 subfolders); return their total size in bytes."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "de", "po", "an", "el"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(4000)]
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
            size = generate(notes, n, seed)
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
        cpu = time.process_time()
        first = loader.scan([notes])
        initial_cpu_s = time.process_time() - cpu
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
            "initial_s": first.seconds,
            "initial_cpu_s": initial_cpu_s,
            "load_average": os.getloadavg()[0],
            "initial_files_per_s": first.files / first.seconds if first.seconds else 0.0,
            "initial_mb_per_s": size / 1e6 / first.seconds if first.seconds else 0.0,
            "chunks": first.cubes_added,
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


def _live_latencies(Watcher, Vault, home: Path, embedder, vault, notes: Path, edits: int, seed: int) -> list[float]:
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
    ("embedder", "embedder", ""),
    ("initial index (s)", "initial_s", "≤ 300 for 10k"),
    ("initial index CPU (s, all threads)", "initial_cpu_s", ""),
    ("initial files/s", "initial_files_per_s", ""),
    ("initial MB/s", "initial_mb_per_s", ""),
    ("chunks embedded", "chunks", ""),
    ("unchanged re-scan (s)", "rescan_unchanged_s", "≤ 5"),
    ("unchanged re-scan re-embedded", "rescan_unchanged_embedded", "0"),
    ("touched re-scan (s)", "rescan_touched_s", ""),
    ("touched re-scan re-embedded", "rescan_touched_embedded", "0"),
    ("save→searchable p50 (s)", "save_to_searchable_p50_s", ""),
    ("save→searchable p95 (s)", "save_to_searchable_p95_s", "≤ 1"),
    ("machine load average (1 min)", "load_average", ""),
)


def rows(result: dict) -> list[dict]:
    """The table printed by `memos-desktop bench ingest`."""
    return [{"measure": label, "value": result[key], "target": target} for label, key, target in ROWS]
