"""The script index: words inside text without spaces, folded non-ASCII words (memos_desktop/vault)."""

import json

import pytest

from memos_desktop.operation.search import search
from memos_desktop.vault import Vault, db, segment
from memos_desktop.vault.cube import MemCube
from tests.support import PASSPHRASE


def found(vault, query: str) -> list[str]:
    return [h.cube.content for h in search(vault, query, 5, use_vectors=False, record=False)]


@pytest.mark.parametrize(
    ("note", "query"),
    [
        ("この記事のテーマは旅行です。", "テーマ"),  # katakana word inside a sentence
        ("ファイルのモードビットを変更する", "モードビット"),
        ("改变文件模式比特位", "文件模式"),
        ("输出或设置系统日期与时间", "日期"),  # two characters
        ("ฉันชอบภาษาไทยมาก", "ภาษาไทย"),  # Thai, with its vowel and tone marks
        ("오늘은 회의가 있어요", "회의"),  # Korean particle glued to the word
    ],
)
def test_a_word_inside_text_without_spaces_is_found(vault, note, query):
    vault.add(note)
    vault.add("an unrelated note about gardening")
    assert found(vault, query)[:1] == [note]


@pytest.mark.parametrize(
    ("note", "query"),
    [
        ("Die Straße ist lang", "Strasse"),  # ß folds to ss
        ("Die Strasse ist lang", "Straße"),
        ("Ёлка стоит в лесу", "елка"),  # Cyrillic case and ё/е
        ("ÉCOLE primaire", "école"),
        ("cat объединяет файлы", "объединить"),  # Russian inflection, by prefix
        ("שָׁלוֹם עֲלֵיכֶם", "שלום"),  # Hebrew vowel points
    ],
)
def test_latin_cyrillic_and_hebrew_words_are_folded(vault, note, query):
    vault.add(note)
    vault.add("an unrelated note about gardening")
    assert found(vault, query)[:1] == [note]


def test_the_main_word_index_alone_misses_what_the_script_index_finds(vault):
    """Guards the reason for the second index: unicode61 makes a CJK run one token."""
    vault.add("この記事のテーマは旅行です。")
    assert vault.fts("テーマ") == [] and vault.fts_script("テーマ")


def test_a_zero_width_space_inside_a_word_does_not_hide_it(vault):
    note = vault.add("この記事のテー\u200bマは旅行です")
    assert found(vault, "テーマ") == [note.content]


def test_forgotten_and_edited_cubes_leave_the_script_index(vault):
    gone = vault.add("テーマは旅行")
    edited = vault.add("テーマは音楽")
    vault.forget(gone.id)
    vault.edit(edited.id, content="話題は料理")
    assert vault.fts_script("テーマ") == []
    assert [r for r, _ in vault.fts_script("料理")] == [vault._rowid(edited.id)]


def test_an_english_note_leaves_the_script_index_empty(vault):
    vault.add("An English note about zebras and cafés")
    assert segment.index_text("An English note about zebras") == ""
    assert vault.conn.execute("SELECT count(*) FROM cube_fts_script").fetchone()[0] == 1  # cafés → cafe


def test_imported_cubes_are_in_the_script_index(vault):
    snapshot = MemCube(id="C1", content="この記事のテーマは旅行", created_at=100.0, updated_at=101.0)
    head = snapshot.to_dict()
    row = ("C1", 1, None, "edit", 101.0, "alice", json.dumps(head))
    with db.write_txn(vault.conn):
        vault.import_versions([row], [head])
    assert [r for r, _ in vault.fts_script("テーマ")] == [vault._rowid("C1")]


def test_a_vault_made_before_the_script_index_gets_it_on_open(isolated_home):
    with Vault.create(isolated_home, PASSPHRASE) as v:
        kept = v.add("この記事のテーマは旅行です")
        gone = v.add("テーマは削除された")
        v.forget(gone.id)
        v.conn.execute("DROP TABLE cube_fts_script")
        v.conn.execute("DELETE FROM _migrations WHERE name = '_m012_lang_script_fts'")
    with Vault.open(isolated_home, PASSPHRASE) as v:
        assert [r for r, _ in v.fts_script("テーマ")] == [v._rowid(kept.id)]


BAD_NOTES = {
    "million CJK characters": "漢字" * 500_000,
    "million letters without a space": "ä" * 1_000_000,
    "mixed scripts": "Zürich東京Москва서울กรุงเทพ🙂مرحبا",
    "emoji only": "🙂🚀🎉" * 1000,
    "right to left": "مرحبا بالعالم שלום עולם",
    "zero-width characters": "\u200b\u200c\u200d\ufeff" * 1000,
}


@pytest.mark.parametrize("name", list(BAD_NOTES))
def test_bad_input_is_indexed_and_the_index_keeps_answering(vault, name):
    vault.add(BAD_NOTES[name])
    kept = vault.add("この記事のテーマは旅行です")
    assert found(vault, "テーマ")[:1] == [kept.content]
    assert found(vault, "🙂 \u200b") == []  # nothing to match in a query of symbols: no words, no error


def test_a_long_note_is_found_by_its_start_in_the_script_index(vault):
    note = vault.add("東京" + "漢字" * 500_000)
    assert [r for r, _ in vault.fts_script("東京")] == [vault._rowid(note.id)]
