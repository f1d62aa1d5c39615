"""Property-based fuzzing of the bundle parser and the importer: any mutation of a bundle is
rejected cleanly (a MemosError, the vault untouched) or imported exactly (every version it
carries stored as carried), never partially.

The mutations are made by a signer the target trusts, who re-signs (and, when asked, re-hashes
the version ids of) whatever they changed, so the checks under the signature are what is tested:
field validation, authorship, parents, conflicts, links, audit excerpts and blobs.
"""

import copy
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memos_desktop.dumper import canonical, crypto
from memos_desktop.dumper.export import export_bundle
from memos_desktop.dumper.format import BundleSink
from memos_desktop.dumper.importer import import_bundle
from memos_desktop.errors import BundleError, MemosError
from tests.dumper_helpers import craft_bundle, new_vault, state

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A source vault with history, links and a blob, and a target that trusts it."""
    os.environ.setdefault("MEMOS_ARGON2_MEMORY_KIB", "8192")
    root = tmp_path_factory.mktemp("fuzz")
    source, target = new_vault(root / "source"), new_vault(root / "target")
    crypto.add_peer(target, "source", crypto.device_keys(source).card())
    a = source.add("the cat is grey", title="Cat", tags=["pets"], source={"path": "notes/cat.md", "lines": [1, 2]})
    source.edit(a.id, content="the cat is black", importance=0.9)
    b = source.add("meeting at noon", valid_from=1_700_000_000.0, meta={"n": 2**70, "x": [1, {"y": None}]})
    source.forget(b.id)
    source.restore(b.id)
    source.blobs.put("kv-1", b"\x00state", b"model-x")
    c = source.add("", kind="activation", payload_ref="kv-1", meta={"blob_context": "model-x"})
    source.link(c.id, a.id, "built_from")
    bundle = root / "seed.age"
    export_bundle(source, bundle, recipients=[crypto.device_keys(target).recipient], with_blobs=True)
    plain = io.BytesIO()
    with open(bundle, "rb") as fh:
        crypto.decrypt_stream(fh, plain, [crypto.device_keys(target).age_identity])
    lines = [json.loads(line) for line in plain.getvalue().splitlines()]
    records = [r for r in lines if r["t"] not in ("manifest", "end")]
    yield source, target, records, bundle, root
    source.close()
    target.close()


_HOSTILE = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            -1,
            1,
            0.5,
            2**64,
            10**30,
            1e308,
            -1e308,
            math.nan,
            math.inf,
            -math.inf,
            "",
            "x" * 5000,
            "\x1b[31mred\x1b[0m",
            "\x1b]52;c;aGk=\x07",
            "../../etc/passwd",
            "conflict",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "0" * 32,
            "plaintext",
            "deleted",
            [],
            {},
            [[[[[[]]]]]],
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.text(max_size=5), max_size=3),
)


def _slots(value, path=()):
    """Every (path) to a value inside a record, containers included."""
    out = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _slots(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _slots(item, (*path, i))
    return out


def _set(record, path, value, delete):
    target = record
    for key in path[:-1]:
        target = target[key]
    if delete:
        target.pop(path[-1])
    else:
        target[path[-1]] = value


def _rehash(records):
    """What a signer that forges deliberately does: make every version id match its (changed) event."""
    for record in records:
        if record.get("t") != "cube" or not isinstance(record.get("events"), list):
            continue
        for ev in record["events"]:
            try:
                fields = [ev[k] for k in ("parents", "hlc", "device", "op", "actor", "at", "snapshot")]
                ev["vid"] = canonical.vid_of(record["id"], *fields)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue


@st.composite
def mutated(draw, records):
    records = copy.deepcopy(records)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "set", "set", "delete", "drop", "duplicate", "swap", "insert"]))
        if kind in ("set", "delete"):
            index = draw(st.integers(0, len(records) - 1))
            slots = _slots(records[index])
            if not slots:
                continue
            path = draw(st.sampled_from(slots))
            _set(records[index], path, draw(_HOSTILE), kind == "delete")
        elif kind == "drop" and records:
            records.pop(draw(st.integers(0, len(records) - 1)))
        elif kind == "duplicate" and records:
            records.append(copy.deepcopy(records[draw(st.integers(0, len(records) - 1))]))
        elif kind == "swap" and len(records) > 1:
            i, j = draw(st.integers(0, len(records) - 1)), draw(st.integers(0, len(records) - 1))
            records[i], records[j] = records[j], records[i]
        else:
            records.insert(
                draw(st.integers(0, len(records))),
                draw(st.dictionaries(st.sampled_from(["t", "id", "events", "src", "name"]), _HOSTILE, max_size=4)),
            )
    if draw(st.booleans()):
        _rehash(records)
    return records


def _snapshot_of(vault, vid):
    row = vault.conn.execute(
        "SELECT v.snapshot FROM sync_events e JOIN cube_versions v"
        " ON v.cube_id = e.cube_id AND v.version = e.version WHERE e.vid = ?",
        (vid,),
    ).fetchone()
    return None if row is None else canonical.canonical_snapshot(json.loads(row[0]))


def _vault_state(vault):
    blobs = sorted(p.name for p in (vault.data_dir / "blobs").glob("*")) if (vault.data_dir / "blobs").exists() else []
    return state(vault), vault.conn.execute("SELECT count(*) FROM audit").fetchone()[0], blobs


def _new_bundle_id():
    from ulid import ULID

    return str(ULID())


@FUZZ
@given(st.data())
def test_bundle_fuzz_a_mutated_bundle_is_rejected_cleanly_or_imported_exactly(pair, data):
    source, target, records, _, root = pair
    bundle_records = data.draw(mutated(records))
    try:
        path = craft_bundle(
            crypto.device_keys(source),
            root / "mutated.age",
            bundle_records,
            [crypto.device_keys(target).recipient],
            bundle_id=_new_bundle_id(),
            created_at=1_700_000_000.0,
        )
    except (TypeError, ValueError):
        return  # not even writable as JSON (e.g. a circular or unencodable value)
    before = _vault_state(target)
    try:
        import_bundle(target, path)
    except MemosError:
        assert _vault_state(target) == before
        return
    for record in bundle_records:
        if record.get("t") == "cube":
            for ev in record["events"]:
                assert _snapshot_of(target, ev["vid"]) == canonical.canonical_snapshot(ev["snapshot"])


@FUZZ
@given(st.data())
def test_bundle_fuzz_damaged_ciphertext_is_rejected_without_a_trace(pair, data):
    _, target, _, bundle, root = pair
    raw = bytearray(bundle.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 64))]
        elif action == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=32))
        else:
            del raw[at:]
        if not raw:
            break
    damaged = root / "damaged.age"
    damaged.write_bytes(bytes(raw))
    before = _vault_state(target)
    try:
        result = import_bundle(target, damaged)
    except BundleError:
        assert _vault_state(target) == before
        return
    # age authenticates every chunk: only a change outside the ciphertext (none here) could pass
    assert result.get("already_imported") or result["cubes"] >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 2000), st.binary(max_size=64))
def test_bundle_fuzz_the_parser_raises_only_bundle_errors(prefix, cut, noise):
    """The plaintext parser alone (BundleSink): arbitrary bytes, or a valid start cut and spliced
    with noise, end in a BundleError or a finished bundle; never another exception."""
    valid = (
        b'{"t":"manifest","format":"memos-bundle","version":1,"kind":"export",'
        b'"bundle_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","device":"01ARZ3NDEKTSV4RRFFQ69G5FAW","signing_key":"k"}\n'
        b'{"t":"summary","cubes":0}\n'
    )
    seen = []
    for data in (prefix, valid[:cut] + noise + valid[cut:]):
        sink = BundleSink(seen.append, seen.append, lambda manifest, signature, signed: True)
        try:
            sink.write(data)
            sink.finish()
        except BundleError:
            continue
