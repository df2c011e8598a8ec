"""Forms over the store: adding a user, the rows an import refused."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from store.errors import ImportRejected
from store.models import NewUser, Role, Session, User
from store.service import Service
from store.validation import printable

from ..widgets.fields import Field, TypedKeysGuard
from ..work import StoreWork


class AddUserDialog(TypedKeysGuard, StoreWork, ModalScreen[User | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, service: Service, session: Session):
        super().__init__()
        self.service, self.session = service, session

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form", id="add-user"):
            yield Static(Content("Add a user"), classes="title")
            yield Field(placeholder="Username", id="new-username", next_on_enter=True)
            yield Field(placeholder="Full name", id="new-name", next_on_enter=True)
            yield Select([(r.value.title(), r) for r in Role], value=Role.AGENT, allow_blank=False, id="new-role")
            yield Field(placeholder="Team (optional)", id="new-team", next_on_enter=True)
            yield Field(placeholder="Email (optional)", id="new-email", next_on_enter=True)
            yield Field(placeholder="Password (optional, at least 8 characters)", password=True, id="new-password")
            yield Static(id="add-message", classes="message -error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add", variant="primary", id="add")

    @on(Input.Submitted)
    def next_field(self) -> None:
        self.focus_next()

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#add")
    def add(self) -> None:
        value = lambda id: self.query_one(f"#{id}", Input).value  # noqa: E731
        new = NewUser(value("new-username"), value("new-name"), self.query_one("#new-role", Select).value,
                      email=value("new-email") or None, team=value("new-team") or None)
        password = value("new-password") or None
        self.call_store(self.service.add_user, self.session, new, password=password, then=self.dismiss)

    def store_failed(self, error: BaseException | None) -> None:
        self.query_one("#add-message", Static).update(Content(printable(str(error))))


class ImportErrorsDialog(TypedKeysGuard, ModalScreen[None]):
    """Every refused row with its line; nothing was imported."""

    BINDINGS = [Binding("escape,enter", "dismiss(None)", "Close")]

    def __init__(self, rejected: ImportRejected):
        super().__init__()
        self.rejected = rejected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="import-errors"):
            yield Static(Content(f"Nothing imported: {len(self.rejected.errors)} bad row(s)"), classes="title")
            with VerticalScroll():
                for error in self.rejected.errors:
                    yield Static(Content(printable(str(error))), classes="row-error")
            yield Static(Content("Fix the file and import it again. Enter: close"), classes="hint")
