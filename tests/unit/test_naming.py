"""Suggested cluster names: the class most photos show and when they were taken; the catalog gives them to
new clusters, lets them follow later runs, and never replaces a name the person chose."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from photocluster.features import naming, pretrained
from photocluster.library.catalog import Catalog, PhotoRecord


@pytest.mark.parametrize("dates, expected", [
    ([datetime(2021, 5, 3), datetime(2021, 5, 20), datetime(2020, 1, 1)], "May 2021"),
    ([datetime(2021, 5, 3), datetime(2021, 7, 20), datetime(2021, 9, 1), datetime(2019, 1, 1)], "2021"),
    ([datetime(2019, 5, 3), datetime(2020, 7, 20), datetime(2021, 9, 1)], "2019–2021"),
    ([], ""),
])
def test_dates_are_described_by_month_year_or_span(dates, expected):
    assert naming.describe_dates(dates) == expected


def _dated_jpeg(path: Path, when: str | None) -> str:
    image = Image.new("RGB", (8, 8), (200, 10, 10))
    exif = Image.Exif()
    if when:
        exif[0x0132] = when
    image.save(path, exif=exif.tobytes())
    return str(path)


def test_suggested_names_use_the_shared_class_and_the_month(tmp_path):
    paths = [_dated_jpeg(tmp_path / f"{i}.jpg", "2021:05:0%d 10:00:00" % (i % 9 + 1) if i < 4 else None)
             for i in range(8)]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    classes = np.array([985, 985, 985, 1, 7, 8, 9, 10])  # cluster 1: four different classes, none shared
    names = naming.suggest_names(labels, classes, paths, class_names=[f"c{i}, other" for i in range(1000)])
    assert names == {0: "c985 · May 2021"}  # cluster 1 has neither a shared class nor dates: no suggestion


def test_the_real_class_names_are_imagenets():
    names = naming.imagenet_class_names()
    assert len(names) == 1000 and names[985] == "daisy"


@pytest.mark.parametrize("name", list(pretrained.BACKBONES))
def test_the_head_turns_an_embedding_into_the_networks_own_logits(name):
    spec = pretrained.BACKBONES[name]
    model = spec.builder(weights=None).eval()
    lower, upper, _ = spec.split(model)
    x = torch.randn(2, 3, 64 if name != "alexnet" else 224, 64 if name != "alexnet" else 224)
    with torch.no_grad():
        assert torch.allclose(model(x), spec.head(model)(upper(lower(x))), atol=1e-4)


def test_catalog_names_new_clusters_and_keeps_the_persons_names(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ids = catalog.add_photos(PhotoRecord(Path(f"/p/{i}.jpg"), content_hash=f"h{i}", size=1, width=1, height=1)
                             for i in range(6))
    run = catalog.start_run("kmeans", {})
    catalog.record_result(run, ids, [0, 0, 1, 1, 2, 2], suggested_names={0: "daisy", 1: "daisy", 2: ""})
    names = sorted(c.name for c in catalog.clusters())
    assert names == ["Cluster 1", "daisy", "daisy 2"]

    [first] = [c for c in catalog.clusters() if c.name == "daisy"]
    catalog.rename(first.id, "Garden")
    run = catalog.start_run("kmeans", {})
    catalog.record_result(run, ids, [0, 0, 1, 1, 2, 2], suggested_names={0: "tulip", 1: "rose", 2: "bee"})
    after = {c.id: c.name for c in catalog.clusters()}
    assert after[first.id] == "Garden"  # the person's name wins
    assert sorted(after.values()) == ["Garden", "bee", "rose"]  # the app's own names follow the new run

    run = catalog.start_run("kmeans", {})
    catalog.record_result(run, ids, [0, 0, 1, 1, 2, 2])  # no suggestions any more: plain names again
    assert sorted(c.name for c in catalog.clusters()) == ["Cluster 1", "Cluster 2", "Garden"]
    catalog.undo()  # the names come back with the undo
    assert sorted(c.name for c in catalog.clusters()) == ["Garden", "bee", "rose"]
    catalog.close()
