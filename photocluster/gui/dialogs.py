"""Dialogs: the error dialog (always with the reason), the large photo preview and the export dialog.

The export dialog drives the library's export (plan → journal → execute): it shows the plan as a dry run
before anything is written, runs the export in a worker thread with a progress bar and Cancel, and lists
what was done. Photos are never overwritten or lost: those rules live in ``photocluster.library.export``.
"""

from __future__ import annotations

import html
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from photocluster.gui.models import load_thumbnail_image
from photocluster.gui.workers import CancellableWorker, start_worker
from photocluster.library.scan import display_path
from photocluster.progress import CancelToken, ProgressEvent

EXPORT_MODES = (
    ("copy", "Copy (originals stay where they are)"),
    ("move", "Move (copy, verify, then delete the original)"),
    ("hardlink", "Hard link (same disk only, no extra space)"),
    ("symlink", "Symbolic link"),
)


def error_reason(error: BaseException) -> str:
    """One line a person can act on: the exception's message, or its type when it has none."""
    text = str(error).strip()
    return text if text else type(error).__name__


def show_error(parent: QWidget | None, title: str, error: BaseException | str) -> QMessageBox:
    """Show a modal error dialog with the reason, and the traceback under "Show Details".

    Returns the message box (tests replace ``QMessageBox.exec`` to inspect it instead of blocking).
    """
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    if isinstance(error, BaseException):
        box.setText(f"{title}: {error_reason(error)}")
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if details.strip():
            box.setDetailedText(details)
    else:
        box.setText(f"{title}: {error}")
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()
    return box


def show_warning(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    """Show a warning about a result that finished but should not be trusted as it is, without blocking.

    Window-modal and opened with ``open()``, not ``exec()``: the caller (a job's result slot) returns at
    once instead of running a nested event loop until the person clicks OK.
    """
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


# -- preview ----------------------------------------------------------------------------------------
def _load_preview(path: str, size: int, cancel: CancelToken) -> Iterator[None]:
    yield  # gives the worker a chance to notice a cancel before the (possibly slow) decode
    return load_thumbnail_image(path, size)


class PreviewDialog(QDialog):
    """A large view of one photo, decoded off the GUI thread (big JPEGs take a while)."""

    loaded = Signal()

    def __init__(self, path: str, caption: str = "", parent: QWidget | None = None, size: int = 1600) -> None:
        super().__init__(parent)
        self.path = path
        self.setWindowTitle(Path(path).name)
        self.resize(900, 700)
        self.image_label = QLabel("Loading…")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        scroll = QScrollArea()
        scroll.setWidget(self.image_label)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        info = QLabel(caption or path)
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info.setWordWrap(True)
        layout.addWidget(info)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.image: QImage | None = None
        self._worker = start_worker(_load_preview, path, size, connect={"returned": self._show_image})

    def _show_image(self, image: QImage) -> None:
        self.image = image
        if image.isNull():
            self.image_label.setText("This photo could not be decoded.")
        else:
            self.image_label.setPixmap(QPixmap.fromImage(image))
        self.loaded.emit()

    def done(self, result: int) -> None:
        self._worker.quit()
        super().done(result)


# -- export -----------------------------------------------------------------------------------------
def _export_job(plan: Any, cancel: CancelToken) -> Iterator[ProgressEvent]:
    from photocluster.library.export import prepare_export, run_export

    # As the folder mode does: the destination is locked (an export running into it already makes this
    # one fail with "the destination … is busy"), and an export into it interrupted earlier is finished first.
    with prepare_export(plan.destination, plan.mode, cancel=cancel) as session:
        for line in session.recovered:
            yield ProgressEvent("export", message=f"recovered: {line}")
        plan.lock = session.lock
        yield from run_export(plan, cancel=cancel)
    return getattr(plan, "report", None)


class ExportDialog(QDialog):
    """Choose a destination and a mode, preview the plan (dry run), then export with progress and Cancel.

    Parameters
    ----------
    items_provider:
        Returns the ``ExportItem`` list (one per photo, with its cluster's name) when a plan is made, so the
        plan reflects the clusters as they are at that moment.
    default_destination:
        Pre-filled destination folder.
    """

    export_finished = Signal(object)  # the export report (or None)
    export_failed = Signal(object)  # the exception

    def __init__(
        self,
        items_provider: Callable[[], Sequence[Any]],
        default_destination: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export clusters")
        self.resize(760, 520)
        self._items_provider = items_provider
        self.plan: Any = None
        self.worker: CancellableWorker | None = None
        self.report: Any = None
        #: True from the start of an export until its ``finished`` signal was handled (GUI thread)
        self.exporting = False

        self.destination_edit = QLineEdit(default_destination)
        self.destination_edit.setPlaceholderText("Folder that will receive one sub-folder per cluster")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        destination_row = QHBoxLayout()
        destination_row.addWidget(self.destination_edit, 1)
        destination_row.addWidget(browse)

        self.mode_combo = QComboBox()
        for mode, label in EXPORT_MODES:
            self.mode_combo.addItem(label, mode)

        form = QFormLayout()
        form.addRow("Destination", destination_row)
        form.addRow("Mode", self.mode_combo)

        self.plan_view = QPlainTextEdit()
        self.plan_view.setReadOnly(True)
        self.plan_view.setPlaceholderText("Press Preview to see every file operation before anything is written.")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self.preview_button = QPushButton("Preview (dry run)")
        self.preview_button.clicked.connect(self.preview)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button = QPushButton("Cancel export")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Plan"))
        layout.addWidget(self.plan_view, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

    @property
    def mode(self) -> str:
        return str(self.mode_combo.currentData())

    def set_mode(self, mode: str) -> None:
        index = self.mode_combo.findData(mode)
        if index < 0:
            raise ValueError(f"unknown export mode {mode!r}")
        self.mode_combo.setCurrentIndex(index)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into", self.destination_edit.text())
        if folder:
            self.destination_edit.setText(folder)

    def make_plan(self) -> Any:
        """Plan the export for the current destination and mode (raises with a reason on bad input)."""
        from photocluster.library.export import plan_export

        destination = self.destination_edit.text().strip()
        if not destination:
            raise ValueError("choose a destination folder first")
        items = list(self._items_provider())
        if not items:
            raise ValueError("there are no clustered photos to export yet")
        return plan_export(items, destination=Path(destination).expanduser(), mode=self.mode)

    def preview(self) -> bool:
        """Show the plan without changing anything; False (and an error dialog) when it cannot be made."""
        try:
            self.plan = self.make_plan()
        except Exception as exc:  # noqa: BLE001 — every reason is shown to the user
            self.status_label.setText(f"Cannot plan the export: {error_reason(exc)}")
            show_error(self, "Cannot plan the export", exc)
            return False
        self.plan_view.setPlainText(self.plan.describe())
        self.status_label.setText("Dry run: nothing has been written yet.")
        return True

    def start_export(self) -> bool:
        """Plan (again, so it matches the disk now) and run the export in a worker thread."""
        if self.exporting:
            return False
        if not self.preview():
            return False
        self.progress.setRange(0, 0)
        self.export_button.setEnabled(False)
        self.preview_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText("Exporting…")
        self.exporting = True
        self.worker = start_worker(
            _export_job,
            self.plan,
            connect={
                "yielded": self._on_progress,
                "returned": self._on_returned,
                "errored": self._on_error,
                "aborted": self._on_aborted,
                "finished": self._on_finished,
            },
        )
        return True

    def cancel_export(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.status_label.setText("Cancelling… (files already exported stay; the journal records them)")

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
        if event.message:
            self.status_label.setText(event.message)

    def _on_returned(self, report: Any) -> None:
        self.report = report
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        summary = "Export finished."
        if report is not None:
            summary += f"\n{report}" if not hasattr(report, "summary") else f"\n{report.summary()}"
            # the failed photos by name, as the folder mode lists them
            summary += "".join(f"\nfailed: {display_path(source)}: {reason}"
                               for source, reason in getattr(report, "failed", []))
        self.status_label.setText(summary)
        self.export_finished.emit(report)

    def _on_error(self, error: BaseException) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label.setText(f"Export failed: {error_reason(error)}")
        self.export_failed.emit(error)
        show_error(self, "Export failed", error)

    def _on_aborted(self) -> None:
        self.progress.setRange(0, 1)
        self.status_label.setText("Export cancelled; files already exported are listed in the journal.")

    def _on_finished(self) -> None:
        self.exporting = False
        self.export_button.setEnabled(True)
        self.preview_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def reject(self) -> None:
        if self.exporting:
            self.cancel_export()
            return  # close once the worker has stopped; the user can press Close again
        super().reject()


# -- pre-trained weights that cannot be downloaded --------------------------------------------------
WEIGHTS_FILE_FILTER = "Network weights (*.pth *.pt *.bin *.ckpt);;All files (*)"


def choose_weights_file(parent: QWidget | None, start_dir: str = "") -> tuple[str, str] | None:
    """Ask for a weights file and recognise the network it is for: ``(path, backbone)``, or None when the
    person cancels or the file is not the weights of a network photocluster knows (then they are told why)."""
    from photocluster.errors import UsageError
    from photocluster.features.pretrained import BACKBONE_CHOICES, backbone_of_weights_file

    path, _ = QFileDialog.getOpenFileName(parent, "Choose a weights file", start_dir, WEIGHTS_FILE_FILTER)
    if not path:
        return None
    try:
        backbone = backbone_of_weights_file(path)
    except UsageError as exc:
        reason = str(exc)
        if "fits none" in reason:  # the command line's wording names its flags: say it in the app's words
            reason = (f"{Path(path).name} holds no weights of a network photocluster knows "
                      f"({', '.join(BACKBONE_CHOICES)})")
        show_error(parent, "Cannot use this weights file", reason)
        return None
    return path, backbone


class WeightsDialog(QDialog):
    """The network that recognises what is in photos could not be downloaded: say so in the app's words and
    offer a weights file the person has, another try, or a method that needs no download.

    ``decided`` carries the decision — :attr:`CHOOSE_FILE` (with ``(path, backbone)``), :attr:`RETRY` or
    :attr:`NO_DOWNLOAD` (with None) — and the dialog closes; the window applies and remembers it.
    """

    CHOOSE_FILE = "file"
    RETRY = "download"
    NO_DOWNLOAD = "none"

    decided = Signal(str, object)

    def __init__(self, error: Any, no_download: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("The photo network cannot be downloaded")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.decision: str | None = None
        self.weights_file: tuple[str, str] | None = None
        backbone = html.escape(getattr(error, "backbone", "") or "pre-trained")
        url = html.escape(getattr(error, "url", "") or "")
        reason = getattr(error, "reason", "") or error_reason(error)

        self.text_label = QLabel(
            f"<p>The method needs the <b>{backbone}</b> network, trained on ImageNet, to recognise what is in "
            "your photos, and photocluster could not download it.</p>"
            + (f"<p>On a computer that is online, the file is at<br><code>{url}</code><br>"
               "copy it to this computer and choose it below.</p>" if url else ""))
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reason_label = QLabel(f"Reason: {reason}")
        self.reason_label.setTextFormat(Qt.TextFormat.PlainText)  # "<urlopen error …>" is no HTML tag
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.reason_label.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.reason_label.setFont(font)

        self.choose_button = QPushButton("Choose a weights file…")
        self.choose_button.clicked.connect(self.choose_file)
        self.retry_button = QPushButton("Try the download again")
        self.retry_button.clicked.connect(self.retry)
        self.no_download_button = QPushButton("Use a method that needs no download")
        self.no_download_button.clicked.connect(self.use_no_download)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)

        options = QFormLayout()
        options.addRow(self.choose_button, self._hint(f"a {backbone} weights file you have (.pth)"))
        options.addRow(self.retry_button, self._hint("when the computer is online again"))
        options.addRow(self.no_download_button, self._hint(
            f"{getattr(no_download, 'label', 'a classical method')}: {getattr(no_download, 'summary', '')}"))
        cancel_row = QHBoxLayout()
        cancel_row.addWidget(QLabel("photocluster remembers your choice for the next runs."), 1)
        cancel_row.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.text_label)
        layout.addWidget(self.reason_label)
        layout.addLayout(options)
        layout.addLayout(cancel_row)
        self.resize(640, self.sizeHint().height())

    @staticmethod
    def _hint(text: str) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        return label

    def choose_file(self) -> bool:
        """Ask for the file (its network recognised); False, with the dialog still open, when none fits."""
        chosen = choose_weights_file(self)
        if chosen is None:
            return False
        self.weights_file = chosen
        self._decide(self.CHOOSE_FILE)
        return True

    def retry(self) -> None:
        self._decide(self.RETRY)

    def use_no_download(self) -> None:
        self._decide(self.NO_DOWNLOAD)

    def _decide(self, decision: str) -> None:
        self.decision = decision
        self.accept()
        self.decided.emit(decision, self.weights_file if decision == self.CHOOSE_FILE else None)
