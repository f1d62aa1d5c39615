"""The memos-desktop TUI application: unlock, then Chat, Memories, Sources, Models and Settings.

`MemosApp` holds the top-level state (the unlocked vault, the loaded model, the assistant) and the
global key bindings; each screen lives in `screens/`, reusable widgets in `widgets/`, look in
`app.tcss` and `screens/*.tcss`. Slow work (Argon2id unlock, indexing) runs in workers; every use
of the model (load, answers, MemReader, close) runs on one long-lived `ModelThread`, which the app
waits on before it exits, so MLX's per-thread state never meets interpreter shutdown. The vault
is opened as a shared `Session`; every use of it from the UI or a worker goes through
`session.access()`, so a worker's transaction and the UI never interleave. Screens see the app
through `tui/state.py` and post `tui/messages.py`, so they never import this module. Heavy
modules are imported inside the functions that need them, so the first frame appears quickly.
No user-facing error is ever a traceback.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from memos_desktop.errors import MemosError
from memos_desktop.tui.messages import ModelLoaded, ModelStatus, WatcherStatus
from memos_desktop.tui.model_thread import ModelThread
from memos_desktop.tui.screens.unlock import UnlockScreen

if TYPE_CHECKING:
    from memos_desktop.loader.watcher import Watcher
    from memos_desktop.operation.session import Session
    from memos_desktop.operation.turn import Assistant
    from memos_desktop.tui.state import AppState
    from memos_desktop.vault import Vault

SCREENS = ("chat", "memories", "sources", "models", "settings")


def _screen(module: str, name: str) -> Screen:
    """A screen instance, its module imported on first use (the first frame needs only unlock)."""
    import importlib

    return getattr(importlib.import_module(f"memos_desktop.tui.screens.{module}"), name)()


class MemosApp(App[None]):
    """The assistant's terminal UI over the vault in `data_dir`."""

    TITLE = "memos"
    CSS_PATH = "app.tcss"
    MODES = {
        "unlock": UnlockScreen,
        "chat": lambda: _screen("chat", "ChatScreen"),
        "memories": lambda: _screen("memories", "MemoriesScreen"),
        "sources": lambda: _screen("sources", "SourcesScreen"),
        "models": lambda: _screen("models", "ModelsScreen"),
        "settings": lambda: _screen("settings", "SettingsScreen"),
    }
    DEFAULT_MODE = "unlock"
    BINDINGS = [
        Binding("f1", "help", "Help", priority=True),
        Binding("f2", "goto('chat')", "Chat", priority=True),
        Binding("f3", "goto('memories')", "Memories", priority=True),
        Binding("f4", "goto('sources')", "Sources", priority=True),
        Binding("f5", "goto('models')", "Models", priority=True),
        Binding("f6", "goto('settings')", "Settings", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, data_dir: Path, embedder: Any = None, llm: Any = None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self._session: Session | None = None
        self.llm = llm
        self._assistant: Assistant | None = None
        self.model_thread = ModelThread()
        self._incoming = None  # a loaded model whose ModelLoaded message is not handled yet
        self.model_status = "no model"
        self.model_name = llm.path.name if llm is not None else ""
        self.embedder_notice: str | None = None
        self.watcher: Watcher | None = None
        self.watch_status: Any = None
        self.chat_screen: Any = None
        self._embedder = embedder
        self._passphrase = ""

    @property
    def session(self) -> "Session":
        """The unlocked vault's session (the screens that use it run only after unlocking)."""
        if self._session is None:
            raise MemosError("The vault is still locked.")
        return self._session

    @property
    def assistant(self) -> "Assistant":
        if self._assistant is None:
            raise MemosError("The vault is still locked.")
        return self._assistant

    # ----- unlocking and the model ----------------------------------------------------------
    def unlocked(self, session: "Session") -> None:
        """Called (on the UI thread) once the vault is open: show the chat, load the model."""
        self._session = session
        vault = session.vault
        if self._embedder is not None:
            vault.embedder = self._embedder
        self.rebuild_assistant()
        self.switch_mode("chat")
        if vault.embedder is None and self.embedder_notice:
            self.notify(self.embedder_notice, severity="warning", timeout=10)  # keyword-only search
        if self.llm is None:
            self.load_default_model()
        self.start_watcher()

    def open_vault(self, passphrase: str, create: bool) -> "Session":
        """Open (or create) the vault as a session shared by the UI and workers; runs in a worker
        thread (Argon2id is slow on purpose)."""
        from memos_desktop.operation.session import Session

        session = Session.open(self.data_dir, passphrase, embedder=self._embedder is None, create=create, shared=True)
        self._passphrase = passphrase
        self.embedder_notice = session.embedder_notice
        return session

    def rebuild_assistant(self) -> None:
        """A new Assistant over the vault and the loaded model, with the stored settings."""
        from dataclasses import asdict

        from memos_desktop.operation.turn import Assistant, AssistantSettings

        with self.session.access() as vault:
            settings = AssistantSettings.load(vault)
        self._assistant = Assistant(self.session.vault, self.llm, **asdict(settings))
        self.set_model_status(self.model_status if self.llm is None else f"model: {self.model_name}")

    def set_model_status(self, text: str) -> None:
        self.model_status = text
        self.sub_title = text

    def load_default_model(self) -> None:
        """Load the default model (and its adapters) on the model thread, after stopping an
        answer in progress; the header shows progress."""
        if self.chat_screen is not None:
            self.chat_screen.cancel.set()
        self.model_thread.submit(self._load_model)

    def _load_model(self) -> None:
        """On the model thread: reports only by messages (the UI may be waiting for this thread)."""
        from memos_desktop.tui.screens.models import load_model

        try:
            loaded = load_model(cast("AppState", self))
        except MemosError as exc:
            self.post_message(ModelStatus("no model", str(exc)))
            return
        except Exception as exc:  # a broken model file must not take the app down
            self.post_message(ModelStatus("no model", f"The model could not be loaded ({exc!r})."))
            return
        if loaded is not None:
            self._incoming = loaded[0]
            self.post_message(ModelLoaded(*loaded))

    def on_model_status(self, message: ModelStatus) -> None:
        self.set_model_status(message.text)
        if message.error:
            self.notify(message.error, severity="error", timeout=8)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        """Use the new model; the old one closes on the model thread, after any answer using it."""
        old, self.llm = self.llm, message.backend
        if self._incoming is message.backend:
            self._incoming = None
        self.model_name = message.name
        if old is not None and old is not message.backend:
            self.model_thread.submit(old.close)
        self.rebuild_assistant()

    # ----- the live watcher (MemLoader) -----------------------------------------------------
    def start_watcher(self) -> None:
        """Start MemLoader's watcher on its own vault connection if any folder is watched."""
        from memos_desktop.loader.config import LoaderConfig
        from memos_desktop.loader.watcher import Watcher

        with self.session.access() as vault:
            roots = LoaderConfig.load(vault).roots
        if not roots or self.watcher is not None:
            return

        def report(status: Any) -> None:
            self.post_message(WatcherStatus(status))

        self.watcher = Watcher(self._watcher_vault, on_status=report)
        self.watcher.start()

    def _watcher_vault(self) -> "Vault":
        """The watcher's own connection (opened in its thread), sharing the app's embedder."""
        from memos_desktop.vault import Vault

        vault = Vault.open(self.data_dir, self._passphrase)
        vault.embedder = self.session.vault.embedder
        return vault

    def stop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()

    def on_watcher_status(self, message: "WatcherStatus") -> None:
        self.watch_status = message.status
        if self.current_mode == "sources":
            cast(Any, self.screen).show_status(message.status)  # the sources screen

    # ----- navigation -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return not (action in ("goto", "help") and self._session is None)

    def action_goto(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_help(self) -> None:
        from memos_desktop.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self._session is None:
            return
        for mode in SCREENS:
            yield SystemCommand(mode.title(), f"Open the {mode} screen", lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Help", "Key bindings and chat commands", self.action_help)
        yield SystemCommand("New conversation", "Start a fresh chat", self._new_conversation)
        for conv in self._conversations()[:20]:
            yield SystemCommand(
                f"Resume: {conv['title']}",
                f"{conv['turns']} turns · {conv['id']}",
                lambda cid=conv["id"]: self._resume(cid),
            )

    def _conversations(self) -> list[dict[str, Any]]:
        with self.session.access():
            return self.assistant.conversations()

    def _new_conversation(self) -> None:
        self.switch_mode("chat")
        cast(Any, self.screen).new_conversation()  # the chat screen

    def _resume(self, conversation_id: str) -> None:
        self.switch_mode("chat")
        cast(Any, self.screen).resume(conversation_id)  # the chat screen

    def on_unmount(self) -> None:
        """Stop the answer, the watcher and the model thread's work, close the model on that
        thread and wait for it: it is idle before the interpreter starts shutting down."""
        if self.chat_screen is not None:
            self.chat_screen.stop_and_wait()
        self.stop_watcher()
        self.model_thread.wait_idle()
        for backend in {id(b): b for b in (self.llm, self._incoming) if b is not None}.values():
            if hasattr(backend, "close"):
                self.model_thread.submit(backend.close)
        self.model_thread.wait_idle()
        if self._session is not None:
            self._session.close()


def run_tui(data_dir: Path) -> None:
    """Open the TUI on the vault in `data_dir` (the `memos-desktop` command with no arguments)."""
    MemosApp(data_dir).run()
