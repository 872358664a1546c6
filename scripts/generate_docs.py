"""Rewrite the results tables of README.md and docs/benchmarks.md from docs/results/*.json (``--check``: compare only).

Usage (from the repository root)::

    .venv/bin/python scripts/generate_docs.py           # rewrite the generated parts in place
    .venv/bin/python scripts/generate_docs.py --check   # exit 1 if a generated part differs from the JSON

Each JSON file is what ``photocluster --headless --benchmark ... --output FILE`` writes: one result object, or
a list of them (several methods in one command). A result with ``runs`` becomes one row of the README's table
and one section of docs/benchmarks.md; a tlfwr boot sweep (``boot_sweeps``, from ``--boot all``) gets a
section only. The paper's figures come from :mod:`photocluster.benchmarks.specs` where a paper reports one.
Only the text between the marker comments is generated::

    <!-- results:begin -->  ...  <!-- results:end -->          README.md: the one results table
    <!-- details:begin -->  ...  <!-- details:end -->          docs/benchmarks.md: every run, with its command
    <!-- corrections:begin -->  ...  <!-- corrections:end -->  docs/benchmarks.md: re-clustering with corrections

    <!-- photo-runs:begin -->  ...  <!-- photo-runs:end -->    docs/benchmarks.md: photo presets, peak memory

The corrections sections come from docs/results/corrections/*.json, what ``scripts/bench_corrections.py
--output FILE`` writes; the photo-runs sections from docs/results/photo-presets/*.json and
docs/results/photo-memory/*.json (``scripts/bench_photo_presets.py`` / ``bench_photo_memory.py --output``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path("docs/results")
README = Path("README.md")
BENCHMARKS = Path("docs/benchmarks.md")

# Display order; anything not listed comes after, alphabetically.
_DATASET_ORDER = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100-20", "stl10", "imagenet10",
                  "imagenet-dog", "tiny-imagenet")
_METHOD_ORDER = ("kmeans", "gmm", "agglomerative", "spectral", "nmf", "dac", "dac-star", "mmdc", "ccnn", "tlfwr")
# Command-line options that change what a run measures (besides --benchmark, --method, --protocol).
_VARIANT_OPTIONS = {"-p": "", "--param": "", "--weights": "weights=", "--boot": "boot=", "--limit": "limit=",
                    "-k": "k=", "--clusters": "k="}


@dataclass
class Entry:
    """One result object of one JSON file, with what the tables need to show it."""

    source: Path  # relative to the repository root
    result: dict[str, Any]
    variant: str = ""
    anchor: str = ""
    paper: dict[str, Any] | None = field(default=None)

    @property
    def benchmark(self) -> str:
        return str(self.result.get("benchmark", "?"))

    @property
    def method(self) -> str:
        return str(self.result.get("method", "?"))

    @property
    def protocol(self) -> str:
        return str(self.result.get("protocol", "?"))

    @property
    def recorded(self) -> dict[str, Any]:
        return self.result.get("recorded") or {}

    @property
    def is_sweep(self) -> bool:
        return "boot_sweeps" in self.result


def dataset_label(benchmark: str) -> str:
    """``folder:../shared/data/photos-sample`` → ``photos-sample (folder)``; data set names stay as they are."""
    if benchmark.startswith("folder:"):
        return f"{Path(benchmark[len('folder:'):]).name or benchmark} (folder)"
    return benchmark


def variant_of(command: str) -> str:
    """The options of a recorded command that change what it measures: ``-p lr=1e-4`` → ``lr=1e-4``."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ""
    parts = []
    for i, word in enumerate(words[:-1]):
        if word in _VARIANT_OPTIONS:
            parts.append(_VARIANT_OPTIONS[word] + words[i + 1])
        elif word.startswith("--param="):
            parts.append(word.partition("=")[2])
    return ", ".join(parts)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → hyphens."""
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return slug.replace(" ", "-")


def load_entries(root: Path = ROOT) -> list[Entry]:
    """Every result object of every ``docs/results/*.json`` under ``root``, in display order."""
    entries = []
    for path in sorted((root / RESULTS_DIR).glob("*.json")):
        payload = json.loads(path.read_text())
        for result in payload if isinstance(payload, list) else [payload]:
            if not isinstance(result, dict) or ("runs" not in result and "boot_sweeps" not in result):
                raise ValueError(f"{path}: not a benchmark result (no 'runs' or 'boot_sweeps')")
            entry = Entry(path.relative_to(root), result)
            entry.variant = variant_of(entry.recorded.get("command", ""))
            # the papers' classical baselines cluster pixels (or HOG), not a network's embeddings
            swapped_input = any(part.startswith("features=") for part in entry.variant.split(", "))
            entry.paper = None if swapped_input else paper_row(entry.benchmark, entry.method)
            entries.append(entry)

    def order(entry: Entry) -> tuple:
        b, m = entry.benchmark, entry.method
        return (b.startswith("folder:"), _DATASET_ORDER.index(b) if b in _DATASET_ORDER else len(_DATASET_ORDER), b,
                _METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER), m, entry.protocol,
                entry.variant, str(entry.source))

    entries.sort(key=order)
    seen: dict[str, int] = {}
    for entry in entries:  # GitHub numbers repeated headings: slug, slug-1, slug-2, ...
        slug = github_slug(heading(entry))
        entry.anchor = slug if slug not in seen else f"{slug}-{seen[slug]}"
        seen[slug] = seen.get(slug, 0) + 1
    return entries


def paper_row(benchmark: str, method: str) -> dict[str, Any] | None:
    """The paper's published row for this data set and method (specs.py), or None."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from photocluster.benchmarks.specs import paper_result

    row = paper_result(benchmark, method)
    return row.as_dict() if row is not None else None


def heading(entry: Entry) -> str:
    text = f"{entry.method} on {dataset_label(entry.benchmark)}, {entry.protocol} protocol"
    if entry.is_sweep:
        text += ", boot sweep"
    return text + (f", {entry.variant}" if entry.variant else "")


def fmt(value: Any) -> str:
    """A score as the CLI prints it (4 decimals); missing → —."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.4f}"


def fmt_paper(value: Any) -> str:
    """A paper's figure as specs.py holds it (no digits added or removed); missing → —."""
    return "—" if value is None else str(value)


def fmt_mean(entry: Entry, metric: str) -> str:
    runs = entry.result["runs"]
    mean = entry.result["mean"].get(metric)
    if len(runs) == 1:
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(entry.result['std'].get(metric))}"


def nmi_key(entry: Entry) -> tuple[str, str]:
    """Compare like with like: arithmetic NMI where the paper reports arithmetic NMI (MMDC)."""
    if entry.paper and entry.paper.get("nmi_average") == "arithmetic":
        return "nmi_arithmetic", " arith."
    return "nmi", ""


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def code_text(recorded: dict[str, Any]) -> str:
    code = recorded.get("code") or {}
    if not code.get("commit"):
        return "not recorded"
    changes = {True: " with uncommitted changes to the package", False: ""}.get(code.get("uncommitted_changes"), "")
    return f"commit {code['commit'][:7]}{changes}"


def machine_text(recorded: dict[str, Any]) -> str:
    machine = recorded.get("machine") or {}
    if not machine:
        return "not recorded"
    parts = [str(machine.get("cpu", "?")), f"{machine.get('cores', '?')} cores"]
    if machine.get("memory_gib") is not None:
        parts.append(f"{machine['memory_gib']} GiB")
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    return ", ".join(parts)


#: options that make a run an ablation (a baseline of the paper's study) or a run on part of a data set: the
#: README leaves them to docs/benchmarks.md, which shows every stored run
_NOT_HEADLINE = ("variant=baseline", "drift_compensation=false", "limit=")


def is_headline(entry: Entry) -> bool:
    """A run a person reading the README compares methods by: not a boot sweep, an ablation or a subset."""
    return not entry.is_sweep and not any(part.startswith(_NOT_HEADLINE) for part in entry.variant.split(", "))


def readable_variant(variant: str) -> str:
    """The options as the README shows them: a weights file by its name, not its path."""
    return ", ".join(f"weights={Path(part[len('weights='):]).name}" if part.startswith("weights=") else part
                     for part in variant.split(", ") if part)


def render_readme_table(entries: list[Entry]) -> str:
    """README.md: one row per method × data set (× protocol and options) of the headline runs (no ablations,
    boot sweeps or subsets; those are in docs/benchmarks.md), ours beside the paper's."""
    lines = [
        "| method | data set | protocol | seeds | ACC | paper | NMI | paper | ARI | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in entries:
        if not is_headline(entry):
            continue
        paper = entry.paper or {}
        key, mark = nmi_key(entry)
        protocol = entry.protocol + (f", {readable_variant(entry.variant)}" if entry.variant else "")
        lines.append(
            f"| [`{entry.method}`](docs/benchmarks.md#{entry.anchor}) "
            f"| {dataset_label(entry.benchmark)}, {count(entry.result.get('n_images'))} | {protocol} "
            f"| {len(entry.result['runs'])} | {fmt_mean(entry, 'acc')} | {fmt_paper(paper.get('acc'))} "
            f"| {fmt_mean(entry, key)}{mark} | {fmt_paper(paper.get('nmi'))}{mark if paper.get('nmi') is not None else ''} "
            f"| {fmt_mean(entry, 'ari')} | {fmt_paper(paper.get('ari'))} |")
    lines.append("")
    lines.append("Ours: mean ± std over the seeds, on the images the method clustered. Paper: the published "
                 "figure as quoted in [`specs.py`](photocluster/benchmarks/specs.py); — where there is none (and "
                 "beside k-means on a network's features: the papers' k-means clusters pixels). NMI "
                 "geometric unless marked arith. (MMDC's paper uses arithmetic). Each method links to its "
                 "command, machine and per-seed figures; ablations, boot sweeps and runs on part of a data set "
                 "are in [docs/benchmarks.md](docs/benchmarks.md).")
    return "\n".join(lines)


def render_details(entries: list[Entry]) -> str:
    """docs/benchmarks.md: per result, its command, machine, seeds, per-seed figures and the paper's row."""
    sections = []
    for entry in entries:
        rec = entry.recorded
        lines = [f"### {heading(entry)}", ""]
        lines.append(f"- command: `{rec.get('command', 'not recorded')}`"
                     + (f" with `OMP_NUM_THREADS={rec['omp_num_threads']}`" if rec.get("omp_num_threads") else ""))
        lines.append(f"- machine: {machine_text(rec)}; torch {rec.get('torch', '?')}, Python {rec.get('python', '?')}")
        lines.append(f"- date: {rec.get('date', 'not recorded')}; {count(entry.result.get('n_images'))} images, "
                     f"seeds: {', '.join(str(s) for s in rec.get('seeds', [])) or 'not recorded'}")
        lines.append(f"- code: {code_text(rec)}")
        params = entry.result.get("params")
        if params:
            lines.append("- parameters: " + ", ".join(f"`{key}={value}`" for key, value in params.items()))
        lines.append(f"- JSON: [`{entry.source.name}`](results/{entry.source.name})")
        lines.append("")
        lines += render_sweep(entry) if entry.is_sweep else render_runs(entry)
        sections.append("\n".join(lines))
    return "\n\n".join(sections) if sections else "No results stored yet."


def render_runs(entry: Entry) -> list[str]:
    key, mark = nmi_key(entry)
    lines = [f"| seed | ACC | NMI{mark} | ARI | clusters found | s (fit) |", "| --- | --- | --- | --- | --- | --- |"]
    for run in entry.result["runs"]:
        lines.append(f"| {run['seed']} | {fmt(run.get('acc'))} | {fmt(run.get(key))} | {fmt(run.get('ari'))} "
                     f"| {run.get('n_found_clusters', '—')} | {run.get('seconds', 0):.1f} |")
    if len(entry.result["runs"]) > 1:
        lines.append(f"| mean ± std | {fmt_mean(entry, 'acc')} | {fmt_mean(entry, key)} | {fmt_mean(entry, 'ari')} "
                     f"| | {entry.result['mean'].get('seconds', 0):.1f} |")
    paper = entry.paper
    if paper:
        lines.append(f"| paper: {paper['paper']}, {paper['table']} | {fmt_paper(paper.get('acc'))} "
                     f"| {fmt_paper(paper.get('nmi'))} | {fmt_paper(paper.get('ari'))} | | |")
        if paper.get("note"):
            lines += ["", f"Paper note: {paper['note']}."]
    if any("selection" in run for run in entry.result["runs"]):
        lines += ["", "Each run's JSON also holds its per-pass selection table: how many of the selected pairs are "
                  "right by the labels (the CLI prints it under the results)."]
    return lines


def render_sweep(entry: Entry) -> list[str]:
    """tlfwr ``--boot all``: per seed and boot, ACC and NMI boot → final, then η (std/mean across boots)."""
    lines = ["| seed | boot | ACC boot → final | NMI boot → final |", "| --- | --- | --- | --- |"]
    for sweep in entry.result["boot_sweeps"]:
        for boot, row in sweep.get("per_boot", {}).items():
            lines.append(f"| {sweep.get('seed', '?')} | {boot} | {fmt(row['boot'].get('acc'))} → "
                         f"{fmt(row['final'].get('acc'))} | {fmt(row['boot'].get('nmi'))} → {fmt(row['final'].get('nmi'))} |")
        eta = sweep.get("eta") or {}
        if eta:
            lines.append(f"| {sweep.get('seed', '?')} | η (std/mean) | {fmt(eta['boot'].get('acc'))} → "
                         f"{fmt(eta['final'].get('acc'))} | {fmt(eta['boot'].get('nmi'))} → {fmt(eta['final'].get('nmi'))} |")
    return lines


def render_corrections(entries: list[Entry], root: Path = ROOT) -> str:
    """docs/benchmarks.md: per stored ``bench_corrections.py`` run, its command and machine, every method,
    fraction and seed with ACC before / re-run without corrections / re-run learning from them, and the
    means."""
    sections = []
    for path in sorted((root / RESULTS_DIR / "corrections").glob("*.json")):
        data = json.loads(path.read_text())
        rec = data.get("recorded", {})
        results = data.get("results", [])
        lines = [f"### Re-clustering with corrections: {', '.join(sorted({r['method'] for r in results}))} on "
                 f"{dataset_label(str(data.get('benchmark', '?')))}", ""]
        lines.append(f"- command: `{rec.get('command', 'not recorded')}`"
                     + (f" with `OMP_NUM_THREADS={rec['omp_num_threads']}`" if rec.get("omp_num_threads") else ""))
        lines.append(f"- machine: {machine_text(rec)}; torch {rec.get('torch', '?')}, Python {rec.get('python', '?')}")
        n_images = results[0].get("n_images") if results else None
        lines.append(f"- date: {rec.get('date', 'not recorded')}; {count(n_images)} images, seeds: "
                     f"{', '.join(str(s) for s in sorted({r['seed'] for r in results}))}")
        lines.append(f"- code: {code_text(rec)}")
        lines.append(f"- JSON: [`corrections/{path.name}`](results/corrections/{path.name})")
        lines.append("")
        lines.append("| method | corrections | seed | kept | ACC before | ACC re-run without them | ACC re-run learning "
                     "from them | gain |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for r in results:
            groups.setdefault((r["method"], r["fraction"]), []).append(r)
        for (method, fraction), rows in groups.items():
            for r in rows:
                lines.append(f"| {method} | {r['corrections']} ({fraction:.0%}) | {r['seed']} | {r['kept']:.0%} "
                             f"| {fmt(r['acc_before'])} | {fmt(r['acc_unconstrained'])} | {fmt(r['acc_after'])} "
                             f"| {r['acc_after'] - r['acc_unconstrained']:+.4f} |")
            if len(rows) > 1:
                mean = {key: sum(r[key] for r in rows) / len(rows) for key in
                        ("acc_before", "acc_unconstrained", "acc_after", "kept")}
                wins = sum(r["acc_after"] > r["acc_unconstrained"] for r in rows)
                lines.append(f"| **{method}** | **{fraction:.0%}, mean** | | {mean['kept']:.0%} | {fmt(mean['acc_before'])} "
                             f"| {fmt(mean['acc_unconstrained'])} | {fmt(mean['acc_after'])} "
                             f"| {mean['acc_after'] - mean['acc_unconstrained']:+.4f} ({wins}/{len(rows)} seeds better) |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) if sections else "No results stored yet."


def _photo_memory_title(data: dict[str, Any]) -> str:
    """The heading of one bench_photo_memory.py run: which path, which k, how many epochs."""
    epochs = data.get("epochs")
    k = data.get("k")
    if data.get("method") == "recommended":
        what = "Time and peak memory of the recommended path (k-means on pre-trained embeddings)"
    else:
        what = f"Peak memory of {data.get('method', '?')}'s {data.get('preset', '?')} preset"
    return (f"### {what} by number of photos" + (f", k = {k}" if k is not None else "")
            + (f" ({epochs} epoch{'s' if epochs != 1 else ''})" if epochs else ""))


def _recorded_lines(rec: dict[str, Any], json_link: str) -> list[str]:
    return [f"- command: `{rec.get('command', 'not recorded')}`"
            + (f" with `OMP_NUM_THREADS={rec['omp_num_threads']}`" if rec.get("omp_num_threads") else ""),
            f"- machine: {machine_text(rec)}; torch {rec.get('torch', '?')}, Python {rec.get('python', '?')}",
            f"- date: {rec.get('date', 'not recorded')}; code: {code_text(rec)}",
            f"- JSON: {json_link}", ""]


def render_photo_runs(entries: list[Entry], root: Path = ROOT) -> str:
    """docs/benchmarks.md: the photo presets' estimate against the real run (``bench_photo_presets.py``) and
    the peak memory by number of photos (``bench_photo_memory.py``), from docs/results/photo-presets/ and
    docs/results/photo-memory/."""
    sections = []
    for path in sorted((root / RESULTS_DIR / "photo-presets").glob("*.json")):
        data = json.loads(path.read_text())
        lines = [f"### The {data.get('preset', '?')} preset on {Path(str(data.get('folder', '?'))).name}, "
                 f"k = {data.get('k', '?')}: estimate against the real run", ""]
        lines += _recorded_lines(data.get("recorded", {}), f"[`photo-presets/{path.name}`](results/photo-presets/{path.name})")
        lines.append("| method | photos | predicted s | actual s | predicted peak | actual peak | ETA shown / time "
                     "really left, at 25 / 50 / 75 % |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in data.get("runs", []):
            predicted_s = "-" if r.get("predicted_seconds") is None else f"{r['predicted_seconds']:.0f}"
            predicted_m = "-" if r.get("predicted_peak_bytes") is None else f"{r['predicted_peak_bytes'] / 2**30:.2f} GiB"
            ratios = " / ".join(str(r.get("eta_ratio", {}).get(s, "-")) for s in ("25%", "50%", "75%"))
            lines.append(f"| {r['method']} | {r['photos']} | {predicted_s} | {r['actual_seconds']:.0f} | {predicted_m} "
                         f"| {r['actual_peak_bytes'] / 2**30:.2f} GiB | {ratios} |")
        sections.append("\n".join(lines))
    for path in sorted((root / RESULTS_DIR / "photo-memory").glob("*.json")):
        data = json.loads(path.read_text())
        lines = [_photo_memory_title(data), ""]
        lines += _recorded_lines(data.get("recorded", {}), f"[`photo-memory/{path.name}`](results/photo-memory/{path.name})")
        runs = data.get("runs", [])
        if data.get("fresh_home"):
            lines += ["Every run starts from an empty cache: its seconds include decoding every photo"
                      + (" and computing every embedding." if any("features_seconds" in r for r in runs) else ".")
                      + (" They include the calibration estimate a person's run makes first." if data.get("estimate") else ""),
                      ""]
        with_features = any("features_seconds" in r or "k" in r for r in runs)
        with_estimate = any("estimate" in r for r in runs)
        with_again = any("again" in r for r in runs)
        if with_features:
            lines.append("| photos | seconds | of which pre-trained features | k chosen | peak resident memory | exit code |"
                         + (" estimate shown before clustering (time, peak) |" if with_estimate else "")
                         + (" again, from the cache: seconds, peak |" if with_again else ""))
            lines.append("| --- | --- | --- | --- | --- | --- |" + (" --- |" if with_estimate else "")
                         + (" --- |" if with_again else ""))
        else:
            lines.append("| photos | seconds | peak resident memory | exit code |")
            lines.append("| --- | --- | --- | --- |")
        for r in runs:
            cells = [count(r["photos"]), f"{r['seconds']:.0f}"]
            if with_features:
                cells += ["-" if r.get("features_seconds") is None else f"{r['features_seconds']:.0f}",
                          str(r.get("k", "-"))]
            cells += [f"{r['peak_bytes'] / 2**30:.2f} GiB", str(r["exit_code"])]
            if with_features and with_estimate:
                estimate = r.get("estimate")
                cells.append(f"{estimate['time']}, {estimate['peak']}" if estimate else "-")
            if with_features and with_again:
                again = r.get("again")
                cells.append(f"{again['seconds']:.0f}, {again['peak_bytes'] / 2**30:.2f} GiB" if again else "-")
            lines.append("| " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) if sections else "No results stored yet."


# file → marker name → renderer
TARGETS: dict[Path, dict[str, Callable[[list[Entry]], str]]] = {
    README: {"results": render_readme_table},
    BENCHMARKS: {"details": render_details, "corrections": render_corrections, "photo-runs": render_photo_runs},
}


def replace_between(text: str, name: str, body: str, path: Path) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{path}: markers {begin} … {end} missing or out of order")
    return text[:start + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[stop:]


def generate(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """For each target file: (current text, text with the generated parts rewritten from the JSON)."""
    entries = load_entries(root)
    out = {}
    for rel, parts in TARGETS.items():
        current = (root / rel).read_text()
        new = current
        for name, render in parts.items():
            body = render(entries, root) if render in (render_corrections, render_photo_runs) else render(entries)
            new = replace_between(new, name, body, rel)
        out[rel] = (current, new)
    return out


def check(root: Path = ROOT) -> list[Path]:
    """The target files whose generated parts differ from what the JSON gives (empty = up to date)."""
    return [rel for rel, (current, new) in generate(root).items() if current != new]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.root)
        for rel in stale:
            print(f"{rel} is out of date with {RESULTS_DIR}/*.json: run scripts/generate_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for rel, (current, new) in generate(args.root).items():
        if new != current:
            (args.root / rel).write_text(new)
            print(f"rewrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
