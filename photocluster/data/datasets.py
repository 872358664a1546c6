"""Benchmark data sets: a registry of loaders that return uint8 images plus labels as one :class:`ImageDataset`.

Train and test splits are joined, as DAC and MMDC cluster and score all images (MNIST 70,000; CIFAR 60,000;
STL-10 13,000). Every loader reads the files in the form their authors distribute them:

* ``mnist``, ``fashion-mnist``: the four IDX ``.gz`` files;
* ``cifar10``: the *binary* version (``cifar-10-batches-bin``); ``cifar100-20``: ``cifar-100-binary`` with the
  20 coarse super-classes as labels. The Python-pickle versions are deliberately not read: unpickling a
  downloaded file can run arbitrary code;
* ``stl10``: ``stl10_binary`` (column-major 3×96×96 records, labels 1..10);
* ``imagenet10``, ``imagenet-dog``: one folder per WordNet id (an ILSVRC-2012 ``train`` folder) with the
  papers' class lists below; ``tiny-imagenet``: the ``tiny-imagenet-200`` folder (its 100,000 train images);
* ``digits``: scikit-learn's bundled 8×8 digits (no files needed, the embedded default);
* ``folder:PATH``: any labelled folder, class = sub-folder.

Missing files raise :class:`~photocluster.errors.DataMissingError` naming the files, where to get them and
where to put them, unless ``download=True``.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from photocluster.data.dataset import ImageDataset
from photocluster.errors import DataMissingError, UsageError

__all__ = [
    "DatasetInfo",
    "RemoteFile",
    "load_dataset",
    "list_datasets",
    "dataset_info",
    "read_idx",
    "load_image_folder",
    "IMAGENET10_WNIDS",
    "IMAGENET_DOG_WNIDS",
    "IMAGE_EXTENSIONS",
    "FOLDER_IMAGE_SIZE",
]

#: file name endings read as images in labelled folders
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: side of the square RGB images a ``folder:`` data set is resized to (STL-10 / ImageNet-10 size)
FOLDER_IMAGE_SIZE = 96

# ImageNet-10 (Chang et al., DAC, ICCV 2017): 10 ILSVRC-2012 classes, all 1,300 train images each = 13,000.
# The list is the one used in the public code of the follow-up papers (e.g. MMDC's data-set script):
# king penguin, Maltese dog, snow leopard, airliner, airship, container ship, soccer ball, sports car,
# trailer truck, orange.
IMAGENET10_WNIDS = (
    "n02056570", "n02085936", "n02128757", "n02690373", "n02692877",
    "n03095699", "n04254680", "n04285008", "n04467665", "n07747607",
)
# ImageNet-Dog (DAC): 15 dog breeds of ILSVRC-2012, 19,500 images. Same source as above: Maltese,
# Blenheim spaniel, basset, Norwegian elkhound, giant schnauzer, golden retriever, Brittany spaniel,
# clumber, Welsh springer spaniel, groenendael, kelpie, Shetland sheepdog, Doberman, pug, chow.
IMAGENET_DOG_WNIDS = (
    "n02085936", "n02086646", "n02088238", "n02091467", "n02097130",
    "n02099601", "n02101388", "n02101556", "n02102177", "n02105056",
    "n02105412", "n02105855", "n02107142", "n02110958", "n02112137",
)

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                    "ankle boot")
_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class RemoteFile:
    """A file ``--download`` fetches: URL, file name in the data folder, MD5, and whether to unpack it."""

    url: str
    filename: str
    md5: str
    extract: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """What ``--list`` shows about a data set, and what its loader needs on disk.

    ``image_size`` is (H, W, C); ``required_files`` are relative to the data folder (the folder given
    with ``--data-dir``, or the default under the cache); ``downloads`` is empty where the data cannot be
    downloaded automatically (ImageNet subsets need an ILSVRC-2012 copy).
    """

    name: str
    description: str
    n_images: int | None
    image_size: tuple[int, int, int] | None
    n_classes: int | None
    source: str
    required_files: tuple[str, ...] = ()
    downloads: tuple[RemoteFile, ...] = ()
    default_dirs: tuple[str, ...] = field(default=())


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_INFOS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", "handwritten digits, train 60,000 + test 10,000", 70_000, (28, 28, 1), 10,
        "http://yann.lecun.com/exdb/mnist/ (mirror " + _MNIST_URL + ")",
        _MNIST_FILES,
        (
            RemoteFile(_MNIST_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz",
                       "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile(_MNIST_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile(_MNIST_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile(_MNIST_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                       "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Zalando clothing images, train 60,000 + test 10,000", 70_000, (28, 28, 1), 10,
        "https://github.com/zalandoresearch/fashion-mnist (Debian: apt-get install dataset-fashion-mnist)",
        _MNIST_FILES,
        (
            RemoteFile(_FASHION_URL + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz",
                       "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile(_FASHION_URL + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile(_FASHION_URL + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile(_FASHION_URL + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                       "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        default_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "cifar10": DatasetInfo(
        "cifar10", "10 object classes, train 50,000 + test 10,000 (binary version)", 60_000, (32, 32, 3), 10,
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)) + ("cifar-10-batches-bin/test_batch.bin",),
        (RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
                    "c32a1d4ab5d03f1284b67883e8d87530", extract=True),),
    ),
    "cifar100-20": DatasetInfo(
        "cifar100-20", "CIFAR-100 with its 20 coarse super-classes as labels, train 50,000 + test 10,000",
        60_000, (32, 32, 3), 20,
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        ("cifar-100-binary/train.bin", "cifar-100-binary/test.bin"),
        (RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "cifar-100-binary.tar.gz",
                    "03b5dce01913d631647c71ecec9e9cb8", extract=True),),
    ),
    "stl10": DatasetInfo(
        "stl10", "10 object classes at 96 px, labelled train 5,000 + test 8,000", 13_000, (96, 96, 3), 10,
        "https://cs.stanford.edu/~acoates/stl10/",
        ("stl10_binary/train_X.bin", "stl10_binary/train_y.bin", "stl10_binary/test_X.bin", "stl10_binary/test_y.bin"),
        (RemoteFile("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "stl10_binary.tar.gz",
                    "91f7769df0f17e558f3565bffb0c7dfb", extract=True),),
    ),
    "imagenet10": DatasetInfo(
        "imagenet10", "10 ILSVRC-2012 classes (DAC), 1,300 train images each, resized to 96 px", 13_000,
        (96, 96, 3), 10,
        "ILSVRC-2012 train set (https://image-net.org, registration needed): one folder per WNID",
        tuple(f"{wnid}/" for wnid in IMAGENET10_WNIDS),
    ),
    "imagenet-dog": DatasetInfo(
        "imagenet-dog", "15 dog breeds of ILSVRC-2012 (DAC), 1,300 train images each, resized to 96 px", 19_500,
        (96, 96, 3), 15,
        "ILSVRC-2012 train set (https://image-net.org, registration needed): one folder per WNID",
        tuple(f"{wnid}/" for wnid in IMAGENET_DOG_WNIDS),
    ),
    "tiny-imagenet": DatasetInfo(
        "tiny-imagenet", "200 classes at 64 px, the 100,000 train images (as MMDC)", 100_000, (64, 64, 3), 200,
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        ("tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/train/"),
        (RemoteFile("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip",
                    "90528d7ca1a48142e341f4ef8d21d0de", extract=True),),
    ),
    "digits": DatasetInfo(
        "digits", "scikit-learn's bundled 8x8 handwritten digits (the embedded default, no files needed)", 1_797,
        (8, 8, 1), 10, "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
    ),
}

_FOLDER_INFO = DatasetInfo(
    "folder:PATH", f"any labelled folder: class = sub-folder, images resized to {FOLDER_IMAGE_SIZE} px RGB", None,
    (FOLDER_IMAGE_SIZE, FOLDER_IMAGE_SIZE, 3), None, "your own files",
)


def list_datasets() -> list[DatasetInfo]:
    """All known data sets (``folder:PATH`` last), for ``--list`` and the GUI."""
    return [*_INFOS.values(), _FOLDER_INFO]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; UsageError listing the valid names when unknown."""
    if name.startswith("folder:"):
        return _FOLDER_INFO
    try:
        return _INFOS[name]
    except KeyError:
        raise UsageError(f"unknown data set {name!r}; choose one of: {', '.join(_INFOS)}, folder:PATH") from None


# -- readers of the on-disk formats ---------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
    big-endian int32 per dimension; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    data = raw[4 + 4 * ndim :]
    if len(data) != expected:
        raise UsageError(f"{path}: IDX header says {shape} but the file holds {len(data)} data bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _read_records(path: Path, record_bytes: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % record_bytes:
        raise UsageError(f"{path}: size {raw.size} is not a multiple of the {record_bytes}-byte record")
    return raw.reshape(-1, record_bytes)


def _cifar_images(pixels: np.ndarray) -> np.ndarray:
    # Each record stores the red plane, then green, then blue, each 32×32 row-major.
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


# -- folders of images ----------------------------------------------------------------------------


def _decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    """Decode one image to a (size, size, 3) uint8 array.

    ``mode="squash"`` resizes the whole image to a square (what DAC/MMDC did for the ImageNet subsets);
    ``mode="crop"`` scales the shorter side to ``size`` and takes the centre square, keeping proportions
    (better for photos of any aspect ratio).
    """
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        # draft() lets the JPEG decoder skip detail we would throw away: much faster on large photos.
        image.draft("RGB", (size * 2, size * 2))
        image = ImageOps.exif_transpose(image)
        image = image.convert("RGB")
        if mode == "crop":
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
        else:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def load_image_folder(
    root: str | Path,
    class_folders: list[Path] | None = None,
    size: int = FOLDER_IMAGE_SIZE,
    mode: str = "crop",
    name: str | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> ImageDataset:
    """Load a labelled folder: each sub-folder is a class, its images (any depth below it) the members.

    Parameters
    ----------
    root:
        The folder.
    class_folders:
        The class folders to read, in label order; default: every non-hidden sub-folder of ``root`` that
        holds images, sorted by name.
    size, mode:
        Output side in pixels and the resize mode (see :func:`_decode_image`).
    limit:
        Read only the first ``limit`` images (in label, then file-name order).

    Files that cannot be decoded are skipped; their number is in ``info["skipped"]``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataMissingError(f"folder {root} does not exist")
    if class_folders is None:
        class_folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    class_names: list[str] = []
    for folder in class_folders:
        members = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                         and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not members:
            continue
        label = len(class_names)
        class_names.append(folder.name)
        files.extend((p, label) for p in members)
    if not files:
        raise DataMissingError(
            f"{root} has no class sub-folders with images ({', '.join(IMAGE_EXTENSIONS)}); a labelled folder "
            "needs one sub-folder per class"
        )
    if limit is not None:
        files = files[:limit]
    from tqdm import tqdm

    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    paths: list[str] = []
    skipped = 0
    kept = 0
    for path, label in tqdm(files, desc=f"decoding {root.name}", unit="img", disable=not progress, leave=False):
        try:
            images[kept] = _decode_image(path, size, mode)
        except (OSError, ValueError, SyntaxError):  # Pillow raises these for broken or unknown files
            skipped += 1
            continue
        labels[kept] = label
        paths.append(str(path))
        kept += 1
    if kept == 0:
        raise DataMissingError(f"none of the {len(files)} images in {root} could be decoded")
    return ImageDataset(
        name=name or f"folder:{root}",
        images=images[:kept],
        labels=labels[:kept],
        class_names=class_names,
        paths=paths,
        info={"skipped": skipped, "root": str(root)},
    )


# -- locating files -------------------------------------------------------------------------------


def _default_dir(info: DatasetInfo) -> Path:
    for candidate in info.default_dirs:
        if Path(candidate).is_dir():
            return Path(candidate)
    from photocluster import config

    return config.datasets_dir() / info.name


def _missing_files(info: DatasetInfo, folder: Path) -> list[str]:
    return [rel for rel in info.required_files if not (folder / rel).exists()]


def _resolve_folder(info: DatasetInfo, data_dir: Path) -> Path:
    """Accept both the folder that holds an archive's top folder and that top folder itself
    (``--data-dir .../cifar-10-batches-bin`` as well as ``--data-dir .../``)."""
    if not _missing_files(info, data_dir):
        return data_dir
    first = info.required_files[0] if info.required_files else ""
    top = first.split("/", 1)[0] if "/" in first.rstrip("/") else ""
    if top and data_dir.name == top and not _missing_files(info, data_dir.parent):
        return data_dir.parent
    return data_dir


def _explain_missing(info: DatasetInfo, folder: Path, missing: list[str]) -> str:
    # ImageNet subsets cannot be downloaded, so every missing class folder is named; otherwise a few files.
    cut = len(missing) if not info.downloads else 4
    shown = ", ".join(missing[:cut]) + (f" and {len(missing) - cut} more" if len(missing) > cut else "")
    if info.downloads:
        archives = " + ".join(remote.url for remote in info.downloads)
        how = (f"download {archives}" + (" and extract it" if any(r.extract for r in info.downloads) else "")
               + f" into {folder}, pass --data-dir to the folder holding them, or add --download")
    else:
        how = (f"copy these WNID class folders of the ILSVRC-2012 train set (https://image-net.org, registration "
               f"needed) into {folder}, or pass --data-dir to your ILSVRC-2012 train folder; they cannot be "
               "downloaded automatically")
    return f"{info.name}: missing {shown} in {folder}; {how}"


def _fetch(info: DatasetInfo, folder: Path, progress: bool) -> None:
    from photocluster.data.download import download_file, extract_archive

    for remote in info.downloads:
        target = download_file(remote.url, folder / remote.filename, md5=remote.md5, progress=progress)
        if remote.extract:
            extract_archive(target, folder)


# -- the loaders ----------------------------------------------------------------------------------


def _load_idx_pair(info: DatasetInfo, folder: Path, class_names: tuple[str, ...]) -> ImageDataset:
    parts_images, parts_labels = [], []
    for split in ("train", "t10k"):
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise UsageError(f"{info.name}: {split} has {len(images)} images but {len(labels)} labels")
        parts_images.append(images)
        parts_labels.append(labels)
    return ImageDataset(info.name, np.concatenate(parts_images).astype(np.uint8),
                        np.concatenate(parts_labels).astype(np.int64), class_names)


def _load_mnist(info: DatasetInfo, folder: Path, **_: object) -> ImageDataset:
    return _load_idx_pair(info, folder, tuple(str(d) for d in range(10)))


def _load_fashion(info: DatasetInfo, folder: Path, **_: object) -> ImageDataset:
    return _load_idx_pair(info, folder, _FASHION_CLASSES)


def _load_cifar10(info: DatasetInfo, folder: Path, **_: object) -> ImageDataset:
    records = np.concatenate([_read_records(folder / rel, 1 + 3072) for rel in info.required_files])
    return ImageDataset(info.name, _cifar_images(records[:, 1:]), records[:, 0].astype(np.int64), _CIFAR10_CLASSES)


def _load_cifar100_20(info: DatasetInfo, folder: Path, **_: object) -> ImageDataset:
    # Record: coarse label byte, fine label byte, 3072 pixel bytes. The coarse label is the super-class.
    records = np.concatenate([_read_records(folder / rel, 2 + 3072) for rel in info.required_files])
    return ImageDataset(info.name, _cifar_images(records[:, 2:]), records[:, 0].astype(np.int64), _CIFAR100_COARSE)


def _load_stl10(info: DatasetInfo, folder: Path, **_: object) -> ImageDataset:
    images, labels = [], []
    for split in ("train", "test"):
        pixels = np.fromfile(folder / "stl10_binary" / f"{split}_X.bin", dtype=np.uint8)
        if pixels.size % (3 * 96 * 96):
            raise UsageError(f"stl10: {split}_X.bin size is not a multiple of 3×96×96")
        # Stored column-major (MATLAB order): per image, channel planes, each column after column.
        images.append(pixels.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))
        split_labels = np.fromfile(folder / "stl10_binary" / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
        labels.append(split_labels)
    all_images = np.ascontiguousarray(np.concatenate(images))
    all_labels = np.concatenate(labels)
    if len(all_images) != len(all_labels):
        raise UsageError(f"stl10: {len(all_images)} images but {len(all_labels)} labels")
    return ImageDataset(info.name, all_images, all_labels, _STL10_CLASSES)


def _wnid_folder_loader(wnids: tuple[str, ...]) -> Callable[..., ImageDataset]:
    def load(info: DatasetInfo, folder: Path, progress: bool = True, limit: int | None = None) -> ImageDataset:
        return load_image_folder(folder, [folder / wnid for wnid in wnids], size=96, mode="squash",
                                 name=info.name, progress=progress, limit=limit)

    return load


def _resolve_imagenet_folder(info: DatasetInfo, data_dir: Path) -> Path:
    # An ILSVRC copy is usually laid out as ILSVRC2012/train/<wnid>/; accept the parent too.
    if _missing_files(info, data_dir) and not _missing_files(info, data_dir / "train"):
        return data_dir / "train"
    return data_dir


def _load_tiny_imagenet(info: DatasetInfo, folder: Path, progress: bool = True, limit: int | None = None) -> ImageDataset:
    root = folder / "tiny-imagenet-200"
    wnids = [line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()]
    class_folders = [root / "train" / wnid / "images" for wnid in wnids]
    dataset = load_image_folder(root / "train", class_folders, size=64, mode="squash", name=info.name,
                                progress=progress, limit=limit)
    dataset.class_names = wnids[: len(dataset.class_names or [])]
    return dataset


def _load_digits(info: DatasetInfo, folder: Path | None = None, **_: object) -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16 counts of set bits in 4×4 blocks; scale to the 0..255 range of the other sets.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return ImageDataset(info.name, images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)))


_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion,
    "cifar10": _load_cifar10,
    "cifar100-20": _load_cifar100_20,
    "stl10": _load_stl10,
    "imagenet10": _wnid_folder_loader(IMAGENET10_WNIDS),
    "imagenet-dog": _wnid_folder_loader(IMAGENET_DOG_WNIDS),
    "tiny-imagenet": _load_tiny_imagenet,
    "digits": _load_digits,
}
# Loaders that decode image files themselves and can stop early at ``limit``.
_DECODING_LOADERS = {"imagenet10", "imagenet-dog", "tiny-imagenet"}


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    progress: bool = True,
    limit: int | None = None,
) -> ImageDataset:
    """Load a benchmark data set, train and test joined.

    Parameters
    ----------
    name:
        One of :func:`list_datasets`' names, or ``folder:PATH``.
    data_dir:
        Folder holding the data set's files; default: the Debian location where one exists
        (fashion-mnist), else ``<cache>/datasets/<name>``.
    download:
        Fetch missing files (with a progress bar, MD5-checked) where the data set can be downloaded.
    progress:
        Show progress bars while downloading or decoding.
    limit:
        Keep only the first ``limit`` images (smoke runs).

    Returns
    -------
    ImageDataset
        uint8 images (N, H, W, C) with int64 labels.

    Raises
    ------
    UsageError
        Unknown name or bad ``limit``.
    DataMissingError
        The files are not there (and were not downloaded); the message says which, from where, and where.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if name.startswith("folder:"):
        path = name[len("folder:") :]
        if not path:
            raise UsageError("folder: needs a path, e.g. folder:~/Pictures/sorted")
        return load_image_folder(Path(path).expanduser(), name=name, progress=progress, limit=limit)
    info = dataset_info(name)
    loader = _LOADERS[name]
    if name == "digits":
        dataset = loader(info)
    else:
        folder = Path(data_dir).expanduser() if data_dir is not None else _default_dir(info)
        folder = _resolve_folder(info, folder)
        if name in ("imagenet10", "imagenet-dog"):
            folder = _resolve_imagenet_folder(info, folder)
        missing = _missing_files(info, folder)
        if missing and download and info.downloads:
            _fetch(info, folder, progress)
            missing = _missing_files(info, folder)
        if missing:
            raise DataMissingError(_explain_missing(info, folder, missing))
        if name in _DECODING_LOADERS:
            return loader(info, folder, progress=progress, limit=limit)
        dataset = loader(info, folder)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(np.arange(limit))
    dataset.info.setdefault("source", info.source)
    return dataset

