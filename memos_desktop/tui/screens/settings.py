"""The settings screen: how the assistant answers and remembers, the look, and the vault's facts.

Settings live in the encrypted vault (`assistant` key), so they travel with it; their defaults
and limits live in one place, `operation.turn.TurnSettings`. Saving rebuilds the assistant with
them. Nothing here is slow enough to need a worker except reading stats.
"""

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static, Switch

from memos_desktop.errors import MemosError
from memos_desktop.tui.state import app_state
from memos_desktop.tui.widgets.guard import guarded
from memos_desktop.tui.widgets.safe import safe

NUMBERS = {  # input id → (label, TurnSettings field type)
    "answer_tokens": ("Longest answer (tokens)", int),
    "temperature": ("Temperature (0 = always the same answer)", float),
    "top_p": ("Top-p (share of likely words kept)", float),
    "min_p": ("Min-p (drop words far less likely than the best)", float),
    "repeat_penalty": ("Repeat penalty (1 = none)", float),
}


class SettingsScreen(Screen):
    CSS_PATH = "settings.tcss"

    BINDINGS = [Binding("ctrl+s", "save", "Save")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings-box"):
            yield Static("Assistant", classes="panel-title")
            with Horizontal(classes="setting"):
                yield Label("Remember facts from chats automatically")
                yield Switch(id="extract")
            with Horizontal(classes="setting"):
                yield Label("Reuse the cached prefix (activation memory)")
                yield Switch(id="activation")
            with Horizontal(classes="setting"):
                yield Label("Model's recommended sampling, when it has one")
                yield Switch(id="recommended")
            for key, (label, kind) in NUMBERS.items():
                with Horizontal(classes="setting"):
                    yield Label(label)
                    yield Input(id=key, type="integer" if kind is int else "number")
            yield Static("Look", classes="panel-title")
            with Horizontal(classes="setting"):
                yield Label("Theme")
                yield Select(
                    [(t, t) for t in sorted(self.app.available_themes)],
                    allow_blank=False,
                    value=self.app.theme,
                    id="theme",
                )
            yield Button("Save", variant="primary", id="save")
            yield Static("Vault", classes="panel-title")
            yield Static("", id="vault-facts")
        yield Footer()

    def on_mount(self) -> None:
        from memos_desktop.operation.turn import load_settings

        with app_state(self).session.access() as vault:
            values = load_settings(vault)
        self.query_one("#extract", Switch).value = values.extract
        self.query_one("#activation", Switch).value = values.activation
        self.query_one("#recommended", Switch).value = values.sampling == "recommended"
        for key in NUMBERS:
            self.query_one(f"#{key}", Input).value = str(getattr(values, key))
        self.load_facts()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "theme" and isinstance(event.value, str):
            self.app.theme = event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save()

    def action_save(self) -> None:
        from memos_desktop.operation.turn import TurnSettings, save_settings

        try:
            numbers = {key: kind(self.query_one(f"#{key}", Input).value) for key, (_, kind) in NUMBERS.items()}
        except ValueError:
            self.notify("Answer length and the sampling values must be numbers.", severity="error")
            return
        try:
            settings = TurnSettings(
                **numbers,
                sampling="recommended" if self.query_one("#recommended", Switch).value else "custom",
                activation=self.query_one("#activation", Switch).value,
                extract=self.query_one("#extract", Switch).value,
            )
            with app_state(self).session.access() as vault:
                save_settings(vault, settings)
        except MemosError as exc:
            self.notify(str(exc), severity="error")
            return
        app_state(self).rebuild_assistant()
        self.notify("Settings saved.")

    @work(thread=True, exclusive=True, group="settings-facts")
    @guarded
    def load_facts(self) -> None:
        with app_state(self).session.access() as vault:
            stats = vault.stats()
        cubes = ", ".join(f"{k}: {n}" for k, n in stats["cubes"].items()) or "none yet"
        lines = [
            f"Folder: {vault.data_dir}",
            f"Encrypted: {'yes' if stats['encrypted'] else 'no'}",
            f"Memories: {cubes}",
            f"Versions: {stats['versions']} · audit entries: {stats['audit_entries']}",
            f"Embedding model: {stats['embed_model'] or 'none (keyword search only)'}",
        ]
        self.app.call_from_thread(self.query_one("#vault-facts", Static).update, safe("\n".join(lines)))
