"""MemDumper commands: device keys, export/import bundles, conflicts, folder sync."""

import json
import os
import sys
from pathlib import Path

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json
from memos_desktop.errors import MemosError
from memos_desktop.parsing import parse_timestamp


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
        "trusted": [{"name": p.name, "device": p.device, "recipient": p.recipient} for p in crypto.peers(vault)],
    }
    if secret:
        data["age_identity"] = own.age_identity
    if as_json:
        echo_json(data)
        return
    click.echo(f"device     {own.device}\ncard       {own.card()}\nrecipient  {own.recipient}")
    if secret:
        click.echo(f"identity   {own.age_identity}   (secret: anyone holding it can read your bundles)")
    for peer in data["trusted"]:
        click.echo(f"trusted    {peer['name']}  {peer['device'] or '(recipient only)'}  {peer['recipient']}")


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
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["plaintext", "activation", "parameter"]))
@click.option("--since", help="Only cubes changed on or after this date.")
@click.option("--until", help="Only cubes changed before this date.")
@click.option("--profile", help="Only cubes owned by this profile.")
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    help="Encrypt to this device/name/age1 key too (repeatable).",
)
@click.option("--passphrase", "ask", is_flag=True, help="Encrypt to a passphrase (asked) instead of keys.")
@click.option("--passphrase-env", "passphrase_env", metavar="VAR", help="Encrypt to the passphrase in $VAR.")
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
        selection=Selection(tuple(tags), tuple(kinds), parse_timestamp(since), parse_timestamp(until), profile),
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
@click.option("--passphrase", "ask", is_flag=True, help="The bundle is protected by a passphrase (asked).")
@click.option("--passphrase-env", "passphrase_env", metavar="VAR", help="The bundle passphrase is in $VAR.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_cmd(ctx: Context, bundle: Path, ask: bool, passphrase_env: str | None, as_json: bool) -> None:
    """Import a bundle, all or nothing (twice changes nothing); creates the vault if needed."""
    from memos_desktop.dumper.importer import import_bundle
    from memos_desktop.vault import Vault

    passphrase = _bundle_passphrase(ask, passphrase_env, confirm=False)
    if not Vault.exists(ctx.data_dir):
        Vault.create(ctx.data_dir, ctx.passphrase(confirm=True)).close()
    # With the embedder: imported cubes get their vectors here (derived indexes are rebuilt locally).
    result = import_bundle(ctx.vault(), bundle, passphrase=passphrase)
    if as_json:
        echo_json(result)
    elif result.get("already_imported"):
        click.echo(f"Bundle {result['bundle_id']} was already imported; nothing changed.")
    else:
        origin = result["origin_device"] + ("" if result["trusted_device"] else " (not a trusted device)")
        click.echo(
            f"Imported {result['cubes']} memories ({result['versions_added']} new versions, "
            f"{result['conflicts']} conflicts) from device {origin}."
        )


@cli.command("conflicts")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def conflicts_cmd(ctx: Context, as_json: bool) -> None:
    """List memories edited concurrently on several devices, with each competing version."""
    from memos_desktop.dumper.conflicts import conflicts

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
                f"  version {head['version']:>4}  {head['op']:<8} {head['state']:<8} {head['device'][-8:]}  {text}"
            )
    if found:
        click.echo("Keep one with: memos-desktop resolve ID VERSION")


@cli.command("resolve")
@click.argument("cube_id")
@click.argument("version", type=int)
@pass_ctx
def resolve_cmd(ctx: Context, cube_id: str, version: int) -> None:
    """Close a conflict by keeping VERSION of the memory (written as a new version)."""
    from memos_desktop.dumper.conflicts import resolve

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

    vault = ctx.vault()
    if watch:
        try:
            sync.watch(vault, folder, interval, show)
        except KeyboardInterrupt:
            click.echo("Stopped.")
    else:
        show(sync.sync_folder(vault, folder))
