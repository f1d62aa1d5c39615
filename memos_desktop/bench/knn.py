"""`bench knn`: what the large-vault KNN keeps of the exact nearest neighbours, on real vectors.

`bench search` times the KNN on synthetic vectors; real sentence embeddings are harder for its
coarse pass (all-MiniLM-L6-v2's vectors share a direction and their dimensions differ in
variance, so sign bits rank them poorly). This bench embeds N paragraphs of the docstrings of
Python's own standard library (English prose present on every machine) with the packaged
all-MiniLM-L6-v2 into a plain throwaway vault, then, for held-out paragraphs (on-topic queries)
and their first five words (short queries), measures the share of the exact float top k (vec0)
that `Vault.knn` returns: the current passes (Hamming → sign-bit scoring → float rescoring) beside
the previous single Hamming shortlist of 200, in the same run. The coarse path is forced at any N.
CPython 3.11's standard library yields about 7,700 such paragraphs; N is capped by what is found.
"""

import ast
import random
import re
import sysconfig
import tempfile
import time
from pathlib import Path

QUERY_WORDS = 5


def paragraphs(limit: int) -> list[str]:
    """Up to `limit` distinct prose paragraphs (60–500 characters) from standard-library
    docstrings, in a fixed pseudo-random order. Modules are read in a fixed shuffled order until
    `limit` paragraphs are found, so a small N parses a few modules, not the whole library."""
    found: set[str] = set()
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    random.Random(0).shuffle(files)
    for path in files:
        if len(found) >= limit:
            break
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                for para in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
                    text = " ".join(para.split())
                    if 60 <= len(text) <= 500 and sum(c.isalpha() for c in text) > 0.7 * len(text):
                        found.add(text)
    out = sorted(found)
    random.Random(0).shuffle(out)
    return out[:limit]


class _Passes:
    """Set the KNN's shortlist sizes (and force its coarse path) for a block, then restore them."""

    def __init__(self, **values):
        from memos_desktop.vault import index

        self.store, self.values = index, {"COARSE_MIN_VECTORS": 0, **values}

    def __enter__(self):
        self.saved = {name: getattr(self.store, name) for name in self.values}
        for name, value in self.values.items():
            setattr(self.store, name, value)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            setattr(self.store, name, value)


# The single pass used before: a Hamming shortlist of max(4 x k, 200), rescored with floats.
PREVIOUS = {"HAMMING_SHORTLIST": 4, "HAMMING_MIN": 200, "RESCORE_SHORTLIST": 10**9, "RESCORE_MIN": 10**9}


def run(n: int = 7_500, queries: int = 200, k: int = 50) -> dict:
    """Recall of the exact top `k` for both query kinds, current passes and previous pass."""
    from memos_desktop.embed.minilm import MiniLM
    from memos_desktop.vault import Vault

    started = time.perf_counter()
    texts = paragraphs(n + queries)
    if len(texts) < n + queries:
        n = max(len(texts) - queries, 0)
    corpus, held_out = texts[:n], texts[n : n + queries]
    embedder = MiniLM()
    try:
        with tempfile.TemporaryDirectory(prefix="memos-bench-knn-") as tmp:
            vault = Vault.open_plain(Path(tmp) / "plain.db", embedder=embedder)
            try:
                t0 = time.perf_counter()
                for start in range(0, len(corpus), 512):
                    vault.add_many([dict(content=t) for t in corpus[start : start + 512]], actor="bench")
                embed_s = time.perf_counter() - t0
                sets = {
                    "on-topic": embedder.embed(held_out),
                    "short": embedder.embed([" ".join(t.split()[:QUERY_WORDS]) for t in held_out]),
                }
                recall = {}
                for name, vectors in sets.items():
                    exact = [vault.exact_knn(v, k) for v in vectors]
                    for label, passes in (("current", {}), ("previous", PREVIOUS)):
                        with _Passes(**passes):
                            found = [{r for r, _ in vault.knn(v, k)} for v in vectors]
                        recall[f"{name} {label}"] = round(
                            sum(len(f & e) / max(len(e), 1) for f, e in zip(found, exact, strict=True)) / len(exact), 4
                        )
            finally:
                vault.close()
    finally:
        embedder.close()
    return {
        "vectors": len(corpus),
        "queries": len(held_out),
        "k": k,
        "model": "all-MiniLM-L6-v2",
        "data": "Python standard-library docstring paragraphs",
        "recall": recall,
        "embed_s": round(embed_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def rows(result: dict) -> list[dict]:
    """One row per query kind: recall of the current passes, the previous pass, and their ratio."""
    out = []
    for kind in ("on-topic", "short"):
        now, before = result["recall"][f"{kind} current"], result["recall"][f"{kind} previous"]
        out.append(
            {
                "queries": kind,
                f"recall@{result['k']} current": now,
                f"recall@{result['k']} previous": before,
                "current / previous": round(now / before, 3) if before else None,
            }
        )
    return out
