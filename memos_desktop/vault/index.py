"""The vault's search index: words (FTS5) and vectors (sqlite-vec and a coarse sign-bit pass).

Owns the index tables (`cube_fts`, `cube_vec`, `cube_vec_bits`, `cube_vec_float`) for the cubes the
store writes: what text of a cube is indexed and embedded, adding and removing a cube's entries,
and the search primitives (`fts`, `knn`, `valid_between`), which return rowids with scores and
apply no access rules (the store resolves rowids through `get_many`, which does). Mixed into
`Vault` (it uses `self.conn`, `self.embedder` and the vault's settings); ranking lives in
`operation/search.py`.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memos_desktop.vault import db, segment
from memos_desktop.vault.cube import MemCube

if TYPE_CHECKING:
    import numpy as np

    from memos_desktop.embed import Embedder

# (rowids, sign bits as uint64 words x vectors) of every vector: the coarse pass's index.
BitsIndex = tuple["np.ndarray", "np.ndarray"]

# bm25 weight of each FTS column (db.FTS_COLUMNS): title, content, tags, context. A word of the
# context (the text a cube only makes sense with, e.g. the chat turn before it) counts 0.3 of one
# of the content: enough to find "It's a mix of drama and romance!" for "What genre is it?".
FTS_WEIGHTS = "2.0, 1.0, 1.5, 0.3"

# Below this many vectors KNN is exact (vec0, float); above it three passes: Hamming distance of
# sign bits picks a wide shortlist, the query's float vector against those sign bits (asymmetric
# scoring, no SQLite read) narrows it, and the float vectors rescore what is left. vec0's KNN cost
# grows with n x k (measured 100k x 384: float k=10 ~50 ms), a numpy scan does not. Measured on
# 10.5k real all-MiniLM-L6-v2 vectors (recall of the exact top 50, off-topic / on-topic queries):
# Hamming 200 → float 0.51 / 0.88; Hamming 1600 → asymmetric 400 → float 0.84 / 0.995.
# `bench knn` measures it (7.5k stdlib docstrings: 0.945 → 0.999 on-topic, 0.927 → 0.998 short).
# Products go through einsum, not `@`: BLAS spreads a 1600 x 384 product over threads that spin
# (measured 7 ms of CPU on a busy machine instead of 0.3 ms).
COARSE_MIN_VECTORS = 10_000
HAMMING_SHORTLIST, HAMMING_MIN = 32, 1600  # shortlist: HAMMING_SHORTLIST x k, at least HAMMING_MIN
RESCORE_SHORTLIST, RESCORE_MIN = 8, 400  # kept for float rescoring: RESCORE_SHORTLIST x k, at least RESCORE_MIN
_ID_BATCH = 500  # ids per `IN (...)` list
DATED_MAX = 4000  # cubes valid in a date window that `valid_between` compares with the query


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: each word quoted, OR'ed (bm25 ranks the overlap)."""
    import re

    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class VaultIndex:
    """Index writes and search primitives of a `Vault` (see the module docstring)."""

    # Set by `Vault.__init__` (store.py), which mixes this class in.
    conn: db.Connection
    embedder: "Embedder | None"
    _bits: BitsIndex | None
    _bits_pending: list[tuple[int, bytes]]
    _data_version: int | None
    _bits_changes: int | None

    if TYPE_CHECKING:  # provided by Vault and EmbeddingBacklog

        def _rowid(self, cube_id: str) -> int: ...

        def embedder_is_stale(self) -> bool: ...

        def get_setting(self, key: str, default: Any = None) -> Any: ...

        def sync_vectors(self, reembed: bool = True) -> None: ...

    def _index(self, cube: MemCube, vector: bytes | None) -> None:
        if cube.kind != "plaintext" or cube.state != "active":
            return
        rowid = self._rowid(cube.id)
        self.conn.execute(
            f"INSERT INTO cube_fts (rowid, {db.FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (rowid, cube.title, cube.content, " ".join(cube.tags), context_text(cube)),
        )
        self._index_script(rowid, cube.title, cube.content, cube.tags)
        if vector is not None:
            self._put_vector(rowid, vector)

    def _unindex(self, rowid: int) -> None:
        self.conn.execute("DELETE FROM cube_fts WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_fts_script WHERE rowid = ?", (rowid,))
        if self._has_vec_table():
            self.conn.execute("DELETE FROM cube_vec WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_bits WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_float WHERE rowid = ?", (rowid,))

    def _index_script(self, rowid: int, title: str, content: str, tags: Sequence[str]) -> None:
        """Index the words of a cube the main word index cannot cut (vault/segment.py), if any."""
        text = segment.index_text(f"{title}\n{content}\n{' '.join(tags)}")
        if text:
            self.conn.execute("INSERT INTO cube_fts_script (rowid, words) VALUES (?, ?)", (rowid, text))

    def _put_vector(self, rowid: int, vector: bytes) -> None:
        """Store a float32 vector for exact KNN (vec0), the coarse pass (bits) and rescoring."""
        import numpy as np

        bits = np.packbits(np.frombuffer(vector, dtype=np.float32) > 0, bitorder="little").tobytes()
        self.conn.execute("INSERT INTO cube_vec (rowid, embedding) VALUES (?, ?)", (rowid, vector))
        self.conn.execute("INSERT OR REPLACE INTO cube_vec_bits VALUES (?, ?)", (rowid, bits))
        self.conn.execute("INSERT OR REPLACE INTO cube_vec_float VALUES (?, ?)", (rowid, vector))
        if self._bits is not None:
            self._bits_pending.append((rowid, bits))

    def _has_vec_table(self) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cube_vec'").fetchone())

    def vector_count(self) -> int:
        if not self._has_vec_table():
            return 0
        return self.conn.execute("SELECT count(*) FROM cube_vec").fetchone()[0]

    def fts(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Rowids matching `query` in FTS5 with their bm25 score (higher is better). No ACL here."""
        q = fts_query(query)
        if not q:
            return []
        rows = self.conn.execute(
            f"SELECT rowid, bm25(cube_fts, {FTS_WEIGHTS}) FROM cube_fts WHERE cube_fts MATCH ?"
            f" ORDER BY bm25(cube_fts, {FTS_WEIGHTS}) LIMIT ?",
            (q, k),
        ).fetchall()
        return [(r, -s) for r, s in rows]

    def fts_script(self, query: str, k: int = 50) -> list[tuple[int, float]]:
        """Rowids matching `query` in the script index (words inside Chinese, Japanese, Thai...
        text; folded non-ASCII words) with their bm25 score (higher is better). No ACL here."""
        q = segment.query(query)
        if not q:
            return []
        rows = self.conn.execute(
            "SELECT rowid, bm25(cube_fts_script) FROM cube_fts_script WHERE cube_fts_script MATCH ?"
            " ORDER BY bm25(cube_fts_script) LIMIT ?",
            (q, k),
        ).fetchall()
        found = [(r, -s) for r, s in rows]
        # "Straße" asked, "Strasse" written: the main index holds that word as it is; after the above.
        if folds := segment.ascii_folds(query):
            seen = {r for r, _ in found}
            found += [(r, s) for r, s in self.fts(" ".join(folds), k) if r not in seen]
        return found[:k]

    def exact_knn(self, vector: "np.ndarray", k: int = 10) -> set[int]:
        """Rowids of the exact `k` nearest vectors by a full vec0 scan: the reference that benches
        measure `knn`'s recall against. No ACL here."""
        rows = self.conn.execute("SELECT rowid FROM cube_vec WHERE embedding MATCH ? AND k = ?", (vector.tobytes(), k))
        return {r for (r,) in rows}

    def knn(self, vector: "np.ndarray", k: int = 50) -> list[tuple[int, float]]:
        """Rowids nearest to `vector` with their cosine distance. No ACL here.

        Exact in small vaults; from COARSE_MIN_VECTORS on, a Hamming pass over sign bits picks
        max(HAMMING_SHORTLIST x k, HAMMING_MIN) candidates, the query against their sign bits keeps
        max(RESCORE_SHORTLIST x k, RESCORE_MIN), and their float vectors are rescored exactly.
        """
        if self.embedder is not None:
            self.sync_vectors()  # vectors of another model are replaced before comparing
            if self.embedder_is_stale():
                return []  # the vault moved to another model: `vector` is not of its space
        if not self._has_vec_table():
            return []
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        if not np.isfinite(query).all() or not query.any():
            return []  # a zero (or broken) vector has no direction: no neighbours, not NULL distances
        rowids, bits = self._coarse_index()
        if len(rowids) < COARSE_MIN_VECTORS:
            rows = self.conn.execute(
                "SELECT rowid, distance FROM cube_vec WHERE embedding MATCH ? AND k = ?",
                (query.tobytes(), min(k, 4096)),
            ).fetchall()
            return [(r, d) for r, d in rows]
        qbits = np.packbits(query > 0, bitorder="little").view(np.uint64)
        hamming = np.bitwise_count(bits[0] ^ qbits[0]).astype(np.uint16)
        for word in range(1, len(qbits)):
            hamming += np.bitwise_count(bits[word] ^ qbits[word])
        # Distances are small integers: a histogram gives the cut-off for the shortlist size.
        size = max(HAMMING_SHORTLIST * k, HAMMING_MIN)
        cutoff = int(np.searchsorted(np.cumsum(np.bincount(hamming)), size))
        picked = np.flatnonzero(hamming <= cutoff)
        if len(picked) > 2 * size:  # many ties at the cut-off
            picked = picked[np.argpartition(hamming[picked], size - 1)[:size]]
        keep = max(RESCORE_SHORTLIST * k, RESCORE_MIN)
        if len(picked) > keep:  # the float query against the candidates' sign bits (0/1: same order as ±1)
            signs = np.unpackbits(np.ascontiguousarray(bits[:, picked].T).view(np.uint8), axis=1, bitorder="little")
            scores = np.einsum("ij,j->i", signs[:, : len(query)].astype(np.float32), query)
            picked = picked[np.argpartition(-scores, keep - 1)[:keep]]
        shortlist = np.unique(rowids[picked])
        marks = ",".join("?" * len(shortlist))
        rows = self.conn.execute(
            f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({marks})",
            shortlist.tolist(),
        ).fetchall()
        return _nearest(rows, query, k)

    def valid_between(
        self, windows: Sequence[tuple[float, float]], vector: "np.ndarray", k: int = 50
    ) -> list[tuple[int, float]]:
        """Rowids of active cubes that started to hold (`valid_from`, else `created_at`) in one of
        `windows` ([start, end) timestamps), nearest to `vector` first, with their cosine distance;
        at most DATED_MAX are compared. No ACL here."""
        import numpy as np

        rowids: dict[int, None] = {}  # windows may overlap
        for start, end in windows:
            rowids.update(
                dict.fromkeys(
                    r
                    for (r,) in self.conn.execute(
                        f"SELECT rowid FROM cubes WHERE {db.VALID_START} >= ? AND {db.VALID_START} < ?"
                        " AND state = 'active' LIMIT ?",
                        (start, end, DATED_MAX),
                    )
                )
            )
        wanted = list(rowids)[:DATED_MAX]
        rows = []
        for begin in range(0, len(wanted), _ID_BATCH):
            batch = wanted[begin : begin + _ID_BATCH]
            rows += self.conn.execute(
                f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({', '.join('?' * len(batch))})", batch
            ).fetchall()
        return _nearest(rows, np.asarray(vector, dtype=np.float32), k)

    def _coarse_index(self) -> BitsIndex:
        """(rowids, sign bits as uint64 words x vectors) of every vector, cached; reloaded when
        another connection changed the sign bits (`vec_changes`, bumped by triggers: another
        process's commit of anything else, an audit entry, keeps the cache). Word-major, so each
        word is one contiguous scan."""
        import numpy as np

        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._bits is not None and version != self._data_version:
            self._data_version = version
            if self._vec_changes() != self._bits_changes:
                self._bits = None
        if self._bits is None:
            self._data_version = version
            self._bits_changes = self._vec_changes()
            rows = self.conn.execute("SELECT rowid, bits FROM cube_vec_bits").fetchall()
            self._bits_pending.clear()
            self._bits = self._bits_matrix(rows)
        elif self._bits_pending:
            rowids, bits = self._bits
            extra = self._bits_matrix(self._bits_pending)
            self._bits_pending.clear()
            self._bits_changes = self._vec_changes()  # our own writes: nobody else's came between
            self._bits = (np.concatenate([rowids, extra[0]]), np.hstack([bits, extra[1]]))
        return self._bits

    def _vec_changes(self) -> int:
        return self.conn.execute("SELECT n FROM vec_changes").fetchone()[0]

    def _bits_matrix(self, rows: Sequence[tuple[int, bytes]]) -> BitsIndex:
        import numpy as np

        dim = self.get_setting("embed_dim") or 0
        words = (dim + 63) // 64
        rowids = np.array([r for r, _ in rows], dtype=np.int64)
        padded = b"".join(b.ljust(words * 8, b"\0") for _, b in rows)
        matrix = np.frombuffer(padded, dtype=np.uint64).reshape(len(rows), words)
        return rowids, np.ascontiguousarray(matrix.T)


def _nearest(rows: list[tuple[int, bytes]], query: "np.ndarray", k: int) -> list[tuple[int, float]]:
    """The `k` of `rows` (rowid, float32 vector bytes) nearest to `query`, with cosine distance."""
    import numpy as np

    if not rows:
        return []
    matrix = np.frombuffer(b"".join(e for _, e in rows), np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    distance = 1.0 - np.einsum("ij,j->i", matrix, query) / np.where(norms == 0, 1.0, norms)
    return [(rows[i][0], float(distance[i])) for i in np.argsort(distance)[:k]]


def context_text(cube: MemCube) -> str:
    """The start of `meta["context"]` that is embedded and indexed with the cube."""
    return str(cube.meta.get("context") or "")[: db.CONTEXT_CHARS]


def embed_text(cube: MemCube) -> str:
    """The text a cube is embedded from: its title (heading path), content and `meta["context"]`.

    The context is the text a cube only makes sense with (for a chat turn, the turn before it:
    "Yeah, it was amazing!" says nothing on its own). It comes last so that a model truncating
    its input drops context before content. Its words are indexed too, at a lower weight
    (`FTS_WEIGHTS`): a turn answering "What genre is it?" is found by the question's words.
    """
    parts = [cube.title, cube.content, context_text(cube)]
    return "\n".join(p for p in parts if p)
