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
from memos_desktop.errors import MemosError


class Context:
    """What every command shares: the data directory and, once unlocked, the vault."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._vault = None

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
                from memos_desktop.embed.config import embedder_for

                self._vault.embedder = embedder_for(self._vault)
        return self._vault

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns every MemosError raised by a command into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MemosError as exc:
            raise click.ClickException(str(exc)) from None


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
def model_pull(ctx: Context, repo: str, filename: str | None, revision: str | None, name: str | None, force: bool) -> None:
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
    ctx: Context, message: str, model_name: str | None, system: str, max_tokens: int,
    temperature: float, seed: int, as_json: bool,
) -> None:
    """Answer one message with the default model, streaming the text (no TUI)."""
    import threading

    from memos_desktop.runtime import Sampling
    from memos_desktop.runtime.activation import ActivationMemory
    from memos_desktop.runtime.chat import chat
    from memos_desktop.runtime.models import load_model

    vault = ctx.vault(embedder=False)
    backend = load_model(vault, model_name)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": message}]
    cancel = threading.Event()
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)
    turn = chat(backend, messages, prefix_messages=1, memory=ActivationMemory(vault), sampling=sampling, cancel=cancel)
    try:
        if as_json:
            answer = "".join(turn)
            prepared = turn.prepared
            echo_json({
                "model": model_name or vault.get_setting("default_model"),
                "answer": answer,
                "prompt_tokens": turn.prompt_tokens,
                "prefix_tokens": turn.prefix_tokens,
                "restored_tokens": prepared.restored_tokens if prepared else 0,
                "answer_tokens": len(turn.tokens),
            })
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


@cli.group()
def bench() -> None:
    """Benchmarks: measured side by side in one run, printed as a table or JSON."""


@bench.command("ttft")
@click.option("--lengths", default="512,2048,8192", show_default=True, help="Prefix lengths in tokens.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(["llama.cpp", "mlx"]),
              help="Runtimes to measure (default: both).")
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


def main() -> None:
    """Entry point of the `memos-desktop` command."""
    cli()
