"""Pre-trained embeddings: the backbone registry, recognising a weights file, one-line errors for wrong files,
and the on-disk cache (computed once, invalidated per image and per weights file). Offline: weights are
random-initialised state dicts written by the test, or the real shared file where present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.errors import UsageError
from photocluster.features import pretrained
from photocluster.features.embeddings import embedding_steps
from photocluster.progress import run_to_end


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mnv2-random.pth"
    torch.save(pretrained.BACKBONES["mobilenet_v2"].builder(weights=None).state_dict(), path)
    return path


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(pretrained.BACKBONES))
def test_every_backbone_splits_into_layers_that_end_in_its_embedding(name):
    spec = pretrained.BACKBONES[name]
    model = spec.builder(weights=None).eval()
    lower, upper, dim = spec.split(model)
    trunk, channels = spec.trunk(model)
    with torch.no_grad():
        x = torch.randn(1, 3, 96, 96)
        assert tuple(upper(lower(x)).shape) == (1, spec.feature_dim) and dim == spec.feature_dim
        assert trunk(x).shape[1] == channels


def test_one_backbone_is_recommended_for_cpu_and_one_for_gpu():
    assert pretrained.recommended_backbone("cpu") == "mobilenet_v2"
    assert pretrained.recommended_backbone("cuda") in pretrained.BACKBONES


def test_a_weights_file_is_recognised_from_its_keys_and_shapes(mobilenet_file, tmp_path):
    assert pretrained.backbone_of_weights_file(mobilenet_file) == "mobilenet_v2"
    path = tmp_path / "r18.pth"
    torch.save(pretrained.BACKBONES["resnet18"].builder(weights=None).state_dict(), path)
    assert pretrained.backbone_of_weights_file(path) == "resnet18"


def test_the_shared_imagenet_file_is_recognised(shared_data):
    path = shared_data / "weights" / "mobilenet_v2-imagenet-keras.pth"
    if not path.exists():
        pytest.skip("the shared ImageNet weights are not present")
    assert pretrained.backbone_of_weights_file(path) == "mobilenet_v2"


def _one_line_error(call) -> str:
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_weights_files_are_one_line_errors_naming_the_expected_backbone(mobilenet_file, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(mobilenet_file.read_bytes()[:5000])
    message = _one_line_error(lambda: pretrained.build_backbone("mobilenet_v2", truncated))
    assert "expected torchvision mobilenet_v2 weights" in message

    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], not_a_state_dict)
    assert "mobilenet_v2" in _one_line_error(lambda: pretrained.build_backbone("mobilenet_v2", not_a_state_dict))

    other = _one_line_error(lambda: pretrained.build_backbone("efficientnet_b0", mobilenet_file))
    assert "do not fit backbone efficientnet_b0: they are mobilenet_v2 weights" in other

    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    assert "fits none" not in _one_line_error(lambda: pretrained.backbone_of_weights_file(text))


def test_embeddings_are_normalised_and_cached_per_image_and_per_weights(mobilenet_file, tmp_path):
    images = _images(6)
    first = run_to_end(embedding_steps(images, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path))
    assert first.embeddings.shape == (6, 1280) and first.n_cached == 0
    assert np.allclose(np.linalg.norm(first.embeddings, axis=1), 1.0, atol=1e-5)

    # a copy: the same pixels in another array object, so they come from the disk cache, not the last result
    again = run_to_end(embedding_steps(images.copy(), "mobilenet_v2", mobilenet_file, device="cpu",
                                       cache_root=tmp_path))
    assert again.n_cached == 6
    assert np.array_equal(again.embeddings, first.embeddings)

    changed = images.copy()
    changed[2] = 255 - changed[2]  # one photo edited: only its entry is computed again
    partly = run_to_end(embedding_steps(changed, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path))
    assert partly.n_cached == 5
    assert np.array_equal(np.delete(partly.embeddings, 2, axis=0), np.delete(first.embeddings, 2, axis=0))
    assert not np.allclose(partly.embeddings[2], first.embeddings[2])

    torch.manual_seed(1)
    other = tmp_path / "other.pth"
    torch.save(pretrained.BACKBONES["mobilenet_v2"].builder(weights=None).state_dict(), other)
    fresh = run_to_end(embedding_steps(images, "mobilenet_v2", other, device="cpu", cache_root=tmp_path))
    assert fresh.n_cached == 0  # other weights: their own entries


def test_random_initialisation_is_never_cached(tmp_path):
    images = _images(3)
    run_to_end(embedding_steps(images, "mobilenet_v2", "none", device="cpu", cache_root=tmp_path))
    result = run_to_end(embedding_steps(images, "mobilenet_v2", "none", device="cpu", cache_root=tmp_path))
    assert result.n_cached == 0 and not (tmp_path / "embeddings").exists()


def test_kmeans_clusters_on_embeddings_and_the_pipeline_decodes_at_224(mobilenet_file):
    from photocluster.methods.base import get_method, method_class
    from photocluster.data.dataset import ImageDataset
    from photocluster.pipeline import decode_size

    rng = np.random.default_rng(0)
    dark = rng.integers(0, 40, (6, 32, 32, 3), dtype=np.uint8)
    bright = rng.integers(215, 256, (6, 32, 32, 3), dtype=np.uint8)
    dataset = ImageDataset("two", np.concatenate([dark, bright]))
    model = get_method("kmeans", n_clusters=2, features="mobilenet_v2", weights=str(mobilenet_file), device="cpu")
    labels = model.fit(dataset).labels_
    assert len(set(labels[:6].tolist())) == 1 and len(set(labels[6:].tolist())) == 1 and labels[0] != labels[6]
    assert model.embeddings_.shape == (12, 1280)
    assert decode_size("kmeans", {"features": "mobilenet_v2"}) == 224
    assert decode_size("kmeans", {"features": "hog"}) == 96
    assert method_class("kmeans").pretrained_backbone({"features": "convnext_tiny"}) == "convnext_tiny"


def test_the_same_array_asked_again_in_one_run_is_neither_hashed_nor_read_again(mobilenet_file, tmp_path,
                                                                                   monkeypatch):
    import photocluster.features.embeddings as embeddings

    images = _images(4, seed=3)
    first = run_to_end(embedding_steps(images, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path))
    hashed = []
    monkeypatch.setattr(embeddings, "image_key", lambda image: hashed.append(1) or "x")
    second = run_to_end(embedding_steps(images, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path))
    assert second is first and hashed == []
    other = run_to_end(embedding_steps(images.copy(), "mobilenet_v2", mobilenet_file, device="cpu",
                                       cache_root=tmp_path))
    assert len(hashed) == 4 and other is not first  # another array object: looked up in the cache as before


def test_the_features_stage_says_how_long_is_left(mobilenet_file, tmp_path):
    """Minutes for a large folder on a CPU: each batch's event carries the time left, 0 at the last."""
    events = []
    steps = embedding_steps(_images(10), "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path,
                            batch_size=4)
    run_to_end(steps, events.append)
    batches = [e for e in events if not e.message]
    assert [e.step for e in batches] == [4, 8, 10]
    assert all(e.eta_seconds is not None and e.eta_seconds >= 0 for e in batches)
    assert batches[0].eta_seconds > 0 and batches[-1].eta_seconds == 0


def test_the_cache_pass_lets_go_of_the_pages_it_reads(mobilenet_file, tmp_path, monkeypatch):
    """Hashing a memory-mapped library reads every photo; without letting go of its pages every 1,024 photos
    a cached re-cluster of 20,000 photos held 3 GB of them (the folder run's measured peak)."""
    from photocluster.features import embeddings

    n = 2100
    library = np.memmap(tmp_path / "library.u8", dtype=np.uint8, mode="w+", shape=(n, 8, 8, 3))
    library[:] = np.random.default_rng(0).integers(0, 256, library.shape, dtype=np.uint8)
    library.flush()
    images = np.memmap(tmp_path / "library.u8", dtype=np.uint8, mode="r", shape=(n, 8, 8, 3))
    run_to_end(embedding_steps(images, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path,
                               input_size=32, batch_size=512))
    released = []
    real = embeddings.release_read_pages
    monkeypatch.setattr(embeddings, "release_read_pages", lambda array: (released.append(array), real(array)))
    again = np.memmap(tmp_path / "library.u8", dtype=np.uint8, mode="r", shape=(n, 8, 8, 3))
    result = run_to_end(embedding_steps(again, "mobilenet_v2", mobilenet_file, device="cpu", cache_root=tmp_path,
                                        input_size=32))
    assert result.n_cached == n
    assert len(released) >= n // 1024 and all(array is again for array in released)
