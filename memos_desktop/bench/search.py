"""`bench search`: hybrid search latency at growing vault sizes, encrypted vs plain, in one run.

Builds an encrypted vault and a plain one (`Vault.open_plain`) side by side with the same
synthetic cubes and measures `operator.search` (FTS5 bm25 + KNN + fusion + ACL, no audit) at
each size. The data is synthetic, not model output: generating 100k real embeddings takes too
long, so texts are drawn from topic vocabularies and each word has a random unit vector (near
its topic's centroid); a text's vector is the normalised mean of its words' vectors, so lexical
and vector neighbours agree as they do with a real model. Also reported: the KNN's recall@10
against exact float search, which shows what the coarse binary pass costs in quality, and CPU
time (`process_time`) beside wall-clock time: on a loaded machine CPU time is the steadier figure.

With `real_queries` (the default) the query is embedded by the real all-MiniLM-L6-v2 as a user's
query is, end to end (`search` given the text only, the query-vector cache emptied before each
query so that every one pays the embedder), beside the same search given the query's vector and
the embedder alone on the same texts, so the cost of each part and what overlapping them saves
are read from one run. The stored vectors stay synthetic (same 384 dimensions): what a query
costs does not depend on what the vectors mean.
"""

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.bench import percentile

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

DIM = 384
TOPICS = 1000
VOCAB = 20_000
WORDS_PER_TOPIC = 30


class SyntheticEmbedder:
    """Bag-of-words vectors over a random topic-structured vocabulary (for benchmarks only)."""

    model_id = "bench/synthetic-topics-384"
    dim = DIM

    def __init__(self, seed: int = 0):
        import numpy as np

        rng = np.random.default_rng(seed)
        centroids = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
        self.topic_words = rng.integers(0, VOCAB, (TOPICS, WORDS_PER_TOPIC))
        vectors = rng.standard_normal((VOCAB, DIM)).astype(np.float32)
        for topic, words in enumerate(self.topic_words):
            vectors[words] = centroids[topic] + 0.8 * vectors[words]
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.words = [f"w{i}" for i in range(VOCAB)]
        self.index = {w: i for i, w in enumerate(self.words)}

    def embed(self, texts):
        import numpy as np

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = [self.index[w] for w in text.split() if w in self.index]
            if ids:
                v = self.vectors[ids].mean(axis=0)
                out[i] = v / (np.linalg.norm(v) or 1.0)
        return out

    def texts(self, rng, count: int, length: int, common: float = 1 / 3) -> list[str]:
        """`count` texts of `length` words from one topic each, a share of Zipf-common words."""
        topics = rng.integers(0, TOPICS, count)
        out = []
        for topic in topics:
            own = rng.choice(self.topic_words[topic], size=length - int(length * common))
            common_words = rng.zipf(1.3, size=length - len(own)) % VOCAB
            out.append(" ".join(self.words[w] for w in [*own, *common_words]))
        return out


class RealQueries:
    """all-MiniLM-L6-v2 for query texts, under the synthetic embedder's identity (the vault's
    vectors stay synthetic; only their cost matters)."""

    def __init__(self, synthetic: SyntheticEmbedder):
        from memos_desktop.embed.minilm import MiniLM

        self.model = MiniLM(n_threads=1)
        self.model_id, self.dim = synthetic.model_id, synthetic.dim

    def embed(self, texts):
        return self.model.embed(texts)

    def embed_query(self, texts):
        return self.model.embed_query(texts)


def run(n: int = 100_000, queries: int = 200, k: int = 10, real_queries: bool = True) -> dict:
    """p50/p95 of hybrid search at 10k (when n > 10k) and n cubes, encrypted and plain."""
    import numpy as np

    from memos_desktop.operation.search import Weights
    from memos_desktop.vault import Vault

    started = time.perf_counter()
    sizes = sorted({min(10_000, n), n})
    embedder = SyntheticEmbedder()
    rng = np.random.default_rng(1)
    # Queries are content words (a real query's stopwords are dropped before FTS).
    question_texts = embedder.texts(rng, queries + 10, 3, common=0)
    results: dict[str, dict] = {}
    real = RealQueries(embedder) if real_queries else None
    with tempfile.TemporaryDirectory(prefix="memos-bench-search-") as tmp:
        vaults = {
            "encrypted": Vault.create(Path(tmp) / "encrypted", "bench-search", embedder=embedder),
            "plain": Vault.open_plain(Path(tmp) / "plain.db", embedder=embedder),
        }
        try:
            stored = 0
            for size in sizes:
                while stored < size:
                    batch = min(2000, size - stored)
                    items = [dict(content=t) for t in embedder.texts(rng, batch, 12)]
                    for vault in vaults.values():
                        vault.embedder = embedder
                        vault.add_many(items, actor="bench")
                    stored += batch
                entry = results.setdefault(str(size), {})
                entry.update(_measure(vaults, question_texts, k, embedder))
                # Link expansion's share of the time, same vault, same queries, same run.
                unlinked = _measure({"encrypted": vaults["encrypted"]}, question_texts, k, embedder, Weights(link=0.0))
                entry["encrypted, links off"] = unlinked["encrypted"]
                for q in ("p50", "p95", "cpu_p50", "cpu_p95"):
                    ratio = entry["encrypted"][f"{q}_ms"] / entry["plain"][f"{q}_ms"]
                    entry[f"encrypted/plain {q}"] = round(ratio, 3)
                if real is not None:
                    for vault in vaults.values():
                        vault.embedder = real
                    entry["real query"] = _measure(vaults, question_texts, k, None)
                    entry["embedder alone"] = _measure_embedder(real.model.embed_query, question_texts)
                    entry["embedder alone f16"] = _measure_embedder(real.model.embed, question_texts)
                entry["knn_recall@10_vs_exact"] = _knn_recall(vaults["plain"], embedder, question_texts)
                entry["index_rows"] = vaults["encrypted"].index_counts()
        finally:
            for vault in vaults.values():
                vault.close()
            if real is not None:
                real.model.close()
    tokens = real and float(np.mean([len(real.model.tokens(t)) for t in question_texts]))
    return {
        "sizes": results,
        "queries": queries,
        "k": k,
        "query_embedder": real.model.model_id if real else None,
        "query_tokens_mean": tokens,
        "data": "synthetic topic texts, random topic-centred word vectors (384 dims)",
        "seconds": round(time.perf_counter() - started, 1),
    }


def _measure(vaults: dict, texts: list[str], k: int, vectors_from, weights=None) -> dict:
    """Wall-clock and CPU-time percentiles per vault. The vaults take turns query by query, so
    load from other processes falls on both alike; CPU time is the figure load barely moves.
    `vectors_from`: the embedder whose query vectors are given to search (None: search embeds
    the text itself with the vault's embedder, the cache of query vectors emptied each time)."""
    from memos_desktop.operation import search as operator

    def ask(vault, q, vector):
        if vectors_from is None:
            operator._query_vectors.clear()
        operator.search(vault, q, k=k, record=False, vector=vector, weights=weights)

    vectors = dict(zip(texts, vectors_from.embed(texts), strict=True)) if vectors_from is not None else {}
    for vault in vaults.values():
        for q in texts[:10]:  # warm-up: page cache, the coarse index, the embedder
            ask(vault, q, vectors.get(q))
    wall: dict[str, list[float]] = {mode: [] for mode in vaults}
    cpu: dict[str, list[float]] = {mode: [] for mode in vaults}
    for i, q in enumerate(texts[10:]):
        order = list(vaults) if i % 2 else list(vaults)[::-1]
        for mode in order:
            w0, c0 = time.perf_counter(), time.process_time()
            ask(vaults[mode], q, vectors.get(q))
            cpu[mode].append((time.process_time() - c0) * 1000)
            wall[mode].append((time.perf_counter() - w0) * 1000)
    return {mode: _percentiles(wall[mode], cpu[mode]) for mode in vaults}


def _measure_embedder(embed, texts: list[str]) -> dict:
    """An embedding function alone on the same texts, one at a time."""
    embed(texts[:10])
    wall, cpu = [], []
    for q in texts[10:]:
        w0, c0 = time.perf_counter(), time.process_time()
        embed([q])
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return _percentiles(wall, cpu)


def _percentiles(wall: list[float], cpu: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(wall, 50), 3),
        "p95_ms": round(percentile(wall, 95), 3),
        "cpu_p50_ms": round(percentile(cpu, 50), 3),
        "cpu_p95_ms": round(percentile(cpu, 95), 3),
    }


def _knn_recall(vault: "Vault", embedder, texts: list[str]) -> float:
    """Share of the exact float top 10 (vec0) that the vault's KNN primitive returns."""
    found = 0
    vectors = embedder.embed(texts[:50])
    for vector in vectors:
        exact = vault.exact_knn(vector, 10)
        found += len(exact & {r for r, _ in vault.knn(vector, 10)})
    return round(found / (10 * len(vectors)), 4)


def rows(result: dict) -> list[dict]:
    out = []
    for size, entry in result["sizes"].items():
        recall = entry["knn_recall@10_vs_exact"]
        for mode in ("plain", "encrypted", "encrypted, links off"):
            out.append(
                {"cubes": int(size), "vault": mode, "query": "vector given", **entry[mode], "knn recall@10": recall}
            )
        if "real query" in entry:
            for mode in ("plain", "encrypted"):
                out.append(
                    {
                        "cubes": int(size),
                        "vault": mode,
                        "query": "text (MiniLM)",
                        **entry["real query"][mode],
                        "knn recall@10": recall,
                    }
                )
            for name, key in (("MiniLM Q8_0 alone", "embedder alone"), ("MiniLM F16 alone", "embedder alone f16")):
                out.append({"cubes": int(size), "vault": "-", "query": name, **entry[key], "knn recall@10": None})
        out.append(
            {
                "cubes": int(size),
                "vault": "encrypted/plain",
                "query": "vector given",
                "p50_ms": entry["encrypted/plain p50"],
                "p95_ms": entry["encrypted/plain p95"],
                "cpu_p50_ms": entry["encrypted/plain cpu_p50"],
                "cpu_p95_ms": entry["encrypted/plain cpu_p95"],
                "knn recall@10": recall,
            }
        )
    return out
