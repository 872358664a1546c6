"""Data set loaders on tiny files written here in each real on-disk format; the real data where present.

No test downloads: the download path is exercised with ``file://`` URLs of files the test writes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from photocluster.data import datasets
from photocluster.data.datasets import RemoteFile, load_dataset, read_idx
from photocluster.data.download import download_file, extract_archive, md5_of
from photocluster.errors import DataMissingError, UsageError

RNG = np.random.default_rng(0)


# -- writers of the real formats ----------------------------------------------------------------------


def write_idx(path, array: np.ndarray) -> None:
    """IDX: 0, 0, type 0x08 (uint8), ndim, big-endian int32 dims, then the bytes; gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_mnist_files(folder, n_train=3, n_test=2):
    folder.mkdir(parents=True, exist_ok=True)
    train_x = RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test_x = RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    train_y = np.arange(n_train, dtype=np.uint8) % 10
    test_y = (np.arange(n_test, dtype=np.uint8) + 7) % 10
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])


def cifar_record(label_bytes: bytes, image: np.ndarray) -> bytes:
    """CIFAR binary record: label byte(s), then the red, green and blue 32×32 planes, each row-major."""
    return label_bytes + image.transpose(2, 0, 1).tobytes()


def write_png(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


# -- IDX: mnist and fashion-mnist ---------------------------------------------------------------------


def test_mnist_joins_train_then_test(tmp_path):
    images, labels = write_mnist_files(tmp_path)
    dataset = load_dataset("mnist", tmp_path, progress=False)
    assert dataset.images.shape == (5, 28, 28, 1)
    assert dataset.images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.images[..., 0], images)
    np.testing.assert_array_equal(dataset.labels, [0, 1, 2, 7, 8])
    assert dataset.labels.dtype == np.int64


def test_fashion_mnist_reads_the_same_format_with_class_names(tmp_path):
    write_mnist_files(tmp_path)
    dataset = load_dataset("fashion-mnist", tmp_path, progress=False)
    assert len(dataset) == 5
    assert dataset.class_names[9] == "ankle boot"


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(b"PK\x03\x04 not an idx file")
    with pytest.raises(UsageError, match="not an IDX"):
        read_idx(bad)


def test_read_idx_checks_the_length(tmp_path):
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + struct.pack(">i", 10) + b"\x01\x02")  # says 10 bytes, holds 2
    with pytest.raises(UsageError, match="holds 2"):
        read_idx(short)


def test_limit_keeps_the_first_images(tmp_path):
    write_mnist_files(tmp_path)
    dataset = load_dataset("mnist", tmp_path, progress=False, limit=2)
    np.testing.assert_array_equal(dataset.labels, [0, 1])
    with pytest.raises(UsageError, match="limit"):
        load_dataset("mnist", tmp_path, limit=0)


# -- CIFAR binary -------------------------------------------------------------------------------------


def test_cifar10_binary_records(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected_images, expected_labels = [], []
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for file_index, name in enumerate(names):
        records = b""
        for j in range(2):
            image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            label = (file_index + j) % 10
            records += cifar_record(bytes([label]), image)
            expected_images.append(image)
            expected_labels.append(label)
        (folder / name).write_bytes(records)
    # --data-dir may be the parent of cifar-10-batches-bin or the folder itself.
    for data_dir in (tmp_path, folder):
        dataset = load_dataset("cifar10", data_dir, progress=False)
        assert dataset.images.shape == (12, 32, 32, 3)
        np.testing.assert_array_equal(dataset.images, np.stack(expected_images))
        np.testing.assert_array_equal(dataset.labels, expected_labels)
    assert dataset.class_names[0] == "airplane"


def test_cifar100_uses_the_coarse_label(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    image = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    # Records carry (coarse, fine) label bytes; the loader must keep the first (coarse) one.
    (folder / "train.bin").write_bytes(cifar_record(bytes([19, 58]), image) + cifar_record(bytes([4, 0]), image))
    (folder / "test.bin").write_bytes(cifar_record(bytes([11, 99]), image))
    dataset = load_dataset("cifar100-20", tmp_path, progress=False)
    np.testing.assert_array_equal(dataset.labels, [19, 4, 11])
    np.testing.assert_array_equal(dataset.images[2], image)
    assert len(dataset.class_names) == 20


def test_cifar_file_of_wrong_size_is_an_error(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(b"\x00" * 100)
    (folder / "test.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(UsageError, match="multiple"):
        load_dataset("cifar100-20", tmp_path)


# -- STL-10 binary ------------------------------------------------------------------------------------


def write_stl10(folder, n_train=2, n_test=3):
    """stl10_binary: X = uint8 3×96×96 per image in column-major order; y = labels 1..10."""
    folder.mkdir(parents=True, exist_ok=True)
    images = RNG.integers(0, 256, (n_train + n_test, 96, 96, 3), dtype=np.uint8)
    labels = np.array([1, 10, 3, 4, 5][: n_train + n_test], dtype=np.uint8)
    # Column-major (MATLAB) storage of an (H, W, C) image = C-order bytes of its (C, W, H) transpose.
    raw = images.transpose(0, 3, 2, 1)
    (folder / "train_X.bin").write_bytes(raw[:n_train].tobytes())
    (folder / "test_X.bin").write_bytes(raw[n_train:].tobytes())
    (folder / "train_y.bin").write_bytes(labels[:n_train].tobytes())
    (folder / "test_y.bin").write_bytes(labels[n_train:].tobytes())
    return images, labels.astype(np.int64) - 1


def test_stl10_column_major_images(tmp_path):
    images, labels = write_stl10(tmp_path / "stl10_binary")
    dataset = load_dataset("stl10", tmp_path, progress=False)
    assert dataset.images.shape == (5, 96, 96, 3)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)  # 1..10 on disk → 0..9


def test_stl10_orientation_is_not_transposed(tmp_path):
    # An image whose top row is white: after loading, row 0 (not column 0) must be white.
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[0, :, :] = 255
    (folder / "train_X.bin").write_bytes(image.transpose(2, 1, 0).tobytes())
    (folder / "test_X.bin").write_bytes(b"")
    (folder / "train_y.bin").write_bytes(bytes([2]))
    (folder / "test_y.bin").write_bytes(b"")
    loaded = load_dataset("stl10", tmp_path, progress=False).images[0]
    assert loaded[0].min() == 255 and loaded[1:].max() == 0


def test_stl10_missing_explains_what_to_get(tmp_path):
    with pytest.raises(DataMissingError) as info:
        load_dataset("stl10", tmp_path / "nothing")
    message = str(info.value)
    assert "stl10_binary/train_X.bin" in message
    assert "stl10_binary.tar.gz" in message
    assert str(tmp_path / "nothing") in message
    assert "--download" in message
    assert "\n" not in message


# -- folders: imagenet subsets, tiny-imagenet, folder:PATH ---------------------------------------------


def test_imagenet10_reads_the_papers_classes_in_order(tmp_path):
    train = tmp_path / "train"
    for i, wnid in enumerate(datasets.IMAGENET10_WNIDS):
        write_png(train / wnid / f"{wnid}_1.JPEG", (120 + i, 80), (i * 20, 0, 0))
    (train / "n99999999").mkdir()  # a class that is not in the list is ignored
    write_png(train / "n99999999" / "x.png", (10, 10), (0, 0, 0))
    dataset = load_dataset("imagenet10", tmp_path, progress=False)  # accepts the parent of train/
    assert dataset.images.shape == (10, 96, 96, 3)
    np.testing.assert_array_equal(dataset.labels, np.arange(10))
    assert list(dataset.class_names) == list(datasets.IMAGENET10_WNIDS)
    assert dataset.images[3, 50, 50, 0] == 60  # class 3 was drawn with red 60


def test_imagenet_dog_has_15_classes_and_missing_names_them(tmp_path):
    assert len(datasets.IMAGENET_DOG_WNIDS) == 15
    assert len(set(datasets.IMAGENET10_WNIDS)) == 10
    with pytest.raises(DataMissingError, match="n02085936"):
        load_dataset("imagenet-dog", tmp_path)


def test_tiny_imagenet_train_folders(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for j in range(2):
            write_png(root / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", (64, 64), (j, 0, 0))
    dataset = load_dataset("tiny-imagenet", tmp_path, progress=False)
    assert dataset.images.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1])
    assert list(dataset.class_names) == wnids


def test_labelled_folder(tmp_path):
    write_png(tmp_path / "cats" / "a.png", (200, 100), (255, 0, 0))
    write_png(tmp_path / "cats" / "nested" / "b.jpg", (50, 50), (250, 0, 0))
    write_png(tmp_path / "dogs" / "c.png", (100, 300), (0, 0, 255))
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    write_png(tmp_path / ".hidden" / "d.png", (10, 10), (0, 255, 0))
    dataset = load_dataset(f"folder:{tmp_path}", progress=False)
    assert dataset.images.shape == (3, datasets.FOLDER_IMAGE_SIZE, datasets.FOLDER_IMAGE_SIZE, 3)
    assert list(dataset.class_names) == ["cats", "dogs"]
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1])
    assert dataset.info["skipped"] == 1  # broken.jpg
    assert dataset.images[2, 48, 48].tolist() == [0, 0, 255]
    assert dataset.paths[0].endswith("a.png")


def test_folder_without_class_folders(tmp_path):
    write_png(tmp_path / "loose.png", (10, 10), (0, 0, 0))
    with pytest.raises(DataMissingError, match="sub-folder"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(DataMissingError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(UsageError, match="needs a path"):
        load_dataset("folder:")


# -- digits, registry ---------------------------------------------------------------------------------


def test_digits_is_embedded_and_scaled_to_bytes():
    dataset = load_dataset("digits")
    assert dataset.images.shape == (1797, 8, 8, 1)
    assert dataset.images.dtype == np.uint8
    assert dataset.images.max() == 255  # 16 → 255
    assert np.bincount(dataset.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UsageError) as info:
        load_dataset("imagenet")
    assert "mnist" in str(info.value) and "folder:PATH" in str(info.value)


def test_list_datasets_describes_every_loader():
    infos = {info.name: info for info in datasets.list_datasets()}
    assert set(infos) == {"mnist", "fashion-mnist", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dog",
                          "tiny-imagenet", "digits", "folder:PATH"}
    assert infos["stl10"].n_images == 13_000 and infos["stl10"].image_size == (96, 96, 3)
    assert infos["cifar100-20"].n_classes == 20
    assert infos["mnist"].source


# -- download ----------------------------------------------------------------------------------------


def test_download_file_checks_md5(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"hello data")
    good = hashlib.md5(b"hello data").hexdigest()
    target = download_file(source.as_uri(), tmp_path / "out" / "file.bin", md5=good, progress=False)
    assert target.read_bytes() == b"hello data"
    assert md5_of(target) == good
    with pytest.raises(UsageError, match="checksum"):
        download_file(source.as_uri(), tmp_path / "out2" / "file.bin", md5="0" * 32, progress=False)
    assert not (tmp_path / "out2" / "file.bin").exists()
    assert not (tmp_path / "out2" / "file.bin.part").exists()


def test_download_failure_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="could not download"):
        download_file((tmp_path / "absent").as_uri(), tmp_path / "x", progress=False)


def test_extract_refuses_paths_outside(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"x"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(UsageError, match="unsafe"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


def test_load_dataset_downloads_and_extracts(tmp_path, monkeypatch):
    # Build a real stl10_binary.tar.gz, serve it by file:// URL, and let --download fetch it.
    staging = tmp_path / "staging"
    images, labels = write_stl10(staging / "stl10_binary")
    archive = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "stl10_binary", arcname="stl10_binary")
    remote = RemoteFile(archive.as_uri(), "stl10_binary.tar.gz", md5_of(archive), extract=True)
    info = dataclasses.replace(datasets._INFOS["stl10"], downloads=(remote,))
    monkeypatch.setitem(datasets._INFOS, "stl10", info)
    target = tmp_path / "data"
    with pytest.raises(DataMissingError):
        load_dataset("stl10", target)  # no --download: nothing fetched
    dataset = load_dataset("stl10", target, download=True, progress=False)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert (target / "stl10_binary.tar.gz").exists()


# -- real data (skipped when absent) ------------------------------------------------------------------


def test_real_mnist(mnist_dir):
    dataset = load_dataset("mnist", mnist_dir, progress=False)
    assert dataset.images.shape == (70_000, 28, 28, 1)
    assert dataset.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert np.bincount(dataset.labels)[1] == 6742 + 1135  # ones in train + test


def test_real_fashion_mnist(fashion_mnist_dir):
    dataset = load_dataset("fashion-mnist", progress=False)  # found at the Debian location by default
    assert dataset.images.shape == (70_000, 28, 28, 1)
    assert np.bincount(dataset.labels).tolist() == [7000] * 10


def test_real_photos_sample(photos_sample):
    dataset = load_dataset(f"folder:{photos_sample}", progress=False)
    assert len(dataset) == 200
    assert list(dataset.class_names) == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    assert np.bincount(dataset.labels).tolist() == [40] * 5
