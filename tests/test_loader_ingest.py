"""Loader: files become cited cubes; changes touch only what changed; faults are recorded."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memos_desktop.errors import NotFound
from memos_desktop.loader.config import LoaderConfig
from memos_desktop.loader.ingest import Loader
from memos_desktop.vault import loader_files as status

REPO = Path(__file__).resolve().parent.parent

TRIP = """# Trip

We go to Lisbon in May. See [[Budget]].

## Flights

TAP 123 leaves Monday at 9.

## Hotel

Alfama guesthouse, three nights.
"""


class CountingEmbedder:
    """The fake embedder, counting the texts it embeds (to prove what is not re-embedded)."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "trip.md").write_text(TRIP)
    (folder / "Budget.md").write_text("# Budget\n\nFlights 300 euros, hotel 240 euros.\n")
    return folder


@pytest.fixture
def counting(vault, fake_embedder):
    vault.embedder = CountingEmbedder(fake_embedder)
    return vault.embedder


def by_heading(vault, path):
    return {c.source["heading"]: c for c in vault.cubes(source_path=str(path))}


def test_each_section_becomes_a_cube_citing_file_heading_and_lines(vault, notes):
    Loader(vault).scan([notes])
    flights = by_heading(vault, notes / "trip.md")["Trip > Flights"]
    assert flights.kind == "plaintext"
    assert flights.title == "trip.md § Trip > Flights"
    assert flights.citation() == f"{notes / 'trip.md'} §Trip > Flights, lines 5–7"
    assert vault.fts("TAP Monday", 5)


def test_wikilinks_link_the_cubes_of_linked_notes(vault, notes):
    Loader(vault).scan([notes])
    trip = by_heading(vault, notes / "trip.md")["Trip"]
    budget = by_heading(vault, notes / "Budget.md")["Budget"]
    assert {"src": trip.id, "dst": budget.id, "rel": "links_to"} in [
        {k: v for k, v in link.items() if k != "at"} for link in vault.links(trip.id)
    ]


def test_a_link_to_a_note_created_later_is_resolved_then(vault, notes):
    (notes / "trip.md").write_text(TRIP + "\nAlso [[Packing]].\n")
    loader = Loader(vault)
    loader.scan([notes])
    assert status.get(vault, str(notes / "trip.md")).unresolved == 1
    (notes / "Packing.md").write_text("# Packing\n\nSunscreen.\n")
    loader.scan([notes])
    assert status.get(vault, str(notes / "trip.md")).unresolved == 0


def test_every_file_is_searchable_by_words_before_any_chunk_is_embedded(vault, notes, counting):
    loader = Loader(vault)
    report = loader.scan([notes], embed=False)
    assert report.indexed == 2 and report.vectors == 0 and counting.texts == []
    assert vault.fts("Alfama", 5) and vault.fts("euros", 5)
    assert vault.pending_embeddings() == report.cubes_added == 4
    assert vault.knn(counting.inner.embed(["Alfama guesthouse"])[0], 5) == []  # no search embeds them
    seen = []
    assert loader.embed_pending(progress=lambda done, total: seen.append((done, total))) == 4
    assert seen[-1] == (4, 4) and vault.pending_embeddings() == 0 and vault.vector_count() == 4


def test_an_edit_written_for_words_first_loses_its_old_vector_until_embedded(vault, notes, counting):
    loader = Loader(vault)
    loader.scan([notes])
    (notes / "Budget.md").write_text("# Budget\n\nFlights 350 euros, hotel 240 euros.\n")
    loader.scan([notes], embed=False)
    cube = vault.cubes(source_path=str(notes / "Budget.md"))[0]
    assert cube.embed_model is None and vault.fts("350", 5) and vault.vector_count() == 3
    assert loader.embed_pending() == 1 and vault.get(cube.id).embed_model == counting.model_id


def test_unchanged_rescan_reads_and_embeds_nothing(vault, notes, counting):
    Loader(vault).scan([notes])
    counting.texts.clear()
    report = Loader(vault).scan([notes])
    assert (report.unchanged, report.bytes_read, report.embedded) == (2, 0, 0)
    assert counting.texts == []


def test_touched_but_identical_file_is_hashed_not_reparsed(vault, notes, counting):
    Loader(vault).scan([notes])
    before = {c.id: c.version for c in vault.cubes()}
    os.utime(notes / "trip.md", ns=(1, 1))
    counting.texts.clear()
    report = Loader(vault).scan([notes])
    assert report.unchanged == 2 and report.bytes_read > 0 and report.indexed == 0
    assert counting.texts == []
    assert {c.id: c.version for c in vault.cubes()} == before


def test_editing_one_section_versions_only_that_cube(vault, notes, counting):
    Loader(vault).scan([notes])
    before = by_heading(vault, notes / "trip.md")
    counting.texts.clear()
    (notes / "trip.md").write_text(TRIP.replace("TAP 123 leaves Monday", "TAP 999 leaves Tuesday"))
    report = Loader(vault).scan([notes])
    after = by_heading(vault, notes / "trip.md")
    assert report.embedded == 1 and len(counting.texts) == 1
    assert after["Trip > Flights"].id == before["Trip > Flights"].id
    assert after["Trip > Flights"].version == 2
    assert after["Trip"].version == 1 and after["Trip > Hotel"].version == 1
    assert [h["snapshot"]["content"] for h in vault.history(after["Trip > Flights"].id)][0].count("TAP 123")


def test_inserted_lines_shift_later_citations_without_reembedding(vault, notes, counting):
    Loader(vault).scan([notes])
    counting.texts.clear()
    (notes / "trip.md").write_text(TRIP.replace("## Flights", "One more line.\n\n## Flights"))
    report = Loader(vault).scan([notes])
    hotel = by_heading(vault, notes / "trip.md")["Trip > Hotel"]
    assert hotel.source["lines"] == [11, 13]
    assert hotel.version == 2 and report.cubes_relocated == 2  # Flights and Hotel moved down
    assert len(counting.texts) == 1  # only the edited "Trip" section


def test_removed_section_is_tombstoned_with_history(vault, notes):
    Loader(vault).scan([notes])
    hotel = by_heading(vault, notes / "trip.md")["Trip > Hotel"]
    (notes / "trip.md").write_text(TRIP.split("## Hotel")[0])
    Loader(vault).scan([notes])
    assert "Trip > Hotel" not in by_heading(vault, notes / "trip.md")
    assert vault.get(hotel.id, include_inactive=True).state == "deleted"


def test_deleted_file_tombstones_its_cubes_and_drops_its_state(vault, notes):
    Loader(vault).scan([notes])
    ids = [c.id for c in vault.cubes(source_path=str(notes / "trip.md"))]
    (notes / "trip.md").unlink()
    report = Loader(vault).scan([notes])
    assert report.removed == 1
    assert all(vault.get(i, include_inactive=True).state == "deleted" for i in ids)
    assert status.get(vault, str(notes / "trip.md")) is None
    assert not vault.fts("Alfama", 5)


def test_renamed_file_keeps_cube_ids_and_history_without_reembedding(vault, notes, counting):
    Loader(vault).scan([notes])
    before = {c.source["heading"]: c.id for c in vault.cubes(source_path=str(notes / "trip.md"))}
    (notes / "archive").mkdir()
    (notes / "trip.md").rename(notes / "archive" / "lisbon.md")
    counting.texts.clear()
    report = Loader(vault).scan([notes])
    after = by_heading(vault, notes / "archive" / "lisbon.md")
    assert {h: c.id for h, c in after.items()} == before
    assert report.moved == 1 and report.embedded == 0 and counting.texts == []
    assert after["Trip > Flights"].citation().startswith(str(notes / "archive" / "lisbon.md"))
    assert len(vault.history(after["Trip > Flights"].id)) == 2


def test_loader_move_carries_a_whole_folder(vault, notes):
    vault.set_setting("loader", {"roots": [str(notes)]})
    loader = Loader(vault)
    loader.scan()
    ids = sorted(c.id for c in vault.cubes())
    (notes / "sub").mkdir()
    (notes / "trip.md").rename(notes / "sub" / "trip.md")
    report = loader.move(notes / "trip.md", notes / "sub" / "trip.md")
    assert report.moved == 1 and report.embedded == 0
    assert sorted(c.id for c in vault.cubes()) == ids
    assert status.get(vault, str(notes / "sub" / "trip.md")).status == "indexed"


def test_hidden_ignored_and_gitignored_files_are_not_indexed(vault, notes):
    (notes / ".obsidian").mkdir()
    (notes / ".obsidian" / "workspace.md").write_text("# hidden\n")
    (notes / "draft.md.swp").write_text("swap")
    (notes / "private").mkdir()
    (notes / "private" / "diary.md").write_text("# Diary\n\nsecret\n")
    (notes / ".gitignore").write_text("private/\n")
    (notes / "image.png").write_bytes(b"\x89PNG")
    Loader(vault).scan([notes])
    assert sorted(Path(p).name for p in status.load(vault)) == ["Budget.md", "trip.md"]


def test_nested_gitignore_applies_to_its_own_folder_and_the_deepest_rule_wins(vault, notes):
    project = notes / "projects" / "app"
    (project / "build").mkdir(parents=True)
    (project / "build" / "out.md").write_text("# Out\n\ngenerated\n")
    (project / "scratch.md").write_text("# Scratch\n\nthrowaway\n")
    (project / "readme.md").write_text("# Readme\n\nkept\n")
    (project / ".gitignore").write_text("build/\n*.md\n!readme.md\n")
    (notes / "projects" / "scratch.md").write_text("# Scratch\n\nnot under app, kept\n")
    (notes / ".gitignore").write_text("notes-only.md\n")
    (project / "notes-only.md").write_text("# root rule\n\nignored by the root's pattern at any depth\n")
    Loader(vault).scan([notes])
    indexed = sorted(str(Path(p).relative_to(notes)) for p in status.load(vault))
    assert indexed == ["Budget.md", "projects/app/readme.md", "projects/scratch.md", "trip.md"]


def test_a_file_in_an_ignored_folder_stays_ignored_whatever_a_deeper_gitignore_says(vault, notes):
    (notes / "private" / "sub").mkdir(parents=True)
    (notes / ".gitignore").write_text("private/\n")
    (notes / "private" / ".gitignore").write_text("!*.md\n")
    (notes / "private" / "sub" / "diary.md").write_text("# Diary\n\nsecret\n")
    report = Loader(vault).sync([notes / "private" / "sub" / "diary.md"])
    assert report.indexed == 0 and not vault.fts("secret", 5)


def test_custom_ignore_pattern_from_settings(vault, notes):
    config = LoaderConfig(ignore=["Budget.*"])
    Loader(vault, config).scan([notes])
    assert [Path(p).name for p in status.load(vault)] == ["trip.md"]


def test_binary_file_is_skipped_with_reason(vault, notes):
    (notes / "photo.txt").write_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF\0" + os.urandom(2000))
    report = Loader(vault).scan([notes])
    state = status.get(vault, str(notes / "photo.txt"))
    assert state.status == "skipped" and "binary" in state.reason
    assert (report.indexed, report.skipped) == (2, 1)
    assert Loader(vault).scan([notes]).bytes_read == 0
    assert not vault.cubes(source_path=str(notes / "photo.txt"))


def test_invalid_utf8_is_indexed_with_a_recorded_reason(vault, notes):
    (notes / "old.txt").write_bytes(b"Caf\xe9 notes from 1999: croissant recipe\n")
    Loader(vault).scan([notes])
    state = status.get(vault, str(notes / "old.txt"))
    assert state.status == "indexed" and "invalid UTF-8" in state.reason
    assert vault.fts("croissant", 5)


def test_ten_megabyte_single_line_file_is_skipped_by_the_size_limit(vault, notes):
    (notes / "dump.txt").write_bytes(b"a" * 10_000_000)
    report = Loader(vault).scan([notes])
    state = status.get(vault, str(notes / "dump.txt"))
    assert state.status == "skipped" and "MB limit" in state.reason
    assert report.indexed == 2 and report.skipped == 1


def test_ten_megabyte_single_line_file_under_a_raised_limit_is_chunked(vault, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "dump.txt").write_bytes(b"word " * 2_000_000)
    config = LoaderConfig(max_bytes=20_000_000, max_chunk_chars=100_000)
    Loader(vault, config).scan([folder])
    cubes = vault.cubes(source_path=str(folder / "dump.txt"), limit=1000)
    assert len(cubes) == 100
    assert max(len(c.content) for c in cubes) == 100_000
    assert {tuple(c.source["lines"]) for c in cubes} == {(1, 1)}


def test_a_file_that_became_too_large_loses_its_cubes(vault, notes):
    Loader(vault).scan([notes])
    (notes / "Budget.md").write_bytes(b"# Budget\n" + b"x" * 2_000)
    Loader(vault, LoaderConfig(max_bytes=1_000)).scan([notes])
    assert not vault.cubes(source_path=str(notes / "Budget.md"))
    assert status.get(vault, str(notes / "Budget.md")).status == "skipped"


def test_file_deleted_between_scan_and_read_leaves_no_trace(vault, notes):
    vault.set_setting("loader", {"roots": [str(notes)]})
    loader = Loader(vault)
    loader.scan()
    (notes / "new.md").write_text("# New\n\nshort-lived\n")
    from memos_desktop.loader.scan import walk

    entries = list(walk(notes, loader.config))
    (notes / "new.md").unlink()
    (notes / "trip.md").unlink()
    states = status.load(vault, prefix=str(notes))
    report = Loader(vault)
    result = report.sync([e.path for e in entries])
    assert result.errors == 0
    assert status.get(vault, str(notes / "new.md")) is None
    assert status.get(vault, str(notes / "trip.md")) is None
    assert str(notes / "trip.md") in states
    assert not vault.cubes(source_path=str(notes / "trip.md"))


def test_symlink_loops_are_skipped_and_files_indexed_once(vault, notes):
    (notes / "sub").mkdir()
    (notes / "sub" / "deep.md").write_text("# Deep\n\ndeep note\n")
    os.symlink(notes, notes / "sub" / "loop")
    os.symlink(notes / "self.md", notes / "self.md")
    os.symlink(notes / "trip.md", notes / "alias.md")
    report = Loader(vault).scan([notes])
    reasons = {Path(p).name: s.reason for p, s in status.load(vault).items() if s.status == "skipped"}
    assert reasons["loop"].startswith("symlink loop")
    assert reasons["self.md"] == "symlink loop"
    assert "same file" in reasons["alias.md"]
    assert report.indexed == 3
    assert len(vault.fts("deep note", 10)) == 1


def test_many_files_are_indexed_once_and_rescanned_for_free(vault, tmp_path, counting):
    folder = tmp_path / "many"
    for i in range(1500):
        sub = folder / f"d{i % 30}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"n{i}.md").write_text(f"# Note {i}\n\nbody of note number{i}\n")
    first = Loader(vault).scan([folder])
    assert (first.indexed, first.cubes_added) == (1500, 1500)
    assert vault.stats()["cubes"]["plaintext/active"] == 1500
    counting.texts.clear()
    again = Loader(vault).scan([folder])
    assert (again.unchanged, again.embedded, len(counting.texts)) == (1500, 0, 0)


def _subprocess_ingest(home: Path, notes: Path, prefix: list[str], batch: int = 256):
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(REPO)!r}]\n"
        "from tests.support import FakeEmbedder, PASSPHRASE\n"
        "from memos_desktop.vault import Vault\n"
        "from memos_desktop.loader.ingest import Loader\n"
        f"v = Vault.open({str(home)!r}, PASSPHRASE, embedder=FakeEmbedder())\n"
        f"r = Loader(v, batch_chunks={batch}).scan([{str(notes)!r}])\n"
        "print(json.dumps(r.to_dict()))\n"
    )
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_unreadable_file_is_an_error_with_reason_and_the_rest_is_indexed(vault, notes, isolated_home):
    secret = notes / "secret.md"
    secret.write_text("# Secret\n\nno access\n")
    secret.chmod(0)
    # root reads everything: drop the capabilities that bypass file permissions
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if prefix and not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to test permissions as root")
    proc = _subprocess_ingest(isolated_home, notes, prefix)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["errors"] == 1 and report["indexed"] == 2
    state = status.get(vault, str(secret))
    assert (state.status, state.reason) == ("error", "permission denied")


def test_unlistable_folder_is_skipped_and_its_known_notes_are_kept(vault, notes, isolated_home):
    (notes / "locked").mkdir()
    (notes / "locked" / "plan.md").write_text("# Plan\n\nkeep me\n")
    Loader(vault).scan([notes])
    (notes / "locked").chmod(0)
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    proc = _subprocess_ingest(isolated_home, notes, prefix)
    out, err = proc.communicate(timeout=120)
    (notes / "locked").chmod(0o755)
    assert proc.returncode == 0, err
    assert json.loads(out)["removed"] == 0
    assert status.get(vault, str(notes / "locked")).reason == "permission denied"
    assert vault.cubes(source_path=str(notes / "locked" / "plan.md"))


def test_kill_9_during_a_large_ingest_then_resume_is_consistent_without_duplicates(vault, tmp_path, isolated_home):
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(600):
        body = "\n\n".join(f"## Part {p}\n\nnote {i} part {p} " + "lorem ipsum " * 20 for p in range(4))
        (folder / f"n{i:03d}.md").write_text(f"# Note {i}\n\n{body}\n")
    proc = _subprocess_ingest(isolated_home, folder, [], batch=8)
    deadline = time.monotonic() + 120
    while status.counts(vault)["indexed"] < 40:
        assert proc.poll() is None, "the ingest finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    survivors = {p: [c["cube"] for c in s.chunks] for p, s in status.load(vault).items() if s.status == "indexed"}
    assert 0 < len(survivors) < 600

    report = Loader(vault).scan([folder])

    states = status.load(vault)
    assert len(states) == 600 and {s.status for s in states.values()} == {"indexed"}
    active = vault.cubes(limit=100_000)
    assert len(active) == 600 * 5 == sum(len(s.chunks) for s in states.values())
    keys = [(c.source["path"], tuple(c.source["lines"])) for c in active]
    assert len(set(keys)) == len(keys)
    for path, ids in survivors.items():
        assert [c["cube"] for c in states[path].chunks] == ids
    assert report.cubes_added < 600 * 5
    assert vault.verify_audit() > 0
    assert Loader(vault).scan([folder]).embedded == 0


def test_scanning_a_missing_folder_is_a_clear_error(vault, tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        Loader(vault).scan([tmp_path / "nope"])


@pytest.mark.slow
def test_a_hundred_thousand_files_tree_indexes_only_the_notes(vault, tmp_path):
    folder = tmp_path / "home"
    for d in range(100):
        junk = folder / "node_modules" / f"pkg{d}" if d % 2 else folder / f"assets{d}"
        junk.mkdir(parents=True)
        for i in range(999):
            (junk / f"f{i}.{'js' if d % 2 else 'png'}").touch()
        (folder / f"note{d}.md").write_text(f"# Note {d}\n\nneedle{d} in a haystack\n")
    report = Loader(vault).scan([folder])
    assert (report.files, report.indexed, report.errors) == (100, 100, 0)
    assert len(status.load(vault)) == 100
    assert vault.fts("needle57", 5)
