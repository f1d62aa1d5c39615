"""Opening the encrypted SQLite database and migrating its schema.

One `apsw` connection from `apsw-sqlite3mc` (SQLite3 Multiple Ciphers, ChaCha20-Poly1305 pages),
keyed with a subkey of the vault's data key, with sqlite-vec loaded into it. Migrations are an
ordered list of functions, each recorded once in `_migrations`; add a function, never edit one.
This module knows nothing about cubes' meaning; it owns the connection and the schema.
"""

import contextlib
from collections.abc import Callable, Iterator

from memos_desktop.errors import CorruptVault, VaultError, WrongPassphrase

# The page cache (KiB, negative = size) must hold the vector and FTS tables, or every query
# re-decrypts their pages: measured 100k x 384 KNN ~180 ms with 2 MB vs ~50 ms with a large cache.
PAGE_CACHE_KIB = 512 * 1024
BUSY_TIMEOUT_MS = 30_000


def connect(path: str, db_key: bytes | None) -> "apsw.Connection":  # noqa: F821
    """Open (or create) the database at `path`, encrypted with `db_key` (None: plain, for benches)."""
    import apsw
    import sqlite_vec

    try:
        conn = apsw.Connection(str(path))
    except apsw.CantOpenError as exc:
        raise VaultError(f"Cannot open the vault database {path}: {exc}") from exc
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    if db_key is not None:
        # Cipher before key, never inside a transaction; a random 256-bit key needs no KDF rounds.
        conn.execute("PRAGMA cipher='chacha20'")
        conn.execute("PRAGMA kdf_iter=1")
        conn.execute(f"PRAGMA hexkey='{db_key.hex()}'")
    try:
        # PRAGMA key answers "ok" even for a wrong key; only a read proves it.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except apsw.NotADBError:
        conn.close()
        raise WrongPassphrase(
            f"The vault database {path} cannot be decrypted with this key: "
            "the key header belongs to another vault, or the database is damaged."
        ) from None
    except apsw.CorruptError:
        conn.close()
        raise CorruptVault(f"The vault database {path} is damaged or was tampered with.") from None
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.enable_load_extension(False)
    conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@contextlib.contextmanager
def write_txn(conn) -> Iterator[None]:
    """A write transaction taken up front (BEGIN IMMEDIATE), so concurrent writers wait, not fail.

    Inside a transaction already open on `conn` it is a savepoint of that transaction instead:
    its writes are undone if it fails and committed only with the outer transaction, which is how
    a vault method called by an importer joins the importer's all-or-nothing transaction.
    """
    if conn.in_transaction:
        conn.execute("SAVEPOINT write_txn")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO write_txn")
            conn.execute("RELEASE write_txn")
            raise
        else:
            conn.execute("RELEASE write_txn")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


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
        conn.execute(
            "INSERT INTO cube_vec_bits SELECT rowid, vec_quantize_binary(embedding) FROM cube_vec"
        )
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


CONTEXT_CHARS = 400  # of meta["context"] embedded and indexed with a cube; its content is never cut for it
FTS_COLUMNS = "title, content, tags, context"
# When a cube started to hold: its `valid_from`, else when it was stored (a chat turn: when said).
VALID_START = "coalesce(valid_from, created_at)"
# What cube_fts holds for a cube row (in FTS_COLUMNS order): tags as words, the start of
# meta["context"] (store.context_text does the same for one cube).
FTS_ROW_SQL = (
    "rowid, title, content, (SELECT group_concat(value, ' ') FROM json_each(tags)),"
    f" substr(coalesce(json_extract(meta, '$.context'), ''), 1, {CONTEXT_CHARS})"
)


def _m006_pending_embeddings(conn) -> None:
    """Cubes waiting for a vector (indexed for words first, embedded after) are found by index."""
    conn.execute(
        "CREATE INDEX IF NOT EXISTS cubes_unembedded ON cubes(kind, state) WHERE embed_model IS NULL"
    )


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


MIGRATIONS: list[Callable] = [
    _m001_cubes, _m002_vector_coarse, _m003_loader_files, _m004_dumper, _m005_scheduler,
    _m006_pending_embeddings, _m007_contentless_fts, _m008_fts_context,
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
