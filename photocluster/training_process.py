"""Training in a separate process: the same ``fit_steps`` generator, driven from a child, its events relayed.

Why a process and not a thread: a worker thread shares the interpreter's lock (GIL) with the thread that
draws the window, and the methods spend long stretches in calls that hold it (torch, numpy, scikit-learn,
and plain Python in the core). Measured on a 2-core machine with training in a worker thread, the desktop
app's event loop stalled for 400-650 ms at a time in 3 of 6 tlfwr runs; a process shares no GIL.

:func:`run_in_process` is a generator like the work it runs, so a caller drives it exactly as it would drive
the work itself (``result = yield from run_in_process(func, *args, cancel=token)``):

- the child calls ``func(*args, cancel=child_token, **kwargs)`` — a generator of
  :class:`~photocluster.progress.ProgressEvent` — and sends each event through a pipe (plain, picklable data);
- the caller's :class:`~photocluster.progress.CancelToken` is mapped onto a ``multiprocessing.Event`` that is
  the child's token, so the work stops at its next check exactly as it does in-process (writing its
  checkpoint); a child that has not stopped ``grace_seconds`` after the request is terminated;
- ``func``'s return value (plain data: numpy arrays, dataclasses) comes back as the generator's return value;
- an exception raised in the child is raised again in the caller with its type and message when it can be
  pickled (else as :class:`TrainingProcessError`), and the child's traceback attached (``child_traceback``
  attribute and an exception note), so an error dialog shows the real reason;
- whatever ends the relay — return, error, cancel, or the caller closing the generator (a window closing) —
  the child is stopped: asked first, terminated after the grace, killed if it still lingers. A child whose
  parent process disappears stops by itself.

Children start with the ``forkserver`` method where there is one (Linux), else ``spawn``: never ``fork``,
which is unsafe in a process running Qt and other threads. This module is Qt-free: it is core.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers its exit handler now, so that ours (below) runs before it
import os
import pickle
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.progress import CancelToken, Cancelled, ProgressEvent

#: How long the relay waits for a child to stop after a cancel before it reports the job cancelled anyway
#: (so Cancel takes effect within a second; measured with a 1 s wait plus a joined stop: up to 1.36 s).
DEFAULT_GRACE_SECONDS = 0.5
#: How long a child that has not stopped by then is left, in the background, to finish stopping (write its
#: checkpoint) before it is terminated.
STOP_GRACE_SECONDS = 3.0
#: How often the relay looks at the pipe and at the caller's cancel token.
POLL_SECONDS = 0.05
#: Progress events without news (same stage, no message) are forwarded at most this often; a method that
#: yields every batch would otherwise flood the window with signals.
MIN_EVENT_INTERVAL = 0.1


#: Children started here and not yet stopped, with their cancel events (stopped at interpreter exit).
_LIVE: dict[Any, Any] = {}


class TrainingProcessError(RuntimeError):
    """The work in the child failed with an exception that could not be sent back as itself,
    or the child ended without saying why (killed, crashed)."""

    def __init__(self, message: str, child_traceback: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback
        self.exit_code = exit_code


def process_context() -> multiprocessing.context.BaseContext:
    """forkserver where it exists (POSIX), else spawn — never fork (see the module docstring)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# -- the child side -----------------------------------------------------------------------------------
class _EventCancelToken(CancelToken):
    """A :class:`CancelToken` whose flag is a ``multiprocessing.Event`` shared with the parent."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self._event = event


def _watch_parent(parent_pid: int, token: CancelToken, grace_seconds: float) -> None:
    """Cancel the work when the parent process is gone, and end this process if the work does not stop."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # a process with that id exists but is not ours: the parent is gone
            break
    token.cancel()
    time.sleep(max(grace_seconds, 5.0))
    os._exit(3)


def _apply_environment(environment: dict[str, str]) -> None:
    """The parent's PHOTOCLUSTER_* settings (a forkserver child inherits the server's environment, which
    was fixed when the server started, not the parent's environment now)."""
    for key in [k for k in os.environ if k.startswith("PHOTOCLUSTER_") and k not in environment]:
        del os.environ[key]
    os.environ.update(environment)


def _send_error(conn: Any, exc: BaseException) -> None:
    details = traceback.format_exc()
    try:
        payload: bytes | None = pickle.dumps(exc)
        pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt; send those as text
    except Exception:  # noqa: BLE001
        payload = None
    conn.send(("error", (payload, type(exc).__name__, str(exc), details)))


def _child_main(conn: Any, cancel_event: Any, environment: dict[str, str], parent_pid: int,
                grace_seconds: float, func: Callable[..., Iterator[Any]], args: tuple, kwargs: dict) -> None:
    """Entry point of the child: run ``func``'s generator, send its events, its result or its error."""
    _apply_environment(environment)
    token = _EventCancelToken(cancel_event)
    threading.Thread(target=_watch_parent, args=(parent_pid, token, grace_seconds), daemon=True,
                     name="photocluster-parent-watch").start()
    try:
        try:
            generator = func(*args, cancel=token, **kwargs)
            while True:
                try:
                    event = next(generator)
                except StopIteration as stop:
                    conn.send(("returned", stop.value))
                    break
                conn.send(("event", event))
        except Cancelled:
            conn.send(("cancelled", None))
        except (BrokenPipeError, EOFError):
            pass  # the parent stopped listening: nobody to report to
        except BaseException as exc:  # noqa: BLE001 — every failure goes back to the parent with its reason
            _send_error(conn, exc)
    except (BrokenPipeError, EOFError, OSError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


# -- the parent side ----------------------------------------------------------------------------------
def _rebuild_error(payload: tuple[bytes | None, str, str, str]) -> BaseException:
    pickled, type_name, message, details = payload
    error: BaseException | None = None
    if pickled is not None:
        try:
            error = pickle.loads(pickled)
        except Exception:  # noqa: BLE001 — fall back to the text
            error = None
    if error is None:
        error = TrainingProcessError(f"{type_name}: {message}" if message else type_name, details)
    error.child_traceback = details  # type: ignore[attr-defined]
    if hasattr(error, "add_note"):
        error.add_note("Traceback in the training process:\n" + details)
    return error


def stop_process(process: Any, cancel_event: Any, grace_seconds: float) -> int | None:
    """Ask a child to stop (its cancel event), terminate it after ``grace_seconds``, kill it if it lingers.

    Returns the exit code. Blocks the calling thread for at most about ``grace_seconds + 2`` s.
    """
    if process.is_alive():
        cancel_event.set()
        process.join(grace_seconds)
    if process.is_alive():
        process.terminate()
        process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join(1.0)
    return process.exitcode


class _EventFilter:
    """Forwards events with news (stage change, message, stage end) at once, others at most every interval."""

    def __init__(self, interval: float = MIN_EVENT_INTERVAL) -> None:
        self.interval = interval
        self.pending: ProgressEvent | None = None
        self._last_stage: str | None = None
        self._last_sent = -float("inf")

    def offer(self, event: Any) -> list[Any]:
        if not isinstance(event, ProgressEvent):
            return [event]
        now = time.monotonic()
        news = (event.stage != self._last_stage or bool(event.message)
                or (bool(event.total) and event.step >= (event.total or 0)))
        if news or now - self._last_sent >= self.interval:
            out = [self.pending] if self.pending is not None and news else []
            out.append(event)
            self.pending = None
            self._last_stage = event.stage
            self._last_sent = now
            return out
        self.pending = event
        return []

    def flush(self) -> list[Any]:
        if self.pending is None:
            return []
        event, self.pending = self.pending, None
        self._last_sent = time.monotonic()
        return [event]


def run_in_process(func: Callable[..., Iterator[Any]], *args: Any, cancel: CancelToken,
                   grace_seconds: float = DEFAULT_GRACE_SECONDS, **kwargs: Any) -> Iterator[Any]:
    """Run the generator function ``func(*args, cancel=..., **kwargs)`` in a child process.

    Yields its progress events (see the module docstring) and returns its return value. Raises
    :class:`~photocluster.progress.Cancelled` when ``cancel`` was set and the child stopped (or was stopped
    after ``grace_seconds``), the child's exception when it failed, :class:`TrainingProcessError` when it
    died without a word. ``func`` and the arguments must be picklable (a module-level function).
    """
    return (yield from start_in_process(func, *args, cancel=cancel, grace_seconds=grace_seconds, **kwargs))


def start_in_process(func: Callable[..., Iterator[Any]], *args: Any, cancel: CancelToken,
                     grace_seconds: float = DEFAULT_GRACE_SECONDS, **kwargs: Any) -> Iterator[Any]:
    """Start the child now and return the relay generator of :func:`run_in_process` (iterate it at once).

    Raises ``OSError`` (or ``RuntimeError``) here, before any work ran, when no child process can start, so a
    caller can fall back to running the work itself; errors of the work come from the generator.
    """
    context = process_context()
    receiver, sender = context.Pipe(duplex=False)
    cancel_event = context.Event()
    environment = {k: v for k, v in os.environ.items() if k.startswith("PHOTOCLUSTER_")}
    process = context.Process(
        target=_child_main, name=f"photocluster-{getattr(func, '__name__', 'work')}",
        args=(sender, cancel_event, environment, os.getpid(), grace_seconds, func, args, kwargs),
    )
    try:
        process.start()
    finally:
        sender.close()  # the child holds the only sending end: a dead child reads as end of file
    _LIVE[process] = cancel_event
    return _relay(process, receiver, cancel_event, cancel, grace_seconds)


def _relay(process: Any, receiver: Any, cancel_event: Any, cancel: CancelToken,
           grace_seconds: float) -> Iterator[Any]:
    cancel_sent_at: float | None = None
    events = _EventFilter()
    try:
        while True:
            if cancel.cancelled and cancel_sent_at is None:
                cancel_event.set()
                cancel_sent_at = time.monotonic()
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > grace_seconds:
                raise Cancelled("cancelled by the user (the training process did not stop in time and was ended)")
            if not receiver.poll(POLL_SECONDS):
                yield from events.flush()
                continue
            while True:  # everything that has arrived, then back to the cancel check
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    process.join(1.0)
                    if cancel_sent_at is not None:
                        raise Cancelled("cancelled by the user") from None
                    raise TrainingProcessError(
                        f"the training process ended unexpectedly (exit code {process.exitcode}); "
                        "it may have run out of memory", exit_code=process.exitcode) from None
                if kind == "event":
                    yield from events.offer(payload)
                elif kind == "returned":
                    yield from events.flush()
                    return payload
                elif kind == "cancelled":
                    raise Cancelled("cancelled by the user")
                elif kind == "error":
                    raise _rebuild_error(payload)
                if not receiver.poll(0):
                    break
    finally:
        receiver.close()
        if process.is_alive():
            # Still stopping (a checkpoint being written, or a method deaf to its token): the caller goes on
            # now, and a background thread ends the child after STOP_GRACE_SECONDS at most.
            cancel_event.set()
            threading.Thread(target=_stop_and_forget, args=(process, cancel_event), daemon=True,
                             name="photocluster-stop-child").start()
        else:
            process.join()
            _LIVE.pop(process, None)


def _stop_and_forget(process: Any, cancel_event: Any) -> None:
    stop_process(process, cancel_event, STOP_GRACE_SECONDS)
    _LIVE.pop(process, None)


@atexit.register
def _stop_live_children() -> None:
    """At exit, stop children whose relay never ended (an app quitting without closing its jobs): without
    this, multiprocessing's own exit handler would wait for them to finish training."""
    for process, cancel_event in list(_LIVE.items()):
        stop_process(process, cancel_event, 0.5)
        _LIVE.pop(process, None)


# -- the training job that runs in the child ----------------------------------------------------------
@contextmanager
def compute_threads_leaving_one_core() -> Iterator[int]:
    """Limit the native thread pools (OpenMP, BLAS, torch) to all cores but one while a job computes.

    The GUI thread must get a core to stay responsive (no event-loop stall over 100 ms): with every core
    busy in OpenMP/BLAS threads — which spin while they wait — the GUI thread was measured to stall for
    300 ms at a time on a 2-core machine, and oversubscribed pools also made k-means 4x slower there.
    The limits are process-wide and restored afterwards. Yields the number of threads allowed.
    """
    threads = max(1, (os.cpu_count() or 2) - 1)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    except ImportError:  # scikit-learn brings threadpoolctl; without it only torch is limited
        pass
    try:
        import torch

        previous_torch = torch.get_num_threads()
        torch.set_num_threads(min(previous_torch, threads))
    except ImportError:
        torch = None  # type: ignore[assignment]
    try:
        yield threads
    finally:
        if torch is not None:
            torch.set_num_threads(previous_torch)
        if limiter is not None:
            limiter.restore_original_limits()


@dataclass
class TrainingResult:
    """What a training run produced, row by row of the decoded data set.

    Attributes
    ----------
    photos:
        The scan record (``PhotoFile``) of each row.
    labels, confidence:
        The method's ``labels_`` and ``confidence_`` (None when the method gives none).
    method, params:
        What was run (``params`` includes ``n_clusters``, also when it was chosen automatically).
    notes:
        Sentences for the log (how k was chosen, decode counts).
    decode_skipped:
        Photos that passed the scan but could not be decoded, with reasons.
    warnings:
        Sentences the person must see about the result itself (e.g. a collapsed training:
        :func:`photocluster.result_check.result_warnings`); also in ``notes``.
    run_id:
        The catalog's id of this run, when it was recorded in a catalog.
    photo_rows:
        For each row, its index in the photo list given to :func:`train_photos` (int64).
    recluster:
        When the catalog already had a clustering of these photos, the sentence saying what changed ("re-
        clustered: 12 of 200 photos changed group; …"), else None.
    """

    photos: list[Any]
    labels: np.ndarray
    confidence: np.ndarray | None
    method: str
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    decode_skipped: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    run_id: int | None = None
    photo_rows: np.ndarray | None = None
    recluster: str | None = None


def train_photos(photos: Sequence[Any], method: str, params: dict[str, Any], *, cancel: CancelToken,
                 method_cls: type | None = None, catalog_path: str | None = None,
                 run_id: int | None = None, return_photos: bool = True, preset: str = "fast",
                 corrections: bool = True) -> Iterator[ProgressEvent]:
    """The app's training job: :func:`photocluster.pipeline.cluster_steps`; returns a :class:`TrainingResult`.

    ``params`` without ``n_clusters`` means "automatic" for methods that take one (the pipeline's rule).
    ``method_cls`` is the method's class when the caller registered it itself (a plug-in, a test): a child
    process knows only the built-in methods until it is told. With ``catalog_path`` and ``run_id`` the
    result is recorded in that catalog before returning. The method trains with all cores but one
    (:func:`compute_threads_leaving_one_core`), so the window keeps a core. ``return_photos=False`` leaves
    ``photos`` empty (``photo_rows`` says which of the given photos each row is): a child process then sends
    back numbers only, no objects for the parent to rebuild — unpickling 200 photo records in the GUI
    process's relay thread was measured to stall its event loop 300 ms. ``preset``: the method's photo
    settings, "fast" or "thorough" (their time and memory are estimated before training). ``corrections``:
    learn from the person's corrections in the catalog (locked groups, moves, merges, splits) — the app's
    Re-cluster.
    """
    from photocluster.methods.base import _load_builtin_methods, method_class, register
    from photocluster.pipeline import cluster_steps

    if method_cls is not None:
        _load_builtin_methods()
        try:
            known = method_class(method)
        except ValueError:
            known = None
        if known is not method_cls:
            register(method_cls)
    if not photos:
        raise UsageError("no photos to train on: add a folder with photos and scan it first")
    record = catalog_path is not None and run_id is not None
    outcome = yield from cluster_steps(list(photos), method, dict(params), cancel=cancel, decode_name="library",
                                       catalog_path=catalog_path, run_id=run_id, record=record,
                                       fit_context=compute_threads_leaving_one_core, preset=preset,
                                       corrections=corrections)
    row_of_path = {str(p.path): i for i, p in enumerate(photos)}
    return TrainingResult(
        photos=list(outcome.photos) if return_photos else [],
        photo_rows=np.fromiter((row_of_path[str(p.path)] for p in outcome.photos), dtype=np.int64,
                               count=len(outcome.photos)),
        labels=outcome.labels,
        confidence=outcome.confidence,
        method=method,
        params=outcome.params,
        notes=outcome.notes,
        decode_skipped=list(outcome.decode_skipped),
        warnings=outcome.warnings,
        run_id=outcome.run_id if record else None,
        recluster=outcome.recluster.describe() if outcome.recluster is not None else None,
    )
