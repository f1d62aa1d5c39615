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
    for mode in ("encrypted", "plain"):  # end to end: the query embedded by the real MiniLM
        assert entry["real query"][mode]["cpu_p50_ms"] > entry[mode]["cpu_p50_ms"]
    assert entry["embedder alone"]["cpu_p50_ms"] > 0 and entry["embedder alone f16"]["cpu_p50_ms"] > 0
    assert result["query_embedder"].startswith("all-MiniLM-L6-v2@") and result["query_tokens_mean"] > 1
    table = search.rows(result)
    assert [(row["cubes"], row["vault"], row["query"]) for row in table] == [
        (300, "plain", "vector given"),
        (300, "encrypted", "vector given"),
        (300, "encrypted, links off", "vector given"),
        (300, "plain", "text (MiniLM)"),
        (300, "encrypted", "text (MiniLM)"),
        (300, "-", "MiniLM Q8_0 alone"),
        (300, "-", "MiniLM F16 alone"),
        (300, "encrypted/plain", "vector given"),
    ]
    assert table[-1]["p95_ms"] == entry["encrypted/plain p95"]
    links_off = entry["encrypted, links off"]
    assert 0 < links_off["cpu_p50_ms"] <= links_off["cpu_p95_ms"]
    assert entry["index_rows"]["memories"] == 300 and entry["index_rows"]["memory-term links"] > 0
