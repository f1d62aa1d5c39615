"""The side panel listing the memories and sources the current answer used, with citations, and
the retrieved ones left out of the prompt with why."""

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from memos_desktop.textsafe import clean
from memos_desktop.tui.widgets.safe import safe


class CitationsPanel(VerticalScroll):
    """Shows each citation: its number, title, where it came from (file/lines or chat turn), id."""

    def show(self, citations, ops=(), left_out=()) -> None:
        self.remove_children()
        if not citations and not ops and not left_out:
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
        if left_out:
            self.mount(Static("Left out", classes="panel-title"))
        for item in left_out:
            text = Text()
            text.append(clean(item.title or item.cube_id), style="dim")
            text.append(clean(f"\n{item.cube_id} · {item.reason}"), style="italic dim")
            self.mount(Static(text, classes="citation left-out"))
