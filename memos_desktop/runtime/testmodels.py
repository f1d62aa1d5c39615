"""Generated random-weight language models for tests and benchmarks (no downloads, ever).

Owns the model specs (`TINY`, `MLX_BENCH`, `QWEN05B_SHAPE`), the byte-level BPE tokenizer trained
locally with `tokenizers`, the random weights (seeded, Hugging Face llama naming and layout) and
the two writers: a llama-architecture GGUF (`gguf` package) and the matching MLX model directory
(config.json, model.safetensors, tokenizer files). Files are cached under
`paths.cache_dir()/testmodels`, keyed by a hash of the spec, and written atomically. The weights
are random: these models produce real timings and exercise real code paths, never sensible text.
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from memos_desktop import paths

GENERATOR_VERSION = 2
BOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (BOS, IM_START, IM_END)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = """\
Memory is a managed resource. A personal assistant that remembers keeps facts, preferences and
notes as small units of memory, each with its source, its version history and its lifecycle.
When a note changes, everything derived from it is rebuilt; when a fact is forgotten, it is gone
from every answer. The assistant runs on your own computer: the language model, the search index
and the encrypted vault never leave the machine. Reading a long prompt again and again is slow,
so the assistant keeps the attention cache of the parts that do not change, the system prompt and
the memories it pinned, and restores that cache instead of computing it again. Stable knowledge
that is used every day can move into the weights of a small adapter. Every answer cites the notes
it came from, with the file, the heading and the lines. The quick brown fox jumps over the lazy
dog; pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump. On Monday the
team met at nine, on Tuesday the rain stopped at noon, and on Friday everyone went home early.
Numbers like 1, 2, 3, 10, 42, 100, 2024 and 3.14 appear in notes; so do emails, dates and names.
"""


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a generated llama-architecture model (Hugging Face config names)."""

    name: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    context_length: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    dtype: str = "f32"
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def key(self) -> str:
        """A short hash of everything that determines the generated files."""
        blob = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def hf_config(self) -> dict:
        """The `config.json` of the matching Hugging Face / MLX llama model."""
        return {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.context_length,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": False,
            "torch_dtype": "float16" if self.dtype == "f16" else "float32",
        }


TINY = ModelSpec(
    name="tiny-llama",
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    context_length=2048,
)
MLX_BENCH = ModelSpec(
    name="mlx-bench-llama",
    vocab_size=8192,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=1024,
    context_length=16384,
    rope_theta=1000000.0,
)
QWEN05B_SHAPE = ModelSpec(
    name="qwen2.5-0.5b-shape",
    vocab_size=32000,
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    context_length=32768,
    rope_theta=1000000.0,
    dtype="f16",
)


def cache_root() -> Path:
    return paths.cache_dir() / "testmodels"


# ----- tokenizer ---------------------------------------------------------------------------------
def _corpus(vocab_size: int, seed: int) -> list[str]:
    """The built-in text, plus seeded pseudo-words when a large vocabulary needs more merges."""
    import numpy as np

    lines = CORPUS.splitlines()
    if vocab_size > 1024:
        rng = np.random.default_rng(seed)
        syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"] + ["th", "st", "ng", "er"]
        n_words = vocab_size * 6
        picks = rng.integers(0, len(syllables), size=(n_words, 4))
        lengths = rng.integers(1, 5, size=n_words)
        words = ["".join(syllables[j] for j in row[:n]) for row, n in zip(picks, lengths, strict=True)]
        lines += [" ".join(words[i : i + 12]) for i in range(0, n_words, 12)]
    return lines


def tokenizer_json(spec: ModelSpec) -> Path:
    """Train (once) the spec's byte-level BPE tokenizer; return its cached `tokenizer.json`."""
    path = cache_root() / f"tokenizer-v{spec.vocab_size}-s{spec.seed}-g{GENERATOR_VERSION}.json"
    if path.exists():
        return path
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(spec.vocab_size, spec.seed), trainer)
    missing = spec.vocab_size - tok.get_vocab_size()
    if missing > 0:
        tok.add_special_tokens([f"<|reserved_{i}|>" for i in range(missing)])
    _atomic_write(path, tok.to_str().encode())
    return path


def vocab(spec: ModelSpec) -> tuple[list[str], list[str], set[str]]:
    """(tokens in id order, merges as "a b" strings, special tokens) of the spec's tokenizer."""
    data = json.loads(tokenizer_json(spec).read_text())
    by_id = {i: t for t, i in data["model"]["vocab"].items()}
    special = set()
    for added in data["added_tokens"]:
        by_id[added["id"]] = added["content"]
        special.add(added["content"])
    tokens = [by_id[i] for i in range(len(by_id))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges, special


# ----- weights -----------------------------------------------------------------------------------
def hf_weights(spec: ModelSpec) -> dict:
    """Seeded random weights in Hugging Face llama naming and layout (Linear = (out, in)).

    Embeddings and the (untied) output head are unit-variance, linear layers 1/sqrt(fan_in):
    logits are well separated, so greedy decoding is stable across batch sizes and runtimes, and
    an untied head keeps a random model from just repeating its last input token.
    """
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    dt = np.float16 if spec.dtype == "f16" else np.float32
    h, kv = spec.hidden_size, spec.num_key_value_heads * spec.head_dim

    def linear(out_dim: int, in_dim: int):
        w = rng.standard_normal((out_dim, in_dim), dtype=np.float32)
        w *= 1.0 / np.sqrt(in_dim)
        return w.astype(dt)

    weights = {"model.embed_tokens.weight": rng.standard_normal((spec.vocab_size, h), dtype=np.float32).astype(dt)}
    for i in range(spec.num_hidden_layers):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = np.ones(h, dtype=np.float32)
        weights[p + "self_attn.q_proj.weight"] = linear(h, h)
        weights[p + "self_attn.k_proj.weight"] = linear(kv, h)
        weights[p + "self_attn.v_proj.weight"] = linear(kv, h)
        weights[p + "self_attn.o_proj.weight"] = linear(h, h)
        weights[p + "post_attention_layernorm.weight"] = np.ones(h, dtype=np.float32)
        weights[p + "mlp.gate_proj.weight"] = linear(spec.intermediate_size, h)
        weights[p + "mlp.up_proj.weight"] = linear(spec.intermediate_size, h)
        weights[p + "mlp.down_proj.weight"] = linear(h, spec.intermediate_size)
    weights["model.norm.weight"] = np.ones(h, dtype=np.float32)
    weights["lm_head.weight"] = rng.standard_normal((spec.vocab_size, h), dtype=np.float32).astype(dt)
    return weights


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    """The llama.cpp tensor name of a Hugging Face llama tensor name."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{GGUF_NAMES[rest]}"


def permute_qk(weight, n_head: int):
    """llama.cpp's row order for q/k projections (interleaved RoPE) from Hugging Face's (halves)."""
    out_dim = weight.shape[0]
    return weight.reshape(n_head, 2, out_dim // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensors(spec: ModelSpec, weights: dict) -> dict:
    """Hugging Face weights renamed and permuted for a llama-architecture GGUF."""
    out = {}
    for name, w in weights.items():
        if name.endswith("q_proj.weight"):
            w = permute_qk(w, spec.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = permute_qk(w, spec.num_key_value_heads)
        out[gguf_name(name)] = w
    return out


# ----- writers -----------------------------------------------------------------------------------
def write_gguf(spec: ModelSpec, path: Path) -> Path:
    """Write the spec as a llama-architecture GGUF with its tokenizer and chat template."""
    import gguf

    tokens, merges, special = vocab(spec)
    token_types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    tmp = _tmp_sibling(path)
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(spec.name)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.hidden_size)
    writer.add_block_count(spec.num_hidden_layers)
    writer.add_feed_forward_length(spec.intermediate_size)
    writer.add_head_count(spec.num_attention_heads)
    writer.add_head_count_kv(spec.num_key_value_heads)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_layer_norm_rms_eps(spec.rms_norm_eps)
    writer.add_vocab_size(spec.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if spec.dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(IM_END))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in gguf_tensors(spec, hf_weights(spec)).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def write_mlx(spec: ModelSpec, directory: Path) -> Path:
    """Write the spec as an MLX / Hugging Face llama model directory."""
    from safetensors.numpy import save_file

    tmp = _tmp_sibling(directory)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(spec.hf_config(), indent=2))
    save_file(hf_weights(spec), str(tmp / "model.safetensors"), metadata={"format": "mlx"})
    shutil.copyfile(tokenizer_json(spec), tmp / "tokenizer.json")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": BOS,
        "add_bos_token": False,
        "model_max_length": spec.context_length,
        "chat_template": CHAT_TEMPLATE,
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return _publish_dir(tmp, directory)


def _publish_dir(tmp: Path, directory: Path) -> Path:
    """Move a finished directory into place; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _tmp_sibling(path: Path) -> Path:
    """A temporary name next to `path`, unique per process (tests and benches generate in parallel)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def gguf_model(spec: ModelSpec) -> Path:
    """The spec's GGUF file, generated on first use and cached."""
    path = cache_root() / f"{spec.name}-{spec.key()}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(spec, path)
    return path


def mlx_model(spec: ModelSpec) -> Path:
    """The spec's MLX model directory, generated on first use and cached."""
    directory = cache_root() / f"{spec.name}-{spec.key()}-mlx"
    if not (directory / "config.json").exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        write_mlx(spec, directory)
    return directory


def tiny_gguf(seed: int = 0) -> Path:
    """A tiny llama GGUF (2 layers, 64 hidden, 512-token BPE vocabulary), cached."""
    return gguf_model(replace(TINY, seed=seed))


def tiny_mlx(seed: int = 0) -> Path:
    """The MLX directory with exactly the weights and tokenizer of `tiny_gguf(seed)`."""
    return mlx_model(replace(TINY, seed=seed))


def mlx_bench_model() -> Path:
    """The smaller MLX model the TTFT benchmark uses on Linux (CPU MLX is slow)."""
    return mlx_model(MLX_BENCH)


def qwen05b_shape_gguf() -> Path:
    """A random F16 GGUF with Qwen2.5-0.5B's shape (24 layers, 896 hidden, 14/2 heads)."""
    return gguf_model(QWEN05B_SHAPE)


# ----- LoRA adapters -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraSpec:
    """A random LoRA adapter on the q and v projections of every layer of `base`."""

    base: ModelSpec
    rank: int = 4
    alpha: float = 8.0
    seed: int = 1

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


LORA_TARGETS = ("self_attn.q_proj", "self_attn.v_proj")


def lora_weights(spec: LoraSpec) -> dict:
    """{hf module name: (A (rank, in), B (out, rank))} in PEFT layout, seeded."""
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    base = spec.base
    out_dims = {"self_attn.q_proj": base.hidden_size, "self_attn.v_proj": base.num_key_value_heads * base.head_dim}
    weights = {}
    for i in range(base.num_hidden_layers):
        for target in LORA_TARGETS:
            a = rng.standard_normal((spec.rank, base.hidden_size), dtype=np.float32)
            a *= 1.0 / np.sqrt(base.hidden_size)
            b = rng.standard_normal((out_dims[target], spec.rank), dtype=np.float32)
            weights[f"model.layers.{i}.{target}"] = (a, b)
    return weights


def write_lora_gguf(spec: LoraSpec, path: Path) -> Path:
    """The adapter as a GGUF LoRA (llama.cpp applies it with scale alpha/rank)."""
    import gguf

    tmp = _tmp_sibling(path)
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", spec.alpha)
    for module, (a, b) in lora_weights(spec).items():
        if module.endswith("q_proj"):
            b = permute_qk(b, spec.base.num_attention_heads)
        name = gguf_name(module + ".weight")
        writer.add_tensor(name + ".lora_a", a)
        writer.add_tensor(name + ".lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def write_lora_mlx(spec: LoraSpec, directory: Path) -> Path:
    """The adapter as an mlx-lm adapter directory (A as (in, r), B as (r, out), absolute scale)."""
    from safetensors.numpy import save_file

    tmp = _tmp_sibling(directory)
    tmp.mkdir(parents=True)
    config = {
        "fine_tune_type": "lora",
        "num_layers": spec.base.num_hidden_layers,
        "lora_parameters": {
            "rank": spec.rank,
            "scale": spec.alpha / spec.rank,
            "dropout": 0.0,
            "keys": list(LORA_TARGETS),
        },
    }
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
    tensors = {}
    for module, (a, b) in lora_weights(spec).items():
        tensors[module + ".lora_a"] = a.T.copy()
        tensors[module + ".lora_b"] = b.T.copy()
    save_file(tensors, str(tmp / "adapters.safetensors"))
    return _publish_dir(tmp, directory)


def tiny_lora_gguf(seed: int = 1) -> Path:
    """A random GGUF LoRA adapter for `tiny_gguf()`, cached."""
    spec = LoraSpec(TINY, seed=seed)
    path = cache_root() / f"tiny-lora-{spec.key()}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_lora_gguf(spec, path)
    return path


def tiny_lora_mlx(seed: int = 1) -> Path:
    """The same adapter as `tiny_lora_gguf(seed)` as an MLX adapter directory, cached."""
    spec = LoraSpec(TINY, seed=seed)
    directory = cache_root() / f"tiny-lora-{spec.key()}-mlx"
    if not (directory / "adapter_config.json").exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        write_lora_mlx(spec, directory)
    return directory
