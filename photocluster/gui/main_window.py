"""The main window: add folders → scan report → pick a method → train in the background → browse, edit, export
→ re-cluster, keeping the corrections.

Long work (scan, decode + training, splitting a cluster, export) runs in a :class:`CancellableWorker`; the
GUI thread only receives its signals, so the window stays responsive throughout. One job runs at a time.

Every edit (rename, move photos, merge, split, lock) goes through the catalog
(:mod:`photocluster.library.catalog`), which keeps the undo / redo stack and persists it, so reopening the
app restores the session: the clusters, their names and the user's corrections.

Corrections are also what the next clustering learns from. Train and Re-cluster run the same pipeline and
both learn (:func:`photocluster.pipeline.cluster_steps` with ``corrections=True``): locked groups keep their
photos and names, and the moves, merges and splits become must-link / cannot-link constraints the method
trains with. A Train that forgot them would undo the person's work one button away from the one that keeps
it, and the folder mode learns from them too unless told otherwise. Re-cluster is the name a person looks
for ("again, keeping my work"): it exists once there is a grouping, scans the folders again first (new
photos get placed) and ends with a summary of how many photos changed group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from photocluster.errors import WeightsUnavailable
from photocluster.gui.dialogs import ExportDialog, PreviewDialog, WeightsDialog, error_reason, show_error, show_warning
from photocluster.gui.edits import SYNC_EDIT_LIMIT, Call, Edit, EditQueue, apply_calls
from photocluster.gui.jobs import (
    TrainingResult,
    cluster_list,
    cluster_rows_job,
    file_uri_list,
    read_cluster_list,
    recluster_job,
    scan_job,
    split_cluster_job,
    training_job,
)
from photocluster.gui.models import ClusterListModel, ClusterRow, PhotoGridModel, PhotoRow, ThumbnailLoader
from photocluster.gui.widgets import (
    ClusterListView,
    LogPanel,
    MethodPicker,
    PhotoGridView,
    ProgressPanel,
    describe_event,
)
from photocluster.gui.workers import CancellableWorker, start_worker
from photocluster.progress import ProgressEvent

#: skipped files listed in the window (all of them go to the log)
MAX_SKIPPED_SHOWN = 2000
#: clusters up to this size are read into the grid at once; larger ones in a worker thread
SYNC_GRID_LOAD_LIMIT = 5000
#: catalogs with more photos than this have their cluster list read in a worker thread (the query of the
#: clusters and their representatives took 145 ms with 100,000 photos, measured on a 2-core machine)
SYNC_CLUSTER_LIST_LIMIT = 20_000


#: Train and Re-cluster both learn from the corrections (see the module docstring); their tooltips say so.
TRAIN_TIP = ("Sort the scanned photos with the chosen method. It keeps your locked groups and learns from "
             "the photos you moved, merged and split")
RECLUSTER_TIP = ("Sort again, keeping your locked groups and learning from the photos you moved, merged and "
                 "split. The folders are scanned again first, so new photos are placed too (Ctrl+R)")


def _cluster_row(info: Any, representative: Any) -> ClusterRow:
    """A cluster-list row from the catalog's ``ClusterInfo`` and its representative photo (or None)."""
    return ClusterRow(
        id=info.id, name=info.name, size=info.size, locked=bool(info.locked),
        representative=None if representative is None else PhotoRow(
            id=representative.id, path=str(representative.path),
            content_hash=getattr(representative, "content_hash", None)),
    )


def _photo_rows(catalog: Any, cluster_id: int) -> list[PhotoRow]:
    return [
        PhotoRow(id=p.id, path=str(p.path), confidence=getattr(p, "confidence", None),
                 content_hash=getattr(p, "content_hash", None))
        for p in catalog.photos_in(cluster_id)
    ]


def open_catalog(path: Path | None = None) -> Any:
    """The session's catalog (default: in the data folder), or None when the catalog module is missing."""
    try:
        from photocluster.library.catalog import Catalog
    except ImportError:
        return None
    return Catalog(path) if path is not None else Catalog()


class MainWindow(QMainWindow):
    """The photocluster main window.

    Parameters
    ----------
    catalog:
        An open catalog to use (tests); default: the user's catalog in the data folder.
    settings:
        Where the window keeps its folder list and layout (default: ``gui.ini`` in the config folder).
    """

    #: emitted when a job ends: "scan", "train", "re-cluster" or "split", and how: "done", "cancelled" or "failed"
    job_finished = Signal(str, str)
    #: emitted after the cluster list was rebuilt from the catalog
    clusters_refreshed = Signal()
    #: emitted when the grid shows the photos of this cluster id (at once for small clusters)
    grid_loaded = Signal(int)
    #: emitted when every edit asked for has been written to the catalog (the views refresh right after)
    edits_saved = Signal()

    def __init__(self, catalog: Any = None, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("photocluster")
        self.setAcceptDrops(True)  # drop folders onto the window to add them
        self.resize(1320, 860)

        if settings is None:
            from photocluster.config import config_dir

            settings = QSettings(str(config_dir() / "gui.ini"), QSettings.Format.IniFormat)
        self.settings = settings
        self.catalog = catalog if catalog is not None else open_catalog()
        self.folders: list[Path] = []
        self.scan_report: Any = None
        self.last_result: TrainingResult | None = None
        self.worker: CancellableWorker | None = None
        self.job_name = ""
        self._close_when_idle = False
        self._job_running = False
        self._job_summary = ""  # what the finished job did, for the status bar (a re-cluster's summary)
        self._retry_training: Callable[[], bool] = self.start_training  # after the weights dialog
        self._grid_stale = True
        self._grid_generation = 0
        self._current_cluster_id: int | None = None

        self.thumbnails = ThumbnailLoader(thumbnail_size=128, parent=self)
        self._cluster_uris: dict[int, bytes] = {}  # text/uri-list of clusters read in the background
        self._catalog_photos = 0  # photos in the clusters at the last refresh
        self._cluster_list_generation = 0
        self.cluster_model = ClusterListModel(self.thumbnails, cluster_uri_list=self.cluster_uri_list, parent=self)
        self.photo_model = PhotoGridModel(self.thumbnails, parent=self)
        self.cluster_model.rename_requested.connect(self.rename_cluster)
        self.cluster_model.photos_dropped.connect(self.move_photos)
        self.edits = EditQueue(lambda: self.catalog.path, parent=self)
        self.edits.applied.connect(self._on_edit_applied)
        self.edits.failed.connect(self._on_edit_failed)
        self.edits.drained.connect(self._on_edits_drained)
        self._select_after_edits: int | None = None

        self._build_actions()
        self._build_ui()
        self._restore_settings()
        self._catalog_photos = self._count_catalog_photos()  # a large catalog's list is read in the background
        self.refresh_clusters()
        self._update_actions()
        if self.catalog is None:
            self.log_panel.log("The catalog module is not available: clusters cannot be stored or edited.")
        QTimer.singleShot(0, self._offer_export_recovery)

    # ------------------------------------------------------------------------------------------
    # construction
    def _build_actions(self) -> None:
        def action(text: str, slot: Callable, shortcut: Any = None, tip: str = "") -> QAction:
            act = QAction(text, self)
            act.triggered.connect(lambda checked=False: slot())
            if shortcut is not None:
                act.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            if tip:
                act.setToolTip(tip)
                act.setStatusTip(tip)
            self.addAction(act)  # shortcuts work wherever the focus is
            return act

        self.add_folder_action = action("Add folder…", self.choose_folder, QKeySequence.StandardKey.Open,
                                        "Add a folder of photos (or drop folders onto the window)")
        self.scan_action = action("Scan", self.start_scan, QKeySequence("F5"), "Scan the folders again")
        self.train_action = action("Train", self.start_training, QKeySequence("Ctrl+Return"), TRAIN_TIP)
        self.recluster_action = action("Re-cluster", self.start_recluster, QKeySequence("Ctrl+R"), RECLUSTER_TIP)
        self.cancel_action = action("Cancel", self.cancel_work, QKeySequence("Esc"), "Stop the running job")
        self.undo_action = action("Undo", self.undo, QKeySequence.StandardKey.Undo, "Undo the last edit (Ctrl+Z)")
        self.redo_action = action("Redo", self.redo, [QKeySequence("Ctrl+Shift+Z"), QKeySequence.StandardKey.Redo],
                                  "Redo (Ctrl+Shift+Z)")
        self.merge_action = action("Merge", self.merge_selected, QKeySequence("Ctrl+M"),
                                   "Merge the selected clusters into the first one")
        self.split_action = action("Split…", self.ask_split, QKeySequence("Ctrl+T"),
                                   "Split the selected cluster in two or more (k-means on its photos)")
        self.lock_action = action("Lock", self.toggle_lock, QKeySequence("Ctrl+L"),
                                  "Lock the cluster: a new training run keeps it as it is")
        self.lock_action.setCheckable(True)
        self.rename_action = action("Rename", self.edit_current_cluster_name, QKeySequence("F2"), "Rename the cluster")
        self.export_action = action("Export…", self.open_export_dialog, QKeySequence("Ctrl+E"),
                                    "Copy or move each cluster into its own folder")

    def _build_ui(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for act in (self.add_folder_action, self.scan_action, None, self.train_action, self.recluster_action,
                    self.cancel_action, None,
                    self.undo_action, self.redo_action, None, self.rename_action, self.merge_action,
                    self.split_action, self.lock_action, None, self.export_action):
            if act is None:
                toolbar.addSeparator()
            else:
                toolbar.addAction(act)
        self.addToolBar(toolbar)

        # -- left column: photos, method, training --------------------------------------------
        self.folder_list = QListWidget()
        self.folder_list.setMaximumHeight(90)
        self.folder_list.setToolTip("Folders to sort; drop folders onto the window to add them")
        add_button = QPushButton("Add folder…")
        add_button.clicked.connect(self.choose_folder)
        remove_button = QPushButton("Remove")
        remove_button.clicked.connect(self.remove_selected_folders)
        folder_buttons = QHBoxLayout()
        folder_buttons.addWidget(add_button)
        folder_buttons.addWidget(remove_button)
        folder_buttons.addStretch(1)
        self.scan_summary_label = QLabel("Add a folder of photos to begin.")
        self.scan_summary_label.setWordWrap(True)
        self.skipped_list = QListWidget()
        self.skipped_list.setMaximumHeight(110)
        self.skipped_list.setToolTip("Files that cannot be used, and why")
        self.skipped_list.hide()
        photos_box = QGroupBox("Photos")
        photos_layout = QVBoxLayout(photos_box)
        photos_layout.addWidget(self.folder_list)
        photos_layout.addLayout(folder_buttons)
        photos_layout.addWidget(self.scan_summary_label)
        photos_layout.addWidget(self.skipped_list)

        self.method_picker = MethodPicker()
        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        method_layout.addWidget(self.method_picker)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip(TRAIN_TIP)
        self.train_button.clicked.connect(self.start_training)
        self.recluster_button = QPushButton("Re-cluster")
        self.recluster_button.setToolTip(RECLUSTER_TIP)
        self.recluster_button.clicked.connect(self.start_recluster)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_work)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.train_button, 1)
        run_buttons.addWidget(self.recluster_button, 1)
        run_buttons.addWidget(self.cancel_button)
        self.progress_panel = ProgressPanel()
        training_box = QGroupBox("Training")
        training_layout = QVBoxLayout(training_box)
        training_layout.addLayout(run_buttons)
        training_layout.addWidget(self.progress_panel)

        # Photos and method scroll (a deep method has many parameters); Train, Cancel and the progress
        # stay visible below them whatever the window height.
        scrolled = QWidget()
        scrolled_layout = QVBoxLayout(scrolled)
        scrolled_layout.addWidget(photos_box)
        scrolled_layout.addWidget(method_box)
        scrolled_layout.addStretch(1)
        left_scroll = QScrollArea()
        left_scroll.setWidget(scrolled)
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        left = QWidget()
        left.setMinimumWidth(360)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(left_scroll, 1)
        left_layout.addWidget(training_box)

        # -- right: clusters, photos, log ---------------------------------------------------------
        self.cluster_view = ClusterListView()
        self.cluster_view.setModel(self.cluster_model)
        self.cluster_view.selectionModel().selectionChanged.connect(lambda *_: self._on_cluster_selection())
        self.cluster_view.setMinimumWidth(200)
        clusters_box = QWidget()
        clusters_layout = QVBoxLayout(clusters_box)
        clusters_layout.setContentsMargins(0, 0, 0, 0)
        self.clusters_label = QLabel("Clusters")
        clusters_layout.addWidget(self.clusters_label)
        clusters_layout.addWidget(self.cluster_view)

        self.photo_view = PhotoGridView(thumbnail_size=128)
        self.photo_view.setModel(self.photo_model)
        self.photo_view.doubleClicked.connect(self.preview_photo)
        self.grid_title = QLabel("Photos")
        self.least_confident_box = QCheckBox("Least confident first")
        self.least_confident_box.setToolTip("Show first the photos the model was least sure about: "
                                            "the ones most worth checking")
        self.least_confident_box.toggled.connect(self.photo_model.set_least_confident_first)
        grid_header = QHBoxLayout()
        grid_header.addWidget(self.grid_title, 1)
        grid_header.addWidget(self.least_confident_box)
        grid_box = QWidget()
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addLayout(grid_header)
        grid_layout.addWidget(self.photo_view)

        browse_split = QSplitter(Qt.Orientation.Horizontal)
        browse_split.addWidget(clusters_box)
        browse_split.addWidget(grid_box)
        browse_split.setStretchFactor(0, 0)
        browse_split.setStretchFactor(1, 1)
        browse_split.setSizes([260, 700])

        self.log_panel = LogPanel()
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(browse_split)
        right_split.addWidget(self.log_panel)
        right_split.setStretchFactor(0, 1)
        right_split.setSizes([640, 150])

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("main-split")
        self.main_split.addWidget(left)
        self.main_split.addWidget(right_split)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([380, 940])
        self.setCentralWidget(self.main_split)
        self.saving_label = QLabel()
        self.saving_label.setToolTip("Large edits are written in the background; the lists show them when done")
        self.saving_label.hide()
        self.statusBar().addPermanentWidget(self.saving_label)
        self.statusBar().showMessage("Ready")

    def sizeHint(self) -> QSize:  # noqa: D102
        return QSize(1320, 860)

    # ------------------------------------------------------------------------------------------
    # settings (folder list, geometry) — the clusters themselves live in the catalog
    def _restore_settings(self) -> None:
        folders = self.settings.value("folders", [])
        if isinstance(folders, str):
            folders = [folders]
        for folder in folders or []:
            path = Path(folder)
            if path.is_dir() and path not in self.folders:
                self.folders.append(path)
                self.folder_list.addItem(str(path))
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._restore_method()

    def _save_settings(self) -> None:
        self.settings.setValue("folders", [str(f) for f in self.folders])
        self.settings.setValue("geometry", self.saveGeometry())
        choice = self.method_picker.choice
        self.settings.setValue("method_choice", choice.label if choice is not None else "")
        self.settings.sync()

    def _restore_method(self) -> None:
        """The picker opens on the last choice (the recommended one the first time), with the weights files
        and the decision taken when a download failed (:meth:`_on_weights_decision`)."""
        from photocluster.methods.recommend import NO_WEIGHTS_CHOICE

        self.settings.beginGroup("weights_files")
        for backbone in self.settings.childKeys():
            path = str(self.settings.value(backbone) or "")
            if path and Path(path).is_file():
                self.method_picker.weights_files[backbone] = path
        self.settings.endGroup()
        label = str(self.settings.value("method_choice", "") or "")
        decision = str(self.settings.value("weights/decision", "") or "")
        if not label and decision == WeightsDialog.NO_DOWNLOAD:
            label = NO_WEIGHTS_CHOICE.label
        try:
            self.method_picker.set_choice(label or self.method_picker.choice)  # (again: the weights files)
        except ValueError:  # a choice of an older version
            self.method_picker.set_choice(self.method_picker.recommended)

    # ------------------------------------------------------------------------------------------
    # folders and scan
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of photos", str(Path.home()))
        if folder:
            self.add_folders([Path(folder)])

    def add_folders(self, folders: Sequence[Path], scan: bool = True) -> list[Path]:
        """Add folders (ignoring ones already there or not folders) and scan; returns those added."""
        added = []
        for folder in folders:
            folder = Path(folder).expanduser()
            if not folder.is_dir():
                self.log_panel.log(f"not a folder, ignored: {folder}")
                continue
            folder = folder.resolve()
            if folder in self.folders:
                continue
            self.folders.append(folder)
            self.folder_list.addItem(str(folder))
            added.append(folder)
            self.log_panel.log(f"added folder {folder}")
        if added and scan:
            self.start_scan()
        self._update_actions()
        return added

    def remove_selected_folders(self) -> None:
        for item in self.folder_list.selectedItems():
            path = Path(item.text())
            if path in self.folders:
                self.folders.remove(path)
            self.folder_list.takeItem(self.folder_list.row(item))
        self.scan_report = None
        self.scan_summary_label.setText("Folders changed: scan again (F5).")
        self._update_actions()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.source() is not None:  # a drag from inside the app (photos, a cluster) is not a folder to add;
            event.ignore()             # and listing a 100k cluster's URLs here would stall the window
            return
        if event.mimeData().hasUrls() and any(Path(u.toLocalFile()).is_dir() for u in event.mimeData().urls()
                                              if u.isLocalFile()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        folders = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        folders = [f for f in folders if f.is_dir()]
        if folders:
            event.acceptProposedAction()
            self.add_folders(folders)

    def start_scan(self) -> bool:
        if not self.folders:
            self.scan_summary_label.setText("Add a folder of photos to begin.")
            return False
        self.scan_summary_label.setText("Scanning…")
        return self._start_job("scan", scan_job, list(self.folders), catalog=self.catalog,
                               exclude=self._scan_exclude(), returned=self._on_scan_done)

    def _scan_exclude(self) -> list[Path]:
        """Folders a scan leaves out: the last export destination.

        As in the folder mode (issue 20): exported copies inside a scanned folder would otherwise come back
        as new photos on every scan.
        """
        exported_into = str(self.settings.value("export_destination", "") or "").strip()
        return [Path(exported_into).expanduser()] if exported_into else []

    def _on_scan_done(self, report: Any) -> None:
        self.scan_report = report  # (its photos were added to the catalog in the worker)
        self._show_scan_report(report, [])
        self.log_panel.log(f"scan: {report.summary()}")
        for skipped in report.skipped:
            self.log_panel.log(f"  skipped {skipped.path}: {skipped.reason}")

    def _show_scan_report(self, report: Any, decode_skipped: Sequence[Any]) -> None:
        text = report.summary()
        if decode_skipped:
            text += f"; {len(decode_skipped)} could not be decoded"
        self.scan_summary_label.setText(text)
        self.skipped_list.clear()
        skipped = list(report.skipped) + list(decode_skipped)
        for item in skipped[:MAX_SKIPPED_SHOWN]:
            self.skipped_list.addItem(f"{Path(item.path).name}: {item.reason}")
            self.skipped_list.item(self.skipped_list.count() - 1).setToolTip(f"{item.path}\n{item.reason}")
        if len(skipped) > MAX_SKIPPED_SHOWN:
            self.skipped_list.addItem(f"… and {len(skipped) - MAX_SKIPPED_SHOWN} more (see the log)")
        self.skipped_list.setVisible(bool(skipped))

    # ------------------------------------------------------------------------------------------
    # training
    def start_training(self) -> bool:
        """Decode + train the chosen method on the scanned photos, in the background."""
        if self.edits.pending:  # the run starts in the catalog, which the edit helper is writing
            self.statusBar().showMessage("Wait until the edits are saved, then train", 5000)
            return False
        if self.scan_report is None:
            if self.folders:
                show_error(self, "Cannot train yet", "scan the folders first (F5) and wait for the scan report")
            else:
                show_error(self, "Cannot train yet", "add a folder of photos first")
            return False
        if not self.scan_report.photos:
            show_error(self, "Cannot train", "the scan found no usable photos")
            return False
        chosen = self._chosen_method()
        if chosen is None:
            return False
        method, params, shown = chosen
        self.log_panel.log(f"train {method} ({shown}) on {len(self.scan_report.photos)} photos")
        self._retry_training = self.start_training
        # corrections=True: Train learns from the corrections as Re-cluster does (see the module docstring)
        return self._start_job("train", training_job, list(self.scan_report.photos), method, params,
                               catalog=self.catalog, preset=self.method_picker.preset, corrections=True,
                               returned=self._on_training_done)

    def _chosen_method(self) -> tuple[str, dict[str, Any], str] | None:
        """The picker's method, its parameters and how the log shows them; None (after saying why) when a
        parameter is invalid."""
        try:
            params = self.method_picker.method_params()
        except ValueError as exc:
            show_error(self, "Invalid parameter", exc)
            return None
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        return self.method_picker.method_name, params, shown or "defaults"

    def start_recluster(self) -> bool:
        """Sort the library again with the chosen method, keeping the person's work, in the background.

        One job (:func:`~photocluster.gui.jobs.recluster_job`): the folders are scanned again (photos added
        since are placed too), then the same training as :meth:`start_training` runs, learning from the
        corrections: locked groups keep their photos and names, moved photos stay where they were put, and
        the moves, merges and splits guide where the other photos go. When it is done the status bar and
        the log say how many photos changed group.
        """
        if self.edits.pending:  # the corrections being written are part of what the run must learn from
            self.statusBar().showMessage("Wait until the edits are saved, then re-cluster", 5000)
            return False
        if self.catalog is None or self.cluster_model.rowCount() == 0:
            show_error(self, "Cannot re-cluster yet", "there is no grouping to sort again: train first")
            return False
        if not self.folders:
            show_error(self, "Cannot re-cluster", "add the folder of your photos first: it is scanned again "
                                                  "before sorting")
            return False
        chosen = self._chosen_method()
        if chosen is None:
            return False
        method, params, shown = chosen
        self.log_panel.log(f"re-cluster with {method} ({shown}): scanning the folders again, then "
                           "sorting, keeping your locked groups and learning from your corrections")
        self._retry_training = self.start_recluster
        return self._start_job("re-cluster", recluster_job, list(self.folders), method, params,
                               catalog=self.catalog, exclude=self._scan_exclude(),
                               preset=self.method_picker.preset, returned=self._on_recluster_done)

    def _on_recluster_done(self, returned: tuple[Any, TrainingResult]) -> None:
        report, result = returned
        self._on_scan_done(report)
        self._on_training_done(result)

    def _on_training_done(self, result: TrainingResult) -> None:
        self.last_result = result  # (its notes were logged as they were yielded)
        if self.scan_report is not None:
            self._show_scan_report(self.scan_report, result.decode_skipped)
        n_clusters = len(set(result.labels.tolist()))
        recorded = f" (run {result.run_id})" if result.run_id is not None else ""
        self.log_panel.log(f"{result.method}: {n_clusters} clusters of {len(result.labels)} photos{recorded}")
        chosen = next((note for note in result.notes if note.startswith("k = ")), "")  # k was chosen: "auto"
        self.method_picker.show_chosen_k(result.params.get("n_clusters") if chosen else None, chosen)
        # The summary ("re-clustered: 3 of 24 photos changed group; …") is already in the log (a progress
        # message of the run); the status bar and the progress line show it when the job has finished.
        if result.recluster:
            self._job_summary = result.recluster[:1].upper() + result.recluster[1:]
        self.refresh_clusters()
        for warning in result.warnings:  # (already in the log as a progress message)
            show_warning(self, "Check the clusters", warning)

    def open_weights_dialog(self, error: Any) -> WeightsDialog:
        """Pre-trained weights could not be downloaded: offer a weights file, another try, or a method that
        needs none (window-modal, without blocking); the decision is applied and remembered."""
        from photocluster.methods.recommend import NO_WEIGHTS_CHOICE

        dialog = WeightsDialog(error, NO_WEIGHTS_CHOICE, parent=self)
        dialog.decided.connect(self._on_weights_decision)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.weights_dialog = dialog
        dialog.open()
        return dialog

    def _on_weights_decision(self, decision: str, chosen: Any) -> None:
        """Apply the weights dialog's decision, remember it for the next runs, and train (or re-cluster) again."""
        from photocluster.methods.recommend import NO_WEIGHTS_CHOICE

        self.settings.setValue("weights/decision", decision)
        if decision == WeightsDialog.CHOOSE_FILE:
            path, backbone = chosen
            self.settings.setValue(f"weights_files/{backbone}", path)
            self.method_picker.use_weights_file(path, backbone)
            self.log_panel.log(f"using the {backbone} weights file {path} (remembered for the next runs)")
        elif decision == WeightsDialog.NO_DOWNLOAD:
            self.method_picker.set_choice(NO_WEIGHTS_CHOICE)
            self.log_panel.log(f"using {NO_WEIGHTS_CHOICE.label}, which needs no download (remembered)")
        else:
            self.log_panel.log("trying the download again")
        self.settings.setValue("method_choice", self.method_picker.choice.label)
        self.settings.sync()
        self._train_when_idle()

    def _train_when_idle(self) -> None:
        """Start the training that just failed (Train or Re-cluster) again as soon as its job has finished
        (its signals come in order)."""
        if self.busy:
            QTimer.singleShot(20, self._train_when_idle)
            return
        self._retry_training()

    # ------------------------------------------------------------------------------------------
    # jobs
    @property
    def busy(self) -> bool:
        """True from the start of a job until its ``finished`` signal has been handled in the GUI thread.

        Tracked here rather than read from the worker thread, so that ``busy`` turns False only after the
        job's ``returned`` / ``errored`` slots have run (queued signals arrive in order).
        """
        return self._job_running

    def _start_job(self, name: str, func: Callable, *args: Any, returned: Callable[[Any], None], **kwargs: Any) -> bool:
        if self.busy:
            self.statusBar().showMessage(f"Wait for {self.job_name} to finish, or cancel it", 5000)
            return False
        self.job_name = name
        self._job_outcome = "done"
        self._job_summary = ""
        self._job_running = True
        self.progress_panel.set_idle(f"{name}: starting…")
        self.worker = start_worker(
            func,
            *args,
            **kwargs,
            connect={
                "yielded": self._on_progress,
                "returned": returned,
                "errored": self._on_job_error,
                "aborted": self._on_job_aborted,
                "finished": self._on_job_finished,
            },
        )
        self.statusBar().showMessage(f"{name}…")
        self._update_actions()
        return True

    def cancel_work(self) -> None:
        """Stop the running job; the core honours it within a second."""
        if self.busy and self.worker is not None:
            self.worker.quit()
            self.progress_panel.detail_label.setText(f"{self.job_name}: cancelling…")
            self.log_panel.log(f"{self.job_name}: cancel requested")
            self._update_actions()

    def _on_progress(self, event: ProgressEvent) -> None:
        previous = self.progress_panel.last_event
        self.progress_panel.show_event(event)
        # The log keeps what matters later: stage changes, one-off messages, stage ends. Per-item messages
        # (the file being decoded) only show in the progress line, or a 100,000-photo scan floods the log.
        new_stage = previous is None or previous.stage != event.stage
        stage_end = bool(event.total) and event.step >= event.total
        if event.message and (new_stage or stage_end) and (previous is None or event.message != previous.message):
            self.log_panel.log(event.message)
        elif new_stage:
            self.log_panel.log(describe_event(event))

    def _on_job_error(self, error: BaseException) -> None:
        self._job_outcome = "failed"
        self.log_panel.log(f"{self.job_name} failed: {error_reason(error)}")
        self.progress_panel.set_idle(f"{self.job_name} failed: {error_reason(error)}")
        if (self.job_name in ("train", "re-cluster") and isinstance(error, WeightsUnavailable)
                and not self._close_when_idle):
            self.progress_panel.set_idle(f"the {error.backbone} network could not be downloaded")
            self.open_weights_dialog(error)
        elif not self._close_when_idle:
            show_error(self, f"{self.job_name.capitalize()} failed", error)

    def _on_job_aborted(self) -> None:
        self._job_outcome = "cancelled"
        self.log_panel.log(f"{self.job_name} cancelled")

    def _on_job_finished(self) -> None:
        name, outcome = self.job_name, self._job_outcome
        self._job_running = False
        if outcome == "done":
            self.progress_panel.set_done(self._job_summary or f"{name} finished")
        elif outcome == "cancelled":
            self.progress_panel.set_idle(f"{name} cancelled")
        if outcome == "done" and self._job_summary:
            self.statusBar().showMessage(self._job_summary)  # stays until the next message
        else:
            self.statusBar().showMessage(f"{name} {outcome}", 5000)
        self._update_actions()
        self.job_finished.emit(name, outcome)
        if self._close_when_idle and not self.edits.pending:
            QTimer.singleShot(0, self.close)

    # ------------------------------------------------------------------------------------------
    # browsing
    def refresh_clusters(self, select: int | None = None) -> None:
        """Rebuild the cluster list from the catalog, keeping (or setting) the selected cluster.

        At once when the catalog is small; for a large one (:data:`SYNC_CLUSTER_LIST_LIMIT` photos at the last
        refresh) the list is read in a worker thread on a connection of its own (SQLite runs the query
        without holding the GIL) and shown when it arrives; ``clusters_refreshed`` says when.
        """
        keep = select if select is not None else self._current_cluster_id
        self._cluster_list_generation += 1
        self._cluster_uris.clear()  # the photos of any cluster may have changed
        if self.catalog is None:
            self._show_clusters([], keep)
            return
        if self._catalog_photos > SYNC_CLUSTER_LIST_LIMIT:
            generation = self._cluster_list_generation

            def show(rows: list[ClusterRow]) -> None:
                if generation == self._cluster_list_generation:  # no newer refresh asked for since
                    self._show_clusters(rows, keep)

            if self.cluster_model.rowCount() == 0:
                self.clusters_label.setText("Clusters (reading the catalog…)")
            self._cluster_list_worker = start_worker(
                read_cluster_list, str(self.catalog.path), _cluster_row,
                connect={"returned": show, "errored": lambda e: self.log_panel.log(
                    f"could not read the clusters: {error_reason(e)}")})
            return
        self._show_clusters(cluster_list(self.catalog, _cluster_row), keep)

    def _count_catalog_photos(self) -> int:
        """Photos in clusters (one indexed count, 10 ms for 100,000): decides whether the list is read here.

        At start-up the window knows nothing of the catalog yet; reading the cluster list of 100,000 photos
        on the GUI thread held the window back for 143-303 ms before it showed (measured).
        """
        if self.catalog is None or not hasattr(self.catalog, "assigned_photo_count"):
            return 0
        try:
            return int(self.catalog.assigned_photo_count())
        except Exception as exc:  # noqa: BLE001 — the list read that follows reports a broken catalog
            self.log_panel.log(f"could not count the photos in the catalog: {error_reason(exc)}")
            return 0

    def _show_clusters(self, rows: list[ClusterRow], keep: int | None) -> None:
        self._grid_stale = True  # the photos may have changed even where the selected cluster did not
        self._catalog_photos = sum(r.size for r in rows)
        self.cluster_model.set_clusters(rows)
        total = self._catalog_photos
        self.clusters_label.setText(f"Clusters ({len(rows)}, {total} photos)" if rows else "Clusters")
        row = self.cluster_model.row_of(keep) if keep is not None else None
        if row is None and rows:
            row = 0
        if row is not None:
            self.cluster_view.setCurrentIndex(self.cluster_model.index(row))
        else:
            self._current_cluster_id = None
            self.photo_model.set_photos([])
            self.grid_title.setText("Photos")
        self._on_cluster_selection()
        self._update_actions()
        self.clusters_refreshed.emit()

    def selected_cluster_ids(self) -> list[int]:
        rows = sorted(index.row() for index in self.cluster_view.selectionModel().selectedRows())
        ids = [self.cluster_model.cluster(r).id for r in rows]
        current = self.cluster_view.currentIndex()
        if not ids and current.isValid():
            ids = [self.cluster_model.cluster(current.row()).id]
        return ids

    def select_cluster(self, cluster_id: int) -> None:
        row = self.cluster_model.row_of(cluster_id)
        if row is None:
            raise KeyError(f"no cluster {cluster_id}")
        self.cluster_view.setCurrentIndex(self.cluster_model.index(row))
        self._on_cluster_selection()

    def _on_cluster_selection(self) -> None:
        current = self.cluster_view.currentIndex()
        if not current.isValid() or self.catalog is None:
            self._update_actions()
            return
        cluster = self.cluster_model.cluster(current.row())
        self.grid_title.setText(f"{cluster.name} — {cluster.size} photos")
        if cluster.id != self._current_cluster_id or self._grid_stale:
            self._current_cluster_id = cluster.id
            self._grid_stale = False
            self._load_grid(cluster)
        self.lock_action.setChecked(cluster.locked)
        self._update_actions()

    def _load_grid(self, cluster: ClusterRow) -> None:
        """Show a cluster's photos: read now when few, in a worker when many.

        Reading 100,000 rows from the catalog takes seconds (measured 2.5 s on a 2-core machine), which
        must not freeze the window; a few thousand take milliseconds, and reading them at once keeps the
        grid in step with the list for every edit. A large cluster's drag data (its file URLs) is prepared
        by the same background read.
        """
        self._grid_generation += 1
        if cluster.size <= SYNC_GRID_LOAD_LIMIT:
            self.photo_model.set_photos(self.photo_rows(cluster.id))
            self.grid_loaded.emit(cluster.id)
            return
        generation = self._grid_generation
        self.photo_model.set_photos([])
        self.grid_title.setText(f"{cluster.name} — loading {cluster.size} photos…")

        def show(columns: dict[str, Any] | None) -> None:
            if generation != self._grid_generation:  # the user has moved on to another cluster
                return
            if columns is None:
                self.photo_model.set_photos([])
            else:
                self.photo_model.set_columns(columns["ids"], columns["paths"], columns["confidence"],
                                             columns["hashes"])
                self._cluster_uris[cluster.id] = columns["uris"]
            self.grid_title.setText(f"{cluster.name} — {cluster.size} photos")
            self.grid_loaded.emit(cluster.id)

        self._grid_worker = start_worker(cluster_rows_job, str(self.catalog.path), cluster.id,
                                         connect={"returned": show, "errored": lambda e: show(None)})

    def photo_rows(self, cluster_id: int) -> list[PhotoRow]:
        return _photo_rows(self.catalog, cluster_id)

    def cluster_paths(self, cluster_id: int) -> list[str]:
        """The photo files of a cluster."""
        if self.catalog is None:
            return []
        return [str(p.path) for p in self.catalog.photos_in(cluster_id)]

    def cluster_uri_list(self, cluster_id: int) -> bytes:
        """``text/uri-list`` of a cluster's photo files, for dragging the cluster out to a file manager.

        A large cluster's list is prepared when its photos are read for the grid (in a helper process), so
        the drag starts at once; a cluster not read yet (a small one, or one of several selected) is read
        now.
        """
        cached = self._cluster_uris.get(cluster_id)
        if cached is None:
            cached = file_uri_list(self.cluster_paths(cluster_id))
            self._cluster_uris[cluster_id] = cached
        return cached

    def preview_photo(self, index) -> PreviewDialog | None:
        if not index.isValid():
            return None
        photo = self.photo_model.photo(index.row())
        caption = photo.path + (f"\nconfidence {photo.confidence:.2f}" if photo.confidence is not None else "")
        dialog = PreviewDialog(photo.path, caption, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # ------------------------------------------------------------------------------------------
    # editing (all through the catalog, so it is undoable and persistent)
    def _edit(self, description: str, calls: list[Call], select: int | None = None, photos: int = 0,
              describe: Callable[[Any], str] | None = None) -> bool:
        """Apply catalog ``calls`` as one user edit, then show the result.

        An edit of at most :data:`SYNC_EDIT_LIMIT` photos is written at once (milliseconds); a larger one,
        and any edit asked for while others are still being written, goes to the :class:`EditQueue`
        (a helper process, strictly in order) and the window says it is saving until it is done.
        Returns False when the edit was refused at once.
        """
        if self.catalog is None:
            show_error(self, "Cannot edit", "the catalog module is not available")
            return False
        edit = Edit(description, calls, select, describe)
        if self.edits.pending or photos > SYNC_EDIT_LIMIT:
            self.edits.submit(edit)
            self._show_saving()
            self._update_actions()
            return True
        try:
            edit.result = apply_calls(self.catalog, calls)
        except Exception as exc:  # noqa: BLE001 — the catalog explains why an edit is refused
            show_error(self, f"Cannot {description}", exc)
            return False
        self._on_edit_applied(edit)
        self.edits_saved.emit()
        self._refresh_after_edits()
        return True

    def _on_edit_applied(self, edit: Edit) -> None:
        self.log_panel.log(edit.log_line())
        select = edit.select if edit.select is not None else (edit.result if isinstance(edit.result, int) else None)
        if select is not None:
            self._select_after_edits = select

    def _on_edit_failed(self, edit: Edit, error: BaseException, dropped: list[Edit]) -> None:
        self.log_panel.log(f"could not {edit.description}: {error_reason(error)}")
        for other in dropped:
            self.log_panel.log(f"  not applied (it was asked for after that): {other.description}")
        if not self._close_when_idle:
            reason = error if not dropped else (
                f"{error_reason(error)}\n\nNot applied either, as they were asked for after it: "
                + ", ".join(other.description for other in dropped))
            show_error(self, f"Cannot {edit.description}", reason)

    def _on_edits_drained(self) -> None:
        self._show_saving()
        self.edits_saved.emit()
        self._refresh_after_edits()
        if self._close_when_idle and not self.busy:
            QTimer.singleShot(0, self.close)

    def _refresh_after_edits(self) -> None:
        select, self._select_after_edits = self._select_after_edits, None
        self.refresh_clusters(select=select)

    def _show_saving(self) -> None:
        """The status bar says while edits are being written (the lists show the catalog before them)."""
        pending = self.edits.pending
        if pending:
            current = self.edits.current
            more = f" ({pending - 1} more queued)" if pending > 1 else ""
            self.saving_label.setText(f"Saving: {current.description if current else 'edits'}…{more}")
        self.saving_label.setVisible(bool(pending))

    def rename_cluster(self, cluster_id: int, name: str) -> bool:
        return self._edit(f"rename cluster to {name!r}", [("rename", (cluster_id, name))], cluster_id)

    def edit_current_cluster_name(self) -> None:
        index = self.cluster_view.currentIndex()
        if index.isValid():
            self.cluster_view.edit(index)

    def move_photos(self, photo_ids: Sequence[int], cluster_id: int) -> bool:
        ids = [int(i) for i in photo_ids]
        source = self._current_cluster_id
        return self._edit(f"move {len(ids)} photo(s)", [("move_photos", (ids, cluster_id))], source,
                          photos=len(ids))

    def merge_selected(self) -> bool:
        ids = self.selected_cluster_ids()
        if len(ids) < 2:
            self.statusBar().showMessage("Select two or more clusters to merge (Ctrl+click)", 5000)
            return False
        return self.merge_clusters(ids)

    def merge_clusters(self, cluster_ids: Sequence[int], into: int | None = None) -> bool:
        """Merge clusters into ``into`` (default: the first given), which keeps its id, name and lock."""
        ids = [int(i) for i in cluster_ids]
        target = ids[0] if into is None else int(into)
        moving = sum(c.size for c in self.cluster_model.clusters() if c.id in ids and c.id != target)
        return self._edit(f"merge {len(ids)} clusters", [("merge", (ids, target))], target, photos=moving)

    def toggle_lock(self) -> bool:
        ids = self.selected_cluster_ids()
        if not ids:
            return False
        cluster = self.cluster_model.cluster(self.cluster_model.row_of(ids[0]))
        locked = not cluster.locked
        return self._edit(("lock" if locked else "unlock") + " cluster",
                          [("set_locked", (i, locked)) for i in ids], ids[0])

    def ask_split(self) -> bool:
        ids = self.selected_cluster_ids()
        if len(ids) != 1:
            self.statusBar().showMessage("Select one cluster to split", 5000)
            return False
        n, ok = QInputDialog.getInt(self, "Split cluster", "Split into how many clusters?", 2, 2, 50)
        return self.split_cluster(ids[0], n) if ok else False

    def split_cluster(self, cluster_id: int, n_parts: int) -> bool:
        """Split a cluster into ``n_parts`` by k-means on its photos (in the background), then record it.

        A large cluster's photos are read by the job (in a helper process: 100,000 rows take 1.7 s), a
        small one's here. Refused while edits are being saved: they may change which photos it holds.
        """
        if self.catalog is None:
            return False
        if self.edits.pending:
            self.statusBar().showMessage("Wait until the edits are saved, then split", 5000)
            return False
        row = self.cluster_model.row_of(cluster_id)
        size = self.cluster_model.cluster(row).size if row is not None else 0
        photos = None
        if size <= SYNC_GRID_LOAD_LIMIT:
            rows = list(self.catalog.photos_in(cluster_id))
            photos = ([p.id for p in rows], [str(p.path) for p in rows],
                      [getattr(p, "content_hash", None) for p in rows])

        def apply(result: tuple[list[int], Any]) -> None:
            photo_ids, labels = result
            self._edit(f"split cluster into {n_parts}", [("split", (cluster_id, photo_ids, labels.tolist()))],
                       cluster_id, photos=len(photo_ids))

        return self._start_job("split", split_cluster_job, str(self.catalog.path), cluster_id, n_parts, photos,
                               returned=apply)

    def undo(self) -> bool:
        """Undo the latest edit; asked for while edits are being saved, it undoes the last of them."""
        if self.catalog is None or self.busy or not (self.edits.pending or self.catalog.can_undo()):
            return False
        return self._edit(f"undo {self.catalog.undo_description() if not self.edits.pending else 'the last edit'}",
                          [("undo", ())], photos=self._catalog_photos,
                          describe=lambda done: f"undo: {done}" if done else "nothing to undo")

    def redo(self) -> bool:
        if self.catalog is None or self.busy or not (self.edits.pending or self.catalog.can_redo()):
            return False
        return self._edit(f"redo {self.catalog.redo_description() if not self.edits.pending else 'the last undo'}",
                          [("redo", ())], photos=self._catalog_photos,
                          describe=lambda done: f"redo: {done}" if done else "nothing to redo")

    # ------------------------------------------------------------------------------------------
    # export
    def export_items(self) -> list[Any]:
        """One ``ExportItem`` per photo of every cluster, named as the cluster is named now."""
        return [] if self.catalog is None else list(self.catalog.export_items())

    def open_export_dialog(self) -> ExportDialog:
        default = str(self.settings.value("export_destination", "") or "")
        dialog = ExportDialog(self.export_items, default_destination=default, parent=self)
        dialog.export_finished.connect(lambda report: self._on_export_finished(dialog, report))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _on_export_finished(self, dialog: ExportDialog, report: Any) -> None:
        self.settings.setValue("export_destination", dialog.destination_edit.text())
        self.log_panel.log(report.summary() if hasattr(report, "summary") else "export finished")

    def _offer_export_recovery(self) -> None:
        """An export interrupted last time (crash, power cut): offer to finish or roll it back."""
        try:
            from photocluster.library.export import pending_exports, recover_exports
            from photocluster.library.scan import display_path  # a non-UTF-8 folder name shown with U+FFFD
        except ImportError:
            return
        try:
            pending = pending_exports()
        except Exception as exc:  # noqa: BLE001 — a broken registry must not stop the app from opening
            self.log_panel.log(f"could not check for interrupted exports: {error_reason(exc)}")
            return
        for item in pending:
            answer = QMessageBox.question(
                self, "Interrupted export",
                f"An export into {display_path(item.destination)} was interrupted after {item.finished_operations} of "
                f"{item.total} photos.\n\nFinish it now? (No rolls it back; Cancel asks again next time.)",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel,
            )
            if answer == QMessageBox.StandardButton.Cancel:
                continue
            try:
                for line in recover_exports(item.destination, rollback=answer == QMessageBox.StandardButton.No):
                    self.log_panel.log(line)
            except Exception as exc:  # noqa: BLE001
                show_error(self, "Recovering the export failed", exc)

    # ------------------------------------------------------------------------------------------
    def _update_actions(self) -> None:
        busy = self.busy
        saving = self.edits.pending > 0  # the catalog is about to change: nothing may read it as final
        has_catalog = self.catalog is not None
        has_clusters = self.cluster_model.rowCount() > 0
        selected = len(self.selected_cluster_ids()) if has_clusters else 0
        self.scan_action.setEnabled(not busy and bool(self.folders))
        self.train_action.setEnabled(not busy and not saving)
        self.train_button.setEnabled(not busy and not saving)
        # Re-cluster sorts an existing grouping again, from the folders (scanned again first).
        can_recluster = has_catalog and has_clusters and bool(self.folders) and not busy and not saving
        self.recluster_action.setEnabled(can_recluster)
        self.recluster_button.setEnabled(can_recluster)
        cancelling = busy and self.worker is not None and self.worker.cancel_requested
        self.cancel_action.setEnabled(busy and not cancelling)
        self.cancel_button.setEnabled(busy and not cancelling)
        # While edits are being saved, undo and redo queue behind them (what they undo is known only then).
        can_undo = has_catalog and not busy and (saving or self.catalog.can_undo())
        can_redo = has_catalog and not busy and (saving or self.catalog.can_redo())
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        if saving:
            self.undo_action.setToolTip("Undo the last edit, once the edits are saved (Ctrl+Z)")
            self.redo_action.setToolTip("Redo, once the edits are saved (Ctrl+Shift+Z)")
        else:
            self.undo_action.setToolTip(f"Undo {self.catalog.undo_description()} (Ctrl+Z)" if can_undo
                                        else "Undo (Ctrl+Z)")
            self.redo_action.setToolTip(f"Redo {self.catalog.redo_description()} (Ctrl+Shift+Z)" if can_redo
                                        else "Redo (Ctrl+Shift+Z)")
        self.merge_action.setEnabled(has_catalog and not busy and selected >= 2)
        self.split_action.setEnabled(has_catalog and not busy and not saving and selected == 1)
        self.lock_action.setEnabled(has_catalog and selected >= 1)
        self.rename_action.setEnabled(has_catalog and selected >= 1)
        self.export_action.setEnabled(has_clusters and not busy and not saving)
        self.method_picker.setEnabled(not busy)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing while a job runs asks first; then cancels and closes once the worker has stopped."""
        exporting = [d for d in self.findChildren(ExportDialog) if d.exporting]
        if exporting:
            # An export is cancelled from its own dialog, which says what was already written.
            exporting[0].raise_()
            self.statusBar().showMessage("An export is running: cancel it in the export dialog first", 8000)
            event.ignore()
            return
        if self.edits.pending and not self.busy:
            # Never drop an edit the user made: close once the helper has written them all.
            self._close_when_idle = True
            self.statusBar().showMessage("Saving the edits… the window closes when they are saved")
            event.ignore()
            return
        if self.busy:
            if not self._close_when_idle:
                answer = QMessageBox.question(
                    self, "Stop and quit?",
                    f"{self.job_name.capitalize()} is still running. Stop it and quit?\n"
                    "(Training saves a checkpoint when it stops.)",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No,
                )
                if answer != QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
                self._close_when_idle = True
                self.cancel_work()
                self.statusBar().showMessage("Stopping… the window closes when the work has stopped")
            event.ignore()  # closes from _on_job_finished, without blocking the event loop meanwhile
            return
        self._save_settings()
        self.thumbnails.shutdown()
        self.edits.shutdown()
        self._grid_generation += 1  # a grid or cluster list still being read is dropped when it arrives
        self._cluster_list_generation += 1
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None
        event.accept()

