"""The MemCube: one unit of memory with its content and its metadata.

A plain dataclass mirroring a row of the `cubes` table; JSON-able with `to_dict`. It carries no
behaviour beyond conversion: the vault owns storage, versions and access rules.
"""

import dataclasses
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

KINDS = ("plaintext", "activation", "parameter")
STATES = ("active", "archived", "deleted")

COLUMNS = (
    "id",
    "kind",
    "owner",
    "visibility",
    "title",
    "content",
    "payload_ref",
    "tags",
    "source",
    "meta",
    "created_at",
    "updated_at",
    "valid_from",
    "valid_to",
    "expires_at",
    "access_count",
    "last_accessed_at",
    "importance",
    "pinned",
    "state",
    "version",
    "embed_model",
    "content_hash",
)
JSON_COLUMNS = ("tags", "source", "meta")
EDITABLE = (
    "title",
    "content",
    "payload_ref",
    "tags",
    "source",
    "meta",
    "valid_from",
    "valid_to",
    "expires_at",
    "importance",
    "pinned",
    "visibility",
    "state",
)
_TIMES = ("valid_from", "valid_to", "expires_at")


def check_numbers(fields: dict[str, Any]) -> None:
    """ValueError unless `importance` is a number in [0, 1] and the times are finite numbers
    (NaN passes every comparison, so a range check alone lets it in)."""
    importance = fields.get("importance", 0.5)
    if type(importance) not in (int, float) or not 0.0 <= importance <= 1.0:
        raise ValueError(f"Importance must be a number from 0 to 1, not {importance!r}.")
    for name in _TIMES:
        value = fields.get(name)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise ValueError(f"{name} must be a finite time, not {value!r}.")


_ROW = operator.attrgetter(*COLUMNS)
_ITEMS = operator.itemgetter(*COLUMNS)
_JSON_AT = tuple(COLUMNS.index(c) for c in JSON_COLUMNS)
_PINNED_AT = COLUMNS.index("pinned")


def _sorted_json_encoder() -> Callable[[Any], str]:
    """`json.dumps(value, sort_keys=True)` for a list or dict: the json module's C encoder made once
    (json.dumps builds an encoder per call, most of its cost for the small values of a row)."""
    from json import encoder

    slow = json.JSONEncoder(sort_keys=True).encode
    c_make_encoder: Any = getattr(encoder, "c_make_encoder", None)
    if c_make_encoder is None:
        return slow
    try:  # a private constructor: its arguments are those of CPython 3.11-3.14
        make = c_make_encoder(
            None, json.JSONEncoder().default, encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True
        )

        def fast(value: Any) -> str:
            return "".join(make(value, 0))

        if fast({"b": [1.5, None], "a": "é"}) == slow({"b": [1.5, None], "a": "é"}):
            return fast
    except TypeError:
        pass
    return slow


_ROW_JSON = _sorted_json_encoder()


_LONG_NUMBER = re.compile(r"\d{19}")  # orjson turns integers beyond 64 bits into floats, silently


def _loads(text: str) -> Any:
    """A JSON column's value: orjson (search reads ~200 rows, 3 columns each: 10x faster than
    json), json for what orjson misreads or refuses and json wrote (integers of 19 digits or more,
    NaN, infinities)."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass
class MemCube:
    id: str
    kind: str = "plaintext"
    owner: str = "default"
    visibility: str = "private"
    title: str = ""
    content: str = ""
    payload_ref: str | None = None
    tags: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    valid_from: float | None = None
    valid_to: float | None = None
    expires_at: float | None = None
    access_count: int = 0
    last_accessed_at: float | None = None
    importance: float = 0.5
    pinned: bool = False
    state: str = "active"
    version: int = 1
    embed_model: str | None = None
    content_hash: str = ""

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> "MemCube":
        values = dict(zip(COLUMNS, row, strict=True))
        for name in JSON_COLUMNS:
            values[name] = _loads(values[name])
        values["pinned"] = bool(values["pinned"])
        return cls(**values)

    def to_row(self) -> tuple[Any, ...]:
        """The values of a `cubes` row in COLUMNS order (list/dict fields as sorted-key JSON)."""
        row = list(_ROW(self))
        for i in _JSON_AT:
            row[i] = _ROW_JSON(row[i])
        row[_PINNED_AT] = int(row[_PINNED_AT])
        return tuple(row)

    @staticmethod
    def row_of(fields: dict[str, Any], **override: Any) -> tuple[Any, ...]:
        """`MemCube(**fields, **override).to_row()` without building the cube (a bulk import makes
        thousands of rows from snapshots); fields beyond COLUMNS are ignored."""
        if override:
            fields = {**fields, **override}
        try:
            row = list(_ITEMS(fields))
        except KeyError:
            row = [fields.get(c, default) for c, default in zip(COLUMNS, _DEFAULTS, strict=True)]
            if row[0] is dataclasses.MISSING:
                raise TypeError("a memory needs an id") from None
        for i in _JSON_AT:
            row[i] = _ROW_JSON(row[i])
        row[_PINNED_AT] = int(row[_PINNED_AT])
        return tuple(row)

    def to_dict(self) -> dict[str, Any]:
        """Every field; the list/dict fields are copies (one level deep is all they hold)."""
        values = {c: getattr(self, c) for c in COLUMNS}
        values["tags"] = list(self.tags)
        values["source"] = dict(self.source)
        values["meta"] = dict(self.meta)
        return values

    def citation(self) -> str:
        """A short human reference to where this memory came from."""
        src = self.source
        if src.get("path"):
            text = str(src["path"])
            if src.get("heading"):
                text += f" §{src['heading']}"
            if src.get("lines"):
                a, b = src["lines"]
                text += f", lines {a}–{b}" if a != b else f", line {a}"
            elif src.get("pages"):
                a, b = src["pages"]
                text += f", pages {a}–{b}" if a != b else f", page {a}"
            return text
        if src.get("turn_id"):
            return f"chat {src.get('conversation', '')} turn {src['turn_id']}".replace("  ", " ")
        if src.get("bundle_id"):
            return f"import {src['bundle_id']}"
        return f"memory {self.id}"


_DEFAULTS = tuple(
    f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(MemCube)
)
