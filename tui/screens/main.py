"""The main screen for supervisors and administrators: Rollout, Users, Security and Audit tabs.

The screen coordinates: it polls the store, hands each view its data, and turns the views'
requests and the keys into store calls (in threads) and dialogs. The views keep their own state.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Header, Input, TabbedContent, TabPane
from textual.worker import Worker

from store.clients import Client
from store.csvio import read_import
from store.errors import ImportRejected, PermissionDenied, StoreError
from store.exports import write_private, write_users
from store.models import AuditEvent, ConfirmResult, Policy, Role, Rollout, Session, Status, User
from store.paths import StorePaths, resolve
from store.validation import counted, printable

from ..commands import MainScreenCommands
from ..widgets.audit import AuditView
from ..widgets.footer import Footer
from ..widgets.rollout import RolloutView
from ..widgets.security import SecurityView
from ..widgets.user_grid import UserIndex
from ..widgets.users import UsersView
from ..work import StoreWork
from .common import ConfirmDialog, PromptDialog
from .dialogs import AddUserDialog, ImportErrorsDialog

SECURITY_TAB_ACTIONS = {"revoke_client"}
ADMIN_ACTIONS = {"enroll", "reset", "unlock", "add", "deactivate", "import_csv"} | SECURITY_TAB_ACTIONS
USER_TAB_ACTIONS = ADMIN_ACTIONS - SECURITY_TAB_ACTIONS | {"search", "cycle_filter", "export"}
KEY_ACTIONS = USER_TAB_ACTIONS | SECURITY_TAB_ACTIONS | {"show_tab"}  # bound to one printable key each
AUDIT_LIMIT = 1000
TABS = ("rollout-tab", "users-tab", "security-tab", "audit-tab")


class MainTabs(TabbedContent):
    """The main screen's tabs. A TabbedContent shows the pane of a widget that gets the focus, but
    it hears of the focus later, by message: a tab key pressed meanwhile is undone by it."""

    def on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors:  # the focus has moved on since
            event.prevent_default()
            event.stop()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a poll read from the store, prepared off the event loop."""

    generation: object  # the store's, when read (Service.generation)
    users: tuple[User, ...]
    index: UserIndex  # the users for the grid: sorted, with their search texts
    me: User | None  # the signed-in user's record
    rollout: Rollout
    policy: Policy
    lock_ends: datetime | None  # the first shown lockout to run out: the view changes then


class MainScreen(StoreWork, Screen):
    COMMANDS = {MainScreenCommands}
    # The one-key actions act when their key arrives (priority), so keys typed right after one
    # that moves the focus (`/`, `2`) follow the focus; while a text field has the focus they
    # are text, and reach it (check_action).
    BINDINGS = [
        Binding("slash", "search", "Search", id="search", priority=True),
        Binding("f", "cycle_filter", "Filter", id="filter", priority=True),
        Binding("e", "enroll", "Enroll", id="enroll", priority=True),
        Binding("r", "reset", "Reset", id="reset", tooltip="Reset the selected user's 2FA", priority=True),
        Binding("u", "unlock", "Unlock", id="unlock", priority=True),
        Binding("a", "add", "Add", id="add", priority=True),
        Binding("d", "deactivate", "(De)activate", show=False, id="deactivate", priority=True),
        Binding("i", "import_csv", "Import", show=False, id="import", priority=True),
        Binding("x", "export", "Export", show=False, id="export", priority=True),
        # `r` on the Security tab (the Users tab's reset is hidden there, and this one elsewhere).
        Binding("r", "revoke_client", "Revoke client", id="revoke-client",
                tooltip="Revoke the selected service client's API key", priority=True),
        Binding("escape", "clear_search", "Clear search", show=False),
        *(Binding(str(n), f"show_tab('{tab}')", tab.split("-")[0].title(), show=False, priority=True)
          for n, tab in enumerate(TABS, start=1)),
    ]  # fmt: skip

    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.snapshot: Snapshot | None = None
        self.store_problem: str | None = None  # the store error last reported, so it is said once
        self._poll_worker: Worker | None = None
        self._poll_again: bool | None = None  # asked for while a poll ran (True: forced); None: not
        self._audit_worker: Worker | None = None
        self._audit_head: int | None = None
        self._clients_worker: Worker | None = None
        self._clients_again = False  # asked for while a read ran: read once more after it
        self._rollout_shown: Snapshot | None = None  # the data the Rollout tab's report is of
        self._select_after_poll: str | None = None  # a user just added: selected once listed

    @property
    def is_admin(self) -> bool:
        return self.session.role is Role.ADMIN

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="🔐")
        # The tab they were on; else supervisors land on the rollout, administrators on the users.
        remembered = self.app.prefs.get("tab")
        initial = remembered if remembered in TABS else "users-tab" if self.is_admin else "rollout-tab"
        with MainTabs(id="tabs", initial=initial):
            with TabPane("Rollout", id="rollout-tab"):
                yield RolloutView(id="rollout-view")
            with TabPane("Users", id="users-tab"):
                yield UsersView(id="users-view")
            with TabPane("Security", id="security-tab"):
                yield SecurityView(id="security-view")
            with TabPane("Audit", id="audit-tab"):
                yield AuditView(id="audit-view")
        # The palette (ctrl+p) is listed by `?`: the footer's room goes to this tab's keys.
        yield Footer(show_command_palette=False)

    @property
    def users_view(self) -> UsersView:
        return self.query_one(UsersView)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    def on_mount(self) -> None:
        self.sub_title = printable(f"{self.session.username} · {self.session.role.value}")
        security = self.query_one(SecurityView)
        security.may_change = self.is_admin
        security.add_command = add_client_command(self.app.paths)
        self._restore_grid()
        self._focus_tab()
        self.poll(force=True)
        self.set_interval(self.app.poll_seconds, self.poll)
        self.set_interval(60, self._rollout_tick)

    # -- live data -----------------------------------------------------------------------------
    def poll(self, force: bool = False) -> None:
        """Every second: has the store changed (here or in another process)? Then reload."""
        # A read still running (a large store) is never cancelled: the next one waits for it.
        if self._poll_worker is not None and self._poll_worker.is_running:
            self._poll_again = bool(self._poll_again) or force
            return
        snapshot = self.snapshot
        stale = snapshot is None or (snapshot.lock_ends is not None and self.app.now() >= snapshot.lock_ends)
        known = None if force or stale else snapshot.generation
        sort = self.users_view.grid.sort
        self._poll_worker = self.call_store(self._read_snapshot, known, sort, snapshot is not None,
                                            then=self._apply_snapshot, group="poll")  # fmt: skip
        if self.active_tab == "audit-tab":
            self._read_audit_soon()
        elif self.active_tab == "security-tab":
            self._read_clients_soon()

    def _read_snapshot(self, known: tuple[int, int] | None, sort: tuple[int, bool],
                       prepare: bool) -> Snapshot | StoreError | None:  # fmt: skip
        """A failure comes back as a value: the poll reports it once, not every second.

        What a new snapshot needs is made here, off the event loop: the grid's order for `sort`
        (its sort when the poll started), and with `prepare` the lists a search scans (the first
        snapshot leaves them to the grid, to build once its first rows are drawn).
        """
        service = self.app.service
        try:
            generation = service.generation
            if generation == known:
                return None
            users = service.list_users(self.session)
            rollout, policy = service.rollout(self.session), service.policy()
        except StoreError as error:
            return error
        # The last snapshot's, or the one made while the password was typed.
        previous = self.snapshot.index if self.snapshot is not None else self.app.preloaded
        index = previous if previous is not None and previous.users is users else UserIndex.following(previous, users)
        order = index.order(*sort)
        if prepare:
            order.prepare()
        me = next((u for u in users if u.username == self.session.username), None)
        lock_ends = min((u.locked_until for u in users if u.locked_until), default=None)
        return Snapshot(generation, users, index, me, rollout, policy, lock_ends)

    def _apply_snapshot(self, snapshot: Snapshot | StoreError | None) -> None:
        if self._poll_again is not None:
            force, self._poll_again = self._poll_again, None
            self.call_later(self.poll, force)
        if isinstance(snapshot, PermissionDenied):
            # Deactivated, demoted or the session ended: this screen is no longer theirs.
            self.app.sign_out()
            self.app.notify(printable(f"Signed out: {snapshot}"), severity="warning", markup=False)
            return
        if isinstance(snapshot, Snapshot) and snapshot.me is not None and snapshot.me.role is not self.session.role:
            # Made supervisor (or administrator) elsewhere: this screen's keys are the old role's.
            self.app.sign_out()
            self.app.notify(f"Your role is now {snapshot.me.role.value}: sign in again.", severity="warning")
            return
        if isinstance(snapshot, StoreError):
            if self.store_problem != str(snapshot):
                self.store_problem = str(snapshot)
                self.notify(printable(f"{snapshot} (showing the last data read)"), severity="error",
                            timeout=10, markup=False)  # fmt: skip
            return
        if self.store_problem is not None:
            self.store_problem = None
            self.notify("The store answers again: showing what it holds now.", timeout=5, markup=False)
        if snapshot is None:
            return
        self.snapshot = snapshot
        if snapshot.me is not None:
            self.sub_title = printable(f"{snapshot.me.name} · {snapshot.me.role.value}")
        self.users_view.show(snapshot.index, snapshot.rollout)
        if self._select_after_poll is not None:
            self.users_view.grid.select(self._select_after_poll)
            self._select_after_poll = None
        security = self.query_one(SecurityView)
        security.active_users = snapshot.rollout.total
        security.policy = snapshot.policy
        self._show_rollout_tab()

    def _rollout_tick(self) -> None:
        """Days pending and "today" move with the clock, not only when the store changes."""
        self._rollout_shown = None
        self._show_rollout_tab()

    def _show_rollout_tab(self) -> None:
        """The Rollout tab's report (a pass over every user, in a thread) is made only while the
        tab shows: an administrator lands on the Users grid and need not wait for it."""
        snapshot = self.snapshot
        if snapshot is None or snapshot is self._rollout_shown or self.active_tab != "rollout-tab":
            return
        self._rollout_shown = snapshot
        self.query_one(RolloutView).show(snapshot.users, self.app.now())

    # -- tabs ----------------------------------------------------------------------------------
    def action_show_tab(self, tab: str) -> None:
        # The focus first, then the pane: a focused widget whose pane is hidden hands the focus
        # to a neighbour in that pane, which would show it again.
        self._focus_tab(tab)
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def tab_changed(self) -> None:
        self.app.prefs.save(tab=self.active_tab)
        self.refresh_bindings()
        self._focus_tab()
        self._show_rollout_tab()
        if self.active_tab == "audit-tab":
            self._audit_head = None
            self._read_audit_soon()
        elif self.active_tab == "security-tab":
            self._read_clients_soon()

    def _focus_tab(self, tab: str | None = None) -> None:
        """The keyboard goes to the tab shown, at once. Focus left in a hidden tab, or a deferred
        focus() landing there after a quick second key, would switch back to it (a TabbedContent
        shows the pane of the focused widget)."""
        focus = {
            "rollout-tab": lambda: self.set_focus(self.query_one(RolloutView).teams),
            "users-tab": self.users_view.focus_first,
            "security-tab": self.query_one(SecurityView).focus_first,
            "audit-tab": self.query_one(AuditView).focus_first,
        }
        focus[tab or self.active_tab]()

    @on(RolloutView.TeamChosen)
    def team_chosen(self, event: RolloutView.TeamChosen) -> None:
        self.users_view.show_team(event.team)
        self.action_show_tab("users-tab")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in KEY_ACTIONS and isinstance(self.focused, Input):
            return False  # their keys are text here
        return self.allowed(action)

    def allowed(self, action: str) -> bool:
        """What the role and the tab shown allow (the palette asks this; keys ask check_action)."""
        if action in ADMIN_ACTIONS and not self.is_admin:
            return False  # hidden: a supervisor sees none of these (and the store refuses them)
        if action in SECURITY_TAB_ACTIONS:
            try:
                return self.active_tab == "security-tab"
            except NoMatches:
                return True
        if action in USER_TAB_ACTIONS:
            try:
                return self.active_tab == "users-tab"
            except NoMatches:  # asked before the tabs exist
                return True
        return True

    # -- search and filter ---------------------------------------------------------------------
    def _restore_grid(self) -> None:
        """The sort and the status filter last chosen; each change is remembered."""
        prefs, view = self.app.prefs, self.users_view
        grid = view.grid
        grid.sort_column, grid.sort_reverse = prefs.sort  # checked as the file was read (tui.prefs)
        status = prefs.get("status_filter")
        view.status_filter = next((s for s in Status if s.value == status), None)
        self.watch(grid, "sort_column", lambda column: prefs.save(sort_column=column), init=False)
        self.watch(grid, "sort_reverse", lambda reverse: prefs.save(sort_reverse=reverse), init=False)
        self.watch(view, "status_filter", lambda s: prefs.save(status_filter=s.value if s else None), init=False)

    def action_search(self) -> None:
        self.users_view.open_search()

    def action_clear_search(self) -> None:
        if self.active_tab == "users-tab":
            self.users_view.clear()

    def action_cycle_filter(self) -> None:
        self.users_view.cycle_status()

    # -- actions on the selected user ----------------------------------------------------------
    def selected(self) -> User | None:
        user = self.users_view.selected
        if user is None:
            self.notify("No user selected.", severity="warning")
        return user

    def action_enroll(self) -> None:
        user = self.selected()
        if user is None:
            return
        if user.status is Status.DISABLED:
            self.notify("2FA is turned off for this contact center (Security tab).", severity="warning")
            return

        def done(result: ConfirmResult | None) -> None:
            if result is not None and result.ok:
                self.notify(printable(f"2FA is active for {user.username}."), markup=False)
            self.poll()

        def start(yes: bool | None = True) -> None:
            if yes:
                from .wizard import EnrollmentWizard  # segno and the wizard load only for enrollment

                self.app.push_screen(EnrollmentWizard(self.app.service, self.session, user.username), done)

        if user.status is Status.ACTIVATED:
            body = (f"{printable(user.name)} ({printable(user.username)}) has 2FA set up already.\n\n"
                    "Enrolling again gives them a new key: their current authenticator entry stops "
                    "working once the new one is confirmed.")  # fmt: skip
            self.app.push_screen(ConfirmDialog("Enroll again", body, "Enroll again"), start)
        else:
            start()

    def action_reset(self) -> None:
        user = self.selected()
        if user is None:
            return
        if user.status is Status.PENDING:  # nothing to reset: the store says so, or cancels an enrollment begun
            body = (f"{printable(user.name)} ({printable(user.username)}) has not set up 2FA yet.\n\n"
                    "If they began to, with an authenticator app, that setup is cancelled: they start "
                    "again at their next sign-in.")  # fmt: skip
            self._confirm_then("Start their setup over", body, "Start over", self.app.service.reset_2fa, user,
                               f"The enrollment {user.username} had begun is cancelled.")  # fmt: skip
            return
        body = (
            f"Reset two-factor authentication of {printable(user.name)} ({printable(user.username)})?\n\n"
            "Their authenticator entry and recovery codes stop working at once; "
            "they set up 2FA again at their next sign-in."
        )
        self._confirm_then("Reset 2FA", body, "Reset 2FA", self.app.service.reset_2fa, user,
                           f"2FA of {user.username} reset: Pending.")  # fmt: skip

    def action_unlock(self) -> None:
        user = self.selected()
        if user is not None:
            self._do(self.app.service.unlock, user, f"{user.username} is unlocked.")

    def action_deactivate(self) -> None:
        user = self.selected()
        if user is None:
            return
        if not user.active:
            self._do(self.app.service.set_active, user, f"{user.username} is active again.", True)
            return
        body = (f"Deactivate {printable(user.name)} ({printable(user.username)})?\n\n"
                "They can no longer sign in until reactivated.")  # fmt: skip
        if user.username == self.session.username:
            body = ("Deactivate your own account? You are signed out at once, and only another "
                    "administrator can reactivate you.")  # fmt: skip
        self._confirm_then("Deactivate user", body, "Deactivate", self.app.service.set_active, user,
                           f"{user.username} is deactivated.", False)  # fmt: skip

    def _confirm_then(self, title, body, confirm, fn, user: User, done: str, *args) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._do(fn, user, done, *args)

        self.app.push_screen(ConfirmDialog(title, body, confirm), answered)

    def _do(self, fn, user: User, done: str, *args) -> None:
        def finished(_result) -> None:
            self.notify(printable(done), markup=False)
            self.poll()

        self.call_store(fn, self.session, user.username, *args, then=finished, group="action")

    def action_add(self) -> None:
        def added(user: User | None) -> None:
            if user is not None:
                self.notify(printable(f"Added {user.username}."), markup=False)
                self._select_after_poll = user.username
                self.poll()

        self.app.push_screen(AddUserDialog(self.app.service, self.session), added)

    # -- files ---------------------------------------------------------------------------------
    def action_import_csv(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.call_store(self._import, path, then=self._imported, group="action")

        body = "CSV file with the header username,name,email,role,team (all rows or none):"
        self.app.push_screen(PromptDialog("Import users", body, placeholder="/path/to/users.csv"), chosen)

    def _import(self, path: str) -> int | ImportRejected:
        data = read_import(Path(path).expanduser())
        try:
            return self.app.service.import_users(self.session, data)
        except ImportRejected as rejected:
            return rejected

    def _imported(self, result: int | ImportRejected) -> None:
        if isinstance(result, ImportRejected):
            self.app.push_screen(ImportErrorsDialog(result))
            return
        self.notify(f"Imported {counted(result, 'user')}.")
        self.poll()

    def action_export(self) -> None:
        """Exports what the grid shows: the search and the filters apply, and the dialog says so."""
        rows = list(self.users_view.grid.rows)
        total = len(self.snapshot.users) if self.snapshot else len(rows)
        what = "every user" if len(rows) == total else f"the {counted(len(rows), 'user')} the search and filter show, of {total:,}"
        default = f"~/mfa-users-{self.app.now():%Y-%m-%d}.csv"

        def chosen(path: str | None) -> None:
            if path:
                self.export_file(export_users, path, rows, group="action")

        body = f"Export {what}. File (.json for JSON, else CSV):"
        self.app.push_screen(PromptDialog("Export users", body, value=default), chosen)

    # -- security tab --------------------------------------------------------------------------
    @on(SecurityView.EnableRequested)
    def enable_requested(self, event: SecurityView.EnableRequested) -> None:
        def changed(policy: Policy) -> None:
            self.notify(f"2FA is now {'on' if policy.enabled else 'off'} for the contact center.")
            self.poll()

        if event.enabled:
            self.call_store(self.app.service.set_enabled, self.session, True, then=changed, group="action")
            return
        count = self.snapshot.rollout.total if self.snapshot else 0

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_store(self.app.service.set_enabled, self.session, False, then=changed, group="action")

        body = (
            f"Turn off two-factor authentication for the whole contact center?\n\n"
            f"All {count:,} users become Disabled and sign in with a password only. "
            "Their authenticator entries are kept: turning 2FA on again restores them."
        )
        self.app.push_screen(ConfirmDialog("Turn off 2FA", body, "Turn off 2FA"), answered)

    def store_failed(self, error: BaseException) -> None:
        self.poll(force=True)  # show the store's truth again (e.g. a refused policy change)
        self._read_clients_soon()  # (e.g. a client revoked meanwhile from the command line)

    # The service's clients are read while the tab shows, each poll: a small table, and changed by
    # the command line on any host without a change of the store's generation (users only).
    def _read_clients_soon(self) -> None:
        if self._clients_worker is not None and self._clients_worker.is_running:
            self._clients_again = True
            return
        self._clients_worker = self.call_store(self._read_clients, then=self._apply_clients, group="clients")

    def _read_clients(self) -> tuple[Client, ...] | StoreError:
        """A failure comes back as a value: the tab says it, not a notification every second."""
        try:
            clients = self.app.service.list_clients(self.session)
        except StoreError as error:
            return error
        return tuple(sorted(clients, key=lambda c: (not c.active, c.name)))

    def _apply_clients(self, clients: tuple[Client, ...] | StoreError) -> None:
        if self._clients_again:
            self._clients_again = False
            self.call_later(self._read_clients_soon)
        view = self.query_one(SecurityView)
        if isinstance(clients, PermissionDenied):
            return  # signed out by the next poll, which says why
        if isinstance(clients, StoreError):
            view.clients_problem = f"Cannot read the service's clients: {clients}"
            return
        view.clients_problem = None
        view.clients = clients

    def action_revoke_client(self) -> None:
        view = self.query_one(SecurityView)
        client = view.selected_client
        if client is None:
            self.notify("No service client to revoke.", severity="warning")
            return
        self.set_focus(view.clients_table)  # the list shows, with the client the dialog names
        if not client.active:
            self.notify(printable(f"{client.name} is revoked already."), severity="warning", markup=False)
            return
        name = client.name
        sources = ", ".join(map(str, client.sources)) or "any address"

        def revoked(_result) -> None:
            self.notify(printable(f"Revoked {name}: its key no longer works."), markup=False)
            self._read_clients_soon()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_store(self.app.service.revoke_client, self.session, name, then=revoked, group="action")

        body = (f"Revoke the service client {printable(name)} (from {sources})?\n\n"
                "Its API key stops working at once: the verification service refuses every request "
                "that sends it. This cannot be undone, and no other client can take its name: add a "
                "new one with mfa-console clients add.")  # fmt: skip
        self.app.push_screen(ConfirmDialog("Revoke client", body, "Revoke client"), answered)

    # -- audit tab -----------------------------------------------------------------------------
    def _read_audit_soon(self) -> None:
        if self._audit_worker is None or not self._audit_worker.is_running:
            self._audit_worker = self.call_store(self._read_audit, then=self._apply_audit, group="audit")

    def _read_audit(self) -> list[AuditEvent] | None:
        head = self.app.service.audit_version()
        if head == self._audit_head:
            return None
        self._audit_head = head
        return self.app.service.audit(self.session, limit=AUDIT_LIMIT)

    def _apply_audit(self, events: list[AuditEvent] | None) -> None:
        if events is not None:
            self.query_one(AuditView).show(events)


def add_client_command(paths: StorePaths) -> str:
    """The command that adds a client to this dashboard's store: with --db (and --key) when plain
    `mfa-console` would open another one (the demo's, a store named by --db). Each option on a
    line of its own, continued with a backslash: a long path made the terminal wrap the command
    mid-way, and a copy of it then ran half of one."""
    lines = ["mfa-console"]
    if paths.db != resolve().db:
        lines.append(shlex.join(["--db", paths.shown]))  # a URL without its password: libpq finds it as here
    if paths.key != resolve(str(paths.db)).key:
        lines.append(shlex.join(["--key", str(paths.key)]))
    lines.append("clients add NAME [--source CIDR]...")
    return " ".join(lines) if len(lines) == 2 else " \\\n    ".join(lines)


def export_users(path: str, users: list[User], force: bool) -> None:
    """Runs in a thread: CSV, or JSON for a .json name; FileExistsError unless `force`."""
    target = Path(path).expanduser()
    fmt = "json" if target.suffix.lower() == ".json" else "csv"
    try:
        write_private(target, lambda out: write_users(users, out, fmt), force=force)
    except FileExistsError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
