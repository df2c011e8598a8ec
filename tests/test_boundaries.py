"""Layering: the store runs without the terminal UI, the UI reaches the data only through the
service, and the SQL lives in one module of the store.

Modules are found by globbing, so files added later are covered without editing this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import last_json_line, run_python

ROOT = Path(__file__).resolve().parent.parent
UI_LIBRARIES = ("textual", "rich")


def modules_of(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_store_imports_no_ui_library():
    modules = modules_of("store")
    assert "store.service" in modules and "store.sql" in modules  # the glob found the package
    script = f"""
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {set(UI_LIBRARIES)!r})
print(json.dumps({{"imported": sorted(m for m in sys.modules if m.startswith("store")), "ui": loaded}}))
"""
    result = last_json_line(run_python(script))
    assert set(modules) <= set(result["imported"])
    assert result["ui"] == []


def test_the_subprocess_check_would_see_a_ui_library():
    """The check above can fail: importing textual in the same way is noticed."""
    script = "import json, sys, textual.app; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'rich'})))"
    assert last_json_line(run_python(script)) == ["rich", "textual"]


def imports(source: str, filename: str, library: str) -> list[int]:
    """Line numbers of `import library...` / `from library... import` statements."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            if any(alias.name == library or alias.name.startswith(f"{library}.") for alias in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == library or node.module.startswith(f"{library}."):
                lines.append(node.lineno)
    return lines


def offenders(files: list[Path], library: str) -> dict[str, list[int]]:
    return {
        str(f.relative_to(ROOT)): found
        for f in files
        if (found := imports(f.read_text(encoding="utf-8"), str(f), library))
    }


def test_the_ui_never_touches_sql():
    files = sorted((ROOT / "tui").rglob("*.py"))
    assert any(f.name == "cli.py" for f in files)  # the glob found the package
    assert offenders(files, "sqlite3") == {}


def test_the_sql_lives_in_one_module_of_the_store():
    files = sorted((ROOT / "store").rglob("*.py"))
    assert set(offenders(files, "sqlite3")) == {"store/sql.py"}


def test_the_import_scan_finds_every_import_form():
    source = "import os\nimport sqlite3\nimport json, sqlite3.dbapi2 as t\nfrom sqlite3 import connect\nfrom sqlite3.dbapi2 import Row\nfrom .sqlite3 import x\nimport sqlite3x\n"
    assert imports(source, "<test>", "sqlite3") == [2, 3, 4, 5]
