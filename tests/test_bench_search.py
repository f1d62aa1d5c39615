"""`bench search`: latency table for encrypted and plain vaults built side by side."""

import json

import pytest

from memos_desktop.bench import search


def test_cli_reports_both_vaults_and_their_ratio(cli):
    run = cli("bench", "search", "--n", "300", "--queries", "10", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert list(result["sizes"]) == ["300"] and (result["queries"], result["k"]) == (10, 10)
    entry = result["sizes"]["300"]
    for mode in ("encrypted", "plain"):
        times = entry[mode]
        assert set(times) == {"p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms"}
        assert 0 < times["p50_ms"] <= times["p95_ms"] and 0 < times["cpu_p50_ms"] <= times["cpu_p95_ms"]
    for q in ("p50", "p95", "cpu_p50", "cpu_p95"):
        ratio = entry["encrypted"][f"{q}_ms"] / entry["plain"][f"{q}_ms"]
        assert entry[f"encrypted/plain {q}"] == pytest.approx(ratio, abs=1e-3)
    assert entry["knn_recall@10_vs_exact"] == 1.0  # small vaults search exactly
    table = search.rows(result)
    assert [(row["cubes"], row["vault"]) for row in table] == [
        (300, "plain"),
        (300, "encrypted"),
        (300, "encrypted/plain"),
    ]
    assert table[2]["p95_ms"] == entry["encrypted/plain p95"]
