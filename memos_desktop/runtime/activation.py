"""Activation memory: saved KV states of prompt prefixes, sealed in the vault, reused across runs.

Owns the tier the MemOS paper calls activation memory. After a prefix (system prompt + pinned
memories) is prefilled, the backend's KV state is sealed into the vault's blob store (AEAD, with
the model fingerprint and the exact token-prefix hash as associated data) and registered as an
`activation` MemCube linked `built_from` each plaintext cube it was computed from, so editing or
forgetting one of those cubes archives the state. Lookups restore the longest saved prefix of the
requested tokens for the same fingerprint (model bytes, adapters and scales, context size, KV
dtype, runtime version); a state that fails to open or to load is discarded and recomputed. Restores
reuse one pair of buffers (no fresh page-faulted allocation per restore). A size
budget evicts the least recently used states. Token lists are never stored, only their hashes.
"""

import hashlib
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from memos_desktop.errors import CorruptVault, ModelError, NotFound
from memos_desktop.runtime.base import LLMBackend, common_prefix, fingerprint
from memos_desktop.vault.blobs import Scratch
from memos_desktop.vault.cube import MemCube

DEFAULT_BUDGET = 2 * 1024**3
BUDGET_SETTING = "activation_budget_bytes"
ACTOR = "activation"


def prefix_hash(tokens: Sequence[int]) -> str:
    """SHA-256 of a token sequence (int32 little-endian)."""
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()


@dataclass(frozen=True)
class PreparedPrefix:
    """What `ActivationMemory.prepare` did: tokens restored from a saved state, tokens computed."""

    cube_id: str | None
    restored_tokens: int
    computed_tokens: int
    saved: bool


class ActivationMemory:
    """The activation tier of one vault: find, restore, save, evict and discard KV states."""

    def __init__(self, vault, budget_bytes: int | None = None, profile: str = "default"):
        """`budget_bytes` defaults to the vault's `activation_budget_bytes` setting (else 2 GiB)."""
        self.vault = vault
        self.budget_bytes = budget_bytes or int(vault.get_setting(BUDGET_SETTING, DEFAULT_BUDGET))
        self.profile = profile
        self._scratch = Scratch()

    # ----- lookups -------------------------------------------------------------------------
    def states(self, fp: str | None = None) -> list[MemCube]:
        """Active activation cubes (of one model fingerprint if given), most recently used first."""
        cubes = self.vault.cubes(profile=self.profile, kind="activation", limit=1_000_000)
        if fp is not None:
            cubes = [c for c in cubes if c.meta.get("fingerprint") == fp]
        return sorted(cubes, key=_last_used, reverse=True)

    def longest(self, fp: str, tokens: Sequence[int]) -> MemCube | None:
        """The saved state with the longest token prefix of `tokens` for this fingerprint."""
        best = None
        for cube in self.states(fp):
            n = int(cube.meta.get("n_tokens", 0))
            longer = best is None or n > best.meta["n_tokens"]
            if 0 < n <= len(tokens) and longer and prefix_hash(tokens[:n]) == cube.meta.get("prefix_hash"):
                best = cube
        return best

    # ----- the one entry point -------------------------------------------------------------
    def prepare(
        self,
        backend: LLMBackend,
        prefix: Sequence[int],
        sources: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> PreparedPrefix:
        """Make `backend`'s KV cache hold `prefix`: restore what was saved, compute the rest, save.

        A prefix already in the KV cache is saved as it is (the cache is trimmed to it) unless a
        state for exactly it exists.

        `sources` are the ids of the plaintext cubes the prefix was built from; a new state is
        linked `built_from` each of them.
        """
        prefix = list(prefix)
        self._sweep()
        if not prefix:
            return PreparedPrefix(None, 0, 0, False)
        fp = fingerprint(backend)
        hit = self.longest(fp, prefix)
        if backend.cached_tokens()[: len(prefix)] == prefix:
            if hit is not None and hit.meta["n_tokens"] == len(prefix):
                return PreparedPrefix(None, 0, 0, False)
            backend.prefill(prefix)
            cube = self._save(backend, fp, prefix, sources)
            return PreparedPrefix(cube.id if cube else None, 0, 0, cube is not None)
        restored = 0
        if hit is not None and hit.meta["n_tokens"] > common_prefix(backend.cached_tokens(), prefix):
            restored = self._restore(backend, hit, prefix)
        reused = common_prefix(backend.cached_tokens(), prefix)
        backend.prefill(prefix, cancel)
        computed = common_prefix(backend.cached_tokens(), prefix) - reused
        hit_id = hit.id if restored and hit is not None else None
        if reused + computed < len(prefix) or restored == len(prefix):
            return PreparedPrefix(hit_id, restored, computed, False)
        cube = self._save(backend, fp, prefix, sources)
        return PreparedPrefix(cube.id if cube else hit_id, restored, computed, cube is not None)

    # ----- internals -----------------------------------------------------------------------
    def _restore(self, backend: LLMBackend, cube: MemCube, prefix: Sequence[int]) -> int:
        n = int(cube.meta["n_tokens"])
        try:
            context = _context(cube.meta["fingerprint"], cube.meta["prefix_hash"])
            data = self.vault.blobs.get(cube.payload_ref, context, scratch=self._scratch)
            backend.load_state(data, prefix[:n])
        except (CorruptVault, NotFound, ModelError):
            self.discard(cube, "unreadable")
            return 0
        self.vault.touch([cube.id])
        return n

    def _save(self, backend: LLMBackend, fp: str, prefix: Sequence[int], sources: Sequence[str]) -> MemCube | None:
        data = backend.save_state()
        if len(data) > self.budget_bytes:
            return None
        digest = prefix_hash(prefix)
        meta = {
            "fingerprint": fp,
            "prefix_hash": digest,
            "n_tokens": len(prefix),
            "bytes": len(data),
            "runtime": backend.runtime,
            "runtime_version": backend.runtime_version(),
            "model": backend.path.name,
            "n_ctx": backend.n_ctx,
            "kv_dtype": backend.kv_dtype(),
            "adapters": [{"digest": a.digest, "scale": a.scale} for a in backend.adapters],
            "sources": list(sources),
        }
        from ulid import ULID

        cube_id = str(ULID())
        blob = f"activation-{cube_id}"
        self.vault.blobs.put(blob, data, _context(fp, digest))
        cube = self.vault.add(
            f"KV state of a {len(prefix)}-token prefix for {backend.path.name} ({backend.runtime})",
            kind="activation",
            title=f"activation {len(prefix)} tokens",
            meta=meta,
            profile=self.profile,
            payload_ref=blob,
            actor=ACTOR,
            id=cube_id,
        )
        for source in sources:
            self.vault.link(cube.id, source, "built_from")
        self.vault.touch([cube.id])
        self._evict(keep=cube.id)
        return cube

    def discard(self, cube: MemCube, reason: str) -> None:
        """Delete a state's sealed blob and tombstone its cube."""
        if cube.payload_ref:
            self.vault.blobs.delete(cube.payload_ref)
        self.vault.forget(cube.id, profile=self.profile, actor=ACTOR)
        self.vault.audit("activation_discard", cube.id, ACTOR, {"reason": reason})

    def _evict(self, keep: str) -> None:
        states = self.states()
        total = sum(int(c.meta.get("bytes", 0)) for c in states)
        for cube in reversed(states):
            if total <= self.budget_bytes:
                break
            if cube.id != keep:
                total -= int(cube.meta.get("bytes", 0))
                self.discard(cube, "evicted")

    def _sweep(self) -> None:
        """Delete the blobs of states the vault archived (a source cube changed)."""
        for state in ("archived", "deleted"):
            for cube in self.vault.cubes(profile=self.profile, kind="activation", state=state, limit=1_000_000):
                if cube.payload_ref and self.vault.blobs.size(cube.payload_ref):
                    self.vault.blobs.delete(cube.payload_ref)

    def usage(self) -> dict:
        """How many states are saved and how many bytes they take, against the budget."""
        states = self.states()
        return {
            "states": len(states),
            "bytes": sum(int(c.meta.get("bytes", 0)) for c in states),
            "budget_bytes": self.budget_bytes,
        }


def _context(fp: str, digest: str) -> bytes:
    return f"activation\0{fp}\0{digest}".encode()


def _last_used(cube: MemCube) -> float:
    return cube.last_accessed_at or cube.created_at
