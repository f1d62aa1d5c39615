"""`memos-desktop doctor`: checks that the install can do its job, one line per check.

Each check returns (name, ok, detail). Checks never modify the vault beyond what opening it does.
"""

import platform
import sys
from pathlib import Path
from typing import Protocol

from memos_desktop import paths
from memos_desktop.errors import MemosError
from memos_desktop.vault import Vault, db


class Checked(Protocol):
    """What the checks need from the caller (the CLI's context): where the vault is, opening it."""

    data_dir: Path

    @property
    def embedder_notice(self) -> str | None: ...

    def vault(self) -> Vault: ...


def _check_sqlite() -> tuple[str, bool, str]:
    try:
        version, cipher = db.cipher_version()
        return "sqlite", True, f"SQLite {version} with Multiple Ciphers ({cipher})"
    except Exception as exc:  # a broken install is reported, not raised
        return "sqlite", False, f"apsw-sqlite3mc is not usable: {exc}"


def _check_vec() -> tuple[str, bool, str]:
    try:
        return "sqlite-vec", True, f"loaded {db.vec_version()}"
    except Exception as exc:
        return "sqlite-vec", False, f"the extension does not load: {exc}"


def _check_vault(ctx: Checked) -> list[tuple[str, bool, str]]:
    db = ctx.data_dir / paths.VAULT_DB
    if not db.exists():
        return [("vault", False, f"no vault in {ctx.data_dir}; run `memos-desktop init`")]
    with open(db, "rb") as fh:
        head = fh.read(16)
    encrypted = not head.startswith(b"SQLite format 3")
    out = [
        ("encryption", encrypted, "the database file is encrypted" if encrypted else "the database file is PLAINTEXT")
    ]
    try:
        vault = ctx.vault()
        out.append(("vault", True, f"unlocked {ctx.data_dir}, audit chain of {vault.verify_audit()} entries intact"))
        if vault.embedder is not None:
            from memos_desktop.embed.config import check

            out.extend(check(vault.embedder))
        else:
            out.append(("embedder", False, ctx.embedder_notice or "no embedder"))
    except MemosError as exc:
        out.append(("vault", False, str(exc)))
    return out


def run(ctx: Checked) -> list[tuple[str, bool, str]]:
    """All checks, in order."""
    results = [("python", sys.version_info >= (3, 11), f"{platform.python_version()} on {platform.machine()}")]
    results.append(_check_sqlite())
    results.append(_check_vec())
    results.extend(_check_vault(ctx))
    return results
