"""An embedding cache for retrieval benchmarks: the same texts are embedded once across runs.

`bench locomo` and `bench realmem` embed thousands of dialog turns (and their passages) with the
real model, minutes on two cores; runs while tuning the ranking differ in the ranking, not in the
texts. Vectors are kept in a plain SQLite file under the cache directory, keyed by the embedder's
`model_id` and the sha256 of the text, so a vector made by another model is never returned. It
wraps any `Embedder` and changes nothing about the vectors; it is never used by the product.
"""

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memos_desktop import paths


def default_path() -> Path:
    return paths.cache_dir() / "bench" / "embeddings.sqlite"


class CachedEmbedder:
    """An `Embedder` answering from `path` when it can, and from `inner` (then stored) otherwise."""

    def __init__(self, inner, path: Path | None = None):
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Search embeds the query on a worker thread: one connection, used under a lock by any thread.
        self.conn = sqlite3.connect(self.path, check_same_thread=False)
        self._lock = threading.Lock()
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, digest TEXT, vector BLOB, PRIMARY KEY (model, digest))"
        )
        self.hits = self.misses = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        digests = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            found.update(
                self.conn.execute(
                    f"SELECT digest, vector FROM vectors WHERE model = ? AND digest IN ({marks})",
                    (self.model_id, *batch),
                ).fetchall()
            )
        missing = [i for i, d in enumerate(digests) if d not in found]
        missing = list({digests[i]: i for i in missing}.values())
        if missing:
            vectors = np.asarray(self.inner.embed([texts[i] for i in missing]), dtype=np.float32)
            rows = [(self.model_id, digests[i], v.tobytes()) for i, v in zip(missing, vectors, strict=True)]
            self.conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
            self.conn.commit()
            found.update((d, v) for _, d, v in rows)
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, digest in enumerate(digests):
            out[i] = np.frombuffer(found[digest], dtype=np.float32)
        return out

    def close(self) -> None:
        self.conn.close()
