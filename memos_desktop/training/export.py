"""Adapter file formats: the MLX adapter directory and the GGUF LoRA that llama.cpp loads.

Owns the conversion from MLX's LoRA layout (lora_a: (in, r), lora_b: (r, out), output scaled by
an absolute `scale`) to llama.cpp's (`blk.N.<name>.weight.lora_a`: (r, in), `.lora_b`: (out, r),
scaled by `adapter.lora.alpha / rank`), including the row permutation llama.cpp's converter
applies to q/k projections of llama-architecture models (interleaved RoPE), and the checks that
an adapter fits a base GGUF's tensors. Everything is returned as bytes: writing (sealed) files
is the adapter registry's job, so no plaintext adapter is ever left on disk by this module.
"""

import json
import re
from pathlib import Path

from memos_desktop.errors import TrainingError
from memos_desktop.training.trainer import TrainConfig

# Hugging Face / MLX module names → llama.cpp tensor names.
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# Architectures whose converter permutes q/k rows (llama.cpp's `LlamaModel.permute`).
PERMUTED_ARCHS = ("llama",)
_MLX_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(lora_a|lora_b)$")


def mlx_adapter_files(weights: dict, config: TrainConfig, n_layers: int) -> dict[str, bytes]:
    """The files of an `mlx_lm` adapter directory: adapter_config.json and adapters.safetensors."""
    from safetensors.numpy import save

    adapter_config = {
        "fine_tune_type": "lora",
        "num_layers": n_layers if config.num_layers < 0 else config.num_layers,
        "lora_parameters": {
            "rank": config.rank,
            "scale": config.scale,
            "dropout": config.dropout,
            "keys": list(config.keys),
        },
    }
    return {
        "adapter_config.json": json.dumps(adapter_config, indent=2).encode(),
        "adapters.safetensors": save(weights, metadata={"format": "mlx"}),
    }


def mlx_weights(files: dict[str, bytes]) -> tuple[dict, dict]:
    """(weights, adapter_config) of an MLX adapter directory's files; a clear error if damaged."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        config = json.loads(files["adapter_config.json"])
        weights = load(files["adapters.safetensors"])
        if int(config["lora_parameters"]["rank"]) < 1 or not weights:
            raise ValueError("empty adapter")
    except (KeyError, ValueError, TypeError, SafetensorError):
        raise TrainingError(
            "The adapter's files are damaged; roll back to an earlier version or train again."
        ) from None
    return weights, config


def _permute(weight, n_head: int):
    out = weight.shape[0]
    return weight.reshape(n_head, 2, out // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def base_gguf_info(path: Path) -> dict:
    """Architecture, head counts and tensor shapes (numpy order) of a base GGUF model."""
    import struct

    from memos_desktop.runtime.llama_backend import read_gguf_header

    try:
        fields, shapes, _ = read_gguf_header(Path(path))
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise TrainingError(f"The base model {path} is not a readable GGUF file ({exc}).") from None
    arch = fields.get("general.architecture")
    return {
        "arch": arch,
        "n_head": fields.get(f"{arch}.attention.head_count"),
        "n_head_kv": fields.get(f"{arch}.attention.head_count_kv"),
        "shapes": {name: tuple(int(d) for d in shape) for name, shape in shapes.items()},
    }


def gguf_adapter(weights: dict, config: TrainConfig, base: dict, name: str = "memos-desktop adapter") -> bytes:
    """The GGUF LoRA bytes for MLX `weights`, fitted to the base GGUF described by `base`."""
    import os
    import tempfile

    import gguf
    import numpy as np

    arch = base["arch"]
    permute = arch in PERMUTED_ARCHS
    pairs: dict[str, dict] = {}
    for key, value in weights.items():
        m = _MLX_NAME.match(key)
        if not m or m.group(2) not in GGUF_NAMES:
            raise TrainingError(f"The adapter has a tensor {key} that llama.cpp cannot use.")
        layer, module, part = m.groups()
        pairs.setdefault(f"blk.{layer}.{GGUF_NAMES[module]}.weight", {})[part] = (module, value)
    tensors = {}
    for target, parts in sorted(pairs.items()):
        if set(parts) != {"lora_a", "lora_b"}:
            raise TrainingError(f"The adapter is missing half of the LoRA pair for {target}.")
        module, a = parts["lora_a"]
        _, b = parts["lora_b"]
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float32).T)
        b = np.ascontiguousarray(np.asarray(b, dtype=np.float32).T)
        if permute and module == "self_attn.q_proj":
            b = np.ascontiguousarray(_permute(b, base["n_head"]))
        elif permute and module == "self_attn.k_proj":
            b = np.ascontiguousarray(_permute(b, base["n_head_kv"]))
        shape = base["shapes"].get(target)
        if shape != (b.shape[0], a.shape[1]):
            raise TrainingError(
                f"The adapter does not fit the base model: {target} is {shape} there but the adapter "
                f"expects {(b.shape[0], a.shape[1])}; it was trained for another model."
            )
        tensors[target + ".lora_a"] = a
        tensors[target + ".lora_b"] = b
    fd, tmp = tempfile.mkstemp(suffix=".gguf", dir=ram_dir())
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("general.name", name)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(config.scale * config.rank))
        for tname, tensor in tensors.items():
            writer.add_tensor(tname, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def ram_dir() -> str | None:
    """A RAM-backed directory for short-lived plaintext (Linux /dev/shm), else the temp dir."""
    import os

    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
