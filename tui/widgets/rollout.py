"""The Rollout tab: how far the 2FA rollout is, by team and over time, and who to chase.

The main screen hands it each new snapshot of users (`show`). The numbers come from store.report,
computed in a thread (about 0.1 s for 100k users) and applied on the UI thread, in place: the
tables keep their selection and scroll position, the chart gets new data in the same widget.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import ProgressBar, Static
from textual_plotext import PlotextPlot

from store import report
from store.csvio import csv_cell
from store.errors import StoreError
from store.models import User
from store.validation import counted, printable

from store.exports import write_private
from ..screens.common import PromptDialog
from ..work import StoreWork
from .table import Bar, Cell, Column, LineTable

SPANS = (30, 90)  # days the chart shows; `t` switches
CHASE_CSV_COLUMNS = ("username", "name", "email", "team", "pending_since", "days_pending")


# Counts up to 100,000 are never cut; optional columns go first when it is narrow (Activated is
# Users less Pending and Disabled; a username is the identity, a name is not).
TEAM_COLUMNS = (
    Column("Team", 12, grow=3),
    Column("Users", 7, right=True),
    Column("Activated", 9, right=True, optional=True),
    Column("Pending", 7, right=True),
    Column("Done", 4, right=True),
    Column("", 5, grow=1),
)
CHASE_COLUMNS = (
    Column("Username", 20, grow=1),
    Column("Name", 9, grow=3, optional=True),
    Column("Team", 8, grow=2, optional=True),  # the title names the team already
    Column("Days", 4, right=True),
)


def _team_cells(row: report.TeamRow) -> tuple[Cell, ...]:
    return (row.label, f"{row.users:,}", f"{row.activated:,}", f"{row.pending:,}",
            report.percent_label(row.activated, row.users), Bar(row.percent))  # fmt: skip


def _chase_cells(row: report.ChaseRow) -> tuple[Cell, ...]:
    user = row.user
    return (user.username, user.name, user.team or report.NO_TEAM, "?" if row.days is None else str(row.days))


# -- the view ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Numbers:
    """One snapshot's report, computed off the UI thread."""

    overall: report.Overall
    teams: tuple[report.TeamRow, ...]
    daily: tuple[report.Day, ...]  # the longest span; shorter ones are its tail
    chase: dict[str, tuple[report.ChaseRow, ...]]  # by team key, longest pending first

    @classmethod
    def of(cls, users: Sequence[User], now: datetime) -> Numbers:
        by_team: dict[str, list[report.ChaseRow]] = {}
        for row in report.chase(users, now):
            by_team.setdefault(row.team, []).append(row)
        chase = {team: tuple(rows) for team, rows in by_team.items()}
        return cls(report.overall(users, now), report.teams(users), report.daily(users, now, max(SPANS)), chase)


class TeamTable(LineTable):
    BINDINGS = [Binding("enter", "select", "Users of team")]


class RolloutView(StoreWork, Vertical):
    BINDINGS = [
        Binding("t", "toggle_span", "30/90 days", id="rollout-span"),
        Binding("x", "export_chase", "Export chase list", id="rollout-export"),
    ]

    span: reactive[int] = reactive(SPANS[0], init=False)

    class TeamChosen(Message):
        """Enter on a team: show its users. `team` is the team as stored, "" for users without one."""

        def __init__(self, team: str) -> None:
            super().__init__()
            self.team = team

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.numbers: Numbers | None = None
        self.now: datetime | None = None
        self._asked = 0  # which show() call is the latest: an older result is dropped

    def compose(self) -> ComposeResult:
        with Horizontal(id="rollout-headline"):
            yield Static(Content("Reading the store…"), id="rollout-summary")
            yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="rollout-progress")
        yield Static(id="rollout-recent")
        with Horizontal(id="rollout-lists"):
            yield TeamTable(TEAM_COLUMNS, lambda row: row.team, _team_cells, id="rollout-teams")
            yield LineTable(CHASE_COLUMNS, lambda row: row.user.username, _chase_cells, id="rollout-chase")
        yield PlotextPlot(id="rollout-chart")

    def on_mount(self) -> None:
        self.query_one("#rollout-teams").border_title = Content("Teams, furthest behind first")
        self._title_chase()
        self._draw_chart()
        # The bars and the line take the theme's colours: redrawn when the theme changes.
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw_chart())

    @property
    def teams(self) -> TeamTable:
        return self.query_one("#rollout-teams", TeamTable)

    @property
    def chase(self) -> LineTable:
        return self.query_one("#rollout-chase", LineTable)

    # -- data --------------------------------------------------------------------------------
    def show(self, users: Sequence[User], now: datetime) -> None:
        """New data (on the UI thread): the report is computed in a thread, then shown."""
        self._asked += 1
        self._compute(users, now, self._asked)

    def _compute(self, users: Sequence[User], now: datetime, asked: int) -> None:
        # Not exclusive: `asked` drops a stale result, and a cancelled worker only breaks its waiters.
        self.call_store(Numbers.of, users, now, then=lambda numbers: self._apply(numbers, now, asked),
                        group="rollout")  # fmt: skip

    def _apply(self, numbers: Numbers, now: datetime, asked: int) -> None:
        if asked != self._asked:
            return
        self.numbers, self.now = numbers, now
        o = numbers.overall
        if o.total:
            summary = f"Activated {o.activated:,} of {o.total:,} ({report.percent_label(o.activated, o.total)})"
        else:
            summary = "No active accounts yet"
        self.query_one("#rollout-summary", Static).update(Content(summary))
        self.query_one("#rollout-progress", ProgressBar).update(progress=o.percent)
        recent = (
            f"Pending {o.pending:,} · Disabled {o.disabled:,} · "
            f"activated today {o.activated_today:,}, in the last 7 days {o.activated_7d:,}"
        )
        self.query_one("#rollout-recent", Static).update(Content(recent))
        self.teams.set_rows(numbers.teams)
        self._show_chase()
        self._draw_chart()

    def on_line_table_highlighted(self, event: LineTable.Highlighted) -> None:
        if event.table.id == "rollout-teams":
            self._show_chase()

    def on_line_table_selected(self, event: LineTable.Selected) -> None:
        event.stop()
        if event.table.id == "rollout-teams" and event.key is not None:
            self.post_message(self.TeamChosen(event.key))

    def _chase_rows(self) -> tuple[report.ChaseRow, ...]:
        team = self.teams.selected
        if self.numbers is None or team is None:
            return ()
        return self.numbers.chase.get(team, ())

    def _show_chase(self) -> None:
        rows = self._chase_rows()
        if rows is not self.chase.rows:
            self.chase.set_rows(rows)
        off = self.numbers is not None and self.numbers.overall.disabled and not self.numbers.overall.pending
        self.chase.empty = "2FA is off: none to chase." if off else "No one is Pending here."
        self.chase.refresh()
        self._title_chase()

    def _title_chase(self) -> None:
        team = self.teams.selected
        if team is None:
            title = "Who to chase"
        else:
            # Short, the count first: a narrow pane cuts the end of a title.
            title = f"Chase {len(self._chase_rows()):,} · {printable(team or report.NO_TEAM)}"
        self.chase.border_title = Content(title)

    # -- chart -------------------------------------------------------------------------------
    def action_toggle_span(self) -> None:
        self.span = SPANS[(SPANS.index(self.span) + 1) % len(SPANS)]

    def watch_span(self) -> None:
        self._draw_chart()

    def _draw_chart(self) -> None:
        chart = self.query_one(PlotextPlot)
        theme = self.app.theme_variables
        bars, line = (Color.parse(theme[name]) for name in ("primary", "text-warning"))
        other = SPANS[(SPANS.index(self.span) + 1) % len(SPANS)]
        # An ANSI theme's colours are the terminal's own palette entries, its background the
        # terminal's: plotext's "clear" theme draws the axes in the terminal's default colours
        # (the one made from the theme read them as black, invisible on a dark terminal).
        chart.theme = "clear" if Color.parse(theme["background"]).ansi == -1 else "auto"
        chart.border_title = Content.assemble(
            ("█", bars.css), " activations per day  ", ("⠒⠒", line.css),
            f" activated % (right)  ·  last {self.span} days, t: {other}",
        )  # fmt: skip
        plt = chart.plt
        plt.clear_data()
        days = self.numbers.daily[-self.span :] if self.numbers else ()
        if not days:
            chart.refresh()
            return
        x = list(range(len(days)))
        counts = [d.activations for d in days]
        top = _nice_top(max(counts))
        # The line first: the bars are drawn over it, so a day's bar is never cut by the line.
        plt.plot(x, [d.percent for d in days], yside="right", marker="braille", color=_plot_color(line))
        plt.bar(x, counts, marker="hd", color=_plot_color(bars), width=0.6 if self.span <= 30 else 0.9)
        plt.xlim(-0.5, len(days) - 0.5)
        plt.ylim(0, top)
        plt.yticks([0, top // 2, top], ["0", f"{top // 2:,}", f"{top:,}"])
        plt.ylim(0, 100, yside="right")
        plt.yticks([0, 50, 100], ["0%", "50%", "100%"], yside="right")
        step = 7 if self.span <= 30 else 21  # ticks on the same weekday as today
        ticks = list(range(len(days) - 1, -1, -step))
        plt.xticks(ticks, [days[i].day.strftime("%d %b") for i in ticks])
        chart.refresh()

    # -- export ------------------------------------------------------------------------------
    def action_export_chase(self) -> None:
        team, rows = self.teams.selected, self._chase_rows()
        if team is None or not rows:
            self.notify("Nobody to chase here.", severity="warning")
            return
        label = printable(team or report.NO_TEAM)
        slug = re.sub(r"[^a-z0-9]+", "-", (team or "no-team").casefold()).strip("-") or "team"
        default = f"~/mfa-chase-{slug}-{(self.now or datetime.now(UTC)):%Y-%m-%d}.csv"

        def chosen(path: str | None) -> None:
            if path:
                self.export_file(write_chase_csv, path, rows, group="rollout-export")

        body = f"The {counted(len(rows), 'Pending user')} of {label}, longest pending first, as CSV. File:"
        self.app.push_screen(PromptDialog("Export who to chase", body, value=default), chosen)



def write_chase_csv(path: str, rows: Sequence[report.ChaseRow], force: bool = False) -> None:
    """The chase list as CSV, created 0600 (names and emails of staff); FileExistsError unless
    `force` for a file that exists."""

    def write(out: TextIO) -> None:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CHASE_CSV_COLUMNS)
        for row in rows:
            u = row.user
            since = u.pending_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if u.pending_since else ""
            writer.writerow(map(csv_cell, (u.username, u.name, u.email, u.team, since, row.days)))

    try:
        write_private(Path(path).expanduser(), write, force=force)
    except FileExistsError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _plot_color(color: Color) -> int | tuple[int, int, int]:
    """A plotext colour: an ANSI theme's palette index (the terminal's own colour), else RGB."""
    return color.ansi if color.ansi is not None and color.ansi >= 0 else color.rgb


def _nice_top(value: int) -> int:
    """The y axis' top: an even number from 2, 4, 10, 20, 40, 100, ... at least `value`."""
    top = 2
    while top < value:
        top = top * 5 // 2 if str(top)[0] == "4" else top * 2
    return top
