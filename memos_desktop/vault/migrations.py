"""The vault's schema, as an ordered list of migrations.

Each migration is a function recorded once in `_migrations` when applied, each in its own
transaction; add a function at the end of MIGRATIONS, never edit one that has shipped.
"""

import json
from collections.abc import Callable
from typing import Any

from memos_desktop.vault.db import CONTEXT_CHARS, FTS_COLUMNS, FTS_ROW_SQL, VALID_START, write_txn  # noqa: F401


def _m001_cubes(conn) -> None:
    conn.execute(
        """
        CREATE TABLE cubes (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('plaintext', 'activation', 'parameter')),
            owner TEXT NOT NULL DEFAULT 'default',
            visibility TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'shared')),
            title TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL DEFAULT '',
            payload_ref TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT '{}',
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            valid_from REAL,
            valid_to REAL,
            expires_at REAL,
            access_count INTEGER NOT NULL DEFAULT 0,
            last_accessed_at REAL,
            importance REAL NOT NULL DEFAULT 0.5,
            pinned INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived', 'deleted')),
            version INTEGER NOT NULL DEFAULT 1,
            embed_model TEXT,
            content_hash TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX cubes_owner_state ON cubes(owner, state, kind);
        CREATE INDEX cubes_hash ON cubes(content_hash);
        CREATE TABLE cube_versions (
            cube_id TEXT NOT NULL REFERENCES cubes(id),
            version INTEGER NOT NULL,
            parent_version INTEGER,
            op TEXT NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL DEFAULT 'user',
            snapshot TEXT NOT NULL,
            PRIMARY KEY (cube_id, version)
        );
        CREATE TABLE links (
            src TEXT NOT NULL,
            dst TEXT NOT NULL,
            rel TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (src, dst, rel)
        );
        CREATE INDEX links_dst ON links(dst);
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            action TEXT NOT NULL,
            cube_id TEXT,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE VIRTUAL TABLE cube_fts USING fts5(
            title, content, tags, tokenize = 'porter unicode61 remove_diacritics 2'
        );
        """
    )


def _m002_vector_coarse(conn) -> None:
    """Tables for large-vault KNN: sign bits of every vector (coarse pass) and a float copy.

    Plain rowid tables: the bits are read in one sequential scan, a shortlist's floats by rowid
    B-tree lookups (vec0 point lookups cost ~0.1 ms each). Filled from an existing `cube_vec`.
    """
    conn.execute("CREATE TABLE cube_vec_bits (rowid INTEGER PRIMARY KEY, bits BLOB NOT NULL)")
    conn.execute("CREATE TABLE cube_vec_float (rowid INTEGER PRIMARY KEY, embedding BLOB NOT NULL)")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'cube_vec'").fetchone():
        conn.execute("INSERT INTO cube_vec_bits SELECT rowid, vec_quantize_binary(embedding) FROM cube_vec")
        conn.execute("INSERT INTO cube_vec_float SELECT rowid, embedding FROM cube_vec")


def _m003_loader_files(conn) -> None:
    """MemLoader's per-file state, and an index to find a file's cubes by their source path."""
    conn.execute(
        """
        CREATE TABLE loader_files (
            path TEXT PRIMARY KEY,
            content_hash TEXT NOT NULL DEFAULT '',
            mtime_ns INTEGER NOT NULL DEFAULT 0,
            size INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN ('indexed', 'pending', 'skipped', 'error')),
            reason TEXT NOT NULL DEFAULT '',
            chunks TEXT NOT NULL DEFAULT '[]',
            links TEXT NOT NULL DEFAULT '[]',
            unresolved INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        );
        CREATE INDEX loader_files_hash ON loader_files(content_hash);
        CREATE INDEX cubes_source_path ON cubes(json_extract(source, '$.path'));
        """
    )


def _m004_dumper(conn) -> None:
    """MemDumper's op log (global id, clock stamp, origin per version) and imported audit excerpts."""
    conn.execute(
        """
        CREATE TABLE sync_events (
            vid TEXT PRIMARY KEY,
            cube_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            hlc TEXT NOT NULL,
            device TEXT NOT NULL,
            parents TEXT NOT NULL DEFAULT '[]',
            origin TEXT,
            shared INTEGER NOT NULL DEFAULT 0,
            UNIQUE (cube_id, version)
        );
        CREATE INDEX sync_events_unshared ON sync_events(shared) WHERE shared = 0;
        CREATE TABLE sync_applied (
            name TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE TABLE imported_audit (
            hash TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            bundle TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            action TEXT NOT NULL,
            cube_id TEXT,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX imported_audit_cube ON imported_audit(cube_id);
        """
    )


def _m005_scheduler(conn) -> None:
    """MemScheduler's inspectable record: every placement/promotion decision, and the hot tier.

    IF NOT EXISTS: vaults made before this migration got its final place in the list already have it.
    """
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schedule_log (
            seq INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            turn_id TEXT,
            cube_id TEXT,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX IF NOT EXISTS schedule_log_cube ON schedule_log(cube_id, decision, at);
        CREATE INDEX IF NOT EXISTS schedule_log_turn ON schedule_log(turn_id);
        CREATE TABLE IF NOT EXISTS memory_tiers (
            cube_id TEXT PRIMARY KEY,
            tier TEXT NOT NULL,
            since REAL NOT NULL
        );
        """
    )


def _m006_pending_embeddings(conn) -> None:
    """Cubes waiting for a vector (indexed for words first, embedded after) are found by index."""
    conn.execute("CREATE INDEX IF NOT EXISTS cubes_unembedded ON cubes(kind, state) WHERE embed_model IS NULL")


def _m007_contentless_fts(conn) -> None:
    """The word index keeps no copy of the text (FTS5 contentless-delete): search reads only
    rowids and bm25(), and the copy was a fifth of the database and of every import's writes.
    The rows already indexed move over as they are."""
    conn.execute(
        """
        CREATE VIRTUAL TABLE cube_fts_new USING fts5(
            title, content, tags, content = '', contentless_delete = 1,
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        INSERT INTO cube_fts_new (rowid, title, content, tags) SELECT rowid, title, content, tags FROM cube_fts;
        DROP TABLE cube_fts;
        ALTER TABLE cube_fts_new RENAME TO cube_fts;
        """
    )


def _m008_fts_context(conn) -> None:
    """The word index gets a `context` column: the text a cube only makes sense with (a chat
    turn's previous turn), matched at a lower weight than the cube's own words. Rebuilt from the
    cubes it indexes (active plaintext), still without a copy of the text. Cubes are indexed by
    when they started to hold (VALID_START) for questions that name a date."""
    conn.execute("DROP TABLE cube_fts")
    conn.execute(
        f"CREATE VIRTUAL TABLE cube_fts USING fts5({FTS_COLUMNS}, content = '', contentless_delete = 1,"
        " tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    conn.execute(
        f"INSERT INTO cube_fts (rowid, {FTS_COLUMNS}) SELECT {FTS_ROW_SQL} FROM cubes"
        " WHERE kind = 'plaintext' AND state = 'active'"
    )
    conn.execute(f"CREATE INDEX IF NOT EXISTS cubes_valid_start ON cubes({VALID_START})")


def _m009_harden_expiry_index(conn: Any) -> None:
    """Memories with a TTL, by when they expire: the purge on every open reads only those."""
    conn.execute("CREATE INDEX IF NOT EXISTS cubes_expires ON cubes(expires_at) WHERE expires_at IS NOT NULL")


def _m010_retrieval_passages_links(conn: Any) -> None:
    """Passages of long memories (their word rows and vectors live in the index tables under
    rowids from index.PASSAGE_ROWID up), the terms linking memories (entities, topics, tags,
    dates) and which memories have both derived (`cube_derived`, by rule version). An existing
    vault's memories are derived by `reindex` (in the background, with progress), not here."""
    conn.execute(
        """
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY,
            cube_rowid INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL
        );
        CREATE INDEX passages_cube ON passages(cube_rowid);
        CREATE TABLE terms (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('entity', 'topic', 'tag', 'date')),
            name TEXT NOT NULL,
            UNIQUE (kind, name)
        );
        CREATE TABLE cube_terms (
            term_id INTEGER NOT NULL,
            cube_rowid INTEGER NOT NULL,
            PRIMARY KEY (term_id, cube_rowid)
        ) WITHOUT ROWID;
        CREATE INDEX cube_terms_cube ON cube_terms(cube_rowid);
        CREATE TABLE cube_derived (rowid INTEGER PRIMARY KEY, version INTEGER NOT NULL);
        """
    )


def _m011_lang_vector_changes(conn: Any) -> None:
    """A counter of writes to the sign-bit table, bumped by triggers: a search caches the bits and
    reloads them only when this moves, not on every commit of another process (PRAGMA
    data_version changes with any write, even an audit entry)."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS vec_changes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
        INSERT OR IGNORE INTO vec_changes VALUES (1, 0);
        CREATE TRIGGER IF NOT EXISTS vec_bits_insert AFTER INSERT ON cube_vec_bits
            BEGIN UPDATE vec_changes SET n = n + 1; END;
        CREATE TRIGGER IF NOT EXISTS vec_bits_update AFTER UPDATE ON cube_vec_bits
            BEGIN UPDATE vec_changes SET n = n + 1; END;
        CREATE TRIGGER IF NOT EXISTS vec_bits_delete AFTER DELETE ON cube_vec_bits
            BEGIN UPDATE vec_changes SET n = n + 1; END;
        """
    )


def _m012_lang_script_fts(conn: Any) -> None:
    """A second word index for what `cube_fts` cannot cut: bigrams of Chinese, Japanese, Thai...
    runs and folded non-ASCII words (vault/segment.py), contentless like `cube_fts`, filled from
    the cubes it indexes (active plaintext)."""
    from memos_desktop.vault import segment

    conn.execute(
        "CREATE VIRTUAL TABLE cube_fts_script USING fts5(words, content = '', contentless_delete = 1,"
        " tokenize = 'unicode61 remove_diacritics 2')"
    )
    rows = conn.execute("SELECT rowid, title, content, tags FROM cubes WHERE kind = 'plaintext' AND state = 'active'")
    for rowid, title, content, tags in rows.fetchall():
        text = segment.index_text(f"{title}\n{content}\n{' '.join(json.loads(tags))}")
        if text:
            conn.execute("INSERT INTO cube_fts_script (rowid, words) VALUES (?, ?)", (rowid, text))


# Entries `vec_changed` keeps (trimmed every 1024 entries): a cache that saw the log fewer
# entries ago than this takes in just the rows logged since; one that did not reloads everything.
VEC_LOG_KEEP = 65536


def _m013_vector_change_log(conn: Any) -> None:
    """A log of the vector rowids written (added, replaced, removed), next to the `vec_changes`
    counter: another connection's cache re-reads just the rows logged since it last looked
    instead of every vector. Filled by triggers on `cube_vec_bits`, trimmed to its newest
    VEC_LOG_KEEP entries (AUTOINCREMENT: a number is never given twice once committed)."""
    conn.execute(
        f"""
        CREATE TABLE vec_changed (seq INTEGER PRIMARY KEY AUTOINCREMENT, cube_rowid INTEGER NOT NULL);
        CREATE TRIGGER vec_changed_insert AFTER INSERT ON cube_vec_bits
            BEGIN INSERT INTO vec_changed (cube_rowid) VALUES (NEW.rowid); END;
        CREATE TRIGGER vec_changed_update AFTER UPDATE ON cube_vec_bits
            BEGIN
                INSERT INTO vec_changed (cube_rowid) VALUES (NEW.rowid);
                INSERT INTO vec_changed (cube_rowid) SELECT OLD.rowid WHERE OLD.rowid != NEW.rowid;
            END;
        CREATE TRIGGER vec_changed_delete AFTER DELETE ON cube_vec_bits
            BEGIN INSERT INTO vec_changed (cube_rowid) VALUES (OLD.rowid); END;
        CREATE TRIGGER vec_changed_trim AFTER INSERT ON vec_changed WHEN NEW.seq % 1024 = 0
            BEGIN DELETE FROM vec_changed WHERE seq <= NEW.seq - {VEC_LOG_KEEP}; END;
        """
    )


MIGRATIONS: list[Callable[[Any], None]] = [
    _m001_cubes,
    _m002_vector_coarse,
    _m003_loader_files,
    _m004_dumper,
    _m005_scheduler,
    _m006_pending_embeddings,
    _m007_contentless_fts,
    _m008_fts_context,
    _m009_harden_expiry_index,
    _m010_retrieval_passages_links,
    _m011_lang_vector_changes,
    _m012_lang_script_fts,
    _m013_vector_change_log,
]


def migrate(conn) -> None:
    """Apply every migration not yet recorded, each in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with write_txn(conn):
            fn(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, unixepoch('subsec'))", (fn.__name__,))
