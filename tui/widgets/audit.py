"""The Audit tab: the audit log, newest first, filtered as you type.

The table has the keyboard when the tab opens; typing a letter starts the filter (so `q` filters
rather than quits), digits 1-4 still switch tabs. The filter matches every column: time, actor,
action, target, outcome, detail. Esc clears the filter, and a second Esc leaves it. The event
under the cursor is shown whole below the table, since a narrow terminal cuts the columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Static

from store.models import AuditEvent
from store.validation import printable

from .table import Column, LineTable
from .fields import FilterField, type_into

COLUMNS = (
    Column("Time (UTC)", 16),
    Column("Actor", 8, grow=2),
    Column("Action", 14),
    Column("Target", 8, grow=2),
    Column("Outcome", 7),
    Column("Detail", 8, grow=3, optional=True),
)
TAB_KEYS = "1234?"  # the tab keys and the keys panel: never typed into the filter from the table


def cells(event: AuditEvent) -> tuple[str, ...]:
    return (event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"), event.actor, event.action,
            event.target or "—", event.outcome, event.detail or "")  # fmt: skip


class AuditTable(LineTable, inherit_bindings=False):
    """Letters typed here go to the filter (a burst of them keeps its order), `q` too."""

    BINDINGS = LineTable.MOVES  # not j and k: letters filter here (`?` listed them as moves)
    letters_filter = True  # the footer does not offer `q Quit` here (MfaConsoleApp.check_action)

    def on_key(self, event: events.Key) -> None:
        if not event.is_printable or event.character in TAB_KEYS:
            return
        event.stop()
        event.prevent_default()
        view = self.parent
        if isinstance(view, AuditView):
            view.start_filter(event)


class AuditView(Vertical):
    BINDINGS = [Binding("escape", "clear_filter", "Clear filter", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._events: Sequence[AuditEvent] = ()

    def compose(self) -> ComposeResult:
        yield FilterField(placeholder="Type to filter: user, action, target, outcome, detail", id="audit-filter",
                          leave_to=lambda: self.table, on_clear=self.action_clear_filter,
                          select_on_focus=False)  # letters typed on the table add to it  # fmt: skip
        yield AuditTable(COLUMNS, _key, cells, id="audit-table")
        yield Static(id="audit-selected")

    @property
    def table(self) -> AuditTable:
        return self.query_one(AuditTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#audit-filter", Input)

    def show(self, events_: Sequence[AuditEvent]) -> None:
        self._events = events_
        self._refilter()

    @on(Input.Changed, "#audit-filter")
    def _refilter(self) -> None:
        query = self.filter_input.value.strip().casefold()
        rows = [e for e in self._events if not query or any(query in c.casefold() for c in cells(e))]
        self.table.set_rows(rows)
        self._show_selected()

    @on(LineTable.Highlighted)
    def _show_selected(self) -> None:
        table = self.table
        rows = table.rows
        if not rows:
            lines = ["No event matches the filter." if self.filter_input.value.strip() else "No events yet."]
        else:
            e = rows[min(table.cursor, len(rows) - 1)]
            at = e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            lines = [printable(f"{at}  {e.actor} · {e.action} · {e.target or '—'} · {e.outcome}"), printable(e.detail)]
        self.query_one("#audit-selected", Static).update(Content("\n".join(lines)))

    def start_filter(self, key: events.Key) -> None:
        """Typing on the table: the filter takes the keyboard, and this first letter."""
        field = self.filter_input
        self.screen.set_focus(field)  # at once: the rest of a burst of keys follows it
        type_into(field, key)  # now, in the order typed

    def action_clear_filter(self) -> None:
        field = self.filter_input
        if field.value:
            field.value = ""
        elif field.has_focus:
            self.screen.set_focus(self.table)

    def focus_first(self) -> None:
        self.screen.set_focus(self.table)


def _key(event: AuditEvent) -> str:
    return str(event.id)
