"""The memories screen: search and filter cubes, see versions, edit, forget/restore, pin, TTL.

Every vault call runs in a worker thread under the app's vault lock; the table refreshes when it
returns. Forget is a tombstone (restorable from the "deleted" state filter), edits are new versions.
"""

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from memos_desktop.errors import MemosError
from memos_desktop.operation.scheduler import memory_line
from memos_desktop.tui.screens.prompt import PromptScreen
from memos_desktop.tui.state import app_state
from memos_desktop.tui.widgets.guard import guarded
from memos_desktop.vault.cube import MemCube

PERIODS = {
    "any time": None,
    "last day": 86400,
    "last week": 7 * 86400,
    "last month": 30 * 86400,
    "last year": 365 * 86400,
}
LIMIT = 500


def origin(cube) -> str:
    """Where a memory came from, in a word or a path: its file, "chat", or how it was added."""
    src = cube.source
    return src.get("path") or ("chat" if src.get("conversation") else src.get("command", ""))


def day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts)) if ts else ""


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


class MemoriesScreen(Screen):
    CSS_PATH = "memories.tcss"

    AUTO_FOCUS = "#memory-table"
    BINDINGS = [
        Binding("slash", "focus_search", "Search"),
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("d", "forget", "Forget"),
        Binding("u", "restore", "Restore"),
        Binding("p", "pin", "Pin"),
        Binding("t", "ttl", "TTL"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.cubes: dict[str, MemCube] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="memory-filters"):
            yield Input(placeholder="Search memories…", id="memory-search")
            yield Select(
                [(k, k) for k in ("plaintext", "activation", "parameter")], prompt="any kind", id="filter-kind"
            )
            yield Input(placeholder="tag", id="filter-tag")
            yield Input(placeholder="source file or chat", id="filter-source")
            yield Select([(p, p) for p in PERIODS], value="any time", allow_blank=False, id="filter-time")
            yield Select(
                [(s, s) for s in ("active", "archived", "deleted")],
                value="active",
                allow_blank=False,
                id="filter-state",
            )
        with Horizontal(id="memory-body"):
            yield DataTable(id="memory-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="memory-detail"):
                yield Static("", id="memory-text")
                yield Static("", id="memory-schedule", classes="muted")
                yield Static("Versions", classes="panel-title")
                yield DataTable(id="version-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#memory-table", DataTable)
        table.add_columns("★", "memory", "tags", "source", "updated", "expires")
        self.query_one("#version-table", DataTable).add_columns("v", "op", "by", "at", "content")
        self.refresh_table()

    def on_screen_resume(self) -> None:
        self.refresh_table()

    # ----- listing --------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        kind = self.query_one("#filter-kind", Select).value
        return {
            "query": self.query_one("#memory-search", Input).value.strip(),
            "kind": kind if isinstance(kind, str) else None,
            "tag": self.query_one("#filter-tag", Input).value.strip() or None,
            "source": self.query_one("#filter-source", Input).value.strip() or None,
            "period": PERIODS[str(self.query_one("#filter-time", Select).value)],
            "state": self.query_one("#filter-state", Select).value,
        }

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_table()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.refresh_table()

    @work(thread=True, exclusive=True, group="memories-list")
    @guarded
    def refresh_table(self) -> None:
        f = self.filters()
        with app_state(self).session.access() as vault:
            cubes = find(vault, **f)
        self.app.call_from_thread(self.show, cubes)

    def show(self, cubes: list) -> None:
        table = self.query_one("#memory-table", DataTable)
        selected = self.selected_id()
        table.clear()
        self.cubes = {c.id: c for c in cubes}
        for c in cubes:
            line = " ".join(memory_line(c).split())
            table.add_row(
                "★" if c.pinned else "",
                Text(line[:36]),
                Text(", ".join(c.tags)[:16]),
                Text(origin(c)[:16]),
                day(c.updated_at),
                day(c.expires_at),
                key=c.id,
            )
        if selected in self.cubes:
            table.move_cursor(row=table.get_row_index(selected))
        self.show_detail()

    def selected_id(self) -> str | None:
        table = self.query_one("#memory-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "memory-table":
            self.show_detail()

    def show_detail(self) -> None:
        cid = self.selected_id()
        cube = self.cubes.get(cid) if cid else None
        text = self.query_one("#memory-text", Static)
        versions = self.query_one("#version-table", DataTable)
        versions.clear()
        if cube is None:
            text.update("No memory selected.")
            return
        body = Text()
        body.append(cube.title + "\n" if cube.title else "", style="bold")
        body.append(cube.content[:2000])
        if cube.source:
            body.append(f"\n\n{cube.citation()}")
        body.append(f"\n\nid {cube.id}\n{cube.kind} · {cube.state} · version {cube.version}")
        if cube.valid_from:
            body.append(f" · valid from {when(cube.valid_from)}")
        body.append(f" · used {cube.access_count}×")
        text.update(body)
        self.load_versions(cube.id)

    @work(thread=True, exclusive=True, group="memories-versions")
    @guarded
    def load_versions(self, cube_id: str) -> None:
        from memos_desktop.operation.scheduler import MemScheduler

        with app_state(self).session.access() as vault:
            history = vault.history(cube_id)
            vault.record_read([cube_id], "tui")
            scheduler = MemScheduler(vault)
            decisions = scheduler.decisions(cube_id=cube_id, limit=5)
            uses = scheduler.uses(cube_id)
            hot = scheduler.is_hot(cube_id)
        self.app.call_from_thread(self._show_versions, history)
        lines = [f"Scheduler: used in {uses} answers · tier: {'hot (cached prefix)' if hot else 'plaintext'}"]
        lines += [f"  {when(d['at'])} {d['decision']}: {d['reason']}" for d in reversed(decisions)]
        self.app.call_from_thread(self.query_one("#memory-schedule", Static).update, Text("\n".join(lines)))

    def _show_versions(self, history: list[dict]) -> None:
        versions = self.query_one("#version-table", DataTable)
        versions.clear()
        for v in reversed(history):
            content = " ".join(v["snapshot"].get("content", "").split())
            versions.add_row(str(v["version"]), v["op"], v["actor"], when(v["at"]), Text(content[:60]))

    # ----- actions --------------------------------------------------------------------------
    def action_focus_search(self) -> None:
        self.query_one("#memory-search", Input).focus()

    def action_forget(self) -> None:
        self.change("forget")

    def action_restore(self) -> None:
        self.change("restore")

    def action_pin(self) -> None:
        cube = self.cubes.get(self.selected_id() or "")
        if cube is not None:
            self.change("edit", pinned=not cube.pinned)

    def action_edit(self) -> None:
        cube = self.cubes.get(self.selected_id() or "")
        if cube is None:
            return

        def done(text: str | None) -> None:
            if text is not None and text.strip() and text != cube.content:
                self.change("edit", content=text.strip())

        self.app.push_screen(PromptScreen(f"Edit memory {cube.id} (Ctrl+S saves)", cube.content, multiline=True), done)

    def action_ttl(self) -> None:
        if self.selected_id() is None:
            return

        def done(text: str | None) -> None:
            if text:
                from memos_desktop.parsing import parse_duration

                try:
                    self.change("edit", ttl=parse_duration(text))
                except MemosError as exc:
                    self.notify(str(exc), severity="error")

        self.app.push_screen(
            PromptScreen("Forget this memory after (e.g. 12h, 7d, 2w, never):", placeholder="7d"), done
        )

    def action_add(self) -> None:
        def done(text: str | None) -> None:
            if text and text.strip():
                self.add(text.strip())

        self.app.push_screen(PromptScreen("New memory (Ctrl+S saves)", multiline=True), done)

    @work(thread=True, group="memories-change")
    @guarded
    def add(self, text: str) -> None:
        with app_state(self).session.access():
            op = app_state(self).assistant.reader.command(f"/remember {text}")
        self.app.call_from_thread(self.notify, f"{op.op.title()}: {op.text}")
        self.app.call_from_thread(self.refresh_table)

    @work(thread=True, group="memories-change")
    @guarded
    def change(self, action: str, **changes) -> None:
        cube_id = self.selected_id()
        if cube_id is None:
            return
        with app_state(self).session.access() as vault:
            getattr(vault, action)(cube_id, **changes)
        done = {"forget": "Forgotten (restore it under state: deleted)", "restore": "Restored", "edit": "Saved"}[action]
        self.app.call_from_thread(self.notify, f"{done}: {cube_id}")
        self.app.call_from_thread(self.refresh_table)


def find(
    vault, query: str, kind: str | None, tag: str | None, source: str | None, period: float | None, state: str
) -> list:
    """Cubes matching the screen's filters: ranked search when there is a query, else newest first."""
    since = time.time() - period if period else None
    if query and state == "active":
        from memos_desktop.operation.search import Filters, search

        filters = Filters(kind=kind, tags=[tag] if tag else (), source_path=source)
        cubes = [h.cube for h in search(vault, query, k=100, filters=filters, record=False)]
    else:
        cubes = vault.cubes(kind=kind, tag=tag, state=state, limit=LIMIT)
        if source:
            cubes = [c for c in cubes if source in (c.source.get("path") or c.source.get("conversation") or "")]
        if query:
            words = query.lower().split()
            cubes = [c for c in cubes if all(w in (c.title + " " + c.content).lower() for w in words)]
    if since is not None:
        cubes = [c for c in cubes if c.updated_at >= since]
    return cubes
