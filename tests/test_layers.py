"""The layers hold: only `vault/` runs SQL, and imports flow one way (interface -> operation ->
infrastructure). Read from the source with `ast`, so lazy imports inside functions count too."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "memos_desktop"
INTERFACE = {"cli", "tui", "mcp"}
OPERATION = {"operation"}
INFRASTRUCTURE = {"vault", "runtime", "embed", "loader", "dumper", "training"}
VAULT_TABLES = (
    r"cubes|cube_versions|cube_fts\w*|cube_vec\w*|links|audit|settings|sync_\w+|loader_files"
    r"|schedule_log|memory_tiers|imported_audit|baseline_fts|_migrations|sqlite_master"
)
# SQL naming a vault table: a statement keyword, then the table (upper-case keywords only, so
# prose such as "Update settings" in a message is not mistaken for SQL).
SQL_ON_TABLES = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN|TABLE|EXISTS)\s+(temp\.)?({VAULT_TABLES})\b")
SQL_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|SAVEPOINT)\s+[\w*(]")
DRIVERS = {"apsw", "sqlite3", "sqlite_vec"}


def _modules() -> list[tuple[str, Path]]:
    return [(str(p.relative_to(PACKAGE)), p) for p in sorted(PACKAGE.rglob("*.py"))]


def _layer(relative: str) -> str:
    return relative.split("/", 1)[0] if "/" in relative else ""


def sql_offences(source: str) -> list[str]:
    """What in `source` runs SQL itself: `.conn`, `.execute*()` calls, SQL text, driver imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "conn":
            found.append(f"line {node.lineno}: .conn")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("execute", "executemany", "executescript"):
                found.append(f"line {node.lineno}: .{node.func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_ON_TABLES.search(node.value) or SQL_STATEMENT.match(node.value):
                found.append(f"line {node.lineno}: SQL {node.value[:60]!r}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in DRIVERS]
    return found


def imported_layers(source: str) -> set[str]:
    """The top-level packages of memos_desktop that `source` imports (anywhere in it)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "memos_desktop" and len(parts) > 1:
                out.add(parts[1])
    return out


@pytest.mark.parametrize(
    "source",
    [
        "rows = vault.conn.execute('SELECT id FROM cubes')",
        "q = 'SELECT count(*) FROM sync_events WHERE shared = 0'",
        "with db.write_txn(x):\n    cur.executemany(SQL, rows)",
        "def f():\n    import apsw",
        "sql = 'PRAGMA data_version'",
        "Q = ' FROM loader_files WHERE path = ?'",
    ],
)
def test_the_sql_scan_catches_each_way_of_running_sql(source):
    assert sql_offences(source)


def test_the_sql_scan_leaves_prose_and_typed_calls_alone():
    source = (
        "vault.transaction()\nmsg = 'Update settings to pick a model'\n"
        "op = MemoryOp('DELETE', text)\nschedule.uses(vault, cube_id)\n"
    )
    assert sql_offences(source) == []


# Modules that keep a database of their own (never the vault's tables): the benches' embedding cache
# and the in-memory trigram index `bench lang` compares against.
OWN_DATABASE = {"bench/embedcache.py", "bench/lang.py"}


def test_only_the_vault_runs_sql():
    offences = {
        relative: found
        for relative, path in _modules()
        if _layer(relative) != "vault" and relative not in OWN_DATABASE and (found := sql_offences(path.read_text()))
    }
    assert offences == {}, "SQL outside memos_desktop/vault/ (add a typed Vault method instead)"


def test_the_import_scan_sees_lazy_imports():
    source = "def f():\n    from memos_desktop.operation.search import search\n"
    assert imported_layers(source) == {"operation"}
    assert imported_layers("from memos_desktop import tui") == {"tui"}


def test_imports_flow_from_interface_to_operation_to_infrastructure():
    wrong = {}
    for relative, path in _modules():
        layer = _layer(relative)
        used = imported_layers(path.read_text())
        if layer in INFRASTRUCTURE:
            bad = used & (OPERATION | INTERFACE)
        elif layer in OPERATION or layer == "bench":
            bad = used & INTERFACE
        else:
            continue
        if bad:
            wrong[relative] = sorted(bad)
    assert wrong == {}, "a lower layer imports a higher one"


def test_every_package_is_placed_in_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= INTERFACE | OPERATION | INFRASTRUCTURE | {"bench"}


def test_tui_screens_and_widgets_never_import_the_app():
    importers = [
        relative
        for relative, path in _modules()
        if relative.startswith(("tui/screens/", "tui/widgets/", "tui/state", "tui/messages"))
        and any(
            isinstance(node, ast.ImportFrom) and node.module == "memos_desktop.tui.app"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert importers == [], "the app imports its screens; a screen reaches the app through tui/state.py"


def test_tests_import_helpers_from_support_never_from_conftest():
    """pytest imports conftest.py as `conftest`; importing it again as `tests.conftest` runs it twice."""
    tests = Path(__file__).resolve().parent
    offenders = [
        path.name
        for path in sorted(tests.glob("*.py"))
        if path.name != "conftest.py" and re.search(r"^\s*(from|import) (tests\.)?conftest\b", path.read_text(), re.M)
    ]
    assert offenders == []


def test_a_module_with_its_own_database_never_touches_vault_tables():
    for relative in OWN_DATABASE:
        source = (PACKAGE / relative).read_text()
        assert not SQL_ON_TABLES.search(source), f"{relative} runs SQL on a vault table"
