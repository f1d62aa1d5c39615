"""The embedding backlog: cubes searchable by words that still wait for their vector.

Owns turning text into vectors with the vault's embedder: at write time for a few cubes, later in
batches (`embed_pending`, `reembed`) for what was written keyword-first (notes, imports), and the
switch to another embedding model (`sync_vectors`: a new vector table, everything re-embedded).
Mixed into `Vault` (it uses `self.conn`, `self.embedder`, the index and the settings).
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from memos_desktop.vault import db
from memos_desktop.vault.cube import COLUMNS, MemCube
from memos_desktop.vault.index import VectorCache, drain, embed_text

if TYPE_CHECKING:
    from memos_desktop.embed import Embedder


class EmbeddingBacklog:
    """Vector making of a `Vault` (see the module docstring)."""

    # Set by `Vault.__init__` (store.py), which mixes this class in.
    conn: db.Connection
    embedder: "Embedder | None"
    _bits: VectorCache | None
    _bits_pending: set[int]

    if TYPE_CHECKING:  # provided by Vault and VaultIndex

        def vector_count(self) -> int: ...

        def get_setting(self, key: str, default: Any = None) -> Any: ...

        def _set_setting(self, key: str, value: Any) -> None: ...

        def _has_vec_table(self) -> bool: ...

        def _put_vector(self, rowid: int, vector: bytes) -> None: ...

        def _vectors(self, cubes: Sequence[MemCube]) -> dict[str, tuple[bytes, list[bytes]]]: ...

        def _put_passage_vectors(self, rowid: int, cube: MemCube, vectors: Sequence[bytes]) -> None: ...

    def _embed(self, cubes: Sequence[MemCube]) -> dict[str, tuple[bytes, list[bytes]]]:
        """{cube id: (vector, its passages' vectors)} (float32 bytes) for cubes' text, or {} when
        no embedder is set (or a stale one: the cubes then wait for the vault's current model,
        `embed_pending`)."""
        if self.embedder is None or not cubes:
            return {}
        self.sync_vectors()
        if self.embedder_is_stale():
            return {}
        return self._vectors(cubes)

    def sync_vectors(self, reembed: bool = True) -> None:
        """Create the vector table for the embedder's dimension; a changed model re-embeds (now,
        or with `reembed=False` later, through `embed_pending`). Nothing to do without an embedder,
        nor for a model the vault was switched away from by `switch_embedder` (in another
        process, say): that one is stale."""
        if self.embedder is None:
            return
        model, dim = self.embedder.model_id, self.embedder.dim
        if self.get_setting("embed_model") == model and self._has_vec_table():
            return
        if self.embedder_is_stale():
            return
        with db.write_txn(self.conn):
            self.conn.execute("DROP TABLE IF EXISTS cube_vec")
            self.conn.execute("DELETE FROM cube_vec_bits")
            self.conn.execute("DELETE FROM cube_vec_float")
            self._bits = None
            self.conn.execute(
                f"CREATE VIRTUAL TABLE cube_vec USING vec0(embedding float[{dim}] distance_metric=cosine)"
            )
            self.conn.execute("UPDATE cubes SET embed_model = NULL")
            self._set_setting("embed_model", model)
            self._set_setting("embed_dim", dim)
        if reembed:
            self.reembed()

    def embedder_is_stale(self) -> bool:
        """Whether `switch_embedder` replaced this process's model with another one."""
        model = self.embedder.model_id if self.embedder is not None else None
        return model is not None and model == self.get_setting("embed_switched_from")

    def switch_embedder(
        self, new: "Embedder", batch: int = 64, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Re-embed every memory with `new` while the current vectors stay searchable, then swap.

        The new vectors go to a staging table (`cube_vec_staging`, with each cube's version, so
        one edited meanwhile is embedded again), `batch` cubes per transaction, `progress(done,
        total)` after each; an interrupted switch resumes where it stopped. The swap is one
        transaction: readers see the old vectors until it commits, then the new ones. Processes
        still holding the old model search by keywords until they load the new one
        (`embedder_is_stale`). Returns how many cubes have a new vector."""
        old = self.embedder
        if old is None or old.model_id == new.model_id or not self.vector_count():
            self.embedder = new
            self.sync_vectors()
            return self.vector_count()
        import numpy as np

        with db.write_txn(self.conn):
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS cube_vec_staging (rowid INTEGER PRIMARY KEY, model TEXT NOT NULL,"
                " version INTEGER NOT NULL, embedding BLOB NOT NULL)"
            )
            self.conn.execute("DELETE FROM cube_vec_staging WHERE model != ?", (new.model_id,))
        waiting = (
            "FROM cubes c LEFT JOIN cube_vec_staging s ON s.rowid = c.rowid"
            " WHERE c.kind = 'plaintext' AND c.state = 'active' AND (s.rowid IS NULL OR s.version != c.version)"
        )
        total = self.conn.execute(f"SELECT count(*) {waiting}").fetchone()[0]
        done = 0
        while rows := self.conn.execute(
            f"SELECT c.rowid, c.version, {', '.join('c.' + c for c in COLUMNS)} {waiting} LIMIT ?", (batch,)
        ).fetchall():
            cubes = [MemCube.from_row(r[2:]) for r in rows]
            vecs = new.embed([embed_text(c) for c in cubes])
            with db.write_txn(self.conn):
                self.conn.executemany(
                    "INSERT OR REPLACE INTO cube_vec_staging VALUES (?, ?, ?, ?)",
                    [
                        (r[0], new.model_id, r[1], np.asarray(v, np.float32).tobytes())
                        for r, v in zip(rows, vecs, strict=True)
                    ],
                )
            done += len(rows)
            if progress:
                progress(done, max(total, done))
        self._swap_staged(new, old)
        return self.vector_count()

    def _swap_staged(self, new: "Embedder", old: "Embedder") -> None:
        """Replace the vector tables by the staged vectors of `new`, in one transaction."""
        with db.write_txn(self.conn):
            staged = self.conn.execute(
                "SELECT s.rowid, s.embedding FROM cube_vec_staging s JOIN cubes c ON c.rowid = s.rowid"
                " WHERE s.model = ? AND s.version = c.version AND c.kind = 'plaintext' AND c.state = 'active'",
                (new.model_id,),
            ).fetchall()
            self.conn.execute("DROP TABLE IF EXISTS cube_vec")
            self.conn.execute("DELETE FROM cube_vec_bits")
            self.conn.execute("DELETE FROM cube_vec_float")
            self.conn.execute(
                f"CREATE VIRTUAL TABLE cube_vec USING vec0(embedding float[{new.dim}] distance_metric=cosine)"
            )
            self._bits = None
            for rowid, vector in staged:
                self._put_vector(rowid, vector)
            self.conn.execute("UPDATE cubes SET embed_model = NULL")
            self.conn.executemany(
                "UPDATE cubes SET embed_model = ? WHERE rowid = ?", [(new.model_id, r) for r, _ in staged]
            )
            self.conn.execute("DROP TABLE cube_vec_staging")
            # Passages' vectors went with the old tables: their memories are derived again
            # (`rederive`: passages, their vectors from the new model, and terms).
            self.conn.execute("DELETE FROM cube_derived")
            self._set_setting("embed_switched_from", old.model_id)
            self._set_setting("embed_model", new.model_id)
            self._set_setting("embed_dim", new.dim)
        self.embedder = new
        self._bits_pending.clear()

    def reembed(self, batch: int = 64, progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every active plaintext cube that has no vector from the current model, `batch`
        at a time (each batch its own transaction); `progress(done, total)` after each."""
        if self.embedder is None:
            return 0
        return drain(lambda: self.embed_pending(batch), self.pending_embeddings(), progress)

    def pending_embeddings(self) -> int:
        """Active plaintext cubes still without a vector from the current model."""
        model = self.embedder.model_id if self.embedder is not None else None
        return self.conn.execute(
            "SELECT count(*) FROM cubes WHERE kind = 'plaintext' AND state = 'active'"
            " AND (embed_model IS NULL OR embed_model IS NOT ?)",
            (model,),
        ).fetchone()[0]

    def embed_pending(self, limit: int = 64) -> int:
        """Embed up to `limit` cubes that wait for a vector (one embedder call, one transaction);
        return how many. Cubes without any vector come first (found by index)."""
        if self.embedder is None:
            return 0
        self.sync_vectors()
        model = self.embedder.model_id
        select = f"SELECT rowid, {', '.join(COLUMNS)} FROM cubes WHERE kind = 'plaintext' AND state = 'active'"
        rows = self.conn.execute(f"{select} AND embed_model IS NULL LIMIT ?", (limit,)).fetchall()
        if not rows:
            rows = self.conn.execute(f"{select} AND embed_model != ? LIMIT ?", (model, limit)).fetchall()
        if not rows:
            return 0
        cubes = [MemCube.from_row(r[1:]) for r in rows]
        vectors = self._vectors(cubes)
        with db.write_txn(self.conn):
            for cube, (rowid, *_) in zip(cubes, rows, strict=True):
                # fetchall: a cursor left unfinished across COMMIT pins this connection to an old snapshot
                current = self.conn.execute("SELECT content_hash, state FROM cubes WHERE rowid = ?", (rowid,))
                if current.fetchall() != [(cube.content_hash, "active")]:
                    continue  # changed while it was embedded: its new text waits for the next call
                own, passages = vectors[cube.id]
                self.conn.execute("DELETE FROM cube_vec WHERE rowid = ?", (rowid,))
                self._put_vector(rowid, own)
                self._put_passage_vectors(rowid, cube, passages)
                self.conn.execute("UPDATE cubes SET embed_model = ? WHERE rowid = ?", (model, rowid))
        return len(rows)
