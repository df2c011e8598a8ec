"""The enrollment wizard, driven with the keyboard at 80x24 against a real store.

The QR step is read back off the running app's compositor (the strips Textual would write to
the terminal, with their colours), rebuilt as an image and decoded with zxing.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pyotp
import pytest
from rich.color import ColorSystem
from textual import events
from textual.app import App
from textual.strip import Strip
from textual.widgets import Button, Checkbox, Input

from store import totp
from store.models import ConfirmResult, Outcome, Scope, Session, Status
from store.service import Service
from tests.support import ROOT, T0, read_store
from tests.screen import RGB, Cell, cells_from_strips, decode_cells, decode_qr, parse_ansi_screen
from store.qr import QRCode
from tui.screens.wizard import EnrollmentWizard
from tui.widgets.qr_view import QRView

BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)
FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
APP_TCSS = ROOT / "tui" / "app.tcss"


class WizardApp(App[None]):
    """Pushes one EnrollmentWizard and records what it dismisses with."""

    def __init__(
        self, service: Service, actor: Session, username: str, *, theme: str = "textual-dark", css_path=None
    ):
        super().__init__(css_path=css_path)
        self.service, self.actor, self.username, self.initial_theme = service, actor, username, theme
        self.results: list[ConfirmResult | None] = []
        self.wizard: EnrollmentWizard | None = None

    def on_mount(self) -> None:
        self.theme = self.initial_theme
        self.wizard = EnrollmentWizard(self.service, self.actor, self.username)
        self.push_screen(self.wizard, self.results.append)


async def settle(app: App, pilot) -> None:
    """Let every service call finish and its result reach the screen (workers hand results back
    with call_from_thread, so a finished worker's result is already applied)."""
    await app.workers.wait_for_complete()
    await pilot.pause()


def screen_strips(app: App) -> list[Strip]:
    """The full screen as Textual would send it: every line, joined."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return [Strip.join(line) for line in update.strips]


def screen_text(app: App) -> str:
    return "\n".join(strip.text for strip in screen_strips(app))


def flat(app: App) -> str:
    """Screen text with the layout's line breaks and runs of spaces folded, to find wrapped phrases."""
    return re.sub(r"\s+", " ", screen_text(app))


def wizard(app: WizardApp) -> EnrollmentWizard:
    assert app.wizard is not None
    return app.wizard


def code_now(secret: str) -> str:
    return pyotp.TOTP(secret).at(T0)


def wrong_code(secret: str) -> str:
    valid = {pyotp.TOTP(secret).at(T0 + d) for d in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def assert_pending_without_secret(service: Service, username: str) -> None:
    """Pending, and no half-done enrollment: the store file holds no pending secret."""
    assert service.get_user(service.operator("checker"), username).status is Status.PENDING
    doc = read_store(service.paths.db)["users"][username.casefold()]
    assert doc.get("pending_secret") is None and doc.get("secret") is None


async def to_scan(app: WizardApp, pilot) -> None:
    assert wizard(app).step == "intro"
    await pilot.press("enter")
    await settle(app, pilot)
    assert wizard(app).step == "scan"


async def to_code(app: WizardApp, pilot) -> None:
    await to_scan(app, pilot)
    await pilot.press("enter")
    await pilot.pause()
    assert wizard(app).step == "code"
    assert isinstance(app.focused, Input)


async def type_code(app: WizardApp, pilot, code: str, *, keys: bool = False) -> None:
    """Enter a code in step 3: typed key by key, or (faster) pasted into the field, then Enter."""
    if keys:
        await pilot.press(*code)
    else:
        wizard(app).query_one("#code-input", Input).insert_text_at_cursor(code)
    await pilot.press("enter")
    await settle(app, pilot)


# -- the whole walk ----------------------------------------------------------------------------


async def test_walk_every_step_with_keys(service: Service) -> None:
    op = service.operator("tester")
    app = WizardApp(service, op, "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = flat(app)
        assert "Set up two-factor authentication for alice" in text
        for app_name in ("Google Authenticator", "Microsoft Authenticator", "any TOTP app"):
            assert app_name.casefold() in text.casefold()

        await to_code(app, pilot)
        enrollment = wizard(app).enrollment
        assert enrollment is not None and enrollment.username == "alice"

        await type_code(app, pilot, code_now(enrollment.secret), keys=True)
        assert wizard(app).step == "codes"
        result = wizard(app).result
        assert result is not None and result.ok and len(result.recovery_codes) == 10
        text = screen_text(app)
        for code in result.recovery_codes:
            assert code in text
        # Two columns: the first half on the left, the second half beside it, line by line.
        lines = text.splitlines()
        half = len(result.recovery_codes) // 2
        for left, right in zip(result.recovery_codes[:half], result.recovery_codes[half:], strict=True):
            assert any(left in line and right in line and line.index(left) < line.index(right) for line in lines)

        # Enter without ticking the box does not continue.
        assert isinstance(app.focused, Checkbox)
        continue_button = wizard(app).query_one("#codes-continue", Button)
        assert continue_button.disabled
        await pilot.press("escape")  # 2FA is on already: Esc does not throw the codes away
        await pilot.pause()
        assert wizard(app).step == "codes" and app.results == []
        assert "not shown again" in flat(app)

        await pilot.press("enter", "enter")  # Enter in a hurry neither ticks the box nor continues
        await pilot.pause()
        assert wizard(app).step == "codes" and continue_button.disabled
        said = next(line for line in screen_text(app).splitlines() if "Tick “I have saved them” first." in line)
        assert "Continue" in said  # on the button's label line, not on its edge
        await pilot.press("space")  # tick "I have saved them": a deliberate key, then Enter continues
        await pilot.pause()
        assert not continue_button.disabled and isinstance(app.focused, Checkbox)
        await pilot.press("enter")
        await pilot.pause()
        assert wizard(app).step == "done"
        assert "2FA is active for alice" in screen_text(app)

        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [result]
        assert result.session is None  # an admin enrolled someone: no sign-in to hand over
    assert service.get_user(op, "alice").status is Status.ACTIVATED


async def test_a_code_typed_with_the_enter_that_leaves_the_qr_reaches_its_field(service: Service) -> None:
    """Enter on the QR step, the code and Enter in one burst (a password manager, a fast typist):
    the code lands in the field that Enter shows, and is checked. Enter on Cancel still cancels."""
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await to_scan(app, pilot)
        for key in ["enter", *code_now(wizard(app).enrollment.secret), "enter"]:  # all read at once
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await settle(app, pilot)
        assert wizard(app).step == "codes" and wizard(app).result.ok
    app = WizardApp(service, service.operator("tester"), "bob")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await to_scan(app, pilot)
        wizard(app).set_focus(wizard(app).query_one("#scan-cancel"))
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.results == [None]


async def test_enroll_session_from_login_gets_a_full_session(service: Service) -> None:
    login = service.login("bob", "bob-password")
    assert login.outcome is Outcome.ENROLLMENT_REQUIRED and login.session is not None
    app = WizardApp(service, login.session, "bob")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_code(app, pilot)
        await type_code(app, pilot, code_now(wizard(app).enrollment.secret))
        await pilot.press("space")  # the checkbox
        await pilot.pause()
        await pilot.press("enter")  # Continue
        await pilot.pause()
        await pilot.press("enter")  # Done
        await pilot.pause()
    [result] = app.results
    assert result is not None and result.ok
    assert result.session is not None and result.session.scope is Scope.FULL and result.session.username == "bob"
    assert service.get_user(service.operator("x"), "bob").status is Status.ACTIVATED


async def test_mouse_walk(service: Service) -> None:
    app = WizardApp(service, service.operator("tester"), "sam")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#intro-continue")
        await settle(app, pilot)
        await pilot.click("#scan-next")
        await pilot.pause()
        await pilot.click("#code-input")
        await pilot.press(*code_now(wizard(app).enrollment.secret))
        await pilot.click("#code-check")
        await settle(app, pilot)
        await pilot.click("#codes-saved")
        await pilot.click("#codes-continue")
        await pilot.click("#done-close")
        await pilot.pause()
    assert len(app.results) == 1 and app.results[0] is not None and app.results[0].ok


# -- wrong codes -------------------------------------------------------------------------------


async def test_wrong_code_says_so_and_hints_at_the_clock(service: Service) -> None:
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_code(app, pilot)
        secret = wizard(app).enrollment.secret
        await type_code(app, pilot, wrong_code(secret))
        assert wizard(app).step == "code"
        text = flat(app)
        assert "not right" in text and "set to automatic" in text
        assert wizard(app).query_one("#code-input", Input).value == ""
        assert isinstance(app.focused, Input)
        assert service.get_user(service.operator("x"), "alice").status is Status.PENDING

        await type_code(app, pilot, "12")  # too short: said at once, the service is not asked
        assert "6 digits" in flat(app)
        assert service.get_user(service.operator("x"), "alice").failures == 1

        await pilot.press("backspace", "backspace")
        await type_code(app, pilot, code_now(secret))  # then the right one still works
        assert wizard(app).step == "codes"


async def test_locked_shows_until_when_and_stops(service: Service) -> None:
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_code(app, pilot)
        secret = wizard(app).enrollment.secret
        for _ in range(5):  # the policy's max_failures
            await type_code(app, pilot, wrong_code(secret))
        until = datetime.fromtimestamp(T0 + 5 * 60, UTC).astimezone().strftime("%H:%M")
        assert f"locked until {until}" in flat(app)
        field = wizard(app).query_one("#code-input", Input)
        assert field.disabled and app.focused is wizard(app).query_one("#code-cancel", Button)
        await pilot.press(*code_now(secret))  # nothing more can be typed, nor sent
        await settle(app, pilot)
        assert field.value == "" and wizard(app).step == "code"
        assert service.get_user(service.operator("x"), "alice").status is Status.PENDING

        await pilot.press("escape")
        await settle(app, pilot)
    assert app.results == [None]
    assert_pending_without_secret(service, "alice")


# -- cancelling --------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["intro", "scan", "code"])
async def test_escape_cancels(service: Service, step: str) -> None:
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        if step == "scan":
            await to_scan(app, pilot)
        elif step == "code":
            await to_code(app, pilot)
        assert wizard(app).step == step
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.results == [None]
        assert not isinstance(app.screen, EnrollmentWizard)
    assert_pending_without_secret(service, "alice")


async def test_escape_while_begin_runs_leaves_no_secret(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Esc while begin_enrollment is still running: the cancel waits for it, then drops its secret."""
    gate = threading.Event()
    begin = service.begin_enrollment

    def slow_begin(*args, **kwargs):
        assert gate.wait(5)
        return begin(*args, **kwargs)

    monkeypatch.setattr(service, "begin_enrollment", slow_begin)
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        assert wizard(app).step == "intro" and "Creating a new key" in screen_text(app)
        await pilot.press("escape")
        assert app.results == []  # not closed before the store is tidy
        gate.set()
        await settle(app, pilot)
        assert app.results == [None]
    assert_pending_without_secret(service, "alice")


async def test_escape_while_the_code_is_checked_keeps_the_result(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Esc during confirm_enrollment is refused: a right code turns 2FA on, its codes must be shown."""
    gate = threading.Event()
    confirm = service.confirm_enrollment

    def slow_confirm(*args, **kwargs):
        assert gate.wait(5)
        return confirm(*args, **kwargs)

    monkeypatch.setattr(service, "confirm_enrollment", slow_confirm)
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_code(app, pilot)
        wizard(app).query_one("#code-input", Input).insert_text_at_cursor(code_now(wizard(app).enrollment.secret))
        await pilot.press("enter")
        assert "Checking" in screen_text(app)
        await pilot.press("escape")
        gate.set()
        await settle(app, pilot)
        assert app.results == [] and wizard(app).step == "codes"
    assert service.get_user(service.operator("x"), "alice").status is Status.ACTIVATED


# -- store text is shown as text ---------------------------------------------------------------


async def test_store_text_is_never_markup(service: Service) -> None:
    op = service.operator("tester")
    service.set_issuer(op, "[red]Acme[/red] [b]Co")
    app = WizardApp(service, op, "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_scan(app, pilot)
        assert "[red]Acme[/red] [b]Co:alice" in screen_text(app)
    # An unknown name: the error message and the heading show it literally.
    app = WizardApp(service, op, "[red]x[/red]")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "for [red]x[/red]" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert wizard(app).step == "intro"
        assert "no user '[red]x[/red]'" in screen_text(app)


# -- the QR code on the screen -----------------------------------------------------------------


def qr_box(cells: list[list[Cell]]) -> tuple[int, int, int, int]:
    """Bounding box (x, y, width, height) of the cells drawn black on white."""
    hits = [(x, y) for y, row in enumerate(cells) for x, c in enumerate(row) if (c.fg, c.bg) == (BLACK, WHITE)]
    assert hits, "no black-on-white cells on the screen"
    xs, ys = [x for x, _ in hits], [y for _, y in hits]
    return min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1


def assert_whole_code_on_screen(cells: list[list[Cell]], code: QRCode, size: tuple[int, int]) -> None:
    x, y, width, height = qr_box(cells)
    assert (width, height) == (code.width, code.height)
    assert x >= 0 and y >= 0 and x + width <= size[0] and y + height <= size[1]
    for row, line in enumerate(code.lines):
        drawn = cells[y + row][x : x + width]
        # Every cell of the code, quiet zone included: its glyph, explicit black on white, not reversed.
        assert "".join(c.char for c in drawn) == line
        assert all((c.fg, c.bg, c.reverse) == (BLACK, WHITE, False) for c in drawn)


@pytest.mark.parametrize("css", ["bare", "app.tcss"])
@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_qr_on_screen_decodes_to_the_uri(service: Service, theme: str, css: str) -> None:
    """THE test: the code drawn at 80x24 decodes to the URI, whole, in both Textual and terminal themes,
    alone and under the dashboard's stylesheet."""
    css_path = APP_TCSS if css == "app.tcss" else None
    app = WizardApp(service, service.operator("tester"), "alice", theme=theme, css_path=css_path)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await to_scan(app, pilot)
        enrollment = wizard(app).enrollment
        code = wizard(app).qr_code
        assert isinstance(code, QRCode) and code.height == 24  # the full height: no header at 80x24
        cells = cells_from_strips(screen_strips(app))
        assert len(cells) == 24 and all(len(row) == 80 for row in cells)
        assert_whole_code_on_screen(cells, code, (80, 24))
        for terminal in ("dark", "light"):
            assert decode_cells(cells, terminal) == [enrollment.uri]
        # Beside the code: the account and the key in groups of four.
        text = screen_text(app)
        assert "Acme Contact Center:alice" in text
        groups = enrollment.grouped_secret.split(" ")
        assert " ".join(groups[:4]) in text and " ".join(groups[4:]) in text
        assert "Enter: I've scanned it" in text and "Esc: cancel" in text

        # A notification (the dashboard's poller, say) must not cover the code while it is shown.
        app.notify("A long notification that would land on the code " * 2, timeout=60)
        await pilot.pause()
        assert "A long notification" not in screen_text(app)
        assert_whole_code_on_screen(cells_from_strips(screen_strips(app)), code, (80, 24))
        await pilot.press("enter")  # step 3: the notification shows again
        await pilot.pause()
        assert "A long notification" in screen_text(app)


def terminal_bytes(strips: list[Strip], color_system: ColorSystem) -> str:
    """The SGR sequences Textual's Strip.render_ansi writes for these strips on a `color_system` terminal.

    Computed here rather than with Strip.render: Rich styles cache their ANSI codes for the first
    colour system they were rendered for, and the styles are shared across apps in one process.
    """
    lines = []
    for strip in strips:
        parts = []
        for text, style, control in strip:
            if control:
                continue
            sgr: list[str] = []
            if style is not None:
                if style.reverse:
                    sgr.append("7")
                if style.color is not None:
                    sgr += style.color.downgrade(color_system).get_ansi_codes()
                if style.bgcolor is not None:
                    sgr += style.bgcolor.downgrade(color_system).get_ansi_codes(False)
            parts.append(f"\x1b[{';'.join(sgr)}m{text}\x1b[0m" if sgr else text)
        lines.append("".join(parts))
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("color_system", "sgr"),
    [(ColorSystem.TRUECOLOR, "38;2;0;0;0;48;2;255;255;255"), (ColorSystem.EIGHT_BIT, "38;5;16;48;5;231")],
    ids=["truecolor", "256"],
)
async def test_qr_bytes_to_the_terminal_are_fixed_black_on_white(
    service: Service, color_system: ColorSystem, sgr: str
) -> None:
    """What reaches a truecolor or 256-colour terminal, parsed back as the terminal would."""
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_scan(app, pilot)
        output = terminal_bytes(screen_strips(app), color_system)
        code = wizard(app).qr_code
        assert output.count(f"\x1b[{sgr}m") == code.height  # one run per row of the code
        assert_whole_code_on_screen(parse_ansi_screen(output), code, (80, 24))
        for terminal in ("dark", "light"):
            assert decode_qr(output, terminal) == [wizard(app).enrollment.uri]


async def test_qr_refits_on_resize_and_gets_a_title_when_tall(service: Service) -> None:
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_scan(app, pilot)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        code = wizard(app).qr_code
        assert isinstance(code, QRCode) and (code.quiet, code.error) == (4, "M")
        assert "Scan the QR code" in screen_text(app)
        cells = cells_from_strips(screen_strips(app))
        assert_whole_code_on_screen(cells, code, (120, 40))
        assert decode_cells(cells) == [wizard(app).enrollment.uri]


async def test_too_small_terminal_shows_needed_size_and_key(service: Service) -> None:
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(60, 20)) as pilot:
        await to_scan(app, pilot)
        view = wizard(app).query_one(QRView)
        assert not view.fits and view.needed is not None
        text = flat(app)
        assert "The QR code needs a terminal of at least 60x23; enlarge it, or type the key." in text
        groups = wizard(app).enrollment.grouped_secret.split(" ")
        assert " ".join(groups[:4]) in text and " ".join(groups[4:]) in text
        assert not any(c.bg == WHITE for row in cells_from_strips(screen_strips(app)) for c in row)

        await pilot.resize_terminal(60, 23)  # the size it asked for is enough
        await pilot.pause()
        assert view.fits
        assert "needs a terminal" not in flat(app)
        assert decode_cells(cells_from_strips(screen_strips(app))) == [wizard(app).enrollment.uri]


def test_qr_step_snapshot(snap_compare, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The QR step at 80x24 with a fixed key and clock: code on the left, full height, text beside it."""
    monkeypatch.setattr(totp, "new_secret", lambda: FIXED_SECRET)
    app = WizardApp(service, service.operator("tester"), "alice")

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot)
        assert wizard(app).step == "scan" and wizard(app).enrollment.secret == FIXED_SECRET

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_qr_under_no_color_draws_and_decodes(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR makes Textual filter every segment to grey; the code stays black on white and
    scans (the margins once had no style at all, and the filter crashed on them)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = WizardApp(service, service.operator("tester"), "alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await to_scan(app, pilot)
        cells = cells_from_strips(screen_strips(app))
        assert_whole_code_on_screen(cells, wizard(app).qr_code, (80, 24))
        for terminal in ("dark", "light"):
            assert decode_cells(cells, terminal) == [wizard(app).enrollment.uri]
