"""`bench ingest` on a tiny synthetic vault: every measure is produced and nothing is re-embedded."""

from memos_desktop.bench import ingest


def test_synthetic_notes_have_front_matter_headings_and_links(tmp_path):
    size = ingest.generate(tmp_path, 5)
    text = next(tmp_path.rglob("note-00000.md")).read_text()
    assert text.startswith("---\ntitle: note-00000\n") and "\n## " in text and "[[note-" in text
    assert size == sum(p.stat().st_size for p in tmp_path.rglob("*.md"))


def test_bench_run_measures_index_rescan_and_live_latency():
    result = ingest.run(n=40, edits=3, fts_only=True)
    assert result["files"] == 40 and result["errors"] == 0 and result["links"] > 0
    assert result["rescan_unchanged_embedded"] == 0 and result["rescan_touched_embedded"] == 0
    assert result["edits"] == 3 and 0 < result["save_to_searchable_p50_s"] <= result["save_to_searchable_max_s"]
    assert [row["measure"] for row in ingest.rows(result)][0] == "files"


def test_bench_on_a_real_folder_edits_only_a_copy(tmp_path):
    ingest.generate(tmp_path / "mine", 6)
    before = {p: p.read_bytes() for p in (tmp_path / "mine").rglob("*.md")}
    result = ingest.run(path=tmp_path / "mine", edits=2, fts_only=True)
    assert result["files"] == 6 and result["edits"] == 2
    assert {p: p.read_bytes() for p in (tmp_path / "mine").rglob("*.md")} == before
