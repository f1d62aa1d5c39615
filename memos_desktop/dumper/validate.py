"""Field validation of everything a bundle or change-set carries, before anything is written.

The parser (`format.py`) proves a bundle is well-formed JSON lines signed by its key; this module
proves every value is one this vault could have written itself: ids are ULIDs, numbers are finite
and in range (importance in [0, 1], counts non-negative), times lie between the epoch and a day
ahead of this clock (fact dates: years 1 to 9999), strings are bounded and free of control
characters where they name things, enums hold known values, and free-form JSON (`source`, `meta`)
is bounded in depth. Each check raises BundleError naming the record; nothing here touches the vault.
"""

import math
import re
import time

from memos_desktop.dumper import clock as hlc
from memos_desktop.dumper import crypto
from memos_desktop.errors import BundleError, MemosError
from memos_desktop.vault.cube import COLUMNS, KINDS, STATES

ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
VID = re.compile(r"^[0-9a-f]{32}$")
OP = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Printable names: no control characters (C0, DEL, C1), no line or paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONFLICT_DEVICE = "conflict"
FUTURE_SKEW = 24 * 3600.0  # a device's clock may run this far ahead of ours
FACT_MIN, FACT_MAX = -62135596800.0, 253402300799.0  # valid_from / valid_to / expires_at: years 1..9999
MAX_COUNT = 2**53
MAX_PARENTS = 64
MAX_TITLE = 4096
MAX_CONTENT = 16 * 1024 * 1024
MAX_NAME = 256
MAX_TAGS = 1024
MAX_DEPTH = 32
_SNAPSHOT_FIELDS = frozenset(COLUMNS)


def _bad(what: str, value: object) -> BundleError:
    return BundleError(f"The bundle holds an invalid {what} ({str(value)[:60]!r}); nothing was imported.")


def number(value: object, what: str, low: float, high: float, *, optional: bool = False) -> float | None:
    """A finite int or float in [low, high] (never a bool, NaN or infinity)."""
    if value is None and optional:
        return None
    if type(value) is not int and type(value) is not float:
        raise _bad(what, value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _bad(what, value)
    return value


def latest() -> float:
    """The latest time a record may carry: now plus the clock skew allowed between devices."""
    return time.time() + FUTURE_SKEW


def moment(value: object, what: str, *, optional: bool = False) -> float | None:
    """A time something happened: between the epoch and a day from now."""
    return number(value, what, 0.0, latest(), optional=optional)


def count(value: object, what: str, low: int = 0, high: int = MAX_COUNT) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(what, value)
    return value


def text(value: object, what: str, limit: int, *, name: bool = False, empty: bool = True) -> str:
    """A string of at most `limit` characters; a `name` has no control characters."""
    if not isinstance(value, str) or len(value) > limit or (not empty and not value):
        raise _bad(what, value)
    if name and _CONTROL.search(value):
        raise _bad(what, value)
    return value


def ulid(value: object, what: str) -> str:
    if not isinstance(value, str) or not ULID.match(value):
        raise _bad(what, value)
    return value


def device(value: object, what: str = "device id", *, conflict: bool = False) -> str:
    if conflict and value == CONFLICT_DEVICE:
        return value
    return ulid(value, what)


def _depth(value: object, what: str) -> None:
    """Free-form JSON at most MAX_DEPTH deep (deeper values break the encoders' recursion)."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > MAX_DEPTH:
            raise _bad(what, "nested too deep")
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)


def manifest(record: dict) -> dict:
    """The manifest's fields beyond what the parser checks (format, version, kind)."""
    ulid(record.get("bundle_id"), "bundle id")
    device(record.get("device"))
    moment(record.get("created_at"), "bundle creation time")
    key = record.get("signing_key")
    try:
        crypto.raw_verify_key(key)
    except MemosError:
        raise _bad("signing key", key) from None
    if record["kind"] == "changeset":
        count(record.get("seq"), "change-set number", 1, 10**10 - 1)
    redaction = record.get("redaction", [])
    if not isinstance(redaction, list) or len(redaction) > 256:
        raise _bad("redaction list", redaction)
    for rule in redaction:
        text(rule, "redaction rule", MAX_NAME, name=True)
    _depth(record, "manifest")
    return record


def access(value: object, cube_id: str) -> tuple[int, float | None]:
    if not isinstance(value, list) or len(value) != 2:
        raise _bad(f"access record of memory {cube_id}", value)
    return count(value[0], "access count"), moment(value[1], "last access time", optional=True)


def event(cube_id: str, record: dict) -> None:
    """One version record's own fields (the snapshot is checked by `snapshot`)."""
    if not isinstance(record.get("vid"), str) or not VID.match(record["vid"]):
        raise _bad(f"version id of memory {cube_id}", record.get("vid"))
    parents = record.get("parents")
    if (
        not isinstance(parents, list)
        or len(parents) > MAX_PARENTS
        or not all(isinstance(p, str) and VID.match(p) for p in parents)
        or len(set(parents)) != len(parents)
    ):
        raise _bad(f"parent list of memory {cube_id}", parents)
    who = device(record.get("device"), conflict=True)
    op = record.get("op")
    if not isinstance(op, str) or not OP.match(op) or (op == "conflict") != (who == CONFLICT_DEVICE):
        raise _bad(f"operation of memory {cube_id}", op)
    text(record.get("actor"), f"actor of memory {cube_id}", MAX_NAME, name=True, empty=False)
    moment(record.get("at"), f"version time of memory {cube_id}")
    stamp = record.get("hlc")
    if not isinstance(stamp, str) or len(stamp) > 256:
        raise _bad(f"clock stamp of memory {cube_id}", stamp)
    base = stamp
    while who == CONFLICT_DEVICE and base.endswith("~c"):  # a conflict of conflicts: "<stamp>~c~c"
        base = base[:-2]
    try:
        ms, _, stamped = hlc.parse(base)
    except ValueError:
        raise _bad(f"clock stamp of memory {cube_id}", stamp) from None
    if ms / 1000 > latest() or (who != CONFLICT_DEVICE and stamped != who) or not ULID.match(stamped):
        raise _bad(f"clock stamp of memory {cube_id}", stamp)


def snapshot(cube_id: str, snap: dict) -> None:
    """Every field of a version's snapshot: types, ranges, enums, bounded strings."""
    unknown = set(snap) - _SNAPSHOT_FIELDS
    if unknown:
        raise _bad(f"field of memory {cube_id}", sorted(unknown)[0])
    missing = _SNAPSHOT_FIELDS - set(snap)  # the vault writes every field; readers rely on them
    if missing:
        raise _bad(f"version of memory {cube_id} without field", sorted(missing)[0])
    get = snap.get
    if get("id") != cube_id:
        raise _bad(f"snapshot id of memory {cube_id}", get("id"))
    if get("kind", "plaintext") not in KINDS:
        raise _bad(f"kind of memory {cube_id}", get("kind"))
    if get("state", "active") not in STATES:
        raise _bad(f"state of memory {cube_id}", get("state"))
    if get("visibility", "private") not in ("private", "shared"):
        raise _bad(f"visibility of memory {cube_id}", get("visibility"))
    text(get("owner", "default"), f"owner of memory {cube_id}", MAX_NAME, name=True, empty=False)
    text(get("title", ""), f"title of memory {cube_id}", MAX_TITLE)
    text(get("content", ""), f"content of memory {cube_id}", MAX_CONTENT)
    tags = get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise _bad(f"tags of memory {cube_id}", tags)
    for tag in tags:
        text(tag, f"tag of memory {cube_id}", MAX_NAME, name=True)
    for field in ("source", "meta"):
        if not isinstance(get(field, {}), dict):
            raise _bad(f"{field} of memory {cube_id}", get(field))
        _depth(get(field, {}), f"{field} of memory {cube_id}")
    for field in ("created_at", "updated_at"):
        moment(get(field, 0.0), f"{field} of memory {cube_id}")
    moment(get("last_accessed_at"), f"last access time of memory {cube_id}", optional=True)
    for field in ("valid_from", "valid_to"):
        number(get(field), f"{field} of memory {cube_id}", FACT_MIN, FACT_MAX, optional=True)
    number(get("expires_at"), f"expiry of memory {cube_id}", 0.0, FACT_MAX, optional=True)
    number(get("importance", 0.5), f"importance of memory {cube_id}", 0.0, 1.0)
    count(get("access_count", 0), f"access count of memory {cube_id}")
    count(get("version", 1), f"version number of memory {cube_id}", 1, 2**31)
    if get("pinned", False) not in (True, False):
        raise _bad(f"pinned flag of memory {cube_id}", get("pinned"))
    if get("embed_model") is not None:
        text(get("embed_model"), f"embedding model of memory {cube_id}", MAX_NAME, name=True)
    text(get("content_hash", ""), f"content hash of memory {cube_id}", 128, name=True)


def link(record: dict) -> None:
    ulid(record.get("src"), "link source")
    ulid(record.get("dst"), "link target")
    text(record.get("rel"), "link relation", 64, name=True, empty=False)
    moment(record.get("at"), "link time")


def audit(record: dict) -> None:
    if record.get("cube_id") is not None:
        ulid(record["cube_id"], "audit memory id")
    count(record.get("seq"), "audit sequence number")
    moment(record.get("at"), "audit time")
    text(record.get("action"), "audit action", 64, name=True, empty=False)
    text(record.get("actor"), "audit actor", MAX_NAME, name=True)
    text(record.get("detail"), "audit detail", 64 * 1024)
    hash_ = record.get("hash")
    if not isinstance(hash_, str) or not re.fullmatch(r"[0-9a-f]{64}", hash_):
        raise _bad("audit hash", hash_)
