"""MemReader on a real vault: commands without a model, time expressions, ADD/UPDATE/DELETE/NOOP,
contradictions, and extraction that stays valid JSON even from a random-weight model."""

import json
from datetime import UTC, datetime

import pytest

from memos_desktop.errors import MemosError, ModelError, NotFound
from memos_desktop.operation.reader import EXTRACTION_SCHEMA, MemReader, parse_extraction, resolve_time
from memos_desktop.runtime.guided import GuidedJSON

FRIDAY = datetime(2026, 11, 20, 15, 0, tzinfo=UTC).timestamp()  # a Friday afternoon


def day(y, m, d) -> float:
    return datetime(y, m, d, tzinfo=UTC).timestamp()


def extraction(*facts) -> str:
    items = [{"op": op, "text": text, "kind": "fact", "when": when, "ref": ref} for op, text, when, ref in facts]
    return json.dumps({"memories": items}, ensure_ascii=False)


def test_last_tuesday_resolves_to_a_date_relative_to_the_message_time():
    assert resolve_time("I met Anna last Tuesday", FRIDAY) == day(2026, 11, 17)
    assert resolve_time("I like tea", FRIDAY) is None


def test_remember_command_stores_a_memory_without_a_model(vault):
    op = MemReader(vault).command("/remember I adopted a cat yesterday #pets", at=FRIDAY)
    cube = vault.get(op.cube_id)
    assert op.op == "ADD"
    assert cube.content == "I adopted a cat yesterday #pets"
    assert {"memory", "pets"} <= set(cube.tags)
    assert datetime.fromtimestamp(cube.valid_from, UTC).date().isoformat() == "2026-11-19"


def test_remembering_the_same_fact_twice_is_a_noop(vault):
    reader = MemReader(vault)
    first = reader.command("/remember My passport number ends in 42")
    second = reader.command("/remember my passport number ends in 42")
    assert (second.op, second.cube_id) == ("NOOP", first.cube_id)
    assert len(vault.cubes(tag="memory")) == 1


def test_forget_command_by_id_prefix_tombstones_and_restore_brings_it_back(vault):
    reader = MemReader(vault)
    added = reader.command("/remember I am allergic to peanuts")
    op = reader.command(f"/forget {added.cube_id[:10]}")
    assert op.op == "DELETE"
    with pytest.raises(NotFound):
        vault.get(added.cube_id)
    vault.restore(added.cube_id)
    assert vault.get(added.cube_id).content == "I am allergic to peanuts"


def test_forget_command_by_text_forgets_the_best_matching_memory(vault):
    reader = MemReader(vault)
    keep = reader.command("/remember My bike is green")
    gone = reader.command("/remember I am allergic to peanuts")
    assert reader.command("/forget allergic to peanuts").cube_id == gone.cube_id
    assert [c.id for c in vault.cubes(tag="memory")] == [keep.cube_id]


def test_forget_of_something_never_remembered_is_a_clear_error(vault):
    with pytest.raises(NotFound, match="No memory matches"):
        MemReader(vault).command("/forget quantum chromodynamics")


def test_pin_and_ttl_commands_change_the_memory(vault):
    reader = MemReader(vault)
    added = reader.command("/remember The wifi password is on the fridge")
    reader.command(f"/pin {added.cube_id}")
    reader.command(f"/ttl {added.cube_id} 2h")
    cube = vault.get(added.cube_id)
    assert cube.pinned
    assert cube.expires_at == pytest.approx(cube.updated_at + 7200, abs=5)
    reader.command(f"/ttl {added.cube_id} never")
    assert vault.get(added.cube_id).expires_at is None


@pytest.mark.parametrize(
    "command, message",
    [
        ("/ttl 01ABCDEF soon", "Cannot read the duration"),
        ("/remember", "needs an argument"),
        ("/frobnicate x", "Unknown"),
    ],
)
def test_bad_commands_are_one_line_errors(vault, command, message):
    with pytest.raises(MemosError, match=message):
        MemReader(vault).command(command)


def test_extracted_fact_is_added_with_its_date_and_turn_provenance(vault, scripted_llm):
    llm = scripted_llm(extractions={"Lyon": extraction(("add", "The user moved to Lyon", "last Tuesday", 0))})
    result = MemReader(vault, llm).read(
        "I moved to Lyon last Tuesday", "Nice!", FRIDAY, {"conversation": "c1", "turn_id": 3}
    )
    (op,) = result.ops
    cube = vault.get(op.cube_id)
    assert (op.op, cube.content, cube.valid_from) == ("ADD", "The user moved to Lyon", day(2026, 11, 17))
    assert cube.source == {"conversation": "c1", "turn_id": 3}
    assert vault.history(cube.id)[0]["actor"] == "reader"


def test_refined_fact_updates_the_existing_memory_as_a_new_version(vault, scripted_llm):
    old = vault.add("The user works at a bakery", tags=["memory"])
    llm = scripted_llm(
        extractions={"bakery": extraction(("update", "The user works at the bakery on Rue Mercière", "", 1))}
    )
    (op,) = MemReader(vault, llm).read("My bakery is on Rue Mercière", "ok", FRIDAY, {}).ops
    assert (op.op, op.cube_id) == ("UPDATE", old.id)
    assert [v["snapshot"]["content"] for v in vault.history(old.id)] == [
        "The user works at a bakery",
        "The user works at the bakery on Rue Mercière",
    ]


def test_contradiction_archives_the_old_fact_with_a_link_to_the_new_one(vault, scripted_llm):
    old = vault.add("The user lives in Paris", tags=["memory"])
    llm = scripted_llm(extractions={"Lyon": extraction(("contradict", "The user lives in Lyon now", "", 1))})
    (op,) = MemReader(vault, llm).read("I don't live in Paris, I live in Lyon", "ok", FRIDAY, {}).ops
    assert op.op == "ADD" and op.target == old.id
    archived = vault.get(old.id, include_inactive=True)
    assert archived.state == "archived" and archived.meta["archived_reason"] == f"superseded by {op.cube_id}"
    assert {"src": old.id, "dst": op.cube_id, "rel": "superseded_by"} in [
        {k: v for k, v in link.items() if k != "at"} for link in vault.links(old.id)
    ]
    assert vault.get(op.cube_id).content == "The user lives in Lyon now"


def test_delete_tombstones_the_related_memory(vault, scripted_llm):
    old = vault.add("The user has a cat named Tom", tags=["memory"])
    llm = scripted_llm(extractions={"Tom": extraction(("delete", "The user no longer has a cat named Tom", "", 1))})
    (op,) = MemReader(vault, llm).read("Tom the cat went to my sister for good", "sorry", FRIDAY, {}).ops
    assert (op.op, op.cube_id) == ("DELETE", old.id)
    assert vault.get(old.id, include_inactive=True).state == "deleted"


def test_delete_pointing_at_an_unrelated_memory_is_ignored(vault, scripted_llm):
    old = vault.add("The user likes jazz", tags=["memory"])
    llm = scripted_llm(extractions={"jazz": extraction(("delete", "Rain is expected on Sunday", "", 1))})
    (op,) = MemReader(vault, llm).read("jazz and the rain on Sunday", "ok", FRIDAY, {}).ops
    assert op.op == "NOOP"
    assert vault.get(old.id).state == "active"


def test_a_fact_already_known_is_a_noop(vault, scripted_llm):
    old = vault.add("The user likes jazz", tags=["memory"])
    llm = scripted_llm(extractions={"jazz": extraction(("add", "The user likes jazz", "", 0))})
    (op,) = MemReader(vault, llm).read("I like jazz", "ok", FRIDAY, {}).ops
    assert (op.op, op.cube_id) == ("NOOP", old.id)
    assert len(vault.cubes(tag="memory")) == 1


def test_model_writing_garbage_still_yields_valid_json_and_stores_nothing_harmful(vault, scripted_llm):
    old = vault.add("The user likes jazz", tags=["memory"])
    garbage = '{"memories": [{"op": "explode\\u0000", "text": "\x1b[2J", "kind": 7}]]]}'
    llm = scripted_llm(extractions={"jazz": garbage})
    result = MemReader(vault, llm).read("jazz", "ok", FRIDAY, {})
    assert result.error is None
    json.loads(result.raw)
    assert vault.get(old.id).state == "active"
    assert all("\x1b" not in c.content for c in vault.cubes())


@pytest.mark.parametrize(
    "raw",
    ['{"memories": [', "not json", '{"memories": "x"}', '{"memories": [{"op": "add"}]}', "[" * 5000],
)
def test_invalid_extraction_json_is_rejected_whole(raw):
    with pytest.raises(ModelError):
        parse_extraction(raw, 3)


def test_a_model_crash_during_extraction_is_reported_and_falls_back_to_the_users_statements(vault, scripted_llm):
    result = MemReader(vault, scripted_llm(crash_extraction=True)).read(
        "Hi! I moved to Lyon. Can you recommend a bakery?", "Try Rue Mercière, I moved there too.", FRIDAY, {}
    )
    assert "failed during extraction" in result.error and result.fallback
    assert [c.content for c in vault.cubes(tag="memory")] == ["I moved to Lyon."]


def test_without_a_model_only_the_users_first_person_statements_are_read(vault):
    result = MemReader(vault).read(
        "My sister lives in Lyon and I prefer window seats. Where should I sit?", "A-1, A-2, A-3", FRIDAY, {}
    )
    assert result.error == "no model loaded"
    assert sorted(c.content for c in vault.cubes(tag="memory")) == [
        "I prefer window seats.",
        "My sister lives in Lyon.",
    ]
    assert all(c.meta["quote"] == c.content for c in vault.cubes(tag="memory"))


@pytest.fixture(scope="module")
def random_gguf():
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.testmodels import tiny_gguf

    backend = load_backend(tiny_gguf(seed=3), LoadSettings(n_ctx=2048))
    yield backend
    backend.close()


SLOTS = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "mood": {"enum": ["happy", "sad", "calm"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
        "items": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 10}},
    },
}


@pytest.mark.parametrize("message", ["I moved to Lyon last Tuesday", '\x00\x1b]0;{"\\ ]]]', "ü" * 300])
def test_guided_json_from_a_random_weight_model_always_parses_and_fits_the_schema(random_gguf, message):
    messages = [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": message}]
    data = json.loads(GuidedJSON(random_gguf, messages).generate(SLOTS, 256))
    assert set(data) == {"name", "mood", "count", "items"}
    assert isinstance(data["name"], str) and len(data["name"]) <= 40 and data["name"].isprintable()
    assert data["mood"] in ("happy", "sad", "calm") and 0 <= data["count"] <= 9
    assert len(data["items"]) <= 2
    raw = GuidedJSON(random_gguf, messages).generate(EXTRACTION_SCHEMA, 256)
    assert isinstance(parse_extraction(raw, 0), list)


GRAMMAR_SLOTS = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "mood": {"enum": ["happy", "sad", "calm"]},
        "count": {"enum": list(range(10))},
        "items": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 10}},
    },
    "required": ["name", "mood", "count", "items"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("message", ["I moved to Lyon last Tuesday", '\x00\x1b]0;{"\\ ]]]', "ü" * 300])
def test_llama_cpp_json_from_a_random_weight_model_is_held_to_the_schema_by_its_grammar(random_gguf, message):
    messages = [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": message}]
    prompt = random_gguf.tokenize(random_gguf.chat_prompt(messages))
    data = json.loads(random_gguf.generate_json(prompt, GRAMMAR_SLOTS, 400))
    assert set(data) == {"name", "mood", "count", "items"}
    assert isinstance(data["name"], str) and len(data["name"]) <= 40
    assert data["mood"] in ("happy", "sad", "calm") and data["count"] in range(10)
    assert len(data["items"]) <= 2 and all(isinstance(i, str) and len(i) <= 10 for i in data["items"])
    assert random_gguf.cached_tokens()[: len(prompt)] == prompt  # the KV cache is still tracked: reused next time


def test_an_extraction_cut_off_by_its_token_budget_falls_back_to_the_deterministic_path(
    vault, random_gguf, monkeypatch
):
    import memos_desktop.operation.reader as reader

    monkeypatch.setattr(reader, "EXTRACT_MAX_TOKENS", 2)
    result = MemReader(vault, random_gguf).read("I like jazz and I moved last Tuesday", "ok", FRIDAY, {})
    assert "not valid JSON" in result.error and result.fallback
    assert sorted(c.content for c in vault.cubes(tag="memory")) == ["I like jazz.", "I moved last Tuesday."]


def test_reading_with_a_random_weight_model_never_breaks_the_vault(vault, random_gguf):
    vault.add("The user likes jazz", tags=["memory"])
    result = MemReader(vault, random_gguf).read("I like jazz and I moved last Tuesday", "ok", FRIDAY, {})
    assert result.error is None
    json.loads(result.raw)
    assert vault.verify_audit() > 0


def test_the_fixed_extraction_instructions_are_served_from_activation_memory(vault, random_gguf):
    other = [{"role": "system", "content": "Something else entirely."}, {"role": "user", "content": "hi"}]
    GuidedJSON(random_gguf, other).generate(SLOTS, 16)  # the KV cache holds another prompt
    reader = MemReader(vault, random_gguf, activation=True)
    reader.read("I like jazz", "ok", FRIDAY, {})
    (state,) = vault.cubes(kind="activation")
    uses = state.access_count
    GuidedJSON(random_gguf, other).generate(SLOTS, 16)
    reader.read("I moved to Lyon", "ok", FRIDAY, {})
    assert [c.id for c in vault.cubes(kind="activation")] == [state.id]
    assert vault.get(state.id, touch=False).access_count == uses + 1  # restored, not recomputed


def test_stopping_an_extraction_writes_nothing(vault, scripted_llm):
    import threading

    cancel = threading.Event()
    cancel.set()
    llm = scripted_llm(extractions={"Lyon": extraction(("add", "The user moved to Lyon", "", 0))})
    result = MemReader(vault, llm).read("I moved to Lyon", "ok", FRIDAY, {}, cancel)
    assert result.ops == [] and result.error == "stopped before any memory was written"
    assert vault.cubes(tag="memory") == []


def test_guided_json_from_a_random_weight_mlx_model_parses_too():
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.testmodels import tiny_mlx

    backend = load_backend(tiny_mlx(seed=3), LoadSettings(n_ctx=2048))
    try:
        messages = [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "user", "content": "I moved last Tuesday"},
        ]
        data = json.loads(GuidedJSON(backend, messages).generate(SLOTS, 128))
        assert set(data) == {"name", "mood", "count", "items"} and data["mood"] in ("happy", "sad", "calm")
        assert isinstance(parse_extraction(GuidedJSON(backend, messages).generate(EXTRACTION_SCHEMA, 128), 0), list)
    finally:
        backend.close()


@pytest.mark.parametrize(
    "fact, why",
    [
        ("A-1", "a fragment, not a fact"),
        ("A-2, A-3", "a fragment, not a fact"),
        ("Paris", "a fragment, not a fact"),
        ("The user's sister lives in Lyon", "an echo of the user's question"),
        ("The user owns a red bicycle", "only in the assistant's reply"),
        ("The user has three children in Berlin", "not in the user's words"),
    ],
)
def test_facts_not_grounded_in_the_users_words_are_rejected_with_their_reason(vault, scripted_llm, fact, why):
    llm = scripted_llm(extractions={"sister": extraction(("add", fact, "", 0))})
    result = MemReader(vault, llm).read(
        "Where does my sister live, in Lyon?", "She lives in Lyon, and you own a red bicycle.", FRIDAY, {}
    )
    assert result.rejected == [(fact, why)]
    assert vault.cubes(tag="memory") == []  # the question holds no statement for the fallback either


def test_a_grounded_fact_keeps_the_users_sentence_as_its_quote(vault, scripted_llm):
    llm = scripted_llm(extractions={"penicillin": extraction(("add", "The user is allergic to penicillin", "", 0))})
    result = MemReader(vault, llm).read(
        "Good morning. I am allergic to penicillin, sadly. What can I take?", "Ask a doctor.", FRIDAY, {"turn_id": 1}
    )
    (op,) = result.ops
    cube = vault.get(op.cube_id)
    assert cube.content == "The user is allergic to penicillin"
    assert cube.meta["quote"] == "I am allergic to penicillin, sadly."
    assert not result.fallback


def test_a_near_duplicate_read_from_a_turn_updates_the_memory_instead_of_adding_a_second(vault):
    reader = MemReader(vault)
    first = reader.read("I prefer window seats on long trains across the country.", "ok", FRIDAY, {"turn_id": 1})
    again = reader.read("I prefer window seats on long trains across the country!", "ok", FRIDAY, {"turn_id": 2})
    later = reader.read("I prefer aisle seats on long trains across the country.", "ok", FRIDAY, {"turn_id": 3})
    (added,) = first.ops
    assert [op.op for op in again.ops] == ["NOOP"]
    (updated,) = later.ops
    assert (updated.op, updated.cube_id) == ("UPDATE", added.cube_id)
    assert [c.content for c in vault.cubes(tag="memory")] == ["I prefer aisle seats on long trains across the country."]
    assert vault.get(added.cube_id).version == 2
