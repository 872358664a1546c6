"""The headless benchmark: run methods on a data set over seeds, score them, print them next to the papers.

``photocluster --headless --benchmark NAME --method M[,M2] [--protocol quick|paper] [--seeds N] ...``

For each method and seed the runner builds the method with the protocol's parameters for this data set
(``method_class(name).protocol_params(protocol, dataset)``), the user's ``-p KEY=VALUE`` overrides, and
``device`` / ``weights`` / ``boot`` where the method has such a parameter; it drives ``fit_steps`` with a
tqdm bar (stage, step/total, metrics, ETA), times the run and scores ``labels_`` against the ground truth.

``--output FILE`` writes JSON. With one method it is one object::

    {"benchmark", "method", "protocol", "n_images", "runs": [{"seed", "acc", "nmi", "ari", "seconds", ...}],
     "mean": {"acc", "nmi", "ari"}, "paper": {...} or null, ...}

With several methods (``--method kmeans,gmm``) the file holds a JSON list of such objects, one per method, in
the order given. Extra keys: ``std``, ``best``, ``n_clusters``, ``params``, ``nmi_average``. DAC and DAC* runs
also carry ``"selection"``: per pass, how many of the pairs the method selected are right by the labels
(:mod:`photocluster.benchmarks.selection_quality`).
"""

from __future__ import annotations

import json
import os
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.progress import CancelToken, Cancelled

__all__ = ["run_benchmark", "run_benchmark_command", "print_listing", "format_table", "parse_methods"]

_TABLE_METRICS = ("acc", "nmi", "ari")


def parse_methods(spec: str | None) -> list[str]:
    """``"kmeans, gmm"`` → ``["kmeans", "gmm"]``; UsageError for an empty list or an unknown name."""
    from photocluster.methods.base import list_methods

    names = [part.strip() for part in (spec or "").split(",") if part.strip()]
    if not names:
        raise UsageError(f"--benchmark needs --method (one of: {', '.join(list_methods())})")
    available = list_methods()
    for name in names:
        if name not in available:
            raise UsageError(f"unknown method {name!r}; choose one of: {', '.join(available)}")
    return names


def _parse_clusters(value: Any, dataset: ImageDataset) -> int:
    if value is None:
        if dataset.n_classes is None:
            raise UsageError(f"{dataset.name} has no labels: give the number of clusters with -k")
        return int(dataset.n_classes)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"-k/--clusters must be a whole number for benchmarks, got {value!r}") from None
    if k < 2:
        raise UsageError(f"-k/--clusters must be at least 2, got {k}")
    if k > len(dataset):
        raise UsageError(f"-k/--clusters {k} is more than the {len(dataset)} images")
    return k


def _method_kwargs(name: str, n_clusters: int, seed: int, protocol_params: dict[str, Any], overrides: dict[str, Any],
                   device: str | None, weights: str | None, boot: str | None) -> dict[str, Any]:
    from photocluster.methods.base import method_class

    accepted = set(method_class(name)._param_names())
    kwargs: dict[str, Any] = {"n_clusters": n_clusters, "random_state": seed, **protocol_params, **overrides}
    for key, value in (("device", device), ("weights", weights), ("boot", boot)):
        if value is not None and key in accepted and key not in overrides:
            kwargs[key] = value
    return kwargs


class _ProgressBar:
    """One tqdm bar per run; the total follows the current stage (features, cluster, train, ...)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._bar = None
        self._stage: str | None = None

    def update(self, event) -> None:  # event: ProgressEvent
        if not self.enabled:
            return
        from tqdm import tqdm

        if self._bar is None or event.stage != self._stage:
            if self._bar is not None:
                self._bar.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=f"{self.label} {event.stage}", leave=False, file=sys.stderr,
                             dynamic_ncols=True)
        bar = self._bar
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.n = event.step
        postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in dict(event.metrics).items()}
        if event.eta_seconds is not None:
            postfix["eta"] = _format_seconds(event.eta_seconds)
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _format_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def load_benchmark_dataset(benchmark: str, *, data_dir: str | Path | None = None, download: bool = False,
                           progress: bool = True, limit: int | None = None,
                           method_params: dict[str, dict[str, Any]] | None = None) -> ImageDataset:
    """A benchmark data set. ``folder:PATH`` goes through the photo pipeline's scan and decode cache
    (:func:`photocluster.pipeline.labelled_folder_dataset`), decoded at the size the methods to run want
    (``method_params``: name → parameters; a pre-trained backbone's 224 px), so it measures exactly what a
    person's folder gets; the named sets through :func:`photocluster.data.datasets.load_dataset`."""
    if benchmark.startswith("folder:"):
        from photocluster.pipeline import decode_size, labelled_folder_dataset
        from photocluster.progress import run_to_end

        size = max((decode_size(name, params) for name, params in (method_params or {}).items()), default=None)
        root = Path(os.path.abspath(Path(benchmark[len("folder:"):]).expanduser()))
        return run_to_end(labelled_folder_dataset(root, limit=limit, size=size))
    from photocluster.data.datasets import load_dataset

    return load_dataset(benchmark, data_dir=data_dir, download=download, progress=progress, limit=limit)


def run_benchmark(
    benchmark: str,
    method: str,
    *,
    protocol: str = "quick",
    seeds: Sequence[int] = (0,),
    data_dir: str | Path | None = None,
    download: bool = False,
    limit: int | None = None,
    n_clusters: int | str | None = None,
    device: str | None = "auto",
    weights: str | None = None,
    boot: str | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    cancel: CancelToken | None = None,
    dataset: ImageDataset | None = None,
) -> dict[str, Any]:
    """Run one method on one benchmark data set for each seed and score it.

    Parameters
    ----------
    benchmark:
        Data set name (see :func:`photocluster.data.datasets.list_datasets`) or ``folder:PATH``.
    method:
        Registered method name.
    protocol:
        "quick" or "paper" (the method's :meth:`protocol_params`).
    seeds:
        One run per seed (``random_state``).
    data_dir, download, limit:
        Passed to :func:`~photocluster.data.datasets.load_dataset` (ignored when ``dataset`` is given).
    n_clusters:
        k; default the number of classes.
    device, weights, boot:
        Passed only to methods that have such a parameter.
    overrides:
        Typed method parameters (``-p``), applied last.
    progress:
        Show tqdm bars on stderr.
    cancel:
        Cancels the running fit (raises :class:`~photocluster.progress.Cancelled`).
    dataset:
        An already loaded data set (several methods on one set load it once).

    Returns
    -------
    dict
        The results record written by ``--output`` (see the module docstring).
    """
    from photocluster.benchmarks.specs import paper_result
    from photocluster.methods.base import get_method
    from photocluster.metrics import evaluate

    if protocol not in ("quick", "paper"):
        raise UsageError(f"unknown protocol {protocol!r}; choose quick or paper")
    if not seeds:
        raise UsageError("at least one seed is needed")
    cls = _method_class_or_usage_error(method)
    if dataset is None:
        dataset = load_benchmark_dataset(benchmark, data_dir=data_dir, download=download, progress=progress,
                                         limit=limit)
    if dataset.labels is None:
        raise UsageError(f"{benchmark} has no labels, so it cannot be scored")
    k = _parse_clusters(n_clusters, dataset)
    protocol_params = cls.protocol_params(protocol, dataset)
    overrides = dict(overrides or {})
    cancel = cancel or CancelToken()

    runs: list[dict[str, Any]] = []
    params_used: dict[str, Any] = {}
    for seed in seeds:
        kwargs = _method_kwargs(method, k, int(seed), protocol_params, overrides, device, weights, boot)
        try:
            estimator = get_method(method, **kwargs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        params_used = estimator.get_params()
        selection_quality = None
        if hasattr(estimator, "pair_observer"):  # DAC, DAC*: score the selected pairs against the labels
            from photocluster.benchmarks.selection_quality import SelectionQuality

            selection_quality = SelectionQuality(dataset.labels)
            estimator.pair_observer = selection_quality
        bar = _ProgressBar(f"{method} seed {seed}", progress)
        started = time.perf_counter()
        try:
            for event in estimator.fit_steps(dataset, cancel=cancel):
                bar.update(event)
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        scores = evaluate(dataset.labels, estimator.labels_)
        runs.append({"seed": int(seed), "acc": scores["acc"], "nmi": scores["nmi"], "ari": scores["ari"],
                     "seconds": seconds, "nmi_arithmetic": scores["nmi_arithmetic"], "jc": scores["jc"],
                     "fmi": scores["fmi"], "n_found_clusters": int(len(np.unique(estimator.labels_)))})
        if selection_quality is not None:
            runs[-1]["selection"] = selection_quality.per_pass()

    def stat(fn) -> dict[str, float]:
        return {m: float(fn([run[m] for run in runs])) for m in (*_TABLE_METRICS, "nmi_arithmetic", "seconds")}

    paper = paper_result(benchmark, method)
    return {
        "benchmark": benchmark,
        "method": method,
        "protocol": protocol,
        "n_images": int(len(dataset)),
        "n_clusters": k,
        "runs": runs,
        "mean": stat(np.mean),
        "std": stat(np.std),
        "best": {m: float(max(run[m] for run in runs)) for m in (*_TABLE_METRICS, "nmi_arithmetic")},
        "nmi_average": "geometric",
        "params": {key: value for key, value in params_used.items() if key != "random_state"},
        "paper": paper.as_dict() if paper is not None else None,
    }


def _method_class_or_usage_error(name: str):
    from photocluster.methods.base import method_class

    try:
        return method_class(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _split_overrides(methods: list[str], assignments: list[str]) -> dict[str, dict[str, Any]]:
    """Each ``-p KEY=VALUE`` goes to the methods that have KEY; a key no chosen method has is an error."""
    from photocluster.methods.base import method_class, parse_param_overrides

    per_method: dict[str, dict[str, Any]] = {name: {} for name in methods}
    for item in assignments:
        key = item.partition("=")[0].strip().replace("-", "_")
        takers = [name for name in methods if key in method_class(name)._param_names()]
        if not takers:
            # Let the parser phrase the error (it lists the valid names of the first method).
            parse_param_overrides(methods[0], [item])
        for name in takers:
            per_method[name].update(parse_param_overrides(name, [item]))
    return per_method


def _cell(mean: float | None, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def format_table(results: list[dict[str, Any]]) -> str:
    """The side-by-side text table: measured mean ± std and best, then the paper's row (or "no paper row")."""
    if not results:
        return ""
    first = results[0]
    lines = [
        f"benchmark {first['benchmark']}: {first['n_images']:,} images, k = {first['n_clusters']}, "
        f"protocol {first['protocol']}; NMI with geometric averaging unless marked (arith.)",
    ]
    header = f"{'method':<14} {'row':<50} {'ACC':<17} {'NMI':<26} {'ARI':<17} {'s/run':>8}"
    lines += [header, "-" * len(header)]
    for result in results:
        n = len(result["runs"])
        mean, std, best = result["mean"], result["std"], result["best"]
        paper = result.get("paper")
        # Compare like with like: when the paper's NMI is arithmetic (MMDC), show ours arithmetic too.
        arithmetic = bool(paper) and paper.get("nmi_average") == "arithmetic"
        nmi_key = "nmi_arithmetic" if arithmetic else "nmi"
        mark = " (arith.)" if arithmetic else ""
        lines.append(f"{result['method']:<14} {f'measured, mean ± std of {n} seed' + ('s' if n != 1 else ''):<50} "
                     f"{_cell(mean['acc'], std['acc']):<17} {_cell(mean[nmi_key], std[nmi_key]) + mark:<26} "
                     f"{_cell(mean['ari'], std['ari']):<17} {mean['seconds']:>8.1f}")
        lines.append(f"{'':<14} {f'measured, best of {n}':<50} {_cell(best['acc']):<17} "
                     f"{_cell(best[nmi_key]) + mark:<26} {_cell(best['ari']):<17}")
        if paper:
            source = f"{paper['paper']}, {paper['table']}"
            nmi = _cell(paper["nmi"]) + (mark if paper["nmi"] is not None else "")
            if len(source) > 50:  # a long source gets its own line rather than a truncated cell
                lines.append(f"{'':<14} {source}")
                source = "  (paper)"
            lines.append(f"{'':<14} {source:<50} {_cell(paper['acc']):<17} {nmi:<26} {_cell(paper['ari']):<17}")
        else:
            lines.append(f"{'':<14} {'no paper row':<50}")
    return "\n".join(line.rstrip() for line in lines)


def run_benchmark_command(args) -> int:
    """``--benchmark``: run every requested method over the seeds, print the table, write ``--output``.

    ``args`` is the argparse namespace of :mod:`photocluster.cli`. Returns the exit code (0; 130 when
    cancelled with Ctrl-C).
    """
    from photocluster.progress import install_sigint_cancel

    methods = parse_methods(getattr(args, "method", None))
    overrides = _split_overrides(methods, list(getattr(args, "param", []) or []))
    progress = not getattr(args, "quiet", False)
    output = getattr(args, "output", None)
    if output is not None and Path(output).is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name")
    wanted = {name: {**({"weights": args.weights} if args.weights else {}), **overrides[name]} for name in methods}
    dataset = load_benchmark_dataset(args.benchmark, data_dir=args.data_dir, download=args.download,
                                     progress=progress, limit=args.limit, method_params=wanted)
    _parse_clusters(args.clusters, dataset)  # fail on a bad -k before any work
    token = CancelToken()
    install_sigint_cancel(token)
    seeds = list(range(args.seed, args.seed + args.seeds))
    results: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []  # tlfwr --boot all: their own table and JSON shape
    for name in methods:
        if _is_boot_sweep(name, args.boot):
            sweep = _run_boot_sweep(args, name, dataset, overrides[name], progress, token)
            if sweep is None:
                return 130
            sweeps.append(sweep)
            continue
        try:
            results.append(run_benchmark(
                args.benchmark, name, protocol=args.protocol, seeds=seeds, n_clusters=args.clusters,
                device=args.device, weights=args.weights, boot=args.boot, overrides=overrides[name],
                progress=progress, cancel=token, dataset=dataset,
            ))
        except Cancelled:
            print(f"photocluster: {name} cancelled; no results for it", file=sys.stderr)
            if results:
                print(format_table(results))
                _write_output(output, results)
            return 130
    if results:
        print(format_table(results))
        _print_selection_tables(results)
    _write_output(output, results + sweeps)
    return 0


def _print_selection_tables(results: list[dict[str, Any]]) -> None:
    from photocluster.benchmarks.selection_quality import format_selection_tables

    for result in results:
        text = format_selection_tables(result)
        if text:
            print(f"\n{text}")


def _is_boot_sweep(method: str, boot: str | None) -> bool:
    """``--boot all`` (or several boots separated by commas) for a method with boot features (tlfwr)."""
    from photocluster.methods.base import method_class

    if not boot or "boot" not in method_class(method)._param_names():
        return False
    return boot.strip().lower() == "all" or "," in boot


def _run_boot_sweep(args, method: str, dataset, overrides: dict[str, Any], progress: bool,
                    cancel: CancelToken) -> dict[str, Any] | None:
    """The transfer paper's comparison across boot features: boot vs final metrics per boot, and η.

    η = std/mean of a metric across the boots (small = the method depends little on its boot feature).
    """
    from photocluster.methods.tlfwr import run_all_boots

    k = _parse_clusters(args.clusters, dataset)
    cls = _method_class_or_usage_error(method)
    sweeps = []
    for seed in range(args.seed, args.seed + args.seeds):
        params = {**cls.protocol_params(args.protocol, dataset), **overrides, "n_clusters": k, "random_state": seed}
        accepted = set(cls._param_names())
        for key, value in (("device", args.device), ("weights", args.weights)):
            if value is not None and key in accepted and key not in overrides:
                params[key] = value
        bar = _ProgressBar(f"{method} seed {seed}", progress)
        try:
            sweep = run_all_boots(dataset, args.boot, cancel=cancel,
                                  on_event=lambda boot, event: bar.update(event), **params)
        except Cancelled:
            print(f"photocluster: {method} cancelled; no results for it", file=sys.stderr)
            return None
        finally:
            bar.close()
        sweep["seed"] = seed
        sweeps.append(sweep)
        print(format_boot_sweep(args.benchmark, len(dataset), method, sweep))
    return {"benchmark": args.benchmark, "method": method, "protocol": args.protocol,
            "n_images": int(len(dataset)), "boot_sweeps": sweeps}


def format_boot_sweep(benchmark: str, n_images: int, method: str, sweep: dict[str, Any]) -> str:
    """Per boot feature: each metric as boot → final; then η across the boots, boot → final."""
    metrics = ("acc", "nmi", "ari", "jc", "fmi")
    lines = [f"{method} on {benchmark} ({n_images:,} images), seed {sweep.get('seed', 0)}: boot → final; "
             "NMI geometric"]
    header = f"{'boot':<16} {'#':>2}  " + "  ".join(f"{m.upper():<15}" for m in metrics) + "  DBI norm"
    lines += [header, "-" * len(header)]
    for boot, entry in sweep["per_boot"].items():
        cells = "  ".join(f"{entry['boot'].get(m, float('nan')):.3f} → {entry['final'].get(m, float('nan')):.3f}"
                          for m in metrics)
        lines.append(f"{boot:<16} {entry['paper_id']:>2}  {cells}  {entry['final'].get('dbi_norm', float('nan')):.3f}")
    eta = sweep.get("eta", {})
    if eta:
        cells = "  ".join(f"{eta['boot'].get(m, float('nan')):.3f} → {eta['final'].get(m, float('nan')):.3f}"
                          for m in metrics)
        lines.append(f"{'η (std/mean)':<16} {'':>2}  {cells}")
    return "\n".join(line.rstrip() for line in lines)


def _run_metadata(result: dict[str, Any]) -> dict[str, Any]:
    """How a result was produced, for the docs that quote it: command line, machine, torch, code, date, seeds."""
    import datetime
    import os
    import platform
    import shlex

    cpu, memory_gib = platform.processor() or platform.machine(), None
    try:
        cpu = next(line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        kib = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        memory_gib = round(int(kib) / 2**20, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    try:
        import torch

        torch_version: str | None = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - metadata must never fail the run it describes
        torch_version, gpu = None, None
    code: dict[str, Any] = {"commit": None, "uncommitted_changes": None}
    try:  # in a git checkout: which code ran, and whether the package differed from that commit
        import subprocess

        root = Path(__file__).resolve().parents[2]
        git = ["git", "-C", str(root)]
        code["commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                        check=True).stdout.strip()
        status = subprocess.run([*git, "status", "--porcelain", "--", "photocluster"], capture_output=True,
                                text=True, timeout=10, check=True).stdout
        code["uncommitted_changes"] = bool(status.strip())
    except Exception:  # noqa: BLE001 - not a checkout, or no git
        pass
    seeds = [run["seed"] for run in result.get("runs", [])] or [s["seed"] for s in result.get("boot_sweeps", [])]
    return {
        "command": shlex.join(["photocluster", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib, "gpu": gpu,
                    "system": platform.platform()},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch_version,
        "code": code,
        "seeds": seeds,
    }


def _write_output(output: str | None, results: list[dict[str, Any]]) -> None:
    if not output:
        return
    results = [{**result, "recorded": _run_metadata(result)} for result in results]
    payload: Any = results[0] if len(results) == 1 else results
    path = Path(output).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write --output {output}: {exc}") from None
    print(f"results written to {path}", file=sys.stderr)


def print_listing() -> None:
    """``--list``: the data sets with their sizes, then the methods with their description and protocols."""
    from photocluster.data.datasets import list_datasets
    from photocluster.methods.base import list_methods, method_class

    print("Data sets (--benchmark NAME):")
    for info in list_datasets():
        size = "x".join(str(s) for s in info.image_size) if info.image_size else "any"
        count = f"{info.n_images:,}" if info.n_images else "any"
        classes = str(info.n_classes) if info.n_classes else "sub-folders"
        print(f"  {info.name:<14} {count:>8} images  {size:>9}  {classes:>11} classes  {info.description}")
    print()
    print("Methods (--method NAME, several separated by commas):")
    for name in list_methods():
        cls = method_class(name)
        print(f"  {name:<14} [{cls.family}] {cls.description}")
        if cls.paper:
            print(f"  {'':<14} paper: {cls.paper}")
        for protocol, line in cls.describe_protocols().items():
            print(f"  {'':<14} --protocol {protocol}: {line}")
    print()
    print("Pre-trained networks (-p features=NAME for the classical methods, -p backbone=NAME for ccnn/tlfwr;")
    print("--weights default downloads torchvision's ImageNet weights once, --weights FILE uses a state dict):")
    from photocluster.features.pretrained import BACKBONES

    for spec in BACKBONES.values():
        recommended = {"cpu": "  [recommended on a CPU]", "gpu": "  [recommended on a GPU]"}.get(spec.recommended, "")
        print(f"  {spec.name:<20} {spec.feature_dim:>5}-d embedding at {spec.input_size} px: {spec.note}{recommended}")
