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
from memos_desktop.errors import MemosError, from_storage


class Context:
    """What every command shares: the data directory and, once unlocked, the vault."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._vault = None
        self.embedder_notice: str | None = None

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
                from memos_desktop.embed.config import embedder_status

                self._vault.embedder, self.embedder_notice = embedder_status(self._vault)
        return self._vault

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns every MemosError (and storage failure) raised by a command into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MemosError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            user = from_storage(exc)
            if user is None:
                raise
            raise click.ClickException(str(user)) from None


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


# ----- vault: plaintext memory --------------------------------------------------------------


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' → seconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise MemosError(f"Cannot read the duration {text!r}; use e.g. 90s, 15m, 12h, 7d or 2w.")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return float(m.group(1)) * unit


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@cli.command()
@click.pass_obj
def init(obj: Context) -> None:
    """Create a new encrypted vault."""
    from memos_desktop.vault import Vault

    if Vault.exists(obj.data_dir):
        raise MemosError(f"A vault already exists in {obj.data_dir}.")
    vault = Vault.create(obj.data_dir, obj.passphrase(confirm=True))
    vault.close()
    click.echo(f"Created an encrypted vault in {obj.data_dir}.")


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
    from memos_desktop import operator

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


def parse_date(text: str | None) -> float | None:
    """A date or datetime in almost any written form → a timestamp (None stays None)."""
    if not text:
        return None
    import dateparser

    parsed = dateparser.parse(text, settings={"RETURN_AS_TIMEZONE_AWARE": True})
    if parsed is None:
        raise MemosError(f"Cannot read the date {text!r}.")
    return parsed.timestamp()


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


@cli.command()
@click.argument("cube_id")
@click.option("--profile", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(obj: Context, cube_id, profile, as_json) -> None:
    """Show one memory with its metadata."""
    vault = obj.vault(embedder=False)
    cube = vault.get(cube_id, profile=profile, include_inactive=True)
    vault.audit("read", cube.id, detail={"via": "show"})
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
    versions = obj.vault(embedder=False).history(cube_id, profile=profile)
    if as_json:
        echo_json(versions)
        return
    for v in versions:
        snap = v["snapshot"]
        text = snap["content"].replace("\n", " ")
        click.echo(f"v{v['version']:<3} {when(v['at'])}  {v['op']:<8} {snap['state']:<8} {text[:70]}")


@cli.command()
@click.argument("cube_id")
@click.option("--text", help="New content (default: open $EDITOR).")
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
        text = click.edit(cube.content)
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
@click.option("--verify", is_flag=True, help="Check the whole hash chain.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit(obj: Context, limit, cube_id, verify, as_json) -> None:
    """Show the hash-chained audit log of reads, writes and exports."""
    vault = obj.vault(embedder=False)
    if verify:
        n = vault.verify_audit()
        click.echo(f"Audit chain intact: {n} entries.")
        return
    entries = vault.audit_log(limit=limit, cube_id=cube_id)
    if as_json:
        echo_json(entries)
        return
    for e in entries:
        click.echo(f"{e['seq']:>6} {when(e['at'])} {e['action']:<10} {e['cube_id'] or '-':<26} {e['actor']}")


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
    vault.set_setting(SETTING, choice)
    vault.embedder = new
    if new is not None:
        vault.sync_vectors()  # a new vector table for the new model, every memory re-embedded
    click.echo(f"{status[:1].upper()}{status[1:]}; {vault.vector_count()} memories embedded.")


@cli.command()
@pass_ctx
def passwd(obj: Context) -> None:
    """Change the vault passphrase (rewraps the key; the database is not rewritten)."""
    from memos_desktop.vault import keys

    old = obj.passphrase()
    new = os.environ.get("MEMOS_NEW_PASSPHRASE")
    if not new:
        if not sys.stdin.isatty():
            raise MemosError("No new passphrase: set MEMOS_NEW_PASSPHRASE or run in a terminal.")
        new = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
    keys.rewrap(obj.data_dir / paths.VAULT_HEADER, old, new)
    click.echo("Passphrase changed.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def doctor(obj: Context, as_json) -> None:
    """Check the install: extensions load, encryption is on, the embedder works."""
    from memos_desktop import doctor as checks

    results = checks.run(obj)
    if as_json:
        echo_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        for name, ok, detail in results:
            click.echo(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


# ----- parameter memory: LoRA adapters distilled from memories ------------------------------


def _training_model(vault, option: str | None, setting: str, what: str, required: bool) -> Path | None:
    """A model path from the option (remembered as a setting) or the remembered setting."""
    if option:
        path = Path(option).expanduser().resolve()
        if not path.exists():
            raise MemosError(f"No {what} at {path}.")
        vault.set_setting(setting, str(path))
        return path
    stored = vault.get_setting(setting)
    if stored:
        return Path(stored)
    if required:
        raise MemosError(f"No {what} chosen; pass it once with --{setting.split('_', 1)[1]} and it is remembered.")
    return None


@cli.command()
@click.option("--from-tag", "tag", help="Distil the memories with this tag.")
@click.option("--query", help="Distil the memories matching this search.")
@click.option("--proposal", type=int, help="Distil the memories of this scheduler proposal.")
@click.option("--id", "ids", multiple=True, help="Distil this memory (repeatable).")
@click.option("--name", help="Adapter name (default: from the selection); retraining a name adds a version.")
@click.option("--model", help="The MLX model directory to train on (remembered).")
@click.option("--gguf", help="The same base model as GGUF, to export the adapter for llama.cpp (remembered).")
@click.option("--iters", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--rank", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=2e-3, show_default=True)
@click.option("--language", help="Only distil facts in this language (en, de, fr, es).")
@click.option("--min-age", default="0s", show_default=True, help="Only facts unchanged this long (e.g. 7d).")
@click.option("--min-uses", type=int, default=0, show_default=True, help="Only facts used this often.")
@click.option("--min-gain", type=float, default=0.1, show_default=True, help="Required held-out gain (nats/token).")
@click.option("--max-ppl-ratio", type=float, default=1.25, show_default=True, help="Allowed control perplexity rise.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same adapter.")
@click.option("--no-enable", is_flag=True, help="Keep the new adapter disabled.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def train(
    obj: Context,
    tag,
    query,
    proposal,
    ids,
    name,
    model,
    gguf,
    iters,
    rank,
    learning_rate,
    language,
    min_age,
    min_uses,
    min_gain,
    max_ppl_ratio,
    resume,
    no_enable,
    as_json,
) -> None:
    """Distil stable memories into a LoRA adapter (parameter memory); Ctrl-C stops it resumably."""
    from functools import partial

    from memos_desktop.training.data import proposal_ids, select_facts
    from memos_desktop.training.distill import distill
    from memos_desktop.training.job import run_in_foreground
    from memos_desktop.training.trainer import TrainConfig

    vault = obj.vault(embedder=False)
    if proposal is not None:
        ids = proposal_ids(vault, proposal)
    facts = select_facts(
        vault, tag=tag, query=query, ids=list(ids) or None, min_age=parse_duration(min_age), min_uses=min_uses
    )
    if tag:
        selection, default_name = {"tag": tag}, f"tag:{tag}"
    elif query:
        selection, default_name = {"query": query}, f"query:{query}"
    elif proposal is not None:
        selection, default_name = {"proposal": proposal, "ids": list(ids)}, f"proposal:{proposal}"
    else:
        selection, default_name = {"ids": list(ids)}, f"facts:{len(facts)}"
    name = name or default_name
    model_dir = _training_model(vault, model, "train_model", "MLX model directory", True)
    gguf_file = _training_model(vault, gguf, "train_gguf", "GGUF model file", False)
    config = TrainConfig(iters=iters, rank=rank, learning_rate=learning_rate)

    def show(p) -> None:
        if not as_json and (p.iteration % 10 == 0 or p.iteration == p.iters):
            line = f"\r  iteration {p.iteration}/{p.iters}  loss {p.loss:.3f}  {p.seconds:.0f}s"
            click.echo(line, nl=False, err=True)

    work = partial(
        distill,
        vault,
        facts,
        model=model_dir,
        gguf=gguf_file,
        name=name,
        selection=selection,
        config=config,
        language=language,
        min_gain=min_gain,
        max_ppl_ratio=max_ppl_ratio,
        enable=not no_enable,
        resume=resume,
    )

    def stopping() -> None:
        click.echo("\n  stopping after this step (Ctrl-C again to stop at once)…", err=True)

    outcome = run_in_foreground(work, on_progress=show, on_interrupt=stopping)
    if not as_json:
        click.echo("", err=True)
    ev = outcome.evaluation
    if as_json:
        echo_json({"adapter": outcome.adapter.to_dict(), "evaluation": ev.to_dict()})
        return
    click.echo(f"Adapter {outcome.adapter.id} ({name}, version {outcome.adapter.version}) from {len(facts)} memories.")
    click.echo(
        f"  held-out answers: {ev.heldout_logprob_base:.3f} → {ev.heldout_logprob_adapter:.3f} nats/token "
        f"(gain {ev.gain:.3f}, required {ev.min_gain:.3f})"
    )
    click.echo(f"  control perplexity ×{ev.ppl_ratio:.3f} (allowed ×{ev.max_ppl_ratio:.2f})")
    click.echo("  enabled" if outcome.adapter.meta.get("enabled") else "  disabled (enable with `adapters enable`)")


@cli.group()
def adapters() -> None:
    """List, enable, disable, roll back or remove LoRA adapters (parameter memory)."""


def _adapter_row(registry, cube) -> dict:
    meta = cube.meta
    ev = meta.get("metrics", {}).get("evaluation", {})
    return {
        "id": cube.id,
        "name": cube.title,
        "version": cube.version,
        "enabled": bool(meta.get("enabled")),
        "stale": registry.stale_sources(cube),
        "facts": len(meta.get("sources", [])),
        "base": meta.get("base", {}).get("mlx", {}).get("name"),
        "gguf": (meta.get("base", {}).get("gguf") or {}).get("name"),
        "gain": ev.get("gain"),
        "ppl_ratio": ev.get("ppl_ratio"),
        "disabled_reason": meta.get("disabled_reason"),
        "updated_at": cube.updated_at,
    }


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def adapters_list(obj: Context, as_json) -> None:
    """Show every adapter with its provenance and evaluation."""
    from memos_desktop.training.adapters import Adapters

    registry = Adapters(obj.vault(embedder=False))
    rows = [_adapter_row(registry, c) for c in registry.cubes()]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No adapters yet; create one with `memos-desktop train`.")
    for r in rows:
        state = "enabled" if r["enabled"] else "disabled"
        stale = f", STALE ({len(r['stale'])} facts changed)" if r["stale"] else ""
        gain = f"{r['gain']:.3f}" if r["gain"] is not None else "-"
        click.echo(
            f"{r['id']}  {r['name']}  v{r['version']}  {state}{stale}  {r['facts']} facts  base {r['base']}"
            f"  gain {gain}  updated {when(r['updated_at'])}"
        )


@adapters.command("enable")
@click.argument("adapter_id")
@pass_ctx
def adapters_enable(obj: Context, adapter_id) -> None:
    """Enable an adapter (others for the same base model are disabled)."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).enable(adapter_id)
    click.echo(f"Enabled adapter {cube.id} ({cube.title}).")


@adapters.command("disable")
@click.argument("adapter_id")
@pass_ctx
def adapters_disable(obj: Context, adapter_id) -> None:
    """Disable an adapter; the model runs without it."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).disable(adapter_id, "disabled by the user")
    click.echo(f"Disabled adapter {cube.id} ({cube.title}).")


@adapters.command("rollback")
@click.argument("adapter_id")
@click.argument("version", type=int)
@pass_ctx
def adapters_rollback(obj: Context, adapter_id, version) -> None:
    """Bring back the weights of an earlier VERSION of an adapter."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).rollback(adapter_id, version)
    click.echo(f"Adapter {cube.id} now has the weights of version {version} (as version {cube.version}).")


@adapters.command("rm")
@click.argument("adapter_id")
@pass_ctx
def adapters_rm(obj: Context, adapter_id) -> None:
    """Delete an adapter's weights (every version); the facts stay as plaintext memory."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).remove(adapter_id)
    click.echo(f"Removed adapter {cube.id} ({cube.title}); its facts are still in the vault.")
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
        selection=Selection(tuple(tags), tuple(kinds), _timestamp(since), _timestamp(until), profile),
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

    vault = ctx.vault()
    if watch:
        try:
            sync.watch(vault, folder, interval, show)
        except KeyboardInterrupt:
            click.echo("Stopped.")
    else:
        show(sync.sync_folder(vault, folder))


@cli.group()
def bench() -> None:
    """Benchmarks: each prints a table (or JSON with --json)."""


@bench.command("embed")
@click.argument("locomo", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--notes", type=click.IntRange(1), help="Embed the chunks of this many synthetic notes instead.")
@click.option(
    "--batch-tokens",
    multiple=True,
    type=click.IntRange(1),
    help="llama.cpp batch size in tokens (repeatable; default: the model's).",
)
@click.option(
    "--batch",
    "batch_sizes",
    multiple=True,
    type=click.IntRange(1),
    default=(1, 16, 64),
    show_default=True,
    help="Texts per embed call (repeatable).",
)
@click.option("--texts", "n_texts", type=click.IntRange(1), default=256, show_default=True)
@click.option(
    "--threads",
    multiple=True,
    type=click.IntRange(1),
    default=(1, 2),
    show_default=True,
    help="llama.cpp threads (repeatable).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Interleaved repetitions; figures are medians.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A GGUF embedding model (default: the packaged all-MiniLM-L6-v2).",
)
@click.option("--json", "as_json", is_flag=True)
def bench_embed(locomo, notes, batch_tokens, batch_sizes, n_texts, threads, rounds, model, as_json) -> None:
    """Embedding throughput by batch size on the dialog turns of LOCOMO (a directory of JSON), or
    on the chunks of --notes synthetic notes."""
    from memos_desktop.bench import embed, report

    if locomo is None and not notes:
        raise MemosError("Give a LoCoMo directory or --notes N.")
    result = embed.run(
        locomo,
        batch_sizes,
        n_texts=n_texts,
        threads=threads,
        rounds=rounds,
        model=model,
        notes=notes or 0,
        batch_tokens=batch_tokens or (None,),
    )
    loads = ", ".join(f"{s:.2f}s ({t} threads)" for t, s in result["load_s"].items())
    title = (
        f"embed: {result['model']}, {result['texts']} {result['source']} "
        f"(~{result['mean_tokens']:.0f} tokens each), median of {result['rounds']} rounds; "
        f"model load {loads}"
    )
    report(title, result["rows"], result, as_json)


@bench.command("train")
@click.option("--facts", "n_facts", type=int, default=100, show_default=True)
@click.option("--iters", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_train(n_facts, iters, as_json) -> None:
    """LoRA distillation: time, peak memory, adapter size, gain, GGUF export, tiny vs small model."""
    from memos_desktop.bench import report
    from memos_desktop.bench import train as bench_mod

    result = bench_mod.run(n_facts=n_facts, iters=iters)
    report("bench train (LoRA distillation)", result["rows"], result, as_json)
    if not as_json:
        click.echo(f"small/tiny training time: {result['small_over_tiny_time']:.1f}x")
        click.echo(
            f"Same data on this CPU: 0.5B model ~{result['qwen05b_estimate_this_cpu_s'] / 3600:.1f} h, "
            f"1.5B model ~{result['qwen15b_estimate_this_cpu_s'] / 3600:.1f} h ({result['estimate_note']})"
        )
# ----- language models, chat and the TTFT benchmark (runtime) -----------------------------------
DEFAULT_SYSTEM = "You are a helpful assistant running privately on this computer."


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


@cli.command("chat")
@click.option("--message", "-m", required=True, help="What to ask.")
@click.option("--model", "model_name", help="A registered model (default: the default model).")
@click.option("--system", default=DEFAULT_SYSTEM, show_default=True, help="The system prompt.")
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 is greedy.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the answer and its token counts as JSON.")
@pass_ctx
def chat_cmd(
    ctx: Context,
    message: str,
    model_name: str | None,
    system: str,
    max_tokens: int,
    temperature: float,
    seed: int,
    as_json: bool,
) -> None:
    """Answer one message with the default model, streaming the text (no TUI)."""
    import threading

    from memos_desktop.runtime import Sampling
    from memos_desktop.runtime.activation import ActivationMemory
    from memos_desktop.runtime.chat import chat
    from memos_desktop.runtime.models import load_model
    from memos_desktop.training.adapters import Adapters

    vault = ctx.vault(embedder=False)
    backend = load_model(vault, model_name)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": message}]
    cancel = threading.Event()
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)
    try:  # the model is freed here, on this thread, whatever happens (never at interpreter exit)
        Adapters(vault).apply(backend)  # parameter memory: the enabled adapter for this model, if any
        memory = ActivationMemory(vault)
        turn = chat(backend, messages, prefix_messages=1, memory=memory, sampling=sampling, cancel=cancel)
        if as_json:
            answer = "".join(turn)
            prepared = turn.prepared
            echo_json(
                {
                    "model": model_name or vault.get_setting("default_model"),
                    "answer": answer,
                    "prompt_tokens": turn.prompt_tokens,
                    "prefix_tokens": turn.prefix_tokens,
                    "restored_tokens": prepared.restored_tokens if prepared else 0,
                    "answer_tokens": len(turn.tokens),
                }
            )
        else:
            for piece in turn:
                click.echo(piece, nl=False)
            click.echo()
    except KeyboardInterrupt:
        cancel.set()
        click.echo()
        raise click.Abort() from None
    finally:
        backend.close()


@bench.command("ttft")
@click.option("--lengths", default="512,2048,8192", show_default=True, help="Prefix lengths in tokens.")
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(["llama.cpp", "mlx"]),
    help="Runtimes to measure (default: both).",
)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_ttft(lengths: str, runtimes: tuple[str, ...], threads: int, as_json: bool) -> None:
    """Time to first token: cold prefill vs a prefix restored from activation memory."""
    from memos_desktop.bench import report, ttft

    try:
        parsed = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated token counts, e.g. 512,2048") from None
    result = ttft.run(parsed, list(runtimes) or ["llama.cpp", "mlx"], threads=threads)
    report("TTFT: cold vs restored activation memory", ttft.rows(result), result, as_json)


# ----- MemLoader: watched folders, ingestion, sources ----------------------------------------
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
    from memos_desktop.loader import status
    from memos_desktop.loader.config import LoaderConfig

    vault = ctx.vault(embedder=False)
    rows = [{"folder": r, **status.counts(vault, r)} for r in LoaderConfig.load(vault).roots]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("No watched folders. Add one with `memos-desktop watch add PATH`.")
    else:
        _table("Watched folders", rows)


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
    shown = {}
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
    from memos_desktop.loader import status
    from memos_desktop.loader.config import LoaderConfig

    vault = ctx.vault(embedder=False)
    if show_files or only:
        rows = [s.to_dict() for s in status.files(vault, status=only, limit=limit)]
        if as_json:
            echo_json(rows)
            return
        table = [{k: r[k] for k in ("path", "status", "chunks", "reason")} for r in rows]
        if table:
            _table("Files", table)
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
        _table("Sources", rows)
    else:
        click.echo("No sources. Add a folder with `memos-desktop watch add PATH`.")


def _table(title: str, rows: list[dict]) -> None:
    from memos_desktop.bench import report

    report(title, rows, {}, as_json=False)


@bench.command("ingest")
@click.option("--n", default=10_000, show_default=True, help="Synthetic notes to generate.")
@click.option(
    "--path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Index a copy of this real folder instead.",
)
@click.option("--edits", default=40, show_default=True, help="Saves timed under the live watcher.")
@click.option("--fts-only", is_flag=True, help="No embedding model: full-text index only.")
@click.option(
    "--text",
    type=click.Choice(["english", "syllables"]),
    default="english",
    show_default=True,
    help="Synthetic note text: English words, or the older random-syllable pseudo-words.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_ingest(n: int, path: Path | None, edits: int, fts_only: bool, text: str, as_json: bool) -> None:
    """MemLoader: initial index (words, then vectors), unchanged re-scan, save→searchable latency."""
    from memos_desktop.bench import ingest, report

    result = ingest.run(n=n, path=path, edits=edits, fts_only=fts_only, text=text)
    report("bench ingest", ingest.rows(result), result, as_json)


@bench.command("export")
@click.option("--cubes", "sizes", multiple=True, type=int, default=(20_000, 100_000), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_export(sizes: tuple[int, ...], as_json: bool) -> None:
    """Export + import throughput (MB/s) and peak memory at several vault sizes."""
    from memos_desktop.bench import report
    from memos_desktop.bench.export import run

    result = run(list(sizes))
    report("export / import", result["rows"], result, as_json)


@bench.command("locomo")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option("--k", "ks", default="5,10,20", show_default=True, help="Comma-separated cut-offs.")
@click.option("--json", "as_json", is_flag=True)
def bench_locomo(directory, ks, as_json) -> None:
    """Evidence recall@k of search on LoCoMo-format conversations, beside a bm25 baseline."""
    from memos_desktop.bench import locomo, report

    try:
        cutoffs = tuple(sorted({int(k) for k in ks.split(",") if k.strip()}))
    except ValueError:
        raise MemosError(f"--k takes comma-separated whole numbers, not {ks!r}.") from None
    if not cutoffs or min(cutoffs) < 1:
        raise MemosError("--k needs at least one cut-off of 1 or more.")
    result = locomo.run(directory, cutoffs)
    title = (
        f"LoCoMo evidence recall: {result['questions']} questions, {result['turns']} turns, "
        f"embedder {result['embedder'] or 'none (keyword-only)'}, {result['seconds']} s\n"
        f"{result['definition']}"
    )
    report(title, locomo.rows(result), result, as_json)


@bench.command("search")
@click.option(
    "--n",
    "n",
    type=click.IntRange(100),
    default=100_000,
    show_default=True,
    help="Largest vault size (cubes); 10k is measured too.",
)
@click.option("--queries", type=click.IntRange(10), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_search(n, queries, as_json) -> None:
    """Hybrid search p50/p95 at 10k and N cubes, encrypted vs plain vault (synthetic data)."""
    from memos_desktop.bench import report, search

    result = search.run(n=n, queries=queries)
    title = f"search latency, {queries} queries, k={result['k']}, {result['seconds']} s; {result['data']}"
    report(title, search.rows(result), result, as_json)



@bench.command("knn")
@click.option(
    "--n", "n", type=click.IntRange(100), default=7_500, show_default=True,
    help="Vectors in the vault (the standard library holds about 7,700 paragraphs).",
)
@click.option("--queries", type=click.IntRange(10), default=200, show_default=True)
@click.option("--k", "k", type=click.IntRange(1, 400), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_knn(n, queries, k, as_json) -> None:
    """KNN recall of the exact top k on real all-MiniLM-L6-v2 vectors, current vs previous coarse pass."""
    from memos_desktop.bench import knn, report

    result = knn.run(n=n, queries=queries, k=k)
    title = (
        f"KNN recall@{result['k']} vs exact, {result['vectors']} real vectors ({result['data']}),"
        f" {result['queries']} queries, {result['seconds']} s"
    )
    report(title, knn.rows(result), result, as_json)

# ----- the assistant and its TUI: benchmarks (tui) ----------------------------------------------
@bench.command("startup")
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_startup(repeats: int, as_json: bool) -> None:
    """Process start → the TUI's first frame, vs `python -c pass` and a one-label Textual app."""
    from memos_desktop.bench import report, startup

    result = startup.run(repeats)
    report("bench startup", startup.rows(result), result, as_json)


@bench.command("turn")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--answer-tokens", type=int, default=16, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs of each TTFT variant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_turn(threads: int, answer_tokens: int, repeats: int, as_json: bool) -> None:
    """One chat turn on the Qwen2.5-0.5B-shaped model with 20 memories, TTFT with/without activation memory."""
    from memos_desktop.bench import report, turn

    result = turn.run(threads=threads, answer_tokens=answer_tokens, repeats=repeats)
    title = (
        f"bench turn: {result['memories']} memories ({result['pinned']} pinned), prompt {result['prompt_tokens']} "
        f"tokens, prefix {result['prefix_tokens']}; TTFT reduction {result['ttft_reduction']:.1%} wall, "
        f"{result['ttft_cpu_reduction']:.1%} CPU; "
        f"identical output: {result['identical_output']}"
    )
    report(title, turn.rows(result), result, as_json)
