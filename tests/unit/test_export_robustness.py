"""Issue 20: nothing a real disk holds may stop an export — the library's part.

Non-UTF-8 file, folder and destination names; an interrupted move finished before anything else; two
exports into one destination (a lock, and a clear "busy"); an all-failed move reported as failed; the
destination inside the scanned folder; an unwritable data folder; a newline in a name; the link-error
hint. The folder mode end to end (exit codes, kill -9, two concurrent commands) is in
tests/integration/test_folder_export_robustness.py.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bad_inputs import BLUE, GREEN, RED, encode, non_utf8, solid
from photocluster.errors import UsageError
from photocluster.library import export
from photocluster.library.export import (
    JOURNAL_DIR_NAME,
    DestinationBusyError,
    DestinationLock,
    ExportError,
    ExportItem,
    pending_exports,
    plan_export,
    prepare_export,
    recover_exports,
    run_export,
)
from photocluster.library.scan import display_path

_POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="bytes file names and flock are POSIX")


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """A registry of pending exports of each test's own; no fsync (no test can cut the power)."""
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(export, "_durable", False)


def _write_photos(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    colours = [RED, GREEN, BLUE]
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(solid(colours[i % 3], (20 + i, 20)), "PNG"))
        paths.append(path)
    return paths


def _exported(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR_NAME not in p.parts and p.parent != dest)


def _run(plan) -> None:
    for _ in run_export(plan):
        pass


# ---------------------------------------------------------------------------------------------------
# 1. Names that are not valid UTF-8
# ---------------------------------------------------------------------------------------------------


@_POSIX_ONLY
@pytest.mark.parametrize("mode", ["copy", "move"])
def test_non_utf8_file_and_folder_names_export(tmp_path, mode):
    src = tmp_path / "src"
    photos = _write_photos(src, [non_utf8(b"bad\xff.jpg"), non_utf8(b"bad\xfe.jpg"),
                                 non_utf8(b"d\xe9j\xe0/inside.png"), "fine.png"])
    contents = {p.read_bytes() for p in photos}
    dest = tmp_path / "dest"
    plan = plan_export([ExportItem(p, "Beach" if i < 2 else non_utf8(b"caf\xe9"), 0.5) for i, p in enumerate(photos)],
                       dest, mode)
    # The dry run prints: names shown with U+FFFD, one line per photo.
    lines = plan.describe().splitlines()
    assert len(lines) == 4 and all(line.encode("utf-8") for line in lines)
    assert f"{mode} {src}/bad\ufffd.jpg -> " in plan.describe()
    _run(plan)
    assert plan.report.ok and len(plan.report.exported) == 4
    plan.report.summary().encode("utf-8")
    files = _exported(dest)
    assert {p.read_bytes() for p in files} == contents
    # The names made in DEST are valid UTF-8 (writable on a FAT stick too); two names that differ only
    # in their undecodable byte get a suffix rather than overwriting each other.
    assert all(str(p).encode("utf-8") for p in files)
    assert sorted(str(p.relative_to(dest)) for p in files) == [
        "Beach/bad\ufffd (2).jpg", "Beach/bad\ufffd.jpg", "caf\ufffd/fine.png", "caf\ufffd/inside.png"]
    assert (mode == "move") == (not any(p.exists() for p in photos))
    # Manifests: readable text, and the exact bytes of each non-UTF-8 original.
    manifest = json.loads(plan.report.manifest_json.read_text("utf-8"))
    raw = {bytes.fromhex(row["original_path_bytes"]) for row in manifest["photos"] if "original_path_bytes" in row}
    assert raw == {os.fsencode(p) for p in photos[:3]}
    plan.report.manifest_csv.read_text("utf-8")
    # The journal is plain ASCII JSON and names the very files (a recovery reads them back).
    [journal] = (dest / JOURNAL_DIR_NAME).glob("*.jsonl")
    record = json.loads(journal.read_bytes().decode("ascii").splitlines()[0])
    assert [Path(op["source"]) for op in record["operations"]] == photos


@_POSIX_ONLY
def test_non_utf8_destination(tmp_path):
    photos = _write_photos(tmp_path / "src", ["a.png", "b.png"])
    dest = tmp_path / non_utf8(b"export-\xff")
    plan = plan_export([ExportItem(p, "One") for p in photos], dest, "copy")
    plan.describe().encode("utf-8")
    _run(plan)
    assert plan.report.ok and len(_exported(dest)) == 2
    assert "export-\ufffd" in plan.report.summary()
    [journal] = (dest / JOURNAL_DIR_NAME).glob("*.jsonl")
    assert journal.stat().st_size > 0


@_POSIX_ONLY
def test_an_interrupted_export_of_non_utf8_names_is_recovered(tmp_path, monkeypatch):
    photos = _write_photos(tmp_path / "src", [non_utf8(f"p{i}-\xff.png".encode("latin-1")) for i in range(4)])
    dest = tmp_path / non_utf8(b"dest-\xe9")
    _interrupt_move(monkeypatch, photos, dest, after_photos=1)
    [message] = recover_exports(dest)
    assert message.startswith("resumed export") and "dest-\ufffd" in message
    assert len(_exported(dest)) == 4 and not any(p.exists() for p in photos)


def test_a_newline_in_a_file_name_keeps_the_dry_run_one_line_per_photo(tmp_path):
    photos = _write_photos(tmp_path / "src", ["two\nlines.png", "plain.png"])
    plan = plan_export([ExportItem(p, "One") for p in photos], tmp_path / "dest")
    lines = plan.describe().splitlines()
    assert len(lines) == 2
    assert "two\\nlines.png -> " in lines[0] or "two\\nlines.png -> " in lines[1]
    _run(plan)
    assert sorted(p.name for p in _exported(tmp_path / "dest")) == ["plain.png", "two_lines.png"]


# ---------------------------------------------------------------------------------------------------
# 2. An interrupted move is finished first, whatever is left at the source
# ---------------------------------------------------------------------------------------------------


class _Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after the hook runs (no cleanup beyond ``finally``)."""


def _interrupt_move(monkeypatch, photos: list[Path], dest: Path, after_photos: int) -> None:
    """Start a move of ``photos`` and stop it dead after ``after_photos`` photos are done."""
    done = {"n": 0}

    def hook(step: str) -> None:
        if step == "done":
            done["n"] += 1
            if done["n"] == after_photos:
                raise _Killed()

    monkeypatch.setattr(export, "_fault_hook", hook)
    plan = plan_export([ExportItem(p, "One") for p in photos], dest, "move")
    with pytest.raises(_Killed):
        _run(plan)
    monkeypatch.setattr(export, "_fault_hook", None)
    assert pending_exports(dest)


def test_prepare_export_finishes_an_interrupted_move_before_anything_else(tmp_path, monkeypatch):
    src = tmp_path / "src"
    photos = _write_photos(src, [f"{i}.png" for i in range(5)])
    dest = tmp_path / "dest"
    _interrupt_move(monkeypatch, photos, dest, after_photos=2)
    assert len([p for p in photos if p.exists()]) == 3  # 3 photos left at the source: fewer than -k 5
    with prepare_export(dest, "move", [src]) as session:
        assert len(session.recovered) == 1 and session.recovered[0].startswith("resumed export")
        assert session.recovery_failures == 0
    assert len(_exported(dest)) == 5 and not any(p.exists() for p in photos)
    assert pending_exports(dest) == []


# ---------------------------------------------------------------------------------------------------
# 3. Two exports into one destination
# ---------------------------------------------------------------------------------------------------


def test_a_second_export_into_a_busy_destination_is_refused_and_touches_nothing(tmp_path):
    photos = _write_photos(tmp_path / "src", [f"{i}.png" for i in range(4)])
    dest = tmp_path / "dest"
    first = plan_export([ExportItem(p, "One") for p in photos], dest, "move")
    second = plan_export([ExportItem(p, "Two") for p in photos], dest, "move")
    running = run_export(first)
    next(running)  # the first export has started: journal open, lock held
    with pytest.raises(DestinationBusyError, match=r"is busy \(another export is running into it"):
        _run(second)
    # Its live journal is not "recovered" by anyone meanwhile.
    [message] = recover_exports(dest)
    assert message.startswith("not recovered: ") and "busy" in message
    assert pending_exports() == []  # the app's start-up offer skips a destination in use
    with pytest.raises(DestinationBusyError):
        prepare_export(dest, "move")
    with prepare_export(dest, "move", dry_run=True) as dry_run:  # a dry run changes nothing: it may look
        assert dry_run.warnings == [f"another export is running into {dest} now; this export would have to "
                                    "wait for it"]
    for _ in running:
        pass
    assert first.report.ok and len(_exported(dest)) == 4 and not any(p.exists() for p in photos)
    # Released at the end: the next export goes ahead.
    with prepare_export(dest, "copy") as session:
        assert session.lock is not None and session.lock.held


@_POSIX_ONLY
def test_the_lock_of_another_process_means_busy_and_dies_with_it(tmp_path):
    dest = tmp_path / "dest"
    code = textwrap.dedent(
        """
        import sys, time
        from photocluster.library.export import DestinationLock
        lock = DestinationLock(sys.argv[1])
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(dest)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DestinationBusyError, match=f"process {child.pid}"):
            DestinationLock(dest)
    finally:
        child.kill()
        child.wait()
    DestinationLock(dest).release()  # the kernel dropped it with the process: no stale lock


def test_without_advisory_locks_a_pid_file_is_the_lock_and_a_dead_holder_is_stale(tmp_path, monkeypatch):
    def no_flock(fd):  # some network shares refuse flock
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(export, "try_lock_exclusively", no_flock)
    dest = tmp_path / "dest"
    lock = DestinationLock(dest)
    pid_file = dest / JOURNAL_DIR_NAME / "lock.pid"
    assert pid_file.read_text().strip() == str(os.getpid())
    with pytest.raises(DestinationBusyError, match=f"process {os.getpid()}"):
        DestinationLock(dest)
    lock.release()
    assert not pid_file.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid_file.write_text(dead.stdout)  # left by a process that crashed
    DestinationLock(dest).release()  # stale: taken over


def test_a_session_plan_runs_under_the_session_lock(tmp_path):
    src = tmp_path / "src"
    photos = _write_photos(src, ["a.png", "b.png"])
    with prepare_export(tmp_path / "dest", "copy", [src]) as session:
        plan = session.plan([ExportItem(p, "One") for p in photos])
        _run(plan)  # does not find its own session's lock busy
        assert plan.report.ok
        with pytest.raises(DestinationBusyError):
            DestinationLock(tmp_path / "dest")
    DestinationLock(tmp_path / "dest").release()


# ---------------------------------------------------------------------------------------------------
# 4. Failures are failures
# ---------------------------------------------------------------------------------------------------


def _originals_cannot_be_deleted(monkeypatch, photos: list[Path]) -> None:
    """As on a read-only source (tests run as root, who may delete anything)."""
    real_unlink = pathlib.Path.unlink
    protected = set(photos)

    def unlink(self, missing_ok=False):
        if self in protected:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)


def test_a_move_whose_originals_cannot_be_deleted_is_not_ok(tmp_path, monkeypatch):
    photos = _write_photos(tmp_path / "src", [f"{i}.png" for i in range(3)])
    _originals_cannot_be_deleted(monkeypatch, photos)
    plan = plan_export([ExportItem(p, "One") for p in photos], tmp_path / "dest", "move")
    _run(plan)
    assert not plan.report.ok
    assert plan.report.summary().endswith("0 photos moved into " + str(tmp_path / "dest") + ", 3 failed")
    assert all("could not be deleted" in reason for _, reason in plan.report.failed)


def test_a_recovery_that_fails_a_photo_names_it(tmp_path, monkeypatch):
    photos = _write_photos(tmp_path / "src", [f"{i}.png" for i in range(3)])
    dest = tmp_path / "dest"
    _interrupt_move(monkeypatch, photos, dest, after_photos=1)
    _originals_cannot_be_deleted(monkeypatch, photos)
    [message] = recover_exports(dest)
    assert ", 2 failed: " in message
    assert f"{photos[1]}: copied, but the original could not be deleted" in message
    assert str(photos[2]) in message


# ---------------------------------------------------------------------------------------------------
# 6. / 8. Up-front checks of the destination
# ---------------------------------------------------------------------------------------------------


def test_a_destination_inside_the_scanned_folder_is_excluded_with_a_warning(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    with prepare_export(src / "sorted", "copy", [src]) as session:
        assert session.exclude == [src / "sorted"]
        [warning] = session.warnings
        assert "inside the scanned folder" in warning and "left out of the scan" in warning
    with prepare_export(tmp_path / "elsewhere", "copy", [src], dry_run=True) as session:
        assert session.exclude == [] and session.warnings == [] and session.lock is None
    assert not (tmp_path / "elsewhere").exists()  # a dry run creates nothing
    with pytest.raises(UsageError, match="is the folder being sorted"):
        prepare_export(src, "copy", [src])


def test_up_front_checks_of_the_destination(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        prepare_export(tmp_path / "a-file", "copy")
    with pytest.raises(UsageError, match="unknown export mode 'teleport'"):
        prepare_export(tmp_path / "dest", "teleport")

    real_mkdir = pathlib.Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):
        if "ro-disk" in str(self):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only_mkdir)
    with pytest.raises(ExportError, match="cannot create the export destination .*ro-disk: it is on a read-only disk"):
        prepare_export(tmp_path / "ro-disk", "copy")


def test_the_link_error_suggests_only_what_exists(tmp_path, monkeypatch):
    photos = _write_photos(tmp_path / "src", ["a.png"])
    monkeypatch.setattr(export, "_probe_links", lambda mode, source, destination: "Invalid cross-device link")
    with pytest.raises(UsageError) as error:
        plan_export([ExportItem(photos[0], "One")], tmp_path / "dest", "hardlink")
    assert str(error.value).endswith("(Invalid cross-device link); export with mode copy instead")
    assert "fall" not in str(error.value)


# ---------------------------------------------------------------------------------------------------
# 7. An unwritable data folder
# ---------------------------------------------------------------------------------------------------


def test_an_unwritable_data_folder_is_one_line(tmp_path, monkeypatch):
    from photocluster import config

    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "a-file" / "home"))
    with pytest.raises(config.DataFolderError, match="cannot write photocluster's data folder .*PHOTOCLUSTER_HOME"):
        config.data_dir()

    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "ro-home"))
    real_open = os.open

    def read_only_open(path, flags, *args):
        if "ro-home" in os.fsdecode(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(config.os, "open", read_only_open)
    with pytest.raises(config.DataFolderError) as error:
        config.cache_dir()
    assert "\n" not in str(error.value) and "it is on a read-only disk" in str(error.value)
    assert isinstance(error.value, OSError)  # the scan index treats its folder as optional and goes on
    # The export's registry of pending exports is only a convenience: an export still runs.
    photos = _write_photos(tmp_path / "src", ["a.png"])
    plan = plan_export([ExportItem(photos[0], "One")], tmp_path / "dest")
    _run(plan)
    assert plan.report.ok

