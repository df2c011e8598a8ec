"""Typing that arrives faster than the focus moves: a password manager's auto-type, a paste, a
fast typist.

Textual hands each key to the widget focused when the key is read; the focus moves when the
key that moves it (Tab, Enter, `/`) is handled, after the next keys were handed out. So:

- `Field`, the one-line input of every form, handles Tab, Shift+Tab and Enter (where Enter
  means "next" or "done") itself, in order with the keys before them, and its editing keys
  (Backspace, ctrl+u...), which Input leaves to bindings run after the keys that follow. It hands the focus over
  only once the keys already queued for it are done: those go on to the next widget in order
  (typed straight into it when it is a field), and the keys read later go there directly.
- The main screen's one-key actions (`/`, the tab numbers) act as their key is read (priority
  bindings), so the keys after them go where the focus now is.
- `typed_for_field`, for the app: a printable key that bubbles up unhandled while a field has
  the focus was typed for that field (a focused field keeps the printable keys it receives;
  this one reached the widget the focus left), so it goes there, never to a shortcut.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input


# Input's editing keys (Backspace, ctrl+u, arrows...), each to its action. Input leaves them to
# its bindings, run once the key has bubbled up to the app, one message queue at a time: the
# printable keys after them in a burst are typed first ("jonh" ⌫⌫ "hn" became "jonhhn").
EDITING_KEYS = {key.strip(): binding.action for binding in Input.BINDINGS if binding.action != "submit"
                for key in binding.key.split(",")}  # fmt: skip


def type_into(field: Input, key: events.Key) -> None:
    """`key` typed into `field` now, as the field itself would take it (its restrictions kept)."""
    key.stop()
    key.prevent_default()
    if not key.is_printable:
        return
    if isinstance(field, Field) and not field.has_focus:
        field.typed_ahead = True  # its Focus event, still to come, must not select this text
    selection = field.selection
    if selection.is_empty:
        field.insert_text_at_cursor(key.character)
    else:
        field.replace(key.character, *selection)


def redeliver(key: events.Key, app) -> None:
    """`key` to the app again, to be handled as if it had just been typed (a fresh event)."""
    app.post_message(key)


class Field(Input):
    """An Input that keeps the order of a burst across focus changes (see the module's doc)."""

    def __init__(self, *args, next_on_enter: bool = False, leave_to: Callable[[], Widget] | None = None,
                 hold_after_submit: bool = False, **kwargs) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.next_on_enter = next_on_enter  # Enter moves to the next field (the last one submits)
        self.leave_to = leave_to  # Enter moves the focus there (a search box's results, say)
        # Keys typed after Enter submitted (a password manager's code, typed before the code's
        # field shows) are held until the form says where they go: `release_held`.
        self.hold_after_submit = hold_after_submit
        self._after_submit: list[events.Key] | None = None
        self._handing_to: Widget | None = None  # the focus goes there once the keys queued here are done
        self._held: bool = False  # a key was held for after the hand-over: the later ones wait too
        self.typed_ahead = False  # keys were typed in before the focus arrived (type_into)

    def _on_focus(self, event: events.Focus) -> None:
        """Runs before Input's own handler, which selects the whole value on focus: after keys
        typed ahead, the next key of the burst would replace them ("demo-pw" became "-pw")."""
        if self.typed_ahead:
            self.typed_ahead = False
            keep, self.select_on_focus = self.select_on_focus, False
            self.call_later(setattr, self, "select_on_focus", keep)  # after Input's handler

    async def on_key(self, event: events.Key) -> None:
        if self._after_submit is not None:
            event.stop()
            event.prevent_default()
            self._after_submit.append(events.Key(event.key, event.character))
            return
        screen = self.screen
        target = self._handing_to
        if target is None and screen.focused not in (self, None):
            target = screen.focused  # the focus moved on by other means before this key got here
        if target is None:
            to = self.destination(event.key)
            if to is not None:
                self._hand_over(to, event)
            elif event.key == "enter" and self.hold_after_submit:
                self._after_submit = []  # Input submits; what follows waits for the answer
            elif event.key in EDITING_KEYS:
                event.stop()
                event.prevent_default()
                await self.run_action(EDITING_KEYS[event.key])  # in order with the keys around it
            return
        event.stop()
        event.prevent_default()
        to = target.destination(event.key) if isinstance(target, Field) else _tab_destination(target, event.key)
        if to is not None:
            self._hand_over(to, event)  # a move typed in the burst: from where the focus is going
        elif isinstance(target, Input) and event.is_printable and not self._held:
            type_into(target, event)
        else:
            self._held = True
            self.call_later(redeliver, events.Key(event.key, event.character), self.app)

    def release_held(self, to: Widget | None) -> None:
        """The keys held since this field submitted: on to `to`, the form's next field, which has
        the focus by now; None drops them (the form was refused: they were meant for a step that
        does not come)."""
        held, self._after_submit = self._after_submit or [], None
        if not isinstance(to, Input):
            return
        for key in held:  # printable keys typed in; others (a Tab, an arrow) have nowhere to move
            if key.key == "enter":
                to.call_later(to.action_submit)  # the rest, if any, was typed for a step after that one
                return
            type_into(to, key)

    def destination(self, key: str) -> Widget | None:
        """Where `key` moves the focus from this field, or None: the key is the field's own."""
        if key == "tab" or (key == "enter" and self.next_on_enter):
            return _neighbour(self, 1)
        if key == "shift+tab":
            return _neighbour(self, -1)
        if key == "enter" and self.leave_to is not None:
            return self.leave_to()
        return None

    def _hand_over(self, to: Widget, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        self._handing_to = to
        self.call_later(self._handed, to)  # after the keys already queued here

    def _handed(self, to: Widget) -> None:
        if self._handing_to is to:
            self._handing_to, self._held = None, False
            self.screen.set_focus(to)


def _tab_destination(widget: Widget, key: str) -> Widget | None:
    """Where Tab or Shift+Tab moves the focus from a widget that is not a field (a Select), and
    Enter from one whose Enter means "next" (`enter_moves_on`): there too, a move typed in the
    burst is made from where the focus is going, not redelivered later."""
    if key in ("tab", "shift+tab"):
        return _neighbour(widget, {"tab": 1, "shift+tab": -1}[key])
    return _neighbour(widget, 1) if key == "enter" and getattr(widget, "enter_moves_on", False) else None


def _neighbour(widget: Widget, step: int) -> Widget | None:
    chain = widget.screen.focus_chain
    if widget not in chain:
        return None
    return chain[(chain.index(widget) + step) % len(chain)]


def typed_for_field(event: events.Key, focused) -> bool:
    """Types `event` into the focused field if it was typed for it (see the module's doc)."""
    if event.is_printable and isinstance(focused, Input):
        type_into(focused, event)
        return True
    return False


class FilterField(Field):
    """A search or filter box over a list. The keys typed are its text, so the footer's one-key
    shortcuts give way: it shows this box's own keys instead of going blank."""

    BINDINGS = [
        Binding("enter", "submit", "To the list"),
        Binding("escape", "clear", "Clear"),
    ]

    def __init__(self, *args, on_clear: Callable[[], object], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_clear = on_clear

    def action_clear(self) -> None:
        self._on_clear()
