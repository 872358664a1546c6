"""The work the app runs in worker threads, as generators of ProgressEvent (no Qt in here).

Each job chains the same core objects the headless CLI uses — :class:`~photocluster.library.scan.FolderScan`,
:class:`~photocluster.library.decode.LibraryDecoder`, a method's ``fit_steps`` — takes a ``cancel`` token,
and *returns* plain data (a report, a :class:`TrainingResult`).

Training (decode, fit, and writing the result into the catalog) runs in a child *process*
(:mod:`photocluster.training_process`) that the worker thread only relays: anything holding the GIL for long
in this process stalls the window's event loop (measured on a 2-core machine: recording 200 photos on the
GUI thread froze it for 460 ms, from a worker thread still 380-400 ms; tlfwr training in a worker thread
400-650 ms), and a separate process shares no GIL. The child opens the same catalog file (SQLite in WAL
mode allows it; the window's connection sees the result once it is committed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.progress import CancelToken, Cancelled, ProgressEvent, Throttle
from photocluster.training_process import (  # noqa: F401 — TrainingResult and the rest are re-exported
    TrainingResult,
    compute_threads_leaving_one_core,
    process_context,
    start_in_process,
    train_photos,
)


#: Modules the methods import lazily on their first run. Importing a large package holds the GIL for long
#: stretches (measured: the first torch optimizer imports torch._dynamo, a 300 ms event-loop stall in the
#: middle of training; sklearn.cluster 230 ms), so the app imports them once at start, before its window
#: shows, instead of in the worker thread while the user watches the progress bar.
WARM_UP_MODULES = ("sklearn.cluster", "sklearn.metrics", "torch.optim", "torch._dynamo", "scipy.optimize")


def warm_up_imports() -> list[str]:
    """Import :data:`WARM_UP_MODULES` now (call before the window shows); returns those that imported."""
    import importlib

    done = []
    for name in WARM_UP_MODULES:
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:  # an optional piece missing: its method will say so when it runs
            pass
    return done


def scan_job(
    folders: Sequence[Path],
    include_hidden: bool = False,
    follow_links: bool = False,
    *,
    catalog: Any = None,
    exclude: Sequence[Path] = (),
    cancel: CancelToken,
) -> Iterator[ProgressEvent]:
    """Scan folders (and add the photos to ``catalog``); returns the :class:`~photocluster.library.scan.ScanReport`.

    ``exclude``: folders left out, as the folder mode leaves out its export destination (the copies an
    export made inside a scanned folder are not new photos to sort).
    """
    from photocluster.library.scan import FolderScan

    scan = FolderScan(folders, include_hidden=include_hidden, follow_links=follow_links, exclude=exclude)
    yield ProgressEvent("scan", message=f"scanning {', '.join(str(f) for f in folders)}")
    yield from scan.steps(cancel)
    if catalog is not None and scan.report.photos:
        yield ProgressEvent("save", message=f"adding {len(scan.report.photos)} photos to the catalog")
        catalog.add_photos(scan.report.photos)
    return scan.report


def training_job(
    photos: Sequence[Any], method: str, params: dict[str, Any], *, catalog: Any = None, cancel: CancelToken,
    in_child_process: bool = True, preset: str = "fast", corrections: bool = True,
) -> Iterator[ProgressEvent]:
    """Decode (cached) → choose k when asked ("auto") → corrections → ``fit_steps`` → record in ``catalog``.

    Returns a :class:`TrainingResult`. ``params`` without ``n_clusters`` means "auto" for methods that take
    one (see :func:`~photocluster.training_process.train_photos`). With a catalog, the run is recorded as it
    starts and closed as ``failed`` or ``cancelled`` if it does not finish.

    The work runs in a child process (:func:`~photocluster.training_process.run_in_process`), which also
    writes the result into the catalog, so nothing it computes can hold this process's GIL: in a worker
    thread, tlfwr stalled the window's event loop for 400-650 ms in 3 of 6 runs (2-core machine).
    ``in_child_process=False`` runs it in the calling thread instead (tests compare the two); so does a machine
    where no child process can start. ``corrections``: the method learns from the person's corrections in
    ``catalog`` (locked groups, moves, merges, splits; see :func:`photocluster.pipeline.cluster_steps`); the
    result's ``recluster`` then says how many photos changed group.
    """
    from photocluster.methods.base import method_class

    method_cls = method_class(method)
    run_id = catalog.start_run(method, _jsonable(params)) if catalog is not None else None
    catalog_path = str(catalog.path) if catalog is not None else None
    try:
        work = None
        if in_child_process:
            try:
                work = start_in_process(train_photos, list(photos), method, dict(params), cancel=cancel,
                                        method_cls=method_cls, catalog_path=catalog_path, run_id=run_id,
                                        return_photos=False, preset=preset, corrections=corrections)
            except (OSError, RuntimeError) as exc:
                yield ProgressEvent("train", message=f"cannot start a training process ({exc}); "
                                                     "training in this process instead")
        if work is None:
            work = train_photos(list(photos), method, dict(params), cancel=cancel, method_cls=method_cls,
                                catalog_path=catalog_path, run_id=run_id, preset=preset, corrections=corrections)
        result = yield from work
        if not result.photos:  # sent back as row numbers (see train_photos)
            result.photos = [photos[i] for i in result.photo_rows.tolist()]
    except Cancelled:
        if run_id is not None:
            catalog.finish_run(run_id, status="cancelled")
        raise
    except BaseException:
        if run_id is not None:
            catalog.finish_run(run_id, status="failed")
        raise
    return result


def recluster_job(
    folders: Sequence[Path], method: str, params: dict[str, Any], *, catalog: Any, cancel: CancelToken,
    exclude: Sequence[Path] = (), preset: str = "fast", in_child_process: bool = True,
) -> Iterator[ProgressEvent]:
    """The app's Re-cluster: scan the folders again, then :func:`training_job` learning from the corrections.

    The scan picks up the photos added since the last one (and drops the ones gone); unchanged files are
    known to the scan index and not read again, so on an unchanged library it costs little. The training
    then keeps the locked groups and learns from the person's moves, merges and splits, and the new photos
    are placed among the groups. Returns ``(ScanReport, TrainingResult)``; the result's ``recluster`` is the
    summary sentence (how many photos changed group).
    """
    report = yield from scan_job(folders, catalog=catalog, exclude=exclude, cancel=cancel)
    if not report.photos:
        raise UsageError("the folders hold no usable photos now (scan report: " + report.summary() + ")")
    cancel.raise_if_cancelled()
    result = yield from training_job(report.photos, method, params, catalog=catalog, cancel=cancel,
                                     in_child_process=in_child_process, preset=preset, corrections=True)
    return report, result


def file_uri_list(paths: Sequence[str]) -> bytes:
    """``text/uri-list`` data (RFC 2483: ``file://`` URIs, percent-encoded, CRLF-separated) for local files.

    Plain string work (about a microsecond a path), so a cluster's list can be built outside the GUI thread
    and handed to a drag as one bytes object; building 100,000 ``QUrl`` objects in the GUI thread when the
    drag starts took about 2 s.
    """
    from urllib.parse import quote

    return "".join(f"file://{quote(os.path.abspath(p))}\r\n" for p in paths).encode()


def read_cluster_columns(catalog_path: str, cluster_id: int) -> dict[str, Any]:
    """A cluster's photos as compact columns (runs in a helper process; see :func:`cluster_rows_job`)."""
    from photocluster.library.catalog import Catalog

    catalog = Catalog(catalog_path)
    try:
        rows = catalog.photos_in(cluster_id)
    finally:
        catalog.close()
    paths = [str(r.path) for r in rows]
    return {
        "ids": np.array([r.id for r in rows], dtype=np.int64),
        "confidence": np.array([np.nan if r.confidence is None else r.confidence for r in rows], dtype=np.float64),
        # one string per column: pickling 100,000 small strings costs far more than one large one
        "paths": "\0".join(paths),
        "hashes": "\0".join(r.content_hash or "" for r in rows),
        "uris": file_uri_list(paths),
    }


def cluster_rows_job(catalog_path: str, cluster_id: int, *, cancel: CancelToken) -> Iterator[ProgressEvent]:
    """The photos of a large cluster for the grid, without starving the GUI thread.

    Reading 100,000 rows through the catalog in a worker thread stalled the event loop for up to 500 ms
    (the SQLite fetch holds the GIL in long stretches), so the read runs in a helper process and comes back
    as compact columns; building a row object per photo here stalled it for 290 ms, so none are built: the
    grid model takes the columns (:meth:`~photocluster.gui.models.PhotoGridModel.set_columns`).

    Returns a dict: ``ids`` (int64), ``paths`` (list of str), ``confidence`` (float64, NaN = unknown),
    ``hashes`` (list, None where unknown), ``uris`` (the ``text/uri-list`` bytes for a drag).
    """
    columns = yield from _in_helper_process(read_cluster_columns, catalog_path, cluster_id, stage="load")
    cancel.raise_if_cancelled()
    n = len(columns["ids"])
    # str.split is one C call (about 10 ms for 100,000 paths), short enough to hold the GIL for
    return {
        "ids": columns["ids"],
        "paths": columns["paths"].split("\0") if n else [],
        "confidence": columns["confidence"],
        "hashes": [h or None for h in columns["hashes"].split("\0")] if n else [],
        "uris": columns["uris"],
    }


def cluster_list(catalog: Any, make_row: Any) -> list[Any]:
    """``make_row(info, representative_photo_or_None)`` for each current cluster of ``catalog``."""
    rows = []
    for info in catalog.clusters():
        photo_id = getattr(info, "representative_photo_id", None)
        representative = None
        if photo_id is not None:
            try:
                representative = catalog.photo(photo_id)
            except Exception:  # noqa: BLE001 — a vanished representative only costs the icon
                representative = None
        rows.append(make_row(info, representative))
    return rows


def read_cluster_list(catalog_path: str, make_row: Any, *, cancel: CancelToken) -> Iterator[ProgressEvent]:
    """:func:`cluster_list` on a connection of its own, for a worker thread.

    SQLite runs the query (145 ms with 100,000 photos) without holding the GIL, and the window's own
    connection stays free for the GUI thread.
    """
    from photocluster.library.catalog import Catalog

    yield ProgressEvent("load", message="reading the clusters")
    catalog = Catalog(catalog_path)
    try:
        return cluster_list(catalog, make_row)
    finally:
        catalog.close()


def _in_helper_process(func, *args: Any, stage: str = "save") -> Iterator[ProgressEvent]:
    """Run ``func(*args)`` in a helper process, yielding while it works; in this thread if none can start.

    Returns what ``func`` returns. Not cancellable on purpose: ``func`` is one catalog transaction or
    read, short, and must not be cut in two.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=process_context())
        future = pool.submit(func, *args)
    except (OSError, RuntimeError, BrokenProcessPool):
        return func(*args)
    try:
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                yield ProgressEvent(stage)
            except BrokenProcessPool:
                return func(*args)  # the helper died before it could write (a write is one transaction)
    finally:
        pool.shutdown(wait=True)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON-able values for the catalog's run record."""
    return {key: value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
            for key, value in params.items()}


def load_arrays(
    paths: Sequence[str], content_hashes: Sequence[str | None], *, cancel: CancelToken
) -> Iterator[ProgressEvent]:
    """Training arrays of some photos: from the decode cache when there, else decoded now.

    Returns a uint8 array (N, H, W, 3); photos that cannot be read raise ``UsageError`` with the file.
    """
    from photocluster.library.decode import DEFAULT_SIZE, array_cache_path, decode_photo

    throttle = Throttle(0.25)
    arrays = []
    for i, (path, content_hash) in enumerate(zip(paths, content_hashes)):
        cancel.raise_if_cancelled()
        array = None
        if content_hash:
            cached = array_cache_path(content_hash, DEFAULT_SIZE)
            if cached.exists():
                array = np.load(cached, allow_pickle=False)
        if array is None:
            try:
                array = decode_photo(Path(path).read_bytes(), size=DEFAULT_SIZE).array
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read {path}: {exc}") from exc
        arrays.append(array)
        if throttle.ready():
            yield ProgressEvent("load", step=i + 1, total=len(paths))
    return np.stack(arrays) if arrays else np.zeros((0, DEFAULT_SIZE, DEFAULT_SIZE, 3), np.uint8)


def split_job(
    paths: Sequence[str], content_hashes: Sequence[str | None], n_parts: int, *, cancel: CancelToken
) -> Iterator[ProgressEvent]:
    """Labels that split one cluster's photos into ``n_parts`` (k-means on their images).

    Returns an int64 array with one label in ``0 .. n_parts - 1`` per photo, in the order given.
    """
    from photocluster.data.dataset import ImageDataset
    from photocluster.methods.base import get_method

    if n_parts < 2:
        raise UsageError("a split needs at least 2 parts")
    if len(paths) < n_parts:
        raise UsageError(f"cannot split {len(paths)} photos into {n_parts} parts")
    images = yield from load_arrays(paths, content_hashes, cancel=cancel)
    dataset = ImageDataset("split", images, paths=list(paths))
    estimator = get_method("kmeans", n_clusters=n_parts)
    with compute_threads_leaving_one_core():
        yield from estimator.fit_steps(dataset, cancel=cancel)
    return np.asarray(estimator.labels_, dtype=np.int64)


def split_cluster_job(
    catalog_path: str, cluster_id: int, n_parts: int,
    photos: tuple[Sequence[int], Sequence[str], Sequence[str | None]] | None = None, *, cancel: CancelToken,
) -> Iterator[ProgressEvent]:
    """:func:`split_job` on a cluster of the catalog; returns ``(photo_ids, labels)`` for ``Catalog.split``.

    ``photos`` (ids, paths, content hashes) when the caller has read them (a small cluster); otherwise they
    are read here, in a helper process as for the grid: 100,000 rows took 1.7 s, and reading them in a
    thread of the window's process stalls its event loop (see :func:`cluster_rows_job`). A large cluster's
    images are then loaded and clustered in a child process as well, like training and for the same reason
    (k-means and the decoding of thousands of photos hold the GIL for long stretches); a small one is split
    in this thread, which costs less than starting a process.
    """
    large = photos is None
    if large:
        yield ProgressEvent("load", message="reading the cluster's photos")
        columns = yield from _in_helper_process(read_cluster_columns, catalog_path, cluster_id, stage="load")
        cancel.raise_if_cancelled()
        n = len(columns["ids"])
        photos = (columns["ids"].tolist(), columns["paths"].split("\0") if n else [],
                  [h or None for h in columns["hashes"].split("\0")] if n else [])
    photo_ids, paths, hashes = photos
    work = None
    if large:
        try:
            work = start_in_process(split_job, list(paths), list(hashes), n_parts, cancel=cancel)
        except (OSError, RuntimeError) as exc:
            yield ProgressEvent("split", message=f"cannot start a helper process ({exc}); splitting here")
    if work is None:
        work = split_job(paths, hashes, n_parts, cancel=cancel)
    labels = yield from work
    return list(photo_ids), labels


def folder_exists(path: str | os.PathLike) -> bool:
    return Path(path).expanduser().is_dir()
