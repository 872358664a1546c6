"""Scan: options (hidden, links, extensions), loop protection, every unusable file reported with its reason,
duplicates by content, files that vanish mid-scan, unreadable files and folders, cancel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import photocluster.library.scan as scan_module
from bad_inputs import (
    RED,
    build_corpus,
    encode,
    jpeg_with_orientation,
    quadrants,
    refuse_open,
    restore_permissions,
    solid,
)
from photocluster.library.scan import FolderScan, display_path, hash_bytes, hash_file, read_header, scan_folders
from photocluster.progress import CancelToken, Cancelled


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Written once per module (the tests only read it)."""
    root = tmp_path_factory.mktemp("bad-inputs") / "corpus"
    cases = build_corpus(root)
    yield root, cases
    restore_permissions(root)


def _reasons(report) -> dict[str, str]:
    return {p.name: r for p, r in ((s.path, s.reason) for s in report.skipped)}


def test_scan_reports_broken_headers_with_reasons(corpus):
    root, _ = corpus
    report = scan_folders([root])
    reasons = _reasons(report)
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"].startswith("not an image")
    assert reasons["random.png"].startswith("not an image")
    assert reasons["bomb.png"].startswith("decompression bomb")
    assert "damaged image header" in reasons["header-only.jpg"]
    assert "pillow-heif" in reasons["phone.heic"] or "not an image" in reasons["phone.heic"]
    # Pixel damage is not visible in a header: truncated files pass the scan and fail at decode.
    names = {p.path.name for p in report.photos}
    assert {"truncated.jpg", "truncated.png"} <= names
    assert report.ignored_other == 1  # notes/readme.txt


def test_scan_records_size_hash_and_upright_dimensions(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "turned.jpg").write_bytes(jpeg_with_orientation(quadrants(64, 32), 6))
    report = scan_folders([folder])
    (photo,) = report.photos
    assert (photo.width, photo.height) == (32, 64)  # orientation 6 displays the 64 x 32 image as portrait
    assert photo.format == "JPEG"
    assert photo.size == (folder / "turned.jpg").stat().st_size
    assert photo.content_hash == hash_file(folder / "turned.jpg")
    assert len(photo.content_hash) == 32


def test_hidden_files_are_counted_and_can_be_included(corpus):
    root, _ = corpus
    default = scan_folders([root])
    assert default.ignored_hidden == 2
    assert not any(".hidden" in str(p.path) or ".thumbs" in str(p.path) for p in default.photos)
    included = scan_folders([root], include_hidden=True)
    names = {p.path.name for p in included.photos}
    assert {".hidden.jpg", "inside.png"} <= names
    assert included.ignored_hidden == 0


def test_links_are_reported_when_not_followed(corpus):
    root, _ = corpus
    reasons = _reasons(scan_folders([root]))
    assert "not followed" in reasons["loop"] and "not followed" in reasons["dangling.jpg"]


def test_symlink_loop_is_detected_when_following_links(corpus):
    root, _ = corpus
    plain = scan_folders([root])
    followed = scan_folders([root], follow_links=True)
    reasons = _reasons(followed)
    assert "loop" in reasons["loop"]
    assert "broken symbolic link" in reasons["dangling.jpg"]
    # The loop leads back to the root: no photo is listed twice.
    assert sorted(p.path for p in followed.photos) == sorted(p.path for p in plain.photos)


def test_followed_link_to_another_folder_is_scanned(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.png").write_bytes(encode(solid(RED), "PNG"))
    folder = tmp_path / "photos"
    folder.mkdir()
    os.symlink(outside, folder / "shortcut")
    assert [p.path.name for p in scan_folders([folder], follow_links=True).photos] == ["far.png"]
    not_followed = scan_folders([folder])
    assert not not_followed.photos and "not followed" in not_followed.skipped[0].reason


def test_extensions_option_limits_the_candidates(corpus):
    root, _ = corpus
    report = scan_folders([root], extensions=["PNG"])
    assert report.photos and all(p.path.suffix.lower() == ".png" for p in report.photos)
    # The .jpg files are now "other files", counted but not listed.
    assert report.ignored_other > 10


def test_byte_identical_files_form_a_duplicate_group(corpus):
    root, _ = corpus
    report = scan_folders([root])
    groups = [sorted(p.name for p in group) for group in report.duplicates]
    assert ["a.png", "b.png"] in groups
    assert "duplicate" in report.summary()


def test_unicode_non_utf8_and_spaces_in_names(corpus):
    root, _ = corpus
    names = {p.path.name for p in scan_folders([root]).photos}
    assert "фото 🌸 été.jpg" in names and "my holiday photo 1.jpg" in names and "IMG_0001.JPG" in names
    if os.name == "posix":
        raw = os.fsdecode(b"caf\xe9-latin1.png")
        assert raw in names
        assert display_path(raw) == "caf\ufffd-latin1.png"  # printable, unlike the surrogate escape


def test_read_only_folder_is_scanned(corpus):
    root, _ = corpus
    assert not os.access(root / "readonly", os.W_OK) or os.geteuid() == 0
    assert "locked.png" in {p.path.name for p in scan_folders([root]).photos}


def test_file_that_vanishes_during_the_scan_is_reported(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(encode(solid(RED, (10 + len(name), 10)), "PNG"))
    scan = FolderScan([folder])
    for event in scan.steps():
        if event.stage == "scan" and event.step == 0:  # listed, not yet read
            (folder / "b.png").unlink()
    assert [p.path.name for p in scan.report.photos] == ["a.png", "c.png"]
    assert [(s.path.name, "vanished" in s.reason) for s in scan.report.skipped] == [("b.png", True)]


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "ok.png").write_bytes(encode(solid(RED), "PNG"))
    secret = folder / "secret.png"
    secret.write_bytes(encode(solid(RED, (5, 5)), "PNG"))
    if os.geteuid() != 0:
        secret.chmod(0)  # a real permission error
    else:  # root reads everything: make open() refuse like the kernel would for a normal user
        refuse_open(monkeypatch, scan_module, "secret.png")
    try:
        report = scan_folders([folder])
    finally:
        secret.chmod(0o644)
    assert [p.path.name for p in report.photos] == ["ok.png"]
    assert [(s.path.name, "permission denied" in s.reason) for s in report.skipped] == [("secret.png", True)]


def test_unreadable_folder_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    (folder / "private").mkdir(parents=True)
    (folder / "private" / "x.png").write_bytes(encode(solid(RED), "PNG"))
    (folder / "y.png").write_bytes(encode(solid(RED, (3, 3)), "PNG"))
    real_scandir = os.scandir

    def guarded_scandir(path):
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", guarded_scandir)
    report = scan_folders([folder])
    assert [p.path.name for p in report.photos] == ["y.png"]
    assert [(s.path.name, "permission denied" in s.reason) for s in report.skipped] == [("private", True)]


def test_missing_folder_is_reported_not_raised(tmp_path):
    report = scan_folders([tmp_path / "nope"])
    assert [(s.path.name, s.reason) for s in report.skipped] == [("nope", "folder does not exist")]


def test_same_folder_twice_is_scanned_once(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.png").write_bytes(encode(solid(RED), "PNG"))
    report = scan_folders([folder, folder / "sub", folder])
    assert [p.path.name for p in report.photos] == ["a.png"]


def test_decompression_bomb_warning_range_is_refused():
    # 3000 x 3000 = 9 M pixels: above a 5 M limit but below twice it, where Pillow only warns.
    data = encode(solid(RED, (3000, 3000)), "PNG")
    with pytest.raises(ValueError, match="decompression bomb"):
        read_header(data, max_pixels=5_000_000)
    assert read_header(data)[:3] == ("PNG", 3000, 3000)


def test_pillow_bomb_warning_is_an_error_too(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000_000)  # Pillow warns at 5 M, errors at 10 M
    with pytest.raises(ValueError, match="decompression bomb"):
        read_header(encode(solid(RED, (3000, 2000)), "PNG"), max_pixels=0)  # 0 = only Pillow's own check


def test_cancel_stops_the_scan(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(encode(solid((i, 0, 0)), "PNG"))
    token = CancelToken()
    scan = FolderScan([folder])
    with pytest.raises(Cancelled):
        for event in scan.steps(token):
            if event.stage == "scan":
                token.cancel()
    assert len(scan.report.photos) <= 1


def test_photos_sample_scans_clean(photos_sample):
    report = scan_folders([photos_sample])
    assert len(report.photos) == 200 and not report.skipped
    assert {p.format for p in report.photos} == {"JPEG"}
    assert all(p.width > 0 and p.height > 0 for p in report.photos)
    # Folders in name order, files in name order: a stable order for the data set.
    paths = [p.path for p in report.photos]
    assert paths == sorted(paths, key=lambda p: (p.parent.name, p.name))
    assert np.unique([p.content_hash for p in report.photos]).size == 200 - sum(len(g) - 1 for g in report.duplicates)


def _counting_open(monkeypatch) -> list[int]:
    calls = [0]
    real_open = open

    def counting(path, *args, **kwargs):
        calls[0] += 1
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(scan_module, "open", counting, raising=False)
    return calls


def test_scan_index_skips_unchanged_files_and_rereads_changed_ones(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("a.png", (1, 2, 3)), ("b.png", (4, 5, 6))):
        (folder / name).write_bytes(encode(solid(colour), "PNG"))
    index = tmp_path / "index.sqlite3"
    first = scan_folders([folder], index=index)
    opened = _counting_open(monkeypatch)
    second = scan_folders([folder], index=index)
    assert opened[0] == 0, "an unchanged file was read again"
    assert second.photos == first.photos
    # b.png rewritten, its old modification time put back: the change time still gives it away.
    target = folder / "b.png"
    st = target.stat()
    target.write_bytes(encode(solid((7, 8, 9)), "PNG"))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = scan_folders([folder], index=index)
    assert opened[0] == 1
    assert third.photos[1].content_hash == hash_bytes(target.read_bytes()) != first.photos[1].content_hash
    # index=False reads every file.
    scan_folders([folder], index=False)
    assert opened[0] == 3


def test_unusable_index_file_falls_back_to_reading(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(solid(RED), "PNG"))
    bad_index = tmp_path / "not-a-db"
    bad_index.write_bytes(b"this is not sqlite" * 100)
    assert [p.path.name for p in scan_folders([folder], index=bad_index).photos] == ["a.png"]


# -- issue 20: what a real disk holds ---------------------------------------------------------------
def test_a_real_100_megapixel_photo_passes_and_a_few_kb_bomb_is_refused(tmp_path):
    from bad_inputs import jpeg_100_megapixels, png_bomb_few_kb

    assert read_header(jpeg_100_megapixels())[:3] == ("JPEG", 12000, 8500)  # Pillow alone refuses 102 M
    bomb = png_bomb_few_kb()
    assert len(bomb) < 10_000
    with pytest.raises(ValueError, match="decompression bomb refused .*30000x30000"):
        read_header(bomb)
    # The same rule on files (read by path, and through the scan index on a second scan).
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "camera.jpg").write_bytes(jpeg_100_megapixels())
    (folder / "bomb.png").write_bytes(bomb)
    for _ in range(2):
        report = scan_folders([folder], index=tmp_path / "index.sqlite3")
        assert [(p.path.name, p.width, p.height) for p in report.photos] == [("camera.jpg", 12000, 8500)]
        assert _reasons(report)["bomb.png"].startswith("decompression bomb refused")


def test_pixel_limit_is_a_ratio_of_pixels_to_bytes():
    from photocluster.library.scan import MAX_PIXELS_FULL_DECODE, pixel_limit_refusal

    assert pixel_limit_refusal(6000, 4000, 100) is None  # under Pillow's limit: always fine
    assert pixel_limit_refusal(16000, 12500, 20_000_000, "JPEG") is None  # a 200-MP camera JPEG
    assert "decompression bomb" in pixel_limit_refusal(16000, 12500, 5_000, "JPEG")
    assert "too large" in pixel_limit_refusal(40000, 40000, 10**9, "JPEG")  # 1.6 G pixels: memory
    assert "too large" in pixel_limit_refusal(20000, 20000, 10**8, "PNG")  # 400 M decoded at full size
    assert pixel_limit_refusal(20000, 15000, 10**8, "PNG") is None and 20000 * 15000 <= MAX_PIXELS_FULL_DECODE
    assert "more than 100" in pixel_limit_refusal(20, 20, 10**6, max_pixels=100)  # a strict limit stays strict


def test_exclude_leaves_the_export_destination_out_of_the_scan(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sorted" / "Cluster 1").mkdir(parents=True)
    (folder / "a.png").write_bytes(encode(solid(RED), "PNG"))
    (folder / "sorted" / "Cluster 1" / "a.png").write_bytes(encode(solid(RED), "PNG"))
    report = scan_folders([folder], exclude=[folder / "sorted"], index=False)
    assert [p.path for p in report.photos] == [folder / "a.png"]
    assert report.excluded == [folder / "sorted"]
    assert "1 folder(s) excluded" in report.summary()
    # Another spelling of the same folder (a link) is excluded too: compared by device and inode.
    os.symlink(folder / "sorted", tmp_path / "link-to-sorted")
    again = scan_folders([folder], exclude=[tmp_path / "link-to-sorted"], index=False)
    assert [p.path for p in again.photos] == [folder / "a.png"]


def test_display_path_keeps_every_name_on_one_printable_line():
    assert display_path(os.fsdecode(b"/p/bad\xff.jpg")) == "/p/bad\ufffd.jpg"
    assert display_path("/p/two\nlines.jpg") == "/p/two\\nlines.jpg"
    assert display_path("/p/esc\x1b[31m.jpg") == "/p/esc\\x1b[31m.jpg"
    assert display_path("/p/été 🌸.jpg") == "/p/été 🌸.jpg"
