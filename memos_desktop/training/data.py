"""Training data for parameter memory: which facts to distil, and the examples that teach them.

Owns the selection of plaintext cubes (a tag, a search query, explicit ids or a scheduler
proposal; stable and used cubes only), the language check, and the examples: for each fact,
questions it answers (from the reader's `meta.questions`, the title, and templates over its key
words) paired with the statement, plus the statement on its own. One question template per fact
is never trained on; it forms the held-out split that evaluation scores. Replay examples —
everyday exchanges and sentences unrelated to any fact, per language — are where the trainer holds
the adapted model to the base model's predictions, so the facts are learned without changing the
rest (they never overlap evaluation's control texts). Pure Python: it never
tokenizes (the trainer renders examples in its model's chat template) and never writes.
"""

import random
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from memos_desktop.errors import TrainingError
from memos_desktop.vault import MemCube, Vault

MIN_FACTS = 3
MAX_FACT_CHARS = 2000

# Function words per language: enough to tell the supported languages apart on short facts.
_FUNCTION_WORDS = {
    "en": "the a an of to and is are was were my i you in on at for with it this that be have has do not",
    "de": "der die das ein eine und ist sind war mein meine ich du nicht mit von zu im auf für den dem",
    "fr": "le la les un une et est sont était mon ma mes je tu pas avec de du des pour dans sur",
    "es": "el la los las un una y es son era mi mis yo tú no con de del para en por que",
}
STOPWORDS = {lang: frozenset(words.split()) for lang, words in _FUNCTION_WORDS.items()}

# Questions a fact answers, per language: {k} are its key words, {t} its title, {p} its opening.
TEMPLATES: dict[str, dict[str, Any]] = {
    "en": {
        "train": ["What do you know about {k}?", "Tell me about {k}.", "Complete from memory: {p}"],
        "title": "What do you know about {t}?",
        "heldout": "Do you remember anything about {k}?",
    },
    "de": {
        "train": ["Was weißt du über {k}?", "Erzähl mir von {k}.", "Ergänze aus dem Gedächtnis: {p}"],
        "title": "Was weißt du über {t}?",
        "heldout": "Erinnerst du dich an etwas über {k}?",
    },
    "fr": {
        "train": ["Que sais-tu sur {k} ?", "Parle-moi de {k}.", "Complète de mémoire : {p}"],
        "title": "Que sais-tu sur {t} ?",
        "heldout": "Te souviens-tu de quelque chose sur {k} ?",
    },
    "es": {
        "train": ["¿Qué sabes de {k}?", "Háblame de {k}.", "Completa de memoria: {p}"],
        "title": "¿Qué sabes de {t}?",
        "heldout": "¿Recuerdas algo sobre {k}?",
    },
}


# Unrelated text to keep unchanged, per language: (question, answer) exchanges, and plain
# sentences (empty question). Never the same as evaluate.CONTROL_TEXTS, which measure the result.
REPLAY: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("How do plants make their food?", "Plants make their food by photosynthesis, using sunlight, water and air."),
        ("Can you suggest a name for a bakery?", "How about The Golden Crust? It sounds warm and inviting."),
        ("What should I pack for a beach day?", "Sunscreen, a towel, water, a hat and something to read."),
        ("", "The museum added a new wing for modern art last spring."),
        ("", "He forgot his umbrella, so he waited under the bridge until the rain stopped."),
        ("", "Most bicycles have between one and twenty-seven gears."),
        ("", "The recipe calls for two eggs, a cup of flour and a pinch of salt."),
    ],
    "de": [
        ("Was ist die Hauptstadt von Frankreich?", "Die Hauptstadt von Frankreich ist Paris."),
        ("Wie ernähren sich Pflanzen?", "Pflanzen bilden ihre Nahrung durch Photosynthese aus Licht, Wasser und Luft."),
        ("", "Das Museum hat im letzten Frühling einen neuen Flügel für moderne Kunst eröffnet."),
        ("", "Für das Rezept braucht man zwei Eier, eine Tasse Mehl und eine Prise Salz."),
    ],
    "fr": [
        ("Quelle est la capitale de la France ?", "La capitale de la France est Paris."),
        ("Comment les plantes se nourrissent-elles ?", "Les plantes produisent leur nourriture par photosynthèse."),
        ("", "Le musée a ouvert une nouvelle aile consacrée à l'art moderne au printemps dernier."),
        ("", "La recette demande deux œufs, une tasse de farine et une pincée de sel."),
    ],
    "es": [
        ("¿Cuál es la capital de Francia?", "La capital de Francia es París."),
        ("¿Cómo se alimentan las plantas?", "Las plantas producen su alimento mediante la fotosíntesis."),
        ("", "El museo abrió una nueva ala dedicada al arte moderno la primavera pasada."),
        ("", "La receta lleva dos huevos, una taza de harina y una pizca de sal."),
    ],
}


@dataclass(frozen=True)
class Fact:
    """One distilled cube at one version: what the adapter's provenance records."""

    id: str
    version: int
    content_hash: str
    text: str
    title: str = ""
    questions: tuple[str, ...] = ()

    @classmethod
    def from_cube(cls, cube: MemCube) -> "Fact":
        questions = cube.meta.get("questions") or ()
        return cls(
            cube.id,
            cube.version,
            cube.content_hash,
            cube.content.strip(),
            cube.title.strip(),
            tuple(q for q in questions if isinstance(q, str) and q.strip()),
        )


@dataclass(frozen=True)
class Example:
    """One chat exchange to learn: `question` (empty for the bare statement) → `answer`."""

    fact_id: str
    question: str
    answer: str


@dataclass
class Dataset:
    language: str
    facts: list[Fact]
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    replay: list[Example] = field(default_factory=list)


def select_facts(
    vault: Vault,
    *,
    tag: str | None = None,
    query: str | None = None,
    ids: list[str] | None = None,
    profile: str = "default",
    min_age: float = 0.0,
    min_uses: int = 0,
    limit: int = 1000,
) -> list[Fact]:
    """Active plaintext cubes to distil: by tag, by search query or by id, oldest first.

    `min_age` (seconds since the last change) and `min_uses` (access count) keep out facts that
    are still changing or that nobody uses. Ids (a user's or the scheduler's choice) name the
    cubes exactly: they are not filtered, and a missing, forgotten or non-plaintext id is an error.
    """
    if sum(x is not None for x in (tag, query, ids)) != 1:
        raise TrainingError("Choose the facts to distil with exactly one of a tag, a query or a list of ids.")
    if ids is not None:
        cubes = []
        for cube_id in ids:
            cube = vault.get(cube_id, profile=profile, touch=False)
            if cube.kind != "plaintext":
                raise TrainingError(f"Memory {cube_id} is a {cube.kind} memory; only plaintext facts can be distilled.")
            cubes.append(cube)
    elif tag is not None:
        cubes = vault.cubes(profile=profile, kind="plaintext", tag=tag, limit=limit)
    else:
        rowids = [r for r, _ in vault.fts(query or "", k=limit)]
        cubes = [c for c in vault.get_many(rowids, profile=profile).values() if c.kind == "plaintext"]
    now = time.time()
    chosen = [
        c
        for c in cubes
        if c.content.strip() and (ids is not None or (now - c.updated_at >= min_age and c.access_count >= min_uses))
    ]
    chosen.sort(key=lambda c: (c.created_at, c.id))
    return [Fact.from_cube(c) for c in chosen]


def proposal_ids(vault: Vault, seq: int) -> list[str]:
    """The cube ids of the scheduler's distillation proposal number `seq` (its `schedule_log` row)."""
    from memos_desktop.vault import schedule

    proposal = schedule.proposal(vault, seq)
    if proposal is None:
        raise TrainingError(f"There is no distillation proposal {seq}; see the scheduler's proposals.")
    return list(proposal["cubes"])


def detect_language(text: str) -> str:
    """The language of a short text: a supported code (en, de, fr, es), a script name, or 'unknown'."""
    scripts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            script = name.split(" ")[0] if name else "UNKNOWN"
            scripts[script] = scripts.get(script, 0) + 1
    if not scripts:
        return "unknown"
    script = max(scripts, key=lambda s: scripts[s])
    if script != "LATIN":
        return {"CJK": "cjk", "HIRAGANA": "cjk", "KATAKANA": "cjk", "HANGUL": "ko"}.get(script, script.lower())
    words = re.findall(r"\w+", text.lower())
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    if scores[best] == 0:
        return "en" if all(ch.isascii() for ch in text) else "unknown"
    return best


def dataset_language(facts: list[Fact]) -> str:
    """The one language of `facts`, or a TrainingError naming the mix (or the unsupported language)."""
    counts: dict[str, int] = {}
    for fact in facts:
        lang = detect_language(f"{fact.title} {fact.text}")
        counts[lang] = counts.get(lang, 0) + 1
    known = {k: v for k, v in counts.items() if k != "unknown"}
    if len(known) > 1:
        mix = ", ".join(f"{n} in {lang}" for lang, n in sorted(known.items(), key=lambda kv: -kv[1]))
        raise TrainingError(
            f"The selected facts are in several languages ({mix}); distil one language at a time "
            "(select them by tag or with --language)."
        )
    lang = next(iter(known), "en")
    if lang not in TEMPLATES:
        raise TrainingError(
            f"Facts in {lang} cannot be distilled yet: there are question templates for "
            f"{', '.join(sorted(TEMPLATES))} only."
        )
    return lang


def key_words(text: str, lang: str, n: int = 3) -> str:
    """The `n` longest distinct content words of `text`, in their order of appearance."""
    words = [w for w in re.findall(r"[^\W\d_][\w'-]*", text) if w.lower() not in STOPWORDS[lang]]
    longest = set(sorted(dict.fromkeys(words), key=len, reverse=True)[:n])
    picked = [w for w in dict.fromkeys(words) if w in longest]
    return " ".join(picked) if picked else text[:40]


def opening(text: str) -> str:
    """The first few words of a statement, as a prompt to complete."""
    words = text.split()
    return " ".join(words[: max(2, min(6, len(words) // 2))]) + " …"


def build_dataset(
    facts: list[Fact], *, language: str | None = None, min_facts: int = MIN_FACTS, seed: int = 0
) -> Dataset:
    """Examples for every fact in one language, shuffled, with one held-out question per fact.

    With `language`, facts in other languages are left out instead of being an error.
    """
    if language is not None:
        facts = [f for f in facts if detect_language(f"{f.title} {f.text}") == language]
    if len(facts) < min_facts:
        raise TrainingError(
            f"Only {len(facts)} fact(s) selected; distilling needs at least {min_facts} "
            "(select more facts, or keep these as plaintext memory)."
        )
    long = [f.id for f in facts if len(f.text) > MAX_FACT_CHARS]
    if long:
        raise TrainingError(
            f"{len(long)} selected memories are longer than {MAX_FACT_CHARS} characters (e.g. {long[0]}); "
            "parameter memory is for short, stable facts."
        )
    lang = dataset_language(facts)
    templates = TEMPLATES[lang]
    data = Dataset(language=lang, facts=list(facts))
    for fact in facts:
        keys = key_words(fact.text, lang)
        questions = [q.format(k=keys, p=opening(fact.text)) for q in templates["train"]]
        if fact.title:
            questions.append(templates["title"].format(t=fact.title))
        questions.extend(fact.questions)
        for question in dict.fromkeys(questions):
            data.train.append(Example(fact.id, question, fact.text))
        data.train.append(Example(fact.id, "", fact.text))
        data.heldout.append(Example(fact.id, templates["heldout"].format(k=keys), fact.text))
    random.Random(seed).shuffle(data.train)
    data.replay = [Example("", question, answer) for question, answer in REPLAY[lang]]
    return data
