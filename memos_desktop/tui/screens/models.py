"""The models screen: registered language models, add, pull with progress, default, adapters.

The registry is the runtime's (`runtime.models`); this screen drives it. Loading a model runs in a
worker and reports in the header; a pull runs in a separate process (so Escape can really stop
it; the hub download resumes next time) while a timer shows the bytes arrived. Adapters are the
parameter-memory cubes whose `meta.path` names a LoRA file or directory; switching one on loads
it with the model.
"""

import multiprocessing
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from memos_desktop.errors import MemosError
from memos_desktop.tui.screens.prompt import PromptScreen
from memos_desktop.tui.widgets.guard import guarded

ADAPTERS_ON = "adapters_enabled"  # setting: ids of the parameter cubes loaded with the model


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def adapters(vault) -> list:
    """Parameter-memory cubes that name an adapter on disk, with whether each is switched on."""
    on = set(vault.get_setting(ADAPTERS_ON, []) or [])
    cubes = vault.cubes(kind="parameter", limit=1000)
    return [(c, c.id in on) for c in cubes if c.meta.get("path")]


def load_model(app) -> None:
    """Load the default model and its switched-on adapters (call from a worker thread)."""
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.models import get_model, registry

    with app.vault_lock:
        if not registry(app.vault):
            app.call_from_thread(app.set_model_status, "no model (F5 to add one)")
            return
        entry = get_model(app.vault)
        enabled = [c for c, on in adapters(app.vault) if on]
    app.call_from_thread(app.set_model_status, f"loading {entry['name']}…")
    backend = load_backend(Path(entry["path"]), LoadSettings(n_ctx=entry["n_ctx"], threads=entry.get("threads")))
    try:
        for cube in enabled:
            backend.load_adapter(Path(cube.meta["path"]), float(cube.meta.get("scale", 1.0)))
    except MemosError:
        backend.close()
        raise
    app.call_from_thread(app.model_loaded, backend, entry["name"])


def _pull_child(repo: str, filename: str | None, dest: str, results) -> None:
    """Runs in the pull process: download, then report the path or the error message."""
    from memos_desktop.runtime.models import pull

    try:
        results.put(("ok", str(pull(repo, filename, Path(dest)))))
    except MemosError as exc:
        results.put(("error", str(exc)))


class ModelsScreen(Screen):
    BINDINGS = [
        Binding("a", "add", "Add file"),
        Binding("l", "pull", "Pull"),
        Binding("enter", "default", "Make default", show=False),
        Binding("m", "default", "Make default"),
        Binding("o", "toggle_adapter", "Adapter on/off"),
        Binding("escape", "cancel", "Cancel pull"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pulling = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="models-top"):
            yield Static("", id="model-status")
            yield ProgressBar(id="pull-progress", show_eta=False)
        yield Static("Models", classes="panel-title")
        yield DataTable(id="model-table", cursor_type="row")
        yield Static("Adapters (parameter memory)", classes="panel-title")
        yield DataTable(id="adapter-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#model-table", DataTable).add_columns("", "name", "runtime", "arch", "context", "size", "path")
        self.query_one("#adapter-table", DataTable).add_columns("on", "adapter", "scale", "path", "id")
        self.query_one("#pull-progress", ProgressBar).display = False
        self.refresh_tables()

    def on_screen_resume(self) -> None:
        self.refresh_tables()

    @work(thread=True, exclusive=True, group="models-list")
    @guarded
    def refresh_tables(self) -> None:
        from memos_desktop.runtime.models import list_models

        with self.app.vault_lock:
            models = list_models(self.app.vault)
            found = adapters(self.app.vault)
        self.app.call_from_thread(self.show, models, found)

    def show(self, models: list[dict], found: list) -> None:
        table = self.query_one("#model-table", DataTable)
        table.clear()
        for m in models:
            mark = "★" if m["default"] else ("missing" if not m["present"] else "")
            table.add_row(
                mark,
                m["name"],
                m["runtime"],
                m["arch"],
                str(m["n_ctx"]),
                size(m["size_bytes"]),
                Text(m["path"]),
                key=m["name"],
            )
        status = f"{self.app.model_status}."
        if not models:
            status += " No models yet: press a to add a GGUF file or MLX folder, or l to pull one."
        self.query_one("#model-status", Static).update(status)
        atable = self.query_one("#adapter-table", DataTable)
        atable.clear()
        for cube, on in found:
            atable.add_row(
                "on" if on else "off",
                Text(cube.title or cube.id),
                str(cube.meta.get("scale", 1.0)),
                Text(cube.meta["path"]),
                cube.id,
                key=cube.id,
            )

    def selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # ----- add, default, adapters -----------------------------------------------------------
    def action_add(self) -> None:
        def done(path: str | None) -> None:
            if path and path.strip():
                self.add(path.strip())

        self.app.push_screen(PromptScreen("Path of a GGUF file or MLX model folder:"), done)

    @work(thread=True, group="models-change")
    @guarded
    def add(self, path: str) -> None:
        from memos_desktop.runtime.models import add_model

        self.app.call_from_thread(self.query_one("#model-status", Static).update, f"Checking that {path} loads…")
        try:
            with self.app.vault_lock:
                entry = add_model(self.app.vault, Path(path).expanduser())
        finally:
            self.app.call_from_thread(self.refresh_tables)
        self.app.call_from_thread(self.notify, f"Added {entry['name']}.")
        self.after_change()

    def action_default(self) -> None:
        name = self.selected("#model-table")
        if name:
            self.make_default(name)

    @work(thread=True, group="models-change")
    @guarded
    def make_default(self, name: str) -> None:
        from memos_desktop.runtime.models import set_default

        with self.app.vault_lock:
            set_default(self.app.vault, name)
        self.after_change()

    def action_toggle_adapter(self) -> None:
        cube_id = self.selected("#adapter-table")
        if cube_id:
            self.toggle_adapter(cube_id)

    @work(thread=True, group="models-change")
    @guarded
    def toggle_adapter(self, cube_id: str) -> None:
        with self.app.vault_lock:
            on = set(self.app.vault.get_setting(ADAPTERS_ON, []) or [])
            on ^= {cube_id}
            self.app.vault.set_setting(ADAPTERS_ON, sorted(on))
        self.after_change()

    def after_change(self) -> None:
        """Reload the model with the new default/adapters and refresh the tables."""
        self.app.call_from_thread(self.app.load_default_model)
        self.app.call_from_thread(self.refresh_tables)

    # ----- pull -----------------------------------------------------------------------------
    def action_pull(self) -> None:
        def done(text: str | None) -> None:
            if text and text.strip():
                repo, _, filename = text.strip().partition(" ")
                self.pull(repo, filename.strip() or None)

        self.app.push_screen(
            PromptScreen(
                "Hugging Face repository and file (REPO FILE for a GGUF, REPO for MLX):",
                placeholder="Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q4_k_m.gguf",
            ),
            done,
        )

    def action_cancel(self) -> None:
        if self.pulling is not None:
            self.pulling.terminate()

    @work(thread=True, exclusive=True, group="models-pull")
    @guarded
    def pull(self, repo: str, filename: str | None) -> None:
        dest = self.app.data_dir / "models"
        total = _remote_size(repo, filename)
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        process = ctx.Process(target=_pull_child, args=(repo, filename, str(dest), results), daemon=True)
        self.pulling = process
        process.start()
        self.app.call_from_thread(self.pull_progress, 0, total, f"Pulling {repo}…")
        while process.is_alive():
            process.join(0.25)
            self.app.call_from_thread(self.pull_progress, _bytes_under(dest / repo.replace("/", "--")), total, None)
        self.pulling = None
        self.app.call_from_thread(self.pull_progress, 0, 0, None)
        if results.empty():
            self.app.call_from_thread(self.notify, "Pull stopped; pulling again resumes where it stopped.")
            return
        status, value = results.get()
        if status == "error":
            self.app.call_from_thread(self.notify, value, severity="error")
            return
        self.app.call_from_thread(self.notify, f"Downloaded to {value}; adding it…")
        self.app.call_from_thread(self.add, value)

    def pull_progress(self, done: int, total: int | None, text: str | None) -> None:
        bar = self.query_one("#pull-progress", ProgressBar)
        bar.display = self.pulling is not None
        bar.update(total=total or None, progress=done)
        if text:
            self.query_one("#model-status", Static).update(text)


def _bytes_under(path: Path) -> int:
    """Bytes on disk under `path` so far (finished and partial downloads)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remote_size(repo: str, filename: str | None) -> int | None:
    """The size of the file to pull, if the hub says (None for whole repos or when offline)."""
    if not filename:
        return None
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        return get_hf_file_metadata(hf_hub_url(repo, filename), timeout=5).size
    except Exception:
        return None
