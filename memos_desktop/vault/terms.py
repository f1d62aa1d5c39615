"""What a memory is about, by rules: its entities, topics, tags and dates (no model needed).

The vault links memories through these terms (the paper's topic → concept → fact organisation,
without a graph server): two memories naming the same person, place, project, hashtag, month or
noun phrase are linked. Rules, deterministic and cheap enough to run on every write:

- entity: a run of capitalised words ("New York", "Caroline", "WSET Level 2"), a word at the
  start of a sentence only when it is not a common word ("The", "Yesterday", "I" never are);
- tag: a #hashtag in the text, and the memory's own tags;
- date: a named month with its year ("May 2023", "8 May, 2023" → 2023-05), or an ISO date;
- topic: a noun-phrase-like pair of adjacent content words ("pottery class", "charity race"),
  and a content word of 6 letters or more ("marathon", "adoption"), lower case, a plural's final
  "s" dropped so "classes"/"class" meet.

Names are normalised to lower case. The chat speaker's own name is no term (it would link every
turn of that person). This module is pure: it never touches the database.
"""

import re
from collections.abc import Sequence

KINDS = ("entity", "topic", "tag", "date")
MAX_TERMS = 48  # per memory; the first found are kept (entities, tags and dates first)
TEXT_CHARS = 20_000  # of a memory's text read for terms (a huge one has enough terms by then)

_COMMON = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me might more most must my myself no nor not now of off on once only or other ought our ours
ourselves out over own same shall she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what
when where which while who whom whose why will with would you your yours yourself yourselves
yes yeah oh hey hi hello thanks thank okay ok wow well sure great good nice really maybe please
sorry just like got get gets getting going go goes went gone make made makes making know knew
think thought want wanted need needed feel felt love loved see saw seen say said tell told
today tomorrow yesterday tonight now then still even ever never always often sometimes
let lets let's one two three first last next new old lot lots thing things something anything
everything nothing way ways time times day days week weeks month months year years really very
absolutely definitely totally exactly actually honestly certainly perhaps probably however
although though since while because unless whether which whatever whoever wherever already
monday tuesday wednesday thursday friday saturday sunday
january february march april may june july august september october november december
user assistant
"""
COMMON = frozenset(_COMMON.split())
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_RE = "|".join(m[:3] + r"(?:" + m[3:] + r")?" for m in _MONTHS)

WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’&.-]*[A-Za-z0-9]|[A-Za-z]")
CAPITALISED = re.compile(
    r"(?:[A-Z][\w'’&-]*|[A-Z]{2,}\d*)(?:[ \t]+(?:(?:of|the|de|van)[ \t]+)?(?:[A-Z][\w'’&-]*|\d+))*"
)
HASHTAG = re.compile(r"(?<![\w#/&])#([A-Za-z][\w/-]{1,40})")
MONTH_YEAR = re.compile(
    rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?)?({_MONTH_RE})\.?,?\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?((?:19|20)\d\d)\b",
    re.I,
)
ISO_DATE = re.compile(r"\b((?:19|20)\d\d)-(0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b")
CLAUSE = re.compile(r"[.!?;:,()\[\]\n\"“”]+")
_FUNCTION = "a an the i i'm i've i'll i'd my we our you your he she it they this that these those on in at of"
FUNCTION = frozenset(_FUNCTION.split())
OPENING = re.compile(r"[.!?:;\n\"“(]\s*$")  # what ends just before a word opening a sentence
MID_CAPITAL = re.compile(r"[a-z,]\s+([A-Z][\w'’&-]*)")


def extract(text: str, tags: Sequence[str] = (), speaker: str = "") -> list[tuple[str, str]]:
    """(kind, name) of every term of `text` (and of the memory's `tags`), deduplicated, at most
    MAX_TERMS; `speaker` (a chat turn's speaker) is left out."""
    text = text[:TEXT_CHARS]
    skip = {speaker.lower()} if speaker else set()
    out: dict[tuple[str, str], None] = {}
    for tag in tags:
        if tag and tag.lower() not in ("chat",):
            out[("tag", tag.lower().lstrip("#"))] = None
    for match in HASHTAG.finditer(text):
        out[("tag", match.group(1).lower())] = None
    for match in MONTH_YEAR.finditer(text):
        month = _MONTHS.index(next(m for m in _MONTHS if m.startswith(match.group(1).lower()[:3]))) + 1
        out[("date", f"{match.group(2)}-{month:02d}")] = None
    for match in ISO_DATE.finditer(text):
        out[("date", f"{match.group(1)}-{match.group(2)}")] = None
    for name in entities(text):
        if name not in skip:
            out[("entity", name)] = None
    for name in topics(text):
        if name not in skip:
            out[("topic", name)] = None
    return list(out)[:MAX_TERMS]


def entities(text: str) -> list[str]:
    """Runs of capitalised words, lower case. A run opening a sentence loses a common first word
    ("Yesterday Anna..." → "anna") and is kept both with and without an uncommon one ("Met Ana
    Lopez" → "met ana lopez", "ana lopez"); a single capitalised word opening a sentence is a
    name only when it is also capitalised mid-sentence somewhere in the text."""
    mid = set(MID_CAPITAL.findall(text))
    found = []
    for match in CAPITALISED.finditer(text):
        words = match.group(0).split()
        start = match.start()
        opening = start == 0 or bool(OPENING.search(text[max(0, start - 4) : start]))
        # mid-sentence capitals are a name ("in New York"); opening a sentence, a common word is not
        while words and (
            words[0].isdigit() or (words[0].lower().strip("'’") in COMMON and (opening or _function(words[0])))
        ):
            words.pop(0)
            opening = False
        while words and words[-1].lower() in ("of", "the", "de", "van"):
            words.pop()
        if not words or (len(words) == 1 and opening and words[0] not in mid):
            continue
        names = [words, words[1:]] if opening and len(words) > 1 and words[0] not in mid else [words]
        for kept in names:
            name = re.sub(r"['’]s?$", "", " ".join(kept).lower()).strip("'’-&")
            if len(name) >= 2 and name not in COMMON and not name.isdigit():
                found.append(name)
    return list(dict.fromkeys(found))


def topics(text: str) -> list[str]:
    """Adjacent pairs of content words and long content words, lower case, singular-ish."""
    names = {n for name in entities(text) for n in name.split()}
    pairs, singles = [], []
    for clause in CLAUSE.split(text):
        words = [w.lower().strip("'’.-") for w in WORD.findall(clause)]
        content = [_singular(w) if _content(w) else None for w in words]
        for first, second in zip(content, content[1:], strict=False):
            if first and second and first != second:
                pairs.append(f"{first} {second}")
        singles += [w for w in content if w and len(w) >= 6 and w not in names]
    return list(dict.fromkeys(pairs + singles))


def _function(word: str) -> bool:
    """Words that are never part of a name, even capitalised mid-sentence ("I", "The")."""
    return word.lower() in FUNCTION


def _content(word: str) -> bool:
    return len(word) >= 3 and word not in COMMON and not word.isdigit() and "'" not in word and "’" not in word


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
