"""Benchmark `turn`: one full chat turn on the generated Qwen2.5-0.5B-shaped model, 20 memories.

A fresh encrypted vault gets 20 memories (some pinned, so the cached prefix is real) and the
configured embedder. Three runs of the same message, each on a freshly loaded model (empty KV
cache): (1) a full turn with activation memory on and no saved state yet — the prefix is computed
and saved, the exchange stored and MemReader's extraction timed; then, on the same vault state,
(2) the prompt with the prefix restored from activation memory and (3) the same prompt with
activation memory off. Reports retrieval, prompt build, TTFT with and without activation memory
(and their ratio), extraction time, and whether (2) and (3) produced the same greedy tokens.
"""

import tempfile
import time
from pathlib import Path

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
        [
            {"content": text, "tags": ["memory", "fact"], "pinned": i < PINNED}
            for i, text in enumerate(MEMORIES)
        ]
    )
    return vault, notice


def _timed_prompt(assistant, conversation) -> tuple[dict, list[str]]:
    """Prepare and generate one answer without storing it; its timings and text pieces."""
    prepared = assistant.prepare(conversation, MESSAGE)
    pieces = list(assistant.generate(prepared))
    return prepared.timings, pieces


def run(threads: int = 2, answer_tokens: int = 16) -> dict:
    from memos_desktop.assistant import Assistant
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.testmodels import qwen05b_shape_gguf

    model = qwen05b_shape_gguf()
    settings = LoadSettings(n_ctx=4096, threads=threads)

    def load():
        t0 = time.perf_counter()
        backend = load_backend(model, settings)
        return backend, time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        vault, notice = _vault(Path(tmp))
        try:
            backend, load_s = load()
            try:
                first = Assistant(vault, backend, answer_tokens=answer_tokens, temperature=0.0)
                result = first.turn(first.new_conversation(), MESSAGE)
            finally:
                backend.close()
            runs = {}
            for name, activation in (("restored", True), ("no_activation", False)):
                backend, _ = load()
                try:
                    assistant = Assistant(vault, backend, answer_tokens=answer_tokens, temperature=0.0,
                                          activation=activation)
                    runs[name] = _timed_prompt(assistant, assistant.new_conversation())
                finally:
                    backend.close()
        finally:
            vault.close()
    cold = result.timings
    restored, plain = runs["restored"][0], runs["no_activation"][0]
    return {
        "model": model.name,
        "threads": threads,
        "memories": len(MEMORIES),
        "pinned": PINNED,
        "embedder": notice,
        "model_load_s": load_s,
        "retrieve_s": cold["retrieve_s"],
        "schedule_s": cold["schedule_s"],
        "prompt_build_s": cold["prompt_s"],
        "prompt_tokens": cold["prompt_tokens"],
        "prefix_tokens": cold["prefix_tokens"],
        "cold_ttft_s": cold["ttft_s"],
        "restored_ttft_s": restored["ttft_s"],
        "restored_prefix_tokens": restored["prefix_restored_tokens"],
        "no_activation_ttft_s": plain["ttft_s"],
        "ttft_reduction": 1 - restored["ttft_s"] / plain["ttft_s"],
        "identical_output": runs["restored"][1] == runs["no_activation"][1],
        "extract_s": cold["extract_s"],
        "extraction_error": result.extraction.error if result.extraction else None,
        "generate_s": cold["generate_s"],
        "answer_tokens": cold["answer_tokens"],
    }


def rows(result: dict) -> list[dict]:
    names = [
        ("retrieval (hybrid search)", "retrieve_s"),
        ("schedule (MemScheduler)", "schedule_s"),
        ("prompt build", "prompt_build_s"),
        ("TTFT, prefix computed and saved", "cold_ttft_s"),
        ("TTFT, prefix restored (activation memory)", "restored_ttft_s"),
        ("TTFT, activation memory off", "no_activation_ttft_s"),
        ("MemReader extraction", "extract_s"),
    ]
    base = result["no_activation_ttft_s"]
    return [{"step": label, "seconds": result[key], "vs TTFT off": result[key] / base} for label, key in names]
