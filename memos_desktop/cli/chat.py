"""`memos-desktop chat`: answers without the TUI."""

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json

DEFAULT_SYSTEM = "You are a helpful assistant running privately on this computer."


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
