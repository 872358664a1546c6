"""The headless folder mode end to end: ``photocluster --headless --folder DIR --method M -k K ...``.

On the 200 real photos of ../shared/data/photos-sample (fixture photos_sample), on the bad-input corpus,
on a synthetic folder with three obvious groups (-k auto), and with bad arguments (one-line errors, exit 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster.cli import main
from photocluster.methods import base

UNIT_TESTS = Path(__file__).resolve().parents[1] / "unit"
GUI_TESTS = Path(__file__).resolve().parents[1] / "gui"
sys.path.insert(0, str(UNIT_TESTS))
sys.path.insert(0, str(GUI_TESTS))
from bad_inputs import build_corpus, restore_permissions  # noqa: E402
from guitools import CollapsingMethod  # noqa: E402  (Qt-free: the fake methods live there)

CLUSTER_LINE = re.compile(r"^  (.+?)(?: \[locked\])? \((\d+) photos\): (.+)$")
#: One k-means restart on HOG features keeps the default suite fast on a shared 2-core machine (raw
#: 96x96x3 pixels with 10 restarts take a minute there); the slow test runs the method's defaults.
FAST = ["-m", "kmeans", "-p", "n_init=1", "-p", "features=hog", "-q"]


def _clusters(stdout: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in map(CLUSTER_LINE.match, stdout.splitlines()) if m]


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("photocluster: error: "), err
    return err[0]


def test_sorts_photos_sample_into_k_clusters_with_a_dry_run(photos_sample, tmp_path, capsys):
    dest = tmp_path / "sorted"
    argv = ["--headless", "--folder", str(photos_sample), "--method", "kmeans", "-k", "5",
            "--export", str(dest), "--dry-run", *FAST]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warning" not in captured.err  # five real clusters: nothing collapsed
    assert "scan: 200 photos, 0 skipped" in out
    clusters = _clusters(out)
    assert len(clusters) == 5 and sum(size for _, size in clusters) == 200
    assert all(size >= 1 for _, size in clusters)
    # The dry run lists one copy per photo, each photo exactly once, into DEST/<cluster name>/ …
    plan = [line for line in out.splitlines() if line.startswith("copy ")]
    sources = [line[5:].split(" -> ")[0] for line in plan]
    assert sorted(sources) == sorted(str(p) for p in photos_sample.rglob("*.jpg"))
    folders = {Path(line.split(" -> ")[1]).parent.name for line in plan}
    assert folders == {name for name, _ in clusters}
    # … and changes nothing.
    assert not dest.exists() or not any(dest.rglob("*"))


def test_second_run_reuses_the_decode_cache(photos_sample, capsys):
    argv = ["--headless", "--folder", str(photos_sample), "--method", "kmeans", "-k", "3", *FAST]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    assert "decode: 0 decoded, 200 from the cache" in capsys.readouterr().out


def test_exports_copies_into_cluster_folders(photos_sample, tmp_path, capsys):
    dest = tmp_path / "export"
    before = {p: p.stat().st_mtime_ns for p in photos_sample.rglob("*.jpg")}
    argv = ["--headless", "--folder", str(photos_sample), "-m", "kmeans", "-k", "5",
            "--export", str(dest), "--mode", "copy", *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    clusters = dict(_clusters(out))
    assert "export: 200 photos copied" in out
    exported = [p for p in dest.rglob("*.jpg") if ".photocluster-export" not in p.parts]
    assert len(exported) == 200
    sizes = {}
    for path in exported:
        sizes[path.parent.name] = sizes.get(path.parent.name, 0) + 1
    assert sizes == clusters
    # Copy mode leaves the originals where they were, untouched.
    assert {p: p.stat().st_mtime_ns for p in photos_sample.rglob("*.jpg")} == before


def _striped_folder(root: Path, per_group: int = 10) -> Path:
    """Three obvious groups for HOG: horizontal stripes, vertical stripes, diagonal stripes."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    patterns = {"h": (yy // 8) % 2, "v": (xx // 8) % 2, "d": ((xx + yy) // 8) % 2}
    for name, pattern in patterns.items():
        for i in range(per_group):
            grey = pattern * 200 + 20 + rng.integers(0, 30, pattern.shape)
            image = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
            Image.fromarray(image).save(root / f"{name}{i:02d}.png")
    return root


def test_k_auto_estimates_and_says_how(tmp_path, capsys):
    folder = _striped_folder(tmp_path / "stripes")
    assert main(["--headless", "--folder", str(folder), "--method", "kmeans", "-k", "auto", *FAST]) == 0
    out = capsys.readouterr().out
    match = re.search(r"^k = (\d+) \(auto: best silhouette of k-means on (.+) over k = 2\.\.(\d+); (clear|likely|uncertain): .*\)$", out, re.M)
    assert match, out
    assert match.group(3) == "6"  # min(20, 30 // 5)
    assert int(match.group(1)) == 3
    clusters = _clusters(out)
    assert sorted(size for _, size in clusters) == [10, 10, 10]
    # Only sentences on stdout: the last photo scanned or decoded is not printed as if it were a summary.
    names = {path.name for path in folder.iterdir()}
    assert not [line for line in out.splitlines() if line.strip() in names], out


def test_bad_input_corpus_is_listed_with_reasons(tmp_path, capsys):
    root = tmp_path / "corpus"
    build_corpus(root)
    try:
        assert main(["--headless", "--folder", str(root), "-m", "kmeans", "-k", "2", *FAST]) == 0
    finally:
        restore_permissions(root)
    out = capsys.readouterr().out
    assert re.search(r"^skipped \(\d+\):$", out, re.M)
    assert "empty.jpg: empty file (0 bytes)" in out
    assert "bomb.png: decompression bomb" in out
    assert re.search(r"truncated\.jpg: truncated image data", out)
    assert "caf\ufffd-latin1.png" in out or os.name != "posix"  # non-UTF-8 name printed, not crashed on
    assert len(_clusters(out)) == 2
    # Issue 20: a 102-MP camera JPEG is sorted, a few-KB file claiming 900 M pixels is not; non-UTF-8 file
    # and folder names do not stop the catalog from recording the run.
    assert "bomb-30000.png: decompression bomb refused" in out
    assert "100mp.jpg:" not in out
    assert "recorded as run" in out and "not recorded" not in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--folder", "/no/such/folder", "-k", "3"], "folder not found"),
        (["-k", "1"], "-k must be at least 2"),
        (["-k", "many"], "-k must be a whole number"),
        (["-k", "3", "--method", "no-such-method"], "unknown method 'no-such-method'"),
        (["-k", "3", "--method", "kmeans,gmm"], "one method at a time"),
        (["-k", "3", "--dry-run"], "--dry-run shows an export plan"),
        (["-k", "3", "-p", "no_such_param=1"], "unknown parameter"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    folder = tmp_path / "photos"
    folder.mkdir()
    argv = ["--headless", *(["--folder", str(folder)] if "--folder" not in extra else []), *extra]
    assert message in _one_line_error(capsys, argv)


def test_empty_folder_says_no_photos_found(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no photos here")
    assert "no photos found" in _one_line_error(capsys, ["--headless", "--folder", str(folder), "-m", "kmeans", "-k", "2", "-q"])


def test_more_clusters_than_photos_is_a_usage_error(tmp_path, capsys):
    folder = _striped_folder(tmp_path / "few", per_group=1)
    assert "more than the 3 photos" in _one_line_error(capsys, ["--headless", "--folder", str(folder), "-m", "kmeans", "-k", "5", "-q"])


def test_subprocess_exit_code_and_no_qt_import(tmp_path):
    folder = _striped_folder(tmp_path / "stripes", per_group=2)
    code = (
        "import sys\n"
        "from photocluster.cli import main\n"
        f"rc = main(['--headless', '--folder', {str(folder)!r}, '-k', '2', '-q'])\n"
        "assert 'PySide6' not in sys.modules, 'the core imported Qt'\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "2 clusters of 6 photos" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "photocluster", "--headless", "--folder", str(tmp_path / "nope")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"photocluster: error: folder not found: {tmp_path / 'nope'}"]


@pytest.mark.slow
def test_default_kmeans_on_photos_sample(photos_sample, tmp_path, capsys):
    """The command exactly as a user types it (k-means with its default 10 restarts)."""
    assert main(["--headless", "--folder", str(photos_sample), "--method", "kmeans", "-k", "5",
                 "--export", str(tmp_path / "out"), "--dry-run"]) == 0
    clusters = _clusters(capsys.readouterr().out)
    assert len(clusters) == 5 and sum(size for _, size in clusters) == 200


def test_a_collapsed_result_is_kept_but_warned_about(photos_sample, capsys, monkeypatch):
    base._load_builtin_methods()
    monkeypatch.setitem(base._REGISTRY, CollapsingMethod.name, CollapsingMethod)
    argv = ["--headless", "--folder", str(photos_sample), "--method", "test-collapsing", "-k", "4", "-q"]
    assert main(argv) == 0  # nothing failed: the clusters are listed (and recorded) as they are
    captured = capsys.readouterr()
    clusters = _clusters(captured.out)
    assert len(clusters) == 1 and clusters[0][1] == 200
    warnings = [line for line in captured.err.splitlines() if line.startswith("photocluster: warning: ")]
    assert warnings == ["photocluster: warning: test-collapsing put 200 of 200 photos (100.0 %) into one cluster; "
                        "1 of the 4 clusters asked for is not empty. The training has probably collapsed: try "
                        "another method (mmdc, kmeans) or other settings."]
