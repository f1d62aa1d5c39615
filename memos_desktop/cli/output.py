"""What the commands print: JSON for scripts, tables and memory cards for people."""

import json
import math

import click


def finite(data):
    """`data` with every NaN or infinite float as None: JSON has no such numbers, and a script
    reading `Infinity` or `NaN` (what Python's json writes for them) fails or is misled."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def echo_json(data) -> None:
    click.echo(json.dumps(finite(data), indent=2, ensure_ascii=False, default=str, allow_nan=False))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def print_cube(cube) -> None:
    click.echo(f"id:         {cube.id}")
    click.echo(f"kind:       {cube.kind}   state: {cube.state}   version: {cube.version}")
    if cube.title:
        click.echo(f"title:      {cube.title}")
    click.echo(f"owner:      {cube.owner} ({cube.visibility})")
    if cube.tags:
        click.echo(f"tags:       {', '.join(cube.tags)}")
    click.echo(f"source:     {cube.citation()}")
    click.echo(f"created:    {when(cube.created_at)}   updated: {when(cube.updated_at)}")
    if cube.valid_from or cube.valid_to:
        click.echo(f"valid:      {when(cube.valid_from)} → {when(cube.valid_to)}")
    if cube.expires_at:
        click.echo(f"expires:    {when(cube.expires_at)}")
    click.echo(
        f"importance: {cube.importance}   pinned: {'yes' if cube.pinned else 'no'}"
        f"   accessed: {cube.access_count}×, last {when(cube.last_accessed_at)}"
    )
    click.echo("")
    click.echo(cube.content)


def table(title: str, rows: list[dict]) -> None:
    from memos_desktop.bench import report

    report(title, rows, {}, as_json=False)
