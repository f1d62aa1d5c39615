"""The op log that lets versions from several devices merge without losing any.

Every row of `cube_versions` becomes an *event*: a global id (`vid`, a hash of the event), its
parents' vids, a hybrid-logical-clock stamp and the device that wrote it (table `sync_events`).
Local versions are tagged lazily (`tag_local`); foreign events are appended as new local version
rows (`apply_cube`), so every version of every device is kept. A cube's current state is its
single head; when concurrent edits leave several heads, a deterministic *conflict* version (same
id on every device) records them and shows the latest by clock until the user resolves it
(`conflicts.py`). All functions run inside the caller's write transaction and never commit.
Versions and heads are stored through the public `Vault.import_versions`, which rebuilds FTS for
the cubes they change and leaves vectors to the embedder; op-log rows go through
`vault/sync_log.py`. This module runs no SQL.
"""

import json
from dataclasses import dataclass, field, fields
from typing import Any, cast

from memos_desktop.dumper import clock as hlc
from memos_desktop.dumper.canonical import canonical_snapshot, stored_snapshot, vid_of
from memos_desktop.dumper.format import check_blob_name, check_id, loads
from memos_desktop.errors import BundleError
from memos_desktop.vault import Vault, sync_log
from memos_desktop.vault.cube import COLUMNS, KINDS, STATES, MemCube
from memos_desktop.vault.sync_log import CONFLICT_DEVICE

CLOCK_SETTING = "sync.clock"
_OP_MAX = 32
BATCH = 2000  # rows per executemany when tagging or inserting new cubes
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


def load_clock(vault: Vault) -> hlc.HybridClock:
    ms, counter = vault.get_setting(CLOCK_SETTING, [0, 0])
    return hlc.HybridClock(vault.device_id, ms, counter)


def save_clock(vault: Vault, clock: hlc.HybridClock) -> None:
    """Persist the clock (inside the caller's transaction)."""
    vault.set_setting(CLOCK_SETTING, [clock.ms, clock.counter])


def tag_local(vault: Vault, clock: hlc.HybridClock) -> int:
    """Give every untagged version row (made on this device) an event id; return how many.

    Streams the rows (parents before children per cube); inserts, in batches, only touch rows
    already read (a parent is either earlier in this cube's rows or tagged before).
    """
    rows = sync_log.untagged_versions(vault)
    count = 0
    current: str | None = None
    tagged: dict[int, str] = {}
    pending: list[tuple[object, ...]] = []
    for cube_id, version, parent, op, at, actor, snapshot in rows:
        if cube_id != current:
            current, tagged = cube_id, {}
        parents: list[str] = []
        if parent is not None:
            pvid = tagged.get(parent)
            if pvid is None:
                pvid = sync_log.vid_at(vault, cube_id, parent)
            if pvid is not None:
                parents = [pvid]
        stamp = clock.tick(int(at * 1000))
        vid = vid_of(cube_id, parents, stamp, vault.device_id, op, actor, at, cast(dict[str, Any], loads(snapshot)))
        pending.append((vid, cube_id, version, stamp, vault.device_id, json.dumps(parents), None, 0))
        if len(pending) >= BATCH:
            sync_log.insert_events(vault, pending)
            pending = []
        tagged[version] = vid
        count += 1
    sync_log.insert_events(vault, pending)
    save_clock(vault, clock)
    return count


def cube_events(vault: Vault, cube_id: str, only_unshared: bool = False) -> list[Event]:
    """The events of one cube in local version order (parents before children)."""
    rows = sync_log.cube_events(vault, cube_id, only_unshared)
    return [Event(v, json.loads(p), h, d, op, a, at, json.loads(s)) for v, p, h, d, op, a, at, s in rows]


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


def apply_cube(
    vault: Vault,
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
    row = sync_log.head_row(vault, cube_id)
    known: dict[str, _Known] = {}
    next_version = 1
    if row is not None:
        for vid, version, stamp, parents in sync_log.known_events(vault, cube_id):
            known[vid] = _Known(version, stamp, parents)
        next_version = sync_log.next_version(vault, cube_id)
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
        sync_log.insert_events(vault, tags)
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


def _snapshot(vault: Vault, cube_id: str, known: _Known) -> dict:
    if known.snapshot is None:
        known.snapshot = sync_log.version_snapshot(vault, cube_id, known.version)
    return known.snapshot


def _settle(
    vault: Vault,
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

    def __init__(self, vault: Vault, *, origin: str, shared: bool, clock: hlc.HybridClock, size: int = BATCH):
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
        sync_log.insert_events(self.vault, self._events)
        self.ids, self._heads, self._versions, self._events = {}, [], [], []
