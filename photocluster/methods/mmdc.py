"""MMDC — Multi-Modal Deep Clustering (Shiran & Weinshall, ICPR 2020).

The algorithm (paper, Algorithm 1, and the authors' code github.com/guysrn/mmdc):

1. Every training image gets one fixed target sampled from a mixture of k Gaussians projected on the unit
   sphere: means = the k one-hot vectors, covariance σ·I, equal weights (σ = 0 → exactly one-hot).
2. Clustering pass, per mini-batch: embed the un-augmented view (centre crop), re-assign the batch's own
   targets among its images with the Hungarian method (``scipy.optimize.linear_sum_assignment``) to
   minimise the total Euclidean distance, then take an SGD step on ``‖f(g(x)) − t‖²`` for a random
   augmentation g; the network output is L2-normalised.
3. RotNet auxiliary task in alternating passes: every image of a batch rotated by 0/90/180/270°, a second
   linear head predicts the rotation (cross-entropy).
4. Refinement stage (from ``refine_from_epoch``): at the start of each epoch the targets are reset to the
   k-means labels of the embeddings, aligned to the previous assignment by the Hungarian method; the
   per-batch re-assignment is then off (as in the authors' code).
5. Cluster of an image = nearest Gaussian mean (argmax for one-hot means).

Where the authors' code and the paper text differ, the code's choice is the default and the other is an
option: σ is the standard deviation of the Gaussians (code: ``np.random.normal(mean, sigma)``); the loss is
``nn.MSELoss`` (mean over batch and dimensions, i.e. ``‖·‖²/k``); the rotation pass uses random crops only
(no flip/colour) and comes before the clustering pass of each epoch; ``stem_pool=True`` gives the code's
ResNet stem max-pool.

Corrections as constraints (issue 18; ``fit_steps(..., constraints=...)``). MMDC minimises
Σ_i ‖f(x_i) − t_π(i)‖² jointly over the network f and the assignment π of targets to images, alternating an
assignment step (the per-batch Hungarian matching) with an SGD step. A person's corrections restrict the
feasible assignments: every photo of a must-link group (a cluster's core with the photos the person put
there, merged cores) or of a locked cluster must take a target of the *same* component, and photos that
must stay apart targets of *different* ones. Minimising the same objective under that restriction gives:

* confirmed clusters (locked clusters and must-link groups of ≥ 2 photos) each take the component nearest
  their photos' embeddings in total (the largest Σ f(x)·μ_c), chosen at the start of every clustering pass,
  one to one by the Hungarian method when there are at most k of them — as MMDC matches images to targets
  one to one. Choosing each group's best component on its own let two cores the person saw as different
  clusters share the component they happened to get in the random first epoch, and training made them one
  cluster (digits, seed 0, 1 % corrected: ACC 0.73 against 0.905 for the unconstrained re-run);
* their photos get that component's mean as a pinned target and leave the per-batch re-assignment: only the
  other photos' targets are permuted among themselves;
* a photo named only in a cannot-link (e.g. the core of the cluster a photo was moved out of) stays in the
  re-assignment but may not take a target of a component held by a group it must stay apart from (those
  pairs cost more than any other assignment). Pinning such photos each on its own nearest component froze
  their random first-epoch components (digits, seed 2, 1 %: ACC 0.750 against 0.839 unconstrained);
* in the refinement stage the k-means labels are made to keep the constraints (each confirmed cluster on
  its majority label, one to one) and Lloyd iterations follow in which the cluster means count the pinned
  photos with their group's label and the other photos move to the nearest mean their cannot-links allow
  (COP-k-means);
* the pinned photos are the person's labelled examples but only a few percent of the data: each clustering
  batch gets ⌈B/4⌉ extra draws (fresh augmentations, outside the re-assignment), each of a component picked
  uniformly — the mixture's equal weights — and then of a pinned photo on it, or of a free photo targeted
  at it when no group holds it. So the corrections weigh in the objective and the network carries them
  over to similar photos nobody touched (digits, seed 0, 1 %: ACC 0.899 without the draws), without
  starving the components no group holds (drawing pinned photos only left one component empty: seed 2,
  5 %: ACC 0.853 against 0.879 unconstrained). Every constrained photo is in the training subset.

Measured with ``scripts/bench_corrections.py --benchmark digits --method mmdc --seeds 3`` (quick protocol,
one thread of the shared 2-core CPU), ACC after vs the unconstrained re-run, seeds 0/1/2: 1 % corrected
0.934/0.889/0.871 vs 0.907/0.809/0.839; 5 % 0.978/0.962/0.956 vs 0.947/0.849/0.879.
Without constraints (None or empty) nothing of this runs and the labels are those of the code before.
The labels finally keep the constraints (:meth:`ClusteringMethod._keep_constraints` on the embeddings'
scores).

Fitted attributes: ``labels_`` (nearest mean), ``confidence_`` = 1 − d/2 where d ∈ [0, 2] is the Euclidean
distance between the unit-norm embedding and its nearest (unit-norm) mean — 1 on the mean, and above 0
whenever the embedding is not antipodal to every mean; ``embeddings_`` = the L2-normalised k-dim network
outputs (not the penultimate features; ``transform_features`` gives those).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from photocluster.checkpoints import load_checkpoint, save_checkpoint
from photocluster.data.dataset import ImageDataset, release_read_pages
from photocluster.data.transforms import (
    BatchAugmenter,
    get_preset,
    preset_for_images,
    rotate_quarter_turns,
    to_float_nchw,
)
from photocluster.devices import resolve_device, uses_mixed_precision
from photocluster.errors import UsageError
from photocluster.methods.constraints import Constraints
from photocluster.methods.base import ClusteringMethod, ParamSpec, register
from photocluster.progress import NEVER_CANCELLED, CancelToken, Cancelled, ProgressEvent, Throttle

#: version tag of the checkpoint layout
CHECKPOINT_FORMAT = "mmdc-1"
CHECKPOINT_NAME = "mmdc.pt"
#: a rotation step trains on 4× the images with one forward+backward, a clustering step does one eval
#: forward and one forward+backward on 1×: about 3× the work (used only to weight the ETA)
_ROTATION_STEP_WEIGHT = 3.0
#: k-means restarts in the refinement stage (the authors' sklearn default was 10; 3 keeps each
#: refinement short on a CPU and gave the same labels in our MNIST runs' refinement epochs)
_REFINE_KMEANS_N_INIT = 3
#: images the quick protocol trains on (all images are labelled at the end)
QUICK_TRAIN_SUBSET = 20_000
#: constrained rows added to every clustering batch, as a share of the batch (see MMDC._extra_draws)
_CONSTRAINED_SHARE = 0.25
#: images per forward pass when embedding a whole data set
_EMBED_BATCH = 512
#: images per labelling batch when a photo library streams from disk on the CPU (bounded memory)
_EMBED_BATCH_STREAMED = 128
#: training steps between two releases of a streamed library's read pages
_RELEASE_EVERY_STEPS = 16


# -- the algorithm's pieces, as plain functions (unit-tested on their own) ------------------------
def sample_gmm_targets(
    n: int, k: int, sigma: float, generator: torch.Generator, return_components: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Targets t_i = u/‖u‖, u ~ N(μ_c, σ² I), c uniform over k one-hot means μ_c (σ = standard deviation).

    With ``sigma == 0`` every target is exactly a one-hot vector. ``return_components`` also returns the
    component c of each target.
    """
    components = torch.randint(k, (n,), generator=generator)
    u = F.one_hot(components, k).float()
    if sigma > 0:
        u = u + sigma * torch.randn(n, k, generator=generator)
    targets = F.normalize(u, dim=1, eps=1e-12)
    return (targets, components) if return_components else targets


def hungarian_reassign(embeddings: np.ndarray, targets: np.ndarray, forbidden: np.ndarray | None = None) -> np.ndarray:
    """Permute a batch's targets among its images to minimise the total Euclidean distance.

    Parameters
    ----------
    embeddings, targets:
        (B, d) arrays; row i of ``targets`` is image i's current target.
    forbidden:
        Optional (B, B) bool: image i may not take target j (a cannot-link). Such a pair costs more than
        any assignment without one (each distance is at most 2 for unit vectors), so it is used only when
        no permutation avoids it.

    Returns
    -------
    numpy.ndarray
        Permutation ``p`` such that ``targets[p]`` is the new assignment (image i gets ``targets[p[i]]``).
        The identity is one candidate, so the cost never increases.
    """
    diff = embeddings[:, None, :].astype(np.float64) - targets[None, :, :].astype(np.float64)
    cost = np.sqrt((diff * diff).sum(axis=2))
    if forbidden is not None:
        cost = cost + np.where(forbidden, 4.0 * len(cost) + 1.0, 0.0)
    rows, cols = linear_sum_assignment(cost)
    permutation = np.empty(len(rows), dtype=np.int64)
    permutation[rows] = cols
    return permutation


def align_labels(new_labels: np.ndarray, previous_labels: np.ndarray, k: int) -> np.ndarray:
    """Rename k-means clusters so they overlap the previous assignment the most (Hungarian on the
    contingency table), so refinement keeps cluster identities stable between epochs."""
    contingency = np.zeros((k, k), dtype=np.int64)
    np.add.at(contingency, (new_labels, previous_labels), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    mapping = np.empty(k, dtype=np.int64)
    mapping[rows] = cols
    return mapping[new_labels]


def nearest_mean(embeddings: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster = nearest Gaussian mean (paper eq. 3). Returns (labels, distances to that mean)."""
    d2 = (embeddings**2).sum(1)[:, None] - 2 * embeddings @ means.T + (means**2).sum(1)[None, :]
    labels = d2.argmin(axis=1)
    distance = np.sqrt(np.maximum(d2[np.arange(len(labels)), labels], 0.0))
    return labels.astype(np.int64), distance


@dataclass
class _Setup:
    """Everything ``fit`` decides from the parameters and the data (resolved once, also on resume)."""

    architecture: str
    preset_name: str
    input_size: int
    in_channels: int


@register
class MMDC(ClusteringMethod):
    """Multi-Modal Deep Clustering: align embeddings with GMM targets by per-batch Hungarian matching.

    Parameters
    ----------
    n_clusters:
        k, the number of clusters (= Gaussian components = embedding width with one-hot means).
    random_state:
        Seed of every random draw (targets, initialisation, shuffling, augmentation, k-means).
    device:
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps".
    sigma:
        Standard deviation of the Gaussians around the one-hot means; 0 = exact one-hot targets.
    epochs:
        Training epochs (each: a rotation pass when ``rotation``, then a clustering pass).
    batch_size:
        Images per clustering step (the rotation step trains on 4× this many).
    lr, momentum, weight_decay:
        SGD settings; no weight decay on batch-norm and bias parameters (the authors' code).
    lr_decay_epoch, lr_decay_gamma:
        The learning rate is multiplied by ``lr_decay_gamma`` from this epoch on (−1: never).
    rotation:
        Train the RotNet auxiliary head in alternating passes.
    refine_from_epoch:
        First epoch of the refinement stage (−1: none).
    architecture:
        "auto" (ResNet-18 for RGB images of at least 32 px, small VGG otherwise), "resnet18" or "vgg".
    augment:
        Augmentation preset: "auto", "digits", "cifar" or "stl" (see :mod:`photocluster.data.transforms`).
    input_size:
        Network input side; 0 = the preset's (16 for images under 20 px with the VGG).
    width:
        Channel multiplier of the network (1.0 = the paper's). Smaller is a CPU economy.
    stem_pool:
        ResNet only: keep the authors' code's 2×2 max-pool after the 3×3 stem.
    head_init:
        Initialisation of the clustering head: "pytorch" (``nn.Linear``'s default, uniform ±1/√fan_in) or
        "authors" (their code's N(0, 0.01)). The paper does not say. Measured here: with the tiny N(0, 0.01)
        head the pre-normalisation output is ~100× smaller than the features, so the first SGD steps
        (gradient ∝ 1/‖z‖ through the L2 normalisation) blow the head's weights up to norm ~15 within a
        few steps, after which every gradient is ~15× smaller and all outputs sit on the mean target for
        hundreds of steps (training loss stuck at the collapse value (2 − 2/√k)/k). With the default
        init the loss leaves that plateau at once (synthetic 3-family set, 100 steps: loss 0.26 vs 0.08).
        The paper protocol keeps the authors' init.
    train_subset:
        Train on this many images drawn at random (0 = all); every image is labelled at the end.
    checkpoint_dir:
        Folder for ``mmdc.pt``; None = no checkpoints.
    checkpoint_every:
        Steps between checkpoints (also written when cancelled and at the end).
    resume:
        Continue from the checkpoint in ``checkpoint_dir`` instead of starting over.
    """

    name = "mmdc"
    description = (
        "Multi-Modal Deep Clustering: a ConvNet trained from scratch to map images onto one-hot GMM targets "
        "re-assigned per batch by the Hungarian method, with a RotNet auxiliary head; cluster = nearest mean."
    )
    paper = "Shiran & Weinshall, Multi-Modal Deep Clustering: Unsupervised Partitioning of Images, ICPR 2020"
    family = "deep"

    def __init__(
        self,
        n_clusters: int = 10,
        random_state: int = 0,
        device: str = "auto",
        sigma: float = 0.0,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_decay_epoch: int = 40,
        lr_decay_gamma: float = 0.1,
        rotation: bool = True,
        refine_from_epoch: int = 20,
        architecture: str = "auto",
        augment: str = "auto",
        input_size: int = 0,
        width: float = 1.0,
        stem_pool: bool = False,
        head_init: str = "pytorch",
        train_subset: int = 0,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 200,
        resume: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.device = device
        self.sigma = sigma
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_decay_epoch = lr_decay_epoch
        self.lr_decay_gamma = lr_decay_gamma
        self.rotation = rotation
        self.refine_from_epoch = refine_from_epoch
        self.architecture = architecture
        self.augment = augment
        self.input_size = input_size
        self.width = width
        self.stem_pool = stem_pool
        self.head_init = head_init
        self.train_subset = train_subset
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume

    # -- user-facing descriptions ---------------------------------------------------------------
    @classmethod
    def parameter_specs(cls) -> list[ParamSpec]:
        return [
            ParamSpec("n_clusters", int, 10, "number of clusters k", minimum=2),
            ParamSpec("random_state", int, 0, "seed"),
            ParamSpec("device", str, "auto", "compute device", choices=("auto", "cpu", "cuda", "mps")),
            ParamSpec("sigma", float, 0.0, "std of the Gaussians around the one-hot means (0 = one-hot)", minimum=0),
            ParamSpec("epochs", int, 50, "training epochs", minimum=1),
            ParamSpec("batch_size", int, 128, "images per clustering step", minimum=2),
            ParamSpec("lr", float, 0.05, "SGD learning rate", minimum=0),
            ParamSpec("momentum", float, 0.9, "SGD momentum", minimum=0, maximum=1),
            ParamSpec("weight_decay", float, 5e-4, "weight decay (not on BN/bias)", minimum=0),
            ParamSpec("lr_decay_epoch", int, 40, "multiply lr by lr_decay_gamma from this epoch (-1: never)"),
            ParamSpec("lr_decay_gamma", float, 0.1, "lr decay factor", minimum=0),
            ParamSpec("rotation", bool, True, "RotNet auxiliary task in alternating passes"),
            ParamSpec("refine_from_epoch", int, 20, "first refinement epoch (k-means targets; -1: none)"),
            ParamSpec("architecture", str, "auto", "network", choices=("auto", "resnet18", "vgg")),
            ParamSpec("augment", str, "auto", "augmentation preset", choices=("auto", "digits", "cifar", "stl", "shift")),
            ParamSpec("input_size", int, 0, "network input side (0 = preset's)", minimum=0),
            ParamSpec("width", float, 1.0, "channel multiplier (1 = paper)", minimum=0.05),
            ParamSpec("stem_pool", bool, False, "ResNet: authors' code's stem max-pool"),
            ParamSpec("head_init", str, "pytorch", "clustering head init: pytorch default or the authors' N(0, 0.01)",
                      choices=("pytorch", "authors")),
            ParamSpec("train_subset", int, 0, "train on this many random images (0 = all)", minimum=0),
            ParamSpec("checkpoint_dir", str, None, "folder for checkpoints (none = no checkpoints)"),
            ParamSpec("checkpoint_every", int, 200, "steps between checkpoints", minimum=1),
            ParamSpec("resume", bool, False, "continue from the checkpoint in checkpoint_dir"),
        ]

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        """``paper``: the authors' commands for this data set; ``quick``: the same algorithm reduced so that
        MNIST (70,000 images) trains in minutes on a 2-core CPU.

        quick (grey / small images) = 20 epochs on a random 20,000-image subset (all images are labelled at
        the end; sets under 10,000 images: batches of 64), 16-px input (crops resized to 16
        instead of 32: a quarter of the pixels), half-width VGG, lr 0.2 ×0.1 at 90 % of the epochs,
        refinement from 80 %; RGB sets: 5 epochs of a half-width ResNet-18 with the stem pool on 10,000
        images (a smoke-level schedule: the paper's needs a GPU).

        Measured (quick, one CPU thread of the shared 2-core machine, ~2.5 min a run): MNIST ACC
        0.962 / 0.967 / 0.961 (seeds 0-2); Fashion-MNIST ACC 0.578 (seed 0); digits ACC 0.901 (k-means 0.787).
        """
        super().protocol_params(protocol, dataset)
        name = dataset.name
        h, w, c = dataset.image_shape
        grey_or_small = c == 1 or min(h, w) < 32
        if protocol == "paper":
            if grey_or_small:
                # MNIST command: 50 epochs, ×0.1 at 40, refinement from 20, no rotation task (Table I).
                return dict(epochs=50, lr_decay_epoch=40, lr_decay_gamma=0.1, refine_from_epoch=20,
                            rotation=False, weight_decay=5e-4, architecture="vgg", augment="digits",
                            head_init="authors")
            wd = 1e-4 if name in ("cifar100-20", "tiny-imagenet") else 5e-4
            # 400 epochs, ×0.2 at 350 (paper text; the code's commands decay at 300), refinement from 350
            return dict(epochs=400, lr_decay_epoch=350, lr_decay_gamma=0.2, refine_from_epoch=350,
                        rotation=True, weight_decay=wd, architecture="resnet18", augment="auto", head_init="authors")
        n_train = min(len(dataset), QUICK_TRAIN_SUBSET)
        small = n_train < 10_000
        if grey_or_small:
            # About 3,000 SGD steps: 20 epochs of 20,000 images in batches of 128 (MNIST); small sets
            # (digits: 1,797 images) use batches of 64 for more steps per epoch. lr 0.2 instead of 0.05 because the
            # budget has ~10x fewer steps than the paper's 27,000; it was picked by the lowest training
            # loss of the clustering objective at that budget (digits), not by any label.
            # Refinement only in the last 20 % (after the Hungarian stage has formed clusters) and the lr
            # decay at 90 %: with this short budget an earlier refinement froze half-formed clusters.
            epochs = 20
            return dict(epochs=epochs, batch_size=64 if small else 128, lr=0.2,
                        lr_decay_epoch=int(0.9 * epochs), lr_decay_gamma=0.1, refine_from_epoch=int(0.8 * epochs),
                        rotation=False, architecture="vgg", augment="digits", input_size=16, width=0.5,
                        train_subset=n_train)
        return dict(epochs=5, batch_size=128, lr=0.05, lr_decay_epoch=-1, refine_from_epoch=-1, rotation=True,
                    architecture="resnet18", width=0.5, stem_pool=True, train_subset=min(len(dataset), 10_000))

    @classmethod
    def photo_preset(cls, preset: str, dataset: ImageDataset) -> dict[str, Any]:
        """Photo folders (RGB, decoded at 96 px). The constructor's defaults are the paper's CIFAR schedule
        — a full-resolution ResNet-18 on batches of 128 × 4 rotations —, which held up to 10 GB and was
        projected at two days for 1,954 photos on a laptop CPU; the quick protocol still peaked at 3.6 GB
        on 200 photos (measured, /usr/bin/time). Activation memory grows with batch × pixels, so:

        fast: half-width ResNet-18 with the stem pool, 64-px crops, batches of 32 (an eighth of the quick
        protocol's activations: peak 1.8 GB instead of 2.3 GB with batches of 64 on 200 photos, 0.8 GB of it
        importing torch), 6 epochs on at most 5,000 photos (all are labelled at the end), RotNet on.
        thorough: full-width ResNet-18 with the stem pool at 96 px, batches of 128, 30 epochs on at most
        20,000 photos, lr ×0.1 at 80 %, refinement from 70 %.
        """
        if preset not in ("fast", "thorough"):
            return super().photo_preset(preset, dataset)
        n = len(dataset)
        if preset == "fast":
            return dict(epochs=6, batch_size=32, lr=0.05, lr_decay_epoch=-1, refine_from_epoch=-1, rotation=True,
                        architecture="resnet18", width=0.5, stem_pool=True, input_size=64,
                        train_subset=min(n, 5000))
        return dict(epochs=30, batch_size=128, lr=0.05, lr_decay_epoch=24, lr_decay_gamma=0.1, refine_from_epoch=21,
                    rotation=True, architecture="resnet18", width=1.0, stem_pool=True, input_size=96,
                    train_subset=min(n, 20000))

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        return {
            "quick": "grey: 20 epochs on 20,000 random images (small sets: batch 64), 16-px input, "
                     "half-width VGG, lr 0.2 x0.1 at 90%, refine from 80%, no rotation; "
                     "RGB: 5 epochs on 10,000 images, half-width ResNet-18 + RotNet",
            "paper": "grey: VGG, 50 epochs, lr 0.05 x0.1 at 40, refine from 20, no rotation (MNIST command); "
                     "RGB: ResNet-18 + RotNet, 400 epochs, x0.2 at 350, refine from 350, wd 5e-4 (1e-4 CIFAR-100)",
        }

    @classmethod
    def smoke_params(cls) -> dict[str, Any]:
        # ~100 steps of a quarter-width VGG at 16 px: a few seconds on one CPU thread. The "shift" preset,
        # because the contract's families differ by position, which 16-of-28 crops would erase.
        return dict(epochs=20, batch_size=32, lr=0.2, architecture="vgg", input_size=16, width=0.25,
                    rotation=False, lr_decay_epoch=-1, refine_from_epoch=-1, augment="shift")

    # -- setup ----------------------------------------------------------------------------------
    def _validate(self, dataset: ImageDataset) -> None:
        if int(self.n_clusters) < 2:
            raise UsageError(f"mmdc: n_clusters must be at least 2, got {self.n_clusters}")
        if len(dataset) < max(2, int(self.n_clusters)):
            raise UsageError(f"mmdc: {len(dataset)} images cannot form {self.n_clusters} clusters")
        if int(self.epochs) < 1 or int(self.batch_size) < 2:
            raise UsageError("mmdc: epochs must be ≥ 1 and batch_size ≥ 2")
        if float(self.sigma) < 0:
            raise UsageError(f"mmdc: sigma must be ≥ 0, got {self.sigma}")
        if self.architecture not in ("auto", "resnet18", "vgg"):
            raise UsageError(f"mmdc: unknown architecture {self.architecture!r}; choose auto, resnet18 or vgg")
        if self.augment != "auto":
            try:
                get_preset(self.augment)
            except ValueError as exc:
                raise UsageError(f"mmdc: {exc}") from None
        if self.head_init not in ("pytorch", "authors"):
            raise UsageError(f"mmdc: head_init must be pytorch or authors, got {self.head_init!r}")
        if self.resume and not self.checkpoint_dir:
            raise UsageError("mmdc: resume=True needs checkpoint_dir")

    def _resolve_setup(self, dataset: ImageDataset) -> _Setup:
        h, w, c = dataset.image_shape
        arch = self.architecture
        if arch == "auto":
            arch = "resnet18" if (c == 3 and min(h, w) >= 32) else "vgg"
        preset_name = self.augment if self.augment != "auto" else preset_for_images(h, w, c)
        input_size = int(self.input_size) or get_preset(preset_name).input_size
        if self.input_size == 0 and arch == "vgg" and min(h, w) < 20:
            input_size = 16  # tiny images (8-px digits): upsampling them 4x to 32 px only costs time
        if arch == "vgg" and input_size % 16:
            raise UsageError(f"mmdc: the VGG needs input_size divisible by 16, got {input_size}")
        return _Setup(arch, preset_name, input_size, c)

    def _build_model(self, setup: _Setup) -> torch.nn.Module:
        from photocluster.models.resnet_cifar import cifar_resnet18
        from photocluster.models.vgg_small import small_vgg

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            if setup.architecture == "vgg":
                model = small_vgg(int(self.n_clusters), setup.in_channels, setup.input_size, float(self.width))
            else:
                model = cifar_resnet18(int(self.n_clusters), setup.in_channels, bool(self.stem_pool),
                                       width=max(4, int(round(64 * float(self.width)))))
            if self.head_init == "pytorch":
                model.cluster_head.reset_parameters()
        return model

    def _build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        # No weight decay on batch-norm and bias parameters (1-D tensors), as in the authors' code.
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        return torch.optim.SGD(
            [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": float(self.weight_decay)}],
            lr=float(self.lr), momentum=float(self.momentum),
        )

    def _lr_at(self, epoch: int) -> float:
        decayed = int(self.lr_decay_epoch) >= 0 and epoch >= int(self.lr_decay_epoch)
        return float(self.lr) * (float(self.lr_decay_gamma) if decayed else 1.0)

    def _refining(self, epoch: int) -> bool:
        return int(self.refine_from_epoch) >= 0 and epoch >= int(self.refine_from_epoch)

    def _prepare(self, dataset: ImageDataset) -> None:
        """Resolve device, setup, model, optimiser and augmenter (shared by fit, predict and benchmarks)."""
        self._validate(dataset)
        self.device_ = resolve_device(self.device)
        self.setup_ = self._resolve_setup(dataset)
        self.generator_ = torch.Generator().manual_seed(int(self.random_state))
        self.model_ = self._build_model(self.setup_).to(self.device_)
        self._amp = uses_mixed_precision(self.device_)
        if self._amp:
            self.model_ = self.model_.to(memory_format=torch.channels_last)
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self._amp_dtype = None
        self._scaler = torch.amp.GradScaler("cuda", enabled=self._amp and self._amp_dtype == torch.float16)
        self.optimizer_ = self._build_optimizer(self.model_)
        self.augmenter_ = BatchAugmenter(get_preset(self.setup_.preset_name, self.setup_.input_size), self.generator_)
        self.means_ = torch.eye(int(self.n_clusters))

    # -- data ------------------------------------------------------------------------------------
    def _images_to_device(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) numpy → float (B, C, H, W) in [0, 1] on the training device."""
        # writable and contiguous: a slice of the read-only photo memmap is copied here, not shared with torch
        batch = torch.from_numpy(np.require(images, requirements=("C", "W"))).to(self.device_, non_blocking=True)
        return to_float_nchw(batch)

    def _batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self._train_images_device is not None:
            return to_float_nchw(self._train_images_device[indices.to(self._train_images_device.device)])
        rows = self._train_index[indices.numpy()]
        order = np.argsort(rows)  # sorted reads are kinder to a memory-mapped file
        images = self._dataset_images[rows[order]]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return self._images_to_device(images[inverse])

    def _for_net(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self._amp else x

    def _autocast(self):
        if self._amp:
            return torch.autocast(device_type=self.device_.type, dtype=self._amp_dtype)
        return nullcontext()

    # -- one training step each (the step-time benchmark times exactly these) --------------------
    def cluster_step(self, indices: torch.Tensor, reassign: bool = True, extra: torch.Tensor | None = None) -> float:
        """One clustering step on the training images ``indices`` (positions in the training subset):
        fetch the uint8 batch, make the centre and augmented views on the device, then
        :meth:`cluster_model_step`. ``extra``: rows that join the SGD step only (with constraints, see
        :meth:`_extra_draws`). Returns the loss."""
        if extra is not None and len(extra):
            images = self._batch(torch.cat([indices, extra]))
            centre = self.augmenter_.centre_view(images[: len(indices)]) if reassign else None
        else:
            extra = None
            images = self._batch(indices)
            centre = self.augmenter_.centre_view(images) if reassign else None
        augmented = self.augmenter_.train_view(images)
        return self.cluster_model_step(indices, centre, augmented, extra)

    def cluster_model_step(self, indices: torch.Tensor, centre: torch.Tensor | None, augmented: torch.Tensor,
                           extra: torch.Tensor | None = None) -> float:
        """The network's part of a clustering step on ready views: embed the centre view (eval mode),
        re-assign the batch's targets by the Hungarian method (skipped when ``centre`` is None, as in the
        refinement stage), then one SGD step on ‖f(augmented) − target‖². Pinned (constrained) rows keep
        their targets; ``extra`` rows (after ``indices`` in ``augmented``) train on their current targets
        without entering the re-assignment. Returns the loss."""
        if centre is not None:
            self.model_.eval()
            with torch.no_grad(), self._autocast():
                embedded = self.model_(self._for_net(centre)).float()
            embedded = embedded.cpu().numpy()
            free_indices, forbidden = indices, None
            pinned = getattr(self, "_pinned", None)
            if pinned is not None:
                # confirmed clusters keep their group's target: only the other rows' targets are permuted,
                # and a row named in a cannot-link does not take a target of a component held apart from it
                free = ~pinned[indices]
                free_indices, embedded = indices[free], embedded[free.numpy()]
                rows = free_indices.numpy()
                if self._kept_apart[rows].any():
                    component = self.targets_.argmax(dim=1).numpy()
                    forbidden = self._forbidden_components(rows, component)[:, component[rows]]
            if len(free_indices):
                batch_targets = self.targets_[free_indices]
                permutation = hungarian_reassign(embedded, batch_targets.numpy(), forbidden)
                self.targets_[free_indices] = batch_targets[torch.from_numpy(permutation)]
        augmented = self._for_net(augmented)
        if extra is not None:
            indices = torch.cat([indices, extra])
        target = self.targets_[indices].to(self.device_, non_blocking=True)
        return self._sgd_step(lambda: F.mse_loss(self.model_(augmented).float(), target))

    def rotation_step(self, indices: torch.Tensor) -> float:
        """One RotNet step: random crops of the batch, each rotated by 0/90/180/270°, cross-entropy on
        the rotation head over the 4× batch. Returns the loss."""
        images = self._batch(indices)
        rotated, labels = rotate_quarter_turns(self.augmenter_.crop_view(images))
        rotated = self._for_net(rotated)
        return self._sgd_step(lambda: F.cross_entropy(self.model_(rotated, head="rotation").float(), labels))

    def _sgd_step(self, compute_loss) -> float:
        self.model_.train()
        with self._autocast():
            loss = compute_loss()
        self.optimizer_.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(self.optimizer_)
        self._scaler.update()
        return float(loss.detach())

    # -- embeddings --------------------------------------------------------------------------------
    def _embed_steps(
        self, images: np.ndarray | None, cancel: CancelToken, stage: str, head: str = "cluster"
    ) -> Iterator[ProgressEvent | np.ndarray]:
        """Embed images (centre view, eval mode) in batches; yields events and finally the (N, d) array.
        ``images=None`` embeds the training subset."""
        self.model_.eval()
        n = len(self._train_index) if images is None else len(images)
        parts = []
        throttle = Throttle(0.5)
        step = getattr(self, "_embed_batch", _EMBED_BATCH)
        for start in range(0, n, step):
            cancel.raise_if_cancelled()
            stop = min(n, start + step)
            if images is None:
                batch = self._batch(torch.arange(start, stop))
            else:
                batch = self._images_to_device(images[start:stop])
            with torch.no_grad(), self._autocast():
                out = self.model_(self._for_net(self.augmenter_.centre_view(batch)), head=head).float()
            parts.append(out.cpu().numpy())
            if throttle.ready():
                yield ProgressEvent(stage, stop, n, message=f"embedding images ({stop}/{n})")
            if (start // step) % 32 == 31:
                release_read_pages(self._dataset_images if images is None else images)
        release_read_pages(self._dataset_images if images is None else images)
        yield np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, int(self.n_clusters)), np.float32)

    def _embed(self, images: np.ndarray | None, head: str = "cluster") -> np.ndarray:
        result = None
        for item in self._embed_steps(images, NEVER_CANCELLED, "embed", head=head):
            result = item
        assert isinstance(result, np.ndarray)
        return result

    # -- refinement ---------------------------------------------------------------------------------
    def _refine_targets(self, embeddings: np.ndarray, epoch: int) -> float:
        """Reset targets to k-means labels of the embeddings, aligned to the previous assignment.
        Returns the fraction of training images whose cluster changed."""
        from sklearn.cluster import KMeans

        k = int(self.n_clusters)
        kmeans = KMeans(n_clusters=k, n_init=_REFINE_KMEANS_N_INIT, random_state=int(self.random_state) + epoch)
        new_labels = kmeans.fit_predict(embeddings.astype(np.float64))
        previous, _ = nearest_mean(self.targets_.numpy(), self.means_.numpy())
        aligned = align_labels(new_labels, previous, k)
        if getattr(self, "_pinned", None) is not None:
            aligned = self._constrained_kmeans(embeddings, aligned)
        self.targets_ = self.means_[torch.from_numpy(aligned)].clone()
        return float((aligned != previous).mean())

    # -- corrections as constraints ---------------------------------------------------------------
    @staticmethod
    def _training_rows(order: np.ndarray, subset: int, constraints: Constraints | None) -> np.ndarray:
        """The training subset: the first ``subset`` rows of the random ``order`` — after every constrained
        row, when there are constraints (they are the person's labelled examples; more of them than
        ``subset`` all train)."""
        if constraints is None or constraints.is_empty:
            return np.sort(order[:subset])
        must = constraints.constrained_rows()
        free = order[~np.isin(order, must)]
        return np.sort(np.concatenate([must, free[:max(0, subset - len(must))]]))

    def _use_constraints(self, constraints: Constraints | None, n_all: int) -> None:
        """The constraints among the training rows (``_train_constraints``, in training positions) and the
        mask of training rows whose target is pinned (``_pinned``); both None without constraints."""
        self._train_constraints = self._pinned = None
        if constraints is None or constraints.is_empty:
            return
        if constraints.n != n_all:
            raise ValueError(f"constraints cover {constraints.n} photos but the data set has {n_all}")
        position = np.full(n_all, -1, dtype=np.int64)
        position[self._train_index] = np.arange(len(self._train_index))
        if (position[constraints.constrained_rows()] >= 0).all():
            # every constrained row trains (the usual case, see _training_rows): the same groups, renumbered
            train = Constraints(len(self._train_index), constraints.group[self._train_index],
                                constraints.fixed[self._train_index], constraints.apart, constraints.dropped,
                                tuple(position[rows] for rows in constraints.groups()))
        else:  # a checkpoint's training subset drawn without these constraints
            train = constraints.subset(self._train_index)
        if train.is_empty:
            return
        self._train_constraints = train
        groups = train.groups()
        self._anchored = np.array([len(rows) > 1 or train.fixed[rows[0]] >= 0 for rows in groups], dtype=bool)
        pinned = np.zeros(len(self._train_index), dtype=bool)
        for rows in (rows for rows, anchored in zip(groups, self._anchored) if anchored):
            pinned[rows] = True
        self._pinned = torch.from_numpy(pinned)
        self._pinned_positions = torch.from_numpy(np.flatnonzero(pinned))
        self._first_row = np.array([rows[0] for rows in groups], dtype=np.int64)
        self._apart_of: dict[int, list[int]] = {}
        for a, b in train.apart_pairs():
            self._apart_of.setdefault(a, []).append(b)
            self._apart_of.setdefault(b, []).append(a)
        # rows that stay in the re-assignment but must avoid the components of groups apart from them
        self._kept_apart = np.zeros(len(self._train_index), dtype=bool)
        for g in self._apart_of:
            if not self._anchored[g]:
                self._kept_apart[groups[g]] = True

    def _forbidden_components(self, rows: np.ndarray, component: np.ndarray) -> np.ndarray | None:
        """(len(rows), k) bool: the components each unpinned row (training position) may not take because a
        group it must stay apart from holds them (``component``: every training row's current component);
        None when no row of ``rows`` has such a constraint."""
        which = np.flatnonzero(self._kept_apart[rows])
        if not len(which):
            return None
        out = np.zeros((len(rows), int(self.n_clusters)), dtype=bool)
        for i in which:
            out[i, component[self._first_row[self._apart_of[int(self._train_constraints.group[rows[i]])]]]] = True
        return out

    def _choose_group_labels(self, labels: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """One label per constrained group (:meth:`Constraints.group_labels` on ``labels`` / ``scores`` of
        the training rows), where every *anchored* group — a locked cluster, or a must-link group of two
        or more photos (a cluster's core with the photos the person put there, merged cores) — counts as a
        cluster of its own: when there are at most k of them they get different labels by one Hungarian
        assignment on their summed preferences, as MMDC matches images to targets one to one. Without this
        two cores the person saw as different clusters could share a target component from the random
        first epoch on and be trained into one cluster (measured on digits). The remaining groups (photos
        named only in a cannot-link) take their best label that no group they are apart from holds."""
        train = self._train_constraints
        k = int(self.n_clusters)
        groups = train.groups()
        anchored = np.flatnonzero(self._anchored).tolist()
        if len(anchored) > k:  # more anchored groups than clusters: only locked clusters are kept apart
            return train.group_labels(labels, k, scores)
        fixed = np.full(train.n, -1, dtype=np.int64)
        for index, g in enumerate(anchored):
            fixed[groups[g]] = index
        return dataclasses.replace(train, fixed=fixed).group_labels(labels, k, scores)

    def _extra_draws(self, batch: int) -> torch.Tensor | None:
        """⌈share·B⌉ extra rows for a clustering batch of B when there are constraints (``_CONSTRAINED_SHARE``).

        The person's photos are a few percent of the data and would weigh a few percent of the objective:
        these draws make them count more, each seen under fresh augmentations. Each draw first picks a
        component uniformly — the mixture's equal weights — then a constrained row whose target is that
        component, or a free row of it when no group holds it. Drawing constrained rows only starved the
        components no group holds: on digits (seed 2, 5 % corrected) the network left one component
        empty and merged two digits. None without constraints."""
        if self._pinned is None or not len(self._pinned_positions) or _CONSTRAINED_SHARE <= 0:
            return None
        k = int(self.n_clusters)
        component = self.targets_.argmax(dim=1)
        wanted = torch.randint(k, (math.ceil(_CONSTRAINED_SHARE * batch),), generator=self.generator_)
        picks = torch.empty(len(wanted), dtype=torch.int64)
        for c in wanted.unique().tolist():
            slots = (wanted == c).nonzero().view(-1)
            pool = self._pinned_positions[component[self._pinned_positions] == c]
            if not len(pool):
                pool = (component == c).nonzero().view(-1)
            if not len(pool):
                pool = self._pinned_positions
            picks[slots] = pool[torch.randint(len(pool), (len(slots),), generator=self.generator_)]
        return picks

    def _pin_targets(self, group_label: np.ndarray) -> None:
        """Every row of an anchored group g gets the mean of its label ``group_label[g]`` as its target."""
        for rows, label, anchored in zip(self._train_constraints.groups(), group_label, self._anchored):
            if anchored:
                self.targets_[torch.from_numpy(rows)] = self.means_[int(label)]

    def _assign_groups(self) -> np.ndarray:
        """Give each confirmed cluster (anchored group) the label that minimises the objective over its rows,
        Σ‖f(x) − μ_c‖² = Σ (2 − 2 f(x)·μ_c) for unit vectors: the largest summed score f(x)·μ_c, with
        confirmed clusters on different labels (:meth:`_choose_group_labels`). Embeds only their rows (centre
        view, eval mode); pins their targets. Returns the group labels (None without anchored groups)."""
        rows = self._pinned_positions.numpy()
        if not len(rows):
            return None
        means = self.means_.numpy()
        scores = np.zeros((len(self._train_index), means.shape[0]), dtype=np.float64)
        self.model_.eval()
        step = getattr(self, "_embed_batch", _EMBED_BATCH)
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            batch = self._batch(torch.from_numpy(part))
            with torch.no_grad(), self._autocast():
                out = self.model_(self._for_net(self.augmenter_.centre_view(batch))).float()
            scores[part] = out.cpu().numpy() @ means.T
        group_label = self._choose_group_labels(scores.argmax(axis=1), scores)
        self._pin_targets(group_label)
        return group_label

    def _constrained_kmeans(self, embeddings: np.ndarray, labels: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Refinement with constraints: each confirmed cluster (anchored group) takes the label most of its
        rows got from k-means (confirmed clusters on different labels), then Lloyd iterations in which the
        cluster means count those rows with their group's label and only the other rows move to their
        nearest mean — a row named in a cannot-link to the nearest one no group apart from it holds
        (COP-k-means). Returns the labels of all training rows (the new targets' labels)."""
        train = self._train_constraints
        k = int(self.n_clusters)
        x = embeddings.astype(np.float64)
        labels = labels.astype(np.int64).copy()
        group_label = self._choose_group_labels(labels)
        for rows, label, anchored in zip(train.groups(), group_label, self._anchored):
            if anchored:
                labels[rows] = label
        free = np.flatnonzero(~self._pinned.numpy())
        centres = np.stack([x[labels == j].mean(axis=0) if (labels == j).any() else np.zeros(x.shape[1])
                            for j in range(k)])
        for _ in range(iterations):
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(centres)
            np.add.at(sums, labels, x)
            centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
            d2 = (x[free] ** 2).sum(1)[:, None] - 2 * x[free] @ centres.T + (centres ** 2).sum(1)[None, :]
            forbidden = self._forbidden_components(free, labels)
            if forbidden is not None:  # a cannot-linked row avoids the labels held apart from it
                d2 = np.where(forbidden & ~forbidden.all(axis=1, keepdims=True), np.inf, d2)
            moved = d2.argmin(axis=1)
            if np.array_equal(moved, labels[free]):
                break
            labels[free] = moved
        return labels

    # -- checkpoints --------------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return Path(self.checkpoint_dir) / CHECKPOINT_NAME if self.checkpoint_dir else None

    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "params": json.dumps(self.get_params(), default=str, sort_keys=True),
            "model": self.model_.state_dict(),
            "optimizer": self.optimizer_.state_dict(),
            "scaler": self._scaler.state_dict(),
            "targets": self.targets_.clone(),
            "train_index": torch.from_numpy(self._train_index.copy()),
            "epoch": self._epoch,
            "stage": self._stage,
            "position": self._position,
            "order": self._order.clone(),
            "refined": self._refined_epoch,
            "global_step": self._global_step,
            "work_done": self._work_done,
            "rng": self.generator_.get_state(),
            "history": json.dumps(self.history_),
        }

    def _save(self) -> None:
        path = self._checkpoint_path()
        if path is not None:
            save_checkpoint(path, self._state())

    def _restore(self, state: dict[str, Any], n_images: int) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UsageError(f"mmdc: {self._checkpoint_path()} is not an MMDC checkpoint of this version")
        saved = json.loads(state["params"])
        for key in ("n_clusters", "architecture", "augment", "input_size", "width", "stem_pool", "train_subset", "head_init",
                    "random_state", "sigma"):
            if saved.get(key) != json.loads(json.dumps(self.get_params(), default=str)).get(key):
                raise UsageError(f"mmdc: the checkpoint was made with {key}={saved.get(key)!r}, not "
                                 f"{getattr(self, key)!r}; use the same settings to resume")
        train_index = state["train_index"].numpy()
        if train_index.max(initial=-1) >= n_images:
            raise UsageError("mmdc: the checkpoint belongs to a larger data set than the one given")
        self.model_.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self._scaler.load_state_dict(state["scaler"])
        self.targets_ = state["targets"].clone()
        self._train_index = train_index
        self._epoch = int(state["epoch"])
        self._stage = str(state["stage"])
        self._position = int(state["position"])
        self._order = state["order"].clone()
        self._refined_epoch = int(state["refined"])
        self._global_step = int(state["global_step"])
        self._work_done = float(state["work_done"])
        self.generator_.set_state(state["rng"])
        self.history_ = json.loads(state["history"])

    # -- fitting ---------------------------------------------------------------------------------------
    def _batches(self, n: int) -> list[tuple[int, int]]:
        bs = int(self.batch_size)
        bounds = [(s, min(n, s + bs)) for s in range(0, n, bs)]
        # batch norm cannot train on a single image: fold a lone last image into the previous batch
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
            bounds[-2] = (bounds[-2][0], n)
            bounds.pop()
        return bounds

    def _stages(self) -> list[str]:
        # The authors' code runs the rotation pass first in each epoch, then the clustering pass.
        return (["rotation"] if self.rotation else []) + ["cluster"]

    def fit_steps(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                  constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        """Train MMDC on ``dataset`` and label every image; see the module docstring for the algorithm.

        ``constraints`` (a person's corrections, in ``dataset``'s rows) pin the targets of the constrained
        photos on their group's component and weigh them in every batch ("Corrections as constraints" in
        the module docstring); None or empty: the unconstrained algorithm, unchanged.

        Yields
        ------
        ProgressEvent
            At least every half second: stage ("cluster", "rotation", "refine", "embed"), step/total,
            metrics ``loss``, ``epoch``, ``lr``, and an ETA.

        Raises
        ------
        Cancelled
            When ``cancel`` is set; a checkpoint is written first when ``checkpoint_dir`` is given.
        """
        yield ProgressEvent("prepare", 0, None, message="building the network")
        self._prepare(dataset)
        n_all = len(dataset)
        self._dataset_images = dataset.images
        self.history_: list[dict[str, Any]] = []
        path = self._checkpoint_path()
        resumed = False
        if self.resume and path is not None and path.exists():
            self._restore(load_checkpoint(path), n_all)
            resumed = True
        else:
            subset = int(self.train_subset)
            if 0 < subset < n_all:
                self._train_index = self._training_rows(
                    torch.randperm(n_all, generator=self.generator_).numpy(), subset, constraints)
            else:
                self._train_index = np.arange(n_all)
            self.targets_ = sample_gmm_targets(len(self._train_index), int(self.n_clusters), float(self.sigma),
                                               self.generator_)
            self._epoch, self._stage, self._position = 0, self._stages()[0], 0
            self._order = torch.randperm(len(self._train_index), generator=self.generator_)
            self._refined_epoch = -1
            self._global_step = 0
            self._work_done = 0.0
        n_train = len(self._train_index)
        self._use_constraints(constraints, n_all)
        # Benchmark-sized sets live on the device as uint8 (MNIST: 55 MB). A photo library is a memory-mapped
        # array: on a GPU it is copied over once when it fits, but on the CPU it is read batch by batch, so
        # the process's memory is bounded by the model and the batch, not by the number of photos (a copy
        # of 20,000 photos at 96 px would be 550 MB more resident memory).
        on_disk = isinstance(dataset.images, np.memmap)
        # Likewise the labelling passes embed a photo library 128 images at a time on the CPU (512 held 0.3 GB
        # more at the peak, measured on 1,000 photos); benchmark sets keep 512, so their figures reproduce.
        self._embed_batch = _EMBED_BATCH_STREAMED if on_disk and self.device_.type == "cpu" else _EMBED_BATCH
        if dataset.images[:1].nbytes * n_train <= 2 * 2**30 and not (on_disk and self.device_.type == "cpu"):
            self._train_images_device = torch.from_numpy(
                np.ascontiguousarray(dataset.images[self._train_index])).to(self.device_)
        else:
            self._train_images_device = None

        batches = self._batches(n_train)
        epochs = int(self.epochs)
        work_per_epoch = len(batches) * (1.0 + (_ROTATION_STEP_WEIGHT if self.rotation else 0.0))
        total_work = work_per_epoch * epochs
        total_steps = len(batches) * len(self._stages()) * epochs
        start_time, start_work = time.monotonic(), self._work_done
        throttle = Throttle(0.5)
        if resumed:
            yield ProgressEvent("resume", self._global_step, total_steps,
                                message=f"resumed at epoch {self._epoch + 1}, {self._stage} step {self._position}")

        def eta() -> float | None:
            done = self._work_done - start_work
            if done <= 0:
                return None
            return (time.monotonic() - start_time) * (total_work - self._work_done) / done

        def stop_if_cancelled() -> None:
            if cancel.cancelled:
                self._save()
                raise Cancelled("mmdc training cancelled" + (f"; checkpoint in {path}" if path else ""))

        last_loss = float("nan")
        while self._epoch < epochs:
            epoch = self._epoch
            for group in self.optimizer_.param_groups:
                group["lr"] = self._lr_at(epoch)
            refining = self._refining(epoch)
            if refining and self._refined_epoch < epoch:
                yield ProgressEvent("refine", self._global_step, total_steps,
                                    {"epoch": epoch + 1}, message="refinement: k-means on the embeddings",
                                    eta_seconds=eta())
                embeddings = None
                for item in self._embed_steps(None, cancel, "refine"):
                    if isinstance(item, np.ndarray):
                        embeddings = item
                    else:
                        stop_if_cancelled()
                        yield item
                stop_if_cancelled()
                changed = self._refine_targets(embeddings, epoch)
                self._refined_epoch = epoch
                self.history_.append({"epoch": epoch + 1, "stage": "refine", "changed": changed})
                yield ProgressEvent("refine", self._global_step, total_steps,
                                    {"epoch": epoch + 1, "changed": changed},
                                    message=f"refinement moved {changed:.1%} of the images", eta_seconds=eta())
            stages = self._stages()
            while self._stage in stages:
                stage = self._stage
                if stage == "cluster" and self._position == 0 and not refining and self._pinned is not None:
                    # the constrained groups take the labels nearest their embeddings (start of every pass)
                    stop_if_cancelled()
                    self._assign_groups()
                losses = []
                while self._position < len(batches):
                    stop_if_cancelled()
                    lo, hi = batches[self._position]
                    indices = self._order[lo:hi]
                    if stage == "cluster":
                        extra = self._extra_draws(len(indices))
                        last_loss = self.cluster_step(indices, reassign=not refining, extra=extra)
                        self._work_done += 1.0
                    else:
                        last_loss = self.rotation_step(indices)
                        self._work_done += _ROTATION_STEP_WEIGHT
                    if not math.isfinite(last_loss):
                        raise RuntimeError(f"mmdc: the {stage} loss became {last_loss}; try a smaller lr")
                    losses.append(last_loss)
                    self._position += 1
                    self._global_step += 1
                    if self._position % _RELEASE_EVERY_STEPS == 0:
                        # A streamed library's training rows are a random subset spread over the whole file,
                        # and each page fault maps the neighbouring pages too (the kernel's fault-around), so
                        # a stage left alone maps most of the file: 20,000 photos at 96 px peaked at 2.33 GiB
                        # against 1.94 GiB for 5,000 (bench_photo_memory, one epoch). No-op in memory.
                        release_read_pages(self._dataset_images)
                    if path is not None and self._global_step % int(self.checkpoint_every) == 0:
                        self._save()
                    if throttle.ready():
                        yield ProgressEvent(
                            "refine" if (refining and stage == "cluster") else stage, self._global_step,
                            total_steps, {"loss": last_loss, "epoch": epoch + 1, "lr": self._lr_at(epoch)},
                            eta_seconds=eta(),
                        )
                self.history_.append({"epoch": epoch + 1, "stage": stage, "loss": float(np.mean(losses))})
                # next stage of this epoch (or the next epoch), with a fresh shuffle as a DataLoader would
                following = stages.index(stage) + 1
                self._position = 0
                self._order = torch.randperm(n_train, generator=self.generator_)
                release_read_pages(self._dataset_images)  # a streamed library keeps no page it read
                if following < len(stages):
                    self._stage = stages[following]
                else:
                    self._stage = stages[0]
                    self._epoch += 1
                    break
            if path is not None:
                self._save()

        # Label every image of the data set (the training subset may be smaller).
        embeddings = None
        for item in self._embed_steps(dataset.images, cancel, "embed"):
            if isinstance(item, np.ndarray):
                embeddings = item
            else:
                stop_if_cancelled()
                yield item
        labels, distance = nearest_mean(embeddings, self.means_.numpy())
        self.embeddings_ = embeddings
        self.labels_ = labels
        self.confidence_ = (1.0 - distance / 2.0).astype(np.float32)
        self._keep_constraints(constraints, scores=embeddings @ self.means_.numpy().T)
        self.n_iter_ = self._global_step
        self._train_images_device = None
        self._pinned = self._train_constraints = None
        self._dataset_images = None
        yield ProgressEvent("done", total_steps, total_steps, {"loss": last_loss}, eta_seconds=0.0)

    # -- after fitting -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("mmdc: call fit() before predict()")

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Label new uint8 images (N, H, W, C) of the training images' shape: nearest mean of their
        centre-view embedding."""
        self._check_fitted()
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        labels, _ = nearest_mean(self._embed(images), self.means_.numpy())
        return labels

    def transform_features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate-layer features of new images (for k-means / linear evaluation, paper Table IV)."""
        self._check_fitted()
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        return self._embed(images, head="features")

    # -- benchmark support ---------------------------------------------------------------------------
    def prepare_for_benchmark(self, dataset: ImageDataset) -> None:
        """Set up model, optimiser, targets and device-resident images without training, so that
        :meth:`cluster_step` and :meth:`rotation_step` can be timed on their own."""
        self._prepare(dataset)
        self._dataset_images = dataset.images
        self._train_index = np.arange(len(dataset))
        self.targets_ = sample_gmm_targets(len(dataset), int(self.n_clusters), float(self.sigma), self.generator_)
        self._train_images_device = torch.from_numpy(np.ascontiguousarray(dataset.images)).to(self.device_)
        self._pinned = self._train_constraints = None
