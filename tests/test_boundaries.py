"""Layering: the store runs without the terminal UI, the UI reaches the data only through the
service, and the SQL lives in one module of the store.

Modules are found by globbing, so files added later are covered without editing this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT, last_json_line, run_python

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


def test_the_front_ends_never_touch_sql():
    files = [f for package in ("tui", "cli", "server") for f in sorted((ROOT / package).rglob("*.py"))]
    assert {"app.py", "main.py", "http.py"} <= {f.name for f in files}  # the glob found the packages
    assert offenders(files, "sqlite3") == {} and offenders(files, "psycopg") == {}


def test_the_service_and_the_store_import_no_ui_and_the_ui_no_server():
    def found(package: str, library: str) -> dict[str, list[int]]:
        return offenders(sorted((ROOT / package).rglob("*.py")), library)

    assert found("server", "textual") == found("server", "rich") == found("server", "tui") == {}
    assert found("store", "aiohttp") == found("tui", "aiohttp") == found("tui", "server") == {}


# Every command of the command line, each action of `users` and `policy` too, run in one process
# where importing Textual or Rich fails; each command's exit code is printed.
EVERY_COMMAND_BUT_THE_DASHBOARD = r"""
import argparse, io, json, sys
from pathlib import Path
for name in ("textual", "rich"):
    sys.modules[name] = None  # `import textual` now raises ImportError

from cli.main import _ARGUMENTS, build_parser, main

folder = Path(sys.argv[1])
store = ["--db", str(folder / "store.db")]
(folder / "staff.csv").write_text("username,name,email,role,team\nbob,Bob,,agent,North\n")
runs = [
    (["init", "--issuer", "Acme", "--admin", "root", "--password-stdin"], "root's password\n"),
    (["users", "add", "alice", "--name", "Alice", "--role", "agent", "--password-stdin"], "alice's pw\n"),
    (["users", "list", "--json"], ""),
    (["users", "edit", "alice", "--team", "South"], ""),
    (["users", "passwd", "alice", "--password-stdin"], "alice's new pw\n"),
    (["users", "import", str(folder / "staff.csv")], ""),
    (["users", "export", "-o", str(folder / "out.csv")], ""),
    (["users", "deactivate", "bob"], ""),
    (["users", "reactivate", "bob"], ""),
    (["users", "reset-2fa", "bob"], ""),
    (["users", "unlock", "bob"], ""),
    (["enroll", "alice"], "000000\n000001\n000002\n"),
    (["verify", "alice"], "123456\n"),
    (["login", "alice"], "alice's new pw\n"),
    (["policy", "show"], ""),
    (["policy", "set-mode", "optional"], ""),
    (["policy", "disable"], ""),
    (["policy", "enable"], ""),
    (["policy", "set-issuer", "Acme Support"], ""),
    (["report", "--by", "team", "--csv"], ""),
    (["audit", "--json"], ""),
    (["migrate", "--to", str(folder / "copy.db")], ""),
    (["clients", "add", "vpn", "--source", "10.0.0.0/8", "--radius"], ""),
    (["clients", "list"], ""),
    (["clients", "radius-secret", "vpn"], ""),
    (["clients", "revoke", "vpn"], ""),
    (["demo", "--no-dashboard", "--users", "3", "--db", str(folder / "demo.db")], ""),
]
codes = {}
for argv, stdin in runs:
    sys.stdin = io.StringIO(stdin)
    codes[" ".join(argv[:2] if argv[0] in ("users", "policy", "clients") else argv[:1])] = main(argv if argv[0] == "demo" else argv + store)

# What the parser offers, every level of it built.
def commands(parser, prefix=""):
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not prefix:
                    _ARGUMENTS[name](sub)
                nested = commands(sub, f"{prefix}{name} ")
                found += nested or [f"{prefix}{name}"]
    return found

loaded = sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None} & {"textual", "rich", "psycopg",
                                                                                      "aiohttp", "pyrad"})
offered = [name for name in commands(build_parser()) if name != "serve"]  # it runs until stopped: tests/server
print(json.dumps({"codes": codes, "offered": offered, "loaded": loaded}))
"""


def test_every_command_but_the_dashboard_runs_without_textual_or_psycopg(tmp_path):
    proc = run_python(EVERY_COMMAND_BUT_THE_DASHBOARD, tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    result = last_json_line(proc)
    assert sorted(result["codes"]) == sorted(result["offered"])  # every command the parser offers ran
    assert result["loaded"] == []  # nor psycopg, on an SQLite store
    # Refused: nothing to reset or unlock, wrong codes, Pending.
    expected = {"users reset-2fa": 1, "users unlock": 1, "enroll": 1, "verify": 4, "login": 5}
    assert result["codes"] == {name: expected.get(name, 0) for name in result["offered"]}, proc.stderr


def test_each_engine_lives_in_one_module_of_the_store():
    files = sorted((ROOT / "store").rglob("*.py"))
    assert set(offenders(files, "sqlite3")) == {"store/sql/sqlite.py"}
    assert set(offenders(files, "psycopg")) == {"store/sql/postgres.py"}


def test_the_import_scan_finds_every_import_form():
    source = "import os\nimport sqlite3\nimport json, sqlite3.dbapi2 as t\nfrom sqlite3 import connect\nfrom sqlite3.dbapi2 import Row\nfrom .sqlite3 import x\nimport sqlite3x\n"
    assert imports(source, "<test>", "sqlite3") == [2, 3, 4, 5]
