"""Editing a memory in $EDITOR without its plaintext ever touching a disk.

The text goes to a file in a fresh owner-only (0700) directory on a RAM-backed filesystem
(`$XDG_RUNTIME_DIR` or `/dev/shm`, as `pass` does), the editor's swap and backup files land there
too, and the file is overwritten and removed afterwards. Where no RAM-backed directory exists the
edit is refused with the way around it (`--text`); a temp file on disk is never used.
"""

import os
import shutil
import tempfile
from pathlib import Path

import click

from memos_desktop.errors import MemosError

RAM_FILESYSTEMS = ("tmpfs", "ramfs")


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem `path` lives on (from /proc/self/mounts), or None if unknown."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def ram_dir(candidates: list[Path] | None = None) -> Path:
    """A RAM-backed directory we may write to; MemosError when there is none."""
    if candidates is None:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        candidates = [Path(runtime)] if runtime else []
        candidates.append(Path("/dev/shm"))
    for base in candidates:
        if base.is_dir() and os.access(base, os.W_OK | os.X_OK) and _filesystem(base) in RAM_FILESYSTEMS:
            return base
    raise MemosError(
        "No RAM-backed directory to edit in ($XDG_RUNTIME_DIR or /dev/shm), and the text must not be written "
        "to disk; pass the new text with --text instead."
    )


def edit_in_ram(text: str, candidates: list[Path] | None = None) -> str | None:
    """The text after the user edited it in $EDITOR, or None when the file was left unchanged."""
    private = Path(tempfile.mkdtemp(prefix="memos-edit-", dir=ram_dir(candidates)))  # mode 0700
    path = private / "memory.md"
    try:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            fh.write(text)
        before = path.stat().st_mtime_ns
        click.edit(filename=str(path))
        if path.stat().st_mtime_ns == before and path.read_text(encoding="utf-8") == text:
            return None
        return path.read_text(encoding="utf-8")
    finally:
        _shred(private)


def _shred(directory: Path) -> None:
    """Overwrite every file in `directory` with zeros, then remove it (RAM pages are freed too)."""
    for item in directory.rglob("*"):
        if item.is_file() and not item.is_symlink():
            try:
                size = item.stat().st_size
                with open(item, "r+b") as fh:
                    fh.write(b"\0" * size)
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)
