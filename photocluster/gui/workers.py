"""Run any core generator (scan, decode, ``fit_steps``, export) in a worker thread.

The core never imports Qt; it reports through :class:`~photocluster.progress.ProgressEvent` generators and
stops when its :class:`~photocluster.progress.CancelToken` is set. This module wraps such a generator in
superqt's :class:`~superqt.utils.GeneratorWorker` (a ``QRunnable`` on the global thread pool) so that the
GUI thread only ever receives signals:

``started``
    the generator began running;
``yielded(event)``
    one :class:`ProgressEvent` (plain, frozen data);
``returned(value)``
    the generator's return value (plain data: a report, a result object);
``errored(exception)``
    the work raised; the exception object carries the reason to show;
``aborted``
    the work stopped because the user cancelled;
``finished``
    always last, whatever happened.

Cancel is cooperative and two-stage: :meth:`CancellableWorker.quit` first sets the core cancel token, so the
work can stop at its next check and write a checkpoint (it then raises
:class:`~photocluster.progress.Cancelled`, which the worker reports as ``aborted``, not as an error); work
that keeps yielding for longer than ``grace_seconds`` after the request is abandoned at its next yield
(the generator is closed, so its ``finally`` blocks run). Either way ``aborted`` arrives within about a
second of the click, because the core yields at least once a second.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generator

from superqt.utils import GeneratorWorker

from photocluster.progress import CancelToken, Cancelled


class CancellableWorker(GeneratorWorker):
    """A superqt generator worker whose ``quit`` also sets the core :class:`CancelToken`.

    Parameters
    ----------
    func:
        A generator function. It is called as ``func(*args, cancel=token, **kwargs)``.
    *args, **kwargs:
        Passed to ``func``.
    grace_seconds:
        How long work may keep yielding after a cancel request before it is abandoned at a yield.
    """

    def __init__(
        self,
        func: Callable[..., Generator[Any, None, Any]],
        *args: Any,
        grace_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.cancel_token = CancelToken()
        super().__init__(func, *args, cancel=self.cancel_token, **kwargs)
        self.grace_seconds = grace_seconds
        self._cancel_requested_at: float | None = None
        self._done = False

    # -- control --------------------------------------------------------------------------------
    def quit(self) -> None:
        """Ask the work to stop: sets the cancel token now; abandons the work at a yield after the grace."""
        if self._cancel_requested_at is None:
            self._cancel_requested_at = time.monotonic()
        self.cancel_token.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested_at is not None

    @property
    def is_done(self) -> bool:
        """True once the thread has let go of the work (``finished`` has been emitted)."""
        return self._done

    # -- the loop (runs in the worker thread) ---------------------------------------------------
    def run(self) -> None:  # called by QThreadPool
        try:
            super().run()
        finally:
            self._done = True

    def work(self) -> Any:
        """Drive the generator; map :class:`Cancelled` to ``aborted`` (see the module docstring)."""
        try:
            while True:
                if self._grace_expired():
                    self._abandon()
                    return None
                output = self._gen.send(self._next_value())
                self.yielded.emit(output)
        except StopIteration as stop:
            if self.cancel_requested:
                # Finished on its own just as the user cancelled: the result is complete, keep it.
                pass
            return stop.value
        except Cancelled:
            self._abort_requested = True  # stops WorkerBase.run from emitting ``returned``
            self.aborted.emit()
            return None

    def _grace_expired(self) -> bool:
        return (
            self._cancel_requested_at is not None
            and time.monotonic() - self._cancel_requested_at > self.grace_seconds
        )

    def _abandon(self) -> None:
        self._abort_requested = True
        try:
            self._gen.close()  # runs the generator's finally blocks (temporary files, handles)
        except Exception:  # noqa: BLE001 — the user asked to stop; a failing cleanup must not turn into an error
            pass
        self.aborted.emit()


def start_worker(
    func: Callable[..., Generator[Any, None, Any]],
    *args: Any,
    connect: dict[str, Callable | list[Callable]] | None = None,
    **kwargs: Any,
) -> CancellableWorker:
    """Create a :class:`CancellableWorker`, connect its signals and start it on the global thread pool.

    ``connect`` maps a signal name (``"yielded"``, ``"returned"``, ``"errored"``, ``"aborted"``,
    ``"started"``, ``"finished"``) to a slot or a list of slots. Slots connected here run in the GUI thread.
    """
    worker = CancellableWorker(func, *args, **kwargs)
    for signal_name, slots in (connect or {}).items():
        for slot in slots if isinstance(slots, list) else [slots]:
            getattr(worker, signal_name).connect(slot)
    worker.start()
    return worker
