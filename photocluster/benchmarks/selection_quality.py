"""How right DAC's selected pairs are, scored against a benchmark's labels.

DAC rests on one premise (paper, Sec. 3): the pairs a network labels with high confidence — "similar" when
``l_i · l_j >= u(λ)``, "dissimilar" when below ``l(λ)`` — are mostly right, even for a randomly initialised
network, so training on them improves the network and the next selection. Whether that holds on a data set
is measurable wherever labels exist: a "similar" pair is right when both images share a class, a
"dissimilar" pair when they do not. The benchmark runner attaches a :class:`SelectionQuality` to DAC and
DAC* (through ``DAC.pair_observer``) and stores its per-pass table in each run's record; training itself never
sees the labels.

Per pass the table gives the number of pairs labelled similar and dissimilar, the fraction of each that is
right (*precision*), the fraction of same-class pairs among all pairs (what a random guess of "similar" would
score), and the accuracy of the argmax labels of the selection-time features (each selection batch with the
network of that moment).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from photocluster.metrics import clustering_accuracy

__all__ = ["SelectionQuality", "format_selection_tables", "pair_counts"]


def pair_counts(labels: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, int]:
    """Counts of selected pairs and of right ones among ``n`` images with true ``labels``.

    ``targets`` (r) and ``mask`` (v) are the (n, n) outputs of ``select_pairs``; ordered pairs are counted,
    as the loss counts them, and the diagonal only where the mask selects it.
    """
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    similar = mask & (targets > 0)
    dissimilar = mask & (targets == 0)
    return {
        "similar": int(similar.sum()),
        "similar_right": int((similar & same).sum()),
        "dissimilar": int(dissimilar.sum()),
        "dissimilar_right": int((dissimilar & ~same).sum()),
        "pairs": int(off_diagonal.sum()),
        "same_class_pairs": int((same & off_diagonal).sum()),
    }


class SelectionQuality:
    """Accumulates :func:`pair_counts` and selection-time argmax labels per pass (a ``pair_observer``)."""

    def __init__(self, labels: np.ndarray) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)
        self._passes: dict[int, dict[str, Any]] = {}

    def __call__(self, selection) -> None:  # selection: photocluster.methods.dac.PairSelection
        indices = np.asarray(selection.indices, dtype=np.int64)
        labels = torch.from_numpy(self._labels[indices]).to(selection.targets.device)
        entry = self._passes.setdefault(
            int(selection.pass_index),
            {"upper": float(selection.upper), "lower": float(selection.lower), "counts": {}, "indices": [], "argmax": []},
        )
        for key, value in pair_counts(labels, selection.targets, selection.mask).items():
            entry["counts"][key] = entry["counts"].get(key, 0) + value
        entry["indices"].append(indices)
        entry["argmax"].append(selection.features.argmax(dim=1).cpu().numpy())

    def per_pass(self) -> list[dict[str, float]]:
        """One row per observed pass, in pass order (JSON-ready)."""
        rows = []
        for pass_index in sorted(self._passes):
            entry = self._passes[pass_index]
            counts = entry["counts"]
            indices = np.concatenate(entry["indices"])
            predicted = np.concatenate(entry["argmax"])
            rows.append(
                {
                    "pass": pass_index + 1,
                    "upper": entry["upper"],
                    "lower": entry["lower"],
                    "similar_pairs": counts["similar"],
                    "similar_precision": _ratio(counts["similar_right"], counts["similar"]),
                    "dissimilar_pairs": counts["dissimilar"],
                    "dissimilar_precision": _ratio(counts["dissimilar_right"], counts["dissimilar"]),
                    "same_class_fraction": _ratio(counts["same_class_pairs"], counts["pairs"]),
                    "selection_acc": float(clustering_accuracy(self._labels[indices], predicted)),
                }
            )
        return rows


def format_selection_tables(result: dict[str, Any]) -> str:
    """The per-pass tables of one benchmark record (``run_benchmark``'s dict), one per seed; "" when its runs
    carry none."""
    blocks = []
    for run in result.get("runs", []):
        rows = run.get("selection")
        if not rows:
            continue
        chance = rows[0]["same_class_fraction"]
        lines = [
            f"{result['method']} seed {run['seed']}: the pairs it selected, scored against the labels "
            f"(a random pair is same-class with probability {_cell(chance)})",
            f"{'pass':>4}  {'u':>5}  {'l':>5}  {'similar':>11}  {'right':>5}  {'dissimilar':>11}  {'right':>5}  "
            f"{'selection ACC':>13}",
        ]
        for row in rows:
            lines.append(
                f"{row['pass']:>4}  {row['upper']:5.3f}  {row['lower']:5.3f}  {row['similar_pairs']:>11,}  "
                f"{_cell(row['similar_precision']):>5}  {row['dissimilar_pairs']:>11,}  "
                f"{_cell(row['dissimilar_precision']):>5}  {_cell(row['selection_acc']):>13}"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ratio(numerator: int, denominator: int) -> float | None:
    # None, not 0 or NaN, when nothing was selected: "no pairs" is not "all pairs wrong", and JSON has no NaN
    return numerator / denominator if denominator else None
