"""The method picker: the recommended choice first, the groups under their titles, research settings under
a collapsed "Advanced", and every choice's parameters applied when it is selected."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt

from photocluster.methods.recommend import NO_WEIGHTS_CHOICE, method_groups, recommended_choice

pytestmark = pytest.mark.gui


def rows(picker):
    """(text, is a group title, summary shown) of each row of the method list, in order."""
    from photocluster.gui.widgets import _HEADER_ROLE, _SUMMARY_ROLE

    model = picker.method_combo.model()
    return [(model.item(r).text(), bool(model.item(r).data(_HEADER_ROLE)), model.item(r).data(_SUMMARY_ROLE))
            for r in range(model.rowCount())]


def form_names(form) -> list[str]:
    from PySide6.QtWidgets import QFormLayout

    return [form.itemAt(r, QFormLayout.ItemRole.LabelRole).widget().text() for r in range(form.rowCount())]


def test_the_default_method_is_the_recommended_one_with_k_auto(window):
    picker = window.method_picker
    recommended = recommended_choice(picker.found_device)
    assert picker.choice == recommended and picker.method_name == recommended.method
    assert picker.method_combo.currentText() == recommended.label
    assert picker.n_clusters() is None and picker.clusters_spin.text() == "auto"
    params = picker.method_params()
    assert "n_clusters" not in params  # k is chosen automatically
    assert {k: params[k] for k in recommended.params} == recommended.params
    assert picker.summary_label.text().lower() == recommended.summary.lower()


def test_the_groups_are_listed_under_titles_that_cannot_be_selected(window):
    from photocluster.gui.widgets import EVERY_METHOD_TITLE

    picker = window.method_picker
    groups = method_groups(picker.found_device)
    listed = rows(picker)
    titles = [text for text, header, _ in listed if header]
    assert titles == [g.title for g in groups] + [EVERY_METHOD_TITLE]
    model = picker.method_combo.model()
    for row, (text, header, summary) in enumerate(listed):
        flags = model.item(row).flags()
        assert bool(flags & Qt.ItemFlag.ItemIsSelectable) is not header, text
        assert bool(flags & Qt.ItemFlag.ItemIsEnabled) is not header, text
    # each group's choices follow its title, in order, each with its one-line summary (shown and as tooltip)
    position = 0
    for group in groups:
        assert listed[position] == (group.title, True, group.summary)
        for offset, choice in enumerate(group.choices, 1):
            assert listed[position + offset] == (choice.label, False, choice.summary)
            assert model.item(position + offset).toolTip() == choice.summary
        position += 1 + len(group.choices)


def test_advanced_is_collapsed_and_holds_the_research_parameters(qtbot, window):
    picker = window.method_picker
    assert not picker.advanced_button.isChecked()
    assert not picker.advanced_widget.isVisibleTo(window) and picker.advanced_button.isVisibleTo(window)
    assert form_names(picker.param_form) == ["Features", "Weights"]  # the choice's own: shown
    assert {"n init", "max iter", "random state"} <= set(form_names(picker.advanced_form))
    picker.set_choice("CCNN")  # a paper method's settings (eta, n m, k m …) are all under Advanced
    assert form_names(picker.param_form) == ["Backbone", "Weights"]
    assert {"eta", "n m", "k m", "adapt channels"} <= set(form_names(picker.advanced_form))
    assert not picker.advanced_widget.isVisibleTo(window)
    qtbot.mouseClick(picker.advanced_button, Qt.MouseButton.LeftButton)
    assert picker.advanced_widget.isVisibleTo(window)
    assert picker.description_label.isVisibleTo(window) and picker.description_label.text()
    qtbot.mouseClick(picker.advanced_button, Qt.MouseButton.LeftButton)
    assert not picker.advanced_widget.isVisibleTo(window)


def test_selecting_a_choice_applies_its_parameters(window):
    picker = window.method_picker
    picker.set_n_clusters(4)
    model = picker.method_combo.model()
    for group in method_groups(picker.found_device):
        for choice in group.choices:
            row = next(r for r in range(model.rowCount()) if model.item(r).text() == choice.label)
            picker.method_combo.setCurrentIndex(row)  # as a click in the list does
            assert picker.choice == choice and picker.method_name == choice.method
            params = picker.method_params()
            assert {k: params[k] for k in choice.params} == choice.params, choice.label
            assert params["n_clusters"] == 4  # k stays as the person set it
    # the weights row shows only where the features are a pre-trained network
    picker.set_choice(NO_WEIGHTS_CHOICE)
    assert picker.method_params()["features"] == "hog-color"
    assert not picker.param_form.isRowVisible(picker._weights_row_widget)
    picker.set_choice(picker.recommended)
    assert picker.param_form.isRowVisible(picker._weights_row_widget)


def test_set_method_selects_a_method_with_its_own_defaults(window):
    from photocluster.methods.base import method_class

    picker = window.method_picker
    picker.set_method("kmeans")
    assert picker.choice.label == "kmeans" and picker.method_params()["features"] == "raw"
    picker.set_method("test-slow")  # installed methods outside the groups are listed too
    assert picker.description_label.text() == method_class("test-slow").description
    with pytest.raises(ValueError):
        picker.set_method("no-such-method")


def test_the_chosen_method_is_there_when_the_app_opens_again(make_window):
    first = make_window()
    first.method_picker.set_choice("MMDC")
    first.close()
    second = make_window()
    assert second.method_picker.choice.label == "MMDC"


def test_after_an_automatic_k_the_picker_says_what_was_chosen_and_how_sure(qtbot, window, generated_photos):
    from guitools import run_job

    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    picker = window.method_picker
    picker.set_choice(NO_WEIGHTS_CHOICE)
    assert picker.n_clusters() is None and not picker.chosen_k_label.text()
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    k = len(window.cluster_model.clusters())
    sure = re.fullmatch(rf"last run: {k}, (clear|likely|uncertain)", picker.chosen_k_label.text())
    assert sure, picker.chosen_k_label.text()
    assert picker.chosen_k_label.toolTip().startswith(f"k = {k} (") and "silhouette" in picker.chosen_k_label.toolTip()
    picker.set_n_clusters(3)  # a k given by the person: nothing to explain
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    assert not picker.chosen_k_label.text()


def test_the_settings_default_to_fast_and_thorough_reaches_the_training(window, monkeypatch):
    picker = window.method_picker
    assert picker.preset == "fast"
    picker.preset_combo.setCurrentIndex(picker.preset_combo.findData("thorough"))
    started = {}
    monkeypatch.setattr(window, "scan_report", type("Report", (), {"photos": ["p.jpg"]})(), raising=False)
    monkeypatch.setattr(window, "_start_job", lambda name, func, *args, **kwargs: started.update(kwargs) or True)
    assert window.start_training() is not False
    assert started["preset"] == "thorough"
