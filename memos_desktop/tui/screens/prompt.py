"""A small modal that asks for one value (a line, or several lines for editing a memory)."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea


class PromptScreen(ModalScreen[str | None]):
    """Returns the text entered, or None when cancelled."""

    CSS_PATH = "prompt.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, question: str, value: str = "", multiline: bool = False, placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.multiline = multiline
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Label(self.question)
            if self.multiline:
                yield TextArea(self.value, id="prompt-value", soft_wrap=True)
            else:
                yield Input(self.value, placeholder=self.placeholder, id="prompt-value")
            with Horizontal(id="prompt-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()

    def action_save(self) -> None:
        if self.multiline:
            self.dismiss(self.query_one("#prompt-value", TextArea).text)
        else:
            self.dismiss(self.query_one("#prompt-value", Input).value)

    def action_cancel(self) -> None:
        self.dismiss(None)
