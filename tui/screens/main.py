"""The main screen for supervisors and administrators: Users, Security and Audit tabs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Footer, Header, Input, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import Worker

from store.errors import ImportRejected, PermissionDenied, StoreError
from store.models import AuditEvent, ConfirmResult, Policy, PolicyMode, Role, Rollout, Session, Status, User
from store.validation import printable

from ..commands import MainScreenCommands
from ..files import write_private, write_users
from ..widgets.rollout import RolloutView
from ..widgets.user_grid import Filter, UserGrid, UserIndex
from ..work import StoreWork
from .common import ConfirmDialog, PromptDialog
from .dialogs import AddUserDialog, ImportErrorsDialog

STATUS_FILTERS: tuple[Status | None, ...] = (None, Status.PENDING, Status.ACTIVATED, Status.DISABLED)
ADMIN_ACTIONS = {"enroll", "reset", "unlock", "add", "deactivate", "import_csv"}
USER_TAB_ACTIONS = ADMIN_ACTIONS | {"search", "cycle_filter", "export"}
AUDIT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a poll read from the store, prepared off the event loop."""

    generation: int
    users: tuple[User, ...]
    index: UserIndex  # the users for the grid: sorted, with their search texts
    me: User | None  # the signed-in user's record
    rollout: Rollout
    policy: Policy
    lock_ends: datetime | None  # the first shown lockout to run out: the view changes then


class MainScreen(StoreWork, Screen):
    COMMANDS = {MainScreenCommands}
    BINDINGS = [
        Binding("slash", "search", "Search", id="search"),
        Binding("f", "cycle_filter", "Filter", id="filter"),
        Binding("e", "enroll", "Enroll", id="enroll"),
        Binding("r", "reset", "Reset 2FA", id="reset"),
        Binding("u", "unlock", "Unlock", id="unlock"),
        Binding("a", "add", "Add", id="add"),
        Binding("d", "deactivate", "(De)activate", show=False, id="deactivate"),
        Binding("i", "import_csv", "Import", show=False, id="import"),
        Binding("x", "export", "Export", show=False, id="export"),
        Binding("escape", "clear_search", "Clear search", show=False),
        Binding("1", "show_tab('rollout-tab')", "Rollout", show=False),
        Binding("2", "show_tab('users-tab')", "Users", show=False),
        Binding("3", "show_tab('security-tab')", "Security", show=False),
        Binding("4", "show_tab('audit-tab')", "Audit", show=False),
    ]

    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.snapshot: Snapshot | None = None
        self.store_problem: str | None = None  # the store error last reported, so it is said once
        self._poll_worker: Worker | None = None
        self._poll_again: bool | None = None  # asked for while a poll ran (True: forced); None: not
        self._audit_worker: Worker | None = None
        self.status_filter: Status | None = None
        self.search = ""
        self.team_filter: str | None = None  # a team chosen on the Rollout tab; "" is "no team"
        self._audit_version: tuple | None = None
        self._audit_events: list[AuditEvent] = []
        self._rollout_shown: Snapshot | None = None  # the data the Rollout tab's report is of

    @property
    def is_admin(self) -> bool:
        return self.session.role is Role.ADMIN

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="🔐")
        # Supervisors land on the rollout; administrators on the users they act on.
        with TabbedContent(id="tabs", initial="users-tab" if self.is_admin else "rollout-tab"):
            with TabPane("Rollout", id="rollout-tab"):
                yield RolloutView(id="rollout-view")
            with TabPane("Users", id="users-tab"):
                with Horizontal(id="rollout"):
                    yield Static(id="rollout-text")
                    yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="rollout-bar")
                yield Input(placeholder="Search username, name or team", id="search")
                yield Static(id="filter-line")
                yield UserGrid(id="grid")
            with TabPane("Security", id="security-tab"):
                with Vertical(id="security"):
                    yield Checkbox("Enable 2FA", value=True, id="enable-2fa")
                    yield Static(id="policy-note")
                    yield Static(id="policy-details")
            with TabPane("Audit", id="audit-tab"):
                yield Input(placeholder="Filter by user or action", id="audit-filter")
                yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(f"{self.session.username} · {self.session.role.value}")
        search = self.query_one("#search", Input)
        search.display = False
        self.watch(search, "value", self.search_changed, init=False)
        table = self.query_one("#audit-table", DataTable)
        table.add_columns("Time (UTC)", "Actor", "Action", "Target", "Outcome", "Detail")
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
        sort = self.query_one(UserGrid).sort
        self._poll_worker = self.call_store(self._read_snapshot, known, sort, snapshot is not None,
                                            then=self._apply_snapshot, group="poll")
        if self.query_one(TabbedContent).active == "audit-tab":
            self._read_audit_soon()

    def _read_audit_soon(self) -> None:
        if self._audit_worker is None or not self._audit_worker.is_running:
            self._audit_worker = self.call_store(self._read_audit, then=self._apply_audit, group="audit")

    def _read_snapshot(self, known: int | None, sort: tuple[int, bool],
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
        index = UserIndex(users)
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
        if isinstance(snapshot, StoreError):
            if self.store_problem != str(snapshot):
                self.store_problem = str(snapshot)
                self.notify(printable(f"{snapshot} (showing the last data read)"), severity="error",
                            timeout=10, markup=False)
            return
        self.store_problem = None
        if snapshot is None:
            return
        self.snapshot = snapshot
        if snapshot.me is not None:
            self.sub_title = printable(f"{snapshot.me.name} · {snapshot.me.role.value}")
        self._show_rollout(snapshot.rollout)
        self._show_rollout_tab()
        self._show_policy(snapshot.policy, snapshot.rollout)
        self.query_one(UserGrid).set_users(snapshot.index)
        self._filter()

    def _rollout_tick(self) -> None:
        """Days pending and "today" move with the clock, not only when the store changes."""
        self._rollout_shown = None
        self._show_rollout_tab()

    def _show_rollout_tab(self) -> None:
        """The Rollout tab's report (a pass over every user, in a thread) is made only while the
        tab shows: an administrator lands on the Users grid and need not wait for it."""
        snapshot = self.snapshot
        if snapshot is None or snapshot is self._rollout_shown:
            return
        if self.query_one(TabbedContent).active == "rollout-tab":
            self._rollout_shown = snapshot
            self.query_one(RolloutView).show(snapshot.users, self.app.now())

    @on(RolloutView.TeamChosen)
    def team_chosen(self, event: RolloutView.TeamChosen) -> None:
        self.team_filter = event.team
        self.query_one(TabbedContent).active = "users-tab"
        self.query_one(UserGrid).focus()
        self._filter()

    def _show_rollout(self, rollout: Rollout) -> None:
        text = (
            f"Activated {rollout.activated:,} of {rollout.total:,} ({rollout.percent:.0f}%)  ·  "
            f"Pending {rollout.pending:,}  ·  Disabled {rollout.disabled:,}"
        )
        self.query_one("#rollout-text", Static).update(Content(text))
        self.query_one("#rollout-bar", ProgressBar).update(progress=rollout.percent)

    def _filter(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        wanted = self.status_filter
        team = self.team_filter
        grid = self.query_one(UserGrid)
        grid.set_filter(Filter(self.search.casefold(), wanted, team))
        status = wanted.value.title() if wanted else "all"
        search = f' · search "{self.search}"' if self.search else ""
        team_note = f' · team "{team or "(no team)"}" (esc: all)' if team is not None else ""
        line = f"Showing {len(grid.rows):,} of {len(snapshot.users):,} · filter (f): {status}{search}{team_note}"
        self.query_one("#filter-line", Static).update(Content(printable(line)))

    # -- search and filter ---------------------------------------------------------------------
    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def search_changed(self, value: str) -> None:
        """Watches the search box: the grid is filtered in the frame that echoes the key (an
        Input.Changed message would arrive after that frame, and the result one frame later)."""
        self.search = value.strip()
        self._filter()

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.query_one(UserGrid).focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.value = ""
            search.display = False
            self.query_one(UserGrid).focus()
        elif self.team_filter is not None:
            self.team_filter = None
            self._filter()

    def action_cycle_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._filter()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def tab_changed(self) -> None:
        self.refresh_bindings()
        self._focus_tab()
        self._show_rollout_tab()
        if self.query_one(TabbedContent).active == "audit-tab":
            self._audit_version = None
            self._read_audit_soon()

    def _focus_tab(self) -> None:
        """Keys act on the tab shown: the team table on Rollout, the grid on Users."""
        active = self.query_one(TabbedContent).active
        if active == "rollout-tab":
            self.query_one(RolloutView).teams.focus()
        elif active == "users-tab":
            self.query_one(UserGrid).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ADMIN_ACTIONS and not self.is_admin:
            return False  # hidden: a supervisor sees none of these (and the store refuses them)
        if action in USER_TAB_ACTIONS:
            try:
                return self.query_one(TabbedContent).active == "users-tab"
            except NoMatches:  # asked before the tabs exist
                return True
        return True

    # -- actions on the selected user ----------------------------------------------------------
    def selected(self) -> User | None:
        user = self.query_one(UserGrid).selected
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

        from .wizard import EnrollmentWizard  # segno and the wizard load only for enrollment

        self.app.push_screen(EnrollmentWizard(self.app.service, self.session, user.username), done)

    def action_reset(self) -> None:
        user = self.selected()
        if user is None:
            return
        body = (
            f"Reset two-factor authentication of {user.name} ({user.username})?\n\n"
            "Their authenticator entry and recovery codes stop working at once; "
            "they set up 2FA again at their next sign-in."
        )
        self._confirm_then("Reset 2FA", printable(body), "Reset 2FA", self.app.service.reset_2fa, user,
                           f"2FA of {user.username} reset: Pending.")

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
        body = f"Deactivate {user.name} ({user.username})? They can no longer sign in until reactivated."
        self._confirm_then("Deactivate user", printable(body), "Deactivate", self.app.service.set_active, user,
                           f"{user.username} is deactivated.", False)

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
                self.poll()

        self.app.push_screen(AddUserDialog(self.app.service, self.session), added)

    def action_import_csv(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.call_store(self._import, path, then=self._imported, group="action")

        self.app.push_screen(
            PromptDialog("Import users", "CSV file with header username,name,email,role,team:",
                         placeholder="/path/to/users.csv"),
            chosen,
        )

    def _import(self, path: str) -> int | ImportRejected:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            return self.app.service.import_users(self.session, data)
        except ImportRejected as rejected:
            return rejected

    def _imported(self, result: int | ImportRejected) -> None:
        if isinstance(result, ImportRejected):
            self.app.push_screen(ImportErrorsDialog(result))
            return
        self.notify(f"Imported {result:,} users.")
        self.poll()

    def action_export(self) -> None:
        default = f"~/mfa-users-{datetime.now(UTC):%Y%m%d}.csv"

        def chosen(path: str | None) -> None:
            if path:
                self.call_store(self._export, path, then=lambda n: self.notify(
                    printable(f"Exported {n:,} users to {path}."), markup=False), group="action")

        self.app.push_screen(PromptDialog("Export users", "File to write (.json for JSON, else CSV):",
                                          value=default), chosen)

    def _export(self, path: str) -> int:
        users = self.app.service.list_users(self.session)
        target = Path(path).expanduser()
        fmt = "json" if target.suffix.lower() == ".json" else "csv"
        try:
            write_private(target, lambda out: write_users(users, out, fmt))
        except FileExistsError as exc:
            raise StoreError(f"{path} already exists: choose another name") from exc
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return len(users)

    # -- security tab --------------------------------------------------------------------------
    def _show_policy(self, policy: Policy, rollout: Rollout) -> None:
        box = self.query_one("#enable-2fa", Checkbox)
        with box.prevent(Checkbox.Changed):
            box.value = policy.enabled
        mandatory = policy.mode is PolicyMode.MANDATORY
        box.disabled = mandatory or not self.is_admin
        if mandatory:
            note = "Your provider makes 2FA mandatory on this contact center's plan: it cannot be turned off."
        elif not self.is_admin:
            note = "2FA is optional on this plan; administrators can turn it off. You can view it only."
        else:
            note = "2FA is optional on this plan. Unchecking turns it off for every user (they become Disabled)."
        self.query_one("#policy-note", Static).update(Content(note))
        details = "\n".join(
            [
                f"Issuer (shown in apps)  {printable(policy.issuer)}",
                f"Plan                    2FA {policy.mode.value}; currently {'on' if policy.enabled else 'off'}",
                f"Codes                   TOTP (RFC 6238), {policy.digits} digits, new every {policy.period} s",
                f"Clock window            ±{policy.window} step (±{policy.window * policy.period} s); a code works once",
                f"Lockout                 {policy.max_failures} failures lock for {policy.lock_minutes} min,",
                f"                        doubling each time, up to {policy.lock_cap_minutes} min",
                f"Users                   {rollout.total:,} active accounts",
            ]
        )
        self.query_one("#policy-details", Static).update(Content(details))

    @on(Checkbox.Changed, "#enable-2fa")
    def toggle_2fa(self, event: Checkbox.Changed) -> None:
        if event.value:
            self.call_store(self.app.service.set_enabled, self.session, True, then=self._policy_changed,
                            group="action")
            return
        with event.checkbox.prevent(Checkbox.Changed):
            event.checkbox.value = True  # stays on until confirmed
        count = self.snapshot.rollout.total if self.snapshot else 0

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_store(self.app.service.set_enabled, self.session, False, then=self._policy_changed,
                                group="action")

        body = (
            f"Turn off two-factor authentication for the whole contact center?\n\n"
            f"All {count:,} users become Disabled and sign in with a password only. "
            "Their authenticator entries are kept: turning 2FA on again restores them."
        )
        self.app.push_screen(ConfirmDialog("Turn off 2FA", body, "Turn off 2FA"), answered)

    def _policy_changed(self, policy: Policy) -> None:
        self.notify(f"2FA is now {'on' if policy.enabled else 'off'} for the contact center.")
        self.poll()

    def store_failed(self, error: BaseException | None) -> None:
        self.poll(force=True)  # show the store's truth again (e.g. a refused policy change)

    # -- audit tab -----------------------------------------------------------------------------
    def _read_audit(self) -> list[AuditEvent] | None:
        version = self.app.service.audit_version()
        if version == self._audit_version:
            return None
        self._audit_version = version
        return self.app.service.audit(self.session, limit=AUDIT_LIMIT)

    def _apply_audit(self, events: list[AuditEvent] | None) -> None:
        if events is not None:
            self._audit_events = events
        self._show_audit()

    @on(Input.Changed, "#audit-filter")
    def _show_audit(self) -> None:
        query = self.query_one("#audit-filter", Input).value.strip().casefold()
        table = self.query_one("#audit-table", DataTable)
        table.clear()
        for e in self._audit_events:
            cells = (
                e.at.astimezone(UTC).strftime("%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                e.target or "—",
                e.outcome,
                e.detail or "",
            )
            if query and not any(query in c.casefold() for c in cells[1:4]):
                continue
            table.add_row(*(Content(printable(c)) for c in cells))
