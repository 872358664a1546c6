"""The shared contracts: progress/cancel, ImageDataset validation, parameter parsing, devices, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photocluster.checkpoints import load_checkpoint, save_checkpoint
from photocluster.data.dataset import ImageDataset
from photocluster.devices import resolve_device
from photocluster.errors import UsageError
from photocluster.methods import base
from photocluster.methods.base import ClusteringMethod, get_method, parse_param_overrides, register
from photocluster.progress import CancelToken, Cancelled, EtaEstimator, ProgressEvent, Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_is_linear_extrapolation():
    clock = FakeClock()
    eta = EtaEstimator(total=10, clock=clock)
    assert eta.eta(0) is None
    clock.now += 4.0  # 2 of 10 units in 4 s → 8 units left at 2 s each = 16 s
    assert eta.eta(2) == pytest.approx(16.0)


def test_throttle_fires_once_per_interval():
    clock = FakeClock()
    throttle = Throttle(interval=1.0, clock=clock)
    assert throttle.ready() is True
    clock.now += 0.5
    assert throttle.ready() is False
    clock.now += 0.6
    assert throttle.ready() is True


def test_cancel_token_raises_only_after_cancel():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_progress_fraction_is_clamped():
    assert ProgressEvent("train", 5, 10).fraction == 0.5
    assert ProgressEvent("train", 12, 10).fraction == 1.0
    assert ProgressEvent("train", 3, None).fraction is None


def test_dataset_adds_channel_axis_and_rejects_bad_input():
    ds = ImageDataset("x", np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1])
    assert ds.image_shape == (8, 8, 1) and ds.n_classes == 2 and len(ds) == 4
    assert ds.subset(np.array([1, 3])).labels.tolist() == [1, 1]
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="one entry per image"):
        ImageDataset("x", np.zeros((4, 8, 8, 3), np.uint8), labels=[0, 1])


class _ToyMethod(ClusteringMethod):
    name = "_toy-for-tests"

    def __init__(self, n_clusters: int = 3, lr: float = 0.1, rotation: bool = True, features: str = "raw"):
        self.n_clusters = n_clusters
        self.lr = lr
        self.rotation = rotation
        self.features = features


@pytest.fixture()
def toy_method():
    """Registered only while a test runs, so the contract test (parametrised over the registry) never sees it."""
    register(_ToyMethod)
    yield _ToyMethod
    base._REGISTRY.pop(_ToyMethod.name, None)


def test_param_overrides_are_typed_from_defaults(toy_method):
    params = parse_param_overrides("_toy-for-tests", ["n_clusters=5", "lr=1e-3", "rotation=false", "features=hog"])
    assert params == {"n_clusters": 5, "lr": 0.001, "rotation": False, "features": "hog"}
    method = get_method("_toy-for-tests", **params)
    assert method.get_params() == params


@pytest.mark.parametrize("item, message", [("epochs", "KEY=VALUE"), ("nope=1", "unknown parameter"),
                                            ("n_clusters=many", "expects a int"), ("rotation=maybe", "expects a bool")])
def test_param_overrides_reject_bad_items(item, message, toy_method):
    with pytest.raises(UsageError, match=message):
        parse_param_overrides("_toy-for-tests", [item])


def test_unknown_method_names_the_valid_ones(toy_method):
    with pytest.raises(ValueError, match="_toy-for-tests"):
        get_method("no-such-method")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


class NotAllowedInCheckpoints:
    pass


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    state = {"weights": torch.arange(6.0).reshape(2, 3), "epoch": 7, "name": "dac", "rng": [1, 2, 3]}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["epoch"] == 7 and loaded["rng"] == [1, 2, 3]
    assert not (tmp_path / "c.pt.tmp").exists()

    # arbitrary objects must not round-trip: loading them would need unpickling code
    torch.save({"obj": NotAllowedInCheckpoints()}, tmp_path / "evil.pt")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "evil.pt")
