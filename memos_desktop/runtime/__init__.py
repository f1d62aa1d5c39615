"""Local language-model runtimes (infrastructure layer): llama.cpp for GGUF files, MLX for MLX dirs.

`load_backend` picks the runtime from what the path is (a GGUF file or a model directory) and
returns an `LLMBackend`. Importing this package imports no runtime library.
"""

from pathlib import Path

from memos_desktop.errors import ModelError
from memos_desktop.runtime.base import LLMBackend, LoadSettings, Sampling

__all__ = ["LLMBackend", "LoadSettings", "Sampling", "load_backend", "runtime_for"]


def runtime_for(path: Path) -> str:
    """ "llama.cpp" for a GGUF file, "mlx" for a model directory; ModelError otherwise."""
    path = Path(path)
    if path.is_dir():
        return "mlx"
    if path.is_file():
        return "llama.cpp"
    raise ModelError(f"No model at {path}.")


def load_backend(path: Path, settings: LoadSettings | None = None) -> LLMBackend:
    """Load the model at `path` with the runtime that reads it."""
    settings = settings or LoadSettings()
    if runtime_for(path) == "mlx":
        from memos_desktop.runtime.mlx_backend import MLXBackend

        return MLXBackend(path, settings)
    from memos_desktop.runtime.llama_backend import LlamaBackend

    return LlamaBackend(path, settings)
