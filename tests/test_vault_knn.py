"""The vault's KNN in large vaults: a coarse Hamming pass over sign bits, then float rescoring."""

import os

import numpy as np
import pytest

from memos_desktop.vault import store


@pytest.fixture
def large(vault, monkeypatch):
    """A vault whose KNN takes the coarse path from 50 vectors on, holding 300 cubes."""
    monkeypatch.setattr(store, "COARSE_MIN_VECTORS", 50)
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
    with Vault.open(
        isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=large.embedder
    ) as other:
        new = other.add("zebra quokka")
    rowid = large.conn.execute("SELECT rowid FROM cubes WHERE id = ?", (new.id,)).fetchone()[0]
    assert large.knn(vector, 1)[0][0] == rowid
