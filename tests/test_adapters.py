"""The adapter registry: sealed parameter cubes, enable/disable/rollback/rm, staleness, and loading
into both runtimes (llama.cpp and MLX) with activation memory kept per adapter setting.

Adapters here are real ones (a real MLX training run on the generated tiny model, exported to a
real GGUF LoRA) stored in a real encrypted vault.
"""

import subprocess

import numpy as np
import pytest

from memos_desktop.errors import TrainingError
from memos_desktop.runtime import load_backend
from memos_desktop.runtime import testmodels as tm
from memos_desktop.runtime.activation import ActivationMemory
from memos_desktop.runtime.base import Sampling, file_digest
from memos_desktop.training import export
from memos_desktop.training.adapters import GGUF_FILE, Adapters
from tests.training_support import CONFIG, fact_texts, trained


def store(vault, name: str = "people", offset: int = 0, facts: list | None = None):
    """Register the session's trained adapter (weights of run `offset`) for the tiny model."""
    facts = facts or [vault.add(t, tags=["people"]) for t in fact_texts(4, offset)]
    weights, evaluation, n_layers = trained(offset)
    files = export.mlx_adapter_files(weights, CONFIG, n_layers)
    files[GGUF_FILE] = export.gguf_adapter(weights, CONFIG, export.base_gguf_info(tm.tiny_gguf()))
    meta = {
        "base": {
            "mlx": {"name": tm.tiny_mlx().name, "digest": file_digest(tm.tiny_mlx())},
            "gguf": {"name": tm.tiny_gguf().name, "digest": file_digest(tm.tiny_gguf()), "arch": "llama"},
        },
        "config": CONFIG.to_dict(),
        "sources": [{"id": c.id, "version": c.version, "content_hash": c.content_hash} for c in facts],
        "metrics": {"evaluation": evaluation.to_dict()},
    }
    cube = Adapters(vault).save(
        name=name, files=files, meta=meta, content=f"adapter {name}", sources=[c.id for c in facts]
    )
    return cube, facts


def weights_of(vault, cube) -> dict:
    return export.mlx_weights(Adapters(vault).files(cube, "mlx"))[0]


def test_adapter_files_are_sealed_at_rest(vault):
    cube, _ = store(vault)
    blobs = [p for p in (vault.data_dir / "blobs").iterdir() if p.name.startswith(f"adapter-{cube.id}")]
    assert len(blobs) == 3
    for path in blobs:
        raw = path.read_bytes()
        assert b"lora_a" not in raw and b"GGUF" not in raw and b"lora_parameters" not in raw


def test_enabling_an_adapter_disables_the_other_one_for_the_same_base_model(vault):
    first, _ = store(vault, "first")
    second, _ = store(vault, "second")
    registry = Adapters(vault)
    registry.enable(first.id)
    registry.enable(second.id)
    enabled = {c.id: c.meta["enabled"] for c in registry.cubes()}
    assert enabled == {first.id: False, second.id: True}
    assert vault.get(first.id).meta["disabled_reason"] == f"replaced by {second.id}"


def test_corrupt_adapter_file_is_a_clear_error_and_the_previous_adapter_stays_enabled(vault):
    good, _ = store(vault, "good")
    bad, _ = store(vault, "bad")
    registry = Adapters(vault)
    registry.enable(good.id)
    path = vault.data_dir / "blobs" / f"{bad.payload_ref}.mlx-weights"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(TrainingError, match="missing or damaged"):
        registry.enable(bad.id)
    assert vault.get(good.id).meta["enabled"] and not vault.get(bad.id).meta["enabled"]
    backend = load_backend(tm.tiny_gguf())
    try:
        assert registry.apply(backend).id == good.id
        with pytest.raises(TrainingError, match="missing or damaged"):
            registry.apply(load_backend_mlx := load_backend(tm.tiny_mlx()), bad.id)
        load_backend_mlx.close()
        assert len(backend.adapters) == 1
    finally:
        backend.close()


def test_disk_full_while_saving_is_a_clear_error_and_changes_nothing(vault):
    first, _ = store(vault, "people")
    Adapters(vault).enable(first.id)
    blobs = vault.data_dir / "blobs"
    before = {p.name: p.read_bytes() for p in blobs.iterdir()}
    used = sum(len(b) for b in before.values())
    blobs.rename(blobs.with_name("blobs-disk"))
    blobs.mkdir()
    size = f"size={used + 12 * 1024}"  # room for the small config file, not the weights
    if subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(blobs)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        for name, data in before.items():
            (blobs / name).write_bytes(data)
        with pytest.raises(TrainingError, match="could not be saved.*nothing was changed"):
            store(vault, "people", offset=1)
        current = vault.get(first.id)
        assert current.version == first.version + 1 and current.meta["enabled"]  # only the enable
        assert sorted(p.name for p in blobs.iterdir()) == sorted(before)  # no partial or temp files
        assert Adapters(vault).files(current, "gguf")
    finally:
        subprocess.run(["umount", str(blobs)])


def test_rollback_brings_back_the_earlier_weights(vault):
    first, facts = store(vault, "people", offset=0)
    second, _ = store(vault, "people", offset=1, facts=facts)
    assert second.id == first.id and second.version == first.version + 1
    v1, v2 = weights_of(vault, first), weights_of(vault, second)
    assert not np.allclose(v1["model.layers.0.self_attn.q_proj.lora_b"], v2["model.layers.0.self_attn.q_proj.lora_b"])
    rolled = Adapters(vault).rollback(first.id, first.version)
    now = weights_of(vault, rolled)
    for name, value in v1.items():
        np.testing.assert_array_equal(now[name], value)


def test_rm_deletes_every_version_of_the_weights_but_keeps_the_facts(vault):
    first, facts = store(vault, "people", offset=0)
    store(vault, "people", offset=1, facts=facts)
    Adapters(vault).remove(first.id)
    assert not [n for n in vault.blobs.names() if n.startswith(f"adapter-{first.id}")]
    assert Adapters(vault).cubes() == []
    assert all(vault.get(f.id).state == "active" for f in facts)
    assert vault.history(first.id)[-1]["op"] == "forget"


def test_editing_a_distilled_fact_disables_its_adapter_at_the_next_load(vault):
    cube, facts = store(vault)
    registry = Adapters(vault)
    registry.enable(cube.id)
    vault.edit(facts[1].id, content="My plumber moved to another town.")
    assert registry.enabled_for(file_digest(tm.tiny_gguf()), "gguf") is None
    current = vault.get(cube.id)
    assert not current.meta["enabled"] and facts[1].id in current.meta["disabled_reason"]
    with pytest.raises(TrainingError, match="train it again"):
        registry.enable(cube.id)
    assert vault.get(facts[1].id).content == "My plumber moved to another town."


def test_an_adapter_built_for_another_base_model_is_refused(vault):
    cube, _ = store(vault)
    Adapters(vault).enable(cube.id)
    other = load_backend(tm.tiny_gguf(seed=1))
    try:
        with pytest.raises(TrainingError, match="another base model"):
            Adapters(vault).apply(other, cube.id)
        assert Adapters(vault).apply(other) is None and other.adapters == ()
    finally:
        other.close()


def _greedy(backend, question: str) -> list[int]:
    tokens = backend.tokenize(backend.chat_prompt([{"role": "user", "content": question}]))
    return list(backend.generate_tokens(tokens, Sampling(max_tokens=12)))


def test_both_runtimes_answer_the_same_with_the_adapter_and_differently_without(vault):
    cube, _ = store(vault)
    Adapters(vault).enable(cube.id)
    outputs = {}
    for path in (tm.tiny_gguf(), tm.tiny_mlx()):
        backend = load_backend(path)
        try:
            base = _greedy(backend, "Do you remember anything about dentist Alvarez Street?")
            assert Adapters(vault).apply(backend).id == cube.id
            tuned = _greedy(backend, "Do you remember anything about dentist Alvarez Street?")
            outputs[backend.runtime] = (base, tuned)
        finally:
            backend.close()
    (llama_base, llama_tuned), (mlx_base, mlx_tuned) = outputs["llama.cpp"], outputs["mlx"]
    assert llama_tuned == mlx_tuned and llama_base == mlx_base
    assert llama_tuned != llama_base


def test_enabling_or_disabling_an_adapter_invalidates_activation_memory_of_the_other_setting(vault):
    cube, facts = store(vault)
    registry = Adapters(vault)
    memory = ActivationMemory(vault)
    backend = load_backend(tm.tiny_gguf())
    try:
        prefix = backend.tokenize(backend.chat_prompt([{"role": "system", "content": " ".join(fact_texts(3))}], False))
        plain = memory.prepare(backend, prefix, [f.id for f in facts])
        assert plain.saved and plain.restored_tokens == 0

        registry.enable(cube.id)
        registry.apply(backend)
        tuned = memory.prepare(backend, prefix)
        assert tuned.restored_tokens == 0 and tuned.computed_tokens == len(prefix) and tuned.saved

        registry.disable(cube.id)
        assert registry.apply(backend) is None and backend.adapters == ()
        again = memory.prepare(backend, prefix)
        assert again.cube_id == plain.cube_id and again.restored_tokens == len(prefix)
    finally:
        backend.close()
