"""Backbones load from local files, from the cache, and fail clearly offline — never a real download."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from photocluster.errors import UsageError
from photocluster.features import pretrained


def _fresh_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return pretrained.BACKBONES[name].builder(weights=None).state_dict()


def test_local_state_dict_loads_exactly(tmp_path):
    state = _fresh_state("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    model = pretrained.build_backbone("resnet18", weights=path)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert not model.training


def test_missing_local_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        pretrained.build_backbone("alexnet", weights=tmp_path / "absent.pth")


def test_keys_that_do_not_fit_are_a_usage_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_fresh_state("resnet18"), path)
    with pytest.raises(UsageError, match="do not fit backbone alexnet"):
        pretrained.build_backbone("alexnet", weights=path)


def test_offline_without_cache_tells_how_to_get_the_file(monkeypatch):
    def no_network(url, dst, progress=True):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    target = pretrained.cached_weights_path("alexnet")
    target.unlink(missing_ok=True)
    with pytest.raises(UsageError) as info:
        pretrained.build_backbone("alexnet", weights="default")
    message = str(info.value)
    assert torchvision.models.AlexNet_Weights.DEFAULT.url in message
    assert str(target) in message
    assert "--weights PATH" in message and "--weights none" in message
    assert not target.exists() and not target.with_suffix(target.suffix + ".partial").exists()


def test_default_weights_download_once_then_come_from_the_cache(monkeypatch):
    state = _fresh_state("resnet18")
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append((url, progress))
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    pretrained.cached_weights_path("resnet18").unlink(missing_ok=True)
    first = pretrained.build_backbone("resnet18", weights="default")
    second = pretrained.build_backbone("resnet18", weights="default")
    assert calls == [(torchvision.models.ResNet18_Weights.DEFAULT.url, True)]
    assert pretrained.cached_weights_path("resnet18").is_file()
    assert torch.equal(first.state_dict()["fc.weight"], state["fc.weight"])
    assert torch.equal(second.state_dict()["fc.weight"], state["fc.weight"])


def test_unknown_backbone_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown backbone"):
        pretrained.build_backbone("vgg99", weights="none")


def test_grey_batch_becomes_three_normalised_channels():
    images = np.zeros((2, 4, 4, 1), dtype=np.uint8)
    images[1] = 255
    tensor = pretrained.images_to_tensor(images, pretrained.preprocess_for("alexnet"), size=8)
    assert tensor.shape == (2, 3, 8, 8)
    mean = torch.tensor(pretrained.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(pretrained.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(tensor[0], (-mean / std).expand(3, 8, 8))
    assert torch.allclose(tensor[1], ((1 - mean) / std).expand(3, 8, 8))


def test_preprocess_reports_imagenet_statistics():
    spec = pretrained.preprocess_for("resnet50")
    assert spec.input_size == 224
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
