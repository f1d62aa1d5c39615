"""ChatInput: a multi-line message box; Enter sends, Ctrl+J adds a line, Up/Down walk history.

While the previous message is still being answered (`holding`), typing goes on as usual and
Enter keeps the text in the box (with a notice) instead of sending or clearing it.
"""

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class ChatInput(TextArea):
    """Where the user types; pastes keep their lines. Sent messages are kept for Up/Down recall."""

    BINDINGS = [
        Binding("ctrl+j", "newline", "New line", show=False),
        Binding("up", "history(-1)", "Previous message", show=False),
        Binding("down", "history(1)", "Next message", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)
        self.sent: list[str] = []
        self._position = 0
        self.holding = False

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        await super()._on_key(event)

    def submit(self) -> None:
        text = self.text
        if not text.strip():
            self.app.bell()
            return
        if self.holding:
            self.notify(
                "Still answering: your message stays here; Enter sends it once the answer is done "
                "(Escape stops the answer).",
                severity="warning",
            )
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._position = len(self.sent)
        self.clear()
        self.post_message(self.Submitted(text))

    def action_newline(self) -> None:
        self.insert("\n")

    def action_history(self, step: int) -> None:
        """Recall an earlier message at the first line (Up) or a later one at the last line (Down);
        elsewhere Up/Down move the cursor."""
        row = self.cursor_location[0]
        at_edge = row == 0 if step < 0 else row == self.document.line_count - 1
        if not at_edge or not self.sent:
            (self.action_cursor_up if step < 0 else self.action_cursor_down)()
            return
        self._position = max(0, min(len(self.sent), self._position + step))
        self.text = self.sent[self._position] if self._position < len(self.sent) else ""
        self.move_cursor(self.document.end)
