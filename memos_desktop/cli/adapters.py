"""Parameter memory commands: `train` a LoRA adapter from memories, and `adapters` to manage them."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json, when
from memos_desktop.errors import MemosError
from memos_desktop.parsing import parse_duration

if TYPE_CHECKING:
    from memos_desktop.training.adapters import Adapters
    from memos_desktop.training.trainer import Progress
    from memos_desktop.vault import MemCube, Vault


def _training_model(vault: "Vault", option: str | None, setting: str, what: str) -> Path | None:
    """A model path from the option (remembered as a setting) or the remembered setting, or None."""
    if option:
        path = Path(option).expanduser().resolve()
        if not path.exists():
            raise MemosError(f"No {what} at {path}.")
        vault.set_setting(setting, str(path))
        return path
    stored = vault.get_setting(setting)
    return Path(stored) if stored else None


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
@click.option("--lr", "learning_rate", type=float, default=5e-4, show_default=True)
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
    tag: str | None,
    query: str | None,
    proposal: int | None,
    ids: tuple[str, ...],
    name: str | None,
    model: str | None,
    gguf: str | None,
    iters: int,
    rank: int,
    learning_rate: float,
    language: str | None,
    min_age: str,
    min_uses: int,
    min_gain: float,
    max_ppl_ratio: float,
    resume: bool,
    no_enable: bool,
    as_json: bool,
) -> None:
    """Distil stable memories into a LoRA adapter (parameter memory); Ctrl-C stops it resumably."""
    from functools import partial

    from memos_desktop.training.data import proposal_ids, select_facts
    from memos_desktop.training.distill import distill
    from memos_desktop.training.job import run_in_foreground
    from memos_desktop.training.trainer import TrainConfig

    vault = obj.vault(embedder=False)
    if proposal is not None:
        ids = tuple(proposal_ids(vault, proposal))
    # `--min-age never` (no duration) asks for no minimum age
    age = parse_duration(min_age) or 0.0
    facts = select_facts(vault, tag=tag, query=query, ids=list(ids) or None, min_age=age, min_uses=min_uses)
    selection: dict[str, Any]
    if tag:
        selection, default_name = {"tag": tag}, f"tag:{tag}"
    elif query:
        selection, default_name = {"query": query}, f"query:{query}"
    elif proposal is not None:
        selection, default_name = {"proposal": proposal, "ids": list(ids)}, f"proposal:{proposal}"
    else:
        selection, default_name = {"ids": list(ids)}, f"facts:{len(facts)}"
    name = name or default_name
    model_dir = _training_model(vault, model, "train_model", "MLX model directory")
    if model_dir is None:
        raise MemosError("No MLX model directory chosen; pass it once with --model and it is remembered.")
    gguf_file = _training_model(vault, gguf, "train_gguf", "GGUF model file")
    config = TrainConfig(iters=iters, rank=rank, learning_rate=learning_rate)

    def show(p: "Progress") -> None:
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


def _adapter_row(registry: "Adapters", cube: "MemCube") -> dict[str, Any]:
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
def adapters_list(obj: Context, as_json: bool) -> None:
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
def adapters_enable(obj: Context, adapter_id: str) -> None:
    """Enable an adapter (others for the same base model are disabled)."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).enable(adapter_id)
    click.echo(f"Enabled adapter {cube.id} ({cube.title}).")


@adapters.command("disable")
@click.argument("adapter_id")
@pass_ctx
def adapters_disable(obj: Context, adapter_id: str) -> None:
    """Disable an adapter; the model runs without it."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).disable(adapter_id, "disabled by the user")
    click.echo(f"Disabled adapter {cube.id} ({cube.title}).")


@adapters.command("rollback")
@click.argument("adapter_id")
@click.argument("version", type=int)
@pass_ctx
def adapters_rollback(obj: Context, adapter_id: str, version: int) -> None:
    """Bring back the weights of an earlier VERSION of an adapter."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).rollback(adapter_id, version)
    click.echo(f"Adapter {cube.id} now has the weights of version {version} (as version {cube.version}).")


@adapters.command("rm")
@click.argument("adapter_id")
@pass_ctx
def adapters_rm(obj: Context, adapter_id: str) -> None:
    """Delete an adapter's weights (every version); the facts stay as plaintext memory."""
    from memos_desktop.training.adapters import Adapters

    cube = Adapters(obj.vault(embedder=False)).remove(adapter_id)
    click.echo(f"Removed adapter {cube.id} ({cube.title}); its facts are still in the vault.")
