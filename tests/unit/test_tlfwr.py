"""tlfwr (seed 002): boot parsing, the reliable-set rule, the rounds' invariants, networks, cancel/resume, η."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster import metrics
from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.methods import tlfwr
from photocluster.methods.base import get_method, list_methods
from photocluster.methods.tlfwr import (
    BOOT_CHOICES,
    PAPER_BOOT_IDS,
    TransferLearningClustering,
    distances_to_centres,
    parse_boot,
    random_affine,
    run_all_boots,
    select_reliable,
)
from photocluster.features.pretrained import BACKBONES
from photocluster.models.tlfwr_net import build_transfer_net
from photocluster.progress import CancelToken, Cancelled


def three_blocks(n_per: int = 30, seed: int = 0) -> ImageDataset:
    """Three well-separated 28×28 families (bright block top-left, bottom-right, horizontal bar) + noise."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(3), n_per)
    images = np.zeros((len(labels), 28, 28), dtype=np.float32)
    images[labels == 0, 4:12, 4:12] = 220
    images[labels == 1, 16:24, 16:24] = 220
    images[labels == 2, 12:16, 2:26] = 220
    images += rng.integers(0, 35, images.shape)
    return ImageDataset("blocks", np.clip(images, 0, 255).astype(np.uint8), labels)


def smoke(**overrides) -> TransferLearningClustering:
    params = dict(TransferLearningClustering.smoke_params(), n_clusters=3)
    params.update(overrides)
    return TransferLearningClustering(**params)


# -- boot parsing ---------------------------------------------------------------------------------
def test_boot_choices_are_the_papers_eight_in_table_order():
    assert len(BOOT_CHOICES) == 8
    assert PAPER_BOOT_IDS["raw+kmeans"] == 1 and PAPER_BOOT_IDS["hog+kmeans"] == 3
    assert PAPER_BOOT_IDS["raw+gmm"] == 5 and PAPER_BOOT_IDS["pca+gmm"] == 8


def test_parse_boot_accepts_paper_names_and_defaults_to_kmeans():
    assert parse_boot("HOG+kmeans") == ("hog", "kmeans")
    assert parse_boot("rp+gmm") == ("raw", "gmm")
    assert parse_boot("gf") == ("gabor", "kmeans")
    with pytest.raises(UsageError, match="unknown boot"):
        parse_boot("sift+kmeans")
    with pytest.raises(UsageError, match="unknown boot"):
        parse_boot("hog+dbscan")


def test_registered():
    assert "tlfwr" in list_methods()
    assert isinstance(get_method("tlfwr", boot="raw+gmm"), TransferLearningClustering)


# -- the reliable-set rule (eq. 15-18) -----------------------------------------------------------
def test_distances_to_own_cluster_centre_by_hand():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [10.0, 14.0]])
    labels = np.array([0, 0, 1, 1])
    # centres (1, 0) and (10, 12): every point lies 1 resp. 2 away from its own centre
    np.testing.assert_allclose(distances_to_centres(features, labels, 2), [1.0, 1.0, 2.0, 2.0])


def test_select_reliable_takes_the_closest_fraction_of_every_cluster():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    distances = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 0.1, 0.9, 0.3, 0.7])
    none = np.zeros(10, dtype=bool)
    chosen = select_reliable(distances, labels, none, 0.4, 2)  # ceil(0.4 · 5) = 2 per cluster
    assert set(np.flatnonzero(chosen)) == {1, 3, 6, 8}


def test_select_reliable_remaining_versus_cumulative_and_growth():
    labels = np.zeros(10, dtype=np.int64)
    distances = np.arange(10, dtype=float)[::-1]  # image 9 is the closest
    first = select_reliable(distances, labels, np.zeros(10, bool), 0.2, 1)
    assert set(np.flatnonzero(first)) == {8, 9}
    # Δ = 0.3 of the 8 remaining → ceil(2.4) = 3 more; cumulative: 30 % of 10 = 3 reliable → 1 more
    remaining = select_reliable(distances, labels, first, 0.3, 1, mode="remaining")
    cumulative = select_reliable(distances, labels, first, 0.3, 1, mode="cumulative")
    assert set(np.flatnonzero(remaining)) == {5, 6, 7, 8, 9}
    assert set(np.flatnonzero(cumulative)) == {7, 8, 9}
    # reliable images stay reliable even when they are now far from the centre
    far_away = distances.copy()
    far_away[[8, 9]] = 100.0
    assert select_reliable(far_away, labels, first, 0.1, 1)[[8, 9]].all()
    assert select_reliable(distances, labels, first, 1.0, 1).all()


# -- networks -------------------------------------------------------------------------------------
def test_alexnet_split_gives_the_fc7_blob():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None).eval()
    lower, upper, dim = BACKBONES["alexnet"].split(model)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model.classifier[:6](torch.flatten(model.avgpool(model.features(x)), 1))
        got = upper(lower(x))
    assert dim == 4096
    torch.testing.assert_close(got, expected)


def test_digit_net_loads_a_local_state_dict_and_refuses_default(tmp_path):
    torch.manual_seed(1)
    trained = build_transfer_net("digit", 4, "none")
    path = tmp_path / "digit.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(2)
    loaded = build_transfer_net("digit", 4, str(path)).eval()
    x = trained.to_input(np.random.default_rng(0).integers(0, 255, (3, 28, 28, 1), dtype=np.uint8))
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(x), trained.eval().features(x))
    with pytest.raises(UsageError, match="no pre-trained weights"):
        build_transfer_net("digit", 4, "default")
    with pytest.raises(UsageError, match="does not exist"):
        build_transfer_net("digit", 4, str(tmp_path / "missing.pt"))


def test_finetune_choice_decides_which_layers_learn():
    net = build_transfer_net("digit", 3, "none")
    for finetune, expected in (("head", {"head"}), ("upper", {"upper", "head"}), ("all", {"lower", "upper", "head"})):
        TransferLearningClustering(finetune=finetune, lr=0.01)._make_optimizer(net)
        learning = {group for group, params in net.parameter_groups().items() if all(p.requires_grad for p in params)}
        frozen = {group for group, params in net.parameter_groups().items() if not any(p.requires_grad for p in params)}
        assert learning == expected and frozen == {"lower", "upper", "head"} - expected


def test_random_affine_with_zero_jitter_is_the_identity_and_otherwise_moves_pixels():
    batch = torch.rand(4, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    same = random_affine(batch, gen, max_degrees=0.0, max_scale=0.0, max_shift=0.0)
    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0)
    moved = random_affine(batch, gen)
    assert (moved - batch).abs().mean() > 0.05


# -- the method -----------------------------------------------------------------------------------
def test_rounds_only_grow_the_reliable_set_and_never_change_a_reliable_label(monkeypatch):
    calls = []
    original = tlfwr.select_reliable

    def spy(distances, labels, reliable, delta, n_clusters, mode="remaining"):
        out = original(distances, labels, reliable, delta, n_clusters, mode)
        calls.append((labels.copy(), reliable.copy(), out.copy(), delta))
        return out

    monkeypatch.setattr(tlfwr, "select_reliable", spy)
    data = three_blocks()
    method = smoke(delta=0.2, delta_step=0.3, max_rounds=4, epochs=2).fit(data)
    assert [round(c[3], 2) for c in calls] == [0.2, 0.5, 0.8, 1.1]
    fixed: dict[int, int] = {}
    for labels_in, reliable_in, reliable_out, _ in calls:
        assert (reliable_out >= reliable_in).all()  # only grows
        for image, label in fixed.items():
            assert labels_in[image] == label  # a reliable label never changes in a later round
        for image in np.flatnonzero(reliable_out & ~reliable_in):
            fixed[int(image)] = int(labels_in[image])
    assert len(fixed) == len(data)
    assert all(method.labels_[i] == label for i, label in fixed.items())
    assert (method.reliable_round_ >= 0).all()


def test_fit_sets_the_contract_attributes_and_history():
    data = three_blocks()
    method = smoke().fit(data)
    n = len(data)
    assert method.labels_.shape == (n,) and method.labels_.dtype == np.int64
    assert method.confidence_.shape == (n,) and ((method.confidence_ >= 0) & (method.confidence_ <= 1)).all()
    assert method.embeddings_.shape == (n, 128) and method.embeddings_.dtype == np.float32
    boot = method.history_[0]
    assert boot["stage"] == "boot" and boot["dbi_norm"] == 1.0
    # k-means on raw pixels separates the three blocks perfectly: the boot entry must say so
    assert boot["acc"] == pytest.approx(1.0)
    final = method.history_[-1]
    for key in ("jc", "fmi", "nmi", "ari", "acc", "dbi_norm"):
        assert key in final
    assert final["acc"] == pytest.approx(metrics.clustering_accuracy(data.labels, method.labels_))
    assert method.predict(data.images[:5]).shape == (5,)


def test_cancel_writes_a_checkpoint_and_resume_finishes(tmp_path):
    data = three_blocks()
    token = CancelToken()
    method = smoke(delta=0.3, delta_step=0.3, max_rounds=3, checkpoint_dir=str(tmp_path))
    with pytest.raises(Cancelled):
        for event in method.fit_steps(data, cancel=token):
            if event.stage == "round":
                token.cancel()
    assert (tmp_path / tlfwr.CHECKPOINT_NAME).exists()
    resumed = smoke(delta=0.3, delta_step=0.3, max_rounds=3, checkpoint_dir=str(tmp_path), resume=True)
    stages = [event.stage for event in resumed.fit_steps(data)]
    assert stages[0] == "resume" and "boot features" not in stages
    rounds = [h["round"] for h in resumed.history_]
    assert rounds[0] == -1 and rounds == sorted(rounds) and len(rounds) == len(set(rounds))
    assert resumed.labels_.shape == (len(data),)
    with pytest.raises(UsageError, match="another run"):
        next(smoke(boot="hog+kmeans", checkpoint_dir=str(tmp_path), resume=True).fit_steps(data))


def test_bad_parameters_are_usage_errors():
    data = three_blocks(n_per=2)
    for bad in ({"delta": 0.0}, {"finetune": "middle"}, {"n_clusters": 10}, {"resume": True}, {"boot": "x"}):
        with pytest.raises(UsageError):
            next(smoke(**bad).fit_steps(data))


def test_run_all_boots_reports_boot_and_final_metrics_and_eta():
    data = three_blocks(n_per=20)
    params = {k: v for k, v in TransferLearningClustering.smoke_params().items() if k != "boot"}
    result = run_all_boots(data, "raw+kmeans,pca+gmm", n_clusters=3, **params)
    assert list(result["per_boot"]) == ["raw+kmeans", "pca+gmm"]
    assert result["per_boot"]["pca+gmm"]["paper_id"] == 8
    for stage in ("boot", "final"):
        for key in ("jc", "fmi", "nmi", "ari", "acc"):
            values = [entry[stage][key] for entry in result["per_boot"].values()]
            mean = np.mean(values)
            expected = np.std(values) / mean
            assert result["eta"][stage][key] == pytest.approx(expected)
    with pytest.raises(UsageError, match="ground-truth"):
        run_all_boots(ImageDataset("x", data.images), "raw+kmeans", n_clusters=3, **params)


def test_quick_protocol_on_digits_uses_the_digit_net_without_downloads():
    data = three_blocks(n_per=2)
    params = TransferLearningClustering.protocol_params("quick", data)
    assert params["backbone"] == "digit" and params["weights"] == "none" and params["n_clusters"] == 3
    assert TransferLearningClustering.protocol_params("paper", data)["backbone"] == "alexnet"


@pytest.mark.slow
def test_mnist_quick_protocol_improves_every_boot_and_lowers_eta(mnist_dir):
    """The paper's MNIST claim (Table 12-13) in the quick protocol on 3,000 images: the method beats its boot
    clustering for the raw-pixel and HOG boots and their ACC/NMI spread η shrinks. Minutes on a 2-core CPU."""
    from photocluster.data.datasets import load_dataset

    full = load_dataset("mnist", data_dir=mnist_dir, progress=False)
    data = full.subset(np.sort(np.random.default_rng(0).choice(len(full), 3000, replace=False)))
    params = TransferLearningClustering.protocol_params("quick", data)
    result = run_all_boots(data, "raw+kmeans,hog+kmeans", **params)
    for boot, entry in result["per_boot"].items():
        assert entry["final"]["acc"] > entry["boot"]["acc"], boot
        assert entry["final"]["nmi"] > entry["boot"]["nmi"], boot
    for key in ("acc", "nmi"):
        assert result["eta"]["final"][key] < result["eta"]["boot"][key]


# -- ImageNet backbones from the registry and boots on their embeddings (issue 16) -------------------
def pretrained_smoke(backbone: str, weights, **overrides) -> TransferLearningClustering:
    params = dict(smoke_params_without_digit(), backbone=backbone, weights=weights, input_size=32, n_clusters=3)
    params.update(overrides)
    return TransferLearningClustering(**params)


def smoke_params_without_digit() -> dict:
    params = dict(TransferLearningClustering.smoke_params())
    params.update(finetune="upper", max_rounds=2, epochs=1, batch_size=16)
    return params


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
                                      "resnet50", "resnet18", "alexnet"])
def test_every_registry_backbone_is_split_fine_tuned_and_labels(backbone):
    assert backbone in BACKBONES  # the list above must follow the registry
    data = three_blocks(n_per=8)
    method = pretrained_smoke(backbone, "none", input_size=64 if backbone == "alexnet" else 32).fit(data)
    assert method.labels_.shape == (24,)
    assert method.embeddings_.shape == (24, BACKBONES[backbone].feature_dim)
    assert any(h.get("stage") == "fine-tuned" for h in method.history_)


def test_backbone_and_boot_choices_follow_the_registry():
    from photocluster.features.pretrained import BACKBONE_CHOICES

    specs = {spec.name: spec for spec in TransferLearningClustering.parameter_specs()}
    assert tuple(specs["backbone"].choices) == (*BACKBONE_CHOICES, "digit")
    assert "mobilenet_v2+kmeans" in specs["boot"].choices and "hog+kmeans" in specs["boot"].choices
    assert parse_boot("mobilenet_v2+kmeans") == ("mobilenet_v2", "kmeans")
    assert parse_boot("convnext_tiny") == ("convnext_tiny", "kmeans")


def test_embedding_boot_is_the_cached_embeddings_clustered(random_mobilenet_file):
    from photocluster.features.embeddings import embedding_steps
    from photocluster.progress import run_to_end
    from sklearn.cluster import KMeans

    data = three_blocks(n_per=8)
    weights = str(random_mobilenet_file)
    method = pretrained_smoke("mobilenet_v2", weights, boot="mobilenet_v2+kmeans").fit(data)
    # a copy of the pixels, so they are looked up on disk and not taken from the boot's in-memory result
    cached = run_to_end(embedding_steps(data.images.copy(), "mobilenet_v2", weights))
    assert cached.n_cached == len(data)  # the boot wrote the embedding cache that k-means -p features= reads
    expected = KMeans(3, n_init=10, random_state=0).fit_predict(cached.embeddings)
    assert method.history_[0]["acc"] == pytest.approx(metrics.clustering_accuracy(data.labels, expected))
    assert "reliable_purity" in method.history_[1]


def test_kept_lower_layers_give_the_same_run_as_recomputing_them(random_mobilenet_file):
    data = three_blocks(n_per=8)
    kept = pretrained_smoke("mobilenet_v2", str(random_mobilenet_file)).fit(data)
    recomputed = pretrained_smoke("mobilenet_v2", str(random_mobilenet_file), cache_lower=False).fit(data)
    assert kept.labels_.tolist() == recomputed.labels_.tolist()
    np.testing.assert_allclose(kept.embeddings_, recomputed.embeddings_, rtol=1e-3, atol=1e-4)
    assert kept.predict(data.images[:4]).shape == (4,)


def test_fine_tuning_a_pretrained_backbone_keeps_its_batch_norm_statistics(random_mobilenet_file):
    data = three_blocks(n_per=8)
    net_before = build_transfer_net("mobilenet_v2", 3, str(random_mobilenet_file), input_size=32)
    method = pretrained_smoke("mobilenet_v2", str(random_mobilenet_file)).fit(data)
    before = {k: v for k, v in net_before.state_dict().items() if "running_" in k}
    after = method.net_.state_dict()
    assert before and all(torch.equal(value, after[key].cpu()) for key, value in before.items())


def test_a_wrong_weights_file_is_a_one_line_error_naming_the_backbone(random_mobilenet_file, tmp_path):
    data = three_blocks(n_per=4)
    with pytest.raises(UsageError) as wrong:
        pretrained_smoke("resnet18", str(random_mobilenet_file)).fit(data)
    assert "resnet18" in str(wrong.value) and "mobilenet_v2" in str(wrong.value) and "\n" not in str(wrong.value)
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(UsageError) as foreign:
        pretrained_smoke("mobilenet_v2", str(not_a_state_dict)).fit(data)
    assert "mobilenet_v2" in str(foreign.value) and "\n" not in str(foreign.value)


def test_quick_protocol_on_photos_fine_tunes_the_cpu_backbone_on_kept_lower_layers():
    photos = ImageDataset("p", np.zeros((4, 224, 224, 3), np.uint8), np.array([0, 1, 2, 3]))
    params = TransferLearningClustering.protocol_params("quick", photos)
    assert params["backbone"] == "mobilenet_v2" and params["input_size"] == 0
    assert TransferLearningClustering(**params)._uses_lower_cache()
    assert TransferLearningClustering.protocol_params("paper", photos)["backbone"] == "alexnet"


def test_the_shared_imagenet_weights_boot_and_fine_tune(shared_data):
    path = shared_data / "weights" / "mobilenet_v2-imagenet-keras.pth"
    if not path.is_file():
        pytest.skip("shared mobilenet_v2 ImageNet weights not present")
    data = three_blocks(n_per=8)
    method = pretrained_smoke("mobilenet_v2", str(path), boot="mobilenet_v2+kmeans").fit(data)
    assert method.history_[0]["acc"] > 0.6  # ImageNet features separate the three block families


def test_planned_work_for_the_eta_follows_the_delta_schedule_by_hand():
    # 100 images, Δ 0.2 + 0.2 a round, "remaining" selection, batches of 32, 10 epochs but at least 30 steps:
    # round 0: 20 reliable (1 batch → 30 epochs) = 600; round 1: 20 + ceil(0.4·80) = 52 (2 batches → 15) = 780;
    # round 2: 52 + ceil(0.6·48) = 81 (3 → 10) = 810; round 3: 81 + ceil(0.8·19) = 97 (4 → 10) = 970;
    # round 4 (Δ = 1) makes every image reliable and trains nothing. Plus a forward pass of 100 images a round
    # at a third of a training image.
    method = get_method("tlfwr", n_clusters=2, batch_size=32, epochs=10, min_steps=30, delta=0.2, delta_step=0.2)
    assert method._planned_work(100, 0, 0.2, 5) == pytest.approx(600 + 780 + 810 + 970 + 4 * 100 / 3)
    # re-planned from the last two rounds' start: only round 3 is left to train
    assert method._planned_work(100, 81, 0.8, 2) == pytest.approx(970 + 100 / 3)
    cumulative = get_method("tlfwr", n_clusters=2, batch_size=32, epochs=10, min_steps=0, delta_step=0.5,
                            selection="cumulative")
    assert cumulative._planned_work(100, 0, 0.5, 3) == pytest.approx(50 * 10 + 100 / 3)  # then Δ = 1.0: stop


def test_a_memory_mapped_library_has_its_pages_let_go_while_tlfwr_reads_it(tmp_path, monkeypatch):
    """The rounds read the library again and again; every page read would stay resident (measured on photo
    folders: 0.15 MiB a 224-px photo). tlfwr reads through the reader that lets go of them, and the result
    is the one from the array in memory."""
    from toy_images import as_memmapped_library

    data = three_blocks(n_per=40)
    library, released = as_memmapped_library(data, tmp_path, monkeypatch, every=64)
    labels = smoke().fit_predict(library)
    assert len(released) >= 120 // 64 and all(array is library.images for array in released)
    np.testing.assert_array_equal(labels, smoke().fit_predict(data))
