"""The MLX runtime (`mlx-lm`): MLX model directories, on Apple silicon or Linux CPU (`mlx[cpu]`).

Owns one loaded MLX model, its tokenizer (the directory's own chat template) and its prompt
cache: prefill with longest-prefix reuse, save/restore of the cache as safetensors bytes (never a
plaintext file), greedy or sampled decoding, and one LoRA adapter at a time. MLX chooses its own
CPU threads (`LoadSettings.threads` does not apply). It never touches the vault or the network: a
path that is not a local model directory is an error, not a download.
"""

import io
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from memos_desktop.errors import ModelError
from memos_desktop.runtime.base import (
    Adapter,
    LoadSettings,
    Sampling,
    check_fits,
    common_prefix,
    file_digest,
    generate_cached,
)

if TYPE_CHECKING:
    from mlx import nn


class _NamedBytes(io.BytesIO):
    """In-memory file with the `.safetensors` name MLX uses to pick the format."""

    name = "state.safetensors"


class MLXBackend:
    """A model directory (config.json, *.safetensors, tokenizer files) loaded with mlx-lm."""

    runtime = "mlx"

    def __init__(self, path: Path, settings: LoadSettings | None = None):
        self.path = Path(path)
        self.settings = settings = settings or LoadSettings()
        config_file = self.path / "config.json"
        if not self.path.is_dir() or not config_file.is_file():
            raise ModelError(f"{self.path} is not an MLX model directory (it needs a config.json).")
        try:
            self.config = json.loads(config_file.read_text())
        except (OSError, ValueError):
            raise ModelError(f"The config.json in {self.path} is not valid JSON.") from None
        from mlx_lm import load
        from mlx_lm.models.cache import make_prompt_cache

        try:
            model, self.tokenizer = load(str(self.path))[:2]  # (model, tokenizer), without a config
        except Exception as exc:
            raise ModelError(f"Could not load the MLX model in {self.path}: {exc}") from None
        self._model: nn.Module | None = model  # None once closed
        self._make_cache = make_prompt_cache
        self._cache = make_prompt_cache(self.model)
        self._tokens: list[int] = []
        self._logits = None
        self._adapters: tuple[Adapter, ...] = ()
        self._eos = set(self.tokenizer.eos_token_ids)
        cfg = self.config
        heads = int(cfg.get("num_attention_heads", 1))
        self._kv_shape = (
            int(cfg.get("num_key_value_heads") or heads),
            int(cfg.get("head_dim") or cfg.get("hidden_size", 0) // heads),
        )

    @property
    def model(self) -> "nn.Module":
        """The loaded network (ModelError once the backend is closed)."""
        if self._model is None:
            raise ModelError(f"The model in {self.path} was closed.")
        return self._model

    # ----- identity ------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.settings.n_ctx

    @property
    def arch(self) -> str:
        return str(self.config.get("model_type", "unknown"))

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        return self._adapters

    def runtime_version(self) -> str:
        import mlx.core as mx
        import mlx_lm

        version = mx.__version__  # type: ignore[attr-defined]  # mlx.core's stubs leave it out
        return f"mlx-lm {mlx_lm.__version__} / mlx {version}"

    def kv_dtype(self) -> str:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        leaves = cast(
            "list[tuple[str, mx.array]]", tree_flatten(self.model.parameters())
        )  # a list without `destination`
        dtypes = [v.dtype for _, v in leaves]
        return str(next((d for d in dtypes if mx.issubdtype(d, mx.floating)), mx.float32))

    # ----- text ----------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"The model in {self.path} has no chat template.")
        return self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=add_generation_prompt, tokenize=False
        )

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    # ----- KV cache ------------------------------------------------------------------------
    def cached_tokens(self) -> list[int]:
        return list(self._tokens)

    def reset(self) -> None:
        """Empty the KV cache (a fresh one, so its memory is released)."""
        self._cache = self._make_cache(self.model)
        self._tokens = []
        self._logits = None

    def _trim(self, keep: int) -> None:
        from mlx_lm.models.cache import trim_prompt_cache

        if keep < len(self._tokens):
            trim_prompt_cache(self._cache, len(self._tokens) - keep)
            del self._tokens[keep:]
            self._logits = None

    def _eval(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> None:
        import mlx.core as mx

        for start in range(0, len(tokens), self.settings.batch):
            if cancel is not None and cancel.is_set():
                return
            chunk = list(tokens[start : start + self.settings.batch])
            logits = self.model(mx.array(chunk)[None], cache=self._cache)[0, -1]
            mx.eval(logits, [c.state for c in self._cache])
            self._tokens.extend(chunk)
            self._logits = logits

    def prefill(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> None:
        check_fits(len(tokens), self.n_ctx)
        self._trim(common_prefix(self._tokens, tokens))
        self._eval(tokens[len(self._tokens) :], cancel)

    def save_state(self) -> bytes:
        from mlx_lm.models.cache import KVCache, save_prompt_cache

        n = len(self._tokens)
        trimmed = [KVCache.from_state((c.keys[..., :n, :], c.values[..., :n, :], n)) for c in self._cache]
        buf = _NamedBytes()
        # typed as a file name, and written with mx.save_safetensors, which takes a named file object too
        save_prompt_cache(buf, trimmed, {"n_tokens": str(n)})  # type: ignore[arg-type]
        return buf.getvalue()

    def load_state(self, data: bytes | memoryview, tokens: Sequence[int]) -> None:
        from mlx_lm.models.cache import load_prompt_cache

        fresh = self._make_cache(self.model)
        try:
            cache, meta = load_prompt_cache(_NamedBytes(data), return_metadata=True)
            ok = (
                len(cache) == len(fresh)
                and int(meta.get("n_tokens", -1)) == len(tokens)
                and all(
                    type(c) is type(f) and c.offset == len(tokens) and tuple(c.keys.shape[1:4:2]) == self._kv_shape
                    for c, f in zip(cache, fresh, strict=True)
                )
            )
        except Exception:
            ok = False
        if not ok:
            raise ModelError("The saved activation state does not fit this model; it was not loaded.")
        self._cache = cache
        self._tokens = list(tokens)
        self._logits = None

    def sampling_hints(self) -> dict:
        """Sampling recommended in the model directory's generation_config.json, as Sampling fields."""
        import json

        from memos_desktop.runtime.base import HF_SAMPLING

        try:
            config = json.loads((self.path / "generation_config.json").read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(config, dict) or config.get("do_sample") is False:
            return {}
        return {HF_SAMPLING[k]: v for k, v in config.items() if k in HF_SAMPLING and isinstance(v, int | float)}

    # ----- generation ----------------------------------------------------------------------
    def generate_tokens(
        self, tokens: Sequence[int], sampling: Sampling, cancel: threading.Event | None = None
    ) -> Iterator[int]:
        return generate_cached(self, tokens, sampling, cancel, lambda t: t in self._eos)

    # ----- adapters ------------------------------------------------------------------------
    def load_adapter(self, path: Path, scale: float = 1.0) -> None:
        """Apply an MLX LoRA adapter directory (adapter_config.json + adapters.safetensors)."""
        from mlx_lm.tuner.lora import LoRALinear
        from mlx_lm.tuner.utils import load_adapters

        path = Path(path)
        if self._adapters:
            raise ModelError("MLX applies one adapter at a time; unload the current one first.")
        if not (path / "adapter_config.json").is_file():
            raise ModelError(f"{path} is not an MLX adapter directory (no adapter_config.json).")
        try:
            load_adapters(self.model, str(path))
        except Exception as exc:
            self._remove_lora()
            raise ModelError(f"The adapter {path} does not fit this model: {exc}") from None
        for _, module in self.model.named_modules():
            if isinstance(module, LoRALinear):
                module.scale = module.scale * scale
        self._adapters = (Adapter(str(path), file_digest(path), scale),)
        self.reset()

    def unload_adapters(self) -> None:
        self._remove_lora()
        self._adapters = ()
        self.reset()

    def _remove_lora(self) -> None:
        from mlx_lm.tuner.utils import remove_lora_layers

        remove_lora_layers(self.model)

    def close(self) -> None:
        import mlx.core as mx

        self._cache = []
        self._tokens = []
        self._logits = None
        self._model = None
        mx.clear_cache()
