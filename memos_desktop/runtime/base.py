"""What every language-model runtime shares: the `LLMBackend` Protocol and its plain data.

Owns the load settings, the sampling parameters, the sampler (numpy, so both runtimes pick the
same token from the same logits), stop-sequence handling over a token stream, prompt-length
checks and model file fingerprints. It never imports a runtime library: `llama_backend.py` and
`mlx_backend.py` hold one implementation each.
"""

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from memos_desktop.errors import ModelError


@dataclass(frozen=True)
class LoadSettings:
    """How to load a model: context size (tokens), CPU threads (None: runtime default), batch."""

    n_ctx: int = 4096
    threads: int | None = None
    batch: int = 512


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters; `temperature == 0` is greedy (deterministic) decoding.

    The penalties look at the last `penalty_last_n` generated tokens (never the prompt, whose
    memories an answer must be free to quote): `repeat_penalty` divides a positive logit of a
    token seen there (multiplies a negative one), `presence_penalty` subtracts a flat amount.
    `min_p` drops tokens less likely than that share of the most likely one.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty", "penalty_last_n")


@dataclass(frozen=True)
class Adapter:
    """A loaded LoRA adapter: its file digest (identity) and the scale it is applied with."""

    path: str
    digest: str
    scale: float


class LLMBackend(Protocol):
    """A loaded language model with a KV cache that can be saved, restored and reused.

    The backend tracks which tokens its KV cache holds; `prefill` and `generate_tokens` reuse the
    longest common prefix with those tokens and compute only the rest.
    """

    runtime: str
    path: Path
    settings: LoadSettings

    @property
    def n_ctx(self) -> int: ...

    @property
    def arch(self) -> str: ...

    @property
    def adapters(self) -> tuple[Adapter, ...]: ...

    def runtime_version(self) -> str: ...

    def kv_dtype(self) -> str: ...

    def chat_prompt(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str: ...

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def prefill(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> None: ...

    def cached_tokens(self) -> list[int]: ...

    def reset(self) -> None: ...

    def save_state(self) -> bytes: ...

    def load_state(self, data: bytes | memoryview, tokens: Sequence[int]) -> None: ...

    def generate_tokens(
        self, tokens: Sequence[int], sampling: Sampling, cancel: threading.Event | None = None
    ) -> Iterator[int]: ...

    def load_adapter(self, path: Path, scale: float = 1.0) -> None: ...

    def unload_adapters(self) -> None: ...

    def close(self) -> None: ...


_DIGESTS: dict[str, str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file or of a directory's files (name + content).

    Memoized by path, total size and newest mtime, in memory and in `cache_dir()/digests.json`,
    so a multi-gigabyte model is hashed once, not on every start.
    """
    import json

    from memos_desktop import paths

    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    key = f"{path}|{sum(s.st_size for s in stats)}|{max((s.st_mtime_ns for s in stats), default=0)}"
    store = paths.cache_dir() / "digests.json"
    if key not in _DIGESTS and store.exists():
        try:
            _DIGESTS.update(json.loads(store.read_text()))
        except (OSError, ValueError):
            store.unlink(missing_ok=True)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            with open(p, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        _DIGESTS[key] = h.hexdigest()
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"digests.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_DIGESTS))
        os.replace(tmp, store)
    return _DIGESTS[key]


def fingerprint(backend: LLMBackend) -> str:
    """Everything that makes a KV state valid: model bytes, adapters+scales, n_ctx, KV dtype, runtime."""
    parts = [
        backend.runtime,
        backend.runtime_version(),
        file_digest(backend.path),
        f"n_ctx={backend.n_ctx}",
        f"kv={backend.kv_dtype()}",
        *(f"lora={a.digest}@{a.scale!r}" for a in backend.adapters),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def model_size(path: Path) -> int:
    """Bytes of a model file, or of a model directory's files."""
    path = Path(path)
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


# GGUF `general.sampling.*` keys (llama.cpp's names) → Sampling fields.
GGUF_SAMPLING = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
    "general.sampling.penalty_last_n": "penalty_last_n",
}
# Hugging Face generation_config.json keys → Sampling fields (MLX model directories).
HF_SAMPLING = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
}


def recommended_sampling(backend, model: dict | None = None) -> dict:
    """The sampling the model's makers recommend, as Sampling fields, from (lowest to highest
    precedence) the model's own metadata (GGUF `general.sampling.*`, an MLX directory's
    generation_config.json) and the catalogue entry of its registered name, when the catalogue
    module exists. Empty when nothing is known."""
    found: dict = {}
    hints = getattr(backend, "sampling_hints", None)
    if callable(hints):
        found.update(hints())
    found.update(catalogue_sampling(model))
    return {k: v for k, v in found.items() if k in SAMPLING_FIELDS}


def catalogue_sampling(model: dict | None) -> dict:
    """The `sampling` dict of the catalogue entry matching a registry entry (by its catalogue
    name, its name or its file name), or {} (no catalogue, no entry)."""
    import importlib

    if not model:
        return {}
    try:
        catalogue = importlib.import_module("memos_desktop.runtime.catalogue")
    except ImportError:
        return {}
    entries = getattr(catalogue, "CATALOGUE", None) or getattr(catalogue, "MODELS", None) or {}
    if isinstance(entries, dict):
        entries = [{"name": name, **entry} if isinstance(entry, dict) else entry for name, entry in entries.items()]
    keys = {model.get("catalogue"), model.get("name"), Path(str(model.get("path", ""))).name}
    for entry in entries:
        entry = entry if isinstance(entry, dict) else getattr(entry, "__dict__", {})
        if {entry.get("name"), entry.get("file")} & (keys - {None, ""}):
            sampling = entry.get("sampling") or {}
            return {HF_SAMPLING.get(k, k): v for k, v in sampling.items() if isinstance(v, int | float)}
    return {}


def check_fits(n_tokens: int, n_ctx: int, reserve: int = 0) -> None:
    """Raise ModelError when a prompt (plus `reserve` tokens to generate) exceeds the context."""
    if n_tokens + reserve > n_ctx:
        raise ModelError(
            f"The prompt is {n_tokens} tokens, more than this model's context of {n_ctx} tokens "
            "allows; shorten it or load the model with a larger context."
        )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Sampler:
    """Picks the next token from logits: penalties on recent tokens first, then argmax when
    greedy, else seeded top-k / top-p / min-p sampling at the temperature."""

    def __init__(self, sampling: Sampling):
        import numpy as np

        self.sampling = sampling
        self._rng = np.random.default_rng(sampling.seed)

    def __call__(self, logits, recent: Sequence[int] = ()) -> int:
        import numpy as np

        s = self.sampling
        logits = np.array(logits, dtype=np.float64)
        window = list(recent)[-s.penalty_last_n :] if s.penalty_last_n > 0 else []
        if window and (s.repeat_penalty != 1.0 or s.presence_penalty):
            seen = np.unique(np.asarray(window, dtype=np.int64))
            seen = seen[(seen >= 0) & (seen < logits.shape[0])]
            values = logits[seen]
            values = np.where(values > 0, values / s.repeat_penalty, values * s.repeat_penalty)
            logits[seen] = values - s.presence_penalty
        if s.greedy:
            return int(np.argmax(logits))
        order = np.argsort(-logits)
        if s.top_k > 0:
            order = order[: s.top_k]
        probs = np.exp((logits[order] - logits[order[0]]) / s.temperature)
        if s.min_p > 0:
            keep = max(1, int(np.count_nonzero(probs >= s.min_p)))  # probs[0] == 1: relative to the best
            order, probs = order[:keep], probs[:keep]
        probs /= probs.sum()
        if s.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), s.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(self._rng.choice(order, p=probs))


def generate_cached(
    backend, tokens: Sequence[int], sampling: Sampling, cancel: threading.Event | None, is_end: Callable[[int], bool]
) -> Iterator[int]:
    """The decode loop both backends share.

    `backend` keeps `_tokens` (what its KV cache holds), `_logits` (after the last token, or None),
    `n_ctx`, and `_trim(n)` / `_eval(tokens, cancel)`. The longest cached prefix is reused (at
    least one token is always evaluated, so there are logits to sample from), the rest is
    prefilled, then tokens are sampled until an end token, the budget, a full context or `cancel`.
    """
    import numpy as np

    if not tokens:
        raise ModelError("Nothing to generate from: the prompt is empty.")
    check_fits(len(tokens), backend.n_ctx)
    keep = common_prefix(backend._tokens, tokens)
    if keep == len(tokens) and (keep < len(backend._tokens) or backend._logits is None):
        keep -= 1
    backend._trim(keep)
    backend._eval(tokens[keep:], cancel)
    sample = Sampler(sampling)
    generated: list[int] = []
    for _ in range(sampling.max_tokens):
        if cancel is not None and cancel.is_set():
            return
        token = sample(np.array(backend._logits), generated)
        if is_end(token):
            return
        generated.append(token)
        yield token
        if len(backend._tokens) >= backend.n_ctx:
            return
        backend._eval([token])


def stream_text(
    tokens: Iterator[int],
    detokenize: Callable[[Sequence[int]], str],
    stop: Sequence[str] = (),
    cancel: threading.Event | None = None,
    on_token: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """Turn a token stream into text pieces, ending at the first stop sequence (not included).

    Text that could be the start of a stop sequence, or an incomplete UTF-8 character, is held
    back until it is decided. Setting `cancel` ends the stream after the current token.
    """
    generated: list[int] = []
    emitted = 0
    for token in tokens:
        generated.append(token)
        if on_token is not None:
            on_token(token)
        text = detokenize(generated)
        if text.endswith("\ufffd"):
            continue
        cut = min((i for i in (text.find(s, max(0, emitted - len(s))) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            if cut > emitted:
                yield text[emitted:cut]
            return
        hold = max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if len(text) - hold > emitted:
            yield text[emitted : len(text) - hold]
            emitted = len(text) - hold
        if cancel is not None and cancel.is_set():
            return
    text = detokenize(generated)
    if len(text) > emitted:
        yield text[emitted:]
