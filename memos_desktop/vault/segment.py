"""Words for the script index (`cube_fts_script`): text in scripts the main word index cannot cut.

FTS5's `unicode61` tokenizer makes a run of Chinese, Japanese or Thai characters one token (テーマ
inside a sentence is never found), splits Hebrew and Arabic words at their vowel marks, keeps ß
and ё apart from ss and е, and cuts a word at a zero-width character. This module turns a text
into what the script index holds, and a query into what it asks: runs of scripts written without
spaces become overlapping character bigrams; other words with a non-ASCII letter become their
folded form (NFKC, case folded, marks dropped: Straße → strasse, ёлка → елка, café → cafe). ASCII
words are left to the main index, so an English vault's script index stays empty. Chosen by
`bench lang` (trigram tokenizer vs bigrams, phrase vs OR, with or without prefixes). Pure text
functions: no SQL here.
"""

import re
import unicodedata

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, kana, CJK ideographs
# (with extension A and compatibility), Hangul syllables (Korean glues particles to words), halfwidth kana.
_NO_SPACE = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
)
_RUN = re.compile(f"[{_NO_SPACE}]+")
_PIECE = re.compile(rf"[{_NO_SPACE}]+|\w+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
MAX_WORD = 64  # longer words (a hash, a base64 blob, a million letters without a space) are not indexed
MAX_CHARS = 200_000  # of a cube's text read for the script index; what lies beyond is found by the main index
# Query words of PREFIX_FROM+ letters also match any word starting with all but their last
# PREFIX_CUT letters (at least PREFIX_STEM kept): Russian and German endings (bench lang).
PREFIX_FROM, PREFIX_CUT, PREFIX_STEM = 6, 3, 5


def _clean(text: str) -> str:
    """NFKC, without format characters (zero-width space/joiners, soft hyphen, BOM) and without
    the combining marks NFKC left (Hebrew and Arabic vowel points, Thai vowel and tone marks),
    which would cut a word; accented letters and kana with voicing marks are single characters."""
    return _NON_ASCII.sub(_unformatted, unicodedata.normalize("NFKC", text))


def _unformatted(match: re.Match[str]) -> str:
    return "".join(c for c in match.group() if unicodedata.category(c) not in ("Cf", "Mn"))


def _folded(word: str) -> str:
    """`word` case folded, without combining marks (accents, Hebrew and Arabic vowel points, ё's diaeresis)."""
    decomposed = unicodedata.normalize("NFD", word.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def _bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a no-space run."""
    run = run.casefold()
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


def _pieces(text: str) -> list[tuple[str, bool]]:
    """(piece, is_no_space_run) of cleaned `text`, in order, not yet case folded (ß is not ASCII, ss is)."""
    return [(p, not p.isascii() and bool(_RUN.fullmatch(p))) for p in _PIECE.findall(_clean(text))]


def index_text(text: str) -> str:
    """What the script index holds for `text`: bigrams of no-space runs and folded non-ASCII
    words, space-separated ("" when there are none: an all-ASCII text)."""
    if text.isascii():
        return ""
    out: list[str] = []
    for piece in _PIECE.findall(_clean(text[:MAX_CHARS])):
        if piece.isascii():
            continue
        if _RUN.fullmatch(piece):
            out += _bigrams(piece)
        elif len(piece) <= MAX_WORD:
            out.append(_folded(piece))
    return " ".join(out)


def query(text: str) -> str:
    """An FTS5 query of the script index for free text: every bigram of its no-space runs and
    every folded word (long ones also as a prefix, for inflection: объединить finds объединяет),
    OR'ed for bm25 to rank; "" when nothing in it can match."""
    parts: list[str] = []
    for piece, run in _pieces(text):
        if run:
            parts += [f'"{g}"' for g in _bigrams(piece)]
            continue
        word = _folded(piece)
        if len(word) < 2 or len(word) > MAX_WORD:
            continue
        parts.append(f'"{word}"')
        if len(word) >= PREFIX_FROM:
            parts.append(f'"{word[: max(PREFIX_STEM, len(word) - PREFIX_CUT)]}"*')
    return " OR ".join(dict.fromkeys(parts))


def ascii_folds(text: str) -> list[str]:
    """The words of `text` that are ASCII only once folded (Straße → strasse, Ǆ → dž is not):
    the main word index holds such words as written in ASCII ("Strasse")."""
    folds = []
    for piece, run in _pieces(text):
        word = _folded(piece)
        if not run and not piece.isascii() and word.isascii() and 1 < len(word) <= MAX_WORD:
            folds.append(word)
    return list(dict.fromkeys(folds))
