"""Issue 20 end to end: nothing a real disk holds may stop the folder mode's export.

``photocluster --headless --folder SRC -k K --export DEST [--mode M] [--dry-run]`` on non-UTF-8 file,
folder and destination names; a move killed with 3 photos left and then run again; two move exports into
one destination at once; a move whose originals cannot be deleted; the destination inside the scanned
folder, run twice; an unwritable data folder; the up-front checks.
"""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster.cli import main
from photocluster.library.export import JOURNAL_DIR_NAME, pending_exports

FAST = ["-m", "kmeans", "-p", "n_init=1", "-p", "features=hog", "-q"]
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="bytes file names, SIGKILL and flock are POSIX")
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}


def _photos(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    """Small noisy photos in two colour groups (every name a different picture)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, name in enumerate(names):
        base = (200, 40, 40) if i % 2 else (40, 60, 200)
        pixels = np.clip(np.array(base) + rng.normal(0, 20, (30, 40, 3)), 0, 255).astype(np.uint8)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="PNG")
        paths.append(path)
    return paths


def _contents(paths) -> Counter:
    return Counter(Path(p).read_bytes() for p in paths)


def _exported(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR_NAME not in p.parts and p.parent != dest)


def _cli(argv: list[str], home: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(ENV) if home is None else {**ENV, "PHOTOCLUSTER_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "photocluster", *argv], capture_output=True, env=env,
                          timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# 1. Non-UTF-8 names
# ---------------------------------------------------------------------------------------------------


@POSIX_ONLY
@pytest.mark.parametrize("mode", ["copy", "move", "dry-run"])
def test_non_utf8_file_and_folder_names_export(tmp_path, capsys, mode):
    src = tmp_path / "src"
    names = [os.fsdecode(b"bad\xff.png"), os.fsdecode(b"d\xe9j\xe0/inside.png"), "a.png", "b.png", "c.png", "d.png"]
    photos = _photos(src, names)
    before = _contents(photos)
    dest = tmp_path / "dest"
    export = ["--export", str(dest), *(["--dry-run"] if mode == "dry-run" else ["--mode", mode])]
    assert main(["--headless", "--folder", str(src), "-k", "2", *export, *FAST]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # printable
    assert "recorded as run" in out and "not recorded" not in out  # the catalog takes such names too
    if mode == "dry-run":
        plan = [line for line in out.splitlines() if line.startswith("copy ")]
        assert len(plan) == 6 and any(f"{src}/bad\ufffd.png -> " in line for line in plan)
        assert not dest.exists()
        return
    assert f"export: 6 photos {'copied' if mode == 'copy' else 'moved'} into {dest}" in out
    assert _contents(_exported(dest)) == before
    assert {p.name for p in _exported(dest)} >= {"bad\ufffd.png", "inside.png"}
    assert all(p.exists() for p in photos) == (mode == "copy")


@POSIX_ONLY
def test_non_utf8_destination(tmp_path, capsys):
    photos = _photos(tmp_path / "src", [f"{i}.png" for i in range(4)])
    dest = tmp_path / os.fsdecode(b"sorted-\xff")
    assert main(["--headless", "--folder", str(tmp_path / "src"), "-k", "2", "--export", str(dest), *FAST]) == 0
    out = capsys.readouterr().out
    assert f"export: 4 photos copied into {tmp_path}/sorted-\ufffd" in out
    assert _contents(_exported(dest)) == _contents(photos)
    assert all(j.stat().st_size > 0 for j in (dest / JOURNAL_DIR_NAME).glob("*.jsonl"))


# ---------------------------------------------------------------------------------------------------
# 2. A move killed with 3 photos left, then run again
# ---------------------------------------------------------------------------------------------------

_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from photocluster.cli import main
    from photocluster.library import export

    done = 0

    def die(step):
        global done
        if step == "done":
            done += 1
            if done == int(sys.argv[1]):
                os.kill(os.getpid(), signal.SIGKILL)

    export._fault_hook = die
    sys.exit(main(sys.argv[2:]))
    """
)


@POSIX_ONLY
def test_a_move_killed_with_3_photos_left_is_finished_by_running_it_again(tmp_path):
    src = tmp_path / "src"
    photos = _photos(src, [f"{i}.png" for i in range(5)])
    before = _contents(photos)
    dest = tmp_path / "dest"
    argv = ["--headless", "--folder", str(src), "-k", "5", "--export", str(dest), "--mode", "move", *FAST]
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, "2", *argv], capture_output=True, env=ENV,
                            timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len([p for p in photos if p.exists()]) == 3  # fewer than -k 5
    assert pending_exports(dest)

    again = _cli(argv)
    out, err = again.stdout.decode(), again.stderr.decode()
    assert "recovered: resumed export" in out and "5 photos exported (2 were done before the interruption)" in out
    # Recovered before the scan: then nothing is left to sort, which is said in one line.
    assert again.returncode == 2 and err.strip() == f"photocluster: error: no photos found in {src}"
    assert pending_exports(dest) == []
    assert _contents(_exported(dest)) == before and not any(p.exists() for p in photos)


# ---------------------------------------------------------------------------------------------------
# 3. Two move exports into one destination at once
# ---------------------------------------------------------------------------------------------------

_SLOW_EXPORT = textwrap.dedent(
    """
    import os, sys, time
    from photocluster.cli import main
    from photocluster.library import export

    deadline = time.monotonic() + 120

    def slow_disk(step):  # the export's steps wait until the test lets them go on (two minutes at most)
        while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
            time.sleep(0.05)

    export._fault_hook = slow_disk
    sys.exit(main(sys.argv[2:]))
    """
)


@POSIX_ONLY
def test_two_concurrent_move_exports_into_one_destination(tmp_path):
    first_src, second_src = tmp_path / "camera", tmp_path / "phone"
    first = _photos(first_src, [f"c{i}.png" for i in range(8)], seed=1)
    second = _photos(second_src, [f"p{i}.png" for i in range(6)], seed=2)
    everything = _contents(first) + _contents(second)
    dest = tmp_path / "library"
    lock = dest / JOURNAL_DIR_NAME / "lock"

    def argv(src: Path) -> list[str]:
        return ["--headless", "--folder", str(src), "-k", "2", "--export", str(dest), "--mode", "move", *FAST]

    go_on = tmp_path / "go-on"
    running = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, str(go_on), *argv(first_src)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip() == str(running.pid)):
            assert running.poll() is None and time.monotonic() < deadline, "the first export took no lock"
            time.sleep(0.05)
        busy = _cli(argv(second_src))
    finally:
        go_on.write_text("")
        out, err = running.communicate(timeout=180)
    assert running.returncode == 0, err.decode()
    assert busy.returncode == 2
    assert busy.stderr.decode().strip() == (
        f"photocluster: error: the destination {dest} is busy (another export is running into it, process "
        f"{running.pid}); wait for it to finish, or export into another folder")
    assert busy.stdout.decode() == ""  # refused before the scan: nothing touched, no time lost
    assert all(p.exists() for p in second)
    # Once the first is done, the second goes ahead; every photo ends up exactly once.
    assert _cli(argv(second_src)).returncode == 0
    assert _contents(_exported(dest)) == everything
    assert not any(p.exists() for p in first + second) and pending_exports(dest) == []


# ---------------------------------------------------------------------------------------------------
# 4. A move in which every original could not be deleted
# ---------------------------------------------------------------------------------------------------


def test_a_move_whose_originals_cannot_be_deleted_exits_1(tmp_path, capsys, monkeypatch):
    src = tmp_path / "src"
    photos = set(_photos(src, [f"{i}.png" for i in range(4)]))
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):  # as on a read-only source (tests run as root)
        if self in photos:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    dest = tmp_path / "dest"
    rc = main(["--headless", "--folder", str(src), "-k", "2", "--export", str(dest), "--mode", "move", *FAST])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"export: 0 photos moved into {dest}, 4 failed" in out
    failed = [line for line in out.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 4 and all("the original could not be deleted: Permission denied" in line for line in failed)


# ---------------------------------------------------------------------------------------------------
# 6. The destination inside the scanned folder
# ---------------------------------------------------------------------------------------------------


def test_a_destination_inside_the_scanned_folder_is_not_scanned_again(tmp_path, capsys):
    src = tmp_path / "photos"
    _photos(src, [f"{i:02d}.png" for i in range(20)])
    dest = src / "sorted"
    argv = ["--headless", "--folder", str(src), "-k", "2", "--export", str(dest), *FAST]
    for run in (1, 2):
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert "scan: 20 photos, 0 skipped" in captured.out  # the copies in DEST are not photos to sort
        assert "export: 20 photos copied" in captured.out
        assert (f"photocluster: warning: the export destination {dest} is inside the scanned folder {src}: it is "
                "left out of the scan, so exported photos are not sorted again") in captured.err
        assert len(_exported(dest)) == 20 * run  # 20, then 40 (a second copy of each) — not 60


# ---------------------------------------------------------------------------------------------------
# 7. / 8. One-line errors, before the slow work
# ---------------------------------------------------------------------------------------------------


def test_an_unwritable_data_folder_is_a_one_line_error(tmp_path):
    _photos(tmp_path / "src", ["a.png", "b.png", "c.png"])
    (tmp_path / "a-file").write_text("in the way")
    result = _cli(["--headless", "--folder", str(tmp_path / "src"), "-k", "2", "-q"], home=tmp_path / "a-file" / "home")
    assert result.returncode == 2
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("photocluster: error: cannot write photocluster's ") and "PHOTOCLUSTER_HOME" in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mode", "move"], "--mode move says how to export: give --export DEST too"),
        (["--export", "{file}"], "is a file, not a folder"),
        (["--export", "{src}"], "is the folder being sorted"),
    ],
)
def test_export_arguments_are_checked_before_the_scan(tmp_path, capsys, extra, message):
    src = tmp_path / "src"
    _photos(src, ["a.png", "b.png", "c.png"])
    (tmp_path / "file").write_text("x")
    extra = [part.format(file=tmp_path / "file", src=src) for part in extra]
    assert main(["--headless", "--folder", str(src), "-k", "2", *extra, *FAST]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("photocluster: error: ") and message in line
    assert "scan:" not in captured.out  # said before any slow work


def test_a_newline_in_a_file_name_keeps_the_dry_run_one_line_per_photo(tmp_path, capsys):
    src = tmp_path / "src"
    _photos(src, ["two\nlines.png", "a.png", "b.png", "c.png"])
    assert main(["--headless", "--folder", str(src), "-k", "2", "--export", str(tmp_path / "d"), "--dry-run",
                 *FAST]) == 0
    plan = [line for line in capsys.readouterr().out.splitlines() if line.startswith("copy ")]
    assert len(plan) == 4 and any("two\\nlines.png -> " in line for line in plan)
