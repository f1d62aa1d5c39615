"""Language model commands: add, list, remove, pull and choose the default."""

from pathlib import Path

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json


@cli.group()
def model() -> None:
    """Language models: add, list, remove, pull and choose the default."""


@model.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Name to register it under (default: the file or directory name).")
@click.option("--ctx", "n_ctx", type=int, help="Context size in tokens (default: min(trained, 4096)).")
@click.option("--threads", type=int, help="CPU threads (default: the runtime's choice).")
@click.option("--force", is_flag=True, help="Skip the free-memory check.")
@pass_ctx
def model_add(ctx: Context, path: Path, name: str | None, n_ctx: int | None, threads: int | None, force: bool) -> None:
    """Register a GGUF file or an MLX model directory after checking that it loads."""
    from memos_desktop.runtime.models import add_model

    entry = add_model(ctx.vault(embedder=False), path, name, n_ctx, threads, check_ram=not force)
    click.echo(f"Added {entry['name']} ({entry['runtime']}, {entry['arch']}, context {entry['n_ctx']}).")


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def model_list(ctx: Context, as_json: bool) -> None:
    """Show the registered models: size, architecture, context and runtime."""
    from memos_desktop.runtime.models import NO_MODEL, list_models

    models = list_models(ctx.vault(embedder=False))
    if as_json:
        echo_json(models)
        return
    if not models:
        click.echo(NO_MODEL)
        return
    for m in models:
        mark = "*" if m["default"] else " "
        missing = "" if m["present"] else "  (files missing)"
        click.echo(
            f"{mark} {m['name']:<32} {m['size_bytes'] / 1024**2:>9.1f} MiB  {m['arch']:<10} "
            f"ctx {m['n_ctx']:>6}/{m['context_length']:<6}  {m['runtime']}{missing}"
        )


@model.command("rm")
@click.argument("name")
@pass_ctx
def model_rm(ctx: Context, name: str) -> None:
    """Forget a registered model (its files are not deleted)."""
    from memos_desktop.runtime.models import remove_model

    remove_model(ctx.vault(embedder=False), name)
    click.echo(f"Removed {name}.")


@model.command("default")
@click.argument("name")
@pass_ctx
def model_default(ctx: Context, name: str) -> None:
    """Make NAME the model `chat` and the assistant use."""
    from memos_desktop.runtime.models import set_default

    set_default(ctx.vault(embedder=False), name)
    click.echo(f"{name} is now the default model.")


@model.command("pull")
@click.argument("repo")
@click.argument("filename", required=False)
@click.option("--revision", help="Branch, tag or commit (default: main).")
@click.option("--name", help="Name to register it under.")
@click.option("--force", is_flag=True, help="Skip the free-memory check.")
@pass_ctx
def model_pull(
    ctx: Context, repo: str, filename: str | None, revision: str | None, name: str | None, force: bool
) -> None:
    """Download REPO's GGUF FILE (or the whole MLX repo) from the Hugging Face hub and add it."""
    from memos_desktop.runtime.models import add_model, pull

    vault = ctx.vault(embedder=False)
    path = pull(repo, filename, ctx.data_dir / "models", revision)
    entry = add_model(vault, path, name, check_ram=not force)
    click.echo(f"Added {entry['name']} ({entry['runtime']}, {entry['arch']}) from {repo}.")
