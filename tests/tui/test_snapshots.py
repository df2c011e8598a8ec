"""SVG snapshots of every screen, tab and dialog at 80x24: a dark theme, a light one, and NO_COLOR.

Per variant, one app walks the dashboard as a new user of the README's demo meets it: the sign-in
screen, the admin's enrollment at first sign-in (every step of the wizard), the four tabs and every
dialog, then an agent's own screen; a second, short one shows the first-run screen of a store path
with no store yet. What varies is frozen: the clock (a FakeClock at T0, times in UTC), the users
(`build_demo`'s seed, and a few made to show what is hard to see: a locked user, a deactivated one,
a 20-character username, markup in a name; three service clients, one revoked), the key the
wizard hands out, the recovery codes, the cursor's blink.

Each state is `__snapshots__/test_snapshots/test_every_screen[<variant>][<state>].svg`:
`pytest --snapshot-update` writes them; a difference fails the test once every state is taken,
and pytest-textual-snapshot's HTML report shows each one that differs.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input

from store import service as service_module
from store import totp
from store.demo import build_demo
from store.models import NewUser, PolicyMode, Role, Status
from store.paths import StorePaths
from store.service import RECOVERY_ALPHABET, Service
from tests.support import activate, code, make_app, screen_text, settle, sign_in
from tui.screens import main as main_module
from tui.screens.agent import AgentScreen
from tui.screens.common import ConfirmDialog, PromptDialog
from tui.screens.dialogs import AddUserDialog, ImportErrorsDialog
from tui.screens.login import FirstRunScreen, LoginScreen
from tui.screens.main import MainScreen
from tui.screens.wizard import EnrollmentWizard
from tui.widgets.security import SecurityView
from tui.widgets.user_grid import UserGrid

SIZE = (80, 24)
VARIANTS = {"dark": ("textual-dark", False), "light": ("textual-light", False), "no-color": ("textual-dark", True)}
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # every enrollment's key
RECOVERY_CODES = [f"{RECOVERY_ALPHABET[i:i + 5]}-{RECOVERY_ALPHABET[i + 10:i + 15]}" for i in range(10)]


@pytest.fixture
def frozen(monkeypatch):
    """The key, the recovery codes, the time zone and the cursor: the same on every run."""
    monkeypatch.setattr(totp, "new_secret", lambda: SECRET)
    codes = itertools.cycle(RECOVERY_CODES)
    monkeypatch.setattr(service_module, "_recovery_code", lambda: next(codes))
    # A blinking cursor is shown or not depending on when the screenshot is taken: it stays shown.
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    # The Security tab's command names the store, here in a new temporary folder each run.
    real = main_module.add_client_command
    fixed = StorePaths(Path("/srv/mfa-console/store.db"), Path("/srv/mfa-console/store.key"))
    monkeypatch.setattr(main_module, "add_client_command", lambda paths: real(fixed))
    with monkeypatch.context() as zone:  # undone on leaving, so that tzset() reads the zone back
        zone.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture
def demo(paths, clock, frozen) -> StorePaths:
    """The README's demo at 200 users (admin Pending: they enroll at first sign-in), and users
    sorted near the top of the grid that show what is easy to get wrong."""
    build_demo(paths, users=200, actor="tester", now=clock(), seed=2026).close()
    service = Service(paths, clock=clock)
    op = service.operator("tester")
    for user, password in (
        (NewUser("aiko.tanaka", "Aiko Tanaka", Role.AGENT, team="Billing"), "aiko-password"),
        (NewUser("alexandra.whitfield1", "Alexandra Whitfield", Role.SUPERVISOR, team="Customer Care"), None),
        (NewUser("ada.lovelace", "[bold]Ada[/bold] Lovelace", Role.AGENT, team="[red]Tech[/red]"), None),
        (NewUser("alma.ortiz", "Alma Ortiz", Role.AGENT, team="Sales"), None),
    ):
        service.add_user(op, user, password=password)
    for _ in range(5):  # the policy's max_failures: locked for 5 minutes
        service.login("aiko.tanaka", "wrong password")
    service.set_active(op, "alma.ortiz", False)
    # The verification service's clients: bound to networks or not, and one revoked.
    service.add_client(op, "vpn-gateway", ("10.0.0.0/8",))
    service.add_client(op, "intranet", ("10.1.2.0/24", "192.168.40.0/22", "2001:db8:40::/48"))
    service.add_client(op, "legacy-radius", ())
    service.revoke_client(op, "legacy-radius")
    activate(service, "agent", clock)  # an agent with 2FA set up, for the agent's own screen
    service.close()
    return paths


async def wait_until(pilot, condition, what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


async def press(pilot, *keys: str) -> None:
    await pilot.press(*keys)
    await settle(pilot)


@pytest.mark.heavy
@pytest.mark.parametrize("variant", VARIANTS)
async def test_every_screen(variant, demo, clock, tmp_path, monkeypatch, screenshots):
    theme, no_color = VARIANTS[variant]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "users.csv").write_text("username,name,email,role,team\nzoe,Zoe,,agent,Sales\nadmin,Admin Two,,agent,\n"
                                    "yan,Yan,,boss,\n")  # fmt: skip
    (home / f"mfa-users-{datetime.fromtimestamp(clock(), UTC):%Y-%m-%d}.csv").write_text("an earlier export\n")
    take = screenshots.take

    # -- a first run: no store at this path yet ---------------------------------------------------
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")  # read (and removed) by each app as it starts
    fresh = StorePaths(tmp_path / "fresh" / "store.db", tmp_path / "fresh" / "store.key")
    async with make_app(fresh, clock).run_test(size=SIZE) as pilot:
        pilot.app.theme = theme
        await settle(pilot)
        assert isinstance(pilot.app.screen, FirstRunScreen)
        await take(pilot, "first-run")
        for field, value in (("issuer", "Acme Contact Center"), ("admin-username", "admin"),
                             ("password1", "first-password"), ("password2", "other-password")):  # fmt: skip
            pilot.app.screen.query_one(f"#{field}", Input).value = value
        pilot.app.screen.query_one("#password2", Input).focus()
        await press(pilot, "end")  # as after typing: the cursor at the end, nothing selected
        await press(pilot, "enter")
        assert "The two passwords differ." in screen_text(pilot.app)
        await take(pilot, "first-run-passwords-differ")
    assert not fresh.db.exists()

    # -- the demo: sign-in, the admin's enrollment -------------------------------------------------
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    async with make_app(demo, clock, demo=True).run_test(size=SIZE) as pilot:
        app = pilot.app
        app.theme = theme
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        await take(pilot, "sign-in")

        await sign_in(pilot, "admin", "demo-admin")
        wizard = app.screen
        assert isinstance(wizard, EnrollmentWizard) and wizard.step == "intro"
        await take(pilot, "wizard-1-intro")
        await press(pilot, "enter")
        assert wizard.step == "scan" and wizard.enrollment.secret == SECRET
        await take(pilot, "wizard-2-qr")
        await press(pilot, "enter")
        assert wizard.step == "code"
        await take(pilot, "wizard-3-code")
        wizard.query_one("#code-input", Input).value = code(SECRET, clock)
        await press(pilot, "enter")
        assert wizard.step == "codes" and list(wizard.result.recovery_codes) == RECOVERY_CODES
        await take(pilot, "wizard-4-recovery-codes")
        await press(pilot, "space")
        await press(pilot, "enter")
        assert wizard.step == "done"
        await take(pilot, "wizard-5-done")
        await press(pilot, "enter")
        main = app.screen
        assert isinstance(main, MainScreen)
        await wait_until(pilot, lambda: main.snapshot is not None, "the first poll")

        # -- the tabs --------------------------------------------------------------------------------
        await press(pilot, "1")
        await wait_until(pilot, lambda: "Chase" in screen_text(app), "the Rollout report")
        await take(pilot, "tab-1-rollout")
        await press(pilot, "x")
        assert isinstance(app.screen, PromptDialog)
        await take(pilot, "rollout-export-chase")
        await press(pilot, "escape")

        await press(pilot, "2")
        grid = main.query_one(UserGrid)
        assert [u.username for u in grid.rows][:2] == ["ada.lovelace", "admin"]
        await take(pilot, "tab-2-users")
        await press(pilot, "3")
        await wait_until(pilot, lambda: main.query_one(SecurityView).clients, "the service's clients")
        await take(pilot, "tab-3-security")
        await press(pilot, "tab")  # to the clients, below the policy: the tab scrolls to them
        await take(pilot, "tab-3-security-clients")
        await press(pilot, "r")
        assert isinstance(app.screen, ConfirmDialog)
        await take(pilot, "confirm-revoke-client")
        await press(pilot, "escape")
        await press(pilot, "4")
        await wait_until(pilot, lambda: "login" in screen_text(app), "the audit log")
        await take(pilot, "tab-4-audit")

        # -- the Users tab's dialogs -----------------------------------------------------------------
        await press(pilot, "2")
        await press(pilot, "a")
        dialog = app.screen
        assert isinstance(dialog, AddUserDialog)
        await take(pilot, "add-user")
        for field, value in (("new-username", "bad name!"), ("new-name", "=cmd"), ("new-email", "not-an-email"),
                             ("new-password", "short")):  # fmt: skip
            dialog.query_one(f"#{field}", Input).value = value
        dialog.query_one("#new-password", Input).focus()
        await press(pilot, "end")
        await press(pilot, "enter")
        await take(pilot, "add-user-problems")
        await press(pilot, "escape")

        grid.cursor = next(i for i, u in enumerate(grid.rows) if u.status is Status.ACTIVATED and u.role is Role.AGENT)
        await settle(pilot)
        for key, name in (("r", "reset-2fa"), ("d", "deactivate"), ("e", "enroll-again")):
            await press(pilot, key)
            assert isinstance(app.screen, ConfirmDialog)
            await take(pilot, f"confirm-{name}")
            await press(pilot, "escape")

        await press(pilot, "x")
        assert isinstance(app.screen, PromptDialog)
        await take(pilot, "export")
        await press(pilot, "enter")  # the default name: a file of that name is there already
        assert isinstance(app.screen, ConfirmDialog)
        await take(pilot, "export-replace")
        await press(pilot, "escape")

        await press(pilot, "i")
        assert isinstance(app.screen, PromptDialog)
        await take(pilot, "import")
        app.screen.query_one("#prompt-input", Input).value = "~/users.csv"
        await press(pilot, "enter")
        assert isinstance(app.screen, ImportErrorsDialog)
        await take(pilot, "import-problems")
        await press(pilot, "enter")

        await press(pilot, "question_mark")
        assert app.screen.query("HelpPanel")
        await take(pilot, "keys")
        await press(pilot, "escape")

        # -- Security: optional on another plan, and turning 2FA off ------------------------------
        other = Service(demo, clock=clock)
        other.set_mode(other.operator("provider"), PolicyMode.OPTIONAL)
        other.close()
        security = main.query_one(SecurityView)
        # Seen before the tab shows: the tab then puts the focus on the box, which may now change.
        await wait_until(pilot, lambda: security.policy.mode is PolicyMode.OPTIONAL, "the optional plan")
        await press(pilot, "3")
        await take(pilot, "tab-3-security-optional")
        security.query_one("#enable-2fa", Checkbox).focus()
        await press(pilot, "space")
        assert isinstance(app.screen, ConfirmDialog)
        await take(pilot, "confirm-turn-off-2fa")
        await press(pilot, "escape")

        # -- an agent ----------------------------------------------------------------------------
        app.sign_out()
        await sign_in(pilot, "agent", "demo-agent", code(SECRET, clock))
        assert isinstance(app.screen, AgentScreen)
        await wait_until(pilot, lambda: "Set up on" in screen_text(app), "the agent's status")
        await take(pilot, "agent")
        await press(pilot, "e")
        assert isinstance(app.screen, ConfirmDialog)
        await take(pilot, "agent-set-up-again")
        await press(pilot, "escape")
    screenshots.check()
