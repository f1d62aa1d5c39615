"""MemLoader commands: watched folders, one-off ingestion, and where notes come from."""

import os
from pathlib import Path

import click

from memos_desktop.cli.app import Context, Group, cli, pass_ctx
from memos_desktop.cli.output import echo_json, table
from memos_desktop.errors import MemosError


@cli.group(cls=Group)
def watch() -> None:
    """Folders of notes kept in the vault as they change."""


@watch.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_ctx
def watch_add(ctx: Context, path: Path) -> None:
    """Watch the folder PATH (indexed by `watch run` or the TUI)."""
    from memos_desktop.loader.config import add_root

    root = add_root(ctx.vault(embedder=False), path)
    click.echo(f"Watching {root}. Run `memos-desktop watch run` to index it and follow changes.")


@watch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def watch_list(ctx: Context, as_json: bool) -> None:
    """The watched folders and how their files stand."""
    from memos_desktop.loader.config import LoaderConfig
    from memos_desktop.vault import loader_files as status

    vault = ctx.vault(embedder=False)
    rows = [{"folder": r, **status.counts(vault, r)} for r in LoaderConfig.load(vault).roots]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("No watched folders. Add one with `memos-desktop watch add PATH`.")
    else:
        table("Watched folders", rows)


@watch.command("rm")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--forget", is_flag=True, help="Also forget the memories made from its files.")
@pass_ctx
def watch_rm(ctx: Context, path: Path, forget: bool) -> None:
    """Stop watching the folder PATH (its memories stay unless --forget)."""
    from memos_desktop.loader.config import remove_root
    from memos_desktop.loader.ingest import Loader

    vault = ctx.vault(embedder=False)
    root = remove_root(vault, path)
    if forget:
        files = Loader(vault).forget(root)
        click.echo(f"Stopped watching {root}; forgot the memories of {files} files.")
    else:
        click.echo(f"Stopped watching {root}.")


@watch.command("config")
@click.option("--max-mb", type=float, help="Skip files larger than this many MB.")
@click.option("--ignore", multiple=True, help="Add a .gitignore-style pattern (repeatable).")
@click.option("--unignore", multiple=True, help="Remove an ignore pattern (repeatable).")
@click.option("--hidden/--no-hidden", default=None, help="Index hidden files and folders.")
@click.option("--gitignore/--no-gitignore", default=None, help="Honour each folder's .gitignore.")
@click.option("--debounce", type=float, help="Seconds to wait for a file to settle after a write.")
@click.option("--chunk-chars", type=int, help="Largest chunk, in characters.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def watch_config(ctx: Context, max_mb, ignore, unignore, hidden, gitignore, debounce, chunk_chars, as_json) -> None:
    """Show or change the ignore rules and limits."""
    from dataclasses import asdict

    from memos_desktop.loader.config import LoaderConfig

    vault = ctx.vault(embedder=False)
    config = LoaderConfig.load(vault)
    if max_mb is not None:
        config.max_bytes = int(max_mb * 1_000_000)
    kept = [p for p in config.ignore if p not in unignore]
    config.ignore = kept + [p for p in ignore if p not in kept]
    if hidden is not None:
        config.include_hidden = hidden
    if gitignore is not None:
        config.use_gitignore = gitignore
    if debounce is not None:
        config.debounce_s = debounce
    if chunk_chars is not None:
        config.max_chunk_chars = chunk_chars
    config.save(vault)
    if as_json:
        echo_json(asdict(config))
    else:
        for key, value in asdict(config).items():
            click.echo(f"{key}: {value}")


@watch.command("run")
@pass_ctx
def watch_run(ctx: Context) -> None:
    """Index the watched folders, then follow their changes until Ctrl-C."""
    import signal
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from memos_desktop.loader.config import LoaderConfig
    from memos_desktop.loader.watcher import Watcher

    vault = ctx.vault()
    roots = LoaderConfig.load(vault).roots
    if not roots:
        raise MemosError("No watched folders: add one with `memos-desktop watch add PATH`.")
    done = threading.Event()
    shown: dict[str, object] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    bar = Progress(*columns, console=Console(stderr=True), transient=True)
    task = bar.add_task("Scanning", total=None)

    def show(st) -> None:
        if st.state == "scanning":
            if st.scanned[1]:
                bar.start()
                bar.update(task, description="Scanning", completed=st.scanned[0], total=st.scanned[1])
            return
        embedded, waiting = st.vectors
        if st.state == "watching" and embedded < waiting:  # words are searchable; vectors follow
            bar.start()
            bar.update(task, description="Embedding chunks", completed=embedded, total=waiting)
            return
        bar.stop()
        line = (st.state, st.last_path, st.last_error, tuple(st.counts.items()))
        if line == shown.get("line"):
            return
        shown["line"] = line
        counts = ", ".join(f"{n} {k}" for k, n in st.counts.items() if n)
        text = f"[{st.state}] {counts}" + (f" — {st.last_path}" if st.last_path else "")
        click.echo(text + (f" (last problem: {st.last_error})" if st.last_error else ""), err=True)
        if st.state in ("stopped", "failed"):
            done.set()

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    watcher = Watcher(lambda: vault, on_status=show)
    click.echo(f"Watching {', '.join(roots)} (Ctrl-C to stop).", err=True)
    watcher.start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
    if watcher.status.state == "failed":
        raise MemosError(f"The watcher stopped: {watcher.status.last_error}")


@cli.command("ingest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ingest(ctx: Context, path: Path, as_json: bool) -> None:
    """Index the file or folder PATH once (without watching it)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from memos_desktop.loader.ingest import Loader

    loader = Loader(ctx.vault())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as bar:
        files = bar.add_task("Indexing files (searchable by words)", total=None)
        chunks = bar.add_task("Embedding chunks (searchable by meaning)", total=None, visible=False)

        def advance(done: int, total: int) -> None:
            bar.update(files, completed=done, total=total)

        def embedded(done: int, total: int) -> None:
            bar.update(chunks, completed=done, total=total, visible=True)

        report = loader.scan([path], progress=advance, embed_progress=embedded)
    result = report.to_dict()
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{report.files} files: {report.indexed} indexed, {report.unchanged} unchanged, "
        f"{report.moved} moved, {report.removed} removed, {report.skipped} skipped, "
        f"{report.errors} errors; {report.embedded} chunks new or changed, {report.vectors} embedded, "
        f"{report.cubes_forgotten} forgotten (searchable by words after {report.index_seconds:.1f} s, "
        f"all done after {report.seconds:.1f} s)."
    )
    for file, reason in report.problems:
        click.echo(f"  {file}: {reason}", err=True)


@cli.command("sources")
@click.option("--files", "show_files", is_flag=True, help="List files, not folders.")
@click.option(
    "--status",
    "only",
    type=click.Choice(["indexed", "pending", "skipped", "error"]),
    help="Only files with this status.",
)
@click.option("--limit", default=200, show_default=True, help="Most files listed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sources(ctx: Context, show_files: bool, only: str | None, limit: int, as_json: bool) -> None:
    """Where the vault's notes come from: folders, and each file's status with its reason."""
    from memos_desktop.loader.config import LoaderConfig
    from memos_desktop.vault import loader_files as status

    vault = ctx.vault(embedder=False)
    if show_files or only:
        rows = [s.to_dict() for s in status.files(vault, status=only, limit=limit)]
        if as_json:
            echo_json(rows)
            return
        listed = [{k: r[k] for k in ("path", "status", "chunks", "reason")} for r in rows]
        if listed:
            table("Files", listed)
        else:
            click.echo("No files.")
        return
    roots = LoaderConfig.load(vault).roots
    vectors = (os.environ.get("MEMOS_EMBEDDER") or vault.get_setting("embedder") or "").lower() != "none"
    rows = [{"folder": r, "watched": True, **status.counts(vault, r)} for r in roots]
    other = status.counts(vault)
    for row in rows:
        for key in status.STATUSES:
            other[key] -= row[key]
    if any(other.values()):
        rows.append({"folder": "(ingested once)", "watched": False, **other})
    if vectors:  # chunks searchable by words, still waiting for their vectors
        for row in rows:
            row["awaiting vectors"] = status.unembedded(vault, row["folder"] if row["watched"] else None)
        if len(rows) > len(roots):
            rows[-1]["awaiting vectors"] -= sum(row["awaiting vectors"] for row in rows[:-1])
    if as_json:
        echo_json(rows)
    elif rows:
        table("Sources", rows)
    else:
        click.echo("No sources. Add a folder with `memos-desktop watch add PATH`.")
