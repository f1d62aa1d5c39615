"""The sources screen: watched folders, every file's ingestion status, scan progress and cancel.

The live watcher (MemLoader's `Watcher`) runs on its own thread and vault connection, started by
the app after unlock; its status snapshots arrive here as messages. "Scan now" runs a one-off
reconciliation in a worker on the app's vault (under the vault lock) with a progress bar, and
Escape cancels it between files; files not reached stay pending for the next scan.
"""

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static
from textual.worker import get_current_worker

from memos_desktop.tui.screens.prompt import PromptScreen
from memos_desktop.tui.state import app_state
from memos_desktop.tui.widgets.guard import guarded


class ScanCancelled(Exception):
    """Raised from the scan's progress callback to stop it between two files."""


class SourcesScreen(Screen):
    CSS_PATH = "sources.tcss"

    BINDINGS = [
        Binding("a", "add", "Add folder"),
        Binding("d", "remove", "Stop watching"),
        Binding("s", "scan", "Scan now"),
        Binding("escape", "cancel", "Cancel scan"),
        Binding("r", "reload", "Refresh"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="sources-top"):
            yield Static("Watched folders", classes="panel-title")
            yield DataTable(id="roots-table", cursor_type="row")
            yield Static("", id="source-status")
            yield ProgressBar(id="scan-progress", show_eta=False)
        yield Static("Files", classes="panel-title")
        yield DataTable(id="source-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#roots-table", DataTable).add_columns("folder", "indexed", "pending", "skipped", "error")
        self.query_one("#source-table", DataTable).add_columns("file", "status", "reason", "chunks", "updated")
        self.query_one("#scan-progress", ProgressBar).display = False
        self.show_status(app_state(self).watch_status)
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    # ----- status ---------------------------------------------------------------------------
    def show_status(self, status) -> None:
        """Show a watcher status snapshot (state, queue, startup-scan progress, last problem)."""
        text = "The watcher is not running." if status is None else f"Watcher: {status.state}"
        if status is not None:
            if status.queued:
                text += f" · {status.queued} changes waiting"
            if status.last_error:
                text += f"\nLast problem: {status.last_error}"
            done, total = status.scanned
            embedding = status.state == "watching" and status.vectors[0] < status.vectors[1]
            if embedding:
                done, total = status.vectors
                text += f" · embedding: {done} of {total} chunks (all are searchable by words)"
            self.progress(done, total, status.state == "scanning" or embedding)
            if status.state == "watching":
                self.action_reload()
        self.query_one("#source-status", Static).update(text)

    def progress(self, done: int, total: int, active: bool) -> None:
        bar = self.query_one("#scan-progress", ProgressBar)
        bar.display = active
        if active:
            bar.update(total=max(total, 1), progress=done)

    # ----- listing --------------------------------------------------------------------------
    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="sources-list")
    @guarded
    def load(self) -> None:
        from memos_desktop.loader.config import LoaderConfig
        from memos_desktop.vault import loader_files as status

        with app_state(self).session.access() as vault:
            roots = LoaderConfig.load(vault).roots
            counts = {root: status.counts(vault, prefix=root) for root in roots}
            files = status.files(vault, limit=1000)
        self.app.call_from_thread(self.show, roots, counts, files)
        if roots and app_state(self).watcher is None:  # e.g. added with `watch add` while the app ran
            self.app.call_from_thread(app_state(self).start_watcher)

    def show(self, roots: list[str], counts: dict, files: list) -> None:
        table = self.query_one("#roots-table", DataTable)
        table.clear()
        for root in roots:
            c = counts[root]
            table.add_row(
                Text(root), str(c["indexed"]), str(c["pending"]), str(c["skipped"]), str(c["error"]), key=root
            )
        if not roots:
            self.query_one("#source-status", Static).update("No watched folders yet: press a to add one.")
        files_table = self.query_one("#source-table", DataTable)
        files_table.clear()
        for f in files:
            updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.updated_at)) if f.updated_at else ""
            files_table.add_row(Text(f.path), f.status, Text(f.reason[:60]), str(len(f.chunks)), updated)

    # ----- folders --------------------------------------------------------------------------
    def action_add(self) -> None:
        def done(path: str | None) -> None:
            if path and path.strip():
                self.add(path.strip())

        self.app.push_screen(PromptScreen("Watch which folder?", placeholder=str(Path.home() / "notes")), done)

    @work(thread=True, group="sources-change")
    @guarded
    def add(self, path: str) -> None:
        from memos_desktop.loader.config import add_root

        with app_state(self).session.access() as vault:
            root = add_root(vault, Path(path))
        self.app.call_from_thread(self.notify, f"Watching {root}; indexing starts now.")
        self.app.call_from_thread(app_state(self).start_watcher)  # a running watcher picks the change up itself
        self.app.call_from_thread(self.action_reload)

    def action_remove(self) -> None:
        table = self.query_one("#roots-table", DataTable)
        if table.row_count:
            root = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.unwatch(root)

    @work(thread=True, group="sources-change")
    @guarded
    def unwatch(self, root: str) -> None:
        from memos_desktop.loader.config import remove_root

        with app_state(self).session.access() as vault:
            remove_root(vault, Path(root))
        self.app.call_from_thread(self.notify, f"Stopped watching {root}; its memories stay.")
        self.app.call_from_thread(app_state(self).start_watcher)  # a running watcher picks the change up itself
        self.app.call_from_thread(self.action_reload)

    # ----- scanning -------------------------------------------------------------------------
    def action_scan(self) -> None:
        self.scan()

    def action_cancel(self) -> None:
        for worker in self.workers:
            if worker.group == "sources-scan":
                worker.cancel()

    @work(thread=True, exclusive=True, group="sources-scan")
    @guarded
    def scan(self) -> None:
        from memos_desktop.loader.ingest import Loader

        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.progress, done, total, True)
            if worker.is_cancelled:
                raise ScanCancelled

        self.app.call_from_thread(self.progress, 0, 1, True)
        try:
            with app_state(self).session.access() as vault:
                # with the watcher running, vectors are left to it (between its events, off the lock)
                report = Loader(vault).scan(progress=progress, embed=app_state(self).watcher is None)
            message = f"Scanned {report.files} files: {report.indexed} indexed, {report.unchanged} unchanged."
        except ScanCancelled:
            message = "Scan cancelled; the files not reached stay pending for the next scan."
        finally:
            self.app.call_from_thread(self.progress, 0, 0, False)
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.action_reload)
