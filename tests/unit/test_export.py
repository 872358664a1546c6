"""Export never loses or overwrites a photo: real photos, hostile names, a full disk, and killed processes."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from photocluster.errors import UsageError
from photocluster.library import export
from photocluster.library.export import (
    JOURNAL_DIR_NAME,
    ExportError,
    ExportItem,
    pending_exports,
    plan_export,
    recover_exports,
    run_export,
    safe_folder_name,
)
from photocluster.progress import Cancelled, CancelToken


_POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and directory fsync are POSIX")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _items(root: Path) -> list[ExportItem]:
    # The sample's sub-folders (daisy, rose, …) play the clusters; confidence is arbitrary but recorded.
    return [ExportItem(p, p.parent.name, 0.25 + (i % 3) / 4) for i, p in enumerate(_photos(root))]


def _exported_files(dest: Path) -> list[Path]:
    """Every photo file in DEST's cluster folders (not the journal, not the manifests)."""
    return sorted(
        p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR_NAME not in p.parts and p.parent != dest
    )


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*photocluster-partial*")]


@pytest.fixture(autouse=True)
def _no_fsync(request, monkeypatch):
    """fsync guards against power loss, which no test can cause; on a shared disk it costs ~10 ms a call.

    Tests that ask for the ``real_fsync`` fixture keep it, so the durable path runs too.
    """
    if "real_fsync" not in request.fixturenames:
        monkeypatch.setattr(export, "_durable", False)


@pytest.fixture
def real_fsync() -> None:
    """Marker fixture: this test runs with real fsync calls."""


@pytest.fixture
def sample_copy(photos_sample, tmp_path) -> Path:
    """A private copy of the 200 real photos: move mode deletes originals."""
    return Path(shutil.copytree(photos_sample, tmp_path / "src"))


def _copy_some(photos_sample: Path, folder: Path, count: int) -> Path:
    for photo in _photos(photos_sample)[:count]:
        target = folder / photo.relative_to(photos_sample)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    return folder


@pytest.fixture
def few_photos(photos_sample, tmp_path) -> Path:
    """A private copy of 60 of the real photos, for the failure tests (a slow shared disk makes 200 costly)."""
    return _copy_some(photos_sample, tmp_path / "src", 60)


@pytest.fixture(scope="session")
def few_hashes(photos_sample) -> Counter:
    return Counter(_sha(p) for p in _photos(photos_sample)[:60])


@pytest.fixture(scope="session")
def original_hashes(photos_sample) -> Counter:
    return Counter(_sha(p) for p in _photos(photos_sample))


# ---------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc", "_.._etc"),  # separators replaced, leading dots stripped: never ".."
        ("..", "cluster 3"),
        ("", "cluster 3"),
        ("   ", "cluster 3"),
        ("a/b", "a_b"),
        ("a\\b", "a_b"),
        ("CON", "CON_"),
        ("nul.txt", "nul_.txt"),
        ("Lpt9", "Lpt9_"),
        ("COM10", "COM10"),  # not reserved
        ("tab\there\x00", "tab_here_"),
        ("trailing. . ", "trailing"),
        ("Beach 2024", "Beach 2024"),
        ("Ünïcödé 🌷", "Ünïcödé 🌷"),
        ('what? "*" <x>|y:', "what_ ___ _x__y_"),
    ],
)
def test_safe_folder_name_by_hand(name, expected):
    assert safe_folder_name(name, 3) == expected


def test_over_long_name_is_cut_to_a_valid_component():
    name = "é" * 300
    safe = safe_folder_name(name)
    assert len(safe.encode("utf-8")) <= 200 and set(safe) == {"é"}


def test_hostile_cluster_names_export_inside_destination(photos_sample, tmp_path):
    hostile = ["../../etc", "CON", "a/b", "", "..", "/abs", "x" * 400, "a_b"]
    sources = _photos(photos_sample)[: len(hostile)]
    dest = tmp_path / "deep" / "dest"
    plan = plan_export([ExportItem(s, n) for s, n in zip(sources, hostile)], dest)
    list(run_export(plan))

    files = _exported_files(dest)
    assert len(files) == len(hostile)
    root = dest.resolve()
    for file in files:
        assert file.resolve().parent.parent == root  # exactly DEST/<one folder>/<file>
    # Nothing was written next to DEST (where "../../etc" would have pointed).
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["dest"]
    folders = list(plan.folders.values())
    assert len(set(f.casefold() for f in folders)) == len(hostile)  # "a/b" and "a_b" get different folders
    assert plan.folders["a/b"] == "a_b" and plan.folders["a_b"] == "a_b (2)"
    assert plan.folders["CON"] == "CON_"
    assert plan.folders[""] == "cluster 4" and plan.folders[".."] == "cluster 5"


# ---------------------------------------------------------------------------------------------------
# Copy, move, links on the 200 real photos
# ---------------------------------------------------------------------------------------------------


def _manifest_rows(plan) -> list[dict]:
    report = plan.report
    with open(report.manifest_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    document = json.loads(report.manifest_json.read_text("utf-8"))
    assert [r["new_path"] for r in document["photos"]] == [r["new_path"] for r in rows]
    return rows


def test_copy_exports_every_photo_once_and_leaves_originals(photos_sample, tmp_path, original_hashes):
    before = {p: (p.stat().st_mtime_ns, _sha(p)) for p in _photos(photos_sample)}
    dest = tmp_path / "dest"
    plan = plan_export(_items(photos_sample), dest, mode="copy")
    events = list(run_export(plan))

    assert events[-1].step == events[-1].total == 200
    files = _exported_files(dest)
    assert len(files) == 200 and Counter(_sha(p) for p in files) == original_hashes
    rows = _manifest_rows(plan)
    assert len(rows) == 200
    for row in rows:  # each photo byte-identical at its new path, in its cluster's folder
        original, new = Path(row["original_path"]), Path(row["new_path"])
        assert new.read_bytes() == original.read_bytes()
        assert new.parent.name == original.parent.name == row["cluster"]
        assert row["confidence"] != ""
    assert {p: (p.stat().st_mtime_ns, _sha(p)) for p in _photos(photos_sample)} == before
    assert not _partials(dest) and pending_exports(dest) == []
    assert plan.report.summary() == f"200 photos copied into {dest}"


def test_move_deletes_originals_only_after_the_copy(sample_copy, tmp_path, original_hashes):
    dest = tmp_path / "dest"
    plan = plan_export(_items(sample_copy), dest, mode="move")
    list(run_export(plan))
    assert _photos(sample_copy) == []
    files = _exported_files(dest)
    assert len(files) == 200 and Counter(_sha(p) for p in files) == original_hashes
    assert len(_manifest_rows(plan)) == 200


@_POSIX_ONLY
def test_move_with_real_fsync(real_fsync, few_photos, tmp_path, monkeypatch):
    """The durable path (file, journal and directory fsyncs) on a few photos: slow disks make 200 too slow."""
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(export.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    photos = _photos(few_photos)[:8]
    hashes = Counter(_sha(p) for p in photos)
    plan = plan_export([ExportItem(p, "c") for p in photos], tmp_path / "dest", mode="move")
    list(run_export(plan))
    assert Counter(_sha(p) for p in _exported_files(tmp_path / "dest")) == hashes
    assert not any(p.exists() for p in photos)
    # Per photo: the copy, the 'placing' journal line, the target folder (before the original goes);
    # per export: the plan, the journal folder, the source folders, the two manifests and their folder, the end.
    assert 8 * 3 <= len(synced) <= 8 * 3 + 10


def test_second_export_never_overwrites(photos_sample, tmp_path, original_hashes):
    dest = tmp_path / "dest"
    first = plan_export(_items(photos_sample), dest)
    list(run_export(first))
    first_files = {p: _sha(p) for p in _exported_files(dest)}

    second = plan_export(_items(photos_sample), dest)
    assert all(" (2)" in op.target for op in second.operations)
    list(run_export(second))
    files = _exported_files(dest)
    assert len(files) == 400
    assert Counter(_sha(p) for p in files) == original_hashes + original_hashes
    assert {p: _sha(p) for p in first_files} == first_files  # the first export is untouched


def test_file_appearing_between_plan_and_execute_is_not_overwritten(photos_sample, tmp_path):
    dest = tmp_path / "dest"
    plan = plan_export(_items(photos_sample)[:3], dest)
    intruder = dest / plan.operations[1].target
    intruder.parent.mkdir(parents=True)
    intruder.write_bytes(b"someone else's file")
    list(run_export(plan))
    assert intruder.read_bytes() == b"someone else's file"
    renamed = plan.report.renamed_at_execute
    assert len(renamed) == 1 and renamed[0][0] == plan.operations[1].target
    assert (dest / renamed[0][1]).read_bytes() == plan.operations[1].source.read_bytes()
    assert renamed[0][1].endswith(" (2).jpg")


def test_same_file_names_in_one_cluster_get_suffixes(tmp_path):
    sources = []
    for folder, name in [("a", "x.jpg"), ("b", "x.jpg"), ("c", "X.JPG"), ("d", "CON.jpg"), ("e", "x (2).jpg")]:
        path = tmp_path / "src" / folder / name
        path.parent.mkdir(parents=True)
        path.write_bytes(folder.encode())
        sources.append(path)
    plan = plan_export([ExportItem(p, "c") for p in sources], tmp_path / "dest")
    # Case-insensitive: X.JPG collides with x.jpg (it would on macOS and Windows disks).
    assert [op.target for op in plan.operations] == ["c/x.jpg", "c/x (2).jpg", "c/X (3).JPG", "c/CON_.jpg", "c/x (2) (2).jpg"]
    list(run_export(plan))
    assert {p.name: p.read_bytes() for p in (tmp_path / "dest" / "c").iterdir()} == {
        "x.jpg": b"a", "x (2).jpg": b"b", "X (3).JPG": b"c", "CON_.jpg": b"d", "x (2) (2).jpg": b"e"
    }


def test_dry_run_describes_and_touches_nothing(photos_sample, tmp_path):
    dest = tmp_path / "dest"
    plan = plan_export(_items(photos_sample), dest, mode="move")
    lines = plan.describe().splitlines()
    assert len(lines) == 200 and all(line.startswith("move ") for line in lines)
    assert f"-> {dest / plan.operations[0].target}" in lines[0]
    assert not dest.exists()


def test_missing_source_is_skipped_at_plan_and_failed_at_execute(few_photos, tmp_path):
    photos = _photos(few_photos)[:4]
    plan = plan_export([ExportItem(p, "c") for p in photos] + [ExportItem(few_photos / "gone.jpg", "c")], tmp_path / "d")
    assert [s for s, _ in plan.skipped] == [few_photos / "gone.jpg"]
    photos[2].unlink()  # vanishes after planning
    list(run_export(plan))
    assert [s for s, _ in plan.report.failed] == [photos[2]]
    assert len(plan.report.exported) == 3


def test_same_source_twice_is_a_usage_error(photos_sample, tmp_path):
    photo = _photos(photos_sample)[0]
    with pytest.raises(UsageError, match="listed twice"):
        plan_export([ExportItem(photo, "a"), ExportItem(photo, "b")], tmp_path / "d")
    with pytest.raises(UsageError, match="unknown export mode"):
        plan_export([], tmp_path / "d", mode="teleport")


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_link_modes(photos_sample, tmp_path, mode):
    sources = _photos(photos_sample)[:10]
    dest = tmp_path / "dest"
    plan = plan_export([ExportItem(p, "c") for p in sources], dest, mode=mode)
    assert not dest.exists() and os.listdir(tmp_path) == []  # the link probe left nothing behind
    list(run_export(plan))
    for source, new in plan.report.exported:
        if mode == "symlink":
            assert new.is_symlink() and Path(os.readlink(new)) == source
        else:
            assert os.path.samefile(source, new) and not new.is_symlink()


def test_impossible_links_give_a_clear_error_unless_fallback_allowed(photos_sample, tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(export.os, "link", no_links)
    items = [ExportItem(p, "c") for p in _photos(photos_sample)[:5]]
    with pytest.raises(UsageError, match="cannot make hardlinks .*Invalid cross-device link.*mode copy"):
        plan_export(items, tmp_path / "d", mode="hardlink")
    plan = plan_export(items, tmp_path / "d", mode="hardlink", fallback_to_copy=True)
    list(run_export(plan))  # copies, and names them with the rename fallback (no hard links at all)
    assert plan.report.fallbacks_to_copy == 5
    for source, new in plan.report.exported:
        assert new.read_bytes() == source.read_bytes() and new.stat().st_nlink == 1


def test_cancel_stops_between_photos_with_a_manifest(photos_sample, tmp_path):
    token = CancelToken()
    plan = plan_export(_items(photos_sample), tmp_path / "d")
    with pytest.raises(Cancelled):
        for event in run_export(plan, cancel=token):
            if event.step == 20:
                token.cancel()
    assert plan.report.cancelled and len(plan.report.exported) == 20
    assert len(_manifest_rows(plan)) == 20 and len(_exported_files(tmp_path / "d")) == 20
    assert pending_exports(tmp_path / "d") == []  # a cancel is a clean stop, nothing to recover


# ---------------------------------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------------------------------


def _disk_full_after(monkeypatch, good_copies: int):
    """From the (good_copies+1)-th photo on, writing fails half way with ENOSPC, leaving a partial file.

    Returns a function that frees the space again.
    """
    real_copy = export._copy_file
    calls = {"n": 0}

    def copy(source, temp):
        calls["n"] += 1
        if calls["n"] <= good_copies:
            return real_copy(source, temp)
        temp.write_bytes(source.read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "_copy_file", copy)
    return lambda: monkeypatch.setattr(export, "_copy_file", real_copy)


def test_full_disk_leaves_a_journal_that_recovery_completes(few_photos, tmp_path, monkeypatch, few_hashes):
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "home"))  # a registry of pending exports of its own
    dest = tmp_path / "dest"
    plan = plan_export(_items(few_photos), dest, mode="move")
    free_space = _disk_full_after(monkeypatch, good_copies=20)
    with pytest.raises(ExportError, match="disk is full.*20 of 60 photos are done"):
        list(run_export(plan))
    assert not _partials(dest)  # the half-written copy is gone, never given a final name
    assert len(_exported_files(dest)) == 20 and len(_photos(few_photos)) == 40
    [pending] = pending_exports(dest)
    assert (pending.total, pending.finished_operations, pending.mode) == (60, 20, "move")
    assert pending_exports() == [pending]  # the destination is remembered for the next start

    free_space()
    messages = recover_exports(dest)
    assert len(messages) == 1 and "60 photos exported (20 were done before" in messages[0]
    files = _exported_files(dest)
    assert len(files) == 60 and Counter(_sha(p) for p in files) == few_hashes
    assert _photos(few_photos) == [] and pending_exports(dest) == [] and recover_exports(dest) == []
    manifest = next(dest.glob("photocluster-manifest-*.csv"))
    assert len(list(csv.DictReader(manifest.open(encoding="utf-8")))) == 60


def test_failing_journal_writes_stop_the_export_recoverably(few_photos, tmp_path, monkeypatch, few_hashes):
    """fsync can report ENOSPC too (thin volumes, network disks): the journal then cannot be trusted."""
    dest = tmp_path / "dest"
    journal_syncs = {"n": 0}

    def fsync(fd):
        journals = list((dest / JOURNAL_DIR_NAME).glob("*.jsonl"))
        if journals and os.fstat(fd).st_ino == journals[0].stat().st_ino:
            journal_syncs["n"] += 1
            if journal_syncs["n"] > 30:
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "_fsync", fsync)
    with pytest.raises(ExportError, match="cannot write its journal.*the disk is full"):
        list(run_export(plan_export(_items(few_photos), dest, mode="move")))
    monkeypatch.setattr(export, "_fsync", lambda fd: None)
    assert "resumed export" in recover_exports(dest)[0]
    files = _exported_files(dest)
    assert len(files) == 60 and Counter(_sha(p) for p in files) == few_hashes and _photos(few_photos) == []


def test_a_torn_journal_line_does_not_hide_later_records(few_photos, tmp_path, monkeypatch, few_hashes):
    dest = tmp_path / "dest"
    free_space = _disk_full_after(monkeypatch, good_copies=15)
    with pytest.raises(ExportError):
        list(run_export(plan_export(_items(few_photos), dest, mode="move")))
    [journal] = (dest / JOURNAL_DIR_NAME).glob("*.jsonl")
    with open(journal, "ab") as handle:
        handle.write(b'{"type": "plac')  # power lost in the middle of a line
    free_space()
    _disk_full_after(monkeypatch, good_copies=30)  # the first recovery gets 30 photos further, then stops
    with pytest.raises(ExportError):
        recover_exports(dest)
    free_space()
    [pending] = pending_exports(dest)
    assert pending.finished_operations == 45  # the records after the torn line were read
    recover_exports(dest)
    files = _exported_files(dest)
    assert len(files) == 60 and Counter(_sha(p) for p in files) == few_hashes


def test_power_loss_that_drops_unsynced_lines_and_deletions_is_recovered(
    few_photos, tmp_path, monkeypatch, few_hashes
):
    """Worst case of a power loss: only fsynced journal lines survive and some deletions are undone."""
    dest = tmp_path / "dest"
    free_space = _disk_full_after(monkeypatch, good_copies=30)
    with pytest.raises(ExportError):
        list(run_export(plan_export(_items(few_photos), dest, mode="move")))
    free_space()
    [journal] = (dest / JOURNAL_DIR_NAME).glob("*.jsonl")
    records = [json.loads(line) for line in journal.read_text("utf-8").splitlines()]
    plan = records[0]
    kept = [r for r in records if r["type"] in ("plan", "placing")]  # the synced ones
    journal.write_text("".join(json.dumps(r) + "\n" for r in kept), "utf-8")
    for record in kept[1:15]:  # the deletion of these originals did not reach the disk
        source = Path(plan["operations"][record["op"]]["source"])
        shutil.copyfile(dest / record["target"], source)
    assert len(_photos(few_photos)) == 30 + 14

    [message] = recover_exports(dest)
    assert "60 photos exported" in message
    files = _exported_files(dest)
    assert len(files) == 60 and Counter(_sha(p) for p in files) == few_hashes
    assert _photos(few_photos) == [] and not _partials(dest)


def test_recovery_waits_when_the_originals_are_unreachable(few_photos, tmp_path, monkeypatch, few_hashes):
    dest = tmp_path / "dest"
    free_space = _disk_full_after(monkeypatch, good_copies=10)
    with pytest.raises(ExportError):
        list(run_export(plan_export(_items(few_photos), dest, mode="move")))
    free_space()
    unplugged = few_photos.rename(tmp_path / "elsewhere")  # the drive with the originals is not connected
    [message] = recover_exports(dest)
    assert "not resumed" in message and "connected" in message
    assert pending_exports(dest)[0].finished_operations == 10  # nothing was marked failed
    unplugged.rename(few_photos)
    assert "60 photos exported" in recover_exports(dest)[0]
    assert Counter(_sha(p) for p in _exported_files(dest)) == few_hashes


def test_rollback_puts_moved_photos_back(few_photos, tmp_path, monkeypatch, photos_sample):
    before = {p.relative_to(few_photos): _sha(p) for p in _photos(few_photos)}
    dest = tmp_path / "dest"
    free_space = _disk_full_after(monkeypatch, good_copies=20)
    with pytest.raises(ExportError):
        list(run_export(plan_export(_items(few_photos), dest, mode="move")))
    free_space()
    [message] = recover_exports(dest, rollback=True)
    assert "20 moved photos put back" in message
    assert {p.relative_to(few_photos): _sha(p) for p in _photos(few_photos)} == before
    assert _exported_files(dest) == [] and pending_exports(dest) == []


def test_rollback_keeps_the_only_copy_when_its_old_place_is_taken(few_photos, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    free_space = _disk_full_after(monkeypatch, good_copies=10)
    plan = plan_export(_items(few_photos), dest, mode="move")
    with pytest.raises(ExportError):
        list(run_export(plan))
    free_space()
    moved = plan.operations[3]
    moved.source.write_bytes(b"a new file the user saved here since")
    [message] = recover_exports(dest, rollback=True)
    assert "9 moved photos put back" in message and "1 kept" in message
    assert moved.source.read_bytes() == b"a new file the user saved here since"
    [kept] = _exported_files(dest)
    assert kept == plan.report.exported[3][1] and kept.read_bytes()[:3] == b"\xff\xd8\xff"  # the photo, a JPEG


# ---------------------------------------------------------------------------------------------------
# A process killed at random points during a move
# ---------------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from photocluster.library import export

    source, dest, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    steps = 0

    def die_at_step(step):
        global steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    export._fault_hook = die_at_step
    export._durable = False  # SIGKILL keeps the page cache: fsync matters only for power loss
    export._CHUNK = 16384  # > the 8 KiB write buffer: a kill at "copy-partial" leaves a partly written file
    files = sorted(p for p in source.rglob("*") if p.is_file())
    plan = export.plan_export([export.ExportItem(p, p.parent.name, 0.5) for p in files], dest, mode="move")
    for _ in export.run_export(plan):
        pass
    print("finished after", steps, "steps")
    """
)

# Steps: 1 = the plan is journaled, then per photo 6 (begin, partial copy written, copied + verified,
# placing, placed, done). Kills at 2..7 hit each step of the first photo (on a 40-photo subset, for speed);
# random kills anywhere in the 1201 steps of all 200 photos (seeded: the same points every run).
_STEP_KILLS = [(40, step) for step in (2, 3, 4, 5, 6, 7)]
_RANDOM_KILLS = [(200, step) for step in random.Random(20261122).sample(range(8, 1202), 3)]


def _run_child_killed(source: Path, dest: Path, kill_at: int, home: Path) -> None:
    env = {**os.environ, "PHOTOCLUSTER_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(source), str(dest), str(kill_at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stdout, result.stderr)


@_POSIX_ONLY
@pytest.mark.parametrize(("photo_count", "kill_at"), _STEP_KILLS + _RANDOM_KILLS)
def test_killed_move_loses_no_photo_and_recovery_completes(photos_sample, tmp_path, photo_count, kill_at):
    sample_copy = _copy_some(photos_sample, tmp_path / "src", photo_count)
    original_hashes = Counter(_sha(p) for p in _photos(sample_copy))
    dest = tmp_path / "dest"
    _run_child_killed(sample_copy, dest, kill_at, tmp_path / "home")

    if kill_at == 3:  # killed after the first 16 KiB of the first photo: a partial file under a temporary name
        [partial] = _partials(dest)
        first = _photos(sample_copy)[0]  # still in place: a move deletes nothing before the copy is verified
        assert partial.stat().st_size == 16384 < first.stat().st_size
    # Right after the kill every photo exists complete somewhere: at its source or under a final name.
    complete = [p for p in _exported_files(dest) if p not in _partials(dest)]  # a partial copy does not count
    survivors = Counter(_sha(p) for p in _photos(sample_copy)) + Counter(_sha(p) for p in complete)
    assert set(survivors) == set(original_hashes)

    messages = recover_exports(dest)
    assert len(messages) == 1 and messages[0].startswith("resumed export")
    files = _exported_files(dest)
    assert len(files) == photo_count and Counter(_sha(p) for p in files) == original_hashes
    assert _photos(sample_copy) == [] and not _partials(dest) and pending_exports(dest) == []


@_POSIX_ONLY
@pytest.mark.parametrize("kill_at", [4, 333])
def test_killed_move_can_be_rolled_back(few_photos, tmp_path, kill_at):
    sample_copy = few_photos
    before = {p.relative_to(sample_copy): _sha(p) for p in _photos(sample_copy)}
    dest = tmp_path / "dest"
    _run_child_killed(sample_copy, dest, kill_at, tmp_path / "home")
    [message] = recover_exports(dest, rollback=True)
    assert message.startswith("rolled back")
    assert {p.relative_to(sample_copy): _sha(p) for p in _photos(sample_copy)} == before
    assert _exported_files(dest) == [] and not _partials(dest) and not _partials(sample_copy)
