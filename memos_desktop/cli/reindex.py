"""`memos-desktop reindex`: rebuild what the vault derives from memories' text, with progress."""

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json


@cli.command("reindex")
@click.option(
    "--links",
    is_flag=True,
    help="Passages of long memories and the terms linking memories (entities, topics, tags, dates).",
)
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True, help="Memories per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def reindex(ctx: Context, links: bool, batch: int, as_json: bool) -> None:
    """Build the passages and links of every memory that lacks them (a vault made before they
    existed). Interruptible: what is done stays done, and the next run goes on from there."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not links:
        raise click.UsageError("Say what to rebuild: --links.")
    vault = ctx.vault()
    pending = vault.derive_pending()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("Linking memories (passages, entities, topics)", total=pending or None)
        done = vault.rederive(batch=batch, progress=lambda n, total: bar.update(task, completed=n, total=total))
    result = {"memories": done, "passages": vault.passage_count(), "embedded": vault.embedder is not None}
    if as_json:
        echo_json(result)
        return
    if not done:
        click.echo("Every memory already has its passages and links.")
        return
    vectors = "" if vault.embedder is not None else " (no embedder: passages are searchable by words only)"
    click.echo(f"Linked {done} memories; {result['passages']} passages in the vault{vectors}.")
