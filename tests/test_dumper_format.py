"""The bundle container: tampering, truncation, reordering, fuzzed input (memos_desktop/dumper)."""

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memos_desktop.dumper import crypto
from memos_desktop.dumper.export import export_bundle
from memos_desktop.dumper.format import BundleSink, BundleSource
from memos_desktop.dumper.importer import import_bundle
from memos_desktop.errors import BundleError
from tests.dumper_helpers import new_vault, state


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A source vault with a ~200 KiB bundle for the target vault (shared by these tests)."""
    import os

    os.environ.setdefault("MEMOS_ARGON2_MEMORY_KIB", "8192")
    root = tmp_path_factory.mktemp("pair")
    src, dst = new_vault(root / "src"), new_vault(root / "dst")
    crypto.add_peer(dst, "src", crypto.device_keys(src).card())  # paired: dst imports what src signs
    src.add_many([{"content": f"memory {i} " + "lorem ipsum " * 15, "tags": ["t"]} for i in range(1000)])
    bundle = root / "b.age"
    export_bundle(src, bundle, recipients=[crypto.device_keys(dst).recipient])
    yield src, dst, bundle.read_bytes(), root
    src.close()
    dst.close()


def _rejected(dst, root, data: bytes) -> None:
    before = state(dst)
    path = root / "mutant.age"
    path.write_bytes(data)
    with pytest.raises(BundleError):
        import_bundle(dst, path)
    assert state(dst) == before


@pytest.mark.parametrize("where", [0.0, 0.0005, 0.1, 0.5, 0.9, 0.999, 1.0])
def test_a_flipped_bit_anywhere_is_detected(pair, where):
    _, dst, data, root = pair
    at = min(int(len(data) * where), len(data) - 1)
    mutant = bytearray(data)
    mutant[at] ^= 0x01
    _rejected(dst, root, bytes(mutant))


@pytest.mark.parametrize("keep", [0, 10, 100, 65_536, 100_000, -17, -1])
def test_truncation_is_detected(pair, keep):
    _, dst, data, root = pair
    _rejected(dst, root, data[:keep])


def test_reordered_chunks_are_detected(pair):
    _, dst, data, root = pair
    header_end = data.index(b"\n---") + len(b"\n--- ") + 43 + 1 + 16  # MAC line, then the nonce
    body = data[header_end:]
    chunk = 65_536 + 16
    a, b = body[:chunk], body[chunk : 2 * chunk]
    _rejected(dst, root, data[:header_end] + b + a + body[2 * chunk :])


def test_replayed_tail_after_the_end_is_detected(pair):
    _, dst, data, root = pair
    _rejected(dst, root, data + data[-200:])


def test_the_untouched_bundle_still_imports(pair):
    _, dst, data, root = pair
    path = root / "ok.age"
    path.write_bytes(data)
    assert import_bundle(dst, path)["versions_added"] == 1000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_fuzzed_files_only_raise_bundle_errors(pair, data):
    _, dst, _, _ = pair
    identity = crypto.device_keys(dst).age_identity
    sink = BundleSink(lambda m: None, lambda r: None, lambda m, s, d: False)
    with pytest.raises(BundleError):
        crypto.decrypt_stream(io.BytesIO(data), sink, [identity], "pass")
        sink.finish()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.integers(0, 4000), max_size=4),
    noise=st.binary(max_size=64),
)
def test_fuzzed_bundles_only_raise_bundle_errors(pair, cut, flips, noise):
    _, dst, data, _ = pair
    mutant = bytearray(data[: len(data) - cut] + noise)
    for at in flips:
        if at < len(mutant):
            mutant[at] ^= 0xFF
    if bytes(mutant) == data:
        return
    identity = crypto.device_keys(dst).age_identity
    sink = BundleSink(lambda m: None, lambda r: None, lambda m, s, d: True)
    with pytest.raises(BundleError):
        crypto.decrypt_stream(io.BytesIO(bytes(mutant)), sink, [identity], None)
        sink.finish()


def _plaintext(records: list[bytes]) -> bytes:
    manifest = {
        "t": "manifest",
        "format": "memos-bundle",
        "version": 1,
        "kind": "export",
        "bundle_id": "01B",
        "device": "01D",
        "signing_key": "k",
    }
    return json.dumps(manifest).encode() + b"\n" + b"".join(records)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.binary(max_size=80), st.from_regex(rb"\{\"t\": ?\"[a-z]{0,8}\"[^\n]{0,40}\}\n")),
        max_size=8,
    )
)
def test_fuzzed_plaintext_records_only_raise_bundle_errors(lines):
    seen = []
    sink = BundleSink(lambda m: None, seen.append, lambda m, s, d: False)
    with pytest.raises(BundleError):
        sink.write(_plaintext(lines))
        sink.finish()


def test_a_record_larger_than_the_limit_is_refused(monkeypatch):
    from memos_desktop.dumper import format as fmt

    monkeypatch.setattr(fmt, "MAX_LINE", 1000)
    sink = BundleSink(lambda m: None, lambda r: None, lambda m, s, d: True)
    with pytest.raises(BundleError, match="larger than"):
        sink.write(_plaintext([b"{" + b" " * 2000]))


def test_source_and_sink_agree_on_a_signed_stream():
    from memos_desktop.dumper.crypto import DeviceKeys

    keys = DeviceKeys("01D", "unused", b"\x07" * 32)
    manifest = {
        "format": "memos-bundle",
        "version": 1,
        "kind": "export",
        "bundle_id": "01B",
        "device": "01D",
        "signing_key": keys.verify_key,
    }
    records = [{"t": "link", "n": i} for i in range(50)]
    plaintext = BundleSource(manifest, iter(records), keys.sign).read()
    got = []
    sink = BundleSink(lambda m: None, got.append, lambda m, s, d: crypto.verify(m["signing_key"], s, d))
    sink.write(plaintext)
    assert sink.finish()["bundle_id"] == "01B" and got == records


def _signed_plaintext(records: list[dict]) -> tuple[bytes, object]:
    from memos_desktop.dumper.crypto import DeviceKeys

    keys = DeviceKeys("01D", "unused", b"\x07" * 32)
    manifest = {
        "format": "memos-bundle",
        "version": 1,
        "kind": "export",
        "bundle_id": "01B",
        "device": "01D",
        "signing_key": keys.verify_key,
    }
    return BundleSource(manifest, iter(records), keys.sign).read(), keys


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_sink_reads_records_split_across_any_write_boundaries(piece):
    records = [{"t": "link", "n": i, "text": "é" * (i * 37)} for i in range(40)]
    plaintext, _ = _signed_plaintext(records)
    got = []
    sink = BundleSink(lambda m: None, got.append, lambda m, s, d: crypto.verify(m["signing_key"], s, d))
    for start in range(0, len(plaintext), piece):
        sink.write(plaintext[start : start + piece])
    assert sink.finish()["bundle_id"] == "01B" and got == records


def test_records_the_fast_parser_refuses_still_read_back():
    records = [{"t": "link", "big": 2**70 + 1, "low": -(2**63) - 1, "nan": float("nan")}]
    plaintext, _ = _signed_plaintext(records)
    got = []
    sink = BundleSink(lambda m: None, got.append, lambda m, s, d: True)
    sink.write(plaintext)
    sink.finish()
    assert got[0]["big"] == 2**70 + 1 and got[0]["low"] == -(2**63) - 1
    assert isinstance(got[0]["big"], int) and got[0]["nan"] != got[0]["nan"]


def test_a_record_larger_than_a_read_chunk_streams_through_whole():
    from memos_desktop.dumper import format as fmt

    records = [{"t": "link", "n": 0}, {"t": "blob", "data": "x" * (3 * fmt.CHUNK)}, {"t": "link"}]
    plaintext, _ = _signed_plaintext(records)
    got = []
    sink = BundleSink(lambda m: None, got.append, lambda m, s, d: crypto.verify(m["signing_key"], s, d))
    for start in range(0, len(plaintext), 65536):
        sink.write(plaintext[start : start + 65536])
    assert sink.finish()["bundle_id"] == "01B" and got == records
