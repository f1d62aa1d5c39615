"""`safe`: how every screen shows data it did not write itself (memories, file names, errors, model
output): a `rich.text.Text`, never a markup string, cleaned of characters that act on the terminal."""

from rich.text import Text

from memos_desktop.textsafe import clean


def safe(value: object, style: str = "") -> Text:
    """`value` as display text: `[bold]` stays literal, ESC/C1/bidi controls show as escapes."""
    return Text(clean(value), style=style)
