"""The dashboard in a real terminal (tmux, 80x24), as a person meets it.

Each check is a defect a new user once hit, read off the screen itself: a Pilot test drives
the app the way its authors expect, a terminal shows what a person gets. Codes come from
oathtool, an authenticator independent of the code under test; the QR code is decoded off the
pane. The stores are made in the test, with passwords at the real scrypt cost (the dashboard
runs in its own process and refuses cheaper ones).

Every wait polls the screen with a generous timeout: the suite runs on four workers, and a
dashboard starting on a busy machine takes seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from store import crypto
from store.models import NewUser, Role
from store.paths import StorePaths
from store.service import Service
from tests.screen import Tmux, decode_qr

pytestmark = pytest.mark.heavy  # seconds each: started first

_SCRIPT = Path(sys.executable).with_name("mfa-console")  # the console script of this venv
MFA = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]
REAL_SCRYPT_N = crypto.SCRYPT_N  # read at import, before conftest's fast_scrypt lowers it for a test
LONG_NAME = "maximilian.vonstein2"  # 20 characters: never cut at 80 columns
START = 30.0  # seconds for the dashboard to start (or sign in) on a busy machine
STEP = 10.0  # seconds for anything else to show


def oathtool(secret: str) -> str:
    """The current TOTP code, by oathtool; the key goes on stdin, not in argv."""
    return subprocess.run(["oathtool", "--totp", "-b", "-"], input=secret, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@pytest.fixture
def center(tmp_path, monkeypatch):
    """A contact center: ada (admin) and sam (supervisor) enrolled; alice (agent) Pending; a
    deactivated, a locked and a 20-character account. Returns (paths, {user: secret})."""
    monkeypatch.setattr(crypto, "SCRYPT_N", REAL_SCRYPT_N)  # the dashboard's process refuses a cheaper hash
    crypto._dummy_hash.cache_clear()
    paths = StorePaths(tmp_path / "store" / "store.db", tmp_path / "store" / "store.key")
    # The enrollments' codes are three steps old when the test signs in: never the code it types.
    past = time.time() - 90
    service = Service.create(paths, issuer="Acme Contact Center", actor="tester", clock=lambda: past)
    op = service.operator("tester")
    people = [("ada", Role.ADMIN, "Billing"), ("sam", Role.SUPERVISOR, "Billing"), ("alice", Role.AGENT, "Sales"),
              ("dave", Role.AGENT, "Sales"), ("lou", Role.AGENT, "Sales"), (LONG_NAME, Role.AGENT, "Sales")]  # fmt: skip
    for username, role, team in people:
        service.add_user(op, NewUser(username, username.title(), role, team=team), password=f"{username}-password")
    secrets = {}
    for username in ("ada", "sam", "lou"):
        enrollment = service.begin_enrollment(op, username)
        assert service.confirm_enrollment(op, username, pyotp.TOTP(enrollment.secret).at(past)).ok
        secrets[username] = enrollment.secret
    service.set_active(op, "dave", False)
    service.close()
    live = Service(paths)
    for _ in range(5):
        live.login("lou", "wrong-password")  # locked now, for five minutes
    live.close()
    return paths, secrets


def dashboard(paths: StorePaths, tmp_path: Path, *, env: dict | None = None) -> Tmux:
    """The dashboard at 80x24 on `paths`; its preferences in the test's own folder."""
    env = {"MFA_CONSOLE_DB": str(paths.db), "XDG_CONFIG_HOME": str(tmp_path / "config"), **(env or {})}
    return Tmux([*MFA], cols=80, rows=24, env=env)


def wait_until(tmux: Tmux, ok: Callable[[str], object], timeout: float = STEP, what: str = "") -> str:
    """Polls the pane (plain text) until `ok(screen)`; returns that screen."""
    deadline = time.monotonic() + timeout
    while not ok(screen := tmux.capture(escapes=False)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'the condition'} not on screen after {timeout}s:\n{screen}")
        time.sleep(0.05)
    return screen


def escape(tmux: Tmux) -> None:
    """Esc alone: a key sent right after it would be read as Alt+key (an escape sequence)."""
    tmux.send("Escape")
    time.sleep(0.3)


def log_rows(screen: str) -> list[str]:
    """The audit table's rows on the screen."""
    return [line for line in screen.splitlines() if re.match(r" \d{4}-\d\d-\d\d \d\d:\d\d ", line)]


def sign_in(tmux: Tmux, username: str, password: str, secret: str | None) -> None:
    """As soon as the form shows (the store still loading), in one burst as a password manager types."""
    tmux.wait_for("Sign in", timeout=START)
    tmux.send("-l", f"{username}\t{password}\r")
    if secret is not None:
        tmux.wait_for("Enter the code from your authenticator app", timeout=START)
        tmux.send("-l", oathtool(secret) + "\r")  # the clock window takes a code of the step before


def test_an_administrators_tour_at_80x24(center, tmp_path):
    paths, secrets = center
    with dashboard(paths, tmp_path) as tmux:
        sign_in(tmux, "ada", "ada-password", secrets["ada"])
        users = tmux.wait_for("Showing 6 of 6 accounts", timeout=START)
        assert "ada-password" not in users
        # The grid: the whole 20-character username, and who is kept out, in words.
        assert LONG_NAME in users
        assert re.search(r"^dave .*✕ Deactivated", users, re.M) and re.search(r"^lou .*▲ Locked", users, re.M)
        percent = re.search(r"Activated 3 of 5 \((\d+%)\)", users).group(1)
        # Tabs by number, from every tab.
        tmux.send("1")
        assert f"Activated 3 of 5 ({percent})" in tmux.wait_for("activated today", timeout=STEP)  # the same percent
        tmux.send("3")
        tmux.wait_for("Enable 2FA: on", timeout=STEP)
        tmux.send("4")
        audit = tmux.wait_for("login.password", timeout=STEP)
        assert "enroll.confirm" in audit  # whole, not cut to a header's width
        tmux.send("-l", "failed")  # typing on the log filters it, on every column
        audit = wait_until(tmux, lambda s: "  failed\n" in s and all("failed" in row for row in log_rows(s)),
                           what="the log filtered on 'failed'")  # fmt: skip
        assert len(log_rows(audit)) == 5  # lou's five wrong passwords
        escape(tmux)  # clears the filter
        tmux.send("-l", "q")  # q filters too: it does not quit
        wait_until(tmux, lambda s: "  q\n" in s and log_rows(s) and all("q" in row for row in log_rows(s)),
                   what="the log filtered on 'q'")  # fmt: skip
        escape(tmux)
        escape(tmux)
        tmux.send("2")
        tmux.wait_for("Showing 6 of 6", timeout=STEP)
        tmux.send("/")
        tmux.send("-l", "lou")
        tmux.send("Enter")
        tmux.send("3")  # the search is still open: the number still switches
        tmux.wait_for("Enable 2FA: on", timeout=STEP)
        tmux.send("2")
        tmux.wait_for("Showing 1 of 6", timeout=STEP)
        tmux.send("r")  # the Reset dialog's text, with its own line breaks
        dialog = tmux.wait_for("Reset two-factor authentication of", timeout=STEP)
        assert "(lou)?" in dialog and "???" not in dialog
        tmux.send("?")  # the keys, in a dialog too
        tmux.wait_for("Focus Previous", timeout=STEP)
        escape(tmux)  # hides them
        escape(tmux)  # closes the dialog
        escape(tmux)  # clears the search
        tmux.wait_for("Showing 6 of 6", timeout=STEP)
        # Add a user: Enter moves on, and adds from the last field; the new user is selected.
        tmux.send("a")
        form = tmux.wait_for("Add a user", timeout=STEP)
        assert re.search(r"Role +Agent", form)  # the role it will give, not an empty box
        tmux.send("-l", "new.user\rNew User\r")
        tmux.send("Tab", "Tab", "Tab")  # past the role (an agent), team and email, to the password
        tmux.send("-l", "new.user-password\r")
        tmux.wait_for("Added new.user", timeout=STEP)
        wait_until(tmux, lambda s: re.search(r"^new\.user +New User", s, re.M), what="new.user's row")


def test_first_run_fits_80x24(tmp_path):
    paths = StorePaths(tmp_path / "new" / "store.db", tmp_path / "new" / "store.key")
    with dashboard(paths, tmp_path) as tmux:
        tmux.wait_for("No contact center here yet", timeout=START)
        tmux.send("-l", "Globex\troot\tRoot Admin\tfirst-password\tother-password\r")
        screen = tmux.wait_for("The two passwords differ.", timeout=STEP)
        assert "Create" in screen and "first-password" not in screen


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_a_pending_agent_enrolls_off_the_screen(center, tmp_path, no_color):
    """The QR code scans off the pane (dark and light themes, and under NO_COLOR, where the
    dashboard once crashed at this step); two hurried Enters do not skip the recovery codes."""
    paths, _ = center
    with dashboard(paths, tmp_path, env={"NO_COLOR": "1"} if no_color else {}) as tmux:
        sign_in(tmux, "alice", "alice-password", None)
        tmux.wait_for("Set up two-factor authentication for alice", timeout=START)
        tmux.send("Enter")
        tmux.wait_for("Scan this code", timeout=STEP)
        uris: dict[str, list[str]] = {}

        def scanned(_: str) -> bool:  # the code may be drawn a frame after the text beside it
            screen = tmux.capture()
            uris.update({theme: decode_qr(screen, theme) for theme in ("dark", "light")})
            return len(uris["dark"]) == 1 and uris["dark"] == uris["light"]

        wait_until(tmux, scanned, what=f"a QR code that scans in dark and light themes ({uris})")
        secret = re.search(r"secret=([A-Z2-7]+)", uris["dark"][0]).group(1)
        tmux.send("Enter")
        tmux.wait_for("Type the code from the app", timeout=STEP)
        tmux.send("-l", oathtool(secret) + "\r")
        tmux.wait_for("Save the recovery codes", timeout=START)
        tmux.send("Enter", "Enter")  # in a hurry
        tmux.wait_for("first.", timeout=STEP)  # "Tick “I have saved them” first."
        assert "Save the recovery codes" in tmux.capture(escapes=False)
        tmux.send("Space", "Enter")
        tmux.wait_for("2FA is active for alice", timeout=STEP)
