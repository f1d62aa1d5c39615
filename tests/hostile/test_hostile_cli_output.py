"""Every command prints hostile data (memories, tags, file names, device names, errors) as inert
text: no terminal control character reaches stdout or stderr, markup is never interpreted, nothing
crashes, and JSON output still carries the exact data."""

import json
import os

import pytest
from click.testing import CliRunner
from hostile_strings import CORPUS, FILE_NAMES, unsafe_in

from memos_desktop.cli import cli as memos
from tests.support import PASSPHRASE, run_cli


@pytest.fixture
def hostile(vault, tmp_path, monkeypatch):
    """A vault full of hostile text: memories (content, title, tags), notes with hostile names and
    bodies in a watched folder (with `drafts[/]notes.md`), a broken file whose error names it."""
    from memos_desktop.loader.config import add_root
    from memos_desktop.loader.ingest import Loader

    ids = [vault.add(f"heron {text}", title=text[:40], tags=[text[:20], "heron"]).id for text in CORPUS]
    vault.edit(ids[0], content=f"heron edited {CORPUS[1]}")
    notes = tmp_path / "notes"
    (notes / "drafts[").mkdir(parents=True)
    (notes / "drafts[" / "]notes.md").write_text(f"# {CORPUS[8]}\n\nheron in drafts {CORPUS[0]}\n")
    for name, text in zip(FILE_NAMES, CORPUS, strict=False):
        (notes / name).write_text(f"# {text}\n\nheron note {text}\n")
    (notes / "\x1b[31mbroken.pdf").write_bytes(b"%PDF-1.4 not really \x1b[31m")
    add_root(vault, notes)
    Loader(vault).scan()
    vault.close()
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    return ids


COMMANDS = [
    ["search", "heron"],
    ["search", "heron", "--json"],
    ["search", "heron", "-k", "50"],
    ["stats"],
    ["audit", "-n", "200"],
    ["audit", "--json"],
    ["sources"],
    ["sources", "--files"],
    ["sources", "--files", "--json"],
    ["sources", "--status", "error"],
    ["watch", "list"],
    ["conflicts"],
    ["doctor"],
]
PER_MEMORY = [["show"], ["show", "--json"], ["history"], ["history", "--json"]]


def _check(result, args) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    out = result.stdout + (result.stderr if hasattr(result, "stderr") else "")
    assert not unsafe_in(out), (args, unsafe_in(out), out[:2000])
    assert "Traceback" not in out


def test_listing_commands_print_hostile_data_inertly(hostile):
    for args in COMMANDS:
        result = CliRunner().invoke(memos, args)
        _check(result, args)
        assert result.exit_code in (0, 1), (args, result.output)


def test_every_memory_view_prints_hostile_data_inertly(hostile):
    for cube_id in hostile:
        for args in PER_MEMORY:
            result = CliRunner().invoke(memos, [*args, cube_id])
            _check(result, args)
            assert result.exit_code == 0, result.output


def test_markup_in_data_is_printed_literally(hostile, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one table row per file
    result = CliRunner().invoke(memos, ["sources", "--files"])
    assert result.exit_code == 0, result.output
    assert "drafts[/]notes.md" in result.output and "[bold]b[red].md" in result.output
    shown = CliRunner().invoke(memos, ["search", "heron", "-k", "50"]).output
    assert "[bold]bold[/bold]" in shown and "[link=https://evil.example]" in shown


def test_json_output_keeps_the_exact_data(hostile):
    data = json.loads(CliRunner().invoke(memos, ["show", "--json", hostile[5]]).output)
    assert data["content"] == f"heron {CORPUS[5]}"  # escaped on the wire, exact once parsed


def test_errors_naming_hostile_data_are_one_inert_line(hostile):
    result = run_cli("show", "\x1b]52;c;ZXZpbA==\x07\x9b31m")
    assert result.returncode == 1
    assert not unsafe_in(result.stderr + result.stdout)
    assert result.stderr.count("\n") == 1


def test_a_real_process_on_a_terminal_like_stdout_prints_inertly(hostile):
    result = run_cli("search", "heron", "-k", "50", env={"MEMOS_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "heron" in result.stdout and not unsafe_in(result.stdout + result.stderr)
    assert os.environ.get("MEMOS_EMBEDDER") == "none"
