"""Headless folder mode: ``photocluster --headless --folder DIR --method M -k K [--export DEST ...]``.

Scan → decode once → train → print the clusters → (optionally) export, with a tqdm bar per stage on
stderr, the skipped files with their reasons, and one-line errors for bad arguments
(:class:`~photocluster.errors.UsageError`, exit 2). ``-k auto`` picks the number of clusters by the best
silhouette of k-means on HOG features over k = 2 .. min(20, N/5) and prints how it chose. Ctrl-C cancels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.library.decode import LibraryDecoder
from photocluster.library.scan import FolderScan, SkippedFile, display_path
from photocluster.progress import CancelToken, Cancelled, ProgressEvent
from photocluster.result_check import result_warnings

#: How many file names to print under each cluster.
NAMES_PER_CLUSTER = 4
#: The largest k that ``-k auto`` tries (and at most N / 5, so a cluster has about five photos or more).
AUTO_K_MAX = 20
#: Silhouette on more points than this is computed on a random sample of this size (it is O(N^2)).
SILHOUETTE_SAMPLE = 3000
DEFAULT_METHOD = "kmeans"


# -- arguments -------------------------------------------------------------------------------------
def _parse_k(raw: str | None) -> int | None:
    """None means auto."""
    if raw is None or str(raw).strip().lower() == "auto":
        return None
    try:
        k = int(raw)
    except ValueError:
        raise UsageError(f"-k must be a whole number of clusters or 'auto', got {raw!r}") from None
    if k < 2:
        raise UsageError(f"-k must be at least 2 (got {k}): one cluster sorts nothing")
    return k


def _check_folders(folders: Sequence[str]) -> list[Path]:
    paths = []
    for raw in folders:
        # Absolute and normalised ("../x" → "/abs/x"): the catalog and the export plan name each photo
        # by one path, whatever directory the command was started from.
        path = Path(os.path.abspath(Path(raw).expanduser()))
        if not path.exists():
            raise UsageError(f"folder not found: {display_path(path)}")
        if not path.is_dir():
            raise UsageError(f"not a folder: {display_path(path)}")
        paths.append(path)
    return paths


def _method_params(name: str, args: argparse.Namespace, k: int) -> dict[str, Any]:
    from photocluster.methods.base import method_class, parse_param_overrides

    accepted = set(method_class(name)._param_names())
    params: dict[str, Any] = {"n_clusters": k}
    if "random_state" in accepted:
        params["random_state"] = getattr(args, "seed", 0) or 0
    if "device" in accepted and getattr(args, "device", None):
        params["device"] = args.device
    if "weights" in accepted and getattr(args, "weights", None):
        params["weights"] = args.weights
    if "boot" in accepted and getattr(args, "boot", None):
        params["boot"] = args.boot
    params.update(parse_param_overrides(name, list(getattr(args, "param", []) or [])))
    return params


# -- progress --------------------------------------------------------------------------------------
def drive(steps: Iterable[ProgressEvent], *, label: str, quiet: bool = False) -> None:
    """Consume a generator of events, showing one tqdm bar per stage on stderr."""
    if quiet:
        for _ in steps:
            pass
        return
    from tqdm import tqdm

    bar = None
    stage = None
    try:
        for event in steps:
            if bar is None or event.stage != stage or (event.total is not None and bar.total != event.total):
                if bar is not None:
                    bar.close()
                stage = event.stage
                bar = tqdm(total=event.total, desc=f"{label}: {event.stage}", file=sys.stderr, leave=True,
                           dynamic_ncols=True, unit="")
            bar.n = event.step
            postfix = {k: f"{v:.4g}" for k, v in event.metrics.items()}
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def print_skipped(skipped: Sequence[SkippedFile], *, heading: str, stream=None) -> None:
    """Every skipped file, one per line, with its reason (nothing is dropped silently)."""
    stream = stream or sys.stdout
    if not skipped:
        return
    print(f"{heading} ({len(skipped)}):", file=stream)
    for item in skipped:
        print(f"  {display_path(item.path)}: {item.reason}", file=stream)


# -- k = auto --------------------------------------------------------------------------------------
def _features_for_k(images: np.ndarray) -> tuple[np.ndarray, str]:
    """HOG features from the shared feature module, or (if that module is not available) a small colour +
    layout descriptor; returns (features, how they were made)."""
    try:
        from photocluster.features.handcrafted import extract_features
    except ImportError:
        extract_features = None
    if extract_features is not None:
        return np.asarray(extract_features(images, "hog"), dtype=np.float32), "HOG features"
    # Fallback: 8x8 colour layout + 4x4x4 colour histogram, computed in batches from the memmap.
    rows = []
    for start in range(0, len(images), 512):
        batch = np.asarray(images[start:start + 512], dtype=np.float32)
        n, h, w, _ = batch.shape
        layout = batch[:, : h - h % 8, : w - w % 8].reshape(n, 8, (h - h % 8) // 8, 8, (w - w % 8) // 8, 3)
        layout = layout.mean(axis=(2, 4)).reshape(n, -1) / 255.0
        bins = (batch // 64).astype(np.int64)
        codes = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
        hist = np.stack([np.bincount(c.ravel(), minlength=64) for c in codes]).astype(np.float32)
        hist /= hist.sum(axis=1, keepdims=True)
        rows.append(np.concatenate([layout, hist], axis=1))
    return np.concatenate(rows).astype(np.float32), "colour layout + histogram features"


def estimate_k(images: np.ndarray, *, k_max: int = AUTO_K_MAX, random_state: int = 0,
               cancel: CancelToken | None = None) -> tuple[int, str, dict[int, float]]:
    """Choose the number of clusters by the best silhouette of k-means on image features.

    Parameters
    ----------
    images:
        uint8 (N, H, W, C), may be a memmap.
    k_max:
        Largest k tried; the range is k = 2 .. min(k_max, N // 5) (at least 2).

    Returns
    -------
    (k, explanation, silhouette per k)
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    n = len(images)
    if n < 4:
        raise UsageError(f"-k auto needs at least 4 photos, found {n}; give -k explicitly")
    features, feature_name = _features_for_k(images)
    features = StandardScaler().fit_transform(features)
    if features.shape[1] > 64:
        from sklearn.decomposition import PCA

        # Silhouette and k-means on 64 principal components: the same structure, far less time.
        features = PCA(n_components=min(64, n - 1), random_state=random_state).fit_transform(features)
    top = max(2, min(k_max, n // 5))
    scores: dict[int, float] = {}
    sample = min(n, SILHOUETTE_SAMPLE)
    for k in range(2, top + 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        labels = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit_predict(features)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(features, labels, sample_size=sample if sample < n else None,
                                           random_state=random_state))
    best = max(scores, key=lambda k: scores[k]) if scores else 2
    how = f"auto: best silhouette of k-means on {feature_name} over k = 2..{top}"
    return best, how, scores


# -- the clusters ----------------------------------------------------------------------------------
def cluster_order(labels: np.ndarray) -> list[int]:
    """Cluster labels, largest cluster first (ties: smaller label first)."""
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))
    return [value for value, _ in order]


@dataclass(frozen=True)
class ClusterGroup:
    """One cluster as printed and exported: its name, its rows in the data set (surest first), locked?"""

    name: str
    rows: list[int]
    locked: bool = False


def groups_from_labels(labels: np.ndarray, confidence: np.ndarray | None) -> list[ClusterGroup]:
    """(name, row indices) per cluster, largest first, named "Cluster 1", "Cluster 2", … in that order;
    rows inside a cluster surest first."""
    groups = []
    for rank, label in enumerate(cluster_order(labels), start=1):
        rows = np.flatnonzero(labels == label)
        if confidence is not None:
            rows = rows[np.argsort(-confidence[rows], kind="stable")]
        groups.append(ClusterGroup(f"Cluster {rank}", rows.tolist()))
    return groups


def print_clusters(paths: Sequence[str], groups: Sequence[ClusterGroup], stream=None) -> None:
    """Each cluster with its size and its first few file names (the surest ones)."""
    stream = stream or sys.stdout
    for group in groups:
        shown = [display_path(Path(paths[i]).name) for i in group.rows[:NAMES_PER_CLUSTER]]
        more = f", … (+{len(group.rows) - len(shown)})" if len(group.rows) > len(shown) else ""
        locked = " [locked]" if group.locked else ""
        print(f"  {group.name}{locked} ({len(group.rows)} photos): {', '.join(shown)}{more}", file=stream)


def record_in_catalog(photos, method: str, params: dict, labels: np.ndarray, confidence: np.ndarray | None,
                      metrics: dict) -> tuple[str, list[ClusterGroup] | None]:
    """Record the run in the catalog (when that module exists) and read back the clusters it keeps.

    The catalog applies the user's decisions to a new run — locked clusters keep their photos, photos the
    user moved stay, names stay with their clusters — so the clusters printed and exported are the
    catalog's, restricted to this run's photos. Returns (a line to print, groups or None when the catalog
    could not be used: then the caller uses the raw labels).
    """
    try:
        from photocluster.library.catalog import Catalog
    except ImportError:
        return "", None
    try:
        with Catalog() as catalog:
            photo_ids = catalog.add_photos(photos)
            run_id = catalog.start_run(method, params)
            catalog.record_result(run_id, photo_ids, labels, confidence, metrics=metrics)
            row_of_id = {photo_id: row for row, photo_id in enumerate(photo_ids)}
            groups = []
            for info in catalog.clusters():
                rows = [row_of_id[p.id] for p in catalog.photos_in(info.id, order="confidence") if p.id in row_of_id]
                if rows:
                    groups.append(ClusterGroup(info.name, rows, bool(info.locked)))
    except Exception as exc:  # the sort itself succeeded; a catalog problem must not hide its result
        return f"note: the run was not recorded in the catalog ({type(exc).__name__}: {exc})", None
    if sum(len(group.rows) for group in groups) != len(photos):
        return f"recorded as run {run_id} in the catalog (note: some photos are not in its clusters)", None
    groups.sort(key=lambda group: -len(group.rows))
    return f"recorded as run {run_id} in the catalog (names, locked clusters and your moves kept)", groups


# -- the command -----------------------------------------------------------------------------------
def run_folder_command(args: argparse.Namespace) -> int:
    """Sort the photos of ``args.folder`` into clusters; see the module docstring. Returns the exit code."""
    from photocluster.cli import install_sigint_cancel
    from photocluster.methods.base import list_methods, method_class

    folders = _check_folders(args.folder)
    method = (args.method or DEFAULT_METHOD).strip()
    if "," in method:
        raise UsageError("folder mode runs one method at a time; give a single --method")
    try:
        cls = method_class(method)
    except ValueError:
        raise UsageError(f"unknown method {method!r}; available: {', '.join(list_methods()) or 'none'}") from None
    k = _parse_k(args.clusters)
    if args.dry_run and not args.export:
        raise UsageError("--dry-run shows an export plan: give --export DEST too")
    quiet = bool(getattr(args, "quiet", False))
    _method_params(method, args, k or 2)  # validate -p KEY=VALUE before any slow work

    token = CancelToken()
    install_sigint_cancel(token)
    try:
        return _run(args, folders, cls.name, k, quiet, token)
    except Cancelled:
        print("photocluster: cancelled", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, folders: list[Path], method: str, k: int | None, quiet: bool,
         token: CancelToken) -> int:
    from photocluster.methods.base import get_method

    scan = FolderScan(folders, include_hidden=args.include_hidden, follow_links=args.follow_links)
    drive(scan.steps(token), label="scan", quiet=quiet)
    report = scan.report
    print(f"scan: {report.summary()}")
    print_skipped(report.skipped, heading="skipped")
    for group in report.duplicates:
        print(f"  byte-identical: {', '.join(display_path(p) for p in group)}")
    if not report.photos:
        where = ", ".join(display_path(f) for f in folders)
        raise UsageError(f"no photos found in {where}")

    decoder = LibraryDecoder(report.photos, name="folder:" + ";".join(str(f) for f in folders))
    drive(decoder.steps(token), label="decode", quiet=quiet)
    result = decoder.result
    print(f"decode: {result.n_decoded} decoded, {result.n_cached} from the cache, "
          f"{len(result.skipped)} could not be decoded")
    print_skipped(result.skipped, heading="could not be decoded")
    dataset = result.dataset
    if dataset is None or len(dataset) < 2:
        raise UsageError("fewer than 2 photos could be decoded; nothing to sort")

    if k is None:
        k, how, _scores = estimate_k(dataset.images, random_state=getattr(args, "seed", 0) or 0, cancel=token)
        print(f"k = {k} ({how})")
    if k > len(dataset):
        raise UsageError(f"-k {k} is more than the {len(dataset)} photos found")

    params = _method_params(method, args, k)
    try:
        estimator = get_method(method, **params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"method: {method} ({', '.join(f'{key}={value}' for key, value in params.items())})")
    fit_started = time.monotonic()
    try:
        drive(estimator.fit_steps(dataset, cancel=token), label=method, quiet=quiet)
    except ValueError as exc:  # a method refusing its input or parameters (validated at fit time)
        raise UsageError(f"{method}: {exc}") from None
    labels = np.asarray(estimator.labels_)
    confidence = getattr(estimator, "confidence_", None)
    confidence = None if confidence is None else np.asarray(confidence, dtype=np.float64)

    metrics = {"seconds": round(time.monotonic() - fit_started, 3)}
    note, groups = record_in_catalog(result.photos, method, params, labels, confidence, metrics)
    if groups is None:
        groups = groups_from_labels(labels, confidence)
    print(f"{len(groups)} clusters of {len(dataset)} photos:")
    print_clusters(dataset.paths, groups)
    if note:
        print(note)
    for warning in result_warnings(labels, params.get("n_clusters"), method):
        print(f"photocluster: warning: {warning}", file=sys.stderr)

    if args.export:
        _export(args, dataset.paths, groups, confidence, token, quiet)
    return 0


def _export(args: argparse.Namespace, paths: Sequence[str], groups: Sequence[ClusterGroup],
            confidence: np.ndarray | None, token: CancelToken, quiet: bool) -> None:
    try:
        from photocluster.library.export import ExportItem, pending_exports, plan_export, recover_exports, run_export
    except ImportError:
        raise UsageError("export is not available in this installation (photocluster.library.export missing)") from None
    destination = Path(args.export).expanduser()
    if not args.dry_run and destination.is_dir() and pending_exports(destination):
        # An earlier export into this folder was interrupted: finish it first, so no photo is half-moved.
        for line in recover_exports(destination, cancel=token):
            print(f"recovered: {line}")
    items = [
        ExportItem(source=Path(paths[row]), cluster=group.name,
                   confidence=None if confidence is None else float(confidence[row]))
        for group in groups
        for row in group.rows
    ]
    plan = plan_export(items, destination=destination, mode=args.mode)
    if args.dry_run:
        print(f"export plan ({args.mode} into {display_path(destination)}), dry run — nothing is changed:")
        print(plan.describe())
        return
    drive(run_export(plan, cancel=token), label="export", quiet=quiet)
    report = plan.report
    print(f"export: {report.summary()}")
    for source, reason in report.failed:
        print(f"  failed: {display_path(source)}: {reason}")
    if report.manifest_csv is not None:
        print(f"manifest: {display_path(report.manifest_csv)}")
