"""Scanning: walk watched folders and decide, per path, whether the loader should look at it.

Owns the ignore rules (hidden files and folders, `.gitignore`-style patterns via pathspec, the
`.gitignore` files of the root and of every folder below it, each relative to its own folder with
deeper files taking precedence as in git, unsupported extensions, the size limit) and the walk
itself, which never follows a symlink out of the watched folder (the target is skipped with the
reason) nor into a folder it has already seen (symlink loops), and never yields the same file twice.
It only stats files; reading, parsing and the vault belong to `ingest.py`.
"""

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from memos_desktop.loader.config import LoaderConfig
from memos_desktop.loader.parsers import supported


@dataclass
class Entry:
    """A path the loader should know about: a candidate file (stat filled) or a skipped one."""

    path: Path
    mtime_ns: int = 0
    size: int = 0
    skip: str = ""  # why it is not indexed; empty for a candidate
    folder: bool = False  # a folder that could not be listed (its known files are kept as they are)
    boundary: str = ""  # the real path of the watched folder the file must stay inside when read


class IgnoreRules:
    """Which paths under one root are none of the loader's business. The configured patterns
    apply from the root; each folder's `.gitignore` (read once per `IgnoreRules`) applies to the
    paths below that folder, relative to it; where several match, the deepest decides."""

    def __init__(self, root: Path, config: LoaderConfig):
        self.root = root
        self.config = config
        self._specs: dict[Path, object | None] = {}

    def _spec(self, folder: Path):
        """The patterns that apply from `folder` (None when it has none)."""
        if folder not in self._specs:
            import pathspec

            lines = list(self.config.ignore) if folder == self.root else []
            gitignore = folder / ".gitignore"
            if self.config.use_gitignore:
                with contextlib.suppress(OSError):  # absent, unreadable or not a file
                    lines += gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
            self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[folder]

    def ignored(self, path: Path, is_dir: bool = False, parents_checked: bool = False) -> bool:
        """True for hidden paths (unless allowed) and paths matching an ignore pattern, or lying
        in an ignored folder (as in git, a deeper `.gitignore` cannot bring those back).
        `parents_checked` skips the folders above `path` (the walk never enters ignored ones)."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return True
        parts = rel.parts
        if not parts:
            return False
        if not self.config.include_hidden and any(p.startswith(".") for p in parts):
            return True
        first = len(parts) if parents_checked else 1
        return any(self._matches(parts[:end], is_dir or end < len(parts)) for end in range(first, len(parts) + 1))

    def _matches(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        """Whether the patterns of the root and of the folders down to `parts`' parent ignore it."""
        suffix = "/" if is_dir else ""
        verdict = None
        folder = self.root
        for depth in range(len(parts)):
            if depth:
                folder = folder / parts[depth - 1]
            spec = self._spec(folder)
            if spec is not None:
                include = spec.check_file("/".join(parts[depth:]) + suffix).include
                if include is not None:
                    verdict = include
        return bool(verdict)

    def check_file(self, path: Path, st: os.stat_result) -> str:
        """Why a candidate file is skipped ("" when it should be read)."""
        if st.st_size > self.config.max_bytes:
            mb = self.config.max_bytes / 1_000_000
            return f"larger than the {mb:g} MB limit ({st.st_size / 1_000_000:.1f} MB)"
        return ""


def _stat_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "broken symlink"
    return f"cannot be read: {exc.strerror or exc}"


def outside(path: Path | str, boundary: str) -> str:
    """Why `path` is skipped when it resolves (through symlinks) outside the real folder `boundary`, else "".

    A symlink in a notes folder may point anywhere (`/etc/passwd`, another user's files): only what
    lies inside the watched folder is the loader's to read.
    """
    real = os.path.realpath(path)
    if real == boundary or real.startswith(boundary.rstrip(os.sep) + os.sep):
        return ""
    return f"symlink to {real}, outside the watched folder"


def entry_for(path: Path, rules: IgnoreRules) -> Entry | None:
    """The entry for one file path (an event from the watcher), or None if it is ignored or gone."""
    if not supported(path) or rules.ignored(path):
        return None
    reason = outside(path, os.path.realpath(rules.root))
    if reason:
        return Entry(path, skip=reason)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Entry(path, skip=_stat_error(exc))
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(path, st.st_mtime_ns, st.st_size, rules.check_file(path, st), boundary=os.path.realpath(rules.root))


def read_inside(entry: Entry) -> bytes:
    """The bytes of `entry`'s file, read only if it still lies inside its watched folder: a file
    swapped for a symlink after the scan raises OutsideFolder, and the last path component is
    opened without following a symlink (O_NOFOLLOW), so a swap after the check fails to open."""
    real = os.path.realpath(entry.path)
    reason = outside(real, entry.boundary) if entry.boundary else ""
    if reason:
        raise OutsideFolder(reason)
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


class OutsideFolder(OSError):
    """A file that resolves outside its watched folder when it is about to be read."""


def walk(root: Path, config: LoaderConfig, boundary: Path | None = None) -> Iterator[Entry]:
    """Every supported file under `root` (depth first), and skipped paths with their reason. Symlinks
    are followed only to what lies inside `boundary` (the watched folder; default `root` itself)."""
    if root.is_file():
        entry = entry_for(root, IgnoreRules(root.parent, config))
        if entry:
            yield entry
        return
    inside = os.path.realpath(boundary or root)
    reason = outside(root, inside)
    if reason:
        yield Entry(root, skip=reason)
        return
    rules = IgnoreRules(root, config)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    try:
        st = root.stat()
    except OSError as exc:
        yield Entry(root, skip=_stat_error(exc))
        return
    seen_dirs.add((st.st_dev, st.st_ino))
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: (e.is_symlink(), e.name))  # real paths first
        except OSError as exc:
            yield Entry(folder, skip=_stat_error(exc), folder=True)
            continue
        for item in items:
            path = Path(item.path)
            if item.is_symlink():
                reason = outside(path, inside)
                if reason:
                    if not rules.ignored(path, parents_checked=True):
                        yield Entry(path, skip=reason)
                    continue
            try:
                st = item.stat(follow_symlinks=True)
            except OSError as exc:
                if (supported(path) or item.is_symlink()) and not rules.ignored(path, parents_checked=True):
                    yield Entry(path, skip=_stat_error(exc))
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if rules.ignored(path, is_dir=True, parents_checked=True):
                    continue
                if key in seen_dirs:
                    yield Entry(path, skip="symlink loop (folder already scanned)")
                    continue
                seen_dirs.add(key)
                stack.append(path)
            elif stat.S_ISREG(st.st_mode) and supported(path) and not rules.ignored(path, parents_checked=True):
                if key in seen_files:
                    yield Entry(path, skip="same file as another path (symlink)")
                    continue
                seen_files.add(key)
                yield Entry(path, st.st_mtime_ns, st.st_size, rules.check_file(path, st), boundary=inside)
