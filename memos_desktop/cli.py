"""The `memos-desktop` command line (interface layer).

Parses arguments, unlocks the vault, calls the operation/infrastructure layers and prints results
(tables for people, `--json` for scripts). Every `MemosError` becomes one line on stderr and exit
code 1; a traceback reaching a user is a bug. With no subcommand it opens the TUI.
"""

import json
import os
import sys
from pathlib import Path

import click

from memos_desktop import paths
from memos_desktop.errors import MemosError


class Context:
    """What every command shares: the data directory and, once unlocked, the vault."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._vault = None

    def passphrase(self, confirm: bool = False) -> str:
        env = os.environ.get("MEMOS_PASSPHRASE")
        if env:
            return env
        if not sys.stdin.isatty():
            raise MemosError("No passphrase: set MEMOS_PASSPHRASE or run in a terminal to be asked.")
        return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)

    def vault(self, embedder: bool = True):
        """The unlocked vault (opened once per command), with the configured embedder if asked."""
        if self._vault is None:
            from memos_desktop.vault import Vault

            self._vault = Vault.open(self.data_dir, self.passphrase())
            if embedder:
                from memos_desktop.embed.config import embedder_for

                self._vault.embedder = embedder_for(self._vault)
        return self._vault

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns every MemosError raised by a command into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MemosError as exc:
            raise click.ClickException(str(exc)) from None


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(cls=Group, invoke_without_command=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the vault lives (default: $MEMOS_HOME or the platform's data dir).",
)
@click.version_option(package_name="memos-desktop")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """memos-desktop: a local assistant with a real, encrypted memory."""
    ctx.obj = Context(paths.data_dir(data_dir))
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand is None:
        from memos_desktop.tui.app import run_tui

        run_tui(ctx.obj.data_dir)


def main() -> None:
    """Entry point of the `memos-desktop` command."""
    cli()
