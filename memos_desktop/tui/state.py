"""What the screens use of the app, as a typed view: the session (the unlocked vault, taken
through `session.access()`), the assistant, the model and the watcher.

`MemosApp` provides it; screens reach it through `app_state(self)` instead of importing the app,
so `tui/app.py` imports the screens and never the reverse. Holds no state itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.message import Message

    from memos_desktop.operation.session import Session
    from memos_desktop.operation.turn import Assistant
    from memos_desktop.tui.model_thread import ModelThread


class AppState(Protocol):
    data_dir: Path
    session: Session
    assistant: Assistant
    llm: Any
    model_thread: ModelThread
    model_status: str
    watcher: Any
    watch_status: Any
    chat_screen: Any

    def post_message(self, message: Message) -> bool: ...

    def rebuild_assistant(self) -> None: ...

    def load_default_model(self) -> None: ...

    def model_sentence(self) -> str: ...

    def start_watcher(self) -> None: ...

    def open_vault(self, passphrase: str, create: bool) -> Session: ...

    def unlocked(self, session: Session) -> None: ...


def app_state(node: DOMNode) -> AppState:
    """The running `MemosApp` of a screen or widget, typed as what screens may use of it."""
    return cast("AppState", node.app)
