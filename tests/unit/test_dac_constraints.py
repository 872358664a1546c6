"""DAC learns from a person's corrections (issue 18): constrained pairs join every selection with the
targets the person gave, the rows they speak about are trained on in every pass, and without constraints
nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.data.dataset import ImageDataset
from photocluster.methods.base import get_method
from photocluster.methods.constraints import Constraints
from photocluster.methods.dac import _ConstraintPlan, select_pairs
from toy_images import bars_dataset  # tests/unit/toy_images.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _bars_dataset(n_per_class: int = 40, seed: int = 0) -> ImageDataset:
    return bars_dataset(n_per_class, seed)


# two selection batches of 30 out of 60 images a pass, from 120: a constrained row is left out of a pass
# unless DAC puts it there, and a group is split between batches unless DAC gathers it
_SMALL = dict(n_clusters=3, selection_batch=30, minibatch=10, passes_per_batch=1, n_images_per_pass=60,
              bn_recalibration_images=60, inference_batch=60, max_passes=2, lambda_step=0.15, device="cpu")


def test_impose_sets_must_and_cannot_pairs_whatever_the_thresholds():
    # rows 0..5 of a 10-row set: group A = {1, 3}, group B = {4}, A apart from B; row 0, 2, 5 free
    constraints = Constraints.build(10, statements=[("together", [1, 3], ()), ("apart", [3], [4])])
    plan = _ConstraintPlan(constraints, 1.0)
    chunk = np.array([0, 1, 2, 3, 4, 5])
    similarity = torch.full((6, 6), 0.7)  # between the thresholds: nothing selected by them
    targets, mask = select_pairs(similarity, 0.9, 0.5)
    assert not mask.any()
    targets, mask, forced = plan.impose(chunk, targets, mask)
    expected_mask = np.zeros((6, 6), dtype=bool)
    expected_targets = np.zeros((6, 6))
    for i, j in [(1, 3), (3, 1)]:  # must-link: similar
        expected_mask[i, j], expected_targets[i, j] = True, 1.0
    for i, j in [(1, 4), (4, 1), (3, 4), (4, 3)]:  # cannot-link (the whole group A against B): dissimilar
        expected_mask[i, j] = True
    assert np.array_equal(mask.numpy(), expected_mask)
    assert np.array_equal(forced.numpy(), expected_mask)  # here every selected pair is a constrained one
    assert np.array_equal(targets.numpy(), expected_targets)


def test_impose_overrides_a_threshold_that_disagrees():
    constraints = Constraints.build(4, statements=[("together", [0, 1], ()), ("apart", [0], [2])])
    plan = _ConstraintPlan(constraints, 1.0)
    similarity = torch.tensor([[1.0, 0.1, 0.99, 0.99], [0.1, 1.0, 0.2, 0.2], [0.99, 0.2, 1.0, 0.2],
                               [0.99, 0.2, 0.2, 1.0]])
    targets, mask, forced = plan.impose(np.arange(4), *select_pairs(similarity, 0.9, 0.5))
    assert not forced[0, 3] and forced[0, 1] and forced[0, 2]
    assert targets[0, 1] == 1 and mask[0, 1]  # the network thought them apart: the person said together
    assert targets[0, 2] == 0 and mask[0, 2] and targets[1, 2] == 0  # it thought 0 and 2 alike: apart
    assert targets[0, 3] == 1 and mask[0, 3]  # an unconstrained pair keeps the threshold's choice
    assert not mask.diagonal().any()


def test_every_constrained_row_is_trained_on_and_each_group_meets_in_one_batch():
    dataset = _bars_dataset()
    groups = [[3, 50, 77, 101], [10, 11, 90]]
    constraints = Constraints.build(120, statements=[("together", groups[0], ()), ("together", groups[1], ()),
                                                     ("apart", [3], [10])])
    seen = []
    model = get_method("dac", **_SMALL)
    model.pair_observer = seen.append
    model.fit(dataset, constraints=constraints)
    assert len(seen) == 4  # 2 passes of 2 selection batches
    for pass_index in (0, 1):
        batches = [s for s in seen if s.pass_index == pass_index]
        assert sum(len(s.indices) for s in batches) == 60  # the pass keeps its size
        rows = np.concatenate([s.indices for s in batches])
        assert len(np.unique(rows)) == 60
        # the two groups are apart, so they form one unit: all seven rows in one selection batch
        holder = [s for s in batches if 3 in s.indices]
        assert len(holder) == 1 and set(groups[0] + groups[1]) <= set(holder[0].indices.tolist())
        selection = holder[0]
        where = {int(r): i for i, r in enumerate(selection.indices)}
        for group in groups:
            for a in group:
                for b in group:
                    if a != b:
                        assert selection.mask[where[a], where[b]] and selection.targets[where[a], where[b]] == 1
        for a in groups[0]:
            for b in groups[1]:
                assert selection.mask[where[a], where[b]] and selection.targets[where[a], where[b]] == 0
    check = constraints.check(model.labels_)
    assert check.all_kept


def test_without_constraints_the_run_is_unchanged():
    dataset = _bars_dataset()
    plain = get_method("dac", random_state=2, **_SMALL).fit(dataset)
    empty = get_method("dac", random_state=2, **_SMALL).fit(dataset, constraints=Constraints.none(120))
    assert np.array_equal(plain.labels_, empty.labels_)
    assert np.array_equal(plain.embeddings_, empty.embeddings_)
    constrained = get_method("dac", random_state=2, **_SMALL).fit(
        dataset, constraints=Constraints.build(120, statements=[("together", [0, 1, 2], ())]))
    assert not np.array_equal(plain.embeddings_, constrained.embeddings_)  # and the constraints do reach training


def test_minibatch_order_deals_groups_out_in_blocks_and_is_a_permutation():
    # group A = 9 rows, group B = 3 rows, 40 rows in mini-batches of 10: A in blocks of 4, 4, 1, B in one of 3;
    # dealt to the mini-batch with the fewest constrained rows, blocks of A and B in turn
    a_rows, b_rows = [0, 3, 5, 8, 13, 21, 22, 30, 39], [2, 7, 33]
    constraints = Constraints.build(40, statements=[("together", a_rows, ()), ("together", b_rows, ())])
    plan = _ConstraintPlan(constraints, 1.0)
    order = plan.minibatch_order(np.arange(40), np.random.default_rng(0), sizes=[10, 10, 10, 10])
    assert sorted(order.tolist()) == list(range(40))
    batches = [set(order[i : i + 10].tolist()) for i in range(0, 40, 10)]
    per_batch_a = sorted(len(b & set(a_rows)) for b in batches)
    per_batch_b = sorted(len(b & set(b_rows)) for b in batches)
    assert per_batch_a == [0, 1, 4, 4] and per_batch_b == [0, 0, 0, 3]
    assert all(len(b & set(a_rows + b_rows)) <= 5 for b in batches)  # at most half a mini-batch


def test_constrained_pairs_weigh_as_much_as_the_selected_ones_together():
    plan = _ConstraintPlan(Constraints.build(4, statements=[("together", [0, 1], ())]), 1.0)
    mask = torch.ones(4, 4, dtype=torch.bool).fill_diagonal_(False)  # 12 selected pairs
    forced = torch.zeros(4, 4, dtype=torch.bool)
    forced[0, 1] = forced[1, 0] = True  # 2 of them the person's: 10 others
    weights = plan.weigh(mask, forced)
    assert weights[0, 1] == pytest.approx(5.0) and weights[2, 3] == 1.0 and weights[0, 0] == 0.0
    assert float(weights[forced].sum()) == pytest.approx(float(weights[mask & ~forced].sum()))
    # with weight 0 (or few selected pairs) a constrained pair counts as one selected pair
    assert _ConstraintPlan(Constraints.none(4), 0.0).weigh(mask, forced)[0, 1] == 1.0


def test_constraints_of_another_size_are_refused():
    with pytest.raises(ValueError, match="constraints cover"):
        get_method("dac", **_SMALL).fit(_bars_dataset(), constraints=Constraints.build(10, statements=[("together", [0, 1], ())]))
