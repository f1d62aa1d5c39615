"""A session: one unlocked vault, its embedder and (once asked for) its model, shared by every
interface (CLI command, TUI, MCP server) for as long as it runs.

Owns opening (or creating) the vault with the configured embedder, loading the default model with
its enabled adapter once, and `access()`: the one lock under which a thread uses the vault, so a
worker's transaction and another thread's reads never interleave on the one connection. Records
of reads that a caller need not wait for (access counts, audit entries of an MCP call) are
`defer`red: in a session shared between threads (the MCP server's) a writer thread writes what is
pending in one transaction right after, and whoever takes the vault next writes it first if the
thread has not yet, so entries keep the order of the calls; `close()` writes what is left before
the vault closes. Elsewhere a deferred write is written at once. It never prints or draws; interfaces
show its errors (`MemosError`) as one line.
"""

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memos_desktop.errors import MemosError
from memos_desktop.vault import Vault

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np

    from memos_desktop.embed import Embedder
    from memos_desktop.runtime.base import LLMBackend


class Session:
    """An unlocked vault in `data_dir` plus what is loaded for it; close it when done."""

    def __init__(
        self, data_dir: Path, vault: Vault, embedder_notice: str | None = None, *, background_writes: bool = False
    ) -> None:
        """`background_writes`: `defer` hands writes to a writer thread (every use of the vault
        must then go through `access()`); else it writes at once."""
        self.data_dir = Path(data_dir)
        self.vault = vault
        self.embedder_notice = embedder_notice
        self.llm: LLMBackend | None = None
        self.model_name: str | None = None
        self._lock = threading.RLock()
        self._pending: list[Callable[[Vault], object]] = []  # deferred writes, oldest first
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._background = background_writes

    @classmethod
    def open(
        cls, data_dir: Path, passphrase: str, *, embedder: bool = True, create: bool = False, shared: bool = False
    ) -> "Session":
        """Unlock (or, with `create`, create) the vault in `data_dir`, with the configured embedder
        when `embedder` (else keyword-only). `shared`: the embedder will be used from several
        threads (one call at a time) and deferred writes are written by a writer thread."""
        from memos_desktop.runtime.models import ensure_starter

        vault = (Vault.create if create else Vault.open)(Path(data_dir), passphrase)
        ensure_starter(vault)  # first run: the offline demo model, once
        notice = None
        if embedder:
            from memos_desktop.embed.config import embedder_status

            found, notice = embedder_status(vault)
            vault.embedder = SharedEmbedder(found) if shared and found is not None else found
        return cls(data_dir, vault, notice, background_writes=shared)

    @contextlib.contextmanager
    def access(self) -> Iterator[Vault]:
        """The vault, held for this thread until the block ends (re-entrant); deferred writes
        still pending are written first."""
        with self._lock:
            if self._pending:
                self._write_pending()
            yield self.vault

    def defer(self, write: Callable[[Vault], object]) -> None:
        """Call `write(vault)` soon, in a transaction with the other pending writes, on the
        session's writer thread (or at the next `access()`, whichever comes first); at once
        without background writes."""
        if not self._background:
            with self.access() as vault, vault.transaction():
                write(vault)
            return
        with self._pending_lock:
            if self._closing:
                raise MemosError("The session is closed.")
            self._pending.append(write)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="memos-session-writer", daemon=True)
                self._writer.start()
        self._wake.set()

    def flush(self) -> None:
        """Write every deferred write now."""
        with self._lock:
            self._write_pending()

    def _write_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                self._write_pending()
            if self._closing:
                return

    def _write_pending(self) -> None:
        """Write the pending writes in one transaction (holding `_lock`, outside any transaction
        of the caller's: inside one they wait for the next access)."""
        if not self._pending or self.vault.in_transaction:
            return
        with self._pending_lock:
            writes, self._pending = self._pending, []
        if not writes:
            return
        try:
            with self.vault.transaction():
                for write in writes:
                    write(self.vault)
        except Exception:  # one bad write must not lose the others: each alone, failures logged
            for write in writes:
                try:
                    with self.vault.transaction():
                        write(self.vault)
                except Exception:
                    log.exception("a deferred vault write failed")

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
        """Write what was deferred, free the model and close the vault (a clean exit checkpoints
        its WAL)."""
        with self._pending_lock:
            self._closing = True
            writer = self._writer
        self._wake.set()
        if writer is not None:
            writer.join()
        self.close_model()
        with self._lock:
            self._write_pending()
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
