"""DAC — Deep Adaptive Image Clustering (Chang et al., ICCV 2017), and its ablation DAC*.

The method, as in the paper (seed 000) and ../shared/PAPERS.md:

* a ConvNet (:class:`~photocluster.models.dac_net.DACNet`) ends in the *restraint layer*, so every image gets
  a non-negative unit-norm *label feature* ``l_i`` in R^k, and ``l_i · l_j`` estimates "same cluster";
* training repeats passes over the data in *selection batches* of m = 1,000 images; in each batch the pairs
  with ``l_i · l_j >= u(λ)`` are labelled similar (r = 1), those with ``l_i · l_j < l(λ)`` dissimilar (r = 0),
  the rest are left out; the network is trained with binary cross-entropy on the selected pairs only;
* after each pass ``λ += η`` with ``u(λ) = 0.95 − λ`` and ``l(λ) = 0.455 + 0.1 λ``; training stops as soon as
  ``l(λ) > u(λ)``. With η = 0.009 that is λ > 0.45, i.e. after **51 passes** (λ = 0, 0.009, ..., 0.45; the
  last pass has u = l = 0.5, where every pair is selected);
* cluster = argmax of the label feature.

**DAC*** (``dac-star``) labels *every* pair with one threshold ``t(λ) = 0.95 − λ`` that anneals to 0.5 over
the same passes (r = 1 iff ``l_i · l_j >= t``).

Choices and deviations, all documented as parameters:

* ``selection_bn="batch"`` (default): the selection features are computed with batch-norm *batch*
  statistics under ``no_grad`` (running statistics untouched). With freshly initialised running statistics,
  eval-mode features of a new network are all identical, every pair looks similar and training collapses
  (measured in PAPERS.md: ACC 0.14); the authors' Keras code used batch statistics everywhere (BN mode 2).
  ``"running"`` reproduces the trap.
* ``self_consistency_weight``: the authors' code adds an unreported term, BCE between the current output and
  the output before the update (weight 10 on STL-10). Here the "before" output is the label feature computed
  for the selection at the start of the selection batch. Default 0 = the paper.
* ``rmsprop_alpha`` (0.9): the paper names no optimiser; the authors' code uses Keras' ``RMSprop(0.001)``,
  whose squared-gradient average decays with rho = 0.9. PyTorch's RMSprop defaults to 0.99, which is not
  theirs and matters most early on: both start the average at zero, so the first steps move each weight by
  about lr / sqrt(1 − alpha) — 3.2 × lr with 0.9, 10 × lr with 0.99 — for the first few hundred steps
  instead of a few dozen. Until 2026-12-02 DAC ran with PyTorch's 0.99.
* ``minibatch`` and ``passes_per_batch``: the paper does not give them; the defaults (32 and 10) follow the
  authors' code as summarised in PAPERS.md. The loss of a mini-batch covers the selected pairs among its
  images (diagonal excluded), with the targets chosen on the whole selection batch.
* After training, batch-norm running statistics are re-estimated on (a sample of) the data with the final
  weights, then labels are inferred in eval mode, so ``predict`` on one image gives the same answer as on a
  batch.
* ``loss`` and ``upper_start``: the authors' released code differs from the paper. Their MNIST script
  (MNIST/mnist.py in github.com/vector-1127/DAC) labels *every* pair with one threshold, as DAC* does,
  starting at 0.9 and lowered by 0.02 per pass for 20 passes; it trains with the mean squared error between
  ``r_ij`` and ``l_i · l_j`` instead of the paper's binary cross-entropy, in mini-batches of 128, 5 passes
  over each 1,000-image selection batch (its log reaches ACC 0.956 after the first pass). Their STL-10
  script also uses one threshold (0.99 down to 0.5 over 75 passes), with BCE and the self-consistency term.
  ``dac-star -p loss=mse -p upper_start=0.9 -p lambda_step=0.02 -p minibatch=128 -p passes_per_batch=5``
  runs the MNIST script's recipe; the defaults (``bce``, 0.95) are the paper's.
* ``small_input``: how grey images smaller than the 28-px network's input are presented to it. ``fill``
  upsamples them to the whole 28x28 frame; ``frame`` scales them into a 20x20 box centred on a black 28x28
  frame, MNIST's own format (:func:`~photocluster.models.dac_net.frame_to_network` says why it can matter).
  Neither the paper nor the authors' code had such images (their smallest set is MNIST itself). ``frame``
  won on a digits stand-in made from MNIST (``scripts/dac_small_input_check.py``) but lost on digits itself
  (quick protocol, 3 seeds: 0.562 against 0.638, docs/methods/dac.md), so ``fill`` stays the default.
* ``cuda_graph`` (off by default, CUDA only): replay each training step from a captured CUDA graph
  (:mod:`photocluster.cuda_graph`). The same arithmetic; it only removes the host's cost of launching the
  step's ~220 operator calls one by one, which bounds this small network's step on a GPU.
* ``memory_format`` (``auto``: channels_last on a GPU, as before; contiguous elsewhere): ``channels_last``
  on a CPU runs the same arithmetic through oneDNN's faster kernels (96-px net, one thread: a training step
  77 against 106 ms an image, a forward pass 17 against 36 ms), with other rounding. The fast photo preset
  uses it; the protocols leave it at ``auto`` so that recorded results still reproduce.
* ``embeddings_`` are the label features (k-dimensional, the space the method clusters in);
  ``confidence_`` is the largest entry of the label feature (1 for a one-hot feature, 1/sqrt(k) at worst).

**A person's corrections** (``fit_steps(..., constraints=...)``, issue 18). DAC's objective (Eq. 10) is a
binary classification of pairs, trained on the pairs it is surest about (Eq. 6–8): r = 1 for "same
cluster", r = 0 for "different". A person's must-link and cannot-link are the surest pairs there are, so in
every selection batch of every pass the must-link pairs among its images are selected as similar (r = 1) and
the cannot-link pairs as dissimilar (r = 0), whatever u(λ) and l(λ) say and over the network's own choice
for that pair. So that those pairs are seen at all (:class:`_ConstraintPlan`):

* every constrained image is in every pass (in place of a free one when the pass is capped, as the fast
  photo preset caps it at 2,000);
* the images that constraints tie together (a must-link group and the groups it must stay apart from) go
  into one selection batch;
* the loss only sees pairs inside a mini-batch, so the constrained images are dealt over the mini-batches in
  blocks of up to four of one group, blocks of different groups side by side (at most half a mini-batch);
* with ``constraint_weight`` w (default 1) a constrained pair weighs max(1, w · S / C) in a mini-batch with S
  threshold-selected and C constrained pairs: the person's pairs together count as much as the network's own
  (equal weights would leave them under 1 % of a mini-batch's pairs); ``0`` = each counts as one selected
  pair, i.e. they merely join the selected sets.

The photos that look like a moved one are meant to follow through the threshold-selected pairs they form with
it. At the end every group is put on one label (:meth:`ClusteringMethod._keep_constraints`, ranked by the
label features). Without constraints (None or empty) nothing of this runs: the same labels for a seed as
before. Measured (docs/methods/dac.md, "Corrections as constraints"): on digits the re-run's ACC moves by
±0.1 for any change at all — a two-image constraint that says nothing new moved it by +0.08, +0.05 and
−0.10 on seeds 0–2 — and 1–5 % corrections do not beat the unconstrained re-run on every seed.

Determinism: the model's initial weights, the order of the images, mini-batches and augmentation all come
from generators seeded by ``random_state``. On the CPU, PyTorch's convolutions give the same result run to
run with the same thread count; a different thread count or a GPU can change the last bits and therefore,
over many steps, the result.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from photocluster.checkpoints import load_checkpoint, save_checkpoint
from photocluster.cuda_graph import GraphedStep, set_capturable
from photocluster.data.augment import PRESETS, apply_affine, get_preset, preset_for_dataset, random_affine_matrices
from photocluster.data.dataset import ImageDataset
from photocluster.devices import resolve_device, uses_mixed_precision
from photocluster.errors import UsageError
from photocluster.methods.constraints import Constraints
from photocluster.methods.base import ClusteringMethod, ParamSpec, register
from photocluster.models.dac_net import DACNet, frame_to_network, network_input_size, resize_to_network
from photocluster.progress import NEVER_CANCELLED, CancelToken, Cancelled, EtaEstimator, ProgressEvent, Throttle

#: floating-point slack in the stop rule, so that accumulated λ = 50 × 0.009 counts as exactly 0.45
_SCHEDULE_TOLERANCE = 1e-9
#: values of the ``small_input`` parameter
SMALL_INPUT_MODES = ("fill", "frame")
#: values of the ``memory_format`` parameter
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
#: keep the whole data set as one uint8 tensor on the device below this size (bytes)
_PRELOAD_LIMIT = 2 * 2**30


# -- the pieces of the algorithm, as plain functions (unit-tested one by one) ---------------------------
def dac_thresholds(lam: float, upper_start: float = 0.95) -> tuple[float, float]:
    """The paper's ``(u(λ), l(λ)) = (0.95 − λ, 0.455 + 0.1 λ)``; ``upper_start`` replaces the 0.95."""
    return upper_start - lam, 0.455 + 0.1 * lam


def dac_finished(lam: float, upper_start: float = 0.95) -> bool:
    """DAC's stop rule: ``l(λ) > u(λ)``."""
    upper, lower = dac_thresholds(lam, upper_start)
    return lower - upper > _SCHEDULE_TOLERANCE


def dac_star_thresholds(lam: float, start: float = 0.95) -> tuple[float, float]:
    """DAC*'s single annealed threshold ``t = 0.95 − λ`` (returned twice: every pair is labelled);
    ``start`` replaces the 0.95."""
    threshold = start - lam
    return threshold, threshold


def dac_star_finished(lam: float, start: float = 0.95) -> bool:
    """DAC* stops once the threshold would go below 0.5 — from 0.95 the same pass as DAC (λ > 0.45)."""
    return start - lam < 0.5 - _SCHEDULE_TOLERANCE


def count_passes(lambda_step: float, finished=dac_finished) -> int:
    """Number of passes the schedule runs: the first n with ``finished(n · η)`` (λ after n passes)."""
    if lambda_step <= 0:
        raise ValueError("lambda_step must be positive")
    passes = 0
    while not finished(passes * lambda_step):
        passes += 1
    return passes


def select_pairs(
    similarity: torch.Tensor, upper: float, lower: float, exclude_diagonal: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's Eq. (6)–(8): targets ``r`` and the indicator ``v`` of the selected pairs.

    Parameters
    ----------
    similarity:
        (n, n) matrix of ``l_i · l_j``.
    upper, lower:
        ``u(λ)`` and ``l(λ)``: ``r = 1`` where ``similarity >= upper``, ``r = 0`` where ``similarity < lower``.
        When ``upper <= lower`` (DAC*), every pair is selected and ``r = [similarity >= upper]``.
    exclude_diagonal:
        Leave out ``i == j`` (``l_i · l_i = 1`` always: a pair that teaches nothing).

    Returns
    -------
    targets, mask:
        float tensor of ``r`` (0 where not selected) and bool tensor ``v``.
    """
    positive = similarity >= upper
    negative = similarity < lower
    if upper <= lower:  # one threshold: a pair is either similar or dissimilar
        negative = ~positive
    mask = positive | negative
    if exclude_diagonal:
        mask &= ~torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    return (positive & mask).float(), mask


def pairwise_bce(features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between ``r_ij`` and ``l_i · l_j`` over the selected pairs (Eq. 10).

    ``mask`` is the bool indicator ``v`` or float pair weights (a weighted mean: a person's constrained
    pairs, :class:`_ConstraintPlan`). Returns 0 (with a gradient path) when no pair is selected.
    """
    similarity = (features @ features.T).clamp(1e-7, 1 - 1e-7)
    losses = F.binary_cross_entropy(similarity, targets, reduction="none")
    selected = mask.float()
    return (losses * selected).sum() / selected.sum().clamp_min(1.0)


def pairwise_mse(features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``r_ij`` and ``l_i · l_j`` over the selected pairs — the loss of the
    authors' released MNIST code (``myLoss``), not of the paper. Bounded, so a confidently wrong pair pulls
    no harder than a merely wrong one (BCE's gradient grows without bound as ``l_i · l_j`` nears the wrong
    end: 0 for a pair labelled similar, 1 for one labelled dissimilar)."""
    losses = (features @ features.T - targets) ** 2
    selected = mask.float()
    return (losses * selected).sum() / selected.sum().clamp_min(1.0)


#: pair losses by the ``loss`` parameter's value
PAIR_LOSSES = {"bce": pairwise_bce, "mse": pairwise_mse}


@dataclass(frozen=True)
class PairSelection:
    """What one selection batch chose: handed to :attr:`DAC.pair_observer` right after the selection."""

    pass_index: int  #: 0-based pass
    upper: float  #: u(λ) of the pass
    lower: float  #: l(λ) of the pass
    indices: np.ndarray  #: the selection batch's images (indices into the data set)
    features: torch.Tensor  #: their label features at selection time, (n, k), on the training device
    targets: torch.Tensor  #: r, (n, n)
    mask: torch.Tensor  #: v, (n, n) bool: the selected pairs


class _ConstraintPlan:
    """How one fit uses a person's corrections (:class:`~photocluster.methods.constraints.Constraints`).

    * ``rows``: every constrained row; :meth:`DAC._pass_images` puts all of them in every pass.
    * *units*: the groups linked by cannot-links (a moved photo's group and the groups it must stay apart
      from) form one unit; :meth:`gather` puts each unit into one selection batch, so that its must-link and
      cannot-link pairs are among the batch's pairs.
    * :meth:`impose`: must-link pairs among a selection batch's rows become similar pairs (r = 1) and
      cannot-link pairs dissimilar ones (r = 0), selected whatever the thresholds say.
    * :meth:`minibatch_order`: the loss only sees pairs inside one mini-batch, so the constrained rows are
      dealt out over the mini-batches in small blocks of one group each, blocks of different groups side
      by side: every mini-batch holds must-link pairs, and cannot-link pairs where apart groups meet.
    * :meth:`weigh`: each constrained pair weighs ``max(1, w · S / C)`` in a mini-batch with S
      threshold-selected and C constrained pairs (``w`` = ``constraint_weight``), so that the person's
      pairs together count ``w`` times as much as the network's own.
    """

    #: rows of one group placed side by side in a mini-batch
    BLOCK = 4

    def __init__(self, constraints: Constraints, weight: float) -> None:
        self.group = np.asarray(constraints.group, dtype=np.int64)
        self.rows = constraints.constrained_rows()
        self.weight = float(weight)
        n_groups = constraints.n_groups
        pairs = sorted(constraints.apart_pairs())
        self.apart = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        parent = list(range(n_groups))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in pairs:
            parent[find(a)] = find(b)
        roots = np.array([find(g) for g in range(n_groups)], dtype=np.int64)
        self.unit = np.full(len(self.group), -1, dtype=np.int64)
        self.unit[self.rows] = roots[self.group[self.rows]]

    def impose(self, chunk: np.ndarray, targets: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``targets`` and ``mask`` of a selection batch with its constrained pairs set (diagonal excluded),
        and the (n, n) bool matrix of those pairs."""
        groups = self.group[chunk]
        inside = groups >= 0
        local_groups, local = np.unique(groups[inside], return_inverse=True)
        index = np.full(len(chunk), len(local_groups), dtype=np.int64)  # the extra index: no group
        index[inside] = local
        same = np.zeros((len(local_groups) + 1,) * 2, dtype=bool)
        same[np.arange(len(local_groups)), np.arange(len(local_groups))] = True
        apart = np.zeros_like(same)
        if len(self.apart) and len(local_groups):
            both = np.isin(self.apart, local_groups).all(axis=1)
            a = np.searchsorted(local_groups, self.apart[both, 0])
            b = np.searchsorted(local_groups, self.apart[both, 1])
            apart[a, b] = apart[b, a] = True
        position = torch.from_numpy(index).to(targets.device)
        must = torch.from_numpy(same).to(targets.device)[position][:, position]
        must.fill_diagonal_(False)
        cannot = torch.from_numpy(apart).to(targets.device)[position][:, position]
        targets = targets.masked_fill(must, 1.0).masked_fill(cannot, 0.0)
        forced = must | cannot
        return targets, mask | forced, forced

    def weigh(self, mask: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
        """A mini-batch's float pair weights: 1 for a threshold-selected pair, ``max(1, w · S / C)`` for a
        constrained one, 0 elsewhere (no host synchronisation)."""
        count = forced.sum()
        selected = (mask & ~forced).sum()
        each = (self.weight * selected / count.clamp_min(1)).clamp_min(1.0)
        return torch.where(forced, each, mask.float())

    def gather(self, order: np.ndarray, sizes: list[int], rng: np.random.Generator) -> list[np.ndarray]:
        """Selection batches of ``sizes`` from ``order`` with every unit of at most half a batch inside one
        batch (each to the batch with the most room left; larger units spread like free rows)."""
        units = self.unit[order]
        unit_ids = np.unique(units[units >= 0])
        room = np.asarray(sizes, dtype=np.int64).copy()
        limit = min(sizes) // 2
        placed: list[list[np.ndarray]] = [[] for _ in sizes]
        taken = np.zeros(len(order), dtype=bool)
        for unit in unit_ids[rng.permutation(len(unit_ids))]:
            where = np.flatnonzero(units == unit)
            target = int(np.argmax(room))
            if len(where) > limit or len(where) > room[target]:
                continue
            placed[target].append(order[where])
            room[target] -= len(where)
            taken[where] = True
        free, start = order[~taken], 0
        chunks = []
        for size, batch in zip(sizes, placed):
            held = np.concatenate(batch) if batch else np.zeros(0, dtype=order.dtype)
            chunk = np.concatenate([held, free[start : start + size - len(held)]])
            start += size - len(held)
            chunks.append(chunk[rng.permutation(len(chunk))])
        return chunks

    def minibatch_order(self, chunk: np.ndarray, rng: np.random.Generator, sizes: list[int]) -> np.ndarray:
        """A random order of the positions ``0 … len(chunk)-1`` for mini-batches of ``sizes``: the groups'
        rows cut into blocks of up to :attr:`BLOCK` and dealt in turn to the mini-batch holding the fewest
        constrained rows (blocks taken group by group in turn, so neighbouring blocks come from different
        groups), at most half of each mini-batch; free rows fill the rest."""
        groups = self.group[chunk]
        per_group = []
        for g in rng.permutation(np.unique(groups[groups >= 0])):
            rows = np.flatnonzero(groups == g)
            rows = rows[rng.permutation(len(rows))]
            if len(rows) > 1:
                per_group.append([rows[s : s + self.BLOCK] for s in range(0, len(rows), self.BLOCK)])
            else:
                per_group.append([rows])
        blocks = [group[i] for i in range(max((len(b) for b in per_group), default=0))
                  for group in per_group if i < len(group)]
        held: list[list[np.ndarray]] = [[] for _ in sizes]
        count = np.zeros(len(sizes), dtype=np.int64)
        limit = np.asarray(sizes, dtype=np.int64) // 2
        for block in blocks:  # a block that finds no room stays with the free rows
            fits = np.flatnonzero(count + len(block) <= limit)
            if not len(fits):
                continue
            slot = int(fits[np.argmin(count[fits])])
            held[slot].append(block)
            count[slot] += len(block)
        taken = np.concatenate([np.concatenate(h) for h in held if h] or [np.zeros(0, dtype=np.int64)])
        free = np.setdiff1d(np.arange(len(chunk)), taken)
        free = free[rng.permutation(len(free))]
        order, start = [], 0
        for size, h in zip(sizes, held):
            part = np.concatenate([*h, free[start : start + size - int(sum(len(b) for b in h))]])
            start += size - int(sum(len(b) for b in h))
            order.append(part[rng.permutation(len(part))])
        return np.concatenate(order)


@contextmanager
def _frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """Train-mode batch norm (batch statistics) that leaves the running statistics untouched.

    Momentum 0 makes the running-average update a no-op, so selection and inference passes do not leak
    un-augmented statistics into the training state.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved.append((module, module.momentum, module.num_batches_tracked.clone()))
            module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum, tracked in saved:
            module.momentum = momentum
            module.num_batches_tracked.copy_(tracked)


@register
class DAC(ClusteringMethod):
    """Deep Adaptive Clustering: pairwise classification with adaptively selected pairs."""

    name = "dac"
    description = (
        "Deep Adaptive Clustering: a ConvNet trained from scratch to say whether two images belong together, "
        "on pairs it is confident about, widening the selection each pass; cluster = argmax label feature."
    )
    paper = "Chang et al., Deep Adaptive Image Clustering, ICCV 2017"
    family = "deep"
    #: seconds between progress events (tests set 0 to see every step)
    event_interval: float = 0.5
    #: called with a :class:`PairSelection` after each selection batch's pairs are chosen. Training never
    #: reads labels; the benchmark runner sets this to score how many selected pairs are right
    #: (:mod:`photocluster.benchmarks.selection_quality`), the quantity DAC's premise rests on.
    pair_observer: Callable[[PairSelection], None] | None = None

    def __init__(
        self,
        n_clusters: int = 10,
        random_state: int = 0,
        device: str = "auto",
        selection_batch: int = 1000,
        minibatch: int = 32,
        passes_per_batch: int = 10,
        lr: float = 0.001,
        rmsprop_alpha: float = 0.9,
        lambda_step: float = 0.009,
        upper_start: float = 0.95,
        loss: str = "bce",
        max_passes: int = 0,
        n_images_per_pass: int = 0,
        train_subset: int = 0,
        augment: str = "auto",
        small_input: str = "fill",
        selection_bn: str = "batch",
        self_consistency_weight: float = 0.0,
        bn_recalibration_images: int = 10000,
        inference_batch: int = 500,
        memory_format: str = "auto",
        constraint_weight: float = 1.0,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 500,
        resume: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.device = device
        self.selection_batch = selection_batch
        self.minibatch = minibatch
        self.passes_per_batch = passes_per_batch
        self.lr = lr
        self.rmsprop_alpha = rmsprop_alpha
        self.lambda_step = lambda_step
        self.upper_start = upper_start
        self.loss = loss
        self.max_passes = max_passes
        self.n_images_per_pass = n_images_per_pass
        self.train_subset = train_subset
        self.augment = augment
        self.small_input = small_input
        self.selection_bn = selection_bn
        self.self_consistency_weight = self_consistency_weight
        self.bn_recalibration_images = bn_recalibration_images
        self.inference_batch = inference_batch
        self.memory_format = memory_format
        self.constraint_weight = constraint_weight
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.cuda_graph = cuda_graph

    # -- schedule (DAC* overrides) -------------------------------------------------------------------
    def thresholds(self, lam: float) -> tuple[float, float]:
        """``(upper, lower)`` at ``λ``."""
        return dac_thresholds(lam, float(self.upper_start))

    def finished(self, lam: float) -> bool:
        return dac_finished(lam, float(self.upper_start))

    def planned_passes(self) -> int:
        """Passes this configuration runs: the schedule's, capped by ``max_passes`` when that is > 0."""
        passes = count_passes(float(self.lambda_step), self.finished)
        return min(passes, int(self.max_passes)) if self.max_passes and self.max_passes > 0 else passes

    # -- user-facing descriptions ---------------------------------------------------------------------
    @classmethod
    def parameter_specs(cls) -> list[ParamSpec]:
        return [
            ParamSpec("n_clusters", int, 10, "number of clusters k (length of the label feature)", minimum=2),
            ParamSpec("random_state", int, 0, "seed of weights, image order and augmentation"),
            ParamSpec("device", str, "auto", "auto = CUDA, then Apple MPS, then CPU", ("auto", "cpu", "cuda", "mps")),
            ParamSpec("selection_batch", int, 1000, "m: images among which pairs are selected", minimum=2),
            ParamSpec("minibatch", int, 32, "images per gradient step inside a selection batch", minimum=2),
            ParamSpec("passes_per_batch", int, 10, "training passes over each selection batch (authors' code: 10)", minimum=1),
            ParamSpec("lr", float, 0.001, "RMSprop learning rate", minimum=0.0),
            ParamSpec("rmsprop_alpha", float, 0.9, "RMSprop's decay of the squared-gradient average (Keras' rho): "
                      "0.9 as in the authors' Keras code; PyTorch's own default is 0.99", minimum=0.0),
            ParamSpec("lambda_step", float, 0.009, "η: λ grows by this after each pass (0.009 → 51 passes)", minimum=1e-6),
            ParamSpec("upper_start", float, 0.95, "u(0), the first pass's similar threshold (paper 0.95; the "
                      "authors' MNIST code starts its single threshold at 0.9)", minimum=0.5),
            ParamSpec("loss", str, "bce", "pair loss: bce = the paper's Eq. 10; mse = the authors' MNIST code",
                      tuple(PAIR_LOSSES)),
            ParamSpec("max_passes", int, 0, "stop after this many passes (0 = the schedule's own stop)", minimum=0),
            ParamSpec("n_images_per_pass", int, 0, "random images per pass (0 = all)", minimum=0),
            ParamSpec("train_subset", int, 0, "train on one fixed random subset of this many images, every pass "
                      "(0 = all); every image is labelled at the end", minimum=0),
            ParamSpec("augment", str, "auto", "augmentation preset", ("auto", *PRESETS)),
            ParamSpec("small_input", str, "fill", "grey images under 28 px: fill = upsample to the whole 28x28 "
                      "input; frame = into a 20x20 box centred on a black 28x28 frame (MNIST's format)",
                      SMALL_INPUT_MODES),
            ParamSpec("selection_bn", str, "batch", "batch-norm statistics for pair selection", ("batch", "running")),
            ParamSpec("self_consistency_weight", float, 0.0, "authors' code's unreported term (0 = paper)", minimum=0.0),
            ParamSpec("bn_recalibration_images", int, 10000, "images used to re-estimate BN statistics after training", minimum=0),
            ParamSpec("inference_batch", int, 500, "images per batch when labelling", minimum=1),
            ParamSpec("memory_format", str, "auto", "layout of images and activations: auto = channels_last on a "
                      "GPU, contiguous elsewhere; channels_last on a CPU trains the 96-px net ~1.4x and labels ~2x "
                      "faster (the same arithmetic, other rounding)", MEMORY_FORMATS),
            ParamSpec("constraint_weight", float, 1.0, "with a person's corrections: how much their pairs weigh "
                      "in a mini-batch's loss against the threshold-selected ones together (each at least as much "
                      "as one selected pair; 0 = exactly that)", minimum=0.0),
            ParamSpec("checkpoint_dir", str, None, "folder for checkpoints (none = no checkpoints)"),
            ParamSpec("checkpoint_every", int, 500, "write a checkpoint every N training steps", minimum=0),
            ParamSpec("resume", bool, False, "continue from the checkpoint in checkpoint_dir"),
            ParamSpec("cuda_graph", bool, False, "CUDA only (ignored elsewhere): replay each training step from a "
                      "captured CUDA graph; a step of this small net is bound by launching its kernels"),
        ]

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        """``paper``: the full schedule (all images, 51 passes, mini-batch 32, 10 passes per selection
        batch — meant for a GPU). ``quick``: the same algorithm cut to a CPU budget: 6 passes of at most
        20,000 random images with the paper's thresholds and η, one pass over each 1,000-image selection
        batch in mini-batches of 100. Sets under 5,000 images (digits) run 3 passes and go over each
        selection batch 3 times instead, since one pass over them is only a few dozen steps.

        Measured on MNIST (seed 0, 2-core CPU): 3 passes gave ACC 0.80 (20 min under load, one thread);
        6 passes gave ACC 0.954 in 15.5 min (two threads; a test run shared the CPU for 5 of them). The
        pass count was raised after seeing those two figures — it is the paper's own schedule run further,
        not a new setting, but the choice was not blind to the labels. The schedule still stops long before the thresholds meet."""
        if protocol == "paper":
            return {}
        if protocol != "quick":
            raise ValueError(f"unknown protocol {protocol!r}; choose quick or paper")
        n_images = len(dataset)
        return {
            "n_images_per_pass": min(n_images, 20000),
            "max_passes": 6 if n_images > 5000 else 3,
            "minibatch": 100,
            "passes_per_batch": 1 if n_images > 5000 else 3,
            "bn_recalibration_images": 5000,
        }

    @classmethod
    def photo_preset(cls, preset: str, dataset: ImageDataset) -> dict[str, Any]:
        """Photo folders. The constructor's defaults are the paper's schedule (all images, 51 passes: 31,620
        steps on 1,954 photos, its first pair selection alone 2 minutes on a CPU). fast: 3 passes of at most
        2,000 random photos (small folders: 2 passes over each selection batch) in the paper's mini-batches of
        32, labelled 64 at a time, channels_last; thorough: the quick benchmark protocol (6 passes of at most
        20,000 photos).

        The fast preset's memory is the training mini-batch's activations (96 px, one thread: +2.2 GB for
        100 photos, +0.7 GB for 32) and the labelling batch's (+3.2 GB for 500, +0.4 GB for 100). On the 200
        shared photos (one thread) it was 231 s and 3.31 GB with mini-batches of 100, 3 passes over each
        selection batch and contiguous tensors; now 95 s and 2.00 GiB (bench_photo_presets), and the folder
        mode end to end, calibration included, 144 s with a 1.84 GiB peak (/usr/bin/time). Its ACC
        there, seeds 0–2: 0.355 / 0.35 / 0.30 against 0.395 / 0.40 / 0.38 before (3 passes over each batch
        gave 0.355 / 0.395 / 0.35 in 117 s; docs/methods/dac.md)."""
        if preset != "fast":
            return super().photo_preset(preset, dataset)
        n = len(dataset)
        return {"n_images_per_pass": min(n, 2000), "max_passes": 3, "minibatch": 32, "inference_batch": 64,
                "passes_per_batch": 2 if n <= 2000 else 1, "bn_recalibration_images": 2000,
                "memory_format": "channels_last"}

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        return {
            "quick": "6 passes of ≤20,000 random images at the paper's thresholds (λ step 0.009), m = 1,000, "
            "mini-batch 100, 1 pass per selection batch (sets under 5,000 images: 3 passes, 3 per selection "
            "batch), RMSprop 1e-3",
            "paper": "all images, λ step 0.009 until l(λ) > u(λ) (51 passes), m = 1,000, mini-batch 32, "
            "10 passes per selection batch, RMSprop 1e-3 (GPU)",
        }

    @classmethod
    def smoke_params(cls) -> dict[str, Any]:
        return {
            "n_images_per_pass": 400,
            "selection_batch": 200,
            "minibatch": 50,
            # 3 passes over each selection batch (18 steps in all on 150 images): with RMSprop's 0.9 decay the
            # first steps are 3x smaller than with PyTorch's 0.99, and 6 steps left the contract test's
            # synthetic families at ACC 0.53 (seed 0); 18 give 0.74-0.99 for dac and dac-star, grey and RGB
            "passes_per_batch": 3,
            "lambda_step": 0.15,
            "max_passes": 2,
            "bn_recalibration_images": 400,
        }

    # -- setup ----------------------------------------------------------------------------------------
    def _validate(self, dataset: ImageDataset) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise UsageError(f"{self.name}: {message}")

        need(isinstance(self.n_clusters, (int, np.integer)) and self.n_clusters >= 2, f"n_clusters must be an integer ≥ 2, got {self.n_clusters!r}")
        need(len(dataset) >= max(2, int(self.n_clusters)), f"needs at least n_clusters={self.n_clusters} images, got {len(dataset)}")
        need(int(self.selection_batch) >= 2, "selection_batch must be at least 2")
        need(int(self.minibatch) >= 2, "minibatch must be at least 2")
        need(int(self.passes_per_batch) >= 1, "passes_per_batch must be at least 1")
        need(float(self.lr) > 0, "lr must be positive")
        need(0 <= float(self.rmsprop_alpha) < 1, f"rmsprop_alpha must be in [0, 1), got {self.rmsprop_alpha!r}")
        need(float(self.lambda_step) > 0, "lambda_step must be positive")
        need(int(self.max_passes) >= 0 and int(self.n_images_per_pass) >= 0 and int(self.train_subset) >= 0,
             "max_passes, n_images_per_pass and train_subset must be ≥ 0")
        need(self.loss in PAIR_LOSSES, f"loss must be one of {', '.join(PAIR_LOSSES)}, got {self.loss!r}")
        need(0.5 <= float(self.upper_start) <= 1.0, f"upper_start must be in [0.5, 1], got {self.upper_start!r}")
        need(self.selection_bn in ("batch", "running"), f"selection_bn must be 'batch' or 'running', got {self.selection_bn!r}")
        need(self.memory_format in MEMORY_FORMATS, f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}")
        need(self.small_input in SMALL_INPUT_MODES, f"small_input must be one of {', '.join(SMALL_INPUT_MODES)}, got {self.small_input!r}")
        need(self.augment == "auto" or self.augment in PRESETS, f"augment must be auto or one of {', '.join(PRESETS)}, got {self.augment!r}")
        need(float(self.self_consistency_weight) >= 0, "self_consistency_weight must be ≥ 0")
        need(float(self.constraint_weight) >= 0, "constraint_weight must be ≥ 0")
        need(not self.resume or bool(self.checkpoint_dir), "resume=True needs a checkpoint_dir")

    @property
    def checkpoint_path(self) -> Path | None:
        return Path(self.checkpoint_dir) / f"{self.name}-checkpoint.pt" if self.checkpoint_dir else None

    def prepare(self, dataset: ImageDataset) -> None:
        """Build device, data source, network and optimiser (``fit_steps`` calls this; so does the
        step-time benchmark, which then calls :meth:`train_step` directly)."""
        self._validate(dataset)
        self.device_ = resolve_device(self.device)
        self._mixed = uses_mixed_precision(self.device_)
        # bfloat16 needs no loss scaling; older GPUs without it get float16 with a GradScaler
        self._autocast_dtype = (
            torch.float16 if self._mixed and not torch.cuda.is_bf16_supported() else torch.bfloat16
        )
        height, width, channels = dataset.image_shape
        self.input_size_ = network_input_size(height, width)
        self.in_channels_ = channels
        self._framed = self.small_input == "frame" and channels == 1 and self.input_size_ == 28 and max(height, width) < 28
        self._preset = get_preset(preset_for_dataset(dataset.name) if self.augment == "auto" else self.augment)

        images = dataset.images
        if not isinstance(images, np.memmap) and images.nbytes <= _PRELOAD_LIMIT:
            # (N, H, W, C) uint8 → (N, C, H, W) uint8 on the device once: batches are gathered there
            self._images_device: torch.Tensor | None = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(self.device_)
        else:
            self._images_device = None
        self._images = images
        self._n_images = len(images)

        # the authors subtract the data set's mean intensity; a seeded sample of up to 10,000 images
        sample = np.random.default_rng(self.random_state).choice(len(images), size=min(len(images), 10000), replace=False)
        sample.sort()
        if self._framed:
            # the black margin is part of what the network sees: the mean of the framed images
            self.channel_mean_ = self._framed_mean(images, sample)
        else:
            self.channel_mean_ = torch.tensor(
                np.asarray(images[sample], dtype=np.float64).mean(axis=(0, 1, 2)) / 255.0, dtype=torch.float32
            ).to(self.device_)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            model = DACNet(channels, int(self.n_clusters), self.input_size_)
        self._channels_last = self.memory_format == "channels_last" or (self.memory_format == "auto" and self._mixed)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model_ = model.to(self.device_)
        scaled = self._mixed and self._autocast_dtype == torch.float16
        # graphs need a GPU, and a float16 GradScaler reads the gradients on the host every step
        self._graphing = bool(self.cuda_graph) and self.device_.type == "cuda" and not scaled
        self._optimizer = torch.optim.RMSprop(
            self.model_.parameters(), lr=float(self.lr), alpha=float(self.rmsprop_alpha), capturable=self._graphing
        )
        self._scaler = torch.amp.GradScaler("cuda", enabled=scaled)
        # two graphs over the same weights: the full step (data path included) for training, the bare model
        # step for the step-time benchmark's comparison
        self._graphed_train_step = GraphedStep(self._eager_train_step) if self._graphing else None
        self._graphed_step = GraphedStep(self._eager_model_step) if self._graphing else None
        self._no_tensor = torch.empty(0, device=self.device_)  # stands for an absent graph input
        self._augment_generator = torch.Generator().manual_seed(int(self.random_state))

    def _framed_mean(self, images: np.ndarray, sample: np.ndarray) -> torch.Tensor:
        total = torch.zeros(self.in_channels_, dtype=torch.float64)
        for start in range(0, len(sample), 1000):
            chunk = torch.from_numpy(np.asarray(images[sample[start:start + 1000]])).permute(0, 3, 1, 2)
            total += frame_to_network(chunk.float().div_(255.0), self.input_size_).double().mean(dim=(2, 3)).sum(dim=0)
        return (total / len(sample)).float().to(self.device_)

    # -- data -----------------------------------------------------------------------------------------
    def _uint8_batch(self, indices: np.ndarray) -> torch.Tensor:
        if self._images_device is not None:
            return self._images_device[torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(self.device_)]
        order = np.argsort(indices)  # memmaps read fastest in ascending order
        batch = np.empty((len(indices), *self._images.shape[1:]), dtype=np.uint8)
        batch[order] = self._images[np.asarray(indices)[order]]
        return torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device_)

    def _to_network_input(self, batch_uint8: torch.Tensor, augment: bool) -> torch.Tensor:
        """uint8 (B, C, H, W) on the device → resized, optionally augmented, mean-subtracted float."""
        return self._network_input(batch_uint8, self._augmentation_matrices(batch_uint8.shape[0]) if augment else None)

    def _augmentation_matrices(self, count: int) -> torch.Tensor | None:
        """The next ``count`` random affine matrices on the device, or None when the preset does nothing."""
        if not self._preset.enabled or count == 0:
            return None
        return random_affine_matrices(count, self._preset, self._augment_generator).to(self.device_)

    def _network_input(self, batch_uint8: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
        present = frame_to_network if self._framed else resize_to_network
        x = present(batch_uint8.float().div_(255.0), self.input_size_)
        if theta is not None:
            # before the mean subtraction, so that empty pixels are black like the digits' background
            x = apply_affine(x, theta, self._preset)
        x = x - self.channel_mean_.view(1, -1, 1, 1)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        # autocast's weight-cast cache must be off while a CUDA graph is captured (PyTorch's rule)
        return torch.autocast(
            device_type=self.device_.type, dtype=self._autocast_dtype, enabled=self._mixed, cache_enabled=not self._graphing
        )

    # -- one training step (benchmarked by scripts/bench_step_time.py) ----------------------------------
    def model_step(
        self, x: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, previous: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forward, loss, backward and RMSprop update on a ready network input; returns the loss (a tensor,
        so that a GPU is not synchronised every step). With ``cuda_graph`` on a GPU the step is replayed
        from a captured graph (one per mini-batch shape, after three eager steps of that shape)."""
        previous = self._consistency_target(previous)
        if self._graphed_step is not None:
            inputs = (x, targets, mask) if previous is None else (x, targets, mask, previous)
            return self._graphed_step(*inputs)
        return self._eager_model_step(x, targets, mask, previous)

    def _consistency_target(self, previous: torch.Tensor | None) -> torch.Tensor | None:
        """The label features before the update, only when the self-consistency term is on (so that a
        graph is keyed on the inputs it really uses)."""
        return previous if previous is not None and self.self_consistency_weight > 0 else None

    def _eager_model_step(
        self, x: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, previous: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.model_.train()
        with self._autocast():
            features = self.model_(x)
        features = features.float()
        loss = PAIR_LOSSES[self.loss](features, targets, mask)
        if previous is not None:
            consistency = F.binary_cross_entropy(features.clamp(1e-7, 1 - 1e-7), previous)
            loss = loss + float(self.self_consistency_weight) * consistency
        self._optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(self._optimizer)
        self._scaler.update()
        return loss.detach()

    def train_step(
        self, indices: np.ndarray, targets: torch.Tensor, mask: torch.Tensor, previous: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One full training step on the images ``indices``: gather, augment, then :meth:`model_step`.
        With ``cuda_graph`` on a GPU, everything after the gather and the drawing of the augmentation
        matrices (which read host data) is replayed from one graph."""
        previous = self._consistency_target(previous)
        batch = self._uint8_batch(indices)
        if self._graphed_train_step is None:
            return self.model_step(self._to_network_input(batch, augment=True), targets, mask, previous)
        theta = self._augmentation_matrices(batch.shape[0])
        absent = self._no_tensor
        return self._graphed_train_step(batch, targets, mask, absent if theta is None else theta, absent if previous is None else previous)

    def _eager_train_step(
        self, batch: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, theta: torch.Tensor, previous: torch.Tensor
    ) -> torch.Tensor:
        # the graphed form of train_step: fixed arguments, an empty tensor for an absent one
        x = self._network_input(batch, theta if theta.numel() else None)
        return self._eager_model_step(x, targets, mask, previous if previous.numel() else None)

    def _label_features(
        self, indices: np.ndarray, batch_statistics: bool, cancel: CancelToken, event: ProgressEvent | None = None
    ) -> Iterator[ProgressEvent]:
        """Generator: label features of un-augmented images, in sub-batches of at most 250; yields
        ``event`` (when given) about twice a second and returns the (n, k) features.

        Cancel is checked between sub-batches; batch statistics of 250 images serve the selection as well
        as those of 1,000.
        """
        if batch_statistics:
            self.model_.train()
        else:
            self.model_.eval()
        outputs = []
        size = max(2, min(int(self.inference_batch), 250))
        pieces = [slice(s, min(s + size, len(indices))) for s in range(0, len(indices), size)]
        if len(pieces) > 1 and pieces[-1].stop - pieces[-1].start < 2:  # BN needs two images for statistics
            pieces[-2] = slice(pieces[-2].start, len(indices))
            pieces.pop()
        throttle = Throttle(self.event_interval)
        with _frozen_batchnorm_statistics(self.model_), torch.no_grad():
            for piece in pieces:
                cancel.raise_if_cancelled()
                outputs.append(self._forward_eval(indices[piece]))
                if event is not None and throttle.ready():
                    yield event
        return torch.cat(outputs)

    def _forward_eval(self, indices: np.ndarray) -> torch.Tensor:
        with self._autocast():
            return self.model_(self._to_network_input(self._uint8_batch(indices), augment=False)).float()

    # -- checkpoints ----------------------------------------------------------------------------------
    def _save_checkpoint(self, pass_index: int, chunk_index: int, step: int) -> None:
        path = self.checkpoint_path
        if path is None:
            return
        save_checkpoint(
            path,
            {
                "format": 1,
                "method": self.name,
                "n_clusters": int(self.n_clusters),
                "input_size": int(self.input_size_),
                "in_channels": int(self.in_channels_),
                "framed": bool(self._framed),
                "model": self.model_.state_dict(),
                "optimizer": self._optimizer.state_dict(),
                "scaler": self._scaler.state_dict(),
                "pass_index": int(pass_index),
                "chunk_index": int(chunk_index),
                "step": int(step),
                "lambda": float(pass_index * float(self.lambda_step)),
                "augment_rng": self._augment_generator.get_state(),
                "history": list(self.history_),
            },
        )

    def _load_checkpoint(self) -> tuple[int, int, int]:
        state = load_checkpoint(self.checkpoint_path, map_location=self.device_)
        if state.get("method") != self.name or state.get("n_clusters") != int(self.n_clusters) or state.get(
            "input_size"
        ) != self.input_size_ or state.get("in_channels") != self.in_channels_ or bool(state.get("framed", False)) != self._framed:
            raise UsageError(
                f"{self.name}: the checkpoint in {self.checkpoint_dir} belongs to another run "
                f"(method {state.get('method')}, k={state.get('n_clusters')}, input {state.get('input_size')} px{', framed' if state.get('framed') else ''})"
            )
        if set(state["model"]) != set(self.model_.state_dict()):
            # e.g. a 28-px checkpoint written before the batch norm after the average pool was added
            raise UsageError(
                f"{self.name}: the checkpoint in {self.checkpoint_dir} was written for another layout of the "
                "network (an earlier version of photocluster); start again without resume"
            )
        self.model_.load_state_dict(state["model"])
        self._optimizer.load_state_dict(state["optimizer"])
        set_capturable(self._optimizer, self._graphing)  # the saved groups carry the writer's mode
        if state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])
        self._augment_generator.set_state(state["augment_rng"].cpu())
        self.history_ = list(state.get("history", []))
        return int(state["pass_index"]), int(state["chunk_index"]), int(state["step"])

    # -- the training loop ----------------------------------------------------------------------------
    def _pass_images(self, pass_index: int) -> np.ndarray:
        """The images of one pass, in random order (stateless: seeded by the seed and the pass number, so a
        resumed run sees the same order). With constraints, every constrained row is in every pass (it takes
        the place of a free row when the pass is capped, so the pass keeps its size unless the constrained
        rows alone exceed it)."""
        rng = np.random.default_rng([int(self.random_state), pass_index])
        pool = self._training_pool()
        order = pool[rng.permutation(len(pool))]
        plan = getattr(self, "_plan", None)
        if plan is not None:
            cap = int(self.n_images_per_pass) if self.n_images_per_pass and self.n_images_per_pass > 0 else len(order)
            free = order[plan.group[order] < 0]
            order = np.concatenate([free[: max(0, cap - len(plan.rows))], plan.rows])
            return order[rng.permutation(len(order))]
        if self.n_images_per_pass and 0 < self.n_images_per_pass < len(order):
            order = order[: int(self.n_images_per_pass)]
        return order

    def _training_pool(self) -> np.ndarray:
        """Indices the passes draw from: all images, or the fixed ``train_subset`` (seeded, sorted — the same
        subset in every pass and after a resume)."""
        subset = int(self.train_subset)
        if 0 < subset < self._n_images:
            rng = np.random.default_rng([int(self.random_state), 104729])
            return np.sort(rng.choice(self._n_images, size=subset, replace=False))
        return np.arange(self._n_images)

    def _chunks(self, order: np.ndarray) -> list[np.ndarray]:
        # the paper's floor(n / m) batches of m images; the remainder joins the last batch rather than
        # being dropped or forming a tiny batch with too few pairs
        m = int(self.selection_batch)
        count = max(1, len(order) // m)
        return [order[i * m : (i + 1) * m] if i < count - 1 else order[i * m :] for i in range(count)]

    def _pass_chunks(self, pass_index: int) -> list[np.ndarray]:
        """The selection batches of one pass. With constraints, the rows that constraints tie together (a
        must-link group and the groups it must stay apart from) go into one selection batch, so that their
        pairs are selected there; the batches keep their sizes."""
        order = self._pass_images(pass_index)
        chunks = self._chunks(order)
        plan = getattr(self, "_plan", None)
        if plan is None or len(chunks) == 1:
            return chunks
        rng = np.random.default_rng([int(self.random_state), pass_index, 15485863])
        return plan.gather(order, [len(c) for c in chunks], rng)

    def _steps_per_chunk(self, chunk_size: int) -> int:
        return int(self.passes_per_batch) * len(self._minibatch_slices(chunk_size))

    def _minibatch_slices(self, chunk_size: int) -> list[slice]:
        b = int(self.minibatch)
        slices = [slice(s, min(s + b, chunk_size)) for s in range(0, chunk_size, b)]
        if len(slices) > 1 and slices[-1].stop - slices[-1].start < 2:  # a 1-image batch has no pair
            slices[-2] = slice(slices[-2].start, chunk_size)
            slices.pop()
        return slices

    def fit_steps(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                  constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        self.prepare(dataset)
        self.history_: list[dict[str, float]] = []
        if constraints is not None and not constraints.is_empty:
            if constraints.n != self._n_images:
                raise ValueError(f"constraints cover {constraints.n} images but the data set has {self._n_images}")
            self._plan: _ConstraintPlan | None = _ConstraintPlan(constraints, float(self.constraint_weight))
        else:
            self._plan = None
        total_passes = self.planned_passes()
        chunk_sizes = [len(c) for c in self._pass_chunks(0)]
        steps_per_pass = sum(self._steps_per_chunk(size) for size in chunk_sizes)
        total_steps = total_passes * steps_per_pass

        start_pass, start_chunk, step = 0, 0, 0
        if self.resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            start_pass, start_chunk, step = self._load_checkpoint()
            yield ProgressEvent("resume", step, total_steps, {"pass": float(start_pass)}, f"resumed at pass {start_pass + 1}, selection batch {start_chunk + 1}")
        # inference ≈ forward passes over all images, weighted like a third of a training step each
        inference_work = max(1, (self._n_images + min(self._n_images, int(self.bn_recalibration_images))) // (3 * int(self.minibatch)))
        eta = EtaEstimator(max(1, total_steps - step + inference_work))
        first_step = step
        throttle = Throttle(self.event_interval)
        pass_index, chunk_index = start_pass, start_chunk

        try:
            for pass_index in range(start_pass, total_passes):
                lam = pass_index * float(self.lambda_step)
                upper, lower = self.thresholds(lam)
                chunks = self._pass_chunks(pass_index)
                pass_started = time.monotonic()
                loss_total = torch.zeros((), device=self.device_)  # summed on the device: no sync per step
                loss_count, selected_sum, positive_sum = 0, 0.0, 0.0
                for chunk_index in range(start_chunk if pass_index == start_pass else 0, len(chunks)):
                    chunk = chunks[chunk_index]
                    features = yield from self._label_features(
                        chunk,
                        self.selection_bn == "batch",
                        cancel,
                        ProgressEvent(
                            "select pairs",
                            step,
                            total_steps,
                            {"lambda": lam, "upper": upper, "lower": lower, "pass": float(pass_index + 1)},
                            f"pass {pass_index + 1}/{total_passes}: selecting pairs in batch {chunk_index + 1}/{len(chunks)}",
                            eta.eta(step - first_step),
                        ),
                    )
                    targets, mask = select_pairs(features @ features.T, upper, lower)
                    forced = None
                    if self._plan is not None:
                        targets, mask, forced = self._plan.impose(chunk, targets, mask)
                    if self.pair_observer is not None:
                        self.pair_observer(PairSelection(pass_index, upper, lower, chunk, features, targets, mask))
                    n_pairs = max(1, len(chunk) * (len(chunk) - 1))
                    selected_fraction = float(mask.sum()) / n_pairs
                    positive_fraction = float(targets.sum()) / n_pairs
                    selected_sum += selected_fraction
                    positive_sum += positive_fraction
                    rng = np.random.default_rng([int(self.random_state), pass_index, chunk_index])
                    for _ in range(int(self.passes_per_batch)):
                        permutation = rng.permutation(len(chunk)) if self._plan is None else self._plan.minibatch_order(
                            chunk, rng, [p.stop - p.start for p in self._minibatch_slices(len(chunk))])
                        for piece in self._minibatch_slices(len(chunk)):
                            local = torch.from_numpy(permutation[piece]).to(self.device_)
                            loss = self.train_step(
                                chunk[permutation[piece]],
                                targets[local][:, local],
                                mask[local][:, local] if forced is None else self._plan.weigh(
                                    mask[local][:, local], forced[local][:, local]),
                                features[local] if self.self_consistency_weight > 0 else None,
                            )
                            step += 1
                            loss_total += loss
                            loss_count += 1
                            if self.checkpoint_every and step % int(self.checkpoint_every) == 0:
                                # resuming restarts this selection batch with the weights saved here
                                self._save_checkpoint(pass_index, chunk_index, step)
                            if cancel.cancelled:
                                raise Cancelled("cancelled by the user")
                            if throttle.ready():
                                value = float(loss)
                                yield ProgressEvent(
                                    "train",
                                    step,
                                    total_steps,
                                    {
                                        "loss": value,
                                        "lambda": lam,
                                        "upper": upper,
                                        "lower": lower,
                                        "pass": float(pass_index + 1),
                                        "passes": float(total_passes),
                                        "selected": selected_fraction,
                                        "similar": positive_fraction,
                                    },
                                    f"pass {pass_index + 1}/{total_passes}, selection batch {chunk_index + 1}/{len(chunks)}",
                                    eta.eta(step - first_step),
                                )
                n_chunks = max(1, len(chunks) - (start_chunk if pass_index == start_pass else 0))
                self.history_.append(
                    {
                        "pass": float(pass_index + 1),
                        "lambda": lam,
                        "upper": upper,
                        "lower": lower,
                        "loss": float(loss_total) / max(1, loss_count),
                        "selected": selected_sum / n_chunks,
                        "similar": positive_sum / n_chunks,
                        "seconds": time.monotonic() - pass_started,
                    }
                )
                if self.checkpoint_path is not None:
                    self._save_checkpoint(pass_index + 1, 0, step)
            pass_index, chunk_index = total_passes, 0
            yield from self._finish(cancel, eta, step - first_step)
            self._keep_constraints(constraints, scores=self.embeddings_)
        except Cancelled:
            if self.checkpoint_path is not None and pass_index < total_passes:
                self._save_checkpoint(pass_index, chunk_index, step)
            raise

    # -- labelling ------------------------------------------------------------------------------------
    def _recalibrate_batchnorm(self, cancel: CancelToken, event: ProgressEvent) -> Iterator[ProgressEvent]:
        """Replace the running statistics (an average over augmented batches of old weights) by the
        statistics of the final network on un-augmented data: a cumulative average over batches.
        Generator: yields ``event`` about twice a second."""
        count = min(self._n_images, int(self.bn_recalibration_images))
        if count < 2:
            return
        sample = np.random.default_rng([int(self.random_state), 7919]).choice(self._n_images, size=count, replace=False)
        norms = [m for m in self.model_.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # None = cumulative moving average
        self.model_.train()
        step = max(2, int(self.inference_batch))
        throttle = Throttle(self.event_interval)
        try:
            with torch.no_grad():
                for start in range(0, count, step):
                    cancel.raise_if_cancelled()
                    part = sample[start : start + step]
                    if len(part) < 2:
                        break
                    self._forward_eval(part)
                    if throttle.ready():
                        yield event
        finally:
            for module in norms:
                module.momentum = 0.1
            self.model_.eval()

    def _finish(self, cancel: CancelToken, eta: EtaEstimator, done_steps: int) -> Iterator[ProgressEvent]:
        calibrating = ProgressEvent("calibrate", 0, None, {}, "re-estimating batch-norm statistics", eta.eta(done_steps))
        yield calibrating
        yield from self._recalibrate_batchnorm(cancel, calibrating)
        self.model_.eval()
        outputs = []
        step = max(1, int(self.inference_batch))
        total = self._n_images
        throttle = Throttle(self.event_interval)
        with torch.no_grad():
            for start in range(0, total, step):
                cancel.raise_if_cancelled()
                outputs.append(self._forward_eval(np.arange(start, min(start + step, total))).cpu())
                if throttle.ready():
                    yield ProgressEvent("infer", start + step, total, {}, "labelling images", eta.eta(done_steps + (start + step) // (3 * int(self.minibatch))))
        features = torch.cat(outputs).numpy().astype(np.float32)
        self.embeddings_ = features
        self.labels_ = features.argmax(axis=1).astype(np.int64)
        self.confidence_ = features.max(axis=1).astype(np.float64)
        yield ProgressEvent("done", total, total, {"clusters_used": float(len(np.unique(self.labels_)))}, "finished", 0.0)

    def label_features(self, images: np.ndarray) -> np.ndarray:
        """Label features (N, k) of new uint8 images (N, H, W, C) with the fitted network in eval mode."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name}: call fit before predict")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] != self.in_channels_ or images.dtype != np.uint8:
            raise UsageError(f"{self.name}: predict needs uint8 images (N, H, W, {self.in_channels_}), got {images.dtype} {images.shape}")
        self.model_.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(images), max(1, int(self.inference_batch))):
                part = torch.from_numpy(np.ascontiguousarray(images[start : start + int(self.inference_batch)])).permute(0, 3, 1, 2).to(self.device_)
                with self._autocast():
                    outputs.append(self.model_(self._to_network_input(part, augment=False)).float().cpu())
        return torch.cat(outputs).numpy().astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.label_features(images).argmax(axis=1).astype(np.int64)


@register
class DACStar(DAC):
    """DAC*: every pair labelled by one threshold annealed from 0.95 to 0.5 (the paper's ablation)."""

    name = "dac-star"
    description = (
        "DAC* (the paper's ablation): like DAC, but every pair is labelled similar or dissimilar by one "
        "threshold that anneals from 0.95 to 0.5."
    )

    def thresholds(self, lam: float) -> tuple[float, float]:
        return dac_star_thresholds(lam, float(self.upper_start))

    def finished(self, lam: float) -> bool:
        return dac_star_finished(lam, float(self.upper_start))

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        return {
            protocol: line.replace("at the paper's thresholds", "with the threshold annealed from 0.95").replace(
                "until l(λ) > u(λ)", "until the threshold passes 0.5"
            )
            for protocol, line in DAC.describe_protocols().items()
        }
