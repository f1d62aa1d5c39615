"""The `memos-desktop` entry point: no arguments open the TUI at once, anything else is the CLI.

The bare command is the one a person starts most, and its first frame must come fast, so it goes
straight to the TUI without importing click and defining the command line's commands; every other
invocation (a subcommand, `--data-dir`, `--help`, `--version`) goes to `memos_desktop.cli`.
"""

import sys


def main() -> None:
    if len(sys.argv) == 1:
        from memos_desktop import paths
        from memos_desktop.tui.app import run_tui

        run_tui(paths.data_dir())
        return
    from memos_desktop.cli import main as cli_main

    cli_main()
