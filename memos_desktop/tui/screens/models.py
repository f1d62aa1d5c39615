"""The models screen: registered language models, add, pull with progress, default, adapters.

The registry is the runtime's (`runtime.models`); this screen drives it. Loading a model runs in a
worker and reports in the header; a pull runs in a separate process, so Escape really stops it
(the hub download resumes next time) and its output never reaches the terminal, while the bytes
arrived so far feed a progress bar. The catalogue panel lists the models `model pull NAME` can
fetch with their fit on this machine; Enter on one pulls it (so does typing its name after l).
The starter model is labelled a tiny demo. Adapters are the parameter-memory cubes whose
`meta.path` names a LoRA file or directory; switching one on loads it with the model.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from memos_desktop.errors import MemosError
from memos_desktop.tui.screens.prompt import PromptScreen
from memos_desktop.tui.state import AppState, app_state
from memos_desktop.tui.widgets.guard import guarded
from memos_desktop.tui.widgets.safe import safe


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def load_model(app: AppState) -> tuple[Any, str] | None:
    """(backend, name) of the default model with its enabled adapter, if any, or None when no
    model is registered. Call on the app's model thread; status goes to the header by message."""
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.models import get_model, registry
    from memos_desktop.training.adapters import Adapters
    from memos_desktop.tui.messages import ModelStatus

    with app.session.access() as vault:
        if not registry(vault):
            app.post_message(ModelStatus("no model (F5 to add one)"))
            return None
        entry = get_model(vault)
    app.post_message(ModelStatus(f"loading {entry['name']}…"))
    backend = load_backend(Path(entry["path"]), LoadSettings(n_ctx=entry["n_ctx"], threads=entry.get("threads")))
    try:
        with app.session.access() as vault:
            Adapters(vault).apply(backend)  # parameter memory: the enabled adapter of this model
    except MemosError:
        backend.close()
        raise
    return backend, entry["name"]


def pull_main() -> None:
    """The pull process (`python -c ...`, argv: REPO FILE DEST): prints one JSON line with the
    file's size if the hub says, then one with the path or the error. Its stderr goes nowhere, so
    the hub client's progress bars never draw over the TUI."""
    import json
    import sys

    from memos_desktop.runtime.models import pull

    repo, filename, dest = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    print(json.dumps({"size": _remote_size(repo, filename)}), flush=True)
    try:
        print(json.dumps({"ok": str(pull(repo, filename, Path(dest)))}), flush=True)
    except MemosError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)


def _start_pull(repo: str, filename: str | None, dest: Path) -> "subprocess.Popen[str]":
    package_root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from memos_desktop.tui.screens.models import pull_main; pull_main()",
            repo,
            filename or "",
            str(dest),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
    )


class ModelsScreen(Screen):
    CSS_PATH = "models.tcss"

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
        self.pulling: subprocess.Popen[str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="models-top"):
            yield Static("", id="model-status")
            yield ProgressBar(id="pull-progress", show_eta=False)
        yield Static("Models", classes="panel-title")
        yield DataTable(id="model-table", cursor_type="row")
        yield Static("Catalogue (Enter pulls the selected model)", classes="panel-title")
        yield DataTable(id="catalogue-table", cursor_type="row")
        yield Static("Adapters (parameter memory)", classes="panel-title")
        yield DataTable(id="adapter-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#model-table", DataTable).add_columns("", "name", "runtime", "arch", "context", "size", "path")
        self.query_one("#adapter-table", DataTable).add_columns("on", "adapter", "version", "base model", "id")
        self.query_one("#catalogue-table", DataTable).add_columns("name", "size", "fit", "licence", "command")
        self.query_one("#pull-progress", ProgressBar).display = False
        self.refresh_tables()

    def on_screen_resume(self) -> None:
        self.refresh_tables()

    @work(thread=True, exclusive=True, group="models-list")
    @guarded
    def refresh_tables(self) -> None:
        from memos_desktop.runtime import catalogue
        from memos_desktop.runtime.models import list_models
        from memos_desktop.training.adapters import Adapters

        with app_state(self).session.access() as vault:
            models = list_models(vault)
            registry = Adapters(vault)
            found = [(cube, bool(registry.stale_sources(cube))) for cube in registry.cubes()]
        self.app.call_from_thread(self.show, models, found, catalogue.available())

    def show(self, models: list[dict], found: list, available: list[dict] | None = None) -> None:
        table = self.query_one("#model-table", DataTable)
        table.clear()
        for m in models:
            mark = "★" if m["default"] else ("missing" if not m["present"] else "")
            table.add_row(
                mark,
                safe(m["name"] + (" · tiny demo model" if m.get("starter") else "")),
                m["runtime"],
                m["arch"],
                str(m["n_ctx"]),
                size(m["size_bytes"]),
                safe(m["path"]),
                key=m["name"],
            )
        status = f"{app_state(self).model_status}."
        if not models:
            status += " No models yet: press a to add a GGUF file or MLX folder, or l to pull one."
        if available is not None:
            status += starter_hint(models, available)
            self.show_catalogue(available)
        self.query_one("#model-status", Static).update(safe(status))
        atable = self.query_one("#adapter-table", DataTable)
        atable.clear()
        for cube, stale in found:
            base = cube.meta.get("base", {})
            atable.add_row(
                "on" if cube.meta.get("enabled") else "off",
                safe(cube.title or cube.id),
                f"v{cube.version}" + (" · stale" if stale else ""),
                safe((base.get("gguf") or base.get("mlx") or {}).get("name", "")),
                cube.id,
                key=cube.id,
            )

    def show_catalogue(self, available: list[dict]) -> None:
        table = self.query_one("#catalogue-table", DataTable)
        table.clear()
        for row in available:
            table.add_row(
                row["name"],
                f"{row['size_bytes'] / 1e9:.2f} GB",
                row["fit"],
                row["licence"],
                safe(row["command"]),
                key=row["name"],
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "catalogue-table" and event.row_key.value:
            self.pull(event.row_key.value, None)

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
    def add(self, path: str, name: str | None = None, extra: dict | None = None) -> None:
        from memos_desktop.runtime.models import add_model

        def checked_add() -> dict:  # it loads the model: on the model thread
            with app_state(self).session.access() as vault:
                return add_model(vault, Path(path).expanduser(), name, extra=extra)

        self.app.call_from_thread(self.query_one("#model-status", Static).update, safe(f"Checking that {path} loads…"))
        try:
            entry = app_state(self).model_thread.submit(checked_add).result()
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

        with app_state(self).session.access() as vault:
            set_default(vault, name)
        self.after_change()

    def action_toggle_adapter(self) -> None:
        cube_id = self.selected("#adapter-table")
        if cube_id:
            self.toggle_adapter(cube_id)

    @work(thread=True, group="models-change")
    @guarded
    def toggle_adapter(self, cube_id: str) -> None:
        from memos_desktop.training.adapters import Adapters

        with app_state(self).session.access() as vault:
            registry = Adapters(vault)
            if registry.get(cube_id).meta.get("enabled"):
                registry.disable(cube_id, "disabled by the user")
            else:
                registry.enable(cube_id)
        self.after_change()

    def after_change(self) -> None:
        """Reload the model with the new default/adapters and refresh the tables."""
        self.app.call_from_thread(app_state(self).load_default_model)
        self.app.call_from_thread(self.refresh_tables)

    # ----- pull -----------------------------------------------------------------------------
    def action_pull(self) -> None:
        def done(text: str | None) -> None:
            if text and text.strip():
                repo, _, filename = text.strip().partition(" ")
                self.pull(repo, filename.strip() or None)

        self.app.push_screen(
            PromptScreen(
                "A catalogue name (see below), or a Hugging Face REPO FILE for a GGUF, or REPO for MLX:",
                placeholder="qwen2.5-1.5b",
            ),
            done,
        )

    def action_cancel(self) -> None:
        if self.pulling is not None:
            self.pulling.terminate()

    @work(thread=True, exclusive=True, group="models-pull")
    @guarded
    def pull(self, name_or_repo: str, filename: str | None) -> None:
        import json
        import select

        from memos_desktop.runtime.models import resolve_pull

        target = resolve_pull(name_or_repo, filename)
        repo, filename = target["repo"], target["file"]
        dest = app_state(self).data_dir / "models"
        process = _start_pull(repo, filename, dest)
        self.pulling = process
        self.app.call_from_thread(self.pull_progress, 0, None, f"Pulling {repo}… (Escape stops it)")
        total, outcome = None, None
        while outcome is None:
            assert process.stdout is not None  # started with stdout=PIPE
            ready, _, _ = select.select([process.stdout], [], [], 0.25)
            line = process.stdout.readline() if ready else ""
            if ready and not line:
                break  # the process ended (finished, failed, or stopped with Escape)
            message = json.loads(line) if line.strip() else {}
            total = message.get("size", total)
            if "ok" in message or "error" in message:
                outcome = message
            self.app.call_from_thread(self.pull_progress, _bytes_under(dest / repo.replace("/", "--")), total, None)
        process.wait()
        self.pulling = None
        self.app.call_from_thread(self.pull_progress, 0, 0, None)
        if outcome is None:
            self.app.call_from_thread(self.notify, "Pull stopped; pulling again resumes where it stopped.")
        elif "error" in outcome:
            self.app.call_from_thread(self.notify, outcome["error"], severity="error")
        else:
            self.app.call_from_thread(self.notify, f"Downloaded to {outcome['ok']}; adding it…")
            self.app.call_from_thread(self.add, outcome["ok"], target["name"], target["extra"])

    def pull_progress(self, done: int, total: int | None, text: str | None) -> None:
        bar = self.query_one("#pull-progress", ProgressBar)
        bar.display = self.pulling is not None
        bar.update(total=total or None, progress=done)
        if text:
            self.query_one("#model-status", Static).update(safe(text))


def starter_hint(models: list[dict], available: list[dict]) -> str:
    """Beside the starter (or no model): it is a tiny demo; these catalogue models fit here."""
    if models and not all(m.get("starter") for m in models):
        return ""
    from memos_desktop.runtime.catalogue import suggestions

    fitting = suggestions(available)
    lead = " The starter is a tiny demo model." if models else ""
    if not fitting:
        return lead + " No catalogue model fits the free memory now."
    return lead + " For better answers: " + "; ".join(f"`{r['command']}`" for r in fitting) + "."


def _bytes_under(path: Path) -> int:
    """Bytes on disk under `path` so far (finished and partial downloads)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remote_size(repo: str, filename: str | None) -> int | None:
    """The size of the file to pull, if the hub says (None for whole repos or when unreachable:
    the pull itself then reports why)."""
    if not filename:
        return None
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        return get_hf_file_metadata(hf_hub_url(repo, filename), timeout=5).size
    except Exception:
        return None
