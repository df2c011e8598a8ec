"""The dashboard remembers a person's theme, tab, sort and filter (TinyDB, in the XDG config folder)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.support import activate, code, make_app, screen_text, settle, sign_in
from tui.prefs import Preferences, default_path
from tui.widgets.users import UsersView

SIZE = (80, 24)


async def test_theme_tab_sort_and_filter_are_remembered(paths, service, clock):
    secret = activate(service, "ada", clock)
    app = make_app(paths, clock)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        app.theme = "textual-light"
        await pilot.press("s", "S", "f")  # sort by name, reversed; Pending only
        await pilot.press("4")
        await settle(pilot)
    clock.advance(30)
    again = make_app(paths, clock)
    async with again.run_test(size=SIZE) as pilot:
        assert again.theme == "textual-light"
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        assert again.screen.active_tab == "audit-tab"
        view = again.screen.query_one(UsersView)
        assert (view.grid.sort_column, view.grid.sort_reverse) == (1, True)
        assert view.status_filter is not None and view.status_filter.value == "pending"
    path = default_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_a_sort_never_reversed_is_remembered_too(paths, service, clock):
    """Only the column was chosen (`s`): no sort_reverse was ever written, and the sort was lost."""
    secret = activate(service, "ada", clock)
    app = make_app(paths, clock)
    async with app.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        await pilot.press("s")  # by name
        await settle(pilot)
    clock.advance(30)
    again = make_app(paths, clock)
    async with again.run_test(size=SIZE) as pilot:
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        grid = again.screen.query_one(UsersView).grid
        assert (grid.sort_column, grid.sort_reverse) == (1, False)


async def test_a_damaged_preferences_file_is_set_aside_with_a_notice(paths, service, clock):
    path = default_path()
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(b'{"_default": {"1": {"kind": "dashboard", "theme": ')  # cut short
    path.chmod(0o600)
    app = make_app(paths, clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert "preferences file was damaged" in screen_text(app)
        app.theme = "textual-light"  # and the new choice is kept from now on
    assert path.with_name("preferences.json.damaged").read_bytes().startswith(b'{"_default"')
    assert Preferences().get("theme") == "textual-light"


def test_a_link_at_the_preferences_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    path = default_path()
    path.parent.mkdir(parents=True, mode=0o700)
    os.symlink(target, path)
    prefs = Preferences()
    assert prefs.notice is not None and "symbolic link" in prefs.notice
    prefs.save(theme="textual-light")  # not kept, and nothing written through the link
    assert target.read_text() == "keep me"


def _write_preferences(text: str | bytes) -> Path:
    path = default_path()
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(0o600)
    return path


WRONG = {"theme": ["x"], "tab": {"a": 1}, "sort_column": 99, "sort_reverse": "yes", "status_filter": ["pending"]}


def test_values_of_the_wrong_type_or_range_are_dropped_with_a_notice_and_from_the_file():
    path = _write_preferences(json.dumps({"_default": {"1": {"kind": "dashboard", **WRONG}}}))
    prefs = Preferences()
    assert [prefs.get(key) for key in WRONG] == [None] * len(WRONG)
    assert prefs.notice == ("Your preferences file had values that cannot be used (theme, tab, sort_column, "
                            "sort_reverse, status_filter): defaults are used.")  # fmt: skip
    assert json.loads(path.read_text()) == {"_default": {"1": {"kind": "dashboard"}}}
    assert Preferences().notice is None  # said once


@pytest.mark.parametrize("column", [-1, 7, True, 1.0, "1"])
def test_a_sort_column_the_grid_lacks_is_dropped(column):
    _write_preferences(json.dumps({"_default": {"1": {"kind": "dashboard", "sort_column": column,
                                                      "sort_reverse": True, "theme": "textual-light"}}}))  # fmt: skip
    prefs = Preferences()
    assert (prefs.get("sort_column"), prefs.get("sort_reverse"), prefs.get("theme")) == (None, True, "textual-light")


async def test_the_dashboard_opens_on_wrong_typed_preferences(paths, service, clock):
    """A theme that is a list crashed the app as it mounted; a sort column out of range made the
    store look unusable (the preload's sort failed)."""
    _write_preferences(json.dumps({"_default": {"1": {"kind": "dashboard", "theme": ["x"], "sort_column": 99,
                                                      "sort_reverse": False}}}))  # fmt: skip
    secret = activate(service, "ada", clock)
    app = make_app(paths, clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert "Your preferences file had values" in screen_text(app) and "(theme, sort_column)" in app.prefs.notice
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        view = app.screen.query_one(UsersView)
        assert (view.grid.sort_column, view.grid.sort_reverse) == (0, False)
        assert "ada" in screen_text(app)


def test_a_file_nested_past_the_parsers_limit_is_set_aside():
    path = _write_preferences(b"[" * 100_000 + b"]" * 100_000)
    prefs = Preferences()
    assert prefs.notice is not None and "preferences file was damaged" in prefs.notice
    assert path.with_name("preferences.json.damaged").stat().st_size == 200_000
    prefs.save(theme="textual-light")
    assert Preferences().get("theme") == "textual-light"


def test_a_preferences_folder_others_may_write_is_named_for_the_preferences():
    folder = default_path().parent
    folder.mkdir(parents=True, mode=0o700)
    folder.chmod(0o777)
    assert Preferences().notice == (f"Preferences are not kept: folder {folder} is writable by other users (mode "
                                    f"0777): any of them could swap your preferences; fix: `chmod go-w {folder}`")  # fmt: skip
