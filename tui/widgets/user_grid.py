"""The Users grid: a Line-API view that draws only the rows on screen.

A DataTable measures every cell of every row up front (about 10 s for 100k rows here), so the
grid keeps the filtered, sorted list itself and renders each visible line on demand. The sorting
and the search texts are prepared once per snapshot, in a thread (`UserIndex`); a keystroke only
scans search texts, and usually only those the previous query matched.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip

from store.models import Status, User
from store.validation import printable

from .rows import CursorRows

BADGES = {Status.PENDING: "○ Pending", Status.ACTIVATED: "● Activated", Status.DISABLED: "– Disabled"}
DEACTIVATED, LOCKED = "✕ Deactivated", "▲ Locked"
ORDERS_KEPT = 2  # sort orders kept per snapshot (each holds a search text per user)
RESULTS_KEPT = 8  # filter results kept per order: backspace, and the base a longer query refines
PATCHED_AT_MOST = 32  # users changed in place that a kept order takes in; more: sorted again
USERNAME_SHOWN = 20  # a username this long is never cut at 80 columns: it is the identity


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    min_width: int  # at least the title and a sort arrow
    grow: int  # share of the spare width
    cell: Callable[[User], str]
    sort_key: Callable[[User], object]
    optional: bool = False  # left out, right to left, when the grid is too narrow


def _day(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d") if at else "—"


def badge(user: User) -> str:
    """The Status cell: the account's state when it keeps the user out, else the 2FA status."""
    if not user.active:
        return DEACTIVATED
    return LOCKED if user.locked_until else BADGES[user.status]


_EPOCH = datetime.fromtimestamp(0, UTC)  # sorts never-activated users first
COLUMNS: tuple[Column, ...] = (
    Column("username", "Username", 10, 1, lambda u: u.username, lambda u: u.username.casefold()),
    Column("name", "Name", 14, 3, lambda u: u.name, lambda u: u.name.casefold()),
    Column("role", "Role", 10, 0, lambda u: u.role.value, lambda u: u.role.value),
    Column("status", "Status", 13, 0, badge, lambda u: (u.active, u.locked_until is None, u.status.value)),
    Column("team", "Team", 8, 2, lambda u: u.team or "—", lambda u: (u.team or "").casefold(), optional=True),
    Column("activated", "Activated", 11, 0, lambda u: _day(u.activated_at), lambda u: u.activated_at or _EPOCH,
           optional=True),
    Column("last_login", "Last login", 12, 0, lambda u: _day(u.last_login_at), lambda u: u.last_login_at or _EPOCH,
           optional=True),
)


def haystack(user: User) -> str:
    """What a search matches: username, name and team, case-folded; a query cannot span two of them."""
    return f"{user.username}\n{user.name}\n{user.team or ''}".casefold()


@dataclass(frozen=True, slots=True)
class Filter:
    query: str = ""  # case-folded; "" matches everyone
    status: Status | None = None
    team: str | None = None  # "" for users without a team; None for every team


def no_match(wanted: Filter) -> str:
    """Why the grid is empty: what filters it, each with the key that undoes it."""
    parts = []
    if wanted.query:
        parts.append(f'search "{wanted.query}" (Esc)')
    if wanted.status is not None:
        parts.append(f"{wanted.status.value.title()} only (f)")
    if wanted.team is not None:
        parts.append(f"team {wanted.team or '(none)'} (Esc)")
    return printable(f"No user matches: {', '.join(parts)}.")


class Order:
    """The users in one sort order, and the lists a search scans, built in that same order: a
    keystroke then reads memory in sequence (a shuffled list's texts take several times longer).

    The lists take tens of ms at 100k users and the first rows need none of them: `prepare`
    builds them once, from a thread, or else wherever they are first needed.
    """

    def __init__(self, users: list[User]):
        self.users = users
        self._lock = threading.Lock()
        self._lists: tuple[list[str], list[str], list[Status], list[str]] | None = None
        self.requested = False  # a thread to `prepare` it was asked for
        # Filter -> (positions in `users`, ascending; their search texts)
        self._results: dict[Filter, tuple[Sequence[int], list[str]]] = {}

    @property
    def prepared(self) -> bool:
        return self._lists is not None

    def prepare(self) -> tuple[list[str], list[str], list[Status], list[str]]:
        """(usernames, search texts, statuses, teams), each in this order."""
        with self._lock:
            if self._lists is None:
                users = self.users
                self._lists = ([u.username for u in users], [haystack(u) for u in users],
                               [u.status for u in users], [u.team or "" for u in users])  # fmt: skip
            return self._lists

    def patched(self, changed: list[tuple[User, User]]) -> Order:
        """This order with each (old, new) user swapped in place: new records whose places in
        it are those of the old ones. Its search lists come along (built here if need be)."""
        usernames, haystacks, statuses, teams = self.prepare()
        users, haystacks, statuses, teams = list(self.users), list(haystacks), list(statuses), list(teams)
        for old, new in changed:
            at = usernames.index(old.username)
            users[at], haystacks[at], statuses[at], teams[at] = new, haystack(new), new.status, new.team or ""
        order = Order(users)
        order._lists = usernames, haystacks, statuses, teams  # the usernames did not change
        return order

    def position(self, username: str) -> int | None:
        try:
            return self.prepare()[0].index(username)  # compares strings in C: about 1 ms for 100k
        except ValueError:
            return None

    def select(self, wanted: Filter) -> Sequence[int]:
        """The positions of the users `wanted` lets through, ascending (so still in sort order)."""
        if wanted == Filter():
            return range(len(self.users))  # needs no list: the first rows show before they are built
        return self._select(wanted)[0]

    def _select(self, wanted: Filter) -> tuple[Sequence[int], list[str]]:
        result = self._results.pop(wanted, None)
        if result is None:
            result = self._compute(wanted)
            while len(self._results) >= RESULTS_KEPT:
                del self._results[next(iter(self._results))]
        self._results[wanted] = result  # the most recently used last
        return result

    def _compute(self, wanted: Filter) -> tuple[Sequence[int], list[str]]:
        if wanted.query:
            # A query that contains an earlier one matches a subset of what that one matched.
            bases = [f for f in self._results if f.query in wanted.query
                     and (f.status, f.team) == (wanted.status, wanted.team)]  # fmt: skip
            base = max(bases, key=lambda f: len(f.query), default=Filter("", wanted.status, wanted.team))
            positions, haystacks = self._select(base)
            query = wanted.query
            keep = [query in h for h in haystacks]
            return list(compress(positions, keep)), list(compress(haystacks, keep))
        _, haystacks, statuses, teams = self.prepare()
        positions: Sequence[int] = range(len(self.users))
        if wanted.status is None and wanted.team is None:
            return positions, haystacks
        status, team = wanted.status, wanted.team
        keep = [(status is None or s is status) and (team is None or t == team)
                for s, t in zip(statuses, teams)]  # fmt: skip
        return list(compress(positions, keep)), list(compress(haystacks, keep))


class UserIndex:
    """One snapshot's users, ready for the grid. An order is a sort of every user (tens of ms at
    100k), so the main screen's poll thread builds the one in use, and the grid's thread others."""

    def __init__(self, users: Sequence[User] = ()):
        self.users = users
        # The username column's width: the longest username, up to USERNAME_SHOWN.
        longest = max(map(len, (u.username for u in users)), default=0)
        self.username_width = max(COLUMNS[0].min_width, min(longest, USERNAME_SHOWN))
        self._by_username: list[User] | None = None
        self._orders: dict[tuple[int, bool], Order] = {}

    @classmethod
    def following(cls, previous: UserIndex | None, users: Sequence[User]) -> UserIndex:
        """The index of `users`, the snapshot after `previous`'s. A sign-in or a reset remakes
        one user in place (the store lists users in a stable order); the orders kept whose
        places those users keep are patched, not sorted again (~80 ms at 100k users)."""
        index = cls(users)
        if previous is None or len(previous.users) != len(users):
            return index
        changed = [(old, new) for old, new in zip(previous.users, users) if old is not new]
        if len(changed) > PATCHED_AT_MOST or any(old.username != new.username for old, new in changed):
            return index
        for (column, reverse), order in tuple(previous._orders.items()):  # the grid's thread may add one
            sort_key = COLUMNS[column].sort_key
            if all(sort_key(old) == sort_key(new) for old, new in changed):
                index._orders[(column, reverse)] = order.patched(changed)
        if (0, False) in index._orders:
            index._by_username = index._orders[(0, False)].users
        return index

    def cached(self, column: int, reverse: bool) -> Order | None:
        return self._orders.get((column, reverse))

    def order(self, column: int, reverse: bool) -> Order:
        order = self._orders.get((column, reverse))
        if order is None:
            if self._by_username is None:
                self._by_username = sorted(self.users, key=COLUMNS[0].sort_key)
            if column == 0 and not reverse:
                users = self._by_username
            else:  # sorted from the username order, and stable: equal values stay by username
                users = sorted(self._by_username, key=COLUMNS[column].sort_key, reverse=reverse)
            order = Order(users)
            while len(self._orders) >= ORDERS_KEPT:
                del self._orders[next(iter(self._orders))]
            self._orders[(column, reverse)] = order
        return order


class Rows(Sequence[User]):
    """The users shown: positions into an order, read without copying the users out."""

    __slots__ = ("users", "positions")

    def __init__(self, users: list[User], positions: Sequence[int]):
        self.users, self.positions = users, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.users[p] for p in self.positions[index]]
        return self.users[self.positions[index]]


class UserGrid(CursorRows):
    """Rows of users; keeps the cursor on the same user when the data or the filter changes."""

    COMPONENT_CLASSES = {
        "user-grid--header",
        "user-grid--cursor",
        "user-grid--pending",
        "user-grid--activated",
        "user-grid--disabled",
        "user-grid--inactive",
        "user-grid--locked",
        "user-grid--empty",
    }
    DEFAULT_CSS = """
    UserGrid {
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    UserGrid > .user-grid--header {
        text-style: bold;
        background: $panel;
    }
    UserGrid > .user-grid--cursor {
        background: $block-cursor-blurred-background;
    }
    UserGrid:focus > .user-grid--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    /* The status words carry the meaning; colour only helps (and is left off the cursor row). */
    UserGrid > .user-grid--pending {
        color: $text-warning;
        text-style: bold;
    }
    UserGrid > .user-grid--activated {
        color: $text-success;
        text-style: bold;
    }
    UserGrid > .user-grid--disabled {
        color: $text-disabled;
    }
    UserGrid > .user-grid--locked {
        color: $text-error;
        text-style: bold;
    }
    UserGrid > .user-grid--inactive {
        text-style: dim;
    }
    UserGrid > .user-grid--empty {
        color: $text-muted;
    }
    """
    BINDINGS = [
        Binding("s", "sort", "Sort", show=False, tooltip="Sort by the next column; S reverses"),
        Binding("S", "reverse", "Reverse sort", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)
    sort_column: reactive[int] = reactive(0)
    sort_reverse: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._index = UserIndex()
        self._order = self._index.order(0, False)
        self._filter = Filter()
        self._rows = Rows(self._order.users, range(0))
        self._layout: tuple[tuple[int, int], list[tuple[int, int]]] = ((-1, -1), [])
        # Another sort asked for with the cursor on the first row: show the new first rows. With a
        # user chosen further down, the cursor stays on that user.
        self._resorted = False

    # -- data ----------------------------------------------------------------------------------
    @property
    def rows(self) -> Sequence[User]:
        """The users shown, filtered and sorted."""
        return self._rows

    @property
    def selected(self) -> User | None:
        return self._rows[self.cursor] if 0 <= self.cursor < len(self._rows) else None

    @property
    def sort(self) -> tuple[int, bool]:
        """(column, reverse): what `UserIndex.order` takes."""
        return self.sort_column, self.sort_reverse

    def set_users(self, index: UserIndex) -> None:
        """New data; the order for the current sort is best built already (off the event loop)."""
        self._index = index
        self._arrange()

    def select(self, username: str) -> bool:
        """Puts the cursor on `username` if it is shown."""
        position = self._order.position(username)
        if position is None:
            return False
        i = bisect_left(self._rows.positions, position)
        if i < len(self._rows) and self._rows.positions[i] == position:
            self.cursor = i
            return True
        return False

    def from_the_top(self) -> None:
        """The next rows shown (a filter, a sort) start at the first, cursor and view: a list
        opened anew, not the old one's place."""
        self._resorted = True

    def set_filter(self, wanted: Filter) -> None:
        """Which users show; the cursor stays on the same user."""
        self._filter = wanted
        self._show(self._order)

    def _arrange(self) -> None:
        order = self._index.cached(*self.sort)
        if order is not None:
            self._show(order)
        else:
            self._build_order(self._index, self.sort)

    # Not exclusive: `_built` drops a stale result, and a cancelled worker only breaks its waiters.
    @work(thread=True, group="grid-sort", exit_on_error=False, description="sort the users")
    def _build_order(self, index: UserIndex, sort: tuple[int, bool]) -> None:
        order = index.order(*sort)
        order.prepare()
        self.app.call_from_thread(self._built, index, sort, order)

    @work(thread=True, group="grid-prepare", exit_on_error=False, description="prepare the search")
    def _prepare(self, order: Order) -> None:
        order.prepare()

    def _built(self, index: UserIndex, sort: tuple[int, bool], order: Order) -> None:
        if index is self._index and sort == self.sort:  # else newer data or another sort is on its way
            self._show(order)

    def _show(self, order: Order) -> None:
        positions = order.select(self._filter)
        kept = None  # the selected user's position in `order`
        if 0 <= self.cursor < len(self._rows):
            if order is self._order:
                kept = self._rows.positions[self.cursor]
            else:
                kept = order.position(self._rows[self.cursor].username)
        index = None
        if kept is not None:
            i = bisect_left(positions, kept)
            index = i if i < len(positions) and positions[i] == kept else None
        self._order = order
        self._rows = Rows(order.users, positions)
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        if self._resorted:  # a sort asked for from the top shows the new first rows, not the middle
            self._resorted, index = False, 0
            self.scroll_home(animate=False)
        self.cursor = min(index if index is not None else self.cursor, max(len(self._rows) - 1, 0))
        self.refresh()

    def watch_sort_column(self) -> None:
        self._arrange()

    def watch_sort_reverse(self) -> None:
        self._arrange()

    def watch_cursor(self) -> None:
        self._scroll_to_cursor()
        self.refresh()

    # -- actions -------------------------------------------------------------------------------
    def action_sort(self) -> None:
        """The next column shown: a column the width leaves out is no sort one can see."""
        self._resorted = self.cursor == 0
        shown = [column for column, _ in self._column_widths(self.size.width)] or [0]
        self.sort_column = next((c for c in shown if c > self.sort_column), shown[0])

    def action_reverse(self) -> None:
        self._resorted = self.cursor == 0
        self.sort_reverse = not self.sort_reverse

    def on_click(self, event: events.Click) -> None:
        y = event.y
        if y == 0:
            x = event.x + int(self.scroll_x)
            for i, width in self._column_widths(self.size.width):
                if x < width + 1:
                    self._resorted = self.cursor == 0
                    if i == self.sort_column:
                        self.sort_reverse = not self.sort_reverse
                    else:
                        self.sort_column = i
                    return
                x -= width + 1
        elif self._rows:
            self.cursor = max(0, min(int(self.scroll_y) + y - 1, len(self._rows) - 1))

    # -- drawing -------------------------------------------------------------------------------
    def _column_widths(self, width: int) -> list[tuple[int, int]]:
        """(column, width) of the columns shown: optional ones go, right to left, before the
        username would be cut."""
        key = (width, self._index.username_width)
        if self._layout[0] != key:
            mins = [max(c.min_width, self._index.username_width) if i == 0 else c.min_width
                    for i, c in enumerate(COLUMNS)]  # fmt: skip
            shown = list(range(len(COLUMNS)))
            need = lambda: sum(mins[i] + 1 for i in shown)  # noqa: E731
            for i in reversed(range(len(COLUMNS))):
                if need() > width and COLUMNS[i].optional:
                    shown.remove(i)
            spare = max(width - need(), 0)
            grow = sum(COLUMNS[i].grow for i in shown) or 1
            widths = [mins[i] + spare * COLUMNS[i].grow // grow for i in shown]
            widths[1] += width - sum(widths) - len(shown)  # what rounding left, to the name
            self._layout = (key, list(zip(shown, widths)))
        return self._layout[1]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        layout = self._column_widths(width)
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("user-grid--header")
            titles = []
            for i, w in layout:
                arrow = (" ▼" if self.sort_reverse else " ▲") if i == self.sort_column else ""
                titles.append(_fit(COLUMNS[i].title + arrow, w))
            return Strip([Segment(" ".join(titles) + " ", base + header)]).crop_extend(0, width, base + header)
        if not self._order.requested and not self._order.prepared:
            # The first rows of an order are drawn before its search lists exist. Asked for from
            # here, they are built once this frame is written: a thread during the frame slows it.
            self._order.requested = True
            self.call_after_refresh(self._prepare, self._order)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._rows):
            if index == 0:  # nothing to show: say why, rather than a blank grid
                empty = no_match(self._filter)
                if self._filter == Filter():
                    empty = "No users yet." if not self._index.users else "Reading the users…"
                style = base + self.get_component_rich_style("user-grid--empty", partial=True)
                return Strip([Segment(_fit(empty, width), style)]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        user = self._rows[index]
        row_style = base + self.get_component_rich_style("user-grid--cursor", partial=True) if index == self.cursor else base
        if not user.active:
            row_style += self.get_component_rich_style("user-grid--inactive", partial=True)
        state = "inactive" if not user.active else "locked" if user.locked_until else user.status.value
        segments = []
        for i, w in layout:
            column = COLUMNS[i]
            text = _fit(printable(column.cell(user)), w)
            if column.key == "status":
                # The colour marks the symbol; the word keeps the row's own colour (a coloured
                # word reads poorly in light themes and on the cursor row), in bold.
                status_style = self.get_component_rich_style(f"user-grid--{state}", partial=True)
                word = row_style + Style(bold=status_style.bold, dim=status_style.dim)
                mark = word if index == self.cursor else row_style + status_style
                segments += [Segment(text[:1], mark), Segment(text[1:], word)]
            else:
                segments.append(Segment(text, row_style))
            segments.append(Segment(" ", row_style))
        return Strip(segments).crop_extend(0, width, row_style)


def _fit(text: str, width: int) -> str:
    """`text` padded or cut to `width` cells (wide characters count twice)."""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, max(width - 1, 0)) + "…"


