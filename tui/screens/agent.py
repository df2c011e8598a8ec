"""What an agent sees: their own 2FA status, and enrollment. Nothing more."""

from __future__ import annotations

from datetime import UTC

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header, Static

from store.errors import PermissionDenied, StoreError
from store.models import ConfirmResult, Session, Status, User
from store.validation import printable

from ..widgets.footer import Footer
from ..widgets.user_grid import BADGES
from ..work import StoreWork
from .common import ConfirmDialog
from .wizard import EnrollmentWizard


class AgentScreen(StoreWork, Screen):
    BINDINGS = [Binding("e", "enroll", "Set up 2FA"), Binding("o", "app.sign_out", "Sign out")]

    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.user: User | None = None
        self._generation: object = None  # the store's, when `user` was read
        self._problem: str | None = None  # the store error last said: once, and read again next time

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="🔐")
        with Center(), Vertical(id="agent-box"):
            yield Static(id="agent-status", classes="title")
            yield Static(id="agent-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(f"{self.session.username} · agent")
        self.reload()
        # An administrator's reset or a policy change elsewhere shows here, as on the main screen.
        self.set_interval(self.app.poll_seconds, self.poll)

    def reload(self) -> None:
        self._generation = None
        self.poll()

    def poll(self) -> None:
        self.call_store(self._read, self._generation, then=self._read_done, group="poll", exclusive=True)

    def _read(self, known: object) -> tuple[object, User | StoreError] | None:
        """In a thread: the user again if the store changed since `known`."""
        service = self.app.service
        generation = service.generation
        if generation == known:
            return None
        try:
            return generation, service.get_user(self.session, self.session.username)
        except StoreError as error:
            return generation, error

    def _read_done(self, read: tuple[object, User | StoreError] | None) -> None:
        if read is None:
            return
        generation, user = read
        if isinstance(user, PermissionDenied):  # deactivated, or the session ended
            self.app.sign_out()
            self.app.notify(printable(f"Signed out: {user}"), severity="warning", markup=False)
        elif isinstance(user, StoreError):  # busy or unreachable: said once, the user read again at the next poll
            if self._problem != str(user):
                self._problem = str(user)
                self.notify(printable(str(user)), severity="error", markup=False)
        else:
            self._generation, self._problem = generation, None
            self.show(user)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "enroll":  # nothing to set up while 2FA is off for the contact center
            return self.user is None or self.user.status is not Status.DISABLED
        return True

    def show(self, user: User) -> None:
        self.user = user
        self.refresh_bindings()
        self.sub_title = printable(f"{user.name} · agent")
        status = self.query_one("#agent-status", Static)
        status.update(Content(f"Your two-factor authentication: {BADGES[user.status]}"))
        for s in Status:
            status.set_class(user.status is s, f"-{s.value}")
        if user.status is Status.ACTIVATED:
            since = user.activated_at.astimezone(UTC).strftime("%Y-%m-%d") if user.activated_at else "—"
            detail = (
                f"Set up on {since}. {user.recovery_codes_left} recovery codes left.\n\n"
                "New phone? Press e to set up 2FA again: the old phone stops working once the new one is confirmed."
            )
        elif user.status is Status.DISABLED:
            detail = "2FA is turned off for your contact center: you sign in with your password."
        else:
            detail = "2FA is not set up yet. Press e to set it up now."
        self.query_one("#agent-detail", Static).update(Content(detail))

    def action_enroll(self) -> None:
        def done(result: ConfirmResult | None) -> None:
            self.reload()

        def start(yes: bool | None = True) -> None:
            if yes:
                self.app.push_screen(EnrollmentWizard(self.app.service, self.session, self.session.username), done)

        if self.user is not None and self.user.status is Status.ACTIVATED:
            body = ("Your 2FA is set up already. Setting it up again gives you a new key: the app entry "
                    "you use now stops working once the new one is confirmed.")  # fmt: skip
            self.app.push_screen(ConfirmDialog("Set up 2FA again", body, "Set up again", danger=False), start)
        else:
            start()
