"""bench lang: the multilingual check set and its report (memos_desktop/bench/lang.py)."""

import json

from memos_desktop.bench import lang


def test_check_set_has_25_notes_and_queries_per_language_with_source_and_licence():
    data = json.loads(lang.CHECK_SET.read_text(encoding="utf-8"))["languages"]
    assert set(data) == {"ja", "zh", "de", "ru"}
    for entry in data.values():
        assert len(entry["notes"]) == len(entry["queries"]) == 25
        assert entry["source"] and entry["licence"]
        ids = {n["id"] for n in entry["notes"]}
        assert {q["note"] for q in entry["queries"]} == ids


def test_keyword_search_finds_cjk_words_the_word_index_alone_misses():
    result = lang.run(dense=False)
    rows = {r["language"]: r for r in result["rows"]}
    assert rows["ja"]["fts5"] < 0.5 and rows["zh"]["fts5"] < 0.5  # unicode61: a CJK run is one token
    assert all(r["ours"] >= 0.9 for r in rows.values())
    assert rows["ru"]["ours"] > rows["ru"]["fts5"]  # inflected queries, by prefix
