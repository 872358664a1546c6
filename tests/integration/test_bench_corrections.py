"""scripts/bench_corrections.py simulates a person's moves through a real catalog and prints one JSON object per
method, seed and fraction with the keys the issue names; the moves are kept and each one fixes a photo."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_corrections.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_corrections", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_moves_misplaced_photos_and_reports_both_re_runs(capsys, tmp_path):
    output = tmp_path / "corrections.json"
    code = _script().main(["--benchmark", "digits", "--method", "kmeans", "--seeds", "1", "--limit", "400",
                           "--fractions", "0.05", "--output", str(output)])
    assert code == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    record = json.loads(line)
    assert {"method", "seed", "corrections", "kept", "acc_before", "acc_after", "acc_unconstrained"} <= set(record)
    assert record["method"] == "kmeans" and record["seed"] == 0
    assert record["corrections"] == 20  # 5 % of 400, all misplaced by the first run
    assert record["kept"] == 1.0
    # k-means with the same seed repeats the first run; each of the 20 moves then fixes one photo under the
    # first run's matching, so the Hungarian ACC rises by at least 20/400
    assert record["acc_unconstrained"] >= record["acc_before"] + 20 / 400 - 1e-9
    stored = json.loads(output.read_text())
    assert stored["kind"] == "corrections" and stored["results"] == [record]
    assert "bench_corrections.py" in stored["recorded"]["command"]


def test_a_bad_method_is_refused_before_any_work():
    with pytest.raises((SystemExit, ValueError)):
        _script().main(["--benchmark", "digits", "--method", "nosuchmethod", "--seeds", "1"])
