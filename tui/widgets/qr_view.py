"""A QR code drawn in the terminal, fitted to the widget's own size.

The glyphs come from `store.qr.fit_qr`, the renderer the CLI uses too. Every cell of the code,
quiet zone included, carries an explicit foreground and background: 256-palette 16 (#000000)
on 231 (#ffffff). Those are not remapped by terminal themes (unlike ANSI 0-15) and not by
Textual themes (unlike $variables), so a phone reads the code off dark and light terminals.
Textual turns them into truecolor #000000 on #ffffff (or back into 16 on 231 on a 256-colour
terminal); either way black stays black and white stays white.

When the code does not fit, the widget draws nothing (its own background only) and says so:
`code` is then a `QRTooLarge`, `needed` the size the widget would need, and a `Fitted`
message tells the parent.
"""

from __future__ import annotations

from rich.color import Color as RichColor
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from store.qr import QRCode, QRTooLarge, fit_qr

# Fixed 256-colour cube entries: black and white whatever the theme.
QR_STYLE = RichStyle(color=RichColor.from_ansi(16), bgcolor=RichColor.from_ansi(231))


class QRView(Widget):
    """Draws `uri` as the largest QR code `fit_qr` allows within the widget; refits on resize."""

    DEFAULT_CSS = """
    QRView {
        width: 1fr;
        height: 1fr;
        overflow: hidden;
    }
    """

    ALLOW_SELECT = False  # a mouse selection would paint over (and invert) modules

    uri: reactive[str] = reactive("", layout=False)
    """The text to encode (an otpauth:// URI); empty draws nothing."""

    class Fitted(Message):
        """The drawn code changed: a fitted `QRCode`, a `QRTooLarge` (nothing drawn), or `None` (no URI)."""

        def __init__(self, qr_view: QRView, code: QRCode | QRTooLarge | None) -> None:
            super().__init__()
            self.qr_view = qr_view
            self.code = code

        @property
        def control(self) -> QRView:
            return self.qr_view

        @property
        def fits(self) -> bool:
            return isinstance(self.code, QRCode)

    def __init__(
        self,
        uri: str = "",
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._code: QRCode | QRTooLarge | None = None
        self._fitted_for: tuple[str, Size] | None = None
        self.set_reactive(QRView.uri, uri)

    @property
    def code(self) -> QRCode | QRTooLarge | None:
        """What is drawn: the code, `QRTooLarge` when it cannot fit, `None` before layout or without a URI."""
        return self._code

    @property
    def fits(self) -> bool:
        return isinstance(self._code, QRCode)

    @property
    def needed(self) -> Size | None:
        """The widget size the smallest rendering needs, when it does not fit; else None."""
        code = self._code
        return Size(code.needed_cols, code.needed_rows) if isinstance(code, QRTooLarge) else None

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def watch_uri(self, uri: str) -> None:
        self._fit()

    def _fit(self) -> None:
        size = self.size
        key = (self.uri, size)
        if key == self._fitted_for:
            return
        self._fitted_for = key
        if not self.uri or not size.width or not size.height:
            code: QRCode | QRTooLarge | None = None
        else:
            code = fit_qr(self.uri, size.width, size.height)
        changed = code != self._code
        self._code = code
        self.refresh()
        if changed:
            self.post_message(self.Fitted(self, code))

    def render_line(self, y: int) -> Strip:
        # Every segment carries a style, the margins the widget's own: Textual's NO_COLOR filter
        # cannot take a segment without one.
        width, height = self.size
        margin = self.rich_style
        code = self._code
        if not isinstance(code, QRCode) or code.width > width or code.height > height:
            return Strip.blank(width, margin)
        top = (height - code.height) // 2
        row = y - top
        if not 0 <= row < code.height:
            return Strip.blank(width, margin)
        left = (width - code.width) // 2
        right = width - left - code.width
        segments = [Segment(" " * left, margin), Segment(code.lines[row], QR_STYLE), Segment(" " * right, margin)]
        return Strip([s for s in segments if s.text], width)
