"""Activation memory: KV states sealed in a real encrypted vault, restored with identical output."""

from dataclasses import replace

import pytest

from memos_desktop.runtime import LoadSettings, Sampling, load_backend, testmodels
from memos_desktop.runtime.activation import ActivationMemory, prefix_hash

RUNTIMES = ["llama.cpp", "mlx"]
SETTINGS = LoadSettings(n_ctx=256, threads=1, batch=32)
GREEDY = Sampling(max_tokens=16)
SYSTEM = "You are a helpful assistant. Known facts: the team meets on Monday at nine."


def model_path(runtime: str, seed: int = 0):
    return testmodels.tiny_gguf(seed) if runtime == "llama.cpp" else testmodels.tiny_mlx(seed)


def load(runtime: str, seed: int = 0, settings: LoadSettings = SETTINGS):
    return load_backend(model_path(runtime, seed), settings)


def prompt(backend, question: str = "When does the team meet?", system: str = SYSTEM):
    """(prefix tokens, full prompt tokens) for a system prompt and one question."""
    prefix = backend.tokenize(backend.chat_prompt([{"role": "system", "content": system}], False))
    full = backend.tokenize(
        backend.chat_prompt([{"role": "system", "content": system}, {"role": "user", "content": question}])
    )
    assert full[: len(prefix)] == prefix
    return prefix, full


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    return request.param


@pytest.fixture
def memory(vault):
    return ActivationMemory(vault)


def test_first_prefill_saves_a_sealed_state_registered_as_an_activation_cube(runtime, memory, vault):
    backend = load(runtime)
    prefix, _ = prompt(backend)
    done = memory.prepare(backend, prefix)
    assert (done.restored_tokens, done.computed_tokens, done.saved) == (0, len(prefix), True)
    cube = vault.get(done.cube_id)
    assert cube.kind == "activation"
    assert cube.meta["n_tokens"] == len(prefix)
    assert cube.meta["prefix_hash"] == prefix_hash(prefix)
    sealed = (vault.data_dir / "blobs" / cube.payload_ref).read_bytes()
    state = backend.save_state()
    assert abs(len(sealed) - len(state)) <= 28
    assert state[:64] not in sealed and state[-64:] not in sealed


def test_restored_state_generates_exactly_the_tokens_of_a_cold_run(runtime, memory):
    first = load(runtime)
    prefix, full = prompt(first)
    memory.prepare(first, prefix)
    first.close()

    warm = load(runtime)
    done = memory.prepare(warm, prefix)
    assert (done.restored_tokens, done.computed_tokens, done.saved) == (len(prefix), 0, False)
    restored = list(warm.generate_tokens(full, GREEDY))

    cold = list(load(runtime).generate_tokens(full, GREEDY))
    assert len(cold) == 16
    assert restored == cold


def test_a_saved_prefix_serves_a_longer_prompt(runtime, memory):
    backend = load(runtime)
    short, _ = prompt(backend)
    memory.prepare(backend, short)
    longer, full = prompt(backend, system=SYSTEM + " The office is on the third floor.")
    common = next(i for i, (a, b) in enumerate(zip(short, longer, strict=False)) if a != b)
    backend = load(runtime)
    memory.prepare(backend, longer[:common])
    fresh = load(runtime)
    done = memory.prepare(fresh, longer)
    assert done.restored_tokens == common
    assert done.computed_tokens == len(longer) - common
    assert done.saved
    assert memory.usage()["states"] == 3
    assert list(fresh.generate_tokens(full, GREEDY)) == list(load(runtime).generate_tokens(full, GREEDY))


def test_state_of_another_model_is_never_loaded(runtime, memory):
    a = load(runtime, seed=0)
    prefix, _ = prompt(a)
    memory.prepare(a, prefix)
    b = load(runtime, seed=1)
    done = memory.prepare(b, prefix)
    assert done.restored_tokens == 0
    assert done.computed_tokens == len(prefix)


def test_state_of_another_context_size_is_never_loaded(runtime, memory):
    a = load(runtime)
    prefix, _ = prompt(a)
    memory.prepare(a, prefix)
    done = memory.prepare(load(runtime, settings=replace(SETTINGS, n_ctx=512)), prefix)
    assert done.restored_tokens == 0


def test_state_is_not_reused_after_an_adapter_change(runtime, memory):
    backend = load(runtime)
    prefix, full = prompt(backend)
    memory.prepare(backend, prefix)
    adapter = testmodels.tiny_lora_gguf() if runtime == "llama.cpp" else testmodels.tiny_lora_mlx()
    backend.load_adapter(adapter, 1.0)
    done = memory.prepare(backend, prefix)
    assert done.restored_tokens == 0
    assert done.computed_tokens == len(prefix)
    with_adapter = list(backend.generate_tokens(full, GREEDY))
    other = load(runtime)
    other.load_adapter(adapter, 1.0)
    again = memory.prepare(other, prefix)
    assert again.restored_tokens == len(prefix)
    assert list(other.generate_tokens(full, GREEDY)) == with_adapter


def test_tampered_state_is_discarded_and_recomputed(runtime, memory, vault):
    backend = load(runtime)
    prefix, full = prompt(backend)
    saved = memory.prepare(backend, prefix)
    blob = vault.data_dir / "blobs" / vault.get(saved.cube_id).payload_ref
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    fresh = load(runtime)
    done = memory.prepare(fresh, prefix)
    assert done.restored_tokens == 0
    assert done.computed_tokens == len(prefix)
    assert done.saved and done.cube_id != saved.cube_id
    assert vault.get(saved.cube_id, include_inactive=True).state == "deleted"
    assert not blob.exists()
    assert list(fresh.generate_tokens(full, GREEDY)) == list(load(runtime).generate_tokens(full, GREEDY))


def test_state_that_does_not_fit_the_model_is_discarded_and_recomputed(runtime, memory, vault):
    backend = load(runtime)
    prefix, full = prompt(backend)
    saved = memory.prepare(backend, prefix)
    cube = vault.get(saved.cube_id)
    wide = replace(testmodels.TINY, name="tiny-llama-wide", num_key_value_heads=4)
    path = testmodels.gguf_model(wide) if runtime == "llama.cpp" else testmodels.mlx_model(wide)
    foreign = load_backend(path, SETTINGS)
    foreign.prefill(prefix)
    context = f"activation\0{cube.meta['fingerprint']}\0{cube.meta['prefix_hash']}".encode()
    vault.blobs.put(cube.payload_ref, foreign.save_state(), context)

    fresh = load(runtime)
    done = memory.prepare(fresh, prefix)
    assert done.restored_tokens == 0 and done.saved
    assert vault.get(saved.cube_id, include_inactive=True).state == "deleted"
    assert list(fresh.generate_tokens(full, GREEDY)) == list(load(runtime).generate_tokens(full, GREEDY))


def test_state_lists_the_memories_it_was_built_from(memory, vault):
    facts = [vault.add("The team meets on Monday at nine."), vault.add("The office is on floor 3.")]
    backend = load("llama.cpp")
    prefix, _ = prompt(backend)
    done = memory.prepare(backend, prefix, sources=[f.id for f in facts])
    links = vault.links(done.cube_id)
    assert {(link["dst"], link["rel"]) for link in links} == {(f.id, "built_from") for f in facts}
    assert vault.get(done.cube_id).meta["sources"] == [f.id for f in facts]


@pytest.mark.parametrize("change", ["edit", "forget"])
def test_changing_a_source_memory_invalidates_the_state(change, memory, vault):
    fact = vault.add("The team meets on Monday at nine.")
    backend = load("llama.cpp")
    prefix, _ = prompt(backend)
    saved = memory.prepare(backend, prefix, sources=[fact.id])
    blob = vault.data_dir / "blobs" / vault.get(saved.cube_id).payload_ref
    if change == "edit":
        vault.edit(fact.id, content="The team meets on Tuesday at ten.")
    else:
        vault.forget(fact.id)
    assert vault.get(saved.cube_id, include_inactive=True).state == "archived"

    done = memory.prepare(load("llama.cpp"), prefix)
    assert done.restored_tokens == 0
    assert not blob.exists()


def test_budget_evicts_the_least_recently_used_state(memory, vault):
    backend = load("llama.cpp")
    prefixes = [prompt(backend, system=f"Fact number {i}: {'x' * (10 + i)}.")[0] for i in range(3)]
    first = memory.prepare(backend, prefixes[0])
    size = vault.get(first.cube_id).meta["bytes"]
    memory.budget_bytes = int(size * 2.5)
    second = memory.prepare(backend, prefixes[1])
    memory.prepare(load("llama.cpp"), prefixes[0])
    third = memory.prepare(backend, prefixes[2])
    kept = {c.id for c in memory.states()}
    assert kept == {first.cube_id, third.cube_id}
    assert vault.get(second.cube_id, include_inactive=True).state == "deleted"
    assert memory.usage()["bytes"] <= memory.budget_bytes


def test_budget_comes_from_the_vault_setting(vault):
    assert ActivationMemory(vault).budget_bytes == 2 * 1024**3
    vault.set_setting("activation_budget_bytes", 12345)
    assert ActivationMemory(vault).budget_bytes == 12345


def test_state_larger_than_the_budget_is_not_saved(memory):
    memory.budget_bytes = 1000
    backend = load("llama.cpp")
    prefix, _ = prompt(backend)
    done = memory.prepare(backend, prefix)
    assert not done.saved
    assert memory.usage()["states"] == 0


def test_prefix_already_in_the_kv_cache_is_neither_restored_nor_saved_again(memory):
    backend = load("llama.cpp")
    prefix, _ = prompt(backend)
    memory.prepare(backend, prefix)
    done = memory.prepare(backend, prefix)
    assert (done.restored_tokens, done.computed_tokens, done.saved) == (0, 0, False)
    assert memory.usage()["states"] == 1


def test_prefix_already_in_the_kv_cache_is_saved_without_computing_it(memory):
    backend = load("llama.cpp")
    prefix, full = prompt(backend)
    cold = list(backend.generate_tokens(full, GREEDY))
    done = memory.prepare(backend, prefix)
    assert (done.restored_tokens, done.computed_tokens, done.saved) == (0, 0, True)
    assert backend.cached_tokens() == prefix
    fresh = load("llama.cpp")
    assert memory.prepare(fresh, prefix).restored_tokens == len(prefix)
    assert list(fresh.generate_tokens(full, GREEDY)) == cold


def test_token_lists_are_not_stored_only_their_hash(memory, vault):
    backend = load("llama.cpp")
    prefix, _ = prompt(backend)
    done = memory.prepare(backend, prefix)
    cube = vault.get(done.cube_id)
    assert "tokens" not in cube.meta
    assert SYSTEM not in cube.content
