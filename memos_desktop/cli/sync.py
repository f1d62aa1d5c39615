"""MemDumper commands: device keys, export/import bundles, conflicts, folder sync."""

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json, finite
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
    """Print this device's card and fingerprint (for pairing) and the devices you trust."""
    from memos_desktop.dumper import crypto, trust

    vault = ctx.vault(embedder=False)
    own = crypto.device_keys(vault)
    data: dict[str, Any] = {
        "device": own.device,
        "fingerprint": trust.fingerprint(own.verify_key),
        "card": own.card(),
        "age_recipient": own.recipient,
        "signing_key": own.verify_key,
        "trusted": [d for d in trust.listing(vault) if d["status"] != trust.REVOKED],
    }
    if secret:
        data["age_identity"] = own.age_identity
    if as_json:
        echo_json(data)
        return
    click.echo(f"device       {own.device}\nfingerprint  {data['fingerprint']}")
    click.echo(f"card         {own.card()}\nrecipient    {own.recipient}")
    if secret:
        click.echo(f"identity     {own.age_identity}   (secret: anyone holding it can read your bundles)")
    for peer in data["trusted"]:
        what = peer["fingerprint"] or "(recipient only: export to it, never import from it)"
        click.echo(f"trusted      {peer['name']}  {peer['device'] or '-'}  {what}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_list(ctx: Context, as_json: bool) -> None:
    """List trusted devices (and revoked keys) with their fingerprints."""
    from memos_desktop.dumper import trust

    rows = trust.listing(ctx.vault(embedder=False))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No trusted devices. Pair one with: memos-desktop keys trust NAME CARD")
    for row in rows:
        click.echo(
            f"{row['status']:<14} {row['name'] or '-':<16} {row['device'] or '-':<26} {row['fingerprint'] or '-'}"
        )


def _trust(ctx: Context, name: str, card: str, yes: bool) -> None:
    from memos_desktop.dumper import trust

    peer = trust.parse(name, card)
    if peer.verify_key is None:
        trust.trust(ctx.vault(embedder=False), name, card)
        click.echo(f"Added {name}: age recipient (export only; nothing is imported from it).")
        return
    fingerprint = trust.fingerprint(peer.verify_key)
    click.echo(f"Device {peer.device}\nfingerprint  {fingerprint}")
    if not yes and sys.stdin.isatty():
        click.echo("Run `memos-desktop keys show` on that device: it must print the same fingerprint.")
        if not click.confirm("Is it the same on both screens?", default=False):
            raise MemosError("Not trusted: the fingerprints were not confirmed.")
    trust.trust(ctx.vault(embedder=False), name, card)
    click.echo(f"Added {name}: device {peer.device} is trusted (fingerprint {fingerprint}).")


@keys.command("trust")
@click.argument("name")
@click.argument("card")
@click.option("--yes", is_flag=True, help="Do not ask to compare the fingerprint (you compared it already).")
@pass_ctx
def keys_trust(ctx: Context, name: str, card: str, yes: bool) -> None:
    """Trust a device under NAME: its card from `keys show`, or the `memos-signer:...` an import printed."""
    _trust(ctx, name, card, yes)


@keys.command("add")
@click.argument("name")
@click.argument("card")
@click.option("--yes", is_flag=True, help="Do not ask to compare the fingerprint.")
@pass_ctx
def keys_add(ctx: Context, name: str, card: str, yes: bool) -> None:
    """Trust another device (its card from `keys show`) or add an age recipient under NAME."""
    _trust(ctx, name, card, yes)


@keys.command("revoke")
@click.argument("which")
@pass_ctx
def keys_revoke(ctx: Context, which: str) -> None:
    """Stop trusting a device (by name, device id or fingerprint); its later bundles are refused."""
    from memos_desktop.dumper import trust

    peer = trust.revoke(ctx.vault(embedder=False), which)
    click.echo(f"Revoked {peer.name} ({peer.device or 'recipient'}): bundles and change-sets signed by it are refused.")


@cli.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Only cubes with this tag (repeatable).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["plaintext", "activation", "parameter"]))
@click.option("--since", help="Only cubes changed on or after this date.")
@click.option("--until", help="Only cubes changed before this date.")
@click.option("--profile", help="Only cubes owned by this profile.  [default: default]")
@click.option("--all-profiles", is_flag=True, help="Export the memories of every profile.")
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
    all_profiles,
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

    if all_profiles and profile:
        raise MemosError("Use either --profile or --all-profiles, not both.")
    profile = None if all_profiles else profile or "default"
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
@click.option(
    "--trust-signer",
    is_flag=True,
    help="Passphrase bundles: trust the device that signed it (for scripts; a terminal asks).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def import_cmd(
    ctx: Context, bundle: Path, ask: bool, passphrase_env: str | None, trust_signer: bool, as_json: bool
) -> None:
    """Import a bundle, all or nothing (twice changes nothing); creates the vault if needed.

    Only bundles signed by a device you trust are imported, except passphrase bundles (moving to a
    new computer), whose signer you are then offered to trust.
    """
    from memos_desktop.dumper.importer import import_bundle
    from memos_desktop.vault import Vault

    passphrase = _bundle_passphrase(ask, passphrase_env, confirm=False)
    if not Vault.exists(ctx.data_dir):
        from memos_desktop.cli.passphrase import accept_new

        new = ctx.passphrase(confirm=True)
        accept_new(new)
        Vault.create(ctx.data_dir, new).close()
    # With the embedder: imported cubes get their vectors here (derived indexes are rebuilt locally).
    result = import_bundle(ctx.vault(), bundle, passphrase=passphrase)
    offer = result.get("passphrase_bundle") and not result.get("trusted_device")
    if offer and (trust_signer or (not as_json and sys.stdin.isatty() and _confirm_signer(result))):
        _trust_signer(ctx, result, as_json)
    if as_json:
        echo_json(result)
    elif result.get("already_imported"):
        click.echo(f"Bundle {result['bundle_id']} was already imported; nothing changed.")
    else:
        origin = result["origin_device"] + ("" if result["trusted_device"] else " (not a trusted device)")
        click.echo(
            f"Imported {result['cubes']} memories ({result['versions_added']} new versions, "
            f"{result['updated']} of your memories updated, {result['conflicts']} conflicts) from device {origin}."
        )
        if not result["trusted_device"]:
            from memos_desktop.dumper import trust

            click.echo(
                f"Its signer's fingerprint is {result['signer_fingerprint']}; to trust it: "
                f"{trust.trust_command(result['origin_device'], result['signing_key'])}"
            )


def _confirm_signer(result: dict) -> bool:
    click.echo(
        f"The bundle was signed by device {result['origin_device']}, fingerprint {result['signer_fingerprint']}."
    )
    return click.confirm("Trust this device for later bundles and sync?", default=False)


def _trust_signer(ctx: Context, result: dict, as_json: bool) -> None:
    from memos_desktop.dumper import trust

    device, key = result["origin_device"], result["signing_key"]
    trust.trust(ctx.vault(embedder=False), device[-8:].lower(), trust.signer_card(device, key))
    result["trusted_device"] = True
    click.echo(f"Trusted device {device} (fingerprint {result['signer_fingerprint']}).", err=as_json)


@cli.command("conflicts")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def conflicts_cmd(ctx: Context, as_json: bool) -> None:
    """List memories edited concurrently on several devices, with each competing version."""
    from memos_desktop.dumper.conflicts import conflicts

    vault = ctx.vault(embedder=False)
    found = conflicts(vault)
    vault.record_read([c["id"] for c in found], "conflicts")
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
            click.echo(json.dumps(finite(status), default=str, allow_nan=False))
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
        for found in status["untrusted"]:
            click.echo(
                f"  refused the change-sets of device {found['device']}, which this vault does not trust"
                + (
                    f" (fingerprint {found['fingerprint']}); compare it with `memos-desktop keys show` on that "
                    f"device, then run: {found['command']}"
                    if found["fingerprint"]
                    else "; pair it with `memos-desktop keys trust NAME CARD`"
                )
            )

    vault = ctx.vault()
    if watch:
        import signal
        import threading

        # Ctrl-C (or SIGTERM) ends the loop after the sync under way, never inside its transaction;
        # a second Ctrl-C interrupts at once.
        stop = threading.Event()

        def ask_stop(signum: int, frame: object) -> None:
            stop.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {sig: signal.signal(sig, ask_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            sync.watch(vault, folder, interval, show, stop)
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo("Stopped.")
    else:
        status = sync.sync_folder(vault, folder)
        show(status)
        if status["untrusted"]:
            sys.exit(1)
