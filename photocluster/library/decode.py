"""Decode each photo once into a training-size array and a thumbnail, cached by content hash.

API overview
------------
``decode_photo(data, size=96, thumb_size=256) -> DecodedPhoto``
    One photo's bytes → ``array`` (uint8, size × size × 3) + ``thumbnail`` (JPEG bytes). Pure function.
``LibraryDecoder(photos, size=96, thumb_size=256, workers=None, cache_root=None)``
    ``steps(cancel)`` is a generator of :class:`~photocluster.progress.ProgressEvent` (stage "decode");
    afterwards ``result`` is a :class:`DecodeResult`: ``dataset`` (an
    :class:`~photocluster.data.dataset.ImageDataset` whose ``images`` is a ``numpy.memmap`` and whose
    ``paths`` are the photos' paths), ``photos`` (the :class:`~photocluster.library.scan.PhotoFile` of each
    row), ``skipped`` (files that failed to decode, with reasons), ``n_decoded`` / ``n_cached``.
``load_library(folders, ...) -> (ScanReport, DecodeResult)``
    Scan + decode run to the end (scripts, tests).
``thumbnail_path(content_hash) -> Path | None``
    The cached thumbnail of a photo, for the GUI.

How a photo becomes an array (documented because every method trains on it)
-------------------------------------------------------------------------------
1. JPEG: ``Image.draft`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale — the smallest scale that still
   leaves the short side ≥ ``size`` and the long side ≥ ``thumb_size``. This is most of the speed-up.
2. The first frame only (animated GIF / WebP / multi-page TIFF).
3. EXIF orientation applied (``ImageOps.exif_transpose``), so the array is upright as the user sees it.
4. Converted to RGB: palette and grey images expanded; transparency (LA, RGBA, palette with a transparent
   colour) composited on white, as a photo viewer shows it; CMYK through Pillow's conversion; 16-bit grey
   (``I;16``) scaled 65535 → 255 (Pillow's own conversion would clip instead of scale); 32-bit ``I`` and
   float ``F`` images scaled likewise.
5. Training array: the short side resized to ``size`` and the centre cropped to ``size`` × ``size``
   (one ``resize`` call with a crop box, bicubic with a reducing gap: antialiased and fast).
6. Thumbnail: long side ``thumb_size`` (aspect kept), JPEG quality 85.

Cache
-----
Under ``photocluster.config.cache_dir()``: ``photos/s{size}/{hash[:2]}/{hash}.npy`` (one small array per
photo, shared by every library that contains the photo), ``thumbnails/t{thumb}/{hash[:2]}/{hash}.jpg``, and
``libraries/{key}.u8`` — the whole library's images as one ``numpy.memmap`` (N, size, size, 3), keyed by the
ordered content hashes, so a second run on the same folder opens it without reading a single photo. Files are
written to a temporary name and renamed, so a killed run never leaves a half-written cache entry.

Decoding runs in worker processes (``concurrent.futures.ProcessPoolExecutor`` with a forkserver or spawn
context: safe to start from a GUI thread, unlike fork), in chunks of a few photos so that a cancel is
honoured within about a second — but only when the work is large enough to pay for starting them (see
``LibraryDecoder``'s ``workers``). As with any spawn/forkserver pool, a script that decodes with workers
must keep its entry point under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import io
import json
import multiprocessing
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from photocluster.data.dataset import ImageDataset, release_read_pages
from photocluster.library.scan import (
    FolderScan,
    PhotoFile,
    ScanReport,
    SkippedFile,
    PillowLimitSuspended,
    display_path,
    hash_bytes,
    heif_available,
    pixel_limit_refusal,
)
from photocluster.progress import NEVER_CANCELLED, CancelToken, Cancelled, EtaEstimator, ProgressEvent, Throttle

DEFAULT_SIZE = 96
#: Photos written into a memory-mapped array between write-backs (see :func:`_write_back_and_release`).
_RELEASE_EVERY = 512
DEFAULT_THUMB_SIZE = 256
THUMB_QUALITY = 85
#: Photos per task sent to a worker: small enough that a cancel waits for at most a chunk (well under a
#: second at tens of milliseconds per photo), large enough to amortise the inter-process round trip.
CHUNK = 8
#: Below this many photos to decode, worker start-up (spawn: a fresh interpreter importing numpy and
#: Pillow, about a second) costs more than it saves; decode in this process.
MIN_PHOTOS_FOR_WORKERS = 24
#: With ``workers=None`` (automatic), worker processes are started only when decoding in this process is
#: estimated to take longer than this: starting them (a fresh interpreter importing numpy and Pillow each)
#: costs about a second, more on a busy machine, which small photos never earn back.
AUTO_WORKERS_MIN_SECONDS = 3.0
#: Rough in-process cost model for that estimate: per photo (file reads, cache writes) and per source pixel
#: (JPEG draft decoding divides this by up to 64; measured on the sample folder and 12 MP JPEGs).
_SECONDS_PER_PHOTO = 0.006
_SECONDS_PER_PIXEL = 1.5e-8
_CACHE_VERSION = "v1"


class DecodeError(ValueError):
    """A photo whose pixels cannot be decoded; the message is the reason shown to the user."""


@dataclass(frozen=True)
class DecodedPhoto:
    """One decoded photo: the training array (uint8, size × size × 3) and the thumbnail (JPEG bytes)."""

    array: np.ndarray
    thumbnail: bytes
    source_mode: str
    used_draft: bool


@dataclass
class DecodeResult:
    """The photo library as a data set, plus what could not be decoded.

    Attributes
    ----------
    dataset:
        ``images`` is a read-only ``numpy.memmap`` (N, size, size, 3); ``paths`` are the photo paths
        (``str``), in the same order as ``photos``; ``info["content_hashes"]`` the cache keys.
    photos:
        The scan record of each row of ``dataset``.
    skipped:
        Photos that passed the scan but failed to decode, vanished or changed since the scan.
    n_decoded, n_cached:
        Photos decoded now, and photos whose array came from the cache (counted per unique content).
    """

    dataset: ImageDataset | None
    photos: list[PhotoFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    n_decoded: int = 0
    n_cached: int = 0


# -- cache layout ----------------------------------------------------------------------------------
def _cache_root(cache_root: Path | None) -> Path:
    if cache_root is not None:
        return Path(cache_root)
    from photocluster.config import cache_dir

    return cache_dir()


def _write_back_and_release(array: np.memmap) -> None:
    """Write a memmap's dirty pages to its file and unmap them: pages written stay mapped, and count in the
    process's resident memory, until the mapping closes — 3 GB for 20,000 photos at 224 px, twice over
    (the slots and the library). The data is in the file (and the OS's file cache) afterwards."""
    array.flush()
    release_read_pages(array)


def array_cache_path(content_hash: str, size: int = DEFAULT_SIZE, cache_root: Path | None = None) -> Path:
    """Where the training array of a photo is cached."""
    return _cache_root(cache_root) / "photos" / f"{_CACHE_VERSION}-s{size}" / content_hash[:2] / f"{content_hash}.npy"


def thumbnail_path(content_hash: str, thumb_size: int = DEFAULT_THUMB_SIZE, cache_root: Path | None = None,
                   *, must_exist: bool = True) -> Path | None:
    """The cached JPEG thumbnail of a photo (long side ``thumb_size``), or None if it was never decoded."""
    path = (_cache_root(cache_root) / "thumbnails" / f"{_CACHE_VERSION}-t{thumb_size}" / content_hash[:2]
            / f"{content_hash}.jpg")
    if must_exist and not path.exists():
        return None
    return path


#: Cache sub-folders this process has already created: a mkdir per write costs milliseconds on slow or
#: network file systems, and the cache has only 256 sub-folders per kind.
_made_folders: set[Path] = set()


def _atomic_write(path: Path, data: bytes) -> None:
    if path.parent not in _made_folders:
        path.parent.mkdir(parents=True, exist_ok=True)
        _made_folders.add(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    except FileNotFoundError:  # the folder was removed (cache cleared) since it was made
        _made_folders.discard(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_cached_array(path: Path, size: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged cache entry: decode again
    if array.shape != (size, size, 3) or array.dtype != np.uint8:
        return None
    return array


# -- decoding one photo ----------------------------------------------------------------------------
def _draft_scale_request(width: int, height: int, size: int, thumb_size: int) -> tuple[int, int]:
    """The smallest (w, h) that still gives short side ≥ size and long side ≥ thumb_size."""
    scale = max(size / min(width, height), thumb_size / max(width, height))
    scale = min(1.0, scale)
    return max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float pixels → uint8 by scaling, not clipping."""
    values = values.astype(np.float64)
    if values.size == 0:
        return values.astype(np.uint8)
    top = float(values.max())
    if np.issubdtype(values.dtype, np.floating) and top <= 1.0 and values.min() >= 0.0:
        scaled = values * 255.0  # float images in 0..1
    elif top <= 255.0:
        scaled = values
    else:
        scaled = values / 257.0  # 0..65535 → 0..255 (65535 / 257 = 255 exactly)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparency composited on white. Raises DecodeError on unknown modes."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        if "transparency" not in img.info:
            return img.convert("RGB")
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = _scale_to_uint8(np.asarray(img))
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return img.convert("RGB")
    raise DecodeError(f"unsupported image mode {mode!r}")


def decode_photo(data: bytes, size: int = DEFAULT_SIZE, thumb_size: int = DEFAULT_THUMB_SIZE,
                 *, max_pixels: int | None = None) -> DecodedPhoto:
    """Decode one photo's bytes into the training array and the thumbnail.

    Parameters
    ----------
    data:
        The file's bytes.
    size:
        Side of the square training array (short side resized to ``size``, centre crop).
    thumb_size:
        Long side of the thumbnail.
    max_pixels:
        The pixel limit (:func:`~photocluster.library.scan.pixel_limit_refusal`): by default a huge real
        photo is decoded (a JPEG at a reduced scale, so memory stays small) and only a file too small for
        the pixels it claims (a decompression bomb) is refused; a positive number is a strict limit; 0
        leaves Pillow's own check, whose warning counts as an error.

    Raises
    ------
    DecodeError
        With the reason (truncated data, not an image, decompression bomb, unsupported mode, ...).
    """
    try:
        # Pillow's own check is off while the photo rule decides (it refuses real 200-MP photos outright);
        # held until the pixels are loaded because Pillow checks again in some decoders.
        with warnings.catch_warnings(), PillowLimitSuspended(active=max_pixels != 0) as pillow:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            refusal = pixel_limit_refusal(width, height, len(data), img.format, max_pixels,
                                          safe_pixels=pillow.limit)
            if refusal:
                raise DecodeError(refusal)
            source_mode = img.mode
            used_draft = False
            if img.format == "JPEG":
                request = _draft_scale_request(width, height, size, thumb_size)
                if request[0] < width:
                    img.draft(img.mode if img.mode in ("RGB", "L") else None, request)
                    used_draft = img.size != (width, height)
            img.load()  # first frame only: decoding the rest of an animation is wasted work
            try:
                # exif_transpose copies the full-size image even when it is upright: only call it when needed
                img = ImageOps.exif_transpose(img, in_place=False) if _needs_turn(img) else img
            except Exception:  # a malformed EXIF block must not cost the photo; keep it unrotated
                pass
            rgb = to_rgb(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image (no known image format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise DecodeError(f"truncated image data ({text or type(exc).__name__})") from None
        raise DecodeError(f"damaged image data ({type(exc).__name__}: {text})") from None
    except MemoryError:
        raise DecodeError("image too large to decode in memory") from None

    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    scale = min(1.0, thumb_size / max(w, h))  # never enlarged, like Image.thumbnail
    thumb_dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    with PillowLimitSuspended(active=max_pixels != 0):  # the image passed the photo rule above
        square = rgb.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side),
                            reducing_gap=2.0)
        thumb = rgb if thumb_dims == (w, h) else rgb.resize(thumb_dims, Image.Resampling.BICUBIC,
                                                            reducing_gap=2.0)
    array = np.asarray(square, dtype=np.uint8).copy()
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return DecodedPhoto(array=array, thumbnail=buffer.getvalue(), source_mode=source_mode, used_draft=used_draft)


def _needs_turn(img: Image.Image) -> bool:
    """True when the EXIF orientation is anything but "upright" (1)."""
    try:
        return int(img.getexif().get(0x0112, 1) or 1) != 1
    except Exception:
        return False


# -- the worker task -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    content_hash: str
    size_bytes: int
    mtime_ns: int


def _decode_job(job: _Job, size: int, thumb_size: int, cache_root: str,
                max_pixels: int | None) -> tuple[int, np.ndarray | None, str | None, bool]:
    """Decode one photo for the library; returns (index, array or None, skip reason or None, decoded?).

    Checks that the file is the one the scan saw (size, mtime, then the content hash of the bytes
    actually decoded): a file replaced after the scan must not be cached under the old hash.
    """
    root = Path(cache_root)
    path = Path(job.path)
    try:
        st = path.stat()
        if st.st_size != job.size_bytes or st.st_mtime_ns != job.mtime_ns:
            return job.index, None, "changed since the scan (size or modification time differs); scan again", False
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return job.index, None, "vanished before it could be decoded (deleted or moved after the scan)", False
    except PermissionError:
        return job.index, None, "unreadable: permission denied while decoding", False
    except OSError as exc:
        return job.index, None, f"unreadable: {exc.strerror or exc} while decoding", False
    if hash_bytes(data) != job.content_hash:
        return job.index, None, "changed since the scan (content differs); scan again", False
    if path.suffix.lower() in (".heic", ".heif"):
        heif_available()
    try:
        decoded = decode_photo(data, size, thumb_size, max_pixels=max_pixels)
    except DecodeError as exc:
        return job.index, None, str(exc), True
    _atomic_write(thumbnail_path(job.content_hash, thumb_size, root, must_exist=False), decoded.thumbnail)
    buffer = io.BytesIO()
    np.save(buffer, decoded.array, allow_pickle=False)
    _atomic_write(array_cache_path(job.content_hash, size, root), buffer.getvalue())
    return job.index, decoded.array, None, True


def _decode_chunk(jobs: list[_Job], size: int, thumb_size: int, cache_root: str,
                  max_pixels: int | None) -> list[tuple[int, np.ndarray | None, str | None, bool]]:
    # Worker processes do not inherit the parent's truncated-image setting under spawn; make it explicit
    # that truncated files are errors, never silently padded with grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return [_decode_job(job, size, thumb_size, cache_root, max_pixels) for job in jobs]


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where it exists (POSIX), else spawn: never plain fork, which is unsafe from a process
    that has a GUI or other threads running."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def default_workers() -> int:
    """Worker processes by default: one per CPU the process may use, at most 8 (decoding is I/O- and
    memory-bandwidth-bound beyond that)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


# -- the library decoder ---------------------------------------------------------------------------
class LibraryDecoder:
    """Decode a scanned library once, in parallel, into a memory-mapped :class:`ImageDataset`.

    Parameters
    ----------
    photos:
        The scan's photos (:attr:`ScanReport.photos`), in the order the data set should have.
    size:
        Side of the square training images (default 96).
    thumb_size:
        Long side of the thumbnails (default 256).
    workers:
        Worker processes; None = automatic: :func:`default_workers` processes when the work is estimated to
        take more than :data:`AUTO_WORKERS_MIN_SECONDS` in this process, else none; 0 = decode in this
        process (tests, tiny folders). Fewer than :data:`MIN_PHOTOS_FOR_WORKERS` photos to decode are always
        decoded in this process. ``used_workers`` tells what the last run did.
    cache_root:
        Cache folder (default ``photocluster.config.cache_dir()``).
    name:
        The data set's name.
    """

    def __init__(self, photos: Sequence[PhotoFile], *, size: int = DEFAULT_SIZE,
                 thumb_size: int = DEFAULT_THUMB_SIZE, workers: int | None = None,
                 cache_root: str | os.PathLike | None = None, max_pixels: int | None = None,
                 name: str = "library") -> None:
        self.photos = list(photos)
        self.size = size
        self.thumb_size = thumb_size
        self.workers = workers
        self.cache_root = cache_root
        self.max_pixels = max_pixels
        self.name = name
        self.result = DecodeResult(dataset=None)
        self.used_workers = 0

    # where the library's memmap lives: keyed by every row's content hash, in order, and the size
    def _library_paths(self, root: Path, hashes: Sequence[str]) -> tuple[Path, Path]:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{_CACHE_VERSION}:{self.size}:".encode())
        for content_hash in hashes:
            digest.update(content_hash.encode())
        key = digest.hexdigest()
        folder = root / "libraries"
        return folder / f"{key}.u8", folder / f"{key}.json"

    def steps(self, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
        """Decode what is not cached; yields "decode" events at least every half second.

        Raises :class:`~photocluster.progress.Cancelled` within about a second of ``cancel``.
        Memory stays flat whatever the library size: every array goes straight into a memmap on disk.
        """
        if self.size < 8:
            raise ValueError(f"training size must be at least 8 pixels, got {self.size}")
        root = _cache_root(Path(self.cache_root) if self.cache_root is not None else None)
        self.result = DecodeResult(dataset=None)
        total = len(self.photos)
        yield ProgressEvent("decode", 0, total, message="checking the cache")

        # Rows that share content (byte-identical duplicates) share one decode and one slot.
        rows_of_hash: dict[str, list[int]] = {}
        for row, photo in enumerate(self.photos):
            rows_of_hash.setdefault(photo.content_hash, []).append(row)
        unique = list(rows_of_hash)
        throttle = Throttle(0.5)

        # 0. The same library as last time, every file unchanged: open its memmap, read no photo.
        reused = self._reuse_library(root, [p.content_hash for p in self.photos])
        if reused is not None:
            mismatch = None
            for n, photo in enumerate(self.photos, start=1):
                mismatch = _stat_mismatch(photo)
                if mismatch:
                    break
                if throttle.ready():
                    cancel.raise_if_cancelled()
                    yield ProgressEvent("decode", 0, total, message=f"checked {n} photos")
            if mismatch is None:
                self.result.photos = list(self.photos)
                self.result.n_cached = len(unique)
                self._set_dataset(reused, self.photos)
                yield ProgressEvent("decode", total, total, message=f"0 decoded, {len(unique)} from the cache")
                return

        # 1. One slot per unique content in a temporary memmap, filled from the cache or by decoding.
        folder = root / "libraries"
        folder.mkdir(parents=True, exist_ok=True)
        fd, slots_name = tempfile.mkstemp(dir=folder, prefix=".tmp-slots-", suffix=".u8")
        os.close(fd)
        slots_path = Path(slots_name)
        try:
            slots = np.memmap(slots_path, dtype=np.uint8, mode="w+", shape=(len(unique), self.size, self.size, 3))
            slot_of = {content_hash: i for i, content_hash in enumerate(unique)}
            failed: dict[str, str] = {}
            to_decode: list[_Job] = []
            for n, content_hash in enumerate(unique, start=1):
                photo = self.photos[rows_of_hash[content_hash][0]]
                cached = _load_cached_array(array_cache_path(content_hash, self.size, root), self.size)
                if cached is not None and thumbnail_path(content_hash, self.thumb_size, root) is not None:
                    # A cached photo is not re-read, but it must still be the file the scan hashed.
                    reason = _stat_mismatch(photo)
                    if reason:
                        failed[content_hash] = reason
                    else:
                        slots[slot_of[content_hash]] = cached
                        self.result.n_cached += 1
                        if self.result.n_cached % _RELEASE_EVERY == 0:
                            _write_back_and_release(slots)
                else:
                    to_decode.append(_Job(rows_of_hash[content_hash][0], str(photo.path), content_hash,
                                          photo.size, photo.mtime_ns))
                if throttle.ready():
                    cancel.raise_if_cancelled()
                    yield ProgressEvent("decode", 0, total, message=f"checked the cache for {n} photos")

            # 2. Decode the rest, in this process or in workers.
            done_rows = total - sum(len(rows_of_hash[job.content_hash]) for job in to_decode)
            eta = EtaEstimator(max(1, len(to_decode)))
            finished = 0
            for index, array, reason, did_decode in self._run_jobs(to_decode, root, cancel):
                content_hash = self.photos[index].content_hash
                # A file whose pixels failed to decode was read, not decoded: it is counted as skipped.
                self.result.n_decoded += int(did_decode and array is not None)
                if array is None:
                    failed[content_hash] = reason or "could not be decoded"
                else:
                    slots[slot_of[content_hash]] = array
                finished += 1
                if finished % _RELEASE_EVERY == 0:
                    _write_back_and_release(slots)
                done_rows += len(rows_of_hash[content_hash])
                if throttle.ready() or finished == len(to_decode):
                    # The photo at work; the last event carries none (see scan.py: not a closing sentence).
                    yield ProgressEvent("decode", done_rows, total, eta_seconds=eta.eta(finished),
                                        message=(display_path(self.photos[index].path.name)
                                                 if finished < len(to_decode) else None))
            slots.flush()

            # 3. Every copy of a failed content is reported; the rest become the library's memmap.
            kept: list[PhotoFile] = []
            for photo in self.photos:
                if photo.content_hash in failed:
                    self.result.skipped.append(SkippedFile(photo.path, failed[photo.content_hash]))
                else:
                    kept.append(photo)
            self.result.photos = kept
            if not kept:
                yield ProgressEvent("decode", total, total, message="no photo could be decoded")
                return
            images = self._write_library(root, kept, slots, slot_of, cancel)
            del slots
        finally:
            try:
                slots_path.unlink()
            except OSError:
                pass  # already renamed into place, or (Windows) still mapped: a later prune removes it
        self._set_dataset(images, kept)
        _prune_libraries(folder, keep=self._library_paths(root, [p.content_hash for p in kept])[0])
        yield ProgressEvent("decode", total, total,
                            message=f"{self.result.n_decoded} decoded, {self.result.n_cached} from the cache")

    def _set_dataset(self, images: np.ndarray, photos: Sequence[PhotoFile]) -> None:
        self.result.dataset = ImageDataset(
            name=self.name,
            images=images,
            paths=[str(photo.path) for photo in photos],
            info={"content_hashes": [photo.content_hash for photo in photos], "size": self.size,
                  "source": "photo library"},
        )

    def _run_jobs(self, jobs: list[_Job], root: Path,
                  cancel: CancelToken) -> Iterator[tuple[int, np.ndarray | None, str | None, bool]]:
        if not jobs:
            return
        if self.workers is None:
            pixels = sum(self.photos[job.index].width * self.photos[job.index].height for job in jobs)
            estimate = len(jobs) * _SECONDS_PER_PHOTO + pixels * _SECONDS_PER_PIXEL
            workers = default_workers() if estimate > AUTO_WORKERS_MIN_SECONDS else 0
        else:
            workers = self.workers
        args = (self.size, self.thumb_size, str(root), self.max_pixels)
        if workers <= 1 or len(jobs) < MIN_PHOTOS_FOR_WORKERS:
            self.used_workers = 0
            for job in jobs:
                cancel.raise_if_cancelled()
                yield _decode_job(job, *args)
            return
        chunks = [jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK)]
        self.used_workers = workers
        pool = futures.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
        pending: set[futures.Future] = set()
        next_chunk = 0
        try:
            # Keep only a few chunks queued per worker, so a cancel does not wait for a long queue.
            while next_chunk < len(chunks) or pending:
                while next_chunk < len(chunks) and len(pending) < 2 * workers:
                    pending.add(pool.submit(_decode_chunk, chunks[next_chunk], *args))
                    next_chunk += 1
                finished, pending = futures.wait(pending, timeout=0.2, return_when=futures.FIRST_COMPLETED)
                cancel.raise_if_cancelled()
                for future in finished:
                    try:
                        results = future.result()
                    except futures.process.BrokenProcessPool as exc:
                        # Not retried in this process: a photo that crashes a decoder would take the app down.
                        raise RuntimeError(
                            f"a decode worker process died ({exc}); if this runs from a script, put its entry "
                            "point under `if __name__ == '__main__':` (worker processes re-import the main "
                            "module), or pass workers=0") from exc
                    yield from results
        finally:
            for future in pending:
                future.cancel()
            # Do not wait for chunks already running: a cancel must return at once; the workers finish
            # their chunk (under a second) and exit on their own.
            pool.shutdown(wait=not cancel.cancelled, cancel_futures=True)

    def _reuse_library(self, root: Path, hashes: list[str]) -> np.ndarray | None:
        """The complete memmap of exactly these rows from an earlier run, or None."""
        data_path, meta_path = self._library_paths(root, hashes)
        shape = (len(hashes), self.size, self.size, 3)
        try:
            meta = json.loads(meta_path.read_text())
            if tuple(meta["shape"]) == shape and meta.get("complete") and data_path.stat().st_size == np.prod(shape):
                os.utime(data_path)  # most recently used: pruning keeps it
                return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or damaged: rebuilt
        return None

    def _write_library(self, root: Path, kept: list[PhotoFile], slots: np.ndarray, slot_of: dict[str, int],
                       cancel: CancelToken) -> np.ndarray:
        """Write the (N, size, size, 3) library memmap for the kept rows, from the unique-content slots."""
        hashes = [photo.content_hash for photo in kept]
        data_path, meta_path = self._library_paths(root, hashes)
        shape = (len(hashes), self.size, self.size, 3)
        order = np.fromiter((slot_of[h] for h in hashes), dtype=np.int64, count=len(hashes))
        tmp_path = data_path.with_name(f".tmp-{os.getpid()}-{data_path.name}")
        try:
            images = np.memmap(tmp_path, dtype=np.uint8, mode="w+", shape=shape)
            for start in range(0, len(order), 1024):  # in batches: memory stays bounded
                cancel.raise_if_cancelled()
                images[start:start + 1024] = slots[order[start:start + 1024]]
                _write_back_and_release(images)
                release_read_pages(slots)
            images.flush()
            del images
            os.replace(tmp_path, data_path)
        except BaseException:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
            raise
        _atomic_write(meta_path, json.dumps({"shape": list(shape), "complete": True}).encode())
        return np.memmap(data_path, dtype=np.uint8, mode="r", shape=shape)

    def run(self, cancel: CancelToken = NEVER_CANCELLED) -> DecodeResult:
        """Run :meth:`steps` to the end and return the result."""
        for _ in self.steps(cancel):
            pass
        return self.result


#: Library memmaps kept in the cache (most recently used first); older ones are deleted, so a library
#: that changes every day does not leave a copy per day behind. The per-photo arrays stay.
KEEP_LIBRARIES = 4


def _prune_libraries(folder: Path, keep: Path) -> None:
    try:
        libraries = sorted(folder.glob("*.u8"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    stale = [p for p in libraries if p != keep][KEEP_LIBRARIES - 1:]
    stale += [p for p in folder.glob(".tmp-*") if _older_than(p, 24 * 3600)]  # left by a killed run
    for path in stale:
        for victim in (path, path.with_suffix(".json")):
            try:
                victim.unlink()
            except OSError:  # in use (Windows) or already gone: try again next time
                pass


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _stat_mismatch(photo: PhotoFile) -> str | None:
    try:
        st = photo.path.stat()
    except FileNotFoundError:
        return "vanished before it could be decoded (deleted or moved after the scan)"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if st.st_size != photo.size or st.st_mtime_ns != photo.mtime_ns:
        return "changed since the scan (size or modification time differs); scan again"
    return None


def load_library(folders: Sequence[str | os.PathLike], *, include_hidden: bool = False, follow_links: bool = False,
                 extensions: Iterable[str] | None = None, size: int = DEFAULT_SIZE,
                 thumb_size: int = DEFAULT_THUMB_SIZE, workers: int | None = None,
                 cache_root: str | os.PathLike | None = None,
                 cancel: CancelToken = NEVER_CANCELLED) -> tuple[ScanReport, DecodeResult]:
    """Scan folders and decode their photos, to the end. Returns (scan report, decode result)."""
    scan = FolderScan(folders, include_hidden=include_hidden, follow_links=follow_links, extensions=extensions)
    report = scan.run(cancel)
    decoder = LibraryDecoder(report.photos, size=size, thumb_size=thumb_size, workers=workers,
                             cache_root=cache_root)
    return report, decoder.run(cancel)


__all__ = [
    "Cancelled",
    "DecodeError",
    "DecodeResult",
    "DecodedPhoto",
    "LibraryDecoder",
    "array_cache_path",
    "decode_photo",
    "load_library",
    "thumbnail_path",
    "to_rgb",
]
