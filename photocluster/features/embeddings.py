"""Pre-trained embeddings of images, computed once and cached on disk.

An embedding is what an ImageNet-trained network's upper layers give for an image (the global-average-pooled
last feature map; AlexNet's fc7), L2-normalised — the features photo organisers cluster on, and the starting
point of CCNN and the transfer-learning method. On real photos they roughly double the accuracy of
handcrafted features (see docs/methods/classic.md).

Cache
-----
One ``.npy`` file (float32, the embedding before normalisation) per image under
``cache_dir()/embeddings/{backbone}-{weights}-{size}/{key[:2]}/{key}.npy``, where ``weights`` is the first 16
hex digits of the weights file's sha256 and ``key`` a hash of the image's decoded pixels. So re-clustering
with another k, method or seed computes nothing again; a changed photo decodes to other pixels (a new key)
and other weights go to another folder — each invalidates only its own entries. Random-initialisation
features (``weights="none"``) are never cached: they mean nothing beyond one run. Entries are written to a
temporary name and renamed, so a killed run never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from photocluster.data.dataset import release_read_pages
from photocluster.progress import NEVER_CANCELLED, CancelToken, EtaEstimator, ProgressEvent

#: The last embeddings computed, with the array object and cache key they belong to (see embedding_steps).
_recent: dict = {}

#: Images per forward pass: small enough for a laptop's memory at 224 px, large enough to keep a GPU busy.
DEFAULT_BATCH_SIZE = 32


@dataclass
class EmbeddingResult:
    """L2-normalised embeddings (N, D) float32, how many came from the cache, and the seconds computing.

    ``norms`` (N,) are the embeddings' lengths before normalisation: ``embeddings * norms[:, None]`` is what
    the network's classification head takes (suggested cluster names).
    """

    embeddings: np.ndarray
    n_cached: int
    seconds: float
    backbone: str
    norms: np.ndarray | None = None


def image_key(image: np.ndarray) -> str:
    """A hash of one decoded image's pixels and shape (the cache key)."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(array.tobytes(), digest_size=20)
    digest.update(repr((array.shape, str(array.dtype))).encode())
    return digest.hexdigest()


def cache_folder(backbone: str, fingerprint: str, input_size: int, cache_root: Path | None = None) -> Path:
    from photocluster.config import cache_dir

    root = Path(cache_root) if cache_root is not None else cache_dir()
    return root / "embeddings" / f"{backbone}-{fingerprint}-{input_size}"


class _Embedder(nn.Module):
    """The backbone's lower and upper layers, ending in the embedding, with its own preprocessing."""

    def __init__(self, backbone: str, weights: str | Path | None, input_size: int) -> None:
        super().__init__()
        from photocluster.features.pretrained import BACKBONES, build_backbone, preprocess_for

        model = build_backbone(backbone, weights, progress=True)
        lower, upper, _dim = BACKBONES[backbone].split(model)
        self.net = nn.Sequential(lower, upper).eval()
        self.preprocess = preprocess_for(backbone)
        self.input_size = input_size

    @torch.no_grad()
    def forward(self, images: np.ndarray, device: torch.device) -> np.ndarray:
        from photocluster.features.pretrained import images_to_tensor

        batch = images_to_tensor(images, self.preprocess, size=self.input_size, device=device)
        return self.net(batch).float().cpu().numpy()


def embedding_steps(images: np.ndarray, backbone: str, weights: str | Path | None = "default", *,
                    input_size: int | None = None, device: str | torch.device = "auto",
                    batch_size: int = DEFAULT_BATCH_SIZE, cache_root: Path | None = None,
                    cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Embeddings of uint8 images (N, H, W, C) — a memmap is read in batches; returns an :class:`EmbeddingResult`.

    Parameters
    ----------
    backbone, weights:
        A name of :data:`photocluster.features.pretrained.BACKBONES` and its weights ("default": torchvision's,
        downloaded once; a state-dict path; "none": random initialisation, not cached).
    input_size:
        Side the images are resized to (default: the backbone's own, 224).
    device:
        "auto" (CUDA, then MPS, then CPU) or a torch device.

    Yields ``"features"`` events (cancel checked every batch) and a closing message.
    """
    from photocluster.devices import resolve_device
    from photocluster.features.pretrained import BACKBONES, preprocess_for, weights_fingerprint

    name = str(backbone).lower()
    if name not in BACKBONES:
        from photocluster.errors import UsageError

        raise UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    size = int(input_size or preprocess_for(name).input_size)
    n = len(images)
    started = time.perf_counter()
    fingerprint = weights_fingerprint(name, weights)
    folder = cache_folder(name, fingerprint, size, cache_root) if fingerprint else None
    # One clustering asks for the same array's embeddings up to three times (choosing k, the method, the
    # names): the last result is kept for that very array object, so the later asks hash and read nothing.
    recent_key = (name, fingerprint, size, str(folder), n)
    if fingerprint is not None and _recent.get("images") is images and _recent.get("key") == recent_key:
        result = _recent["result"]
        yield ProgressEvent("features", n, n, message=f"features: {name} embeddings of {n} images (already "
                                                       "computed for this run)")
        return result

    out = np.empty((n, BACKBONES[name].feature_dim), dtype=np.float32)
    keys: list[str | None] = [None] * n
    missing: list[int] = []
    yield ProgressEvent("features", 0, n, message=f"{name} embeddings: looking in the cache")
    for i in range(n):
        if i % 1024 == 1023:
            cancel.raise_if_cancelled()
            # Hashing reads every photo of the library: 3 GB of pages for 20,000 photos at 224 px would stay
            # resident until the mapping closes (measured: this pass was the folder run's memory peak).
            release_read_pages(images)
        if folder is not None:
            keys[i] = image_key(images[i])
            cached = _read_entry(folder, keys[i], out.shape[1])
            if cached is not None:
                out[i] = cached
                continue
        missing.append(i)
    release_read_pages(images)
    n_cached = n - len(missing)

    if missing:
        embedder = _Embedder(name, weights, size)
        # DEFAULT weights were downloaded just now, so their fingerprint exists only from here on.
        if folder is None and str(weights).lower() == "default":
            fingerprint = weights_fingerprint(name, weights)
            folder = cache_folder(name, fingerprint, size, cache_root) if fingerprint else None
            if folder is not None:
                keys = [image_key(images[i]) if k is None else k for i, k in enumerate(keys)]
        torch_device = resolve_device(device)
        embedder.to(torch_device)
        # Minutes for a large folder on a CPU: the bar says how long is left (from the batches so far).
        eta = EtaEstimator(len(missing))
        for start in range(0, len(missing), batch_size):
            cancel.raise_if_cancelled()
            rows = missing[start:start + batch_size]
            vectors = embedder(np.asarray(images[np.asarray(rows)]), torch_device)
            for row, vector in zip(rows, vectors):
                out[row] = vector
                if folder is not None:
                    _write_entry(folder, keys[row], vector)
            if (start // batch_size) % 32 == 31:
                release_read_pages(images)  # a pass over a large library must not keep every page it read
            yield ProgressEvent("features", n_cached + start + len(rows), n,
                                eta_seconds=eta.eta(start + len(rows)))
        release_read_pages(images)
    seconds = time.perf_counter() - started
    norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out /= norms
    yield ProgressEvent("features", n, n, message=f"features: {name} embeddings of {n} images "
                                                   f"({n_cached} from the cache) in {seconds:.1f} s")
    result = EmbeddingResult(out, n_cached, seconds, name, norms[:, 0])
    if fingerprint is not None:
        _recent.update(images=images, key=recent_key, result=result)
    return result


def _entry_path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.npy"


def _read_entry(folder: Path, key: str, dim: int) -> np.ndarray | None:
    path = _entry_path(folder, key)
    try:
        vector = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if vector.shape != (dim,) or vector.dtype != np.float32:
        return None  # written by another layout: recompute
    return vector


def _write_entry(folder: Path, key: str, vector: np.ndarray) -> None:
    path = _entry_path(folder, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.asarray(vector, dtype=np.float32), allow_pickle=False)
        os.replace(temporary, path)
    except OSError:
        pass  # a full or read-only cache costs time on the next run, never this run's result
