"""The memos-desktop TUI application: unlock, then Chat, Memories, Sources, Models and Settings.

`MemosApp` holds the top-level state (the unlocked vault, the loaded model, the assistant) and the
global key bindings; each screen lives in `screens/`, reusable widgets in `widgets/`, look in
`app.tcss` and `screens/*.tcss`. Slow work (Argon2id unlock, indexing) runs in workers; every use
of the model (load, answers, MemReader, close) runs on one long-lived `ModelThread`, which the app
waits on before it exits, so MLX's per-thread state never meets interpreter shutdown. Every
access to the vault from the UI goes through `vault_lock`, so a worker's transaction and the UI
never interleave. Heavy modules are imported inside the functions that need them, so the
first frame appears quickly. No user-facing error is ever a traceback.
"""

import threading
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from memos_desktop.errors import MemosError
from memos_desktop.tui.model_thread import ModelThread
from memos_desktop.tui.screens.unlock import UnlockScreen

SCREENS = ("chat", "memories", "sources", "models", "settings")


def _screen(module: str, name: str) -> Screen:
    """A screen instance, its module imported on first use (the first frame needs only unlock)."""
    import importlib

    return getattr(importlib.import_module(f"memos_desktop.tui.screens.{module}"), name)()


class WatcherStatus(Message):
    """A status snapshot from the watcher thread."""

    def __init__(self, status) -> None:
        self.status = status
        super().__init__()


class ModelStatus(Message):
    """The model's state for the header, from the model thread (an error also becomes a notice)."""

    def __init__(self, text: str, error: str | None = None) -> None:
        self.text = text
        self.error = error
        super().__init__()


class ModelLoaded(Message):
    """A model finished loading on the model thread and can replace the current one."""

    def __init__(self, backend, name: str) -> None:
        self.backend = backend
        self.name = name
        super().__init__()


def _configured_embedder(vault):
    """(embedder or None, notice) as configured for this vault, safe to share across threads."""
    from memos_desktop.embed.config import embedder_status
    from memos_desktop.operation.session import SharedEmbedder

    embedder, notice = embedder_status(vault)
    return (SharedEmbedder(embedder) if embedder is not None else None), notice


class MemosApp(App):
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

    def __init__(self, data_dir: Path, embedder=None, llm=None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.vault = None
        self.llm = llm
        self.assistant = None
        self.vault_lock = threading.Lock()
        self.model_thread = ModelThread()
        self._incoming = None  # a loaded model whose ModelLoaded message is not handled yet
        self.model_status = "no model"
        self.model_name = llm.path.name if llm is not None else ""
        self.embedder_notice = None
        self.watcher = None
        self.watch_status = None
        self.chat_screen = None
        self._embedder = embedder
        self._passphrase = ""

    # ----- unlocking and the model ----------------------------------------------------------
    def unlocked(self, vault) -> None:
        """Called (on the UI thread) once the vault is open: show the chat, load the model."""
        self.vault = vault
        if self._embedder is not None:
            vault.embedder = self._embedder
        self.rebuild_assistant()
        self.switch_mode("chat")
        if vault.embedder is None and self.embedder_notice:
            self.notify(self.embedder_notice, severity="warning", timeout=10)  # keyword-only search
        if self.llm is None:
            self.load_default_model()
        self.start_watcher()

    def open_vault(self, passphrase: str, create: bool):
        """Open (or create) the vault; runs in a worker thread (Argon2id is slow on purpose)."""
        from memos_desktop.runtime.models import ensure_starter
        from memos_desktop.vault import Vault

        vault = (Vault.create if create else Vault.open)(self.data_dir, passphrase)
        ensure_starter(vault)  # first run: the offline demo model, once
        self._passphrase = passphrase
        if self._embedder is None:
            vault.embedder, self.embedder_notice = _configured_embedder(vault)
        return vault

    def rebuild_assistant(self) -> None:
        """A new Assistant over the vault and the loaded model, with the stored settings."""
        from memos_desktop.operation.turn import Assistant
        from memos_desktop.tui.screens.settings import assistant_settings

        with self.vault_lock:
            settings = assistant_settings(self.vault)
        self.assistant = Assistant(self.vault, self.llm, **settings)
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
            loaded = load_model(self)
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

        with self.vault_lock:
            roots = LoaderConfig.load(self.vault).roots
        if not roots or self.watcher is not None:
            return
        self.watcher = Watcher(self._watcher_vault, on_status=lambda s: self.post_message(WatcherStatus(s)))
        self.watcher.start()

    def _watcher_vault(self):
        """The watcher's own connection (opened in its thread), sharing the app's embedder."""
        from memos_desktop.vault import Vault

        vault = Vault.open(self.data_dir, self._passphrase)
        vault.embedder = self.vault.embedder
        return vault

    def stop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()

    def on_watcher_status(self, message: "WatcherStatus") -> None:
        self.watch_status = message.status
        if self.current_mode == "sources":
            self.screen.show_status(message.status)

    # ----- navigation -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return not (action in ("goto", "help") and self.vault is None)

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
        if self.vault is None:
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
        if self.vault is not None:
            with self.vault_lock:
                self.vault.close()


def run_tui(data_dir: Path) -> None:
    """Open the TUI on the vault in `data_dir` (the `memos-desktop` command with no arguments)."""
    MemosApp(data_dir).run()
