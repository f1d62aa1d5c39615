"""MemLoader commands driven as a user drives them: watch add/list/rm/config, ingest, sources."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from memos_desktop.vault import loader_files as status
from tests.support import REPO, run_cli


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "trip.md").write_text("# Trip\n\nLisbon in May.\n\n## Flights\n\nTAP 123 on Monday.\n")
    (folder / "blob.txt").write_bytes(b"\0\1\2\3" * 100)
    return folder


@pytest.fixture
def keyword_vault(vault):
    """The shared test vault with embeddings off, so CLI runs need no model."""
    vault.set_setting("embedder", "none")
    return vault


def test_watch_add_list_and_rm(keyword_vault, notes):
    added = run_cli("watch", "add", str(notes))
    assert added.returncode == 0, added.stderr
    listed = json.loads(run_cli("watch", "list", "--json").stdout)
    assert [row["folder"] for row in listed] == [str(notes)]
    assert run_cli("watch", "rm", str(notes)).returncode == 0
    assert json.loads(run_cli("watch", "list", "--json").stdout) == []


def test_watch_add_of_a_missing_folder_is_a_one_line_error(keyword_vault, tmp_path):
    result = run_cli("watch", "add", str(tmp_path / "nope"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_watch_rm_of_an_unwatched_folder_is_a_one_line_error(keyword_vault, notes):
    result = run_cli("watch", "rm", str(notes))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {notes} is not a watched folder."


def test_watch_config_changes_rules_in_the_vault(keyword_vault):
    result = run_cli("watch", "config", "--max-mb", "2", "--ignore", "drafts/", "--hidden", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["max_bytes"] == 2_000_000 and "drafts/" in shown["ignore"] and shown["include_hidden"]
    assert keyword_vault.get_setting("loader")["max_bytes"] == 2_000_000


def test_ingest_indexes_a_folder_and_reports_skips(keyword_vault, notes):
    result = run_cli("ingest", str(notes), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["indexed"], report["skipped"], report["cubes_added"]) == (1, 1, 2)
    assert keyword_vault.fts("TAP Monday", 5)


def test_ingest_twice_embeds_nothing_the_second_time(keyword_vault, notes):
    run_cli("ingest", str(notes))
    again = json.loads(run_cli("ingest", str(notes), "--json").stdout)
    assert (again["unchanged"], again["embedded"]) == (2, 0)


def test_sources_lists_folders_and_files_with_reasons(keyword_vault, notes):
    run_cli("watch", "add", str(notes))
    run_cli("ingest", str(notes))
    folders = json.loads(run_cli("sources", "--json").stdout)
    assert folders == [{"folder": str(notes), "watched": True, "indexed": 1, "pending": 0, "skipped": 1, "error": 0}]
    skipped = json.loads(run_cli("sources", "--status", "skipped", "--json").stdout)
    assert [(row["path"], row["reason"]) for row in skipped] == [
        (str(notes / "blob.txt"), "binary content in a text file")
    ]
    table = run_cli("sources", "--files", env={"COLUMNS": "400"})
    assert "trip.md" in table.stdout and "binary content" in table.stdout


def _watch_run() -> subprocess.Popen:
    """`memos-desktop watch run` in its own process (stop it with SIGTERM)."""
    return subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", "watch", "run"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(condition, deadline: float, proc: subprocess.Popen) -> None:
    """Poll `condition` until it holds; fail at `deadline` or if the watcher process died."""
    while not condition():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_watch_run_follows_changes_until_terminated(keyword_vault, notes):
    run_cli("watch", "add", str(notes))
    proc = _watch_run()
    try:
        deadline = time.monotonic() + 60
        _wait(lambda: status.counts(keyword_vault)["indexed"] >= 1, deadline, proc)
        (notes / "new.md").write_text("# New\n\nwatched narwhal\n")
        _wait(lambda: keyword_vault.fts("narwhal", 5), deadline, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "[watching]" in err


def test_watch_run_follows_a_folder_added_by_another_command(keyword_vault, notes, tmp_path):
    run_cli("watch", "add", str(notes))
    proc = _watch_run()
    more = tmp_path / "more"
    more.mkdir()
    (more / "old.md").write_text("# Old\n\nthere before: axolotl\n")
    try:
        deadline = time.monotonic() + 180  # three waits, each a process start on a loaded machine
        _wait(lambda: status.counts(keyword_vault)["indexed"] >= 1, deadline, proc)
        assert run_cli("watch", "add", str(more)).returncode == 0
        _wait(lambda: keyword_vault.fts("axolotl", 5), deadline, proc)
        (more / "new.md").write_text("# New\n\nlive: capybara\n")
        _wait(lambda: keyword_vault.fts("capybara", 5), deadline, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_sources_counts_chunks_awaiting_vectors(vault, notes):
    from memos_desktop.loader.ingest import Loader

    assert run_cli("watch", "add", str(notes)).returncode == 0
    loader = Loader(vault)
    loader.scan([notes], embed=False)
    rows = json.loads(run_cli("sources", "--json").stdout)
    assert [(r["indexed"], r["awaiting vectors"]) for r in rows] == [(1, 2)]
    loader.embed_pending()
    rows = json.loads(run_cli("sources", "--json").stdout)
    assert [r["awaiting vectors"] for r in rows] == [0]


def test_watch_run_without_folders_is_a_one_line_error(keyword_vault):
    result = run_cli("watch", "run")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: No watched folders: add one with `memos-desktop watch add PATH`."


def test_watch_rm_forget_tombstones_the_folders_memories(keyword_vault, notes):
    from memos_desktop.loader.ingest import Loader

    assert run_cli("watch", "add", str(notes)).returncode == 0
    Loader(keyword_vault).scan([notes])
    ids = [c.id for c in keyword_vault.cubes()]
    result = run_cli("watch", "rm", "--forget", str(notes))
    assert result.returncode == 0, result.stderr
    assert "forgot the memories of 2 files" in result.stdout
    assert ids and all(keyword_vault.get(i, include_inactive=True).state == "deleted" for i in ids)
    assert status.counts(keyword_vault)["indexed"] == 0
