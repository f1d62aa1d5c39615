"""Distilling facts into parameter memory: data → training → evaluation → export → registry.

Owns one run end to end, and its checkpoint (a sealed blob per adapter name and base model, kept
when a run is cancelled or killed so `resume=True` continues it, deleted when the run ends). An
adapter that fails evaluation is not stored, and nothing is changed until the new adapter is
safely stored, so any failure leaves the previous adapter state active. The distilled facts
stay in the vault as plaintext memory; the adapter links to each of them (`distilled_from`).
"""

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memos_desktop.errors import CorruptVault, NotFound, TrainingError
from memos_desktop.training import evaluate as ev
from memos_desktop.training import export
from memos_desktop.training.adapters import GGUF_FILE, Adapters
from memos_desktop.training.data import Fact, build_dataset
from memos_desktop.training.trainer import MLXTrainer, Progress, TrainConfig, Trainer
from memos_desktop.vault import MemCube, Vault


@dataclass
class Outcome:
    adapter: MemCube
    evaluation: ev.Evaluation
    metrics: dict


def checkpoint_name(name: str, base_digest: str) -> str:
    key = hashlib.sha256(f"{name}\0{base_digest}".encode()).hexdigest()[:24]
    return f"train-{key}.ckpt"


def distill(
    vault: Vault,
    facts: list[Fact],
    *,
    model: Path,
    gguf: Path | None = None,
    name: str,
    selection: dict,
    config: TrainConfig | None = None,
    language: str | None = None,
    min_gain: float = ev.MIN_GAIN,
    max_ppl_ratio: float = ev.MAX_PPL_RATIO,
    enable: bool = True,
    resume: bool = False,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    trainer: Trainer | None = None,
    profile: str = "default",
) -> Outcome:
    """Train, evaluate, export and register an adapter for `facts` on the MLX `model`.

    `gguf` is the same base model as a GGUF file; when given, the adapter is also exported for
    llama.cpp. Raises TrainingError when the run is cancelled (resumable), fails evaluation, or
    cannot be stored.
    """
    from memos_desktop.runtime.base import file_digest

    config = config or TrainConfig()
    dataset = build_dataset(facts, language=language, seed=config.seed)
    model = Path(model)
    base_digest = file_digest(model)
    base = {"mlx": {"name": model.name, "digest": base_digest}, "gguf": None}
    gguf_info = None
    if gguf is not None:
        gguf_info = export.base_gguf_info(Path(gguf))
        base["gguf"] = {"name": Path(gguf).name, "digest": file_digest(Path(gguf)), "arch": gguf_info["arch"]}
    ckpt = checkpoint_name(name, base_digest)
    context = f"checkpoint\0{ckpt}".encode()
    saved = None
    if resume:
        try:
            saved = bytes(vault.blobs.get(ckpt, context))
        except NotFound:
            raise TrainingError(f"There is no interrupted training run of {name} to resume.") from None
        except CorruptVault:
            raise TrainingError(f"The checkpoint of {name} is damaged; start again without resuming.") from None

    def save_checkpoint(data: bytes) -> None:
        try:
            vault.blobs.put(ckpt, data, context)
        except OSError as exc:
            raise TrainingError(f"The training checkpoint could not be saved ({exc.strerror or exc}).") from None

    own = trainer is None
    trainer = trainer or MLXTrainer(model)
    try:
        result = trainer.train(
            dataset, config, resume=saved, save_checkpoint=save_checkpoint, progress=progress, cancel=cancel
        )
        if not result.completed:
            raise TrainingError(
                f"Training stopped at iteration {result.iteration} of {config.iters}; "
                "run it again with resume to continue from there."
            )
        evaluation = ev.evaluate(trainer, dataset, min_gain, max_ppl_ratio)
        n_layers = trainer.n_layers
    finally:
        if own:
            trainer.close()
    vault.blobs.delete(ckpt)
    if not evaluation.passed:
        raise TrainingError(f"The adapter failed evaluation and was not kept: {evaluation.failure()}.")
    files = export.mlx_adapter_files(result.weights, config, n_layers)
    export_seconds = None
    if gguf_info is not None:
        began = time.perf_counter()
        files[GGUF_FILE] = export.gguf_adapter(result.weights, config, gguf_info, name)
        export_seconds = time.perf_counter() - began
    metrics = {
        **result.metrics,
        "evaluation": evaluation.to_dict(),
        "gguf_export_seconds": export_seconds,
        "bytes": {fname: len(data) for fname, data in files.items()},
    }
    meta = {
        "base": base,
        "trainer": trainer.name,
        "config": config.to_dict(),
        "sources": [{"id": f.id, "version": f.version, "content_hash": f.content_hash} for f in dataset.facts],
        "selection": selection,
        "language": dataset.language,
        "metrics": metrics,
    }
    content = (
        f"LoRA adapter distilled from {len(dataset.facts)} memories ({_describe(selection)}) "
        f"for {model.name}: held-out answer log-likelihood +{evaluation.gain:.3f} nats/token."
    )
    adapters = Adapters(vault, profile)
    cube = adapters.save(name=name, files=files, meta=meta, content=content, sources=[f.id for f in dataset.facts])
    if enable:
        cube = adapters.enable(cube.id)
    return Outcome(cube, evaluation, metrics)


def _describe(selection: dict) -> str:
    if "tag" in selection:
        return f"tag {selection['tag']}"
    if "query" in selection:
        return f"query {selection['query']!r}"
    if "proposal" in selection:
        return f"scheduler proposal {selection['proposal']}"
    return "chosen by id"
