"""Read a terminal screen back for tests: ANSI parsing, QR decoding, tmux.

Not a test module. ``decode_qr`` rebuilds the image a human would see in a
given terminal theme, so a renderer that leaves a colour to the theme fails
in one of the two.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import zxingcpp
from PIL import Image
from rich.cells import cell_len
from rich.color import Color as RichColor
from rich.segment import Segment

RGB = tuple[int, int, int]

# xterm's defaults for the 16 theme colours; a real theme may differ, which is
# exactly why the renderer must not rely on them.
_ANSI16: tuple[RGB, ...] = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0),
    (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
)  # fmt: skip
_CUBE = (0, 95, 135, 175, 215, 255)

THEMES: dict[str, tuple[RGB, RGB]] = {  # (default fg, default bg)
    "dark": ((229, 229, 229), (0, 0, 0)),
    "light": ((0, 0, 0), (255, 255, 255)),
}

# Sub-blocks covered by each glyph: (upper-left, upper-right, lower-left, lower-right).
_COVER: dict[str, tuple[int, int, int, int]] = {
    " ": (0, 0, 0, 0), "▘": (1, 0, 0, 0), "▝": (0, 1, 0, 0), "▖": (0, 0, 1, 0),
    "▗": (0, 0, 0, 1), "▀": (1, 1, 0, 0), "▄": (0, 0, 1, 1), "▌": (1, 0, 1, 0),
    "▐": (0, 1, 0, 1), "▚": (1, 0, 0, 1), "▞": (0, 1, 1, 0), "▛": (1, 1, 1, 0),
    "▜": (1, 1, 0, 1), "▙": (1, 0, 1, 1), "▟": (0, 1, 1, 1), "█": (1, 1, 1, 1),
}  # fmt: skip
_QUADRANT_ONLY = frozenset("▘▝▖▗▚▞▌▐▙▛▜▟")

_CSI = re.compile(r"\x1b\[([0-9;:]*)([@-~])")


@dataclass(frozen=True, slots=True)
class Cell:
    char: str
    fg: RGB | None  # None: the terminal's default
    bg: RGB | None
    reverse: bool = False

    def colours(self, default_fg: RGB, default_bg: RGB) -> tuple[RGB, RGB]:
        fg = self.fg or default_fg
        bg = self.bg or default_bg
        return (bg, fg) if self.reverse else (fg, bg)


def _palette(n: int) -> RGB:
    if n < 16:
        return _ANSI16[n]
    if n < 232:
        n -= 16
        return _CUBE[n // 36], _CUBE[n // 6 % 6], _CUBE[n % 6]
    grey = 8 + 10 * (n - 232)
    return grey, grey, grey


def _extended(params: list[int], i: int) -> tuple[RGB | None, int]:
    """Parse 38/48's arguments at params[i:]; return colour and next index."""
    kind = params[i] if i < len(params) else None
    if kind == 5 and i + 1 < len(params):
        return _palette(params[i + 1]), i + 2
    if kind == 2 and i + 3 < len(params):
        r, g, b = params[i + 1 : i + 4]
        return (r, g, b), i + 4
    return None, len(params)


def parse_ansi_screen(text: str) -> list[list[Cell]]:
    """Parse ``tmux capture-pane -p -e`` output into rows of cells.

    SGR state carries across lines, as on a terminal. Non-SGR escapes are dropped.
    """
    fg: RGB | None = None
    bg: RGB | None = None
    reverse = False
    rows: list[list[Cell]] = []
    for line in text.split("\n"):
        row: list[Cell] = []
        pos = 0
        for m in _CSI.finditer(line):
            row += [Cell(ch, fg, bg, reverse) for ch in line[pos : m.start()]]
            pos = m.end()
            if m.group(2) != "m":
                continue
            params = [int(p) if p else 0 for p in re.split("[;:]", m.group(1))]
            i = 0
            while i < len(params):
                p = params[i]
                i += 1
                if p == 0:
                    fg, bg, reverse = None, None, False
                elif p == 7:
                    reverse = True
                elif p == 27:
                    reverse = False
                elif 30 <= p <= 37:
                    fg = _ANSI16[p - 30]
                elif 90 <= p <= 97:
                    fg = _ANSI16[p - 90 + 8]
                elif p == 39:
                    fg = None
                elif 40 <= p <= 47:
                    bg = _ANSI16[p - 40]
                elif 100 <= p <= 107:
                    bg = _ANSI16[p - 100 + 8]
                elif p == 49:
                    bg = None
                elif p in (38, 48):
                    colour, i = _extended(params, i)
                    if p == 38:
                        fg = colour
                    else:
                        bg = colour
        row += [Cell(ch, fg, bg, reverse) for ch in line[pos:].rstrip("\r")]
        rows.append(row)
    return rows


def _dark(rgb: RGB) -> bool:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b < 128


def qr_image(cells: list[list[Cell]], default_fg: RGB, default_bg: RGB, scale: int = 8) -> Image.Image:
    """Rebuild the screen as a black/white image, one pixel block per module.

    A cell is 2 modules tall, and 2 wide if the screen uses quadrant glyphs,
    else 1 wide (half blocks). Missing cells (short lines) are default bg.
    """
    across = 2 if any(c.char in _QUADRANT_ONLY for row in cells for c in row) else 1
    width = max((len(row) for row in cells), default=0)
    blank = Cell(" ", None, None)
    modules: list[list[bool]] = []
    for row in cells:
        top: list[bool] = []
        bottom: list[bool] = []
        for cell in row + [blank] * (width - len(row)):
            fg, bg = cell.colours(default_fg, default_bg)
            ul, ur, ll, lr = _COVER.get(cell.char, (0, 0, 0, 0))
            top += [_dark(fg if ul else bg)] + ([_dark(fg if ur else bg)] if across == 2 else [])
            bottom += [_dark(fg if ll else bg)] + ([_dark(fg if lr else bg)] if across == 2 else [])
        modules += [top, bottom]
    img = Image.new("L", (width * across, len(modules)))
    img.putdata([0 if dark else 255 for line in modules for dark in line])
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def decode_qr(text: str, theme: Literal["dark", "light"] = "dark") -> list[str]:
    """Texts of the QR codes visible in ``text`` as rendered in ``theme``."""
    img = qr_image(parse_ansi_screen(text), *THEMES[theme])
    # No try_invert: not every authenticator's scanner reads light-on-dark codes.
    found = zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [b.text for b in found]


@dataclass(frozen=True, slots=True)
class QRPlacement:
    """Where a QR code sits on a screen: the rectangle of cells it paints (quiet zone included)."""

    top: int  # cells
    left: int
    height: int
    width: int
    quiet: tuple[int, int, int, int]  # light modules around the dark ones: top, right, bottom, left

    @property
    def bottom(self) -> int:  # the first row below the code
        return self.top + self.height

    @property
    def right(self) -> int:  # the first column right of the code
        return self.left + self.width


def find_qr(text: str) -> QRPlacement | None:
    """The code in ``capture-pane -p -e`` text: the cells whose fg and bg are both set explicitly.

    Those cells must form one full rectangle (else AssertionError); None if there are none. The
    quiet zone counts light modules between the outermost dark modules and the rectangle's
    edges, so a code cut off by the screen edge or by scrolling shows up as a thin quiet zone.
    """
    cells = parse_ansi_screen(text)
    spots = [(r, c) for r, row in enumerate(cells) for c, cell in enumerate(row) if cell.fg and cell.bg]
    if not spots:
        return None
    top, bottom = min(r for r, _ in spots), max(r for r, _ in spots) + 1
    left, right = min(c for _, c in spots), max(c for _, c in spots) + 1
    assert len(spots) == (bottom - top) * (right - left), "the explicitly coloured cells are not a rectangle"
    block = [row[left:right] for row in cells[top:bottom]]
    across = 2 if any(c.char in _QUADRANT_ONLY for row in block for c in row) else 1
    dark: list[tuple[int, int]] = []  # (module row, module column)
    for r, row in enumerate(block):
        for c, cell in enumerate(row):
            fg, bg = cell.colours(*THEMES["dark"])  # both explicit: the theme does not matter
            ul, ur, ll, lr = _COVER.get(cell.char, (0, 0, 0, 0))
            subs = ((0, 0, ul), (1, 0, ll)) if across == 1 else ((0, 0, ul), (0, 1, ur), (1, 0, ll), (1, 1, lr))
            dark += [(2 * r + dy, across * c + dx) for dy, dx, on in subs if _dark(fg if on else bg)]
    height, width = 2 * (bottom - top), across * (right - left)
    if not dark:
        quiet = (height, width, height, width)
    else:
        rows, cols = [m for m, _ in dark], [m for _, m in dark]
        quiet = (min(rows), width - 1 - max(cols), height - 1 - max(rows), min(cols))
    return QRPlacement(top, left, bottom - top, right - left, quiet)


# Runs argv[2:] and writes its exit status (negative: killed by that signal) to argv[1]. SIGINT
# gets a no-op handler, not SIG_IGN: Ctrl-C reaches the command, which gets the default
# disposition back when it execs, and this parent lives on to record the status.
_RECORD_STATUS = """
import os, signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: None)
status = subprocess.call(sys.argv[2:])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(status))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""


class Tmux:
    """A detached tmux session on a private socket, for driving a real terminal.

    COLUMNS and LINES are dropped from the environment: pytest's readline
    import sets them, and the pane would inherit a size that is not its own.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        remain_on_exit: bool = False,
    ) -> None:
        """``remain_on_exit``: keep the pane (and its last screen) once the command exits,
        so a test can still capture it and read the exit status (``wait_exit``)."""
        self.command = list(command)
        self._status_file: str | None = None
        self.cols, self.rows = cols, rows
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.env.update(env or {})
        self._dir = tempfile.mkdtemp(prefix="tmux-test-")
        self.socket = os.path.join(self._dir, "sock")
        self._conf = os.devnull
        if remain_on_exit:
            # Set before the session starts: a command that exits at once cannot race it. An
            # empty format: no "Pane is dead" line is added to (or scrolls) the last screen.
            self._conf = os.path.join(self._dir, "tmux.conf")
            with open(self._conf, "w") as f:
                f.write('set -g remain-on-exit on\nset -gq remain-on-exit-format ""\n')
            # tmux's #{pane_dead_status} is sometimes never set (tmux 3.3a), so a parent on the
            # same terminal records the status.
            self._status_file = os.path.join(self._dir, "status")
            self.command = [sys.executable, "-c", _RECORD_STATUS, self._status_file, *self.command]

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def __enter__(self) -> Tmux:
        # -f /dev/null (or our own file): the user's tmux.conf must not change what we see.
        self._tmux(
            "-f", self._conf, "new-session", "-d", "-s", "t",
            "-x", str(self.cols), "-y", str(self.rows), "--", *self.command,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], env=self.env, capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def send(self, *keys: str) -> None:
        """tmux send-keys: names like "Enter", "C-c", or literal text."""
        self._tmux("send-keys", "-t", "t", *keys)

    def capture(self, escapes: bool = True) -> str:
        """The visible pane; with ``escapes``, SGR sequences inline (-e).

        With escapes, -N keeps trailing spaces: tmux trims them even when they
        carry a background colour, which would eat a QR code's right quiet zone.
        """
        return self._tmux("capture-pane", "-p", "-t", "t", *(["-e", "-N"] if escapes else []))

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        """Poll until ``text`` is on screen, and the screen has stopped changing (a frame can reach
        the terminal in several writes: a capture may fall between them); return the plain capture."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture(escapes=False)
            if text in screen:
                time.sleep(0.05)
                again = self.capture(escapes=False)
                if again == screen or time.monotonic() > deadline:
                    return again if text in again else screen
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not on screen after {timeout}s:\n{screen}")
            time.sleep(0.02)

    def capture_history(self) -> str:
        """The scrollback and the visible pane, as plain text."""
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-")

    def exit_status(self) -> int | None:
        """The command's exit status once it has exited (needs ``remain_on_exit``), else None."""
        if self._status_file is None:
            raise RuntimeError("exit_status needs Tmux(..., remain_on_exit=True)")
        try:
            with open(self._status_file) as f:
                return int(f.read())
        except FileNotFoundError:
            return None

    def wait_exit(self, timeout: float = 5.0) -> int:
        """Poll until the command has exited (needs ``remain_on_exit``); return its exit status."""
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still running after {timeout}s:\n{self.capture(escapes=False)}")
            time.sleep(0.02)
        return status


def cells_from_strips(strips: Sequence[Iterable[Segment]]) -> list[list[Cell]]:
    """Rows of cells from Textual strips (a compositor update), with the colours Textual gave them.

    The colours are the final ones (after Textual's filters), before the terminal's colour-system
    downgrade: 256-palette and 16-colour entries are resolved like parse_ansi_screen does.
    """

    def rgb(color: RichColor | None) -> RGB | None:
        if color is None or color.is_default:
            return None
        if color.triplet is not None:
            return tuple(color.triplet)  # type: ignore[return-value]
        return _palette(color.number or 0)

    rows: list[list[Cell]] = []
    for strip in strips:
        row: list[Cell] = []
        for segment in strip:
            if segment.control:
                continue
            style = segment.style
            fg, bg = (rgb(style.color), rgb(style.bgcolor)) if style else (None, None)
            reverse = bool(style and style.reverse)
            for ch in segment.text:
                row.append(Cell(ch, fg, bg, reverse))
                row += [Cell("", fg, bg, reverse)] * (cell_len(ch) - 1)
        rows.append(row)
    return rows


def decode_cells(cells: list[list[Cell]], theme: Literal["dark", "light"] = "dark") -> list[str]:
    """Texts of the QR codes visible in rows of cells, as rendered in ``theme``."""
    img = qr_image(cells, *THEMES[theme])
    found = zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [b.text for b in found]
