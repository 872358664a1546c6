"""CCNN: joint clustering and representation learning with feature drift compensation (seed 004).

Hsu & Lin, "CNN-Based Joint Clustering and Representation Learning with Feature Drift Compensation for
Large-Scale Image Data", IEEE TMM 2017. No public code exists; this follows the paper's Sec. III and Table I.

The algorithm, per epoch, over mini-batches of ``n_m`` images drawn without replacement:

1. features h = f(W_t | I) of the mini-batch (FC9 output, k values per image); each image goes to its nearest
   centroid;
2. the ``k_m`` images closest to their centroid join a pseudo-labelled buffer; when the buffer holds ``n_m``
   images, the network is fine-tuned on it (SGD on the sum of squared errors between its softmax output and
   the one-hot pseudo label, eq. 1) and the applied weight change ΔW_{t−1} is remembered;
3. each assigned centroid moves towards the features of its new members with the per-centroid rate
   γ = 1/count(c) (eq. 11–12): c ← (1 − γ) c + γ h. When the weights changed in this step, the features of
   the update are recomputed with the back-tracked weights W_t + η ΔW_{t−1} (eq. 13–14, *feature drift
   compensation*); without compensation (Baseline-I) they are recomputed with W_t.

Centroids start from k-means++ seeding on the features of ``seed_pool`` random images. Only a mini-batch and
the buffer are in memory at any time; the final labelling is a streamed pass, so memory stays flat as the
library grows (``images`` may be a numpy.memmap). The fitted ``embeddings_`` are the FC9 features (N × k).

Ablations, as options of the one registered method ``ccnn``:

* ``drift_compensation=False`` — Baseline-I;
* ``variant="baseline2"`` — mini-batch k-means on the initial (pre-trained) network's features, no learning;
* ``variant="baseline3"`` — full k-means (scikit-learn, k-means++, 10 restarts) on the initial network's
  features of all images: holds N × k features at once, as in the paper it does not scale.

Corrections as constraints (issue 18, ``fit_steps(..., constraints=...)``). CCNN's objective is k-means on the
learned features h = f(W | I) — each image belongs to its nearest centroid — with the network fine-tuned to
reproduce the assignments of the samples it is surest of (eq. 1 on the pseudo-labelled buffer). A person's
corrections are assignments surer than any, so they enter at exactly those three places:

* **seeding**: every constrained group (locked clusters first, then the larger groups, at most k) starts as a
  centroid of its own, the mean h of its photos (at most ``GROUP_SAMPLE`` of them), counted as that many photos
  so γ = 1/count moves it as their running mean; k-means++ seeds the other centroids away from these (D²
  from the group centroids). Each group is then *held* to a cluster: its own centroid, or — more groups than k,
  or a resume without one — the nearest cluster no group it is apart from holds, locked clusters on distinct
  ones (:meth:`Constraints.group_labels`);
* **assignment**: in every mini-batch a constrained photo takes its group's cluster instead of the nearest
  centroid, so it pulls that centroid in the γ = 1/count update (drift-compensated or not) and the free photos
  around it follow the centroid;
* **pseudo-labels**: every constrained photo of a mini-batch joins the fine-tuning buffer with its group's
  label, besides the k_m closest free ones: the network learns the person's labels, so look-alikes of a moved
  photo move with it in feature space.

The final pass labels the constrained photos with their group's cluster and the rest by the nearest centroid.
Baseline-II does the same without fine-tuning; Baseline-III runs constrained k-means (see ``_full_kmeans``).
Without constraints (None or empty) nothing changes — same seeds, batches, labels (checked against the code
before them on digits, seeds 0 and 1, every variant). Measured with ``scripts/bench_corrections.py --benchmark
digits --method ccnn --seeds 3`` (quick protocol; 2-core CPU; the 1 % / 5 % least-confident misplaced photos
moved): ACC of the re-run with the corrections minus the unconstrained re-run with the moved photos pinned,
seeds 0 / 1 / 2, 1 %: +0.023 / +0.019 / +0.049, 5 %: +0.066 / +0.012 / +0.063 (Baseline-I: +0.012 / +0.022 /
+0.003, +0.040 / +0.020 / +0.053; Baseline-II: +0.027 / +0.004 / −0.048, +0.053 / +0.012 / +0.065;
Baseline-III: +0.001 / 0 / +0.023, 0 / +0.008 / +0.025). See docs/methods/ccnn.md.

Trunks (issue 16): ``backbone`` is any network of :data:`photocluster.features.pretrained.BACKBONES` (its
``trunk``: AlexNet conv1–conv5 — the paper's —, mobilenet_v2's ``features``, ResNet up to layer4, …) with
``weights`` = ``default`` / a state-dict file / ``none``; ``network="digits"`` keeps the simplified CCNN. When the
trunk is frozen (``train_layers`` adaptation or head, and the baselines) its maps are computed once per image and
kept in memory as float16 (``cache_trunk``; at most 2 GiB), so the epochs only run the adaptation layers.

The ``quick`` protocol on photos (chosen for a 2-core CPU): mobilenet_v2 — the registry's CPU recommendation —
at its own 224 px, frozen and kept (``train_layers="adaptation"``), adaptation convs 512 and 256 wide (the
paper's 6144/2048 on a 7×7×1280 map cost ~4 GMAC per image and step), 10 epochs (the paper's count with
pre-training). On the 200-photo sample one run takes ~35–60 s on one CPU thread: ~12 s for the one pass
through the trunk, the rest for the adaptation layers (~0.35 GMAC per image). On digit-sized images it stays
the simplified CCNN for 3 epochs.

Measured from ImageNet initialisation (issue 16; 2026-12-04, a 2-core x86_64 CPU shared with other jobs, one
torch thread; the shared ``mobilenet_v2-imagenet-keras.pth``; seeds 0–2; JSON in docs/results/):

* 200 photos, quick protocol (``photocluster --headless --benchmark folder:../shared/data/photos-sample --method
  ccnn -p backbone=mobilenet_v2 --weights … --seeds 3 [-p drift_compensation=false | -p variant=baseline2 |
  -p variant=baseline3]``), ACC / NMI: ``ccnn`` 0.268 ± 0.045 / 0.057 (32–60 s a run), Baseline-I 0.273 ±
  0.038 / 0.059, Baseline-II 0.312 ± 0.013 / 0.066, Baseline-III 0.315 ± 0.007 / 0.070 — against 0.532 for
  k-means on the same network's pooled embeddings. Seed 0 of ``ccnn`` and Baseline-I ends in 2 and 3 clusters.
* MNIST, all 70,000 images, 64 px input (at 32 px mobilenet_v2's last map is 1×1 and was all zero for 2,979 of
  3,000 digits in a check),
  adaptation convs 256 and 128, trunk frozen, 3 epochs (``scripts/bench_ccnn_mnist.py --benchmark mnist --data
  ../shared/data/mnist --seeds 0 1 2 --variants baseline2 baseline3 ccnn baseline1 --param network=ccnn --param
  backbone=mobilenet_v2 --param input_size=64 --param weights=… --param train_layers=adaptation --param
  adapt_channels=256,128``; one trunk pass of ~5 min for all 12 runs), NMI: ``ccnn`` 0.029 ± 0.024 (157–179 s a
  run), Baseline-I 0.033 ± 0.047 (153–167 s), Baseline-II 0.181 ± 0.003 (~83 s), Baseline-III 0.196 ± 0.004
  (~17 s). The paper's 0.876 and the issue's 0.80 are missed; ``ccnn`` is below Baseline-II.

What limits it, from the runs' own numbers. (1) The clustered feature h is k-dimensional (the k-channel conv8,
global max-pool, FC9) and its layers start random: Baseline-III, full k-means on h before any learning, is at
ACC 0.315 on the photos where k-means on the pooled embedding of the very same trunk reaches 0.532 — the
bottleneck throws most of the ImageNet features away before the algorithm starts (on MNIST: NMI 0.196). (2)
Learning then collapses the clusters: every MNIST run ends with 77–100 % of the images in one cluster, the
SSE loss falls to ~0 within an epoch (the network learns to give every pseudo-labelled sample the same label)
while the centroids, moving with γ = 1/count, lag behind. (3) Compensation changes nothing measurable
(``ccnn`` vs Baseline-I: 0.029 vs 0.033 NMI on MNIST, 0.268 vs 0.273 ACC on the photos): with the paper's
η the back-tracked weights W_t + η ΔW_{t−1} are the weights before the step, so compensation only swaps
post-step for pre-step features in the one centroid update in N_m/k_m = 5 that follows a fine-tuning step;
on 200 photos that is 10 updates in all.

Reading choices (the paper leaves them open; documented so they can be changed):

* ``eta`` scales the remembered step: the compensated weights are W_t + eta · (W_{t−1} − W_t). The paper's η
  is the SGD learning rate and η ΔW_{t−1} the applied step, so ``eta=1`` is the paper exactly.
* Table I nests the centroid update inside the fine-tuning branch (centroids move only on the mini-batches
  that complete a buffer), while Sec. III.C updates them for every mini-batch. ``centroid_update`` offers
  both: "every_batch" (default; mini-batches without a weight change use their own features, which are then
  drift-free) or "after_finetune" (Table I literally).
* Each centroid's count starts at 1 because the seed is the feature of one real image.
* Two options that are not in the paper, off by default: ``selection="balanced"`` (pseudo-labelled samples
  taken round-robin over clusters instead of the globally closest) and ``normalize_features`` (cluster the
  L2-normalised h, which removes the feature-scale part of the drift).
* The paper gives no learning rate; 0.001 is the default because 0.01 collapsed MNIST into one cluster in
  our runs (the features drift away from the centroids, which move ever more slowly as γ = 1/count).
* All fine-tuned layers before h are back-tracked (the paper derives the update for FC9 only because it
  fine-tunes FC9 and the softmax layer; ``train_layers="head"`` reproduces that).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from photocluster.checkpoints import load_checkpoint, save_checkpoint
from photocluster.data.dataset import ImageDataset
from photocluster.features.pretrained import BACKBONE_CHOICES
from photocluster.methods.constraints import Constraints
from photocluster.methods.base import ClusteringMethod, ParamSpec, register
from photocluster.progress import NEVER_CANCELLED, CancelToken, Cancelled, EtaEstimator, ProgressEvent, Throttle

VARIANTS = ("ccnn", "baseline2", "baseline3")
NETWORKS = ("auto", "ccnn", "digits")
TRAIN_LAYERS = ("all", "adaptation", "head")
CENTROID_UPDATES = ("every_batch", "after_finetune")
SELECTIONS = ("closest", "balanced")
#: images up to this side use the simplified digit network when network="auto"
DIGIT_SIDE_LIMIT = 64
CHECKPOINT_NAME = "ccnn.pt"
#: most photos of one constrained group whose features give its mean (seeding, group → cluster mapping)
GROUP_SAMPLE = 64
#: most memory the kept maps of a frozen trunk may take (float16; mobilenet_v2 at 224 px: 125 KB an image)
TRUNK_CACHE_BYTES = 2 << 30
#: the quick protocol on photos (besides epochs and seed_pool): see protocol_params and the module docstring.
#: Forward passes of 64 photos, not 256: at 224 px a 256-photo pass through mobilenet_v2 holds about 2 GB of
#: activations (measured, 1,000 photos, 1 epoch: peak 3.68 GiB at 256, 1.80 GiB at 64, and 69 s against
#: 82 s); in eval mode the outputs are bit-identical whatever the batch.
QUICK_PHOTO_PARAMS: dict[str, Any] = {"adapt_channels": "512,256", "input_size": 0, "train_layers": "adaptation",
                                      "epochs": 10, "batch_size": 64}


#: the last frozen trunk's maps, for the next fit on the very same image array (the seeds and variants of a
#: benchmark); one entry, dropped as soon as that array is garbage-collected. Random weights are never kept.
_KEPT_TRUNK: dict[str, Any] = {}


def _keep_for_next_fit(images: np.ndarray, key: tuple, maps: np.ndarray) -> None:
    import weakref

    _KEPT_TRUNK.clear()
    if key[1] is None:  # random initialisation: another fit has other weights
        return
    try:
        reference = weakref.ref(images)
    except TypeError:
        return
    token = object()
    _KEPT_TRUNK.update(key=key, images=reference, maps=maps, token=token)

    def drop() -> None:
        if _KEPT_TRUNK.get("token") is token:  # not a later fit's entry
            _KEPT_TRUNK.clear()

    weakref.finalize(images, drop)


# -- the algorithm's pieces, as functions that tests can check by hand ----------------------------------
def kmeans_plusplus_seeds(features: np.ndarray, n_clusters: int, rng: Any,
                          initial: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n_clusters`` k-means++ seeds (Arthur & Vassilvitskii): D² sampling.

    Parameters
    ----------
    features:
        (M, D) features of randomly picked images.
    n_clusters:
        How many seeds.
    rng:
        Needs ``integers(n)`` (first seed) and ``random()`` (a uniform number in [0, 1) per later seed).
    initial:
        (A, D) centres already chosen (the means of a person's constrained groups): D² sampling continues
        from them, so the ``n_clusters`` new seeds fall away from them, and no first seed is drawn uniformly.

    Returns
    -------
    numpy.ndarray
        int64 indices into ``features``, distinct unless fewer than ``n_clusters`` distinct points exist.
    """
    features = np.asarray(features, dtype=np.float64)
    count = len(features)
    if count < n_clusters:
        raise ValueError(f"k-means++ needs at least {n_clusters} points, got {count}")
    if n_clusters <= 0:
        return np.zeros(0, dtype=np.int64)
    if initial is not None and len(initial):
        seeds: list[int] = []
        nearest_sq = squared_distances(features, np.asarray(initial, dtype=np.float64)).min(axis=1)
        first = 0
    else:
        seeds = [int(rng.integers(count))]
        nearest_sq = ((features - features[seeds[0]]) ** 2).sum(axis=1)
        first = 1
    for _ in range(first, n_clusters):
        total = nearest_sq.sum()
        if total <= 0:  # every point coincides with a seed: take any unused index
            unused = np.setdiff1d(np.arange(count), seeds)
            choice = int(unused[0])
        else:
            cumulative = np.cumsum(nearest_sq)
            choice = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
            choice = min(choice, count - 1)
        seeds.append(choice)
        nearest_sq = np.minimum(nearest_sq, ((features - features[choice]) ** 2).sum(axis=1))
    return np.asarray(seeds, dtype=np.int64)


def squared_distances(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(B, k) squared Euclidean distances, clipped at 0 against rounding."""
    d2 = (features**2).sum(1)[:, None] - 2.0 * features @ centroids.T + (centroids**2).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def constrained_lloyd(
    features: np.ndarray, centroids: np.ndarray, clamp_rows: np.ndarray, clamp_labels: np.ndarray,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means (Lloyd) iterations in which the rows ``clamp_rows`` keep ``clamp_labels``.

    The constrained k-means of Wagstaff et al. (2001) / seeded k-means of Basu et al. (2002) for groups whose
    label is already decided: every free row goes to its nearest centre, every centre is the mean of all its
    rows — the clamped ones included, so a person's corrections pull their centre and the free rows near them
    follow. It minimises the k-means objective over the labellings that keep the clamped labels (each step
    lowers it), so it stops at the first repeated labelling. An empty cluster keeps its centre.

    Returns
    -------
    (labels, centroids)
        int64 (N,) and float64 (k, D).
    """
    features = np.asarray(features, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64).copy()
    clamp_rows = np.asarray(clamp_rows, dtype=np.int64)
    clamp_labels = np.asarray(clamp_labels, dtype=np.int64)
    previous: np.ndarray | None = None
    labels = np.zeros(len(features), dtype=np.int64)
    for _ in range(max(1, int(max_iter))):
        labels = squared_distances(features, centroids).argmin(axis=1).astype(np.int64)
        labels[clamp_rows] = clamp_labels
        if previous is not None and np.array_equal(labels, previous):
            break
        for cluster in range(len(centroids)):
            members = labels == cluster
            if members.any():
                centroids[cluster] = features[members].mean(axis=0)
        previous = labels
    return labels, centroids


def top_closest(distances: np.ndarray, k_m: int) -> np.ndarray:
    """Positions of the ``k_m`` samples nearest to their centroid (stable order on ties)."""
    return np.argsort(distances, kind="stable")[: min(k_m, len(distances))]


def balanced_closest(distances: np.ndarray, assignments: np.ndarray, k_m: int) -> np.ndarray:
    """Positions of ``k_m`` samples taken round-robin over the assigned clusters, closest first in each.

    Not in the paper (an option): the globally closest samples mostly come from the tightest cluster, and
    fine-tuning on them pulls every image towards that cluster. Ranking each sample within its own cluster
    and then taking rank 0 of every cluster, then rank 1, ... keeps the pseudo-labels spread over clusters.
    """
    rank_in_cluster = np.empty(len(distances), dtype=np.int64)
    for cluster in np.unique(assignments):
        members = np.flatnonzero(assignments == cluster)
        rank_in_cluster[members[np.argsort(distances[members], kind="stable")]] = np.arange(len(members))
    order = np.lexsort((distances, rank_in_cluster))  # by rank, then by distance
    return order[: min(k_m, len(distances))]


def update_centroids(centroids: np.ndarray, counts: np.ndarray, features: np.ndarray, assignments: np.ndarray) -> None:
    """Mini-batch k-means update with γ = 1/count(c), in place (eq. 11–12).

    Applying c ← (1 − γ) c + γ h with γ = 1/count after each new member is the running mean of everything
    the centroid has absorbed, so one closed form per centroid gives exactly the sequential result:
    c ← (n c + Σ h) / (n + m) for m new members and count n before.
    """
    for cluster in np.unique(assignments):
        members = features[assignments == cluster]
        before = counts[cluster]
        after = before + len(members)
        centroids[cluster] = (before * centroids[cluster] + members.sum(axis=0)) / after
        counts[cluster] = after


def sse_loss(probabilities: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ½ Σ_j (y_j − t_j)² between softmax output and one-hot pseudo label, averaged over the batch."""
    target = torch.nn.functional.one_hot(pseudo_labels, probabilities.shape[1]).to(probabilities.dtype)
    return 0.5 * ((probabilities - target) ** 2).sum(dim=1).mean()


@torch.no_grad()
def backtracked_features(
    net: nn.Module, inputs: torch.Tensor, delta: dict[str, torch.Tensor], eta: float, features_fn: Any = None,
) -> torch.Tensor:
    """Features under the back-tracked weights W_t + η ΔW_{t−1} (eq. 13), leaving the net unchanged.

    ``delta`` maps parameter names to ΔW_{t−1} = W_{t−1} − W_t (the last applied step, sign included).
    The weights are restored from copies, not by subtracting again, so they come back bit for bit.
    ``features_fn`` (default ``net.features``) maps ``inputs`` to h, e.g. ``net.features_from_map`` when the
    inputs are a frozen trunk's kept maps.
    """
    params = dict(net.named_parameters())
    saved = {name: params[name].detach().clone() for name in delta}
    try:
        for name, step in delta.items():
            params[name].add_(step, alpha=eta)
        return (features_fn or net.features)(inputs)
    finally:
        for name, value in saved.items():
            params[name].copy_(value)


def _set_finetune_mode(net: nn.Module) -> None:
    # Train mode for the layers we learn, but batch-norm statistics (ResNet trunks) stay frozen: mini-batches
    # of 50 pseudo-labelled images would wreck ImageNet statistics, and frozen statistics keep h a function
    # of the weights alone, which drift compensation assumes.
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@register
class CCNN(ClusteringMethod):
    """CCNN (Hsu & Lin 2017): mini-batch k-means jointly with CNN fine-tuning, with feature drift compensation."""

    name = "ccnn"
    description = (
        "Mini-batch k-means on CNN features jointly with fine-tuning on the closest samples, with feature "
        "drift compensation; memory stays flat for very large libraries. variant=baseline2/baseline3 and "
        "drift_compensation=false give the paper's ablations."
    )
    paper = "Hsu & Lin, CNN-Based Joint Clustering and Representation Learning with Feature Drift Compensation, IEEE TMM 2017"
    family = "deep"

    def __init__(
        self,
        n_clusters: int = 10,
        variant: str = "ccnn",
        drift_compensation: bool = True,
        eta: float = 1.0,
        network: str = "auto",
        backbone: str = "alexnet",
        weights: str = "default",
        adapt_channels: str = "",
        input_size: int = 0,
        train_layers: str = "all",
        epochs: int = 10,
        n_m: int = 50,
        k_m: int = 10,
        lr: float = 0.001,
        momentum: float = 0.9,
        finetune_steps: int = 1,
        centroid_update: str = "every_batch",
        selection: str = "closest",
        normalize_features: bool = False,
        seed_pool: int = 2000,
        batch_size: int = 256,
        cache_trunk: bool = True,
        device: str = "auto",
        random_state: int = 0,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 500,
        resume: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.variant = variant
        self.drift_compensation = drift_compensation
        self.eta = eta
        self.network = network
        self.backbone = backbone
        self.weights = weights
        self.adapt_channels = adapt_channels
        self.input_size = input_size
        self.train_layers = train_layers
        self.epochs = epochs
        self.n_m = n_m
        self.k_m = k_m
        self.lr = lr
        self.momentum = momentum
        self.finetune_steps = finetune_steps
        self.centroid_update = centroid_update
        self.normalize_features = normalize_features
        self.selection = selection
        self.seed_pool = seed_pool
        self.batch_size = batch_size
        self.cache_trunk = cache_trunk
        self.device = device
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume

    # -- parameters -----------------------------------------------------------------------------------
    @classmethod
    def parameter_specs(cls) -> list[ParamSpec]:
        return [
            ParamSpec("n_clusters", int, 10, "number of clusters k", minimum=2),
            ParamSpec("variant", str, "ccnn", "ccnn; baseline2 = mini-batch k-means on initial features, no learning; "
                      "baseline3 = full k-means on initial features", choices=VARIANTS),
            ParamSpec("drift_compensation", bool, True, "recompute centroid-update features with W_t + eta·ΔW_{t-1} "
                      "(eq. 14); false = the paper's Baseline-I"),
            ParamSpec("eta", float, 1.0, "multiple of the last weight step used to track the weights back (1 = paper)",
                      minimum=0.0),
            ParamSpec("network", str, "auto", "ccnn (pre-trained trunk, 224 px) or digits (simplified CCNN, native "
                      "size); auto picks digits for images up to 64 px", choices=NETWORKS),
            ParamSpec("backbone", str, "alexnet", "trunk of the ccnn network: an ImageNet backbone (alexnet = paper; "
                      "mobilenet_v2 = the CPU choice)", choices=BACKBONE_CHOICES),
            ParamSpec("weights", str, "default", "trunk weights: default (ImageNet, downloaded once), a file path, or none; "
                      "the digit network has no published weights, only a local file of its trunk"),
            ParamSpec("adapt_channels", str, "", "adaptation conv widths before the k-channel conv, e.g. 6144,2048 "
                      "(empty = paper: 6144,2048 for ccnn, 128 for digits)"),
            ParamSpec("input_size", int, 0, "input side in pixels for the ccnn network (0 = backbone's 224)", minimum=0),
            ParamSpec("train_layers", str, "all", "layers fine-tuned: all, adaptation (trunk frozen) or head (FC9 + softmax)",
                      choices=TRAIN_LAYERS),
            ParamSpec("epochs", int, 10, "passes over the data (paper: 10 pre-trained, ~30 from random init)", minimum=1),
            ParamSpec("n_m", int, 50, "mini-batch size N_m", minimum=2),
            ParamSpec("k_m", int, 10, "closest samples per mini-batch kept as pseudo-labelled data", minimum=1),
            ParamSpec("lr", float, 0.001, "SGD learning rate of fine-tuning (the paper gives none; 0.01 let the "
                      "features drift away from the slow 1/count centroids and collapse the clusters in our runs)",
                      minimum=0.0),
            ParamSpec("momentum", float, 0.9, "SGD momentum", minimum=0.0, maximum=1.0),
            ParamSpec("finetune_steps", int, 1, "SGD steps on each full pseudo-labelled buffer", minimum=1),
            ParamSpec("centroid_update", str, "every_batch", "every_batch (Sec. III.C) or after_finetune (Table I)",
                      choices=CENTROID_UPDATES),
            ParamSpec("selection", str, "closest", "closest: the k_m closest of the mini-batch (paper); balanced: "
                      "closest per cluster, round-robin (not in the paper)", choices=SELECTIONS),
            ParamSpec("normalize_features", bool, False, "L2-normalise the FC9 features (not in the paper: "
                      "removes the feature-scale part of the drift)"),
            ParamSpec("seed_pool", int, 2000, "random images whose features feed k-means++ seeding", minimum=2),
            ParamSpec("batch_size", int, 256, "images per forward pass when seeding and labelling", minimum=1),
            ParamSpec("cache_trunk", bool, True, "when the trunk is frozen (train_layers adaptation or head, or a "
                      "baseline), compute its maps once per image and keep them (float16, at most 2 GiB)"),
            ParamSpec("device", str, "auto", "auto, cpu, cuda or mps"),
            ParamSpec("random_state", int, 0, "seed"),
            ParamSpec("checkpoint_dir", str, None, "folder for checkpoints (written on cancel and every checkpoint_every mini-batches)"),
            ParamSpec("checkpoint_every", int, 500, "mini-batches between checkpoints", minimum=1),
            ParamSpec("resume", bool, False, "continue from the checkpoint in checkpoint_dir"),
        ]

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        super().protocol_params(protocol, dataset)
        digits = max(dataset.image_shape[:2]) <= DIGIT_SIDE_LIMIT
        params: dict[str, Any] = {"network": "digits" if digits else "ccnn"}
        if dataset.n_classes:
            params["n_clusters"] = int(dataset.n_classes)
        if protocol == "paper":
            # Fig. 7: saturates after ~14 epochs pre-trained, ~30 from random init (the digit net has no
            # pre-trained weights).
            params["epochs"] = 30 if digits else 10
        else:
            params.update({"epochs": 3, "seed_pool": 1000})
            if not digits:
                # CPU-feasible: the paper's layout on the CPU-recommended trunk at its own 224 px, frozen and
                # kept in memory, with narrower adaptation convs (see QUICK_PHOTO_PARAMS).
                from photocluster.features.pretrained import recommended_backbone

                params.update(QUICK_PHOTO_PARAMS, backbone=recommended_backbone("cpu"))
        return params

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        return {
            "quick": "digit-sized images: 3 epochs of the simplified CCNN; photos: 10 epochs of a narrow CCNN "
                     "on a frozen, kept mobilenet_v2 trunk at 224 px",
            "paper": "N_m=50, k_m=10; 10 epochs pre-trained (30 for the from-scratch digit net), full CCNN at 224 px",
        }

    @classmethod
    def smoke_params(cls) -> dict[str, Any]:
        return {
            "network": "digits",
            "weights": "none",
            "adapt_channels": "16",
            "epochs": 1,
            "seed_pool": 200,
            "input_size": 64,
        }

    # -- validation and building ------------------------------------------------------------------------
    def _validate(self, dataset: ImageDataset) -> None:
        from photocluster.errors import UsageError

        if self.variant not in VARIANTS:
            raise UsageError(f"ccnn: variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.network not in NETWORKS:
            raise UsageError(f"ccnn: network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.train_layers not in TRAIN_LAYERS:
            raise UsageError(f"ccnn: train_layers must be one of {', '.join(TRAIN_LAYERS)}")
        if self.centroid_update not in CENTROID_UPDATES:
            raise UsageError(f"ccnn: centroid_update must be one of {', '.join(CENTROID_UPDATES)}")
        if self.selection not in SELECTIONS:
            raise UsageError(f"ccnn: selection must be one of {', '.join(SELECTIONS)}")
        if int(self.n_clusters) < 2:
            raise UsageError("ccnn: n_clusters must be at least 2")
        if len(dataset) < int(self.n_clusters):
            raise UsageError(f"ccnn: {len(dataset)} images cannot form {self.n_clusters} clusters")
        if not 1 <= int(self.k_m) <= int(self.n_m):
            raise UsageError("ccnn: need 1 <= k_m <= n_m")
        if self.resume and not self.checkpoint_dir:
            raise UsageError("ccnn: resume needs checkpoint_dir")

    def _resolved_network(self, dataset: ImageDataset) -> str:
        if self.network != "auto":
            return self.network
        return "digits" if max(dataset.image_shape[:2]) <= DIGIT_SIDE_LIMIT else "ccnn"

    def _adapt_channels(self, network: str) -> tuple[int, ...]:
        text = str(self.adapt_channels or "").strip()
        if not text:
            return (128,) if network == "digits" else (6144, 2048)
        try:
            return tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            from photocluster.errors import UsageError

            raise UsageError(f"ccnn: adapt_channels must be comma-separated integers, got {text!r}") from None

    def _build(self, dataset: ImageDataset, weights: str | None) -> None:
        from photocluster.devices import resolve_device
        from photocluster.models.ccnn_net import build_ccnn_net

        self._network = self._resolved_network(dataset)
        self._device = resolve_device(self.device)
        self._maps: np.ndarray | None = None  # a frozen trunk's kept maps, during fit only
        torch.manual_seed(int(self.random_state))
        self.net_ = build_ccnn_net(
            int(self.n_clusters),
            network=self._network,
            backbone=self.backbone,
            weights=weights,
            in_channels=dataset.image_shape[2],
            adapt_channels=self._adapt_channels(self._network),
        ).to(self._device)
        self.net_.normalize_features = bool(self.normalize_features)
        self._preprocess = None
        if self._network == "ccnn":
            from photocluster.features.pretrained import preprocess_for

            self._preprocess = preprocess_for(self.backbone)
        self._in_channels = dataset.image_shape[2]

    def _to_input(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC batch → network input on the device."""
        if self._network == "digits":
            array = np.asarray(images)
            if array.ndim == 3:
                array = array[..., None]
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self._device)
            return tensor.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        from photocluster.features.pretrained import images_to_tensor

        size = int(self.input_size) or self._preprocess.input_size
        return images_to_tensor(images, self._preprocess, size=size, device=self._device)

    @torch.no_grad()
    def _features(self, images: np.ndarray) -> np.ndarray:
        """h of new images through the whole network."""
        self.net_.eval()
        return self.net_.features(self._to_input(images)).float().cpu().numpy().astype(np.float64)

    def _inputs(self, images: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        """Network input of ``images[indices]`` (sorted indices): the kept trunk maps when there are some."""
        if self._maps is not None:
            return torch.from_numpy(self._maps[indices]).float().to(self._device)
        return self._to_input(self._read(images, indices))

    def _h(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net_.features_from_map(inputs) if self._maps is not None else self.net_.features(inputs)

    @torch.no_grad()
    def _features_at(self, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """h of ``images[indices]`` (fitting data: from the kept trunk maps when there are some)."""
        self.net_.eval()
        return self._h(self._inputs(images, indices)).float().cpu().numpy().astype(np.float64)

    def _trunk_frozen(self) -> bool:
        return self._network == "ccnn" and (self.variant != "ccnn" or self.train_layers != "all")

    def _keep_trunk_maps(self, images: np.ndarray, cancel: CancelToken, throttle: Throttle) -> Iterator[ProgressEvent]:
        """The frozen trunk's output for every image, computed once (float16), or None over the budget.

        With the trunk frozen only the adaptation layers, FC9 and the softmax layer change, so each image's
        trunk maps are the same in every epoch: keeping them turns each epoch's two to three passes through
        the trunk into one pass in all (mobilenet_v2's trunk is ~95 % of the network's work at 224 px).
        """
        self._maps = None
        if not (self.cache_trunk and self._trunk_frozen()):
            return
        key = self._trunk_key(images)
        if _KEPT_TRUNK.get("key") == key and _KEPT_TRUNK["images"]() is images:
            self._maps = _KEPT_TRUNK["maps"]  # another seed or variant on the same images (a benchmark)
            return
        count = len(images)
        self.net_.eval()
        with torch.no_grad():
            probe = self.net_.trunk(self._to_input(images[:1]))
        if count * int(np.prod(probe.shape[1:])) * 2 > TRUNK_CACHE_BYTES:
            return
        maps = np.empty((count, *probe.shape[1:]), dtype=np.float16)
        step = int(self.batch_size)
        with torch.no_grad():
            for start in range(0, count, step):
                cancel.raise_if_cancelled()
                chunk = self.net_.trunk(self._to_input(self._read(images, slice(start, start + step))))
                maps[start : start + step] = chunk.float().cpu().numpy().astype(np.float16)
                if throttle.ready():
                    yield ProgressEvent("trunk", min(start + step, count), count,
                                        message="frozen trunk, once per image")
        self._reader_for(images).release()
        self._maps = maps
        _keep_for_next_fit(images, key, maps)

    def _trunk_key(self, images: np.ndarray) -> tuple:
        from photocluster.features.pretrained import weights_fingerprint

        size = int(self.input_size) or self._preprocess.input_size
        return (str(self.backbone).lower(), weights_fingerprint(self.backbone, self.weights), size,
                tuple(images.shape), str(images.dtype))

    def _trained_parameters(self) -> list[tuple[str, nn.Parameter]]:
        prefixes = {
            "all": ("trunk.", "adaptation.", "fc9.", "softmax_layer."),
            "adaptation": ("adaptation.", "fc9.", "softmax_layer."),
            "head": ("fc9.", "softmax_layer."),
        }[self.train_layers]
        return [(name, p) for name, p in self.net_.named_parameters() if name.startswith(prefixes)]

    # -- fitting ----------------------------------------------------------------------------------------
    def fit_steps(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                  constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        self._validate(dataset)
        images = dataset.images
        count = len(images)
        k = int(self.n_clusters)
        constraints = None if constraints is None or constraints.is_empty else constraints
        if constraints is not None and constraints.n != count:
            raise ValueError(f"ccnn: constraints cover {constraints.n} photos but the data set has {count}")
        #: (N,) the label each constrained row is held to in every assignment (-1: free); None without constraints
        self._fixed_label: np.ndarray | None = None
        checkpoint_path = Path(self.checkpoint_dir) / CHECKPOINT_NAME if self.checkpoint_dir else None
        resuming = bool(self.resume and checkpoint_path is not None and checkpoint_path.is_file())
        # A resumed run rebuilds the architecture only; its weights come from the checkpoint.
        self._build(dataset, "none" if resuming else self.weights)
        throttle = Throttle(0.5)
        self._maps = None
        learning = self.variant == "ccnn"
        trained = self._trained_parameters() if learning else []
        for name, parameter in self.net_.named_parameters():
            parameter.requires_grad_(any(name == t for t, _ in trained))
        optimizer = (
            torch.optim.SGD([p for _, p in trained], lr=float(self.lr), momentum=float(self.momentum)) if learning else None
        )
        head_names = set(self.net_.head_parameter_names())
        self.history_: list[dict[str, float]] = []

        start_epoch, start_batch = 0, 0
        buffer_indices: list[int] = []
        buffer_labels: list[int] = []
        delta: dict[str, torch.Tensor] = {}
        if resuming:
            state = load_checkpoint(checkpoint_path, map_location=self._device)
            self.net_.load_state_dict(state["net"])
            if optimizer is not None and state.get("optimizer"):
                optimizer.load_state_dict(state["optimizer"])
            self.centroids_ = state["centroids"].cpu().numpy().astype(np.float64)
            self.counts_ = state["counts"].cpu().numpy().astype(np.int64)
            start_epoch, start_batch = int(state["epoch"]), int(state["batch"])
            buffer_indices = [int(i) for i in state["buffer_indices"].tolist()]
            buffer_labels = [int(i) for i in state["buffer_labels"].tolist()]
            delta = {name: value.to(self._device) for name, value in state["delta"].items()}
            self.history_ = list(state["history"])
            yield ProgressEvent("resume", message=f"resumed at epoch {start_epoch + 1}, mini-batch {start_batch}")
            yield from self._keep_trunk_maps(images, cancel, throttle)
            if constraints is not None:
                saved = state.get("fixed_label")
                if saved is not None and len(saved) == count:
                    self._fixed_label = saved.cpu().numpy().astype(np.int64)
                else:  # checkpoint of a run without (these) constraints: map the groups to the current centroids
                    self._fixed_label = self._map_groups(images, constraints, anchored=[])
        else:
            yield from self._keep_trunk_maps(images, cancel, throttle)
            yield from self._seed(images, cancel, throttle, constraints)

        if self.variant == "baseline3":
            yield from self._full_kmeans(images, cancel, throttle, constraints)
            self._keep_constraints(constraints)
            return

        n_batches = math.ceil(count / int(self.n_m))
        total = int(self.epochs) * n_batches
        eta_clock = EtaEstimator(total - (start_epoch * n_batches + start_batch))
        done_since_start = 0
        feature_names = [name for name, _ in trained if name not in head_names]

        def checkpoint_state(epoch: int, batch: int) -> dict[str, Any]:
            return {
                "params": {key: value for key, value in self.get_params().items()},
                "net": self.net_.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else {},
                "centroids": torch.from_numpy(self.centroids_.copy()),
                "counts": torch.from_numpy(self.counts_.copy()),
                "epoch": epoch,
                "batch": batch,
                "buffer_indices": torch.tensor(buffer_indices, dtype=torch.int64),
                "buffer_labels": torch.tensor(buffer_labels, dtype=torch.int64),
                "delta": {name: value.detach().cpu() for name, value in delta.items()},
                "history": list(self.history_),
                **({"fixed_label": torch.from_numpy(self._fixed_label.copy())}
                   if self._fixed_label is not None else {}),
            }

        for epoch in range(start_epoch, int(self.epochs)):
            # The order of an epoch depends only on (seed, epoch), so a resumed run sees the same batches.
            order = np.random.default_rng([int(self.random_state), epoch]).permutation(count)
            epoch_start = time.monotonic()
            losses: list[float] = []
            finetunes = 0
            distance_sum, distance_count = 0.0, 0
            first = start_batch if epoch == start_epoch else 0
            for batch in range(first, n_batches):
                if cancel.cancelled:
                    if checkpoint_path is not None:
                        save_checkpoint(checkpoint_path, checkpoint_state(epoch, batch))
                    raise Cancelled("ccnn cancelled" + (f"; checkpoint in {checkpoint_path}" if checkpoint_path else ""))
                # Sorted indices read a memmap front to back; the batch is still a random sample.
                indices = np.sort(order[batch * int(self.n_m) : (batch + 1) * int(self.n_m)])
                inputs = self._inputs(images, indices)
                self.net_.eval()
                with torch.no_grad():
                    features_now = self._h(inputs).double().cpu().numpy()
                d2 = squared_distances(features_now, self.centroids_)
                assignments = d2.argmin(axis=1)
                held = None
                if self._fixed_label is not None:
                    # A person's constrained photos go to their group's cluster, not to the nearest centroid.
                    forced = self._fixed_label[indices]
                    held = forced >= 0
                    assignments[held] = forced[held]
                nearest = d2[np.arange(len(indices)), assignments]
                distance_sum += float(nearest.sum())
                distance_count += len(indices)

                weights_changed = False
                if learning:
                    if held is not None and held.any():
                        # Constrained photos are always pseudo-labelled (with their group's label); the k_m
                        # closest of the other photos are chosen as before.
                        free = np.flatnonzero(~held)
                        if self.selection == "balanced":
                            picked = balanced_closest(nearest[free], assignments[free], int(self.k_m))
                        else:
                            picked = top_closest(nearest[free], int(self.k_m))
                        chosen = np.concatenate([np.flatnonzero(held), free[picked]])
                    elif self.selection == "balanced":
                        chosen = balanced_closest(nearest, assignments, int(self.k_m))
                    else:
                        chosen = top_closest(nearest, int(self.k_m))
                    for position in chosen:
                        buffer_indices.append(int(indices[position]))
                        buffer_labels.append(int(assignments[position]))
                    if len(buffer_indices) >= int(self.n_m):
                        delta, loss = self._finetune(images, buffer_indices, buffer_labels, optimizer, feature_names)
                        losses.append(loss)
                        finetunes += 1
                        buffer_indices, buffer_labels = [], []
                        weights_changed = True

                if weights_changed:
                    self.net_.eval()
                    if self.drift_compensation:
                        update_features = backtracked_features(self.net_, inputs, delta, float(self.eta), self._h)
                    else:
                        with torch.no_grad():
                            update_features = self._h(inputs)
                    update_centroids(self.centroids_, self.counts_, update_features.double().cpu().numpy(), assignments)
                elif not learning or self.centroid_update == "every_batch":
                    # No weight change since these features were computed: nothing has drifted.
                    update_centroids(self.centroids_, self.counts_, features_now, assignments)

                done_since_start += 1
                step = epoch * n_batches + batch + 1
                if checkpoint_path is not None and step % int(self.checkpoint_every) == 0:
                    save_checkpoint(checkpoint_path, checkpoint_state(epoch, batch + 1))
                if throttle.ready():
                    metrics = {"epoch": float(epoch + 1), "mean_sq_distance": distance_sum / max(distance_count, 1)}
                    if losses:
                        metrics["loss"] = float(np.mean(losses[-20:]))
                    yield ProgressEvent("train", step, total, metrics, eta_seconds=eta_clock.eta(done_since_start))
            record = {
                "epoch": float(epoch + 1),
                "mean_sq_distance": distance_sum / max(distance_count, 1),
                "finetune_steps": float(finetunes),
                "seconds": time.monotonic() - epoch_start,
            }
            if losses:
                record["loss"] = float(np.mean(losses))
            self.history_.append(record)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, checkpoint_state(int(self.epochs), 0))
        yield from self._label_all(images, cancel, throttle)
        self._keep_constraints(constraints)

    def _seed(self, images: np.ndarray, cancel: CancelToken, throttle: Throttle,
              constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        """k-means++ seeds from the features of ``seed_pool`` random images (initial centroids).

        With constraints, each constrained group (locked clusters first, then the larger groups) starts as a
        centroid of its own — the mean feature of its photos —, up to k of them; k-means++ then seeds the
        remaining centroids away from those (D² sampling from the group centroids), and every group is held
        to a cluster (:meth:`_map_groups`).
        """
        rng = np.random.default_rng(int(self.random_state))
        count = len(images)
        pool = np.sort(rng.choice(count, size=min(count, max(int(self.seed_pool), int(self.n_clusters))), replace=False))
        chunks = []
        step = int(self.batch_size)
        for start in range(0, len(pool), step):
            cancel.raise_if_cancelled()
            chunks.append(self._features_at(images, pool[start : start + step]))
            if throttle.ready():
                yield ProgressEvent("seed", start + step, len(pool), message="features for k-means++ seeding")
        pool_features = np.concatenate(chunks)
        if constraints is None:
            seeds = kmeans_plusplus_seeds(pool_features, int(self.n_clusters), rng)
            self.centroids_ = pool_features[seeds].copy()
        else:
            anchored, anchors = self._group_anchors(images, constraints)
            seeds = kmeans_plusplus_seeds(pool_features, int(self.n_clusters) - len(anchored), rng, initial=anchors)
            self.centroids_ = np.concatenate([anchors, pool_features[seeds]])
        self.counts_ = np.ones(int(self.n_clusters), dtype=np.int64)
        if constraints is not None:
            # A group's centroid is the mean of the photos its feature was averaged over: it counts them all,
            # so γ = 1/count moves it as the running mean of those photos and everything it absorbs later.
            groups = constraints.groups()
            for position, g in enumerate(anchored):
                self.counts_[position] = len(self._group_sample(groups[g]))
            self._fixed_label = self._map_groups(images, constraints, anchored)
        yield ProgressEvent("seed", len(pool), len(pool), message=f"{self.n_clusters} k-means++ seeds")

    def _group_sample(self, rows: np.ndarray) -> np.ndarray:
        """At most GROUP_SAMPLE evenly spread rows of a group: its mean feature without a pass over a big
        locked cluster."""
        return rows[:: max(1, math.ceil(len(rows) / GROUP_SAMPLE))]

    def _group_anchors(self, images: np.ndarray, constraints: Constraints) -> tuple[list[int], np.ndarray]:
        """(groups that get a centroid of their own, (A, k) their mean features): locked clusters first, then
        the other groups largest first (stable), at most k.

        Groups of one count too: a photo named only in a cannot-link is one the person confirmed as part of
        the cluster another photo left (its core), so it marks where a cluster the person saw lies. Measured
        on digits (smoke settings, seeds 0–5, 1 % and 5 % moved): without them the free centroids come from
        k-means++'s far-off draws and two of twelve re-runs fell below the unconstrained one (−0.025,
        −0.017 ACC); with them one did, by −0.0006.
        """
        groups = constraints.groups()
        locked = constraints.fixed_groups()
        others = sorted((g for g in range(len(groups)) if g not in set(locked)), key=lambda g: -len(groups[g]))
        anchored = (locked + others)[: int(self.n_clusters)]
        samples = [np.sort(self._group_sample(groups[g])) for g in anchored]
        features = self._features_of_rows(images, np.concatenate(samples))
        anchors = [np.stack([features[int(r)] for r in rows]).mean(axis=0) for rows in samples]
        return anchored, np.stack(anchors)  # constraints are not empty: at least one group

    def _features_of_rows(self, images: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
        """h of the given rows, computed in forward batches of ``batch_size`` (many small groups cost a few
        passes, not one each)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        step = int(self.batch_size)
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            for row, h in zip(chunk.tolist(), self._features_at(images, chunk)):
                out[row] = h
        return out

    def _map_groups(self, images: np.ndarray, constraints: Constraints, anchored: list[int]) -> np.ndarray:
        """(N,) the cluster every constrained row is held to (-1 for a free row).

        A group with a centroid of its own keeps it; the others (more groups than k, or a resumed run) get
        :meth:`Constraints.group_labels` on their photos' closeness to the centroids — distinct clusters for
        locked clusters, never a cluster taken by a group they are apart from where another is left.
        """
        k = int(self.n_clusters)
        groups = constraints.groups()
        scores = np.zeros((constraints.n, k), dtype=np.float64)
        samples = [np.sort(self._group_sample(rows)) for rows in groups]
        features = self._features_of_rows(images, np.concatenate(samples))
        for sample in samples:
            d2 = squared_distances(np.stack([features[int(r)] for r in sample]), self.centroids_)
            scores[sample] = -d2 / max(float(d2.max()), 1e-12)  # in [-1, 0] per row
        for position, g in enumerate(anchored):
            scores[self._group_sample(groups[g]), position] += 2.0  # outweighs any closeness
        chosen = constraints.group_labels(np.zeros(constraints.n, dtype=np.int64), k, scores)
        fixed = np.full(constraints.n, -1, dtype=np.int64)
        for g, rows in enumerate(groups):
            fixed[rows] = chosen[g]
        return fixed

    def _finetune(
        self,
        images: np.ndarray,
        buffer_indices: list[int],
        buffer_labels: list[int],
        optimizer: torch.optim.Optimizer,
        feature_names: list[str],
    ) -> tuple[dict[str, torch.Tensor], float]:
        """SGD on the pseudo-labelled buffer; returns ΔW_{t−1} = W_before − W_after of the feature layers."""
        order = np.argsort(buffer_indices, kind="stable")
        indices = np.asarray(buffer_indices)[order]
        labels = torch.as_tensor(np.asarray(buffer_labels)[order], dtype=torch.int64, device=self._device)
        inputs = self._inputs(images, indices)
        params = dict(self.net_.named_parameters())
        before = {name: params[name].detach().clone() for name in feature_names}
        _set_finetune_mode(self.net_)
        loss_value = 0.0
        for _ in range(int(self.finetune_steps)):
            optimizer.zero_grad(set_to_none=True)
            probabilities = self.net_.forward_from_map(inputs) if self._maps is not None else self.net_(inputs)
            loss = sse_loss(probabilities, labels)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
        self.net_.eval()
        delta = {name: before[name] - params[name].detach() for name in feature_names}
        return delta, loss_value

    def _label_all(self, images: np.ndarray, cancel: CancelToken, throttle: Throttle) -> Iterator[ProgressEvent]:
        """Streamed final pass: labels, confidence (1 − d1/d2) and N × k FC9 embeddings."""
        count = len(images)
        k = int(self.n_clusters)
        self.labels_ = np.empty(count, dtype=np.int64)
        self.confidence_ = np.empty(count, dtype=np.float32)
        self.embeddings_ = np.empty((count, k), dtype=np.float32)
        step = int(self.batch_size)
        for start in range(0, count, step):
            cancel.raise_if_cancelled()
            features = self._features_at(images, np.arange(start, min(start + step, count)))
            labels, confidence = self._assign(features)
            if self._fixed_label is not None:
                forced = self._fixed_label[start : start + step]
                labels = np.where(forced >= 0, forced, labels)
            self.labels_[start : start + step] = labels
            self.confidence_[start : start + step] = confidence
            self.embeddings_[start : start + step] = features
            if throttle.ready():
                yield ProgressEvent("label", min(start + step, count), count)
        self._maps = None  # the kept trunk maps served the fit only
        yield ProgressEvent("label", count, count, message="done")

    def _assign(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = np.sqrt(squared_distances(features, self.centroids_))
        order = np.argsort(distances, axis=1)
        rows = np.arange(len(features))
        nearest = distances[rows, order[:, 0]]
        second = distances[rows, order[:, 1]]
        confidence = np.where(second > 0, 1.0 - nearest / np.maximum(second, 1e-12), 0.0)
        return order[:, 0].astype(np.int64), confidence.astype(np.float32)

    def _full_kmeans(self, images: np.ndarray, cancel: CancelToken, throttle: Throttle,
                     constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        """Baseline-III: all features at once, scikit-learn k-means (k-means++, 10 restarts).

        With constraints it is constrained k-means (COP-KMeans, Wagstaff et al. 2001; Seeded-KMeans, Basu et al.
        2002): Lloyd iterations (:func:`constrained_lloyd`) with every constrained photo clamped to its group's
        cluster, so the centroids and the free photos near the corrections follow them. Two starts, the lower
        constrained inertia wins (the k-means objective decides, as in the ``kmeans`` method): the same
        scikit-learn k-means with each group put on one of its clusters (:meth:`Constraints.enforce` on the
        groups' summed squared distances), and the group-anchored seeds of :meth:`_seed`. Measured with
        ``scripts/bench_corrections.py --benchmark digits --method ccnn -p variant=baseline3 --seeds 3``: the
        seeded start alone lost 0.027 ACC to the unconstrained re-run once (seed 0, 1 %); the two starts
        never lose (+0.001 … +0.025, two ties).
        """
        from sklearn.cluster import KMeans

        count = len(images)
        step = int(self.batch_size)
        self.embeddings_ = np.empty((count, int(self.n_clusters)), dtype=np.float32)
        for start in range(0, count, step):
            cancel.raise_if_cancelled()
            self.embeddings_[start : start + step] = self._features_at(images, np.arange(start, min(start + step, count)))
            if throttle.ready():
                yield ProgressEvent("features", min(start + step, count), count)
        yield ProgressEvent("k-means", 0, None, message="full k-means on all features (Baseline-III)")
        seeded = self.centroids_
        kmeans = KMeans(int(self.n_clusters), n_init=10, random_state=int(self.random_state)).fit(self.embeddings_)
        self.centroids_ = kmeans.cluster_centers_.astype(np.float64)
        if constraints is None:
            self.counts_ = np.bincount(kmeans.labels_, minlength=int(self.n_clusters)).astype(np.int64)
            self.labels_, self.confidence_ = self._assign(self.embeddings_.astype(np.float64))
            inertia = float(kmeans.inertia_)
        else:
            features = self.embeddings_.astype(np.float64)
            rows = constraints.constrained_rows()
            # Two starts of the same constrained k-means: scikit-learn's k-means (the unconstrained re-run's
            # optimum) with each group put on one of its clusters, and the group-anchored seeds of _seed; the
            # lower constrained inertia wins.
            unconstrained_labels = kmeans.labels_.astype(np.int64)
            held, _ = constraints.enforce(unconstrained_labels, int(self.n_clusters),
                                          -squared_distances(features, self.centroids_))
            best = None
            for centres, fixed in ((self.centroids_, held), (seeded, self._fixed_label)):
                labels, centres = constrained_lloyd(features, centres, rows, fixed[rows])
                inertia = float(((features - centres[labels]) ** 2).sum())
                if best is None or inertia < best[0]:
                    best = (inertia, labels, centres, fixed)
            inertia, labels, self.centroids_, fixed = best
            self._fixed_label = np.full(len(labels), -1, dtype=np.int64)
            self._fixed_label[rows] = fixed[rows]
            self.counts_ = np.bincount(labels, minlength=int(self.n_clusters)).astype(np.int64)
            free_labels, self.confidence_ = self._assign(features)
            self.labels_ = np.where(self._fixed_label >= 0, self._fixed_label, free_labels)
        self.history_.append({"inertia": inertia})
        self._maps = None
        yield ProgressEvent("k-means", 1, 1, message="done")

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Nearest learned centroid of each new uint8 image (N, H, W, C)."""
        if not hasattr(self, "centroids_"):
            raise RuntimeError("ccnn: call fit first")
        labels = []
        for start in range(0, len(images), int(self.batch_size)):
            labels.append(self._assign(self._features(self._read(images, slice(start, start + int(self.batch_size)))))[0])
        return np.concatenate(labels)
