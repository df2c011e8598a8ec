"""The Security tab: the "Enable 2FA" box, the policy in force, and the verification service's
clients.

The view only asks: ticking or unticking the box posts `EnableRequested`, and the box shows the
store's state until the screen, which confirms and calls the store, shows a new policy. Every
state reads in words too (on, off, locked by the plan; active, revoked), so it is plain with
NO_COLOR. The clients are the screen's to read and to revoke (`r`, administrators): the view shows
the list it is given, and which one is selected. Adding one stays on the command line, which
shows the new API key once, to copy.
"""

from __future__ import annotations

from datetime import UTC

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Checkbox, Static

from store.clients import Client
from store.models import Policy, PolicyMode
from store.validation import printable

from .table import Column, LineTable

DETAILS = (  # (id, name) of the policy's lines
    ("issuer", "Issuer (shown in apps)"),
    ("plan", "Plan"),
    ("codes", "Codes"),
    ("window", "Clock window"),
    ("lockout", "Lockout"),
    ("users", "Users"),
)

CLIENT_COLUMNS = (
    Column("Client", 10, grow=2),
    Column("State", 23),  # "active since 2026-11-30"
    Column("Sources", 10, grow=3),
)
ADD_HINT = "Clients are added on the command line, which shows the new API key once, to copy:\n  "


def _day(client: Client) -> str:
    return (client.revoked_at or client.created_at).astimezone(UTC).strftime("%Y-%m-%d")


def _sources(client: Client) -> str:
    return ", ".join(map(str, client.sources)) or "any"


def _client_cells(client: Client) -> tuple[str, ...]:
    state = f"active since {_day(client)}" if client.active else f"revoked {_day(client)}"
    return client.name, state, _sources(client)


def client_details(client: Client) -> str:
    """The selected client whole (the table cuts long names and source lists), times in UTC."""
    added = client.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sources = f"from {_sources(client)}" if client.sources else "from any address"
    if client.active:
        radius = ""
        if client.radius:
            asks = "the password and the code" if client.radius_password else "the code"
            radius = f" RADIUS too ({asks}{'; unsigned requests accepted' if client.radius_unsigned else ''})."
        return f"{client.name}: active, added {added}; its key is accepted {sources}.{radius}"
    revoked = client.revoked_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{client.name}: revoked {revoked} (added {added}); its key is refused."


class SecurityView(VerticalScroll):
    """Scrolls (a 60x20 terminal cuts the settings): focused itself when the box is locked."""

    policy: reactive[Policy | None] = reactive(None, init=False)
    may_change: reactive[bool] = reactive(False, init=False)  # an administrator is signed in
    active_users: reactive[int] = reactive(0, init=False)
    # Active ones first, then revoked, each by name; None until first read.
    clients: reactive[tuple[Client, ...] | None] = reactive(None, init=False)
    clients_problem: reactive[str | None] = reactive(None, init=False)  # the last read failed: why
    add_command: reactive[str] = reactive("mfa-console clients add NAME [--source CIDR]...", init=False)

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
        with Vertical(id="clients"):
            yield Static(Content("Reading the service's clients…"), id="clients-note")
            yield LineTable(CLIENT_COLUMNS, lambda c: c.name, _client_cells, id="clients-table")
            yield Static(id="clients-selected")
            yield Static(id="clients-hint", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#clients").border_title = Content("Service clients")
        self.clients_table.display = False
        self._show_clients()

    @property
    def box(self) -> Checkbox:
        return self.query_one("#enable-2fa", Checkbox)

    def watch_policy(self) -> None:
        self._show()

    @property
    def clients_table(self) -> LineTable:
        return self.query_one("#clients-table", LineTable)

    @property
    def selected_client(self) -> Client | None:
        table = self.clients_table
        return table.rows[table.cursor] if table.display and 0 <= table.cursor < len(table.rows) else None

    def watch_may_change(self) -> None:
        self._show()
        self._show_clients()

    def watch_clients(self) -> None:
        self._show_clients()

    def watch_clients_problem(self) -> None:
        self._show_clients()

    def watch_add_command(self) -> None:
        self._show_clients()

    def _show_clients(self) -> None:
        clients, table = self.clients, self.clients_table
        if clients is None:
            note = self.clients_problem or "Reading the service's clients…"
        elif not clients:
            note = ("No clients yet: the verification service (mfa-console serve) accepts no request "
                    "until one is added.")  # fmt: skip
        else:
            active = sum(c.active for c in clients)
            note = (f"{active:,} active, {len(clients) - active:,} revoked: the systems that may ask "
                    "the verification service whether a code is right.")  # fmt: skip
        if clients is not None and self.clients_problem:
            note = f"{self.clients_problem} (showing the last list read)"
        self.query_one("#clients-note", Static).update(Content(printable(note)))
        table.display = bool(clients)
        table.set_rows(clients or ())
        # No list to Tab to: the section itself takes the focus, which scrolls how to add one into view.
        self.query_one("#clients").can_focus = not clients
        self._show_selected()
        if not self.may_change:
            who = "Administrators can revoke a client here; you can view them only."
        elif clients and any(c.active for c in clients):
            who = "r revokes the selected client (it asks first)."
        else:
            who = ""
        command = "\n".join(printable(line) for line in self.add_command.split("\n"))  # a path may hold anything
        hint = ADD_HINT + command + ("\n" + who if who else "")
        self.query_one("#clients-hint", Static).update(Content(hint))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The list takes the keys (↓, End, PgDn): the lines under it, how to add a client and what
        `r` does, are scrolled into view with it, or no key would reach them at 80x24."""
        if event.widget is self.clients_table:
            self.call_after_refresh(self.scroll_end, animate=False)

    def on_line_table_highlighted(self, event: LineTable.Highlighted) -> None:
        event.stop()
        self._show_selected()

    def _show_selected(self) -> None:
        client = self.selected_client
        selected = self.query_one("#clients-selected", Static)
        selected.display = client is not None
        selected.update(Content(printable(client_details(client)) if client else ""))

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
        """Where the keyboard lands on this tab: the box if it can change, else the view itself;
        shown from the top, where the box is (the focus alone does not scroll a tab still hidden,
        and the view may have been left scrolled down to the clients)."""
        self.screen.set_focus(self if self.box.disabled else self.box, scroll_visible=False)
        self.call_after_refresh(self.scroll_home, animate=False)
