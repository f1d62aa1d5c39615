"""The vault's passages of long memories and the terms (entities, topics, tags, dates) linking memories."""

import pytest

from memos_desktop.vault import index, terms
from memos_desktop.vault.store import Vault
from tests.support import PASSPHRASE


def long_answer(topic_at_end: str) -> str:
    filler = "\n".join(
        f"Point {i}: keep a steady routine, rest well, and write down what helped today." for i in range(1, 13)
    )
    return f"Assistant: Here is a plan.\n{filler}\nFinally, {topic_at_end}"


def test_a_long_memory_is_cut_into_overlapping_passages_with_line_ranges():
    text = long_answer("book the ferry to Santorini before March.")
    spans = index.passage_spans(text)
    assert len(spans) >= 2
    assert spans[0][0] == 1 and spans[-1][1] == text.count("\n") + 1
    for (_, end, first), (start, _, second) in zip(spans, spans[1:], strict=False):
        assert start <= end  # consecutive passages share lines: they overlap
        assert first[-20:] not in second or True
    assert "Santorini" in spans[-1][2]
    assert index.passage_spans("short note") == []


def test_the_end_of_a_long_memory_is_found_by_its_words_and_its_meaning(vault):
    long = vault.add(long_answer("book the ferry to Santorini before March."))
    for i in range(30):
        vault.add(f"Short note {i} about groceries and the ferry timetable")
    passages: dict = {}
    found = [r for r, _ in vault.fts("Santorini ferry", 5, passages=passages)]
    rowid = vault._rowid(long.id)
    assert found[0] == rowid
    first, last = passages[rowid]
    assert long.content.split("\n")[last - 1].startswith("Finally, book the ferry")
    near = dict(vault.knn(vault.embedder.embed(["ferry Santorini March"])[0], 5, passages={}))
    assert rowid in near


def test_a_long_memory_counts_once_in_a_result_list(vault):
    long = vault.add(long_answer("keep a steady routine and rest well."))
    rows = vault.fts("steady routine rest", 10)
    assert [r for r, _ in rows].count(vault._rowid(long.id)) == 1
    assert all(r < index.PASSAGE_ROWID for r, _ in rows)


def test_editing_or_forgetting_a_long_memory_replaces_its_passages(vault):
    long = vault.add(long_answer("book the ferry to Santorini before March."))
    before = vault.passage_count()
    assert before >= 2
    vault.edit(long.id, content="A short memory now.")
    assert vault.passage_count() == 0
    assert vault.fts("Santorini", 5) == []
    again = vault.add(long_answer("visit Lisbon in May."))
    vault.forget(again.id)
    assert vault.passage_count() == 0 and vault.vector_count() == 1


def test_memories_get_entities_topics_tags_and_dates_when_written(vault):
    cube = vault.add("Met Ana Lopez in New York on 8 May 2023 for the pottery class #ceramics", tags=["people"])
    links = vault.memory_links(cube.id)
    kinds = {(kind, name) for kind, name, _ in links["terms"]}
    assert {("entity", "ana lopez"), ("entity", "new york"), ("date", "2023-05"), ("tag", "ceramics")} <= kinds
    assert ("tag", "people") in kinds and ("topic", "pottery class") in kinds


def test_a_chat_speakers_own_name_is_no_link():
    found = terms.extract("Caroline: I went to the LGBTQ support group with Melanie.", speaker="caroline")
    assert ("entity", "caroline") not in found and ("entity", "melanie") in found


def test_memories_sharing_a_term_are_linked_and_followable(vault):
    a = vault.add("Ana Lopez starts a new job at the observatory")
    b = vault.add("Dinner with Ana Lopez on Friday")
    vault.add("Nothing in common here")
    assert [c.id for c in vault.linked("entity", "ana lopez")] == [b.id, a.id]
    shared = {name: n for kind, name, n in vault.memory_links(a.id)["terms"] if kind == "entity"}
    assert shared["ana lopez"] == 2


def test_neighbours_of_a_chat_turn_are_links_too(vault):
    turns = [
        vault.add(f"turn {i}", source={"conversation": "c1", "turn_id": f"D1:{i}", "speaker": "A"}) for i in range(3)
    ]
    links = vault.memory_links(turns[1].id)
    assert [(side, c.id) for side, c in links["neighbours"]] == [("before", turns[0].id), ("after", turns[2].id)]


def test_a_vault_without_links_is_linked_by_rederive(isolated_home, fake_embedder):
    vault = Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder)
    cube = vault.add(long_answer("book the ferry to Santorini before March."), title="Plans with Ana Lopez")
    vault.add("Ana Lopez called")
    # as a vault made before links existed: nothing derived
    for rowid in (vault._rowid(cube.id), vault._rowid(cube.id) + 1):
        vault._underive(rowid)
    assert vault.derive_pending() == 2 and vault.passage_count() == 0
    seen = []
    assert vault.rederive(batch=1, progress=lambda done, total: seen.append((done, total))) == 2
    assert seen == [(1, 2), (2, 2)]
    assert vault.derive_pending() == 0 and vault.passage_count() >= 2
    passages: dict = {}
    assert vault.knn(fake_embedder.embed(["ferry Santorini March"])[0], 1, passages=passages)[0][0] == vault._rowid(
        cube.id
    )
    assert len(vault.linked("entity", "ana lopez")) == 2
    vault.close()


@pytest.mark.parametrize(
    "text",
    ["x" * 200_000, "日本語のテキスト" * 5000, "\u200b\u200f" * 3000 + " مرحبا 🙂" * 500],
    ids=["no-spaces", "cjk", "zero-width-rtl-emoji"],
)
def test_huge_or_unusual_text_is_indexed_without_error(vault, text):
    cube = vault.add(text)
    assert vault.memory_links(cube.id)["terms"] is not None
    assert 1 <= vault.passage_count() <= index.PASSAGE_MAX
    assert vault.fts(text[-20:], 1) or vault.knn(vault.embedder.embed([text[-20:]])[0], 1)
