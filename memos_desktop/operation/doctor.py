"""`memos-desktop doctor`: checks that the install can do its job, one line per check.

Each check returns (name, ok, detail). Checks never modify the vault beyond what opening it does.
"""

import platform
import sys
from pathlib import Path
from typing import Protocol

from memos_desktop import paths
from memos_desktop.errors import MemosError, from_storage
from memos_desktop.vault import Vault, db
from memos_desktop.vault.store import check_database_file


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
    if not db.exists() and not (ctx.data_dir / paths.VAULT_HEADER).exists():
        return [("vault", False, f"no vault in {ctx.data_dir}; run `memos-desktop init`")]
    try:
        check_database_file(ctx.data_dir)
    except MemosError as exc:
        return [("vault", False, str(exc))]
    with open(db, "rb") as fh:
        head = fh.read(16)
    encrypted = not head.startswith(b"SQLite format 3")
    out = [
        ("encryption", encrypted, "the database file is encrypted" if encrypted else "the database file is PLAINTEXT")
    ]
    try:
        vault = ctx.vault()
    except MemosError as exc:
        return [*out, ("vault", False, str(exc))]
    problems = vault.check_integrity()
    detail = "every page reads back whole" if not problems else "; ".join(problems[:3])
    if len(problems) > 3:
        detail += f" (and {len(problems) - 3} more problems)"
    out.append(("integrity", not problems, detail))
    try:
        out.append(("vault", True, f"unlocked {ctx.data_dir}, audit chain of {vault.verify_audit()} entries intact"))
    except Exception as exc:  # a damaged page or an altered chain is a failed check, not a crash
        out.append(("vault", False, str(from_storage(exc) or exc)))
        return out
    if vault.embedder is not None:
        from memos_desktop.embed.config import check

        out.extend(check(vault.embedder))
    else:
        out.append(("embedder", False, ctx.embedder_notice or "no embedder"))
    return out


def run(ctx: Checked) -> list[tuple[str, bool, str]]:
    """All checks, in order."""
    results = [("python", sys.version_info >= (3, 11), f"{platform.python_version()} on {platform.machine()}")]
    results.append(_check_sqlite())
    results.append(_check_vec())
    results.extend(_check_vault(ctx))
    return results
