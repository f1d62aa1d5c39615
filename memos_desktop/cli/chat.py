"""`memos-desktop chat`: the assistant without the TUI, one message (`-m`) or a conversation.

A thin interface over `operation.turn.Assistant`, the one turn pipeline: memory is used by
default (retrieval, citations, the exchange stored, MemReader); `--no-memory` is a plain chat.
Prints the answer as it streams, then the memories it drew on; `--json` prints one object.
"""

import sys
import threading
from typing import Any

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.cli.output import echo_json

EXIT_WORDS = ("/exit", "/quit")


@cli.command("chat")
@click.option("--message", "-m", help="Answer this one message and exit (else: a conversation on stdin).")
@click.option("--model", "model_name", help="A registered model (default: the default model).")
@click.option("--no-memory", is_flag=True, help="A plain chat: no memories used, nothing stored or remembered.")
@click.option("--system", help="Replace the system prompt.")
@click.option("--max-tokens", type=click.IntRange(1, 8192), help="Longest answer (default: the settings').")
@click.option("--temperature", type=click.FloatRange(0, 2), help="0 is greedy (default: the model's recommendation).")
@click.option("--repeat-penalty", type=click.FloatRange(1, 2), help="1 is none (default: the settings').")
@click.option("--seed", type=int, help="Sampling seed (default: the turn number).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer, citations, stored, model.")
@pass_ctx
def chat_cmd(
    ctx: Context,
    message: str | None,
    model_name: str | None,
    no_memory: bool,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    repeat_penalty: float | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """Chat with the default model, using and growing your memories.

    With -m, answer one message; without it, read messages line by line until end of input or
    /exit. /remember, /forget, /pin, /unpin and /ttl work as in the TUI.
    """
    from memos_desktop.operation.turn import SYSTEM_PROMPT, Assistant, load_settings
    from memos_desktop.runtime.models import get_model

    session = ctx.session(embedder=not no_memory)
    with session.access() as vault:
        entry = get_model(vault, model_name)
        settings = load_settings(vault)
    session.load_model(entry["name"])
    overrides: dict[str, Any] = {
        k: v
        for k, v in {"answer_tokens": max_tokens, "temperature": temperature, "repeat_penalty": repeat_penalty}.items()
        if v is not None
    }
    if temperature is not None:
        overrides["sampling"] = "custom"  # an explicit temperature wins over the model's recommendation
    assistant = Assistant(
        session.vault,
        session.llm,
        settings,
        model=entry,
        access=session.access,
        system=system or SYSTEM_PROMPT,
        **overrides,
    )
    if seed is not None:
        assistant.seed = seed
    conversation = assistant.new_conversation()
    if message is not None:
        _one(assistant, conversation, message, not no_memory, as_json)
        return
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ") if interactive else sys.stdin.readline()
        except (EOFError, click.Abort):
            break
        if not line:
            break
        line = line.strip()
        if line.lower() in EXIT_WORDS:
            break
        if line:
            _one(assistant, conversation, line, not no_memory, as_json)


def _one(assistant, conversation, text: str, memory: bool, as_json: bool) -> None:
    """One turn through the pipeline, streamed (or as JSON); Ctrl-C stops the answer, keeping nothing."""
    cancel = threading.Event()
    streamed: list[str] = []

    def stream(piece: str) -> None:
        streamed.append(piece)
        click.echo(piece, nl=False)

    try:
        result = assistant.turn(conversation, text, on_token=None if as_json else stream, cancel=cancel, memory=memory)
    except KeyboardInterrupt:
        cancel.set()
        click.echo()
        raise click.Abort() from None
    if as_json:
        echo_json(_as_dict(assistant, result))
        return
    click.echo("" if streamed else result.answer)  # a /command answers in one line, unstreamed
    for c in result.citations:
        where = "" if c.where.startswith("memory ") else f"{c.where}; "
        click.echo(f"  [{c.n}] {c.cube_id}  {c.title or c.excerpt}  ({where}{'cited' if c.cited else 'used'})")
    for op in result.ops if result.stored else ():
        if op.op in ("ADD", "UPDATE"):
            click.echo(f"  remembered ({op.op.lower()}): {op.text}  {op.cube_id}")


def _as_dict(assistant, result) -> dict:
    t = result.timings
    return {
        "model": assistant.model_name,
        "answer": result.answer,
        "citations": [c.as_dict() for c in result.citations],
        "stored": result.written,
        "conversation": result.conversation_id if result.stored else None,
        "turn": result.turn,
        "left_out": [vars(x) for x in result.left_out],
        "stop_reason": result.stop_reason,
        "prompt_tokens": t.get("prompt_tokens", 0),
        "prefix_tokens": t.get("prefix_tokens", 0),
        "restored_tokens": t.get("prefix_restored_tokens", 0),
        "answer_tokens": t.get("answer_tokens", 0),
        "ttft_s": t.get("ttft_s"),
        "extraction_error": result.extraction.error if result.extraction else None,
    }
