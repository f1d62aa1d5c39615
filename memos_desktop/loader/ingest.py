"""MemLoader's core: bring the vault's file cubes in line with the files on disk.

`Loader.scan` reconciles whole folders (startup, `ingest PATH`); `Loader.sync` handles single paths
(watcher events); `Loader.move` carries a renamed file's cubes to the new path. A file whose mtime
and size are unchanged is not read; one whose content hash is unchanged is not parsed; a modified
file's chunks are compared with its current cubes by chunk hash, so only changed chunks get a new
version (and a new embedding), shifted ones only a new source range, removed ones a tombstone.
The cubes of a file are found by their source path, never only through the state table, so a run
killed at any point resumes without duplicates. Indexing has two phases: every file's chunks are
first written searchable by words (no embedding, committed every `batch_chunks` chunks), then the
chunks that wait for a vector are embedded `embed_batch` at a time (`embed_pending`), so a large
folder is searchable by keyword long before it is by meaning, and a search in between finds the
not-yet-embedded chunks by their words.
A renamed file keeps its cubes' ids, history, embeddings and titles (the title names the file as it
was first indexed; the citation always uses the current path). It never watches the file system
(that is `watcher.py`) and never decides what a format means (that is `parsers.py`).
"""

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from memos_desktop.errors import IngestError, MemosError, NotFound
from memos_desktop.loader.chunking import Chunk, chunk_document
from memos_desktop.loader.config import LoaderConfig
from memos_desktop.loader.parsers import BINARY_REASON, LimitExceeded, is_binary, parse
from memos_desktop.loader.scan import Entry, IgnoreRules, OutsideFolder, entry_for, read_inside, walk
from memos_desktop.vault import loader_files as status
from memos_desktop.vault.cube import MemCube
from memos_desktop.vault.loader_files import FileState

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

ACTOR = "loader"
Progress = Callable[[int, int], None]


@dataclass
class Report:
    """What one scan or sync did."""

    files: int = 0
    unchanged: int = 0
    indexed: int = 0
    moved: int = 0
    removed: int = 0
    skipped: int = 0
    errors: int = 0
    cubes_added: int = 0
    cubes_updated: int = 0
    cubes_relocated: int = 0
    cubes_forgotten: int = 0
    links: int = 0
    bytes_read: int = 0
    vectors: int = 0  # chunks given a vector in this run (this run's and earlier runs' pending ones)
    seconds: float = 0.0
    index_seconds: float = 0.0  # until every file was searchable by words
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        """Chunks embedded in this run (new cubes and cubes whose text changed)."""
        return self.cubes_added + self.cubes_updated

    def to_dict(self) -> dict:
        return {**asdict(self), "embedded": self.embedded}


@dataclass
class _Batch:
    adds: list[dict] = field(default_factory=list)
    edits: list[tuple[str, dict]] = field(default_factory=list)
    forgets: list[str] = field(default_factory=list)
    states: list[FileState] = field(default_factory=list)


def _ulid() -> str:
    from ulid import ULID

    return str(ULID())


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-")


def _unchanged(state: FileState, entry: Entry) -> bool:
    """The file was read already (indexed, or skipped after reading: binary, over a parsing limit)
    and has the same mtime and size, so it is not read again."""
    settled = state.status == "indexed" or (state.status == "skipped" and bool(state.content_hash))
    return settled and (state.mtime_ns, state.size) == (entry.mtime_ns, entry.size)


def _range(source: dict) -> list[int]:
    for unit in ("lines", "pages", "paragraphs"):
        if unit in source:
            return source[unit]
    return [0, 0]


class Loader:
    """Ingests files into one vault. Not thread-safe: use it from the thread that owns the vault."""

    def __init__(
        self, vault: "Vault", config: LoaderConfig | None = None, batch_chunks: int = 256, embed_batch: int = 64
    ):
        self.vault = vault
        self.config = config or LoaderConfig.load(vault)
        self.batch_chunks = batch_chunks
        self.embed_batch = embed_batch
        self._names: tuple[dict[str, str], set[str]] | None = None

    # ----- entry points --------------------------------------------------------------------
    def scan(
        self,
        roots: Sequence[Path] | None = None,
        progress: Progress | None = None,
        embed: bool = True,
        embed_progress: Progress | None = None,
    ) -> Report:
        """Reconcile every file under `roots` (default: the watched folders) with the vault:
        first every file searchable by words (`progress(files done, files)`), then, with `embed`,
        every chunk still without a vector embedded (`embed_progress(chunks done, chunks)`)."""
        started = time.perf_counter()
        self._prepare_vectors()
        targets = [Path(r).expanduser().resolve() for r in roots] if roots else [Path(r) for r in self.config.roots]
        if not targets:
            raise MemosError("No folders to scan: add one with `memos-desktop watch add PATH`.")
        report = Report()
        for root in targets:
            if not root.exists():
                raise NotFound(f"{root} does not exist.")
            entries = list(walk(root, self.config))
            states = status.load(self.vault, prefix=str(root))
            seen = {str(e.path) for e in entries}
            unlisted = tuple(f"{e.path}{os.sep}" for e in entries if e.folder)
            gone = [p for p in states if p not in seen and not p.startswith(unlisted)]
            self._reconcile(entries, states, gone, report, progress)
        self._finish(report, started, embed, embed_progress)
        return report

    def sync(self, paths: Iterable[Path], embed: bool = True) -> Report:
        """Bring single files in line with the disk: index, update, skip or remove each."""
        started = time.perf_counter()
        self._prepare_vectors()
        report = Report()
        self._sync(paths, report)
        self._finish(report, started, embed, None)
        return report

    def embed_pending(self, limit: int | None = None, progress: Progress | None = None) -> int:
        """Embed chunks that wait for a vector: all of them, `embed_batch` per embedder call, or
        with `limit` one call of at most that many; return how many."""
        if self.vault.embedder is None:
            return 0
        if limit is not None:
            return self.vault.embed_pending(limit)
        return self.vault.reembed(self.embed_batch, progress)

    def _prepare_vectors(self) -> None:
        """Make the vector table current before writing, so that a search while chunks wait
        for vectors never embeds them all itself."""
        if self.vault.embedder is not None:
            self.vault.sync_vectors(reembed=False)

    def _finish(self, report: Report, started: float, embed: bool, progress: Progress | None) -> None:
        report.index_seconds = time.perf_counter() - started
        if embed:
            report.vectors = self.embed_pending(progress=progress)
        report.seconds = time.perf_counter() - started

    def move(self, src: Path, dst: Path, embed: bool = True) -> Report:
        """A file or folder was renamed: its cubes follow it (same ids, no re-embedding)."""
        started = time.perf_counter()
        self._prepare_vectors()
        report = Report()
        if status.get(self.vault, str(src)):
            moves = [(str(src), dst)]
        else:
            moves = [(p, dst / Path(p).relative_to(src)) for p in status.load(self.vault, prefix=str(src))]
        targets = [dst] if not moves else []
        for old, new in moves:
            root = self.config.root_of(new)
            if root is None or entry_for(new, IgnoreRules(root, self.config)) is None:
                targets.append(Path(old))
                continue
            if str(new) != old and status.get(self.vault, str(new)):
                self._remove(str(new), report)
            self._relocate(old, new, report)
            report.moved += 1
            targets.append(new)
        self._sync(targets, report)
        self._finish(report, started, embed, None)
        return report

    def _sync(self, paths: Iterable[Path], report: Report) -> None:
        entries: list[Entry] = []
        states: dict[str, FileState] = {}
        gone: list[str] = []
        for path in dict.fromkeys(Path(p) for p in paths):
            state = status.get(self.vault, str(path))
            if state:
                states[str(path)] = state
            root = self.config.root_of(path)
            entry = entry_for(path, IgnoreRules(root, self.config)) if root else None
            if entry:
                entries.append(entry)
            elif state:
                gone.append(str(path))
        self._reconcile(entries, states, gone, report, None)

    def forget(self, prefix: Path) -> int:
        """Tombstone the cubes of every known file under `prefix` and drop their states."""
        report = Report()
        for path in status.load(self.vault, prefix=str(prefix)):
            self._remove(path, report)
        return report.removed

    # ----- reconciliation ------------------------------------------------------------------
    def _reconcile(
        self,
        entries: list[Entry],
        states: dict[str, FileState],
        gone: list[str],
        report: Report,
        progress: Progress | None,
    ) -> None:
        report.files += len(entries)
        todo: list[tuple[Entry, FileState | None]] = []
        skipped: list[FileState] = []
        for entry in entries:
            path = str(entry.path)
            state = states.get(path)
            if entry.skip:
                report.skipped += 1
                if state is None or state.status != "skipped" or state.reason != entry.skip:
                    if state and state.chunks:
                        self._forget_cubes(path, report)
                    skipped.append(FileState(path, "skipped", entry.skip, mtime_ns=entry.mtime_ns, size=entry.size))
                continue
            if state is not None and _unchanged(state, entry):
                report.unchanged += 1
                continue
            todo.append((entry, state))
        status.put(self.vault, skipped)
        status.mark_pending(self.vault, [str(e.path) for e, _ in todo])
        moved_from = {
            states[p].content_hash: p for p in gone if states[p].status == "indexed" and states[p].content_hash
        }
        batch = _Batch()
        resolve: set[str] = set()
        for done, (entry, state) in enumerate(todo, start=1):
            self._ingest_one(entry, state, batch, report, moved_from, gone, resolve)
            if len(batch.adds) >= self.batch_chunks:
                self._flush(batch)
            if progress:
                progress(done, len(todo))
        self._flush(batch)
        for path in gone:
            self._remove(path, report)
        if report.cubes_added:
            resolve.update(status.with_unresolved_links(self.vault))
        self._resolve_links(resolve, report)

    def _ingest_one(
        self,
        entry: Entry,
        state: FileState | None,
        batch: _Batch,
        report: Report,
        moved_from: dict[str, str],
        gone: list[str],
        resolve: set[str],
    ) -> None:
        path = str(entry.path)
        try:
            data = read_inside(entry)
        except OutsideFolder as exc:  # swapped for a symlink after the scan: never read
            if state and state.chunks:
                self._forget_cubes(path, report)
            report.skipped += 1
            batch.states.append(FileState(path, "skipped", str(exc), mtime_ns=entry.mtime_ns, size=entry.size))
            return
        except FileNotFoundError:  # deleted between the scan (or event) and the read
            if state:
                gone.append(path)
            else:
                status.delete(self.vault, [path])
            return
        except OSError as exc:
            reason = (
                "permission denied" if isinstance(exc, PermissionError) else f"cannot be read: {exc.strerror or exc}"
            )
            self._failed(batch, entry, state, reason, report)
            return
        report.bytes_read += len(data)
        digest = hashlib.sha256(data).hexdigest()
        if state and state.status == "indexed" and state.content_hash == digest:
            state.mtime_ns, state.size = entry.mtime_ns, entry.size
            batch.states.append(state)
            report.unchanged += 1
            return
        if is_binary(entry.path, data):
            if state and state.chunks:
                self._forget_cubes(path, report)
            report.skipped += 1
            batch.states.append(FileState(path, "skipped", BINARY_REASON, digest, entry.mtime_ns, entry.size))
            return
        if not (state and state.chunks) and digest in moved_from:
            old = moved_from.pop(digest)
            gone.remove(old)
            self._relocate(old, entry.path, report)
            report.moved += 1
        try:
            new_state = self._plan(entry, digest, data, batch, report)
        except LimitExceeded as exc:  # a bomb or a monster file: skipped like one over the size limit
            if state and state.chunks:
                self._forget_cubes(path, report)
            report.skipped += 1
            report.problems.append((path, str(exc)))
            batch.states.append(FileState(path, "skipped", str(exc), digest, entry.mtime_ns, entry.size))
            return
        except Exception as exc:  # any parser failure on arbitrary input is this file's error
            reason = str(exc) if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
            self._failed(batch, entry, state, reason, report)
            return
        batch.states.append(new_state)
        report.indexed += 1
        if not (state and state.status == "indexed"):
            self._names = None  # a new file may be the target of links
        cubes = [c["cube"] for c in new_state.chunks]
        if (
            state
            and not state.unresolved
            and (state.links, [c["cube"] for c in state.chunks]) == (new_state.links, cubes)
        ):
            new_state.unresolved = 0  # same links from the same cubes: already linked
        elif new_state.links:
            resolve.add(path)

    def _failed(self, batch: _Batch, entry: Entry, state: FileState | None, reason: str, report: Report) -> None:
        report.errors += 1
        report.problems.append((str(entry.path), reason))
        kept = state or FileState(str(entry.path), "error")
        kept.status, kept.reason = "error", reason
        kept.mtime_ns, kept.size = entry.mtime_ns, entry.size
        batch.states.append(kept)

    def _plan(self, entry: Entry, digest: str, data: bytes, batch: _Batch, report: Report) -> FileState:
        """Parse and chunk one file, and queue the cube changes that make the vault match it."""
        path = entry.path
        doc = parse(path, data)
        chunks = chunk_document(doc, self.config.max_chunk_chars)
        old = sorted(self._cubes_of(str(path)), key=lambda c: _range(c.source))
        by_hash: dict[str, list[MemCube]] = {}
        for old_cube in old:
            by_hash.setdefault(old_cube.meta.get("loader", {}).get("hash", ""), []).append(old_cube)
        slots: list[MemCube | None] = [None] * len(chunks)
        same = [False] * len(chunks)
        for i, chunk in enumerate(chunks):
            if by_hash.get(chunk.hash):
                slots[i], same[i] = by_hash[chunk.hash].pop(0), True
        used = {c.id for c in slots if c}
        left = [c for c in old if c.id not in used]
        for i, chunk in enumerate(chunks):
            if slots[i] is None:
                match = next((c for c in left if c.source.get("heading", "") == chunk.heading), None)
                if match:
                    slots[i] = match
                    left.remove(match)
        mapping = []
        for i, chunk in enumerate(chunks):
            meta = {"loader": {"hash": chunk.hash}}
            if doc.meta:
                meta["front_matter"] = doc.meta
            source = chunk.source(path)
            cube = slots[i]
            if cube is None:
                cube_id = _ulid()
                batch.adds.append(
                    dict(
                        id=cube_id,
                        content=chunk.content,
                        title=chunk.title(path),
                        tags=chunk.tags,
                        source=source,
                        meta=meta,
                    )
                )
                report.cubes_added += 1
            elif same[i]:
                cube_id = cube.id
                if cube.source != source or cube.meta != meta:
                    batch.edits.append((cube_id, dict(source=source, meta=meta)))
                    report.cubes_relocated += 1
            else:
                cube_id = cube.id
                batch.edits.append(
                    (
                        cube_id,
                        dict(
                            content=chunk.content,
                            title=chunk.title(path),
                            tags=chunk.tags,
                            source=source,
                            meta=meta,
                        ),
                    )
                )
                report.cubes_updated += 1
            mapping.append(self._mapping(cube_id, chunk))
        batch.forgets += [c.id for c in left]
        report.cubes_forgotten += len(left)
        links = [[i, link.kind, link.target, link.anchor] for i, c in enumerate(chunks) for link in c.links]
        return FileState(
            str(path),
            "indexed",
            doc.warning,
            digest,
            entry.mtime_ns,
            entry.size,
            mapping,
            links,
            len(links),
        )

    @staticmethod
    def _mapping(cube_id: str, chunk: Chunk) -> dict:
        return {
            "cube": cube_id,
            "hash": chunk.hash,
            "heading": chunk.heading,
            chunk.unit: [chunk.start, chunk.end],
        }

    def _flush(self, batch: _Batch) -> None:
        """Apply queued cube changes, then record the files' states (a crash in between is
        repaired by the next run, which finds the cubes by source path)."""
        if batch.adds:
            self.vault.add_many(batch.adds, actor=ACTOR, embed=False)
        for cube_id, changes in batch.edits:
            self.vault.edit(cube_id, actor=ACTOR, embed=False, **changes)
        for cube_id in batch.forgets:
            self.vault.forget(cube_id, actor=ACTOR)
        status.put(self.vault, batch.states)
        batch.adds, batch.edits, batch.forgets, batch.states = [], [], [], []

    # ----- cubes of a file -----------------------------------------------------------------
    def _cubes_of(self, path: str) -> list[MemCube]:
        return self.vault.cubes(source_path=path, limit=1_000_000)

    def _forget_cubes(self, path: str, report: Report) -> None:
        for cube in self._cubes_of(path):
            self.vault.forget(cube.id, actor=ACTOR)
            report.cubes_forgotten += 1

    def _remove(self, path: str, report: Report) -> None:
        self._names = None
        self._forget_cubes(path, report)
        status.delete(self.vault, [path])
        report.removed += 1

    def _relocate(self, old: str, new: Path, report: Report) -> None:
        """Point the cubes and state of `old` at `new` (a source edit: no re-embedding)."""
        self._names = None
        for cube in self._cubes_of(old):
            self.vault.edit(cube.id, actor=ACTOR, source={**cube.source, "path": str(new)})
            report.cubes_relocated += 1
        state = status.get(self.vault, old)
        status.delete(self.vault, [old])
        if state:
            state.path = str(new)
            status.put(self.vault, [state])

    # ----- links between notes -------------------------------------------------------------
    def _resolve_links(self, paths: set[str], report: Report) -> None:
        """Link each chunk that mentions another note to that note's cube (`links_to`)."""
        if not paths:
            return
        by_name, known = self._name_index()
        targets: dict[str, FileState | None] = {}
        updated = []
        for path in sorted(paths):
            state = status.get(self.vault, path)
            if state is None or state.status != "indexed":
                continue
            unresolved = 0
            for index, kind, target, anchor in state.links:
                dst = self._target_path(path, kind, target, by_name, known)
                if dst is not None and dst not in targets:
                    targets[dst] = status.get(self.vault, dst)
                dst_state = targets.get(dst) if dst else None
                if index >= len(state.chunks) or dst_state is None or not dst_state.chunks:
                    unresolved += 1
                    continue
                dst_chunk = next(
                    (c for c in dst_state.chunks if anchor and _slug(c["heading"].split(" > ")[-1]) == _slug(anchor)),
                    dst_state.chunks[0],
                )
                src_cube = state.chunks[index]["cube"]
                if src_cube != dst_chunk["cube"]:
                    self.vault.link(src_cube, dst_chunk["cube"], "links_to")
                    report.links += 1
            if unresolved != state.unresolved:
                state.unresolved = unresolved
                updated.append(state)
        status.put(self.vault, updated)

    def _name_index(self) -> tuple[dict[str, str], set[str]]:
        """Indexed files by lower-case name and stem (for [[wikilinks]]), and the set of paths;
        kept until a file appears, disappears or moves."""
        if self._names is None:
            indexed = status.indexed_paths(self.vault)
            by_name: dict[str, str] = {}
            for p in indexed:
                name = os.path.basename(p).lower()
                by_name.setdefault(os.path.splitext(name)[0], p)
                by_name.setdefault(name, p)
            self._names = (by_name, set(indexed))
        return self._names

    @staticmethod
    def _target_path(path: str, kind: str, target: str, by_name: dict[str, str], known: set[str]) -> str | None:
        if kind == "wiki":
            name = target.lower()
            return by_name.get(name) or by_name.get(Path(name).name) or by_name.get(Path(name).stem)
        base = Path(path).parent / unquote(target)
        for candidate in (base, base.with_name(base.name + ".md")):
            resolved = str(Path(*candidate.parts).resolve(strict=False))
            if resolved in known:
                return resolved
        return None
