"""tlfwr learns from a person's corrections (issue 18): the boot keeps them, every round trusts them."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster import metrics
from photocluster.data.datasets import load_dataset
from photocluster.methods.constraints import Constraints
from photocluster.methods.tlfwr import TransferLearningClustering, constrained_boot, group_labels_apart

from simulated_person import corrections  # tests/unit/simulated_person.py


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def smoke(**overrides) -> TransferLearningClustering:
    params = dict(TransferLearningClustering.smoke_params(), n_clusters=10)
    params.update(overrides)
    return TransferLearningClustering(**params)


# -- the boot, by hand -----------------------------------------------------------------------------------
POINTS = np.array([[0.0], [1.0], [2.0], [4.0], [5.5], [10.0], [11.0]])
BOOT = np.array([0, 0, 0, 0, 0, 1, 1])  # k-means' own answer on POINTS (centres 2.5 and 10.5)


def test_kmeans_boot_continues_with_the_corrections_clamped_and_free_neighbours_follow():
    # The 4 must go with the 10 and the 11 (the boot has two of the three on label 1: the group's label).
    # Clamped: centres 2.125 and 8.33 → the free 5.5 is now nearer the second (2.83 vs 3.375) → centres 1 and
    # 7.625, stable.
    cons = Constraints.build(7, statements=[("together", [3, 5, 6], ())])
    assert constrained_boot(POINTS, BOOT, 2, "kmeans", cons).tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_gmm_boot_only_moves_the_constrained_images():
    cons = Constraints.build(7, statements=[("together", [3, 5, 6], ())])
    assert constrained_boot(POINTS, BOOT, 2, "gmm", cons).tolist() == [0, 0, 0, 1, 0, 1, 1]


def test_must_link_groups_get_labels_of_their_own_where_one_by_one_they_would_chain():
    # Boot labels of three groups: A mostly on 0, B mostly on 0 too (a merged boot cluster), C on 1;
    # B is apart from C. One by one (largest first): A → 0, B → 0 (not apart from A), C → 1 — A and B share
    # a cluster. Jointly (Hungarian on the counts, each group's scaled to [0, 1]): A → 0 (1.0), B → 2
    # (0.5), C → 1 (1.0): every group its own label.
    labels = np.array([0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 0, 0])
    cons = Constraints.build(12, statements=[("together", [0, 1, 2, 3], ()), ("together", [4, 5, 6], ()),
                                              ("together", [7, 8, 9], ()), ("apart", [4, 5, 6], [7, 8, 9])])
    one_by_one = cons.group_labels(labels, 3)
    assert one_by_one[cons.group[0]] == one_by_one[cons.group[4]] == 0
    chosen = group_labels_apart(cons, labels, 3)
    assert [chosen[cons.group[r]] for r in (0, 4, 7)] == [0, 2, 1]


def test_a_locked_boot_cluster_keeps_a_label_of_its_own():
    # two locked clusters inside k-means' first cluster: they must end on different labels
    cons = Constraints.build(7, fixed=[[0, 1], [2, 3]])
    labels = constrained_boot(POINTS, BOOT, 2, "kmeans", cons)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
    assert cons.check(labels).all_kept


# -- the method ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("boot", ["raw+kmeans", "raw+gmm"])
def test_without_constraints_the_labels_are_those_of_a_plain_run(digits, boot):
    plain = smoke(boot=boot).fit(digits)
    empty = smoke(boot=boot).fit(digits, constraints=Constraints.none(len(digits)))
    np.testing.assert_array_equal(plain.labels_, empty.labels_)
    np.testing.assert_array_equal(plain.reliable_round_, empty.reliable_round_)
    assert all("constraints_kept" not in entry for entry in plain.history_)


def test_constrained_images_are_reliable_from_round_zero_on_their_groups_label(digits, monkeypatch):
    rows = [np.arange(0, 15), np.arange(100, 108), np.array([200])]
    cons = Constraints.build(len(digits), fixed=[rows[0]], statements=[("together", rows[1], ()),
                                                                      ("apart", rows[2], rows[1])])
    trained: list[tuple[np.ndarray, np.ndarray]] = []
    original = TransferLearningClustering._train

    def record(self, net, images, indices, targets, *args, **kwargs):
        trained.append((np.asarray(indices).copy(), np.asarray(targets).copy()))
        yield from original(self, net, images, indices, targets, *args, **kwargs)

    monkeypatch.setattr(TransferLearningClustering, "_train", record)
    # Δ = 0.5, 0.75, 1: two fine-tuning rounds (the second chooses the groups' labels on the network's
    # probabilities), then every image is reliable
    method = smoke(delta_step=0.25, max_rounds=3).fit(digits, constraints=cons)
    constrained = cons.constrained_rows()
    assert (method.reliable_round_[constrained] == 0).all()
    assert len(trained) == 2
    for indices, targets in trained:
        label_of = dict(zip(indices.tolist(), targets.tolist()))
        assert set(constrained.tolist()) <= set(label_of)
        assert len({label_of[int(r)] for r in rows[0]}) == 1 and len({label_of[int(r)] for r in rows[1]}) == 1
        assert label_of[200] != label_of[100]
    assert [entry["constraints_kept"] for entry in method.history_ if entry.get("stage") == "fine-tuned"] == [1.0, 1.0]
    assert cons.check(method.labels_).all_kept


def test_corrections_propagate_beyond_the_moved_photos(digits):
    """The benchmark's recipe on digits (seed 0, 5 % moved): the re-run with the corrections beats the
    unconstrained re-run with the moved photos pinned. Measured 0.853 vs 0.794 (without learning from the
    constraints the two would be equal)."""
    first = smoke().fit(digits)
    cons = corrections(first.labels_, first.confidence_, digits.labels, 0.05)
    after = smoke().fit(digits, constraints=cons)
    pinned, _ = cons.enforce(first.labels_, 10)
    assert cons.check(after.labels_).all_kept
    assert metrics.clustering_accuracy(digits.labels, after.labels_) > metrics.clustering_accuracy(
        digits.labels, pinned) + 0.02


def test_constraints_of_another_data_set_are_refused(digits):
    with pytest.raises(ValueError, match="constraints cover 5 photos"):
        smoke().fit(digits, constraints=Constraints.build(5, statements=[("together", [0, 1], ())]))

