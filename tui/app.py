"""The full-screen dashboard: sign-in, then the Users, Security and Audit tabs."""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from datetime import UTC, datetime

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen

from store.errors import StoreError, StoreMissing
from store.models import Role, Session
from store.paths import StorePaths
from store.service import Service

from .prefs import Preferences
from .screens.common import ErrorScreen
from .screens.login import FirstRunScreen, LoginScreen
from .widgets.fields import typed_for_field
from .work import StoreWork

if TYPE_CHECKING:
    from .widgets.user_grid import UserIndex


class MfaConsoleApp(StoreWork, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "mfa-console"
    BINDINGS = [
        Binding("question_mark", "toggle_keys", "Keys", id="keys", tooltip="Every key of this screen"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("escape", "hide_keys", "Hide keys", show=False, priority=True),  # only while they show
        # The keys panel is longer than 24 rows on the Users tab, and never has the focus.
        Binding("pagedown", "scroll_keys(1)", "More keys", show=False, priority=True),
        Binding("pageup", "scroll_keys(-1)", "Keys above", show=False, priority=True),
    ]

    def __init__(
        self,
        paths: StorePaths,
        *,
        demo: bool = False,
        clock: Callable[[], float] | None = None,
        poll_seconds: float = 1.0,
    ):
        super().__init__()
        self.paths = paths
        self.demo = demo
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.service = Service(paths, clock=clock)
        self.session: Session | None = None
        self.prefs = Preferences()
        self.preloaded: UserIndex | None = None

    def now(self) -> datetime:
        """The service's idea of now (a test's frozen clock, or the real one)."""
        return datetime.fromtimestamp((self.clock or time.time)(), UTC)

    def on_mount(self) -> None:
        theme = self.prefs.get("theme")
        if theme in self.available_themes:
            self.theme = theme
        if self.prefs.notice:
            self.notify(self.prefs.notice, severity="warning", timeout=10, markup=False)
        # Only the store's settings are read here (a missing or unreadable store shows at once),
        # so the first frame drawn is the sign-in screen, with the contact center's name.
        try:
            policy = self.service.peek_policy()
        except StoreMissing:
            self.push_screen(FirstRunScreen())
            return
        except StoreError as exc:
            self.push_screen(ErrorScreen(str(exc)))
            return
        self.title = policy.issuer
        self.push_screen(LoginScreen(demo=self.demo))
        # The full read (seconds on a large store) starts once the sign-in screen is on the
        # terminal (a thread started with the first frame slows it), done as the password is typed.
        self.set_timer(0.2, lambda: self.call_store(self._preload, then=self._preloaded,
                                                    failed=lambda error: self._store_unusable(str(error))))  # fmt: skip

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and event.is_forwarded and typed_for_field(event, self.focused):
            return  # a key typed for the field that has the focus, not a shortcut (tui.widgets.fields)
        await super().on_event(event)

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header: the contact center — who is signed in. Textual dims the second part, 2.6:1
        on the solarized-light and nord headers: the dash alone sets it apart here."""
        return Content(f"{title} — {sub_title}" if sub_title else title)

    def watch_theme(self, theme: str) -> None:
        self.prefs.save(theme=theme)

    def _preload(self) -> UserIndex:
        """Runs in a thread while the password is typed: the main screen's code, the store checked
        and read, the Users grid's order and search texts for the remembered sort."""
        # The main screen's imports (plotext's among them), not to be paid after the code is typed.
        importlib.import_module(".screens.main", __package__)
        from .widgets.user_grid import UserIndex

        index = UserIndex(self.service.preload())
        index.order(*self.prefs.sort).prepare()  # the first keystroke of a search need not wait for it
        # What is alive now (the store's users above all) lives as long as the app: the cyclic
        # collector need not scan it again, a pause of 0.1-0.2 s at 100k users mid-keystroke.
        gc.freeze()
        return index

    def _preloaded(self, index: UserIndex) -> None:
        self.preloaded = index  # the main screen's first snapshot takes it while the users are the same

    def _store_unusable(self, message: str) -> None:
        """A store whose policy read but whose users do not: the sign-in screen gives way."""
        if isinstance(self.screen, LoginScreen):
            self.switch_screen(ErrorScreen(message))

    def signed_in(self, session: Session) -> None:
        """After the last factor: staff reach the main screen, agents their own 2FA page."""
        self.session = session
        if session.role is Role.AGENT:
            from .screens.agent import AgentScreen  # with the wizard and segno: agents only

            self.switch_screen(AgentScreen(session))
        else:
            from .screens.main import MainScreen

            self.switch_screen(MainScreen(session))

    def action_sign_out(self) -> None:
        self.sign_out()

    def sign_out(self) -> None:
        if self.session is not None:
            self.service.logout(self.session)
            self.session = None
        # A dialog or the wizard open over the signed-in screen goes too: switch_screen replaces
        # only the top screen, and the main screen left below kept polling with no session,
        # signing out every later sign-in.
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(LoginScreen(demo=self.demo))

    def action_toggle_keys(self) -> None:
        """The footer shows the main keys at 80 columns; `?` shows them all (Textual's panel)."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_hide_keys(self) -> None:
        self.action_hide_help_panel()

    def action_scroll_keys(self, direction: int) -> None:
        keys = self.screen.query_one("HelpPanel #keys-help")
        keys.scroll_page_down() if direction > 0 else keys.scroll_page_up()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("hide_keys", "scroll_keys"):
            return bool(self.screen.query("HelpPanel"))  # else the key goes on to the screen
        # The enrollment wizard's recovery-codes step (duck-typed: the wizard is imported when first used).
        if action == "quit" and getattr(self.screen, "step", None) == "codes":
            return False  # the recovery codes are shown once: `q` must not lose them (ctrl+q still quits)
        if action == "quit" and getattr(self.focused, "letters_filter", False):
            return False  # `q` starts a filter there: the footer must not say it quits (ctrl+q does)
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Not Textual's "Screenshot": it writes the screen (names, emails) with the umask's mode
        # into ~/Downloads, and fails with no reason where that folder does not exist.
        yield from (command for command in super().get_system_commands(screen) if command.title != "Screenshot")
        if self.session is not None:
            yield SystemCommand("Sign out", "Back to the sign-in screen", self.sign_out)

    def on_unmount(self) -> None:
        self.service.close()


def run_dashboard(paths: StorePaths, *, demo: bool = False) -> int:
    """The dashboard's exit status: 0 after a quit, 1 after a crash (Textual printed why)."""
    app = MfaConsoleApp(paths, demo=demo)
    app.run()
    return app.return_code or 0
