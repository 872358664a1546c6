"""The results tables of README.md and docs/benchmarks.md are generated from docs/results/*.json and match them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("generate_docs", ROOT / "scripts" / "generate_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _load_script()


def _copy_repo_docs(tmp_path: Path) -> Path:
    """The generator's inputs and targets, copied so a test can change them."""
    shutil.copytree(ROOT / "docs" / "results", tmp_path / "docs" / "results")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copy(ROOT / "docs" / "benchmarks.md", tmp_path / "docs" / "benchmarks.md")
    return tmp_path


def test_results_exist():
    assert sorted((ROOT / "docs" / "results").glob("*.json")), "docs/results/ holds no benchmark JSON"


def test_generated_tables_match_the_json():
    stale = gen.check(ROOT)
    assert not stale, f"{stale} differ from docs/results/*.json: run .venv/bin/python scripts/generate_docs.py"


def test_a_changed_figure_fails_the_check(tmp_path):
    root = _copy_repo_docs(tmp_path)
    assert gen.check(root) == []
    # a stored benchmark run whose mean appears in both documents (the first file by name could be a study
    # whose section quotes only per-seed figures)
    path = root / "docs" / "results" / "digits-classical.json"
    payload = json.loads(path.read_text())
    first = payload[0] if isinstance(payload, list) else payload
    first["mean"]["acc"] = first["mean"]["acc"] + 0.01 if first["mean"]["acc"] < 0.5 else first["mean"]["acc"] - 0.01
    path.write_text(json.dumps(payload))
    assert set(gen.check(root)) == {gen.README, gen.BENCHMARKS}
    assert gen.main(["--check", "--root", str(root)]) == 1
    # Regenerating brings the documents back in line with the changed JSON.
    assert gen.main(["--root", str(root)]) == 0
    assert gen.check(root) == []
    assert gen.fmt(first["mean"]["acc"]) in (root / "README.md").read_text()


def test_a_hand_edited_table_fails_the_check(tmp_path):
    root = _copy_repo_docs(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    begin, end = text.index("<!-- results:begin -->"), text.index("<!-- results:end -->")
    readme.write_text(text[:begin] + text[begin:end].replace("|", "| ", 1) + text[end:])
    assert gen.check(root) == [gen.README]


def test_every_result_gets_a_row_and_a_section(tmp_path):
    entries = gen.load_entries(ROOT)
    readme = (ROOT / "README.md").read_text()
    details = (ROOT / "docs" / "benchmarks.md").read_text()
    for entry in entries:
        assert f"### {gen.heading(entry)}" in details
        assert (f"(docs/benchmarks.md#{entry.anchor})" in readme) == gen.is_headline(entry)
    assert len({entry.anchor for entry in entries}) == len(entries)


def test_the_readme_shows_headline_runs_and_benchmarks_md_every_run(tmp_path):
    """Ablations (a paper's baselines), runs on part of a data set and boot sweeps stay out of the README's
    table but keep their section; a weights file shows by its name; a paper's k-means row is not put beside
    k-means on a network's features."""
    root = tmp_path
    (root / "docs" / "results").mkdir(parents=True)
    stats = {"acc": 0.5, "nmi": 0.25, "ari": 0.125, "seconds": 1.0}

    def result(method, options):
        return {"benchmark": "mnist", "method": method, "protocol": "quick", "n_images": 10,
                "runs": [{"seed": 0, **stats}], "mean": stats, "std": stats,
                "recorded": {"command": f"photocluster --headless --benchmark mnist --method {method} {options}"}}

    results = [result("ccnn", "-p drift_compensation=true"), result("ccnn", "-p drift_compensation=false"),
               result("ccnn", "-p variant=baseline2"), result("mmdc", "--limit 5000"),
               result("kmeans", "-p features=mobilenet_v2 --weights /some/where/w.pth"), result("kmeans", "")]
    (root / "docs" / "results" / "a.json").write_text(json.dumps(results))
    (root / "README.md").write_text("<!-- results:begin -->\n<!-- results:end -->\n")
    (root / "docs" / "benchmarks.md").write_text("<!-- details:begin -->\n<!-- details:end -->\n"
                                                 "<!-- corrections:begin -->\n<!-- corrections:end -->\n"
                                                 "<!-- photo-runs:begin -->\n<!-- photo-runs:end -->\n")
    assert gen.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| [`")]
    assert len(rows) == 3, rows
    assert "drift_compensation=true" in readme and "drift_compensation=false" not in readme
    assert "baseline2" not in readme and "limit=5000" not in readme
    assert "weights=w.pth" in readme and "/some/where" not in readme
    features_row = next(row for row in rows if "features=mobilenet_v2" in row)
    pixels_row = next(row for row in rows if "kmeans" in row and "features=" not in row)
    assert "| 0.5723 |" in pixels_row and "| 0.5723 |" not in features_row  # DAC's Table 2 k-means on MNIST
    details = (root / "docs" / "benchmarks.md").read_text()
    assert details.count("### ") == len(results)


def test_generic_over_methods_datasets_and_paper_rows(tmp_path):
    """A new file with an unknown method, a known paper row (MMDC on MNIST, arithmetic NMI) and a boot sweep."""
    root = tmp_path
    (root / "docs" / "results").mkdir(parents=True)
    run = {"seed": 0, "acc": 0.5, "nmi": 0.25, "nmi_arithmetic": 0.3, "ari": 0.125, "seconds": 1.0}
    stats = {"acc": 0.5, "nmi": 0.25, "nmi_arithmetic": 0.3, "ari": 0.125, "seconds": 1.0}
    result = {"benchmark": "mnist", "method": "mmdc", "protocol": "quick", "n_images": 10, "runs": [run],
              "mean": stats, "std": stats,
              "recorded": {"command": "photocluster --headless --benchmark mnist --method mmdc -p epochs=2",
                           "seeds": [0]}}
    other = {**result, "method": "brand-new", "benchmark": "folder:/x/my-photos", "recorded": {}}
    sweep = {"benchmark": "mnist", "method": "tlfwr", "protocol": "quick", "n_images": 10,
             "boot_sweeps": [{"seed": 0, "per_boot": {"raw+kmeans": {"boot": {"acc": 0.5, "nmi": 0.4},
                                                                     "final": {"acc": 0.6, "nmi": 0.5}}}}]}
    (root / "docs" / "results" / "a.json").write_text(json.dumps([result, other]))
    (root / "docs" / "results" / "b.json").write_text(json.dumps(sweep))
    (root / "README.md").write_text("x\n<!-- results:begin -->\n<!-- results:end -->\ny\n")
    (root / "docs" / "benchmarks.md").write_text("<!-- details:begin -->\n<!-- details:end -->\n"
                                                 "<!-- corrections:begin -->\n<!-- corrections:end -->\n"
                                                 "<!-- photo-runs:begin -->\n<!-- photo-runs:end -->\n")
    (root / "docs" / "results" / "corrections").mkdir()
    row = {"method": "dac", "fraction": 0.05, "corrections": 9, "kept": 1.0, "n_images": 180,
           "acc_before": 0.5, "acc_unconstrained": 0.55, "acc_after": 0.6}
    (root / "docs" / "results" / "corrections" / "c.json").write_text(json.dumps(
        {"kind": "corrections", "benchmark": "digits", "recorded": {"command": "python scripts/bench_corrections.py"},
         "results": [{**row, "seed": 0}, {**row, "seed": 1, "acc_after": 0.5}]}))
    assert gen.check(root) == [gen.README, gen.BENCHMARKS]
    assert gen.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    assert "| 0.5000 | 0.99 | 0.3000 arith. | 0.971 arith. |" in readme  # ours beside MMDC's Table I
    assert "epochs=2" in readme and "my-photos (folder)" in readme and "brand-new" in readme
    assert "tlfwr" not in readme  # a sweep has no single figure for the table
    details = (root / "docs" / "benchmarks.md").read_text()
    assert "0.5000 → 0.6000" in details and "not recorded" in details
    assert "| dac | 9 (5%) | 0 | 100% | 0.5000 | 0.5500 | 0.6000 | +0.0500 |" in details
    assert "| **dac** | **5%, mean** | | 100% | 0.5000 | 0.5500 | 0.5500 | +0.0000 (1/2 seeds better) |" in details
    assert gen.check(root) == []


def test_missing_markers_are_an_error(tmp_path):
    _copy_repo_docs(tmp_path)
    (tmp_path / "README.md").write_text("no markers here\n")
    with pytest.raises(ValueError, match="markers"):
        gen.check(tmp_path)


def test_photo_presets_and_memory_runs_get_their_sections(tmp_path):
    root = tmp_path
    for sub in ("photo-presets", "photo-memory"):
        (root / "docs" / "results" / sub).mkdir(parents=True)
    (root / "README.md").write_text("<!-- results:begin -->\n<!-- results:end -->\n")
    (root / "docs" / "benchmarks.md").write_text("<!-- details:begin -->\n<!-- details:end -->\n"
                                                 "<!-- corrections:begin -->\n<!-- corrections:end -->\n"
                                                 "<!-- photo-runs:begin -->\n<!-- photo-runs:end -->\n")
    recorded = {"command": "python scripts/bench_photo_presets.py --folder x", "omp_num_threads": "1"}
    (root / "docs" / "results" / "photo-presets" / "p.json").write_text(json.dumps(
        {"kind": "photo-presets", "folder": "/data/photos-sample", "preset": "fast", "k": 5, "recorded": recorded,
         "runs": [{"method": "dac", "photos": 200, "predicted_seconds": 97.4, "actual_seconds": 96.6,
                   "predicted_peak_bytes": 2 * 2**30, "actual_peak_bytes": 1.5 * 2**30,
                   "eta_ratio": {"50%": 1.2, "75%": 0.9}}]}))
    (root / "docs" / "results" / "photo-memory" / "m.json").write_text(json.dumps(
        {"kind": "photo-memory", "method": "mmdc", "preset": "fast", "epochs": 1, "recorded": {},
         "runs": [{"photos": 5000, "seconds": 1062.4, "peak_bytes": 2.25 * 2**30, "exit_code": 0}]}))
    (root / "docs" / "results" / "photo-memory" / "r.json").write_text(json.dumps(
        {"kind": "photo-memory", "method": "recommended", "preset": "fast", "k": "auto", "epochs": None,
         "estimate": True, "fresh_home": True, "recorded": {},
         "runs": [{"photos": 20000, "seconds": 640.2, "features_seconds": 512.6, "k": 7,
                   "peak_bytes": 1.25 * 2**30, "exit_code": 0, "estimate": {"time": "5 s", "peak": "1.1 GB"},
                   "again": {"seconds": 41.4, "peak_bytes": 1.5 * 2**30, "exit_code": 0}}]}))
    assert gen.main(["--root", str(root)]) == 0
    details = (root / "docs" / "benchmarks.md").read_text()
    assert ("### Time and peak memory of the recommended path (k-means on pre-trained embeddings) by number of "
            "photos, k = auto") in details
    assert "| 20,000 | 640 | 513 | 7 | 1.25 GiB | 0 | 5 s, 1.1 GB | 41, 1.50 GiB |" in details
    assert "Every run starts from an empty cache" in details and "calibration estimate" in details
    assert "### The fast preset on photos-sample, k = 5: estimate against the real run" in details
    assert "`python scripts/bench_photo_presets.py --folder x` with `OMP_NUM_THREADS=1`" in details
    assert "| dac | 200 | 97 | 97 | 2.00 GiB | 1.50 GiB | - / 1.2 / 0.9 |" in details
    assert "### Peak memory of mmdc's fast preset by number of photos (1 epoch)" in details
    assert "| 5,000 | 1062 | 2.25 GiB | 0 |" in details
    assert gen.check(root) == []
