"""Conformance of both LLM runtimes (llama.cpp, MLX) on generated tiny models, plus bad input."""

import threading
from dataclasses import replace

import pytest

from memos_desktop.errors import ModelError
from memos_desktop.runtime import LoadSettings, Sampling, load_backend, testmodels
from memos_desktop.runtime.base import fingerprint, stream_text

RUNTIMES = ["llama.cpp", "mlx"]
SETTINGS = LoadSettings(n_ctx=256, threads=1, batch=32)
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant with a memory."},
    {"role": "user", "content": "What did the team do on Monday?"},
]
GREEDY = Sampling(max_tokens=16)


def model_path(runtime: str, spec=testmodels.TINY):
    return testmodels.gguf_model(spec) if runtime == "llama.cpp" else testmodels.mlx_model(spec)


def adapter_path(runtime: str):
    return testmodels.tiny_lora_gguf() if runtime == "llama.cpp" else testmodels.tiny_lora_mlx()


@pytest.fixture(params=RUNTIMES)
def backend(request):
    b = load_backend(model_path(request.param), SETTINGS)
    yield b
    b.close()


def prompt_tokens(backend, messages=MESSAGES):
    return backend.tokenize(backend.chat_prompt(messages))


def test_backend_reports_its_runtime_and_architecture(backend):
    assert backend.runtime in RUNTIMES
    assert backend.arch == "llama"
    assert backend.n_ctx == 256


def test_chat_template_comes_from_the_model(backend):
    prompt = backend.chat_prompt(MESSAGES)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant")
    assert "<|im_start|>user\nWhat did the team do on Monday?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert not backend.chat_prompt(MESSAGES, add_generation_prompt=False).endswith("assistant\n")


def test_text_round_trips_through_the_tokenizer(backend):
    text = "Memory is a managed resource, 42 times."
    tokens = backend.tokenize(text)
    assert backend.detokenize(tokens) == text
    assert backend.count_tokens(text) == len(tokens) < len(text)


def test_chat_markers_are_single_special_tokens(backend):
    assert len(backend.tokenize("<|im_start|>")) == 1
    assert len(backend.tokenize("<|im_end|>")) == 1


def test_both_runtimes_tokenize_alike():
    llama, mlx = (load_backend(model_path(r), SETTINGS) for r in RUNTIMES)
    assert llama.tokenize(llama.chat_prompt(MESSAGES)) == mlx.tokenize(mlx.chat_prompt(MESSAGES))


def test_greedy_generation_is_deterministic(backend):
    tokens = prompt_tokens(backend)
    first = list(backend.generate_tokens(tokens, GREEDY))
    second = list(backend.generate_tokens(tokens, GREEDY))
    assert len(first) == 16
    assert first == second


def test_both_runtimes_generate_the_same_greedy_tokens_from_the_same_weights():
    outputs = []
    for runtime in RUNTIMES:
        b = load_backend(model_path(runtime), SETTINGS)
        outputs.append(list(b.generate_tokens(prompt_tokens(b), GREEDY)))
        b.close()
    assert outputs[0] == outputs[1]


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(backend):
    tokens = prompt_tokens(backend)
    hot = Sampling(max_tokens=16, temperature=5.0, top_k=50, top_p=0.95, seed=7)
    a = list(backend.generate_tokens(tokens, hot))
    b = list(backend.generate_tokens(tokens, hot))
    assert a == b
    assert a != list(backend.generate_tokens(tokens, GREEDY))


def test_generation_reuses_the_cached_prefix(backend):
    tokens = prompt_tokens(backend)
    backend.prefill(tokens[:20])
    assert backend.cached_tokens() == tokens[:20]
    cold = load_backend(backend.path, SETTINGS)
    assert list(backend.generate_tokens(tokens, GREEDY)) == list(cold.generate_tokens(tokens, GREEDY))
    assert backend.cached_tokens()[: len(tokens)] == tokens


def test_stop_sequence_ends_the_stream_before_it(backend):
    tokens = prompt_tokens(backend)
    full = backend.detokenize(list(backend.generate_tokens(tokens, Sampling(max_tokens=24))))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    pieces = list(stream_text(backend.generate_tokens(tokens, Sampling(max_tokens=24)), backend.detokenize, [stop]))
    assert "".join(pieces) == full[: full.index(stop)]


def test_stream_without_stop_yields_the_whole_text(backend):
    tokens = prompt_tokens(backend)
    generated = list(backend.generate_tokens(tokens, GREEDY))
    text = "".join(stream_text(backend.generate_tokens(tokens, GREEDY), backend.detokenize))
    assert text == backend.detokenize(generated)


def test_cancel_stops_generation_mid_stream(backend):
    cancel = threading.Event()
    seen = []
    for token in backend.generate_tokens(prompt_tokens(backend), Sampling(max_tokens=64), cancel):
        seen.append(token)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3


def test_max_tokens_bounds_the_answer(backend):
    assert len(list(backend.generate_tokens(prompt_tokens(backend), Sampling(max_tokens=5)))) == 5


def test_restored_state_generates_the_same_tokens_as_a_cold_run(backend):
    tokens = prompt_tokens(backend)
    prefix = tokens[:-6]
    cold = list(backend.generate_tokens(tokens, GREEDY))
    backend.prefill(prefix)
    state = backend.save_state()
    other = load_backend(backend.path, SETTINGS)
    other.load_state(state, prefix)
    assert other.cached_tokens() == prefix
    assert list(other.generate_tokens(tokens, GREEDY)) == cold
    fresh = load_backend(backend.path, SETTINGS)
    assert list(fresh.generate_tokens(tokens[-6:], GREEDY)) != cold


def test_state_of_a_different_shape_is_refused(backend):
    wide = replace(testmodels.TINY, name="tiny-llama-wide", num_key_value_heads=4)
    other = load_backend(model_path(backend.runtime, wide), SETTINGS)
    tokens = prompt_tokens(other)
    other.prefill(tokens)
    with pytest.raises(ModelError, match="does not fit this model"):
        backend.load_state(other.save_state(), tokens)


def test_garbage_state_is_refused(backend):
    with pytest.raises(ModelError, match="does not fit this model"):
        backend.load_state(b"\x00garbage" * 100, [1, 2, 3])
    assert backend.cached_tokens() == []


def test_prompt_longer_than_the_context_is_a_model_error(backend):
    tokens = backend.tokenize("memory " * 400)
    assert len(tokens) > backend.n_ctx
    with pytest.raises(ModelError, match="context of 256 tokens"):
        list(backend.generate_tokens(tokens, GREEDY))


def test_adapter_changes_output_and_identity_and_unloading_restores_them(backend):
    tokens = prompt_tokens(backend)
    base_tokens = list(backend.generate_tokens(tokens, GREEDY))
    base_fp = fingerprint(backend)
    backend.load_adapter(adapter_path(backend.runtime), 1.0)
    assert backend.cached_tokens() == []
    assert fingerprint(backend) != base_fp
    assert list(backend.generate_tokens(tokens, GREEDY)) != base_tokens
    backend.unload_adapters()
    assert fingerprint(backend) == base_fp
    assert list(backend.generate_tokens(tokens, GREEDY)) == base_tokens


def test_both_runtimes_apply_the_same_adapter_alike():
    outputs = []
    for runtime in RUNTIMES:
        b = load_backend(model_path(runtime), SETTINGS)
        b.load_adapter(adapter_path(runtime), 0.5)
        outputs.append(list(b.generate_tokens(prompt_tokens(b), GREEDY)))
        b.close()
    assert outputs[0] == outputs[1]


def test_adapter_scale_is_part_of_the_fingerprint(backend):
    backend.load_adapter(adapter_path(backend.runtime), 1.0)
    full = fingerprint(backend)
    backend.unload_adapters()
    backend.load_adapter(adapter_path(backend.runtime), 0.5)
    assert fingerprint(backend) != full


def test_fingerprint_differs_between_models_of_the_same_shape():
    a = load_backend(testmodels.tiny_gguf(0), SETTINGS)
    b = load_backend(testmodels.tiny_gguf(1), SETTINGS)
    assert fingerprint(a) != fingerprint(b)
    c = load_backend(testmodels.tiny_gguf(0), replace(SETTINGS, n_ctx=512))
    assert fingerprint(a) != fingerprint(c)


# ----- bad input ---------------------------------------------------------------------------------
def test_truncated_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(testmodels.tiny_gguf().read_bytes()[:40_000])
    with pytest.raises(ModelError, match="cut.gguf"):
        load_backend(bad, SETTINGS)


def test_file_that_is_not_a_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"# just some notes\n" * 100)
    with pytest.raises(ModelError, match="not a GGUF model file"):
        load_backend(bad, SETTINGS)


def test_corrupt_gguf_header_is_a_clear_error(tmp_path):
    data = bytearray(testmodels.tiny_gguf().read_bytes())
    data[8:24] = b"\xff" * 16
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt.gguf"):
        load_backend(bad, SETTINGS)


def test_unknown_architecture_gguf_is_a_clear_error(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), "notallama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match="notallama"):
        load_backend(path, SETTINGS)


def test_directory_without_config_is_not_an_mlx_model(tmp_path):
    with pytest.raises(ModelError, match="not an MLX model directory"):
        load_backend(tmp_path, SETTINGS)


def test_mlx_dir_of_an_unknown_architecture_is_a_clear_error(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "notallama"}))
    with pytest.raises(ModelError, match="Could not load the MLX model"):
        load_backend(tmp_path, SETTINGS)


def test_mlx_dir_with_missing_weights_is_a_clear_error(tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(testmodels.tiny_mlx(), model)
    (model / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="Could not load the MLX model"):
        load_backend(model, SETTINGS)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="No model at"):
        load_backend(tmp_path / "nothing.gguf", SETTINGS)


def test_adapter_for_another_model_is_refused(backend):
    wide = replace(testmodels.TINY, name="tiny-llama-wide", num_key_value_heads=4)
    spec = testmodels.LoraSpec(wide)
    target = testmodels.cache_root() / f"wide-lora-{spec.key()}"
    if backend.runtime == "llama.cpp":
        path = testmodels.write_lora_gguf(spec, target.with_suffix(".gguf"))
    else:
        path = testmodels.write_lora_mlx(spec, target)
    with pytest.raises(ModelError, match="does not fit this model"):
        backend.load_adapter(path, 1.0)
    assert backend.adapters == ()


def test_fingerprint_follows_the_model_file_content(tmp_path):
    import os
    import shutil

    copy = tmp_path / "model.gguf"
    shutil.copyfile(testmodels.tiny_gguf(0), copy)
    before = fingerprint(load_backend(copy, SETTINGS))
    shutil.copyfile(testmodels.tiny_gguf(1), copy)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))
    assert fingerprint(load_backend(copy, SETTINGS)) != before
