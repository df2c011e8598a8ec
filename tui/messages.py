"""The dashboard's messages that are not one widget's own (those are nested in their widget's
class): work done in a thread coming back to the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.message import Message


class StoreDone(Message, bubble=False):
    """A service call made in a thread returned: `then(result)` runs on the UI thread."""

    def __init__(self, then: Callable[[Any], None] | None, result: Any) -> None:
        super().__init__()
        self.then = then
        self.result = result


class StoreFailed(Message, bubble=False):
    """A service call made in a thread raised: `failed(error)` runs, or the node's default."""

    def __init__(self, failed: Callable[[BaseException], None] | None, error: BaseException) -> None:
        super().__init__()
        self.failed = failed
        self.error = error
