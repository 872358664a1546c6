"""The catalog keeps every user decision: exact undo/redo, runs that respect edits, killed writers, migrations."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from photocluster.errors import UsageError
from photocluster.library import catalog as catalog_module
from photocluster.library.catalog import SCHEMA_VERSION, Catalog, PhotoRecord


_POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _state(catalog: Catalog) -> tuple:
    """Everything a user can see or edit: clusters (id, name, size, locked) and every photo's place."""
    clusters = [(c.id, c.name, c.size, c.locked) for c in catalog.clusters()]
    places = {p.id: (p.cluster_id, p.confidence, p.source) for p in catalog.photos()}
    return clusters, places


@pytest.fixture
def cat(tmp_path):
    """8 photos; run 1 put photos 1-4 in one cluster and 5-8 in another."""
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ids = catalog.add_photos(
        PhotoRecord(Path(f"/photos/{name}.jpg"), content_hash=f"h{i}", size=1000 + i, width=640, height=480)
        for i, name in enumerate(["h", "g", "f", "e", "d", "c", "b", "a"])
    )
    assert ids == list(range(1, 9))
    run = catalog.start_run("kmeans", {"n_clusters": 2})
    catalog.record_result(run, ids, [0, 0, 0, 0, 1, 1, 1, 1], [0.5, 0.9, 0.7, 0.6, 0.8, 0.4, 0.3, 0.95])
    yield catalog
    catalog.close()


def _ids(catalog: Catalog, name: str) -> list[int]:
    [cluster] = [c for c in catalog.clusters() if c.name == name]
    return sorted(p.id for p in catalog.photos_in(cluster.id))


def _cid(catalog: Catalog, name: str) -> int:
    [cluster] = [c for c in catalog.clusters() if c.name == name]
    return cluster.id


# ---------------------------------------------------------------------------------------------------
# Basics
# ---------------------------------------------------------------------------------------------------


def test_default_path_is_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path))
    with Catalog() as catalog:
        assert catalog.path == tmp_path / "data" / "catalog.sqlite3"
        assert catalog._query("PRAGMA journal_mode")[0][0] == "wal"
        assert catalog._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION


def test_first_run_clusters_sizes_and_representatives(cat):
    infos = cat.clusters()
    assert [(c.name, c.size, c.locked, c.representative_photo_id) for c in infos] == [
        ("Cluster 1", 4, False, 2),  # photo 2 has the highest confidence (0.9) of photos 1-4
        ("Cluster 2", 4, False, 8),  # photo 8: 0.95
    ]
    assert [p.id for p in cat.photos_in(infos[0].id)] == [2, 3, 4, 1]  # surest first
    assert [p.path.name for p in cat.photos_in(infos[0].id, order="name")] == ["e.jpg", "f.jpg", "g.jpg", "h.jpg"]
    [run] = cat.runs()
    assert (run.method, run.params, run.status) == ("kmeans", {"n_clusters": 2}, "finished")
    assert cat.run_labels(run.id) == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1}


def test_add_photos_updates_known_paths(cat):
    [same] = cat.add_photos([{"path": "/photos/h.jpg", "content_hash": "new", "size": 5}])
    assert same == 1
    photo = cat.photo(1)
    assert (photo.content_hash, photo.size, photo.cluster_id) == ("new", 5, _cid(cat, "Cluster 1"))
    assert len(cat.photos()) == 8


def test_export_items_follow_cluster_names(cat):
    cat.rename(_cid(cat, "Cluster 1"), "Beach")
    items = cat.export_items()
    assert len(items) == 8
    assert {i.source.name for i in items if i.cluster == "Beach"} == {"h.jpg", "g.jpg", "f.jpg", "e.jpg"}
    assert {i.confidence for i in items if i.source.name == "a.jpg"} == {0.95}


def test_bad_edits_are_usage_errors(cat):
    a = _cid(cat, "Cluster 1")
    with pytest.raises(UsageError, match="empty"):
        cat.rename(a, "   ")
    with pytest.raises(UsageError, match="no current cluster"):
        cat.rename(999, "x")
    with pytest.raises(UsageError, match="two different"):
        cat.merge([a])
    with pytest.raises(UsageError, match="exactly once"):
        cat.split(a, [1, 2, 3], [0, 1, 1])
    with pytest.raises(UsageError, match="unknown photo"):
        cat.move_photos([42], a)
    with pytest.raises(UsageError, match="already finished"):
        cat.record_result(cat.runs()[0].id, [1], [0])
    assert not cat.can_redo() and cat.undo_description() == "clustering run 1 (kmeans)"  # nothing logged


# ---------------------------------------------------------------------------------------------------
# Undo / redo
# ---------------------------------------------------------------------------------------------------


def _rename(cat):
    cat.rename(_cid(cat, "Cluster 1"), "Beach")


def _move(cat):
    cat.move_photos([1, 5], _cid(cat, "Cluster 2"))


def _move_emptying(cat):
    cat.move_photos([1, 2, 3, 4], _cid(cat, "Cluster 2"))  # Cluster 1 is left empty and disappears


def _merge(cat):
    cat.move_photos([5], _cid(cat, "Cluster 1"))  # a user-placed photo inside, to check sources come back
    cat.merge([_cid(cat, "Cluster 2"), _cid(cat, "Cluster 1")])


def _split(cat):
    assert cat.split(_cid(cat, "Cluster 2"), [5, 6, 7, 8], [3, 3, 7, 9]) != []


def _lock(cat):
    cat.set_locked(_cid(cat, "Cluster 1"), True)


def _unlock(cat):
    cat.set_locked(_cid(cat, "Cluster 1"), False)


def _create(cat):
    cat.create_cluster("Cats", [2, 7])


@pytest.mark.parametrize("edit", [_rename, _move, _move_emptying, _merge, _split, _lock, _unlock, _create])
def test_each_edit_undoes_and_redoes_exactly(cat, edit):
    if edit is _unlock:
        _lock(cat)
    before_state = _state(cat)
    undo_depth = len([a for a in cat.history() if a.state == "done"])
    edit(cat)
    after_state = _state(cat)
    assert after_state != before_state
    edits = len([a for a in cat.history() if a.state == "done"]) - undo_depth
    for _ in range(edits):
        assert cat.undo() is not None
    assert _state(cat) == before_state
    for _ in range(edits):
        assert cat.redo() is not None
    assert _state(cat) == after_state and not cat.can_redo()
    for _ in range(edits):
        cat.undo()
    assert _state(cat) == before_state


def test_merge_and_split_by_hand(cat):
    a, b = _cid(cat, "Cluster 1"), _cid(cat, "Cluster 2")
    cat.rename(b, "Flowers")
    assert cat.merge([b, a]) == b
    assert [(c.name, c.size) for c in cat.clusters()] == [("Flowers", 8)]
    cat.undo()
    assert [(c.name, c.size) for c in cat.clusters()] == [("Cluster 1", 4), ("Flowers", 4)]
    # split: the largest group (label 3: photos 5, 6) stays "Flowers"; the others become "Flowers 2", "… 3".
    new_ids = cat.split(b, [5, 6, 7, 8], [3, 3, 7, 9])
    assert new_ids[0] == b and len(set(new_ids)) == 3
    assert [(c.name, sorted(p.id for p in cat.photos_in(c.id))) for c in cat.clusters()] == [
        ("Cluster 1", [1, 2, 3, 4]),
        ("Flowers", [5, 6]),
        ("Flowers 2", [7]),
        ("Flowers 3", [8]),
    ]


def test_a_new_edit_after_undo_clears_redo(cat):
    a = _cid(cat, "Cluster 1")
    cat.rename(a, "One")
    cat.rename(a, "Two")
    assert cat.undo() == "rename “One” to “Two”"
    assert cat.can_redo() and cat.redo_description() == "rename “One” to “Two”"
    cat.rename(a, "Three")
    assert not cat.can_redo() and cat.redo() is None
    assert cat.undo() == "rename “One” to “Three”"
    assert cat.undo() == "rename “Cluster 1” to “One”"
    assert cat.cluster(a).name == "Cluster 1"
    assert [h.state for h in cat.history()] == ["undone", "discarded", "undone", "done"]


def test_undo_to_the_bottom_and_back(cat):
    start = _state(cat)
    for edit in (_rename, _move, _create):
        edit(cat)
    members = _ids(cat, "Cluster 2")
    assert members == [1, 5, 6, 8]
    cat.split(_cid(cat, "Cluster 2"), members, [0, 1, 0, 1])
    end = _state(cat)
    while cat.undo() is not None:
        pass
    assert not cat.can_undo() and _state(cat)[0] == [] and all(v == (None, None, None) for v in _state(cat)[1].values())
    cat.redo()  # the first run
    assert _state(cat) == start
    while cat.redo() is not None:
        pass
    assert _state(cat) == end


def test_undo_depth_is_bounded(cat):
    cat.undo_depth = 3
    a = _cid(cat, "Cluster 1")
    for name in "ABCDE":
        cat.rename(a, name)
    assert [cat.undo() for _ in range(4)] == ["rename “D” to “E”", "rename “C” to “D”", "rename “B” to “C”", None]
    assert cat.cluster(a).name == "B"
    assert [h.state for h in cat.history()] == ["undone"] * 3 + ["expired"] * 3
    assert cat._query("SELECT COUNT(*) FROM actions WHERE payload = '{}'")[0][0] == 3


# ---------------------------------------------------------------------------------------------------
# A new run keeps what the user decided
# ---------------------------------------------------------------------------------------------------


def test_new_run_keeps_names_user_moves_and_locked_clusters(cat):
    cat.rename(_cid(cat, "Cluster 1"), "Beach")
    cat.rename(_cid(cat, "Cluster 2"), "Forest")
    cat.move_photos([1], _cid(cat, "Forest"))  # the user says photo 1 belongs to Forest
    cat.create_cluster("Cats", [8])

    # Run 2 numbers the clusters the other way round: names must follow the photos, not the numbers.
    run2 = cat.start_run("dac", {})
    cat.record_result(run2, range(1, 9), [1, 1, 1, 1, 0, 0, 0, 0], [0.1] * 8)
    assert _ids(cat, "Beach") == [2, 3, 4]
    assert _ids(cat, "Forest") == [1, 5, 6, 7]  # photo 1 stays where the user put it
    assert _ids(cat, "Cats") == [8]
    assert cat.photo(1).source == "user" and cat.photo(2).confidence == 0.1

    # Run 3: Beach is locked; the rest of Forest splits: the bigger part keeps the name, the other is new.
    cat.set_locked(_cid(cat, "Beach"), True)
    before_run3 = _state(cat)
    run3 = cat.start_run("dac", {})
    cat.record_result(run3, range(1, 9), [5, 5, 5, 5, 5, 9, 9, 9])
    assert [(c.name, c.locked) for c in cat.clusters()] == [
        ("Beach", True),
        ("Forest", False),
        ("Cats", False),
        ("Cluster 1", False),
    ]
    assert _ids(cat, "Beach") == [2, 3, 4]  # locked: label 5 for these photos is ignored
    assert _ids(cat, "Forest") == [1, 6, 7]
    assert _ids(cat, "Cluster 1") == [5]
    assert cat.cluster(_cid(cat, "Cluster 1")).run_id == run3
    assert cat.run_labels(run3)[2] == 5  # the raw labels are kept

    assert cat.undo() == f"clustering run {run3} (dac)"
    assert _state(cat) == before_run3


def test_new_run_retires_clusters_left_empty(cat):
    waiting = cat.create_cluster("To sort")  # empty on purpose: the user fills it later
    run = cat.start_run("kmeans", {})
    cat.record_result(run, range(1, 9), [0] * 8)
    assert [(c.name, c.size) for c in cat.clusters()] == [("Cluster 1", 8), ("To sort", 0)]  # 4-4 tie: the older keeps it
    old = cat._query("SELECT name, current FROM clusters ORDER BY id")
    assert [tuple(r) for r in old] == [("Cluster 1", 1), ("Cluster 2", 0), ("To sort", 1)]  # kept as history
    assert cat.cluster(waiting).size == 0


# ---------------------------------------------------------------------------------------------------
# Schema versions
# ---------------------------------------------------------------------------------------------------


def test_migration_from_schema_1_keeps_data(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    catalog_module._migrate(connection, target_version=1)
    connection.executescript(
        """
        INSERT INTO photos (id, path, content_hash, size, mtime, width, height, added)
            VALUES (1, '/p/a.jpg', 'ha', 10, 1.5, 4, 3, '2025-01-01'), (2, '/p/b.jpg', 'hb', 11, 1.5, 4, 3, '2025-01-01');
        INSERT INTO runs (id, method, params, started, status) VALUES (1, 'kmeans', '{"k": 1}', '2025-01-01', 'finished');
        INSERT INTO clusters (id, run_id, name, current, created) VALUES (1, 1, 'Holiday', 1, '2025-01-01');
        INSERT INTO clusters (id, run_id, name, current, created) VALUES (2, 1, 'Cluster 4', 0, '2025-01-01');
        INSERT INTO assignments (photo_id, cluster_id, confidence) VALUES (1, 1, 0.7), (2, 1, 0.2);
        """
    )
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "locked" not in [r[1] for r in connection.execute("PRAGMA table_info(clusters)")]
    connection.close()

    with Catalog(path) as catalog:
        assert catalog._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 4
        # version 3: names the app gave ("Cluster N") may follow later runs' suggestions; the person's may not
        assert [tuple(r) for r in catalog._query("SELECT id, auto_named FROM clusters ORDER BY id")] == [(1, 0), (2, 1)]
        assert [(c.id, c.name, c.size, c.locked, c.representative_photo_id) for c in catalog.clusters()] == [
            (1, "Holiday", 2, False, 1)
        ]
        assert [p.source for p in catalog.photos_in(1)] == ["model", "model"]
        catalog.rename(1, "Holidays 2025")  # the new tables work on migrated data
        assert catalog.undo() == "rename “Holiday” to “Holidays 2025”"
        assert catalog.cluster(1).name == "Holiday"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(UsageError, match="newer photocluster"):
        Catalog(path)


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a database" * 100)
    with pytest.raises(UsageError, match="not a photocluster catalog"):
        Catalog(path)


# ---------------------------------------------------------------------------------------------------
# A killed writer
# ---------------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from photocluster.library.catalog import Catalog

    path, scenario = sys.argv[1], sys.argv[2]
    catalog = Catalog(path)

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if scenario == "endless-edits":
        cluster = catalog.clusters()[0].id
        i = 0
        while True:  # the parent kills this loop at an arbitrary moment
            catalog.rename(cluster, f"name {i}")
            print(i, flush=True)
            i += 1
    elif scenario == "killed-inside-move":
        cluster = catalog.clusters()[0].id
        catalog.rename(cluster, "committed")
        print("renamed", flush=True)
        Catalog._retire_empty = staticmethod(die)  # runs after the assignments changed, before COMMIT
        catalog.move_photos(range(1, 41), cluster)
    elif scenario == "killed-inside-run":
        calls = []
        real = Catalog._insert_cluster
        def insert_then_die(*args):
            calls.append(real(*args))
            if len(calls) == 3:
                die()
            return calls[-1]
        Catalog._insert_cluster = staticmethod(insert_then_die)
        catalog.record_result(catalog.start_run("dac", {}), range(1, 41), [i % 5 + 10 for i in range(40)])
    print("not killed", flush=True)
    """
)


def _child(path: Path, scenario: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), scenario], stdout=subprocess.PIPE, text=True, **popen
    )


def _intact(path: Path) -> None:
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


@pytest.fixture
def catalog_file(tmp_path) -> Path:
    """40 photos in two clusters of 20 (odd and even ids), written and closed before a child opens it."""
    path = tmp_path / "catalog.sqlite3"
    with Catalog(path) as catalog:
        ids = catalog.add_photos({"path": f"/p/{i}.jpg"} for i in range(40))
        catalog.record_result(catalog.start_run("kmeans", {}), ids, [i % 2 for i in range(40)])
    return path


@_POSIX_ONLY
def test_writer_killed_at_an_arbitrary_moment_keeps_every_commit(catalog_file):
    child = _child(catalog_file, "endless-edits")
    reported = -1
    for line in child.stdout:
        reported = int(line)
        if reported >= 25:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    _intact(catalog_file)
    with Catalog(catalog_file) as catalog:
        name = catalog.clusters()[0].name
        last = int(name.split()[1])
        assert last >= reported  # everything the child saw committed is there (perhaps one more)
        renames = [h for h in catalog.history(1000) if h.kind == "rename"]
        assert len(renames) == last + 1  # the log and the data agree: no half-applied edit
        assert catalog.undo() == f"rename “name {last - 1}” to “name {last}”"


@_POSIX_ONLY
def test_writer_killed_inside_a_move_leaves_no_part_of_it(catalog_file):
    child = _child(catalog_file, "killed-inside-move")
    output = child.communicate(timeout=60)[0]
    assert child.returncode == -signal.SIGKILL and output.split() == ["renamed"]
    _intact(catalog_file)
    with Catalog(catalog_file) as catalog:
        assert [(c.name, c.size) for c in catalog.clusters()] == [("committed", 20), ("Cluster 2", 20)]
        assert all(p.source == "model" for p in catalog.photos())
        assert catalog.undo_description() == "rename “Cluster 1” to “committed”"


@_POSIX_ONLY
def test_writer_killed_inside_a_run_leaves_no_part_of_it(catalog_file):
    with Catalog(catalog_file) as catalog:
        before = _state(catalog)
    child = _child(catalog_file, "killed-inside-run")
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    _intact(catalog_file)
    with Catalog(catalog_file) as catalog:
        assert _state(catalog) == before
        assert [r.status for r in catalog.runs()] == ["finished", "running"]  # started, never finished
        assert catalog._query("SELECT COUNT(*) FROM clusters")[0][0] == 2


# -- issue 20: file and folder names that are not valid UTF-8 ------------------------------------------
def test_non_utf8_file_and_folder_names_round_trip(tmp_path):
    import os

    bad_file = Path(os.fsdecode(b"/photos/bad\xff.jpg"))
    bad_folder = Path(os.fsdecode(b"/photos/d\xe9j\xe0/a.jpg"))
    good = Path("/photos/été.jpg")
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = catalog.add_photos([PhotoRecord(bad_file), PhotoRecord(bad_folder), PhotoRecord(good)])
        assert catalog.add_photos([PhotoRecord(bad_file)]) == ids[:1]  # the same file, not a new photo
        run = catalog.start_run("kmeans", {"n_clusters": 2})
        catalog.record_result(run, ids, [0, 0, 1], [0.9, 0.8, 0.7])
        assert [p.path for p in catalog.photos()] == [bad_file, bad_folder, good]
        assert sorted(str(item.source) for item in catalog.export_items()) == sorted(map(str, [bad_file, bad_folder, good]))
    # Valid names stay text in the file (readable by any SQLite tool, as catalogs written before).
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as raw:
        kinds = dict(raw.execute("SELECT id, typeof(path) FROM photos").fetchall())
    assert kinds == {ids[0]: "blob", ids[1]: "blob", ids[2]: "text"}


@_POSIX_ONLY
def test_a_second_writer_waits_then_is_told_the_catalog_is_busy(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    Catalog(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys, time
            from photocluster.library.catalog import Catalog
            with Catalog(sys.argv[1]) as catalog, catalog.writing():
                print("writing", flush=True)
                time.sleep(60)
            """), str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "writing"
        with Catalog(path) as catalog:
            with pytest.raises(UsageError, match=rf"the catalog {path} is busy \(another photocluster is recording "
                                                 rf"a run into it, process {holder.pid}\)"):
                with catalog.writing(timeout=0.3):
                    pass
            catalog.add_photos([PhotoRecord(Path("/p/a.jpg"))])  # single calls go on (one transaction each)
    finally:
        holder.kill()
        holder.wait()
    with Catalog(path) as catalog, catalog.writing(timeout=5), catalog.writing():  # freed by the kernel; re-entrant
        assert [p.path for p in catalog.photos()] == [Path("/p/a.jpg")]
