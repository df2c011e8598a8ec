"""The Rollout tab's widget driven with Pilot, on the hand-checked users of store/test_report (tests/support.py).

A small app mounts the view in a tab as the main screen does (80x24 leaves it 80x20) and
hands it data with `show`, as the main screen does with each snapshot.
"""

from __future__ import annotations

import csv
import stat
from dataclasses import replace
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane

import tui
from store.models import Status
from tests.support import NOW, people, screen_text, settle  # people: the users store/test_report checks by hand
from tui.screens.common import PromptDialog
from tui.widgets.rollout import RolloutView

SIZE = (80, 24)


class RolloutApp(App[None]):
    CSS_PATH = Path(tui.__file__).parent / "app.tcss"

    def __init__(self, users=None, theme: str = "textual-dark"):
        super().__init__()
        self.users = people() if users is None else users
        self.start_theme = theme
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="🔐")
        with TabbedContent():
            with TabPane("Rollout", id="rollout-tab"):
                yield RolloutView(id="rollout-view")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = self.start_theme
        self.title = "Acme Contact Center"
        view = self.query_one(RolloutView)
        view.show(self.users, NOW)
        view.teams.focus()

    def on_rollout_view_team_chosen(self, event: RolloutView.TeamChosen) -> None:
        self.chosen.append(event.team)


def chase_names(view: RolloutView) -> list[str]:
    return [row.user.username for row in view.chase.rows]


async def test_lands_on_the_numbers():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        # 7 of 13 is 53.8%, shown rounded down.
        assert "Activated 7 of 13 (53%)" in text
        assert "Pending 5 · Disabled 1 · activated today 2, in the last 7 days 4" in text
        lines = text.splitlines()
        first_words = [line.split()[0] for line in lines if line.split()]
        assert [w for w in first_words if w in ("Tech", "Billing", "(no", "Sales")] == ["Tech", "Billing", "(no", "Sales"]
        assert " 25% " in next(line for line in lines if line.startswith(" Tech"))  # furthest behind first
        # Tech is selected: its Pending users, longest first, the unknown one last.
        assert "Chase 2 · Tech" in text
        assert chase_names(app.query_one(RolloutView)) == ["tom.walsh", "tao.lopez"]
        assert "tom.walsh" in text and "activations per day" in text and "30 Nov" in text


async def test_the_chase_list_follows_the_selected_team():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.query_one(RolloutView)
        await pilot.press("down")
        assert view.teams.selected == "Billing"
        assert chase_names(view) == ["bea.costa", "bo.chen"]
        await pilot.press("down")
        assert view.teams.selected == "" and chase_names(view) == ["nia.haddad"]
        assert view.chase.border_title == "Chase 1 · (no team)"


async def test_enter_on_a_team_asks_for_its_users():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter", "down", "enter")
        await pilot.pause()
        assert app.chosen == ["Billing", ""]  # "" is the users without a team


async def test_new_data_updates_counts_and_keeps_the_selection():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.query_one(RolloutView)
        await pilot.press("down")  # Billing, second row
        later = NOW.replace(minute=55)
        users = [replace(u, status=Status.ACTIVATED, activated_at=later, pending_since=None)
                 if u.username in ("bea.costa", "bo.chen") else u for u in people()]  # fmt: skip
        view.show(users, NOW)  # another admin enrolled Billing's two Pending users
        await settle(pilot)
        # Billing is at 100% now, after Sales by name: it moved to the end, the cursor with it.
        assert [r.team for r in view.teams.rows] == ["Tech", "", "Billing", "Sales"]
        assert view.teams.selected == "Billing" and view.teams.cursor == 2
        text = screen_text(app)
        assert "Activated 9 of 13 (69%)" in text  # 900 // 13 = 69
        assert "activated today 4" in text
        assert chase_names(view) == [] and "Chase 0 · Billing" in text
        assert view.numbers.daily[-1].activations == 4  # the chart's last bar: ben, tia and these two


async def test_an_older_result_does_not_replace_a_newer_one():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.query_one(RolloutView)
        shown = view.numbers
        view._apply(replace(shown, teams=()), NOW, view._asked - 1)
        assert view.numbers is shown


async def test_t_switches_the_chart_to_90_days():
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "last 30 days" in screen_text(app) and "28 Sep" not in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        text = screen_text(app)
        assert "last 90 days" in text and "28 Sep" in text  # ticks every 3 weeks back from 30 Nov
        await pilot.press("t")
        await pilot.pause()
        assert "last 30 days" in screen_text(app)


async def test_x_exports_the_chase_list(tmp_path):
    target = tmp_path / "chase.csv"
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("down", "x")
        await pilot.pause()
        assert isinstance(app.screen, PromptDialog)
        assert app.screen.query_one(Input).value == "~/mfa-chase-billing-2026-11-30.csv"
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await settle(pilot)
    with target.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["username", "name", "email", "team", "pending_since", "days_pending"],
        ["bea.costa", "Bea Costa", "bea.costa@acme.example", "Billing", "2026-11-20T12:00:00Z", "9"],
        ["bo.chen", "Bo Chen", "bo.chen@acme.example", "Billing", "2026-11-29T01:00:00Z", "0"],
    ]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_export_into_a_missing_folder_says_so(tmp_path):
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        app.screen.query_one(Input).value = str(tmp_path / "no" / "such" / "dir.csv")
        await pilot.press("enter")
        await settle(pilot)
        assert any("cannot write" in str(n.message) and "No such file" in str(n.message) for n in app._notifications)


async def test_export_to_a_folder_says_so_without_asking_to_replace_it(tmp_path):
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        app.screen.query_one(Input).value = str(tmp_path)
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, PromptDialog) and "Replace" not in screen_text(app)
        assert any(f"{tmp_path} is a folder" in str(n.message) for n in app._notifications)


async def test_a_relative_name_already_there_is_named_in_full_before_it_is_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chase.csv").write_text("old\n")
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        app.screen.query_one(Input).value = "chase.csv"
        await pilot.press("enter")
        await settle(pilot)
        said = [str(static.render()) for static in app.screen.query(Static)]  # a long path wraps on screen
        assert f"{tmp_path / 'chase.csv'} exists already. Replace it?" in said


async def test_no_users_yet():
    app = RolloutApp(users=())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "No active accounts yet" in screen_text(app)
        await pilot.press("x")
        assert not isinstance(app.screen, PromptDialog)


async def test_snapshots(screenshots):
    """The tab at 80x24 and 120x40, in a dark and a light theme: one app, resized and re-themed."""
    app = RolloutApp()
    async with app.run_test(size=SIZE) as pilot:
        for theme, size in (("textual-dark", (80, 24)), ("textual-dark", (120, 40)), ("textual-light", (120, 40)),
                            ("textual-light", (80, 24))):  # fmt: skip
            app.theme = theme
            await pilot.resize_terminal(*size)
            await settle(pilot)
            await screenshots.take(pilot, f"{size[0]}x{size[1]}-{theme}")
    screenshots.check()
