"""Parameter memory: LoRA adapters registered as `parameter` MemCubes, sealed at rest, loadable.

Owns the adapter registry of one vault. Each adapter is a cube (kind "parameter") whose meta holds
its provenance — the facts and versions it was distilled from, the base model's fingerprints (the
MLX directory it was trained on and the GGUF it was exported for), hyper-parameters, training
and evaluation metrics — and whether it is enabled. Its files (the MLX adapter directory and the
GGUF LoRA) are sealed blobs named by cube version, so rolling the cube back brings the earlier
weights back. Links `distilled_from` point from the adapter to each fact.

Rules: at most one enabled adapter per base model; a change is checked (files open, fit the base
model) before it is made, so a failure leaves the previous adapter state active; an adapter is
only ever applied to the base model it was trained for. Editing or forgetting a distilled fact
does not archive the adapter (that is the activation-memory rule), but the adapter then holds
knowledge the vault no longer has: it is *stale*, and a stale adapter is disabled the next time
adapters are applied (recorded in the audit log) until it is retrained or removed. Plaintext
exists only while an adapter is being loaded, in a private RAM directory when the OS has one.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memos_desktop.errors import CorruptVault, NotFound, TrainingError
from memos_desktop.training.export import ram_dir
from memos_desktop.vault import MemCube, Vault

ACTOR = "training"
REL = "distilled_from"
MLX_FILES = ("adapter_config.json", "adapters.safetensors")
GGUF_FILE = "adapter.gguf"
_PARTS = {"adapter_config.json": "mlx-config", "adapters.safetensors": "mlx-weights", GGUF_FILE: "gguf"}


def _context(cube_id: str) -> bytes:
    return f"adapter\0{cube_id}".encode()


class Adapters:
    """The adapters of one vault (one profile)."""

    def __init__(self, vault: Vault, profile: str = "default"):
        self.vault = vault
        self.profile = profile

    # ----- reads ---------------------------------------------------------------------------
    def cubes(self, state: str = "active") -> list[MemCube]:
        return self.vault.cubes(profile=self.profile, kind="parameter", state=state, limit=10_000)

    def get(self, adapter_id: str, include_inactive: bool = False) -> MemCube:
        cube = self.vault.get(adapter_id, profile=self.profile, touch=False, include_inactive=include_inactive)
        if cube.kind != "parameter":
            raise NotFound(f"No adapter with id {adapter_id}.")
        return cube

    def find(self, name: str, base_digest: str) -> MemCube | None:
        """The active adapter called `name` for this base model, if any (retraining versions it)."""
        for cube in self.cubes():
            if cube.title == name and cube.meta.get("base", {}).get("mlx", {}).get("digest") == base_digest:
                return cube
        return None

    def stale_sources(self, cube: MemCube) -> list[str]:
        """Ids of the facts this adapter was distilled from that changed or are gone since."""
        stale = []
        for src in cube.meta.get("sources", []):
            row = self.vault.state_of(src["id"])
            if row is None or row[0] != "active" or row[1] != src["content_hash"]:
                stale.append(src["id"])
        return stale

    def distilled_into(self, fact_id: str) -> list[str]:
        """Ids of the active adapters a fact was distilled into (the fact stays plaintext memory)."""
        ids = [link["src"] for link in self.vault.links(fact_id) if link["rel"] == REL and link["dst"] == fact_id]
        active = {c.id for c in self.cubes()}
        return [i for i in ids if i in active]

    def files(self, cube: MemCube, fmt: str) -> dict[str, bytes]:
        """The decrypted, validated files of an adapter in `fmt` ("mlx" or "gguf")."""
        from memos_desktop.training import export

        names = MLX_FILES if fmt == "mlx" else (GGUF_FILE,)
        if fmt == "gguf" and not cube.meta.get("base", {}).get("gguf"):
            raise TrainingError(f"Adapter {cube.id} was not exported for llama.cpp; train it with a GGUF base model.")
        out: dict[str, bytes] = {}
        for name in names:
            try:
                out[name] = bytes(self.vault.blobs.get(f"{cube.payload_ref}.{_PARTS[name]}", _context(cube.id)))
            except (CorruptVault, NotFound):
                raise TrainingError(
                    f"The files of adapter {cube.id} (version {cube.version}) are missing or damaged; "
                    "roll it back or train it again."
                ) from None
        if fmt == "mlx":
            export.mlx_weights(out)
        else:
            _check_gguf_adapter(out[GGUF_FILE], cube.id)
        return out

    # ----- writes --------------------------------------------------------------------------
    def save(self, *, name: str, files: dict[str, bytes], meta: dict, content: str, sources: list[str]) -> MemCube:
        """Store adapter files and register them: a new cube, or a new version of `name` on the same base.

        Files are sealed before the cube is written; a failure (e.g. a full disk) removes what
        was written and changes nothing else.
        """
        from ulid import ULID

        existing = self.find(name, meta["base"]["mlx"]["digest"])
        cube_id = existing.id if existing else str(ULID())
        version = existing.version + 1 if existing else 1
        prefix = f"adapter-{cube_id}-v{version}"
        meta = {**meta, "enabled": bool(existing and existing.meta.get("enabled"))}
        written = []
        try:
            for fname, data in files.items():
                blob = f"{prefix}.{_PARTS[fname]}"
                written.append(blob)
                self.vault.blobs.put(blob, data, _context(cube_id))
        except OSError as exc:
            for blob in written:
                self.vault.blobs.delete(blob)
            raise TrainingError(
                f"The adapter could not be saved ({exc.strerror or exc}); nothing was changed."
            ) from None
        if existing:
            cube = self.vault.edit(
                cube_id, profile=self.profile, actor=ACTOR, op="retrain", content=content, payload_ref=prefix, meta=meta
            )
        else:
            cube = self.vault.add(
                content,
                kind="parameter",
                title=name,
                tags=["adapter"],
                meta=meta,
                profile=self.profile,
                payload_ref=prefix,
                actor=ACTOR,
                id=cube_id,
            )
        for fact_id in sources:
            self.vault.link(cube.id, fact_id, REL)
        return cube

    def enable(self, adapter_id: str) -> MemCube:
        """Enable an adapter (its files are checked first) and disable others for the same base model."""
        cube = self.get(adapter_id)
        stale = self.stale_sources(cube)
        if stale:
            raise TrainingError(
                f"Adapter {adapter_id} was distilled from {len(stale)} memories that changed or were forgotten "
                f"since (e.g. {stale[0]}); train it again."
            )
        self.files(cube, "mlx")
        if cube.meta.get("base", {}).get("gguf"):
            self.files(cube, "gguf")
        base = cube.meta["base"]["mlx"]["digest"]
        for other in self.cubes():
            if other.id != cube.id and other.meta.get("enabled") and other.meta["base"]["mlx"]["digest"] == base:
                self._set_enabled(other, False, f"replaced by {cube.id}")
        return self._set_enabled(cube, True, "")

    def disable(self, adapter_id: str, reason: str = "") -> MemCube:
        return self._set_enabled(self.get(adapter_id), False, reason)

    def _set_enabled(self, cube: MemCube, on: bool, reason: str) -> MemCube:
        if bool(cube.meta.get("enabled")) == on:
            return cube
        meta = {**cube.meta, "enabled": on}
        meta.pop("disabled_reason", None)
        if reason and not on:
            meta["disabled_reason"] = reason
        return self.vault.edit(cube.id, profile=self.profile, actor=ACTOR, op="enable" if on else "disable", meta=meta)

    def rollback(self, adapter_id: str, version: int) -> MemCube:
        """Make an earlier version's weights and provenance current; the enabled flag is kept."""
        cube = self.get(adapter_id)
        snap = self.vault.version(adapter_id, version, profile=self.profile)
        old = MemCube(**snap)
        self.files(old, "mlx")
        if cube.meta.get("enabled") and old.meta.get("base", {}).get("gguf"):
            self.files(old, "gguf")
        meta = {**old.meta, "enabled": bool(cube.meta.get("enabled"))}
        return self.vault.edit(
            adapter_id,
            profile=self.profile,
            actor=ACTOR,
            op="rollback",
            content=old.content,
            payload_ref=old.payload_ref,
            meta=meta,
        )

    def remove(self, adapter_id: str) -> MemCube:
        """Delete every version's weights and tombstone the cube (its history and provenance stay)."""
        cube = self.get(adapter_id)
        prefix = f"adapter-{cube.id}-"
        for name in self.vault.blobs.names():
            if name.startswith(prefix):
                self.vault.blobs.delete(name)
        return self.vault.forget(cube.id, profile=self.profile, actor=ACTOR)

    # ----- loading into a runtime ----------------------------------------------------------
    def enabled_for(self, model_digest: str, fmt: str) -> MemCube | None:
        """The enabled adapter trained for (fmt "mlx") or exported for (fmt "gguf") this model file.

        A stale one (a source fact changed) is disabled here, with the reason in its meta.
        """
        for cube in self.cubes():
            base = cube.meta.get("base", {}).get(fmt) or {}
            if not cube.meta.get("enabled") or base.get("digest") != model_digest:
                continue
            stale = self.stale_sources(cube)
            if stale:
                self._set_enabled(cube, False, f"source memory {stale[0]} changed or was forgotten")
                continue
            return cube
        return None

    @contextlib.contextmanager
    def materialized(self, cube: MemCube, fmt: str) -> Iterator[Path]:
        """The adapter as a plaintext path (MLX directory or GGUF file) for the duration of a load."""
        files = self.files(cube, fmt)
        directory = Path(tempfile.mkdtemp(prefix="memos-adapter-", dir=ram_dir()))
        try:
            os.chmod(directory, 0o700)
            for name, data in files.items():
                (directory / name).write_bytes(data)
            yield directory if fmt == "mlx" else directory / GGUF_FILE
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def apply(self, backend, adapter_id: str | None = None) -> MemCube | None:
        """Make `backend` run with its enabled adapter (or `adapter_id`), or with none.

        The adapter's files are decrypted and checked before the backend's current adapter is
        unloaded, so a damaged adapter leaves the backend as it was. Returns the applied cube.
        """
        from memos_desktop.runtime.base import file_digest

        fmt = "mlx" if backend.runtime == "mlx" else "gguf"
        if adapter_id is None and not any(c.meta.get("enabled") for c in self.cubes()):
            cube = None  # nothing enabled: no need to fingerprint the model file
        elif adapter_id is None:
            cube = self.enabled_for(file_digest(backend.path), fmt)
        else:
            cube = self.get(adapter_id)
            base = cube.meta.get("base", {}).get(fmt) or {}
            if base.get("digest") != file_digest(backend.path):
                raise TrainingError(
                    f"Adapter {adapter_id} was built for another base model ({base.get('name', 'unknown')}), "
                    f"not {backend.path.name}; it cannot be used with it."
                )
        if cube is None:
            if backend.adapters:
                backend.unload_adapters()
            return None
        with self.materialized(cube, fmt) as path:
            if backend.adapters:
                backend.unload_adapters()
            backend.load_adapter(path, 1.0)
        return cube


def _check_gguf_adapter(data: bytes, cube_id: str) -> None:
    """Raise TrainingError unless `data` starts like a GGUF LoRA adapter (magic and type keys).

    The seal already proves the bytes are the ones that were stored; this catches a file that
    was stored broken, before llama.cpp is asked to load it.
    """
    head = data[:4096]
    if not (head.startswith(b"GGUF") and b"adapter.type" in head and b"lora" in head):
        raise TrainingError(f"The llama.cpp file of adapter {cube_id} is damaged; roll it back or train it again.")
