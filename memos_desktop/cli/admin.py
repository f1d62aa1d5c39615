"""Vault administration: init, stats, audit, embedder, passwd, doctor."""

import os
import sys
from pathlib import Path

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json, when
from memos_desktop.cli.passphrase import accept_new, allow_weak_option
from memos_desktop.errors import CorruptVault, MemosError


@cli.command()
@click.option("--force", is_flag=True, help="Replace an existing vault (its files are moved aside, not deleted).")
@click.option("--yes", is_flag=True, help="With --force and no terminal: confirm replacing the vault.")
@allow_weak_option
@click.pass_obj
def init(obj: Context, force: bool, yes: bool, allow_weak: bool) -> None:
    """Create a new encrypted vault."""
    from memos_desktop.vault import Vault

    aside = None
    if Vault.exists(obj.data_dir):
        if not force:
            raise MemosError(
                f"A vault already exists in {obj.data_dir}; `init --force` replaces it (its files are moved aside)."
            )
        if not yes:
            if not sys.stdin.isatty():
                raise MemosError("Replacing a vault needs confirming: run in a terminal, or add --yes to --force.")
            typed = click.prompt(f"This replaces the vault in {obj.data_dir}. Type `replace` to go on", default="")
            if typed.strip() != "replace":
                raise MemosError("Not confirmed; the vault was left as it is.")
        passphrase = obj.passphrase(confirm=True)
        accept_new(passphrase, allow_weak)
        aside = Vault.set_aside(obj.data_dir)
    else:
        passphrase = obj.passphrase(confirm=True)
        accept_new(passphrase, allow_weak)
    vault = Vault.create(obj.data_dir, passphrase)
    vault.close()
    if aside is not None:
        click.echo(f"The previous vault's files were moved to {aside}.")
    click.echo(f"Created an encrypted vault in {obj.data_dir}.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stats(obj: Context, as_json) -> None:
    """Counts of memories, versions, vectors and the vault's size."""
    data = obj.vault(embedder=False).stats()
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, n in value.items():
                click.echo(f"{key + ' ' + sub:<28} {n}")
        else:
            click.echo(f"{key:<28} {value}")


@cli.command()
@click.option("-n", "limit", type=int, default=30, show_default=True)
@click.option("--id", "cube_id", help="Only entries about this memory.")
@click.option("--client", "client", help="Only entries by this MCP client.")
@click.option("--verify", is_flag=True, help="Check the whole hash chain.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit(obj: Context, limit, cube_id, client, verify, as_json) -> None:
    """Show the hash-chained audit log of reads, writes and exports."""
    vault = obj.vault(embedder=False)
    if verify:
        problems = vault.check_integrity()
        if problems:
            raise CorruptVault(
                f"The vault database is damaged: {problems[0]}"
                + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                + "; restore it from a backup (`memos-desktop backup`) or an export bundle."
            )
        n = vault.verify_audit()
        click.echo(f"Database intact; audit chain intact: {n} entries.")
        return
    entries = vault.audit_log(limit=limit, cube_id=cube_id, actor=f"mcp:{client}" if client else None)
    if as_json:
        echo_json(entries)
        return
    for e in entries:
        action = f"mcp {e['detail']['tool']}" if e["action"] == "mcp" else e["action"]
        click.echo(f"{e['seq']:>6} {when(e['at'])} {action:<10} {e['cube_id'] or '-':<26} {e['actor']}")


@cli.command()
@click.argument("choice", required=False)
@pass_ctx
def embedder(obj: Context, choice: str | None) -> None:
    """Show or choose the embedding model: minilm (default), none, or a GGUF file's path.

    Choosing another model re-embeds every memory with it.
    """
    from memos_desktop.embed.config import SETTING, status_for

    vault = obj.vault(embedder=False)
    if choice is None:
        click.echo(status_for(vault.get_setting(SETTING))[1])
        return
    if choice.lower() not in ("minilm", "none"):
        path = Path(choice).expanduser().resolve()
        if not path.is_file():
            raise MemosError(f"No GGUF embedding model at {path}.")
        choice = str(path)
    new, status = status_for(choice)
    if new is None and choice.lower() != "none":
        raise MemosError(f"Not switching: {status}.")
    if new is not None:
        _switch_embedder(vault, status_for(vault.get_setting(SETTING))[0], new)
    vault.set_setting(SETTING, choice)
    vault.embedder = new
    click.echo(f"{status[:1].upper()}{status[1:]}; {vault.vector_count()} memories embedded.")


def _switch_embedder(vault, old, new) -> None:
    """Re-embed every memory with `new` while the vectors of `old` (the model in use) stay
    searchable to every process, with a progress bar; interrupted, the next run resumes."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    vault.embedder = old
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("Re-embedding (the old vectors answer searches meanwhile)", total=None)
        vault.switch_embedder(new, progress=lambda done, total: bar.update(task, completed=done, total=total))
        task = bar.add_task("Passages and links of long memories", total=None)
        vault.rederive(progress=lambda done, total: bar.update(task, completed=done, total=total))


@cli.command()
@allow_weak_option
@pass_ctx
def passwd(obj: Context, allow_weak: bool) -> None:
    """Change the vault passphrase (rewraps the key; the database is not rewritten)."""

    old = obj.passphrase()
    new = os.environ.get("MEMOS_NEW_PASSPHRASE")
    if not new:
        if not sys.stdin.isatty():
            raise MemosError("No new passphrase: set MEMOS_NEW_PASSPHRASE or run in a terminal.")
        new = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
    accept_new(new, allow_weak)
    obj.vault(embedder=False).change_passphrase(old, new)
    click.echo("Passphrase changed.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def doctor(obj: Context, as_json) -> None:
    """Check the install: extensions load, encryption is on, the embedder works."""
    from memos_desktop.operation import doctor as checks

    results = checks.run(obj)
    if as_json:
        echo_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        for name, ok, detail in results:
            click.echo(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


@cli.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def backup(obj: Context, dest: Path, as_json) -> None:
    """Copy the vault, consistent and encrypted, into the new folder DEST (vault.db, vault.key, blobs).

    Safe while the vault is in use; the copy is reopened and checked before this says it is done.
    Open it with `memos-desktop --data-dir DEST`, or copy its files back into the data directory.
    """
    vault = obj.vault(embedder=False)
    done = vault.backup(dest)
    vault.audit("backup", detail={"path": done["path"], "cubes": done["cubes"]})
    if as_json:
        echo_json(done)
        return
    click.echo(
        f"Backed up {done['cubes']} memories ({done['versions']} versions, {done['blobs']} blobs,"
        f" {done['bytes'] / 1_000_000:.1f} MB) to {done['path']}; the copy opens and passes the integrity check."
    )
    click.echo("It holds vault.key too: keep it somewhere safe; the passphrase still protects it.")
