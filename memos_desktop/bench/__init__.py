"""Benchmarks (`memos-desktop bench NAME`): each module measures one thing side by side.

A benchmark's `run(...)` returns a plain dict (the `--json` output) and `report` prints it as a
rich table for people. Benchmarks compare within one run (ratios against a baseline measured in
the same run); no test asserts a wall-clock time.
"""

import json
import statistics
import sys
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) of `values`, linear interpolation."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(title: str, rows: list[dict], result: dict, as_json: bool) -> None:
    """Print `result` as JSON, or `rows` (a list of same-keyed dicts) as a table titled `title`."""
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from memos_desktop.textsafe import clean, raw

    table = Table(title=Text(clean(title)))
    columns = list(rows[0]) if rows else []
    for col in columns:
        table.add_column(Text(clean(col)), justify="left" if col == columns[0] else "right")
    for row in rows:  # cells are data (file names, notes): cleaned text, never markup
        table.add_row(*(Text(clean(_fmt(row[c]))) for c in columns))
    Console(file=raw(sys.stdout)).print(table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
