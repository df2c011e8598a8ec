"""The Users tab: the rollout in one line, the search box, the filter line and the grid.

Search, status filter and team are reactives; any change re-filters the grid in the same frame.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Input, ProgressBar, Static

from store import report
from store.models import Rollout, Status, User
from store.validation import printable

from .user_grid import Filter, UserGrid, UserIndex
from .fields import FilterField

STATUS_FILTERS: tuple[Status | None, ...] = (None, Status.PENDING, Status.ACTIVATED, Status.DISABLED)


class UsersView(Vertical):

    search: reactive[str] = reactive("", init=False)
    status_filter: reactive[Status | None] = reactive(None, init=False)
    team_filter: reactive[str | None] = reactive(None, init=False)  # "" is "no team"; None every team

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._total = 0  # every account in the store, deactivated ones too
        self._deactivated = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="rollout"):
            yield Static(id="rollout-text")
            yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="rollout-bar")
        yield FilterField(placeholder="Search username, name or team (Enter: to the grid, Esc: clear)",
                          id="search", leave_to=lambda: self.grid, on_clear=self.clear)  # fmt: skip
        yield Static(id="filter-line")
        yield UserGrid(id="grid")

    def on_mount(self) -> None:
        search = self.search_box
        search.display = False
        # Watched directly: the grid is filtered in the frame that echoes the key (Input.Changed
        # would arrive after that frame, and the result one frame later).
        self.watch(search, "value", self._typed, init=False)

    @property
    def grid(self) -> UserGrid:
        return self.query_one(UserGrid)

    @property
    def search_box(self) -> Input:
        return self.query_one("#search", Input)

    @property
    def selected(self) -> User | None:
        return self.grid.selected

    def show(self, index: UserIndex, rollout: Rollout) -> None:
        """A new snapshot: the users (their sort prepared) and the rollout counts."""
        self._total = len(index.users)
        self._deactivated = len(index.users) - rollout.total  # the rollout counts active accounts
        text = (
            f"Activated {rollout.activated:,} of {rollout.total:,} ({report.percent_label(rollout.activated, rollout.total)})"
            f" · Pending {rollout.pending:,} · Disabled {rollout.disabled:,}"
        )
        self.query_one("#rollout-text", Static).update(Content(text))
        self.query_one("#rollout-bar", ProgressBar).update(progress=report.floor_percent(rollout.activated, rollout.total))
        self.grid.set_users(index)
        self._filter()

    # -- search and filters --------------------------------------------------------------------
    def open_search(self) -> None:
        search = self.search_box
        search.display = True
        self.screen.set_focus(search)

    def _typed(self, value: str) -> None:
        self.search = value.strip()

    def show_team(self, team: str) -> None:
        """The team's users (chosen on the Rollout tab): a search typed before would hide them."""
        search = self.search_box
        search.value = ""
        search.display = False
        self.grid.from_the_top()
        self.team_filter = team
        self._filter()  # the same team again is no change to the watcher, and the top still applies

    def clear(self) -> bool:
        """Esc: the search first, then the team chosen on the Rollout tab. False: nothing to clear."""
        search = self.search_box
        if search.display:
            search.value = ""
            search.display = False
            self.screen.set_focus(self.grid)
            return True
        if self.team_filter is not None:
            self.team_filter = None
            return True
        return False

    def cycle_status(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]

    def watch_search(self) -> None:
        self._filter()

    def watch_status_filter(self) -> None:
        self._filter()

    def watch_team_filter(self) -> None:
        self._filter()

    def _filter(self) -> None:
        grid = self.grid
        grid.set_filter(Filter(self.search.casefold(), self.status_filter, self.team_filter))
        status = self.status_filter.value.title() if self.status_filter else "all"
        shown = f"Showing {len(grid.rows):,} of {self._total:,} accounts"
        if self._deactivated:
            shown += f" ({self._deactivated:,} deactivated)"
        parts = [shown, f"filter (f): {status}"]
        if self.search:
            parts.append(f'search "{self.search}"')
        if self.team_filter is not None:
            parts.append(f'team "{self.team_filter or report.NO_TEAM}" (esc: all)')
        self.query_one("#filter-line", Static).update(Content(printable(" · ".join(parts))))

    def focus_first(self) -> None:
        self.screen.set_focus(self.grid)
