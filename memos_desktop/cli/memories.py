"""Plaintext memory commands: remember, search, show, history, edit, forget, restore."""

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json, print_cube, when
from memos_desktop.errors import MemosError
from memos_desktop.parsing import parse_date, parse_duration


@cli.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--ttl", help="Forget automatically after this long (e.g. 12h, 7d).")
@click.option("--title", default="", help="A short title.")
@click.option("--importance", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--pin", is_flag=True, help="Keep this memory in every prompt's cached prefix.")
@click.option("--profile", default="default", show_default=True)
@click.option("--shared", is_flag=True, help="Visible to every profile.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def remember(obj: Context, text, tags, ttl, title, importance, pin, profile, shared, as_json) -> None:
    """Store TEXT as a new memory."""
    content = " ".join(text).strip()
    if not content:
        raise MemosError("Nothing to remember: the text is empty.")
    cube = obj.vault().add(
        content,
        title=title,
        tags=tags,
        ttl=parse_duration(ttl) if ttl else None,
        importance=importance,
        pinned=pin,
        profile=profile,
        visibility="shared" if shared else "private",
        source={"type": "cli"},
    )
    if as_json:
        echo_json(cube.to_dict())
    else:
        click.echo(cube.id)


@cli.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--kind", type=click.Choice(["plaintext", "activation", "parameter"]))
@click.option("--tag", "tags", multiple=True, help="Only memories with this tag (repeatable).")
@click.option("--source", "source_path", help="Only memories from this file, folder or chat conversation.")
@click.option("--since", help="Only facts valid on or after this date.")
@click.option("--until", help="Only facts valid on or before this date.")
@click.option("--profile", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def search(obj: Context, query, k, kind, tags, source_path, since, until, profile, as_json) -> None:
    """Hybrid (keyword + meaning) search over memories."""
    from memos_desktop.operation import search as operator

    vault = obj.vault()
    filters = operator.Filters(
        kind=kind,
        tags=tuple(tags),
        source_path=source_path,
        since=parse_date(since),
        until=parse_date(until),
    )
    hits = operator.search(vault, " ".join(query), k=k, profile=profile, filters=filters)
    notice = None if vault.embedder is not None else obj.embedder_notice
    if as_json:
        echo_json(
            {
                "query": " ".join(query),
                "notice": notice,
                "hits": [h.to_dict() for h in hits],
            }
        )
        return
    if notice:
        click.echo(f"note: {notice}", err=True)
    if not hits:
        click.echo("No matching memories.")
    for h in hits:
        text = h.cube.content.replace("\n", " ")
        click.echo(f"{h.cube.id}  {h.score:.3f}  {text[:100]}")
        click.echo(f"    {h.cube.citation()}" + (f"  [{', '.join(h.cube.tags)}]" if h.cube.tags else ""))


@cli.command()
@click.argument("cube_id")
@click.option("--profile", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(obj: Context, cube_id, profile, as_json) -> None:
    """Show one memory with its metadata."""
    vault = obj.vault(embedder=False)
    cube = vault.get(cube_id, profile=profile, include_inactive=True)
    vault.record_read([cube.id], "show")
    if as_json:
        echo_json({**cube.to_dict(), "links": vault.links(cube.id)})
    else:
        print_cube(cube)


@cli.command()
@click.argument("cube_id")
@click.option("--profile", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(obj: Context, cube_id, profile, as_json) -> None:
    """List every version of a memory."""
    vault = obj.vault(embedder=False)
    versions = vault.history(cube_id, profile=profile)
    vault.record_read([cube_id], "history")
    if as_json:
        echo_json(versions)
        return
    for v in versions:
        snap = v["snapshot"]
        text = snap["content"].replace("\n", " ")
        click.echo(f"v{v['version']:<3} {when(v['at'])}  {v['op']:<8} {snap['state']:<8} {text[:70]}")


@cli.command()
@click.argument("cube_id")
@click.option("--text", help="New content (default: open $EDITOR on a RAM-backed private file).")
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--title")
@click.option("--ttl", help="New time to live (e.g. 7d); 'none' removes it.")
@click.option("--importance", type=click.FloatRange(0, 1))
@click.option("--pin/--unpin", default=None)
@click.option("--profile", default="default", show_default=True)
@pass_ctx
def edit(obj: Context, cube_id, text, tags, title, ttl, importance, pin, profile) -> None:
    """Change a memory (writes a new version; the old one stays in history)."""
    vault = obj.vault()
    cube = vault.get(cube_id, profile=profile, touch=False)
    changes: dict = {}
    if text is None and not (tags or title is not None or ttl or importance is not None or pin is not None):
        from memos_desktop.cli.editor import edit_in_ram

        text = edit_in_ram(cube.content)
        if text is None:
            click.echo("No change.")
            return
    if text is not None:
        if not text.strip():
            raise MemosError("The new text is empty; use `forget` to delete a memory.")
        changes["content"] = text.strip()
    if tags:
        changes["tags"] = list(tags)
    if title is not None:
        changes["title"] = title
    if ttl:
        changes["ttl"] = None if ttl.lower() == "none" else parse_duration(ttl)
    if importance is not None:
        changes["importance"] = importance
    if pin is not None:
        changes["pinned"] = pin
    new = vault.edit(cube_id, profile=profile, **changes)
    click.echo(f"{new.id} is now version {new.version}.")


@cli.command()
@click.argument("cube_id")
@click.option("--profile", default="default", show_default=True)
@pass_ctx
def forget(obj: Context, cube_id, profile) -> None:
    """Delete a memory (a tombstone: `restore` brings it back)."""
    cube = obj.vault(embedder=False).forget(cube_id, profile=profile)
    click.echo(f"Forgot {cube.id} (version {cube.version}); `memos-desktop restore {cube.id}` undoes it.")


@cli.command()
@click.argument("cube_id")
@click.option("--version", "to_version", type=int, help="Roll back to this version instead.")
@click.option("--profile", default="default", show_default=True)
@pass_ctx
def restore(obj: Context, cube_id, to_version, profile) -> None:
    """Bring back a forgotten memory, or roll it back to an earlier version."""
    vault = obj.vault()
    if to_version is not None:
        cube = vault.rollback(cube_id, to_version, profile=profile)
        click.echo(f"{cube.id} rolled back to the content of version {to_version} (now version {cube.version}).")
    else:
        cube = vault.restore(cube_id, profile=profile)
        click.echo(f"Restored {cube.id} (version {cube.version}).")
