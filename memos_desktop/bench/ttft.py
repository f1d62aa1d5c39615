"""`memos-desktop bench ttft`: time to first token, cold prefill vs restored activation memory.

For each runtime and prefix length, in one run on one loaded model: a cold run (prefix + a short
query from an empty KV cache), a restored run (the prefix's KV state opened from a throwaway
encrypted vault through `ActivationMemory`, then the query), and a suffix-only baseline (the
prefix already in the KV cache, only the query computed), the last two interleaved so both see
the same machine load. Greedy output of the restored run must equal the cold run's token for
token. llama.cpp runs the random Qwen2.5-0.5B-shaped F16 GGUF;
MLX on Linux runs on a slow reference CPU BLAS, so it runs a smaller llama shape (reported).
Never writes outside a temporary directory, apart from the cached generated models.
"""

import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memos_desktop.runtime import LoadSettings, Sampling, load_backend, testmodels
from memos_desktop.runtime.base import LLMBackend

QUERY = "\nQuestion: on which day does the team meet, and where is the office?"
QUERY_TOKENS = 16
CHECK_TOKENS = 32
REPEATS = 11


SPECS = {"llama.cpp": testmodels.QWEN05B_SHAPE, "mlx": testmodels.MLX_BENCH}


def _model(runtime: str, spec: testmodels.ModelSpec) -> Path:
    return testmodels.gguf_model(spec) if runtime == "llama.cpp" else testmodels.mlx_model(spec)


def _text_tokens(backend: LLMBackend, n: int) -> list[int]:
    """`n` tokens of ordinary text (the built-in corpus, repeated)."""
    text = testmodels.CORPUS
    tokens = backend.tokenize(text)
    while len(tokens) < n:
        text += testmodels.CORPUS
        tokens = backend.tokenize(text)
    return tokens[:n]


def _first_token(backend: LLMBackend, tokens: Sequence[int], n: int) -> tuple[float, list[int]]:
    """(seconds to the first generated token, the first `n` greedy tokens)."""
    start = time.perf_counter()
    stream = backend.generate_tokens(tokens, Sampling(max_tokens=n))
    first = next(stream)
    elapsed = time.perf_counter() - start
    return elapsed, [first, *stream]


def _measure(backend: LLMBackend, memory, length: int) -> dict:
    prefix = _text_tokens(backend, length)
    query = backend.tokenize(QUERY)[:QUERY_TOKENS]
    prompt = prefix + query

    backend.reset()
    cold_s, cold = _first_token(backend, prompt, CHECK_TOKENS)
    saved = memory.prepare(backend, prefix)
    state_bytes = memory.vault.get(saved.cube_id).meta["bytes"] if saved.saved else 0

    restored_runs, restore_runs, suffix_runs, identical = [], [], [], True
    for _ in range(REPEATS):
        backend.reset()
        start = time.perf_counter()
        done = memory.prepare(backend, prefix)
        restore_runs.append(time.perf_counter() - start)
        seconds, tokens = _first_token(backend, prompt, CHECK_TOKENS)
        restored_runs.append(restore_runs[-1] + seconds)
        identical = identical and done.restored_tokens == length and tokens == cold
        backend.prefill(prefix)
        seconds, _ = _first_token(backend, prompt, 1)
        suffix_runs.append(seconds)

    restored_s = statistics.median(restored_runs)
    suffix_s = statistics.median(suffix_runs)
    return {
        "cold_ttft_s": cold_s,
        "restored_ttft_s": restored_s,
        "ttft_reduction": 1 - restored_s / cold_s,
        "identical_output": identical,
        "suffix_only_ttft_s": suffix_s,
        "restore_s": statistics.median(restore_runs),
        "restore_overhead": restored_s / suffix_s - 1,
        "state_bytes": state_bytes,
    }


def _run_runtime(runtime: str, spec: testmodels.ModelSpec, lengths: Sequence[int], threads: int, workdir: Path) -> dict:
    from memos_desktop.runtime.activation import ActivationMemory
    from memos_desktop.vault import Vault

    path = _model(runtime, spec)
    n_ctx = max(lengths) + QUERY_TOKENS + CHECK_TOKENS + 16
    backend = load_backend(path, LoadSettings(n_ctx=n_ctx, threads=threads, batch=512))
    vault = Vault.create(workdir / runtime, secrets.token_hex(16))
    try:
        memory = ActivationMemory(vault)
        memory.prepare(backend, _text_tokens(backend, 8))
        out: dict[str, Any] = {
            "model": spec.name,
            "shape": {
                "layers": spec.num_hidden_layers,
                "hidden": spec.hidden_size,
                "heads": spec.num_attention_heads,
                "kv_heads": spec.num_key_value_heads,
                "intermediate": spec.intermediate_size,
                "vocab": spec.vocab_size,
                "dtype": spec.dtype,
            },
            "runtime_version": backend.runtime_version(),
            "lengths": {},
        }
        if runtime == "mlx" and spec == testmodels.MLX_BENCH:
            out["note"] = "MLX on Linux uses a slow reference CPU BLAS: measured on a smaller llama shape."
        for length in lengths:
            out["lengths"][str(length)] = _measure(backend, memory, length)
        return out
    finally:
        backend.close()
        vault.close()


def run(
    lengths: Sequence[int] = (512, 2048, 8192),
    runtimes: Sequence[str] = ("llama.cpp", "mlx"),
    threads: int = 2,
    specs: dict[str, testmodels.ModelSpec] | None = None,
) -> dict:
    """Measure every runtime at every prefix length; returns the `--json` object.

    `specs` replaces the generated model shape per runtime (tests use the tiny one).
    """
    specs = {**SPECS, **(specs or {})}
    with tempfile.TemporaryDirectory(prefix="memos-bench-ttft-") as tmp:
        results = {rt: _run_runtime(rt, specs[rt], lengths, threads, Path(tmp)) for rt in runtimes}
    return {
        "settings": {
            "threads": threads,
            "query_tokens": QUERY_TOKENS,
            "check_tokens": CHECK_TOKENS,
            "repeats": REPEATS,
        },
        "runtimes": results,
    }


def rows(result: dict) -> list[dict]:
    """One table row per runtime and prefix length."""
    out = []
    for runtime, data in result["runtimes"].items():
        for length, m in data["lengths"].items():
            out.append(
                {
                    "runtime / model": f"{runtime} / {data['model']}",
                    "prefix": int(length),
                    "cold s": m["cold_ttft_s"],
                    "restored s": m["restored_ttft_s"],
                    "reduction %": 100 * m["ttft_reduction"],
                    "suffix-only s": m["suffix_only_ttft_s"],
                    "overhead %": 100 * m["restore_overhead"],
                    "state MiB": m["state_bytes"] / 1024**2,
                    "identical": m["identical_output"],
                }
            )
    return out
