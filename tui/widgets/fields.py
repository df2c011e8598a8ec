"""Typing that arrives faster than the focus moves: a password manager's auto-type, a paste, a
fast typist.

Textual hands each key of a burst to the widget focused when the burst is read, before any of
them is handled. A key that moves the focus (Tab, Enter, `/`) therefore leaves the keys after
it with the widget it left: in clear in the username field, or as shortcuts on the Users grid.

- `Field`, the one-line input of every form: Tab, Shift+Tab (and Enter, where it means "next")
  move the focus at once, and a key that reaches a field no longer focused goes on to the
  field that is.
- `TypedKeysGuard`, for every screen: a printable key still bubbling up while a field has the
  focus was typed for that field (a focused field keeps the printable keys it receives), so it
  goes there, never to a shortcut.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


def forward(key: events.Key, to) -> None:
    key.stop()
    key.prevent_default()
    to.post_message(events.Key(key.key, key.character))


class Field(Input):
    """An Input that keeps the order of a burst across focus changes."""

    def __init__(self, *args, next_on_enter: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.next_on_enter = next_on_enter  # Enter moves to the next field (the last one submits)

    def on_key(self, event: events.Key) -> None:
        screen = self.screen
        focused = screen.focused
        if focused is not self and focused is not None:
            forward(event, focused)
        elif event.key == "tab" or (event.key == "enter" and self.next_on_enter):
            event.stop()
            event.prevent_default()
            screen.focus_next()  # now, not after the keys already queued here
        elif event.key == "shift+tab":
            event.stop()
            event.prevent_default()
            screen.focus_previous()


class TypedKeysGuard:
    """Mixin for a Screen: see the module's doc."""

    def on_key(self, event: events.Key) -> None:
        focused = self.focused
        if event.is_printable and isinstance(focused, Input):
            forward(event, focused)
