"""The help screen: every key binding and chat command, in one place."""

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    (
        "Everywhere",
        [
            ("F1", "this help"),
            ("F2", "Chat"),
            ("F3", "Memories"),
            ("F4", "Sources"),
            ("F5", "Models"),
            ("F6", "Settings"),
            ("Ctrl+P", "command palette (screens, resume a conversation)"),
            ("Ctrl+Q", "quit"),
        ],
    ),
    (
        "Chat",
        [
            ("Enter", "send"),
            ("Ctrl+J", "new line"),
            ("Up / Down", "earlier / later messages"),
            ("Escape", "stop the answer (nothing of it is kept)"),
            ("Ctrl+N", "new conversation"),
        ],
    ),
    (
        "Memories",
        [
            ("/", "search"),
            ("Enter", "show versions"),
            ("e", "edit"),
            ("d", "forget"),
            ("u", "restore"),
            ("p", "pin / unpin"),
            ("t", "set time to live"),
            ("a", "add a memory"),
        ],
    ),
    (
        "Sources",
        [("a", "add a watched folder"), ("d", "stop watching"), ("s", "scan now"), ("Escape", "cancel a scan")],
    ),
    (
        "Models",
        [
            ("a", "add a model file"),
            ("l", "pull from Hugging Face"),
            ("Enter", "make default"),
            ("o", "adapters on / off"),
            ("Escape", "cancel a pull"),
        ],
    ),
]
COMMANDS = [
    ("/remember TEXT", "keep a fact (works without a model)"),
    ("/forget ID or TEXT", "forget a memory (it can be restored)"),
    ("/pin ID", "always keep a memory in the cached prefix"),
    ("/unpin ID", "stop pinning it"),
    ("/ttl ID 7d", "forget a memory after a time (s, m, h, d, w; never)"),
]


class HelpScreen(ModalScreen):
    CSS_PATH = "help.tcss"

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            for section, rows in KEYS:
                yield Static(_table(section, rows))
            yield Static(_table("Chat commands", COMMANDS))
            yield Static("Answers cite memories as [n]; the side panel shows where each came from.")


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None)
    table.add_column("key", style="bold", width=20)
    table.add_column("what")
    for key, what in rows:
        table.add_row(key, what)
    return table
