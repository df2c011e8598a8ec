"""The enrollment wizard: intro, QR code, code from the app, recovery codes, done.

`EnrollmentWizard(service, actor, username)` is pushed by whoever enrolls someone: an admin for
a user, an agent for themselves, or the sign-in as its last step (an ENROLL session). It
dismisses with the `ConfirmResult` once 2FA is active (its `session` is a FULL session when the
actor was an ENROLL session: the caller signs the user in with it), or with `None` when
cancelled; then the pending secret is dropped and the user stays Pending.

Every service call runs in a thread worker; a lock keeps them in order (a cancel issued while
`begin_enrollment` runs waits for it, so no pending secret is left behind). Everything that
comes from the store is shown through `printable`, as plain text, never as markup.
"""

from __future__ import annotations

import threading
from datetime import datetime

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Checkbox, ContentSwitcher, Input, Static

from store.errors import PermissionDenied
from store.models import ConfirmResult, Enrollment, Outcome, Session
from store.service import Service
from store.validation import printable

from store.qr import QRCode, QRTooLarge
from ..widgets.qr_view import QRView
from ..widgets.fields import Field
from ..work import StoreWork
from .common import Dialog

STEPS = ("intro", "scan", "code", "codes", "done")
CODE_DIGITS = 6


def _text(text: str | None) -> Content:
    """Store text as plain Content: control characters made visible, brackets literal."""
    return Content(printable(text))


class SaveCheckbox(Checkbox, inherit_bindings=False):
    """"I have saved them": ticked with Space or a click only (Enter is the step's Continue), so
    Enter pressed twice in a hurry cannot skip codes shown only once."""

    BINDINGS = [Binding("space", "toggle_button", "Tick", show=False)]


class EnrollmentWizard(StoreWork, Dialog[ConfirmResult | None]):
    """Set up TOTP for `username`, acting as `actor`. Dismisses with the ConfirmResult, or None."""

    DEFAULT_CSS = """
    EnrollmentWizard {
        layout: vertical;
        overflow: hidden;
        padding: 0;
        background: $background;
    }
    EnrollmentWizard.-scanning ToastRack > ToastHolder {
        display: none;  /* nothing may cover the code; ToastRack sets its own display inline */
    }
    EnrollmentWizard #wizard-steps {
        width: 100%;
        height: 100%;
        align-horizontal: center;
    }
    EnrollmentWizard .wizard--page {
        width: 100%;
        max-width: 84;
        height: 100%;
        padding: 1 2;
        overflow-y: auto;
    }
    EnrollmentWizard .wizard--page > Static {
        width: 100%;
        margin: 0 0 1 0;
    }
    EnrollmentWizard .wizard--heading {
        text-style: bold;
        color: $text-primary;
    }
    EnrollmentWizard .wizard--step {
        color: $text-muted;
    }
    EnrollmentWizard .wizard--muted {
        color: $text-muted;
    }
    EnrollmentWizard .wizard--key {
        text-style: bold;
        color: $text;
    }
    EnrollmentWizard .wizard--message {
        height: auto;
        color: $text;
    }
    EnrollmentWizard .wizard--message.-error {
        color: $text-error;
    }
    EnrollmentWizard .wizard--success {
        text-style: bold;
        color: $text-success;
    }
    EnrollmentWizard .wizard--warning {
        text-style: bold;
        color: $text-warning;
    }
    EnrollmentWizard .wizard--buttons {
        width: 100%;
        height: auto;
        margin: 0 0 1 0;
    }
    EnrollmentWizard .wizard--buttons Button {
        margin-right: 2;
    }
    EnrollmentWizard .wizard--buttons .wizard--message {
        margin-top: 1;  /* on the button's label line, not on its top edge */
    }
    EnrollmentWizard .wizard--hint {
        color: $text-muted;
        margin: 0;
    }

    /* The QR step: no border, no padding; at 80x24 the code needs the full height. */
    EnrollmentWizard #step-scan {
        width: 100%;
        max-width: 100%;
        height: 100%;
        padding: 0;
        align-horizontal: center;
        overflow: hidden;
    }
    EnrollmentWizard #scan-heading {
        display: none;
        width: 100%;
        max-width: 100;
        height: 1;
        padding: 0 1;
        margin: 0;
    }
    EnrollmentWizard.-tall #scan-heading {
        display: block;
    }
    EnrollmentWizard #scan-row {
        width: 100%;
        max-width: 100;
        height: 1fr;
    }
    EnrollmentWizard #scan-side {
        width: 33;  /* SIDE_WIDTH: 80 columns - 47 for the code */
        height: 100%;
        padding: 0 1;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        align-vertical: middle;
    }
    EnrollmentWizard #scan-side > Static {
        width: 100%;
        margin: 0 0 1 0;
    }
    EnrollmentWizard #scan-side > Static.-tight {
        margin: 0;
    }
    EnrollmentWizard #scan-too-large {
        display: none;
    }
    EnrollmentWizard #step-scan.-too-large #scan-too-large {
        display: block;
    }
    EnrollmentWizard #step-scan.-too-large #scan-instructions {
        display: none;
    }
    EnrollmentWizard #scan-side .wizard--buttons Button {
        width: 1fr;
        min-width: 0;
        margin: 0;
    }
    EnrollmentWizard #scan-next {
        margin-right: 1;
    }

    EnrollmentWizard #code-input {
        width: 24;
        margin: 0 0 1 0;
    }
    EnrollmentWizard #codes-grid {
        width: auto;
        height: auto;
        padding: 0 2;
        margin: 0;  /* the step fills 80x24 exactly */
        border: round $primary;
        background: $panel;
    }
    EnrollmentWizard #codes-grid > Static {
        width: auto;
        text-style: bold;
    }
    EnrollmentWizard #codes-left {
        margin-right: 4;
    }
    EnrollmentWizard #codes-saved {
        width: auto;
        margin: 0;
    }
    EnrollmentWizard #codes-message {
        width: 1fr;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "next", "Continue", show=False),
        # Acts as Enter is read: a password manager's code typed right after it then reaches the
        # code's field (a binding run after the key bubbled up came after the code's digits).
        Binding("enter", "scanned", "Continue", show=False, priority=True),
    ]

    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(self, service: Service, actor: Session, username: str) -> None:
        super().__init__()
        self.service = service
        self.actor = actor
        self.username = username
        self.enrollment: Enrollment | None = None
        """The pending enrollment once begun (its secret and URI are what the QR code shows)."""
        self.result: ConfirmResult | None = None
        """The successful ConfirmResult, from the recovery-codes step on."""
        self._store_lock = threading.Lock()  # one service call at a time, in the order issued
        self._enroll_begun = False  # begin_enrollment was called: a cancel must drop the pending secret
        self._beginning = False  # begin_enrollment is under way
        self._confirming = False  # confirm_enrollment is under way: its outcome decides what Esc may do
        self._finished = False  # dismissed (or about to be)
        self._cancelling = False  # cancelled: waiting for cancel_enrollment, then dismissing
        self._halted = False  # locked out or the session is gone: only Esc is left
        self._dismiss_on_resume: tuple[ConfirmResult | None] | None = None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        who = printable(self.username)
        with ContentSwitcher(initial="step-intro", id="wizard-steps"):
            with Vertical(id="step-intro", classes="wizard--page"):
                yield Static(_text(f"Set up two-factor authentication for {who}"), classes="wizard--heading")
                yield Static(Content("Step 1 of 5"), classes="wizard--step")
                yield Static(
                    Content(
                        "From now on, signing in will take the password and a 6-digit code from an "
                        "authenticator app on the phone.\n\n"
                        "Any TOTP app works: Google Authenticator, Microsoft Authenticator, or another "
                        "authenticator app. Have the phone ready with the app installed.\n\n"
                        "Next: scan a QR code with the app (or type a key), type the code the app shows, "
                        "and save ten recovery codes for when the phone is lost."
                    )
                )
                with Horizontal(classes="wizard--buttons"):
                    yield Button("Continue", id="intro-continue", variant="primary")
                    yield Button("Cancel", id="intro-cancel")
                yield Static(Content(), id="intro-message", classes="wizard--message")
                yield Static(Content("Enter: continue · Esc: cancel"), classes="wizard--hint")
            with Vertical(id="step-scan", classes="wizard--page"):
                yield Static(Content("Step 2 of 5 · Scan the QR code"), id="scan-heading", classes="wizard--heading")
                with Horizontal(id="scan-row"):
                    yield QRView(id="wizard-qr")
                    with Vertical(id="scan-side"):
                        yield Static(Content(), id="scan-too-large", classes="wizard--warning")
                        yield Static(
                            Content("Scan this code with the authenticator app."), id="scan-instructions"
                        )
                        yield Static(Content("Account"), classes="wizard--muted -tight")
                        yield Static(Content(), id="scan-account")
                        yield Static(Content("Or type this key in the app:"), classes="wizard--muted -tight")
                        yield Static(Content(), id="scan-key", classes="wizard--key -tight")
                        yield Static(Content("Time-based, 6 digits"), classes="wizard--muted")
                        yield Static(Content("Enter: I've scanned it\nEsc: cancel"), id="scan-hint",
                                     classes="wizard--hint")  # fmt: skip
                        with Horizontal(classes="wizard--buttons"):
                            yield Button("Next", id="scan-next", variant="primary")
                            yield Button("Cancel", id="scan-cancel")
            with Vertical(id="step-code", classes="wizard--page"):
                yield Static(Content("Step 3 of 5 · Type the code from the app"), classes="wizard--heading")
                yield Static(Content(), id="code-prompt")
                yield Field(
                    placeholder="6 digits",
                    restrict=r"[0-9 ]*",
                    max_length=CODE_DIGITS + 1,
                    id="code-input",
                )
                yield Static(Content(), id="code-message", classes="wizard--message")
                with Horizontal(classes="wizard--buttons"):
                    yield Button("Check", id="code-check", variant="primary")
                    yield Button("Show the QR code", id="code-back")
                    yield Button("Cancel", id="code-cancel")
                yield Static(Content("Enter: check the code · Esc: cancel"), classes="wizard--hint")
            with Vertical(id="step-codes", classes="wizard--page"):
                yield Static(Content("Step 4 of 5 · Save the recovery codes"), classes="wizard--heading")
                yield Static(
                    Content(
                        "2FA is now on. If the phone is lost, each of these codes signs in once instead of "
                        "the app's code. They are shown only now: write them down or keep them in a "
                        "password manager."
                    )
                )
                with Horizontal(id="codes-grid"):
                    yield Static(Content(), id="codes-left")
                    yield Static(Content(), id="codes-right")
                yield SaveCheckbox("I have saved them", id="codes-saved")
                with Horizontal(classes="wizard--buttons"):
                    yield Button("Continue", id="codes-continue", variant="primary", disabled=True)
                    yield Static(Content(), id="codes-message", classes="wizard--message")
                yield Static(Content("Space: tick the box · Enter: continue"), classes="wizard--hint")
            with Vertical(id="step-done", classes="wizard--page"):
                yield Static(Content(), id="done-heading", classes="wizard--success")
                yield Static(Content("Step 5 of 5"), classes="wizard--step")
                yield Static(
                    Content(
                        "From now on, signing in takes the password and the code the app shows. "
                        "Keep the recovery codes somewhere safe."
                    )
                )
                with Horizontal(classes="wizard--buttons"):
                    yield Button("Done", id="done-close", variant="primary")
                yield Static(Content("Enter: close"), classes="wizard--hint")

    def on_mount(self) -> None:
        self.query_one("#intro-continue", Button).focus()

    @property
    def step(self) -> str:
        """The current step: one of STEPS."""
        current = self.query_one(ContentSwitcher).current or ""
        return current.removeprefix("step-") or STEPS[0]

    def _show(self, step: str) -> None:
        self.query_one(ContentSwitcher).current = f"step-{step}"
        self.set_class(step == "scan", "-scanning")
        focus = {
            "intro": "#intro-continue",
            "scan": "#scan-next",
            "code": "#code-input",
            "codes": "#codes-saved",
            "done": "#done-close",
        }[step]
        self.set_focus(self.query_one(focus))  # now: the keys already read go there

    def _say(self, where: str, text: str, *, error: bool = True) -> None:
        message = self.query_one(where, Static)
        message.update(Content(text))
        message.set_class(error, "-error")

    # -- keys and buttons ----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "scanned":  # Enter on the QR step's Next; elsewhere Enter is the focused widget's
            return self.step == "scan" and self.focused is self.query_one("#scan-next")
        return True

    def action_scanned(self) -> None:
        self._show("code")

    def action_next(self) -> None:
        step = self.step
        if step == "intro":
            self._begin_clicked()
        elif step == "scan":
            self._show("code")
        elif step == "code":
            self._check_code()
        elif step == "codes":
            self._codes_saved()
        elif step == "done":
            self._finish(self.result)

    def action_cancel(self) -> None:
        """Esc: drop the pending enrollment and close; after the code was accepted, nothing to undo."""
        if self._cancelling:
            return
        step = self.step
        if step == "codes":
            self._say(
                "#codes-message",
                "2FA is already on: save the codes, tick the box, then continue. They are not shown again.",
            )
            return
        if step == "done":
            self._finish(self.result)
            return
        if self._confirming:
            self.app.bell()  # the code is being checked: if it is right, 2FA is on and there is nothing to cancel
            return
        self._cancelling = True
        if self._enroll_begun:
            self._cancel_enrollment()
        else:
            self._finish(None)

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        button = event.button.id
        if button in ("intro-cancel", "scan-cancel", "code-cancel"):
            self.action_cancel()
        elif button == "intro-continue":
            self._begin_clicked()
        elif button == "scan-next":
            self._show("code")
        elif button == "code-check":
            self._check_code()
        elif button == "code-back":
            self._show("scan")
        elif button == "codes-continue":
            self._codes_saved()
        elif button == "done-close":
            self._finish(self.result)

    @on(Input.Submitted, "#code-input")
    def _code_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._check_code()

    @on(Checkbox.Changed, "#codes-saved")
    def _saved_ticked(self, event: Checkbox.Changed) -> None:
        event.stop()
        button = self.query_one("#codes-continue", Button)
        button.disabled = not event.value
        if event.value:
            self._say("#codes-message", "")

    # -- step 1 -> 2: begin --------------------------------------------------------------------
    def _begin_clicked(self) -> None:
        if self._beginning or self._cancelling or self._halted:
            return
        if self.enrollment is not None:  # back and forth: the key is the same
            self._show("scan")
            return
        self._beginning = True
        self._enroll_begun = True
        self.query_one("#intro-continue", Button).disabled = True
        self._say("#intro-message", "Creating a new key…", error=False)
        self._begin_enrollment()

    def _begin_enrollment(self) -> None:
        def begin() -> Enrollment | None:
            with self._store_lock:
                if self._cancelling:
                    return None
                return self.service.begin_enrollment(self.actor, self.username)

        # Every failure is shown, and the wizard stays usable.
        self.call_store(begin, then=self._began, failed=self._begin_failed, group="wizard-begin", exclusive=True)

    def _begin_failed(self, error: Exception) -> None:
        self._beginning = False
        if self._cancelling:
            return
        self._enroll_begun = False
        self.query_one("#intro-continue", Button).disabled = False
        self._say("#intro-message", f"Could not start: {printable(str(error))}")
        if isinstance(error, PermissionDenied):
            self._halted = True
            self.query_one("#intro-continue", Button).disabled = True

    def _began(self, enrollment: Enrollment | None) -> None:
        self._beginning = False
        if self._cancelling or enrollment is None:
            return
        self.enrollment = enrollment
        self._say("#intro-message", "", error=False)
        self.query_one("#intro-continue", Button).disabled = False
        self.query_one("#scan-account", Static).update(_text(enrollment.label))
        self.query_one("#scan-key", Static).update(Content("\n".join(enrollment.key_lines)))
        self.query_one("#code-prompt", Static).update(
            _text(f"Type the 6-digit code the app now shows for {enrollment.label}.")
        )
        self.query_one(QRView).uri = enrollment.uri
        self._show("scan")

    # -- step 2: the QR code -------------------------------------------------------------------
    @on(QRView.Fitted)
    def _qr_fitted(self, event: QRView.Fitted) -> None:
        event.stop()
        scan = self.query_one("#step-scan")
        code = event.code
        scan.set_class(isinstance(code, QRTooLarge), "-too-large")
        done = "I've typed the key" if isinstance(code, QRTooLarge) else "I've scanned it"
        self.query_one("#scan-hint", Static).update(Content(f"Enter: {done}\nEsc: cancel"))
        if isinstance(code, QRTooLarge):
            view = event.qr_view
            cols = self.size.width + max(0, code.needed_cols - view.size.width)
            rows = self.size.height + max(0, code.needed_rows - view.size.height)
            self.query_one("#scan-too-large", Static).update(
                Content(f"The QR code needs a terminal of at least {cols}x{rows}; enlarge it, or type the key.")
            )

    @property
    def qr_code(self) -> QRCode | QRTooLarge | None:
        """What the QR step draws (for tests and callers that want to know)."""
        return self.query_one(QRView).code

    # -- step 3: the code from the app ---------------------------------------------------------
    def _check_code(self) -> None:
        if self._confirming or self._cancelling or self._halted:
            return
        field = self.query_one("#code-input", Input)
        code = "".join(field.value.split())
        if len(code) != CODE_DIGITS or not code.isdigit():
            self._say("#code-message", f"Type the {CODE_DIGITS} digits the app shows.")
            field.focus()
            return
        self._confirming = True
        field.disabled = True
        self.query_one("#code-check", Button).disabled = True
        self._say("#code-message", "Checking…", error=False)
        self._confirm_enrollment(code)

    def _confirm_enrollment(self, code: str) -> None:
        def confirm() -> ConfirmResult:
            with self._store_lock:
                return self.service.confirm_enrollment(self.actor, self.username, code)

        self.call_store(confirm, then=self._confirmed, failed=self._confirm_failed, group="wizard-confirm",
                        exclusive=True)  # fmt: skip

    def _confirm_failed(self, error: Exception) -> None:
        self._confirming = False
        self._say("#code-message", f"Not checked: {printable(str(error))}\nPress Esc to close.")
        self._stop_code_entry()

    def _confirmed(self, result: ConfirmResult) -> None:
        self._confirming = False
        field = self.query_one("#code-input", Input)
        if result.outcome is Outcome.OK:
            self.result = result
            codes = [printable(c) for c in result.recovery_codes]
            half = (len(codes) + 1) // 2
            self.query_one("#codes-left", Static).update(Content("\n".join(codes[:half])))
            self.query_one("#codes-right", Static).update(Content("\n".join(codes[half:])))
            who = printable(self.enrollment.username if self.enrollment else self.username)
            self.query_one("#done-heading", Static).update(Content(f"2FA is active for {who}"))
            field.value = ""
            self._show("codes")
            return
        if result.outcome is Outcome.LOCKED:
            field.value = ""
            until = _local_time(result.locked_until)
            self._say(
                "#code-message",
                f"Too many wrong codes: the account is locked until {until}. "
                "Press Esc to close; try again later, or ask an administrator to unlock it.",
            )
            self._stop_code_entry()
            return
        field.disabled = False
        self.query_one("#code-check", Button).disabled = False
        field.value = ""
        field.focus()
        self._say(
            "#code-message",
            "That code is not right. Type the code the app shows now. If it keeps failing, check that "
            "the phone's date and time are set to automatic.",
        )

    def _stop_code_entry(self) -> None:
        self._halted = True
        self.query_one("#code-input", Input).disabled = True
        self.query_one("#code-check", Button).disabled = True
        self.query_one("#code-back", Button).disabled = True
        self.query_one("#code-cancel", Button).focus()

    # -- step 4 -> 5 ---------------------------------------------------------------------------
    def _codes_saved(self) -> None:
        if not self.query_one("#codes-saved", Checkbox).value:
            self._say("#codes-message", "Tick “I have saved them” first.")
            self.query_one("#codes-saved", Checkbox).focus()
            return
        self._show("done")

    # -- closing -------------------------------------------------------------------------------
    def _cancel_enrollment(self) -> None:
        def cancel() -> None:
            with self._store_lock:  # after a begin still under way, never before it
                self.service.cancel_enrollment(self.actor, self.username)

        # A failure is left alone: the secret is unconfirmed, and a new begin replaces it anyway.
        finish = lambda _: self._finish(None)  # noqa: E731
        self.call_store(cancel, then=finish, failed=finish, group="wizard-cancel", exclusive=True)

    def _finish(self, result: ConfirmResult | None) -> None:
        if self._finished:
            return
        self._finished = True
        if self.is_active:
            self.dismiss(result)
        else:  # a screen was pushed on top: dismissing now would pop that one instead
            self._dismiss_on_resume = (result,)

    def on_screen_resume(self) -> None:
        if self._dismiss_on_resume is not None:
            (result,) = self._dismiss_on_resume
            self._dismiss_on_resume = None
            self.dismiss(result)


def _local_time(when: datetime | None) -> str:
    return when.astimezone().strftime("%H:%M %Z") if when else "later"  # the zone: "06:44" alone misleads
