"""Pausing the cyclic garbage collector while 100k objects are built at once."""

from __future__ import annotations

import gc
import threading


class _GcPause:
    """For building 100k objects at once, which the cyclic collector would otherwise scan
    again and again (it doubles the time); they hold no cycles. Threads may overlap it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pauses = 0
        self._enable_after = False

    def __enter__(self) -> None:
        with self._lock:
            if self._pauses == 0:
                self._enable_after = gc.isenabled()
                gc.disable()
            self._pauses += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._pauses -= 1
            if self._pauses == 0 and self._enable_after:
                gc.enable()


gc_paused = _GcPause()
