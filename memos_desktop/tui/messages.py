"""Messages that threads post to the app: the watcher's status and the model's state.

Kept apart from `app.py` so screens and the model loader can post them without importing the app
(which imports the screens).
"""

from typing import Any

from textual.message import Message


class WatcherStatus(Message):
    """A status snapshot from the watcher thread."""

    def __init__(self, status: Any) -> None:
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

    def __init__(self, backend: Any, name: str) -> None:
        self.backend = backend
        self.name = name
        super().__init__()
