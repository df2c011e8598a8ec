"""Sign-in (password, then code) and the first-run set-up of a new contact center."""

from __future__ import annotations

from datetime import datetime

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Static

from store.errors import StoreError
from store.models import AuthResult, ConfirmResult, NewUser, Outcome, Role
from store.service import Service, os_actor
from store.validation import printable

from ..widgets.fields import Field
from ..widgets.footer import Footer
from ..work import StoreWork

WRONG = "Wrong username, password or code."


def locked_message(until: datetime | None, now: datetime) -> str:
    minutes = max(1, round(((until or now) - now).total_seconds() / 60))
    return f"This account is locked after too many failed attempts. Try again in {minutes} min, or ask an administrator to unlock it."


class LoginScreen(StoreWork, Screen):
    BINDINGS = [
        Binding("ctrl+r", "toggle_recovery", "Recovery code", tooltip="Sign in with a one-time recovery code"),
        Binding("escape", "restart", "Start over", show=False),
    ]

    def __init__(self, *, demo: bool = False):
        super().__init__()
        self.demo = demo
        self.challenge = None
        self.recovery = False

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="login-box", classes="form"):
            yield Static(Content(printable(self.app.title)), classes="title", id="login-title")
            yield Static(Content("Sign in"), classes="subtitle")
            yield Field(placeholder="Username", id="username", next_on_enter=True)
            yield Field(placeholder="Password", password=True, id="password", hold_after_submit=True)
            yield Field(placeholder="6-digit code from your authenticator app", id="code", max_length=16)
            yield Static(id="login-message", classes="message")
            if self.demo:
                from store.demo import LOGINS  # the demo builder, only for the demo

                hint = " · ".join(f"{login.username} / {login.password}" for login in LOGINS)
                yield Static(Content(f"Demo: {hint}"), classes="hint", id="demo-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#code").display = False
        self.query_one("#username", Input).focus()

    def say(self, text: str, *, error: bool = True) -> None:
        message = self.query_one("#login-message", Static)
        message.update(Content(text))
        message.set_class(error, "-error")

    @on(Input.Submitted, "#password")
    def submit_password(self) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not username:  # nothing is checked, so nothing typed next waits for an answer
            self.query_one("#password", Field).release_held(None)
            self.query_one("#username", Input).focus()
            return
        self.say("Checking…", error=False)
        self.call_store(self.app.service.login, username, password, then=self.after_password, group="login",
                        exclusive=True)

    def after_password(self, result: AuthResult) -> None:
        password = self.query_one("#password", Field)
        password.value = ""
        if result.outcome is Outcome.CODE_REQUIRED:
            self.challenge = result.session
            for field in ("#username", "#password"):  # done with: Esc starts over
                self.query_one(field, Input).disabled = True
            code = self.query_one("#code", Input)
            code.display = True
            code.value = ""
            self.set_focus(code)
            password.release_held(code)  # the code of a password manager's burst, typed ahead
            self._code_hint()
            return
        password.release_held(None)
        if result.outcome is Outcome.ENROLLMENT_REQUIRED:
            self.say("Two-factor authentication must be set up first.", error=False)
            from .wizard import EnrollmentWizard  # segno and the wizard load only for enrollment

            wizard = EnrollmentWizard(self.app.service, result.session, result.session.username)
            self.app.push_screen(wizard, self.after_enrollment)
        elif result.outcome is Outcome.OK:
            self.app.signed_in(result.session)
        else:
            self.action_restart()
            self.failed(result)

    def after_enrollment(self, result: ConfirmResult | None) -> None:
        if result is not None and result.session is not None:
            self.app.signed_in(result.session)
        else:
            self.action_restart()
            self.say("Enrollment was cancelled: sign in again to set up two-factor authentication.")

    @on(Input.Submitted, "#code")
    def submit_code(self, event: Input.Submitted) -> None:
        if self.challenge is None or not event.value.strip():
            return
        self.say("Checking…", error=False)
        self.call_store(self.app.service.login_code, self.challenge, event.value, then=self.after_code,
                        group="login", exclusive=True)

    def after_code(self, result: AuthResult) -> None:
        self.query_one("#code", Input).value = ""
        if result.ok:
            if result.used_recovery_code:
                self.notify(f"Recovery code used: {result.recovery_codes_left} left.", markup=False)
            self.app.signed_in(result.session)
            return
        # From the name, like a failed password: a password manager's next burst starts with it,
        # and would otherwise land in the code field as one more failure.
        self.action_restart()
        self.failed(result)

    def failed(self, result: AuthResult) -> None:
        if result.outcome is Outcome.LOCKED:
            self.say(locked_message(result.locked_until, self.app.now()))
        else:
            self.say(WRONG)

    def store_failed(self, error: BaseException | None) -> None:
        self.query_one("#password", Field).release_held(None)
        if isinstance(error, StoreError) and self.challenge is not None:
            self.action_restart()  # e.g. the code step timed out: start again with the password
        self.say(printable(str(error)) if isinstance(error, StoreError) else WRONG)

    def action_toggle_recovery(self) -> None:
        if self.challenge is None:
            return
        self.recovery = not self.recovery
        code = self.query_one("#code", Input)
        code.placeholder = "Recovery code (xxxxx-xxxxx)" if self.recovery else "6-digit code from your authenticator app"
        code.focus()
        self._code_hint()

    def _code_hint(self) -> None:
        if self.recovery:
            self.say("Enter one of your recovery codes (ctrl+r: the app's code instead; Esc: start over).",
                     error=False)  # fmt: skip
        else:
            self.say("Enter the code from your authenticator app (ctrl+r: a recovery code; Esc: start over).",
                     error=False)  # fmt: skip

    def action_restart(self) -> None:
        if self.challenge is not None:
            self.app.service.logout(self.challenge)
        self.challenge = None
        self.recovery = False
        self.query_one("#code").display = False
        for field in ("#username", "#password"):
            self.query_one(field, Input).disabled = False
            self.query_one(field, Input).value = ""
        # From the name, as login(1) asks again: a password manager types the name first, and a
        # person sees an empty name field where the password would otherwise show in clear.
        self.set_focus(self.query_one("#username", Input))


class FirstRunScreen(StoreWork, Screen):
    """No store yet: name the contact center and its first administrator, then enroll them."""

    FIELDS = (  # (id, label, placeholder, password)
        ("issuer", "Name", "shown in authenticator apps", False),
        ("admin-username", "Admin user", "the first administrator's username", False),
        ("admin-name", "Full name", "optional", False),
        ("password1", "Password", "at least 8 characters", True),
        ("password2", "Again", "the same password", True),
    )

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="first-run", classes="form fields"):
            yield Static(Content("Welcome to mfa-console"), classes="title")
            yield Static(Content("No contact center here yet. Set one up:"), classes="subtitle")
            for field_id, label, placeholder, password in self.FIELDS:
                with Horizontal(classes="row"):
                    yield Label(Content(label), classes="label")
                    yield Field(placeholder=placeholder, id=field_id, password=password,
                                next_on_enter=field_id != "password2")  # fmt: skip
            yield Static(id="first-run-message", classes="message -error")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="create")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#issuer", Input).focus()

    @on(Input.Submitted, "#password2")
    def submitted(self) -> None:
        self.create()

    @on(Button.Pressed, "#create")
    def create(self) -> None:
        value = lambda id: self.query_one(f"#{id}", Input).value  # noqa: E731
        if value("password1") != value("password2"):
            self.query_one("#first-run-message", Static).update(Content("The two passwords differ."))
            return
        self.query_one("#create", Button).disabled = True
        issuer, username, name, password = value("issuer"), value("admin-username"), value("admin-name"), value("password1")
        self.call_store(self._create, issuer, username, name or username, password, then=self.created)

    def _create(self, issuer: str, username: str, name: str, password: str) -> AuthResult:
        """Runs in a thread: the store, its key and the administrator, then their first sign-in."""
        app = self.app
        admin = NewUser(username, name, Role.ADMIN)
        service = Service.create(app.paths, issuer=issuer, actor=os_actor(), admin=admin, password=password,
                                 clock=app.clock)
        app.service.close()
        app.service = service
        return service.login(username, password)

    def created(self, result: AuthResult) -> None:
        from .wizard import EnrollmentWizard

        self.app.title = printable(self.query_one("#issuer", Input).value.strip())
        wizard = EnrollmentWizard(self.app.service, result.session, result.session.username)
        self.app.push_screen(wizard, self.after_enrollment)

    def after_enrollment(self, result: ConfirmResult | None) -> None:
        if result is not None and result.session is not None:
            self.app.signed_in(result.session)
        else:
            self.app.switch_screen(LoginScreen())
            self.app.notify("Enrollment cancelled: sign in to set up two-factor authentication.", markup=False)

    def store_failed(self, error: BaseException | None) -> None:
        self.query_one("#create", Button).disabled = False
        self.query_one("#first-run-message", Static).update(Content(printable(str(error))))
