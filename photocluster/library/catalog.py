"""The catalog: what the user's library holds and everything the user decided, in one SQLite file.

API overview
------------
::

    from photocluster.library.catalog import Catalog

    with Catalog() as catalog:                 # <data folder>/catalog.sqlite3; Catalog(path) for tests
        ids = catalog.add_photos(scan_report.photos)        # PhotoFile objects or mappings → photo ids
        run = catalog.start_run("kmeans", {"n_clusters": 5})
        catalog.record_result(run, ids, labels, confidence, metrics={"seconds": 3.2})
        for info in catalog.clusters():        # ClusterInfo(id, name, size, locked, representative_photo_id)
            rows = catalog.photos_in(info.id, order="confidence")   # list[PhotoRow], surest first
        catalog.rename(cluster_id, "Beach")    # every edit below is one transaction and one undo step
        catalog.move_photos([photo_id], other_cluster_id)
        catalog.merge([a, b], into=a)
        catalog.split(cluster_id, photo_ids, labels)   # labels computed by the caller (a method)
        catalog.set_locked(cluster_id, True)
        catalog.create_cluster("Holidays", [photo_id])
        catalog.undo(); catalog.redo(); catalog.can_undo(); catalog.undo_description()
        catalog.export_items()                 # list[ExportItem] for photocluster.library.export

    # also: photo(id), photos(), unassigned_photos(), cluster(id), assigned_photo_count(), runs(),
    # run_labels(run_id), finish_run(run_id, "failed" | "cancelled"), history(), can_redo(), redo_description(),
    # undo_depth

Every read returns plain frozen dataclasses (:class:`PhotoRow`, :class:`ClusterInfo`, :class:`RunInfo`,
:class:`ActionInfo`); every mistake a user or caller can make (unknown id, empty name, a split that does
not cover the cluster, …) raises :class:`~photocluster.errors.UsageError` with a one-line message and
changes nothing.

Tables
------
``photos`` (id, path, content_hash, size, mtime, width, height, added) · ``runs`` (id, method, params JSON,
started, finished, metrics JSON, status) · ``run_labels`` (the raw labels of each run) · ``clusters`` (id,
run_id — the run that created it, NULL for user-made —, name, locked, current, created; ``current = 1`` is
the clustering the user sees, older ones stay as history) · ``assignments`` (photo_id → cluster_id,
confidence, source ``model`` | ``user``) · ``actions`` (the log of every user edit, with the rows it changed
before and after, which makes undo and redo exact).

Rules a new run follows (:meth:`Catalog.record_result`)
------------------------------------------------------
* Locked clusters are kept as they are: their photos stay, whatever the new labels say.
* Photos the user moved (or put into a cluster they created) stay where the user put them.
* Every other photo takes its new label. New clusters are matched to the previous unlocked clusters by
  maximum photo overlap (Hungarian assignment); a matched cluster keeps its id and its name, so names the
  user gave stay with "their" photos. Unmatched new clusters get a fresh name "Cluster N"; previous clusters
  left empty leave the current set.
* The run itself is one undo step: undo restores the clustering as it was before it.

Durability
----------
WAL mode, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction per mutating call: a writer killed at
any moment leaves the file intact with every committed call present and no part of an interrupted one.
Schema changes are ordered migrations tracked by ``PRAGMA user_version``. The object may be used from
several threads (one connection, guarded by a lock); separate processes may open the same file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from photocluster.errors import UsageError
from photocluster.library.corrections import Corrections, cluster_core, read_corrections, record_statements

__all__ = [
    "ActionInfo",
    "Catalog",
    "ClusterInfo",
    "PhotoRecord",
    "PhotoRow",
    "RunInfo",
    "SCHEMA_VERSION",
    "default_catalog_path",
]

CATALOG_FILE_NAME = "catalog.sqlite3"


def default_catalog_path() -> Path:
    """``<platformdirs data folder>/catalog.sqlite3`` (``PHOTOCLUSTER_HOME/data`` when that is set)."""
    from photocluster.config import data_dir

    return data_dir() / CATALOG_FILE_NAME


# ---------------------------------------------------------------------------------------------------
# Schema and migrations: append a new step, never edit an old one (users' files are at every version).
# ---------------------------------------------------------------------------------------------------

_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,  # first release: photos, runs, clusters and assignments
        """
        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            content_hash TEXT,
            size INTEGER,
            mtime REAL,
            width INTEGER,
            height INTEGER,
            added TEXT NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            method TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            started TEXT NOT NULL,
            finished TEXT,
            metrics TEXT,
            status TEXT NOT NULL DEFAULT 'running'
        );
        CREATE TABLE clusters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER REFERENCES runs(id),
            name TEXT NOT NULL,
            current INTEGER NOT NULL DEFAULT 1,
            created TEXT NOT NULL
        );
        CREATE TABLE assignments (
            photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
            cluster_id INTEGER NOT NULL REFERENCES clusters(id),
            confidence REAL
        );
        """,
    ),
    (
        2,  # user edits: locked clusters, who placed a photo, the undo log, raw labels of each run
        """
        ALTER TABLE clusters ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE assignments ADD COLUMN source TEXT NOT NULL DEFAULT 'model';
        CREATE TABLE actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            description TEXT NOT NULL,
            payload TEXT NOT NULL,
            created TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'done'
        );
        CREATE TABLE run_labels (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            label INTEGER NOT NULL,
            confidence REAL,
            PRIMARY KEY (run_id, photo_id)
        );
        CREATE INDEX assignments_by_cluster ON assignments(cluster_id);
        CREATE INDEX photos_by_hash ON photos(content_hash);
        CREATE INDEX actions_by_state ON actions(state);
        """,
    ),
    (
        3,  # suggested names: a name the app chose (not the person) may be replaced by a later run's suggestion
        """
        ALTER TABLE clusters ADD COLUMN auto_named INTEGER NOT NULL DEFAULT 0;
        UPDATE clusters SET auto_named = 1 WHERE name GLOB 'Cluster [0-9]*';
        """,
    ),
    (
        4,  # corrections: what each edit says about which photos belong together, by content hash
        """
        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action_id INTEGER NOT NULL REFERENCES actions(id),
            kind TEXT NOT NULL
        );
        CREATE TABLE correction_photos (
            correction_id INTEGER NOT NULL REFERENCES corrections(id) ON DELETE CASCADE,
            content_hash TEXT NOT NULL,
            side INTEGER NOT NULL
        );
        CREATE INDEX corrections_by_action ON corrections(action_id);
        CREATE INDEX correction_photos_by_correction ON correction_photos(correction_id);
        """,
    ),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]
#: The names the app gives clusters nobody named: "Cluster 1", "Cluster 2", …
_DEFAULT_NAME = re.compile(r"Cluster \d+")


def _migrate(connection: sqlite3.Connection, target_version: int = SCHEMA_VERSION) -> None:
    """Bring the file to ``target_version``, each step in its own transaction (a crash keeps a valid file)."""
    current = connection.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise UsageError(
            f"the catalog was written by a newer photocluster (schema {current}, this one knows "
            f"{SCHEMA_VERSION}); update photocluster"
        )
    for version, script in _MIGRATIONS:
        if version <= current or version > target_version:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


# ---------------------------------------------------------------------------------------------------
# Rows handed to callers
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRecord:
    """What :meth:`Catalog.add_photos` needs about a photo (``scan.PhotoFile`` has the same attributes)."""

    path: Path
    content_hash: str | None = None
    size: int | None = None
    mtime: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class PhotoRow:
    """A photo with its current cluster (``cluster_id`` None when unassigned)."""

    id: int
    path: Path
    content_hash: str | None
    size: int | None
    mtime: float | None
    width: int | None
    height: int | None
    added: str
    cluster_id: int | None
    confidence: float | None
    source: str | None  # "model" | "user" | None (unassigned)


@dataclass(frozen=True)
class ClusterInfo:
    """A cluster of the current clustering.

    ``representative_photo_id`` is the photo the model is surest about (None for an empty cluster).
    """

    id: int
    name: str
    size: int
    locked: bool
    representative_photo_id: int | None
    run_id: int | None = None


@dataclass(frozen=True)
class RunInfo:
    id: int
    method: str
    params: dict
    started: str
    finished: str | None
    metrics: dict | None
    status: str  # running | finished | failed | cancelled


@dataclass(frozen=True)
class ActionInfo:
    id: int
    kind: str
    description: str
    created: str
    state: str  # done | undone | discarded (undone, then replaced by a new edit) | expired (beyond undo_depth)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _path_key(path: Any) -> str | bytes:
    """How a photo's path is stored: its text when it is valid UTF-8, else its bytes (a BLOB).

    File names are bytes on POSIX; Python carries a name that is not valid UTF-8 (``bad\\xff.jpg``) as a
    string with surrogate escapes, which SQLite cannot store as text. Such a path is stored as the exact
    bytes of the name, so it round-trips and still names the file; every other path stays readable text,
    as in catalogs written before (no migration). A BLOB never equals a TEXT value, and a name that is not
    valid UTF-8 has no text form, so the UNIQUE column still holds each file once.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _shown_path(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "replace")


def _path_value(stored: str | bytes) -> Path:
    """The inverse of :func:`_path_key`."""
    return Path(os.fsdecode(stored) if isinstance(stored, bytes) else stored)


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


# ---------------------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------------------


class Catalog:
    """The user's library and decisions, stored in SQLite. See the module docstring for an overview.

    Parameters
    ----------
    path : Path, optional
        The database file; default :func:`default_catalog_path`. Created (with its folder) when missing,
        migrated to the current schema when older.

    Raises
    ------
    UsageError
        The file is not a catalog, or was written by a newer photocluster.
    """

    #: How many edits (and runs) can be undone; older ones stay in :meth:`history` as ``expired``.
    undo_depth: int = 200

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_catalog_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._writer_fd: int | None = None
        self._writer_depth = 0
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in _transaction().
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open the catalog {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed edit survives a power loss too, not only a killed process (edits are rare).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            _migrate(self._db)
        except sqlite3.OperationalError as exc:  # locked, read-only, disk full: the file itself may be fine
            self._db.close()
            raise UsageError(f"cannot open the catalog {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UsageError(f"{self.path} is not a photocluster catalog ({exc})") from exc
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database (checkpointing the WAL into the main file)."""
        with self._lock:
            self._db.close()
            if self._writer_fd is not None:
                os.close(self._writer_fd)
                self._writer_fd, self._writer_depth = None, 0

    def writing(self, timeout: float = 30.0) -> "Catalog._Writer":
        """Hold the catalog's writer lock for several calls that belong together (a run recorded and its
        clusters read back), so another process's run cannot land in between.

        ``<catalog>.writer-lock`` is locked exclusively (the kernel drops it when the holder dies, so it
        is never stale); a second writer waits up to ``timeout`` seconds, then gets a
        :class:`~photocluster.errors.UsageError`: "the catalog … is busy (another photocluster is recording a
        run into it, process N)". Re-entrant within this object. Single calls need no lock: each is one
        SQLite transaction.
        """
        return Catalog._Writer(self, timeout)

    class _Writer:
        def __init__(self, catalog: "Catalog", timeout: float) -> None:
            self.catalog, self.timeout = catalog, timeout

        def __enter__(self) -> "Catalog":
            catalog = self.catalog
            with catalog._lock:
                if catalog._writer_depth:
                    catalog._writer_depth += 1
                    return catalog
            import time

            from photocluster.library.export import try_lock_exclusively

            lock_path = catalog.path.with_name(catalog.path.name + ".writer-lock")
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return catalog  # a read-only folder: SQLite's own locking still keeps the file consistent
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    locked = try_lock_exclusively(fd)
                except OSError:  # no advisory locks on this file system
                    locked = True
                if locked:
                    break
                if time.monotonic() >= deadline:
                    os.lseek(fd, 0, os.SEEK_SET)
                    holder = os.read(fd, 32).decode("ascii", "replace").strip()
                    os.close(fd)
                    who = f", process {holder}" if holder.isdigit() else ""
                    raise UsageError(f"the catalog {_shown_path(catalog.path)} is busy (another photocluster is "
                                     f"recording a run into it{who}); try again when it has finished")
                time.sleep(0.05)
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            except OSError:
                pass
            with catalog._lock:
                catalog._writer_fd, catalog._writer_depth = fd, 1
            return catalog

        def __exit__(self, *exc_info: object) -> None:
            catalog = self.catalog
            with catalog._lock:
                if catalog._writer_depth == 0:
                    return
                catalog._writer_depth -= 1
                if catalog._writer_depth == 0 and catalog._writer_fd is not None:
                    fd, catalog._writer_fd = catalog._writer_fd, None
                    os.close(fd)  # releases the lock

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, catalog: "Catalog") -> None:
            self.catalog = catalog

        def __enter__(self) -> sqlite3.Connection:
            self.catalog._lock.acquire()
            try:
                self.catalog._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.catalog._lock.release()
                raise
            return self.catalog._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.catalog._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.catalog._lock.release()

    def _transaction(self) -> "Catalog._Tx":
        return Catalog._Tx(self)

    def _query(self, sql: str, params: Sequence | Mapping = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- photos ------------------------------------------------------------------------------------
    def add_photos(self, records: Iterable[Any]) -> list[int]:
        """Add photos (or update the ones already known by path); return their ids in input order.

        Parameters
        ----------
        records : iterable
            Objects or mappings with ``path`` and optionally ``content_hash``, ``size``, ``mtime``,
            ``width``, ``height`` (``scan.PhotoFile``, :class:`PhotoRecord`, dicts).
        """
        ids = []
        with self._transaction() as db:
            for record in records:
                path = _field(record, "path")
                if path is None:
                    raise UsageError("add_photos: every record needs a path")
                values = [_field(record, name) for name in ("content_hash", "size", "mtime", "width", "height")]
                # Upsert, then look the id up: RETURNING needs SQLite 3.35, older Linux systems have less.
                db.execute(
                    """INSERT INTO photos (path, content_hash, size, mtime, width, height, added)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET content_hash=excluded.content_hash, size=excluded.size,
                           mtime=excluded.mtime, width=excluded.width, height=excluded.height""",
                    [_path_key(path), *values, _now()],
                )
                ids.append(int(db.execute("SELECT id FROM photos WHERE path = ?", (_path_key(path),)).fetchone()[0]))
        return ids

    _PHOTO_SELECT = """SELECT p.*, a.cluster_id AS cluster_id, a.confidence AS confidence, a.source AS source
                       FROM photos p LEFT JOIN assignments a ON a.photo_id = p.id"""

    @staticmethod
    def _photo_row(row: sqlite3.Row) -> PhotoRow:
        return PhotoRow(
            id=row["id"],
            path=_path_value(row["path"]),
            content_hash=row["content_hash"],
            size=row["size"],
            mtime=row["mtime"],
            width=row["width"],
            height=row["height"],
            added=row["added"],
            cluster_id=row["cluster_id"],
            confidence=row["confidence"],
            source=row["source"],
        )

    def photo(self, photo_id: int) -> PhotoRow:
        rows = self._query(self._PHOTO_SELECT + " WHERE p.id = ?", (photo_id,))
        if not rows:
            raise UsageError(f"no photo with id {photo_id} in the catalog")
        return self._photo_row(rows[0])

    def photos(self) -> list[PhotoRow]:
        """Every photo, in the order they were added."""
        return [self._photo_row(r) for r in self._query(self._PHOTO_SELECT + " ORDER BY p.id")]

    def unassigned_photos(self) -> list[PhotoRow]:
        rows = self._query(self._PHOTO_SELECT + " WHERE a.cluster_id IS NULL ORDER BY p.id")
        return [self._photo_row(r) for r in rows]

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, method: str, params: Mapping[str, Any] | None = None) -> int:
        """Record that a clustering run started; returns its id for :meth:`record_result`."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (method, params, started, status) VALUES (?, ?, ?, 'running')",
                (method, json.dumps(dict(params or {}), default=str), _now()),
            )
            return int(cursor.lastrowid)

    def finish_run(self, run_id: int, status: str = "failed", metrics: Mapping[str, Any] | None = None) -> None:
        """Close a run that produced no result (``failed`` or ``cancelled``)."""
        if status not in ("failed", "cancelled", "finished"):
            raise UsageError(f"run status must be failed, cancelled or finished, not {status!r}")
        with self._transaction() as db:
            self._require_run(db, run_id)
            db.execute(
                "UPDATE runs SET status = ?, finished = ?, metrics = ? WHERE id = ?",
                (status, _now(), None if metrics is None else json.dumps(dict(metrics), default=float), run_id),
            )

    def runs(self) -> list[RunInfo]:
        return [
            RunInfo(
                id=r["id"],
                method=r["method"],
                params=json.loads(r["params"]),
                started=r["started"],
                finished=r["finished"],
                metrics=None if r["metrics"] is None else json.loads(r["metrics"]),
                status=r["status"],
            )
            for r in self._query("SELECT * FROM runs ORDER BY id")
        ]

    @staticmethod
    def _require_run(db: sqlite3.Connection, run_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run with id {run_id} in the catalog")
        return row

    def run_labels(self, run_id: int) -> dict[int, int]:
        """The raw labels a run produced (photo id → label), before the keep-user-edits rules."""
        return {r[0]: r[1] for r in self._query("SELECT photo_id, label FROM run_labels WHERE run_id = ?", (run_id,))}

    def record_result(
        self,
        run_id: int,
        photo_ids: Sequence[int],
        labels: Sequence[int] | np.ndarray,
        confidence: Sequence[float] | np.ndarray | None = None,
        metrics: Mapping[str, Any] | None = None,
        suggested_names: Mapping[int, str] | None = None,
    ) -> list[int]:
        """Make a run's labels the current clustering, keeping what the user decided.

        Parameters
        ----------
        run_id : int
            From :meth:`start_run`.
        photo_ids, labels : sequences of int, same length
            The photos the run clustered and the label of each (any integers; -1 is a label like others).
        confidence : sequence of float, optional
            How sure each label is (higher = surer).
        metrics : mapping, optional
            Stored with the run (seconds, loss, …).
        suggested_names : mapping of label to name, optional
            Names suggested for the run's clusters (what they show, when they were taken). A new cluster takes
            its label's suggestion; a matched cluster takes it only if its name was suggested too — a name the
            person gave always stays. Without a suggestion a new cluster is "Cluster N".

        Returns
        -------
        list of int
            The ids of the current clusters afterwards.

        Notes
        -----
        Locked clusters and photos the user placed are kept; matched clusters keep their id and name (see
        the module docstring). The whole call is one transaction and one undo step.
        """
        photo_ids = [int(p) for p in photo_ids]
        label_list = [int(x) for x in np.asarray(labels).reshape(-1)]
        if len(label_list) != len(photo_ids):
            raise UsageError(f"record_result: {len(photo_ids)} photos but {len(label_list)} labels")
        if len(set(photo_ids)) != len(photo_ids):
            raise UsageError("record_result: a photo id is listed twice")
        conf_list: list[float | None]
        if confidence is None:
            conf_list = [None] * len(photo_ids)
        else:
            conf_list = [float(c) for c in np.asarray(confidence, dtype=float).reshape(-1)]
            if len(conf_list) != len(photo_ids):
                raise UsageError(f"record_result: {len(photo_ids)} photos but {len(conf_list)} confidences")

        with self._transaction() as db:
            run = self._require_run(db, run_id)
            if run["status"] != "running":
                raise UsageError(f"run {run_id} is already {run['status']}; start a new run")
            self._require_photos(db, photo_ids)
            current = db.execute("SELECT id, locked FROM clusters WHERE current = 1").fetchall()
            current_ids = [r["id"] for r in current]
            old = {
                r["photo_id"]: (r["cluster_id"], r["source"])
                for r in db.execute("SELECT photo_id, cluster_id, source FROM assignments")
            }
            touched_photos = sorted(set(photo_ids) | set(old))

            def mutate() -> list[int]:
                return self._apply_run(db, run_id, photo_ids, label_list, conf_list, current, old,
                                       dict(suggested_names or {}))

            self._record_action(
                db, "run", f"clustering run {run_id} ({run['method']})", current_ids, touched_photos, mutate
            )
            db.executemany(
                "INSERT OR REPLACE INTO run_labels (run_id, photo_id, label, confidence) VALUES (?, ?, ?, ?)",
                list(zip([run_id] * len(photo_ids), photo_ids, label_list, conf_list)),
            )
            db.execute(
                "UPDATE runs SET status = 'finished', finished = ?, metrics = ? WHERE id = ?",
                (_now(), None if metrics is None else json.dumps(dict(metrics), default=float), run_id),
            )
            return [r[0] for r in db.execute("SELECT id FROM clusters WHERE current = 1 ORDER BY id")]

    def _apply_run(
        self,
        db: sqlite3.Connection,
        run_id: int,
        photo_ids: list[int],
        labels: list[int],
        confidences: list[float | None],
        current: list[sqlite3.Row],
        old: dict[int, tuple[int, str]],
        suggested_names: dict[int, str] | None = None,
    ) -> list[int]:
        from scipy.optimize import linear_sum_assignment

        suggested_names = suggested_names or {}

        locked = {r["id"] for r in current if r["locked"]}
        unlocked = [r["id"] for r in current if not r["locked"]]
        pinned = {pid for pid, (cid, source) in old.items() if cid in locked or source == "user"}
        free = [(pid, label, conf) for pid, label, conf in zip(photo_ids, labels, confidences) if pid not in pinned]

        label_values = sorted({label for _, label, _ in free})
        label_index = {label: i for i, label in enumerate(label_values)}
        old_index = {cid: j for j, cid in enumerate(unlocked)}
        overlap = np.zeros((len(label_values), len(unlocked)), dtype=np.int64)
        for pid, label, _ in free:
            previous = old.get(pid)
            if previous is not None and previous[0] in old_index:
                overlap[label_index[label], old_index[previous[0]]] += 1

        cluster_of_label: dict[int, int] = {}
        if overlap.size:
            rows, cols = linear_sum_assignment(overlap, maximize=True)
            for i, j in zip(rows, cols):
                if overlap[i, j] > 0:
                    cluster_of_label[label_values[i]] = unlocked[j]
        for label, cid in cluster_of_label.items():
            # A matched cluster whose name the app chose follows this run: its new suggestion, or a plain
            # "Cluster N" when the old suggestion no longer holds. A name the person gave stays.
            row = db.execute("SELECT auto_named, name FROM clusters WHERE id = ?", (cid,)).fetchone()
            if not row["auto_named"]:
                continue
            suggestion = suggested_names.get(label)
            if suggestion and row["name"] != suggestion:
                db.execute("UPDATE clusters SET name = ? WHERE id = ?", (self._free_name(db, suggestion, exclude=cid), cid))
            elif not suggestion and not _DEFAULT_NAME.fullmatch(row["name"]):
                db.execute("UPDATE clusters SET name = ? WHERE id = ?", (self._free_default_name(db), cid))
        created = []
        for label in label_values:
            if label not in cluster_of_label:
                suggestion = suggested_names.get(label)
                name = self._free_name(db, suggestion) if suggestion else self._free_default_name(db)
                new_id = self._insert_cluster(db, name, run_id)
                db.execute("UPDATE clusters SET auto_named = 1 WHERE id = ?", (new_id,))  # the app's name, not theirs
                cluster_of_label[label] = new_id
                created.append(new_id)
        db.executemany(
            """INSERT INTO assignments (photo_id, cluster_id, confidence, source) VALUES (?, ?, ?, 'model')
               ON CONFLICT(photo_id) DO UPDATE SET cluster_id = excluded.cluster_id,
                   confidence = excluded.confidence, source = 'model'""",
            [(pid, cluster_of_label[label], conf) for pid, label, conf in free],
        )
        # Previous clusters this run emptied leave the current set (they stay as history). A cluster that
        # was already empty (the user just made it, to fill it later) stays.
        emptied_candidates = {cid for cid, _ in old.values()} - locked
        self._retire_empty(db, sorted(emptied_candidates))
        return created

    # -- reading the current clustering ------------------------------------------------------------
    def clusters(self) -> list[ClusterInfo]:
        """The current clusters, oldest first (a stable order: ids never change while a cluster lives)."""
        rows = self._query(
            """SELECT c.id, c.name, c.locked, c.run_id, COUNT(a.photo_id) AS size
               FROM clusters c LEFT JOIN assignments a ON a.cluster_id = c.id
               WHERE c.current = 1 GROUP BY c.id ORDER BY c.id"""
        )
        representatives = self._representatives()
        return [
            ClusterInfo(r["id"], r["name"], r["size"], bool(r["locked"]), representatives.get(r["id"]), r["run_id"])
            for r in rows
        ]

    def assigned_photo_count(self) -> int:
        """How many photos are in a cluster: one indexed count, cheap even when :meth:`clusters` is not."""
        return int(self._query("SELECT COUNT(*) FROM assignments")[0][0])

    def cluster(self, cluster_id: int) -> ClusterInfo:
        for info in self.clusters():
            if info.id == cluster_id:
                return info
        raise UsageError(f"no current cluster with id {cluster_id}")

    def _representatives(self) -> dict[int, int]:
        # The surest photo of each cluster; photos without a confidence last, then the oldest.
        rows = self._query(
            """SELECT cluster_id, photo_id FROM (
                   SELECT cluster_id, photo_id, ROW_NUMBER() OVER (
                       PARTITION BY cluster_id ORDER BY confidence IS NULL, confidence DESC, photo_id) AS rank
                   FROM assignments) WHERE rank = 1"""
        )
        return {r[0]: r[1] for r in rows}

    def photos_in(self, cluster_id: int, order: str = "confidence") -> list[PhotoRow]:
        """The photos of a cluster: ``order="confidence"`` (surest first) or ``"name"`` (file name)."""
        if order == "confidence":
            rows = self._query(
                self._PHOTO_SELECT + " WHERE a.cluster_id = ? ORDER BY a.confidence IS NULL, a.confidence DESC, p.id",
                (cluster_id,),
            )
            return [self._photo_row(r) for r in rows]
        if order == "name":
            rows = [self._photo_row(r) for r in self._query(self._PHOTO_SELECT + " WHERE a.cluster_id = ?", (cluster_id,))]
            return sorted(rows, key=lambda row: (row.path.name.casefold(), str(row.path)))
        raise UsageError(f"photos_in: order must be 'confidence' or 'name', not {order!r}")

    def export_items(self) -> list:
        """Every assigned photo as an :class:`~photocluster.library.export.ExportItem` (cluster = its name)."""
        from photocluster.library.export import ExportItem

        rows = self._query(
            """SELECT p.path, c.name, a.confidence FROM assignments a JOIN photos p ON p.id = a.photo_id
               JOIN clusters c ON c.id = a.cluster_id ORDER BY c.id, p.id"""
        )
        return [ExportItem(source=_path_value(r[0]), cluster=r[1], confidence=r[2]) for r in rows]

    # -- user edits --------------------------------------------------------------------------------
    def rename(self, cluster_id: int, name: str) -> None:
        """Give a cluster a new name (kept across runs). Raises UsageError for an empty name."""
        name = str(name).strip()
        if not name:
            raise UsageError("a cluster name cannot be empty")
        with self._transaction() as db:
            old = self._require_current_cluster(db, cluster_id)["name"]

            def mutate() -> list[int]:
                db.execute("UPDATE clusters SET name = ?, auto_named = 0 WHERE id = ?", (name, cluster_id))
                return []

            self._record_action(db, "rename", f"rename “{old}” to “{name}”", [cluster_id], [], mutate)

    def set_locked(self, cluster_id: int, locked: bool = True) -> None:
        """Lock (a new run keeps the cluster and its photos as they are) or unlock a cluster."""
        with self._transaction() as db:
            name = self._require_current_cluster(db, cluster_id)["name"]

            def mutate() -> list[int]:
                db.execute("UPDATE clusters SET locked = ? WHERE id = ?", (int(bool(locked)), cluster_id))
                return []

            verb = "lock" if locked else "unlock"
            self._record_action(db, verb, f"{verb} “{name}”", [cluster_id], [], mutate)

    def move_photos(self, photo_ids: Iterable[int], cluster_id: int) -> None:
        """Move photos into a cluster; they stay there in later runs (source ``user``, confidence 1)."""
        photo_ids = sorted({int(p) for p in photo_ids})
        if not photo_ids:
            raise UsageError("move_photos: no photos given")
        with self._transaction() as db:
            name = self._require_current_cluster(db, cluster_id)["name"]
            self._require_photos(db, photo_ids)
            sources = self._clusters_of(db, photo_ids)
            statements = [("together", [*photo_ids, *cluster_core(db, cluster_id, exclude=photo_ids)], ())]
            statements += self._left_statements(db, photo_ids, exclude_cluster=cluster_id)

            def mutate() -> list[int]:
                self._assign(db, photo_ids, cluster_id, 1.0, "user")
                self._retire_empty(db, sources)
                return []

            what = "1 photo" if len(photo_ids) == 1 else f"{len(photo_ids)} photos"
            self._record_action(db, "move", f"move {what} to “{name}”", [cluster_id, *sources], photo_ids, mutate)
            record_statements(db, self._last_action_id(db), statements)

    def create_cluster(self, name: str | None = None, photo_ids: Iterable[int] = ()) -> int:
        """Make a new (user) cluster, optionally moving photos into it; returns its id."""
        photo_ids = sorted({int(p) for p in photo_ids})
        with self._transaction() as db:
            self._require_photos(db, photo_ids)
            sources = self._clusters_of(db, photo_ids)
            chosen = str(name).strip() if name is not None and str(name).strip() else self._free_default_name(db)
            statements = [("together", photo_ids, ()), *self._left_statements(db, photo_ids)]

            def mutate() -> list[int]:
                new_id = self._insert_cluster(db, chosen, None)
                self._assign(db, photo_ids, new_id, 1.0, "user")
                self._retire_empty(db, sources)
                return [new_id]

            created = self._record_action(db, "create", f"create “{chosen}”", sources, photo_ids, mutate)
            record_statements(db, self._last_action_id(db), statements)
            return created[0]

    def merge(self, cluster_ids: Iterable[int], into: int | None = None) -> int:
        """Merge clusters into one (``into``, default the first given): it keeps its id, name and lock.

        The other clusters leave the current set; the photos keep their confidence and source.
        """
        cluster_ids = list(dict.fromkeys(int(c) for c in cluster_ids))
        target = cluster_ids[0] if into is None and cluster_ids else into
        if target is None or len(set(cluster_ids) | {target}) < 2:
            raise UsageError("merge needs at least two different clusters")
        others = [c for c in cluster_ids if c != target]
        with self._transaction() as db:
            names = [self._require_current_cluster(db, c)["name"] for c in [target, *others]]
            photo_ids = [
                r[0]
                for r in db.execute(
                    f"SELECT photo_id FROM assignments WHERE cluster_id IN ({','.join('?' * len(others))})", others
                )
            ]

            def mutate() -> list[int]:
                db.execute(
                    f"UPDATE assignments SET cluster_id = ? WHERE cluster_id IN ({','.join('?' * len(others))})",
                    [target, *others],
                )
                db.execute(f"UPDATE clusters SET current = 0 WHERE id IN ({','.join('?' * len(others))})", others)
                return []

            statements = [("together", [p for c in [target, *others] for p in cluster_core(db, c)], ())]
            merged = ", ".join(f"“{n}”" for n in names[1:])
            self._record_action(db, "merge", f"merge {merged} into “{names[0]}”", [target, *others], photo_ids, mutate)
            record_statements(db, self._last_action_id(db), statements)
            return target

    def split(self, cluster_id: int, photo_ids: Sequence[int], labels: Sequence[int] | np.ndarray) -> list[int]:
        """Split a cluster by new labels (computed by the caller with a method, e.g. k-means with k = n).

        Parameters
        ----------
        cluster_id : int
            The cluster to split.
        photo_ids, labels : sequences of int
            Every photo of the cluster exactly once, with its new label (at least two different labels).

        Returns
        -------
        list of int
            One cluster id per distinct label, in sorted label order. The largest group stays in the
            original cluster (keeping its id, name and lock); the others become new clusters named
            "<name> 2", "<name> 3", …
        """
        photo_ids = [int(p) for p in photo_ids]
        label_list = [int(x) for x in np.asarray(labels).reshape(-1)]
        if len(photo_ids) != len(label_list):
            raise UsageError(f"split: {len(photo_ids)} photos but {len(label_list)} labels")
        if len(set(label_list)) < 2:
            raise UsageError("split needs at least two different labels")
        with self._transaction() as db:
            name = self._require_current_cluster(db, cluster_id)["name"]
            members = {r[0] for r in db.execute("SELECT photo_id FROM assignments WHERE cluster_id = ?", (cluster_id,))}
            if set(photo_ids) != members or len(photo_ids) != len(members):
                raise UsageError(
                    f"split: give every photo of “{name}” exactly once ({len(members)} photos, got {len(photo_ids)})"
                )
            groups: dict[int, list[int]] = defaultdict(list)
            for pid, label in zip(photo_ids, label_list):
                groups[label].append(pid)
            ordered = sorted(groups)
            keep_label = max(ordered, key=lambda label: (len(groups[label]), -label))

            def mutate() -> list[int]:
                created = []
                number = 2
                for label in ordered:
                    if label == keep_label:
                        continue
                    new_id = self._insert_cluster(db, f"{name} {number}", None)
                    number += 1
                    db.executemany(
                        "UPDATE assignments SET cluster_id = ? WHERE photo_id = ?", [(new_id, p) for p in groups[label]]
                    )
                    created.append(new_id)
                return created

            cores = [self._part_core(db, groups[label]) for label in ordered]
            statements = [("apart", a, b) for i, a in enumerate(cores) for b in cores[i + 1:]]
            created = self._record_action(
                db, "split", f"split “{name}” into {len(ordered)}", [cluster_id], photo_ids, mutate
            )
            record_statements(db, self._last_action_id(db), statements)
            new_ids = iter(created)
            return [cluster_id if label == keep_label else next(new_ids) for label in ordered]

    # -- corrections as constraints ----------------------------------------------------------------
    def corrections(self) -> Corrections:
        """The person's corrections — locked clusters and what each edit in effect says about which photos
        belong together — by content hash (:mod:`photocluster.library.corrections`)."""
        with self._lock:
            return read_corrections(self._db)

    def assignments(self, photo_ids: Sequence[int]) -> dict[int, int]:
        """The current cluster of each of these photos that has one (photo id → cluster id)."""
        ids = [int(p) for p in photo_ids]
        found: dict[int, int] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            found.update((r[0], r[1]) for r in self._query(
                f"SELECT photo_id, cluster_id FROM assignments WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def _left_statements(self, db: sqlite3.Connection, photo_ids: Sequence[int],
                         exclude_cluster: int | None = None) -> list[tuple[str, list[int], list[int]]]:
        """*apart*: photos taken out of a cluster versus the core of the cluster they left."""
        by_cluster: dict[int, list[int]] = defaultdict(list)
        for start in range(0, len(photo_ids), 900):
            chunk = list(photo_ids[start:start + 900])
            for pid, cid in db.execute(
                    f"SELECT photo_id, cluster_id FROM assignments WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk):
                if cid != exclude_cluster:
                    by_cluster[cid].append(pid)
        return [("apart", moved, cluster_core(db, cid, exclude=photo_ids)) for cid, moved in sorted(by_cluster.items())]

    @staticmethod
    def _part_core(db: sqlite3.Connection, photo_ids: Sequence[int]) -> list[int]:
        """The core of one part of a split: its photos the person placed and its surest model-placed ones."""
        from photocluster.library.corrections import CORE_SIZE

        rows = []
        for start in range(0, len(photo_ids), 900):
            chunk = list(photo_ids[start:start + 900])
            rows += db.execute(
                f"SELECT photo_id, source, confidence FROM assignments WHERE photo_id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall()
        rows.sort(key=lambda r: (r[1] != "user", r[2] is None, -(r[2] or 0.0), r[0]))
        user = [r[0] for r in rows if r[1] == "user"]
        model = [r[0] for r in rows if r[1] != "user"][:CORE_SIZE]
        return user + model

    @staticmethod
    def _last_action_id(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT MAX(id) FROM actions").fetchone()[0])

    # -- undo / redo -------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._query("SELECT 1 FROM actions WHERE state = 'done' LIMIT 1"))

    def can_redo(self) -> bool:
        return bool(self._query("SELECT 1 FROM actions WHERE state = 'undone' LIMIT 1"))

    def undo_description(self) -> str | None:
        """What :meth:`undo` would undo ("rename “A” to “B”"), for an "Undo …" menu entry."""
        rows = self._query("SELECT description FROM actions WHERE state = 'done' ORDER BY id DESC LIMIT 1")
        return rows[0][0] if rows else None

    def redo_description(self) -> str | None:
        rows = self._query("SELECT description FROM actions WHERE state = 'undone' ORDER BY id LIMIT 1")
        return rows[0][0] if rows else None

    def undo(self) -> str | None:
        """Undo the latest edit (or run) exactly; returns its description, None when there is nothing."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM actions WHERE state = 'done' ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                return None
            self._restore(db, json.loads(row["payload"])["before"])
            db.execute("UPDATE actions SET state = 'undone' WHERE id = ?", (row["id"],))
            return row["description"]

    def redo(self) -> str | None:
        """Redo the edit undone last; returns its description, None when there is nothing."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM actions WHERE state = 'undone' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            self._restore(db, json.loads(row["payload"])["after"])
            db.execute("UPDATE actions SET state = 'done' WHERE id = ?", (row["id"],))
            return row["description"]

    def history(self, limit: int = 100) -> list[ActionInfo]:
        """The latest actions, newest first."""
        rows = self._query("SELECT id, kind, description, created, state FROM actions ORDER BY id DESC LIMIT ?", (limit,))
        return [ActionInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _require_current_cluster(db: sqlite3.Connection, cluster_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM clusters WHERE id = ? AND current = 1", (cluster_id,)).fetchone()
        if row is None:
            raise UsageError(f"no current cluster with id {cluster_id}")
        return row

    @staticmethod
    def _require_photos(db: sqlite3.Connection, photo_ids: Sequence[int]) -> None:
        if not photo_ids:
            return
        known: set[int] = set()
        for start in range(0, len(photo_ids), 900):  # SQLite's bound-parameter limit
            chunk = photo_ids[start : start + 900]
            known.update(r[0] for r in db.execute(f"SELECT id FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        missing = [p for p in photo_ids if p not in known]
        if missing:
            raise UsageError(f"unknown photo ids: {', '.join(map(str, missing[:10]))}")

    @staticmethod
    def _clusters_of(db: sqlite3.Connection, photo_ids: Sequence[int]) -> list[int]:
        found: set[int] = set()
        for start in range(0, len(photo_ids), 900):
            chunk = photo_ids[start : start + 900]
            found.update(
                r[0]
                for r in db.execute(
                    f"SELECT DISTINCT cluster_id FROM assignments WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk
                )
            )
        return sorted(found)

    @staticmethod
    def _assign(db: sqlite3.Connection, photo_ids: Sequence[int], cluster_id: int, confidence: float | None, source: str) -> None:
        db.executemany(
            """INSERT INTO assignments (photo_id, cluster_id, confidence, source) VALUES (?, ?, ?, ?)
               ON CONFLICT(photo_id) DO UPDATE SET cluster_id = excluded.cluster_id,
                   confidence = excluded.confidence, source = excluded.source""",
            [(pid, cluster_id, confidence, source) for pid in photo_ids],
        )

    @staticmethod
    def _retire_empty(db: sqlite3.Connection, cluster_ids: Sequence[int]) -> None:
        """Unlocked clusters emptied by a move leave the current set (undo brings them back)."""
        for cid in cluster_ids:
            db.execute(
                """UPDATE clusters SET current = 0 WHERE id = ? AND locked = 0
                   AND NOT EXISTS (SELECT 1 FROM assignments WHERE cluster_id = ?)""",
                (cid, cid),
            )

    @staticmethod
    def _insert_cluster(db: sqlite3.Connection, name: str, run_id: int | None) -> int:
        cursor = db.execute(
            "INSERT INTO clusters (run_id, name, current, locked, created) VALUES (?, ?, 1, 0, ?)", (run_id, name, _now())
        )
        return int(cursor.lastrowid)

    @staticmethod
    def _free_name(db: sqlite3.Connection, wanted: str, exclude: int | None = None) -> str:
        """``wanted``, or "wanted 2", "wanted 3", … when a current cluster already has that name."""
        used = {r[0].casefold() for r in db.execute("SELECT name FROM clusters WHERE current = 1 AND id != ?",
                                                     (-1 if exclude is None else exclude,))}
        name, number = wanted, 2
        while name.casefold() in used:
            name, number = f"{wanted} {number}", number + 1
        return name

    @staticmethod
    def _free_default_name(db: sqlite3.Connection) -> str:
        used = {r[0].casefold() for r in db.execute("SELECT name FROM clusters WHERE current = 1")}
        number = 1
        while f"cluster {number}" in used:
            number += 1
        return f"Cluster {number}"

    @staticmethod
    def _snapshot(db: sqlite3.Connection, cluster_ids: Iterable[int], photo_ids: Iterable[int]) -> dict:
        clusters: dict[str, Any] = {}
        for cid in sorted(set(cluster_ids)):
            row = db.execute("SELECT name, locked, current, run_id, created, auto_named FROM clusters WHERE id = ?",
                             (cid,)).fetchone()
            clusters[str(cid)] = None if row is None else dict(row)
        assignments: dict[str, Any] = {}
        ids = sorted(set(photo_ids))
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            found = {
                r["photo_id"]: [r["cluster_id"], r["confidence"], r["source"]]
                for r in db.execute(
                    f"SELECT * FROM assignments WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk
                )
            }
            for pid in chunk:
                assignments[str(pid)] = found.get(pid)
        return {"clusters": clusters, "assignments": assignments}

    @staticmethod
    def _restore(db: sqlite3.Connection, snapshot: dict) -> None:
        """Put the rows of a snapshot back exactly (clusters first, so assignments can point at them)."""
        for key, row in snapshot["clusters"].items():
            if row is None:
                continue
            cid = int(key)
            values = (row["name"], row["locked"], row["current"], row["run_id"], row["created"],
                      row.get("auto_named", 0))
            if db.execute("SELECT 1 FROM clusters WHERE id = ?", (cid,)).fetchone():
                db.execute(
                    "UPDATE clusters SET name = ?, locked = ?, current = ?, run_id = ?, created = ?, auto_named = ? "
                    "WHERE id = ?",
                    (*values, cid),
                )
            else:
                db.execute(
                    "INSERT INTO clusters (name, locked, current, run_id, created, auto_named, id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*values, cid),
                )
        for key, row in snapshot["assignments"].items():
            pid = int(key)
            if row is None:
                db.execute("DELETE FROM assignments WHERE photo_id = ?", (pid,))
            else:
                db.execute(
                    """INSERT INTO assignments (photo_id, cluster_id, confidence, source) VALUES (?, ?, ?, ?)
                       ON CONFLICT(photo_id) DO UPDATE SET cluster_id = excluded.cluster_id,
                           confidence = excluded.confidence, source = excluded.source""",
                    (pid, *row),
                )
        for key, row in snapshot["clusters"].items():
            if row is None:  # created by the action being undone: nothing points at it any more
                db.execute("DELETE FROM clusters WHERE id = ?", (int(key),))

    def _record_action(
        self,
        db: sqlite3.Connection,
        kind: str,
        description: str,
        cluster_ids: Iterable[int],
        photo_ids: Iterable[int],
        mutate: Callable[[], list[int]],
    ) -> list[int]:
        """Run ``mutate`` inside the open transaction and log it with the rows before and after.

        ``mutate`` returns the ids of clusters it created (absent "before", so undo deletes them). Every
        cluster a photo of ``photo_ids`` sits in is included, so emptied or retired clusters come back too.
        """
        cluster_ids = set(cluster_ids)
        photo_ids = list(photo_ids)
        cluster_ids.update(self._clusters_of(db, photo_ids))
        before = self._snapshot(db, cluster_ids, photo_ids)
        created = mutate()
        for cid in created:
            before["clusters"][str(cid)] = None
        cluster_ids.update(created)
        cluster_ids.update(self._clusters_of(db, photo_ids))
        # Clusters a run retired (current → 0) are covered: they held some of photo_ids before.
        after = self._snapshot(db, cluster_ids, photo_ids)
        missing = set(after["clusters"]) - set(before["clusters"])
        if missing:  # a bug, not a user error: undo could not restore these clusters
            raise RuntimeError(f"{kind}: clusters {sorted(missing)} changed without a snapshot")
        # A new edit after undo makes the undone edits unreachable: a proper stack, as in every editor.
        # Their rows stay in the log (what the user did), their snapshots are dropped.
        db.execute("UPDATE actions SET state = 'discarded', payload = '{}' WHERE state = 'undone'")
        db.execute(
            "INSERT INTO actions (kind, description, payload, created, state) VALUES (?, ?, ?, ?, 'done')",
            (kind, description, json.dumps({"before": before, "after": after}), _now()),
        )
        # Bounded undo depth: a run's snapshot covers the whole library, so old ones must not pile up.
        db.execute(
            """UPDATE actions SET state = 'expired', payload = '{}' WHERE state = 'done' AND id <= (
                   SELECT id FROM actions WHERE state = 'done' ORDER BY id DESC LIMIT 1 OFFSET ?)""",
            (self.undo_depth,),
        )
        return created
