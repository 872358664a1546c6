"""Every kind of edit in the catalog says the expected thing about which photos belong together (hand-built
catalogs), by content hash, so it survives rescans and moved files; undo takes it back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from photocluster.library.catalog import Catalog, PhotoRecord
from photocluster.library.corrections import CORE_SIZE, Statement
from photocluster.pipeline import constraints_for


@pytest.fixture
def cat(tmp_path):
    """8 photos h0…h7; a run put photos 1-4 (h0-h3) in cluster A and 5-8 (h4-h7) in cluster B."""
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ids = catalog.add_photos(PhotoRecord(Path(f"/photos/{i}.jpg"), content_hash=f"h{i}") for i in range(8))
    run = catalog.start_run("kmeans", {"n_clusters": 2})
    catalog.record_result(run, ids, [0, 0, 0, 0, 1, 1, 1, 1], [0.5, 0.9, 0.7, 0.6, 0.8, 0.4, 0.3, 0.95])
    yield catalog
    catalog.close()


def _cluster_of(catalog: Catalog, photo_id: int) -> int:
    return catalog.photo(photo_id).cluster_id


def _said(catalog: Catalog) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [(s.kind, s.side_a, s.side_b) for s in catalog.corrections().statements]


def test_a_run_alone_says_nothing(cat):
    assert cat.corrections().is_empty


def test_a_move_is_together_with_the_target_and_apart_from_the_cluster_it_left(cat):
    cat.move_photos([1], _cluster_of(cat, 5))
    assert _said(cat) == [
        ("together", ("h0", "h4", "h5", "h6", "h7"), ()),
        ("apart", ("h0",), ("h1", "h2", "h3")),
    ]
    assert cat.corrections().edits == 1


def test_a_new_cluster_from_photos_keeps_them_together_and_apart_from_where_they_were(cat):
    cat.create_cluster("Mine", [1, 5])
    assert _said(cat) == [
        ("together", ("h0", "h4"), ()),
        ("apart", ("h0",), ("h1", "h2", "h3")),
        ("apart", ("h4",), ("h5", "h6", "h7")),
    ]


def test_a_merge_keeps_both_cores_together(cat):
    cat.merge([_cluster_of(cat, 1), _cluster_of(cat, 5)])
    assert _said(cat) == [("together", tuple(f"h{i}" for i in range(8)), ())]


def test_a_split_keeps_the_parts_apart(cat):
    cat.split(_cluster_of(cat, 1), [1, 2, 3, 4], [0, 0, 1, 1])
    assert _said(cat) == [("apart", ("h0", "h1"), ("h2", "h3"))]


def test_a_locked_cluster_is_read_from_the_current_clustering(cat):
    cat.set_locked(_cluster_of(cat, 5), True)
    corrections = cat.corrections()
    assert [lock.hashes for lock in corrections.locked] == [("h4", "h5", "h6", "h7")]
    assert corrections.statements == ()  # locking says nothing about other photos
    cat.set_locked(_cluster_of(cat, 5), False)
    assert cat.corrections().is_empty


def test_undo_takes_an_edit_back_and_redo_brings_it_again(cat):
    cat.move_photos([1], _cluster_of(cat, 5))
    cat.undo()
    assert cat.corrections().is_empty
    cat.redo()
    assert len(_said(cat)) == 2


def test_a_core_is_the_person_s_photos_and_the_surest_model_photos(tmp_path):
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        ids = catalog.add_photos(PhotoRecord(Path(f"/p/{i}.jpg"), content_hash=f"x{i:02d}") for i in range(30))
        run = catalog.start_run("kmeans", {})
        confidence = np.linspace(0.0, 1.0, 30)  # photo 30 (x29) is the surest
        catalog.record_result(run, ids, [0] * 25 + [1] * 5, confidence)
        big, small = _cluster_of(catalog, 1), _cluster_of(catalog, 30)
        catalog.move_photos([30], big)  # x29 placed by the person into the big cluster
        catalog.move_photos([26], big)  # then x25: its together-statement names x29 and the 10 surest of the rest
        newest = catalog.corrections().statements[0]
        assert newest.kind == "together"
        assert set(newest.side_a) == {"x25", "x29"} | {f"x{i:02d}" for i in range(15, 25)}
        assert CORE_SIZE == 10
        del small


def test_the_latest_word_wins_when_a_photo_is_moved_back(cat):
    a, b = _cluster_of(cat, 1), _cluster_of(cat, 5)
    cat.move_photos([1], b)
    cat.move_photos([1], a)
    photos = [SimpleNamespace(content_hash=f"h{i}") for i in range(8)]
    constraints = constraints_for(photos, cat.corrections())
    # photo 0 belongs with A's photos again, apart from B's core — the first move's statements are dropped
    assert constraints.group[0] == constraints.group[1] == constraints.group[2] == constraints.group[3]
    assert constraints.group[0] != constraints.group[4]
    assert constraints.dropped > 0
    assert constraints.check(np.array([0, 0, 0, 0, 1, 1, 1, 1])).all_kept


def test_constraints_follow_the_content_through_a_rescan_with_moved_and_new_files(cat):
    cat.move_photos([1], _cluster_of(cat, 5))
    # the rescan found the files in another order, one renamed, and two new photos
    order = ["h7", "new1", "h0", "h5", "h1", "h4", "new2", "h2", "h3", "h6"]
    photos = [SimpleNamespace(content_hash=h, path=Path(f"/elsewhere/{h}.jpg")) for h in order]
    constraints = constraints_for(photos, cat.corrections())
    row = {h: i for i, h in enumerate(order)}
    together = {row[h] for h in ("h0", "h4", "h5", "h6", "h7")}
    assert len({int(constraints.group[r]) for r in together}) == 1
    assert constraints.group[row["new1"]] == constraints.group[row["new2"]] == -1  # nobody said anything of them
    assert {frozenset(p) for p in constraints.cannot_link_pairs().tolist()} >= {
        frozenset((row["h0"], row[h])) for h in ("h1", "h2", "h3")}
    # h0's group (with B's core) is apart from each of A's core photos, and from nothing else
    assert {frozenset(p) for p in constraints.cannot_link_pairs().tolist()} == {
        frozenset((t, row[h])) for t in together for h in ("h1", "h2", "h3")}


def test_statements_are_kept_per_content_hash_not_per_file(cat):
    cat.move_photos([1], _cluster_of(cat, 5))
    # the same photo scanned at a new path is a new catalog row with the same content: the statement holds
    cat.add_photos([PhotoRecord(Path("/moved/0.jpg"), content_hash="h0")])
    assert _said(cat)[0] == ("together", ("h0", "h4", "h5", "h6", "h7"), ())
    assert isinstance(cat.corrections().statements[0], Statement)
