"""The chat transcript: one bubble per message; the assistant's bubble grows as tokens stream in."""

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from memos_desktop.tui.widgets.safe import safe

SHOWN_CHARS = 4000  # a longer message (a huge paste) shows its head and tail; it is stored whole


def shown(text: str) -> Text:
    """What a bubble displays: plain text (never markup), a huge message cut in the middle."""
    if len(text) <= SHOWN_CHARS:
        return safe(text)
    half = SHOWN_CHARS // 2
    return safe(f"{text[:half]}\n[… {len(text) - 2 * half:,} more characters …]\n{text[-half:]}")


class Bubble(Static):
    """One message. Content is plain text (never markup), so any characters are safe to show."""

    def __init__(self, role: str, text: str = "", **kwargs) -> None:
        super().__init__(shown(text), classes=f"bubble {role}", **kwargs)
        self.role = role
        self.text = text
        self.border_title = {"user": "you", "assistant": "memos", "system": "memos"}.get(role, role)

    def append(self, piece: str) -> None:
        self.text += piece
        self.update(shown(self.text))

    def set_text(self, text: str) -> None:
        self.text = text
        self.update(shown(text))

    def note(self, text: str) -> None:
        """A status line under the message (cancelled, error, memory ops)."""
        self.border_subtitle = safe(text)


class Transcript(VerticalScroll):
    """The scrolling list of bubbles; follows the newest message."""

    def add(self, role: str, text: str = "") -> Bubble:
        bubble = Bubble(role, text)
        self.mount(bubble)
        self.scroll_end(animate=False)
        return bubble

    def clear_messages(self) -> None:
        self.remove_children()
