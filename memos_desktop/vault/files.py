"""Owner-only permissions on the vault's files: directories 0700, files 0600.

The database is encrypted, but its size, its write times and the blob names still say something,
and a world-readable key header invites offline guessing of the passphrase. SQLite creates the
`-wal` and `-shm` files with the database file's own mode, so creating `vault.db` 0600 (before
SQLite does) covers them; `lock_down` repairs a vault made by an older version or copied loosely.
"""

import contextlib
import os
from pathlib import Path

from memos_desktop import paths

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` (and parents) if needed and make it owner-only."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def create_private(path: Path) -> None:
    """Create the empty file `path` owner-only if it does not exist (so whoever fills it keeps 0600)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    os.chmod(path, FILE_MODE)


def lock_down(data_dir: Path) -> None:
    """Make the vault's directory, its database files, key header and blobs owner-only (what this
    user may not change, on a read-only or foreign-owned copy, is left as it is)."""
    todo = [(data_dir, DIR_MODE)]
    for name in (paths.VAULT_HEADER, paths.VAULT_DB, paths.VAULT_DB + "-wal", paths.VAULT_DB + "-shm"):
        todo.append((data_dir / name, FILE_MODE))
    blobs = data_dir / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        todo.append((blobs, DIR_MODE))
        todo += [(item, FILE_MODE) for item in blobs.iterdir()]
    for path, mode in todo:
        with contextlib.suppress(OSError):
            if not path.is_symlink() and (path.is_dir() if mode == DIR_MODE else path.is_file()):
                os.chmod(path, mode)
