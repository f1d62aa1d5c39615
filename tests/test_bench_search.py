"""`bench search`: latency table for encrypted and plain vaults built side by side."""

import json


def test_cli_reports_both_vaults_and_their_ratio(cli):
    run = cli("bench", "search", "--n", "300", "--queries", "10", "--json")
    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)["sizes"]["300"]
    assert entry["encrypted"]["p95_ms"] > 0 and entry["plain"]["p95_ms"] > 0
    assert entry["encrypted/plain p95"] > 0
    assert entry["knn_recall@10_vs_exact"] == 1.0  # small vaults search exactly
