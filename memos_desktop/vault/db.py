"""Opening the encrypted SQLite database, and its write transactions.

One `apsw` connection from `apsw-sqlite3mc` (SQLite3 Multiple Ciphers, ChaCha20-Poly1305 pages),
keyed with a subkey of the vault's data key, with sqlite-vec loaded into it. This module knows
nothing about cubes' meaning; the schema's history is `migrations.py`.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from memos_desktop.errors import CorruptVault, VaultError, WrongPassphrase

# The page cache (KiB, negative = size) must hold the vector and FTS tables, or every query
# re-decrypts their pages: measured 100k x 384 KNN ~180 ms with 2 MB vs ~50 ms with a large cache.
PAGE_CACHE_KIB = 512 * 1024
BUSY_TIMEOUT_MS = 30_000
# An `apsw.Connection`. Typed loosely on purpose: apsw types every row value as the union of
# SQLite's types, while each statement here knows its columns' types.
Connection: TypeAlias = Any


def connect(path: str, db_key: bytes | None) -> Connection:
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
        raise CorruptVault(
            f"The vault database {path} is damaged or was tampered with; restore it from a backup"
            " (`memos-desktop backup`) or an export bundle."
        ) from None
    _refuse_lost_wal_commits(conn, path)
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.enable_load_extension(False)
    conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def cipher_version() -> tuple[str, str]:
    """(SQLite's version, the default cipher of SQLite3 Multiple Ciphers) from a throwaway
    in-memory connection; raises whatever a broken install raises."""
    import apsw

    conn = apsw.Connection(":memory:")
    try:
        cipher = conn.execute("PRAGMA cipher").fetchall()
    finally:
        conn.close()
    return apsw.sqlite_lib_version(), str(cipher[0][0]) if cipher else "?"


def vec_version() -> str:
    """The version of sqlite-vec, loaded into a throwaway in-memory connection."""
    import apsw
    import sqlite_vec

    conn = apsw.Connection(":memory:")
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        return str(conn.execute("SELECT vec_version()").fetchall()[0][0])
    finally:
        conn.close()


def _refuse_lost_wal_commits(conn: Connection, path: str) -> None:
    """Close `conn` and raise CorruptVault if a damaged WAL would drop committed transactions:
    checked before anything writes, which would overwrite them for good."""
    from memos_desktop.vault.integrity import lost_wal_commits

    wal = Path(f"{path}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return
    first, commits = lost_wal_commits(Path(path))
    if commits:  # confirmed with no writer in the middle of a commit (rare: no lock taken otherwise)
        conn.execute("BEGIN IMMEDIATE")
        try:
            first, commits = lost_wal_commits(Path(path))
        finally:
            conn.execute("ROLLBACK")
    if commits:
        import apsw

        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)  # closing must not fold the log in or delete it
        conn.close()
        raise CorruptVault(
            f"The write-ahead log {wal} is damaged at frame {first}: opening the vault would silently drop "
            f"{commits} transaction(s) written after it. Nothing was changed; restore the vault from a backup "
            f"(`memos-desktop backup`), or move {wal.name} aside to open it as it was before those writes."
        )


@contextlib.contextmanager
def write_txn(conn: Connection) -> Iterator[None]:
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


CONTEXT_CHARS = 400  # of meta["context"] embedded and indexed with a cube; its content is never cut for it
FTS_COLUMNS = "title, content, tags, context"
# When a cube started to hold: its `valid_from`, else when it was stored (a chat turn: when said).
VALID_START = "coalesce(valid_from, created_at)"
# What cube_fts holds for a cube row (in FTS_COLUMNS order): tags as words, the start of
# meta["context"] (index.context_text does the same for one cube).
FTS_ROW_SQL = (
    "rowid, title, content, (SELECT group_concat(value, ' ') FROM json_each(tags)),"
    f" substr(coalesce(json_extract(meta, '$.context'), ''), 1, {CONTEXT_CHARS})"
)
