"""Whether the vault's database is whole, and consistent single-file copies of it (backups).

Owns three checks and the backup: `check_database` runs SQLite's `integrity_check` on the decrypted
pages and names the damaged page and table; `lost_wal_commits` finds transactions that a damaged
write-ahead log (`vault.db-wal`) would silently drop when the database opens; `backup` writes an
encrypted copy with `VACUUM INTO` (not SQLite's backup API: the bundled SQLite3 Multiple Ciphers 2.6.1
had a Backup-API corruption bug fixed in 2.7) and checks the copy before saying it is done.
It never repairs anything: a damaged vault is reported with the ways back (a backup, an export).
"""

import os
import re
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos_desktop import paths
from memos_desktop.errors import CorruptVault, VaultError

if TYPE_CHECKING:
    from memos_desktop.vault import db
    from memos_desktop.vault.store import Vault

WAL_HEADER = 32
FRAME_HEADER = 24
SHM_MX_FRAME = 16  # offset of mxFrame (native u32) in the wal-index header at the start of vault.db-shm
SHM_SALT = 32  # offset of the salts (the WAL header's bytes 16-24, copied as they are) in that header
MAX_PROBLEMS = 20


def lost_wal_commits(db_path: Path) -> tuple[int, int]:
    """(first frame SQLite ignored, committed transactions after it) for the WAL of `db_path`;
    (0, 0) when every committed transaction in it is valid.

    Call right after the database opened and before anything writes: SQLite reads a WAL up to its
    first bad frame and drops the rest, even transactions committed after it, and the next write
    then overwrites them. A frame written in this WAL generation (same salt as the header) that
    commits a transaction past what SQLite accepted (`mxFrame` of the wal-index) was lost; a torn,
    uncommitted tail is normal after a crash and is not counted. When the wal-index belongs to
    another generation (a writer restarted the log meanwhile) there is no verdict: (0, 0). A writer
    committing while this reads can look like a loss: confirm a finding under the write lock.
    """
    wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
    try:
        with open(wal, "rb") as fh:
            data = fh.read()
        with open(shm, "rb") as fh:
            index = fh.read(SHM_SALT + 8)
    except OSError:
        return 0, 0
    if len(data) < WAL_HEADER or len(index) < SHM_SALT + 8:
        return 0, 0
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    if index[SHM_SALT : SHM_SALT + 8] != salt:
        return 0, 0
    (valid,) = struct.unpack("=I", index[SHM_MX_FRAME : SHM_MX_FRAME + 4])
    frame = FRAME_HEADER + page_size
    commits = 0
    for n in range(valid, (len(data) - WAL_HEADER) // frame):
        head = data[WAL_HEADER + n * frame : WAL_HEADER + n * frame + FRAME_HEADER]
        if head[8:16] == salt and struct.unpack(">I", head[4:8])[0]:
            commits += 1
    return (valid + 1, commits) if commits else (0, 0)


def check_database(conn: "db.Connection") -> list[str]:
    """SQLite's integrity check of every page, each problem naming its page and table; [] when whole."""
    import apsw

    try:
        rows = conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})").fetchall()
    except (apsw.CorruptError, apsw.NotADBError) as exc:
        return [f"the database's first pages cannot be read ({exc})"]
    lines = [line for (text,) in rows for line in str(text).splitlines() if line and not line.startswith("***")]
    if lines == ["ok"]:
        return []
    try:
        roots = {
            page: f"{kind} {name}"
            for page, kind, name in conn.execute("SELECT rootpage, type, name FROM sqlite_schema WHERE rootpage > 0")
        }
    except Exception:  # the schema itself is damaged; report pages without names
        roots = {}

    def name(match: re.Match[str]) -> str:
        table = roots.get(int(match.group(1)))
        return f"{table} (tree {match.group(1)})" if table else match.group(0)

    return [re.sub(r"Tree (\d+)", name, line) for line in lines[:MAX_PROBLEMS]]


def backup(vault: "Vault", dest: Path) -> dict[str, Any]:
    """Write a consistent copy of the vault into the new or empty folder `dest`: `vault.db` (one
    file, encrypted with the same key, recent WAL writes included), `vault.key` and `blobs/`; the copy
    is reopened and checked before this returns what was written."""
    dest = Path(dest).expanduser().resolve()
    if dest == Path(vault.data_dir).resolve():
        raise VaultError("A backup must go to another folder than the vault's own.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise VaultError(f"{dest} is not an empty folder; choose a new one for the backup.")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = dest / paths.VAULT_DB
    vault.conn.execute("VACUUM INTO ?", (str(target),))  # the copy takes the main database's cipher and key
    os.chmod(target, 0o600)
    shutil.copy2(Path(vault.data_dir) / paths.VAULT_HEADER, dest / paths.VAULT_HEADER)
    blobs = Path(vault.data_dir) / "blobs"
    blob_count = 0
    if blobs.is_dir():
        shutil.copytree(blobs, dest / "blobs")
        blob_count = sum(1 for p in (dest / "blobs").rglob("*") if p.is_file())
    counts = _counts(vault.conn)
    from memos_desktop.vault import db, keys

    copy = db.connect(str(target), keys.subkey(vault._data_key, "db") if vault._data_key else None)
    try:
        problems = check_database(copy)
        copied = _counts(copy)
    finally:
        copy.close()
    if problems or copied != counts:
        raise CorruptVault(f"The backup in {dest} does not match the vault ({'; '.join(problems) or copied}).")
    return {"path": str(dest), "bytes": target.stat().st_size, "blobs": blob_count, **counts}


def _counts(conn: "db.Connection") -> dict[str, int]:
    return {
        "cubes": conn.execute("SELECT count(*) FROM cubes").fetchone()[0],
        "versions": conn.execute("SELECT count(*) FROM cube_versions").fetchone()[0],
        "audit_entries": conn.execute("SELECT count(*) FROM audit").fetchone()[0],
    }
