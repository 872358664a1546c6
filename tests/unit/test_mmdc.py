"""MMDC's pieces (Hungarian re-assignment, rotations, refinement alignment, GMM targets) and its run-time
contract (cancel within a second with a checkpoint, resume continues, determinism), plus a digits run
that must beat k-means."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
import torch

from photocluster.data.dataset import ImageDataset
from photocluster.data.transforms import BatchAugmenter, get_preset, rotate_quarter_turns
from photocluster.methods import get_method
from photocluster.methods.mmdc import (
    CHECKPOINT_NAME,
    align_labels,
    hungarian_reassign,
    nearest_mean,
    sample_gmm_targets,
)
from photocluster.progress import CancelToken, Cancelled
from toy_images import quadrant_images  # tests/unit/toy_images.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _quadrant_images(n_per_class: int = 48, side: int = 16, seed: int = 0) -> ImageDataset:
    return quadrant_images(n_per_class, side, seed)


def _tiny_params(**overrides):
    params = dict(n_clusters=4, epochs=3, batch_size=64, architecture="vgg", input_size=16, width=0.25,
                  rotation=True, refine_from_epoch=2, lr_decay_epoch=2, augment="digits", device="cpu")
    # every piece runs: rotation pass, clustering pass, refinement, lr decay
    params.update(overrides)
    return params


# -- Hungarian re-assignment ---------------------------------------------------------------------
def _batch_cost(embeddings: np.ndarray, targets: np.ndarray) -> float:
    return float(np.linalg.norm(embeddings - targets, axis=1).sum())


def test_hungarian_reassignment_never_increases_the_batch_cost():
    rng = np.random.default_rng(1)
    for trial in range(30):
        b, k = rng.integers(2, 40), rng.integers(2, 12)
        embeddings = rng.normal(size=(b, k))
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        targets = np.eye(k)[rng.integers(0, k, size=b)]
        permutation = hungarian_reassign(embeddings, targets)
        assert sorted(permutation.tolist()) == list(range(b)), "must be a permutation of the batch's targets"
        assert _batch_cost(embeddings, targets[permutation]) <= _batch_cost(embeddings, targets) + 1e-9


def test_hungarian_reassignment_equals_the_brute_force_optimum_on_a_tiny_batch():
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(5, 3))
    targets = rng.normal(size=(5, 3))
    best = min(_batch_cost(embeddings, targets[list(p)]) for p in itertools.permutations(range(5)))
    permutation = hungarian_reassign(embeddings, targets)
    assert _batch_cost(embeddings, targets[permutation]) == pytest.approx(best, abs=1e-9)


def test_hungarian_reassignment_on_a_hand_made_case():
    # image 0 sits on target B, image 1 on target A: the targets must swap
    embeddings = np.array([[0.0, 1.0], [1.0, 0.0]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert hungarian_reassign(embeddings, targets).tolist() == [1, 0]


# -- rotations -----------------------------------------------------------------------------------
def test_rotation_labels_and_images_match_hand_written_quarter_turns():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    rotated, labels = rotate_quarter_turns(image)
    assert labels.tolist() == [0, 1, 2, 3]
    expected = [  # counter-clockwise quarter turns of [[1, 2], [3, 4]]
        [[1, 2], [3, 4]],
        [[2, 4], [1, 3]],
        [[4, 3], [2, 1]],
        [[3, 1], [4, 2]],
    ]
    assert rotated[:, 0].tolist() == expected


def test_rotation_of_a_3x3_batch_matches_torch_rot90_and_labels_follow_each_image():
    images = torch.arange(18, dtype=torch.float32).view(2, 1, 3, 3)
    rotated, labels = rotate_quarter_turns(images)
    assert labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    for i in range(2):
        for k in range(4):
            assert torch.equal(rotated[4 * i + k], torch.rot90(images[i], k, dims=(1, 2)))
    # one hand-written case: a quarter turn of [[0,1,2],[3,4,5],[6,7,8]]
    assert rotated[1, 0].tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]


# -- refinement alignment --------------------------------------------------------------------------
def test_refinement_alignment_undoes_a_permutation_of_kmeans_labels():
    rng = np.random.default_rng(3)
    previous = rng.integers(0, 6, size=500)
    renaming = np.array([3, 5, 0, 1, 4, 2])
    kmeans_labels = renaming[previous]
    assert np.array_equal(align_labels(kmeans_labels, previous, 6), previous)


def test_refinement_alignment_keeps_identities_when_some_images_move():
    previous = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    # k-means calls the clusters 2, 0, 1 and moves the last image of cluster 0 into cluster 1
    kmeans_labels = np.array([2, 2, 0, 0, 0, 0, 1, 1, 1])
    assert align_labels(kmeans_labels, previous, 3).tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]


# -- GMM targets -----------------------------------------------------------------------------------
def test_sigma_zero_gives_exact_one_hot_targets_with_balanced_components():
    targets = sample_gmm_targets(5000, 10, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(targets.sum(1), torch.ones(5000))
    assert torch.equal((targets == 1).sum(1), torch.ones(5000, dtype=torch.long))
    counts = torch.bincount(targets.argmax(1), minlength=10).numpy()
    assert np.all(np.abs(counts / 5000 - 0.1) < 0.02)  # equal weights: ~10 % each (binomial sd 0.4 %)


def test_sampled_targets_with_sigma_have_the_right_mean():
    k, sigma, n = 5, 0.3, 40_000
    targets, components = sample_gmm_targets(n, k, sigma, torch.Generator().manual_seed(0), return_components=True)
    assert torch.allclose(targets.norm(dim=1), torch.ones(n), atol=1e-5)
    # Independent Monte Carlo of E[t] for component 0: u = e_0 + sigma z, t = u / |u|.
    rng = np.random.default_rng(1)
    u = np.eye(k)[0] + sigma * rng.normal(size=(200_000, k))
    expected = (u / np.linalg.norm(u, axis=1, keepdims=True)).mean(0)
    for c in range(k):
        mean = targets[components == c].mean(0).numpy()
        assert mean[c] == pytest.approx(expected[0], abs=0.01)
        assert np.all(np.abs(np.delete(mean, c)) < 0.01)  # symmetric noise: off-axis coordinates average 0


def test_nearest_mean_is_argmax_for_one_hot_means_and_distance_is_euclidean():
    embeddings = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    labels, distance = nearest_mean(embeddings, np.eye(3))
    assert labels.tolist() == [1, 2]
    assert distance == pytest.approx([np.sqrt(0.6**2 + 0.2**2), 0.0], abs=1e-6)


# -- augmentation ------------------------------------------------------------------------------------
def test_centre_view_of_the_cifar_preset_is_the_centre_crop_resized():
    # cifar preset: centre 20-px crop of a 32-px image, resized to 32 — check the crop's location with
    # an image whose only bright pixels are the centre crop's corners
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 6, 6] = image[:, :, 6, 25] = image[:, :, 25, 6] = image[:, :, 25, 25] = 1.0
    augmenter = BatchAugmenter(get_preset("cifar", input_size=20), torch.Generator().manual_seed(0))
    view = augmenter.centre_view(image)
    assert view.shape == (1, 3, 20, 20)
    bright = set(map(tuple, (view[0, 0] > 0.99).nonzero().tolist()))
    assert bright == {(0, 0), (0, 19), (19, 0), (19, 19)}


def test_training_views_are_random_but_seeded():
    images = torch.rand(8, 3, 32, 32)
    a = BatchAugmenter(get_preset("cifar"), torch.Generator().manual_seed(5)).train_view(images)
    b = BatchAugmenter(get_preset("cifar"), torch.Generator().manual_seed(5)).train_view(images)
    c = BatchAugmenter(get_preset("cifar"), torch.Generator().manual_seed(6)).train_view(images)
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


# -- run-time contract ---------------------------------------------------------------------------------
def test_fit_sets_the_fitted_attributes_and_is_deterministic():
    data = _quadrant_images()
    first = get_method("mmdc", **_tiny_params()).fit(data)
    second = get_method("mmdc", **_tiny_params()).fit(data)
    assert first.labels_.shape == (len(data),) and first.labels_.dtype == np.int64
    assert first.embeddings_.shape == (len(data), 4)
    assert np.allclose(np.linalg.norm(first.embeddings_, axis=1), 1.0, atol=1e-4)
    assert np.all((first.confidence_ > 0) & (first.confidence_ <= 1))
    assert np.array_equal(first.labels_, second.labels_)
    assert np.array_equal(first.embeddings_, second.embeddings_)
    assert np.array_equal(first.predict(data.images[:10]), first.labels_[:10])
    stages = {h["stage"] for h in first.history_}
    assert stages == {"rotation", "cluster", "refine"}


def test_cancel_takes_effect_within_a_second_and_leaves_a_checkpoint(tmp_path):
    data = _quadrant_images()
    method = get_method("mmdc", **_tiny_params(epochs=200, checkpoint_dir=str(tmp_path), checkpoint_every=10_000))
    token = CancelToken()
    cancelled_at = []

    def cancel_now():
        cancelled_at.append(time.monotonic())
        token.cancel()

    timer = threading.Timer(1.5, cancel_now)
    timer.start()
    try:
        with pytest.raises(Cancelled):
            for _ in method.fit_steps(data, cancel=token):
                pass
        raised_at = time.monotonic()
    finally:
        timer.cancel()
    assert cancelled_at, "training ended before the cancel"
    assert raised_at - cancelled_at[0] < 1.0
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["global_step"] > 0 and set(state) >= {"model", "optimizer", "targets", "epoch", "rng"}


def test_resume_continues_where_the_cancel_stopped_and_ends_like_an_uninterrupted_run(tmp_path):
    data = _quadrant_images()
    params = _tiny_params(epochs=4, checkpoint_dir=str(tmp_path), checkpoint_every=10_000)
    uninterrupted = get_method("mmdc", **{**params, "checkpoint_dir": str(tmp_path / "full")}).fit(data)

    token = CancelToken()
    first = get_method("mmdc", **params)
    # Cancel right after the 5th training step, whatever the timing of the (throttled) progress events:
    # waiting for an event of a given stage was flaky on a fast or a loaded machine.
    for name in ("cluster_step", "rotation_step"):
        original_step = getattr(first, name)

        def cancelling(*args, _original=original_step, **kwargs):
            loss = _original(*args, **kwargs)
            if first._global_step + 1 >= 5:  # the counter is advanced after the step returns
                token.cancel()
            return loss

        setattr(first, name, cancelling)
    with pytest.raises(Cancelled):
        for _ in first.fit_steps(data, cancel=token):
            pass
    steps_before = first._global_step
    total_steps = 4 * 2 * 3  # epochs × (rotation + cluster) × batches of 64 out of 192
    assert 0 < steps_before < total_steps

    resumed = get_method("mmdc", **{**params, "resume": True})
    executed = []
    for name in ("cluster_step", "rotation_step"):
        original = getattr(resumed, name)

        def counting(*args, _original=original, **kwargs):
            executed.append(1)
            return _original(*args, **kwargs)

        setattr(resumed, name, counting)
    events = list(resumed.fit_steps(data))
    resume_events = [e for e in events if e.stage == "resume"]
    assert len(resume_events) == 1 and resume_events[0].step == steps_before
    assert len(executed) == total_steps - steps_before  # continued, not restarted
    assert np.array_equal(resumed.labels_, uninterrupted.labels_)
    assert np.array_equal(resumed.embeddings_, uninterrupted.embeddings_)


def test_progress_events_carry_loss_epoch_and_eta():
    data = _quadrant_images()
    events = list(get_method("mmdc", **_tiny_params(epochs=2)).fit_steps(data))
    training = [e for e in events if e.stage in ("cluster", "rotation", "refine") and "loss" in e.metrics]
    assert training, "no training event"
    assert all("epoch" in e.metrics for e in training)
    assert events[-1].stage == "done"


def test_bad_settings_are_usage_errors():
    from photocluster.errors import UsageError

    data = _quadrant_images(n_per_class=4)
    with pytest.raises(UsageError):
        get_method("mmdc", **_tiny_params(n_clusters=1)).fit(data)
    with pytest.raises(UsageError):
        get_method("mmdc", **_tiny_params(resume=True)).fit(data)
    with pytest.raises(UsageError):
        get_method("mmdc", **_tiny_params(input_size=20)).fit(data)
    with pytest.raises(UsageError):
        get_method("mmdc", **_tiny_params(head_init="zeros")).fit(data)


def test_pytorch_head_init_learns_faster_than_the_authors_tiny_head():
    # The measured reason for head_init="pytorch" (see MMDC's docstring): same data, seed and 30 steps.
    # Measured: final-epoch loss 0.048 (pytorch) vs 0.176 (authors); head weight norm 3.2 vs 8.5 — the
    # tiny N(0, 0.01) head is blown up by the first steps' 1/‖z‖ gradients.
    data = _quadrant_images()
    losses, head_norms = {}, {}
    for init in ("pytorch", "authors"):
        method = get_method("mmdc", **_tiny_params(epochs=5, batch_size=32, lr=0.2, rotation=False,
                                                    refine_from_epoch=-1, lr_decay_epoch=-1, augment="shift",
                                                    head_init=init)).fit(data)
        losses[init] = method.history_[-1]["loss"]
        head_norms[init] = float(method.model_.cluster_head.weight.detach().norm())
    assert losses["pytorch"] < 0.5 * losses["authors"]
    assert head_norms["authors"] > 2 * head_norms["pytorch"]


def test_quick_protocol_on_digits_beats_kmeans():
    # The quick protocol on scikit-learn's 1,797 8x8 digits (~40 s on one thread of the shared machine).
    # Measured with seed 0: MMDC ACC 0.901, k-means on the raw pixels 0.79.
    from sklearn.cluster import KMeans

    from photocluster.data.datasets import load_dataset
    from photocluster.methods.mmdc import MMDC
    from photocluster.metrics import clustering_accuracy

    digits = load_dataset("digits")
    params = MMDC.protocol_params("quick", digits)
    mmdc = get_method("mmdc", n_clusters=10, random_state=0, device="cpu", **params).fit(digits)
    pixels = digits.images.reshape(len(digits), -1).astype(np.float64)
    kmeans = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(pixels)
    mmdc_acc = clustering_accuracy(digits.labels, mmdc.labels_)
    kmeans_acc = clustering_accuracy(digits.labels, kmeans)
    assert mmdc_acc > kmeans_acc, (mmdc_acc, kmeans_acc)


@pytest.mark.slow
def test_quick_protocol_on_mnist_reaches_the_issue_bar(mnist_dir, request):
    # Minutes on a 2-core CPU: all 70,000 images labelled; issue bar ACC ≥ 0.90 (measured, seed 0, one
    # thread, shared machine: ACC 0.962, arithmetic NMI 0.912, 149 s). pytest's configuration
    # does not deselect "slow" by default, so this test runs only when asked for with -m slow.
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow protocol run: use -m slow")
    from photocluster.data.datasets import load_dataset
    from photocluster.methods.mmdc import MMDC
    from photocluster.metrics import clustering_accuracy

    mnist = load_dataset("mnist", data_dir=mnist_dir, progress=False)
    params = MMDC.protocol_params("quick", mnist)
    method = get_method("mmdc", n_clusters=10, random_state=0, device="cpu", **params).fit(mnist)
    assert clustering_accuracy(mnist.labels, method.labels_) >= 0.90
