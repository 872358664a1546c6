"""Widgets of the main window: method picker, progress panel, log panel, cluster list and photo grid views."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDoubleValidator, QFont, QFontMetrics, QPainter, QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
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
    QStyle,
    QStyledItemDelegate,
    QStyleOptionFrame,
    QStyleOptionViewItem,
    QToolButton,
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


#: parameters a choice is about, shown next to it: the rest of a method's parameters sit under "Advanced"
_MAIN_PARAMS = ("features", "backbone", "weights")
#: item data roles of the method list: the choice's index in ``MethodPicker.choices`` and its one-line summary
_CHOICE_ROLE = Qt.ItemDataRole.UserRole + 1
_SUMMARY_ROLE = Qt.ItemDataRole.UserRole + 2
_HEADER_ROLE = Qt.ItemDataRole.UserRole + 3

#: the picker's last group: every installed method as its own defaults set it (what ``set_method`` selects)
EVERY_METHOD_TITLE = "Every method, with its own defaults"
EVERY_METHOD_SUMMARY = "for experiments: each method as its paper or library sets it up; the settings under Advanced"


def _first_clause(text: str, limit: int = 90) -> str:
    """The first sentence or clause of a method's description, at most ``limit`` characters."""
    text = " ".join((text or "").split())
    for stop in (". ", "; ", ": "):
        if stop in text:
            text = text.split(stop, 1)[0]
    text = text.rstrip(".")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class _ChoiceDelegate(QStyledItemDelegate):
    """Draws the method list's rows: group titles in bold, each choice indented with its summary after it."""

    INDENT = 18

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:  # noqa: D102
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        header = bool(index.data(_HEADER_ROLE))
        summary = str(index.data(_SUMMARY_ROLE) or "")
        text = opt.text
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected) and not header
        palette = opt.palette  # (a title is a disabled item: drawn in the active colours all the same)
        active = QPalette.ColorGroup.Active
        text_colour = palette.color(active, QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        rect = opt.rect.adjusted(6 if header else self.INDENT, 0, -6, 0)
        painter.save()
        font = QFont(opt.font)
        font.setBold(header)
        painter.setFont(font)
        painter.setPen(text_colour)
        metrics = QFontMetrics(font)
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        if summary:
            small = QFont(opt.font)
            small.setPointSizeF(small.pointSizeF() * 0.9)
            painter.setFont(small)
            if not selected:
                painter.setPen(palette.color(active, QPalette.ColorRole.PlaceholderText))
            rest = rect.adjusted(metrics.horizontalAdvance(text) + 12, 0, 0, 0)
            elided = QFontMetrics(small).elidedText(summary, Qt.TextElideMode.ElideRight, max(0, rest.width()))
            painter.drawText(rest, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), elided)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:  # noqa: D102
        base = super().sizeHint(option, index)
        header = bool(index.data(_HEADER_ROLE))
        font = QFont(option.font)
        font.setBold(header)
        small = QFont(option.font)
        small.setPointSizeF(small.pointSizeF() * 0.9)
        text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        summary = str(index.data(_SUMMARY_ROLE) or "")
        width = (6 if header else self.INDENT) + QFontMetrics(font).horizontalAdvance(text) + 18
        if summary:
            width += 12 + QFontMetrics(small).horizontalAdvance(summary)
        return QSize(width, base.height() + (10 if header else 4))


class _PathEdit(QLineEdit):
    """A line edit for a file's path that, without the focus, shows the path's end ("…/weights/net.pth")
    rather than a cut-off middle, so the file's name is always readable."""

    def paintEvent(self, event) -> None:  # noqa: N802 — Qt API
        option = QStyleOptionFrame()
        self.initStyleOption(option)
        rect = self.style().subElementRect(QStyle.SubElement.SE_LineEditContents, option, self).adjusted(2, 0, -2, 0)
        text = self.text()
        if self.hasFocus() or self.fontMetrics().horizontalAdvance(text) <= rect.width():
            super().paintEvent(event)
            return
        painter = QPainter(self)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_PanelLineEdit, option, painter, self)
        group = QPalette.ColorGroup.Active if self.isEnabled() else QPalette.ColorGroup.Disabled
        painter.setPen(self.palette().color(group, QPalette.ColorRole.Text))
        elided = self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideLeft, rect.width())
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), elided)
        painter.end()


class MethodPicker(QWidget):
    """Choose what to run, from the choices of :func:`photocluster.methods.recommend.method_groups`.

    The list shows the groups (Recommended / Paper methods trained from scratch / Classical) under their
    titles, each choice with one line on when to use it, then every installed method with its own defaults.
    It opens on the recommended choice for this machine, with the number of clusters on "auto". Next to
    the choice: the number of clusters, the device and what the choice is about (its features, backbone,
    weights); every other parameter sits in the collapsed "Advanced" section.
    """

    method_changed = Signal(str)
    #: emitted with the :class:`~photocluster.methods.recommend.MethodChoice` selected
    choice_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None, weights_files: dict[str, str] | None = None) -> None:
        super().__init__(parent)
        from photocluster.methods.base import list_methods, method_class
        from photocluster.methods.recommend import MethodChoice, method_groups, recommended_choice

        #: weights files chosen by the user, by backbone: used where a choice would download that backbone's
        self.weights_files: dict[str, str] = dict(weights_files or {})
        self.found_device = self._resolved_device()

        self.method_combo = QComboBox()
        self.method_combo.setAccessibleName("Method")
        self.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(16)
        self._list_model = QStandardItemModel(self.method_combo)
        self.method_combo.setModel(self._list_model)
        self.method_combo.setItemDelegate(_ChoiceDelegate(self.method_combo))
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.description_label = QLabel()  # the method's own description, under Advanced
        self.description_label.setWordWrap(True)
        self.description_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.description_label.font()
        font.setPointSizeF(font.pointSizeF() * 0.92)
        self.description_label.setFont(font)
        self.summary_label.setFont(font)

        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(1, 1000)
        self.clusters_spin.setSpecialValueText("auto")  # 1 cluster is meaningless, so the minimum means "auto"
        self.clusters_spin.setValue(self.clusters_spin.minimum())
        self.clusters_spin.setToolTip("Number of clusters; 'auto' lets photocluster estimate it")
        self.chosen_k_label = QLabel()  # what "auto" chose in the last run, and how sure it was
        self.chosen_k_label.setWordWrap(True)

        self.device_combo = QComboBox()
        for name in ("auto", "cpu", "cuda", "mps"):
            self.device_combo.addItem(name, name)
        self.device_label = QLabel(self._found_device())
        self.device_label.setWordWrap(True)

        # The method's settings for a photo folder (photocluster.methods.base.photo_preset); the paper
        # schedules are for benchmarks and would take hours or days here.
        self.preset_combo = QComboBox()
        self.preset_combo.addItem("Fast — minutes on a laptop", "fast")
        self.preset_combo.addItem("Thorough — a longer training", "thorough")
        self.preset_combo.setToolTip("How long the method may train. The time and memory it will take are "
                                     "estimated on your photos before training starts.")

        self.param_form = QFormLayout()  # the choice's own parameters (features, backbone, weights)
        self.param_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.advanced_form = QFormLayout()  # everything else
        self.advanced_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._param_widgets: dict[str, tuple[Any, QWidget]] = {}  # name -> (spec, widget)
        self._extra_params: dict[str, Any] = {}

        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setChecked(False)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.setToolTip("The method's research parameters: leave them as they are unless you "
                                        "are experimenting")
        self.advanced_widget = QWidget()
        advanced_layout = QVBoxLayout(self.advanced_widget)
        advanced_layout.setContentsMargins(12, 0, 0, 0)
        advanced_layout.addWidget(self.description_label)
        advanced_layout.addLayout(self.advanced_form)
        self.advanced_widget.setVisible(False)
        self.advanced_button.toggled.connect(self._show_advanced)

        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        top.addRow("Method", self.method_combo)
        top.addRow(self.summary_label)
        clusters_row = QHBoxLayout()
        clusters_row.addWidget(self.clusters_spin)
        clusters_row.addWidget(self.chosen_k_label, 1)
        top.addRow("Clusters", clusters_row)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_label, 1)
        top.addRow("Device", device_row)
        top.addRow("Settings", self.preset_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(self.param_form)
        layout.addWidget(self.advanced_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.advanced_widget)

        # -- the list: the groups' choices, then every installed method with its own defaults -------------
        self.choices: list[Any] = []
        groups = [(g.title, g.summary, list(g.choices)) for g in method_groups(self.found_device)]
        every = []
        for name in list_methods():
            every.append(MethodChoice(name, name, {}, _first_clause(method_class(name).description or "")))
        groups.append((EVERY_METHOD_TITLE, EVERY_METHOD_SUMMARY, every))
        self._own_defaults: dict[str, int] = {}  # method name -> its entry in the last group
        for title, summary, choices in groups:
            header = QStandardItem(title)
            header.setFlags(Qt.ItemFlag.NoItemFlags)  # a title: neither selectable nor enabled
            header.setData(True, _HEADER_ROLE)
            header.setData(summary, _SUMMARY_ROLE)
            header.setToolTip(summary)
            self._list_model.appendRow(header)
            for choice in choices:
                item = QStandardItem(choice.label)
                item.setData(len(self.choices), _CHOICE_ROLE)
                item.setData(choice.summary, _SUMMARY_ROLE)
                item.setToolTip(choice.summary)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                if title == EVERY_METHOD_TITLE:
                    self._own_defaults[choice.method] = len(self.choices)
                self.choices.append(choice)
                self._list_model.appendRow(item)
        self.recommended = recommended_choice(self.found_device)
        self.method_combo.view().setMinimumWidth(
            max(self.method_combo.view().sizeHintForColumn(0) + 24, 300))
        self.method_combo.currentIndexChanged.connect(self._rebuild)
        self.set_choice(self.recommended)

    @staticmethod
    def _resolved_device() -> str:
        """The device "auto" stands for here ("cpu", "cuda", "mps"): the recommendation depends on it."""
        try:
            from photocluster.devices import resolve_device

            return str(resolve_device("auto"))
        except Exception:  # noqa: BLE001 — a broken driver: recommend for the CPU
            return "cpu"

    @staticmethod
    def _found_device() -> str:
        try:
            from photocluster.devices import describe_device, resolve_device

            return f"found: {describe_device(resolve_device('auto'))}"
        except Exception as exc:  # noqa: BLE001 — a broken driver must not keep the window from opening
            return f"device check failed: {exc}"

    def _show_advanced(self, shown: bool) -> None:
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.advanced_widget.setVisible(shown)

    # -- state --------------------------------------------------------------------------------
    @property
    def choice(self) -> Any:
        """The selected :class:`~photocluster.methods.recommend.MethodChoice` (None only with no methods)."""
        index = self.method_combo.currentData(_CHOICE_ROLE)
        return None if index is None else self.choices[int(index)]

    @property
    def method_name(self) -> str:
        choice = self.choice
        return choice.method if choice is not None else ""

    def set_choice(self, choice: Any) -> None:
        """Select a choice: a :class:`MethodChoice` of the list (or one equal to it), or its label."""
        for index, known in enumerate(self.choices):
            if known == choice or known.label == choice:
                row = self._row_of_choice(index)
                if row == self.method_combo.currentIndex():
                    self._rebuild()  # selecting the same choice again applies its parameters again
                else:
                    self.method_combo.setCurrentIndex(row)
                return
        raise ValueError(f"no method choice {getattr(choice, 'label', choice)!r}")

    def set_method(self, name: str) -> None:
        """Select method ``name`` with its own defaults (as ``--method NAME`` on the command line)."""
        index = self._own_defaults.get(name)
        if index is None:
            raise ValueError(f"method {name!r} is not available")
        self.method_combo.setCurrentIndex(self._row_of_choice(index))

    def _row_of_choice(self, index: int) -> int:
        for row in range(self._list_model.rowCount()):
            if self._list_model.item(row).data(_CHOICE_ROLE) == index:
                return row
        raise ValueError(f"no row for choice {index}")

    def n_clusters(self) -> int | None:
        """The chosen number of clusters, or None for "auto"."""
        value = self.clusters_spin.value()
        return None if value == self.clusters_spin.minimum() else value

    def set_n_clusters(self, value: int | None) -> None:
        self.clusters_spin.setValue(self.clusters_spin.minimum() if value is None else value)

    def show_chosen_k(self, k: int | None, how: str = "") -> None:
        """Say what "auto" chose in the last run and how sure it was (``how``: the pipeline's sentence,
        "k = 5 (…; clear: silhouette …)"); None clears it (the last run was given its k)."""
        if k is None:
            self.chosen_k_label.clear()
            self.chosen_k_label.setToolTip("")
            return
        sure = next((word for word in ("clear", "likely", "uncertain") if f"; {word}:" in how), "")
        self.chosen_k_label.setText(f"last run: {k}" + (f", {sure}" if sure else ""))
        self.chosen_k_label.setToolTip(how)

    @property
    def device(self) -> str:
        return str(self.device_combo.currentData())

    @property
    def preset(self) -> str:
        """"fast" or "thorough": the method's settings for a photo folder."""
        return str(self.preset_combo.currentData())

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
                if widget.findData(value) < 0:  # shown as it is, not silently replaced by the first entry
                    widget.addItem(str(value), value)
                widget.setCurrentIndex(widget.findData(value))
            elif isinstance(widget, QLineEdit):
                widget.setText("" if value is None else str(value))
                if name == "weights":  # a file's path may be longer than the field: its name shows, all of it
                    widget.setToolTip(f"{entry[0].help}\n\n{value}")  # in the tooltip
        self._update_weights_row()

    def use_weights_file(self, path: str, backbone: str) -> None:
        """Run the selected choice with the weights file ``path`` of network ``backbone`` (recognised from
        the file), and use it from now on wherever a choice would download that network's weights."""
        self.weights_files[backbone] = str(path)
        values: dict[str, Any] = {"weights": str(path)}
        for name in ("features", "backbone"):
            if name in self._param_widgets:
                values[name] = backbone
        self.set_param_values({**self._extra_params, **values})

    def method_params(self) -> dict[str, Any]:
        """Everything to build the method with: form values, extras, n_clusters and device where accepted."""
        from photocluster.methods.base import method_class

        cls = method_class(self.method_name)
        accepted = set(cls._param_names())
        params = {**self.param_values(), **self._extra_params}
        if "device" in accepted:
            params["device"] = self.device
        if "n_clusters" in accepted and self.n_clusters() is not None:
            params["n_clusters"] = self.n_clusters()
        return {k: v for k, v in params.items() if k in accepted}

    # -- form -----------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        from photocluster.methods.base import method_class

        for form in (self.param_form, self.advanced_form):
            while form.rowCount():
                form.removeRow(0)
        self._param_widgets.clear()
        self._extra_params = {}
        choice = self.choice
        if choice is None:
            self.summary_label.setText("No clustering methods are installed.")
            self.description_label.setText("")
            return
        cls = method_class(choice.method)
        self.summary_label.setText(choice.summary[:1].upper() + choice.summary[1:] if choice.summary else "")
        self.description_label.setText(cls.description or "")
        for spec in cls.parameter_specs():
            if spec.name in _DEDICATED_PARAMS:
                continue
            widget = self._widget_for(spec)
            widget.setToolTip(spec.help)
            self._param_widgets[spec.name] = (spec, widget)
            label = spec.name.replace("_", " ")  # (under Advanced: the names the docs and -p use)
            if spec.name == "weights":
                self.param_form.addRow(label.capitalize(), self._weights_row(widget))
            elif spec.name in _MAIN_PARAMS:
                self.param_form.addRow(label.capitalize(), widget)
            else:
                self.advanced_form.addRow(label, widget)
            if spec.name in ("features", "backbone") and isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(lambda *_: self._update_weights_row())
        self.advanced_button.setVisible(self.advanced_form.rowCount() > 0)
        params = dict(choice.params)
        network = params.get("features") or params.get("backbone")
        if str(params.get("weights", "default")).lower() == "default" and network in self.weights_files:
            params["weights"] = self.weights_files[network]
        self.set_param_values(params)
        self.method_changed.emit(choice.method)
        self.choice_changed.emit(choice)

    def _weights_row(self, edit: QWidget) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        browse = QToolButton()
        browse.setText("Choose…")
        browse.setToolTip("Use a weights file you have (the network it is for is recognised from the file)")
        browse.clicked.connect(self._choose_weights_file)
        layout.addWidget(browse)
        self._weights_row_widget = row
        return row

    def _choose_weights_file(self) -> None:
        from photocluster.gui.dialogs import choose_weights_file

        chosen = choose_weights_file(self)
        if chosen is not None:
            self.use_weights_file(*chosen)

    def _update_weights_row(self) -> None:
        """The weights row shows only when the features (or backbone) are a pre-trained network."""
        from photocluster.features.pretrained import BACKBONES

        if "weights" not in self._param_widgets:
            return
        network = self.param_values().get("features", self.param_values().get("backbone"))
        visible = network is None or network in BACKBONES
        row = getattr(self, "_weights_row_widget", None)
        if row is not None:
            self.param_form.setRowVisible(row, visible)

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
        edit = (_PathEdit if spec.name == "weights" else QLineEdit)("" if spec.default is None else str(spec.default))
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
