"""Export clusters to disk without ever losing or overwriting a photo: plan → journal → execute.

API overview
------------
::

    from photocluster.library.export import ExportItem, plan_export, run_export, recover_exports

    items = [ExportItem(source=Path("a.jpg"), cluster="Beach", confidence=0.93), ...]
    plan = plan_export(items, destination=Path("DEST"), mode="copy")  # copy | move | hardlink | symlink
    print(plan.describe())                 # the dry run: one line per operation, nothing touched
    for event in run_export(plan, cancel=token):   # ProgressEvent generator (stage "export")
        ...
    plan.report                            # ExportReport: what was exported, failures, manifest paths
    recover_exports(destination)           # next start: resume (or rollback=True) interrupted exports
    pending_exports(destination)           # ask first: which unfinished exports exist?

    # A command or window, before its slow work: check DEST, lock it, finish what an earlier export left.
    with prepare_export(destination, "move", source_folders=[folder], cancel=token) as session:
        session.warnings, session.recovered    # sentences to show; session.exclude: folders to leave unscanned
        ...                                    # scan (exclude=session.exclude), decode, cluster
        plan = session.plan(items)             # runs under the session's lock
        for event in run_export(plan, cancel=token): ...
        plan.report.ok                         # False when any photo failed: a non-zero exit status

How a photo cannot be lost
--------------------------
* **Plan.** Every photo gets one target ``DEST/<safe cluster folder>/<file name>``. Cluster names are
  sanitised by :func:`safe_folder_name` (no ``..``, separators, Windows reserved names, control characters,
  trailing dots/spaces, over-long names). Names that already exist on disk, or twice in the plan (also
  differing only by case, for case-insensitive disks), get `` (2)``, `` (3)`` … suffixes.
* **Journal.** ``DEST/.photocluster-export/<export id>.jsonl`` holds the plan and one JSON line per step of
  each operation, so the state of every photo is known after a crash. The lines later steps rely on are
  fsynced: the plan, ``placing`` (the target name and the copy's checksum, written before the name is
  made) and the end; the others (``begin``, ``placed``, ``done``) only save work when a power loss drops
  them, because recovery re-checks the disk against ``placing``.
* **Execute.** A copy is written to a hidden temporary name in the target folder, fsynced, verified (size
  and SHA-256 against the bytes read from the source), and only then linked to its final name with an
  operation that fails instead of overwriting (``os.link``); a partial copy therefore never carries a final
  name. A file that appears at the target between plan and execute makes the photo take the next free
  suffix. Move = the same copy, then the original is deleted, and only after the copy and its new name
  are durable (the folder is fsynced).
  Hard links and symbolic links are made directly (atomic); where the OS refuses them the plan fails with a
  clear message, or falls back to copying if ``fallback_to_copy=True`` was given.
* **One at a time.** An export holds an exclusive lock on its destination
  (``DEST/.photocluster-export/lock``, :class:`DestinationLock`; the kernel drops it when the process
  dies, so there are no stale locks) from before its journal is written until it ends; a second export
  into the same folder is refused with :class:`DestinationBusyError` ("the destination … is busy (another
  export is running into it)") and a recovery leaves a live journal alone.
* **Any name.** File names are bytes on POSIX; one that is not valid UTF-8 travels as Python's surrogate
  escapes through the plan and the journal (ASCII JSON, ``\\udcff``, read back as the very same name). The
  names made in DEST and the texts shown replace undecodable bytes with U+FFFD (and show control
  characters escaped: one line per photo); the JSON manifest keeps the original's exact bytes in hex.
* **Finish.** A manifest (``photocluster-manifest-<id>.csv`` and ``.json``: original path, new path, cluster,
  confidence) is written into DEST and the journal is closed.
* **Recover.** An export interrupted by a crash, a power loss or a full disk leaves an open journal (and its
  destination is remembered in the data folder); :func:`recover_exports` replays each photo from its last
  journaled step — finishing it, or with ``rollback=True`` undoing it (moved photos are moved back).

Errors that stop the whole export (disk full, read-only destination, links impossible) raise
:class:`ExportError` with one line a person can act on; a single unreadable or vanished source photo only
fails that photo (listed in the report and the manifest) and the export goes on.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import secrets
import threading
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from photocluster.errors import UsageError
from photocluster.library.scan import display_path as _shown
from photocluster.progress import NEVER_CANCELLED, Cancelled, CancelToken, EtaEstimator, ProgressEvent

__all__ = [
    "EXPORT_MODES",
    "ExportError",
    "ExportItem",
    "ExportOperation",
    "ExportPlan",
    "ExportReport",
    "ExportSession",
    "DestinationBusyError",
    "DestinationLock",
    "destination_busy",
    "PendingExport",
    "pending_exports",
    "plan_export",
    "prepare_export",
    "recover_exports",
    "run_export",
    "safe_folder_name",
]

EXPORT_MODES = ("copy", "move", "hardlink", "symlink")
JOURNAL_DIR_NAME = ".photocluster-export"
_PARTIAL_SUFFIX = ".photocluster-partial"
_CHUNK = 1 << 20
# Longest folder / file name we create, in UTF-8 bytes: most file systems allow 255; leave room for the
# " (123)" collision suffix and the temporary-name prefix.
_MAX_NAME_BYTES = 200
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{stem}{digit}" for stem in ("COM", "LPT") for digit in "123456789¹²³"
}
# Characters that are path separators or invalid on Windows / FAT / exFAT (the disk may be a USB stick).
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
# Destination problems that will fail every following photo too: stop the export, keep the journal.
_FATAL_DEST_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}

#: Test seam: called with a step name at every journaled step (the kill tests make the process SIGKILL
#: itself here). Never set in production.
_fault_hook: Callable[[str], None] | None = None

#: Test seam: False skips fsync. fsync only protects against power loss, which no test can cause; a killed
#: process loses nothing that reached the page cache, so the kill tests run without it (a slow, shared disk
#: takes ~10 ms per fsync). Always True in production.
_durable: bool = True


def _fsync(fd: int) -> None:
    if _durable:
        os.fsync(fd)


class ExportError(UsageError):
    """The export had to stop (disk full, read-only destination, links impossible).

    The journal is kept, so :func:`recover_exports` can resume (or roll back) once the cause is fixed.
    """


@dataclass(frozen=True)
class ExportItem:
    """One photo to export: its file, the name of its cluster, and how sure the clustering was."""

    source: Path
    cluster: str
    confidence: float | None = None


@dataclass(frozen=True)
class ExportOperation:
    """One planned file operation: ``source`` → ``destination / target``."""

    index: int
    source: Path  # absolute
    target: str  # relative to the destination, '/'-separated: "<folder>/<file name>"
    cluster: str
    confidence: float | None
    size: int


@dataclass
class ExportReport:
    """What an export did; ``plan.report`` after :func:`run_export` (also after an error or a cancel)."""

    export_id: str
    mode: str
    destination: Path
    exported: list[tuple[Path, Path]] = field(default_factory=list)  # (original path, new path)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (original path, reason)
    renamed_at_execute: list[tuple[str, str]] = field(default_factory=list)  # planned → used target
    fallbacks_to_copy: int = 0
    manifest_csv: Path | None = None
    manifest_json: Path | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """True when every photo was exported (nothing failed, not cancelled): a command's exit status."""
        return not self.failed and not self.cancelled

    def summary(self) -> str:
        verb = {"copy": "copied", "move": "moved", "hardlink": "hard-linked", "symlink": "linked"}[self.mode]
        text = f"{len(self.exported)} photos {verb} into {_shown(self.destination)}"
        if self.failed:
            text += f", {len(self.failed)} failed"
        if self.cancelled:
            text += " (cancelled)"
        return text


@dataclass
class ExportPlan:
    """The operations an export will perform; :meth:`describe` is the dry run.

    Attributes
    ----------
    destination : Path
        The export root; photos go into ``destination / <folder> /``.
    mode : str
        ``copy``, ``move``, ``hardlink`` or ``symlink``.
    operations : list of ExportOperation
        One per photo, in the order of the items.
    folders : dict
        Cluster name → folder name actually used.
    skipped : list of (Path, str)
        Items left out at plan time (source missing or not a file) with the reason.
    report : ExportReport or None
        Set by :func:`run_export`.
    """

    destination: Path
    mode: str
    operations: list[ExportOperation]
    folders: dict[str, str]
    skipped: list[tuple[Path, str]]
    fallback_to_copy: bool
    export_id: str
    report: ExportReport | None = None
    #: The destination lock of the :class:`ExportSession` that made this plan (run_export uses it instead
    #: of taking the lock again).
    lock: "DestinationLock | None" = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """The dry run: one line per operation (and one per skipped item), nothing is touched."""
        verb = {"copy": "copy", "move": "move", "hardlink": "hardlink", "symlink": "symlink"}[self.mode]
        # display_path: a non-UTF-8 name is shown with U+FFFD, a newline in a name as "\\n" (one line each).
        lines = [f"{verb} {_shown(op.source)} -> {_shown(self.destination / op.target)}" for op in self.operations]
        lines += [f"skip {_shown(source)}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)

    def target_path(self, operation: ExportOperation) -> Path:
        return self.destination / operation.target


@dataclass(frozen=True)
class PendingExport:
    """An export whose journal is still open (interrupted): what :func:`recover_exports` would act on."""

    destination: Path
    export_id: str
    mode: str
    total: int
    finished_operations: int
    journal: Path


# ---------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _valid_text(name: str) -> str:
    """``name`` as valid Unicode: a file name that is not valid UTF-8 (bytes on POSIX, carried by Python as
    surrogate escapes) has its undecodable bytes replaced by U+FFFD, so the name we make from it can be
    written on every disk (FAT and exFAT sticks, Windows shares) and into UTF-8 journals and manifests."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return name.encode("utf-8", "replace").decode("utf-8")


def _safe_component(name: str, fallback: str) -> str:
    """One path component that is safe on Linux, macOS and Windows; ``fallback`` when nothing is left."""
    text = unicodedata.normalize("NFC", _valid_text(str(name)))
    text = _UNSAFE_CHARS.sub("_", text)
    # Leading dots would hide the folder (or make "..") and trailing dots/spaces are dropped by Windows.
    text = text.strip().lstrip(".").rstrip(". ")
    stem, dot, rest = text.partition(".")
    if stem.strip().upper() in _WINDOWS_RESERVED:
        text = f"{stem}_{dot}{rest}"
    if len(text.encode("utf-8")) > _MAX_NAME_BYTES:
        base, ext = os.path.splitext(text)
        if len(ext.encode("utf-8")) > 20:
            base, ext = text, ""
        text = _truncate_utf8(base, _MAX_NAME_BYTES - len(ext.encode("utf-8"))).rstrip(". ") + ext
    if not text.strip(" ._"):
        return fallback
    return text


def safe_folder_name(cluster_name: str, number: int = 1) -> str:
    """Turn a cluster name into a folder name that stays inside the destination on every OS.

    Parameters
    ----------
    cluster_name : str
        Anything the user typed: ``"../../etc"``, ``"CON"``, ``"a/b"``, ``""`` …
    number : int
        Used for the fallback name ``"cluster <number>"`` when nothing usable is left.

    Returns
    -------
    str
        One path component: no separators, not ``.`` or ``..``, not hidden, no control characters, not a
        Windows reserved name, no trailing dot or space, at most 200 UTF-8 bytes.
    """
    return _safe_component(cluster_name, f"cluster {number}")


def _with_suffix(name: str, k: int, is_file: bool) -> str:
    if k == 1:
        return name
    if is_file:
        base, ext = os.path.splitext(name)
        return f"{base} ({k}){ext}"
    return f"{name} ({k})"


# ---------------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------------


def _new_export_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _probe_links(mode: str, source: Path, destination: Path) -> str | None:
    """Try one link of the kind asked for; return why it is impossible, or None when it works.

    The probe goes into the nearest folder of ``destination`` that exists (same disk, almost always) and
    is removed at once, so planning — the dry run — leaves nothing behind, not even DEST.
    """
    probe_dir = destination
    while not probe_dir.is_dir() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    probe = probe_dir / f".photocluster-link-probe-{secrets.token_hex(4)}"
    try:
        if mode == "hardlink":
            os.link(source, probe)
        else:
            os.symlink(source, probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        if os.path.lexists(probe):
            os.unlink(probe)
    return None


def plan_export(
    items: Iterable[ExportItem],
    destination: Path | str,
    mode: str = "copy",
    *,
    fallback_to_copy: bool = False,
) -> ExportPlan:
    """Plan an export: choose every photo's folder and file name; nothing is written except a link probe.

    Parameters
    ----------
    items : iterable of ExportItem
        The photos, each with its cluster name (the same source may appear only once).
    destination : Path
        Export root; created when missing.
    mode : {"copy", "move", "hardlink", "symlink"}
        ``copy`` is the default; ``move`` deletes each original after its copy is verified.
    fallback_to_copy : bool
        For link modes: copy a photo when the OS refuses the link instead of stopping with an error.

    Returns
    -------
    ExportPlan

    Raises
    ------
    UsageError
        Unknown mode, a destination that is a file, a source listed twice, or links that this OS / disk
        pair cannot make (and no fallback allowed).
    """
    if mode not in EXPORT_MODES:
        raise UsageError(f"unknown export mode {mode!r}; choose one of {', '.join(EXPORT_MODES)}")
    destination = Path(destination).expanduser().absolute()
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"export destination {_shown(destination)} is a file, not a folder")

    operations: list[ExportOperation] = []
    skipped: list[tuple[Path, str]] = []
    folders: dict[str, str] = {}
    used_folders: set[str] = set()  # casefolded: two clusters never share a folder, even on macOS/Windows
    used_names: dict[str, set[str]] = {}  # folder → casefolded file names taken by this plan or the disk
    seen_sources: set[Path] = set()

    for item in items:
        source = Path(item.source).expanduser().absolute()
        if source in seen_sources:
            raise UsageError(f"photo {_shown(source)} is listed twice in the export")
        seen_sources.add(source)
        try:
            stat = source.stat()
        except OSError as exc:
            skipped.append((source, f"cannot read: {exc.strerror or exc}"))
            continue
        if not source.is_file():
            skipped.append((source, "not a file"))
            continue

        cluster = str(item.cluster)
        if cluster not in folders:
            base = safe_folder_name(cluster, len(folders) + 1)
            k = 1
            while _with_suffix(base, k, is_file=False).casefold() in used_folders:
                k += 1
            folder = _with_suffix(base, k, is_file=False)
            folders[cluster] = folder
            used_folders.add(folder.casefold())
            folder_path = destination / folder
            used_names[folder] = (
                {p.name.casefold() for p in folder_path.iterdir()} if folder_path.is_dir() else set()
            )
        folder = folders[cluster]
        file_base = _safe_component(source.name, f"photo {len(operations) + 1}")
        k = 1
        while _with_suffix(file_base, k, is_file=True).casefold() in used_names[folder]:
            k += 1
        file_name = _with_suffix(file_base, k, is_file=True)
        used_names[folder].add(file_name.casefold())
        operations.append(
            ExportOperation(
                index=len(operations),
                source=source,
                target=f"{folder}/{file_name}",
                cluster=cluster,
                confidence=None if item.confidence is None else float(item.confidence),
                size=stat.st_size,
            )
        )

    if mode in ("hardlink", "symlink") and operations and not fallback_to_copy:
        reason = _probe_links(mode, operations[0].source, destination)
        if reason is not None:
            raise UsageError(
                f"cannot make {mode}s from {_shown(operations[0].source.parent)} into {_shown(destination)} "
                f"({reason}); export with mode copy instead"
            )
    return ExportPlan(
        destination=destination,
        mode=mode,
        operations=operations,
        folders=folders,
        skipped=skipped,
        fallback_to_copy=fallback_to_copy,
        export_id=_new_export_id(),
    )


# ---------------------------------------------------------------------------------------------------
# Low-level file steps
# ---------------------------------------------------------------------------------------------------


def _checkpoint(step: str) -> None:
    if _fault_hook is not None:
        _fault_hook(step)


def _fsync_dir(path: Path) -> None:
    """Make a rename/link/unlink in ``path`` durable (POSIX); Windows has no directory fsync."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        _fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _SourceError(Exception):
    """The source photo could not be read: fail this photo, go on with the others."""


def _copy_file(source: Path, temp: Path) -> tuple[str, int]:
    """Copy ``source`` to ``temp`` (fsynced); return the SHA-256 and size of the bytes read from the source.

    Raises _SourceError for problems with the source; OSError from writing passes through.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        reader = open(source, "rb")
    except OSError as exc:
        raise _SourceError(exc.strerror or str(exc)) from exc
    with reader, open(temp, "xb") as writer:
        first = True
        while True:
            try:
                chunk = reader.read(_CHUNK)
            except OSError as exc:
                raise _SourceError(exc.strerror or str(exc)) from exc
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
            if first:
                _checkpoint("copy-partial")
                first = False
        writer.flush()
        _fsync(writer.fileno())
    return digest.hexdigest(), size


def _link_no_overwrite(temp: Path, target: Path) -> None:
    """Give ``temp`` the name ``target`` atomically, raising FileExistsError rather than overwriting.

    ``os.rename`` silently replaces an existing file on POSIX, so the new name is made with ``os.link``
    (which refuses existing names) and the temporary name removed. File systems without hard links
    (FAT, some network shares) get a check-then-rename; Windows' rename refuses existing names itself.
    """
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in _FATAL_DEST_ERRNOS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
        os.rename(temp, target)
        return
    os.unlink(temp)


def _is_our_link(mode: str, source: Path, target: Path) -> bool:
    try:
        if mode == "symlink":
            return target.is_symlink() and os.readlink(target) == str(source)
        return os.path.samefile(source, target)
    except OSError:
        return False


def _matches(path: Path, sha256: str | None) -> bool:
    try:
        return sha256 is not None and path.is_file() and not path.is_symlink() and _sha256_of(path) == sha256
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------
# One export at a time into a destination
# ---------------------------------------------------------------------------------------------------

LOCK_FILE_NAME = "lock"


class DestinationBusyError(ExportError):
    """Another export (another process, or another window of this one) is running into the destination."""


def _busy_message(destination: Path, holder: str) -> str:
    who = f", process {holder}" if holder else ""
    return (f"the destination {_shown(destination)} is busy (another export is running into it{who}); "
            "wait for it to finish, or export into another folder")


class DestinationLock:
    """An exclusive lock on an export destination, held while its journal may be written.

    ``DEST/.photocluster-export/lock`` is locked with ``fcntl.flock`` (POSIX) or ``msvcrt.locking``
    (Windows): the kernel drops the lock when its holder exits or is killed, so a crashed export never
    leaves a stale lock. Two locks taken in one process conflict too (each opens the file anew), so two
    windows of the app are kept apart as well as two commands. The holder's PID is written into the file
    for the message. On a disk whose file system refuses both (some network shares), the lock file is
    created with ``O_EXCL`` instead and a lock whose PID no longer runs is stale and taken over.

    Raises :class:`DestinationBusyError` when another holder has it.
    """

    def __init__(self, destination: Path | str) -> None:
        self.destination = Path(destination)
        self.path = self.destination / JOURNAL_DIR_NAME / LOCK_FILE_NAME
        self._fd: int | None = None
        self._exclusive_file = False
        self._acquire()

    @property
    def held(self) -> bool:
        return self._fd is not None or self._exclusive_file

    def _acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ExportError(
                f"cannot write into the export destination {_shown(self.destination)}: {_os_cause(exc)}"
            ) from exc
        try:
            locked = try_lock_exclusively(fd)
        except OSError:  # no advisory locks on this file system: fall back to an O_EXCL file
            os.close(fd)
            self._acquire_exclusive_file()
            return
        if not locked:
            holder = _read_pid(self.path)
            os.close(fd)
            raise DestinationBusyError(_busy_message(self.destination, holder))
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:
            pass  # the PID is only for the message

    def _acquire_exclusive_file(self) -> None:
        pid_path = self.path.with_name(LOCK_FILE_NAME + ".pid")
        for _ in range(2):
            try:
                fd = os.open(pid_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_pid(pid_path)
                if holder and not _pid_alive(int(holder)):
                    try:
                        os.unlink(pid_path)  # stale: its holder is gone
                    except OSError:
                        pass
                    continue
                raise DestinationBusyError(_busy_message(self.destination, holder)) from None
            except OSError as exc:
                raise ExportError(
                    f"cannot write into the export destination {_shown(self.destination)}: {_os_cause(exc)}"
                ) from exc
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            os.close(fd)
            self._exclusive_file = True
            self.path = pid_path
            return
        raise DestinationBusyError(_busy_message(self.destination, _read_pid(pid_path)))

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing the descriptor releases the lock
        elif self._exclusive_file:
            self._exclusive_file = False
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> "DestinationLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def try_lock_exclusively(fd: int) -> bool:
    """Try to lock ``fd`` exclusively without waiting: True when locked, False when someone else holds it.
    OSError when the file system has no such locks. The kernel drops the lock when ``fd`` is closed or its
    process dies (``flock`` on POSIX, ``msvcrt.locking`` on Windows); the catalog's writer lock uses it too."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.isdigit() else ""


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def _os_cause(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno == errno.EROFS:
        return "it is on a read-only disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def destination_busy(destination: Path | str) -> bool:
    """True when an export holds the lock of ``destination`` now (another process or another window)."""
    lock_path = Path(destination) / JOURNAL_DIR_NAME / LOCK_FILE_NAME
    if not lock_path.exists():
        return False
    try:
        lock = DestinationLock(destination)
    except DestinationBusyError:
        return True
    except ExportError:
        return False
    lock.release()
    return False


# ---------------------------------------------------------------------------------------------------
# Journal
# ---------------------------------------------------------------------------------------------------


def _pending_registry() -> Path:
    from photocluster.config import data_dir

    return data_dir() / "pending-exports.json"


def _update_registry(destination: Path, add: bool) -> None:
    """Remember destinations with open journals, so the next start can offer to recover them."""
    try:
        path = _pending_registry()
        entries = json.loads(path.read_text("utf-8")) if path.exists() else []
        entries = [e for e in entries if isinstance(e, str) and e != str(destination)]
        if add:
            entries.append(str(destination))
        temp = path.with_suffix(f".{secrets.token_hex(3)}.tmp")
        temp.write_text(json.dumps(entries, indent=1), "utf-8")
        os.replace(temp, path)
    except (OSError, ValueError):
        # The registry is only a convenience; the journal in DEST is the source of truth.
        pass


class _Journal:
    """Append-only JSON-lines file, each line fsynced before the step it announces goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # A line torn by a crash must not swallow the next record: start on a fresh line.
        size = os.fstat(self._fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def write(self, record: dict, sync: bool = True) -> None:
        """Append one record; ``sync=False`` for records whose loss only means redoing safe work.

        A later synced record (fsync covers the whole file) makes the unsynced ones before it durable.
        """
        # ensure_ascii: a non-UTF-8 file name (surrogate escapes in Python) is written as "\\udcff" and read
        # back as the same escape, so the journal names the very file; text encoding could not hold it.
        data = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write to the export journal")
            if sync:
                _fsync(self._fd)
        except OSError as exc:
            cause = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
            raise ExportError(
                f"export stopped: cannot write its journal {_shown(self.path)}: {cause}. Nothing was lost; fix the "
                "cause and recover the export (it resumes from its journal)"
            ) from exc
        _checkpoint(record["type"])

    def close(self) -> None:
        os.close(self._fd)


def _read_journal(path: Path) -> list[dict]:
    records = []
    with open(path, "rb") as handle:
        for line in handle:
            try:
                records.append(json.loads(line.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                # A line torn by a power loss: the step it announced never started. Later lines (written
                # by a recovery, on a fresh line) still count.
                continue
    return records


@dataclass
class _OpState:
    status: str = "pending"  # pending | begun | placing | placed | done | failed
    target: str | None = None  # the target actually used (may carry a suffix the plan did not)
    sha256: str | None = None
    via_copy: bool = False  # a link mode fell back to copying this photo
    reason: str = ""
    verified_now: bool = False  # checked in this process a moment ago (not journaled: a restart re-checks)


def _replay(records: list[dict]) -> tuple[dict, list[_OpState], str | None]:
    plan = records[0]
    states = [_OpState() for _ in plan["operations"]]
    final = None
    for record in records[1:]:
        kind = record["type"]
        if kind in ("finished", "cancelled", "rolled_back", "aborted"):
            final = kind if kind != "aborted" else None
            continue
        if "op" not in record:
            continue
        state = states[record["op"]]
        if kind == "begin":
            state.status = "begun"
        elif kind == "placing":
            state.status, state.target = "placing", record["target"]
            state.sha256, state.via_copy = record.get("sha256"), record.get("via_copy", False)
        elif kind == "placed":
            state.status, state.target = "placed", record["target"]
            state.sha256 = record.get("sha256", state.sha256)
        elif kind == "done":
            state.status = "done"
        elif kind == "failed":
            state.status, state.reason = "failed", record.get("reason", "")
        elif kind == "restored":
            state.status = "restored"
    return plan, states, final


# ---------------------------------------------------------------------------------------------------
# Execution (shared by run_export and recover_exports: one code path resumes from any journaled step)
# ---------------------------------------------------------------------------------------------------


def _plan_record(plan: ExportPlan) -> dict:
    return {
        "type": "plan",
        "version": 1,
        "export_id": plan.export_id,
        "mode": plan.mode,
        "destination": str(plan.destination),
        "fallback_to_copy": plan.fallback_to_copy,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "operations": [
            {
                "source": str(op.source),
                "target": op.target,
                "cluster": op.cluster,
                "confidence": op.confidence,
                "size": op.size,
            }
            for op in plan.operations
        ],
    }


def _plan_from_record(record: dict) -> ExportPlan:
    operations = [
        ExportOperation(
            index=i,
            source=Path(o["source"]),
            target=o["target"],
            cluster=o["cluster"],
            confidence=o["confidence"],
            size=o["size"],
        )
        for i, o in enumerate(record["operations"])
    ]
    folders = {op.cluster: op.target.split("/")[0] for op in operations}
    return ExportPlan(
        destination=Path(record["destination"]),
        mode=record["mode"],
        operations=operations,
        folders=folders,
        skipped=[],
        fallback_to_copy=record.get("fallback_to_copy", False),
        export_id=record["export_id"],
    )


class _Executor:
    def __init__(self, plan: ExportPlan, journal: _Journal, states: list[_OpState]) -> None:
        self.plan = plan
        self.journal = journal
        self.states = states
        self.report = ExportReport(plan.export_id, plan.mode, plan.destination)
        plan.report = self.report
        # Planned targets are reserved: a suffix chosen at execute time must not steal another's name.
        self.reserved = {op.target.casefold() for op in plan.operations}
        self.touched_folders: set[Path] = set()

    def temp_path(self, op: ExportOperation) -> Path:
        folder = self.plan.destination / op.target.split("/")[0]
        return folder / f".{self.plan.export_id}-{op.index}{_PARTIAL_SUFFIX}"

    def free_target(self, op: ExportOperation, after: str | None = None) -> str:
        """The planned target if free on disk, else the next free suffix."""
        folder, name = op.target.split("/", 1)
        k = 1
        while True:
            candidate = f"{folder}/{_with_suffix(name, k, is_file=True)}"
            taken = os.path.lexists(self.plan.destination / candidate)
            reserved_by_other = k > 1 and candidate.casefold() in self.reserved
            if not taken and not reserved_by_other and candidate != after:
                return candidate
            k += 1

    # -- one operation, from whatever step it reached --------------------------------------------------
    def advance(self, op: ExportOperation) -> None:
        state = self.states[op.index]
        if state.status == "placing":
            self._settle_placing(op, state)
        if state.status in ("pending", "begun"):
            self._place(op, state)
        if state.status == "placed":
            if self.plan.mode == "move":
                self._delete_original(op, state)
            else:
                self.journal.write({"type": "done", "op": op.index}, sync=False)
                state.status = "done"
        elif state.status == "done" and self.plan.mode == "move" and op.source.exists():
            self._remove_leftover_original(op, state)
        if state.status in ("done", "failed") and os.path.lexists(self.temp_path(op)):
            self._remove_quietly(self.temp_path(op))  # its removal was lost with the power
        if state.status == "done":
            self.report.exported.append((op.source, self.plan.destination / str(state.target)))
            if state.target != op.target:
                self.report.renamed_at_execute.append((op.target, str(state.target)))
        elif state.status == "failed":
            self.report.failed.append((op.source, state.reason))

    def _fail(self, op: ExportOperation, state: _OpState, reason: str) -> None:
        # Unsynced: if lost, the photo is simply tried again.
        self.journal.write({"type": "failed", "op": op.index, "reason": reason}, sync=False)
        state.status, state.reason = "failed", reason

    def _settle_placing(self, op: ExportOperation, state: _OpState) -> None:
        """After a crash between 'placing' and 'placed': did the final name get made?"""
        target = self.plan.destination / str(state.target)
        temp = self.temp_path(op)
        linking = self.plan.mode in ("hardlink", "symlink") and not state.via_copy
        if linking:
            placed = _is_our_link(self.plan.mode, op.source, target)
        else:
            placed = _matches(target, state.sha256)
        if placed:
            if os.path.lexists(temp):
                os.unlink(temp)
            self.journal.write(
                {"type": "placed", "op": op.index, "target": state.target, "sha256": state.sha256}, sync=False
            )
            state.status = "placed"
        else:
            state.status = "pending"  # start this photo again; the source is still where it was

    def _place(self, op: ExportOperation, state: _OpState) -> None:
        folder = self.plan.destination / op.target.split("/")[0]
        temp = self.temp_path(op)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fatal(exc, f"cannot create folder {_shown(folder)}") from exc
        if os.path.lexists(temp):
            os.unlink(temp)  # a partial copy from an interrupted attempt: never trusted, redone
        if not op.source.is_file():
            self._fail(op, state, "source photo no longer exists")
            return
        # Unsynced: the temporary name is derived from the op, so a lost 'begin' changes nothing.
        self.journal.write({"type": "begin", "op": op.index}, sync=False)
        state.status = "begun"

        if self.plan.mode in ("hardlink", "symlink") and not state.via_copy:
            if self._make_link(op, state):
                return
            state.via_copy = True
            self.report.fallbacks_to_copy += 1

        try:
            sha256, size = _copy_file(op.source, temp)
        except _SourceError as exc:
            self._remove_quietly(temp)
            self._fail(op, state, f"cannot read source: {exc}")
            return
        except OSError as exc:
            self._remove_quietly(temp)
            raise self._fatal(exc, f"cannot write {_shown(temp)}") from exc
        _checkpoint("copied")
        # Verify what is on the destination disk against what was read from the source.
        try:
            source_size = op.source.stat().st_size
            written_sha = _sha256_of(temp)
        except OSError as exc:
            self._remove_quietly(temp)
            self._fail(op, state, f"cannot verify copy: {exc.strerror or exc}")
            return
        if temp.stat().st_size != size or size != source_size or written_sha != sha256:
            self._remove_quietly(temp)
            self._fail(op, state, "copy did not verify (size or checksum differ); original kept")
            return
        state.verified_now = True

        candidate = self.free_target(op)
        while True:
            self.journal.write(
                {"type": "placing", "op": op.index, "target": candidate, "sha256": sha256, "via_copy": state.via_copy}
            )
            state.status, state.target, state.sha256 = "placing", candidate, sha256
            try:
                _link_no_overwrite(temp, self.plan.destination / candidate)
                break
            except FileExistsError:
                candidate = self.free_target(op, after=candidate)  # appeared a moment ago: next suffix
            except OSError as exc:
                self._remove_quietly(temp)
                raise self._fatal(exc, f"cannot name {_shown(self.plan.destination / candidate)}") from exc
        # 'placing' (synced) already names the target and its checksum: after a crash the target is
        # checked against it, so 'placed' need not be synced. The new name itself must be durable before
        # a move deletes the original; a copy only needs its folders synced once, at the end.
        if self.plan.mode == "move":
            _fsync_dir(folder)
        else:
            self.touched_folders.add(folder)
        self.journal.write({"type": "placed", "op": op.index, "target": candidate, "sha256": sha256}, sync=False)
        state.status = "placed"

    def _make_link(self, op: ExportOperation, state: _OpState) -> bool:
        candidate = self.free_target(op)
        while True:
            self.journal.write({"type": "placing", "op": op.index, "target": candidate, "via_copy": False})
            state.status, state.target = "placing", candidate
            target = self.plan.destination / candidate
            try:
                if self.plan.mode == "hardlink":
                    os.link(op.source, target)
                else:
                    os.symlink(op.source, target)
                break
            except FileExistsError:
                candidate = self.free_target(op, after=candidate)
            except OSError as exc:
                if exc.errno in _FATAL_DEST_ERRNOS or not self.plan.fallback_to_copy:
                    raise self._fatal(exc, f"cannot make a {self.plan.mode} at {_shown(target)}") from exc
                return False
        self.touched_folders.add(target.parent)
        self.journal.write({"type": "placed", "op": op.index, "target": candidate}, sync=False)
        state.status = "placed"
        return True

    def _delete_original(self, op: ExportOperation, state: _OpState) -> None:
        """Move mode, last step: the copy is in place and verified; now the original may go."""
        if op.source.exists():
            target = self.plan.destination / str(state.target)
            # After a crash the copy is checked again: nothing is deleted on the word of a stale journal.
            if not state.verified_now and not _matches(target, state.sha256):
                self._fail(op, state, f"copy at {_shown(target)} does not match the original; original kept")
                return
            try:
                op.source.unlink()
            except OSError as exc:
                self._fail(op, state, f"copied, but the original could not be deleted: {exc.strerror or exc}")
                return
            self.touched_folders.add(op.source.parent)
        # Unsynced: a lost 'done' (or a deletion lost with the power) is finished by the next recovery.
        self.journal.write({"type": "done", "op": op.index}, sync=False)
        state.status = "done"

    def _remove_leftover_original(self, op: ExportOperation, state: _OpState) -> None:
        """A move journaled as done whose original came back (its deletion was lost with the power)."""
        target = self.plan.destination / str(state.target)
        if _matches(op.source, state.sha256) and _matches(target, state.sha256):
            try:
                op.source.unlink()
            except OSError:
                return
            self.touched_folders.add(op.source.parent)

    def sync_touched_folders(self) -> None:
        """Make every name this export created or removed durable (before the journal says 'finished')."""
        for folder in sorted(self.touched_folders):
            _fsync_dir(folder)
        self.touched_folders.clear()

    @staticmethod
    def _remove_quietly(path: Path) -> None:
        try:
            if os.path.lexists(path):
                os.unlink(path)
        except OSError:
            pass

    def _fatal(self, exc: OSError, what: str) -> ExportError:
        if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
            cause = "the destination disk is full"
        elif exc.errno == errno.EROFS:
            cause = "the destination is read-only"
        else:
            cause = exc.strerror or str(exc)
        done = sum(1 for s in self.states if s.status == "done")
        return ExportError(
            f"export stopped: {what}: {cause}. {done} of {len(self.states)} photos are done and nothing was "
            f"lost; fix the cause and recover the export (it resumes from its journal in "
            f"{_shown(self.plan.destination / JOURNAL_DIR_NAME)})"
        )

    # -- the end -------------------------------------------------------------------------------------
    def write_manifest(self) -> None:
        base = self.plan.destination / f"photocluster-manifest-{self.plan.export_id}"
        rows = []
        for op in self.plan.operations:
            state = self.states[op.index]
            if state.status == "done":
                rows.append(
                    {
                        "original_path": _valid_text(str(op.source)),
                        "new_path": _valid_text(str(self.plan.destination / str(state.target))),
                        "cluster": _valid_text(op.cluster),
                        "confidence": op.confidence,
                    }
                )
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["original_path", "new_path", "cluster", "confidence"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "confidence": "" if row["confidence"] is None else row["confidence"]})
        # Names that are not valid UTF-8 are shown with U+FFFD; the JSON also keeps their exact bytes (hex).
        raw = {}
        for op in self.plan.operations:
            if _valid_text(str(op.source)) != str(op.source):
                raw[op.index] = os.fsencode(op.source).hex()
        json_rows = []
        done_ops = [op for op in self.plan.operations if self.states[op.index].status == "done"]
        for op, row in zip(done_ops, rows):
            json_rows.append({**row, "original_path_bytes": raw[op.index]} if op.index in raw else row)
        document = {
            "export_id": self.plan.export_id,
            "mode": self.plan.mode,
            "destination": _valid_text(str(self.plan.destination)),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "photos": json_rows,
            "failed": [{"original_path": _valid_text(str(p)), "reason": _valid_text(r)} for p, r in self.report.failed],
        }
        csv_path = base.with_name(base.name + ".csv")
        json_path = base.with_name(base.name + ".json")
        _write_durably(csv_path, buffer.getvalue())
        _write_durably(json_path, json.dumps(document, indent=1, ensure_ascii=False))
        self.report.manifest_csv, self.report.manifest_json = csv_path, json_path


def _write_durably(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}{_PARTIAL_SUFFIX}")
    with open(temp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        _fsync(handle.fileno())
    _link_no_overwrite(temp, path)
    _fsync_dir(path.parent)


def _execute(
    plan: ExportPlan,
    journal: _Journal,
    states: list[_OpState],
    cancel: CancelToken,
    stage: str = "export",
) -> Iterator[ProgressEvent]:
    executor = _Executor(plan, journal, states)
    total = len(plan.operations)
    eta = EtaEstimator(total)
    verb = {"copy": "copied", "move": "moved", "hardlink": "linked", "symlink": "linked"}[plan.mode]
    yield ProgressEvent(stage, 0, total, message=f"exporting {total} photos into {_shown(plan.destination)}")
    try:
        yield from _execute_steps(plan, executor, journal, states, cancel, stage, eta, verb)
    except OSError as exc:  # an unexpected destination failure (e.g. the manifest on a full disk)
        raise executor._fatal(exc, "cannot write into the destination") from exc


def _execute_steps(
    plan: ExportPlan,
    executor: _Executor,
    journal: _Journal,
    states: list[_OpState],
    cancel: CancelToken,
    stage: str,
    eta: EtaEstimator,
    verb: str,
) -> Iterator[ProgressEvent]:
    total = len(plan.operations)
    for op in plan.operations:
        if cancel.cancelled:
            executor.sync_touched_folders()
            executor.write_manifest()
            journal.write({"type": "cancelled"})
            _update_registry(plan.destination, add=False)
            executor.report.cancelled = True
            raise Cancelled(f"export cancelled; {len(executor.report.exported)} photos were exported")
        executor.advance(op)
        done = op.index + 1
        state = states[op.index]
        message = (
            f"{verb} {_shown(op.source.name)} -> {_shown(str(state.target))}" if state.status == "done"
            else f"failed {_shown(op.source.name)}: {state.reason}"
        )
        yield ProgressEvent(stage, done, total, message=message, eta_seconds=eta.eta(done))
    executor.sync_touched_folders()
    executor.write_manifest()
    journal.write({"type": "finished"})
    _update_registry(plan.destination, add=False)


def run_export(plan: ExportPlan, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Execute a plan, yielding a :class:`ProgressEvent` (stage ``"export"``) after each photo.

    ``plan.report`` holds the :class:`ExportReport` afterwards — also when the generator stopped with
    :class:`ExportError` (nothing lost; :func:`recover_exports` resumes) or
    :class:`~photocluster.progress.Cancelled` (the photos done so far stay, with their manifest).

    Raises
    ------
    UsageError
        The plan was already executed.
    ExportError
        The destination failed for every photo (disk full, read-only, links impossible).
    DestinationBusyError
        Another export is running into the same destination (nothing was written).
    """
    if plan.report is not None:
        raise UsageError("this export plan was already executed; make a new plan")
    journal_dir = plan.destination / JOURNAL_DIR_NAME
    try:
        journal_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export folder {_shown(plan.destination)}: {_os_cause(exc)}") from exc
    # One export at a time into a destination: a second one would "recover" this one's live journal.
    own_lock = None if plan.lock is not None and plan.lock.held else DestinationLock(plan.destination)
    try:
        journal = _Journal(journal_dir / f"{plan.export_id}.jsonl")
        try:
            journal.write(_plan_record(plan))
            _fsync_dir(journal_dir)
            _update_registry(plan.destination, add=True)
            states = [_OpState() for _ in plan.operations]
            yield from _execute(plan, journal, states, cancel)
        finally:
            journal.close()
    finally:
        if own_lock is not None:
            own_lock.release()


# ---------------------------------------------------------------------------------------------------
# Recovery
# ---------------------------------------------------------------------------------------------------


def _open_journals(destination: Path) -> list[tuple[Path, list[dict]]]:
    journal_dir = destination / JOURNAL_DIR_NAME
    if not journal_dir.is_dir():
        return []
    found = []
    for path in sorted(journal_dir.glob("*.jsonl")):
        try:
            records = _read_journal(path)
        except OSError:
            continue
        if not records or records[0].get("type") != "plan":
            continue
        _, _, final = _replay(records)
        if final is None:
            found.append((path, records))
    return found


def _destinations(destination: Path | str | None) -> list[Path]:
    if destination is not None:
        return [Path(destination).expanduser().absolute()]
    try:
        entries = json.loads(_pending_registry().read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(e) for e in entries if isinstance(e, str)]


def pending_exports(destination: Path | str | None = None) -> list[PendingExport]:
    """Interrupted exports in ``destination`` (or in every destination remembered as unfinished).

    Lets a user interface ask "resume or roll back?" before calling :func:`recover_exports`.
    """
    pending = []
    for dest in _destinations(destination):
        if destination is None and destination_busy(dest):
            continue  # an export is running into it now: its journal is open because it is live
        for path, records in _open_journals(dest):
            plan, states, _ = _replay(records)
            pending.append(
                PendingExport(
                    destination=dest,
                    export_id=plan["export_id"],
                    mode=plan["mode"],
                    total=len(states),
                    finished_operations=sum(s.status in ("done", "failed") for s in states),
                    journal=path,
                )
            )
    return pending


def recover_exports(
    destination: Path | str | None = None,
    *,
    rollback: bool = False,
    cancel: CancelToken = NEVER_CANCELLED,
    lock: DestinationLock | None = None,
) -> list[str]:
    """Resume (default) or roll back every interrupted export found in ``destination``.

    Parameters
    ----------
    destination : Path, optional
        The export root. None: every destination remembered (in the data folder) as having an unfinished
        export.
    rollback : bool
        False: finish each interrupted export (every photo ends up exactly once in DEST, moved originals
        are gone, a manifest is written). True: undo it — copies and links made are removed, moved photos
        are put back where they were (never overwriting anything), temporary files are deleted.
    cancel : CancelToken
        Checked between photos.
    lock : DestinationLock, optional
        The lock of ``destination`` when the caller holds it already (:func:`prepare_export`); otherwise
        each destination is locked while it is recovered, and one that another export holds now is left
        alone (its journal is live, not interrupted) with a sentence saying so.

    Returns
    -------
    list of str
        One sentence per export recovered (empty when there was nothing to do).

    Raises
    ------
    ExportError
        The destination still fails (disk still full …); the journal stays for the next attempt.
    """
    messages = []
    for dest in _destinations(destination):
        held = lock if lock is not None and lock.held and lock.destination == dest else None
        if held is None:
            if not _open_journals(dest):
                _update_registry(dest, add=False)
                continue
            try:
                own = DestinationLock(dest)
            except DestinationBusyError as exc:
                messages.append(f"not recovered: {exc}")
                continue
        else:
            own = None
        try:
            messages.extend(_recover_destination(dest, rollback, cancel)[0])
        finally:
            if own is not None:
                own.release()
    return messages


def _recover_destination(dest: Path, rollback: bool, cancel: CancelToken) -> tuple[list[str], int]:
    """Recover every open journal of ``dest`` (whose lock the caller holds): (sentences, photos failed)."""
    messages = []
    failed = 0
    for path, records in _open_journals(dest):
        plan_record, states, _ = _replay(records)
        plan = _plan_from_record(plan_record)
        plan.destination = dest  # the folder may have been moved or remounted since
        already = sum(s.status in ("done", "failed") for s in states)
        remaining = [op for op, s in zip(plan.operations, states) if s.status in ("pending", "begun")]
        if not rollback and remaining and not any(op.source.exists() for op in remaining):
            # Most likely the drive holding the originals is not connected: do not mark every photo
            # failed (that would close the journal), keep it for the next attempt.
            messages.append(
                f"export {plan.export_id} into {_shown(dest)} not resumed: none of the {len(remaining)} photos "
                f"left to export can be found (is the drive with {_shown(remaining[0].source.parent)} "
                "connected?)"
            )
            continue
        journal = _Journal(path)
        try:
            journal.write({"type": "recovery", "rollback": rollback}, sync=False)
            if rollback:
                messages.append(_rollback(plan, journal, states))
            else:
                for _ in _execute(plan, journal, states, cancel, stage="recover export"):
                    pass
                report = plan.report
                assert report is not None
                failed += len(report.failed)
                messages.append(
                    f"resumed export {plan.export_id} into {_shown(dest)}: {len(report.exported)} photos "
                    f"exported ({already} were done before the interruption)"
                    + (f", {len(report.failed)} failed: " + "; ".join(
                        f"{_shown(source)}: {reason}" for source, reason in report.failed) if report.failed else "")
                )
        finally:
            journal.close()
    if not _open_journals(dest):
        _update_registry(dest, add=False)
    return messages, failed


def _restore_original(plan: ExportPlan, op: ExportOperation, copy: Path, sha256: str | None) -> bool:
    """Copy ``copy`` back to ``op.source`` (temporary name, fsync, verify, no-overwrite rename)."""
    temp = op.source.with_name(f".{plan.export_id}-{op.index}{_PARTIAL_SUFFIX}")
    try:
        op.source.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(temp):
            os.unlink(temp)
        copied_sha, _ = _copy_file(copy, temp)
        if copied_sha != sha256 or _sha256_of(temp) != copied_sha:
            os.unlink(temp)
            return False
        _link_no_overwrite(temp, op.source)
    except (OSError, _SourceError):
        _Executor._remove_quietly(temp)
        return False
    _fsync_dir(op.source.parent)
    return True


def _rollback(plan: ExportPlan, journal: _Journal, states: list[_OpState]) -> str:
    """Undo an interrupted export, newest photo first; never delete the only copy of a photo."""
    executor = _Executor(plan, journal, states)
    removed = restored = kept = 0
    for op in reversed(plan.operations):
        state = states[op.index]
        executor._remove_quietly(executor.temp_path(op))
        if state.status not in ("placing", "placed", "done", "restored") or state.target is None:
            continue
        target = plan.destination / state.target
        linking = plan.mode in ("hardlink", "symlink") and not state.via_copy
        ours = _is_our_link(plan.mode, op.source, target) if linking else _matches(target, state.sha256)
        if not ours:
            continue
        if plan.mode == "move" and not _matches(op.source, state.sha256):
            # The original is gone: this copy is the only one. Put it back where it was.
            if os.path.lexists(op.source):
                kept += 1  # something else took its place: keep the copy in DEST
                continue
            if not _restore_original(plan, op, target, state.sha256):
                kept += 1
                continue
            journal.write({"type": "restored", "op": op.index})
            restored += 1
        target.unlink()
        _fsync_dir(target.parent)
        removed += 1
    for folder in set(plan.folders.values()):
        try:
            (plan.destination / folder).rmdir()  # only succeeds when empty: folders the export created
        except OSError:
            pass
    journal.write({"type": "rolled_back"})
    _update_registry(plan.destination, add=False)
    text = f"rolled back export {plan.export_id} in {_shown(plan.destination)}: {removed} files removed"
    if restored:
        text += f", {restored} moved photos put back"
    if kept:
        text += f", {kept} kept because their original place is taken"
    return text


# ---------------------------------------------------------------------------------------------------
# Before the slow work: check the destination, lock it, finish what an earlier export left
# ---------------------------------------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _resolved(path: Path) -> Path:
    """``path`` with links resolved as far as it exists (the rest appended as given)."""
    base = _existing_ancestor(path)
    try:
        return base.resolve() / path.relative_to(base)
    except (OSError, ValueError):
        return path


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@dataclass
class ExportSession:
    """What :func:`prepare_export` found and holds: use it as a context manager around the whole run.

    Attributes
    ----------
    destination : Path
        Absolute.
    mode : str
    dry_run : bool
    warnings : list of str
        Sentences to show before the work starts (the destination is inside a scanned folder, an
        interrupted export a dry run did not recover, ...).
    recovered : list of str
        One sentence per interrupted export that was finished first (:func:`recover_exports`).
    recovery_failures : int
        Photos the recovery could not export (named in ``recovered``).
    exclude : list of Path
        Folders the scan must leave out (the destination, when it lies inside a scanned folder).
    lock : DestinationLock or None
        Held from :func:`prepare_export` until :meth:`close` (None for a dry run, which writes nothing).
    """

    destination: Path
    mode: str
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    recovery_failures: int = 0
    exclude: list[Path] = field(default_factory=list)
    lock: DestinationLock | None = None

    def plan(self, items: Iterable[ExportItem], *, fallback_to_copy: bool = False) -> ExportPlan:
        """:func:`plan_export` into this destination; the plan runs under this session's lock."""
        plan = plan_export(items, self.destination, self.mode, fallback_to_copy=fallback_to_copy)
        plan.lock = self.lock
        return plan

    def close(self) -> None:
        """Release the destination lock."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> "ExportSession":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def prepare_export(
    destination: Path | str,
    mode: str = "copy",
    source_folders: Iterable[Path | str] = (),
    cancel: CancelToken = NEVER_CANCELLED,
    *,
    dry_run: bool = False,
) -> ExportSession:
    """Every check an export needs, done before the slow work (scan, decode, clustering) starts.

    1. ``mode`` is known; the destination is not a file, its name can be written by this OS, and it can be
       written into (created when missing; a dry run only checks, and creates nothing).
    2. The destination must not be a scanned folder itself; inside one, it is excluded from the scan (see
       ``exclude``, and a warning), so the copies of one run are not sorted again as new photos by the next.
    3. Not a dry run: the destination is locked (:class:`DestinationLock`) until the session is closed, and
       any export into it that was interrupted earlier is finished first, before any scan — a move
       interrupted with 3 photos left can then be completed by re-running it, whatever the new run finds.

    Returns
    -------
    ExportSession
        A context manager; close it (or leave its ``with``) when the export is done.

    Raises
    ------
    UsageError
        Unknown mode, a destination that is a file, the scanned folder itself, or a name this OS cannot
        write.
    DestinationBusyError
        Another export is running into the destination now.
    ExportError
        The destination cannot be written (read-only disk, permission denied), or a recovery failed.
    """
    if mode not in EXPORT_MODES:
        raise UsageError(f"unknown export mode {mode!r}; choose one of {', '.join(EXPORT_MODES)}")
    destination = Path(os.path.abspath(Path(destination).expanduser()))
    try:
        os.fsencode(destination)
    except UnicodeEncodeError:
        raise UsageError(f"the export destination {_shown(destination)} is not a name this system can write") from None
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"export destination {_shown(destination)} is a file, not a folder")
    session = ExportSession(destination=destination, mode=mode, dry_run=dry_run)

    resolved = _resolved(destination)
    for folder in source_folders:
        folder = Path(os.path.abspath(Path(folder).expanduser()))
        source = _resolved(folder)
        if resolved == source:
            raise UsageError(
                f"the export destination {_shown(destination)} is the folder being sorted; export into another "
                "folder (a new sub-folder of it is fine: it is left out of the scan)"
            )
        if _is_inside(resolved, source):
            session.exclude.append(destination)
            session.warnings.append(
                f"the export destination {_shown(destination)} is inside the scanned folder {_shown(folder)}: "
                "it is left out of the scan, so exported photos are not sorted again"
            )
        elif _is_inside(source, resolved):
            session.warnings.append(
                f"the scanned folder {_shown(folder)} is inside the export destination {_shown(destination)}"
            )

    if dry_run:
        ancestor = _existing_ancestor(destination)
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ExportError(f"cannot write into the export destination {_shown(destination)}: permission denied")
        if destination.is_dir() and destination_busy(destination):
            session.warnings.append(f"another export is running into {_shown(destination)} now; this export "
                                    "would have to wait for it")
        elif destination.is_dir():
            pending = pending_exports(destination)
            if pending:
                session.warnings.append(
                    f"an interrupted export into {_shown(destination)} ({pending[0].finished_operations} of "
                    f"{pending[0].total} photos done) will be finished first when this export runs"
                )
        return session

    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export destination {_shown(destination)}: {_os_cause(exc)}") from exc
    session.lock = DestinationLock(destination)
    try:
        messages, failed = _recover_destination(destination, False, cancel)
    except BaseException:
        session.close()
        raise
    session.recovered, session.recovery_failures = messages, failed
    return session
