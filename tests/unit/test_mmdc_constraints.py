"""MMDC learning from a person's corrections (issue 18): constrained photos keep their group's target through
the per-batch Hungarian re-assignment, confirmed clusters take different components, the refinement's
means count constrained photos with their group's label, every constrained photo trains — and without
constraints nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.data.dataset import ImageDataset
from photocluster.methods import get_method
from photocluster.methods.constraints import Constraints
from photocluster.methods.mmdc import MMDC, nearest_mean
from toy_images import quadrant_images  # tests/unit/toy_images.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _digits_300() -> ImageDataset:
    from photocluster.data.datasets import load_dataset

    return load_dataset("digits").subset(np.arange(300))


def _fidelity_params() -> dict:
    # smoke settings plus a training subset and a refinement stage, so every path constraints touch runs
    return dict(MMDC.smoke_params(), n_clusters=10, random_state=5, device="cpu", train_subset=200,
                refine_from_epoch=16, epochs=20, augment="digits")


#: labels of the 300 first digits with _fidelity_params(), recorded from the code before MMDC took
#: constraints (commit e8148aa), one thread
_LABELS_BEFORE = (
    "2981797879797179781179717778777779797721779181997248874798718888777775977978782698787989789889879789"
    "7771717987778778858179797177996831957891795897797978889778917775757191799888797758897799787981977779"
    "9779317577997839989859879989962879799779879997799999797779117278156959757178295172787161727221717791"
)


def test_without_constraints_the_labels_are_those_of_the_code_before():
    data = _digits_300()
    expected = np.array([int(c) for c in _LABELS_BEFORE])
    for constraints in (None, Constraints.none(len(data))):
        labels = get_method("mmdc", **_fidelity_params()).fit(data, constraints=constraints).labels_
        assert np.array_equal(labels, expected)


def test_every_constrained_row_is_in_the_training_subset():
    order = np.array([5, 3, 9, 0, 7, 1, 8, 2, 6, 4])
    assert MMDC._training_rows(order, 4, None).tolist() == [0, 3, 5, 9]  # as before: the first 4, sorted
    constraints = Constraints.build(10, statements=[("together", [7, 8], ())])
    assert MMDC._training_rows(order, 4, constraints).tolist() == [3, 5, 7, 8]  # rows 7, 8 + the first 2 free
    many = Constraints.build(10, statements=[("together", [0, 1, 2, 4, 6], ())])
    assert MMDC._training_rows(order, 4, many).tolist() == [0, 1, 2, 4, 6]  # more constrained rows than 4: all


class _FixedOutputs(torch.nn.Module):
    """A stand-in network whose outputs are a given table (row i % len(table) for image i of the batch)."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, x: torch.Tensor, head: str = "cluster") -> torch.Tensor:
        return torch.nn.functional.normalize(self.table[torch.arange(len(x)) % len(self.table)], dim=1)


def _with_constraints(method, constraints: Constraints):
    """Give a method the training-row constraints a fit on all rows of the data set would set up."""
    method._train_index = np.arange(constraints.n)
    method._use_constraints(constraints, constraints.n)
    return method


def _step_with_fixed_outputs(constraints: Constraints) -> list:
    """One clustering step on 4 images whose embeddings are: rows 0, 1 near e0, rows 2, 3 near e1; targets
    before: [e1, e1, e0, e1]. Returns the targets after the step's re-assignment."""
    rng = np.random.default_rng(0)
    data = ImageDataset("tiny", rng.integers(0, 255, size=(4, 16, 16, 1), dtype=np.uint8), None)
    method = get_method("mmdc", **dict(MMDC.smoke_params(), n_clusters=2, device="cpu"))
    method.prepare_for_benchmark(data)
    _with_constraints(method, constraints)
    method.model_ = _FixedOutputs(np.array([[1.0, 0.0], [1.0, 0.3], [0.0, 1.0], [0.1, 1.0]]))
    method.optimizer_ = torch.optim.SGD(method.model_.parameters(), lr=0.0)
    method.targets_ = torch.tensor([E1, E1, E0, E1])
    # row 1 also comes as an extra draw: it trains twice but enters the re-assignment once
    method.cluster_step(torch.arange(4), extra=torch.tensor([1]))
    return method.targets_.tolist()


E0, E1 = [1.0, 0.0], [0.0, 1.0]


def test_pinned_rows_keep_their_target_and_the_free_rows_are_matched_among_themselves():
    # row 0 is a locked cluster of one photo: pinned on its target e1
    assert _step_with_fixed_outputs(Constraints.build(4, fixed=[[0]])) == [E1, E0, E1, E1]
    # free rows 1-3 share the targets {e1, e0, e1}: row 1 (near e0) takes e0. Without the pin, rows 0 and 1
    # would compete for e0 and row 0 (exactly on e0) would win it:
    assert _step_with_fixed_outputs(Constraints.none(4)) == [E0, E1, E1, E1]


def test_a_row_apart_from_a_pinned_group_does_not_take_its_component():
    # as above, and row 3 (near e1) must stay apart from row 0, which holds component 1: it takes e0
    constraints = Constraints.build(4, fixed=[[0]], statements=[("apart", [3], [0])])
    assert _step_with_fixed_outputs(constraints) == [E1, E1, E1, E0]


def test_confirmed_clusters_take_different_labels_and_a_cannot_link_keeps_apart():
    # groups: A = rows 0, 1; B = rows 2, 3; row 4 alone, apart from A; row 5 free
    constraints = Constraints.build(6, statements=[("together", [0, 1], ()), ("together", [2, 3], ()),
                                                   ("apart", [4], [0, 1])])
    method = _with_constraints(get_method("mmdc", n_clusters=3), constraints)
    scores = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0],   # A: label 0
                       [0.8, 0.7, 0.0], [0.8, 0.7, 0.0],   # B also prefers 0, then 1
                       [0.9, 0.0, 0.5],                    # row 4 prefers 0, which A holds
                       [0.0, 0.0, 1.0]])
    labels = scores.argmax(axis=1)
    group_label = method._choose_group_labels(labels, scores)
    a, b, alone = (int(constraints.group[r]) for r in (0, 2, 4))
    assert (group_label[a], group_label[b], group_label[alone]) == (0, 1, 2)
    # the plain rule would have put the two confirmed clusters together on label 0
    plain = constraints.group_labels(labels, 3, scores)
    assert plain[a] == plain[b] == 0


def test_the_refinement_means_count_constrained_rows_with_their_group_label():
    # rows 0-2 at x = 0, rows 3-4 at x = 10; row 5 at x = 0 is must-linked with rows 3, 4; free row 6 at x = 4.6
    x = np.array([0, 0, 0, 10, 10, 0, 4.6])
    embeddings = np.stack([x, np.zeros_like(x)], axis=1)
    constraints = Constraints.build(7, statements=[("together", [3, 4, 5], ())])
    method = _with_constraints(get_method("mmdc", n_clusters=2), constraints)
    kmeans_labels = np.array([0, 0, 0, 1, 1, 0, 0])
    labels = method._constrained_kmeans(embeddings, kmeans_labels)
    # row 5 joins its group (label 1: two of its three rows); the mean of label 1 counts it:
    # (10 + 10 + 0) / 3 = 6.67, so row 6 (4.6) is nearer to it than to mean(0, 0, 0, 4.6) = 1.15 and moves;
    # then means 0 and (10 + 10 + 0 + 4.6) / 4 = 6.15 keep it there. Without row 5 in the mean (10) it stays on 0.
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # a row apart from the group (row 2, at x = 10 on the group's label 1) must leave label 1 for label 0;
    # means then: label 0 = (0, 0, 10 [, 4.6]), label 1 = (10, 10, 0 [, 4.6]): row 6 goes 1, then back to 0
    # (1.27 vs 1.55), then stays (0.95 vs 2.07)
    x = np.array([0, 0, 10, 10, 10, 0, 4.6])
    embeddings = np.stack([x, np.zeros_like(x)], axis=1)
    constraints = Constraints.build(7, statements=[("together", [3, 4, 5], ()), ("apart", [2], [3])])
    method = _with_constraints(get_method("mmdc", n_clusters=2), constraints)
    labels = method._constrained_kmeans(embeddings, np.array([0, 0, 1, 1, 1, 0, 0]))
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 0]


def _quadrants(n_per_class: int = 24, side: int = 16, seed: int = 0) -> ImageDataset:
    return quadrant_images(n_per_class, side, seed)


def test_the_network_learns_the_constraints_and_trains_on_every_constrained_row():
    data = _quadrants()
    y = data.labels
    # a person's (odd) decision: 4 photos of family 1 belong with 8 photos of family 0; 8 photos of family 2
    # must stay apart from them; families 0 and 1 otherwise form clusters of their own
    with_zero = np.concatenate([np.flatnonzero(y == 1)[:4], np.flatnonzero(y == 0)[:8]])
    apart = np.flatnonzero(y == 2)[:8]
    constraints = Constraints.build(len(data), statements=[("together", with_zero, ()), ("apart", apart, with_zero)])
    params = dict(MMDC.smoke_params(), n_clusters=4, random_state=0, device="cpu", train_subset=40)
    method = get_method("mmdc", **params).fit(data, constraints=constraints)
    assert set(constraints.constrained_rows()) <= set(method._train_index.tolist())
    # the network itself (embeddings_ are taken before the final enforcement) puts the group on one mean
    learnt, _ = nearest_mean(method.embeddings_, method.means_.numpy())
    assert len(set(learnt[with_zero].tolist())) == 1
    assert learnt[with_zero[0]] not in set(learnt[apart].tolist())
    assert constraints.check(method.labels_).all_kept
    # without the constraints the same run keeps family 1 apart from family 0
    free = get_method("mmdc", **params).fit(data)
    free_learnt, _ = nearest_mean(free.embeddings_, free.means_.numpy())
    assert len(set(free_learnt[with_zero].tolist())) == 2


def test_the_training_rows_constraints_are_the_data_sets_renumbered():
    constraints = Constraints.build(10, fixed=[[8, 9]], statements=[("together", [3, 6], ()), ("apart", [4], [3, 6])])
    method = get_method("mmdc", n_clusters=3)
    method._train_index = np.array([1, 3, 4, 6, 8, 9])
    method._use_constraints(constraints, 10)
    train = method._train_constraints
    assert train.group.tolist() == constraints.group[method._train_index].tolist()
    assert [g.tolist() for g in train.groups()] == [[1, 3], [2], [4, 5]]  # rows 3, 6 / 4 / 8, 9 in positions
    assert train.apart_pairs() == constraints.apart_pairs()
    assert method._pinned.tolist() == [False, True, False, True, True, True]  # row 4 (apart only) stays free
    reference = constraints.subset(method._train_index)  # the general (slower) way gives the same verdicts
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 3, size=6)
        assert train.check(labels) == reference.check(labels)


def test_extra_draws_give_every_component_an_equal_share_from_its_constrained_rows_or_else_its_free_rows():
    method = get_method("mmdc", n_clusters=3, random_state=0)
    method.generator_ = torch.Generator().manual_seed(0)
    method._pinned = None
    assert method._extra_draws(64) is None  # no constraints: no draw (and no random number used)
    e = torch.eye(3)
    # rows 0, 1 pinned on component 0; free rows 2, 3 on component 1, rows 4-7 on component 2
    method.targets_ = e[torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])]
    _with_constraints(method, Constraints.build(8, statements=[("together", [0, 1], ())]))
    draws = method._extra_draws(1200)  # ⌈0.25 · 1200⌉ = 300 draws
    assert len(draws) == 300
    component = method.targets_.argmax(dim=1)[draws]
    assert set(draws[component == 0].tolist()) == {0, 1}  # component 0: only the constrained rows
    assert set(draws[component == 1].tolist()) == {2, 3}  # the others: their free rows
    assert set(draws[component == 2].tolist()) == {4, 5, 6, 7}
    shares = torch.bincount(component, minlength=3).tolist()
    assert all(70 <= s <= 130 for s in shares), shares  # a third each (100 ± 30), not by row count


def test_a_run_with_constraints_resumes_to_the_same_labels(tmp_path):
    from photocluster.progress import CancelToken, Cancelled

    data = _quadrants()
    y = data.labels
    constraints = Constraints.build(len(data), statements=[
        ("together", np.r_[np.flatnonzero(y == 1)[:4], np.flatnonzero(y == 0)[:8]], ()),
        ("apart", np.flatnonzero(y == 2)[:8], np.flatnonzero(y == 0)[:8])])
    params = dict(n_clusters=4, epochs=4, batch_size=64, architecture="vgg", input_size=16, width=0.25,
                  rotation=True, refine_from_epoch=2, lr_decay_epoch=2, augment="digits", device="cpu",
                  checkpoint_dir=str(tmp_path / "run"), checkpoint_every=10_000)
    whole = get_method("mmdc", **{**params, "checkpoint_dir": str(tmp_path / "whole")}).fit(data, constraints=constraints)
    token = CancelToken()
    first = get_method("mmdc", **params)
    step = first.cluster_step

    def cancelling(*args, **kwargs):  # cancel in the middle of a clustering pass (pinned targets, extra draws)
        loss = step(*args, **kwargs)
        if first._global_step + 1 >= 5:
            token.cancel()
        return loss

    first.cluster_step = cancelling
    with pytest.raises(Cancelled):
        for _ in first.fit_steps(data, cancel=token, constraints=constraints):
            pass
    resumed = get_method("mmdc", **{**params, "resume": True}).fit(data, constraints=constraints)
    assert np.array_equal(resumed.embeddings_, whole.embeddings_)
    assert np.array_equal(resumed.labels_, whole.labels_)
