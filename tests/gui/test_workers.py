"""The worker thread around core generators: results, errors, and the two-stage cancel."""

from __future__ import annotations

import time

import pytest

from photocluster.gui.workers import CancellableWorker, start_worker
from photocluster.progress import Cancelled, ProgressEvent

pytestmark = pytest.mark.gui


def counting(n: int, *, cancel):
    for i in range(n):
        cancel.raise_if_cancelled()
        yield ProgressEvent("count", i + 1, n)
    return n * 10


def test_yielded_events_and_return_value_reach_the_gui_thread(qtbot):
    seen = []
    worker = CancellableWorker(counting, 5)
    worker.yielded.connect(seen.append)
    with qtbot.waitSignal(worker.returned, timeout=5000) as returned:
        worker.start()
    assert returned.args == [50]
    qtbot.waitUntil(lambda: worker.is_done, timeout=2000)
    assert [e.step for e in seen] == [1, 2, 3, 4, 5]


def test_an_exception_is_reported_with_its_reason(qtbot):
    def failing(*, cancel):
        yield ProgressEvent("work")
        raise ValueError("disk on fire")

    errors = []
    worker = CancellableWorker(failing)
    worker.errored.connect(errors.append)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert len(errors) == 1 and isinstance(errors[0], ValueError) and "disk on fire" in str(errors[0])


def test_cancel_sets_the_core_token_and_reports_aborted_not_error(qtbot):
    checkpoints = []

    def endless(*, cancel):
        while True:
            try:
                cancel.raise_if_cancelled()
            except Cancelled:
                checkpoints.append("saved")  # what a method does before it stops
                raise
            time.sleep(0.01)
            yield ProgressEvent("train")

    outcome = []
    worker = start_worker(endless, connect={"aborted": lambda: outcome.append("aborted"),
                                            "errored": lambda e: outcome.append(e),
                                            "returned": lambda v: outcome.append(("returned", v))})
    qtbot.waitUntil(lambda: worker.is_running, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=3000):
        worker.quit()
    assert worker.cancel_token.cancelled
    assert outcome == ["aborted"] and checkpoints == ["saved"]


def test_work_that_ignores_cancel_is_abandoned_after_the_grace(qtbot):
    cleaned = []

    def stubborn(*, cancel):
        try:
            while True:
                time.sleep(0.01)
                yield ProgressEvent("train")
        finally:
            cleaned.append(True)

    outcome = []
    worker = start_worker(stubborn, grace_seconds=0.2, connect={"aborted": lambda: outcome.append("aborted"),
                                                                 "returned": lambda v: outcome.append(v)})
    qtbot.waitUntil(lambda: worker.is_running, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=3000):
        worker.quit()
    assert outcome == ["aborted"]
    assert cleaned == [True]  # the generator was closed, so its cleanup ran
