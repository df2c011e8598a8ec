"""The footer of every screen: Textual's, recomposed only when the keys it shows change."""

from __future__ import annotations

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """Textual's footer recomposes its keys on every change of focus or bindings (a dozen as the
    main screen opens), each key costing two style passes; most leave the same keys shown."""

    _shown: tuple | None = None

    async def recompose(self) -> None:
        if not self.is_attached:
            return  # its screen has gone (Textual's recompose ignores it then too)
        shown = (
            self.compact,
            self.show_command_palette,
            *((binding.key, binding.description, enabled, tooltip)
              for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show),
        )  # fmt: skip
        if shown != self._shown:
            self._shown = shown
            await super().recompose()
