"""The `memos-desktop` command line (interface layer): one module per command group.

`app.py` holds the root group and what commands share; each other module registers its commands on
it when imported here. Commands only parse, call the operation/infrastructure layers and print.
"""

from memos_desktop.cli import adapters, admin, bench, chat, mcp, memories, models, notes, reindex, sync  # noqa: F401
from memos_desktop.cli.app import cli


def main() -> None:
    """Entry point of the `memos-desktop` command."""
    cli()
