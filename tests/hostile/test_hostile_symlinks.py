"""Symlinks in a notes folder never let the loader read outside it: a link to a file or a folder
elsewhere is skipped with the reason (shown by `sources`), loops are skipped, links inside are followed."""

import os
import time

import pytest
from click.testing import CliRunner

from memos_desktop.loader.config import LoaderConfig, add_root
from memos_desktop.loader.ingest import Loader
from memos_desktop.loader.watcher import Watcher
from memos_desktop.vault import Vault
from memos_desktop.vault import loader_files as status
from tests.support import PASSPHRASE

SECRET = "root:x:0:0:swordfish-secret-in-passwd"


@pytest.fixture
def layout(tmp_path):
    """notes/ (watched) with links to a secret file and a secret folder outside it, a loop, and a link inside."""
    outside = tmp_path / "elsewhere"
    (outside / "private").mkdir(parents=True)
    (outside / "passwd.txt").write_text(SECRET + "\n")
    (outside / "private" / "diary.md").write_text("# Diary\n\nswordfish-secret-in-diary\n")
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "mine.md").write_text("# Mine\n\na heron at the pond\n")
    os.symlink(outside / "passwd.txt", notes / "passwd.txt")
    os.symlink(outside / "private", notes / "private")
    os.symlink(outside / "private" / "diary.md", notes / "sub" / "diary.md")
    os.symlink(notes, notes / "sub" / "up")  # a loop
    os.symlink(notes / "mine.md", notes / "sub" / "again.md")  # inside: the same file, read once
    return notes


def _skipped(vault) -> dict[str, str]:
    return {os.path.basename(p): s.reason for p, s in status.load(vault).items() if s.status == "skipped"}


def test_ingest_never_reads_through_a_symlink_out_of_the_folder(vault, layout):
    report = Loader(vault).scan([layout])
    assert not vault.fts("swordfish", 10)
    assert vault.fts("heron pond", 10)
    reasons = _skipped(vault)
    for name in ("passwd.txt", "private", "diary.md"):
        assert "outside the watched folder" in reasons[name], reasons
    assert reasons["up"].startswith("symlink loop")
    assert report.indexed == 1


def test_sources_shows_each_outside_link_as_skipped_with_the_reason(vault, layout, monkeypatch):
    from memos_desktop.cli import cli as memos

    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    add_root(vault, layout)
    Loader(vault).scan()
    vault.close()
    result = CliRunner().invoke(memos, ["sources", "--files", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "swordfish" not in result.output
    rows = result.output
    assert "passwd.txt" in rows and "outside the watched folder" in rows and "symlink loop" in rows


def _watching(vault, layout, home, embedder) -> Watcher:
    """A started watcher of `layout` on its own connection, reacting to saves within 0.1 s."""
    add_root(vault, layout)
    config = LoaderConfig.load(vault)
    config.debounce_s = 0.1
    config.save(vault)
    watcher = Watcher(lambda: Vault.open(home, PASSPHRASE, embedder=embedder))
    watcher.start()
    return watcher


def test_a_link_to_a_file_outside_made_while_watching_is_skipped(vault, layout, isolated_home, fake_embedder):
    w = _watching(vault, layout, isolated_home, fake_embedder)
    try:
        assert w.wait_ready(timeout=30)
        secret = layout.parent / "elsewhere" / "later.md"
        secret.write_text("# Later\n\nswordfish-secret-made-later\n")
        os.symlink(secret, layout / "later.md")
        (layout / "sub" / "plain.md").write_text("# Plain\n\nkingfisher by the river\n")
        deadline = time.monotonic() + 15
        while not vault.fts("kingfisher", 5) or "later.md" not in _skipped(vault):
            assert time.monotonic() < deadline, "the watcher did not see the new files"
            time.sleep(0.05)
        assert not vault.fts("swordfish", 10)
        assert "outside the watched folder" in _skipped(vault)["later.md"]
    finally:
        w.stop()


def test_a_linked_folder_created_while_watching_is_not_walked(vault, layout, isolated_home, fake_embedder):
    w = _watching(vault, layout, isolated_home, fake_embedder)
    try:
        assert w.wait_ready(timeout=30)
        os.symlink(layout.parent / "elsewhere", layout / "sub" / "linked")
        (layout / "sub" / "marker.md").write_text("# Marker\n\nkingfisher marker\n")
        deadline = time.monotonic() + 15
        while not vault.fts("kingfisher marker", 5):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert not vault.fts("swordfish", 10)
    finally:
        w.stop()


def test_a_file_swapped_for_an_outside_link_during_a_scan_is_not_read(vault, tmp_path):
    """The scan saw a regular file; before the loader reads it, it becomes a symlink to a secret."""
    notes = tmp_path / "swap"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nfirst heron\n")
    (notes / "b.md").write_text("# B\n\nsecond heron\n")
    secret = tmp_path / "secret.md"
    secret.write_text("# S\n\nswordfish-secret-swapped-in\n")

    def swap(done: int, total: int) -> None:
        if done == 1:  # a.md is read; b.md not yet
            (notes / "b.md").unlink()
            os.symlink(secret, notes / "b.md")

    Loader(vault).scan([notes], progress=swap)
    assert vault.fts("first heron", 5) and not vault.fts("swordfish", 5)
    assert "outside the watched folder" in _skipped(vault)["b.md"]
