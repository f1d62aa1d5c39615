"""MemOperator search: ranking, filters, access rules, dedupe, context, auditing."""

import time

import pytest

from memos_desktop.operation.search import Filters, Hit, Weights, date_windows, query_terms, search


def ids(hits: list[Hit]) -> list[str]:
    return [h.cube.id for h in hits]


def test_the_matching_memory_ranks_first(vault):
    vault.add("The dentist appointment is on Tuesday at nine")
    wanted = vault.add("My sister Alice lives in Lisbon with her two cats")
    vault.add("Buy oat milk and coffee beans")
    hits = search(vault, "Where does Alice live?")
    assert hits[0].cube.id == wanted.id


def test_hits_carry_per_signal_scores_and_provenance(vault):
    vault.add("Alice moved to Lisbon", source={"path": "notes/family.md", "lines": [3, 4]})
    hit = search(vault, "Alice Lisbon")[0]
    assert {"bm25", "cosine", "rrf"} <= set(hit.signals)
    assert hit.score > 0
    assert hit.citation() == "notes/family.md, lines 3–4"
    assert hit.to_dict()["citation"] == "notes/family.md, lines 3–4"


def test_query_terms_drop_question_words():
    assert query_terms("What did Caroline research in May?") == ["caroline", "research", "may"]


def test_search_without_embedder_is_fts_only(vault):
    vault.embedder = None
    wanted = vault.add("Lisbon trip booked for June")
    hits = search(vault, "When is the Lisbon trip?")
    assert ids(hits) == [wanted.id]
    assert "cosine" not in hits[0].signals


def test_search_ignores_vectors_when_asked(vault):
    vault.add("Lisbon trip booked for June")
    hit = search(vault, "Lisbon trip", use_vectors=False)[0]
    assert "cosine" not in hit.signals and "bm25" in hit.signals


def test_another_profiles_private_cube_is_never_returned(vault):
    bobs = vault.add("Bob's secret salary is high", profile="bob")
    mine = vault.add("My salary review is in March")
    assert ids(search(vault, "salary")) == [mine.id]
    assert ids(search(vault, "salary", profile="bob")) == [bobs.id]


def test_another_profiles_shared_cube_is_returned(vault):
    shared = vault.add("The family wifi password is on the fridge", profile="bob", visibility="shared")
    assert ids(search(vault, "wifi password")) == [shared.id]


def test_expired_cube_is_never_returned(vault):
    vault.add("Parking code 4471 for today", expires_at=time.time() - 1)
    kept = vault.add("Parking at the office needs a badge")
    assert ids(search(vault, "parking code")) == [kept.id]


def test_forgotten_cube_is_never_returned(vault):
    gone = vault.add("Old address: 12 Elm Street")
    vault.forget(gone.id)
    assert search(vault, "address Elm Street") == []


def test_archived_cube_is_never_returned(vault):
    old = vault.add("Gym membership renews in April")
    vault.archive(old.id)
    assert search(vault, "gym membership") == []


def test_visible_match_is_found_behind_many_hidden_ones(vault):
    vault.add_many([dict(content=f"project falcon report {i}", owner="bob") for i in range(300)])
    mine = vault.add("falcon")
    assert ids(search(vault, "project falcon report", k=5)) == [mine.id]


def test_filter_by_kind(vault):
    vault.add("Notes about the falcon launch", kind="plaintext")
    assert search(vault, "falcon launch", filters=Filters(kind="activation")) == []
    assert len(search(vault, "falcon launch", filters=Filters(kind="plaintext"))) == 1


def test_filter_by_tags_needs_every_tag(vault):
    both = vault.add("Falcon budget approved", tags=["work", "budget"])
    vault.add("Falcon budget draft", tags=["work"])
    hits = search(vault, "falcon budget", filters=Filters(tags=["work", "budget"]))
    assert ids(hits) == [both.id]


def test_filter_by_source_path(vault):
    vault.add("Falcon kickoff notes", source={"path": "a.md"})
    wanted = vault.add("Falcon retro notes", source={"path": "b.md"})
    assert ids(search(vault, "falcon notes", filters=Filters(source_path="b.md"))) == [wanted.id]


def test_filter_by_time_window_uses_validity(vault):
    day = 86400.0
    vault.add("Lived in Porto", valid_from=1000 * day, valid_to=2000 * day)
    now = vault.add("Lives in Lisbon", valid_from=3000 * day)
    window = Filters(since=2500 * day, until=3500 * day)
    assert ids(search(vault, "lived lives Porto Lisbon", filters=window)) == [now.id]


def test_near_identical_memories_are_returned_once(vault):
    vault.add("Remember to water the basil plant on the balcony every morning")
    vault.add("Remember to water the basil plant on the balcony every morning!")
    other = vault.add("The basil seeds came from the market")
    hits = search(vault, "basil plant")
    assert len(hits) == 2 and other.id in ids(hits)


def test_context_attaches_neighbouring_turns_of_the_same_chat(vault):
    turns = vault.add_many(
        [
            dict(content=f"turn {i}: " + text, source={"conversation": "c1", "turn_id": f"D1:{i}"})
            for i, text in enumerate(["hello", "what about the concert?", "it was on Friday", "bye"])
        ]
    )
    vault.add("unrelated", source={"conversation": "c2", "turn_id": "D1:1"})
    hit = search(vault, "concert", context=1)[0]
    assert hit.cube.id == turns[1].id
    assert [c.id for c in hit.context] == [turns[0].id, turns[2].id]


def test_when_question_prefers_a_turn_with_a_time_expression(vault):
    vault.add("The concert was amazing, great band")
    dated = vault.add("The concert was amazing, last Friday")
    hit = search(vault, "When was the concert?", use_vectors=False)[0]
    assert hit.cube.id == dated.id and hit.signals["temporal"] == 1.0


def test_search_counts_accesses_and_audits_the_read(vault):
    cube = vault.add("Alice likes green tea")
    search(vault, "green tea")
    assert vault.get(cube.id, touch=False).access_count == 1
    entry = vault.audit_log(limit=1)[0]
    assert entry["action"] == "search" and entry["detail"]["results"] == [cube.id]


def test_search_without_recording_leaves_no_trace(vault):
    cube = vault.add("Alice likes green tea")
    before = len(vault.audit_log(limit=1000))
    search(vault, "green tea", record=False)
    assert vault.get(cube.id, touch=False).access_count == 0
    assert len(vault.audit_log(limit=1000)) == before


def test_query_dates_become_time_windows():
    from datetime import datetime

    ((start, end),) = date_windows("What did Nate cook on 9 November, 2022?")
    assert start < datetime(2022, 11, 9, 12).timestamp() < end
    ((start, end),) = date_windows("What did Nate share in November 2022?")
    assert (end - start) / 86400 == 30
    assert date_windows("What may happen in 5 days?") == []


def test_memory_from_a_date_the_query_names_ranks_first(vault):
    from datetime import datetime

    vault.add("Nate: I cooked pasta", valid_from=datetime(2022, 10, 1, 12).timestamp())
    nov = vault.add("Nate: I cooked pasta again", valid_from=datetime(2022, 11, 9, 12).timestamp())
    hit = search(vault, "What did Nate cook on 9 November, 2022?", use_vectors=False)[0]
    assert hit.cube.id == nov.id and hit.signals["date"] == 1.0


def test_memory_valid_on_a_named_date_is_found_without_a_shared_word(vault):
    """Candidates come from words and vectors, and also from the date a question names."""
    from datetime import datetime

    october = datetime(2022, 10, 1, 12).timestamp()
    # More distractors than either candidate list holds, each nearer the question than the answer.
    stalls = [{"content": f"What happened on the market today, stall {i}", "valid_from": october} for i in range(200)]
    vault.add_many(stalls)
    pup = vault.add("Looky here, a stuffed pup for you!", valid_from=datetime(2022, 11, 9, 18).timestamp())
    question = "What happened on 9 November, 2022?"
    hits = {h.cube.id: h for h in search(vault, question, k=20)}
    assert pup.id in hits and hits[pup.id].signals["date"] == 1.0
    assert pup.id not in ids(search(vault, question, k=20, weights=Weights(dated=0.0)))


def test_a_memory_without_a_validity_date_counts_from_when_it_was_stored(vault):
    """A chat turn has no `valid_from`: asked about the day it was said, it is found by that date."""
    from datetime import datetime

    october = datetime(2022, 10, 1, 12).timestamp()
    stalls = [{"content": f"What happened on the market today, stall {i}", "valid_from": october} for i in range(200)]
    vault.add_many(stalls)
    turn = vault.add("Looky here, a stuffed pup for you!", source={"conversation": "c1", "turn_id": "t1"})
    today = datetime.fromtimestamp(turn.created_at)
    question = f"What happened on {today.day} {today:%B}, {today.year}?"
    hits = {h.cube.id: h for h in search(vault, question, k=20)}
    assert turn.id in hits and hits[turn.id].signals["date"] == 1.0


def test_the_reply_after_a_matching_turn_is_found(vault):
    turns = vault.add_many(
        [
            dict(content=text, source={"conversation": "c1", "turn_id": f"D1:{i}"})
            for i, text in enumerate(["Where did you go on your road trip?", "Woodhaven, Ohio!"])
        ]
    )
    hits = search(vault, "Where did Joanna go for her road trip?", use_vectors=False)
    assert turns[1].id in ids(hits)
    assert hits[ids(hits).index(turns[1].id)].signals["neighbour"] > 0


def test_a_hidden_neighbour_lends_no_score(vault):
    vault.add_many(
        [
            dict(
                content="Where did you go on your road trip?",
                owner="bob",
                source={"conversation": "c1", "turn_id": "D1:0"},
            ),
            dict(content="Woodhaven, Ohio!", source={"conversation": "c1", "turn_id": "D1:1"}),
        ]
    )
    assert search(vault, "road trip", use_vectors=False) == []


def test_query_without_names_drops_them_possessive_or_not():
    from memos_desktop.operation.search import without_names

    assert without_names("What do Melanie's kids like?", {"melanie"}) == "What do kids like?"
    assert without_names("Where has Melanie camped?", {"melanie", "caroline"}) == "Where has camped?"
    assert without_names("Where has Mel camped?", {"melanie"}) == "Where has Mel camped?"


def test_a_query_naming_a_speaker_searches_vectors_without_the_name_too(vault, fake_embedder):
    import numpy as np

    chat = [
        ("Melanie", "Melanie: Caroline, Melanie here, hi Caroline!"),
        ("Caroline", "Caroline: Hi Melanie, Caroline here!"),
        ("Melanie", "Melanie: I signed up for a pottery class, it is therapy for me"),
    ]
    turns = vault.add_many(
        [
            dict(content=text, source={"conversation": "c1", "turn_id": f"D1:{i}", "speaker": who})
            for i, (who, text) in enumerate(chat)
        ]
    )
    query = "What does Melanie do for therapy?"
    hit = next(h for h in search(vault, query) if h.cube.id == turns[2].id)
    # The cosine is to the mean of the query's vector and that of the query without the name.
    both = fake_embedder.embed([query, "What does do for therapy?"]).sum(axis=0)
    blended = both / np.linalg.norm(both)
    target = fake_embedder.embed([turns[2].content])[0]
    assert abs(hit.signals["cosine"] - float(blended @ target)) < 1e-4
    plain = float(fake_embedder.embed([query])[0] @ target)
    assert abs(hit.signals["cosine"] - plain) > 1e-3


def test_weights_are_frozen_and_shared():
    import dataclasses

    import pytest

    from memos_desktop.operation.search import DEFAULT_WEIGHTS

    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_WEIGHTS.link = 0.0
    assert Weights(link=0.0).link == 0.0 and DEFAULT_WEIGHTS.link > 0


def test_topic_vector_cache_is_bounded_and_reused(fake_embedder):
    from memos_desktop.operation.search import TopicVectors

    cache = TopicVectors(size=2)
    calls = []

    class Counting:
        model_id, dim = fake_embedder.model_id, fake_embedder.dim

        def embed(self, texts):
            calls.append(texts)
            return fake_embedder.embed(texts)

    embedder = Counting()
    vector = fake_embedder.embed(["What did Ana paint?"])[0]
    first = cache.get(embedder, "What did Ana paint?", vector, {"ana"})
    again = cache.get(embedder, "What did Ana paint?", vector, {"ana"})
    assert again is first and len(calls) == 1
    for q in ("Ana one", "Ana two", "Ana three"):
        cache.get(embedder, q, vector, {"ana"})
    assert len(cache) == 2


def test_a_long_memory_is_cited_at_the_lines_of_its_best_passage(vault):
    lines = [f"Step {i}: water the plants and check the soil moisture level." for i in range(1, 25)]
    lines[19] = "Step 20: the spare key for the shed is under the blue flowerpot."
    cube = vault.add(
        "\n".join(lines), title="garden.md § Routine", source={"path": "notes/garden.md", "lines": [5, 28]}
    )
    hit = search(vault, "where is the spare key for the shed?")[0]
    assert hit.cube.id == cube.id and hit.passage is not None
    first, last = hit.lines()
    assert 5 <= first <= 24 <= last <= 28  # file line 24 is the content's line 20
    assert hit.citation() == f"notes/garden.md, lines {first}–{last}"
    assert hit.to_dict()["lines"] == [first, last]


def test_a_memory_sharing_a_rare_entity_with_the_first_hits_is_brought_in(vault):
    seed = vault.add("Caroline adopted a greyhound called Biscuit from the Brookfield shelter")
    linked = vault.add("The Brookfield shelter asked us to volunteer on Saturdays")
    for i in range(40):
        vault.add(f"Unrelated errand number {i}: buy bread and pay the electricity bill")
    question = "What did Caroline adopt?"
    with_links = search(vault, question, k=5, weights=Weights(link=1.0))
    without = search(vault, question, k=5, weights=Weights(link=0.0))
    assert with_links[0].cube.id == seed.id
    linked_hit = next(h for h in with_links if h.cube.id == linked.id)
    assert linked_hit.signals["link"] > 0
    assert linked.id not in ids(without)


class CountingEmbedder:
    """The test embedder, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.model_id, self.dim, self.texts = inner, inner.model_id, inner.dim, []

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


def test_a_repeated_query_is_embedded_once(vault):
    vault.add("the zebra grazes in the savanna")
    vault.embedder = counting = CountingEmbedder(vault.embedder)
    first = search(vault, "where does the zebra graze today", record=False)
    again = search(vault, "where does the zebra graze today", record=False)
    assert counting.texts == ["where does the zebra graze today"]
    assert [h.cube.id for h in first] == [h.cube.id for h in again] and first[0].signals["cosine"] > 0


def test_a_failing_embedder_fails_the_search_with_its_error(vault):
    from memos_desktop.errors import EmbedderError

    class Broken(CountingEmbedder):
        def embed(self, texts):
            raise EmbedderError("the model file went away")

    vault.add("the zebra grazes")
    vault.embedder = Broken(vault.embedder)
    with pytest.raises(EmbedderError, match="went away"):
        search(vault, "a query never asked before: zebra", record=False)


def test_link_strengths_times_cosine_keep_the_top_of_scoring_every_memory(vault, fake_embedder):
    """Link expansion scores the strongest links first and stops once no weaker one can reach the
    top n: the top n (and their order) must be those of scoring every linked memory."""
    import random

    from memos_desktop.operation import search as operator

    rng = random.Random(7)
    words = ["harbour", "violin", "orchard", "lantern", "glacier", "saffron", "compass", "meadow"]
    cubes = vault.add_many([dict(content=" ".join(rng.choices(words, k=5))) for _ in range(300)])
    rowids = [vault._rowid(c.id) for c in cubes]
    vector = fake_embedder.embed(["violin orchard lantern"])[0]
    strength = {r: rng.choice([0.5, 1.0, 1.5, 2.0, 4.0]) for r in rowids}
    cosine = vault.similarity(rowids, vector)
    full = {r: s * (1.0 + cosine.get(r, 0.0)) / 2 for r, s in strength.items()}
    reads: list[int] = []
    similarity = vault.similarity

    def counted(batch, vec):
        reads.append(len(batch))
        return similarity(batch, vec)

    vault.similarity = counted
    for n in (1, 10, 25, 400):
        reads.clear()
        pruned = operator._times_cosine(vault, strength, vector, n)
        want = sorted(full.items(), key=lambda item: item[1], reverse=True)[:n]
        assert sorted(pruned.items(), key=lambda item: item[1], reverse=True)[:n] == want
        assert all(pruned[r] == full[r] for r in pruned)
        if n == 1:
            assert sum(reads) < len(rowids)  # stopped early: not every vector was read


def test_a_shared_sessions_search_embeds_the_query_by_the_models_query_path(isolated_home):
    """The MCP server's session shares its embedder between threads (SharedEmbedder); its searches
    must still use the model's query path (MiniLM: the Q8_0 copy on one thread), not the batch model."""
    from memos_desktop.operation import search as operator
    from memos_desktop.operation.session import SharedEmbedder
    from memos_desktop.vault import Vault
    from tests.support import PASSPHRASE, FakeEmbedder

    class QueryPath(FakeEmbedder):
        queries: list[str] = []

        def embed_query(self, texts):
            self.queries.extend(texts)
            return self.embed(texts)

    model = QueryPath()
    with Vault.create(isolated_home, PASSPHRASE, embedder=model) as vault:
        wanted = vault.add("The ferry to Santorini leaves at seven")
        vault.embedder = SharedEmbedder(model)
        operator._query_vectors.clear()
        assert search(vault, "when does the boat leave")[0].cube.id == wanted.id
        assert model.queries == ["when does the boat leave"]
        plain = SharedEmbedder(FakeEmbedder())  # a model without a query path: its batch embed
        assert (plain.embed_query(["x y"]) == FakeEmbedder().embed(["x y"])).all()
