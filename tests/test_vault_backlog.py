"""Switching the embedding model without search downtime (memos_desktop/vault/backlog.py)."""

import os

import pytest

from memos_desktop.vault import Vault
from tests.support import FakeEmbedder


class OtherModel(FakeEmbedder):
    """Another model: same hashing, other identity and dimension, counting what it embeds."""

    model_id = "test/other-hash-32"
    dim = 32

    def __init__(self):
        self.texts = []

    def embed(self, texts):
        self.texts += list(texts)
        return super().embed(texts)


@pytest.fixture
def stocked(vault):
    vault.add_many([{"content": f"note {i} about zebras and tea"} for i in range(5)])
    return vault


def test_old_vectors_answer_searches_until_the_new_ones_are_swapped_in(stocked):
    old_query = stocked.embedder.embed(["zebras"])[0]
    seen = []

    def during(done, total):
        seen.append((done, total, len(stocked.knn(old_query, 3))))

    new = OtherModel()
    assert stocked.switch_embedder(new, batch=2, progress=during) == 5
    assert seen == [(2, 5, 3), (4, 5, 3), (5, 5, 3)]
    assert stocked.get_setting("embed_model") == new.model_id and stocked.embedder is new
    assert len(stocked.knn(new.embed(["zebras"])[0], 3)) == 3
    models = {m for (m,) in stocked.conn.execute("SELECT embed_model FROM cubes")}
    assert models == {new.model_id}


def test_an_interrupted_switch_resumes_where_it_stopped(stocked):
    new = OtherModel()

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stocked.switch_embedder(new, batch=2, progress=stop)
    assert stocked.get_setting("embed_model") != new.model_id  # nothing swapped yet
    new.texts.clear()
    stocked.switch_embedder(new, batch=2)
    assert len(new.texts) == 3


def test_a_memory_edited_while_staged_gets_its_new_text_embedded(stocked):
    new = OtherModel()
    first = stocked.cubes(limit=1)[0]

    def edit_once(done, total):
        if done == 1:
            stocked.edit(first.id, content="now about giraffes")

    stocked.switch_embedder(new, batch=1, progress=edit_once)
    rowid = stocked._rowid(first.id)
    assert stocked.knn(new.embed(["now about giraffes"])[0], 1)[0][0] == rowid


def test_a_process_still_holding_the_old_model_searches_by_words_and_destroys_nothing(stocked, isolated_home):
    old = stocked.embedder
    with Vault.open(isolated_home, os.environ["MEMOS_PASSPHRASE"], embedder=old) as other:
        assert other.knn(old.embed(["zebras"])[0], 3)
        stocked.switch_embedder(OtherModel())
        assert other.embedder_is_stale()
        assert other.knn(old.embed(["zebras"])[0], 3) == []
        other.add("a note written by the stale process")
    assert stocked.vector_count() == 5
    assert stocked.pending_embeddings() == 1  # waits for the new model
    assert stocked.embed_pending() == 1 and stocked.vector_count() == 6


def test_a_switch_rebuilds_the_passage_vectors_of_long_memories_with_the_new_model(stocked):
    long = stocked.add("\n".join(f"Line {i}: the heron fishes by the old mill at dawn." for i in range(40)))
    with_passages = stocked.index_counts()
    assert with_passages["passages"] > 0 and with_passages["vectors"] > with_passages["memories"]
    new = OtherModel()
    stocked.switch_embedder(new)
    assert stocked.derive_pending() >= 1  # the passages' vectors went with the old model's tables
    stocked.rederive()
    rebuilt = stocked.index_counts()
    assert rebuilt["vectors"] == with_passages["vectors"] and stocked.derive_pending() == 0
    hit = stocked.knn(new.embed(["heron old mill dawn"])[0], 1)
    assert hit and hit[0][0] == stocked._rowid(long.id)
