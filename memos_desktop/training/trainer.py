"""LoRA trainers behind one Protocol, and the MLX trainer (the default; `mlx[cpu]` on Linux).

Owns the training loop: chat-template rendering of the examples, loss on the answer tokens only
plus the KL divergence from the base model on replay examples (so unrelated behaviour is kept),
the frozen blocks below the adapter run once per example rather than every step, a batch order
that depends only on (seed, iteration) so a resumed run continues exactly where the interrupted
one stopped, checkpoints (adapter weights + optimizer state, as bytes the caller
seals), a progress callback and cancellation between steps, and the model's log-likelihood
measurements that evaluation compares with and without the adapter. It never touches the vault
and never writes files: persisting checkpoints and adapters is the caller's job.
"""

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from memos_desktop.errors import TrainingError
from memos_desktop.training.data import Dataset, Example

ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
ALL_LINEAR = (*ATTENTION, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
FROZEN_STATES_BYTES = 1 << 30  # cap on the cached outputs of the frozen blocks (float32 estimate)


@dataclass(frozen=True)
class TrainConfig:
    """LoRA hyper-parameters. `scale` is MLX's absolute multiplier (GGUF alpha = scale * rank).

    The defaults are the settings measured to work on a real model (`bench train --model
    smollm2`): every linear layer of the top 4 blocks (on a CPU a step costs about a quarter
    second per adapted block, plus the vocabulary matmul), a learning rate low enough that the
    facts are learned without the loss jumping, and replay at weight 1, which kept the control
    perplexity of SmolLM2 unchanged where training without it raised it 3-4×. `num_layers` -1
    adapts every block.
    """

    rank: int = 8
    scale: float = 2.0
    dropout: float = 0.0
    num_layers: int = 4
    keys: tuple[str, ...] = ALL_LINEAR
    learning_rate: float = 5e-4
    iters: int = 200
    batch_size: int = 2
    max_seq_length: int = 512
    seed: int = 0
    checkpoint_every: int = 20
    replay_weight: float = 1.0  # weight of the KL divergence from the base model on replay examples

    def to_dict(self) -> dict:
        return {**asdict(self), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**{**data, "keys": tuple(data["keys"])})


@dataclass(frozen=True)
class Progress:
    iteration: int
    iters: int
    loss: float
    tokens: int
    seconds: float


@dataclass
class TrainResult:
    """Adapter weights in MLX naming and layout (lora_a: (in, r), lora_b: (r, out)) and metrics.

    `completed` is False when the run was cancelled; `iteration` is where it stopped (and where a
    resume from the last checkpoint continues).
    """

    weights: dict
    config: TrainConfig
    completed: bool
    iteration: int
    metrics: dict = field(default_factory=dict)


class Trainer(Protocol):
    """A base model that can be fine-tuned with LoRA and scored with and without its adapter."""

    name: str
    model_path: Path
    n_layers: int

    def train(
        self,
        dataset: Dataset,
        config: TrainConfig,
        *,
        resume: bytes | None = None,
        save_checkpoint: Callable[[bytes], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> TrainResult: ...

    def answer_logprob(self, examples: Sequence[Example], adapter: bool) -> float: ...

    def perplexity(self, texts: Sequence[str], adapter: bool) -> float: ...

    def close(self) -> None: ...


def data_digest(dataset: Dataset) -> str:
    """Identity of the training data (facts at their versions), so a resume uses the same data."""
    import hashlib

    body = json.dumps([[f.id, f.version, f.content_hash] for f in dataset.facts])
    return hashlib.sha256(body.encode()).hexdigest()


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> list[int]:
    """Example indices of 1-based `iteration`: epochs of seeded permutations, read in order."""
    import numpy as np

    start = (iteration - 1) * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[i]))
    return out


class MLXTrainer:
    """LoRA on an MLX model directory (Hugging Face layout) with `mlx_lm`'s LoRA layers."""

    name = "mlx"

    def __init__(self, model_path: Path):
        self.model_path = Path(model_path)
        try:
            from mlx_lm import load
        except ImportError:
            raise TrainingError("MLX is not installed; install memos-desktop[mlx] to train adapters.") from None
        try:
            loaded = load(str(self.model_path))
        except Exception as exc:
            raise TrainingError(f"The model {self.model_path} cannot be loaded for training ({exc}).") from None
        self.model: Any = loaded[0]
        self.tokenizer: Any = loaded[1]
        self.model.freeze()
        self.n_layers = len(self.model.layers)
        self._lora = False
        self._scale = 0.0

    def close(self) -> None:
        self.model = None
        self.tokenizer = None

    # ----- data ----------------------------------------------------------------------------
    def render(self, example: Example) -> tuple[list[int], int]:
        """Token ids of one example and where its answer starts (loss covers only the answer)."""
        tok = self.tokenizer
        if not example.question:
            ids = tok.encode(example.answer)
            eos = tok.eos_token_id
            return (ids + [eos] if eos is not None else ids), 0
        user = [{"role": "user", "content": example.question}]
        prompt = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(
            [*user, {"role": "assistant", "content": example.answer}], add_generation_prompt=False, tokenize=False
        )
        answer = full[len(prompt) :] if full.startswith(prompt) else example.answer + (tok.eos_token or "")
        head = tok.encode(prompt, add_special_tokens=False)
        return head + tok.encode(answer, add_special_tokens=False), len(head)

    def _batch(self, rows: Sequence[tuple[list[int], int]], max_len: int):
        import mlx.core as mx
        import numpy as np

        width = min(max(len(ids) for ids, _ in rows), max_len)
        arr = np.zeros((len(rows), width), dtype=np.int32)
        mask = np.zeros((len(rows), width - 1), dtype=np.float32)
        for j, (ids, offset) in enumerate(rows):
            ids = ids[:width]
            arr[j, : len(ids)] = ids
            mask[j, max(offset - 1, 0) : len(ids) - 1] = 1.0
        return mx.array(arr), mx.array(mask)

    def _answer_batch(self, rows: Sequence[tuple[list[int], int]], max_len: int):
        """Input ids (batch, width - 1), and the flat positions and target ids of the answer tokens."""
        import mlx.core as mx
        import numpy as np

        inputs, mask = self._batch(rows, max_len)
        flat = np.flatnonzero(np.array(mask).reshape(-1))
        targets = np.array(inputs)[:, 1:].reshape(-1)[flat]
        return inputs[:, :-1], mx.array(flat.astype(np.int32)), mx.array(targets.astype(np.int32))

    def _reference(self, rows: Sequence[tuple[list[int], int]], states: list | None, first: int) -> list:
        """The base model's log-probabilities (answer tokens × vocabulary) for each replay row,
        from the rows' frozen `states` entering block `first` when there are any."""
        import mlx.core as mx
        import mlx.nn as nn

        self._set_adapter(False, self._scale)
        try:
            out = []
            for i, row in enumerate(rows):
                inputs, positions, _ = self._answer_batch([row], 1 << 30)
                hidden = self._hidden(inputs, 0) if states is None else self._hidden(states[i][None], first)
                logits = self._logits(hidden.reshape(-1, hidden.shape[-1])[positions]).astype(mx.float32)
                reference = nn.log_softmax(logits, axis=-1)
                mx.eval(reference)
                out.append(reference)
            return out
        finally:
            self._set_adapter(True, self._scale)

    # ----- the forward pass in two parts ---------------------------------------------------
    # Blocks below the lowest LoRA layer are frozen and see no adapter, so their output for an
    # example never changes during a run: it is computed once, and each step runs only the
    # adapted blocks (backpropagation stops there anyway). The logits, a vocabulary-sized
    # matmul per token, are computed only where the loss is: at the answer tokens.
    def _blocks(self):
        """The model's transformer stack (mlx_lm's llama-like layout), or None for another layout."""
        inner = getattr(self.model, "model", None)
        if all(hasattr(inner, name) for name in ("embed_tokens", "layers", "norm")):
            return inner
        return None

    def _first_lora_block(self) -> int:
        from mlx_lm.tuner.lora import LoRALinear

        for i, layer in enumerate(self.model.layers):
            if any(isinstance(m, LoRALinear) for _, m in layer.named_modules()):
                return i
        return 0

    def _hidden(self, inputs, start: int):
        """Final-norm hidden states from token ids (`start` 0) or from block `start`'s input states."""
        from mlx_lm.models.base import create_attention_mask

        inner = self._blocks()
        if inner is None:
            raise TrainingError(f"{self.model_path.name} is not a llama-like model; training supports those.")
        h = inner.embed_tokens(inputs) if start == 0 else inputs
        mask = create_attention_mask(h, None)
        for layer in inner.layers[start:]:
            h = layer(h, mask)
        return inner.norm(h)

    def _logits(self, hidden):
        head = getattr(self.model, "lm_head", None)
        return head(hidden) if head is not None else self.model.model.embed_tokens.as_linear(hidden)

    def _frozen_states(self, rows: Sequence[tuple[list[int], int]], first: int) -> list | None:
        """Each example's hidden states entering block `first` (None: nothing frozen, or too large)."""
        import mlx.core as mx
        from mlx_lm.models.base import create_attention_mask
        from mlx_lm.models.cache import KVCache

        inner = self._blocks()
        if first == 0 or inner is None:
            return None
        width = inner.embed_tokens.weight.shape[-1]
        if sum(len(ids) for ids, _ in rows) * width * 4 > FROZEN_STATES_BYTES:
            return None
        # Chat examples share their opening (a system prompt, ~30 of SmolLM2's ~50 tokens): it runs
        # once into a KV cache, and each example runs only its own tokens after it.
        inputs = [ids[:-1] for ids, _ in rows]
        chats = [x for x, (_, offset) in zip(inputs, rows, strict=True) if offset > 0]
        shared = _common_prefix(chats) if len(chats) > 1 else []
        caches = [KVCache() for _ in range(first)]
        head = None
        if shared:
            head = inner.embed_tokens(mx.array([shared]))
            mask = create_attention_mask(head, None)
            for layer, cache in zip(inner.layers[:first], caches, strict=True):
                head = layer(head, mask, cache=cache)
            mx.eval(head, [c.state for c in caches])
        states = []
        for ids in inputs:
            reuse = head is not None and len(ids) > len(shared) and ids[: len(shared)] == shared
            h = inner.embed_tokens(mx.array([ids[len(shared) :] if reuse else ids]))
            mask = create_attention_mask(h, caches[0] if reuse else None)
            for layer, cache in zip(inner.layers[:first], caches, strict=True):
                h = layer(h, mask, cache=cache if reuse else None)
            state = mx.concatenate([head[0], h[0]]) if reuse and head is not None else h[0]
            mx.eval(state)
            states.append(state)
            if reuse:
                for cache in caches:
                    cache.trim(len(ids) - len(shared))
        return states

    # ----- LoRA layers ---------------------------------------------------------------------
    def _apply_lora(self, config: TrainConfig) -> None:
        import mlx.core as mx
        from mlx_lm.tuner.utils import linear_to_lora_layers

        if self._lora:
            raise TrainingError("This trainer already trained an adapter; load the model again for another run.")
        n_layers = self.n_layers if config.num_layers < 0 else config.num_layers
        lora = {"rank": config.rank, "scale": config.scale, "dropout": config.dropout, "keys": list(config.keys)}
        mx.random.seed(config.seed)  # lora_a starts random: the same seed gives the same run
        linear_to_lora_layers(self.model, n_layers, lora)
        if not self._lora_modules():
            raise TrainingError(f"None of the layers {', '.join(config.keys)} exist in {self.model_path.name}.")
        self._lora = True

    def _lora_modules(self) -> list:
        from mlx_lm.tuner.lora import LoRALinear

        return [m for _, m in self.model.named_modules() if isinstance(m, LoRALinear)]

    def _set_adapter(self, on: bool, config_scale: float) -> None:
        for module in self._lora_modules():
            module.scale = config_scale if on else 0.0

    def adapter_weights(self) -> dict:
        """The current LoRA weights as float32 numpy arrays, MLX names."""
        import numpy as np
        from mlx.utils import tree_flatten

        flat: list[tuple[str, Any]] = tree_flatten(self.model.trainable_parameters())  # type: ignore[assignment]
        return {k: np.array(v, dtype=np.float32) for k, v in flat}

    # ----- training ------------------------------------------------------------------------
    def train(
        self,
        dataset: Dataset,
        config: TrainConfig,
        *,
        resume: bytes | None = None,
        save_checkpoint: Callable[[bytes], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> TrainResult:
        import mlx.core as mx
        import mlx.nn as nn
        import mlx.optimizers as optim

        if not dataset.train:
            raise TrainingError("There are no training examples.")
        self._apply_lora(config)
        self._scale = config.scale
        rows = [self.render(e) for e in dataset.train]
        replay = [self.render(e) for e in dataset.replay] if config.replay_weight > 0 else []
        optimizer = optim.Adam(learning_rate=config.learning_rate)
        optimizer.init(self.model.trainable_parameters())
        digest = data_digest(dataset)
        start = self._restore(resume, optimizer, config, digest) if resume is not None else 0

        first = self._first_lora_block()
        frozen = self._frozen_states(rows + replay, first)
        reference = self._reference(replay, frozen[len(rows) :] if frozen is not None else None, first)

        def loss_fn(model, inputs, positions, targets, n_answer, kept):
            """Cross-entropy on the facts' answer tokens (the first `n_answer` positions), plus the
            KL divergence from the base model's predictions on the replay row's tokens."""
            hidden = self._hidden(inputs, first if frozen is not None else 0)
            logits = self._logits(hidden.reshape(-1, hidden.shape[-1])[positions]).astype(mx.float32)
            loss = nn.losses.cross_entropy(logits[:n_answer], targets[:n_answer]).mean()
            if kept is None:
                return loss
            logp = nn.log_softmax(logits[n_answer:], axis=-1)
            kl = (mx.exp(kept) * (kept - logp)).sum(axis=-1).mean()
            return loss + config.replay_weight * kl

        loss_and_grad = nn.value_and_grad(self.model, loss_fn)
        mx.reset_peak_memory()
        self.model.train()
        began = time.perf_counter()
        tokens = 0
        loss_value = float("nan")
        it = start
        while it < config.iters and not (cancel is not None and cancel.is_set()):
            it += 1
            mx.random.seed(config.seed * 1_000_003 + it)
            picked_ids = batch_indices(len(rows), config.batch_size, it, config.seed)
            picked = [rows[i] for i in picked_ids]
            kept = None
            if replay:  # one replay row per step, in turn, after the facts' rows
                r = (it - 1) % len(replay)
                picked_ids.append(len(rows) + r)
                picked.append(replay[r])
                kept = reference[r]
            inputs, positions, targets = self._answer_batch(picked, config.max_seq_length)
            if frozen is not None:
                inputs = _stack_padded([frozen[i] for i in picked_ids], inputs.shape[1])
            n_answer = positions.size - (kept.shape[0] if kept is not None else 0)  # replay rows are short
            loss, grads = loss_and_grad(self.model, inputs, positions, targets, n_answer, kept)
            optimizer.update(self.model, grads)
            mx.eval(self.model.trainable_parameters(), optimizer.state, loss)
            loss_value = loss.item()
            if loss_value != loss_value:
                raise TrainingError(
                    f"Training diverged at iteration {it} (the loss is not a number); lower the learning rate."
                )
            tokens += n_answer
            if save_checkpoint is not None and (it % config.checkpoint_every == 0 or it == config.iters):
                save_checkpoint(self._checkpoint(it, optimizer, config, digest))
            if progress is not None:
                progress(Progress(it, config.iters, loss_value, tokens, time.perf_counter() - began))
        self.model.eval()
        completed = it >= config.iters
        if not completed and save_checkpoint is not None and it > start and it % config.checkpoint_every:
            save_checkpoint(self._checkpoint(it, optimizer, config, digest))
        return TrainResult(
            weights=self.adapter_weights(),
            config=config,
            completed=completed,
            iteration=it,
            metrics={
                "final_loss": loss_value,
                "iterations": it - start,
                "train_seconds": time.perf_counter() - began,
                "trained_tokens": tokens,
                "peak_memory_bytes": int(mx.get_peak_memory()),
                "examples": len(rows),
            },
        )

    def _checkpoint(self, iteration: int, optimizer, config: TrainConfig, digest: str) -> bytes:
        import numpy as np
        from mlx.utils import tree_flatten
        from safetensors.numpy import save

        tensors = {f"w:{k}": v for k, v in self.adapter_weights().items()}
        state: list[tuple[str, Any]] = tree_flatten(optimizer.state)  # type: ignore[assignment]
        for k, v in state:
            tensors[f"o:{k}"] = np.array(v)
        meta = {"iteration": str(iteration), "config": json.dumps(config.to_dict()), "data": digest}
        return save(tensors, metadata=meta)

    def _restore(self, blob: bytes, optimizer, config: TrainConfig, digest: str) -> int:
        import mlx.core as mx
        from mlx.utils import tree_unflatten
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            tensors = load(blob)
            meta = _safetensors_metadata(blob)
            iteration = int(meta["iteration"])
            saved = TrainConfig.from_dict(json.loads(meta["config"]))
        except (SafetensorError, KeyError, ValueError, TypeError):
            raise TrainingError("The training checkpoint is damaged; start the run again without resuming.") from None
        if meta.get("data") != digest:
            raise TrainingError(
                "The facts changed since this run was interrupted; start a new run instead of resuming."
            )
        if {**saved.to_dict(), "iters": 0} != {**config.to_dict(), "iters": 0}:
            raise TrainingError("The checkpoint was made with other training settings; resume with the same settings.")
        self.model.load_weights([(k[2:], mx.array(v)) for k, v in tensors.items() if k.startswith("w:")], strict=False)
        optimizer.state = tree_unflatten([(k[2:], mx.array(v)) for k, v in tensors.items() if k.startswith("o:")])
        return iteration

    # ----- scoring -------------------------------------------------------------------------
    def _token_logprobs(self, rows: Sequence[tuple[list[int], int]]) -> tuple[float, int]:
        """Sum of log-probabilities of the scored tokens, and how many, one sequence at a time."""
        import mlx.core as mx
        import mlx.nn as nn

        total, count = 0.0, 0
        for ids, offset in rows:
            inputs, mask = self._batch([(ids, offset)], 1 << 30)
            logits = self.model(inputs[:, :-1]).astype(mx.float32)
            lp = -nn.losses.cross_entropy(logits, inputs[:, 1:]) * mask
            total += lp.sum().item()
            count += int(mask.sum().item())
        return total, count

    def answer_logprob(self, examples: Sequence[Example], adapter: bool) -> float:
        """Mean log-probability (nats per token) of the answers given their questions."""
        self._set_adapter(adapter, self._scale)
        try:
            total, count = self._token_logprobs([self.render(e) for e in examples])
        finally:
            self._set_adapter(True, self._scale)
        return total / max(count, 1)

    def perplexity(self, texts: Sequence[str], adapter: bool) -> float:
        """Perplexity of plain texts (every token after the first is scored)."""
        import math

        self._set_adapter(adapter, self._scale)
        try:
            total, count = self._token_logprobs([(self.tokenizer.encode(t), 0) for t in texts])
        finally:
            self._set_adapter(True, self._scale)
        return math.exp(-total / max(count, 1))


def _common_prefix(sequences: Sequence[Sequence[int]]) -> list[int]:
    """The longest list every sequence starts with."""
    first = sequences[0]
    n = min(len(x) for x in sequences)
    for seq in sequences[1:]:
        n = next((i for i in range(n) if seq[i] != first[i]), n)
    return list(first[:n])


def _stack_padded(states: list, width: int):
    """(batch, width, hidden) from per-example (length, hidden) states, zero-padded at the end."""
    import mlx.core as mx

    return mx.stack([mx.pad(h[:width], [(0, width - min(h.shape[0], width)), (0, 0)]) for h in states])


def _safetensors_metadata(blob: bytes) -> dict:
    """The `__metadata__` of a safetensors byte string."""
    import struct

    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]).get("__metadata__", {})
