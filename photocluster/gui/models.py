"""Qt item models for browsing: the cluster list and the photo grid, with lazily loaded thumbnails.

The models hold plain rows (:class:`ClusterRow`, :class:`PhotoRow`) that the main window builds from the
catalog; they never write to the catalog themselves. User edits made through a view (renaming a cluster in
place, dropping photos onto a cluster) are turned into signals that the main window applies through the
catalog, so every edit goes through one place and can be undone.

Thumbnails are decoded off the GUI thread by :class:`ThumbnailLoader` (a private ``QThreadPool``), most
recently requested first, so that scrolling quickly through 100,000 photos decodes what is on screen now
rather than what scrolled past; finished images come back as ``QImage`` (safe to build in any thread) and
become ``QPixmap`` in the GUI thread, kept in an LRU cache. With ``uniformItemSizes`` a ``QListView`` asks
only the visible rows for their data, so a grid of any size costs only what is on screen.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QMimeData,
    QMetaType,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPainter, QPixmap

#: MIME type of a drag of photos inside the app: JSON list of catalog photo ids.
PHOTO_IDS_MIME = "application/x-photocluster-photo-ids"
#: MIME type of a drag of one cluster: its catalog id as text.
CLUSTER_ID_MIME = "application/x-photocluster-cluster-id"

PhotoIdRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
ConfidenceRole = Qt.ItemDataRole.UserRole + 3
ClusterIdRole = Qt.ItemDataRole.UserRole + 4
LockedRole = Qt.ItemDataRole.UserRole + 5
SizeRole = Qt.ItemDataRole.UserRole + 6


@dataclass(frozen=True)
class PhotoRow:
    """One photo of the grid.

    Parameters
    ----------
    id:
        Catalog photo id.
    path:
        The original file.
    confidence:
        How sure the model is of this photo's cluster (higher = surer), None when unknown.
    content_hash:
        Key of the decode cache: its cached thumbnail is shown instead of decoding the original.
    """

    id: int
    path: str
    confidence: float | None = None
    content_hash: str | None = None

    def image_sources(self) -> list[str]:
        """Files to try for the thumbnail, best first (computed only for rows on screen)."""
        sources = []
        if self.content_hash:
            try:
                from photocluster.library.decode import thumbnail_path

                sources.append(str(thumbnail_path(self.content_hash, must_exist=False)))
            except ImportError:  # the decode cache is optional for browsing
                pass
        sources.append(self.path)
        return sources


@dataclass(frozen=True)
class ClusterRow:
    """One cluster of the list: catalog id, name, number of photos, locked flag and a representative."""

    id: int
    name: str
    size: int
    locked: bool = False
    representative: PhotoRow | None = None


# -- thumbnails -------------------------------------------------------------------------------------
class _LoadedRelay(QObject):
    """Lives in the GUI thread; a worker emits on it, so the slot runs in the GUI thread (queued)."""

    loaded = Signal(str, QImage)


class _DrainQueue(QRunnable):
    """Decodes queued thumbnails until the queue is empty, newest request first."""

    def __init__(self, loader: "ThumbnailLoader") -> None:
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        loader = self._loader
        while True:
            job = loader._take_job()
            if job is None:
                return
            key, sources = job
            image = QImage()
            for source in sources:
                if os.path.exists(source):
                    image = load_thumbnail_image(source, loader.thumbnail_size)
                    if not image.isNull():
                        break
            loader._relay.loaded.emit(key, image)


def load_thumbnail_image(path: str, size: int) -> QImage:
    """Decode ``path`` scaled to fit ``size`` × ``size`` (EXIF orientation applied); null QImage on failure.

    Safe in any thread. ``QImageReader.setScaledSize`` lets the JPEG decoder scale while decoding, which
    is several times faster than decoding at full size and resizing.
    """
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    original = reader.size()
    if original.isValid() and original.width() > 0 and original.height() > 0:
        scale = min(1.0, size / max(original.width(), original.height()))
        # Orientation may swap width and height after the transform; scaling keeps the aspect either way.
        reader.setScaledSize(QSize(max(1, round(original.width() * scale)), max(1, round(original.height() * scale))))
    image = reader.read()
    if image.isNull():
        return QImage()
    if image.width() > size or image.height() > size:
        image = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image


class ThumbnailLoader(QObject):
    """Loads thumbnails in background threads with an LRU cache of pixmaps.

    Parameters
    ----------
    thumbnail_size:
        Longest side in pixels.
    cache_size:
        Pixmaps kept in memory (about 64 KB each at 128 px).
    threads:
        Decoding threads.
    max_pending:
        Queue length; older requests beyond it are dropped (they scrolled out of view).
    """

    #: a thumbnail for this key is ready (or failed; then :meth:`pixmap` returns the broken placeholder)
    loaded = Signal(str)

    def __init__(
        self,
        thumbnail_size: int = 128,
        cache_size: int = 3000,
        threads: int = 2,
        max_pending: int = 400,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.thumbnail_size = thumbnail_size
        self.cache_size = cache_size
        self.max_pending = max_pending
        self._cache: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # key -> sources, newest last
        self._lock = threading.Lock()
        self._active = 0
        self._threads = threads
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._relay = _LoadedRelay()
        self._relay.loaded.connect(self._on_loaded)
        self.requests_made = 0  # decodes queued so far (tests check laziness with it)

    # -- GUI thread ---------------------------------------------------------------------------
    def pixmap(self, key: str, sources: Sequence[str]) -> QPixmap | None:
        """The cached pixmap for ``key``, or None after queueing a load (``loaded`` follows).

        ``sources`` are files to try in order (a cached thumbnail, then the original photo).
        """
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        start = False
        with self._lock:
            if key in self._pending:
                self._pending.move_to_end(key)
            else:
                self._pending[key] = tuple(sources)
                self.requests_made += 1
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
            if self._active < self._threads:
                self._active += 1
                start = True
        if start:
            self._pool.start(_DrainQueue(self))
        return None

    def cached(self, key: str) -> QPixmap | None:
        return self._cache.get(key)

    def clear(self) -> None:
        """Forget queued requests and cached pixmaps (e.g. after the thumbnails changed on disk)."""
        with self._lock:
            self._pending.clear()
        self._cache.clear()

    def shutdown(self, msecs: int = 3000) -> None:
        """Drop queued work and wait for the decoding threads (call before the app quits)."""
        with self._lock:
            self._pending.clear()
        self._pool.waitForDone(msecs)

    def _on_loaded(self, key: str, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image) if not image.isNull() else broken_placeholder(self.thumbnail_size)
        self._cache[key] = pixmap
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.loaded.emit(key)

    # -- worker threads -----------------------------------------------------------------------
    def _take_job(self) -> tuple[str, tuple[str, ...]] | None:
        with self._lock:
            if not self._pending:
                self._active -= 1
                return None
            return self._pending.popitem(last=True)


_placeholders: dict[tuple[str, int], QPixmap] = {}


def _placeholder(kind: str, size: int, colour: QColor) -> QPixmap:
    cached = _placeholders.get((kind, size))
    if cached is None:
        cached = QPixmap(size, size)
        cached.fill(Qt.GlobalColor.transparent)
        painter = QPainter(cached)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(colour)
        painter.setPen(Qt.PenStyle.NoPen)
        margin = size // 8
        painter.drawRoundedRect(margin, margin, size - 2 * margin, size - 2 * margin, 6, 6)
        if kind == "broken":
            painter.setPen(QColor(200, 60, 60))
            painter.drawLine(margin * 2, margin * 2, size - margin * 2, size - margin * 2)
            painter.drawLine(size - margin * 2, margin * 2, margin * 2, size - margin * 2)
        painter.end()
        _placeholders[(kind, size)] = cached
    return cached


def loading_placeholder(size: int) -> QPixmap:
    """Grey square shown while a thumbnail loads."""
    return _placeholder("loading", size, QColor(128, 128, 128, 60))


def broken_placeholder(size: int) -> QPixmap:
    """Crossed square for a photo that could not be decoded."""
    return _placeholder("broken", size, QColor(128, 128, 128, 90))


# -- photo grid -------------------------------------------------------------------------------------
class PhotoGridModel(QAbstractListModel):
    """The selected cluster's photos, for a ``QListView`` in icon mode.

    Dragging photos carries their catalog ids (:data:`PHOTO_IDS_MIME`, dropped onto a cluster to move them)
    and their file URLs (dropped onto a file manager to copy them). The drag offers only the copy action,
    so no file manager can move a user's originals away.
    """

    def __init__(self, loader: ThumbnailLoader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._loader = loader
        # The photos as columns, not one object per photo: building 100,000 PhotoRow objects held the GIL
        # long enough to stall the event loop 290 ms (measured, in a worker thread); a PhotoRow is made
        # only for a row that is asked for (the ones on screen).
        self._ids = np.zeros(0, dtype=np.int64)
        self._paths: list[str] = []
        self._confidence = np.zeros(0, dtype=np.float64)  # NaN = unknown
        self._hashes: list[str | None] = []
        self._least_confident_first = False
        self._order: np.ndarray | None = None  # displayed row -> column index (None: as given)
        # photo id -> displayed row, to signal exactly the row whose thumbnail arrived (one range signal for
        # all rows was measured to make QListView stall 300 ms per repaint with 100,000 photos): ids sorted
        # once with numpy and searched, rather than a dict of 100,000 entries built in the GUI thread.
        self._ids_sorted = np.zeros(0, dtype=np.int64)
        self._ids_sorted_columns = np.zeros(0, dtype=np.int64)
        self._row_of_column = np.zeros(0, dtype=np.int64)
        loader.loaded.connect(self._on_thumbnail_loaded)

    # -- content ------------------------------------------------------------------------------
    def set_photos(self, rows: Sequence[PhotoRow]) -> None:
        rows = list(rows)
        self.set_columns(
            np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows)),
            [r.path for r in rows],
            np.fromiter((np.nan if r.confidence is None else r.confidence for r in rows), dtype=np.float64,
                        count=len(rows)),
            [r.content_hash for r in rows],
        )

    def set_columns(self, ids: np.ndarray, paths: list[str], confidence: np.ndarray,
                    hashes: list[str | None]) -> None:
        """The photos as columns (catalog ids, file paths, confidence with NaN for unknown, cache keys)."""
        if not (len(ids) == len(paths) == len(confidence) == len(hashes)):
            raise ValueError("photo columns of different lengths")
        self._ids = np.asarray(ids, dtype=np.int64)
        self._paths = paths
        self._confidence = np.asarray(confidence, dtype=np.float64)
        self._hashes = hashes
        self._ids_sorted_columns = np.argsort(self._ids, kind="stable")
        self._ids_sorted = self._ids[self._ids_sorted_columns]
        self._apply_order()

    def set_least_confident_first(self, enabled: bool) -> None:
        if enabled != self._least_confident_first:
            self._least_confident_first = enabled
            self._apply_order()

    @property
    def least_confident_first(self) -> bool:
        return self._least_confident_first

    def _apply_order(self) -> None:
        self.beginResetModel()
        n = len(self._ids)
        if self._least_confident_first:
            # Unknown confidence sorts last (nothing to review there); ties keep the catalog's order.
            # numpy's stable argsort: 100,000 rows in a few milliseconds, not 80 ms as sorted(key=...).
            self._order = np.argsort(np.where(np.isnan(self._confidence), np.inf, self._confidence), kind="stable")
            self._row_of_column = np.empty(n, dtype=np.int64)
            self._row_of_column[self._order] = np.arange(n)
        else:
            self._order = None
            self._row_of_column = np.arange(n)
        self.endResetModel()

    def _column(self, row: int) -> int:
        return int(self._order[row]) if self._order is not None else row

    def photo(self, row: int) -> PhotoRow:
        if not 0 <= row < len(self._ids):
            raise IndexError(row)
        i = self._column(row)
        confidence = float(self._confidence[i])
        return PhotoRow(id=int(self._ids[i]), path=self._paths[i],
                        confidence=None if confidence != confidence else confidence, content_hash=self._hashes[i])

    def photos(self) -> list[PhotoRow]:
        return [self.photo(r) for r in range(len(self._ids))]

    def all_paths(self) -> list[str]:
        """Every photo's file, in the catalog's order (for dragging the whole cluster out)."""
        return list(self._paths)

    def _row_of_id(self, photo_id: int) -> int | None:
        position = int(np.searchsorted(self._ids_sorted, photo_id))
        if position >= len(self._ids_sorted) or self._ids_sorted[position] != photo_id:
            return None
        return int(self._row_of_column[self._ids_sorted_columns[position]])

    # -- Qt model API -------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._ids):
            return None
        row = self.photo(index.row())
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self._loader.pixmap(thumbnail_key(row), row.image_sources())
            return pixmap if pixmap is not None else loading_placeholder(self._loader.thumbnail_size)
        if role == Qt.ItemDataRole.ToolTipRole:
            text = row.path
            if row.confidence is not None:
                text += f"\nconfidence {row.confidence:.2f}"
            return text
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return Path(row.path).name
        if role == PhotoIdRole:
            return row.id
        if role == PathRole:
            return row.path
        if role == ConfidenceRole:
            return row.confidence
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self) -> list[str]:
        return [PHOTO_IDS_MIME, "text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({index.row() for index in indexes if index.isValid()})
        photos = [self.photo(r) for r in rows]
        return photos_mime_data(photos)

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def _on_thumbnail_loaded(self, key: str) -> None:
        if not key.startswith(_PHOTO_KEY_PREFIX):
            return
        row = self._row_of_id(int(key[len(_PHOTO_KEY_PREFIX):]))
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


_PHOTO_KEY_PREFIX = "photo:"


def thumbnail_key(photo: PhotoRow) -> str:
    return f"{_PHOTO_KEY_PREFIX}{photo.id}"


def photos_mime_data(photos: Sequence[PhotoRow]) -> QMimeData:
    """Drag data for photos: catalog ids for drops inside the app, file URLs for a file manager."""
    mime = QMimeData()
    mime.setData(PHOTO_IDS_MIME, QByteArray(json.dumps([p.id for p in photos]).encode()))
    mime.setUrls([QUrl.fromLocalFile(os.path.abspath(p.path)) for p in photos])
    return mime


def photo_ids_from_mime(mime: QMimeData) -> list[int]:
    """The photo ids in drag data from :func:`photos_mime_data` (empty when it holds none)."""
    if not mime.hasFormat(PHOTO_IDS_MIME):
        return []
    try:
        ids = json.loads(bytes(mime.data(PHOTO_IDS_MIME).data()).decode())
    except (ValueError, UnicodeDecodeError):
        return []
    return [int(i) for i in ids if isinstance(i, int)]


class UriListMimeData(QMimeData):
    """Drag data whose ``text/uri-list`` is kept as the bytes given and handed out as bytes when asked.

    ``QMimeData.setData("text/uri-list", ...)`` parses every line into a ``QUrl`` at once: 110 ms in the GUI
    thread for a 100,000-photo cluster (and ``setUrls`` with ``QUrl`` objects made in Python about 2 s).
    Here the bytes are served as they are; only a reader asking for the URL list (``urls()``) pays for it.
    """

    URI_LIST = "text/uri-list"

    def __init__(self, uri_list: bytes) -> None:
        super().__init__()
        self._uri_list = uri_list

    def formats(self) -> list[str]:  # noqa: D102
        return [*super().formats(), self.URI_LIST] if self._uri_list else super().formats()

    def hasFormat(self, mime_type: str) -> bool:  # noqa: N802, D102
        return (mime_type == self.URI_LIST and bool(self._uri_list)) or super().hasFormat(mime_type)

    def retrieveData(self, mime_type: str, preferred_type: QMetaType):  # noqa: N802, D102
        if mime_type != self.URI_LIST or not self._uri_list:
            return super().retrieveData(mime_type, preferred_type)
        if preferred_type.id() == QMetaType.Type.QByteArray.value:
            return QByteArray(self._uri_list)
        return [QUrl.fromEncoded(QByteArray(line)) for line in self._uri_list.split(b"\r\n") if line.strip()]


# -- cluster list -----------------------------------------------------------------------------------
class ClusterListModel(QAbstractListModel):
    """Clusters with name, size and a representative thumbnail.

    Editing a name emits :attr:`rename_requested`; dropping photos on a cluster emits
    :attr:`photos_dropped`. Dragging a cluster out of the app carries the file URLs of its photos
    (``text/uri-list`` from ``cluster_uri_list``), so dropping it on a folder in a file manager copies its
    photos there.

    Parameters
    ----------
    loader:
        Shared thumbnail loader.
    cluster_uri_list:
        Returns the ``text/uri-list`` bytes of a cluster id's photo files (asked only when a drag starts,
        in the GUI thread: it should return a list prepared beforehand for a large cluster).
    """

    rename_requested = Signal(int, str)  # cluster id, new name
    photos_dropped = Signal(list, int)  # photo ids, target cluster id

    def __init__(
        self,
        loader: ThumbnailLoader,
        cluster_uri_list: Callable[[int], bytes] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._loader = loader
        self._rows: list[ClusterRow] = []
        self._cluster_uri_list = cluster_uri_list or (lambda cluster_id: b"")
        loader.loaded.connect(self._on_thumbnail_loaded)

    def set_clusters(self, rows: Sequence[ClusterRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def cluster(self, row: int) -> ClusterRow:
        return self._rows[row]

    def clusters(self) -> list[ClusterRow]:
        return list(self._rows)

    def row_of(self, cluster_id: int) -> int | None:
        for i, row in enumerate(self._rows):
            if row.id == cluster_id:
                return i
        return None

    # -- Qt model API -------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            lock = "  \N{LOCK}" if row.locked else ""
            return f"{row.name}{lock}\n{row.size} photo{'s' if row.size != 1 else ''}"
        if role == Qt.ItemDataRole.EditRole:
            return row.name
        if role == Qt.ItemDataRole.DecorationRole:
            # A QIcon, not a QPixmap: the view scales an icon to its iconSize (a pixmap is drawn as is).
            if row.representative is None:
                return QIcon(loading_placeholder(self._loader.thumbnail_size))
            pixmap = self._loader.pixmap(thumbnail_key(row.representative), row.representative.image_sources())
            return QIcon(pixmap if pixmap is not None else loading_placeholder(self._loader.thumbnail_size))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{row.name}: {row.size} photos" + (" (locked: a new run keeps it)" if row.locked else "")
        if role == ClusterIdRole:
            return row.id
        if role == LockedRole:
            return row.locked
        if role == SizeRole:
            return row.size
        return None

    def setData(self, index: QModelIndex | QPersistentModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        name = str(value).strip()
        row = self._rows[index.row()]
        if not name or name == row.name:
            return False
        # The catalog is the source of truth: ask for the rename; the main window refreshes the rows.
        self.rename_requested.emit(row.id, name)
        return True

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsEditable
            | Qt.ItemFlag.ItemIsDragEnabled
            | Qt.ItemFlag.ItemIsDropEnabled
        )

    def mimeTypes(self) -> list[str]:
        return [PHOTO_IDS_MIME, CLUSTER_ID_MIME, "text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({index.row() for index in indexes if index.isValid()})
        mime = QMimeData()
        if not rows:
            return mime
        cluster_ids = [self._rows[r].id for r in rows]
        mime.setData(CLUSTER_ID_MIME, QByteArray(json.dumps(cluster_ids).encode()))
        uris = UriListMimeData(b"".join(self._cluster_uri_list(i) for i in cluster_ids))
        for fmt in mime.formats():
            uris.setData(fmt, mime.data(fmt))
        return uris

    def supportedDragActions(self) -> Qt.DropAction:
        # Copy only: dropping a cluster on a file manager must never move the user's originals.
        return Qt.DropAction.CopyAction

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction | Qt.DropAction.MoveAction

    def canDropMimeData(self, data: QMimeData, action, row: int, column: int, parent) -> bool:
        return data.hasFormat(PHOTO_IDS_MIME) and parent.isValid()

    def dropMimeData(self, data: QMimeData, action, row: int, column: int, parent) -> bool:
        """Photos dropped onto a cluster: ask to move them there (onto the item, not between items)."""
        if not self.canDropMimeData(data, action, row, column, parent):
            return False
        ids = photo_ids_from_mime(data)
        if not ids:
            return False
        self.photos_dropped.emit(ids, self._rows[parent.row()].id)
        # The drag offers only CopyAction, so the source view removes nothing; the main window refreshes.
        return True

    def _on_thumbnail_loaded(self, key: str) -> None:
        for i, row in enumerate(self._rows):
            if row.representative is not None and thumbnail_key(row.representative) == key:
                index = self.index(i)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
