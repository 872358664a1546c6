"""Scoring DAC's selected pairs against labels: hand-computed counts, the per-pass table, the hook in DAC
and the record the benchmark runner writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.benchmarks.runner import run_benchmark
from photocluster.benchmarks.selection_quality import SelectionQuality, pair_counts
from photocluster.data.dataset import ImageDataset
from photocluster.methods.base import get_method
from photocluster.methods.dac import PairSelection, dac_thresholds, select_pairs


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four images, classes 0 0 1 1. Similar: (0,1) right, (0,2) wrong; dissimilar: (1,3) right, (2,3)
    wrong; both orders of each pair; everything else left out."""
    labels = torch.tensor([0, 0, 1, 1])
    targets = torch.zeros(4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for i, j in ((0, 1), (0, 2)):
        targets[i, j] = targets[j, i] = 1
        mask[i, j] = mask[j, i] = True
    for i, j in ((1, 3), (2, 3)):
        mask[i, j] = mask[j, i] = True
    return labels, targets, mask


def test_pair_counts_match_a_hand_computed_case():
    labels, targets, mask = _hand_case()
    assert pair_counts(labels, targets, mask) == {
        "similar": 4,
        "similar_right": 2,
        "dissimilar": 4,
        "dissimilar_right": 2,
        "pairs": 12,
        "same_class_pairs": 4,  # (0,1), (2,3), both orders
    }


def test_selection_quality_sums_selection_batches_within_a_pass():
    labels, targets, mask = _hand_case()
    quality = SelectionQuality(np.array([0, 0, 1, 1, 1, 1, 0, 0]))
    # pass 0, batch 1: images 0-3 (classes 0 0 1 1) with the hand case; argmax labels 5 5 5 2 (3 of 4 right)
    features = torch.eye(6)[[5, 5, 5, 2]]
    quality(PairSelection(0, 0.95, 0.455, np.arange(4), features, targets, mask))
    # pass 0, batch 2: images 4-7 are classes 1 1 0 0, so the same r and v give the mirror image: all 4
    # similar pairs of (4,5) and (4,6) — (4,5) right, (4,6) wrong — and so on: the same counts again
    quality(PairSelection(0, 0.95, 0.455, np.arange(4, 8), torch.eye(6)[[2, 2, 5, 5]], targets, mask))
    # pass 1: every pair of images 0-3 similar
    everything = ~torch.eye(4, dtype=torch.bool)
    quality(PairSelection(1, 0.941, 0.4559, np.arange(4), torch.eye(6)[[0, 0, 1, 1]], everything.float(), everything))
    first, second = quality.per_pass()
    assert first["pass"] == 1 and first["upper"] == 0.95 and first["lower"] == 0.455
    assert first["similar_pairs"] == 8 and first["similar_precision"] == pytest.approx(0.5)
    assert first["dissimilar_pairs"] == 8 and first["dissimilar_precision"] == pytest.approx(0.5)
    assert first["same_class_fraction"] == pytest.approx(8 / 24)
    # argmax over the pass: class-0 images 0, 1, 6, 7 all → 5; class-1 images 2 → 5, 3, 4, 5 → 2;
    # the best map (5 → 0, 2 → 1) gets 7 of 8 right
    assert first["selection_acc"] == pytest.approx(7 / 8)
    assert second["pass"] == 2 and second["similar_pairs"] == 12
    assert second["similar_precision"] == pytest.approx(4 / 12)
    assert second["dissimilar_pairs"] == 0 and second["dissimilar_precision"] is None
    assert second["selection_acc"] == pytest.approx(1.0)


def _two_class_images(n_per_class: int = 30) -> ImageDataset:
    rng = np.random.default_rng(0)
    templates = np.zeros((2, 8, 8))
    templates[0, 3:5, :] = 1
    templates[1, :, 3:5] = 1
    labels = np.repeat(np.arange(2), n_per_class)
    images = templates[labels] * 200 + rng.uniform(0, 55, size=(len(labels), 8, 8))
    return ImageDataset("bars", images.astype(np.uint8), labels)


_FAST = dict(n_clusters=2, selection_batch=20, minibatch=10, passes_per_batch=1, lambda_step=0.15, max_passes=2,
             bn_recalibration_images=60, inference_batch=60, device="cpu")


def test_dac_hands_every_selection_batch_to_the_observer():
    dataset = _two_class_images()
    method = get_method("dac", **_FAST)
    seen: list[PairSelection] = []
    method.pair_observer = seen.append
    method.fit(dataset)
    # 2 passes of 60 images in selection batches of 20
    assert [s.pass_index for s in seen] == [0, 0, 0, 1, 1, 1]
    for selection in seen[:3]:
        assert (selection.upper, selection.lower) == pytest.approx(dac_thresholds(0.0))
    assert (seen[3].upper, seen[3].lower) == pytest.approx(dac_thresholds(0.15))
    for pass_index in (0, 1):
        images = np.concatenate([s.indices for s in seen if s.pass_index == pass_index])
        assert sorted(images.tolist()) == list(range(60))  # each pass: every image once
    for selection in seen:
        targets, mask = select_pairs(selection.features @ selection.features.T, selection.upper, selection.lower)
        assert torch.equal(selection.targets, targets) and torch.equal(selection.mask, mask)
        assert selection.features.shape == (20, 2)


def test_benchmark_record_carries_the_selection_table_for_dac_only():
    dataset = _two_class_images()
    dac = run_benchmark("bars", "dac", dataset=dataset, overrides=_FAST, progress=False)
    table = dac["runs"][0]["selection"]
    assert [row["pass"] for row in table] == [1, 2]
    for row in table:
        assert row["similar_pairs"] + row["dissimilar_pairs"] <= 3 * 20 * 19
        if row["similar_pairs"]:
            assert 0.0 <= row["similar_precision"] <= 1.0
        # 3 batches of 20 images drawn from 30 + 30: a same-class fraction a little under one half
        assert 0.4 < row["same_class_fraction"] < 0.55
    kmeans = run_benchmark("bars", "kmeans", dataset=dataset, n_clusters=2, progress=False)
    assert "selection" not in kmeans["runs"][0]


def test_selection_tables_print_one_line_per_pass():
    from photocluster.benchmarks.selection_quality import format_selection_tables

    row = {"pass": 1, "upper": 0.95, "lower": 0.455, "similar_pairs": 108022, "similar_precision": 0.2059,
           "dissimilar_pairs": 1446752, "dissimilar_precision": 0.9263, "same_class_fraction": 0.0995,
           "selection_acc": 0.2927}
    empty = dict(row, **{"pass": 2, "dissimilar_pairs": 0, "dissimilar_precision": None})
    text = format_selection_tables({"method": "dac", "runs": [{"seed": 3, "selection": [row, empty]}, {"seed": 4}]})
    lines = text.splitlines()
    assert lines[0].startswith("dac seed 3:") and "probability 0.100" in lines[0]
    assert lines[2].split() == ["1", "0.950", "0.455", "108,022", "0.206", "1,446,752", "0.926", "0.293"]
    assert lines[3].split()[5:7] == ["0", "—"]
    assert len(lines) == 4  # seed 4 has no table
    assert format_selection_tables({"method": "kmeans", "runs": [{"seed": 0}]}) == ""
