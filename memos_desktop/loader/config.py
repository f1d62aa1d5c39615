"""The loader's settings: watched folders and ignore rules, stored in the vault's settings.

Owns the `loader` settings key (a JSON object in the encrypted database) and nothing else: which
folders are watched, which files are ignored, size limits, debounce and chunk size. It never walks
the file system or touches cubes.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.errors import MemosError, NotFound

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

SETTING = "loader"
DEFAULT_IGNORE = [
    "node_modules/",
    "__pycache__/",
    "*.tmp",
    "*.swp",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "*.crdownload",
]


@dataclass
class LoaderConfig:
    """What the loader watches and skips. Paths are absolute and resolved."""

    roots: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE))
    include_hidden: bool = False
    use_gitignore: bool = True
    max_bytes: int = 8 * 1024 * 1024
    debounce_s: float = 0.25
    max_chunk_chars: int = 1500

    @classmethod
    def load(cls, vault: "Vault") -> "LoaderConfig":
        stored = vault.get_setting(SETTING) or {}
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, vault: "Vault") -> None:
        vault.set_setting(SETTING, asdict(self))

    def root_of(self, path: Path) -> Path | None:
        """The watched folder containing `path` (the deepest one), or None."""
        best = None
        for root in map(Path, self.roots):
            if (path == root or root in path.parents) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        return best


def add_root(vault: "Vault", path: Path) -> Path:
    """Start watching the folder `path`; returns its resolved form."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise MemosError(f"{root} is not a folder.")
    config = LoaderConfig.load(vault)
    if str(root) not in config.roots:
        config.roots.append(str(root))
        config.save(vault)
    return root


def remove_root(vault: "Vault", path: Path) -> Path:
    """Stop watching `path` (the files' memories stay unless the caller forgets them)."""
    config = LoaderConfig.load(vault)
    wanted = str(Path(path).expanduser().resolve())
    if wanted not in config.roots:
        raise NotFound(f"{wanted} is not a watched folder.")
    config.roots.remove(wanted)
    config.save(vault)
    return Path(wanted)
