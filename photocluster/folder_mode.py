"""The folder mode: ``photocluster --headless --folder DIR [--method M] [-k K|auto] [--export DEST ...]``.

A thin driver of :mod:`photocluster.pipeline` (scan → decode → k → method → catalog), which the app's
training process drives too: this module only parses the command line, shows the pipeline's events (a tqdm
bar per stage on stderr, its sentences on stdout), prints the clusters and runs the export. Bad arguments
are one-line errors (:class:`~photocluster.errors.UsageError`, exit 2); Ctrl-C cancels (exit 130).

With ``--export``, everything about the destination is settled before the scan
(:func:`~photocluster.library.export.prepare_export`): it is checked, locked against a second export into
it, an export into it that was interrupted earlier is finished first, and when it lies inside the scanned
folder it is left out of the scan (with a warning). Exit 1 when the sort ran but a photo could not be
exported (it is named, with the reason).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.library.scan import SkippedFile, display_path
from photocluster.methods.recommend import check_method_name
from photocluster.pipeline import ClusterGroup, cluster_steps, groups_from_labels, scan_steps
from photocluster.progress import CancelToken, Cancelled, ProgressEvent, install_sigint_cancel

#: How many file names to print under each cluster.
NAMES_PER_CLUSTER = 4


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


def _method_params(name: str, args: argparse.Namespace, k: int, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's parameters: k, the seed, the command's options, the recommended choice's ``base``
    parameters (when no --method was given), then ``-p KEY=VALUE`` overrides last."""
    from photocluster.methods.base import method_class, parse_param_overrides

    accepted = set(method_class(name)._param_names())
    params: dict[str, Any] = {"n_clusters": k, **(base or {})}
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
def drive(steps: Generator[ProgressEvent, None, Any], *, label: str, quiet: bool = False,
          unprinted_stages: Sequence[str] = ("check",)) -> Any:
    """Run a pipeline stage to its end and return its result: a tqdm bar per stage on stderr (none when
    ``quiet``), and each closing sentence (``message``) printed on stdout as it comes — except those of
    ``unprinted_stages`` (warnings about the result, which the caller prints on stderr)."""
    bar = None
    stage = None
    if not quiet:
        from tqdm import tqdm
    try:
        while True:
            try:
                event = next(steps)
            except StopIteration as stop:
                return stop.value
            if event.message and event.step is not None and event.total and event.step >= event.total:
                if bar is not None:
                    bar.close()
                    bar = None
                if event.stage not in unprinted_stages:
                    print(event.message, flush=True)
                continue
            if quiet:
                continue
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


# -- the clusters ----------------------------------------------------------------------------------
def print_clusters(paths: Sequence[str], groups: Sequence[ClusterGroup], stream=None) -> None:
    """Each cluster with its size and its first few file names (the surest ones)."""
    stream = stream or sys.stdout
    for group in groups:
        shown = [display_path(Path(paths[i]).name) for i in group.rows[:NAMES_PER_CLUSTER]]
        more = f", … (+{len(group.rows) - len(shown)})" if len(group.rows) > len(shown) else ""
        locked = " [locked]" if group.locked else ""
        print(f"  {group.name}{locked} ({len(group.rows)} photos): {', '.join(shown)}{more}", file=stream)


# -- the command -----------------------------------------------------------------------------------
def run_folder_command(args: argparse.Namespace) -> int:
    """Sort the photos of ``args.folder`` into clusters; see the module docstring. Returns the exit code."""
    folders = _check_folders(args.folder)
    k = _parse_k(args.clusters)
    if args.dry_run and not args.export:
        raise UsageError("--dry-run shows an export plan: give --export DEST too")
    if getattr(args, "mode", None) and not args.export:
        raise UsageError(f"--mode {args.mode} says how to export: give --export DEST too")
    base: dict[str, Any] = {}
    choice = None
    if args.method is None:
        from photocluster.methods.recommend import recommended_choice

        choice = recommended_choice(getattr(args, "device", "auto") or "auto", getattr(args, "weights", None))
        method, base = choice.method, dict(choice.params)
    else:
        method = args.method.strip()
        if "," in method:
            raise UsageError("folder mode runs one method at a time; give a single --method")
        method = check_method_name(method)
    quiet = bool(getattr(args, "quiet", False))
    _method_params(method, args, k or 2, base)  # validate -p KEY=VALUE before any slow work

    token = CancelToken()
    install_sigint_cancel(token)
    session = None
    try:
        # The destination before the slow work (a weights download included): checked, locked, and an
        # interrupted export into it finished.
        session = _prepare_export(args, folders, token)
        if choice is not None:
            method, base = _weights_or_fallback(choice)
        return _run(args, folders, method, k, quiet, token, session, base)
    except Cancelled:
        print("photocluster: cancelled", file=sys.stderr)
        return 130
    finally:
        if session is not None:
            session.close()


def _prepare_export(args: argparse.Namespace, folders: list[Path], token: CancelToken) -> Any:
    """The export's up-front checks, lock and recovery (None without --export); prints what it found."""
    if not args.export:
        return None
    from photocluster.library.export import prepare_export

    session = prepare_export(args.export, args.mode or "copy", folders, token, dry_run=bool(args.dry_run))
    for line in session.recovered:
        print(f"recovered: {line}")
    for warning in session.warnings:
        print(f"photocluster: warning: {warning}", file=sys.stderr)
    return session


def _weights_or_fallback(choice: Any) -> tuple[str, dict[str, Any]]:
    """No --method: the recommended choice, its weights fetched now (before any slow work); when they cannot
    be had, the best method that needs none — said in one line."""
    from photocluster.errors import WeightsUnavailable
    from photocluster.methods.recommend import NO_WEIGHTS_CHOICE, ensure_weights

    try:
        ensure_weights(choice)
    except WeightsUnavailable as exc:
        print(f"photocluster: the {exc.backbone} weights cannot be downloaded ({exc.reason}); using "
              f"{NO_WEIGHTS_CHOICE.label} instead, which needs none (--weights FILE uses a weights file you "
              "have)", file=sys.stderr)
        choice = NO_WEIGHTS_CHOICE
    print(f"method: {choice.label} ({choice.summary})")
    return choice.method, dict(choice.params)


def _run(args: argparse.Namespace, folders: list[Path], method: str, k: int | None, quiet: bool,
         token: CancelToken, session: Any = None, base: dict[str, Any] | None = None) -> int:
    exclude = session.exclude if session is not None else ()
    report = drive(scan_steps(folders, include_hidden=args.include_hidden, follow_links=args.follow_links,
                              exclude=exclude, cancel=token), label="scan", quiet=quiet)
    print_skipped(report.skipped, heading="skipped")
    for group in report.duplicates:
        print(f"  byte-identical: {', '.join(display_path(p) for p in group)}")
    if not report.photos:
        where = ", ".join(display_path(f) for f in folders)
        raise UsageError(f"no photos found in {where}")
    if k is not None and k > len(report.photos):
        raise UsageError(f"-k {k} is more than the {len(report.photos)} photos found")

    params = _method_params(method, args, k, base) if k is not None else {
        key: value for key, value in _method_params(method, args, 2, base).items() if key != "n_clusters"}
    name = "folder:" + ";".join(str(f) for f in folders)
    outcome = drive(cluster_steps(report.photos, method, params, cancel=token, decode_name=name,
                                  preset=getattr(args, "preset", "fast"),
                                  estimate=not getattr(args, "no_estimate", False),
                                  corrections=not getattr(args, "ignore_corrections", False)),
                    label=method, quiet=quiet)
    print_skipped(outcome.decode_skipped, heading="could not be decoded")
    groups = outcome.groups or groups_from_labels(outcome.labels, outcome.confidence)
    print(f"{len(groups)} clusters of {len(outcome.dataset)} photos:")
    print_clusters(outcome.dataset.paths, groups)
    for warning in outcome.warnings:
        print(f"photocluster: warning: {warning}", file=sys.stderr)

    if session is not None:
        exported = _export(args, session, outcome.dataset.paths, groups, outcome.confidence, token, quiet)
        if not exported or session.recovery_failures:
            return 1  # the sort ran, but a photo could not be exported: named above, with the reason
    return 0


def _export(args: argparse.Namespace, session: Any, paths: Sequence[str], groups: Sequence[ClusterGroup],
            confidence: np.ndarray | None, token: CancelToken, quiet: bool) -> bool:
    """Plan and run the export in the prepared session; False when any photo failed."""
    from photocluster.library.export import ExportItem, run_export

    destination = session.destination
    mode = session.mode
    items = [
        ExportItem(source=Path(paths[row]), cluster=group.name,
                   confidence=None if confidence is None else float(confidence[row]))
        for group in groups
        for row in group.rows
    ]
    plan = session.plan(items)
    if args.dry_run:
        print(f"export plan ({mode} into {display_path(destination)}), dry run — nothing is changed:")
        print(plan.describe())
        return True
    drive(run_export(plan, cancel=token), label="export", quiet=quiet)
    report = plan.report
    print(f"export: {report.summary()}")
    for source, reason in [*plan.skipped, *report.failed]:
        print(f"  failed: {display_path(source)}: {reason}")
    if report.manifest_csv is not None:
        print(f"manifest: {display_path(report.manifest_csv)}")
    return report.ok and not plan.skipped
