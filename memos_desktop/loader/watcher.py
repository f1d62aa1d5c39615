"""The live watcher: watchdog file-system events → debounced `Loader` calls in one worker thread.

`Watcher` owns a worker thread that opens its own vault connection (through the factory it is
given), runs the startup reconciliation scan, then applies events: creations, modifications and
deletions are debounced per path (editors write a file several times per save), renames are applied
at once (the cubes follow the file). watchdog's own threads only put events on a queue; the vault
is touched by the worker thread alone, so the vault connection is never shared across threads.
Changes are written searchable by words at once; their vectors are computed afterwards, one
small batch at a time whenever no event is waiting, so a large startup scan is searchable by
keyword long before it is by meaning and never holds back a save. Every failure is recorded in the
status and the watcher keeps running. Status snapshots go to the
`on_status` callback, called from the worker thread (a TUI posts them to its own thread).
It never parses files or decides what changed in them (that is `ingest.py`).
"""

import functools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from memos_desktop.loader.config import LoaderConfig
from memos_desktop.loader.ingest import Loader, Report
from memos_desktop.loader.parsers import supported
from memos_desktop.loader.scan import IgnoreRules, walk
from memos_desktop.vault import Vault
from memos_desktop.vault import loader_files as status

if TYPE_CHECKING:
    from watchdog.observers.api import ObservedWatch

MAX_WAIT_FACTOR = 8  # a file written continuously is still synced every 8 debounce periods
SETTINGS_CHECK_S = 1.0  # how often the watched folders are re-read when another connection wrote


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot of the watcher for people: what it is doing and how the files stand."""

    state: str = "starting"  # starting, scanning, watching, stopped, failed
    roots: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)  # files per status (indexed, pending, ...)
    queued: int = 0  # paths waiting for their debounce
    scanned: tuple[int, int] = (0, 0)  # progress of the startup scan (done, total)
    vectors: tuple[int, int] = (0, 0)  # chunks embedded of those waiting when embedding began
    last_path: str = ""
    last_error: str = ""
    events: int = 0  # file-system events received
    syncs: int = 0  # loader runs applied


@dataclass(frozen=True)
class _Event:
    kind: str  # "file", "dir", "move"
    path: str
    dest: str = ""


class _Stopped(Exception):
    """Raised inside the startup scan when `stop()` is called."""


class _Handler(FileSystemEventHandler):
    """watchdog handler: turns events into `_Event`s on the queue (runs on watchdog's thread)."""

    def __init__(self, events: "queue.Queue[_Event | None]") -> None:
        super().__init__()
        self.events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = event.src_path.decode() if isinstance(event.src_path, bytes) else event.src_path
        if kind == "moved":
            dest = event.dest_path.decode() if isinstance(event.dest_path, bytes) else event.dest_path
            self.events.put(_Event("move", src, dest))
        elif event.is_directory:
            if kind in ("created", "deleted"):
                self.events.put(_Event("dir", src))
        elif kind in ("created", "modified", "deleted", "closed"):
            self.events.put(_Event("file", src))


class Watcher:
    """Watches the vault's watched folders and keeps their cubes current.

    `open_vault` is called once, in the worker thread; the watcher owns the vault it returns and
    closes it on stop. `on_status` receives `WatchStatus` snapshots from the worker thread.
    """

    def __init__(
        self,
        open_vault: Callable[[], Vault],
        on_status: Callable[[WatchStatus], None] | None = None,
        scan_on_start: bool = True,
    ) -> None:
        self._open_vault = open_vault
        self._on_status = on_status
        self._scan_on_start = scan_on_start
        self._events: queue.Queue[_Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._unembedded = False  # chunks may be waiting for vectors
        self._data_version: int | None = None  # of the vault when the settings were last read
        self.status = WatchStatus()

    # ----- control (any thread) ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="memos-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching; pending debounced changes are left to the next startup scan."""
        self._stop.set()
        self._events.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the startup scan is done and events are being applied (or it failed)."""
        return self._ready.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----- worker thread -------------------------------------------------------------------
    def _emit(self, **changes) -> None:
        self.status = replace(self.status, **changes)
        if self._on_status is not None:
            self._on_status(self.status)

    def _progress(self, done: int, total: int) -> None:
        if self._stop.is_set():
            raise _Stopped
        self._emit(scanned=(done, total))

    def _run(self) -> None:
        from watchdog.observers import Observer

        vault = None
        self._observer = Observer()
        self._watches: dict[Path, ObservedWatch | None] = {}
        try:
            vault = self._open_vault()
            loader = Loader(vault)
            self._observer.start()
            added = self._follow(loader)
            if self._scan_on_start and added:
                self._scan(loader, added)
            self._emit(state="watching", counts=status.counts(vault))
            self._ready.set()
            self._loop(loader)
            self._emit(state="stopped")
        except _Stopped:  # stopped during a scan; the next start resumes it
            self._emit(state="stopped")
        except Exception as exc:  # the worker must report, never die silently
            self._emit(state="failed", last_error=f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()
            if self._observer.is_alive():
                self._observer.stop()
                self._observer.join(timeout=10)
            if vault is not None:
                vault.close()

    def _follow(self, loader: Loader) -> list[Path]:
        """Follow the folders the loader's settings list now: schedule those not followed yet,
        unschedule those no longer listed; return the newly followed ones (to scan)."""
        wanted = [Path(r) for r in loader.config.roots if Path(r).is_dir()]
        missing = [r for r in loader.config.roots if not Path(r).is_dir()]
        problem = f"watched folder missing: {', '.join(missing)}" if missing else ""
        for root in [r for r in self._watches if r not in wanted]:
            watch = self._watches.pop(root)
            if watch is not None:
                self._observer.unschedule(watch)
        added = [r for r in wanted if r not in self._watches]
        for root in added:
            try:
                self._watches[root] = self._observer.schedule(_Handler(self._events), str(root), recursive=True)
            except OSError as exc:  # e.g. the inotify watch limit
                self._watches[root] = None
                problem = f"{root} is not followed live ({exc}); it is rescanned at each start"
        self._emit(roots=tuple(map(str, wanted)), last_error=problem or self.status.last_error)
        return added

    def _scan(self, loader: Loader, roots: list[Path]) -> None:
        """Reconcile `roots` with the vault (words now; vectors follow between events)."""
        self._emit(state="scanning", scanned=(0, 0))
        report = loader.scan(roots, progress=self._progress, embed=False)
        self._unembedded = loader.vault.embedder is not None
        self._emit(state="watching", last_error=_problem(report) or self.status.last_error)

    def _vault_changed(self, loader: Loader) -> bool:
        """Whether another connection wrote to the vault since the last call (always true at first)."""
        version = loader.vault.data_version()
        changed, self._data_version = version != self._data_version, version
        return changed

    def _settings_changed(self, loader: Loader) -> bool:
        """Whether the loader's settings in the vault differ from the loader's; if so the loader
        uses the new ones."""
        config = LoaderConfig.load(loader.vault)
        if config == loader.config:
            return False
        loader.config = config
        return True

    def _loop(self, loader: Loader) -> None:
        due: dict[str, tuple[float, float]] = {}  # path -> (first event, due time)
        folders: dict[str, float] = {}
        self._unembedded = loader.vault.embedder is not None
        checked = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - checked >= SETTINGS_CHECK_S:
                checked = now
                changed = self._vault_changed(loader)
                if changed and loader.vault.embedder is not None:
                    self._unembedded = True  # e.g. a one-off scan elsewhere left chunks to embed
                if changed and self._settings_changed(loader):  # e.g. `watch add` / `watch rm` elsewhere
                    added = self._follow(loader)
                    for path in [p for p in due if loader.config.root_of(Path(p)) is None]:
                        del due[path]  # a folder no longer watched: its memories stay as they are
                    if added:
                        self._scan(loader, added)
                    self._emit(counts=status.counts(loader.vault))
            soonest = min([d for _, d in due.values()] + list(folders.values()) + [checked + SETTINGS_CHECK_S])
            if self._unembedded and not self._events.qsize() and soonest > now:
                self._embed_some(loader)
                now, soonest = time.monotonic(), min(soonest, time.monotonic())
            try:
                event = self._events.get(timeout=max(0.0, soonest - now))
            except queue.Empty:
                event = None
            while event is not None:
                self._accept(event, loader, due, folders)
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    event = None
            if self._stop.is_set():
                return
            now = time.monotonic()
            ready = [p for p, (_, d) in due.items() if d <= now]
            for path in ready:
                del due[path]
            ready_dirs = [p for p, d in folders.items() if d <= now]
            for path in ready_dirs:
                del folders[path]
            if ready_dirs:
                ready += self._tree(loader, ready_dirs)
            if ready:
                self._apply(functools.partial(loader.sync, map(Path, ready), embed=False), ready[-1], loader)
            if len(due) + len(folders) != self.status.queued:
                self._emit(queued=len(due) + len(folders))

    def _accept(
        self, event: _Event, loader: Loader, due: dict[str, tuple[float, float]], folders: dict[str, float]
    ) -> None:
        self.status = replace(self.status, events=self.status.events + 1)  # reported with the next change
        now = time.monotonic()
        debounce = loader.config.debounce_s
        if event.kind == "move":
            due.pop(event.path, None)
            self._apply(lambda: loader.move(Path(event.path), Path(event.dest), embed=False), event.dest, loader)
        elif event.kind == "dir":
            folders[event.path] = now + debounce
        elif self._relevant(Path(event.path), loader.config):
            first = due.get(event.path, (now, 0.0))[0]
            due[event.path] = (first, min(now + debounce, first + MAX_WAIT_FACTOR * debounce))

    @staticmethod
    def _relevant(path: Path, config: LoaderConfig) -> bool:
        root = config.root_of(path)
        return root is not None and supported(path) and not IgnoreRules(root, config).ignored(path)

    @staticmethod
    def _tree(loader: Loader, folders: list[str]) -> list[str]:
        """Every file path a created or deleted folder may concern."""
        paths = []
        for folder in folders:
            if Path(folder).is_dir():
                boundary = loader.config.root_of(Path(folder))
                paths += [str(e.path) for e in walk(Path(folder), loader.config, boundary)]
            paths += list(status.load(loader.vault, prefix=folder))
        return paths

    def _embed_some(self, loader: Loader) -> None:
        """Embed one batch of chunks waiting for vectors; report progress over the backlog."""
        try:
            done, total = self.status.vectors
            if done >= total:  # a new backlog begins
                done, total = 0, loader.vault.pending_embeddings()
                if total == 0:
                    self._unembedded = False
                    return
                self._emit(vectors=(0, total))
            n = loader.embed_pending(limit=loader.embed_batch)
        except Exception as exc:  # e.g. the model cannot load: keyword search still works
            self._unembedded = False
            self._emit(last_error=f"embedding stopped: {type(exc).__name__}: {exc}")
            return
        if n == 0:  # the rest went away (deleted or changed files)
            self._unembedded = False
            total = done
        self._emit(vectors=(done + n, max(total, done + n)))

    def _apply(self, action: Callable[[], Report], path: str, loader: Loader) -> None:
        try:
            report = action()
            self._unembedded = loader.vault.embedder is not None
            self._emit(
                syncs=self.status.syncs + 1,
                last_path=path,
                last_error=_problem(report) or self.status.last_error,
                counts=status.counts(loader.vault),
            )
        except Exception as exc:  # one bad change must not stop the watcher
            self._emit(last_path=path, last_error=f"{path}: {type(exc).__name__}: {exc}")


def _problem(report: Report) -> str:
    if not report.problems:
        return ""
    path, reason = report.problems[-1]
    return f"{path}: {reason}"
