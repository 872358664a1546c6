"""The work the app runs in worker threads, as generators of ProgressEvent (no Qt in here).

Each job chains the same core objects the headless CLI uses — :class:`~photocluster.library.scan.FolderScan`,
:class:`~photocluster.library.decode.LibraryDecoder`, a method's ``fit_steps`` — takes a ``cancel`` token,
and *returns* plain data (a report, a :class:`TrainingResult`) that the GUI thread then writes to the
catalog. Only the GUI thread touches the catalog (SQLite connections belong to one thread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.progress import CancelToken, ProgressEvent, Throttle


def scan_job(
    folders: Sequence[Path], include_hidden: bool = False, follow_links: bool = False, *, cancel: CancelToken
) -> Iterator[ProgressEvent]:
    """Scan folders; returns the :class:`~photocluster.library.scan.ScanReport`."""
    from photocluster.library.scan import FolderScan

    scan = FolderScan(folders, include_hidden=include_hidden, follow_links=follow_links)
    yield ProgressEvent("scan", message=f"scanning {', '.join(str(f) for f in folders)}")
    yield from scan.steps(cancel)
    return scan.report


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
    """

    photos: list[Any]
    labels: np.ndarray
    confidence: np.ndarray | None
    method: str
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    decode_skipped: list[Any] = field(default_factory=list)


def training_job(
    photos: Sequence[Any], method: str, params: dict[str, Any], *, cancel: CancelToken
) -> Iterator[ProgressEvent]:
    """Decode (cached) → choose k when asked ("auto") → ``fit_steps``; returns a :class:`TrainingResult`.

    ``params`` without ``n_clusters`` means "auto" for methods that take one: k is estimated by the
    headless mode's rule (best silhouette of k-means on image features).
    """
    from photocluster.library.decode import LibraryDecoder
    from photocluster.methods.base import get_method, method_class

    if not photos:
        raise UsageError("no photos to train on: add a folder with photos and scan it first")
    decoder = LibraryDecoder(photos, name="library")
    yield from decoder.steps(cancel)
    decoded = decoder.result
    dataset = decoded.dataset
    notes = [f"decode: {decoded.n_decoded} decoded, {decoded.n_cached} from the cache, "
             f"{len(decoded.skipped)} could not be decoded"]
    yield ProgressEvent("decode", step=1, total=1, message=notes[0])
    if dataset is None or len(dataset) < 2:
        raise UsageError("fewer than 2 photos could be decoded; there is nothing to sort")

    params = dict(params)
    if "n_clusters" in method_class(method)._param_names() and params.get("n_clusters") is None:
        from photocluster.library.headless import estimate_k

        yield ProgressEvent("choose k", message="estimating the number of clusters…")
        k, how, _scores = estimate_k(dataset.images, cancel=cancel)
        params["n_clusters"] = k
        notes.append(f"k = {k} ({how})")
        yield ProgressEvent("choose k", step=1, total=1, message=notes[-1])
    k = params.get("n_clusters")
    if k is not None and k > len(dataset):
        raise UsageError(f"{k} clusters asked for but only {len(dataset)} photos could be decoded")

    estimator = get_method(method, **params)
    yield ProgressEvent("train", message=f"training {method} on {len(dataset)} photos")
    yield from estimator.fit_steps(dataset, cancel=cancel)
    confidence = getattr(estimator, "confidence_", None)
    return TrainingResult(
        photos=list(decoded.photos),
        labels=np.asarray(estimator.labels_, dtype=np.int64),
        confidence=None if confidence is None else np.asarray(confidence, dtype=np.float64),
        method=method,
        params=params,
        notes=notes,
        decode_skipped=list(decoded.skipped),
    )


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
    yield from estimator.fit_steps(dataset, cancel=cancel)
    return np.asarray(estimator.labels_, dtype=np.int64)


def folder_exists(path: str | os.PathLike) -> bool:
    return Path(path).expanduser().is_dir()
