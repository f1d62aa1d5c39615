"""Which embedder a vault uses, and whether it works.

The vault setting "embedder" (or `$MEMOS_EMBEDDER`) chooses: absent or "minilm" is the packaged all-MiniLM-L6-v2,
"none" turns embeddings off, anything else is the path of a GGUF embedding model. When the chosen
embedder cannot run (package, file or llama-cpp-python missing), the vault gets None and the
reason, so search says it is keyword-only instead of failing. Embedders are built once per
process and load their model on first use. This module never converts or loads a model itself,
except in `check`, which exists to prove the embedder works.
"""

import atexit
import importlib.resources
import importlib.util
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from memos_desktop.embed import Embedder
from memos_desktop.errors import EmbedderError

if TYPE_CHECKING:
    from memos_desktop.vault import Vault

SETTING = "embedder"
DEFAULT = "minilm"
OFF = "none"
REFERENCE_COSINE = 0.9999

_built: dict[str, tuple[Embedder | None, str]] = {}


def embedder_status(vault: "Vault") -> tuple[Embedder | None, str]:
    """The vault's configured embedder (None when it cannot run) and a one-line status for the
    user: what embeds, or why search is keyword-only. `$MEMOS_EMBEDDER` overrides the setting."""
    return status_for(os.environ.get("MEMOS_EMBEDDER") or vault.get_setting(SETTING))


def embedder_for(vault: "Vault") -> Embedder | None:
    """The vault's configured embedder, or None when embeddings are off or cannot run."""
    return embedder_status(vault)[0]


def status_for(choice: str | None) -> tuple[Embedder | None, str]:
    """`embedder_status` for a setting value; built once per process for each value."""
    key = str(choice).strip() if choice else DEFAULT
    if key not in _built:
        if not _built:
            atexit.register(_close_all)
        _built[key] = _build(key)
    return _built[key]


def _close_all() -> None:
    """Free the cached models before interpreter shutdown, when llama.cpp can no longer free them."""
    for embedder, _ in _built.values():
        close = getattr(embedder, "close", None)
        if close is not None:
            close()


def _build(choice: str) -> tuple[Embedder | None, str]:
    if choice.lower() == OFF:
        return None, "search is keyword-only because embeddings are turned off (embedder = none)"
    if importlib.util.find_spec("llama_cpp") is None:
        return None, "search is keyword-only because llama-cpp-python is not installed"
    try:
        if choice.lower() == DEFAULT:
            from memos_desktop.embed.minilm import NAME, MiniLM

            return MiniLM(), f"meaning search uses {NAME}"
        from memos_desktop.embed.llamacpp import LlamaCppEmbedder

        embedder = LlamaCppEmbedder(choice)
        return embedder, f"meaning search uses {embedder.path.name}"
    except EmbedderError as exc:
        return None, f"search is keyword-only because {_clause(str(exc))}"


def _clause(sentence: str) -> str:
    """'The model is missing.' -> 'the model is missing', to follow 'because'."""
    sentence = sentence.rstrip(".")
    return sentence[:1].lower() + sentence[1:]


def check(embedder: Embedder | None = None) -> list[tuple[str, bool, str]]:
    """`doctor` checks (name, ok, detail): the embedder (default: the packaged MiniLM) loads and
    embeds; for MiniLM, its vectors and token ids match sentence-transformers' reference."""
    if embedder is None:
        embedder, status = status_for(DEFAULT)
        if embedder is None:
            return [("embedder", False, status)]
    from memos_desktop.embed.minilm import NAME

    reference = _reference()
    try:
        vectors = embedder.embed([r["text"] for r in reference])
    except EmbedderError as exc:
        return [("embedder", False, str(exc))]
    ok_shape = vectors.shape == (len(reference), embedder.dim) and bool(
        np.all(np.isfinite(vectors)) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    )
    results = [
        (
            "embedder",
            ok_shape,
            f"{embedder.model_id} embeds {embedder.dim}-dim unit vectors"
            if ok_shape
            else f"{embedder.model_id} returned malformed vectors {vectors.shape}",
        )
    ]
    tokens = getattr(embedder, "tokens", None)
    if ok_shape and tokens is not None and embedder.model_id.startswith(f"{NAME}@"):
        expected = np.array([r["embedding"] for r in reference], dtype=np.float64)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        cosine = float(np.min(np.sum(expected * vectors, axis=1)))
        same_ids = all(tokens(r["text"]) == r["input_ids"] for r in reference)
        ok = cosine >= REFERENCE_COSINE and same_ids
        detail = f"min cosine {cosine:.6f} to the sentence-transformers reference" + (
            "" if same_ids else ", but token ids differ"
        )
        results.append(("embedder reference", ok, detail))
    return results


def _reference() -> list[dict]:
    text = (
        importlib.resources.files("memos_desktop").joinpath("assets/minilm-reference.json").read_text(encoding="utf-8")
    )
    return json.loads(text)["vectors"]
