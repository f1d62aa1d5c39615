"""The op log that lets versions from several devices merge without losing any.

Every row of `cube_versions` becomes an *event*: a global id (`vid`, a hash of the event), its
parents' vids, a hybrid-logical-clock stamp and the device that wrote it (table `sync_events`).
Local versions are tagged lazily (`tag_local`); foreign events are appended as new local version
rows (`apply_cube`), so every version of every device is kept. A cube's current state is its
single head; when concurrent edits leave several heads, a deterministic *conflict* version (same
id on every device) records them and shows the latest by clock until the user resolves it. All
functions run inside the caller's write transaction and never commit. Versions and heads are
stored through the public `Vault.import_versions`, which rebuilds FTS for the cubes they change
and leaves vectors to the embedder; this module writes only its own table, `sync_events`.
"""

import codecs
import hashlib
import json
from dataclasses import dataclass, field, fields

import orjson

from memos_desktop.dumper import clock as hlc
from memos_desktop.dumper.format import check_blob_name, check_id, loads
from memos_desktop.errors import BundleError, MemosError, NotFound
from memos_desktop.vault.cube import COLUMNS, KINDS, STATES, MemCube

CLOCK_SETTING = "sync.clock"
CONFLICT_DEVICE = "conflict"
_OP_MAX = 32
BATCH = 2000  # rows per executemany when tagging or inserting new cubes
# Reused encoders: the same output as json.dumps with these options, without building one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_MAX_ESCAPES = 64  # more non-ASCII bytes than this: the json module is faster
_FIELDS = frozenset(f.name for f in fields(MemCube))
_NUMBERS = ("created_at", "updated_at", "valid_from", "valid_to", "expires_at", "importance")
# The types parsed JSON gives that isinstance(value, int | float | None) accepts, and str: checked
# per item as `TYPES.issuperset(map(type, items))`, a loop that runs in C.
_NUMBER_TYPES = frozenset((int, float, bool, type(None)))
_STR = frozenset((str,))


class MissingParent(BundleError):
    """An event refers to a version this vault has not received yet."""


@dataclass
class Event:
    vid: str
    parents: list[str]
    hlc: str
    device: str
    op: str
    actor: str
    at: float
    snapshot: dict = field(repr=False)
    canonical: str | None = field(default=None, repr=False, compare=False)

    def stored(self, version: int) -> str:
        """The snapshot text to store as local version `version`."""
        if self.canonical is None:
            self.canonical = canonical_snapshot(self.snapshot)
        return stored_snapshot(self.canonical, version)

    def to_record(self) -> dict:
        return {
            "vid": self.vid,
            "parents": self.parents,
            "hlc": self.hlc,
            "device": self.device,
            "op": self.op,
            "actor": self.actor,
            "at": self.at,
            "snapshot": self.snapshot,
        }


def canonical_json(value: dict | list, sort_keys: bool) -> str:
    """`json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))`: what version ids hash.

    orjson writes the same bytes several times faster once DEL and non-ASCII characters are
    escaped as json escapes them, unless a float needs an exponent in Python's repr (orjson
    writes 1e16 and 0.00001 where json writes 1e+16 and 1e-05) or is NaN or infinite (orjson
    writes null); those values, integers beyond 64 bits and lone surrogates (which orjson
    refuses), and text with many characters to escape go to the json module.
    """
    if _plain_floats(value):
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except TypeError:
            fast = b""
        if fast and b"\x7f" not in fast:  # json escapes DEL, orjson does not
            if fast.isascii():
                return fast.decode("ascii")
            text = fast.decode("utf-8")
            if len(fast) - len(text) <= _MAX_ESCAPES:
                return text.encode("ascii", _ESCAPE_HANDLER).decode("ascii")
    return (_CANONICAL if sort_keys else _COMPACT)(value)


def _plain_floats(value: dict | list) -> bool:
    """True when every float in `value` is written without an exponent by repr (or is zero)."""
    stack = [value]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is str:
                continue
            if kind is float:
                if not (1e-4 <= abs(item) < 1e16 or item == 0.0):
                    return False
            elif kind is dict or kind is list:
                stack.append(item)
    return True


def _escape(error: UnicodeEncodeError) -> tuple[str, int]:
    """Non-ASCII characters as json writes them (\\uXXXX; a surrogate pair beyond the BMP)."""
    out = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    return "".join(out), error.end


# An encode error handler: the C encoder copies ASCII and calls _escape once per non-ASCII run.
_ESCAPE_HANDLER = "memos-json-ascii"
codecs.register_error(_ESCAPE_HANDLER, _escape)


def canonical_snapshot(snapshot: dict) -> str:
    """A snapshot as canonical JSON (sorted keys, no spaces) without its local version number."""
    return canonical_json({k: v for k, v in snapshot.items() if k != "version"}, True)


def stored_snapshot(canonical: str, version: int) -> str:
    """The text stored in `cube_versions.snapshot` for local version number `version`."""
    return f'{{"version":{version}' + (f",{canonical[1:]}" if canonical != "{}" else "}")


def vid_of(
    cube_id: str,
    parents: list[str],
    stamp: str,
    device: str,
    op: str,
    actor: str,
    at: float,
    snapshot: dict,
    canonical: str | None = None,
) -> str:
    """The global id of an event: a hash of everything in it but the local version number."""
    head = canonical_json([cube_id, parents, stamp, device, op, actor, at], False)
    body = canonical if canonical is not None else canonical_snapshot(snapshot)
    return hashlib.blake2b(f"{head}\n{body}".encode(), digest_size=16).hexdigest()


def load_clock(vault) -> hlc.HybridClock:
    ms, counter = vault.get_setting(CLOCK_SETTING, [0, 0])
    return hlc.HybridClock(vault.device_id, ms, counter)


def save_clock(vault, clock: hlc.HybridClock) -> None:
    """Persist the clock (inside the caller's transaction)."""
    vault.set_setting(CLOCK_SETTING, [clock.ms, clock.counter])


def tag_local(vault, clock: hlc.HybridClock) -> int:
    """Give every untagged version row (made on this device) an event id; return how many.

    Streams the rows (parents before children per cube); inserts, in batches, only touch rows
    already read (a parent is either earlier in this cube's rows or tagged before).
    """
    conn = vault.conn
    rows = conn.execute(
        "SELECT v.cube_id, v.version, v.parent_version, v.op, v.at, v.actor, v.snapshot"
        " FROM cube_versions v WHERE NOT EXISTS (SELECT 1 FROM sync_events e"
        " WHERE e.cube_id = v.cube_id AND e.version = v.version)"
        " ORDER BY v.cube_id, v.version"
    )
    count = 0
    current, tagged, pending = None, {}, []
    for cube_id, version, parent, op, at, actor, snapshot in rows:
        if cube_id != current:
            current, tagged = cube_id, {}
        parents = []
        if parent is not None:
            pvid = tagged.get(parent)
            if pvid is None:
                found = conn.execute(
                    "SELECT vid FROM sync_events WHERE cube_id = ? AND version = ?",
                    (cube_id, parent),
                ).fetchone()
                pvid = found[0] if found else None
            if pvid is not None:
                parents = [pvid]
        stamp = clock.tick(int(at * 1000))
        vid = vid_of(cube_id, parents, stamp, vault.device_id, op, actor, at, loads(snapshot))
        pending.append((vid, cube_id, version, stamp, vault.device_id, json.dumps(parents)))
        if len(pending) >= BATCH:
            _insert_tags(conn, pending)
            pending = []
        tagged[version] = vid
        count += 1
    _insert_tags(conn, pending)
    save_clock(vault, clock)
    return count


def _insert_tags(conn, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO sync_events (vid, cube_id, version, hlc, device, parents, origin, shared)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
        rows,
    )


def cube_events(vault, cube_id: str, only_unshared: bool = False) -> list[Event]:
    """The events of one cube in local version order (parents before children)."""
    sql = (
        "SELECT e.vid, e.parents, e.hlc, e.device, v.op, v.actor, v.at, v.snapshot"
        " FROM sync_events e JOIN cube_versions v"
        " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.cube_id = ?"
    )
    if only_unshared:
        sql += " AND e.shared = 0"
    rows = vault.conn.execute(sql + " ORDER BY e.version", (cube_id,)).fetchall()
    return [Event(v, json.loads(p), h, d, op, a, at, json.loads(s)) for v, p, h, d, op, a, at, s in rows]


def known_vids(vault, vids: list[str]) -> set[str]:
    """Which of `vids` this vault's op log holds."""
    found: set[str] = set()
    for start in range(0, len(vids), 500):
        batch = vids[start : start + 500]
        marks = ",".join("?" * len(batch))
        found.update(r[0] for r in vault.conn.execute(f"SELECT vid FROM sync_events WHERE vid IN ({marks})", batch))
    return found


def stored_versions(vault, vids: list[str]) -> dict[str, tuple[str, dict]]:
    """{vid: (clock stamp, snapshot)} of the stored versions among `vids`."""
    out = {}
    for vid in vids:
        row = vault.conn.execute(
            "SELECT e.hlc, v.snapshot FROM sync_events e JOIN cube_versions v"
            " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.vid = ?",
            (vid,),
        ).fetchone()
        if row is not None:
            out[vid] = (row[0], json.loads(row[1]))
    return out


def parse_event(cube_id: str, record: object) -> Event:
    """An event from a bundle record, fully validated (types, ids, blob names, its own hash)."""
    if not isinstance(record, dict):
        raise BundleError("The bundle holds a malformed version record.")
    try:
        event = Event(
            vid=record["vid"],
            parents=record["parents"],
            hlc=record["hlc"],
            device=record["device"],
            op=record["op"],
            actor=record["actor"],
            at=record["at"],
            snapshot=record["snapshot"],
        )
        hlc.parse(event.hlc)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BundleError(f"The bundle holds a malformed version of memory {cube_id}.") from None
    ok = (
        isinstance(event.vid, str)
        and isinstance(event.parents, list)
        and _STR.issuperset(map(type, event.parents))
        and isinstance(event.op, str)
        and 0 < len(event.op) <= _OP_MAX
        and isinstance(event.actor, str)
        and isinstance(event.at, int | float)
        and isinstance(event.snapshot, dict)
        and event.snapshot.get("id") == cube_id
    )
    if not ok:
        raise BundleError(f"The bundle holds a malformed version of memory {cube_id}.")
    if event.device != CONFLICT_DEVICE:
        check_id(event.device, "device id")
    check_snapshot(event.snapshot)
    event.canonical = canonical_snapshot(event.snapshot)
    expected = vid_of(
        cube_id,
        event.parents,
        event.hlc,
        event.device,
        event.op,
        event.actor,
        event.at,
        event.snapshot,
        event.canonical,
    )
    if expected != event.vid:
        raise BundleError(f"A version of memory {cube_id} does not match its id; the bundle was altered.")
    return event


def check_snapshot(snapshot: dict) -> None:
    """BundleError unless `snapshot` makes a valid MemCube (checked without building one)."""
    if not _FIELDS.issuperset(snapshot) or "id" not in snapshot:
        raise BundleError("The bundle holds a version with unknown or missing fields.")
    get = snapshot.get
    tags, source, meta = get("tags", []), get("source", {}), get("meta", {})
    ok = (
        get("kind", "plaintext") in KINDS
        and get("state", "active") in STATES
        and isinstance(get("title", ""), str)
        and isinstance(get("content", ""), str)
        and isinstance(get("owner", "default"), str)
        and get("visibility", "private") in ("private", "shared")
        and isinstance(tags, list)
        and _STR.issuperset(map(type, tags))
        and isinstance(source, dict)
        and isinstance(meta, dict)
        and _NUMBER_TYPES.issuperset(map(type, map(get, _NUMBERS)))
    )
    if not ok:
        raise BundleError(f"The bundle holds an invalid version of memory {str(snapshot['id'])[:80]}.")
    check_id(snapshot["id"])
    if get("payload_ref") is not None:
        check_blob_name(snapshot["payload_ref"])


@dataclass
class _Known:
    version: int
    hlc: str
    parents: list[str]
    snapshot: dict | None = None


_EVENT_SQL = (
    "INSERT INTO sync_events (vid, cube_id, version, hlc, device, parents, origin, shared)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def apply_cube(
    vault,
    cube_id: str,
    events: list[Event],
    *,
    origin: str,
    shared: bool,
    clock: hlc.HybridClock,
    access: tuple[int, float | None] = (0, None),
) -> int:
    """Append the events this vault lacks for one cube and settle its state; return how many.

    Raises MissingParent when an event's parent is neither stored nor earlier in `events`.
    """
    conn = vault.conn
    row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM cubes WHERE id = ?", (cube_id,)).fetchone()
    known: dict[str, _Known] = {}
    next_version = 1
    if row is not None:
        for vid, version, stamp, parents in conn.execute(
            "SELECT vid, version, hlc, parents FROM sync_events WHERE cube_id = ?", (cube_id,)
        ):
            known[vid] = _Known(version, stamp, json.loads(parents))
        next_version = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM cube_versions WHERE cube_id = ?", (cube_id,)
        ).fetchone()[0]
    versions: list[tuple] = []
    tags: list[tuple] = []
    for event in events:
        if event.vid in known:
            continue
        missing = [p for p in event.parents if p not in known]
        if missing:
            raise MissingParent(f"A version of memory {cube_id} refers to version {missing[0]} not received yet.")
        _add_event(versions, tags, cube_id, event, next_version, known, origin, shared)
        clock.observe(event.hlc)
        next_version += 1
    added = len(versions)
    if added or (row is not None and access[0] > row[COLUMNS.index("access_count")]):
        head = _settle(vault, cube_id, row, known, versions, tags, next_version, access)
        vault.import_versions(versions, [head])
        conn.executemany(_EVENT_SQL, tags)
    return added


def _add_event(
    versions: list[tuple],
    tags: list[tuple],
    cube_id: str,
    event: Event,
    version: int,
    known: dict[str, _Known],
    origin: str | None,
    shared: bool,
) -> None:
    """Queue `event` as local version `version`: its version row and its op-log row."""
    parent_version = known[event.parents[0]].version if event.parents else None
    versions.append((cube_id, version, parent_version, event.op, event.at, event.actor, event.stored(version)))
    tags.append(
        (
            event.vid,
            cube_id,
            version,
            event.hlc,
            event.device,
            json.dumps(event.parents),
            origin,
            int(shared),
        )
    )
    known[event.vid] = _Known(version, event.hlc, event.parents, event.snapshot)


def _snapshot(vault, cube_id: str, known: _Known) -> dict:
    if known.snapshot is None:
        text = vault.conn.execute(
            "SELECT snapshot FROM cube_versions WHERE cube_id = ? AND version = ?",
            (cube_id, known.version),
        ).fetchone()[0]
        known.snapshot = json.loads(text)
    return known.snapshot


def _settle(
    vault,
    cube_id: str,
    row: tuple | None,
    known: dict[str, _Known],
    versions: list[tuple],
    tags: list[tuple],
    next_version: int,
    access: tuple,
) -> dict:
    """The cube's new current state: its single head; several heads first get a conflict version
    (queued in `versions` and `tags`). Access counts merge with the stored row's."""
    referenced = {p for k in known.values() for p in k.parents}
    heads = sorted((k.hlc, vid) for vid, k in known.items() if vid not in referenced)
    head_vid = heads[-1][1]
    if len(heads) > 1:
        winner = known[head_vid]
        parents = sorted(vid for _, vid in heads)
        snapshot = _snapshot(vault, cube_id, winner)
        at = snapshot.get("updated_at", 0.0)
        stamp = winner.hlc + "~c"
        vid = vid_of(cube_id, parents, stamp, CONFLICT_DEVICE, "conflict", "sync", at, snapshot)
        event = Event(vid, parents, stamp, CONFLICT_DEVICE, "conflict", "sync", at, snapshot)
        _add_event(versions, tags, cube_id, event, next_version, known, None, False)
        head_vid = vid
    head = known[head_vid]
    count, last = access
    if row is not None:
        old_count, old_last = row[COLUMNS.index("access_count")], row[COLUMNS.index("last_accessed_at")]
        count = max(old_count, count)
        last = max((t for t in (old_last, last) if t is not None), default=None)
    return {
        **_snapshot(vault, cube_id, head),
        "version": head.version,
        "access_count": count,
        "last_accessed_at": last,
    }


class NewCubes:
    """Buffered writes for cubes this vault has never seen whose history is one plain chain.

    That is the bulk of a first import or sync; they go to `Vault.import_versions` every `size`
    cubes. `flush()` must run before anything reads those cubes and before the transaction commits.
    """

    def __init__(self, vault, *, origin: str, shared: bool, clock: hlc.HybridClock, size: int = BATCH):
        self.vault = vault
        self.origin = origin
        self.shared = int(shared)
        self.clock = clock
        self.size = size
        self.ids: dict[str, None] = {}
        self._heads: list[dict] = []
        self._versions: list[tuple] = []
        self._events: list[tuple] = []

    @staticmethod
    def fits(evs: list[Event]) -> bool:
        return (
            bool(evs)
            and not evs[0].parents
            and all(ev.parents == [prev.vid] for prev, ev in zip(evs, evs[1:], strict=False))
        )

    def add(self, cube_id: str, evs: list[Event], access: tuple[int, float | None]) -> int:
        parent = None
        for number, ev in enumerate(evs, start=1):
            snapshot = ev.stored(number)
            self._versions.append((cube_id, number, parent, ev.op, ev.at, ev.actor, snapshot))
            parents = json.dumps(ev.parents) if ev.parents else "[]"
            self._events.append((ev.vid, cube_id, number, ev.hlc, ev.device, parents, self.origin, self.shared))
            self.clock.observe(ev.hlc)
            parent = number
        count, last = access
        head = {**evs[-1].snapshot, "version": len(evs), "access_count": count}
        head["last_accessed_at"] = last
        self._heads.append(head)
        self.ids[cube_id] = None
        if len(self.ids) >= self.size:
            self.flush()
        return len(evs)

    def flush(self) -> None:
        if not self.ids:
            return
        self.vault.import_versions(self._versions, self._heads, new=True)
        self.vault.conn.executemany(_EVENT_SQL, self._events)
        self.ids, self._heads, self._versions, self._events = {}, [], [], []


def conflicts(vault) -> list[dict]:
    """Cubes whose current version is an unresolved conflict, with the competing versions."""
    rows = vault.conn.execute(
        "SELECT c.id, c.title, c.version, e.parents FROM cubes c"
        " JOIN cube_versions v ON v.cube_id = c.id AND v.version = c.version"
        " JOIN sync_events e ON e.cube_id = c.id AND e.version = c.version"
        " WHERE v.op = 'conflict' ORDER BY c.updated_at DESC"
    ).fetchall()
    out = []
    for cube_id, title, version, parents in rows:
        heads = [_describe(vault, vid) for vid in _competing(vault, json.loads(parents))]
        out.append({"id": cube_id, "title": title, "version": version, "heads": heads})
    return out


def _competing(vault, vids: list[str]) -> list[str]:
    """The user's versions behind a conflict (nested conflict versions give their parents)."""
    out: list[str] = []
    todo = list(vids)
    while todo:
        vid = todo.pop(0)
        device, parents = vault.conn.execute("SELECT device, parents FROM sync_events WHERE vid = ?", (vid,)).fetchone()
        if device == CONFLICT_DEVICE:
            todo += json.loads(parents)
        elif vid not in out:
            out.append(vid)
    return out


def _describe(vault, vid: str) -> dict:
    version, stamp, device, op, snapshot = vault.conn.execute(
        "SELECT e.version, e.hlc, e.device, v.op, v.snapshot"
        " FROM sync_events e JOIN cube_versions v"
        " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.vid = ?",
        (vid,),
    ).fetchone()
    snap = json.loads(snapshot)
    return {
        "version": version,
        "vid": vid,
        "device": device,
        "op": op,
        "hlc": stamp,
        "state": snap["state"],
        "title": snap["title"],
        "content": snap["content"],
    }


def resolve(vault, cube_id: str, keep_version: int, actor: str = "user") -> MemCube:
    """Close a conflict by making one competing version current (a new version on top)."""
    for conflict in conflicts(vault):
        if conflict["id"] == cube_id:
            choices = [h["version"] for h in conflict["heads"]]
            if keep_version not in choices:
                raise MemosError(
                    f"Version {keep_version} is not one of the conflicting versions of {cube_id} "
                    f"({', '.join(map(str, choices))})."
                )
            owner = vault.conn.execute("SELECT owner FROM cubes WHERE id = ?", (cube_id,)).fetchone()[0]
            cube = vault.rollback(cube_id, keep_version, profile=owner, actor=actor)
            vault.audit("resolve-conflict", cube_id, actor, {"kept": keep_version, "version": cube.version})
            return cube
    raise NotFound(f"Memory {cube_id} has no open conflict.")
