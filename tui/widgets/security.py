"""The Security tab: the "Enable 2FA" box and the policy in force.

The view only asks: ticking or unticking the box posts `EnableRequested`, and the box shows the
store's state until the screen, which confirms and calls the store, shows a new policy. Every
state reads in words too (on, off, locked by the plan), so it is plain with NO_COLOR.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Checkbox, Static

from store.models import Policy, PolicyMode
from store.validation import printable


DETAILS = (  # (id, name) of the policy's lines
    ("issuer", "Issuer (shown in apps)"),
    ("plan", "Plan"),
    ("codes", "Codes"),
    ("window", "Clock window"),
    ("lockout", "Lockout"),
    ("users", "Users"),
)


class SecurityView(VerticalScroll):
    """Scrolls (a 60x20 terminal cuts the settings): focused itself when the box is locked."""

    policy: reactive[Policy | None] = reactive(None, init=False)
    may_change: reactive[bool] = reactive(False, init=False)  # an administrator is signed in
    active_users: reactive[int] = reactive(0, init=False)

    class EnableRequested(Message):
        """The box was ticked (enabled True) or unticked: the screen confirms and calls the store."""

        def __init__(self, view: SecurityView, enabled: bool) -> None:
            super().__init__()
            self.view = view
            self.enabled = enabled

        @property
        def control(self) -> SecurityView:
            return self.view

    def compose(self) -> ComposeResult:
        yield Checkbox("Enable 2FA", value=True, id="enable-2fa")
        yield Static(id="policy-note")
        with Grid(id="policy-details"):  # a value wraps beside its name, not under it
            for key, name in DETAILS:
                yield Static(Content(name), classes="policy-name")
                yield Static(id=f"policy-{key}", classes="policy-value")

    @property
    def box(self) -> Checkbox:
        return self.query_one("#enable-2fa", Checkbox)

    def watch_policy(self) -> None:
        self._show()

    def watch_may_change(self) -> None:
        self._show()

    def watch_active_users(self) -> None:
        self._show()

    def _show(self) -> None:
        policy = self.policy
        if policy is None:
            return
        mandatory = policy.mode is PolicyMode.MANDATORY
        box = self.box
        with box.prevent(Checkbox.Changed):
            box.value = policy.enabled
        box.disabled = mandatory or not self.may_change
        state = "on" if policy.enabled else "off"
        box.label = f"Enable 2FA: {state}" + (", required by the plan" if mandatory else "")
        if mandatory:
            note = "Your provider makes 2FA mandatory on this contact center's plan: it cannot be turned off."
        elif not self.may_change:
            note = f"2FA is optional on this plan and {state}; administrators can change it. You can view it only."
        elif policy.enabled:
            note = "2FA is optional on this plan. Unticking turns it off for every user (they become Disabled)."
        else:
            note = ("2FA is off: everyone signs in with a password only. Ticking turns it back on; "
                    "authenticator apps set up before still work.")  # fmt: skip
        self.query_one("#policy-note", Static).update(Content(note))
        values = {
            "issuer": printable(policy.issuer),
            "plan": f"2FA {policy.mode.value}; currently {state}",
            "codes": f"TOTP (RFC 6238), {policy.digits} digits, new every {policy.period} s",
            "window": f"±{policy.window} step (±{policy.window * policy.period} s); a code works once",
            "lockout": f"{policy.max_failures} failures lock for {policy.lock_minutes} min,\n"
                       f"doubling each time, up to {policy.lock_cap_minutes} min",
            "users": f"{self.active_users:,} active accounts",
        }  # fmt: skip
        for key, value in values.items():
            self.query_one(f"#policy-{key}", Static).update(Content(value))

    @on(Checkbox.Changed, "#enable-2fa")
    def _ticked(self, event: Checkbox.Changed) -> None:
        event.stop()
        with event.checkbox.prevent(Checkbox.Changed):
            event.checkbox.value = not event.value  # the store's state stays shown until it changes
        self.post_message(self.EnableRequested(self, event.value))

    def focus_first(self) -> None:
        """Where the keyboard lands on this tab: the box if it can change, else the view itself."""
        self.screen.set_focus(self if self.box.disabled else self.box)
