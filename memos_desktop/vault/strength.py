"""How guessable a new passphrase is: a short reason when it is very weak, else None.

Dependency-free and deliberately simple (not zxcvbn): too short, one of the most common
passwords, a keyboard or alphabet run, few distinct characters, or a rough entropy estimate
(character classes used x length, after removing repeats) under 40 bits. A weak passphrase is
allowed after a warning and a confirmation, never silently; this module only judges.
"""

import math
import re

MIN_LENGTH = 8
MIN_BITS = 40.0
_COMMON_WORDS = """
    password passw0rd password1 password123 p@ssw0rd p@ssword 123456 1234567 12345678 123456789
    1234567890 0123456789 qwerty qwerty123 qwertyuiop azerty asdfghjk asdfghjkl zxcvbnm 1q2w3e4r
    1qaz2wsx iloveyou letmein welcome welcome1 monkey dragon football baseball sunshine princess
    master shadow superman batman trustno1 starwars whatever freedom abc123 abcd1234 abcdefgh
    changeme secret secret123 admin admin123 administrator root toor login passphrase mypassword
    memos memos123 memosdesktop correcthorse 11111111 00000000 88888888 12121212 11223344 aaaaaaaa
    computer internet michael jennifer jordan23 hunter2 charlie access killer mustang cheese
"""
_COMMON = frozenset(_COMMON_WORDS.split())
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "azertyuiopqsdfghjklmwxcvbn", "01234567890")


def _bits(passphrase: str) -> float:
    pool = 0
    pool += 26 if re.search(r"[a-z]", passphrase) else 0
    pool += 26 if re.search(r"[A-Z]", passphrase) else 0
    pool += 10 if re.search(r"[0-9]", passphrase) else 0
    pool += 33 if re.search(r"[ -/:-@\[-`{-~]", passphrase) else 0
    pool += 100 if re.search(r"[^\x00-\x7f]", passphrase) else 0
    collapsed = re.sub(r"(.)\1+", r"\1", passphrase)  # "aaaa" counts once
    return len(collapsed) * math.log2(max(pool, 2))


def weakness(passphrase: str) -> str | None:
    """Why `passphrase` is very weak, or None when it is acceptable."""
    folded = passphrase.lower().strip()
    if len(passphrase) < MIN_LENGTH:
        return f"it is shorter than {MIN_LENGTH} characters"
    if folded in _COMMON or re.sub(r"[\d!?.]+$", "", folded) in _COMMON:
        return "it is one of the most common passwords"
    if any(folded in run or folded in run[::-1] for run in _RUNS):
        return "it is a run of neighbouring keys or letters"
    if len(set(folded)) <= 3:
        return "it repeats the same few characters"
    if _bits(passphrase) < MIN_BITS:
        return "it is short for the kinds of characters it uses"
    return None
