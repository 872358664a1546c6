"""A corpus of broken and odd image files, written by the tests in the real on-disk formats.

``build_corpus(root)`` writes every case under ``root`` and returns a list of :class:`Case`: the file, what
must happen to it (decoded as a photo, skipped with a reason, or left out as hidden), and for photos the
colour the decoded training array must show. Cases that need a moment between two pipeline stages (a file
that vanishes, a file replaced after the scan, an unreadable file on a root account) are in the tests
themselves, because they need hooks.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
YELLOW = (255, 255, 0)
WHITE = (255, 255, 255)


@dataclass
class Case:
    """One corpus file.

    expect: "photo" (must decode), "skip" (must be reported with ``reason`` in its text), "hidden" (left
    out by default, counted as hidden), "link" (a symlink reported when links are not followed).
    colour: for photos, the RGB the centre of the training array must have (± tolerance), or None.
    """

    name: str
    path: Path
    expect: str
    reason: str = ""
    colour: tuple[int, int, int] | None = None
    tolerance: int = 12


def solid(colour, size=(40, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def noise_jpeg(size=(128, 96), seed=0) -> bytes:
    """Random pixels: the entropy-coded data is long, so cutting it in half really truncates pixel data."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A 70-byte PNG whose header claims width × height pixels (10^10 by default): a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_bomb_few_kb(width=30_000, height=30_000) -> bytes:
    """A PNG of a few KB claiming width × height pixels (9 x 10^8 by default), with real compressed rows
    of zeros: what a decompression bomb sent around looks like (a real one of 2.7 GB would be 2.6 MB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (4 << 20), 9)  # the first ~460 rows, about 4 KB
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=1)
def jpeg_100_megapixels() -> bytes:
    """A real 12000 x 8500 JPEG (102 M pixels, more than Pillow's 89.5 M limit), like a 100-MP camera's;
    a flat grey one, about 1.2 MB (0.01 byte a pixel): encoded once per test process (~1 s)."""
    return encode(Image.new("L", (12000, 8500), 128), "JPEG", quality=70)


def non_utf8(name: bytes) -> str:
    """A file name that is not valid UTF-8, as Python carries it (surrogate escapes): b"bad\\xff.jpg"."""
    return os.fsdecode(name)


def png_rgb16(width=40, height=30, rgb=(65535, 0, 32896)) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot save one): colour type 2, depth 16."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    row = b"\x00" + struct.pack(">HHH", *rgb) * width  # filter byte 0, then big-endian samples
    idat = zlib.compress(row * height)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def quadrants(width=64, height=32) -> np.ndarray:
    """Top-left red, top-right green, bottom-left blue, bottom-right yellow: every one of the 8 EXIF
    orientations gives a different layout, so the decoded layout proves which transform was applied."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    h2, w2 = height // 2, width // 2
    array[:h2, :w2] = RED
    array[:h2, w2:] = GREEN
    array[h2:, :w2] = BLUE
    array[h2:, w2:] = YELLOW
    return array


#: What a viewer shows for each EXIF orientation value, written by hand from the EXIF 2.3 table
#: (value → how the stored pixels must be turned to be upright), as numpy operations on (H, W, C).
EXIF_DISPLAY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                      # mirrored left-right
    3: lambda a: a[::-1, ::-1],                   # rotated 180°
    4: lambda a: a[::-1, :],                      # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),                # mirrored along the main diagonal (transpose)
    6: lambda a: np.rot90(a, k=-1),               # stored turned 90° anticlockwise → turn 90° clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),    # transverse (anti-diagonal mirror)
    8: lambda a: np.rot90(a, k=1),                # turn 90° anticlockwise
}


def jpeg_with_orientation(array: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def quadrant_means(array: np.ndarray) -> np.ndarray:
    """Mean colour of the interior of each quadrant (TL, TR, BL, BR), away from JPEG-blurred edges."""
    h, w = array.shape[:2]
    h4, w4 = h // 4, w // 4
    centres = [(h4, w4), (h4, 3 * w4), (3 * h4, w4), (3 * h4, 3 * w4)]
    dy, dx = max(1, h // 10), max(1, w // 10)
    return np.array([array[y - dy:y + dy, x - dx:x + dx].reshape(-1, 3).mean(axis=0) for y, x in centres])


def build_corpus(root: Path) -> list[Case]:
    """Write the corpus under ``root`` and return its cases."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def write(rel: str, data: bytes) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def photo(name: str, rel: str, data: bytes, colour=None, tolerance=12) -> None:
        cases.append(Case(name, write(rel, data), "photo", colour=colour, tolerance=tolerance))

    def skip(name: str, rel: str, data: bytes, reason: str) -> None:
        cases.append(Case(name, write(rel, data), "skip", reason=reason))

    good = noise_jpeg()
    # -- broken files ------------------------------------------------------------------------------
    skip("zero bytes", "broken/empty.jpg", b"", "empty file")
    skip("truncated JPEG", "broken/truncated.jpg", good[: len(good) // 2], "truncated")
    png = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    skip("truncated PNG", "broken/truncated.png", png[: len(png) // 2], "truncated")
    skip("text file named .jpg", "broken/notes.jpg", b"shopping list: milk, eggs\n" * 20, "not an image")
    skip("random bytes .png", "broken/random.png", np.random.default_rng(2).bytes(4096), "not an image")
    skip("decompression bomb", "broken/bomb.png", png_bomb(), "decompression bomb")
    skip("header only JPEG", "broken/header-only.jpg", good[:200], "")
    skip("HEIC without pillow-heif or garbage", "broken/phone.heic", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "")

    # -- odd but valid images --------------------------------------------------------------------
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # no cyan, full magenta + yellow, no black = red
    photo("CMYK JPEG", "odd/cmyk.jpg", encode(cmyk, "JPEG", quality=95), RED, tolerance=20)
    grey16 = Image.fromarray(np.full((30, 40), 128 * 257, dtype=np.uint16))  # I;16, 50 % grey
    assert grey16.mode in ("I;16", "I")
    photo("16-bit grey PNG", "odd/grey16.png", encode(grey16, "PNG"), (128, 128, 128), tolerance=1)
    photo("16-bit RGB PNG", "odd/rgb16.png", png_rgb16(), (255, 0, 128), tolerance=1)
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 red, index 1 blue
    palette.paste(0, (0, 0, 40, 15))  # top half red, bottom half index 1
    photo("palette with transparency (transparent part)", "odd/palette-transparent.png",
          encode(palette, "PNG", transparency=1), None)
    photo("LA fully transparent", "odd/la-transparent.png", encode(Image.new("LA", (40, 30), (0, 0)), "PNG"), WHITE, 1)
    photo("LA opaque black", "odd/la-black.png", encode(Image.new("LA", (40, 30), (0, 255)), "PNG"), (0, 0, 0), 1)
    photo("RGBA half transparent red", "odd/rgba.png", encode(Image.new("RGBA", (40, 30), (255, 0, 0, 128)), "PNG"),
          (255, 127, 127), 2)
    frames = [solid(RED).convert("P"), solid(BLUE).convert("P")]
    photo("animated GIF (first frame)", "odd/animated.gif",
          encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0), RED, 2)
    photo("WebP", "formats/green.webp", encode(solid(GREEN), "WEBP", lossless=True), GREEN, 2)
    photo("TIFF", "formats/blue.tiff", encode(solid(BLUE), "TIFF"), BLUE, 1)
    photo("BMP", "formats/yellow.bmp", encode(solid(YELLOW), "BMP"), YELLOW, 1)
    photo("PNG named .jpg", "formats/really-a-png.jpg", encode(solid(GREEN), "PNG"), GREEN, 1)
    photo("1-bit image", "formats/bilevel.png", encode(Image.new("1", (40, 30), 1), "PNG"), WHITE, 1)
    photo("huge dimensions (6000 x 4000 JPEG)", "odd/huge.jpg",
          encode(Image.new("RGB", (6000, 4000), RED), "JPEG", quality=80), RED, 20)
    # Issue 20: a real photo over Pillow's 89.5 M-pixel limit is a photo; a few KB claiming 900 M is a bomb.
    photo("100-megapixel JPEG (a camera's, over Pillow's limit)", "odd/100mp.jpg", jpeg_100_megapixels(),
          (128, 128, 128), 2)
    skip("30000 x 30000 PNG bomb of a few KB", "broken/bomb-30000.png", png_bomb_few_kb(), "decompression bomb")
    for orientation in range(1, 9):
        photo(f"EXIF orientation {orientation}", f"orientation/o{orientation}.jpg",
              jpeg_with_orientation(quadrants(), orientation), None)

    # -- names and places ------------------------------------------------------------------------
    photo("unicode name", "names/фото 🌸 été.jpg", encode(solid(RED), "JPEG", quality=95), RED, 20)
    photo("spaces in name", "names/my holiday photo 1.jpg", encode(solid(BLUE), "JPEG", quality=95), BLUE, 20)
    if os.name == "posix":
        raw_name = os.fsdecode(b"names/caf\xe9-latin1.png")  # not valid UTF-8: a bytes name on Linux
        photo("non-UTF-8 file name", raw_name, encode(solid(GREEN), "PNG"), GREEN, 1)
        photo("non-UTF-8 folder name", non_utf8(b"names/d\xe9j\xe0-vu/inside.png"), encode(solid(BLUE), "PNG"),
              BLUE, 1)
        photo("newline in a file name", "names/two\nlines.png", encode(solid(RED), "PNG"), RED, 1)
    photo("upper-case extension", "names/IMG_0001.JPG", encode(solid(GREEN), "JPEG", quality=95), GREEN, 20)
    readonly = root / "readonly"
    photo("photo in a read-only folder", "readonly/locked.png", encode(solid(RED), "PNG"), RED, 1)
    readonly.chmod(0o555)
    cases.append(Case("hidden file", write(".hidden.jpg", encode(solid(RED), "JPEG")), "hidden"))
    cases.append(Case("file in a hidden folder", write(".thumbs/inside.png", encode(solid(RED), "PNG")), "hidden"))
    dup = encode(solid(YELLOW, (20, 20)), "PNG")
    photo("duplicate (first copy)", "dups/a.png", dup, YELLOW, 1)
    photo("duplicate (second copy)", "dups/b.png", dup, YELLOW, 1)
    write("notes/readme.txt", b"not a photo extension: ignored and counted")

    if hasattr(os, "symlink"):
        loop = root / "links" / "loop"
        loop.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("..", loop)  # links/loop → the corpus root: an endless tree if followed naively
        cases.append(Case("symlink loop", loop, "link", reason="symbolic link"))
        broken = root / "links" / "dangling.jpg"
        os.symlink("does-not-exist.jpg", broken)
        cases.append(Case("broken symlink", broken, "link", reason="symbolic link"))
    return cases


def restore_permissions(root: Path) -> None:
    """Make the read-only folder writable again so tmp_path can be cleaned up."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def refuse_open(monkeypatch, module, file_name: str) -> None:
    """Make ``open`` inside ``module`` raise PermissionError for ``file_name``, as the kernel does for a normal
    user on an unreadable file (tests run as root here, and root reads everything)."""
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if Path(path).name == file_name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(module, "open", guarded_open, raising=False)
