"""Find the photos in one or more folders, and report every file that cannot be used — with its reason.

API overview
------------
``FolderScan(folders, include_hidden=False, follow_links=False, extensions=None)``
    ``steps(cancel)`` is a generator of :class:`~photocluster.progress.ProgressEvent` (stage "list", then
    "scan") for a GUI worker thread or a tqdm bar; afterwards ``report`` holds the :class:`ScanReport`.
``scan_folders(folders, ...) -> ScanReport``
    The same, run to the end (scripts and tests).
``ScanIndex``
    Remembers the hash and header of unchanged files (path, size, mtime, inode, ctime), so a second scan
    of a large library reads no file again; on by default (``index=True``).
``ScanReport``
    ``photos`` (:class:`PhotoFile`: path, size, mtime, content_hash, width, height, format), ``skipped``
    (:class:`SkippedFile`: path, reason), ``duplicates`` (groups of byte-identical files), counts of files
    that were not candidates at all (other extensions, hidden).

The scan reads each candidate file once (and not at all when :class:`ScanIndex` knows it unchanged): it streams the bytes through BLAKE2b (the content hash is the key
of the decode cache and finds byte-identical duplicates) and reads the image header (format, size, EXIF
orientation) without decoding pixels. Pixel data is decoded exactly once, later, by
:mod:`photocluster.library.decode`; damage that only shows when pixels are decoded (a truncated JPEG) is
reported there, with the same :class:`SkippedFile` shape.

A file is never dropped silently: each file whose extension marks it as a photo either becomes a
:class:`PhotoFile` or a :class:`SkippedFile` with a sentence saying why (empty, not an image, decompression
bomb, permission denied, vanished during the scan, broken link, link loop, ...).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import threading
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image, UnidentifiedImageError

from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent, Throttle

#: Extensions scanned by default (lower case, without the dot). HEIC/HEIF only count when pillow-heif
#: (the optional extra ``photocluster[heif]``) is installed.
DEFAULT_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif", "heic", "heif")
HEIF_EXTENSIONS: frozenset[str] = frozenset({"heic", "heif"})

#: Bytes read per call while hashing: large enough to be fast, small enough to keep memory flat.
_HASH_CHUNK = 1 << 20
#: Files up to this size are read into memory once for hash + header; larger ones are streamed twice.
_IN_MEMORY_LIMIT = 64 << 20
_EXIF_ORIENTATION_TAG = 0x0112

_heif_state: bool | None = None


def heif_available() -> bool:
    """True when pillow-heif is importable; registers its Pillow opener the first time (lazily, because
    importing it costs time and it is an optional extra)."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _heif_state = True
        except Exception:  # ImportError, or a broken binary wheel: HEIC then is "not supported"
            _heif_state = False
    return _heif_state


#: Control characters in a file name (a newline is legal on Linux) would split or corrupt a printed line.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display_path(path: str | os.PathLike | bytes) -> str:
    """A printable, one-line form of a path.

    File names that are not valid UTF-8 (bytes names on Linux, kept by Python as surrogate escapes) would
    make ``print`` raise, so undecodable bytes become U+FFFD; control characters (a newline in a name would
    split a line of a plan or a log) are shown as backslash escapes (``\\n``, ``\\x1b``).
    """
    raw = os.fsencode(os.fspath(path)) if not isinstance(path, bytes) else path
    text = raw.decode("utf-8", errors="replace")
    return _CONTROL_CHARS.sub(lambda m: _CONTROL_ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


# -- the pixel limit: a huge real photo is not a decompression bomb -------------------------------------
#: Pixels a photo may have whatever its file size: Pillow's own limit at import time (89.5 M pixels, about
#: 256 MiB decoded as RGB).
SAFE_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485
#: Above :data:`SAFE_PIXELS`, a file must hold at least this many bytes per pixel it claims. Deflate (PNG,
#: TIFF) packs at most about 1032 bytes into one, so even a real 1-bit image takes 1/8256 byte a pixel and
#: a JPEG at least one bit per 8x8 block (1/512 byte a pixel); a file below 1/10000 byte a pixel cannot
#: hold the pixels it claims: a crafted header (a bomb) or a cut-off file. A 100-megapixel JPEG from a
#: camera is 10-60 MB (0.1-0.6 byte a pixel).
MIN_BYTES_PER_PIXEL: float = 1e-4
#: JPEG decodes at 1/8 scale (``Image.draft``): a gigapixel JPEG needs about 50 MB decoded. Above this, no.
MAX_PIXELS_REDUCIBLE: int = 1_000_000_000
#: Formats decoded at full size (PNG, TIFF, WebP, ...): 300 M pixels take about 900 MB as RGB.
MAX_PIXELS_FULL_DECODE: int = 300_000_000
#: Formats Pillow can decode at a reduced scale (so memory stays small whatever the pixel count).
_REDUCIBLE_FORMATS = frozenset({"JPEG", "MPO"})
_pillow_limit_lock = threading.RLock()


def pixel_limit_refusal(width: int, height: int, file_size: int | None, fmt: str | None = None,
                        max_pixels: int | None = None, *, safe_pixels: int | None = None) -> str | None:
    """Why an image of ``width`` x ``height`` pixels in a file of ``file_size`` bytes is refused, or None.

    Parameters
    ----------
    max_pixels:
        None (the default): the photo rule — up to ``safe_pixels`` always; above it only with at least
        :data:`MIN_BYTES_PER_PIXEL` bytes of file a pixel (else it is a bomb or a cut-off file), and at most
        :data:`MAX_PIXELS_REDUCIBLE` (JPEG) or :data:`MAX_PIXELS_FULL_DECODE` (other formats) pixels.
        A positive number: a strict limit (scripts, tests). 0: no limit of ours.
    safe_pixels:
        Default Pillow's ``Image.MAX_IMAGE_PIXELS`` now (:data:`SAFE_PIXELS` when that is None).
    """
    pixels = width * height
    if max_pixels is not None:
        if max_pixels and pixels > max_pixels:
            return f"decompression bomb refused ({width}x{height} pixels is more than {max_pixels})"
        return None
    if safe_pixels is None:
        safe_pixels = Image.MAX_IMAGE_PIXELS
    if pixels <= (safe_pixels or SAFE_PIXELS):
        return None
    if file_size is not None and file_size < pixels * MIN_BYTES_PER_PIXEL:
        return (f"decompression bomb refused ({width}x{height} pixels claimed by a file of {file_size} bytes, "
                "too small to hold them)")
    ceiling = MAX_PIXELS_REDUCIBLE if (fmt or "").upper() in _REDUCIBLE_FORMATS else MAX_PIXELS_FULL_DECODE
    if pixels > ceiling:
        return (f"image too large to decode ({width}x{height} = {pixels / 1e6:.0f} M pixels; the limit for "
                f"{fmt or 'this format'} is {ceiling / 1e6:.0f} M)")
    return None


class PillowLimitSuspended:
    """Within ``with``: Pillow's own decompression-bomb check is off, because :func:`pixel_limit_refusal`
    decides instead (Pillow refuses anything over 179 M pixels outright, real 200-MP photos included).

    ``limit`` is the value Pillow had (our rule reads it). With ``active=False`` nothing is changed (an
    explicit ``max_pixels=0`` keeps Pillow's check). A lock keeps threads from restoring each other's value.
    """

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.limit: int | None = Image.MAX_IMAGE_PIXELS

    def __enter__(self) -> "PillowLimitSuspended":
        if self.active:
            _pillow_limit_lock.acquire()
            self.limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.active:
            Image.MAX_IMAGE_PIXELS = self.limit
            _pillow_limit_lock.release()


@dataclass(frozen=True)
class PhotoFile:
    """A file that looks usable: its header was read and its bytes hashed.

    ``width`` and ``height`` are as displayed, i.e. after the EXIF orientation (swapped for 90° turns).
    ``mtime_ns`` and ``size`` let the decoder notice a file replaced after the scan.
    """

    path: Path
    size: int
    mtime: float
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class SkippedFile:
    """A file (or folder) that cannot be used, and the reason in words a person understands."""

    path: Path
    reason: str


@dataclass
class ScanReport:
    """What a scan found.

    Attributes
    ----------
    photos:
        Usable photos in a stable order (folders as given, then paths sorted).
    skipped:
        Files and folders that cannot be used, each with its reason.
    duplicates:
        Groups (two or more paths) of byte-identical files. Every copy stays in ``photos`` (each one is a
        file the user may want sorted) but it is decoded only once.
    ignored_other:
        Files whose extension is not a photo extension (sidecars, videos, documents): counted, not listed.
    ignored_hidden:
        Hidden files and folders left out because ``include_hidden`` was off.
    excluded:
        Folders not entered because they were given as ``exclude`` (an export destination inside a
        scanned folder: its copies must not be scanned as new photos on the next run).
    """

    photos: list[PhotoFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)
    ignored_other: int = 0
    ignored_hidden: int = 0
    excluded: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many photos, skipped files, duplicate groups and ignored files."""
        text = f"{len(self.photos)} photos, {len(self.skipped)} skipped"
        if self.duplicates:
            extra = sum(len(group) - 1 for group in self.duplicates)
            text += f", {extra} byte-identical duplicate(s) in {len(self.duplicates)} group(s)"
        if self.ignored_other:
            text += f", {self.ignored_other} other file(s) ignored"
        if self.ignored_hidden:
            text += f", {self.ignored_hidden} hidden item(s) ignored"
        if self.excluded:
            text += f", {len(self.excluded)} folder(s) excluded"
        return text


def _normalise_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    chosen = DEFAULT_EXTENSIONS if extensions is None else tuple(extensions)
    return frozenset(ext.lower().lstrip(".") for ext in chosen)


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    # Windows marks hidden files with an attribute rather than a leading dot.
    attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def _reason_for_os_error(exc: OSError, *, action: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished during the scan (deleted or moved while scanning)"
    if isinstance(exc, PermissionError):
        return f"unreadable: permission denied while {action}"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.EIO:
        return f"unreadable: input/output error while {action} (damaged disk or network share?)"
    return f"unreadable: {exc.strerror or exc} while {action}"


def read_header(data: bytes | os.PathLike | str, *, max_pixels: int | None = None) -> tuple[str, int, int, str]:
    """Identify an image without decoding its pixels.

    Parameters
    ----------
    data:
        The file's bytes, or its path.
    max_pixels:
        The pixel limit, see :func:`pixel_limit_refusal`: None (default) accepts huge real photos and
        refuses only files too small for the pixels they claim; a positive number is a strict limit; 0
        leaves only Pillow's own check (whose warning, between 1x and 2x its limit, counts as a refusal).

    Returns
    -------
    (format, width, height, mode)
        Width and height after the EXIF orientation.

    Raises
    ------
    ValueError
        With the reason as message, when the data is not a usable image.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        source: io.BytesIO | os.PathLike | str = io.BytesIO(data)
        file_size: int | None = len(data)
    else:
        source = data
        try:
            file_size = os.stat(data).st_size
        except OSError:
            file_size = None  # Image.open below reports the reason
    try:
        with warnings.catch_warnings(), PillowLimitSuspended(active=max_pixels != 0) as pillow:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                fmt = img.format or "unknown"
                mode = img.mode
                orientation = 1
                try:
                    orientation = int(img.getexif().get(_EXIF_ORIENTATION_TAG, 1))
                except Exception:  # broken EXIF block: the pixels may still be fine
                    orientation = 1
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (no known image format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ValueError(f"damaged image header ({type(exc).__name__}: {exc})") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    refusal = pixel_limit_refusal(width, height, file_size, fmt, max_pixels, safe_pixels=pillow.limit)
    if refusal:
        raise ValueError(refusal)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return fmt, width, height, mode


def hash_file(path: Path) -> str:
    """BLAKE2b (128-bit digest, hex) of a file's bytes, streamed."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_bytes(data: bytes) -> str:
    """BLAKE2b (128-bit digest, hex) of bytes already in memory — the same value as :func:`hash_file`."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ScanIndex:
    """What earlier scans learned about each file, so an unchanged file is not read again.

    An SQLite table keyed by path, valid while the file's size, modification time, inode and change time
    (``st_ctime_ns``: set by the kernel on every write and on ``utime``, so a file rewritten with its old
    modification time restored still counts as changed) are the same. Only files that were usable photos
    are stored. The index is an optimisation: if its file cannot be opened or written (read-only cache,
    another process holding a lock), the scan simply reads every file.

    Parameters
    ----------
    path:
        The SQLite file (default ``<cache>/scan-index.sqlite3``).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        import sqlite3

        self._pending: list[tuple] = []
        try:
            if path is None:
                from photocluster.config import cache_dir

                path = cache_dir() / "scan-index.sqlite3"
            self.path: Path | None = Path(path)
            self._db: "sqlite3.Connection | None" = sqlite3.connect(self.path, timeout=2.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                "inode INTEGER, ctime_ns INTEGER, content_hash TEXT, format TEXT, width INTEGER, height INTEGER)"
            )
            self._db.commit()
        except (sqlite3.Error, OSError):
            self.path, self._db = None, None

    @staticmethod
    def _key(path: Path) -> bytes:
        return os.fsencode(os.path.abspath(path))  # bytes: non-UTF-8 names are valid keys too

    def lookup(self, path: Path, st: os.stat_result) -> tuple[str, str, int, int] | None:
        """(content_hash, format, width, height) if ``path`` is unchanged since it was stored."""
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT size, mtime_ns, inode, ctime_ns, content_hash, format, width, height FROM files WHERE path = ?",
                (self._key(path),),
            ).fetchone()
        except Exception:
            return None
        if row is None or tuple(row[:4]) != (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns):
            return None
        return row[4], row[5], row[6], row[7]

    def store(self, photo: PhotoFile, st: os.stat_result) -> None:
        self._pending.append((self._key(photo.path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns,
                              photo.content_hash, photo.format, photo.width, photo.height))
        if len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        if self._db is None or not self._pending:
            self._pending.clear()
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
        except Exception:
            pass  # an optimisation only: the next scan reads these files again
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


class FolderScan:
    """A scan of one or more folders, driven step by step.

    Parameters
    ----------
    folders:
        Folders to walk recursively.
    include_hidden:
        Also scan files and folders whose name starts with a dot (or that Windows marks hidden).
    follow_links:
        Follow symbolic links to files and folders. Loops are detected by remembering the
        (device, inode) of every folder entered. When off, links with a photo extension are reported
        as skipped so they are not lost silently.
    extensions:
        File extensions to consider (default :data:`DEFAULT_EXTENSIONS`). HEIC/HEIF are only usable with
        pillow-heif installed; without it they are reported as skipped with that reason.
    max_pixels:
        The pixel limit (:func:`pixel_limit_refusal`): by default huge real photos pass and only files too
        small for the pixels they claim (decompression bombs) are refused.
    index:
        Reuse what earlier scans learned about unchanged files (:class:`ScanIndex`): True (the default
        index in the cache folder), False (read every file), or the path of an index file.
    exclude:
        Folders never entered (nor their contents), e.g. an export destination inside a scanned folder;
        compared by device and inode, so another spelling of the same folder is excluded too. Those met
        are listed in ``report.excluded``.

    Examples
    --------
    >>> scan = FolderScan(["~/Pictures"])              # doctest: +SKIP
    >>> for event in scan.steps(cancel=token): ...     # doctest: +SKIP
    >>> scan.report.summary()                          # doctest: +SKIP
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike],
        *,
        include_hidden: bool = False,
        follow_links: bool = False,
        extensions: Iterable[str] | None = None,
        max_pixels: int | None = None,
        index: bool | str | os.PathLike = True,
        exclude: Iterable[str | os.PathLike] = (),
    ) -> None:
        self.folders = [Path(os.path.expanduser(os.fspath(f))) for f in folders]
        self.exclude = [Path(os.path.expanduser(os.fspath(f))) for f in exclude]
        self.index = index
        self.include_hidden = include_hidden
        self.follow_links = follow_links
        self.extensions = _normalise_extensions(extensions)
        self.max_pixels = max_pixels
        self.report = ScanReport()

    # -- walking ----------------------------------------------------------------------------------
    def _walk(self, cancel: CancelToken) -> Iterator[Path | ProgressEvent]:
        """Yield candidate file paths (and, now and then, events so a cancel is seen quickly)."""
        visited: set[tuple[int, int]] = set()
        excluded: set[tuple[int, int]] = set()
        for folder in self.exclude:
            try:
                st = folder.stat()
            except OSError:
                continue  # not there (yet): nothing of it can be scanned
            excluded.add((st.st_dev, st.st_ino))
        seen_files: set[str] = set()
        throttle = Throttle(0.5)
        found = 0
        for root in self.folders:
            try:
                root_stat = root.stat()
            except FileNotFoundError:
                self.report.skipped.append(SkippedFile(root, "folder does not exist"))
                continue
            except OSError as exc:
                self.report.skipped.append(SkippedFile(root, "folder " + _reason_for_os_error(exc, action="opening it")))
                continue
            if not stat.S_ISDIR(root_stat.st_mode):
                self.report.skipped.append(SkippedFile(root, "not a folder"))
                continue
            key = (root_stat.st_dev, root_stat.st_ino)
            if key in excluded:
                self.report.excluded.append(root)
                continue
            if key in visited:  # the same folder given twice, or nested in one given before
                continue
            visited.add(key)
            stack = [root]
            while stack:
                cancel.raise_if_cancelled()
                folder = stack.pop()
                try:
                    with os.scandir(folder) as iterator:
                        entries = sorted(iterator, key=lambda e: e.name)
                except OSError as exc:
                    self.report.skipped.append(SkippedFile(folder, "folder " + _reason_for_os_error(exc, action="listing it")))
                    continue
                subfolders: list[Path] = []
                for entry in entries:
                    path = Path(entry.path)
                    try:
                        hidden = _is_hidden(entry)
                        is_link = entry.is_symlink()
                    except OSError as exc:
                        self.report.skipped.append(SkippedFile(path, _reason_for_os_error(exc, action="reading its entry")))
                        continue
                    if hidden and not self.include_hidden:
                        self.report.ignored_hidden += 1
                        continue
                    if is_link and not self.follow_links:
                        if self._has_photo_extension(entry.name):
                            self.report.skipped.append(SkippedFile(path, "symbolic link, not followed (use follow links)"))
                        elif _points_to_dir(path):
                            self.report.skipped.append(SkippedFile(path, "symbolic link to a folder, not followed "
                                                                         "(use follow links)"))
                        else:
                            self.report.ignored_other += 1
                        continue
                    try:
                        is_dir = entry.is_dir(follow_symlinks=True)
                    except OSError:
                        is_dir = False
                    if is_dir:
                        try:
                            st = entry.stat(follow_symlinks=True)
                        except OSError as exc:
                            self.report.skipped.append(SkippedFile(path, "folder " + _reason_for_os_error(exc, action="opening it")))
                            continue
                        key = (st.st_dev, st.st_ino)
                        if key in excluded:
                            self.report.excluded.append(path)
                            continue
                        if key in visited:
                            reason = ("symbolic link loop (leads to a folder already scanned)" if is_link
                                      else "folder already scanned")
                            self.report.skipped.append(SkippedFile(path, reason))
                            continue
                        visited.add(key)
                        subfolders.append(path)
                        continue
                    if not self._has_photo_extension(entry.name):
                        self.report.ignored_other += 1
                        continue
                    if is_link and not path.exists():
                        self.report.skipped.append(SkippedFile(path, "broken symbolic link (its target is missing)"))
                        continue
                    if is_link:
                        # Two links to one file would be one photo twice; the content-hash duplicate check
                        # reports them, but the very same real file is only listed once.
                        real = os.path.realpath(path)
                        if real in seen_files:
                            self.report.skipped.append(SkippedFile(path, "symbolic link to a file already scanned"))
                            continue
                        seen_files.add(real)
                    else:
                        seen_files.add(os.path.realpath(path))
                    found += 1
                    yield path
                    if throttle.ready():
                        yield ProgressEvent("list", found, None, message=f"{found} candidate files")
                # Depth-first, in name order: push reversed so the first name is walked first.
                stack.extend(reversed(subfolders))

    def _has_photo_extension(self, name: str) -> bool:
        _, dot, ext = name.rpartition(".")
        return bool(dot) and ext.lower() in self.extensions

    # -- checking one file -----------------------------------------------------------------------
    def _check(self, path: Path, index: ScanIndex | None = None) -> PhotoFile | SkippedFile:
        ext = path.name.rpartition(".")[2].lower()
        if ext in HEIF_EXTENSIONS and not heif_available():
            return SkippedFile(path, "HEIC/HEIF needs the optional pillow-heif package (pip install photocluster[heif])")
        try:
            st = path.stat()
        except OSError as exc:
            return SkippedFile(path, _reason_for_os_error(exc, action="reading its size"))
        if not stat.S_ISREG(st.st_mode):
            return SkippedFile(path, "not a regular file (device, pipe or socket)")
        if st.st_size == 0:
            return SkippedFile(path, "empty file (0 bytes)")
        known = index.lookup(path, st) if index is not None else None
        if known is not None:
            content_hash, fmt, width, height = known
            if pixel_limit_refusal(width, height, st.st_size, fmt, self.max_pixels) is None:
                return PhotoFile(path=path, size=st.st_size, mtime=st.st_mtime, mtime_ns=st.st_mtime_ns,
                                 content_hash=content_hash, width=width, height=height, format=fmt)
        try:
            if st.st_size <= _IN_MEMORY_LIMIT:
                with open(path, "rb") as handle:
                    data = handle.read()
                content_hash = hash_bytes(data)
                header_source: bytes | Path = data
            else:
                content_hash = hash_file(path)
                header_source = path
        except OSError as exc:
            return SkippedFile(path, _reason_for_os_error(exc, action="reading it"))
        try:
            fmt, width, height, _mode = read_header(header_source, max_pixels=self.max_pixels)
        except ValueError as exc:
            return SkippedFile(path, str(exc))
        except OSError as exc:  # the large-file path re-opens the file
            return SkippedFile(path, _reason_for_os_error(exc, action="reading its header"))
        photo = PhotoFile(path=path, size=st.st_size, mtime=st.st_mtime, mtime_ns=st.st_mtime_ns,
                          content_hash=content_hash, width=width, height=height, format=fmt)
        if index is not None:
            index.store(photo, st)
        return photo

    # -- driving ---------------------------------------------------------------------------------
    def steps(self, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
        """Walk, then hash and identify each candidate; yields events at least every half second.

        Stage "list" (total unknown) while walking, then stage "scan" with a known total. Raises
        :class:`~photocluster.progress.Cancelled` when ``cancel`` is set (checked after every file).
        """
        self.report = ScanReport()
        candidates: list[Path] = []
        for item in self._walk(cancel):
            if isinstance(item, ProgressEvent):
                yield item
            else:
                candidates.append(item)
        total = len(candidates)
        yield ProgressEvent("scan", 0, total, message=f"{total} candidate files")
        throttle = Throttle(0.25)
        by_hash: dict[str, list[Path]] = {}
        index = None
        if self.index is not False:
            index = ScanIndex(None if self.index is True else self.index)
        try:
            for done, path in enumerate(candidates, start=1):
                cancel.raise_if_cancelled()
                result = self._check(path, index)
                if isinstance(result, PhotoFile):
                    self.report.photos.append(result)
                    by_hash.setdefault(result.content_hash, []).append(path)
                else:
                    self.report.skipped.append(result)
                if throttle.ready() or done == total:
                    # The file at work, not a closing sentence: the last event carries none, or the folder
                    # mode would print the last file's name as if it were the scan's summary.
                    yield ProgressEvent("scan", done, total,
                                        message=display_path(path.name) if done < total else None)
        finally:
            if index is not None:
                index.close()
        self.report.duplicates = [paths for paths in by_hash.values() if len(paths) > 1]

    def run(self, cancel: CancelToken = NEVER_CANCELLED) -> ScanReport:
        """Run :meth:`steps` to the end and return the report."""
        for _ in self.steps(cancel):
            pass
        return self.report


def _points_to_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def scan_folders(
    folders: Sequence[str | os.PathLike],
    *,
    include_hidden: bool = False,
    follow_links: bool = False,
    extensions: Iterable[str] | None = None,
    max_pixels: int | None = None,
    index: bool | str | os.PathLike = True,
    exclude: Iterable[str | os.PathLike] = (),
    cancel: CancelToken = NEVER_CANCELLED,
) -> ScanReport:
    """Scan folders to the end and return the :class:`ScanReport` (see :class:`FolderScan`)."""
    return FolderScan(folders, include_hidden=include_hidden, follow_links=follow_links,
                      extensions=extensions, max_pixels=max_pixels, index=index, exclude=exclude).run(cancel)
