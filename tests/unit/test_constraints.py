"""Constraints in a data set's rows: groups by union–find, newest statement wins, checks and enforcement
(hand-computed cases)."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster.methods.constraints import Constraints


def test_must_link_is_transitive_and_locked_clusters_are_groups_apart():
    c = Constraints.build(8, fixed=[[0, 1], [2]], statements=[("together", [3, 4], ()), ("together", [4, 5], ())])
    assert c.n_fixed == 2
    assert c.fixed.tolist() == [0, 0, 1, -1, -1, -1, -1, -1]
    # groups: {0,1} (locked 0), {2} (locked 1), {3,4,5}; rows 6, 7 are free
    assert c.group.tolist() == [0, 0, 1, 2, 2, 2, -1, -1]
    assert c.apart_pairs() == {(0, 1)}  # two locked clusters never share a label
    assert sorted(map(tuple, c.must_link_pairs().tolist())) == [(0, 1), (3, 4), (3, 5), (4, 5)]
    assert c.cannot_link_pairs().tolist() == [[0, 2], [1, 2]]


def test_the_newest_statement_wins_over_an_older_contradicting_one():
    # newest first: "3 apart from 4" (the photo was moved out again), then the older "3 with 4"
    c = Constraints.build(5, statements=[("apart", [3], [4]), ("together", [3, 4], ())])
    assert c.group[3] != c.group[4]
    assert c.dropped == 1
    assert c.check(np.array([0, 0, 0, 1, 1])).cannot_kept == 0
    # the other way round: the newer "together" drops the older "apart"
    c = Constraints.build(5, statements=[("together", [3, 4], ()), ("apart", [3], [4])])
    assert c.group[3] == c.group[4] >= 0
    assert c.apart == ()
    assert c.dropped == 1


def test_a_together_statement_never_joins_two_locked_clusters():
    c = Constraints.build(4, fixed=[[0], [1]], statements=[("together", [0, 1, 2], ())])
    assert c.group[0] != c.group[1]
    assert c.group[2] == c.group[0]  # 2 joins the first one, the join with the second locked cluster is dropped
    assert c.dropped == 1


def test_apart_holds_between_whole_groups():
    # 0~1 together, 2~3 together, 1 apart from 2 → every row of {0,1} apart from every row of {2,3}
    c = Constraints.build(5, statements=[("apart", [1], [2]), ("together", [0, 1], ()), ("together", [2, 3], ())])
    assert sorted(map(tuple, c.cannot_link_pairs().tolist())) == [(0, 2), (0, 3), (1, 2), (1, 3)]


def test_check_counts_what_a_labelling_keeps():
    c = Constraints.build(6, fixed=[[0, 1]], statements=[("together", [2, 3], ()), ("apart", [2], [4])])
    result = c.check(np.array([0, 1, 2, 2, 2, 0]))
    # locked {0,1} split over two labels; {2,3} together; {2,3} shares label 2 with {4}
    assert (result.fixed_total, result.fixed_kept) == (1, 0)
    assert (result.must_total, result.must_kept) == (2, 1)  # {0,1} and {2,3}
    assert (result.cannot_total, result.cannot_kept) == (1, 0)
    assert not result.all_kept


def test_enforce_puts_groups_on_their_best_free_label_and_keeps_free_rows():
    c = Constraints.build(7, fixed=[[0, 1]], statements=[("together", [2, 3], ()), ("apart", [2], [4])])
    labels = np.array([1, 1, 0, 1, 0, 2, 2])
    scores = np.zeros((7, 3))
    scores[np.arange(7), labels] = 1.0
    scores[4] = [0.6, 0.0, 0.4]  # row 4 prefers 0, then 2
    new, confidence = c.enforce(labels, 3, scores, confidence=np.full(7, 0.5))
    assert new[0] == new[1] == 1  # the locked cluster's majority
    assert new[2] == new[3]
    assert new[4] != new[2]
    assert new[5:].tolist() == [2, 2]  # free rows untouched
    assert c.check(new).all_kept
    assert confidence[:5].tolist() == [1.0] * 5 and confidence[5:].tolist() == [0.5, 0.5]


def test_locked_clusters_take_distinct_labels_by_hungarian_assignment():
    # both locked clusters sit mostly on label 0; the larger overlap wins it, the other gets its next best
    c = Constraints.build(6, fixed=[[0, 1, 2], [3, 4]])
    new, _ = c.enforce(np.array([0, 0, 0, 0, 1, 1]), 2)
    assert new.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="locked"):
        Constraints.build(3, fixed=[[0], [1], [2]]).enforce(np.zeros(3, dtype=int), 2)


def test_no_constraints_change_nothing():
    c = Constraints.build(4)
    assert c.is_empty
    labels = np.array([3, 1, 2, 0])
    assert c.enforce(labels, 4)[0].tolist() == labels.tolist()
    assert c.must_link_pairs().shape == (0, 2)


def test_subset_renumbers_rows_and_keeps_the_constraints_among_them():
    c = Constraints.build(6, fixed=[[0, 5]], statements=[("together", [1, 2], ()), ("apart", [2], [3])])
    sub = c.subset(np.array([5, 2, 3, 1]))
    assert sub.n == 4
    assert sub.fixed.tolist() == [0, -1, -1, -1]  # row 5 → 0; its partner 0 is not in the subset
    assert sub.group[1] == sub.group[3] >= 0  # 2 and 1
    assert sub.cannot_link_pairs().tolist() in ([[3, 2], [1, 2]], [[1, 2], [3, 2]]) or \
        sorted(map(tuple, sub.cannot_link_pairs().tolist())) == [(1, 2), (2, 3)]


def test_pair_sampling_is_bounded_and_draws_real_pairs():
    c = Constraints.build(100, statements=[("together", list(range(60)), ()), ("apart", [60], list(range(61, 100)))])
    pairs = c.must_link_pairs(max_pairs=50, rng=np.random.default_rng(0))
    assert 0 < len(pairs) <= 50
    assert np.all(pairs < 60) and np.all(pairs[:, 0] != pairs[:, 1])
    cannot = c.cannot_link_pairs(max_pairs=10, rng=np.random.default_rng(0))
    assert 0 < len(cannot) <= 10
    assert all(60 in pair for pair in cannot.tolist())


def test_rows_outside_the_data_set_are_refused():
    with pytest.raises(ValueError, match="0 … 2"):
        Constraints.build(3, statements=[("together", [1, 3], ())])
