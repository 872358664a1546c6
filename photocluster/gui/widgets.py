"""Widgets of the main window: method picker, progress panel, log panel, cluster list and photo grid views."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDoubleValidator, QFont, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from photocluster.progress import ProgressEvent

#: parameters that have their own widget (or are not for the user to set in the app)
_DEDICATED_PARAMS = {"n_clusters", "device", "checkpoint_dir", "verbose"}


def format_eta(seconds: float | None) -> str:
    """``None`` → "", 75 → "1:15", 3725 → "1:02:05"."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_event(event: ProgressEvent) -> str:
    """The progress line: stage · step/total · loss · other metrics · ETA."""
    parts = [event.stage]
    if event.total:
        parts.append(f"step {event.step}/{event.total}")
    elif event.step:
        parts.append(f"step {event.step}")
    metrics = dict(event.metrics)
    if "loss" in metrics:
        parts.append(f"loss {metrics.pop('loss'):.4g}")
    for key, value in list(metrics.items())[:3]:
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    eta = format_eta(event.eta_seconds)
    if eta:
        parts.append(f"ETA {eta}")
    return " · ".join(parts)


class MethodPicker(QWidget):
    """Choose a method, see its description, set its main parameters, the number of clusters and the device."""

    method_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from photocluster.methods.base import list_methods

        self.method_combo = QComboBox()
        self.method_combo.setAccessibleName("Method")
        self.description_label = QLabel()
        self.description_label.setWordWrap(True)
        self.description_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.description_label.font()
        font.setPointSizeF(font.pointSizeF() * 0.92)
        self.description_label.setFont(font)

        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(1, 1000)
        self.clusters_spin.setSpecialValueText("auto")  # 1 cluster is meaningless, so the minimum means "auto"
        self.clusters_spin.setValue(5)
        self.clusters_spin.setToolTip("Number of clusters; 'auto' lets photocluster estimate it")

        self.device_combo = QComboBox()
        for name in ("auto", "cpu", "cuda", "mps"):
            self.device_combo.addItem(name, name)
        self.device_label = QLabel(self._found_device())
        self.device_label.setWordWrap(True)

        self.param_form = QFormLayout()
        self.param_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._param_widgets: dict[str, tuple[Any, QWidget]] = {}  # name -> (spec, widget)

        top = QFormLayout()
        top.addRow("Method", self.method_combo)
        top.addRow(self.description_label)
        top.addRow("Clusters", self.clusters_spin)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_label, 1)
        top.addRow("Device", device_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(self.param_form)

        names = list_methods()
        for name in names:
            self.method_combo.addItem(name, name)
        self.method_combo.currentIndexChanged.connect(self._rebuild)
        if "kmeans" in names:
            self.method_combo.setCurrentIndex(names.index("kmeans"))
        self._rebuild()

    @staticmethod
    def _found_device() -> str:
        try:
            from photocluster.devices import describe_device, resolve_device

            return f"found: {describe_device(resolve_device('auto'))}"
        except Exception as exc:  # noqa: BLE001 — a broken driver must not keep the window from opening
            return f"device check failed: {exc}"

    # -- state --------------------------------------------------------------------------------
    @property
    def method_name(self) -> str:
        return str(self.method_combo.currentData() or "")

    def set_method(self, name: str) -> None:
        index = self.method_combo.findData(name)
        if index < 0:
            raise ValueError(f"method {name!r} is not available")
        self.method_combo.setCurrentIndex(index)

    def n_clusters(self) -> int | None:
        """The chosen number of clusters, or None for "auto"."""
        value = self.clusters_spin.value()
        return None if value == self.clusters_spin.minimum() else value

    def set_n_clusters(self, value: int | None) -> None:
        self.clusters_spin.setValue(self.clusters_spin.minimum() if value is None else value)

    @property
    def device(self) -> str:
        return str(self.device_combo.currentData())

    def param_values(self) -> dict[str, Any]:
        """The parameters set in the form, typed as the method expects (empty text → the default)."""
        values: dict[str, Any] = {}
        for name, (spec, widget) in self._param_widgets.items():
            if isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, QSpinBox):
                values[name] = widget.value()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentData()
            elif isinstance(widget, QLineEdit):
                text = widget.text().strip()
                if not text:
                    values[name] = spec.default
                elif spec.kind is float:
                    values[name] = float(text)
                elif spec.kind is int:
                    values[name] = int(text)
                else:
                    values[name] = text
        return values

    def set_param_values(self, values: dict[str, Any]) -> None:
        """Fill the form (e.g. with a method's ``smoke_params``); unknown names are set as hidden extras."""
        self._extra_params = {}
        for name, value in values.items():
            if name == "n_clusters":
                self.set_n_clusters(value)
                continue
            entry = self._param_widgets.get(name)
            if entry is None:
                self._extra_params[name] = value
                continue
            _, widget = entry
            if isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QSpinBox):
                widget.setValue(int(value))
            elif isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(0, widget.findData(value)))
            elif isinstance(widget, QLineEdit):
                widget.setText("" if value is None else str(value))

    def method_params(self) -> dict[str, Any]:
        """Everything to build the method with: form values, extras, n_clusters and device where accepted."""
        from photocluster.methods.base import method_class

        cls = method_class(self.method_name)
        accepted = set(cls._param_names())
        params = {**self.param_values(), **getattr(self, "_extra_params", {})}
        if "device" in accepted:
            params["device"] = self.device
        if "n_clusters" in accepted and self.n_clusters() is not None:
            params["n_clusters"] = self.n_clusters()
        return {k: v for k, v in params.items() if k in accepted}

    # -- form -----------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        from photocluster.methods.base import method_class

        while self.param_form.rowCount():
            self.param_form.removeRow(0)
        self._param_widgets.clear()
        self._extra_params = {}
        name = self.method_name
        if not name:
            self.description_label.setText("No clustering methods are installed.")
            return
        cls = method_class(name)
        self.description_label.setText(cls.description or "")
        for spec in cls.parameter_specs():
            if spec.name in _DEDICATED_PARAMS:
                continue
            widget = self._widget_for(spec)
            widget.setToolTip(spec.help)
            self._param_widgets[spec.name] = (spec, widget)
            self.param_form.addRow(spec.name.replace("_", " "), widget)
        self.method_changed.emit(name)

    @staticmethod
    def _widget_for(spec: Any) -> QWidget:
        if spec.choices:
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(str(choice), choice)
            combo.setCurrentIndex(max(0, combo.findData(spec.default)))
            return combo
        if spec.kind is bool:
            box = QCheckBox()
            box.setChecked(bool(spec.default))
            return box
        if spec.kind is int and spec.default is not None:
            spin = QSpinBox()
            spin.setRange(int(spec.minimum) if spec.minimum is not None else -(2**31),
                          int(spec.maximum) if spec.maximum is not None else 2**31 - 1)
            spin.setValue(int(spec.default))
            return spin
        edit = QLineEdit("" if spec.default is None else str(spec.default))
        if spec.default is None:
            edit.setPlaceholderText("default")
        if spec.kind is float:
            # A line edit, not a spin box: learning rates like 1e-4 need scientific notation.
            validator = QDoubleValidator(edit)
            validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
            edit.setValidator(validator)
        return edit


class ProgressPanel(QWidget):
    """A progress bar with the stage, step, loss and ETA under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.detail_label = QLabel("Idle")
        self.detail_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail_label)
        self.last_event: ProgressEvent | None = None

    def show_event(self, event: ProgressEvent) -> None:
        self.last_event = event
        if event.total:
            self.bar.setRange(0, int(event.total))
            self.bar.setValue(min(int(event.step), int(event.total)))
            self.bar.setFormat(f"{event.stage}: %p%")
        else:
            self.bar.setRange(0, 0)  # busy indicator: the stage has no known length
        self.detail_label.setText(describe_event(event))

    def set_idle(self, text: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.detail_label.setText(text)

    def set_done(self, text: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.bar.setFormat("done")
        self.detail_label.setText(text)


class LogPanel(QPlainTextEdit):
    """Read-only log with timestamps; bounded so a long run cannot grow it without limit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self.setPlaceholderText("Messages from scanning and training appear here.")

    def log(self, text: str) -> None:
        self.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")


class _HintingListView(QListView):
    """A list view that says what will appear in it while it is empty."""

    placeholder_text = ""

    def paintEvent(self, event) -> None:  # noqa: N802 — Qt API
        super().paintEvent(event)
        model = self.model()
        if self.placeholder_text and (model is None or model.rowCount() == 0):
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            rect = self.viewport().rect().adjusted(16, 16, -16, -16)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder_text)
            painter.end()


class ClusterListView(_HintingListView):
    """The cluster list: rename in place, drop photos onto a cluster, drag a cluster out to a folder."""

    placeholder_text = "Clusters appear here after training.\n\nDouble-click a name to rename it; drop photos on a cluster to move them; drag a cluster to a folder to copy its photos there."

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setIconSize(QSize(56, 56))
        self.setSpacing(2)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDragDropOverwriteMode(True)  # drop *onto* a cluster, never between two
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setAccessibleName("Clusters")


class PhotoGridView(_HintingListView):
    """The thumbnail grid: icon mode, uniform item sizes and batched layout so 100,000 photos stay smooth."""

    placeholder_text = "The photos of the selected cluster appear here. Double-click one for a large preview."

    def __init__(self, thumbnail_size: int = 128, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(thumbnail_size, thumbnail_size))
        self.setGridSize(QSize(thumbnail_size + 12, thumbnail_size + 12))
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(2000)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setAccessibleName("Photos")
