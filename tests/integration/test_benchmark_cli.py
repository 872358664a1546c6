"""The headless benchmark command end to end: in-process (``photocluster.cli.main``) and as a subprocess."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from photocluster.cli import main

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"

# Real runs of k-means (raw pixels, n_init 10) on the embedded digits, seeds 0 and 1:
# ACC 0.7874 / 0.7908, NMI 0.7395 / 0.7403, ARI 0.6595 / 0.6647.
DIGITS_KMEANS_ACC = 0.79


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("photocluster: error: ")
    return lines[0]


def write_tiny_mnist(folder: Path, n: int = 30) -> None:
    """Real IDX .gz files: two classes (a bright left or right half), n training + 6 test images."""
    rng = np.random.default_rng(0)

    def images_and_labels(count):
        labels = np.arange(count) % 2
        images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, :, :14] += np.uint8(200) if label == 0 else np.uint8(0)
            images[i, :, 14:] += np.uint8(200) if label == 1 else np.uint8(0)
        return images, labels.astype(np.uint8)

    def write(path, array):
        with gzip.open(path, "wb") as handle:
            handle.write(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes())

    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("t10k", 6)):
        images, labels = images_and_labels(count)
        write(folder / f"{split}-images-idx3-ubyte.gz", images)
        write(folder / f"{split}-labels-idx1-ubyte.gz", labels)


def test_list_shows_data_sets_and_methods(capsys):
    assert main(["--headless", "--list"]) == 0
    out = capsys.readouterr().out
    assert "stl10" in out and "13,000" in out and "96x96x3" in out
    for name in ("kmeans", "gmm", "agglomerative", "spectral", "nmf"):
        assert f"  {name} " in out
    networks = [line.split()[0] for line in out.split("Pre-trained networks")[1].splitlines()[2:] if line.strip()]
    assert networks[:5] == ["mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "resnet50"]
    assert "mobilenet_v2" in [l.split()[0] for l in out.splitlines() if "[recommended on a CPU]" in l]
    assert "convnext_tiny" in [l.split()[0] for l in out.splitlines() if "[recommended on a GPU]" in l]
    assert "--protocol quick:" in out and "--protocol paper:" in out


def test_digits_kmeans_json_key_by_key(tmp_path, capsys):
    output = tmp_path / "r.json"
    code = main(["--headless", "--benchmark", "digits", "--method", "kmeans", "--seeds", "2", "-q",
                 "--output", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    assert result["benchmark"] == "digits"
    assert result["method"] == "kmeans"
    assert result["protocol"] == "quick"
    assert result["n_images"] == 1797
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    for run in result["runs"]:
        assert set(run) >= {"seed", "acc", "nmi", "ari", "seconds"}
        assert all(isinstance(run[key], float) for key in ("acc", "nmi", "ari", "seconds"))
        assert run["acc"] == pytest.approx(DIGITS_KMEANS_ACC, abs=0.03)
        assert 0 < run["nmi"] <= 1 and 0 < run["ari"] <= 1 and run["seconds"] > 0
    for key in ("acc", "nmi", "ari"):
        assert result["mean"][key] == pytest.approx(np.mean([run[key] for run in result["runs"]]))
    assert result["paper"] is None  # no paper reports digits
    table = capsys.readouterr().out
    assert "kmeans" in table and "no paper row" in table and "mean ± std of 2 seeds" in table


def test_mnist_files_get_the_dac_paper_row(tmp_path, capsys):
    write_tiny_mnist(tmp_path / "mnist")
    output = tmp_path / "r.json"
    code = main(["--headless", "--benchmark", "mnist", "--method", "kmeans", "--data-dir", str(tmp_path / "mnist"),
                 "-k", "2", "-q", "-p", "n_init=2", "--output", str(output)])
    assert code == 0
    result = json.loads(output.read_text())
    assert result["n_images"] == 36
    assert result["runs"][0]["acc"] == 1.0  # two halves, trivially separable
    paper = result["paper"]
    assert paper["acc"] == 0.5723 and paper["nmi"] == 0.4997 and paper["ari"] == 0.3652
    assert "DAC" in paper["paper"] and paper["nmi_average"] == "geometric"
    assert "Table 2" in capsys.readouterr().out


def test_several_methods_write_a_list(tmp_path):
    output = tmp_path / "r.json"
    code = main(["--headless", "--benchmark", "digits", "--method", "kmeans,gmm", "-q", "--limit", "300",
                 "-p", "n_init=2", "--output", str(output)])
    assert code == 0
    results = json.loads(output.read_text())
    assert [r["method"] for r in results] == ["kmeans", "gmm"]
    assert results[0]["params"]["n_init"] == 2  # -p goes to the methods that have the parameter
    assert all(r["n_images"] == 300 for r in results)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--benchmark", "imagenet-1k", "--method", "kmeans"], "unknown data set 'imagenet-1k'"),
        (["--benchmark", "digits", "--method", "kmeanz"], "unknown method 'kmeanz'"),
        (["--benchmark", "digits", "--method", "kmeans", "-k", "1"], "at least 2"),
        (["--benchmark", "digits", "--method", "kmeans", "-k", "auto"], "whole number"),
        (["--benchmark", "digits", "--method", "kmeans", "-p", "epochs=3"], "unknown parameter 'epochs'"),
        (["--benchmark", "digits"], "needs --method"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    assert main(["--headless", *argv, "-q"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert needle in line


def test_missing_stl10_explains_how_to_get_it(tmp_path, capsys):
    code = main(["--headless", "--benchmark", "stl10", "--method", "kmeans", "--data-dir", str(tmp_path / "none")])
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "stl10_binary/train_X.bin" in line and "stl10_binary.tar.gz" in line and "--download" in line


def test_cancelled_run_raises_cancelled():
    from photocluster.benchmarks.runner import run_benchmark
    from photocluster.progress import CancelToken, Cancelled

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_benchmark("digits", "kmeans", progress=False, cancel=token)


def test_subprocess_benchmark_prints_the_table(tmp_path):
    output = tmp_path / "r.json"
    proc = subprocess.run(
        [str(PYTHON), "-m", "photocluster", "--headless", "--benchmark", "digits", "--method", "kmeans",
         "-p", "n_init=3", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "measured, mean ± std of 1 seed" in proc.stdout
    assert "kmeans seed 0" in proc.stderr  # the tqdm bar
    assert json.loads(output.read_text())["n_images"] == 1797


def test_subprocess_missing_data_exit_2(tmp_path):
    proc = subprocess.run(
        [str(PYTHON), "-m", "photocluster", "--headless", "--benchmark", "stl10", "--method", "kmeans",
         "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert "stl10_binary" in one_line_error(proc.stderr)


def test_headless_benchmark_never_imports_qt():
    code = (
        "import sys\n"
        "from photocluster.cli import main\n"
        "rc = main(['--headless', '--benchmark', 'digits', '--method', 'kmeans,gmm', '-q', '--limit', '200',"
        " '-p', 'n_init=1'])\n"
        "rc2 = main(['--headless', '--list'])\n"
        "assert rc == 0 and rc2 == 0, (rc, rc2)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6', 'superqt')))\n"
        "print('QT_MODULES', bad)\n"
    )
    proc = subprocess.run([str(PYTHON), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "QT_MODULES []" in proc.stdout


def test_paper_rows_name_real_data_sets_and_methods():
    from photocluster.benchmarks.specs import PAPER_RESULTS, paper_result
    from photocluster.data.datasets import list_datasets
    from photocluster.methods.base import list_methods

    names = {info.name for info in list_datasets()}
    methods = set(list_methods())
    for row in PAPER_RESULTS:
        assert row.dataset in names, row
        assert row.method in methods, row
        assert row.nmi_average in ("geometric", "arithmetic")
    row = paper_result("mnist", "kmeans")
    assert (row.nmi, row.ari, row.acc) == (0.4997, 0.3652, 0.5723)
    assert paper_result("stl10", "agglomerative").acc == 0.3322
    assert paper_result("stl10", "agglomerative").features == "hog-color"
    assert paper_result("stl10", "mmdc").nmi_average == "arithmetic"
    assert paper_result("digits", "kmeans") is None


def test_table_uses_arithmetic_nmi_when_the_paper_does():
    from photocluster.benchmarks.runner import format_table
    from photocluster.benchmarks.specs import paper_result

    stats = {"acc": 0.5, "nmi": 0.111, "nmi_arithmetic": 0.222, "ari": 0.3, "seconds": 1.0}
    result = {"benchmark": "stl10", "method": "mmdc", "protocol": "quick", "n_images": 13000, "n_clusters": 10,
              "runs": [{}], "mean": stats, "std": {k: 0.0 for k in stats}, "best": stats,
              "paper": paper_result("stl10", "mmdc").as_dict()}
    table = format_table([result])
    assert "0.2220 ± 0.0000 (arith.)" in table and "0.1110" not in table
    assert "MMDC (Shiran & Weinshall, ICPR 2020), Table I" in table and "0.6940" in table


@pytest.mark.slow
def test_mnist_kmeans_reproduces_dac_table2(mnist_dir, tmp_path):
    """DAC Table 2, k-means on MNIST raw pixels (70,000 images): NMI 0.4997, ARI 0.3652, ACC 0.5723, ±0.04.

    Minutes on a 2-core CPU (10 k-means++ restarts on 70,000 × 784): outside the default suite.
    """
    output = tmp_path / "r.json"
    assert main(["--headless", "--benchmark", "mnist", "--method", "kmeans", "--data-dir", str(mnist_dir), "-q",
                 "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["n_images"] == 70_000
    for key, paper in (("nmi", 0.4997), ("ari", 0.3652), ("acc", 0.5723)):
        assert result["mean"][key] == pytest.approx(paper, abs=0.04), key


def test_dac_benchmark_prints_and_writes_how_right_its_pairs_are(tmp_path, capsys):
    output = tmp_path / "r.json"
    code = main(["--headless", "--benchmark", "digits", "--method", "dac", "-q", "--limit", "120", "--device", "cpu",
                 "-p", "max_passes=2", "-p", "selection_batch=60", "-p", "minibatch=30", "-p", "passes_per_batch=1",
                 "-p", "bn_recalibration_images=120", "--output", str(output)])
    assert code == 0
    table = json.loads(output.read_text())["runs"][0]["selection"]
    assert [row["pass"] for row in table] == [1, 2]
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("dac seed 0: the pairs it selected"))
    first = printed[header + 2].split()
    assert first[:3] == ["1", "0.950", "0.455"]
    assert int(first[3].replace(",", "")) == table[0]["similar_pairs"]
