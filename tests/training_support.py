"""Shared pieces of the parameter-memory tests: facts, and one small real training run per session.

The run is a real MLX LoRA training on the generated tiny model (the runtime's `testmodels`),
cached for the session because CPU MLX is slow; tests that need their own run train their own.
"""

import functools

from memos_desktop.runtime import testmodels as tm
from memos_desktop.training.data import Fact, build_dataset
from memos_desktop.training.trainer import MLXTrainer, TrainConfig
from memos_desktop.vault.store import content_hash

PEOPLE = ["Alvarez", "Bergman", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jensen"]
ROLES = ["dentist", "plumber", "landlord", "doctor", "accountant", "tailor", "barber", "mechanic", "lawyer", "vet"]
CONFIG = TrainConfig(iters=40, rank=4, checkpoint_every=10)


def fact_texts(n: int = 8, offset: int = 0) -> list[str]:
    return [
        f"My {ROLES[(i + offset) % 10]} is {PEOPLE[(i * 3 + offset) % 10]} on {PEOPLE[i % 10]} Street, number {i + 3}."
        for i in range(n)
    ]


def facts(n: int = 8, offset: int = 0) -> list[Fact]:
    return [Fact(f"f{i}", 1, content_hash(text), text) for i, text in enumerate(fact_texts(n, offset))]


@functools.lru_cache(maxsize=4)
def trained(offset: int = 0):
    """(weights, evaluation-ready trainer metrics, n_layers) of a real run on the tiny model."""
    from memos_desktop.training import evaluate as ev

    dataset = build_dataset(facts(offset=offset))
    trainer = MLXTrainer(tm.tiny_mlx())
    result = trainer.train(dataset, CONFIG)
    evaluation = ev.evaluate(trainer, dataset)
    n_layers = trainer.n_layers
    trainer.close()
    return result.weights, evaluation, n_layers
