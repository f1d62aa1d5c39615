"""The vault's search index: words (FTS5), vectors (sqlite-vec and a coarse sign-bit pass),
passages of long memories, and the terms (entities, topics, tags, dates) that link memories.

Owns the index tables (`cube_fts`, `cube_vec`, `cube_vec_bits`, `cube_vec_float`, `passages`,
`terms`, `cube_terms`, `cube_derived`) for the cubes the store writes: what text of a cube is
indexed and embedded, adding and removing a cube's entries, and the search primitives (`fts`,
`knn`, `valid_between`, `terms_of`, `sharing`, `similarity`), which return rowids with scores and
apply no access rules (the store resolves rowids through `get_many`, which does). Mixed into
`Vault` (it uses `self.conn`, `self.embedder` and the vault's settings); ranking lives in
`operation/search.py`.

A long memory (content over PASSAGE_MIN_CHARS) is also indexed as overlapping passages: each
passage has its own word-index row and vector under rowid PASSAGE_ROWID + passage id, in the same
tables as whole memories, so bm25 and cosine compare a passage with a short memory of the same
size. `fts` and `knn` fold passages into their memory: the best passage's score plus a soft share
(PASSAGE_SOFT) of its next best ones, so a long memory is neither buried by length normalisation
nor favoured for being long; the best passage's line range is reported for citations.
"""

import functools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from memos_desktop.vault import db, segment, terms
from memos_desktop.vault.cube import COLUMNS, MemCube

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from memos_desktop.embed import Embedder


class VectorCache:
    """Every vector of the vault in memory, for the coarse pass and for scoring without reading
    float vectors from SQLite: sign bits (uint64 words x vectors, word-major) and int8 codes
    (vectors x dims, each vector scaled to its largest component: ~38 MB per 100k at 384 dims).
    An int8 cosine is `codes · query x factor / |query|` (factor: the vector's scale over its
    float norm), within `factor / 2 x sum|query| / |query|` of the float cosine (each code is
    rounded by at most half a step).

    Columns past `size` are spare room, so that a write appends without copying everything; a
    removed vector's column is dead (rowid -1, factor 0) until the next full load."""

    def __init__(self, rowids: "np.ndarray", bits: "np.ndarray", codes: "np.ndarray", factor: "np.ndarray"):
        self.rowids, self.bits, self.codes, self.factor = rowids, bits, codes, factor
        self.size = len(rowids)
        self.dead = 0
        self._index()

    def live(self) -> tuple["np.ndarray", "np.ndarray"]:
        """(rowids, sign bits) of the columns in use (dead ones have rowid -1)."""
        return self.rowids[: self.size], self.bits[:, : self.size]

    def update(self, dirty: Sequence[int], fresh: "VectorCache") -> None:
        """Take in what SQLite now holds for the rowids `dirty`: `fresh` has the vectors of those
        that still have one; the others' columns die. A rowid already here keeps its column."""
        import numpy as np

        columns, present = _columns(self, dirty)
        at = {r: i for i, r in enumerate(fresh.rowids.tolist())}
        kept = [(c, at[r]) for c, r in zip(columns.tolist(), present.tolist(), strict=True) if r in at]
        gone = [c for c, r in zip(columns.tolist(), present.tolist(), strict=True) if r not in at]
        if kept:
            to, of = np.array([c for c, _ in kept]), np.array([i for _, i in kept])
            self.bits[:, to], self.codes[to], self.factor[to] = fresh.bits[:, of], fresh.codes[of], fresh.factor[of]
        if gone:
            self.rowids[gone], self.bits[:, gone], self.factor[gone] = -1, 0, 0.0
            self.dead += len(gone)
        new = np.array(sorted(set(range(len(fresh.rowids))) - {i for _, i in kept}), dtype=np.intp)
        if len(new):
            if self.size + len(new) > len(self.rowids):
                self._grow(self.size + len(new))
            to = np.arange(self.size, self.size + len(new))
            self.rowids[to], self.bits[:, to] = fresh.rowids[new], fresh.bits[:, new]
            self.codes[to], self.factor[to] = fresh.codes[new], fresh.factor[new]
            self.size += len(new)
        self._index()

    def _grow(self, needed: int) -> None:
        import numpy as np

        room = max(needed, len(self.rowids) * 5 // 4 + 64)
        rowids = np.full(room, -1, dtype=np.int64)
        bits = np.zeros((self.bits.shape[0], room), dtype=np.uint64)
        codes = np.zeros((room, self.codes.shape[1]), dtype=np.int8)
        factor = np.zeros(room, dtype=np.float32)
        n = self.size
        rowids[:n], bits[:, :n] = self.rowids[:n], self.bits[:, :n]
        codes[:n], factor[:n] = self.codes[:n], self.factor[:n]
        self.rowids, self.bits, self.codes, self.factor = rowids, bits, codes, factor

    def _index(self) -> None:
        """Rowids ascending and the column of each (`_columns` looks rowids up in them)."""
        import numpy as np

        rowids = self.rowids[: self.size]
        order = np.argsort(rowids, kind="stable")
        self.sorted_rowids, self.columns = rowids[order], order


# bm25 weight of each FTS column (db.FTS_COLUMNS): title, content, tags, context. A word of the
# context (the text a cube only makes sense with, e.g. the chat turn before it) counts 0.3 of one
# of the content: enough to find "It's a mix of drama and romance!" for "What genre is it?".
FTS_WEIGHTS = "2.0, 1.0, 1.5, 0.3"

# Below this many vectors KNN is exact (vec0, float); above it three passes: Hamming distance of
# sign bits picks a wide shortlist, the query's float vector against those sign bits (asymmetric
# scoring, no SQLite read) narrows it, and the float vectors rescore what is left: int8 codes in
# memory rank it and only the float vectors that may reach the top k are read (`_rescore`; at 100k,
# ~65 of 400 rows read, 7.5 → 5.7 ms of CPU per search given the vector). vec0's KNN cost
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
# Another connection's vector writes are taken into the cache row by row when they are at most
# this share of it (plus 64); more, and everything is loaded again (~0.5 s of CPU at 100k).
VEC_LOG_SHARE = 0.05
# The vector change counter and the first and last entries of the change log, in one snapshot.
_VEC_LOG_STATE = (
    "SELECT (SELECT n FROM vec_changes), (SELECT min(seq) FROM vec_changed), (SELECT max(seq) FROM vec_changed)"
)
DATED_MAX = 4000  # cubes valid in a date window that `valid_between` compares with the query

# Passages: memories longer than PASSAGE_MIN_CHARS are cut into passages of about PASSAGE_CHARS,
# each starting PASSAGE_OVERLAP characters before the previous one ends (at a line or sentence
# boundary). MiniLM reads 256 word pieces (~1000 characters): without passages the end of a long
# assistant answer is never embedded, and bm25's length normalisation buries it for words.
PASSAGE_MIN_CHARS = 700
PASSAGE_CHARS = 500
PASSAGE_OVERLAP = 120
PASSAGE_MAX = 100  # per memory: a huge one is searchable by its first 100 passages and its whole text
PASSAGE_ROWID = 1 << 40  # index rows of passages: PASSAGE_ROWID + passage id (cube rowids stay below)
PASSAGE_SOFT = 0.15  # share of each of a memory's next best matching passages added to its best one
PASSAGE_SOFT_COUNT = 2
# Terms shared by more memories than this (or than TERM_MAX_SHARE of them) say little about a
# memory (a speaker, "work").
TERM_MAX_SHARED = 200
TERM_MAX_SHARE = 0.05
DERIVED_VERSION = 1  # bump when passage cutting or term rules change: `reindex` rebuilds


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: each word quoted, OR'ed (bm25 ranks the overlap)."""
    import re

    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 or w.isdigit()]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


def drain(step: Callable[[], int], total: int, progress: Callable[[int, int], None] | None) -> int:
    """Call `step` (one batch, returning how many it did) until it does nothing; `progress(done,
    total)` after each batch (total grows if more arrived meanwhile). Return how many were done."""
    done = 0
    while n := step():
        done += n
        if progress:
            progress(done, max(total, done))
    return done


class VaultIndex:
    """Index writes and search primitives of a `Vault` (see the module docstring)."""

    # Set by `Vault.__init__` (store.py), which mixes this class in.
    conn: db.Connection
    embedder: "Embedder | None"
    _bits: VectorCache | None
    _bits_pending: set[int]
    _data_version: int | None
    _bits_changes: int | None
    _bits_seq: int | None
    vector_loads: int

    if TYPE_CHECKING:  # provided by Vault and EmbeddingBacklog

        def _rowid(self, cube_id: str) -> int: ...

        def embedder_is_stale(self) -> bool: ...

        def get_setting(self, key: str, default: Any = None) -> Any: ...

        def sync_vectors(self, reembed: bool = True) -> None: ...

        def get(
            self, cube_id: str, *, profile: str = "default", touch: bool = True, include_inactive: bool = False
        ) -> MemCube: ...

        def get_many(self, rowids: Sequence[int], *, profile: str = "default") -> dict[int, MemCube]: ...

    def _index(self, cube: MemCube, vectors: "tuple[bytes, list[bytes]] | None") -> None:
        """Index an active plaintext cube for words, its passages and terms; `vectors` (its own
        and its passages', from `_vectors`) when it was embedded at once."""
        if cube.kind != "plaintext" or cube.state != "active":
            return
        rowid = self._rowid(cube.id)
        self.conn.execute(
            f"INSERT INTO cube_fts (rowid, {db.FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (rowid, cube.title, cube.content, " ".join(cube.tags), context_text(cube)),
        )
        self._index_script(rowid, cube.title, cube.content, cube.tags)
        own, pieces = vectors if vectors is not None else (None, None)
        if own is not None:
            self._put_vector(rowid, own)
        self._derive(rowid, cube, pieces)

    def _unindex(self, rowid: int) -> None:
        self.conn.execute("DELETE FROM cube_fts WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_fts_script WHERE rowid = ?", (rowid,))
        self._drop_vector(rowid)
        self._underive(rowid)

    def _drop_vector(self, rowid: int) -> None:
        if self._has_vec_table():
            self.conn.execute("DELETE FROM cube_vec WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_bits WHERE rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_vec_float WHERE rowid = ?", (rowid,))
        if self._bits is not None:
            self._bits_pending.add(rowid)

    # ----- derived data: passages and terms ------------------------------------------------
    def _derive(self, rowid: int, cube: MemCube, vectors: Sequence[bytes] | None = None) -> None:
        """Write a cube's passages (word rows; vectors when given, in passage order) and terms."""
        tags = " ".join(cube.tags)
        for seq, (start, end, text) in enumerate(passage_spans(cube.content)):
            self.conn.execute(
                "INSERT INTO passages (cube_rowid, seq, start, end) VALUES (?, ?, ?, ?)", (rowid, seq, start, end)
            )
            index_row = PASSAGE_ROWID + self.conn.last_insert_rowid()
            self.conn.execute(
                f"INSERT INTO cube_fts (rowid, {db.FTS_COLUMNS}) VALUES (?, ?, ?, ?, '')",
                (index_row, cube.title, text, tags),
            )
            if vectors:
                self._put_vector(index_row, vectors[seq])
        found = terms.extract(f"{cube.title}\n{cube.content}", cube.tags, str(cube.source.get("speaker") or ""))
        if found:
            self.conn.executemany("INSERT OR IGNORE INTO terms (kind, name) VALUES (?, ?)", found)
            import json

            self.conn.execute(
                "INSERT OR IGNORE INTO cube_terms (term_id, cube_rowid) SELECT t.id, ? FROM json_each(?) j"
                " JOIN terms t ON t.kind = j.value ->> 0 AND t.name = j.value ->> 1",
                (rowid, json.dumps(found)),
            )
        self.conn.execute("INSERT OR REPLACE INTO cube_derived VALUES (?, ?)", (rowid, DERIVED_VERSION))

    def _underive(self, rowid: int) -> None:
        for (pid,) in self.conn.execute("SELECT id FROM passages WHERE cube_rowid = ?", (rowid,)).fetchall():
            self.conn.execute("DELETE FROM cube_fts WHERE rowid = ?", (PASSAGE_ROWID + pid,))
            self._drop_vector(PASSAGE_ROWID + pid)
        self.conn.execute("DELETE FROM passages WHERE cube_rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_terms WHERE cube_rowid = ?", (rowid,))
        self.conn.execute("DELETE FROM cube_derived WHERE rowid = ?", (rowid,))

    def _put_passage_vectors(self, rowid: int, cube: MemCube, vectors: Sequence[bytes]) -> None:
        """Store the vectors of a cube's passages (deriving them first if they never were)."""
        derived = self.conn.execute("SELECT version FROM cube_derived WHERE rowid = ?", (rowid,)).fetchall()
        if derived != [(DERIVED_VERSION,)]:
            self._underive(rowid)
            self._derive(rowid, cube, vectors)
            return
        ids = self.conn.execute("SELECT id FROM passages WHERE cube_rowid = ? ORDER BY seq", (rowid,)).fetchall()
        for (pid,), vector in zip(ids, vectors, strict=False):
            self._drop_vector(PASSAGE_ROWID + pid)
            self._put_vector(PASSAGE_ROWID + pid, vector)

    def _vectors(self, cubes: Sequence[MemCube]) -> dict[str, tuple[bytes, list[bytes]]]:
        """{cube id: (its vector, its passages' vectors)} as float32 bytes, in one embedder call."""
        import numpy as np

        assert self.embedder is not None, "callers embed only with an embedder set"
        groups = [[embed_text(c)] + [passage_text(c, t) for _, _, t in passage_spans(c.content)] for c in cubes]
        vecs = self.embedder.embed([t for group in groups for t in group])
        out: dict[str, tuple[bytes, list[bytes]]] = {}
        at = 0
        for cube, group in zip(cubes, groups, strict=True):
            chunk = [np.asarray(v, dtype=np.float32).tobytes() for v in vecs[at : at + len(group)]]
            out[cube.id] = (chunk[0], chunk[1:])
            at += len(group)
        return out

    def derive_pending(self) -> int:
        """Active plaintext memories whose passages and terms are missing or from older rules."""
        return self.conn.execute(
            "SELECT count(*) FROM cubes c LEFT JOIN cube_derived d ON d.rowid = c.rowid"
            " WHERE c.kind = 'plaintext' AND c.state = 'active' AND (d.version IS NOT ?)",
            (DERIVED_VERSION,),
        ).fetchone()[0]

    def rederive(self, batch: int = 64, progress: Callable[[int, int], None] | None = None) -> int:
        """(Re)build passages, their vectors (with an embedder) and terms of every memory that
        lacks them, `batch` at a time, each batch its own transaction; `progress(done, total)`
        after each. Safe to interrupt: what is done stays done."""
        return drain(lambda: self.rederive_some(batch), self.derive_pending(), progress)

    def rederive_some(self, limit: int = 64) -> int:
        """One batch of `rederive` (one embedder call, one transaction); how many it derived."""
        select = f"SELECT c.rowid, {', '.join('c.' + c for c in COLUMNS)} FROM cubes c"
        rows = self.conn.execute(
            f"{select} LEFT JOIN cube_derived d ON d.rowid = c.rowid WHERE c.kind = 'plaintext'"
            " AND c.state = 'active' AND (d.version IS NOT ?) LIMIT ?",
            (DERIVED_VERSION, limit),
        ).fetchall()
        if not rows:
            return 0
        cubes = [MemCube.from_row(r[1:]) for r in rows]
        model = self.embedder.model_id if self.embedder is not None else None
        # Passages of a memory already embedded by this model get vectors now; the others get
        # theirs with the memory's own vector (`embed_pending`).
        long = [c for c in cubes if model and c.embed_model == model and passage_spans(c.content)]
        vectors = self._vectors(long) if long else {}
        with db.write_txn(self.conn):
            for (rowid, *_), cube in zip(rows, cubes, strict=True):
                current = self.conn.execute("SELECT content_hash, state FROM cubes WHERE rowid = ?", (rowid,))
                if current.fetchall() != [(cube.content_hash, "active")]:
                    continue  # changed meanwhile: its new version was derived when written
                self._underive(rowid)
                self._derive(rowid, cube, vectors[cube.id][1] if cube.id in vectors else None)
        return len(rows)

    def memory_links(self, cube_id: str, profile: str = "default") -> dict[str, Any]:
        """What links one visible memory to others: its terms (kind, name, how many memories
        carry it; rarest first within a kind) and its neighbours from the same source (the
        turn or chunk before and after it)."""
        cube = self.get(cube_id, profile=profile, touch=False, include_inactive=True)
        rowid = self._rowid(cube_id)
        found = sorted(self.terms_of([rowid]).get(rowid, []), key=lambda t: (terms.KINDS.index(t[1]), t[3], t[2]))
        key = cube.source.get("path") or cube.source.get("conversation")
        near = self.get_many([rowid - 1, rowid + 1], profile=profile) if key else {}
        neighbours = [
            (("before" if r < rowid else "after"), c)
            for r, c in sorted(near.items())
            if (c.source.get("path") or c.source.get("conversation")) == key
        ]
        return {"terms": [(kind, name, shared) for _, kind, name, shared in found], "neighbours": neighbours}

    def linked(self, kind: str, name: str, profile: str = "default", limit: int = 100) -> list[MemCube]:
        """The visible memories carrying the term (kind, name), newest first."""
        rowids = self.with_term(kind, name, limit)
        found = self.get_many(rowids, profile=profile)
        return [found[r] for r in rowids if r in found]

    def linked_extent(self) -> int:
        """About how many memories carry terms (the largest rowid linked; one index lookup)."""
        return self.conn.execute("SELECT coalesce(max(rowid), 0) FROM cube_derived").fetchone()[0]

    def index_counts(self) -> dict[str, int]:
        """Rows of the index tables (how much passages and links add to a vault)."""

        def count(sql: str) -> int:
            return self.conn.execute(sql).fetchone()[0]

        return {
            "memories": count("SELECT count(*) FROM cubes WHERE kind = 'plaintext' AND state = 'active'"),
            "word rows": count("SELECT count(*) FROM cube_fts"),
            "vectors": count("SELECT count(*) FROM cube_vec_float"),
            "passages": count("SELECT count(*) FROM passages"),
            "terms": count("SELECT count(*) FROM terms"),
            "memory-term links": count("SELECT count(*) FROM cube_terms"),
        }

    def passage_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM passages").fetchone()[0]

    def terms_of(self, rowids: Sequence[int]) -> dict[int, list[tuple[int, str, str, int]]]:
        """{rowid: [(term id, kind, name, how many memories share it)]} of the given memories."""
        out: dict[int, list[tuple[int, str, str, int]]] = {}
        for begin in range(0, len(rowids), _ID_BATCH):
            batch = list(rowids[begin : begin + _ID_BATCH])
            for rowid, tid, kind, name, shared in self.conn.execute(
                "SELECT ct.cube_rowid, t.id, t.kind, t.name,"
                " (SELECT count(*) FROM cube_terms s WHERE s.term_id = t.id)"
                " FROM cube_terms ct JOIN terms t ON t.id = ct.term_id"
                f" WHERE ct.cube_rowid IN ({', '.join('?' * len(batch))})",
                batch,
            ):
                out.setdefault(rowid, []).append((tid, kind, name, shared))
        return out

    def sharing(self, term_ids: Sequence[int], limit: int = TERM_MAX_SHARED) -> dict[int, list[int]]:
        """{rowid: [term ids]} of the memories carrying any of `term_ids` (at most `limit` per term)."""
        out: dict[int, list[int]] = {}
        for tid in term_ids:
            for (rowid,) in self.conn.execute(
                "SELECT cube_rowid FROM cube_terms WHERE term_id = ? LIMIT ?", (tid, limit)
            ):
                out.setdefault(rowid, []).append(tid)
        return out

    def with_term(self, kind: str, name: str, limit: int = 100) -> list[int]:
        """Rowids of memories carrying the term (kind, name), newest first. No ACL here."""
        rows = self.conn.execute(
            "SELECT ct.cube_rowid FROM terms t JOIN cube_terms ct ON ct.term_id = t.id"
            " WHERE t.kind = ? AND t.name = ? ORDER BY ct.cube_rowid DESC LIMIT ?",
            (kind, name, limit),
        ).fetchall()
        return [r for (r,) in rows]

    def similarity(self, rowids: Sequence[int], vector: "npt.ArrayLike") -> dict[int, float]:
        """Cosine similarity of each memory's own vector (if it has one) with `vector`: from the
        int8 codes in memory once `knn` loaded them (within ~1e-3 of the float cosine), else
        from the float vectors."""
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        if self._bits is not None:
            cache = self._vector_cache()
            columns, found = _columns(cache, rowids)
            cosine = _int8_cosine(cache, columns, query)
            return dict(zip(found.tolist(), cosine.tolist(), strict=True))
        rows = []
        for begin in range(0, len(rowids), _ID_BATCH):
            batch = list(rowids[begin : begin + _ID_BATCH])
            rows += self.conn.execute(
                f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({', '.join('?' * len(batch))})", batch
            ).fetchall()
        return {r: 1.0 - d for r, d in _nearest(rows, np.asarray(vector, dtype=np.float32), len(rows))}

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
            self._bits_pending.add(rowid)

    def _has_vec_table(self) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cube_vec'").fetchone())

    def vector_count(self) -> int:
        """Memories with a vector (their passages' vectors not counted)."""
        if not self._has_vec_table():
            return 0
        return self.conn.execute("SELECT count(*) FROM cube_vec_float WHERE rowid < ?", (PASSAGE_ROWID,)).fetchone()[0]

    def fts(
        self, query: str, k: int = 50, passages: dict[int, tuple[int, int]] | None = None
    ) -> list[tuple[int, float]]:
        """Rowids matching `query` in FTS5 with their bm25 score (higher is better), a long
        memory's passages folded into it; `passages` (when given) gets {rowid: (first, last)
        line} of each long memory's best passage. No ACL here."""
        q = fts_query(query)
        if not q:
            return []
        rows = self.conn.execute(
            f"SELECT rowid, bm25(cube_fts, {FTS_WEIGHTS}) FROM cube_fts WHERE cube_fts MATCH ?"
            f" ORDER BY bm25(cube_fts, {FTS_WEIGHTS}) LIMIT ?",
            (q, self._depth(k)),
        ).fetchall()
        return self._fold([(r, -s) for r, s in rows], k, passages)

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

    def _depth(self, k: int) -> int:
        """Index rows to fetch for `k` memories: twice as many once passages share the lists."""
        return 2 * k if self.conn.execute("SELECT 1 FROM passages LIMIT 1").fetchone() else k

    def _fold(
        self, rows: list[tuple[int, float]], k: int, passages: dict[int, tuple[int, int]] | None
    ) -> list[tuple[int, float]]:
        """Scores (higher is better) of index rows as scores of memories: a memory's own row and
        its passages count as best + PASSAGE_SOFT x each of the next PASSAGE_SOFT_COUNT best."""
        if not any(r >= PASSAGE_ROWID for r, _ in rows):
            return rows[:k]
        ids = [r - PASSAGE_ROWID for r, _ in rows if r >= PASSAGE_ROWID]
        owner: dict[int, tuple[int, int, int]] = {}
        for begin in range(0, len(ids), _ID_BATCH):
            batch = ids[begin : begin + _ID_BATCH]
            owner.update(
                (pid + PASSAGE_ROWID, (cube, start, end))
                for pid, cube, start, end in self.conn.execute(
                    f"SELECT id, cube_rowid, start, end FROM passages WHERE id IN ({', '.join('?' * len(batch))})",
                    batch,
                )
            )
        grouped: dict[int, list[float]] = {}
        best: dict[int, tuple[float, tuple[int, int] | None]] = {}
        for rowid, score in rows:
            cube, span = (owner[rowid][0], owner[rowid][1:]) if rowid in owner else (rowid, None)
            if rowid >= PASSAGE_ROWID and rowid not in owner:
                continue  # a passage removed since (contentless FTS rows go with their passage row)
            grouped.setdefault(cube, []).append(score)
            if cube not in best or score > best[cube][0]:
                best[cube] = (score, span)
        folded = []
        for cube, scores in grouped.items():
            scores.sort(reverse=True)
            folded.append((cube, scores[0] + PASSAGE_SOFT * sum(scores[1 : 1 + PASSAGE_SOFT_COUNT])))
            best_span = best[cube][1]
            if passages is not None and best_span is not None:
                passages[cube] = best_span
        folded.sort(key=lambda item: item[1], reverse=True)
        return folded[:k]

    def knn(
        self, vector: "npt.ArrayLike", k: int = 50, passages: dict[int, tuple[int, int]] | None = None
    ) -> list[tuple[int, float]]:
        """Rowids nearest to `vector` with their cosine distance, a long memory's passages folded
        into it (as for `fts`: 1 - the folded similarity). No ACL here.

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
        nearest = self._knn_rows(query, min(self._depth(k), 4096))
        folded = self._fold([(r, 1.0 - d) for r, d in nearest], k, passages)
        return [(r, 1.0 - s) for r, s in folded]

    def _knn_rows(self, query: "np.ndarray", k: int) -> list[tuple[int, float]]:
        import numpy as np

        cache = self._vector_cache()
        rowids, bits = cache.live()
        if len(rowids) < COARSE_MIN_VECTORS:
            rows = self.conn.execute(
                "SELECT rowid, distance FROM cube_vec WHERE embedding MATCH ? AND k = ?",
                (query.tobytes(), min(k, 4096)),
            ).fetchall()
            # a zero vector (a text with no word the model knows) has no cosine distance: NULL
            return [(r, d) for r, d in rows if d is not None]
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
            scores = sign_scores(bits[:, picked], query)
            picked = picked[np.argpartition(-scores, keep - 1)[:keep]]
        return self._rescore(cache, picked, query, k)

    def _rescore(
        self, cache: VectorCache, picked: "np.ndarray", query: "np.ndarray", k: int
    ) -> list[tuple[int, float]]:
        """The `k` of the columns `picked` nearest to `query`, with float cosine distances: the
        int8 cosines rank them, and the float vectors are read only for the k-th best and those
        whose int8 cosine may be within rounding of it (the same top k, in the same order, as
        reading all: each int8 cosine is within its bound of the float one)."""
        import numpy as np

        picked = picked[cache.rowids[picked] >= 0]  # not dead columns
        if len(picked) > k:
            cosine = _int8_cosine(cache, picked, query)
            bound = cache.factor[picked] / 2 * (np.abs(query).sum() / (np.linalg.norm(query) or 1.0)) + 1e-6
            kth = np.partition(cosine - bound, len(picked) - k)[len(picked) - k]
            picked = picked[cosine + bound >= kth]
        shortlist = cache.rowids[picked]
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

    def _vector_cache(self) -> VectorCache:
        """Every vector in memory (`VectorCache`), loaded on first use and kept in step with
        writes: when the vectors changed (`vec_changes`, bumped by triggers: another process's
        commit of anything else, an audit entry, keeps the cache), the rows logged in
        `vec_changed` since the cache last looked and this connection's own writes
        (`_bits_pending`) are read back from SQLite, so a rolled back write leaves nothing behind.
        Everything is loaded again when the log no longer reaches back that far (trimmed), when
        others changed more than VEC_LOG_SHARE of the cache, or when many columns are changed or
        dead. Inside an open transaction what was read is read again once it ended (nothing seen
        there is taken as settled), and a cache loaded inside one is loaded again."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        cache = self._bits
        if cache is not None and self._bits_changes is None and not self.conn.in_transaction:
            cache = None  # loaded inside a transaction that has ended since: it may have been undone
        dirty = set(self._bits_pending)
        state = None
        if cache is not None and self._bits_changes is not None and (version != self._data_version or dirty):
            state = self.conn.execute(_VEC_LOG_STATE).fetchone()
            if state[0] != self._bits_changes:
                logged = self._logged_since(cache, state[1], state[2])
                if logged is None or len(logged - dirty) > cache.size * VEC_LOG_SHARE + 64:
                    cache = None
                else:
                    dirty |= logged
        if cache is not None and max(len(dirty), 2 * cache.dead) > cache.size // 4 + 64:
            cache = None  # many changed or dead columns: loading everything again is as cheap
        if cache is not None and dirty:
            order = sorted(dirty)
            rows = []
            for begin in range(0, len(order), _ID_BATCH):
                batch = order[begin : begin + _ID_BATCH]
                rows += self.conn.execute(
                    f"SELECT rowid, embedding FROM cube_vec_float WHERE rowid IN ({', '.join('?' * len(batch))})",
                    batch,
                ).fetchall()
            fresh = self._cache_of(rows)
            if fresh.codes.shape[1] == cache.codes.shape[1]:
                cache.update(order, fresh)
            else:
                cache = None  # another model's vectors (switched by another process)
        if cache is None:
            return self._load_vectors(version)
        if state is not None:
            if self.conn.in_transaction:
                self._bits_pending |= dirty  # read again once the transaction ended
            else:
                self._data_version = version
                self._bits_pending.clear()
                self._bits_changes, self._bits_seq = state[0], state[2] or 0
        return cache

    def _load_vectors(self, version: int) -> VectorCache:
        """Load every vector into a new cache, noting what it has seen (nothing settled inside a
        transaction: see `_vector_cache`)."""
        self.vector_loads += 1
        self._data_version = version
        changes, _, last = self.conn.execute(_VEC_LOG_STATE).fetchone()
        settled = not self.conn.in_transaction
        self._bits_changes, self._bits_seq = (changes, last or 0) if settled else (None, None)
        rows = self.conn.execute("SELECT rowid, embedding FROM cube_vec_float ORDER BY rowid").fetchall()
        self._bits_pending.clear()
        self._bits = self._cache_of(rows)
        return self._bits

    def _logged_since(self, cache: VectorCache, first: int | None, last: int | None) -> set[int] | None:
        """The rowids `vec_changed` logged after the cache's last look (`_bits_seq`) up to `last`,
        or None when the log does not reach back that far or holds too many for an update."""
        seen = self._bits_seq
        if seen is None or first is None or last is None or last <= seen or first > seen + 1:
            return None
        if last - seen > cache.size // 4 + 64:
            return None
        rows = self.conn.execute("SELECT cube_rowid FROM vec_changed WHERE seq > ? AND seq <= ?", (seen, last))
        return {r for (r,) in rows}

    def _cache_of(self, rows: Sequence[tuple[int, bytes]]) -> VectorCache:
        """A `VectorCache` of (rowid, float32 vector bytes) rows, in their order."""
        import numpy as np

        dim = self.get_setting("embed_dim") or 0
        words = (dim + 63) // 64
        rowids = np.array([r for r, _ in rows], dtype=np.int64)
        floats = np.frombuffer(b"".join(e for _, e in rows), dtype=np.float32).reshape(len(rows), dim)
        signs = np.packbits(floats > 0, axis=1, bitorder="little")
        padded = np.zeros((len(rows), words * 8), dtype=np.uint8)
        padded[:, : signs.shape[1]] = signs
        bits = np.ascontiguousarray(padded.view(np.uint64).T)
        # ~0.35 s of CPU at 100k x 384 (reading the floats ~0.15 s more; the sign bits alone ~0.05 s)
        scale = np.maximum(floats.max(axis=1, initial=0.0), -floats.min(axis=1, initial=0.0)) / np.float32(127)
        scaled = floats * np.divide(1, scale, out=np.zeros_like(scale), where=scale > 0)[:, None]
        codes = np.rint(scaled, out=scaled).astype(np.int8)
        norms = np.sqrt(np.einsum("ij,ij->i", floats, floats))
        factor = np.divide(scale, norms, out=np.zeros_like(scale), where=norms > 0)
        return VectorCache(rowids, bits, codes, factor)


def _columns(cache: VectorCache, rowids: Sequence[int]) -> tuple["np.ndarray", "np.ndarray"]:
    """(columns, rowids) of those of `rowids` that have a vector in `cache`."""
    import numpy as np

    wanted = np.asarray(rowids, dtype=np.int64)
    at = np.minimum(np.searchsorted(cache.sorted_rowids, wanted), max(len(cache.sorted_rowids) - 1, 0))
    hit = cache.sorted_rowids[at] == wanted if len(cache.sorted_rowids) else np.zeros(len(wanted), bool)
    return cache.columns[at[hit]], wanted[hit]


def _int8_cosine(cache: VectorCache, columns: "np.ndarray", query: "np.ndarray") -> "np.ndarray":
    """Cosine of `query` with the vectors at `columns`, from their int8 codes."""
    import numpy as np

    dots = np.einsum("ij,j->i", cache.codes[columns].astype(np.float32), query)
    return dots * cache.factor[columns] / (np.linalg.norm(query) or 1.0)


def sign_scores(words: "np.ndarray", query: "np.ndarray") -> "np.ndarray":
    """The sum of `query`'s components whose sign bit is set, for each column of `words` (sign
    bits as uint64 words x candidates): a table of every byte value's partial sum at each byte
    position, then one lookup per byte. In search at 100k, 1600 candidates: 1.3 → 0.65 ms of CPU
    against unpacking the bits into a 1600 x 384 float matrix (which leaves the caches cold)."""
    import numpy as np

    positions = words.shape[0] * 8
    padded = np.zeros(positions * 8, dtype=np.float32)
    padded[: len(query)] = query[: positions * 8]
    table = np.einsum("bk,jk->jb", _byte_bits(), padded.reshape(positions, 8))  # position x byte value
    codes = np.ascontiguousarray(words.T).view(np.uint8)  # candidates x byte positions
    return np.take(table.ravel(), codes + np.arange(0, positions * 256, 256, dtype=np.intp)).sum(axis=1)


@functools.cache
def _byte_bits() -> "np.ndarray":
    """256 x 8: the bits of each byte value, lowest first, as 0.0/1.0."""
    import numpy as np

    values = np.arange(256, dtype=np.uint8)[:, None]
    return np.unpackbits(values, axis=1, bitorder="little").astype(np.float32)


def _nearest(rows: list[tuple[int, bytes]], query: "np.ndarray", k: int) -> list[tuple[int, float]]:
    """The `k` of `rows` (rowid, float32 vector bytes) nearest to `query`, with cosine distance."""
    import numpy as np

    if not rows:
        return []
    matrix = np.frombuffer(b"".join(e for _, e in rows), np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    distance = 1.0 - np.einsum("ij,j->i", matrix, query) / np.where(norms == 0, 1.0, norms)
    return [(rows[i][0], float(distance[i])) for i in np.argsort(distance)[:k]]


def passage_spans(content: str) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each passage of a long memory's content (1-based lines
    of the content), or [] for a memory short enough to be one passage. Passages end at a line
    end, else a sentence end, else a space; each next one starts about PASSAGE_OVERLAP
    characters before the previous one ended; at most PASSAGE_MAX."""
    if len(content) <= PASSAGE_MIN_CHARS:
        return []
    line_starts = [0] + [m.end() for m in re.finditer("\n", content)]
    spans: list[tuple[int, int, str]] = []
    begin = 0
    while begin < len(content) and len(spans) < PASSAGE_MAX:
        end = min(len(content), begin + PASSAGE_CHARS)
        if end < len(content):
            window = content[begin:end]
            cut = max(window.rfind("\n"), *(window.rfind(p) + 1 for p in (". ", "! ", "? ")))
            if cut < PASSAGE_CHARS // 2:
                cut = window.rfind(" ")
            if cut >= PASSAGE_CHARS // 2:
                end = begin + cut
        if len(content) - end < PASSAGE_OVERLAP:
            end = len(content)
        text = content[begin:end].strip()
        if text:
            first = _line_of(line_starts, begin + len(content[begin:end]) - len(content[begin:end].lstrip()))
            last = _line_of(line_starts, max(begin, end - 1))
            spans.append((first, last, text))
        if end >= len(content):
            break
        nxt = max(begin + 1, end - PASSAGE_OVERLAP)
        space = content.find(" ", nxt, end)
        begin = space + 1 if space != -1 else nxt
    return spans


def _line_of(line_starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(line_starts, offset)


def passage_text(cube: MemCube, text: str) -> str:
    """The text a passage is embedded from: its memory's title, then the passage."""
    return f"{cube.title}\n{text}" if cube.title else text


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
