"""The memos-desktop TUI application: unlock, then Chat, Memories, Sources, Models and Settings.

`MemosApp` holds the top-level state (the unlocked vault, the loaded model, the assistant) and the
global key bindings; each screen lives in `screens/`, reusable widgets in `widgets/`, look in
`app.tcss`. Slow work (Argon2id unlock, model load, generation, indexing) runs in workers, and
every access to the vault from the UI goes through `vault_lock`, so a worker's transaction and
the UI never interleave. Heavy modules are imported inside the functions that need them, so the
first frame appears quickly. No user-facing error is ever a traceback.
"""

import threading
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from memos_desktop.tui.screens.chat import ChatScreen
from memos_desktop.tui.screens.help import HelpScreen
from memos_desktop.tui.screens.memories import MemoriesScreen
from memos_desktop.tui.screens.models import ModelsScreen
from memos_desktop.tui.screens.settings import SettingsScreen
from memos_desktop.tui.screens.sources import SourcesScreen
from memos_desktop.tui.screens.unlock import UnlockScreen

SCREENS = ("chat", "memories", "sources", "models", "settings")


class MemosApp(App):
    """The assistant's terminal UI over the vault in `data_dir`."""

    TITLE = "memos"
    CSS_PATH = "app.tcss"
    MODES = {
        "unlock": UnlockScreen,
        "chat": ChatScreen,
        "memories": MemoriesScreen,
        "sources": SourcesScreen,
        "models": ModelsScreen,
        "settings": SettingsScreen,
    }
    DEFAULT_MODE = "unlock"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2", "goto('chat')", "Chat"),
        Binding("f3", "goto('memories')", "Memories"),
        Binding("f4", "goto('sources')", "Sources"),
        Binding("f5", "goto('models')", "Models"),
        Binding("f6", "goto('settings')", "Settings"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, data_dir: Path, embedder=None, llm=None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.vault = None
        self.llm = llm
        self.assistant = None
        self.vault_lock = threading.Lock()
        self.model_status = "no model"
        self._embedder = embedder

    # ----- unlocking and the model ----------------------------------------------------------
    def unlocked(self, vault) -> None:
        """Called (on the UI thread) once the vault is open: show the chat, load the model."""
        self.vault = vault
        if self._embedder is not None:
            vault.embedder = self._embedder
        self.rebuild_assistant()
        self.switch_mode("chat")
        if self.llm is None:
            self.load_default_model()
        self.start_watcher()

    def open_vault(self, passphrase: str, create: bool):
        """Open (or create) the vault; runs in a worker thread (Argon2id is slow on purpose)."""
        from memos_desktop.vault import Vault

        vault = (Vault.create if create else Vault.open)(self.data_dir, passphrase)
        if self._embedder is None:
            from memos_desktop.embed.config import embedder_for

            vault.embedder = embedder_for(vault)
        return vault

    def rebuild_assistant(self) -> None:
        from memos_desktop.assistant import Assistant

        self.assistant = Assistant(self.vault, self.llm)
        self.set_model_status(self.model_status if self.llm is None else f"model: {self.llm.name}")

    def set_model_status(self, text: str) -> None:
        self.model_status = text
        self.sub_title = text

    def load_default_model(self) -> None:
        from memos_desktop.tui.screens.models import load_default_model

        load_default_model(self)

    def start_watcher(self) -> None:
        from memos_desktop.tui.screens.sources import start_watcher

        start_watcher(self)

    # ----- navigation -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("goto", "help") and self.vault is None:
            return False
        return True

    def action_goto(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.vault is None:
            return
        for mode in SCREENS:
            yield SystemCommand(mode.title(), f"Open the {mode} screen", lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Help", "Key bindings and chat commands", self.action_help)
        yield SystemCommand("New conversation", "Start a fresh chat", self._new_conversation)
        for conv in self._conversations()[:20]:
            yield SystemCommand(
                f"Resume: {conv['title']}", f"{conv['turns']} turns · {conv['id']}",
                lambda cid=conv["id"]: self._resume(cid),
            )

    def _conversations(self) -> list[dict]:
        with self.vault_lock:
            return self.assistant.conversations()

    def _new_conversation(self) -> None:
        self.switch_mode("chat")
        self.screen.new_conversation()

    def _resume(self, conversation_id: str) -> None:
        self.switch_mode("chat")
        self.screen.resume(conversation_id)

    def on_unmount(self) -> None:
        from memos_desktop.tui.screens.sources import stop_watcher

        stop_watcher(self)
        if self.llm is not None and hasattr(self.llm, "close"):
            self.llm.close()
        if self.vault is not None:
            with self.vault_lock:
                self.vault.close()


def run_tui(data_dir: Path) -> None:
    """Open the TUI on the vault in `data_dir` (the `memos-desktop` command with no arguments)."""
    MemosApp(data_dir).run()
