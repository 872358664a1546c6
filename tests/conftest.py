"""Shared fixtures: an isolated PHOTOCLUSTER_HOME per test session, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    return Path(os.environ.get("PHOTOCLUSTER_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Tests never touch the user's real catalog, cache or config."""
    home = tmp_path_factory.mktemp("photocluster-home")
    old = os.environ.get("PHOTOCLUSTER_HOME")
    os.environ["PHOTOCLUSTER_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("PHOTOCLUSTER_HOME", None)
    else:
        os.environ["PHOTOCLUSTER_HOME"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _shared_data()


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    path = shared_data / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST not present in ../shared/data/mnist")
    return path


@pytest.fixture(scope="session")
def photos_sample(shared_data) -> Path:
    path = shared_data / "photos-sample"
    if not path.is_dir():
        pytest.skip("../shared/data/photos-sample not present")
    return path


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    path = Path("/usr/share/datasets/fashion-mnist")
    if not path.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return path


def pytest_collection_modifyitems(config, items):
    """A bare ``pytest`` leaves out the long protocols too; ``-m slow`` (or any -m expression) decides itself."""
    if config.option.markexpr:
        return
    skip_slow = pytest.mark.skip(reason="slow protocol: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP threads spin against other processes and a
    step gets 5-10x slower (measured: 0.7 s vs 3-10 s for a 20-image step under load 11). Test modules that
    train networks use it for every test (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).
    Here and not in a tests/unit/conftest.py: a second module named conftest would shadow
    ``from conftest import ...`` in the GUI tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _never_download(monkeypatch):
    """Tests never download: torchvision's weights download fails at once, as it does offline (a test that
    fakes a download patches it again)."""
    import urllib.error

    try:
        import torch.hub
    except ImportError:
        return

    def offline(url, dst, progress=True):  # noqa: ARG001
        raise urllib.error.URLError("tests never download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


@pytest.fixture(scope="session")
def random_mobilenet_file(tmp_path_factory) -> Path:
    """A random-initialised torchvision mobilenet_v2 state dict on disk: the pre-trained path without real
    weights (offline, no download)."""
    import torch
    from photocluster.features.pretrained import BACKBONES

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2-random.pth"
    torch.save(BACKBONES["mobilenet_v2"].builder(weights=None).state_dict(), path)
    return path
