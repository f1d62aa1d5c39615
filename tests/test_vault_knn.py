"""The vault's KNN in large vaults: a coarse Hamming pass over sign bits, then float rescoring."""

import os

import numpy as np
import pytest

from memos_desktop.vault import index


@pytest.fixture
def large(vault, monkeypatch):
    """A vault whose KNN takes the coarse path from 50 vectors on, holding 300 cubes."""
    monkeypatch.setattr(index, "COARSE_MIN_VECTORS", 50)
    words = [f"word{i}" for i in range(120)]
    rng = np.random.default_rng(7)
    vault.add_many([dict(content=" ".join(rng.choice(words, 6))) for _ in range(300)])
    return vault


def exact(vault, vector, k):
    rows = vault.conn.execute(
        "SELECT rowid FROM cube_vec WHERE embedding MATCH ? AND k = ?", (vector.tobytes(), k)
    ).fetchall()
    return [r for (r,) in rows]


def test_coarse_knn_finds_the_exact_nearest(large):
    content = large.cubes(limit=1)[0].content
    vector = large.embedder.embed([content])[0]
    assert large.knn(vector, 1)[0][0] == exact(large, vector, 1)[0]


def test_coarse_knn_results_are_ordered_by_distance(large):
    vector = large.embedder.embed(["word3 word17 word42"])[0]
    distances = [d for _, d in large.knn(vector, 20)]
    assert len(distances) == 20 and distances == sorted(distances)


def test_coarse_knn_distances_are_cosine(large):
    vector = large.embedder.embed(["word3 word17 word42"])[0]
    rowid, distance = large.knn(vector, 1)[0]
    sql = "SELECT embedding FROM cube_vec WHERE rowid = ?"
    stored = np.frombuffer(large.conn.execute(sql, (rowid,)).fetchone()[0], np.float32)
    assert distance == pytest.approx(1 - float(stored @ vector), abs=1e-5)


def test_cube_added_after_the_index_was_loaded_is_found(large):
    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    new = large.add("zebra quokka")
    rowid = large.conn.execute("SELECT rowid FROM cubes WHERE id = ?", (new.id,)).fetchone()[0]
    assert large.knn(vector, 1)[0][0] == rowid


def test_forgotten_cube_leaves_the_coarse_index(large):
    cube = large.add("zebra quokka")
    vector = large.embedder.embed(["zebra quokka"])[0]
    rowid = large.knn(vector, 1)[0][0]
    large.forget(cube.id)
    assert rowid not in [r for r, _ in large.knn(vector, 10)]


def test_another_connections_write_is_seen(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder) as other:
        new = other.add("zebra quokka")
    rowid = large.conn.execute("SELECT rowid FROM cubes WHERE id = ?", (new.id,)).fetchone()[0]
    assert large.knn(vector, 1)[0][0] == rowid


class AnisotropicEmbedder:
    """Vectors shaped like a real sentence model's: a shared direction and uneven variance per
    dimension (all-MiniLM-L6-v2's are), for which sign-bit Hamming distance ranks poorly."""

    model_id = "test/anisotropic-384"
    dim = 384

    def __init__(self, n_docs: int):
        rng = np.random.default_rng(3)
        mean = rng.standard_normal(self.dim)
        mean /= np.linalg.norm(mean)
        scales = np.linspace(2.0, 0.2, self.dim)
        noise = rng.standard_normal((n_docs, self.dim)) * scales / np.sqrt((scales**2).sum())
        self.docs = self._unit(0.6 * mean + noise)
        self.queries = self._unit(rng.standard_normal((20, self.dim)) * scales)

    @staticmethod
    def _unit(a):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    def embed(self, texts):
        kind_index = [t.split() for t in texts]
        return np.stack([(self.docs if kind == "doc" else self.queries)[int(i)] for kind, i in kind_index])


def test_coarse_knn_keeps_the_true_neighbours_of_anisotropic_vectors(isolated_home, monkeypatch):
    """Hamming distance alone (the previous single coarse pass) kept 39% of the exact top 50 here."""
    from memos_desktop.vault import Vault
    from tests.support import PASSPHRASE

    monkeypatch.setattr(index, "COARSE_MIN_VECTORS", 50)
    embedder = AnisotropicEmbedder(3000)
    with Vault.create(isolated_home, PASSPHRASE, embedder=embedder) as v:
        v.add_many([dict(content=f"doc {i}") for i in range(3000)])
        recalls = []
        for i in range(len(embedder.queries)):
            vector = embedder.embed([f"query {i}"])[0]
            found = {r for r, _ in v.knn(vector, 50)}
            recalls.append(len(found & set(exact(v, vector, 50))) / 50)
    assert np.mean(recalls) >= 0.75


def test_another_connections_write_without_vectors_keeps_the_coarse_index(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    loaded = large._bits
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"]) as other:  # no embedder: no vector
        other.add("an audit entry and a cube without a vector")
    large.knn(vector, 5)
    assert large._bits is loaded


def test_another_connections_many_vector_changes_reload_the_coarse_index(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    loaded = large._bits
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder) as other:
        other.add_many([dict(content=f"zebra quokka {i}") for i in range(100)])  # over 5% + 64 of 300
    large.knn(vector, 5)
    assert large._bits is not loaded and large.vector_loads == 2


def search_state(vault, vector):
    """What searches of `vault` answer for `vector`: its nearest and their int8 similarities."""
    nearest = vault.knn(vector, 30)
    return nearest, vault.similarity([r for r, _ in nearest], vector)


def test_another_connections_writes_are_taken_in_without_a_full_load(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["word3 word17 word42"])[0]
    large.knn(vector, 5)
    loaded = large._bits
    cubes = large.cubes(limit=40)
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder) as other:
        for i, cube in enumerate(cubes[:20]):
            rowid = large._rowid(cube.id)
            if i % 2:
                other.forget(cube.id)
                assert rowid not in [r for r, _ in large.knn(large.embedder.embed([cube.content])[0], 10)]
            else:
                other.edit(cube.id, content=f"zebra quokka edited{i}")
                query = large.embedder.embed([f"zebra quokka edited{i}"])[0]
                assert dict(large.knn(query, 10)).get(rowid) == pytest.approx(0.0, abs=1e-5)
            new = other.add(f"llama alpaca new{i}")
            query = large.embedder.embed([f"llama alpaca new{i}"])[0]
            assert dict(large.knn(query, 10)).get(large._rowid(new.id)) == pytest.approx(0.0, abs=1e-5)
    kept = search_state(large, vector)
    assert large._bits is loaded and large.vector_loads == 1 and large._bits.dead == 10
    large._bits = None
    assert search_state(large, vector) == kept


def test_another_connections_write_seen_in_a_rolled_back_transaction_stays(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder) as other:
        theirs = other.add("zebra quokka")
    with pytest.raises(RuntimeError), large.transaction():
        large.add("zebra quokka mine")
        assert large.knn(vector, 1)[0][0] == large._rowid(theirs.id)
        raise RuntimeError
    large.add("llama alpaca")  # later log entries take the rolled back ones' numbers
    kept = search_state(large, vector)
    assert kept[0][0][0] == large._rowid(theirs.id) and large.vector_loads == 1
    assert all(r in {r for (r,) in large.conn.execute("SELECT rowid FROM cubes")} for r, _ in kept[0])
    large._bits = None
    assert search_state(large, vector) == kept


def test_trimmed_change_log_reloads_the_coarse_index(large, isolated_home):
    from memos_desktop.vault import Vault

    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder) as other:
        new = other.add("zebra quokka")
        other.add("llama alpaca")
        seq = other.conn.execute("SELECT max(seq) FROM vec_changed").fetchone()[0]
        other.conn.execute("DELETE FROM vec_changed WHERE seq < ?", (seq,))  # as a trim would
    assert large.knn(vector, 1)[0][0] == large._rowid(new.id) and large.vector_loads == 2


def test_change_log_keeps_its_newest_entries(vault):
    from memos_desktop.vault.migrations import VEC_LOG_KEEP

    vault.add_many([dict(content=f"zebra quokka {i}") for i in range(5)])
    vault.conn.execute("INSERT INTO vec_changed VALUES (?, 1)", (4 * VEC_LOG_KEEP,))
    kept = vault.conn.execute("SELECT min(seq), count(*) FROM vec_changed").fetchone()
    assert kept == (4 * VEC_LOG_KEEP, 1)
    vault.add("llama alpaca")
    assert vault.conn.execute("SELECT max(seq) FROM vec_changed").fetchone()[0] == 4 * VEC_LOG_KEEP + 1


@pytest.mark.parametrize("coarse", [False, True])
def test_zero_query_vector_finds_nothing(large, monkeypatch, coarse):
    if not coarse:
        monkeypatch.setattr(index, "COARSE_MIN_VECTORS", 10**9)
    assert large.knn(np.zeros(large.embedder.dim, np.float32), 5) == []


def test_sign_scores_are_the_query_summed_over_each_candidates_set_bits():
    """The asymmetric pass scores a candidate by the query's components whose sign bit it has set."""
    rng = np.random.default_rng(3)
    for dim in (64, 100, 384):
        query = rng.standard_normal(dim).astype(np.float32)
        vectors = rng.standard_normal((500, dim)).astype(np.float32)
        packed = np.packbits(vectors > 0, axis=1, bitorder="little")
        words = (dim + 63) // 64
        padded = np.zeros((500, words * 8), dtype=np.uint8)
        padded[:, : packed.shape[1]] = packed
        bits = np.ascontiguousarray(padded.view(np.uint64).T)  # word-major, as the coarse index holds them
        expected = ((vectors > 0) * query).sum(axis=1)
        assert np.allclose(index.sign_scores(bits, query), expected, atol=1e-4)


def test_coarse_knn_with_every_vector_shortlisted_is_the_exact_knn(isolated_home, monkeypatch):
    """Int8 codes rank the shortlist; float vectors are read for all that may reach the top k."""
    from memos_desktop.vault import Vault
    from tests.support import PASSPHRASE

    monkeypatch.setattr(index, "COARSE_MIN_VECTORS", 50)
    monkeypatch.setattr(index, "HAMMING_MIN", 1000)
    monkeypatch.setattr(index, "RESCORE_MIN", 1000)
    embedder = AnisotropicEmbedder(600)
    with Vault.create(isolated_home, PASSPHRASE, embedder=embedder) as v:
        v.add_many([dict(content=f"doc {i}") for i in range(600)])
        for i in range(len(embedder.queries)):
            vector = embedder.embed([f"query {i}"])[0]
            assert [r for r, _ in v.knn(vector, 20)] == exact(v, vector, 20)


def test_rolled_back_vector_leaves_the_coarse_index(large):
    vector = large.embedder.embed(["zebra quokka"])[0]
    large.knn(vector, 5)
    with pytest.raises(RuntimeError), large.transaction():
        large.add("zebra quokka")
        assert large.knn(vector, 1)[0][1] == pytest.approx(0.0, abs=1e-5)  # seen inside it
        raise RuntimeError
    rowids = {r for (r,) in large.conn.execute("SELECT rowid FROM cubes")}
    assert all(r in rowids for r, _ in large.knn(vector, 10))
    assert large.knn(vector, 1)[0][1] > 1e-3


def test_edited_cube_is_found_by_its_new_vector(large):
    cube = large.add("zebra quokka")
    large.knn(large.embedder.embed(["zebra quokka"])[0], 1)
    large.edit(cube.id, content="llama alpaca")
    rowid, distance = large.knn(large.embedder.embed(["llama alpaca"])[0], 1)[0]
    assert large.get_many([rowid])[rowid].id == cube.id and distance == pytest.approx(0.0, abs=1e-5)


def test_similarity_from_int8_codes_is_within_rounding_of_float(large):
    vector = large.embedder.embed(["word3 word17 word42"])[0]
    rowids = [r for (r,) in large.conn.execute("SELECT rowid FROM cube_vec_float LIMIT 100")]
    from_floats = large.similarity(rowids, vector)
    large.knn(vector, 5)  # loads the codes
    assert large._bits is not None
    from_codes = large.similarity(rowids, vector)
    assert from_codes.keys() == from_floats.keys() and len(from_codes) == 100
    assert max(abs(from_codes[r] - from_floats[r]) for r in rowids) < 5e-3


def test_index_loaded_inside_a_rolled_back_transaction_is_loaded_again(large):
    cube = large.add("zebra quokka")
    vector = large.embedder.embed(["zebra quokka"])[0]
    large._bits = None  # not loaded yet: the first search happens inside the transaction
    rowid = large.conn.execute("SELECT rowid FROM cubes WHERE id = ?", (cube.id,)).fetchone()[0]
    with pytest.raises(RuntimeError), large.transaction():
        large.forget(cube.id)
        assert rowid not in [r for r, _ in large.knn(vector, 10)]
        raise RuntimeError
    assert large.knn(vector, 1)[0][0] == rowid


def test_index_kept_in_step_with_writes_equals_one_loaded_afresh(large):
    vector = large.embedder.embed(["word3 word17 word42"])[0]
    large.knn(vector, 5)
    cubes = large.cubes(limit=40)
    for i, cube in enumerate(cubes[:20]):
        if i % 2:
            large.forget(cube.id)
        else:
            large.edit(cube.id, content=f"word3 word17 edited {i}")
        large.add(f"word42 word3 new {i}")
        large.knn(vector, 5)  # each write taken in as it comes
    kept = large.knn(vector, 30), large.similarity([c for c, _ in large.knn(vector, 30)], vector)
    assert large._bits is not None and large._bits.dead == 10
    large._bits = None
    fresh = large.knn(vector, 30), large.similarity([c for c, _ in large.knn(vector, 30)], vector)
    assert kept == fresh


def test_another_connections_model_switch_reloads_the_coarse_index(vault, isolated_home):
    from memos_desktop.vault import Vault
    from tests.support import FakeEmbedder

    class OtherModel(FakeEmbedder):
        model_id, dim = "test/other-hash-32", 32

    vault.add_many([{"content": f"note {i} about zebras and tea"} for i in range(5)])
    vault.knn(vault.embedder.embed(["zebras"])[0], 3)  # loads the cache (64 dims)
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=vault.embedder) as other:
        other.switch_embedder(OtherModel())  # 32 dims, ten log entries
    rowids = [r for (r,) in vault.conn.execute("SELECT rowid FROM cubes")]
    query = OtherModel().embed(["zebras"])[0]
    from_codes = vault.similarity(rowids, query)
    assert vault.vector_loads == 2 and len(from_codes) == 5
    vault._bits = None
    from_floats = vault.similarity(rowids, query)
    assert max(abs(from_codes[r] - from_floats[r]) for r in from_floats) < 5e-3
