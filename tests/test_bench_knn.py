"""`bench knn`: recall of the exact nearest neighbours on real all-MiniLM-L6-v2 vectors."""

import json

import pytest

from memos_desktop.bench import knn


def test_paragraphs_are_distinct_prose_in_a_fixed_order():
    first = knn.paragraphs(50)
    assert first == knn.paragraphs(50) and len(set(first)) == 50
    assert all(60 <= len(p) <= 500 for p in first)


@pytest.mark.slow
def test_cli_reports_the_current_passes_beside_the_previous_one(cli):
    run = cli("bench", "knn", "--n", "600", "--queries", "20", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["vectors"], result["queries"], result["k"]) == (600, 20, 50)
    recall = result["recall"]
    assert all(0.0 <= value <= 1.0 for value in recall.values())
    # 600 vectors: the previous pass rescored 200 by Hamming distance, the current one 400 chosen
    # by the float query against the sign bits; it must keep more of the true neighbours.
    assert recall["on-topic current"] > recall["on-topic previous"]
    assert recall["short current"] > recall["short previous"]
