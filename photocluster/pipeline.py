"""The one photo pipeline: scan → decode (cached) → k → corrections → method → check → catalog, as generators of events.

Every way of sorting a person's photos goes through here — the folder mode
(:mod:`photocluster.folder_mode`), the app's training process (:mod:`photocluster.training_process`) and the
``folder:`` benchmark (:mod:`photocluster.benchmarks.runner`) — so a capability (a cache, a preset, an
estimate, a constraint) is added once, and the messages a person reads are the same sentences everywhere.

Each stage is a generator of :class:`~photocluster.progress.ProgressEvent` whose return value is the
stage's result (``result = yield from cluster_steps(...)``). Events with a ``message`` are the sentences a
driver shows (the folder mode prints them, the app writes them in its log); the others drive a progress bar.
Qt-free: this is core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.library.scan import FolderScan, PhotoFile, ScanReport, SkippedFile, display_path
from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent

__all__ = [
    "ClusterGroup",
    "ClusteringOutcome",
    "cluster_order",
    "cluster_steps",
    "constraints_for",
    "decode_steps",
    "groups_from_labels",
    "labelled_folder_dataset",
    "record_in_catalog",
    "scan_steps",
]


# -- scan ------------------------------------------------------------------------------------------
def scan_steps(folders: Sequence[Path], *, include_hidden: bool = False, follow_links: bool = False,
               exclude: Sequence[Path] = (), cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Walk the folders; returns the :class:`~photocluster.library.scan.ScanReport`.

    The closing message says how many photos were found and skipped; every skipped file is listed by the
    driver from ``report.skipped`` (nothing is dropped silently). ``exclude``: folders left out (an export
    destination inside a scanned folder, :func:`~photocluster.library.export.prepare_export`).
    """
    scan = FolderScan(list(folders), include_hidden=include_hidden, follow_links=follow_links, exclude=exclude)
    yield from scan.steps(cancel)
    report = scan.report
    yield ProgressEvent("scan", step=1, total=1, message=f"scan: {report.summary()}")
    return report


# -- decode ----------------------------------------------------------------------------------------
@dataclass
class DecodedPhotos:
    """The decoded data set (rows = photos that decoded), their scan records, and those that failed."""

    dataset: ImageDataset
    photos: list[PhotoFile]
    skipped: list[SkippedFile]


def decode_steps(photos: Sequence[PhotoFile], *, name: str, size: int | None = None,
                 cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Decode each photo once (cached by content hash); returns :class:`DecodedPhotos`.

    Raises :class:`~photocluster.errors.UsageError` when fewer than 2 photos decode.
    """
    from photocluster.library.decode import DEFAULT_SIZE, LibraryDecoder

    if not photos:
        raise UsageError("no photos to sort: add a folder with photos first")
    decoder = LibraryDecoder(list(photos), size=size or DEFAULT_SIZE, name=name)
    yield from decoder.steps(cancel)
    result = decoder.result
    yield ProgressEvent("decode", step=1, total=1,
                        message=f"decode: {result.n_decoded} decoded, {result.n_cached} from the cache, "
                                f"{len(result.skipped)} could not be decoded")
    if result.dataset is None or len(result.dataset) < 2:
        raise UsageError("fewer than 2 photos could be decoded; there is nothing to sort")
    return DecodedPhotos(result.dataset, list(result.photos), list(result.skipped))


# -- the clusters as a person sees them -------------------------------------------------------------
def cluster_order(labels: np.ndarray) -> list[int]:
    """Cluster labels, largest cluster first (ties: smaller label first)."""
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))
    return [value for value, _ in order]


@dataclass(frozen=True)
class ClusterGroup:
    """One cluster as shown and exported: its name, its rows in the data set (surest first), locked?"""

    name: str
    rows: list[int]
    locked: bool = False


def groups_from_labels(labels: np.ndarray, confidence: np.ndarray | None) -> list[ClusterGroup]:
    """Clusters largest first, named "Cluster 1", "Cluster 2", … in that order; rows surest first."""
    groups = []
    for rank, label in enumerate(cluster_order(labels), start=1):
        rows = np.flatnonzero(labels == label)
        if confidence is not None:
            rows = rows[np.argsort(-confidence[rows], kind="stable")]
        groups.append(ClusterGroup(f"Cluster {rank}", rows.tolist()))
    return groups


def record_in_catalog(photos: Sequence[PhotoFile], method: str, params: dict, labels: np.ndarray,
                      confidence: np.ndarray | None, metrics: dict, *, catalog_path: str | Path | None = None,
                      run_id: int | None = None, suggested_names: dict[int, str] | None = None,
                      changes: "ReclusterSummary | None" = None,
                      ) -> tuple[str, list[ClusterGroup] | None, int | None]:
    """Record a run in the catalog and read back the clusters it keeps.

    The catalog applies the person's decisions to a new run — locked clusters keep their photos, photos they
    moved stay, names stay with their clusters — so the clusters shown and exported are the catalog's,
    restricted to this run's photos. ``run_id`` is a run the caller already started (the app starts it when
    Train is pressed); without it a run is started here. Returns (a sentence for the person, the groups or
    None when the catalog could not be used — the caller then uses the raw labels —, the run's id).
    ``changes``, when given, is filled with how many of these photos changed cluster.
    """
    from photocluster.library.catalog import Catalog

    try:
        # writing(): another process's run cannot land between recording this one and reading it back.
        with Catalog(catalog_path) as catalog, catalog.writing():
            photo_ids = catalog.add_photos(photos)
            before = catalog.assignments(photo_ids)
            if run_id is None:
                run_id = catalog.start_run(method, params)
            catalog.record_result(run_id, photo_ids, labels, confidence, metrics=metrics,
                                  suggested_names=suggested_names)
            if changes is not None:
                after = catalog.assignments(photo_ids)
                changes.previously_sorted = len(before)
                changes.new_photos = sum(1 for p in photo_ids if p not in before)
                changes.changed = sum(1 for p, c in before.items() if after.get(p) != c)
            row_of_id = {photo_id: row for row, photo_id in enumerate(photo_ids)}
            groups = []
            for info in catalog.clusters():
                rows = [row_of_id[p.id] for p in catalog.photos_in(info.id, order="confidence") if p.id in row_of_id]
                if rows:
                    groups.append(ClusterGroup(info.name, rows, bool(info.locked)))
    except Exception as exc:  # noqa: BLE001 — the sort itself succeeded; a catalog problem must not hide it
        return f"note: the run was not recorded in the catalog ({type(exc).__name__}: {exc})", None, None
    if sum(len(group.rows) for group in groups) != len(photos):
        return f"recorded as run {run_id} in the catalog (note: some photos are not in its clusters)", None, run_id
    groups.sort(key=lambda group: -len(group.rows))
    return f"recorded as run {run_id} in the catalog (names, locked clusters and your moves kept)", groups, run_id


# -- k, method, check, catalog -----------------------------------------------------------------------
@dataclass
class ClusteringOutcome:
    """What one clustering of a person's photos produced, row by row of ``dataset``.

    ``params`` includes ``n_clusters`` also when it was chosen automatically (then ``k_choice`` says how);
    ``suggested_names`` maps labels to names saying what the photos show and when (see
    :mod:`photocluster.features.naming`);
    ``notes`` are the sentences shown on the way; ``warnings`` those about the result itself (a collapsed
    training); ``groups`` the clusters as the catalog keeps them (None when nothing was recorded).
    """

    dataset: ImageDataset
    photos: list[PhotoFile]
    decode_skipped: list[SkippedFile]
    labels: np.ndarray
    confidence: np.ndarray | None
    method: str
    params: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    k_choice: Any = None
    run_id: int | None = None
    groups: list[ClusterGroup] | None = None
    suggested_names: dict[int, str] = field(default_factory=dict)
    estimate: Any = None
    constraints: Any = None
    recluster: "ReclusterSummary | None" = None


@dataclass
class ReclusterSummary:
    """What a re-cluster did to a catalog's clustering: the sentence a person reads after it."""

    corrections: str = "no corrections"
    kept: int = 0
    total: int = 0
    previously_sorted: int = 0
    new_photos: int = 0
    changed: int = 0

    def describe(self) -> str:
        parts = [f"{self.changed} of {self.previously_sorted} photos changed group"]
        if self.new_photos:
            parts.append(f"{self.new_photos} new photo{'s' if self.new_photos != 1 else ''} placed")
        if self.total:
            kept = f"all {self.total}" if self.kept == self.total else f"{self.kept} of {self.total}"
            parts.append(f"the new grouping keeps {kept} constraints from your corrections ({self.corrections})")
        return "re-clustered: " + "; ".join(parts)


def constraints_for(photos: Sequence[PhotoFile], corrections: Any) -> Any:
    """The person's corrections (:class:`~photocluster.library.corrections.Corrections`, by content hash) as
    :class:`~photocluster.methods.constraints.Constraints` on the rows of ``photos``.

    A photo that appears twice (the same content in two files) takes part in each statement as both rows;
    photos the corrections name but that are not here (deleted, not decoded) are left out.
    """
    from photocluster.methods.constraints import Constraints

    rows_of: dict[str, list[int]] = {}
    for row, photo in enumerate(photos):
        if photo.content_hash in corrections.hashes:
            rows_of.setdefault(photo.content_hash, []).append(row)

    def rows(hashes: Sequence[str]) -> list[int]:
        return [row for h in hashes for row in rows_of.get(h, ())]

    fixed = [rows(lock.hashes) for lock in corrections.locked]
    statements = [(s.kind, rows(s.side_a), rows(s.side_b)) for s in corrections.statements]
    return Constraints.build(len(photos), fixed=[f for f in fixed if f], statements=statements)


def corrections_steps(photos: Sequence[PhotoFile], catalog_path: str | Path | None) -> Iterator[ProgressEvent]:
    """Read the catalog's corrections for these photos; returns (Constraints or None, Corrections or None)."""
    from photocluster.library.catalog import Catalog

    yield ProgressEvent("corrections", message="reading your corrections (locked groups, moves, merges, splits)")
    try:
        with Catalog(catalog_path) as catalog:
            corrections = catalog.corrections()
    except Exception as exc:  # noqa: BLE001 — an unreadable catalog cannot hold corrections; recording reports it
        yield ProgressEvent("corrections", step=1, total=1,
                            message=f"note: your corrections could not be read ({type(exc).__name__}: {exc})")
        return None, None
    if corrections.is_empty:
        return None, None
    constraints = constraints_for(photos, corrections)
    if constraints.is_empty:
        return None, None
    return constraints, corrections


def with_preset(method: str, params: dict[str, Any], preset: str, dataset: ImageDataset) -> dict[str, Any]:
    """``params`` over the method's photo preset: a parameter set to something other than its default wins;
    one at its default (the GUI's form sends every parameter) takes the preset's value."""
    from photocluster.methods.base import method_class

    cls = method_class(method)
    try:
        preset_params = cls.photo_preset(preset, dataset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    defaults = {spec.name: spec.default for spec in cls.parameter_specs()}
    chosen = {key: value for key, value in params.items() if key not in defaults or value != defaults[key]}
    return {**params, **preset_params, **chosen}


def decode_size(method: str, params: dict[str, Any]) -> int:
    """Side of the square arrays photos are decoded to for this method: a pre-trained backbone's own input
    size (224) when the method uses one — upsampling 96-px arrays would throw away what the network was
    trained to see —, else the 96 px the methods trained from scratch use."""
    from photocluster.features.pretrained import preprocess_for
    from photocluster.library.decode import DEFAULT_SIZE
    from photocluster.methods.base import method_class

    backbone = method_class(method).pretrained_backbone(params)
    return preprocess_for(backbone).input_size if backbone is not None else DEFAULT_SIZE


def _message(notes: list[str], stage: str, text: str) -> ProgressEvent:
    notes.append(text)
    return ProgressEvent(stage, step=1, total=1, message=text)


def choose_k_steps(dataset: ImageDataset, method: str, params: dict[str, Any], *, random_state: int = 0,
                   cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Estimate k (the best silhouette of k-means); returns a :class:`~photocluster.methods.choose_k.KChoice`."""
    from photocluster.methods.choose_k import estimate_k, handcrafted_features_for_k

    from photocluster.methods.base import method_class

    yield ProgressEvent("choose k", message="estimating the number of groups…")
    backbone = method_class(method).pretrained_backbone(params)
    if backbone is not None:  # cached: the method reads the same embeddings again for nothing
        from photocluster.features.embeddings import embedding_steps

        result = yield from embedding_steps(dataset.images, backbone, params.get("weights", "default"),
                                            device=params.get("device", "auto"), cancel=cancel)
        features, feature_name = result.embeddings, f"{backbone} embeddings"
    else:
        features, feature_name = handcrafted_features_for_k(dataset.images)
    return estimate_k(features, feature_name=feature_name, random_state=random_state, cancel=cancel)


def cluster_steps(photos: Sequence[PhotoFile], method: str, params: dict[str, Any], *,
                  cancel: CancelToken = NEVER_CANCELLED, decode_name: str = "library",
                  catalog_path: str | Path | None = None, run_id: int | None = None, record: bool = True,
                  fit_context: Any = None, preset: str | None = "fast",
                  estimate: bool = True, corrections: bool = True) -> Iterator[ProgressEvent]:
    """Decode → choose k when ``params`` has none → ``fit_steps`` → check → record; returns a :class:`ClusteringOutcome`.

    Parameters
    ----------
    photos:
        Scan records of the photos to sort.
    method, params:
        A registered method and its parameters; ``n_clusters`` missing or None means "automatic" for methods
        that take one.
    decode_name:
        Names the decoded library in the cache.
    catalog_path, run_id, record:
        Where to record the run (None: the default catalog) and a run already started there; ``record=False``
        records nothing.
    fit_context:
        A callable returning a context manager to hold while the method trains (the app limits the compute
        threads so the window keeps a core), or None.
    preset:
        "fast" or "thorough" (:meth:`~photocluster.methods.base.ClusteringMethod.photo_preset`): the method's
        settings for a photo folder, under the parameters given (a parameter left at its default takes the
        preset's value); None uses the parameters as given (the method's defaults are its paper's schedule).
    estimate:
        State the expected time and peak memory before training, from calibration runs on samples of these
        photos (:mod:`photocluster.estimate`); the outcome's ``estimate`` keeps it.
    corrections:
        Learn from the person's corrections in the catalog (when recording there): locked groups keep their
        photos, moves, merges and splits become must-link and cannot-link constraints the method trains with
        (:mod:`photocluster.library.corrections`, :mod:`photocluster.methods.constraints`); the closing
        message says how many photos changed group (:class:`ReclusterSummary`).
    """
    from photocluster.methods.base import get_method, method_class
    from photocluster.result_check import result_warnings

    notes: list[str] = []
    decoded = yield from decode_steps(photos, name=decode_name, size=decode_size(method, params), cancel=cancel)
    notes.append(f"decode: {len(decoded.photos)} decoded of {len(photos)}")
    dataset = decoded.dataset

    params = dict(params)
    k_choice = None
    if "n_clusters" in method_class(method)._param_names() and params.get("n_clusters") is None:
        with fit_context() if fit_context is not None else _no_context():
            k_choice = yield from choose_k_steps(dataset, method, params,
                                                 random_state=int(params.get("random_state") or 0), cancel=cancel)
        params["n_clusters"] = k_choice.k
        yield _message(notes, "choose k", f"k = {k_choice.k} ({k_choice.how}; {k_choice.confidence_words}: "
                                          f"silhouette {k_choice.scores.get(k_choice.k, 0):.3f}, margin "
                                          f"{k_choice.margin:.3f} over the next best k)")
    k = params.get("n_clusters")
    if k is not None and k > len(dataset):
        raise UsageError(f"{k} groups asked for, but only {len(dataset)} photos could be decoded")
    constraints = summary = None
    if record and corrections:
        constraints, found = yield from corrections_steps(decoded.photos, catalog_path)
        if constraints is not None:
            summary = ReclusterSummary(corrections=found.describe())
            yield _message(notes, "corrections", f"corrections: learning from {found.describe()}")
            if k is not None and constraints.n_fixed > k:
                raise UsageError(f"{constraints.n_fixed} groups are locked but only {k} groups were asked for; "
                                 f"ask for at least {constraints.n_fixed}")
    if preset is not None:
        params = with_preset(method, params, preset, dataset)
    run_estimate = None
    if estimate:
        from photocluster.estimate import estimate_steps

        with fit_context() if fit_context is not None else _no_context():
            run_estimate = yield from estimate_steps(dataset, method, params, cancel=cancel)
        if run_estimate is not None:
            notes.append(f"estimate: {run_estimate.describe()}")

    try:
        estimator = get_method(method, **params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    shown = ", ".join(f"{key}={value}" for key, value in params.items())
    yield _message(notes, "train", f"method: {method} ({shown}) on {len(dataset)} photos")
    started = time.monotonic()
    try:
        with fit_context() if fit_context is not None else _no_context():
            # constraints only when there are some: a method written before them (a plug-in) still runs
            yield from estimator.fit_steps(dataset, cancel=cancel,
                                           **({"constraints": constraints} if constraints is not None else {}))
    except ValueError as exc:  # a method refusing its input or parameters (validated at fit time)
        # chained, so the app's error details still show where in the method it was refused
        raise UsageError(f"{method}: {exc}") from exc
    seconds = time.monotonic() - started
    labels = np.asarray(estimator.labels_, dtype=np.int64)
    confidence = getattr(estimator, "confidence_", None)
    confidence = None if confidence is None else np.asarray(confidence, dtype=np.float64)

    if constraints is not None:
        check = constraints.check(labels)
        summary.kept = check.must_kept + check.cannot_kept + check.fixed_kept
        summary.total = check.must_total + check.cannot_total + check.fixed_total
    warnings = result_warnings(labels, params.get("n_clusters"), method)
    for warning in warnings:
        yield _message(notes, "check", warning)
    outcome = ClusteringOutcome(dataset=dataset, photos=decoded.photos, decode_skipped=decoded.skipped,
                                labels=labels, confidence=confidence, method=method, params=params,
                                seconds=seconds, notes=notes, warnings=warnings, k_choice=k_choice,
                                estimate=run_estimate, constraints=constraints)
    outcome.suggested_names = yield from naming_steps(dataset, labels, confidence, method, params, cancel=cancel)
    if record:
        cancel.raise_if_cancelled()
        yield ProgressEvent("save", message="saving the groups in the catalog")
        changes = summary if summary is not None else ReclusterSummary()
        note, groups, outcome.run_id = record_in_catalog(
            decoded.photos, method, params, labels, confidence, {"seconds": round(seconds, 3)},
            catalog_path=catalog_path, run_id=run_id, suggested_names=outcome.suggested_names, changes=changes)
        outcome.groups = groups
        yield _message(notes, "save", note)
        if changes.previously_sorted:  # a re-cluster: say what moved
            outcome.recluster = changes
            yield _message(notes, "save", changes.describe())
    return outcome


def naming_steps(dataset: ImageDataset, labels: np.ndarray, confidence: np.ndarray | None, method: str,
                 params: dict[str, Any], *, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Suggested names for the clusters: the ImageNet class most of a cluster's photos show (when the method
    used a pre-trained network with real weights) and when they were taken; returns {label: name}.

    Naming is a courtesy: if it fails the clusters keep their plain names and the run goes on.
    """
    from photocluster.features import naming
    from photocluster.methods.base import method_class

    yield ProgressEvent("names", message="suggesting names from what the photos show and when they were taken")
    classes = None
    backbone = method_class(method).pretrained_backbone(params)
    weights = params.get("weights", "default")
    try:
        if backbone is not None and str(weights).lower() != "none":
            from photocluster.features.embeddings import embedding_steps

            result = yield from embedding_steps(dataset.images, backbone, weights, device=params.get("device", "auto"),
                                                cancel=cancel)
            classes = naming.top_classes(result.embeddings * result.norms[:, None], backbone, weights)
        order = None if confidence is None else np.argsort(-confidence, kind="stable")
        return naming.suggest_names(labels, classes, list(dataset.paths or []), order, date_of=_photo_date)
    except (OSError, ValueError, RuntimeError, UsageError) as exc:  # names are a courtesy, never a failure
        yield ProgressEvent("names", step=1, total=1, message=f"note: no names suggested ({exc})")
        return {}


def _photo_date(path: str):
    """A photo's EXIF date, read with Pillow's pixel limit lifted: the scan already told real photos of
    100+ megapixels from bombs, and Pillow would warn about or refuse them again."""
    from photocluster.features.naming import photo_date
    from photocluster.library.scan import PillowLimitSuspended

    with PillowLimitSuspended():
        return photo_date(path)


class _no_context:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- the folder: benchmark -------------------------------------------------------------------------
def labelled_folder_dataset(root: Path, *, limit: int | None = None, size: int | None = None,
                            cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """A labelled folder (class = first-level sub-folder) through the pipeline's scan and decode cache.

    Returns an :class:`ImageDataset` with ``labels`` and ``class_names``: the photos a person would sort,
    decoded exactly as the folder mode and the app decode them, so a ``folder:`` benchmark measures the
    product. Files directly in ``root`` (no class) are left out.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"folder not found: {display_path(root)}")
    report = yield from scan_steps([root], cancel=cancel)
    classes = sorted({Path(p.path).relative_to(root).parts[0] for p in report.photos
                      if len(Path(p.path).relative_to(root).parts) > 1})
    if not classes:
        raise UsageError(f"{display_path(root)} has no class sub-folders with photos; a labelled folder needs "
                         "one sub-folder per class")
    label_of = {name: i for i, name in enumerate(classes)}
    photos = sorted((p for p in report.photos if len(Path(p.path).relative_to(root).parts) > 1),
                    key=lambda p: (label_of[Path(p.path).relative_to(root).parts[0]], str(p.path)))
    if limit is not None:
        photos = photos[:limit]
    decoded = yield from decode_steps(photos, name=f"folder:{root}", size=size, cancel=cancel)
    labels = np.array([label_of[Path(p.path).relative_to(root).parts[0]] for p in decoded.photos], dtype=np.int64)
    dataset = decoded.dataset
    return ImageDataset(name=f"folder:{root}", images=dataset.images, labels=labels, class_names=classes,
                        paths=list(dataset.paths),
                        info={"skipped": len(report.skipped) + len(decoded.skipped), "root": str(root)})
