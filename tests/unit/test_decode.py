"""Decode once: the bad-input corpus end to end, pixel layout of the 8 EXIF orientations, colour
conversions, the cache (a second run decodes nothing), files that vanish or change after the scan, the
parallel path and cancel."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import photocluster.library.decode as decode_module
from bad_inputs import (
    refuse_open,
    BLUE,
    EXIF_DISPLAY,
    RED,
    WHITE,
    build_corpus,
    encode,
    jpeg_with_orientation,
    quadrant_means,
    quadrants,
    restore_permissions,
    solid,
)
from photocluster.library.decode import (
    DecodeError,
    LibraryDecoder,
    decode_photo,
    load_library,
    thumbnail_path,
)
from photocluster.library.scan import FolderScan, display_path
from photocluster.progress import CancelToken, Cancelled


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Written once per module (the tests only read it)."""
    root = tmp_path_factory.mktemp("bad-inputs") / "corpus"
    cases = build_corpus(root)
    yield root, cases
    restore_permissions(root)


def _count_decodes(monkeypatch) -> list[int]:
    """Count calls of decode_photo (in-process decoding, workers=0)."""
    calls = [0]
    real = decode_module.decode_photo

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_module, "decode_photo", counting)
    return calls


# -- the corpus, end to end -------------------------------------------------------------------------
def test_corpus_every_file_is_decoded_or_reported_with_its_reason(corpus, tmp_path):
    root, cases = corpus
    assert len(cases) >= 20
    report, result = load_library([root], workers=0, cache_root=tmp_path / "cache")
    decoded = {Path(p): i for i, p in enumerate(result.dataset.paths)}
    reasons = {s.path: s.reason for s in report.skipped + result.skipped}
    for case in cases:
        if case.expect == "photo":
            assert case.path in decoded, f"{case.name}: not decoded ({reasons.get(case.path)})"
            if case.colour is not None:
                centre = result.dataset.images[decoded[case.path]][40:56, 40:56].reshape(-1, 3).mean(axis=0)
                assert np.abs(centre - case.colour).max() <= case.tolerance, f"{case.name}: centre {centre}"
        elif case.expect in ("skip", "link"):
            assert case.path in reasons, f"{case.name}: neither decoded nor reported"
            assert case.reason.lower() in reasons[case.path].lower(), f"{case.name}: {reasons[case.path]}"
            assert case.path not in decoded
        elif case.expect == "hidden":
            assert case.path not in decoded and case.path not in reasons
    assert report.ignored_hidden == 2 and report.ignored_other == 1
    # Nothing dropped silently: every file with a photo extension is accounted for exactly once.
    candidates = {p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".gif", ".webp", ".tiff",
                                                                      ".bmp", ".heic")}
    candidates = {p for p in candidates if not any(part.startswith(".") for part in p.relative_to(root).parts)}
    candidates |= {c.path for c in cases if c.expect == "link"}
    assert candidates == set(decoded) | set(reasons)
    assert not set(decoded) & set(reasons)
    # Every reason prints (non-UTF-8 names included).
    for path, reason in reasons.items():
        f"{display_path(path)}: {reason}".encode("utf-8")


def test_truncated_files_are_found_at_decode_time(corpus, tmp_path):
    root, _ = corpus
    _, result = load_library([root / "broken"], workers=0, cache_root=tmp_path / "cache")
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert "truncated" in reasons["truncated.jpg"] and "truncated" in reasons["truncated.png"]


def test_palette_transparency_is_composited_on_white(corpus):
    root, _ = corpus
    decoded = decode_photo((root / "odd/palette-transparent.png").read_bytes(), size=96)
    top, bottom = decoded.array[:40].reshape(-1, 3), decoded.array[-40:].reshape(-1, 3)
    assert np.abs(top.mean(axis=0) - RED).max() < 2      # opaque palette index 0 stays red
    assert np.abs(bottom.mean(axis=0) - WHITE).max() < 2  # the transparent index shows white, not blue


def test_sixteen_bit_grey_is_scaled_not_clipped():
    # 40000 / 257 = 155.6 → 156; Pillow's plain convert("L") would clip it to 255.
    img = Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16))
    decoded = decode_photo(encode(img, "PNG"), size=16)
    assert decoded.source_mode.startswith("I")
    assert np.all(decoded.array == 156)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_pixel_layout(orientation):
    raw = quadrants(64, 32)  # stored landscape; 5..8 display as portrait
    expected = EXIF_DISPLAY[orientation](raw)
    decoded = decode_photo(jpeg_with_orientation(raw, orientation), size=48, thumb_size=256)
    thumb = np.asarray(Image.open(io.BytesIO(decoded.thumbnail)).convert("RGB"))
    assert thumb.shape[:2] == expected.shape[:2]  # portrait for 5..8
    assert np.abs(quadrant_means(thumb) - quadrant_means(expected)).max() < 40
    # The centre crop of the upright image keeps the four quadrants in their upright places.
    assert np.abs(quadrant_means(decoded.array) - quadrant_means(expected)).max() < 40


def test_huge_jpeg_is_decoded_through_draft():
    data = encode(Image.new("RGB", (6000, 4000), BLUE), "JPEG", quality=80)
    decoded = decode_photo(data, size=96, thumb_size=256)
    assert decoded.used_draft
    assert decoded.array.shape == (96, 96, 3)
    assert np.abs(decoded.array.reshape(-1, 3).mean(axis=0) - BLUE).max() < 20
    thumb = Image.open(io.BytesIO(decoded.thumbnail))
    assert max(thumb.size) == 256 and thumb.size[0] > thumb.size[1]


def test_training_size_is_a_parameter_and_crops_the_centre():
    # 90 x 30: left third red, middle blue, right third red → the centre square is all blue.
    array = np.zeros((30, 90, 3), dtype=np.uint8)
    array[:, :30] = RED
    array[:, 30:60] = BLUE
    array[:, 60:] = RED
    decoded = decode_photo(encode(Image.fromarray(array), "PNG"), size=20)
    assert decoded.array.shape == (20, 20, 3)
    assert np.abs(decoded.array[2:-2, 2:-2].reshape(-1, 3).mean(axis=0) - BLUE).max() < 3


def test_unknown_image_mode_is_a_decode_error_with_the_mode():
    class ExoticImage:  # what a third-party Pillow plugin could hand back
        mode = "XYZ;12"
        info: dict = {}

    with pytest.raises(DecodeError, match="unsupported image mode 'XYZ;12'"):
        decode_module.to_rgb(ExoticImage())


def test_decode_photo_refuses_bombs_below_a_custom_limit():
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_photo(encode(solid(RED, (100, 100)), "PNG"), max_pixels=5000)


# -- the cache ------------------------------------------------------------------------------------
def _folder_of_photos(root: Path, n: int, size=(40, 30)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (root / f"p{i:03d}.png").write_bytes(encode(solid(colour, size), "PNG"))
    return root


def test_second_run_reuses_the_cache_and_decodes_nothing(tmp_path, monkeypatch):
    folder = _folder_of_photos(tmp_path / "photos", 6)
    calls = _count_decodes(monkeypatch)
    cache = tmp_path / "cache"
    _, first = load_library([folder], workers=0, cache_root=cache)
    assert calls[0] == 6 and first.n_decoded == 6 and first.n_cached == 0
    _, second = load_library([folder], workers=0, cache_root=cache)
    assert calls[0] == 6, "the second run decoded again"
    assert second.n_decoded == 0 and second.n_cached == 6
    assert isinstance(second.dataset.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.dataset.images), np.asarray(second.dataset.images))
    assert second.dataset.paths == first.dataset.paths
    # One new photo: only it is decoded.
    (folder / "new.png").write_bytes(encode(solid((1, 2, 3)), "PNG"))
    _, third = load_library([folder], workers=0, cache_root=cache)
    assert calls[0] == 7 and third.n_decoded == 1 and third.n_cached == 6 and len(third.dataset) == 7


def test_unchanged_library_opens_its_memmap_without_reading_any_cache_file(tmp_path, monkeypatch):
    folder = _folder_of_photos(tmp_path / "photos", 5)
    cache = tmp_path / "cache"
    _, first = load_library([folder], workers=0, cache_root=cache)
    reads = [0]
    real = decode_module._load_cached_array

    def counting(*args, **kwargs):
        reads[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_module, "_load_cached_array", counting)
    _, second = load_library([folder], workers=0, cache_root=cache)
    assert reads[0] == 0 and second.n_cached == 5
    assert Path(second.dataset.images.filename).parent == cache / "libraries"


def test_old_library_memmaps_are_pruned(tmp_path):
    cache = tmp_path / "cache"
    folder = _folder_of_photos(tmp_path / "photos", 2)
    for i in range(decode_module.KEEP_LIBRARIES + 3):  # a different library each time
        (folder / f"extra{i}.png").write_bytes(encode(solid((i, 9, 9)), "PNG"))
        load_library([folder], workers=0, cache_root=cache)
    assert len(list((cache / "libraries").glob("*.u8"))) == decode_module.KEEP_LIBRARIES
    assert not list((cache / "libraries").glob(".tmp-*"))


def test_duplicates_are_decoded_once_but_both_kept(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    data = encode(solid(RED), "PNG")
    (folder / "a.png").write_bytes(data)
    (folder / "b.png").write_bytes(data)
    calls = _count_decodes(monkeypatch)
    report, result = load_library([folder], workers=0, cache_root=tmp_path / "cache")
    assert calls[0] == 1
    assert [p.name for p in report.duplicates[0]] == ["a.png", "b.png"]
    assert [Path(p).name for p in result.dataset.paths] == ["a.png", "b.png"]


def test_thumbnail_path_points_to_the_cached_jpeg(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", 2, size=(600, 300))
    report, result = load_library([folder], workers=0, cache_root=tmp_path / "cache")
    content_hash = result.photos[0].content_hash
    path = thumbnail_path(content_hash, cache_root=tmp_path / "cache")
    assert path is not None and path.is_file()
    with Image.open(path) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (256, 128)
    assert thumbnail_path("0" * 32, cache_root=tmp_path / "cache") is None


def test_damaged_cache_entry_is_decoded_again(tmp_path, monkeypatch):
    folder = _folder_of_photos(tmp_path / "photos", 2)
    cache = tmp_path / "cache"
    _, first = load_library([folder], workers=0, cache_root=cache)
    entry = decode_module.array_cache_path(first.photos[0].content_hash, 96, cache)
    entry.write_bytes(b"garbage")
    for library in (cache / "libraries").iterdir():
        library.unlink()
    calls = _count_decodes(monkeypatch)
    _, second = load_library([folder], workers=0, cache_root=cache)
    assert calls[0] == 1 and second.n_cached == 1
    np.testing.assert_array_equal(np.asarray(first.dataset.images), np.asarray(second.dataset.images))


# -- files that change between the scan and the decode -----------------------------------------------
def test_file_deleted_after_the_scan_is_reported_as_vanished(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", 3)
    report = FolderScan([folder]).run()
    (folder / "p001.png").unlink()
    result = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "cache").run()
    assert [(s.path.name, "vanished" in s.reason) for s in result.skipped] == [("p001.png", True)]
    assert len(result.dataset) == 2


def test_file_replaced_after_the_scan_is_detected_by_size(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", 3)
    report = FolderScan([folder]).run()
    (folder / "p002.png").write_bytes(encode(solid(BLUE, (80, 80)), "PNG"))
    result = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "cache").run()
    assert [s.path.name for s in result.skipped] == ["p002.png"]
    assert "changed since the scan" in result.skipped[0].reason


def test_file_replaced_with_same_size_and_mtime_is_detected_by_hash(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", 2)
    report = FolderScan([folder]).run()
    target = folder / "p000.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # same length, different content
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time
    result = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "cache").run()
    assert [s.path.name for s in result.skipped] == ["p000.png"]
    assert "content differs" in result.skipped[0].reason


def test_cached_photo_replaced_after_the_scan_is_not_served_from_the_cache(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", 2)
    cache = tmp_path / "cache"
    load_library([folder], workers=0, cache_root=cache)
    report = FolderScan([folder]).run()
    (folder / "p001.png").write_bytes(encode(solid(BLUE, (90, 90)), "PNG"))
    result = LibraryDecoder(report.photos, workers=0, cache_root=cache).run()
    assert [s.path.name for s in result.skipped] == ["p001.png"]


def test_unreadable_at_decode_time_is_reported(tmp_path, monkeypatch):
    folder = _folder_of_photos(tmp_path / "photos", 2)
    report = FolderScan([folder]).run()
    refuse_open(monkeypatch, decode_module, "p000.png")
    result = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "cache").run()
    assert [(s.path.name, "permission denied" in s.reason) for s in result.skipped] == [("p000.png", True)]


# -- worker processes and cancel ---------------------------------------------------------------------
def test_worker_processes_give_the_same_arrays_as_in_process(tmp_path):
    folder = _folder_of_photos(tmp_path / "photos", decode_module.MIN_PHOTOS_FOR_WORKERS + 6, size=(50, 40))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    report = FolderScan([folder]).run()
    parallel_decoder = LibraryDecoder(report.photos, workers=2, cache_root=tmp_path / "c1")
    serial_decoder = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "c2")
    parallel, serial = parallel_decoder.run(), serial_decoder.run()
    # Automatic: 30 small photos are estimated at well under AUTO_WORKERS_MIN_SECONDS → no processes.
    automatic = LibraryDecoder(report.photos, workers=None, cache_root=tmp_path / "c3")
    automatic.run()
    assert automatic.used_workers == 0
    assert parallel.n_decoded == serial.n_decoded == len(report.photos)
    assert (parallel_decoder.used_workers, serial_decoder.used_workers) == (2, 0)
    assert [s.path.name for s in parallel.skipped] == [s.path.name for s in serial.skipped] == []
    np.testing.assert_array_equal(np.asarray(parallel.dataset.images), np.asarray(serial.dataset.images))
    assert [s.path.name for s in report.skipped] == ["broken.png"]


def test_cancel_stops_decoding_within_about_a_second(tmp_path, monkeypatch):
    folder = _folder_of_photos(tmp_path / "photos", 60)
    report = FolderScan([folder]).run()
    real = decode_module.decode_photo

    def slow_decode(*args, **kwargs):  # 60 photos x 0.1 s = 6 s of work if the cancel were ignored
        time.sleep(0.1)
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_module, "decode_photo", slow_decode)
    token = CancelToken()
    decoder = LibraryDecoder(report.photos, workers=0, cache_root=tmp_path / "cache")
    fired: list[float] = []

    def cancel_now() -> None:
        fired.append(time.monotonic())
        token.cancel()

    timer = threading.Timer(0.5, cancel_now)
    timer.start()
    with pytest.raises(Cancelled):
        for _ in decoder.steps(token):
            pass
    stopped = time.monotonic()
    timer.join()
    # The loop checks the token before every photo: at most one 0.1 s photo after the cancel.
    assert stopped - fired[0] < 1.0
    assert decoder.result.n_decoded < 60


def test_cancel_with_worker_processes_returns_promptly(tmp_path):
    # Noise photos, so that decoding takes real time in the workers (solid colours decode so fast that
    # all 150 could be done before the first throttled progress event, and the cancel would come too late).
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(150):
        noise = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / f"p{i:03d}.jpg", quality=90)
    report = FolderScan([folder]).run()
    token = CancelToken()
    cache = tmp_path / "cache"
    decoder = LibraryDecoder(report.photos, workers=2, cache_root=cache)
    fired: list[float] = []

    def cancel_once_a_worker_has_decoded() -> None:
        # The first cached array on disk means the workers are running: cancel mid-decode.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any((cache / "photos").rglob("*.npy")):
            time.sleep(0.005)
        fired.append(time.monotonic())
        token.cancel()

    watcher = threading.Thread(target=cancel_once_a_worker_has_decoded)
    watcher.start()
    with pytest.raises(Cancelled):
        for _ in decoder.steps(token):
            pass
    stopped = time.monotonic()
    watcher.join()
    assert stopped - fired[0] < 1.5
    assert decoder.result.n_decoded < 150


# -- issue 20: huge real photos, bombs, and the decode count -----------------------------------------
def test_a_100_megapixel_jpeg_is_decoded_at_a_reduced_scale():
    from bad_inputs import jpeg_100_megapixels

    decoded = decode_photo(jpeg_100_megapixels())
    assert decoded.used_draft  # libjpeg decoded it at 1/8 scale: about 1.6 M pixels in memory, not 102 M
    assert decoded.array.shape == (96, 96, 3)
    assert np.abs(decoded.array.astype(int) - 128).max() <= 2


def test_a_few_kb_png_claiming_900_megapixels_is_refused_before_decoding():
    from bad_inputs import png_bomb_few_kb

    with pytest.raises(DecodeError, match="decompression bomb refused"):
        decode_photo(png_bomb_few_kb())


def test_a_file_that_fails_to_decode_is_not_counted_as_decoded(tmp_path):
    from bad_inputs import noise_jpeg

    folder = tmp_path / "photos"
    folder.mkdir()
    good = noise_jpeg()
    (folder / "good.jpg").write_bytes(good)
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    report, result = load_library([folder], workers=0, cache_root=tmp_path / "cache")
    assert [s.path.name for s in result.skipped] == ["truncated.jpg"]
    assert result.n_decoded == 1 and result.n_cached == 0
