"""Watcher: real watchdog events on real files reach the vault; it survives bad input."""

import os
import threading
import time
from pathlib import Path

import pytest

from memos_desktop.loader.config import LoaderConfig, add_root, remove_root
from memos_desktop.loader.watcher import Watcher
from memos_desktop.vault import Vault
from memos_desktop.vault import loader_files as status
from tests.support import PASSPHRASE


def eventually(check, timeout: float = 15.0):
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "start.md").write_text("# Start\n\nalready here before the watcher\n")
    return folder


@pytest.fixture
def watcher(vault, notes, isolated_home, fake_embedder):
    add_root(vault, notes)
    config = LoaderConfig.load(vault)
    config.debounce_s = 0.1
    config.save(vault)
    seen = []
    w = Watcher(lambda: Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder), on_status=seen.append)
    w.seen = seen
    w.start()
    assert w.wait_ready(timeout=30)
    assert w.status.state == "watching", w.status.last_error
    yield w
    w.stop()


def searchable(vault, words):
    return lambda: vault.fts(words, 5)


def test_startup_scan_indexes_files_written_while_closed(vault, watcher):
    assert vault.fts("already here before", 5)
    assert watcher.status.counts["indexed"] == 1


def test_startup_scan_is_searchable_by_words_then_embedded_in_the_background(vault, watcher):
    eventually(lambda: watcher.status.vectors == (1, 1))
    assert vault.pending_embeddings() == 0 and vault.vector_count() == 1


def test_a_saved_edit_is_embedded_after_it_is_searchable_by_words(vault, notes, watcher):
    (notes / "idea.md").write_text("# Idea\n\nsolar powered kettle\n")
    eventually(searchable(vault, "solar kettle"))
    cube = eventually(lambda: [c for c in vault.cubes(source_path=str(notes / "idea.md")) if c.embed_model])[0]
    assert vault.knn(vault.embedder.embed(["solar powered kettle"])[0], 1)[0][0] == vault._rowid(cube.id)


def test_new_file_becomes_searchable(vault, notes, watcher):
    (notes / "idea.md").write_text("# Idea\n\nsolar powered kettle\n")
    eventually(searchable(vault, "solar kettle"))
    cube = vault.cubes(source_path=str(notes / "idea.md"))[0]
    assert cube.citation() == f"{notes / 'idea.md'} §Idea, lines 1–3"


def test_modified_file_gets_a_new_version_of_the_changed_cube(vault, notes, watcher):
    target = notes / "start.md"
    cube = vault.cubes(source_path=str(target))[0]
    target.write_text("# Start\n\nrewritten with zebra crossings\n")
    eventually(searchable(vault, "zebra crossings"))
    assert vault.get(cube.id).version == 2


def test_burst_of_writes_is_debounced_into_one_version(vault, notes, watcher):
    target = notes / "start.md"
    cube = vault.cubes(source_path=str(target))[0]
    with open(target, "w") as fh:
        for i in range(20):
            fh.write(f"# Start\n\nline {i} of a slow save\n" if i == 0 else f"more text {i}\n")
            fh.flush()
            os.fsync(fh.fileno())
        fh.write("final marker quokka\n")
    eventually(searchable(vault, "quokka"))
    assert vault.get(cube.id).version == 2


def test_deleted_file_is_forgotten(vault, notes, watcher):
    cube = vault.cubes(source_path=str(notes / "start.md"))[0]
    (notes / "start.md").unlink()
    eventually(lambda: vault.get(cube.id, include_inactive=True).state == "deleted")
    assert status.get(vault, str(notes / "start.md")) is None


def test_renamed_file_keeps_its_cube(vault, notes, watcher):
    cube = eventually(lambda: [c for c in vault.cubes(source_path=str(notes / "start.md")) if c.embed_model])[0]
    (notes / "start.md").rename(notes / "renamed.md")
    eventually(lambda: vault.cubes(source_path=str(notes / "renamed.md")))
    moved = vault.cubes(source_path=str(notes / "renamed.md"))[0]
    assert moved.id == cube.id and moved.embed_model == cube.embed_model
    assert not vault.cubes(source_path=str(notes / "start.md"))


def test_atomic_save_via_rename_updates_in_place(vault, notes, watcher):
    cube = vault.cubes(source_path=str(notes / "start.md"))[0]
    tmp = notes / "start.md.tmp"
    tmp.write_text("# Start\n\nsaved atomically with walrus\n")
    tmp.replace(notes / "start.md")
    eventually(searchable(vault, "walrus"))
    assert vault.cubes(source_path=str(notes / "start.md"))[0].id == cube.id


def test_folder_moved_in_is_indexed(vault, notes, tmp_path, watcher):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "a.md").write_text("# A\n\naardvark facts\n")
    outside.rename(notes / "moved-in")
    eventually(searchable(vault, "aardvark"))


def test_watcher_survives_bad_files_and_keeps_indexing(vault, notes, watcher):
    (notes / "junk.md").write_bytes(b"\0\1\2binary" * 100)
    (notes / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    eventually(lambda: status.get(vault, str(notes / "broken.pdf")))
    (notes / "after.md").write_text("# After\n\nstill alive ocelot\n")
    eventually(searchable(vault, "ocelot"))
    assert watcher.running
    assert status.get(vault, str(notes / "junk.md")).status == "skipped"
    assert status.get(vault, str(notes / "broken.pdf")).status == "error"


def test_status_callback_reports_progress_from_the_worker(notes, watcher):
    states = [s.state for s in watcher.seen]
    assert states[0] in ("starting", "scanning") and "watching" in states
    assert watcher.seen[-1].counts["indexed"] == 1


def test_stop_ends_the_worker_and_reports_stopped(watcher):
    watcher.stop()
    assert not watcher.running
    assert watcher.status.state == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "memos-watcher"]


def test_a_vault_that_cannot_open_is_reported_not_raised(tmp_path):
    w = Watcher(lambda: Vault.open(tmp_path / "no-vault", PASSPHRASE))
    w.start()
    assert w.wait_ready(timeout=10)
    w.stop()
    assert w.status.state == "failed" and "No vault" in w.status.last_error


def test_ignored_paths_do_not_reach_the_vault(vault, notes, watcher):
    (notes / ".hidden").mkdir()
    (notes / ".hidden" / "x.md").write_text("# X\n\nhidden platypus\n")
    (notes / "visible.md").write_text("# V\n\nvisible platypus\n")
    eventually(searchable(vault, "visible platypus"))
    assert [Path(p).name for p in status.load(vault) if "platypus" in Path(p).read_text()] == ["visible.md"]


def test_stop_during_the_startup_scan_stops_and_the_next_start_resumes(vault, tmp_path, isolated_home, fake_embedder):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        (folder / f"n{i}.md").write_text(f"# N{i}\n\nbody {i}\n")
    add_root(vault, folder)
    scanning = threading.Event()

    def on_status(st):
        if st.scanned[0] >= 1:
            scanning.set()

    first = Watcher(lambda: Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder), on_status=on_status)
    first.start()
    assert scanning.wait(timeout=30)
    first.stop()
    assert first.status.state == "stopped" and first.status.scanned[0] < 400
    second = Watcher(lambda: Vault.open(isolated_home, PASSPHRASE, embedder=fake_embedder))
    second.start()
    assert second.wait_ready(timeout=60)
    second.stop()
    assert status.counts(vault)["indexed"] == 400
    assert len(vault.cubes(limit=1000)) == 400


def test_a_nested_gitignore_keeps_live_changes_out(vault, notes, watcher):
    (notes / "code").mkdir()
    (notes / "code" / ".gitignore").write_text("drafts/\n")
    (notes / "code" / "drafts").mkdir()
    (notes / "code" / "drafts" / "wip.md").write_text("# WIP\n\nunfinished walrus\n")
    (notes / "code" / "design.md").write_text("# Design\n\nfinished narwhal\n")
    eventually(searchable(vault, "narwhal"))
    (notes / "code" / "drafts" / "wip.md").write_text("# WIP\n\nunfinished walrus again\n")
    (notes / "code" / "later.md").write_text("# Later\n\nsecond narwhal dolphin\n")
    eventually(searchable(vault, "dolphin"))
    assert not vault.fts("walrus", 5)
    assert status.get(vault, str(notes / "code" / "drafts" / "wip.md")) is None


def test_a_folder_added_while_running_is_scanned_and_followed(vault, notes, tmp_path, watcher):
    more = tmp_path / "more"
    more.mkdir()
    (more / "old.md").write_text("# Old\n\nwritten before the folder was added: okapi\n")
    add_root(vault, more)  # as `watch add` does, on another connection
    eventually(searchable(vault, "okapi"))
    assert str(more) in watcher.status.roots
    (more / "new.md").write_text("# New\n\nlive in the added folder: pangolin\n")
    eventually(searchable(vault, "pangolin"))


def test_a_folder_removed_while_running_is_no_longer_followed(vault, notes, tmp_path, watcher):
    more = tmp_path / "more"
    more.mkdir()
    (more / "kept.md").write_text("# Kept\n\nquokka\n")
    add_root(vault, more)
    eventually(searchable(vault, "quokka"))
    remove_root(vault, more)  # as `watch rm` does, on another connection
    eventually(lambda: str(more) not in watcher.status.roots)
    (more / "late.md").write_text("# Late\n\nwombat\n")
    (more / "kept.md").write_text("# Kept\n\nchanged after rm\n")
    (notes / "after.md").write_text("# After\n\nbilby\n")  # written last: proves the events were handled
    eventually(searchable(vault, "bilby"))
    time.sleep(0.5)
    assert not vault.fts("wombat", 5)
    assert vault.fts("quokka", 5)  # `watch rm` keeps the folder's memories as they were
