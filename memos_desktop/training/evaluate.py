"""Evaluation that can fail: does the adapter know the facts, and did it keep the rest intact?

Two measurements on the trainer's own model, with the adapter switched off (the base model) and
on: the mean log-likelihood (nats per token) of each fact's statement given its *held-out*
question, a phrasing the adapter never trained on; and the perplexity of control texts unrelated
to the facts. An adapter passes when the held-out gain reaches `min_gain` and the control
perplexity grows by at most `max_ppl_ratio`. The numbers are reported either way.
"""

from dataclasses import asdict, dataclass

from memos_desktop.training.data import Dataset
from memos_desktop.training.trainer import Trainer

MIN_GAIN = 0.1  # nats per answer token
MAX_PPL_RATIO = 1.25

# Everyday text with no personal facts, per language: what the adapter must not make worse.
CONTROL_TEXTS = {
    "en": [
        "The library opens at nine and closes at six, except on public holidays.",
        "Rain is expected in the afternoon, so the market will move indoors.",
        "She read three chapters before the train finally left the station.",
        "Water boils at a lower temperature high up in the mountains.",
    ],
    "de": [
        "Die Bibliothek öffnet um neun und schließt um sechs, außer an Feiertagen.",
        "Am Nachmittag wird Regen erwartet, deshalb zieht der Markt in die Halle.",
        "Sie las drei Kapitel, bevor der Zug endlich den Bahnhof verließ.",
    ],
    "fr": [
        "La bibliothèque ouvre à neuf heures et ferme à six heures, sauf les jours fériés.",
        "De la pluie est attendue l'après-midi, le marché se tiendra donc à l'intérieur.",
        "Elle a lu trois chapitres avant que le train ne quitte enfin la gare.",
    ],
    "es": [
        "La biblioteca abre a las nueve y cierra a las seis, salvo los días festivos.",
        "Se espera lluvia por la tarde, así que el mercado se trasladará al interior.",
        "Leyó tres capítulos antes de que el tren saliera por fin de la estación.",
    ],
}


@dataclass(frozen=True)
class Evaluation:
    heldout_logprob_base: float
    heldout_logprob_adapter: float
    gain: float
    min_gain: float
    control_ppl_base: float
    control_ppl_adapter: float
    ppl_ratio: float
    max_ppl_ratio: float

    @property
    def passed(self) -> bool:
        return self.gain >= self.min_gain and self.ppl_ratio <= self.max_ppl_ratio

    def failure(self) -> str:
        """One sentence saying why the adapter failed ('' when it passed)."""
        reasons = []
        if self.gain < self.min_gain:
            reasons.append(
                f"it raised the held-out answers' log-likelihood by {self.gain:.3f} nats/token, "
                f"less than the required {self.min_gain:.3f}"
            )
        if self.ppl_ratio > self.max_ppl_ratio:
            reasons.append(
                f"it raised the control perplexity {self.ppl_ratio:.2f}×, "
                f"more than the allowed {self.max_ppl_ratio:.2f}×"
            )
        return "; ".join(reasons)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def evaluate(
    trainer: Trainer, dataset: Dataset, min_gain: float = MIN_GAIN, max_ppl_ratio: float = MAX_PPL_RATIO
) -> Evaluation:
    """Score the trained adapter against its base model on the held-out split and control texts."""
    control = CONTROL_TEXTS[dataset.language]
    base = trainer.answer_logprob(dataset.heldout, adapter=False)
    tuned = trainer.answer_logprob(dataset.heldout, adapter=True)
    ppl_base = trainer.perplexity(control, adapter=False)
    ppl_tuned = trainer.perplexity(control, adapter=True)
    return Evaluation(
        heldout_logprob_base=base,
        heldout_logprob_adapter=tuned,
        gain=tuned - base,
        min_gain=min_gain,
        control_ppl_base=ppl_base,
        control_ppl_adapter=ppl_tuned,
        ppl_ratio=ppl_tuned / ppl_base,
        max_ppl_ratio=max_ppl_ratio,
    )
