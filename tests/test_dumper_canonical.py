"""Version ids (memos_desktop/dumper/canonical.py): the fast encoding hashes exactly what the spec says."""

import json
import math
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from memos_desktop.dumper.canonical import _plain_floats, canonical_json
from memos_desktop.dumper.importer import import_bundle

FIXTURE = Path(__file__).parent / "data" / "bundle-v1-json-encoder.age"


def _spec(value, sort_keys: bool) -> str:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e-05, 1e-7, 1e16, 1e22, 5e-324, -0.0, 0.0001, 1763865123.123456])
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\x00\x1f\x7f\u2028é𝄞"))
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=8), st.booleans())
def test_canonical_json_is_byte_identical_to_the_json_module(value, sort_keys):
    assert canonical_json(value, sort_keys) == _spec(value, sort_keys)


@settings(max_examples=80, deadline=None)
@given(st.lists(_values, max_size=8))
def test_canonical_json_of_lists_is_byte_identical_to_the_json_module(value):
    assert canonical_json(value, False) == _spec(value, False)


def test_tricky_values_take_the_exact_path():
    value = {
        "nan": math.nan,
        "inf": -math.inf,
        "tiny": 1e-05,
        "huge": 1e16,
        "big": 2**70,
        "del": "a\x7fb",
        "astral": "𝄞 Köln — ☕",
        "text": "null 1e5",
        "nested": [None, {"x": None}],
    }
    assert canonical_json(value, True) == _spec(value, True)


def test_a_bundle_hashed_by_the_json_module_still_imports(vault, tmp_path):
    """tests/data/bundle-v1-json-encoder.age was written before version ids were computed with
    orjson: one cube takes the escaped orjson path (non-ASCII text, plain floats), the other the
    exact path (NaN, tiny and huge floats, 70-bit integers, DEL)."""
    result = import_bundle(vault, FIXTURE, passphrase="fixture passphrase")
    assert (result["cubes"], result["versions_added"], result["links"]) == (4, 8, 1)
    by_title = {c.title: c for c in vault.cubes(state="active")}
    meta = by_title["Ünïcode"].meta
    assert meta["big"] == 2**70 and meta["tiny"] == 1e-05 and math.isnan(meta["nan"])
    assert meta["text"] == "null 1e5 \x7f \x01"
    escaped = by_title["§ Ünïcode only"]
    assert escaped.content == "Grüße aus Köln — naïve café ☕ 𝄞" and escaped.tags == ["straße"]
    snapshot = {**escaped.__dict__, "version": None}
    assert _plain_floats(snapshot) and not orjson.dumps(snapshot).isascii()  # the escaped fast path
    assert [r for r, _ in vault.fts("Köln")]
    assert import_bundle(vault, FIXTURE, passphrase="fixture passphrase")["already_imported"]


def test_the_dumper_writes_through_public_vault_methods_only():
    """No private Vault method, and no SQL writing the vault's own tables (only the op log's)."""
    import re

    vault_tables = r"(?:INSERT(?: OR \w+)? INTO|UPDATE|DELETE FROM) (?:cubes|cube_\w+|links|audit|settings)\b"
    dumper = Path(__file__).parent.parent / "memos_desktop" / "dumper"
    found = {
        path.name: re.findall(rf"vault\._\w+|{vault_tables}", path.read_text()) for path in sorted(dumper.glob("*.py"))
    }
    assert {name: hits for name, hits in found.items() if hits} == {}
