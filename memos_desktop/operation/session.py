"""A session: one unlocked vault, its embedder and (once asked for) its model, shared by every
interface (CLI command, TUI, MCP server) for as long as it runs.

Owns opening (or creating) the vault with the configured embedder, loading the default model with
its enabled adapter once, and `access()`: the one lock under which a thread uses the vault, so a
worker's transaction and another thread's reads never interleave on the one connection. It never
prints or draws; interfaces show its errors (`MemosError`) as one line.
"""

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.errors import MemosError
from memos_desktop.vault import Vault

if TYPE_CHECKING:
    import numpy as np

    from memos_desktop.embed import Embedder
    from memos_desktop.runtime.base import LLMBackend


class Session:
    """An unlocked vault in `data_dir` plus what is loaded for it; close it when done."""

    def __init__(self, data_dir: Path, vault: Vault, embedder_notice: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.vault = vault
        self.embedder_notice = embedder_notice
        self.llm: LLMBackend | None = None
        self.model_name: str | None = None
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, data_dir: Path, passphrase: str, *, embedder: bool = True, create: bool = False, shared: bool = False
    ) -> "Session":
        """Unlock (or, with `create`, create) the vault in `data_dir`, with the configured embedder
        when `embedder` (else keyword-only). `shared`: the embedder will be used from several
        threads (one call at a time)."""
        from memos_desktop.runtime.models import ensure_starter

        vault = (Vault.create if create else Vault.open)(Path(data_dir), passphrase)
        ensure_starter(vault)  # first run: the offline demo model, once
        notice = None
        if embedder:
            from memos_desktop.embed.config import embedder_status

            found, notice = embedder_status(vault)
            vault.embedder = SharedEmbedder(found) if shared and found is not None else found
        return cls(data_dir, vault, notice)

    @contextlib.contextmanager
    def access(self) -> Iterator[Vault]:
        """The vault, held for this thread until the block ends (re-entrant)."""
        with self._lock:
            yield self.vault

    def load_model(self, name: str | None = None) -> "LLMBackend":
        """Load the named (or default) model with its enabled LoRA adapter (parameter memory) and
        keep it for this session; the previous one is closed. Raises ModelError when none is set."""
        from memos_desktop.runtime.models import get_model, load_model
        from memos_desktop.training.adapters import Adapters

        with self.access() as vault:
            entry = get_model(vault, name)
        backend = load_model(self.vault, entry["name"])
        try:
            with self.access() as vault:
                Adapters(vault).apply(backend)
        except MemosError:
            backend.close()
            raise
        self.close_model()
        self.llm, self.model_name = backend, entry["name"]
        return backend

    def close_model(self) -> None:
        llm, self.llm, self.model_name = self.llm, None, None
        if llm is not None:
            llm.close()

    def close(self) -> None:
        """Free the model and close the vault (a clean exit checkpoints its WAL)."""
        self.close_model()
        with self._lock:
            self.vault.close()


class SharedEmbedder:
    """One embedder used by several threads' vault connections, one call at a time (a llama.cpp
    context must not run two batches at once)."""

    def __init__(self, embedder: "Embedder") -> None:
        self._embedder = embedder
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()
        self.model_id = embedder.model_id
        self.dim = embedder.dim

    def embed(self, texts: Sequence[str]) -> "np.ndarray":
        with self._lock:
            return self._embedder.embed(texts)

    def embed_query(self, texts: Sequence[str]) -> "np.ndarray":
        """Search queries' vectors by the model's own query path when it has one (MiniLM's Q8_0
        copy on one thread, its own llama.cpp context: a query does not wait behind a batch),
        else by `embed`. Without this, the MCP server embedded each query with the batch model."""
        embed_query = getattr(self._embedder, "embed_query", None)
        if embed_query is None:
            return self.embed(texts)
        with self._query_lock:
            result: np.ndarray = embed_query(texts)
            return result
