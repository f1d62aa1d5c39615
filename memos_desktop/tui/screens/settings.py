"""The settings screen: how the assistant answers and remembers, the look, and the vault's facts.

Settings live in the encrypted vault (`assistant` key), so they travel with it; saving rebuilds
the assistant with them. Nothing here is slow enough to need a worker except reading stats.
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
                yield Label("Longest answer (tokens)")
                yield Input(id="answer_tokens", type="integer")
            with Horizontal(classes="setting"):
                yield Label("Temperature (0 = always the same answer)")
                yield Input(id="temperature", type="number")
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
        from memos_desktop.operation.turn import AssistantSettings

        with app_state(self).session.access() as vault:
            values = AssistantSettings.load(vault)
        self.query_one("#extract", Switch).value = values.extract
        self.query_one("#activation", Switch).value = values.activation
        self.query_one("#answer_tokens", Input).value = str(values.answer_tokens)
        self.query_one("#temperature", Input).value = str(values.temperature)
        self.load_facts()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "theme" and isinstance(event.value, str):
            self.app.theme = event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            tokens = int(self.query_one("#answer_tokens", Input).value)
            temperature = float(self.query_one("#temperature", Input).value)
        except ValueError:
            self.notify("Answer length and temperature must be numbers.", severity="error")
            return
        if not (16 <= tokens <= 8192 and 0 <= temperature <= 2):
            self.notify("Answer length must be 16–8192 tokens and temperature 0–2.", severity="error")
            return
        from memos_desktop.operation.turn import AssistantSettings

        values = AssistantSettings(
            answer_tokens=tokens,
            temperature=temperature,
            activation=self.query_one("#activation", Switch).value,
            extract=self.query_one("#extract", Switch).value,
        )
        try:
            with app_state(self).session.access() as vault:
                values.save(vault)
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
        self.app.call_from_thread(self.query_one("#vault-facts", Static).update, "\n".join(lines))
