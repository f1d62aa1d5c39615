"""`memos-desktop bench NAME`: each benchmark prints a table (or JSON with --json)."""

import json
from pathlib import Path

import click

from memos_desktop.cli.app import Context, cli, pass_ctx
from memos_desktop.errors import MemosError


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
@click.option("--iters", type=int, help="Training iterations (default: 100, or 60 with --model).")
@click.option("--model", help="A real GGUF (path, or `smollm2`): prove probe facts are learned by a LoRA.")
@click.option("--rank", type=int, help="LoRA rank (with --model; default: the trainer's).")
@click.option("--layers", type=int, help="Top blocks the LoRA adapts (with --model; default: the trainer's).")
@click.option("--lr", "learning_rate", type=float, help="Learning rate (with --model; default: the trainer's).")
@click.option("--json", "as_json", is_flag=True)
def bench_train(n_facts, iters, model, rank, layers, learning_rate, as_json) -> None:
    """LoRA distillation: time, peak memory, adapter size, gain, GGUF export, tiny vs small model."""
    from memos_desktop.bench import report
    from memos_desktop.bench import train as bench_mod

    if model:

        def progress(p) -> None:
            if p.iteration % 10 == 0 or p.iteration == p.iters:
                click.echo(f"iteration {p.iteration}/{p.iters}: loss {p.loss:.3f}", err=True)

        from memos_desktop.training.trainer import TrainConfig

        given = {"iters": iters or bench_mod.MODEL_ITERS, "rank": rank, "num_layers": layers}
        given["learning_rate"] = learning_rate
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
        result = bench_mod.run_model(model, config, progress=progress)
        report(f"bench train --model {result['model']} (probe facts)", result["rows"], result, as_json)
        if not as_json:
            click.echo(
                f"with adapter {result['with_adapter_correct']}/{result['facts']} correct, without "
                f"{result['without_adapter_correct']}/{result['facts']}; rank {config.rank} on the top "
                f"{config.num_layers} blocks, {config.iters} iters, lr {config.learning_rate:g}, "
                f"control perplexity ×{result['control_ppl_ratio']:.2f}, "
                f"train CPU {result['train_cpu_s']:.0f} s (wall {result['train_wall_s']:.0f} s), "
                f"conversion CPU {result['convert_cpu_s']:.1f} s; " + ("PASSED" if result["passed"] else "NOT PASSED")
            )
        return
    result = bench_mod.run(n_facts=n_facts, iters=iters or 100)
    report("bench train (LoRA distillation)", result["rows"], result, as_json)
    if not as_json:
        click.echo(f"small/tiny training time: {result['small_over_tiny_time']:.1f}x")
        click.echo(
            f"Same data on this CPU: 0.5B model ~{result['qwen05b_estimate_this_cpu_s'] / 3600:.1f} h, "
            f"1.5B model ~{result['qwen15b_estimate_this_cpu_s'] / 3600:.1f} h ({result['estimate_note']})"
        )


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
@click.option("--tiny", is_flag=True, help="Run on the tiny generated test model (a quick check, not a measure).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_ttft(lengths: str, runtimes: tuple[str, ...], threads: int, tiny: bool, as_json: bool) -> None:
    """Time to first token: cold prefill vs a prefix restored from activation memory."""
    from memos_desktop.bench import report, ttft
    from memos_desktop.runtime import testmodels

    try:
        parsed = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated token counts, e.g. 512,2048") from None
    chosen = list(runtimes) or ["llama.cpp", "mlx"]
    specs = {runtime: testmodels.TINY for runtime in chosen} if tiny else None
    result = ttft.run(parsed, chosen, threads=threads, specs=specs)
    report("TTFT: cold vs restored activation memory", ttft.rows(result), result, as_json)


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


def _cutoffs(ks: str) -> tuple[int, ...]:
    try:
        cutoffs = tuple(sorted({int(k) for k in ks.split(",") if k.strip()}))
    except ValueError:
        raise MemosError(f"--k takes comma-separated whole numbers, not {ks!r}.") from None
    if not cutoffs or min(cutoffs) < 1:
        raise MemosError("--k needs at least one cut-off of 1 or more.")
    return cutoffs


def _recall_report(name: str, result: dict, as_json: bool) -> None:
    from memos_desktop.bench import locomo, report

    title = (
        f"{name} evidence recall: {result['questions']} questions, {result['turns']} turns, "
        f"embedder {result['embedder'] or 'none (keyword-only)'}, {result['seconds']} s\n"
        f"{result['definition']}; 'below' marks where ours falls below a baseline"
    )
    report(title, locomo.rows(result), result, as_json)


_RECALL_OPTIONS = [
    click.option("--k", "ks", default="5,10,20", show_default=True, help="Comma-separated cut-offs."),
    click.option("--limit", type=click.IntRange(1), help="Ask only the first N questions of each conversation."),
    click.option("--no-cache", is_flag=True, help="Embed everything again instead of using the embedding cache."),
    click.option("--json", "as_json", is_flag=True),
]


def _recall_options(fn):
    for option in reversed(_RECALL_OPTIONS):
        fn = option(fn)
    return fn


@bench.command("locomo")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@_recall_options
def bench_locomo(directory, ks, limit, no_cache, as_json) -> None:
    """Evidence recall@k of search on LoCoMo-format conversations, beside bm25 and dense baselines."""
    from memos_desktop.bench import locomo

    result = locomo.run(directory, _cutoffs(ks), cache=False if no_cache else None, limit=limit)
    _recall_report("LoCoMo", result, as_json)


@bench.command("realmem")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_recall_options
@click.option(
    "--write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the converted conversations (LoCoMo format, readable by `bench locomo`).",
)
def bench_realmem(path, ks, limit, no_cache, as_json, write) -> None:
    """Evidence recall@k on RealMemBench personas (a *_dialogues_*.json file or a directory of
    them), converted to the LoCoMo format, beside bm25 and dense baselines."""
    from memos_desktop.bench import locomo, realmem

    samples = realmem.load(path)
    if write:
        write.write_text(json.dumps(samples, ensure_ascii=False), encoding="utf-8")
    conversations = locomo.from_samples(samples, Path(path))
    result = locomo.run(path, _cutoffs(ks), conversations=conversations, cache=False if no_cache else None, limit=limit)
    _recall_report("RealMemBench", result, as_json)


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
@click.option(
    "--real-queries/--synthetic-queries",
    default=True,
    show_default=True,
    help="Also measure end to end with each query embedded by the real all-MiniLM-L6-v2.",
)
@click.option("--json", "as_json", is_flag=True)
def bench_search(n, queries, real_queries, as_json) -> None:
    """Hybrid search p50/p95 at 10k and N cubes, encrypted vs plain vault (synthetic data), given
    the query's vector and end to end from its text."""
    from memos_desktop.bench import report, search

    result = search.run(n=n, queries=queries, real_queries=real_queries)
    title = f"search latency, {queries} queries, k={result['k']}, {result['seconds']} s; {result['data']}"
    report(title, search.rows(result), result, as_json)
    if not as_json:
        for size, entry in result["sizes"].items():
            counts = ", ".join(f"{n} {name}" for name, n in entry["index_rows"].items())
            click.echo(f"index rows at {size} memories: {counts}")


@bench.command("knn")
@click.option(
    "--n",
    "n",
    type=click.IntRange(100),
    default=7_500,
    show_default=True,
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


def model_path(ctx: Context, model: str) -> Path:
    """A benchmark's --model: a model file or directory, else the name of a registered model."""
    from memos_desktop.runtime.models import get_model

    path = Path(model).expanduser()
    if path.exists():
        return path
    return Path(get_model(ctx.vault(embedder=False), model)["path"])


@bench.command("turn")
@click.option("--model", help="A registered model's name or a model path (default: a generated Qwen2.5-0.5B shape).")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--answer-tokens", type=int, default=16, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs of each TTFT variant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def bench_turn(ctx: Context, model: str | None, threads: int, answer_tokens: int, repeats: int, as_json: bool) -> None:
    """One chat turn with 20 memories: TTFT with/without activation memory, beside raw llama.cpp."""
    from memos_desktop.bench import report, turn

    path = model_path(ctx, model) if model else None
    result = turn.run(threads=threads, answer_tokens=answer_tokens, repeats=repeats, model=path)
    title = (
        f"bench turn: {result['model']}, {result['memories']} memories ({result['pinned']} pinned), prompt "
        f"{result['prompt_tokens']} tokens, prefix {result['prefix_tokens']}; TTFT reduction "
        f"{result['ttft_reduction']:.1%} wall, {result['ttft_cpu_reduction']:.1%} CPU; "
        f"identical output: {result['identical_output']}"
    )
    if result["turn_vs_raw_prefill"] is not None:
        title += (
            f"; whole-turn TTFT / raw prefill: {result['turn_vs_raw_prefill']:.2f}x wall, "
            f"{result['turn_vs_raw_prefill_cpu']:.2f}x CPU (prefill only)"
        )
    if result["tokens_per_s"]:
        title += f"; decoding {result['tokens_per_s']:.1f} tokens/s"
    report(title, turn.rows(result), result, as_json)


@bench.command("reader")
@click.option("--model", required=True, help="A registered model's name or a model path.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def bench_reader(ctx: Context, model: str, threads: int, as_json: bool) -> None:
    """MemReader on ~30 scripted conversations: precision, recall, memories taken from the assistant."""
    from memos_desktop.bench import reader, report

    result = reader.run(model_path(ctx, model), threads=threads)
    title = (
        f"bench reader: {result['model']}, {result['conversations']} conversations, {result['facts']} stated facts "
        "(goal with the model: precision >= 0.9, 0 from assistant text)"
    )
    report(title, reader.rows(result), result, as_json)


@bench.command("lang")
@click.option("--dense/--no-dense", default=True, show_default=True, help="Also rank by the embedder alone.")
@click.option("--json", "as_json", is_flag=True)
def bench_lang(dense, as_json) -> None:
    """Keyword search hit@5 in Japanese, Chinese, German and Russian (Debian's translated man
    pages): ours vs the word index alone vs an FTS5 trigram index vs the embedder alone."""
    from memos_desktop.bench import lang, report

    result = lang.run(dense=dense)
    title = f"lang: hit@{result['k']} per language, one vault of every language's notes"
    report(title, result["rows"], result, as_json)
