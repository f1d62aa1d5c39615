"""Allows `python -m memos_desktop`, the same as the `memos-desktop` command."""

from memos_desktop.entry import main

main()
