"""Store calls in thread workers, for screens and widgets alike: the one way they come back.

The service blocks (SQLite, scrypt, fsync), so it is never called on the event loop. A call runs
in a thread worker; its result or its failure comes back to the node that made it as a message
(StoreDone, StoreFailed), handled on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.worker import Worker

from store.errors import StoreError
from store.validation import counted, printable

from .messages import StoreDone, StoreFailed


class StoreWork:
    """Mixin for a Textual screen or widget."""

    def call_store(
        self,
        fn: Callable[..., Any],
        *args: Any,
        then: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        group: str = "store",
        exclusive: bool = False,
        **kwargs: Any,
    ) -> Worker:
        """Runs fn(*args, **kwargs) in a thread; `then` gets its result, `failed` its exception
        (by default `store_failed` and a notification). Both run on the UI thread."""

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 -- every failure comes back, as a message
                self.post_message(StoreFailed(failed, error))
            else:
                self.post_message(StoreDone(then, result))

        # A description of its own: by default Textual makes one of repr(args), 0.5 s for 100k users.
        description = getattr(fn, "__name__", "store call")
        return self.run_worker(job, thread=True, group=group, exclusive=exclusive, description=description)

    def export_file(self, write: Callable[[str, Any, bool], Any], path: str, rows: Any, *, group: str,
                    force: bool = False) -> None:  # fmt: skip
        """`write(path, rows, force)` in a thread; a file already there is replaced only once the
        person says so (a dialog), any other failure is said in one notification."""
        from .screens.common import ConfirmDialog  # the screens import this module

        # A relative name goes to the folder the app started in: said in full. `~/…` says where already.
        where = path if path.startswith(("/", "~")) else str(Path(path).absolute())

        def failed(error: BaseException) -> None:
            if not isinstance(error, FileExistsError):
                self.notify(printable(f"cannot write {path}: {getattr(error, 'strerror', None) or error}"),
                            title="Not done", severity="error", markup=False)  # fmt: skip
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self.export_file(write, path, rows, group=group, force=True)

            body = f"{printable(where)} exists already. Replace it?"
            self.app.push_screen(ConfirmDialog("Replace the file?", body, "Replace"), answered)

        done = lambda _: self.notify(printable(f"Exported {counted(len(rows), 'user')} to {where}."), markup=False)  # noqa: E731
        self.call_store(write, path, rows, force, then=done, failed=failed, group=group)

    def on_store_done(self, message: StoreDone) -> None:
        if message.then is not None:
            message.then(message.result)

    def on_store_failed(self, message: StoreFailed) -> None:
        error = message.error
        if message.failed is not None:
            message.failed(error)
            return
        self.store_failed(error)
        text = str(error) if isinstance(error, StoreError) else f"unexpected error: {error!r}"
        self.notify(printable(text), title="Not done", severity="error", markup=False)

    def store_failed(self, error: BaseException) -> None:
        """Hook: re-enable a form, show the store's truth again, after a failed call."""
