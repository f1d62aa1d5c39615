"""The side panel listing the memories and sources the current answer used, with citations."""

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from memos_desktop.tui.widgets.safe import safe


class CitationsPanel(VerticalScroll):
    """Shows each citation: its number, title, where it came from (file/lines or chat turn), id."""

    def show(self, citations, ops=()) -> None:
        self.remove_children()
        if not citations and not ops:
            self.mount(Static("No memories used for this answer.", classes="muted"))
        for c in citations:
            text = Text()
            text.append(f"[{c.n}] ", style="bold")
            text.append(safe(c.title or c.excerpt or "(untitled)", style="bold" if c.cited else ""))
            if not c.where.startswith("memory "):
                text.append(safe(f"\n{c.where}", style="italic"))
            text.append(f"\n{c.cube_id} · {'cached prefix' if c.tier == 'prefix' else 'prompt'}")
            if c.cited:
                text.append(" · cited", style="bold")
            self.mount(Static(text, classes="citation cited" if c.cited else "citation"))
        for op in ops:
            self.mount(Static(safe(f"{op.op}: {op.text}"), classes="memory-op"))
