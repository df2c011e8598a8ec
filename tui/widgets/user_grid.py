"""The Users grid: a Line-API view that draws only the rows on screen.

A DataTable measures every cell of every row up front (about 10 s for 100k rows here), so the
grid keeps the filtered, sorted list itself and renders each visible line on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip

from store.models import Status, User

from ..text import printable
from .rows import CursorRows

BADGES = {Status.PENDING: "○ Pending", Status.ACTIVATED: "● Activated", Status.DISABLED: "– Disabled"}


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    min_width: int
    grow: int  # share of the spare width
    cell: Callable[[User], str]
    sort_key: Callable[[User], object]


def _day(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%d %b %y") if at else "—"


def _flags(user: User) -> str:
    return " (off)" if not user.active else " (locked)" if user.locked_until else ""


_EPOCH = datetime.fromtimestamp(0, UTC)  # sorts never-activated users first
COLUMNS: tuple[Column, ...] = (
    Column("username", "Username", 10, 2, lambda u: u.username, lambda u: u.username.casefold()),
    Column("name", "Name", 10, 3, lambda u: u.name + _flags(u), lambda u: u.name.casefold()),
    Column("role", "Role", 10, 0, lambda u: u.role.value, lambda u: u.role.value),
    Column("team", "Team", 8, 2, lambda u: u.team or "—", lambda u: (u.team or "").casefold()),
    Column("status", "2FA", 11, 0, lambda u: BADGES[u.status], lambda u: u.status.value),
    Column("activated", "Activated", 9, 0, lambda u: _day(u.activated_at), lambda u: u.activated_at or _EPOCH),
    Column("last_login", "Last login", 10, 0, lambda u: _day(u.last_login_at), lambda u: u.last_login_at or _EPOCH),
)


class UserGrid(CursorRows):
    """Rows of users; keeps the cursor on the same user when the data or the filter changes."""

    COMPONENT_CLASSES = {
        "user-grid--header",
        "user-grid--cursor",
        "user-grid--pending",
        "user-grid--activated",
        "user-grid--disabled",
        "user-grid--inactive",
    }
    BINDINGS = [
        Binding("s", "sort", "Sort", tooltip="Sort by the next column; S reverses"),
        Binding("S", "reverse", "Reverse sort", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)
    sort_column: reactive[int] = reactive(0)
    sort_reverse: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._sorted: list[tuple[User, str]] = []  # every user with its search text, in sort order
        self._match: Callable[[User, str], bool] = lambda user, haystack: True
        self._rows: list[User] = []
        self._widths: list[int] = []

    # -- data ----------------------------------------------------------------------------------
    @property
    def rows(self) -> list[User]:
        """The users shown, filtered and sorted."""
        return self._rows

    @property
    def selected(self) -> User | None:
        return self._rows[self.cursor] if 0 <= self.cursor < len(self._rows) else None

    def set_users(self, users: Sequence[User], haystacks: Sequence[str]) -> None:
        """New data: sorted once here, so each keystroke of a search only filters."""
        self._sorted = list(zip(users, haystacks))
        self._sort()

    def set_filter(self, match: Callable[[User, str], bool]) -> None:
        """`match(user, haystack)` decides which users show; the cursor stays on the same user."""
        self._match = match
        self._show()

    def _sort(self) -> None:
        key = COLUMNS[self.sort_column].sort_key
        self._sorted.sort(key=lambda pair: key(pair[0]), reverse=self.sort_reverse)
        self._show()

    def _show(self) -> None:
        keep = self.selected.username if self.selected else None
        match = self._match
        self._rows = [user for user, haystack in self._sorted if match(user, haystack)]
        index = next((i for i, u in enumerate(self._rows) if u.username == keep), None) if keep else None
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        self.cursor = min(index if index is not None else self.cursor, max(len(self._rows) - 1, 0))
        self.refresh()

    def watch_sort_column(self) -> None:
        self._sort()

    def watch_sort_reverse(self) -> None:
        self._sort()

    def watch_cursor(self) -> None:
        self._scroll_to_cursor()
        self.refresh()

    # -- actions -------------------------------------------------------------------------------
    def action_sort(self) -> None:
        self.sort_column = (self.sort_column + 1) % len(COLUMNS)

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def on_click(self, event: events.Click) -> None:
        y = event.y
        if y == 0:
            x = event.x + int(self.scroll_x)
            for i, width in enumerate(self._widths):
                if x < width + 1:
                    if i == self.sort_column:
                        self.sort_reverse = not self.sort_reverse
                    else:
                        self.sort_column = i
                    return
                x -= width + 1
        elif self._rows:
            self.cursor = max(0, min(int(self.scroll_y) + y - 1, len(self._rows) - 1))

    # -- drawing -------------------------------------------------------------------------------
    def on_resize(self) -> None:
        self._widths = []  # CursorRows.on_resize runs too: virtual size and scroll

    def _column_widths(self, width: int) -> list[int]:
        if not self._widths or sum(self._widths) + len(self._widths) != width:
            spare = width - sum(c.min_width for c in COLUMNS) - len(COLUMNS)
            grow = sum(c.grow for c in COLUMNS)
            widths = [c.min_width + max(spare, 0) * c.grow // grow for c in COLUMNS]
            widths[1] += width - sum(widths) - len(COLUMNS)  # rounding left-over to the name
            self._widths = widths
        return self._widths

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        widths = self._column_widths(width)
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("user-grid--header")
            titles = []
            for i, column in enumerate(COLUMNS):
                arrow = (" ▼" if self.sort_reverse else " ▲") if i == self.sort_column else ""
                titles.append(_fit(column.title + arrow, widths[i]))
            return Strip([Segment(" ".join(titles) + " ", base + header)]).crop_extend(0, width, base + header)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, base)
        user = self._rows[index]
        row_style = base + self.get_component_rich_style("user-grid--cursor", partial=True) if index == self.cursor else base
        if not user.active:
            row_style += self.get_component_rich_style("user-grid--inactive", partial=True)
        segments = []
        for i, column in enumerate(COLUMNS):
            text = _fit(printable(column.cell(user)), widths[i])
            style = row_style
            if column.key == "status":
                style = row_style + self.get_component_rich_style(f"user-grid--{user.status.value}", partial=True)
            segments.append(Segment(text, style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).crop_extend(0, width, row_style)


def _fit(text: str, width: int) -> str:
    """`text` padded or cut to `width` cells (wide characters count twice)."""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, max(width - 1, 0)) + "…"


