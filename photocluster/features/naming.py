"""Suggested cluster names: what the photos show (an ImageNet class, in plain words) and when they were taken.

"daisy · May 2021" says more than "Cluster 3". The pre-trained network that gave the embeddings also says
which of ImageNet's 1,000 classes each photo looks most like; a cluster is named after the class most of its
photos share (when at least :data:`MIN_CLASS_SHARE` of them do — else after no class), and after the month,
year or years its photos were taken (EXIF ``DateTimeOriginal``, read from at most :data:`DATE_SAMPLE` photos a
cluster, and only when most of those have a date). A name the person gives always wins: the catalog replaces only names it suggested itself.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

#: A class names a cluster only when at least this share of its photos has it as their top class.
MIN_CLASS_SHARE = 0.3
#: Photos a cluster whose EXIF dates are read (the surest first): enough for a month, cheap for any library.
DATE_SAMPLE = 40
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132


def imagenet_class_names() -> list[str]:
    """ImageNet-1k's class names in the usual order (torchvision ships them with its weights' metadata)."""
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def plain_words(class_name: str) -> str:
    """ImageNet's "daisy", "Granny Smith", "bell pepper" → as written; "tabby, tabby cat" style → first name."""
    return class_name.split(",")[0].strip()


@torch.no_grad()
def top_classes(raw_embeddings: np.ndarray, backbone: str, weights: str | Path | None) -> np.ndarray | None:
    """Index of the most likely ImageNet class of each image, from its un-normalised embedding (N, D) through
    the network's own classification head; None for random weights (their classes mean nothing)."""
    from photocluster.features.pretrained import BACKBONES, build_backbone

    if weights is None or str(weights).lower() == "none":
        return None
    model = build_backbone(backbone, weights, progress=False)
    head = BACKBONES[backbone].head(model).eval()
    out = np.empty(len(raw_embeddings), dtype=np.int64)
    for start in range(0, len(raw_embeddings), 4096):
        logits = head(torch.from_numpy(np.ascontiguousarray(raw_embeddings[start:start + 4096], dtype=np.float32)))
        out[start:start + len(logits)] = logits.argmax(dim=1).numpy()
    return out


def photo_date(path: str | Path) -> datetime | None:
    """When a photo was taken (EXIF DateTimeOriginal, else DateTime), or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            exif = image.getexif()
            raw = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    except Exception:  # noqa: BLE001 — a file without readable EXIF just has no date
        return None
    if not isinstance(raw, str):
        return None
    match = re.match(r"(\d{4}):(\d{2}):(\d{2})", raw.strip())
    if not match:
        return None
    try:
        return datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def describe_dates(dates: Sequence[datetime]) -> str:
    """"May 2021" when most photos share a month, "2021" a year, "2019–2021" a span; "" with no dates."""
    if not dates:
        return ""
    months = Counter((d.year, d.month) for d in dates)
    (year, month), count = months.most_common(1)[0]
    if count >= 0.5 * len(dates):
        return datetime(year, month, 1).strftime("%B %Y")
    years = Counter(d.year for d in dates)
    year, count = years.most_common(1)[0]
    if count >= 0.5 * len(dates):
        return str(year)
    return f"{min(years)}–{max(years)}"


def suggest_names(labels: np.ndarray, classes: np.ndarray | None, paths: Sequence[str],
                  order: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                  date_of: Callable[[str], datetime | None] = photo_date) -> dict[int, str]:
    """A suggested name for each cluster label ("daisy · May 2021", "daisy", "May 2021"), or none for a label
    with neither a shared class nor dates. ``order``: rows surest first (dates are read from those);
    ``date_of``: how a photo's date is read (the pipeline lifts Pillow's pixel limit for photos the scan
    already accepted)."""
    names = class_names if class_names is not None else (imagenet_class_names() if classes is not None else [])
    rows_in_order = np.arange(len(labels)) if order is None else np.asarray(order)
    suggestions: dict[int, str] = {}
    for label in np.unique(labels):
        members = rows_in_order[labels[rows_in_order] == label]
        parts = []
        if classes is not None:
            top, count = Counter(classes[members].tolist()).most_common(1)[0]
            if count >= MIN_CLASS_SHARE * len(members):
                parts.append(plain_words(names[top]))
        sample = members[:DATE_SAMPLE]
        dates = [d for d in (date_of(paths[i]) for i in sample) if d is not None]
        # a date names the cluster only when most of the photos read have one (three dated scans in a
        # cluster of undated photos say nothing about the cluster)
        when = describe_dates(dates) if len(dates) >= 0.5 * len(sample) else ""
        if when:
            parts.append(when)
        if parts:
            suggestions[int(label)] = " · ".join(parts)
    return suggestions
