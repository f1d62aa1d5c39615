"""The chat loop on a real vault: retrieval → schedule → streamed answer with citations → stored
turns → MemReader; resuming; no model; bad input; cancel and crash keep nothing."""

import json
import threading

import pytest

from memos_desktop.errors import MemosError, ModelError
from memos_desktop.operation.turn import MAX_MESSAGE_CHARS, NO_MODEL, Assistant


@pytest.fixture
def memories(vault):
    pinned = vault.add("The user's name is Ada", tags=["memory"], pinned=True)
    sister = vault.add("Ada's sister Ana lives in Lyon", tags=["memory"])
    note = vault.add(
        "Book the 9:40 train to the airport",
        title="trip.md §Flights",
        source={"path": "notes/trip.md", "heading": "Flights", "lines": [12, 20]},
    )
    return pinned, sister, note


def chat_cubes(vault):
    return sorted(vault.cubes(tag="chat"), key=lambda c: (c.source["turn_id"], c.source["role"] != "user"))


def test_a_turn_streams_the_answer_cites_memories_and_stores_both_turns(vault, memories, scripted_llm):
    pinned, sister, note = memories
    llm = scripted_llm(answers=["Your sister lives in Lyon [2]."])
    assistant = Assistant(vault, llm, activation=False)
    conv = assistant.new_conversation()
    pieces = []
    result = assistant.turn(conv, "Where does my sister live?", on_token=pieces.append)
    assert "".join(pieces) == result.answer == "Your sister lives in Lyon [2]."
    assert len(pieces) > 1
    by_id = {c.cube_id: c for c in result.citations}
    assert by_id[pinned.id].n == 1 and by_id[pinned.id].tier == "prefix"
    assert by_id[sister.id].cited and by_id[sister.id].n == 2
    assert not by_id[pinned.id].cited
    user, answer = chat_cubes(vault)
    assert (user.content, user.source) == (
        "Where does my sister live?",
        {"conversation": conv.id, "turn_id": 1, "role": "user"},
    )
    assert answer.meta["cites"] == [sister.id]
    assert "[1] The user's name is Ada" in llm.prompts[0]  # the pinned memory is in the system prompt


def test_a_note_chunk_is_cited_with_its_file_and_lines(vault, memories, scripted_llm):
    result = Assistant(vault, scripted_llm(answers=["Take the 9:40 train."]), activation=False).turn(
        Assistant(vault).new_conversation(), "When is my train to the airport?"
    )
    note = next(c for c in result.citations if c.cube_id == memories[2].id)
    assert note.where == "notes/trip.md §Flights, lines 12–20"


def test_every_scheduling_decision_of_a_turn_is_recorded(vault, memories, scripted_llm):
    assistant = Assistant(vault, scripted_llm(answers=["ok"]), activation=False)
    conv = assistant.new_conversation()
    assistant.turn(conv, "Where does my sister live?")
    decisions = assistant.scheduler.decisions(turn_id=f"{conv.id}:1")
    assert {d["decision"] for d in decisions} >= {"prefix", "prompt"}


def test_a_conversation_resumes_with_its_turns_in_order(vault, scripted_llm):
    assistant = Assistant(vault, scripted_llm(answers=["one", "two"]), activation=False)
    conv = assistant.new_conversation()
    assistant.turn(conv, "first question")
    assistant.turn(conv, "second question")
    (listed,) = assistant.conversations()
    assert (listed["id"], listed["turns"], listed["title"]) == (conv.id, 2, "first question")
    resumed = Assistant(vault).resume(conv.id)
    assert [(t["turn"], t["role"], t["content"]) for t in resumed.turns] == [
        (1, "user", "first question"),
        (1, "assistant", "one"),
        (2, "user", "second question"),
        (2, "assistant", "two"),
    ]
    llm = scripted_llm(answers=["three"])
    Assistant(vault, llm, activation=False).turn(resumed, "third")
    assert "second question" in llm.prompts[0] and "two" in llm.prompts[0]
    assert resumed.turns[-1]["turn"] == 3


def test_each_stored_turn_carries_the_turn_before_it_as_context(vault, scripted_llm):
    assistant = Assistant(vault, scripted_llm(answers=["Porto, in May.", "Yes, it was amazing!"]), activation=False)
    conv = assistant.new_conversation()
    assistant.turn(conv, "Where was my marathon?")
    assistant.turn(conv, "Did I enjoy it?")
    contexts = [(c.content, c.meta["context"]) for c in chat_cubes(vault)]
    assert contexts == [
        ("Where was my marathon?", ""),
        ("Porto, in May.", "Where was my marathon?"),
        ("Did I enjoy it?", "Porto, in May."),
        ("Yes, it was amazing!", "Did I enjoy it?"),
    ]


def test_the_reader_runs_after_the_answer_and_its_memories_carry_the_turn(vault, scripted_llm):
    llm = scripted_llm(
        answers=["Congratulations!"],
        extractions={
            "Lyon": '{"memories": [{"op": "add", "text": "The user moved to Lyon", "kind": "fact", '
            '"when": "", "ref": 0}]}'
        },
    )
    assistant = Assistant(vault, llm, activation=False)
    conv = assistant.new_conversation()
    result = assistant.turn(conv, "I moved to Lyon")
    (op,) = result.ops
    assert op.op == "ADD"
    assert vault.get(op.cube_id).source == {"conversation": conv.id, "turn_id": 1, "role": "user"}


def test_without_a_model_chat_explains_how_to_add_one_and_still_finds_memories(vault, memories):
    assistant = Assistant(vault)
    result = assistant.turn(assistant.new_conversation(), "Where does my sister live?")
    assert result.answer == NO_MODEL and "model add" in result.answer
    assert memories[1].id in [c.cube_id for c in result.citations]
    assert not result.stored and chat_cubes(vault) == []


def test_memory_commands_work_without_a_model(vault):
    assistant = Assistant(vault)
    result = assistant.turn(assistant.new_conversation(), "/remember I take my coffee black")
    assert result.answer.startswith("Remembered: I take my coffee black")
    assert vault.cubes(tag="memory")[0].content == "I take my coffee black"


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x07\x1b"])
def test_an_empty_message_is_a_clear_error(vault, scripted_llm, text):
    assistant = Assistant(vault, scripted_llm())
    with pytest.raises(MemosError, match="empty"):
        assistant.turn(assistant.new_conversation(), text)


def test_control_characters_are_removed_from_messages_and_answers(vault, scripted_llm):
    llm = scripted_llm(answers=["fine\x1b[2J\x07 thanks"])
    assistant = Assistant(vault, llm, activation=False)
    result = assistant.turn(assistant.new_conversation(), "hello\x1b]0;title\x07 there\x00")
    user, answer = chat_cubes(vault)
    assert user.content == "hello]0;title there"
    assert result.answer == answer.content == "fine[2J thanks"


def test_a_100_kb_paste_is_cut_to_fit_the_context_but_stored_whole(vault, scripted_llm):
    paste = "".join(f"line {i}: {'x' * 90}\n" for i in range(1000))  # ~100 kB
    llm = scripted_llm(answers=["Long!"])
    assistant = Assistant(vault, llm, activation=False)
    assistant.turn(assistant.new_conversation(), paste)
    assert len(llm.prompts[0]) < llm.n_ctx
    assert "characters left out" in llm.prompts[0] and "line 0:" in llm.prompts[0] and "line 999:" in llm.prompts[0]
    assert chat_cubes(vault)[0].content == paste.strip()


def test_a_message_over_the_limit_is_refused(vault, scripted_llm):
    assistant = Assistant(vault, scripted_llm())
    with pytest.raises(MemosError, match="too long"):
        assistant.turn(assistant.new_conversation(), "x" * (MAX_MESSAGE_CHARS + 1))


def test_cancel_mid_answer_keeps_nothing(vault, memories, scripted_llm):
    cancel = threading.Event()
    assistant = Assistant(vault, scripted_llm(answers=["a long answer " * 20]), activation=False)
    conv = assistant.new_conversation()
    seen = []

    def on_token(piece):
        seen.append(piece)
        if len(seen) == 5:
            cancel.set()

    before = vault.stats()["cubes"]
    result = assistant.turn(conv, "Tell me everything", on_token=on_token, cancel=cancel)
    assert not result.stored and len(result.answer) < len("a long answer " * 20)
    assert vault.stats()["cubes"] == before and conv.turns == []
    assert assistant.conversations() == []


def test_a_model_crash_mid_stream_is_one_error_and_keeps_nothing(vault, memories, scripted_llm):
    assistant = Assistant(vault, scripted_llm(answers=["this will break"], crash_after=4), activation=False)
    conv = assistant.new_conversation()
    before = vault.stats()["cubes"]
    with pytest.raises(ModelError, match="stopped while answering"):
        assistant.turn(conv, "hello", on_token=lambda piece: None)
    assert vault.stats()["cubes"] == before and conv.turns == []


def test_a_model_crash_during_extraction_keeps_the_exchange(vault, scripted_llm):
    assistant = Assistant(vault, scripted_llm(answers=["fine"], crash_extraction=True), activation=False)
    result = assistant.turn(assistant.new_conversation(), "I moved to Lyon")
    assert result.stored and "failed during extraction" in result.extraction.error
    assert [c.source["role"] for c in chat_cubes(vault)] == ["user", "assistant"]


@pytest.fixture(scope="module")
def tiny_backend():
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.testmodels import tiny_gguf

    backend = load_backend(tiny_gguf(seed=0), LoadSettings(n_ctx=2048))
    yield backend
    backend.close()


def test_a_turn_on_a_generated_model_serves_the_prefix_from_activation_memory_next_time(vault, memories, tiny_backend):
    from memos_desktop.runtime import LoadSettings, load_backend
    from memos_desktop.runtime.testmodels import tiny_gguf

    first = Assistant(vault, tiny_backend, answer_tokens=16, temperature=0.0)
    result = first.turn(first.new_conversation(), "Where does my sister live?")
    assert result.stored and result.timings["prefix_computed_tokens"] > 0
    assert vault.cubes(kind="activation")
    fresh = load_backend(tiny_gguf(seed=0), LoadSettings(n_ctx=2048))
    try:
        second = Assistant(vault, fresh, answer_tokens=16, temperature=0.0)
        again = second.turn(second.new_conversation(), "Where does my sister live?")
    finally:
        fresh.close()
    assert again.timings["prefix_restored_tokens"] == result.timings["prefix_computed_tokens"]
    assert again.stored
    json.dumps(again.timings)


def test_assistant_settings_fill_defaults_ignore_unknown_keys_and_round_trip(vault):
    from memos_desktop.operation.turn import AssistantSettings

    assert AssistantSettings.load(vault) == AssistantSettings()
    vault.set_setting(AssistantSettings.SETTING, {"temperature": 0.2, "retired_option": 1})
    loaded = AssistantSettings.load(vault)
    assert loaded.temperature == 0.2 and loaded.answer_tokens == AssistantSettings().answer_tokens
    AssistantSettings(answer_tokens=64, extract=False).save(vault)
    assert AssistantSettings.load(vault) == AssistantSettings(answer_tokens=64, extract=False)
    assistant = Assistant(vault)
    assert (
        (assistant.answer_tokens, assistant.temperature)
        == (512, 0.7)
        == (
            AssistantSettings().answer_tokens,
            AssistantSettings().temperature,
        )
    )
