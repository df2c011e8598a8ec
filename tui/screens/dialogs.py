"""Forms over the store: adding a user, the rows an import refused."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, Select, Static

from store.errors import ImportRejected, InvalidInput, problems
from store.models import NewUser, Role, Session, User
from store.service import Service
from store.validation import clean_email, clean_name, clean_team, clean_username, printable

from ..widgets.fields import Field
from .common import Dialog
from ..work import StoreWork


class RoleSelect(Select):
    """Enter goes on to the next field, as in the fields around it; Space or ↓ opens the list. (It
    opened the list each time: the Enter-only walk the form's hint promises never got past it.)
    A binding of the widget, not the form's: it acts in order with a burst's Tabs, as they do."""

    BINDINGS = [Binding("enter", "app.focus_next", "Next field", show=False)]
    enter_moves_on = True  # a burst typed in the field before it goes on past it (tui.widgets.fields)


class AddUserDialog(StoreWork, Dialog[User | None]):
    """A new account. Enter goes to the next field and adds from the last one; every problem is
    listed at once, in the form, before the store is asked."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    FIELDS = (  # (id, label, placeholder)
        ("new-username", "Username", "letters, digits, . _ - @"),
        ("new-name", "Full name", ""),
        ("new-team", "Team", "optional"),
        ("new-email", "Email", "optional"),
        ("new-password", "Password", "optional; at least 8 characters"),
    )

    def __init__(self, service: Service, session: Session):
        super().__init__()
        self.service, self.session = service, session

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form fields", id="add-user"):
            yield Static(Content("Add a user"), classes="title")
            for field_id, label, placeholder in self.FIELDS[:2]:
                yield from self._row(field_id, label, placeholder)
            with Horizontal(classes="row"):
                yield Label(Content("Role"), classes="label")
                yield RoleSelect([(r.value.title(), r) for r in Role], value=Role.AGENT, allow_blank=False, id="new-role")
            for field_id, label, placeholder in self.FIELDS[2:]:
                yield from self._row(field_id, label, placeholder)
            yield Static(id="add-message", classes="message -error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add", variant="primary", id="add")
            yield Static(Content("Enter: next field, Add from the last · Space: the roles · Esc: cancel"),
                         classes="hint")  # fmt: skip

    def _row(self, field_id: str, label: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(Content(label), classes="label")
            last = field_id == self.FIELDS[-1][0]
            yield Field(placeholder=placeholder, id=field_id, password=field_id == "new-password",
                        next_on_enter=not last)  # fmt: skip

    @on(Input.Submitted, "#new-password")
    def submitted(self) -> None:
        self.add()

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#add")
    def add(self) -> None:
        value = lambda id: self.query_one(f"#{id}", Input).value  # noqa: E731
        problems, wrong = [], []
        for field, check in (("new-username", clean_username), ("new-name", clean_name),
                             ("new-team", clean_team), ("new-email", clean_email)):  # fmt: skip
            try:
                check(value(field))
            except InvalidInput as error:
                problems.append(str(error))
                wrong.append(field)
        password = value("new-password")
        if password and len(password) < 8:
            problems.append("password: at least 8 characters")
            wrong.append("new-password")
        if problems:
            self._say("\n".join(problems))
            self.set_focus(self.query_one(f"#{wrong[0]}", Input))  # the first to fix, as the form reads
            return
        new = NewUser(value("new-username"), value("new-name"), self.query_one("#new-role", Select).value,
                      email=value("new-email") or None, team=value("new-team") or None)
        self._say("")

        def added(user: User) -> None:
            if not password:  # they cannot sign in yet: say how they will
                self.app.notify(printable(f"{user.username} has no password yet: set one on the host with "
                                          f"`mfa-console users passwd {user.username}`."), timeout=10, markup=False)
            self.dismiss(user)

        self.call_store(self.service.add_user, self.session, new, password=password or None, then=added,
                        failed=lambda error: self._say(str(error)))  # fmt: skip

    def _say(self, text: str) -> None:
        self.query_one("#add-message", Static).update(Content("\n".join(printable(line) for line in text.split("\n"))))


class ImportErrorsDialog(Dialog[None]):
    """Every refused row with its line; nothing was imported."""

    BINDINGS = [Binding("escape,enter", "dismiss(None)", "Close")]

    def __init__(self, rejected: ImportRejected):
        super().__init__()
        self.rejected = rejected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="import-errors"):
            yield Static(Content(f"Nothing imported: {problems(len(self.rejected.errors))} in the file"),
                         classes="title")  # fmt: skip
            with VerticalScroll():
                for error in self.rejected.errors:
                    yield Static(Content(printable(str(error))), classes="row-error")
            yield Static(Content("Fix the file and import it again. Enter: close"), classes="hint")
