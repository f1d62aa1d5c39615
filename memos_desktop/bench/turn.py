"""Benchmark `turn`: one full chat turn with 20 memories, on `--model` (a registered name or a
path; default: the generated Qwen2.5-0.5B-shaped model).

A fresh encrypted vault gets 20 memories (some pinned, so the cached prefix is real) and the
configured embedder. Every run uses a freshly loaded model (empty KV cache). First a full turn
with activation memory on and no saved state yet: the prefix is computed and saved, the exchange
stored and MemReader's extraction timed. Then, on that same vault state, the same prompt
alternately with the prefix restored from activation memory and with activation memory off,
`repeats` times each (medians). TTFT is given as wall time and as this process's CPU time (all
threads), which a busy machine distorts far less. Also reports retrieval and prompt build, and
whether the two variants produced the same greedy tokens. For a GGUF model the same prompt's
tokens are also prefilled by raw llama.cpp (`Llama.eval` on a fresh context, then the first
token), in the same run, so the whole turn's TTFT with memory (retrieval, schedule, prompt build,
prefill) is given as a ratio of that raw prefill; and decoding speed in tokens/s.
"""

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.bench import median

if TYPE_CHECKING:
    from memos_desktop.operation.turn import Assistant, Conversation

MESSAGE = "What should I pack for the trip to Lyon next week, given what you know about me?"
MEMORIES = [
    "My name is Ada Lovelace and I live in Bristol.",
    "I am vegetarian and I do not eat fish either.",
    "I prefer window seats on trains and planes.",
    "My sister Ana lives in Lyon with her two cats.",
    "I am allergic to penicillin.",
    "I work as a structural engineer at a bridge consultancy.",
    "I go running every morning at 6:30.",
    "My partner Sam is learning French.",
    "I always carry a paper notebook and a fountain pen.",
    "The flight to Lyon leaves Bristol at 07:40 next Thursday.",
    "I booked the Hotel des Celestins near Place Bellecour for three nights.",
    "Ana's birthday is on the 14th; I want to bring her a book.",
    "I get cold easily, so I pack a warm jumper even in spring.",
    "My phone charger is USB-C; the laptop needs its own brick.",
    "I prefer walking tours over bus tours.",
    "I read crime novels on trips, lately by Fred Vargas.",
    "I take a reusable water bottle everywhere.",
    "My passport expires in March 2027.",
    "I like to visit food markets, especially Les Halles Paul Bocuse.",
    "I do not drink coffee after noon.",
]
PINNED = 8


def _vault(home: Path):
    import secrets

    from memos_desktop.embed.config import embedder_status
    from memos_desktop.vault import Vault

    vault = Vault.create(home, secrets.token_hex(16))
    vault.embedder, notice = embedder_status(vault)
    vault.add_many(
        [{"content": text, "tags": ["memory", "fact"], "pinned": i < PINNED} for i, text in enumerate(MEMORIES)]
    )
    return vault, notice


def _timed_prompt(assistant: "Assistant", conversation: "Conversation") -> tuple[dict[str, float], list[str]]:
    """Prepare and generate one answer without storing it: its timings (with the CPU time to the
    first piece) and its text pieces."""
    prepared = assistant.prepare(conversation, MESSAGE)
    cpu0 = time.process_time()
    pieces: list[str] = []
    for piece in assistant.generate(prepared):
        if not pieces:
            prepared.timings["ttft_cpu_s"] = time.process_time() - cpu0
        pieces.append(piece)
    return prepared.timings, pieces


def _raw_prefill(model: Path, settings, tokens: list[int]) -> dict:
    """Raw llama.cpp on `tokens`: a fresh context, `Llama.eval`, then the first (greedy) token."""
    import numpy as np
    from llama_cpp import Llama

    from memos_desktop.runtime.llama_backend import no_amx_repack

    no_amx_repack()
    llm = Llama(
        model_path=str(model),
        n_ctx=settings.n_ctx,
        n_batch=settings.batch,
        n_ubatch=settings.batch,
        n_threads=settings.threads,
        n_threads_batch=settings.threads,
        verbose=False,
    )
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        llm.eval(tokens)
        int(np.argmax(llm.scores[llm.n_tokens - 1]))
        return {"s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0}
    finally:
        llm.close()


def run(threads: int = 2, answer_tokens: int = 16, repeats: int = 3, model: Path | None = None) -> dict:
    from memos_desktop.operation.turn import Assistant, TurnOverrides
    from memos_desktop.runtime import LoadSettings, load_backend, runtime_for
    from memos_desktop.runtime.testmodels import qwen05b_shape_gguf

    model = Path(model) if model is not None else qwen05b_shape_gguf()
    settings = LoadSettings(n_ctx=4096, threads=threads)
    greedy: TurnOverrides = {
        "temperature": 0.0,
        "sampling": "custom",
        "repeat_penalty": 1.0,
        "answer_tokens": answer_tokens,
    }

    def load():
        t0 = time.perf_counter()
        backend = load_backend(model, settings)
        return backend, time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        vault, notice = _vault(Path(tmp))
        try:
            backend, load_s = load()
            try:
                first = Assistant(vault, backend, **greedy)
                result = first.turn(first.new_conversation(), MESSAGE)
                prompt = backend.tokenize(
                    backend.chat_prompt(first.prepare(first.new_conversation(), MESSAGE).messages)
                )
            finally:
                backend.close()
            runs: dict[str, list[tuple[dict[str, float], list[str]]]] = {"restored": [], "no_activation": []}
            raw = []
            for _ in range(repeats):
                if runtime_for(model) == "llama.cpp":
                    raw.append(_raw_prefill(model, settings, prompt))
                for name, activation in (("restored", True), ("no_activation", False)):
                    backend, _ = load()
                    try:
                        overrides: TurnOverrides = {**greedy, "activation": activation}
                        assistant = Assistant(vault, backend, **overrides)
                        runs[name].append(_timed_prompt(assistant, assistant.new_conversation()))
                    finally:
                        backend.close()
        finally:
            vault.close()
    cold = result.timings

    def med(name: str, key: str) -> float:
        return median([timings[key] for timings, _ in runs[name]])

    restored, plain = med("restored", "ttft_s"), med("no_activation", "ttft_s")
    restored_cpu, plain_cpu = med("restored", "ttft_cpu_s"), med("no_activation", "ttft_cpu_s")
    texts = {"".join(pieces) for name in runs for _, pieces in runs[name]}

    def whole(name: str) -> float:  # TTFT of the whole turn: retrieval + schedule + prompt + prefill
        return median([t["retrieve_s"] + t["schedule_s"] + t["prompt_s"] + t["ttft_s"] for t, _ in runs[name]])

    raw_s = median([r["s"] for r in raw]) if raw else None
    raw_cpu = median([r["cpu_s"] for r in raw]) if raw else None
    turn_plain, turn_restored = whole("no_activation"), whole("restored")
    decode = [
        (t["answer_tokens"] - 1) / (t["generate_s"] - t["ttft_s"])
        for t, _ in runs["no_activation"]
        if t.get("answer_tokens", 0) > 1 and t["generate_s"] > t["ttft_s"]
    ]
    return {
        "model": model.name,
        "prompt": MESSAGE,
        "threads": threads,
        "repeats": repeats,
        "memories": len(MEMORIES),
        "pinned": PINNED,
        "embedder": notice,
        "load_average": os.getloadavg()[0],
        "model_load_s": load_s,
        "retrieve_s": cold["retrieve_s"],
        "schedule_s": cold["schedule_s"],
        "prompt_build_s": cold["prompt_s"],
        "prompt_tokens": cold["prompt_tokens"],
        "prefix_tokens": cold["prefix_tokens"],
        "cold_ttft_s": cold["ttft_s"],
        "restored_ttft_s": restored,
        "no_activation_ttft_s": plain,
        "ttft_reduction": 1 - restored / plain,
        "restored_ttft_cpu_s": restored_cpu,
        "no_activation_ttft_cpu_s": plain_cpu,
        "ttft_cpu_reduction": 1 - restored_cpu / plain_cpu,
        "restored_prefix_tokens": runs["restored"][0][0]["prefix_restored_tokens"],
        "identical_output": len(texts) == 1,
        "extract_s": cold["extract_s"],
        "extraction_error": result.extraction.error if result.extraction else None,
        "generate_s": cold["generate_s"],
        "answer_tokens": cold["answer_tokens"],
        "answer": result.answer,
        "raw_prefill_s": raw_s,
        "raw_prefill_cpu_s": raw_cpu,
        "turn_ttft_s": turn_plain,
        "turn_ttft_restored_s": turn_restored,
        "turn_ttft_cpu_s": plain_cpu
        + median([t["retrieve_s"] + t["schedule_s"] + t["prompt_s"] for t, _ in runs["no_activation"]]),
        "turn_vs_raw_prefill": turn_plain / raw_s if raw_s else None,
        "turn_vs_raw_prefill_cpu": (plain_cpu / raw_cpu) if raw_cpu else None,
        "tokens_per_s": median(decode) if decode else None,
    }


def rows(result: dict) -> list[dict]:
    names = [
        ("retrieval (hybrid search)", "retrieve_s"),
        ("schedule (MemScheduler)", "schedule_s"),
        ("prompt build", "prompt_build_s"),
        ("TTFT, prefix computed and saved", "cold_ttft_s"),
        ("TTFT, prefix restored (activation memory)", "restored_ttft_s"),
        ("TTFT, activation memory off", "no_activation_ttft_s"),
        ("TTFT CPU, prefix restored", "restored_ttft_cpu_s"),
        ("TTFT CPU, activation memory off", "no_activation_ttft_cpu_s"),
        ("MemReader extraction", "extract_s"),
        ("raw llama.cpp prefill, same prompt", "raw_prefill_s"),
        ("raw llama.cpp prefill CPU", "raw_prefill_cpu_s"),
        ("whole turn TTFT with memory (activation off)", "turn_ttft_s"),
        ("whole turn TTFT with memory, prefix restored", "turn_ttft_restored_s"),
    ]
    return [{"step": label, "seconds": result[key]} for label, key in names if result.get(key) is not None]
