"""The llama.cpp runtime (`llama-cpp-python`): GGUF model files.

Owns one loaded GGUF model and its context: the chat template from the file's metadata,
tokenization, prefill with longest-prefix reuse, sequence KV state save/restore through
`llama_state_seq_*` (KV only — never the logits arrays of `LlamaState`), greedy or sampled
decoding, JSON held to a JSON schema by llama.cpp's grammar sampler (`generate_json`), and LoRA
adapters swapped at runtime with `llama_set_adapters_lora`. OpenMP workers wait passively (see
`memos_desktop/__init__.py`). It never touches
the vault: sealing and keying saved states is `activation.py`'s job.
"""

import ctypes
import functools
import json
import os
import struct
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
    import numpy as np
    import numpy.typing as npt
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateCompletionStreamResponse

GGUF_MAGIC = b"GGUF"
# A JSON string character as JSON allows it: llama-cpp-python's own rule also lets through raw
# control characters (a newline, NUL), which no JSON parser accepts inside a string.
STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'


def check_gguf(path: Path) -> None:
    """Raise ModelError unless `path` is a readable file that starts like a GGUF."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"No model file at {path}.")
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF model file.")


def gguf_info(path: Path) -> dict:
    """Architecture, name, context length, chat template presence and size from a GGUF header.

    Raises ModelError for a file that is not a GGUF or whose header and data do not match
    (truncated or corrupt). Reads the header only (tens of milliseconds even with a large
    vocabulary), never the weights.
    """
    path = Path(path)
    check_gguf(path)
    try:
        fields, _, data_end = read_gguf_header(path)
    except (ValueError, struct.error, OSError, KeyError):
        raise ModelError(f"{path.name} is damaged or truncated: its header cannot be read.") from None
    size = path.stat().st_size
    if data_end > size:
        raise ModelError(
            f"{path.name} is damaged or truncated: its header describes {data_end} bytes but the file has {size}."
        )
    arch = str(fields.get("general.architecture", "unknown"))
    return {
        "arch": arch,
        "name": str(fields.get("general.name", path.stem)),
        "type": str(fields.get("general.type", "model")),
        "context_length": int(fields.get(f"{arch}.context_length", 0) or 0),
        "chat_template": bool(fields.get("tokenizer.chat_template")),
        "size_bytes": size,
    }


# GGUF value types: (struct format, size) for scalars; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_header(path: Path) -> tuple[dict, dict[str, tuple[int, ...]], int]:
    """(key/value fields, tensor shapes in numpy order, end of the last tensor's data) of a GGUF
    file, from its header alone.

    Arrays are skipped (their values are not needed here): the `gguf` package's reader parses a
    50k-token vocabulary element by element, which takes seconds on a small CPU.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as fh:

        def read(fmt: str):
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise ValueError("unexpected end of file")
            return struct.unpack(fmt, data)[0]

        def string() -> str:
            n = read("<Q")
            data = fh.read(n)
            if len(data) != n:
                raise ValueError("unexpected end of file")
            return data.decode("utf-8", errors="replace")

        def value(kind: int):
            if kind in _SCALARS:
                return read(_SCALARS[kind])
            if kind == 8:
                return string()
            if kind == 9:
                item, count = read("<I"), read("<Q")
                if item == 8:
                    for _ in range(count):
                        fh.seek(read("<Q"), os.SEEK_CUR)
                elif item in _SCALARS:
                    fh.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
                else:
                    raise ValueError(f"unsupported array item type {item}")
                return None
            raise ValueError(f"unknown value type {kind}")

        if fh.read(4) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        version, n_tensors, n_kv = read("<I"), read("<Q"), read("<Q")
        if version < 2 or n_tensors > 1 << 24 or n_kv > 1 << 24:
            raise ValueError("implausible header")
        fields = {}
        for _ in range(n_kv):
            key = string()
            fields[key] = value(read("<I"))
        tensors_end, shapes = 0, {}
        for _ in range(n_tensors):
            name = string()
            dims = [read("<Q") for _ in range(read("<I"))]
            shapes[name] = tuple(reversed(dims))
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(read("<I"))]
            offset = read("<Q")
            elements = 1
            for d in dims:
                elements *= d
            tensors_end = max(tensors_end, offset + elements // block * type_size)
        alignment = int(fields.get("general.alignment") or 32)
        data_start = -(-fh.tell() // alignment) * alignment
    return fields, shapes, data_start + tensors_end


def check_loadable(path: Path, arch: str) -> None:
    """ModelError unless llama.cpp can read this GGUF's architecture and vocabulary.

    A vocabulary-only load: llama.cpp resolves the architecture first and reads no weights, so an
    unknown architecture is refused in milliseconds, before any memory is spent on the model.
    """
    from llama_cpp import Llama

    _silence_llama_logs()
    try:
        Llama(model_path=str(path), vocab_only=True, verbose=False).close()
    except (ValueError, RuntimeError, OSError):
        raise ModelError(
            f"llama.cpp cannot run {Path(path).name}: its architecture {arch!r} is not supported by this "
            "llama.cpp build, or its vocabulary is damaged."
        ) from None


@functools.cache
def _silence_llama_logs():
    """Route llama.cpp's own log lines nowhere: users see one ModelError, not C++ chatter."""
    import llama_cpp
    import llama_cpp.llama  # noqa: F401  (installs its logger first; ours replaces it)

    @llama_cpp.llama_log_callback
    def drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    llama_cpp.llama_log_set(drop, ctypes.c_void_p(0))
    return drop


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Linux: the `amx_tile` flag in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return any(line.startswith("flags") and " amx_tile" in line for line in fh)
    except OSError:
        return False


@functools.cache
def no_amx_repack() -> None:
    """Load every later llama.cpp model without its extra weight buffers on an AMX CPU (else: no-op).

    llama.cpp's AMX kernels crash in `ggml_backend_amx_mul_mat` on quantized weights: a segfault
    at the first decode of SmolLM2 Q4_1, SIGILL on an embedding worker thread (Xeon with AMX;
    llama.cpp issue 20824, and PR 16315 found them computing wrong results). llama-cpp-python has
    no argument for `use_extra_bufts`, and there is no environment switch, so the default model
    parameters it reads are wrapped once, for the process. Call it before loading any model.
    """
    import llama_cpp.llama_cpp as lc

    if not cpu_has_amx():
        return
    default = lc.llama_model_default_params

    def params():
        out = default()
        out.use_extra_bufts = False
        return out

    lc.llama_model_default_params = params


class LlamaBackend:
    """A GGUF model loaded with llama-cpp-python, one sequence, KV state tracked token by token."""

    runtime = "llama.cpp"

    def __init__(self, path: Path, settings: LoadSettings | None = None):
        self.path = Path(path)
        self.settings = settings = settings or LoadSettings()
        check_gguf(self.path)
        from llama_cpp import Llama

        _silence_llama_logs()
        try:
            no_amx_repack()
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=settings.n_ctx,
                n_batch=settings.batch,
                n_ubatch=settings.batch,
                n_threads=settings.threads,
                n_threads_batch=settings.threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError):
            info = gguf_info(self.path)
            raise ModelError(
                f"llama.cpp cannot load {self.path.name}: its architecture {info['arch']!r} is "
                "not supported by this llama.cpp build, or the file is damaged."
            ) from None
        self._tokens: list[int] = []
        self._logits: npt.NDArray[np.float32] | None = None
        self._adapters: list[tuple[Adapter, ctypes.c_void_p]] = []  # with llama.cpp's handle

    # ----- identity ------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    @property
    def arch(self) -> str:
        return self._llm.metadata.get("general.architecture", "unknown")

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        return tuple(a for a, _ in self._adapters)

    def sampling_hints(self) -> dict:
        """Sampling recommended in the GGUF's own metadata (`general.sampling.*`), as Sampling fields."""
        from memos_desktop.runtime.base import GGUF_SAMPLING

        hints = {}
        for key, name in GGUF_SAMPLING.items():
            try:
                value = float(self._llm.metadata[key])
            except (KeyError, ValueError):
                continue
            hints[name] = int(value) if name in ("top_k", "penalty_last_n") else value
        return hints

    def runtime_version(self) -> str:
        import llama_cpp

        return f"llama-cpp-python {llama_cpp.__version__}"

    def kv_dtype(self) -> str:
        return "f16"

    # ----- text ----------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"The model {self.path.name} has no chat template in its metadata.")
        formatter = Jinja2ChatFormatter(
            template,
            eos_token=self._piece(self._llm.token_eos()),
            bos_token=self._piece(self._llm.token_bos()),
            add_generation_prompt=add_generation_prompt,
        )
        # our messages are {"role", "content"} dicts, the shape llama.cpp's message types describe
        return formatter(messages=cast("list[ChatCompletionRequestMessage]", list(messages))).prompt

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    # ----- KV cache ------------------------------------------------------------------------
    def cached_tokens(self) -> list[int]:
        return list(self._tokens)

    def reset(self) -> None:
        """Empty the KV cache."""
        self._trim(0)

    def _trim(self, keep: int) -> None:
        if keep < len(self._tokens):
            del self._tokens[keep:]
            self._llm.n_tokens = keep
            self._llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            self._logits = None

    def _eval(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> None:
        import llama_cpp
        import numpy as np

        for start in range(0, len(tokens), self.settings.batch):
            if cancel is not None and cancel.is_set():
                return
            chunk = list(tokens[start : start + self.settings.batch])
            try:
                self._llm.eval(chunk)
            except RuntimeError as exc:
                raise ModelError(f"llama.cpp failed to evaluate the prompt: {exc}") from None
            self._tokens.extend(chunk)
            ptr = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
            self._logits = np.ctypeslib.as_array(ptr, shape=(self._llm.n_vocab(),)).copy()

    def prefill(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> None:
        check_fits(len(tokens), self.n_ctx)
        self._trim(common_prefix(self._tokens, tokens))
        self._eval(tokens[len(self._tokens) :], cancel)

    def save_state(self) -> bytes:
        """The KV cache of sequence 0 (the evaluated tokens), without logits."""
        import llama_cpp

        ctx = self._llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if written == 0 and self._tokens:
            raise ModelError("llama.cpp could not save the activation state.")
        return bytes(buf)[:written]

    def load_state(self, data: bytes | memoryview, tokens: Sequence[int]) -> None:
        import llama_cpp

        check_fits(len(tokens), self.n_ctx)
        self._trim(0)
        if isinstance(data, bytes):  # the bytes' own memory, read in place: no copy
            ptr = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8 * len(data))).contents
        else:  # a writable view (a scratch buffer): no copy
            ptr = (ctypes.c_uint8 * len(data)).from_buffer(data)
        read = llama_cpp.llama_state_seq_set_data(self._llm._ctx.ctx, ptr, len(data), 0)
        del ptr
        positions = llama_cpp.llama_memory_seq_pos_max(llama_cpp.llama_get_memory(self._llm._ctx.ctx), 0)
        if read == 0 or positions + 1 != len(tokens):
            self._llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            raise ModelError("The saved activation state does not fit this model; it was not loaded.")
        self._tokens = list(tokens)
        self._llm.n_tokens = len(tokens)
        self._llm.input_ids[: len(tokens)] = tokens

    # ----- generation ----------------------------------------------------------------------
    def generate_tokens(
        self, tokens: Sequence[int], sampling: Sampling, cancel: threading.Event | None = None
    ) -> Iterator[int]:
        import llama_cpp

        vocab = self._llm._model.vocab
        return generate_cached(self, tokens, sampling, cancel, lambda t: llama_cpp.llama_vocab_is_eog(vocab, t))

    def generate_json(
        self, tokens: Sequence[int], schema: dict, max_tokens: int, cancel: threading.Event | None = None
    ) -> str:
        """Greedy text after `tokens` that llama.cpp's grammar sampler holds to `schema` (through
        the GBNF grammar llama-cpp-python derives from it, with strict JSON strings): every token
        keeps the output a prefix of a document the schema allows, so only `max_tokens` running
        out (or `cancel`) can leave it unfinished. The cached prefix is reused as in
        `generate_tokens`."""
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        check_fits(len(tokens), self.n_ctx)
        try:
            rules = json_schema_to_gbnf(json.dumps(schema)).splitlines()
            grammar = LlamaGrammar.from_string(
                "\n".join(STRICT_CHAR if rule.startswith("char ::=") else rule for rule in rules), verbose=False
            )
        except Exception as exc:
            raise ModelError(f"llama.cpp cannot turn this JSON schema into a grammar: {exc}") from None
        self._logits = None  # llama-cpp-python evaluates and samples itself from here on
        pieces = []
        try:
            stream = self._llm.create_completion(
                prompt=list(tokens), max_tokens=max_tokens, temperature=0.0, grammar=grammar, stream=True
            )
            for chunk in cast("Iterator[CreateCompletionStreamResponse]", stream):  # stream=True: the chunks
                pieces.append(chunk["choices"][0]["text"])
                if cancel is not None and cancel.is_set():
                    break
        except RuntimeError as exc:
            raise ModelError(f"llama.cpp failed while writing JSON: {exc}") from None
        finally:
            self._tokens = [int(t) for t in self._llm.input_ids[: self._llm.n_tokens]]
        return "".join(pieces)

    # ----- adapters ------------------------------------------------------------------------
    def load_adapter(self, path: Path, scale: float = 1.0) -> None:
        """Add a GGUF LoRA adapter at `scale`; the KV cache is dropped (it no longer applies)."""
        import llama_cpp

        path = Path(path)
        check_gguf(path)
        handle = llama_cpp.llama_adapter_lora_init(self._llm._model.model, str(path).encode())
        if not handle:
            raise ModelError(f"The adapter {path.name} does not fit this model.")
        self._adapters.append((Adapter(str(path), file_digest(path), scale), handle))
        self._apply_adapters()

    def unload_adapters(self) -> None:
        import llama_cpp

        handles = [h for _, h in self._adapters]
        self._adapters = []
        self._apply_adapters()
        for handle in handles:
            llama_cpp.llama_adapter_lora_free(handle)

    def _apply_adapters(self) -> None:
        import llama_cpp

        n = len(self._adapters)
        # llama-cpp-python types this array's items as pointers to the handles; ctypes takes the handles
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*(h for _, h in self._adapters))  # type: ignore[misc]
        scales = (ctypes.c_float * n)(*(a.scale for a, _ in self._adapters))
        if llama_cpp.llama_set_adapters_lora(self._llm._ctx.ctx, handles, n, scales) != 0:
            raise ModelError("llama.cpp could not apply the LoRA adapters.")
        self._trim(0)

    def close(self) -> None:
        if self._adapters:
            self.unload_adapters()
        self._llm.close()
        self._tokens = []
        self._logits = None
