"""Reading what people type: durations ("90s", "7d", "never") and dates in almost any written form.

Pure functions shared by the CLI, the TUI and MemReader; they never touch the vault.
"""

import re

from memos_desktop.errors import MemosError

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NEVER = ("never", "off", "none")


def parse_duration(text: str) -> float | None:
    """'90s', '15m', '12h', '7d', '2w' (a bare number is seconds) → seconds; 'never', 'off' or
    'none' → None (no expiry)."""
    value = (text or "").strip().lower()
    if value in NEVER:
        return None
    m = _DURATION.fullmatch(value)
    if not m:
        raise MemosError(f"Cannot read the duration {text!r}; use e.g. 90s, 15m, 12h, 7d, 2w or never.")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_date(text: str | None) -> float | None:
    """A date or datetime in almost any written form → a timestamp (None stays None)."""
    if not text:
        return None
    import dateparser

    parsed = dateparser.parse(text, settings={"RETURN_AS_TIMEZONE_AWARE": True})
    if parsed is None:
        raise MemosError(f"Cannot read the date {text!r}.")
    return parsed.timestamp()


def parse_timestamp(value: str | None) -> float | None:
    """An ISO date or datetime ('2026-05-01', '2026-05-01T10:00') → a timestamp (None stays None)."""
    from datetime import datetime

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise MemosError(f"Not a date: {value!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM).") from None
