"""`bench mcp` runs end to end on a small vault: real servers, both transports, every figure reported."""

import pytest


@pytest.mark.slow
def test_bench_mcp_reports_both_transports_and_the_in_process_baseline():
    from memos_desktop.bench import mcp

    result = mcp.run(n=300, queries=12, adds=3, embedder="none")
    assert result["embedder"] == "none (keyword search only)"
    for name in ("stdio", "http"):
        search = result["search"][name]
        assert 0 < search["p50_ms"] <= search["p95_ms"]
        assert result["add_memory"][name]["adds_per_s"] > 0
    assert result["in_process"]["p50_ms"] > 0
    assert [row["path"] for row in mcp.rows(result)] == ["in process (no MCP)", "MCP over stdio", "MCP over http"]
