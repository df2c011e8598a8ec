"""Render an otpauth URI as a terminal QR code that fits a given cell budget.

Shared by the CLI ``enroll`` command and the TUI wizard. Pure Python on
purpose: the result is plain strings, so either front end can print it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import segno

# Half blocks: 1 module across, 2 down -> square modules on ~1:2 fonts.
# Index: (top dark) << 1 | (bottom dark).
_HALF = " ▄▀█"

# Quadrants: 2x2 modules per cell (modules twice as tall as wide).
# Index: UL << 3 | UR << 2 | LL << 1 | LR.
_QUADRANT = " ▗▖▄▝▐▞▟▘▚▌▙▀▜▛█"

# Preference order; the first that fits wins. Square modules beat a big
# quiet zone (4 is the spec, 2 still decodes off a real pane), which beats
# error correction (M over L).
_GLYPHS = ("half", "quadrant")
_QUIET = (4, 3, 2)
_ERRORS = ("M", "L")

# Fixed 256-colour cube entries (#000000, #ffffff): unlike the 16 ANSI
# colours they are not remapped by the terminal theme. Setting both fg and bg
# keeps dark modules dark and light ones light on dark and light themes.
_SGR = "\x1b[38;5;16;48;5;231m"
_RESET = "\x1b[0m"


@dataclass(frozen=True, slots=True)
class QRCode:
    lines: tuple[str, ...]  # glyph rows, all the same width; quiet zone included
    width: int  # terminal columns
    height: int  # terminal rows
    glyphs: str  # "half" or "quadrant"
    error: str  # segno error level actually used, e.g. "L", "M"
    version: int
    quiet: int  # quiet-zone modules on each side


@dataclass(frozen=True, slots=True)
class QRTooLarge:
    needed_cols: int  # size of the smallest candidate, for "needs at least WxH"
    needed_rows: int


def _size(modules: int, glyphs: str) -> tuple[int, int]:
    rows = -(-modules // 2)
    return (modules if glyphs == "half" else rows), rows


def fit_qr(uri: str, max_cols: int, max_rows: int) -> QRCode | QRTooLarge:
    """Return the most preferred rendering of ``uri`` within the given cells.

    Raises segno.DataOverflowError if ``uri`` exceeds QR version 40.
    """
    symbols = {e: segno.make(uri, error=e, micro=False, boost_error=True) for e in _ERRORS}
    for glyphs, quiet, error in product(_GLYPHS, _QUIET, _ERRORS):
        qr = symbols[error]
        modules = qr.symbol_size(scale=1, border=quiet)[0]
        cols, rows = _size(modules, glyphs)
        if cols <= max_cols and rows <= max_rows:
            matrix = [list(row) for row in qr.matrix_iter(scale=1, border=quiet)]
            return QRCode(
                lines=_render(matrix, glyphs),
                width=cols,
                height=rows,
                glyphs=glyphs,
                error=qr.error,
                version=qr.version,
                quiet=quiet,
            )
    # The last candidate (quadrants, least quiet zone, lowest error level) is
    # the smallest in both directions.
    return QRTooLarge(cols, rows)


def _render(matrix: list[list[int]], glyphs: str) -> tuple[str, ...]:
    # Odd module count: the missing half row (and, for quadrants, half
    # column) is light, like the quiet zone.
    if len(matrix) % 2:
        matrix = matrix + [[0] * len(matrix[0])]
    pairs = zip(matrix[0::2], matrix[1::2], strict=True)
    if glyphs == "half":
        return tuple("".join(_HALF[t << 1 | b] for t, b in zip(top, bottom)) for top, bottom in pairs)
    lines = []
    for top, bottom in pairs:
        if len(top) % 2:
            top, bottom = top + [0], bottom + [0]
        lines.append(
            "".join(
                _QUADRANT[top[c] << 3 | top[c + 1] << 2 | bottom[c] << 1 | bottom[c + 1]]
                for c in range(0, len(top), 2)
            )
        )
    return tuple(lines)


def ansi_lines(code: QRCode) -> list[str]:
    """The code's rows wrapped in explicit fg/bg colours, each ending in a reset."""
    return [f"{_SGR}{line}{_RESET}" for line in code.lines]

