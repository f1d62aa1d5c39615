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


# ----- MemDumper: device keys, export/import bundles, conflicts, folder sync ----------------------
def _bundle_passphrase(ask: bool, env_var: str | None, confirm: bool) -> str | None:
    """The bundle passphrase from --passphrase-env VAR or a prompt (--passphrase), else None."""
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise MemosError(f"The environment variable {env_var} is empty or not set.")
        return value
    if not ask:
        return None
    if not sys.stdin.isatty():
        raise MemosError("--passphrase needs a terminal; use --passphrase-env VAR in scripts.")
    return click.prompt("Bundle passphrase", hide_input=True, confirmation_prompt=confirm)


def _timestamp(value: str | None) -> float | None:
    from datetime import datetime

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise MemosError(f"Not a date: {value!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM).") from None


@cli.group()
def keys() -> None:
    """This device's keys and the devices you trust."""


@keys.command("show")
@click.option(
    "--secret",
    is_flag=True,
    help="Also print the age identity (to decrypt bundles with `age -d -i`).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_show(ctx: Context, secret: bool, as_json: bool) -> None:
    """Print this device's card (for `keys add` on your other devices) and trusted devices."""
    from memos_desktop.dumper import crypto

    vault = ctx.vault(embedder=False)
    own = crypto.device_keys(vault)
    data = {
        "device": own.device,
        "card": own.card(),
        "age_recipient": own.recipient,
        "signing_key": own.verify_key,
        "trusted": [
            {"name": p.name, "device": p.device, "recipient": p.recipient}
            for p in crypto.peers(vault)
        ],
    }
    if secret:
        data["age_identity"] = own.age_identity
    if as_json:
        echo_json(data)
        return
    click.echo(f"device     {own.device}\ncard       {own.card()}\nrecipient  {own.recipient}")
    if secret:
        click.echo(
            f"identity   {own.age_identity}   (secret: anyone holding it can read your bundles)"
        )
    for peer in data["trusted"]:
        click.echo(
            f"trusted    {peer['name']}  {peer['device'] or '(recipient only)'}"
            f"  {peer['recipient']}"
        )


@keys.command("add")
@click.argument("name")
@click.argument("card")
@pass_ctx
def keys_add(ctx: Context, name: str, card: str) -> None:
    """Trust another device (its card from `keys show`) or add an age recipient under NAME."""
    from memos_desktop.dumper import crypto

    peer = crypto.add_peer(ctx.vault(embedder=False), name, card)
    what = f"device {peer.device}" if peer.device else "age recipient (export only)"
    click.echo(f"Added {name}: {what}.")


@cli.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Only cubes with this tag (repeatable).")
@click.option(
    "--kind", "kinds", multiple=True, type=click.Choice(["plaintext", "activation", "parameter"])
)
@click.option("--since", help="Only cubes changed on or after this date.")
@click.option("--until", help="Only cubes changed before this date.")
@click.option("--profile", help="Only cubes owned by this profile.")
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    help="Encrypt to this device/name/age1 key too (repeatable).",
)
@click.option(
    "--passphrase", "ask", is_flag=True, help="Encrypt to a passphrase (asked) instead of keys."
)
@click.option(
    "--passphrase-env", "passphrase_env", metavar="VAR", help="Encrypt to the passphrase in $VAR."
)
@click.option("--redact-emails", is_flag=True, help="Replace e-mail addresses with [email].")
@click.option("--redact-phones", is_flag=True, help="Replace phone numbers with [phone].")
@click.option(
    "--secret-tag",
    "secret_tags",
    multiple=True,
    default=("secret",),
    show_default=True,
    help="Leave out cubes with this tag.",
)
@click.option("--with-blobs", is_flag=True, help="Include activation states and adapters (large).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def export_cmd(
    ctx: Context,
    out: Path,
    tags,
    kinds,
    since,
    until,
    profile,
    recipients,
    ask,
    passphrase_env,
    redact_emails,
    redact_phones,
    secret_tags,
    with_blobs,
    as_json,
) -> None:
    """Write an encrypted, signed bundle of your memories to OUT."""
    from memos_desktop.dumper import crypto
    from memos_desktop.dumper.export import Redaction, Selection, export_bundle

    passphrase = _bundle_passphrase(ask, passphrase_env, confirm=True)
    if passphrase is not None and recipients:
        raise MemosError("Use either --recipient or a passphrase, not both.")
    vault = ctx.vault(embedder=False)
    result = export_bundle(
        vault,
        out,
        selection=Selection(
            tuple(tags), tuple(kinds), _timestamp(since), _timestamp(until), profile
        ),
        redaction=Redaction(redact_emails, redact_phones, tuple(secret_tags)),
        recipients=crypto.resolve_recipients(vault, list(recipients)),
        passphrase=passphrase,
        with_blobs=with_blobs,
    )
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"Exported {result['cubes']} memories ({result['versions']} versions, "
            f"{result['links']} links, "
            f"{result['blobs']} blobs) to {out} ({result['bytes']:,} bytes)."
        )


@cli.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--passphrase", "ask", is_flag=True, help="The bundle is protected by a passphrase (asked)."
)
@click.option(
    "--passphrase-env", "passphrase_env", metavar="VAR", help="The bundle passphrase is in $VAR."
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_cmd(
    ctx: Context, bundle: Path, ask: bool, passphrase_env: str | None, as_json: bool
) -> None:
    """Import a bundle, all or nothing (twice changes nothing); creates the vault if needed."""
    from memos_desktop.dumper.importer import import_bundle
    from memos_desktop.vault import Vault

    passphrase = _bundle_passphrase(ask, passphrase_env, confirm=False)
    if not Vault.exists(ctx.data_dir):
        Vault.create(ctx.data_dir, ctx.passphrase(confirm=True)).close()
    result = import_bundle(ctx.vault(embedder=False), bundle, passphrase=passphrase)
    if as_json:
        echo_json(result)
    elif result.get("already_imported"):
        click.echo(f"Bundle {result['bundle_id']} was already imported; nothing changed.")
    else:
        origin = result["origin_device"] + (
            "" if result["trusted_device"] else " (not a trusted device)"
        )
        click.echo(
            f"Imported {result['cubes']} memories ({result['versions_added']} new versions, "
            f"{result['conflicts']} conflicts) from device {origin}."
        )


@cli.command("conflicts")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def conflicts_cmd(ctx: Context, as_json: bool) -> None:
    """List memories edited concurrently on several devices, with each competing version."""
    from memos_desktop.dumper.events import conflicts

    found = conflicts(ctx.vault(embedder=False))
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No conflicts.")
    for conflict in found:
        click.echo(f"{conflict['id']}  {conflict['title']}")
        for head in conflict["heads"]:
            text = head["content"].replace("\n", " ")[:70]
            click.echo(
                f"  version {head['version']:>4}  {head['op']:<8} {head['state']:<8}"
                f" {head['device'][-8:]}  {text}"
            )
    if found:
        click.echo("Keep one with: memos-desktop resolve ID VERSION")


@cli.command("resolve")
@click.argument("cube_id")
@click.argument("version", type=int)
@pass_ctx
def resolve_cmd(ctx: Context, cube_id: str, version: int) -> None:
    """Close a conflict by keeping VERSION of the memory (written as a new version)."""
    from memos_desktop.dumper.events import resolve

    cube = resolve(ctx.vault(embedder=False), cube_id, version)
    click.echo(f"Resolved {cube_id}: version {version} is current again as version {cube.version}.")


@cli.command("sync")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--watch",
    is_flag=True,
    help="Keep syncing when the folder changes or every --interval seconds.",
)
@click.option(
    "--interval",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between syncs in --watch mode.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def sync_cmd(ctx: Context, folder: Path, watch: bool, interval: float, as_json: bool) -> None:
    """Exchange encrypted change-sets with your other devices through a shared FOLDER."""
    from memos_desktop.dumper import sync

    def show(status: dict) -> None:
        if as_json:
            click.echo(json.dumps(status, default=str))
            return
        import time

        stamp = time.strftime("%H:%M:%S", time.localtime(status["last_sync"]))
        click.echo(
            f"{stamp} synced: {status['applied_versions']} versions in, "
            f"{status['published_versions']} out, "
            f"{status['conflicts']} conflicts"
        )
        for line in status["errors"]:
            click.echo(f"  warning: {line}")
        for device in status["untrusted_devices"]:
            click.echo(f"  skipped change-sets of untrusted device {device} (see `keys add`)")

    vault = ctx.vault(embedder=False)
    if watch:
        try:
            sync.watch(vault, folder, interval, show)
        except KeyboardInterrupt:
            click.echo("Stopped.")
    else:
        show(sync.sync_folder(vault, folder))


@cli.group()
def bench() -> None:
    """Benchmarks (each prints a table, or JSON with --json)."""


@bench.command("export")
@click.option(
    "--cubes", "sizes", multiple=True, type=int, default=(20_000, 100_000), show_default=True
)
@click.option("--json", "as_json", is_flag=True)
def bench_export(sizes: tuple[int, ...], as_json: bool) -> None:
    """Export + import throughput (MB/s) and peak memory at several vault sizes."""
    from memos_desktop.bench import report
    from memos_desktop.bench.export import run

    result = run(list(sizes))
    report("export / import", result["rows"], result, as_json)
