"""A corpus of hostile strings: terminal control sequences and Rich/Textual markup, as notes, file
names, memories, tags, device names and model output may carry them."""

import re

CORPUS = [
    "\x1b[31mred\x1b[0m and \x1b[2J\x1b[H cleared",  # CSI: colours, clear screen, cursor home
    "\x1b]8;;https://evil.example\x1b\\click me\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]52;c;cm0gLXJmIH4K\x07 clipboard",  # OSC 52: write the clipboard
    "\x1b]0;new window title\x07",  # OSC 0: window title
    "bell\x07\x07 and backspace\x08\x08",
    "C1 csi \x9b31m and C1 osc \x9d0;t\x9c and NEL\x85",
    "bidi \u202egnp.exe\u202c and isolate \u2067x\u2069",
    "carriage\roverwritten",
    "[bold]bold[/bold] [link=https://evil.example]link[/link] [/] [red]",
    "drafts[/]notes [[wiki]] [@click=app.quit]quit[/]",
]

# A file name may hold any of these but "/" and NUL.
FILE_NAMES = [
    "\x1b[31mred.md",
    "[bold]b[red].md",
    "bell\x07.md",
    "\u202etxt.md",
    "c1\x9bx.md",
]

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def unsafe_in(text: str) -> list[str]:
    """The characters of `text` that could act on a terminal (empty when it is safe to print)."""
    return UNSAFE.findall(text)
