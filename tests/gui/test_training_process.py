"""Training in a child process: same result as in-process, cancel, errors, and no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from guitools import crashing_work, endless_work, process_running, run_job
from photocluster.gui.jobs import training_job
from photocluster.progress import CancelToken, Cancelled
from photocluster.training_process import TrainingProcessError, run_in_process

pytestmark = pytest.mark.gui

if not Path("/proc/self/stat").exists():  # process_running reads /proc
    pytest.skip("needs Linux /proc to watch the child process", allow_module_level=True)


@pytest.fixture
def scanned(qtbot, window, generated_photos):
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    return window


def drive(generator):
    """Run a job generator to its end in this thread; returns (events, value)."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


def start_training(qtbot, window, method: str) -> int:
    """Start ``method`` (a guitools fake reporting its pid) and return the pid of the process training it."""
    window.method_picker.set_method(method)
    window.method_picker.set_n_clusters(2)
    assert window.start_training()
    qtbot.waitUntil(lambda: (e := window.progress_panel.last_event) is not None and "pid" in e.metrics,
                    timeout=60_000)
    return int(window.progress_panel.last_event.metrics["pid"])


def test_child_process_gives_the_same_labels_as_training_in_this_process(scanned):
    photos = list(scanned.scan_report.photos)
    params = {"n_clusters": 3, "n_init": 1, "random_state": 0, "features": "hog"}
    _, in_thread = drive(training_job(photos, "kmeans", params, cancel=CancelToken(), in_child_process=False))
    events, in_child = drive(training_job(photos, "kmeans", params, cancel=CancelToken()))
    assert [p.path for p in in_child.photos] == [p.path for p in in_thread.photos]
    np.testing.assert_array_equal(in_child.labels, in_thread.labels)
    np.testing.assert_allclose(in_child.confidence, in_thread.confidence)
    assert len(set(in_child.labels.tolist())) == 3
    assert any(e.stage == "train" for e in events)  # the child's progress came through


def test_the_window_trains_in_another_process_and_shows_its_clusters(qtbot, scanned):
    window = scanned
    window.method_picker.set_method("test-slow")
    window.method_picker.set_param_values({"steps": 5})
    window.method_picker.set_n_clusters(2)
    seen = []
    window.progress_panel.show_event = lambda event, show=window.progress_panel.show_event: (seen.append(event),
                                                                                            show(event))
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    pids = {int(e.metrics["pid"]) for e in seen if "pid" in e.metrics}
    assert pids and os.getpid() not in pids
    assert window.last_result is not None and window.last_result.run_id is not None
    assert len(window.cluster_model.clusters()) == 2  # the child wrote the result into the catalog
    assert [(r.method, r.status) for r in window.catalog.runs()][-1][0] == "test-slow"


def test_cancel_ends_the_child_within_a_second_and_the_window_stays_usable(qtbot, scanned, dialogs):
    window = scanned
    pid = start_training(qtbot, window, "test-slow")
    assert pid != os.getpid() and process_running(pid)
    clicked = time.monotonic()
    with qtbot.waitSignal(window.job_finished, timeout=1500) as finished:
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args == ["train", "cancelled"]
    qtbot.waitUntil(lambda: not process_running(pid), timeout=1000)
    assert time.monotonic() - clicked < 2.5  # (generous on a loaded machine; the benchmark prints the figure)
    assert [(r.method, r.status) for r in window.catalog.runs()] == [("test-slow", "cancelled")]
    # usable: a new run starts and finishes
    window.method_picker.set_method("kmeans")
    window.method_picker.set_param_values({"n_init": 1})
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    assert len(window.cluster_model.clusters()) == 3
    assert not dialogs.shown, dialogs.shown


def test_a_child_that_ignores_cancel_is_terminated(qtbot, scanned, dialogs):
    window = scanned
    pid = start_training(qtbot, window, "test-stubborn")
    with qtbot.waitSignal(window.job_finished, timeout=4000) as finished:
        window.cancel_work()
    assert finished.args == ["train", "cancelled"]
    assert not window.busy and window.train_button.isEnabled() and not dialogs.shown
    qtbot.waitUntil(lambda: not process_running(pid), timeout=6000)  # terminated after its stop grace


@pytest.mark.parametrize("method, reason", [
    ("test-broken", "the network diverged (loss is NaN)"),
    ("test-unpicklable-error", "_UnpicklableError: the GPU fell off the bus"),
    ("test-crashing", "the training process ended unexpectedly (exit code 7)"),
])
def test_an_error_in_the_child_reaches_the_error_dialog_with_its_reason(qtbot, scanned, dialogs, method, reason):
    window = scanned
    window.method_picker.set_method(method)
    window.method_picker.set_n_clusters(2)
    assert run_job(qtbot, window, window.start_training) == ("train", "failed")
    assert len(dialogs.shown) == 1
    title, text = dialogs.shown[0]
    assert title == "Train failed" and reason in text
    if method != "test-crashing":  # the child's own traceback is under "Show Details"
        assert "fit_steps" in dialogs.details[0] and "guitools.py" in dialogs.details[0]
    assert [(r.method, r.status) for r in window.catalog.runs()] == [(method, "failed")]
    assert window.train_button.isEnabled()


def test_closing_the_window_while_training_stops_the_child(qtbot, scanned, dialogs):
    window = scanned
    pid = start_training(qtbot, window, "test-stubborn")
    dialogs.answer = QMessageBox.StandardButton.Yes
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert window.catalog is None
    qtbot.waitUntil(lambda: not process_running(pid), timeout=6000)  # no orphan: ended after its stop grace


def test_closing_the_relay_stops_the_child():
    relay = run_in_process(endless_work, cancel=CancelToken())
    pid = int(next(relay).metrics["pid"])
    assert process_running(pid)
    relay.close()  # what the worker does when it abandons a job (window closing, grace expired)
    deadline = time.monotonic() + 6
    while process_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_running(pid)


def test_cancel_raises_cancelled_in_the_caller():
    token = CancelToken()
    relay = run_in_process(endless_work, cancel=token)
    pid = int(next(relay).metrics["pid"])
    token.cancel()
    with pytest.raises(Cancelled):
        for _ in relay:
            pass
    deadline = time.monotonic() + 6
    while process_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_running(pid)


@pytest.mark.parametrize("ending", ["os._exit(0)", "sys.exit(0)"])
def test_a_child_whose_parent_ends_does_not_outlive_it(tmp_path, ending):
    """The GUI process killed outright (no cleanup), or exiting without closing its job: its training child
    must not run on as an orphan, nor keep the parent from exiting."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from guitools import endless_work
        from photocluster.progress import CancelToken
        from photocluster.training_process import run_in_process

        if __name__ == "__main__":
            relay = run_in_process(endless_work, cancel=CancelToken())
            print(next(relay).metrics["pid"], flush=True)
            ENDING  # os._exit: no finally, no cleanup, as if killed; sys.exit: the relay is never closed
    """).replace("ENDING", ending))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while process_running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_running(pid)


def test_an_unexpected_child_death_is_an_error_not_a_hang():
    with pytest.raises(TrainingProcessError, match="exit code 5"):
        for _ in run_in_process(crashing_work, cancel=CancelToken()):
            pass
