"""MemVault: the encrypted SQLite store of MemCubes (infrastructure layer)."""

from memos_desktop.vault.cube import MemCube
from memos_desktop.vault.store import Vault

__all__ = ["MemCube", "Vault"]
