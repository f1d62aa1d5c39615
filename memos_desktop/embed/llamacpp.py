"""`LlamaCppEmbedder`: any GGUF embedding model run by llama.cpp (llama-cpp-python).

Owns tokenizing with the model's own tokenizer, truncating to the model's input limit while
keeping the closing special token, packing many texts into one llama.cpp batch (one sequence id
per text, so texts never attend to each other: a text embedded in a packed batch and alone
differ by ~1e-7 in cosine; texts are packed in order of length, so a batch holds texts of similar
size and one llama.cpp batch buffer is reused), pooling and L2-normalising. OpenMP waits
passively (set when the package is imported, see `memos_desktop/__init__.py`). Attention uses
llama.cpp's flash-attention kernel (same vectors to 1e-6 in cosine; on 160 note chunks of ~180
tokens, 1430 → 1950 tokens per CPU-second at a 256-token batch). llama-cpp-python's own
`Llama.embed` is not used: it cuts long inputs without re-adding the closing token, and `Llama`
cannot turn off llama.cpp's extra weight layouts: the model is loaded through the C API, with
them off on a CPU that reports AMX (`_Model`; the same test as the chat runtime's
`no_amx_repack`). On a CPU that reports AMX inside a VM that does not enable it (measured on
a Firecracker guest of a Sapphire Rapids host), llama.cpp's AMX kernels for quantized weights
kill the process (SIGSEGV/SIGILL at `ldtilecfg`); without them a Q8_0 model runs the AVX-512
VNNI dot products, and F16 weights never used that layout. The model is loaded on the first
`embed` and kept for the life of the object. It never downloads or converts models and never
writes files.
"""

import hashlib
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from memos_desktop.errors import EmbedderError

MEAN_POOLING = 1  # llama_cpp.LLAMA_POOLING_TYPE_MEAN, without importing llama_cpp at startup
NO_POOLING = 0
FLASH_ATTENTION = 1  # llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
_backend = threading.Lock()
_backend_ready = False


class _Model:
    """One llama.cpp model and one embedding context on it, through the C API."""

    def __init__(self, path: Path, *, pooling: int, tokens: int, n_threads: int) -> None:
        import logging

        import llama_cpp

        global _backend_ready
        with _backend:
            if not _backend_ready:
                llama_cpp.llama_backend_init()
                _backend_ready = True
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # as Llama(verbose=False)
        self._api = llama_cpp
        from memos_desktop.runtime.llama_backend import cpu_has_amx

        params = llama_cpp.llama_model_default_params()
        if cpu_has_amx():  # see the module docstring: no AMX (or other repacked) layouts there
            params.use_extra_bufts = False
        self.model = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
        if not self.model:
            raise ValueError("llama.cpp could not load it")
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = context.n_batch = context.n_ubatch = tokens
        context.n_threads = context.n_threads_batch = n_threads
        context.n_seq_max = min(tokens, llama_cpp.llama_max_parallel_sequences())
        context.kv_unified = True
        context.embeddings = True
        context.pooling_type = pooling
        context.flash_attn_type = FLASH_ATTENTION
        self.ctx = llama_cpp.llama_init_from_model(self.model, context)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ValueError("llama.cpp could not make an embedding context for it")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_seq = llama_cpp.llama_n_seq_max(self.ctx)
        self._ids: Any = (llama_cpp.llama_token * max(tokens, 1))()

    def n_embd(self) -> int:
        return int(self._api.llama_model_n_embd(self.model))

    def tokenize(self, text: bytes, add_bos: bool) -> list[int]:
        n = self._api.llama_tokenize(self.vocab, text, len(text), self._ids, len(self._ids), add_bos, False)
        if n < 0:  # longer than the buffer: -n tokens
            self._ids = (self._api.llama_token * -n)()
            n = self._api.llama_tokenize(self.vocab, text, len(text), self._ids, len(self._ids), add_bos, False)
        return list(self._ids[:n])

    def close(self) -> None:
        if self.ctx:
            self._api.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self._api.llama_model_free(self.model)
            self.model = None


class LlamaCppEmbedder:
    """Embeds texts with a GGUF model; vectors are float32, L2-normalised, shape (n, dim)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        model_id: str | None = None,
        max_tokens: int | None = None,
        batch_tokens: int = 512,
        pooling: int | None = None,
        n_threads: int | None = None,
    ):
        """`max_tokens` caps one text (default: the model's training context, within
        `batch_tokens`); `batch_tokens` is the llama.cpp batch: texts are packed up to that many
        tokens per forward pass. `pooling` is a llama.cpp pooling type (default: the model's own,
        mean if it declares none)."""
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise EmbedderError(f"The embedding model file {self.path} does not exist.")
        if max_tokens is not None and max_tokens > batch_tokens:
            raise EmbedderError(f"max_tokens ({max_tokens}) cannot exceed batch_tokens ({batch_tokens}).")
        self._model_id = model_id
        self._max_tokens = max_tokens
        self.batch_tokens = batch_tokens
        self._pooling = pooling
        cpus = os.cpu_count() or 1
        self.n_threads = n_threads or min(cpus, max(2, cpus // 2))
        self._llama: _Model | None = None
        self._batch: Any = None  # one llama_batch of batch_tokens tokens, reused by every decode
        self._n_seq = 1  # texts per forward pass and closing special tokens: set when the model loads
        self._closing: list[int] = []
        self._lock = threading.RLock()  # one llama.cpp context: one load, one batch at a time

    @cached_property
    def model_id(self) -> str:
        """The given id, else file name plus a digest of the file's bytes."""
        if self._model_id:
            return self._model_id
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return f"{self.path.stem}@{digest.hexdigest()[:12]}"

    @cached_property
    def dim(self) -> int:
        return self._load().n_embd()

    @cached_property
    def max_tokens(self) -> int:
        """Most tokens one text is given to the model, special tokens included."""
        import llama_cpp

        limit = min(llama_cpp.llama_model_n_ctx_train(self._load().model), self.batch_tokens)
        return min(self._max_tokens or limit, limit)

    def tokens(self, text: str) -> list[int]:
        """The token ids the model sees for `text`: with its special tokens, truncated."""
        ids = self._load().tokenize(text.encode("utf-8", "replace"), add_bos=True)
        if len(ids) <= self.max_tokens:
            return ids
        keep = self.max_tokens - len(self._closing)
        return ids[:keep] + self._closing

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape (len(texts), dim); many texts per llama.cpp call, packed shortest
        first so that each batch holds texts of similar length."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        with self._lock:
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            ids = [self.tokens(text) for text in texts]
            batch: list[tuple[int, list[int]]] = []
            used = 0
            for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
                if batch and (used + len(ids[i]) > self.batch_tokens or len(batch) >= self._n_seq):
                    self._decode(batch, out)
                    batch, used = [], 0
                batch.append((i, ids[i]))
                used += len(ids[i])
            if batch:
                self._decode(batch, out)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)

    def close(self) -> None:
        """Free the model (it is loaded again on the next `embed`)."""
        with self._lock:
            if self._batch is not None:
                import llama_cpp

                llama_cpp.llama_batch_free(self._batch)
                self._batch = None
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    def _load(self) -> _Model:
        with self._lock:
            if self._llama is None:
                self._llama = self._open()
            return self._llama

    def _open(self) -> _Model:
        try:
            import llama_cpp
        except ImportError:
            raise EmbedderError("llama-cpp-python is not installed, so no embedding model can run.") from None
        except (OSError, RuntimeError) as exc:  # installed, but its native library does not load
            raise EmbedderError(f"llama-cpp-python cannot be loaded ({exc}).") from None
        pooling = self._pooling if self._pooling is not None else self._declared_pooling()
        try:
            llama = _Model(self.path, pooling=pooling, tokens=self.batch_tokens, n_threads=self.n_threads)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EmbedderError(f"The embedding model {self.path.name} cannot be loaded ({exc}).") from None
        self._n_seq = llama.n_seq
        start = llama.tokenize(b"", add_bos=True)
        opening = 1 if llama_cpp.llama_vocab_get_add_bos(llama.vocab) else 0
        self._closing = start[opening:]  # e.g. BERT's [SEP], kept when truncating
        return llama

    def _declared_pooling(self) -> int:
        """The pooling the GGUF declares, mean when it declares none (e.g. a chat model)."""
        import gguf

        try:
            reader = gguf.GGUFReader(self.path)
        except (ValueError, OSError, IndexError, KeyError, TypeError) as exc:
            raise EmbedderError(f"{self.path.name} is not a readable GGUF file ({exc}).") from None
        arch = reader.get_field("general.architecture")
        field = arch and reader.get_field(f"{arch.contents()}.pooling_type")
        declared = int(field.contents()) if field else NO_POOLING
        return declared if declared != NO_POOLING else MEAN_POOLING

    def _decode(self, batch: list[tuple[int, list[int]]], out: np.ndarray) -> None:
        """One forward pass over several texts, each its own sequence; fills their rows."""
        import llama_cpp

        ctx = self._load().ctx
        if self._batch is None:
            self._batch = llama_cpp.llama_batch_init(self.batch_tokens, 0, 1)
        cbatch = self._batch
        k = 0
        for seq, (_, ids) in enumerate(batch):
            for pos, token in enumerate(ids):
                cbatch.token[k] = token
                cbatch.pos[k] = pos
                cbatch.n_seq_id[k] = 1
                cbatch.seq_id[k][0] = seq
                cbatch.logits[k] = True
                k += 1
        cbatch.n_tokens = k
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        rc = llama_cpp.llama_decode(ctx, cbatch)
        if rc != 0:
            raise EmbedderError(f"llama.cpp failed to embed a batch (code {rc}).")
        for seq, (row, _) in enumerate(batch):
            ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq)
            if not ptr:
                raise EmbedderError(f"{self.path.name} returned no pooled embedding.")
            out[row] = np.ctypeslib.as_array(ptr, shape=(out.shape[1],))
