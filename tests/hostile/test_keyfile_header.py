"""Damaged and hostile `vault.key` headers: one clear line, never a traceback, never a hang.

Argon2 parameters come from the file, so a header asking for 10^9 iterations or a terabyte of
memory must be refused before any derivation starts. The property test mutates a real header
at random and requires each variant to unlock exactly as before or fail with a MemosError.
"""

import base64
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memos_desktop import paths
from memos_desktop.errors import MemosError, VaultError
from memos_desktop.vault import Vault, keys
from tests.support import PASSPHRASE, run_cli


@pytest.fixture(scope="module")
def header_file(tmp_path_factory):
    """A real header (small Argon2 memory, as every test vault) and the key it unwraps to."""
    import os

    os.environ.setdefault("MEMOS_ARGON2_MEMORY_KIB", "8192")
    path = tmp_path_factory.mktemp("key") / "vault.key"
    data_key = keys.create_header(path, PASSPHRASE, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    return path, json.loads(path.read_text()), data_key


def _b64(n: int) -> str:
    return base64.b64encode(b"\x01" * n).decode()


_DAMAGE = {
    "empty file": b"",
    "not json": b"{format: memos",
    "binary": bytes(range(256)) * 4,
    "a json list": b"[1, 2, 3]",
    "deeply nested": b"[" * 200_000 + b"]" * 200_000,
    "huge file": b" " * (keys.MAX_HEADER_BYTES + 10) + b"{}",
}
_FIELDS = {
    "format missing": lambda h: h.pop("format"),
    "version text": lambda h: h.update(version="1"),
    "version huge": lambda h: h.update(version=10**400),
    "kdf a string": lambda h: h.update(kdf="argon2id"),
    "kdf missing": lambda h: h.pop("kdf"),
    "iterations 10^9": lambda h: h["kdf"].update(iterations=10**9),
    "memory 1 TB": lambda h: h["kdf"].update(memory_kib=2**30),
    "iterations x memory too much work": lambda h: h["kdf"].update(iterations=60, memory_kib=2**19),
    "iterations text": lambda h: h["kdf"].update(iterations="3"),
    "iterations float": lambda h: h["kdf"].update(iterations=3.0),
    "iterations true": lambda h: h["kdf"].update(iterations=True),
    "iterations zero": lambda h: h["kdf"].update(iterations=0),
    "lanes 10^6": lambda h: h["kdf"].update(lanes=10**6),
    "memory below lanes x 8": lambda h: h["kdf"].update(lanes=16, memory_kib=64),
    "memory 1e308": lambda h: h["kdf"].update(memory_kib=1e308),
    "salt not base64": lambda h: h["kdf"].update(salt="%%%"),
    "salt 4 bytes": lambda h: h["kdf"].update(salt=_b64(4)),
    "salt a number": lambda h: h["kdf"].update(salt=7),
    "nonce 8 bytes": lambda h: h.update(nonce=_b64(8)),
    "nonce non-ascii": lambda h: h.update(nonce="ñññ"),
    "wrapped key missing": lambda h: h.pop("wrapped_key"),
    "wrapped key 1 MB": lambda h: h.update(wrapped_key=_b64(30_000)),
    "vault id a number": lambda h: h.update(vault_id=123),
    "vault id a path": lambda h: h.update(vault_id="../../x"),
}


@pytest.mark.parametrize("raw", list(_DAMAGE.values()), ids=list(_DAMAGE))
def test_damaged_header_bytes_are_a_clear_error(tmp_path, raw):
    path = tmp_path / "vault.key"
    path.write_bytes(raw)
    with pytest.raises(MemosError) as err:
        keys.unwrap(path, PASSPHRASE)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("damage", list(_FIELDS.values()), ids=list(_FIELDS))
def test_damaged_header_fields_are_a_clear_error_before_deriving(tmp_path, header_file, damage):
    _, header, _ = header_file
    header = copy.deepcopy(header)
    damage(header)
    path = tmp_path / "vault.key"
    path.write_text(json.dumps(header))
    with pytest.raises(MemosError) as err:
        keys.unwrap(path, PASSPHRASE)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize(
    "damage",
    [_FIELDS["iterations 10^9"], _FIELDS["memory 1 TB"], lambda h: h["kdf"].update(lanes="4")],
    ids=["iterations 10^9", "memory 1 TB", "lanes text"],
)
def test_the_cli_reports_a_hostile_header_in_one_line_without_hanging(isolated_home, damage):
    Vault.create(isolated_home, PASSPHRASE).close()
    header_path = isolated_home / paths.VAULT_HEADER
    header = json.loads(header_path.read_text())
    damage(header)
    header_path.write_text(json.dumps(header))
    out = run_cli("stats", timeout=60)  # the old code derived for hours (or ran out of memory)
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_a_newer_header_version_says_upgrade(tmp_path, header_file):
    _, header, _ = header_file
    path = tmp_path / "vault.key"
    path.write_text(json.dumps({**header, "version": 2}))
    with pytest.raises(VaultError, match="Upgrade"):
        keys.unwrap(path, PASSPHRASE)


def test_an_unreadable_header_is_a_clear_error(tmp_path):
    path = tmp_path / "vault.key"
    path.mkdir()
    with pytest.raises(MemosError, match="cannot be read"):
        keys.unwrap(path, PASSPHRASE)


def test_a_bad_argon2_memory_setting_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMOS_ARGON2_MEMORY_KIB", "lots")
    with pytest.raises(MemosError, match="MEMOS_ARGON2_MEMORY_KIB"):
        keys.create_header(tmp_path / "vault.key", PASSPHRASE, "01ARZ3NDEKTSV4RRFFQ69G5FAV")


# ----- property: any mutation unlocks exactly as before or is a MemosError --------------------------
_HOSTILE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 4, 7, 10**9, 2**63, 10**30, 1.5, 1e308, float("inf"), float("nan")]),
    st.text(max_size=40),
    st.sampled_from(["", "argon2id", "AAAA", _b64(16), _b64(12), _b64(48), "chacha20-poly1305"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
_PATHS = [
    ("format",),
    ("version",),
    ("vault_id",),
    ("cipher",),
    ("nonce",),
    ("wrapped_key",),
    ("kdf",),
    ("kdf", "name"),
    ("kdf", "salt"),
    ("kdf", "iterations"),
    ("kdf", "lanes"),
    ("kdf", "memory_kib"),
]


def _mutate(header: dict, path: tuple, value, delete: bool) -> dict:
    out = copy.deepcopy(header)
    target = out
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            return out
        target = target[key]
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(_PATHS), _HOSTILE_VALUES, st.booleans()), min_size=1, max_size=3),
)
def test_keyfile_mutations_unlock_exactly_or_fail_cleanly(tmp_path, header_file, mutations):
    _, header, data_key = header_file
    for path, value, delete in mutations:
        header = _mutate(header, path, value, delete)
    target = tmp_path / "fuzzed.key"
    try:
        target.write_text(json.dumps(header))
    except ValueError:
        return
    try:
        got, vault_id = keys.unwrap(target, PASSPHRASE)
    except MemosError as exc:
        assert "\n" not in str(exc)
        return
    assert got == data_key and vault_id == "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_keyfile_byte_damage_unlocks_exactly_or_fails_cleanly(tmp_path, header_file, data):
    path, _, data_key = header_file
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 40))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        if not raw:
            break
    target = tmp_path / "fuzzed.key"
    target.write_bytes(bytes(raw))
    try:
        got, _ = keys.unwrap(target, PASSPHRASE)
    except MemosError as exc:
        assert "\n" not in str(exc)
        return
    assert got == data_key
