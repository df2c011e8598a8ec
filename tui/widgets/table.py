"""A table drawn line by line (Textual's Line API): a header, rows, a cursor.

Only the rows on screen are drawn, so a list of 40k users costs what a screenful does. Columns
share the width by their `grow`; optional ones are left out first when it is narrow, and a cell
longer than its column ends in "…". Used by the Rollout tab's lists and the Audit tab.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from store.validation import printable

from .rows import CursorRows

EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    min_width: int
    grow: int = 0  # share of the spare width
    right: bool = False  # numbers
    optional: bool = False  # left out when the table is too narrow for every column


@dataclass(frozen=True, slots=True)
class Bar:
    """A cell drawn as a bar filling `percent` of the column, in eighths of a cell."""

    percent: float


Cell = str | Bar


class LineTable(CursorRows):
    """Rows with a header; only the rows on screen are drawn (a chase list may hold 40k users).

    New rows keep the cursor on the same key and the scroll position as it was, so a live
    update neither flickers nor moves what the user is looking at.
    """

    COMPONENT_CLASSES = {"line-table--header", "line-table--cursor", "line-table--bar"}
    DEFAULT_CSS = """
    LineTable {
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
        padding-left: 1;
    }
    LineTable > .line-table--header {
        text-style: bold;
        background: $panel;
    }
    LineTable > .line-table--cursor {
        background: $block-cursor-blurred-background;
    }
    LineTable:focus > .line-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    /* The bar's track is its background, so the length reads against the full width. */
    LineTable > .line-table--bar {
        color: $text-success;  /* legible on light themes too, unlike $success */
        background: $foreground 12%;
    }
    """

    class _Row(Message):
        def __init__(self, table: LineTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LineTable:
            return self.table

    class Highlighted(_Row):
        """The cursor is on another row (`key` None: no rows)."""

    class Selected(_Row):
        """Enter, or a click on the row under the cursor."""

    def __init__(self, columns: Sequence[Column], key: Callable[[Any], str],
                 cells: Callable[[Any], tuple[Cell, ...]], *, id: str | None = None) -> None:  # fmt: skip
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._key = key
        self._cells = cells
        self.empty = ""  # said on the first line while there are no rows
        self._rows: Sequence[Any] = ()
        self._layout: tuple[int, list[tuple[int, int]]] = (-1, [])  # (width, [(column, width)])

    @property
    def rows(self) -> Sequence[Any]:
        return self._rows

    @property
    def selected(self) -> str | None:
        return self._key(self._rows[self.cursor]) if 0 <= self.cursor < len(self._rows) else None

    def set_rows(self, rows: Sequence[Any]) -> None:
        keep = self.selected
        index = next((i for i, row in enumerate(rows) if self._key(row) == keep), None) if keep else None
        self._rows = rows
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        cursor = min(index if index is not None else self.cursor, max(len(rows) - 1, 0))
        if cursor != self.cursor:
            self.cursor = cursor  # the watcher scrolls it into view only if it left the view
        elif self.selected != keep:
            self.post_message(self.Highlighted(self, self.selected))
        # Again once the new size is laid out: a scroll to a row past the old rows' end stops at it
        # (the Audit log's event kept as a filter is cleared was left off screen).
        self.call_after_refresh(self._scroll_to_cursor)
        self.refresh()

    def watch_cursor(self) -> None:
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self, self.selected))
        self.refresh()

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self, self.selected))

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_y) + event.y - 1
        if event.y == 0 or not 0 <= index < len(self._rows):
            return
        if index == self.cursor:
            self.action_select()
        self.cursor = index

    def _widths(self, width: int) -> list[tuple[int, int]]:
        """The columns that fit in `width` (optional ones are dropped first) and their widths."""
        if self._layout[0] != width:
            shown = list(range(len(self.columns)))
            need = lambda: sum(self.columns[i].min_width + 1 for i in shown) - 1  # noqa: E731
            for i in reversed(range(len(self.columns))):
                if need() > width and self.columns[i].optional:
                    shown.remove(i)
            spare = max(width - need(), 0)
            grow = sum(self.columns[i].grow for i in shown) or 1
            widths = [self.columns[i].min_width + spare * self.columns[i].grow // grow for i in shown]
            first_growing = next((n for n, i in enumerate(shown) if self.columns[i].grow), 0)
            widths[first_growing] += spare - sum(w - self.columns[i].min_width for w, i in zip(widths, shown))
            self._layout = (width, list(zip(shown, widths)))
        return self._layout[1]

    def _component(self, name: str) -> Style:
        """A component's style, its translucent colours blended over the table's background
        (a Rich style drops the alpha: `$foreground 12%` would come out as the full colour)."""
        styles = self.get_component_styles(name)
        under = self.background_colors[1]
        back = under + styles.background if styles.has_rule("background") else None
        fore = (back or under) + styles.color if styles.has_rule("color") else None
        colours = Style(color=fore.rich_color if fore else None, bgcolor=back.rich_color if back else None)
        return colours + styles.text_style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # less the scrollbar, unlike self.size
        layout = self._widths(width)
        base = self.rich_style
        if y == 0:
            style = base + self._component("line-table--header")
            titles = " ".join(fit(self.columns[i].title, w, self.columns[i].right) for i, w in layout)
            return Strip([Segment(titles, style)]).crop_extend(0, width, style)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._rows):
            if index == 0 and self.empty:  # nothing to show: say why, rather than a blank table
                return Strip([Segment(fit(printable(self.empty), width, False), base)]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        style = base
        if index == self.cursor:
            style += self._component("line-table--cursor")
        cells = self._cells(self._rows[index])
        segments = []
        for i, w in layout:
            cell = cells[i]
            if isinstance(cell, Bar):
                eighths = int(max(0.0, min(cell.percent, 100.0)) * w * 8 // 100)
                full, part = divmod(eighths, 8)
                bar = ("█" * full + (EIGHTHS[part] if part else "")).ljust(w)
                segments.append(Segment(bar, style + self._component("line-table--bar")))
            else:
                segments.append(Segment(fit(printable(cell), w, self.columns[i].right), style))
            segments.append(Segment(" ", style))
        return Strip(segments).crop_extend(0, width, style)


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` padded or cut (with …) to `width` cells."""
    if cell_len(text) > width:
        return set_cell_size(text, max(width - 1, 0)) + "…" if width else ""
    return " " * (width - cell_len(text)) + text if right else set_cell_size(text, width)
