"""The Rollout tab in the real dashboard (after MainScreen wires RolloutView in)."""

from __future__ import annotations

from textual.widgets import TabbedContent

from store.models import NewUser, Role
from tests.support import activate, code, make_app, run_python, screen_text, settle, sign_in
from tui.widgets.rollout import RolloutView
from tui.widgets.user_grid import UserGrid

SIZE = (80, 24)

ENROLL_IN_ANOTHER_PROCESS = """
import sys, pyotp
from pathlib import Path
from store.paths import resolve
from store.service import Service
now = float(sys.argv[3])
service = Service(resolve(sys.argv[1], sys.argv[2]), clock=lambda: now)
op = service.operator("other-admin")
enrollment = service.begin_enrollment(op, "alice")
assert service.confirm_enrollment(op, "alice", pyotp.TOTP(enrollment.secret).at(now)).ok
"""


async def test_a_supervisor_lands_on_the_rollout(paths, service, clock):
    secret = activate(service, "sam", clock)
    async with make_app(paths, clock).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "sam", "sam-password", code(secret, clock))
        screen = pilot.app.screen
        assert screen.query_one(TabbedContent).active == "rollout-tab"
        assert pilot.app.focused is screen.query_one(RolloutView).teams
        text = screen_text(pilot.app)
        assert "Activated 1 of 4 (25%)" in text and "Chase 3 · Billing" in text


async def test_an_administrator_gets_the_rollout_when_the_tab_is_shown(paths, service, clock):
    secret = activate(service, "ada", clock)
    async with make_app(paths, clock).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "ada", "ada-password", code(secret, clock))
        view = pilot.app.screen.query_one(RolloutView)
        assert view.numbers is None  # administrators land on Users: no report made for a hidden tab
        await pilot.press("1")
        await settle(pilot)
        text = screen_text(pilot.app)
        assert "Activated 1 of 4 (25%)" in text and "Chase 3 · Billing" in text


async def test_choosing_a_team_filters_the_users_grid(paths, service, clock):
    service.add_user(service.operator("tester"), NewUser("zoe", "Zoe", Role.AGENT, team="Sales"))
    secret = activate(service, "sam", clock)
    async with make_app(paths, clock).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "sam", "sam-password", code(secret, clock))
        await pilot.press("2", "end", "slash", *"zoe", "enter", "1")  # the grid at its end, a search left
        await settle(pilot)
        await pilot.press("down", "enter")  # Sales (0%) first, then Billing (1 of 4)
        await settle(pilot)
        screen = pilot.app.screen
        assert screen.query_one(TabbedContent).active == "users-tab"
        grid = screen.query_one(UserGrid)
        assert [u.username for u in grid.rows] == ["ada", "alice", "bob", "sam"]
        assert grid.cursor == 0 and grid.scroll_y == 0  # the team's list from its top
        assert 'team "Billing"' in screen_text(pilot.app)
        await pilot.press("escape")
        await settle(pilot)
        assert len(screen.query_one(UserGrid).rows) == 5


async def test_another_process_activates_a_user_and_the_tab_follows(paths, service, clock):
    secret = activate(service, "sam", clock)
    async with make_app(paths, clock).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "sam", "sam-password", code(secret, clock))
        view = pilot.app.screen.query_one(RolloutView)
        assert view.numbers.daily[-1].activations == 1
        run_python(ENROLL_IN_ANOTHER_PROCESS, paths.db, paths.key, clock())
        for _ in range(30):  # the poll runs every 0.1 s here (1 s for real)
            await pilot.pause(0.1)
            if "Activated 2 of 4" in screen_text(pilot.app):
                break
        text = screen_text(pilot.app)
        assert "Activated 2 of 4 (50%)" in text and "activated today 2" in text
        assert view.numbers.daily[-1].activations == 2  # the chart's last bar
        assert "Chase 2 · Billing" in text


async def test_with_2fa_off_the_chase_list_says_why_it_is_empty(paths, service, clock):
    from store.models import PolicyMode

    op = service.operator("tester")
    service.set_mode(op, PolicyMode.OPTIONAL)
    service.set_enabled(op, False)
    async with make_app(paths, clock).run_test(size=SIZE) as pilot:
        await sign_in(pilot, "sam", "sam-password")  # 2FA off: the password alone
        for _ in range(50):  # the report is made in a thread
            await settle(pilot)
            if "Chase 0" in screen_text(pilot.app):
                break
        assert "2FA is off: none to chase." in screen_text(pilot.app)  # whole, at 80 columns
