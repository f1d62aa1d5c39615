"""`bench train`: distilling N facts into a LoRA adapter on the generated tiny and small models.

For each model, in one run: training time and throughput, peak MLX memory and process RSS, the
adapter's size (MLX safetensors and GGUF), the held-out log-likelihood gain and control
perplexity ratio against the base model, and the GGUF export time. The models are random-weight
(generated, never downloaded), so the gain measures memorisation, not language quality. From the
small model's measured training FLOP rate it extrapolates what Qwen2.5-0.5B- and 1.5B-sized
models would need on this CPU; the numbers for Apple silicon are not measured here.
"""

import resource
import time

from memos_desktop.runtime import testmodels as tm
from memos_desktop.training import evaluate as ev
from memos_desktop.training import export
from memos_desktop.training.data import Fact, build_dataset
from memos_desktop.training.trainer import MLXTrainer, TrainConfig

PEOPLE = ["Alvarez", "Bergman", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jensen", "Kowal"]
ROLES = ["dentist", "plumber", "landlord", "doctor", "accountant", "tailor", "barber", "mechanic", "lawyer", "vet"]
PLACES = ["Main", "Oak", "Harbor", "Station", "Mill", "Church", "Bridge", "Garden", "Castle", "River", "Lake"]
QWEN05B_PARAMS = 494_000_000
QWEN15B_PARAMS = 1_540_000_000


def facts(n: int) -> list[Fact]:
    """`n` distinct short personal facts (deterministic)."""
    out = []
    for i in range(n):
        text = (
            f"My {ROLES[i % len(ROLES)]} is {PEOPLE[(i * 7) % len(PEOPLE)]} "
            f"on {PLACES[(i * 3) % len(PLACES)]} Street, number {i + 2}."
        )
        out.append(Fact(f"fact{i:04d}", 1, f"h{i}", text))
    return out


def _params(spec: tm.ModelSpec) -> int:
    h, f, v, n = spec.hidden_size, spec.intermediate_size, spec.vocab_size, spec.num_hidden_layers
    kv = spec.num_key_value_heads * spec.head_dim
    return 2 * v * h + n * (2 * h * h + 2 * h * kv + 3 * h * f)


def measure(spec: tm.ModelSpec, n_facts: int, config: TrainConfig) -> dict:
    dataset = build_dataset(facts(n_facts))
    trainer = MLXTrainer(tm.mlx_model(spec))
    began = time.perf_counter()
    result = trainer.train(dataset, config)
    train_s = time.perf_counter() - began
    evaluation = ev.evaluate(trainer, dataset)
    files = export.mlx_adapter_files(result.weights, config, trainer.n_layers)
    began = time.perf_counter()
    gguf = export.gguf_adapter(result.weights, config, export.base_gguf_info(tm.gguf_model(spec)))
    export_s = time.perf_counter() - began
    trainer.close()
    tokens = result.metrics["trained_tokens"]
    return {
        "model": spec.name,
        "params": _params(spec),
        "facts": n_facts,
        "examples": len(dataset.train),
        "iters": config.iters,
        "train_s": train_s,
        "tokens_per_s": tokens / train_s,
        "trained_tokens": tokens,
        "mlx_peak_mb": result.metrics["peak_memory_bytes"] / 1e6,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "adapter_kb": len(files["adapters.safetensors"]) / 1024,
        "gguf_kb": len(gguf) / 1024,
        "gguf_export_ms": export_s * 1000,
        "heldout_gain": evaluation.gain,
        "control_ppl_ratio": evaluation.ppl_ratio,
        "passed": evaluation.passed,
    }


def run(n_facts: int = 100, iters: int = 100) -> dict:
    """Measure both generated models with the same facts and settings; extrapolate to 0.5B."""
    config = TrainConfig(iters=iters)
    models = [measure(spec, n_facts, config) for spec in (tm.TINY, tm.MLX_BENCH)]
    tiny, small = models
    rows = [{"metric": key, tiny["model"]: tiny[key], small["model"]: small[key]} for key in tiny if key != "model"]
    # Training costs about 6 FLOPs per parameter per token (forward + backward); LoRA saves the
    # weight-gradient share, so this is an upper bound, scaled by the small model's measured rate.
    flops_per_s = 6 * small["params"] * small["tokens_per_s"]
    est_05b = 6 * QWEN05B_PARAMS * small["trained_tokens"] / flops_per_s
    return {
        "models": models,
        "rows": rows,
        "small_over_tiny_time": small["train_s"] / tiny["train_s"],
        "measured_train_gflops": flops_per_s / 1e9,
        "qwen05b_estimate_this_cpu_s": est_05b,
        "qwen15b_estimate_this_cpu_s": est_05b * QWEN15B_PARAMS / QWEN05B_PARAMS,
        "estimate_note": (
            "Extrapolated from the small model's FLOP rate on this CPU (mlx[cpu], reference BLAS); "
            "not measured on Apple silicon."
        ),
    }
