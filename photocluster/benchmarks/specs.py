"""The papers' published numbers, per data set × method, with where each comes from.

The benchmark runner prints the matching row next to what it measured. Numbers are copied from the seed
papers' tables (see ../shared/PAPERS.md); NMI is tagged with its averaging, because the papers differ:
DAC, CCNN and the transfer-learning paper use the geometric mean normalisation, MMDC the arithmetic one.

Sources
-------
* DAC: Chang et al., "Deep Adaptive Image Clustering", ICCV 2017, Table 2 (incl. its k-means, SC, AC and NMF
  baselines: raw pixels for MNIST/CIFAR, HOG + 8×8 colour map for STL-10 and the ImageNet subsets).
* MMDC: Shiran & Weinshall, "Multi-Modal Deep Clustering", ICPR 2020, Table I (mean of five runs; the
  refinement stage only on MNIST). Table V's after-refinement means are in ``note``.
* CCNN: Hsu & Lin, IEEE TMM 2017, Table IV (MNIST, NMI only).
* tlfwr: "Transfer-learning based feature-weak-relevant image clustering", Table 12 (raw MNIST; boot #1 =
  raw pixels + k-means).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PaperResult", "PAPER_RESULTS", "paper_result", "paper_results"]

DAC = "DAC (Chang et al., ICCV 2017)"
MMDC = "MMDC (Shiran & Weinshall, ICPR 2020)"
CCNN = "CCNN (Hsu & Lin, IEEE TMM 2017)"
TLFWR = "Transfer-learning feature-weak-relevant clustering (tlfwr)"


@dataclass(frozen=True)
class PaperResult:
    """One published row: a method's scores on one data set.

    Missing metrics (a paper did not report them) are None. ``nmi_average`` is "geometric" or "arithmetic".
    ``extra`` holds further reported indices (JC, FMI, best run, ...).
    """

    dataset: str
    method: str
    paper: str
    table: str
    nmi: float | None
    ari: float | None
    acc: float | None
    nmi_average: str = "geometric"
    features: str = ""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DAC_DATASETS = ("mnist", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dog")
# DAC Table 2, one tuple per method: (NMI, ARI, ACC) for each data set in _DAC_DATASETS order.
_DAC_TABLE2: dict[str, list[tuple[float, float, float]]] = {
    "kmeans": [(0.4997, 0.3652, 0.5723), (0.0871, 0.0487, 0.2289), (0.0839, 0.0280, 0.1297),
               (0.1245, 0.0608, 0.1920), (0.1186, 0.0571, 0.2409), (0.0548, 0.0204, 0.1054)],
    "spectral": [(0.6626, 0.5214, 0.6958), (0.1028, 0.0853, 0.2467), (0.0901, 0.0218, 0.1360),
                 (0.0978, 0.0479, 0.1588), (0.1511, 0.0757, 0.2740), (0.0383, 0.0133, 0.1111)],
    "agglomerative": [(0.6094, 0.4807, 0.6953), (0.1046, 0.0646, 0.2275), (0.0979, 0.0344, 0.1378),
                      (0.2386, 0.1402, 0.3322), (0.1383, 0.0674, 0.2420), (0.0368, 0.0207, 0.1385)],
    "nmf": [(0.6082, 0.4298, 0.5447), (0.0814, 0.0338, 0.1895), (0.0791, 0.0263, 0.1175),
            (0.0962, 0.0458, 0.1804), (0.1316, 0.0652, 0.2302), (0.0442, 0.0155, 0.1184)],
    "dac-star": [(0.9246, 0.9406, 0.9660), (0.3793, 0.2802, 0.4982), (0.1623, 0.0776, 0.2189),
                 (0.3474, 0.2351, 0.4337), (0.3693, 0.2837, 0.5026), (0.1815, 0.0953, 0.2455)],
    "dac": [(0.9351, 0.9486, 0.9775), (0.3959, 0.3059, 0.5218), (0.1852, 0.0876, 0.2375),
            (0.3656, 0.2565, 0.4699), (0.3944, 0.3019, 0.5272), (0.2185, 0.1105, 0.2748)],
}
_DAC_NAMES = {"kmeans": "K-means", "spectral": "SC", "agglomerative": "AC", "nmf": "NMF", "dac-star": "DAC*",
              "dac": "DAC"}


def _dac_rows() -> list[PaperResult]:
    rows = []
    for method, scores in _DAC_TABLE2.items():
        for dataset, (nmi, ari, acc) in zip(_DAC_DATASETS, scores):
            classic = method in ("kmeans", "spectral", "agglomerative", "nmf")
            features = ""
            if classic:
                features = "hog-color" if dataset in ("stl10", "imagenet10", "imagenet-dog") else "raw"
            rows.append(PaperResult(dataset, method, DAC, f"Table 2 ({_DAC_NAMES[method]})", nmi, ari, acc,
                                    "geometric", features))
    return rows


# MMDC Table I: (dataset, NMI, ACC, NMI std-err, ACC std-err, best NMI, best ACC); Table V after refinement.
_MMDC_TABLE1 = [
    ("mnist", 0.971, 0.990, 0.000, 0.000, 0.973, 0.991, "refinement stage used (Table I note)"),
    ("cifar10", 0.703, 0.820, 0.011, 0.019, 0.720, 0.843, "after refinement (Table V): NMI 0.715, ACC 0.829"),
    ("cifar100-20", 0.418, 0.446, 0.003, 0.006, 0.423, 0.464, "after refinement (Table V): NMI 0.422, ACC 0.446"),
    ("stl10", 0.593, 0.694, 0.005, 0.013, 0.609, 0.741, "after refinement (Table V): NMI 0.596, ACC 0.696"),
    ("imagenet10", 0.719, 0.811, 0.008, 0.012, 0.732, 0.830, "after refinement (Table V): NMI 0.725, ACC 0.815"),
    ("tiny-imagenet", 0.274, 0.119, 0.001, 0.001, 0.277, 0.121, "after refinement (Table V): NMI 0.254, ACC 0.095"),
]


def _mmdc_rows() -> list[PaperResult]:
    return [
        PaperResult(dataset, "mmdc", MMDC, "Table I", nmi, None, acc, "arithmetic", "", "mean of 5 runs; " + note,
                    {"nmi_ste": nmi_se, "acc_ste": acc_se, "nmi_best": nmi_best, "acc_best": acc_best})
        for dataset, nmi, acc, nmi_se, acc_se, nmi_best, acc_best, note in _MMDC_TABLE1
    ]


PAPER_RESULTS: tuple[PaperResult, ...] = (
    *_dac_rows(),
    *_mmdc_rows(),
    PaperResult("mnist", "ccnn", CCNN, "Table IV", 0.876, None, None, "geometric", "",
                "MNIST train set (60,000 images); on the 10,000 test images NMI 0.916; k-means: 0.500 / 0.528"),
    PaperResult("mnist", "tlfwr", TLFWR, "Table 12 (#1+Our Method)", 0.62, 0.50, 0.65, "geometric", "raw",
                "boot #1 = raw pixels + k-means (ACC 0.55 → 0.65)", {"jc": 0.39, "fmi": 0.56, "dbi_normalised": 0.75,
                                                                  "boot_acc": 0.55, "boot_nmi": 0.52, "boot_ari": 0.39}),
)


def paper_results(dataset: str | None = None, method: str | None = None) -> list[PaperResult]:
    """All published rows, optionally only those of one data set and/or method."""
    return [r for r in PAPER_RESULTS if (dataset is None or r.dataset == dataset) and (method is None or r.method == method)]


def paper_result(dataset: str, method: str) -> PaperResult | None:
    """The published row to compare a benchmark of ``method`` on ``dataset`` with, or None."""
    rows = paper_results(dataset, method)
    return rows[0] if rows else None
