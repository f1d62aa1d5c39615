"""Where memos-desktop keeps its files: the data directory and the names inside it.

The data directory is `--data-dir`, else `$MEMOS_HOME`, else the platform's user data dir.
This module only computes paths; it never creates, reads or writes files.
"""

import os
from pathlib import Path

VAULT_DB = "vault.db"
VAULT_HEADER = "vault.key"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data directory to use, from an explicit override, `$MEMOS_HOME`, or the platform."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MEMOS_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("memos-desktop", appauthor=False))


def cache_dir() -> Path:
    """Where regenerable files live (converted embedding models, generated test models)."""
    env = os.environ.get("MEMOS_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("memos-desktop", appauthor=False))
