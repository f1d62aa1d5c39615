"""`bench train --model`: the probe pipeline (GGUF → MLX → LoRA → GGUF adapter → llama.cpp) on the
generated tiny model; the proof on SmolLM2 is the bench itself (minutes of CPU)."""

from memos_desktop.bench import train as bench_train
from memos_desktop.runtime import testmodels as tm
from memos_desktop.training.trainer import TrainConfig


def test_bench_train_model_runs_convert_train_export_and_both_probes_on_a_gguf():
    result = bench_train.run_model(str(tm.tiny_gguf()), TrainConfig(iters=2, rank=2, num_layers=1))
    assert result["iters"] == 2 and result["trained_tokens"] > 0
    assert [r["probe"] for r in result["rows"]] == [p for _, _, p, _ in bench_train.PROBES]
    assert all(isinstance(r["base"], str) and isinstance(r["adapter"], str) for r in result["rows"])
    # a random-weight model knows none of the facts, so the bench cannot pass on it
    assert result["passed"] is False and result["adapter_kb"] > 0


def test_no_probe_question_is_a_training_question():
    dataset = bench_train.probe_dataset()
    trained = {e.question for e in dataset.train}
    assert not trained & {probe for _, _, probe, _ in bench_train.PROBES}
    assert {e.answer for e in dataset.train} == {text for text, _, _, _ in bench_train.PROBES}
