"""Layering: the store runs without the terminal UI, and the UI reaches the data only through the service.

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
    assert "store.service" in modules and "store.storage" in modules  # the glob found the package
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


def tinydb_imports(source: str, filename: str) -> list[int]:
    """Line numbers of `import tinydb...` / `from tinydb... import` statements."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            if any(alias.name == "tinydb" or alias.name.startswith("tinydb.") for alias in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "tinydb" or node.module.startswith("tinydb."):
                lines.append(node.lineno)
    return lines


def test_the_ui_never_imports_tinydb():
    files = sorted((ROOT / "tui").rglob("*.py"))
    assert any(f.name == "cli.py" for f in files)  # the glob found the package
    offenders = {
        str(f.relative_to(ROOT)): found
        for f in files
        if (found := tinydb_imports(f.read_text(encoding="utf-8"), str(f)))
    }
    assert offenders == {}


def test_the_tinydb_scan_finds_every_import_form():
    source = "import os\nimport tinydb\nimport json, tinydb.table as t\nfrom tinydb import TinyDB\nfrom tinydb.storages import Storage\nfrom .tinydb import x\nimport tinydbx\n"
    assert tinydb_imports(source, "<test>") == [2, 3, 4, 5]
