"""The root `memos-desktop` command group and what every command shares (interface layer).

Owns the data directory option, unlocking the vault once per command (`Context`), and turning every
`MemosError` (and storage failure) into one `Error: ...` line with exit code 1; a traceback reaching a
user is a bug. With no subcommand it opens the TUI. Commands live in one module per group beside this.
"""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from memos_desktop import paths
from memos_desktop.errors import MemosError, from_storage

if TYPE_CHECKING:
    from memos_desktop.operation.session import Session
    from memos_desktop.vault import Vault


class Context:
    """What every command shares: the data directory and, once unlocked, the session."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._session: Session | None = None

    def passphrase(self, confirm: bool = False) -> str:
        env = os.environ.get("MEMOS_PASSPHRASE")
        if env:
            return env
        if not sys.stdin.isatty():
            raise MemosError("No passphrase: set MEMOS_PASSPHRASE or run in a terminal to be asked.")
        return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)

    def session(self, embedder: bool = True) -> "Session":
        """The unlocked session (opened once per command), with the configured embedder if asked."""
        if self._session is None:
            from memos_desktop.operation.session import Session

            self._session = Session.open(self.data_dir, self.passphrase(), embedder=embedder)
        return self._session

    def vault(self, embedder: bool = True) -> "Vault":
        """The unlocked vault of this command's session."""
        return self.session(embedder).vault

    @property
    def embedder_notice(self) -> str | None:
        return self._session.embedder_notice if self._session is not None else None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns every MemosError (and storage failure) raised by a command into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MemosError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            user = from_storage(exc)
            if user is None:
                raise
            raise click.ClickException(str(user)) from None


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
