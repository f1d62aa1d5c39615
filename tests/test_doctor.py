"""`memos-desktop doctor`, driven as a user runs it."""

import json


def test_doctor_checks_the_embedder_against_the_reference(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("MEMOS_CACHE", str(tmp_path / "cache"))
    assert cli("init").returncode == 0
    result = cli("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["embedder"]["ok"] and checks["embedder reference"]["ok"]
    assert "min cosine 0.9999" in checks["embedder reference"]["detail"]
