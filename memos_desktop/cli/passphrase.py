"""Checking a new vault passphrase at the interface: warn about a very weak one and ask to confirm.

`init`, `passwd` and an `import` that creates a vault call `accept_new`. On a terminal a weak
passphrase needs a typed yes; in scripts it is refused unless `MEMOS_ALLOW_WEAK_PASSPHRASE=1` or
`--allow-weak-passphrase` says it is meant.
"""

import os
import sys

import click

from memos_desktop.errors import MemosError
from memos_desktop.vault.strength import weakness

ALLOW_ENV = "MEMOS_ALLOW_WEAK_PASSPHRASE"

allow_weak_option = click.option(
    "--allow-weak-passphrase",
    "allow_weak",
    is_flag=True,
    help=f"Accept a very weak passphrase without asking (also: {ALLOW_ENV}=1).",
)


def accept_new(passphrase: str, allow_weak: bool = False) -> None:
    """Return when `passphrase` may protect a vault; MemosError when a weak one was not confirmed."""
    reason = weakness(passphrase)
    if reason is None:
        return
    warning = f"Warning: this passphrase is very weak ({reason}); anyone with the vault files could guess it."
    if allow_weak or os.environ.get(ALLOW_ENV) == "1":
        click.echo(warning, err=True)
        return
    if sys.stdin.isatty():
        click.echo(warning, err=True)
        if click.confirm("Use it anyway?", default=False, err=True):
            return
        raise MemosError("Choose a stronger passphrase: a few random words make a good one.")
    raise MemosError(
        f"The passphrase is very weak ({reason}). Choose a stronger one, or set {ALLOW_ENV}=1 "
        "(or pass --allow-weak-passphrase) to keep it."
    )
