import re
import sys
from pathlib import Path

import pytest
import segno

from store.qr import QRCode, QRTooLarge, ansi_lines, fit_qr
from tests.screen import Tmux, decode_qr
from tests.support import ROOT

URI = (
    "otpauth://totp/Acme%20Contact%20Center:alice.smith"
    "?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Acme%20Contact%20Center"
)
SGR = re.compile(r"\x1b\[[0-9;]*m")


def fit(cols: int, rows: int) -> QRCode:
    code = fit_qr(URI, cols, rows)
    assert isinstance(code, QRCode)
    assert code.width <= cols and code.height <= rows
    assert len(code.lines) == code.height
    assert {len(line) for line in code.lines} == {code.width}
    return code


def screen(code: QRCode) -> str:
    return "\n".join(ansi_lines(code))


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_80x23_uses_half_blocks_and_round_trips(theme: str) -> None:
    code = fit(80, 23)
    assert (code.glyphs, code.quiet, code.error, code.version) == ("half", 2, "L", 6)
    assert (code.width, code.height) == (45, 23)
    assert decode_qr(screen(code), theme) == [URI]


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_roomy_screen_gets_full_quiet_zone_and_level_m(theme: str) -> None:
    code = fit(120, 40)
    assert (code.glyphs, code.quiet, code.error, code.version) == ("half", 4, "M", 7)
    assert (code.width, code.height) == (53, 27)
    assert decode_qr(screen(code), theme) == [URI]


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_narrow_screen_falls_back_to_quadrants(theme: str) -> None:
    code = fit(30, 23)
    assert (code.glyphs, code.quiet, code.error) == ("quadrant", 2, "L")
    assert (code.width, code.height) == (23, 23)
    assert decode_qr(screen(code), theme) == [URI]


def test_too_small_reports_the_smallest_size_that_fits() -> None:
    too_large = fit_qr(URI, 20, 10)
    assert too_large == QRTooLarge(needed_cols=23, needed_rows=23)
    code = fit(too_large.needed_cols, too_large.needed_rows)
    assert decode_qr(screen(code)) == [URI]
    assert isinstance(fit_qr(URI, 22, 23), QRTooLarge)
    assert isinstance(fit_qr(URI, 23, 22), QRTooLarge)


@pytest.mark.parametrize(("cols", "rows"), [(80, 23), (30, 23), (120, 40)])
def test_glyphs_reproduce_segno_matrix(cols: int, rows: int) -> None:
    code = fit(cols, rows)
    qr = segno.make(URI, error=code.error, micro=False)
    assert qr.version == code.version
    expected = [list(row) for row in qr.matrix_iter(border=code.quiet)]
    size = len(expected)
    # Read modules back off the glyphs, sub-block by sub-block.
    half = {" ": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}
    quad = " ▗▖▄▝▐▞▟▘▚▌▙▀▜▛█"
    across = 1 if code.glyphs == "half" else 2
    got = [[0] * (code.width * across) for _ in range(code.height * 2)]
    for r, line in enumerate(code.lines):
        for c, ch in enumerate(line):
            if across == 1:
                got[2 * r][c], got[2 * r + 1][c] = half[ch]
            else:
                bits = quad.index(ch)
                got[2 * r][2 * c], got[2 * r][2 * c + 1] = bits >> 3 & 1, bits >> 2 & 1
                got[2 * r + 1][2 * c], got[2 * r + 1][2 * c + 1] = bits >> 1 & 1, bits & 1
    assert [row[:size] for row in got[:size]] == expected
    # Padding past an odd module count is light.
    assert all(not any(row) for row in got[size:])
    assert all(not any(row[size:]) for row in got)


def test_ansi_lines_set_fg_and_bg_on_every_line() -> None:
    code = fit(80, 23)
    for line in ansi_lines(code):
        assert line.startswith("\x1b[38;5;16;48;5;231m")
        assert line.endswith("\x1b[0m")
        assert len(SGR.sub("", line)) == code.width


def test_harness_rejects_a_renderer_that_leaves_fg_to_the_theme() -> None:
    code = fit(80, 23)
    def variant(sgr: str) -> str:
        return "\n".join(f"{sgr}{line}\x1b[0m" for line in code.lines)

    # bg only: white modules on white. fg only: black on black. None: inverted.
    for text in (variant("\x1b[48;5;231m"), variant("\x1b[38;5;16m"), variant("")):
        assert decode_qr(text, "light") == [URI]
        assert decode_qr(text, "dark") == []


SCRIPT = f"""
import shutil
from store.qr import ansi_lines, fit_qr
cols, rows = shutil.get_terminal_size()
code = fit_qr({URI!r}, cols, rows - 1)
print("\\n".join(ansi_lines(code)))
print(f"READY {{cols}}x{{rows}}", end="", flush=True)
input()
"""


@pytest.mark.skipif(not Path("/usr/bin/tmux").exists(), reason="needs tmux")
@pytest.mark.parametrize("theme", ["dark", "light"])
def test_qr_decodes_off_a_real_tmux_pane(theme: str) -> None:
    command = [sys.executable, "-c", SCRIPT]
    with Tmux(command, cols=80, rows=24, env={"PYTHONPATH": str(ROOT)}) as tmux:
        tmux.wait_for("READY")
        plain = tmux.capture(escapes=False)
        screen_text = tmux.capture(escapes=True)
    assert "READY 80x24" in plain
    assert decode_qr(screen_text, theme) == [URI]
