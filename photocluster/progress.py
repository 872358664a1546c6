"""Progress events and cancellation: the only channel from long-running work to a user interface.

Plain Python on purpose: the command line (tqdm) and the desktop app (a Qt worker thread) consume the
same events, and the core never imports Qt.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping


class Cancelled(Exception):
    """Raised inside work when its :class:`CancelToken` was cancelled."""


class CancelToken:
    """A thread-safe flag that a UI sets and long-running work checks at least once a second."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


NEVER_CANCELLED = CancelToken()


@dataclass(frozen=True)
class ProgressEvent:
    """One report from running work.

    Parameters
    ----------
    stage:
        What is happening, in a few words ("scan", "decode", "train", "select pairs", "refine", ...).
    step, total:
        Position within the stage; ``total`` is None when unknown.
    metrics:
        Numbers worth showing now: loss, thresholds, pass number, ... (floats).
    message:
        A human sentence for a log panel; may be empty.
    eta_seconds:
        Estimated seconds left in the whole job, None when unknown.
    """

    stage: str
    step: int = 0
    total: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""
    eta_seconds: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))


class EtaEstimator:
    """Estimates time left from the rate of progress so far (work units may be any count)."""

    def __init__(self, total: float, clock=time.monotonic) -> None:
        self.total = float(total)
        self._clock = clock
        self._start = clock()

    def eta(self, done: float) -> float | None:
        if done <= 0 or self.total <= 0:
            return None
        elapsed = self._clock() - self._start
        return max(0.0, elapsed * (self.total - done) / done)


class Throttle:
    """True at most every ``interval`` seconds: lets tight loops yield events about once a second."""

    def __init__(self, interval: float = 0.5, clock=time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last = -float("inf")

    def ready(self) -> bool:
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


def install_sigint_cancel(token: CancelToken) -> None:
    """In the main thread of a command: first Ctrl-C asks the work to stop (it saves a checkpoint); a second one kills the process."""

    def handler(signum, frame):  # noqa: ARG001
        if token.cancelled:
            raise KeyboardInterrupt
        print("\nphotocluster: cancelling… (press Ctrl-C again to abort at once)", file=sys.stderr)
        token.cancel()

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (tests)
        pass


def run_to_end(steps: Iterator[ProgressEvent], on_event: Callable[[ProgressEvent], None] | None = None) -> Any:
    """Consume a generator of events (calling ``on_event`` with each) and return its return value."""
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
