"""Bundles open with the standard `age` command line tool (Debian package `age`)."""

import json
import os
import pty
import shutil
import subprocess

import pytest

from memos_desktop.dumper import crypto
from memos_desktop.dumper.export import export_bundle

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="the `age` tool is not installed")


def _lines(plaintext: bytes) -> list[dict]:
    return [json.loads(line) for line in plaintext.splitlines()]


def test_age_decrypts_a_recipient_bundle_with_the_identity_file(vault, tmp_path):
    cube = vault.add("readable with age")
    export_bundle(vault, tmp_path / "b.age")
    identity = tmp_path / "id.txt"
    identity.write_text(crypto.device_keys(vault).age_identity + "\n")
    out = subprocess.run(["age", "-d", "-i", str(identity), str(tmp_path / "b.age")], capture_output=True, check=True)
    records = _lines(out.stdout)
    assert records[0]["t"] == "manifest" and records[-1]["t"] == "end"
    cube_record = next(r for r in records if r["t"] == "cube")
    assert cube_record["id"] == cube.id and cube_record["events"][0]["snapshot"]["content"] == "readable with age"


def _age_with_passphrase(args: list[str], passphrase: str) -> int:
    """Run `age` on a pseudo-terminal (it reads passphrases from /dev/tty) and type one."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("age", ["age", *args])
    seen = b""
    typed = False
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not typed and b"passphrase" in seen.lower():
            os.write(fd, passphrase.encode() + b"\n")
            typed = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status)


def test_age_decrypts_a_passphrase_bundle_in_two_steps(vault, tmp_path):
    vault.add("protected by a passphrase")
    bundle = tmp_path / "p.age"
    export_bundle(vault, bundle, passphrase="open sesame")
    # The documented recipe (docs/bundle-format.md): split the header, key part and payload.
    script = (
        'set -e; N=$(head -n1 "$B" | cut -d" " -f3); H=$(head -n1 "$B" | wc -c); '
        'tail -c +$((H+1)) "$B" | head -c "$N" > "$D/key.age"; '
        'tail -c +$((H+N+1)) "$B" > "$D/payload.age"'
    )
    subprocess.run(["sh", "-c", script], env={**os.environ, "B": str(bundle), "D": str(tmp_path)}, check=True)
    assert _age_with_passphrase(["-d", "-o", str(tmp_path / "key.txt"), str(tmp_path / "key.age")], "open sesame") == 0
    assert (tmp_path / "key.txt").read_text().startswith("AGE-SECRET-KEY-1")
    out = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "key.txt"), str(tmp_path / "payload.age")],
        capture_output=True,
        check=True,
    )
    cube = next(r for r in _lines(out.stdout) if r["t"] == "cube")
    assert cube["events"][0]["snapshot"]["content"] == "protected by a passphrase"


def test_age_refuses_a_tampered_bundle(vault, tmp_path):
    vault.add("x" * 100_000)
    export_bundle(vault, tmp_path / "b.age")
    data = bytearray((tmp_path / "b.age").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "t.age").write_bytes(bytes(data))
    identity = tmp_path / "id.txt"
    identity.write_text(crypto.device_keys(vault).age_identity + "\n")
    out = subprocess.run(["age", "-d", "-i", str(identity), str(tmp_path / "t.age")], capture_output=True)
    assert out.returncode != 0
