"""CCNN: the algorithm's pieces against hand computations, drift compensation, ablations, cancel/resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.methods import ccnn
from photocluster.methods.base import get_method
from photocluster.models.ccnn_net import build_ccnn_net
from photocluster.progress import CancelToken, Cancelled


class _ScriptedRng:
    """An RNG whose draws the test chooses, so k-means++ picks can be computed by hand."""

    def __init__(self, first: int, uniforms: list[float]) -> None:
        self.first = first
        self.uniforms = list(uniforms)

    def integers(self, n: int) -> int:
        return self.first

    def random(self) -> float:
        return self.uniforms.pop(0)


def _squares(per_class: int = 40, side: int = 16, seed: int = 0) -> ImageDataset:
    """Three well-separated classes: a bright 6×6 square top-left, top-right or bottom-centre, plus noise."""
    rng = np.random.default_rng(seed)
    corners = [(1, 1), (1, 9), (9, 5)]
    images, labels = [], []
    for label, (row, col) in enumerate(corners):
        for _ in range(per_class):
            image = rng.integers(0, 40, size=(side, side, 1)).astype(np.uint8)
            image[row : row + 6, col : col + 6] = 230
            images.append(image)
            labels.append(label)
    order = rng.permutation(len(images))
    return ImageDataset("squares", np.stack(images)[order], np.asarray(labels)[order])


def _small_params(**extra) -> dict:
    params = dict(n_clusters=3, network="digits", weights="none", adapt_channels="16", epochs=2, n_m=10, k_m=2,
                  seed_pool=60, batch_size=64, device="cpu", random_state=0, lr=0.001)
    params.update(extra)
    return params


# -- k-means++ ------------------------------------------------------------------------------------------
def test_kmeans_plusplus_hand_computed_draws():
    points = np.array([[0.0], [1.0], [3.0], [10.0]])
    # first seed: index 0. D² = [0, 1, 9, 100], total 110, cumulative [0, 1, 10, 110];
    # u = 0.05 → 5.5 falls in (1, 10] → index 2 (the point 3).
    # then D² to {0, 3} = [0, 1, 0, 49], cumulative [0, 1, 1, 50]; u = 0.01 → 0.5 → index 1.
    seeds = ccnn.kmeans_plusplus_seeds(points, 3, _ScriptedRng(0, [0.05, 0.01]))
    assert seeds.tolist() == [0, 2, 1]


def test_kmeans_plusplus_spreads_seeds_over_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=float)
    blob_of_point = np.repeat(np.arange(4), 50)
    points = centres[blob_of_point] + rng.normal(0, 1, size=(200, 2))
    for seed in range(5):
        seeds = ccnn.kmeans_plusplus_seeds(points, 4, np.random.default_rng(seed))
        assert sorted(blob_of_point[seeds].tolist()) == [0, 1, 2, 3]


# -- centroid update, selection, loss -------------------------------------------------------------------
def test_centroid_update_with_gamma_one_over_count_matches_hand_computation():
    centroids = np.array([[0.0, 0.0], [5.0, 5.0]])
    counts = np.array([1, 3])
    features = np.array([[2.0, 0.0], [4.0, 2.0]])
    ccnn.update_centroids(centroids, counts, features, np.array([0, 0]))
    # sequential: count 2, γ = 1/2 → (1, 0); count 3, γ = 1/3 → 2/3·(1, 0) + 1/3·(4, 2) = (2, 2/3)
    np.testing.assert_allclose(centroids[0], [2.0, 2.0 / 3.0])
    np.testing.assert_allclose(centroids[1], [5.0, 5.0])
    assert counts.tolist() == [3, 3]


def test_top_k_m_picks_the_closest():
    distances = np.array([5.0, 1.0, 3.0, 0.5, 4.0])
    assert ccnn.top_closest(distances, 2).tolist() == [3, 1]
    assert sorted(ccnn.top_closest(distances, 3).tolist()) == [1, 2, 3]


def test_balanced_selection_goes_round_robin_over_clusters():
    distances = np.array([0.1, 0.2, 0.3, 5.0, 6.0, 0.05])
    assignments = np.array([0, 0, 0, 1, 1, 0])
    # ranks in cluster 0: #5 (0.05), #0, #1, #2; in cluster 1: #3, #4 → rank 0 of each first (by distance):
    # #5, #3, then rank 1: #0 (0.1) before #4 (6.0)
    assert ccnn.balanced_closest(distances, assignments, 3).tolist() == [5, 3, 0]
    assert ccnn.top_closest(distances, 3).tolist() == [5, 0, 1]  # the paper's rule takes cluster 0 only


def test_sse_loss_hand_value():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # ½(0.3² + 0.2² + 0.1²) = 0.07 and ½(0.1² + 0.1² + 0.2²) = 0.03 → mean 0.05
    assert ccnn.sse_loss(probabilities, torch.tensor([0, 2])).item() == pytest.approx(0.05)


# -- feature drift compensation -------------------------------------------------------------------------
def test_backtracked_features_equal_features_of_a_net_built_with_backtracked_weights():
    torch.manual_seed(0)
    net = build_ccnn_net(4, network="digits", weights="none", in_channels=1, adapt_channels=(8,)).eval()
    inputs = torch.randn(5, 1, 16, 16)
    delta = {name: torch.randn_like(p) * 0.1 for name, p in net.named_parameters() if not name.startswith("softmax")}
    eta = 0.7
    original = {name: p.detach().clone() for name, p in net.named_parameters()}

    by_hand = copy.deepcopy(net)
    with torch.no_grad():
        for name, p in by_hand.named_parameters():
            if name in delta:
                p.copy_(original[name] + eta * delta[name])
        expected = by_hand.features(inputs)

    got = ccnn.backtracked_features(net, inputs, delta, eta)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, net.features(inputs).detach())  # the back-tracking changed something
    for name, p in net.named_parameters():  # and the live net is restored bit for bit
        assert torch.equal(p, original[name])


def test_finetune_step_records_delta_so_eta_one_recovers_the_previous_features():
    data = _squares(per_class=10)
    method = get_method("ccnn", **_small_params())
    method._validate(data)
    method._build(data, "none")
    trained = method._trained_parameters()
    optimizer = torch.optim.SGD([p for _, p in trained], lr=0.5, momentum=0.9)
    names = [name for name, _ in trained if not name.startswith("softmax")]
    inputs = method._to_input(data.images[:8])
    method.net_.eval()
    with torch.no_grad():
        before = method.net_.features(inputs).clone()
    params_before = {name: p.detach().clone() for name, p in method.net_.named_parameters()}
    delta, _ = method._finetune(data.images, list(range(10)), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], optimizer, names)
    for name in names:  # ΔW_{t−1} = W_{t−1} − W_t
        torch.testing.assert_close(delta[name], params_before[name] - dict(method.net_.named_parameters())[name])
    with torch.no_grad():
        after = method.net_.features(inputs)
    assert not torch.allclose(after, before)  # the weights really moved
    torch.testing.assert_close(ccnn.backtracked_features(method.net_, inputs, delta, 1.0), before, atol=1e-5, rtol=1e-5)


# -- the method end to end ------------------------------------------------------------------------------
def test_fit_separates_well_separated_images_and_sets_the_contract_attributes():
    data = _squares()
    method = get_method("ccnn", **_small_params())
    labels = method.fit_predict(data)
    assert labels.shape == (len(data),) and labels.dtype == np.int64
    assert adjusted_rand_score(data.labels, labels) > 0.9
    assert method.embeddings_.shape == (len(data), 3) and method.embeddings_.dtype == np.float32
    assert method.confidence_.shape == (len(data),)
    assert np.all((method.confidence_ >= 0) & (method.confidence_ <= 1))
    assert [entry["epoch"] for entry in method.history_] == [1.0, 2.0]
    assert all(entry["finetune_steps"] > 0 for entry in method.history_)
    np.testing.assert_array_equal(method.predict(data.images), labels)


def test_ablations_differ_where_the_paper_says():
    data = _squares(per_class=20)
    compensated = get_method("ccnn", **_small_params(lr=0.2)).fit(data)
    baseline1 = get_method("ccnn", **_small_params(lr=0.2, drift_compensation=False)).fit(data)
    # same seed, same batches, same fine-tuning: only the centroid-update features differ
    assert not np.allclose(compensated.centroids_, baseline1.centroids_)
    baseline2 = get_method("ccnn", **_small_params(variant="baseline2")).fit(data)
    torch.manual_seed(0)
    untouched = build_ccnn_net(3, network="digits", weights="none", in_channels=1, adapt_channels=(16,))
    for name, p in baseline2.net_.named_parameters():  # Baseline-II learns nothing
        assert torch.equal(p.detach(), dict(untouched.named_parameters())[name])
    assert "finetune_steps" in baseline2.history_[0] and baseline2.history_[0]["finetune_steps"] == 0
    baseline3 = get_method("ccnn", **_small_params(variant="baseline3")).fit(data)
    assert baseline3.labels_.shape == (len(data),)
    assert adjusted_rand_score(data.labels, baseline3.labels_) > 0.9


class _CancelAfterChecks(CancelToken):
    """Reports cancelled after the training loop has asked ``limit`` times (mid-epoch, buffer half full)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.checks = 0

    @property
    def cancelled(self) -> bool:  # type: ignore[override]
        self.checks += 1
        return self.checks > self.limit


def test_cancel_writes_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path):
    data = _squares(per_class=20)
    uninterrupted = get_method("ccnn", **_small_params()).fit(data)
    params = _small_params(checkpoint_dir=str(tmp_path), checkpoint_every=10_000)
    with pytest.raises(Cancelled):
        get_method("ccnn", **params).fit(data, cancel=_CancelAfterChecks(8))  # epoch 2, mini-batch 2 of 6
    assert (tmp_path / ccnn.CHECKPOINT_NAME).is_file()
    resumed = get_method("ccnn", **params, resume=True).fit(data)
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    np.testing.assert_allclose(resumed.centroids_, uninterrupted.centroids_, rtol=1e-6, atol=1e-8)


def test_bad_options_are_usage_errors():
    data = _squares(per_class=5)
    with pytest.raises(UsageError, match="variant"):
        get_method("ccnn", **_small_params(variant="baseline9")).fit(data)
    with pytest.raises(UsageError, match="k_m"):
        get_method("ccnn", **_small_params(k_m=20)).fit(data)
    with pytest.raises(UsageError, match="resume needs checkpoint_dir"):
        get_method("ccnn", **_small_params(resume=True)).fit(data)


def test_protocols_pick_the_digit_network_for_small_images():
    digits = ImageDataset("d", np.zeros((4, 28, 28, 1), np.uint8), np.array([0, 1, 2, 3]))
    photos = ImageDataset("p", np.zeros((4, 96, 96, 3), np.uint8))
    assert ccnn.CCNN.protocol_params("quick", digits)["network"] == "digits"
    assert ccnn.CCNN.protocol_params("quick", digits)["n_clusters"] == 4
    assert ccnn.CCNN.protocol_params("paper", digits)["epochs"] == 30
    assert ccnn.CCNN.protocol_params("paper", photos) == {"network": "ccnn", "epochs": 10}


@pytest.mark.parametrize("backbone", ["alexnet", "resnet18"])
def test_full_network_takes_its_trunk_from_a_local_state_dict(tmp_path, backbone):
    import torchvision

    torch.manual_seed(1)
    state = getattr(torchvision.models, backbone)(weights=None).state_dict()
    path = tmp_path / f"{backbone}.pth"
    torch.save(state, path)
    net = build_ccnn_net(5, network="ccnn", backbone=backbone, weights=path, adapt_channels=(16, 8)).eval()
    first_conv = "features.0.weight" if backbone == "alexnet" else "conv1.weight"
    assert torch.equal(next(net.trunk.parameters()), state[first_conv])
    with torch.no_grad():
        h = net.features(torch.randn(2, 3, 64, 64))
        probabilities = net(torch.randn(2, 3, 64, 64))
    assert h.shape == (2, 5) and bool((h >= 0).all())  # FC9 + ReLU
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))


def test_digit_network_takes_its_trunk_from_a_local_state_dict_and_rejects_a_foreign_one(tmp_path):
    torch.manual_seed(3)
    donor = build_ccnn_net(4, network="digits", weights="none", in_channels=1, adapt_channels=(8,))
    path = tmp_path / "trunk.pt"
    torch.save(donor.trunk.state_dict(), path)
    torch.manual_seed(4)  # a different random init, so equality can only come from the file
    net = build_ccnn_net(4, network="digits", weights=path, in_channels=1, adapt_channels=(8,))
    for (name, loaded), (_, saved) in zip(net.trunk.state_dict().items(), donor.trunk.state_dict().items()):
        assert torch.equal(loaded, saved), name
    fresh = build_ccnn_net(4, network="digits", weights="default", in_channels=1, adapt_channels=(8,))
    assert not torch.equal(next(fresh.trunk.parameters()), next(donor.trunk.parameters()))  # default = random

    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(UsageError, match="do not fit the digit CCNN trunk"):
        build_ccnn_net(4, network="digits", weights=foreign, in_channels=1, adapt_channels=(8,))
    with pytest.raises(UsageError, match="does not exist"):
        build_ccnn_net(4, network="digits", weights=tmp_path / "missing.pt", in_channels=1, adapt_channels=(8,))


# -- every registry backbone as the trunk (issue 16) -------------------------------------------------
def _rgb_squares(side: int = 32) -> ImageDataset:
    """Three well-separated RGB classes at ``side`` px, 8 images each: enough for a smoke run."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (24, side, side, 3)).astype(np.uint8)
    labels = np.arange(24) % 3
    half = side // 2
    for i, label in enumerate(labels):
        row, col = [(0, 0), (0, half), (half, half // 2)][label]
        images[i, row:row + half, col:col + half, label] = 230
    return ImageDataset("rgb-squares", images, labels)


def _pretrained_smoke(backbone: str, weights, **extra) -> dict:
    return {"n_clusters": 3, "network": "ccnn", "backbone": backbone, "weights": weights, "input_size": 32,
            "adapt_channels": "16", "epochs": 1, "n_m": 8, "k_m": 4, "seed_pool": 24, "batch_size": 8,
            "device": "cpu", **extra}


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
                                      "resnet50", "resnet18", "alexnet"])
def test_every_registry_backbone_is_a_trunk_that_trains(backbone):
    from photocluster.features.pretrained import BACKBONES

    assert backbone in BACKBONES  # the list above must follow the registry
    data = _rgb_squares()
    method = get_method("ccnn", **_pretrained_smoke(backbone, "none", train_layers="all")).fit(data)
    assert method.labels_.shape == (24,) and method.embeddings_.shape == (24, 3)
    assert method.history_[-1]["finetune_steps"] >= 1
    assert np.isfinite(method.centroids_).all()


def test_registry_lists_every_backbone_as_a_choice():
    from photocluster.features.pretrained import BACKBONE_CHOICES

    spec = next(s for s in ccnn.CCNN.parameter_specs() if s.name == "backbone")
    assert tuple(spec.choices) == BACKBONE_CHOICES


def test_a_frozen_trunk_is_kept_once_and_gives_the_same_run_as_recomputing_it(random_mobilenet_file):
    data = _rgb_squares()
    params = _pretrained_smoke("mobilenet_v2", str(random_mobilenet_file), train_layers="adaptation", epochs=2)
    kept = get_method("ccnn", **params).fit(data)
    recomputed = get_method("ccnn", **params, cache_trunk=False).fit(data)
    # float16 maps: the same clustering, centroids equal to rounding
    assert adjusted_rand_score(kept.labels_, recomputed.labels_) == pytest.approx(1.0)
    np.testing.assert_allclose(kept.centroids_, recomputed.centroids_, rtol=0.05, atol=1e-3)
    assert kept._maps is None  # the kept maps are released after the fit
    assert kept.predict(data.images[:5]).tolist() == kept.labels_[:5].tolist()


@pytest.mark.parametrize("variant", ["baseline2", "baseline3"])
def test_baselines_run_on_a_pretrained_trunk(random_mobilenet_file, variant):
    data = _rgb_squares()
    method = get_method("ccnn", **_pretrained_smoke("mobilenet_v2", str(random_mobilenet_file),
                                                    variant=variant)).fit(data)
    assert method.labels_.shape == (24,)


def test_a_wrong_weights_file_is_a_one_line_error_naming_the_backbone(random_mobilenet_file, tmp_path):
    data = _rgb_squares()
    with pytest.raises(UsageError) as wrong:
        get_method("ccnn", **_pretrained_smoke("resnet18", str(random_mobilenet_file))).fit(data)
    assert "resnet18" in str(wrong.value) and "mobilenet_v2" in str(wrong.value) and "\n" not in str(wrong.value)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(random_mobilenet_file.read_bytes()[:1000])
    with pytest.raises(UsageError) as broken:
        get_method("ccnn", **_pretrained_smoke("mobilenet_v2", str(truncated))).fit(data)
    assert "mobilenet_v2" in str(broken.value) and "\n" not in str(broken.value)
    with pytest.raises(UsageError, match="unknown backbone"):
        get_method("ccnn", **_pretrained_smoke("vgg99", "none")).fit(data)


def test_quick_protocol_on_photos_uses_the_cpu_backbone_at_its_own_size():
    photos = ImageDataset("p", np.zeros((4, 224, 224, 3), np.uint8), np.array([0, 1, 2, 3]))
    params = ccnn.CCNN.protocol_params("quick", photos)
    assert params["backbone"] == "mobilenet_v2" and params["input_size"] == 0
    assert params["train_layers"] == "adaptation"


def test_the_shared_imagenet_weights_build_a_trunk_that_runs(shared_data):
    path = shared_data / "weights" / "mobilenet_v2-imagenet-keras.pth"
    if not path.is_file():
        pytest.skip("shared mobilenet_v2 ImageNet weights not present")
    data = _rgb_squares()
    method = get_method("ccnn", **_pretrained_smoke("mobilenet_v2", str(path), train_layers="adaptation")).fit(data)
    assert method.labels_.shape == (24,) and np.isfinite(method.embeddings_).all()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(next(method.net_.trunk.parameters()).cpu(), state["features.0.0.weight"])


def test_the_next_fit_on_the_same_images_reuses_the_kept_trunk(random_mobilenet_file, monkeypatch):
    data = _rgb_squares()
    params = _pretrained_smoke("mobilenet_v2", str(random_mobilenet_file), train_layers="adaptation")
    first = get_method("ccnn", **params).fit(data)
    calls = []
    monkeypatch.setattr(ccnn.CCNN, "_to_input", lambda self, images: calls.append(len(images)) or
                        torch.zeros(len(images), 3, 32, 32))
    second = get_method("ccnn", **{**params, "random_state": 1}).fit(data)
    assert calls == []  # no image went through the trunk again
    assert second.labels_.shape == first.labels_.shape
    copy_of_images = ImageDataset("copy", data.images.copy(), data.labels)
    get_method("ccnn", **params).fit(copy_of_images)
    assert calls  # another array: its own trunk pass


def test_a_memory_mapped_library_has_its_pages_let_go_while_ccnn_reads_it(tmp_path, monkeypatch):
    """Every page read from a memmap stays resident until released: measured, a 5,000-photo folder peaked
    1.07 GiB above a 1,000-photo one. CCNN lets go of them every RELEASE_EVERY_IMAGES images it reads."""
    from toy_images import as_memmapped_library

    data = _squares(per_class=200)
    library, released = as_memmapped_library(data, tmp_path, monkeypatch, every=256)
    method = get_method("ccnn", **_small_params(epochs=1))
    labels = method.fit_predict(library)
    # one epoch reads the 600 images at least twice (the mini-batches, then the final labelling)
    assert len(released) >= 2 * 600 // 256 and all(array is library.images for array in released)
    # letting go of pages changes nothing but memory: the same labels as from the array in memory
    np.testing.assert_array_equal(labels, get_method("ccnn", **_small_params(epochs=1)).fit_predict(data))


def test_the_forward_batch_changes_memory_not_the_result():
    """The photo protocol passes 64 photos at a time, not 256 (a 256-photo pass at 224 px held ~2 GB of
    activations): with a frozen trunk in eval mode the clustering must come out the same."""
    from photocluster.methods.ccnn import QUICK_PHOTO_PARAMS

    assert QUICK_PHOTO_PARAMS["batch_size"] == 64
    data = _rgb_squares()
    small = get_method("ccnn", **_pretrained_smoke("mobilenet_v2", "none", batch_size=5)).fit(data)
    large = get_method("ccnn", **_pretrained_smoke("mobilenet_v2", "none", batch_size=24)).fit(data)
    np.testing.assert_array_equal(small.labels_, large.labels_)
    np.testing.assert_allclose(small.centroids_, large.centroids_, rtol=1e-5, atol=1e-6)
