"""The shared numpy sampler (both runtimes): penalties on recent tokens, min-p, greedy; the
turn settings that choose it; and the turn pipeline's guards against a model that loops,
never emits its end token, or emits invalid UTF-8."""

import dataclasses
import typing

import numpy as np
import pytest

from memos_desktop.errors import MemosError
from memos_desktop.operation.turn import (
    Assistant,
    TurnOverrides,
    TurnSettings,
    load_settings,
    looping,
    save_settings,
)
from memos_desktop.runtime.base import Sampler, Sampling, catalogue_sampling


def test_greedy_picks_the_best_token_and_a_repeat_penalty_moves_it_off_a_repeated_one():
    logits = np.array([1.0, 3.0, 2.9, -1.0])
    assert Sampler(Sampling())(logits, recent=[1, 1]) == 1  # no penalty by default
    assert Sampler(Sampling(repeat_penalty=1.3))(logits, recent=[1]) == 2
    assert Sampler(Sampling(repeat_penalty=1.3))(logits, recent=[0]) == 1  # only tokens seen are penalised


def test_the_penalty_only_looks_at_the_last_tokens_and_presence_is_a_flat_cost():
    logits = np.array([0.0, 2.0, 1.5])
    assert Sampler(Sampling(repeat_penalty=2.0, penalty_last_n=2))(logits, recent=[1, 0, 0]) == 1
    assert Sampler(Sampling(presence_penalty=1.0))(logits, recent=[1]) == 2


def test_a_negative_logit_is_pushed_further_down_by_the_repeat_penalty():
    logits = np.array([-1.0, -1.2])
    assert Sampler(Sampling(repeat_penalty=1.5))(logits, recent=[0]) == 1


def test_min_p_keeps_only_tokens_near_the_best_one():
    logits = np.array([5.0, 4.9, 0.0, -2.0])
    picks = {Sampler(Sampling(temperature=1.0, min_p=0.5, seed=s))(logits) for s in range(200)}
    assert picks == {0, 1}
    wide = {Sampler(Sampling(temperature=5.0, seed=s))(logits) for s in range(400)}
    assert {2, 3} & wide  # without min-p the unlikely tokens do come up at a high temperature


def test_sampling_is_reproducible_from_its_seed():
    logits = np.linspace(0, 1, 50)
    draw = [Sampler(Sampling(temperature=1.0, top_p=0.9, min_p=0.05, seed=7))(logits) for _ in range(2)]
    assert draw[0] == draw[1]


def test_settings_defaults_live_in_one_place_and_round_trip_through_the_vault(vault):
    assert load_settings(vault) == TurnSettings()
    custom = TurnSettings(temperature=0.0, sampling="custom", repeat_penalty=1.3, answer_tokens=64)
    save_settings(vault, custom)
    assert load_settings(vault) == custom
    with pytest.raises(MemosError, match="temperature must be between 0 and 2"):
        save_settings(vault, TurnSettings(temperature=5))


def test_the_overrides_an_assistant_takes_are_exactly_the_settings_fields():
    fields = {f.name: f.type for f in dataclasses.fields(TurnSettings)}
    assert typing.get_type_hints(TurnOverrides) == fields


def test_old_or_damaged_stored_settings_fall_back_to_the_defaults(vault):
    vault.set_setting("assistant", {"answer_tokens": 256, "temperature": "hot", "unknown": 1})
    assert load_settings(vault) == TurnSettings(answer_tokens=256)


def test_recommended_sampling_comes_from_the_model_and_custom_settings_ignore_it(vault, scripted_llm):
    llm = scripted_llm()
    llm.sampling_hints = lambda: {"temperature": 0.2, "top_p": 0.8}
    recommended = Assistant(vault, llm).sampling()
    assert (recommended.temperature, recommended.top_p, recommended.repeat_penalty) == (0.2, 0.8, 1.15)
    custom = Assistant(vault, llm, sampling="custom").sampling()
    assert (custom.temperature, custom.top_p) == (TurnSettings().temperature, TurnSettings().top_p)
    assert Assistant(vault, scripted_llm()).sampling().temperature == TurnSettings().temperature > 0


def test_without_a_catalogue_entry_there_is_no_catalogue_sampling():
    assert catalogue_sampling(None) == {}
    assert catalogue_sampling({"name": "surely-not-in-any-catalogue", "path": "/x/none.gguf"}) == {}


def test_a_loop_is_a_short_pattern_repeated_or_a_handful_of_tokens_reused():
    assert looping([7] * 96)
    assert looping([1, 2, 3] * 40)
    listing = [t for i in range(40) for t in (50, 51, 10 + i % 10, 52)]  # "A-1, A-2, A-3, …"
    assert looping(listing)
    assert not looping(list(range(200)))
    assert not looping([1, 2, 3] * 10)  # too short to tell


class ByteLLM:
    """A model whose tokens are raw bytes, for the turn pipeline's guards: it never emits an end
    token and, when asked, emits bytes that are not UTF-8."""

    runtime = "scripted"
    n_ctx = 4096
    path = __import__("pathlib").Path("bytes.gguf")

    def __init__(self, pattern: bytes):
        self.pattern = pattern

    def chat_prompt(self, messages, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + (
            "<assistant>" if add_generation_prompt else ""
        )

    def tokenize(self, text):
        return list(text.encode())

    def detokenize(self, tokens):
        return bytes(tokens).decode("utf-8", errors="replace")

    def count_tokens(self, text):
        return len(text.encode())

    def generate_tokens(self, tokens, sampling, cancel=None):
        for i in range(sampling.max_tokens):  # never an end token: only the budget stops it
            if cancel is not None and cancel.is_set():
                return
            yield self.pattern[i % len(self.pattern)]


def test_a_model_emitting_invalid_utf8_forever_cannot_hang_or_crash_a_turn(vault):
    assistant = Assistant(vault, ByteLLM(b"\xff\xfe\xc3"), activation=False, answer_tokens=64)
    result = assistant.turn(assistant.new_conversation(), "hello")
    assert result.stored and result.stop_reason == "length"
    assert set(result.answer) == {"\ufffd"}


def test_a_model_that_never_ends_is_stopped_by_the_loop_guard_long_before_the_budget(vault):
    assistant = Assistant(vault, ByteLLM(b"la "), activation=False, answer_tokens=4000)
    result = assistant.turn(assistant.new_conversation(), "sing")
    assert result.stop_reason == "loop" and len(result.answer) < 200
