"""Weights offline, in the app's words: when the network's weights cannot be downloaded, the window offers a
weights file, another try, or a method that needs no download — and remembers the choice.

Nothing is downloaded: torch's download function is replaced (it fails, or "downloads" by writing a network
of random weights made here), and so is the file dialog. Training runs in this process (not in a child
process) so that the replacements apply to it; the last test checks that the error comes back from the
training process too.
"""

from __future__ import annotations

import functools
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QFileDialog

from guitools import BrokenMethod, run_job
from photocluster.errors import WeightsUnavailable
from photocluster.methods import base
from photocluster.methods.recommend import NO_WEIGHTS_CHOICE

pytestmark = pytest.mark.gui


def random_weights(backbone: str, path: Path) -> Path:
    """A real state dict of ``backbone`` with random weights (the layout torchvision's file has)."""
    from photocluster.features.pretrained import BACKBONES

    torch.manual_seed(0)
    torch.save(BACKBONES[backbone].builder(weights=None).state_dict(), path)
    return path


class FakeDownload:
    """Stands in for ``torch.hub.download_url_to_file``: offline until ``online`` is set, then writes a
    network of random weights where the real file would go."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.online = False

    def __call__(self, url: str, dst: str, *args, **kwargs) -> None:
        self.calls.append(url)
        if not self.online:
            raise urllib.error.URLError("no network (test)")
        from photocluster.features.pretrained import BACKBONES, default_weights_url

        backbone = next(name for name in BACKBONES if default_weights_url(name) == url)
        random_weights(backbone, Path(dst))


@pytest.fixture
def offline(monkeypatch, tmp_path) -> FakeDownload:
    from photocluster.gui import jobs, main_window

    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "home"))  # no weights or embeddings cached
    download = FakeDownload()
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(main_window, "training_job", functools.partial(jobs.training_job, in_child_process=False))
    return download


@pytest.fixture
def failed(qtbot, window, generated_photos, offline, dialogs):
    """The window after the recommended method's training failed for want of its weights."""
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    window.method_picker.set_n_clusters(3)
    assert window.method_picker.choice == window.method_picker.recommended
    assert run_job(qtbot, window, window.start_training) == ("train", "failed")
    assert len(offline.calls) == 1 and not dialogs.shown  # no error box: the weights dialog instead
    dialog = window.weights_dialog
    assert dialog.isVisible()
    text = f"{dialog.text_label.text()} {dialog.reason_label.text()}"
    assert window.method_picker.choice.params["features"] in text and "could not download" in text
    assert not re.search(r"(^|\s)--?[a-z]", text), text  # no command-line flags
    assert [b.text() for b in (dialog.choose_button, dialog.retry_button, dialog.no_download_button)] == [
        "Choose a weights file…", "Try the download again", "Use a method that needs no download"]
    return window


def test_choosing_a_weights_file_trains_with_it_and_remembers_it(qtbot, failed, offline, make_window, tmp_path,
                                                                 monkeypatch):
    window = failed
    backbone = window.method_picker.choice.params["features"]
    weights = random_weights(backbone, tmp_path / "my network.pth")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(weights), "")))
    with qtbot.waitSignal(window.job_finished, timeout=120_000) as finished:
        window.weights_dialog.choose_button.click()
    assert finished.args == ["train", "done"]
    assert len(window.cluster_model.clusters()) == 3
    assert window.method_picker.method_params()["weights"] == str(weights)
    assert len(offline.calls) == 1  # the file was used: nothing downloaded again
    assert f"using the {backbone} weights file" in window.log_panel.toPlainText()
    window.close()
    again = make_window()  # the next run uses the file without asking
    assert again.method_picker.choice.params == window.method_picker.recommended.params
    assert again.method_picker.method_params()["weights"] == str(weights)


def test_a_file_that_is_no_known_network_is_refused_in_the_apps_words(failed, dialogs, tmp_path, monkeypatch):
    window = failed
    other = tmp_path / "notes.pth"
    torch.save({"layer.weight": torch.zeros(3, 3)}, other)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(other), "")))
    assert window.weights_dialog.choose_file() is False
    assert dialogs.shown and dialogs.shown[-1][0] == "Cannot use this weights file"
    text = dialogs.shown[-1][1]
    assert "notes.pth holds no weights of a network photocluster knows" in text
    assert not re.search(r"(^|\s)--?[a-z]", text), text
    assert window.weights_dialog.isVisible() and not window.busy  # the person can choose again
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    assert window.weights_dialog.choose_file() is False and window.weights_dialog.isVisible()  # cancelled


def test_trying_the_download_again_trains_once_it_works(qtbot, failed, offline):
    window = failed
    offline.online = True
    with qtbot.waitSignal(window.job_finished, timeout=120_000) as finished:
        window.weights_dialog.retry_button.click()
    assert finished.args == ["train", "done"]
    assert len(offline.calls) == 2 and len(window.cluster_model.clusters()) == 3
    assert window.method_picker.choice == window.method_picker.recommended
    assert window.settings.value("weights/decision") == "download"


def test_a_method_that_needs_no_download_is_used_and_remembered(qtbot, failed, offline, make_window):
    window = failed
    with qtbot.waitSignal(window.job_finished, timeout=120_000) as finished:
        window.weights_dialog.no_download_button.click()
    assert finished.args == ["train", "done"]
    assert window.method_picker.choice == NO_WEIGHTS_CHOICE
    assert window.method_picker.n_clusters() == 3  # the person's k is kept
    assert len(window.cluster_model.clusters()) == 3 and len(offline.calls) == 1
    assert [(r.method, r.status) for r in window.catalog.runs()] == [("kmeans", "failed"), ("kmeans", "finished")]
    window.close()
    again = make_window()  # the next run uses it without asking
    assert again.method_picker.choice == NO_WEIGHTS_CHOICE


class OfflineMethod(BrokenMethod):
    """Fails as a pre-trained method does offline (module level: the training process imports it by name)."""

    name = "test-offline"
    description = "A test method whose pre-trained weights cannot be downloaded."

    def fail(self) -> None:
        raise WeightsUnavailable("cannot get the pre-trained resnet18 weights (no network): … or pass --weights PATH",
                                 backbone="resnet18", url="https://example.invalid/resnet18.pth",
                                 target="/nowhere/resnet18.pth", reason="no network (test)")


def test_the_dialog_opens_when_the_training_process_cannot_download(qtbot, make_window, generated_photos, dialogs,
                                                                     monkeypatch):
    monkeypatch.setitem(base._REGISTRY, OfflineMethod.name, OfflineMethod)
    window = make_window()
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    window.method_picker.set_method(OfflineMethod.name)
    assert run_job(qtbot, window, window.start_training) == ("train", "failed")  # in a child process
    assert not dialogs.shown  # not an error box with the command line's message...
    dialog = window.weights_dialog  # ...the weights dialog, with what came back from the child
    assert dialog.isVisible() and "resnet18" in dialog.text_label.text()
    assert "example.invalid/resnet18.pth" in dialog.text_label.text() and "--weights" not in dialog.text_label.text()
    assert [(r.method, r.status) for r in window.catalog.runs()] == [(OfflineMethod.name, "failed")]
