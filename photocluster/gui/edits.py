"""Catalog edits that touch many photos, written by a helper process one at a time, in the order asked.

Moving 50,000 photos, merging or splitting a 100,000-photo cluster, or undoing one of those takes the
catalog 0.4-1.5 s (measured on a 2-core machine): it snapshots every row it changes for undo and stores the
snapshot as JSON. On the GUI thread that froze the window for as long (927 ms for the move, 1.9 s for the
split); a worker thread would not help, because ``json.dumps`` / ``json.loads`` of such a snapshot hold the
GIL for 260 / 360 ms in one C call. So the edit runs in a helper process on a connection of its own (the
catalog is SQLite in WAL mode: the window keeps reading while the helper writes) and the window is told when
it is committed.

Edits are applied strictly in the order they were asked for, one at a time: an edit asked for while
another is being written waits in the queue (so "move, then undo" undoes the move, never something older).
If one fails, the edits queued after it are dropped and reported with it: they were asked for on the
assumption that it had worked.

No Qt in the helper process: :func:`apply_calls` is plain catalog calls.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from PySide6.QtCore import QObject, Qt, Signal

#: An edit touching at most this many photos is written at once on the GUI thread (a move of 2,000
#: photos takes the catalog about 15 ms; 20,000 took 155 ms, measured); larger ones go to the helper
#: process. Undo and redo go there when the catalog holds more photos than this (their size is not known
#: before they run: undoing a training run restores the whole library).
SYNC_EDIT_LIMIT = 2000

#: A catalog call: the name of a :class:`~photocluster.library.catalog.Catalog` method and its arguments.
Call = tuple[str, tuple]


def apply_calls(catalog: Any, calls: Sequence[Call]) -> Any:
    """Run ``calls`` on ``catalog`` in order; returns what the last one returned."""
    result = None
    for name, args in calls:
        result = getattr(catalog, name)(*args)
    return result


def apply_calls_to_file(catalog_path: str, calls: Sequence[Call]) -> Any:
    """:func:`apply_calls` on a connection of its own (runs in the helper process)."""
    from photocluster.library.catalog import Catalog

    catalog = Catalog(catalog_path)
    try:
        return apply_calls(catalog, calls)
    finally:
        catalog.close()


@dataclass
class Edit:
    """One user edit: what to show, the catalog calls that make it, and what the window does afterwards.

    ``select`` is the cluster to show once it is written (None: the one shown now, or the id the last call
    returned when it returns one); ``describe`` turns the result into the log line (undo and redo only
    learn what they undid when they run).
    """

    description: str
    calls: list[Call]
    select: int | None = None
    describe: Callable[[Any], str] | None = None
    result: Any = field(default=None, repr=False)

    def log_line(self) -> str:
        return self.describe(self.result) if self.describe is not None else self.description


class EditQueue(QObject):
    """Writes :class:`Edit` s into a catalog file in a helper process, one at a time, first asked first.

    Signals arrive in the GUI thread: ``applied(edit)`` after each edit is committed (``edit.result`` holds
    what the catalog returned), ``failed(edit, exception, dropped_edits)`` when one was refused or could
    not be written, ``drained()`` when nothing is left to write.
    """

    applied = Signal(object)
    failed = Signal(object, object, object)
    drained = Signal()
    _done = Signal(object, object)  # (edit, future) from the executor's thread, relayed to the GUI thread

    def __init__(self, catalog_path: str | Callable[[], str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._catalog_path = catalog_path
        self._queue: deque[Edit] = deque()
        self._running: Edit | None = None
        self._executor: Executor | None = None
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    @property
    def pending(self) -> int:
        """Edits asked for and not yet written (the one being written included)."""
        return len(self._queue) + (self._running is not None)

    @property
    def current(self) -> Edit | None:
        """The edit being written now."""
        return self._running

    def submit(self, edit: Edit) -> None:
        self._queue.append(edit)
        if self._running is None:
            self._start_next()

    def shutdown(self) -> None:
        """Let the helper process go (call when nothing is pending; a running write is finished first)."""
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=self._running is not None)
            self._executor = None

    # -- internals ------------------------------------------------------------------------------
    def _path(self) -> str:
        return str(self._catalog_path() if callable(self._catalog_path) else self._catalog_path)

    def _pool(self) -> Executor:
        if self._executor is None:
            from photocluster.training_process import process_context

            try:
                # One helper kept for the session: each edit then costs no process start.
                self._executor = ProcessPoolExecutor(max_workers=1, mp_context=process_context())
            except (OSError, RuntimeError):  # no child process can start here: a thread still keeps order
                self._executor = ThreadPoolExecutor(max_workers=1)
        return self._executor

    def _start_next(self) -> None:
        if not self._queue:
            self._running = None
            self.drained.emit()
            return
        edit = self._running = self._queue.popleft()
        try:
            future = self._pool().submit(apply_calls_to_file, self._path(), edit.calls)
        except Exception as exc:  # noqa: BLE001 — a broken pool: say so, and start afresh next time
            self._executor = None
            future = Future()
            future.set_exception(exc)
        future.add_done_callback(lambda f, edit=edit: self._done.emit(edit, f))

    def _on_done(self, edit: Edit, future: Future) -> None:
        error = future.exception()
        if error is None:
            edit.result = future.result()
            self.applied.emit(edit)
        else:
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(error, BrokenProcessPool) and self._executor is not None:
                self._executor.shutdown(wait=False)  # the helper died; a new one starts for the next edit
                self._executor = None
            dropped = list(self._queue)
            self._queue.clear()
            self.failed.emit(edit, error, dropped)
        self._start_next()
