"""Pieces every screen shares: dialogs, the error screen."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen, ScreenResultType
from textual.widgets import Button, Input, Static

from store.validation import printable

from ..widgets.fields import Field


class ErrorScreen(Screen):
    """The store cannot be opened: say why, change nothing, let the user quit."""

    BINDINGS = [Binding("q,escape,enter", "app.quit", "Quit")]

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(Content("mfa-console cannot open the store"), classes="title")
            yield Static(Content(printable(self.message)), id="error-message")
            yield Static(Content("Nothing was changed. Press q to quit."), classes="hint")


class Dialog(ModalScreen[ScreenResultType]):
    """A modal screen that keeps the app's `?` and `q`: Textual stops at a modal screen when it
    looks for a key's binding, so the app's own never reach it. (A focused field still takes
    them as text; `escape` hides the keys as a priority binding, so it needs no copy here.)"""

    BINDINGS = [
        Binding("question_mark", "app.toggle_keys", "Keys", show=False),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    def on_mount(self) -> None:
        # A toast still showing (the last action's) is drawn over a dialog's lower edge, its buttons.
        self.app.clear_notifications()


class ConfirmDialog(Dialog[bool]):
    """A yes/no question; Enter confirms only when the confirm button has focus."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, title: str, body: str, confirm: str, *, danger: bool = True):
        super().__init__()
        self.title_text, self.body, self.confirm_label, self.danger = title, body, confirm, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.title_text), classes="title")
            yield Static(Content(self.body), classes="body")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, id="confirm", variant="error" if self.danger else "primary")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")


class PromptDialog(Dialog[str | None]):
    """One line of input (a file path): Enter accepts, Escape cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, body: str, *, value: str = "", placeholder: str = ""):
        super().__init__()
        self.title_text, self.body, self.value, self.placeholder = title, body, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.title_text), classes="title")
            yield Static(Content(self.body), classes="body")
            yield Field(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(Content("Enter: OK · Esc: cancel"), classes="hint", id="prompt-hint")

    @on(Input.Submitted)
    def accept(self, event: Input.Submitted) -> None:
        if not event.value.strip():  # said here: an Enter that closed the dialog looked like nothing happened
            self.query_one("#prompt-hint", Static).update(Content("Type it first · Enter: OK · Esc: cancel"))
            return
        self.dismiss(event.value.strip())
