"""The multilingual keyword check set: notes from Debian's translated man pages, with queries.

Builds `assets/langset.json` (`python -m memos_desktop.bench.langset`, with the packages
manpages-de, manpages-ja, manpages-zh and manpages-ru and groff installed): for each language, 25
man pages rendered by groff, each note the page's one-line summary and the start of its
description, and one hand-written query per page, a word or short phrase a person would type for
what the page is about (in the inflection a person types it, not always the note's). `bench lang`
reads the JSON; this module is only needed to rebuild it, and never runs at search time.
"""

import gzip
import json
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "langset.json"
NOTE_CHARS = 700  # of the description kept after the summary line
SOURCE = "Debian packages manpages-{lang} (man section 1), rendered with groff -Tutf8"
LICENCES = {
    "de": "GPL-3+ (manpages-l10n translations); see /usr/share/doc/manpages-de/copyright",
    "ru": "GPL-3+ (manpages-l10n translations); see /usr/share/doc/manpages-ru/copyright",
    "ja": "JM Project translations under the original pages' licences (GPL, GFDL, BSD-style, DFSG-free);"
    " see /usr/share/doc/manpages-ja/copyright",
    "zh": "Chinese man page project translations under the original pages' licences (GPL-2+, GFDL-1.2+);"
    " see /usr/share/doc/manpages-zh/copyright",
}
MAN_DIRS = {"ja": "ja", "zh": "zh_CN", "de": "de", "ru": "ru"}
DESCRIPTION = {"ja": "説明", "zh": "描述", "de": "BESCHREIBUNG", "ru": "ОПИСАНИЕ"}

# page -> query, per language. Chosen for what the page does, phrased as a user would ask.
QUERIES = {
    "ja": {
        "chmod": "モードビット",
        "cksum": "チェックサム",
        "comm": "ソートされたファイル",
        "cp": "ディレクトリのコピー",
        "csplit": "セクションに分割",
        "diff": "行単位での比較",
        "dirname": "最後の要素",
        "ed": "テキストエディター",
        "eqn": "数式",
        "flex": "字句解析",
        "gawk": "パターン検索",
        "gdb": "デバッガー",
        "getopt": "オプション解析",
        "grog": "推測",
        "head": "最初の部分",
        "grub-mkrescue": "レスキュー",
        "gsl-randist": "乱数",
        "base32": "デコード",
        "atq": "ジョブ",
        "bison": "パーサー",
        "autoheader": "テンプレート",
        "ls": "ディレクトリの内容",
        "chattr": "ファイルシステム",
        "dblatex": "変換",
        "grub-mklayout": "キーボード",
    },
    "zh": {
        "ab": "性能测试",
        "apm": "电源管理",
        "basename": "后缀",
        "chattr": "文件属性",
        "chmod": "文件模式",
        "chvt": "虚拟终端",
        "col": "换行符",
        "createdb": "创建数据库",
        "date": "日期",
        "diff": "不同点",
        "dropdb": "删除数据库",
        "dumpkeys": "转储",
        "eject": "弹出",
        "hostid": "标识符",
        "id": "有效用户",
        "killall": "杀死进程",
        "loadkeys": "键盘",
        "loginctl": "登录管理器",
        "mknod": "特殊文件",
        "mpg123": "音频",
        "nohup": "挂起",
        "paste": "合并",
        "printenv": "环境变量",
        "readlink": "符号链接",
        "rm": "移除文件",
    },
    "de": {
        "basename": "Suffix entfernen",
        "bzcmp": "komprimierte Dateien vergleichen",
        "chown": "Besitzer ändern",
        "cmp": "Byte für Byte",
        "column": "Spalten",
        "cpio": "Archive",
        "cut": "Teile jeder Zeile",
        "diff": "zeilenweise vergleichen",
        "dirname": "letzte Komponente",
        "ed": "Texteditor",
        "envsubst": "Umgebungsvariablen ersetzen",
        "fgconsole": "aktive Konsole",
        "fmt": "Textformatierer",
        "gamma4scanimage": "Gamma Tabelle",
        "gettextize": "Gettext installieren",
        "grep": "Suchmuster",
        "grub-mklayout": "Tastaturbelegung",
        "grub-mkrescue": "Wiederherstellung",
        "grub-script-check": "Syntaxfehler",
        "gzip": "komprimieren",
        "hexdump": "hexadezimal",
        "hostnamectl": "Rechnername",
        "init": "Diensteverwalter",
        "deallocvt": "ungenutzte Konsolen",
        "cdda2ogg": "CD auslesen",
    },
    "ru": {
        "apropos": "поиск справочных страниц",
        "cat": "объединить файлы",
        "chage": "устаревание пароля",
        "chfn": "информация о пользователе",
        "chsh": "регистрационная оболочка",
        "expiry": "политика устаревания",
        "fuser": "процессы использующие файлы",
        "getent": "служба имен",
        "iconv": "преобразовать кодировку",
        "killall": "завершить процессы",
        "ldd": "зависимости общих объектов",
        "lexgrog": "заголовочная информация",
        "locale": "информация о локали",
        "localedef": "определение локали",
        "login": "сеанс в системе",
        "ls": "содержимое каталога",
        "man": "системные справочные страницы",
        "manconv": "кодировка справочной страницы",
        "memusage": "использование памяти",
        "mtrace": "журнал трассировки",
        "newgrp": "новая группа",
        "passwd": "изменить пароль",
        "peekfd": "файловые дескрипторы",
        "pstree": "дерево процессов",
        "vimtutor": "учебник",
    },
}


def render(path: Path) -> str:
    """A man page as plain UTF-8 text (groff, one long line per paragraph, no overstrikes)."""
    roff = gzip.decompress(path.read_bytes())
    out = subprocess.run(
        ["groff", "-k", "-man", "-Tutf8", "-P-cbou", "-rLL=4000n"], input=roff, capture_output=True, check=True
    )
    return out.stdout.decode("utf-8", "replace")


def note_text(page: str, heading: str) -> str:
    """The summary line (NAME section) and the start of the description of a rendered page."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in page.splitlines():
        if line and not line[0].isspace():
            current = line.strip()
            sections.setdefault(current, [])
        elif current and line.strip():
            sections[current].append(" ".join(line.split()))
    names = list(sections)
    summary = " ".join(sections[names[1]]) if len(names) > 1 else ""  # names[0] is the page header
    description = " ".join(sections.get(heading, []))
    return f"{summary}\n{description[:NOTE_CHARS]}".strip()


def build() -> dict:
    languages = {}
    for lang, queries in QUERIES.items():
        folder = Path("/usr/share/man") / MAN_DIRS[lang] / "man1"
        notes, pairs = [], []
        for name, query in queries.items():
            text = note_text(render(folder / f"{name}.1.gz"), DESCRIPTION[lang])
            notes.append({"id": f"{lang}/{name}", "text": text})
            pairs.append({"query": query, "note": f"{lang}/{name}"})
        languages[lang] = {
            "source": SOURCE.format(lang=MAN_DIRS[lang]),
            "licence": LICENCES[lang],
            "notes": notes,
            "queries": pairs,
        }
    return {"languages": languages}


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
