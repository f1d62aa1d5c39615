"""A GGUF model as an MLX model directory, so LoRA can be trained for a model shipped only as GGUF.

Owns the conversion of a llama-architecture GGUF (Q4_0, Q4_1 and Q8_0 tensors, which MLX reads as
its own 4- and 8-bit affine quantisation with groups of 32, and F16/F32 tensors) into a Hugging
Face-layout MLX directory: tensor names, the q/k row order (llama.cpp's converter interleaves RoPE
halves; MLX expects them unpermuted), `config.json` with the per-layer quantisation (or, with
`dequantize`, bfloat16 weights: MLX's CPU matmul, reference BLAS on Linux, ran 2.3 GFLOP/s on its
4-bit kernel, 2-5 in float32 and 6-7 in bfloat16 here, so small models train faster dequantized
to bfloat16; 4 bits fit in its 8-bit mantissa without loss), and a
`tokenizer.json` rebuilt from the GGUF's byte-level BPE vocabulary and merges. The trained adapter
is exported back with `export.gguf_adapter`, which applies the permutation again. Directories are
cached by the GGUF's digest; nothing here touches the vault.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

from memos_desktop.errors import TrainingError

# GGUF tensor names → Hugging Face llama module paths (without ".weight").
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# llama.cpp pre-tokenizer names this module can rebuild as a Hugging Face pre-tokenizer.
SUPPORTED_PRE = ("gpt-2", "smollm")
GROUP_SIZE = 32  # GGUF's Q4_0/Q4_1/Q8_0 block size, which MLX keeps as the quantisation group
CONVERTER_VERSION = 1


def mlx_from_gguf(gguf_path: Path, cache_dir: Path | None = None, dequantize: bool = False) -> Path:
    """The MLX model directory for `gguf_path`, converted once and cached by the file's digest;
    with `dequantize`, every weight is bfloat16 (2-4× the GGUF's size in memory)."""
    from memos_desktop import paths
    from memos_desktop.runtime.base import file_digest

    gguf_path = Path(gguf_path)
    root = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "mlx-from-gguf"
    mode = "bf16" if dequantize else "q"
    target = root / f"{gguf_path.stem}-{file_digest(gguf_path)[:16]}-{mode}-v{CONVERTER_VERSION}"
    if (target / "config.json").exists():
        return target
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_mlx_model(gguf_path, tmp, dequantize)
        try:
            os.rename(tmp, target)
        except OSError:  # another process converted it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_mlx_model(gguf_path: Path, directory: Path, dequantize: bool = False) -> None:
    """Write config.json, model.safetensors, tokenizer.json and tokenizer_config.json."""
    import mlx.core as mx

    try:
        loaded = mx.load(str(gguf_path), return_metadata=True)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(
            f"MLX cannot read {gguf_path.name} ({exc}); training needs a GGUF with Q4_0, Q4_1, Q8_0, F16 or "
            "F32 tensors."
        ) from None
    weights, meta = cast("tuple[dict[str, mx.array], dict[str, Any]]", loaded)
    arch = _text(meta, "general.architecture")
    if arch != "llama":
        raise TrainingError(f"Training from a GGUF supports llama-architecture models; {gguf_path.name} is {arch!r}.")
    n_head, n_kv = _int(meta, "llama.attention.head_count"), _int(meta, "llama.attention.head_count_kv")
    tensors: dict[str, mx.array] = {}
    quantized: dict[str, int] = {}
    for name, array in weights.items():
        base, kind = name.rsplit(".", 1)
        module = _module(base)
        if base.endswith("attn_q"):
            array = _unpermute(array, n_head)
        elif base.endswith("attn_k"):
            array = _unpermute(array, n_kv)
        tensors[f"{module}.{kind}"] = array
        if kind == "scales":
            quantized[module] = 0
    for module in quantized:
        packed, scales = tensors[f"{module}.weight"], tensors[f"{module}.scales"]
        quantized[module] = bits = packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
        if dequantize:
            biases = tensors.pop(f"{module}.biases")
            tensors.pop(f"{module}.scales")
            tensors[f"{module}.weight"] = mx.dequantize(packed, scales, biases, GROUP_SIZE, bits)
    if dequantize:
        tensors = {k: v.astype(mx.bfloat16) for k, v in tensors.items()}
        quantized = {}
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": _int(meta, "llama.vocab_size", len(meta["tokenizer.ggml.tokens"])),
        "hidden_size": _int(meta, "llama.embedding_length"),
        "num_hidden_layers": _int(meta, "llama.block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "intermediate_size": _int(meta, "llama.feed_forward_length"),
        "max_position_embeddings": _int(meta, "llama.context_length"),
        "rope_theta": float(_number(meta, "llama.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(_number(meta, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
    }
    if quantized:
        bits = max(set(quantized.values()), key=list(quantized.values()).count)
        config["quantization"] = {"group_size": GROUP_SIZE, "bits": bits}
        for module, module_bits in quantized.items():
            if module_bits != bits:
                config["quantization"][module] = {"group_size": GROUP_SIZE, "bits": module_bits}
    mx.save_safetensors(str(directory / "model.safetensors"), tensors, metadata={"format": "mlx"})
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    _write_tokenizer(meta, directory)


def _write_tokenizer(meta: dict, directory: Path) -> None:
    """tokenizer.json and tokenizer_config.json from the GGUF's vocabulary, merges and template."""
    import numpy as np
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model, pre = _text(meta, "tokenizer.ggml.model"), _text(meta, "tokenizer.ggml.pre", "gpt-2")
    if model != "gpt2" or pre not in SUPPORTED_PRE:
        raise TrainingError(
            f"The model's tokenizer ({model}, pre-tokenizer {pre!r}) cannot be rebuilt for training yet; "
            f"supported: byte-level BPE with the {', '.join(SUPPORTED_PRE)} pre-tokenizers."
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    kinds = np.array(meta["tokenizer.ggml.token_type"]).tolist()
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":  # llama.cpp's SMOLLM: every digit alone, then GPT-2's split
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    special = [t for t, k in zip(tokens, kinds, strict=True) if k == control]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.save(str(directory / "tokenizer.json"))
    eos = tokens[_int(meta, "tokenizer.ggml.eos_token_id")]
    bos_id = _int(meta, "tokenizer.ggml.bos_token_id", -1)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[bos_id] if bos_id >= 0 else None,
        "eos_token": eos,
        "pad_token": eos,
        "add_bos_token": bool(_number(meta, "tokenizer.ggml.add_bos_token", False)),
        "model_max_length": _int(meta, "llama.context_length"),
    }
    template = meta.get("tokenizer.chat_template")
    if template:
        tokenizer_config["chat_template"] = str(template)
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))


def _module(base: str) -> str:
    if base in _TOP_NAMES:
        return _TOP_NAMES[base]
    parts = base.split(".")
    if len(parts) != 3 or parts[0] != "blk" or parts[2] not in _LAYER_NAMES:
        raise TrainingError(f"The GGUF has a tensor {base!r} that a llama model does not have.")
    return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"


def _unpermute(array, n_head: int):
    """Hugging Face's q/k row order (RoPE halves) from llama.cpp's interleaved one."""
    rows = array.shape[0]
    return array.reshape(n_head, rows // n_head // 2, 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)


def _number(meta: dict, key: str, default=None):
    value = meta.get(key, default)
    if value is None:
        raise TrainingError(f"The GGUF has no {key} in its metadata.")
    return value.item() if hasattr(value, "item") else value


def _int(meta: dict, key: str, default=None) -> int:
    return int(_number(meta, key, default))


def _text(meta: dict, key: str, default: str | None = None) -> str:
    return str(_number(meta, key, default))
