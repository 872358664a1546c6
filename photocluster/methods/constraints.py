"""A person's corrections as constraints a method learns from, in the row space of one data set.

The catalog keeps what a person did (:mod:`photocluster.library.corrections` turns the edit history into
statements about content hashes); the pipeline maps those hashes to the rows of the data set being
clustered and builds a :class:`Constraints`. Three kinds, as in the constrained-clustering literature
(Wagstaff et al. 2001, COP-KMeans):

* **fixed** — the photos of a locked cluster keep one label of their own: every locked cluster is one
  must-link group, and no two locked clusters may share a label;
* **must-link** ("together") — a photo moved into a cluster belongs with that cluster's confirmed members;
  merged clusters belong together. Must-link is transitive, so the statements are kept as *groups*
  (connected components, union–find);
* **cannot-link** ("apart") — a moved photo does not belong with the cluster it left; the halves of a split
  do not belong together. Kept between groups: if a is apart from b, every photo that must go with a is
  apart from every photo that must go with b.

Statements arrive newest first; a statement that contradicts a newer one (a photo moved back, a merge that
a later split undid) is dropped — the person's latest word wins — and counted in ``dropped``.

How each method uses them is in its docstring (``fit_steps(..., constraints=...)``); every method ends with
:meth:`Constraints.enforce`, so the labels it returns never break a fixed or must-link constraint and
break a cannot-link one only when no other label is possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Constraints", "ConstraintCheck"]


@dataclass(frozen=True)
class ConstraintCheck:
    """How many constraints a labelling keeps (pairs are counted between groups, not expanded)."""

    must_total: int
    must_kept: int
    cannot_total: int
    cannot_kept: int
    fixed_total: int
    fixed_kept: int

    @property
    def all_kept(self) -> bool:
        return (self.must_kept == self.must_total and self.cannot_kept == self.cannot_total
                and self.fixed_kept == self.fixed_total)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, int(self.parent[x])
        return root

    def component(self, root: int) -> list[int]:
        return self.members.get(root, [root])

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        big, small = (ra, rb) if len(self.component(ra)) >= len(self.component(rb)) else (rb, ra)
        self.parent[small] = big
        self.members[big] = self.component(big) + self.component(small)
        self.members.pop(small, None)
        return big


@dataclass(frozen=True)
class Constraints:
    """Constraints on the labels of ``n`` rows.

    Attributes
    ----------
    n : int
        Rows of the data set.
    group : ndarray of int64, (n,)
        Must-link group of each row (0, 1, …), -1 for a row with no must-link partner and no lock.
    fixed : ndarray of int64, (n,)
        The locked cluster a row belongs to (0 … n_fixed-1), -1 for a free row. Every locked cluster is one
        group, and different locked clusters are apart.
    apart : tuple of (int, int)
        Pairs of groups (indices into ``group``) that must not share a label; a row alone gets a group of
        its own when it is named in a cannot-link, so this covers every cannot-link.
    dropped : int
        Statements (or parts) left out because a newer one contradicts them.
    """

    n: int
    group: np.ndarray
    fixed: np.ndarray
    apart: tuple[tuple[int, int], ...] = ()
    dropped: int = 0
    _groups: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def none(cls, n: int) -> "Constraints":
        return cls(n, np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))

    @classmethod
    def build(cls, n: int, *, fixed: Sequence[Iterable[int]] = (),
              statements: Sequence[tuple[str, Iterable[int], Iterable[int]]] = ()) -> "Constraints":
        """Constraints from locked clusters and statements.

        Parameters
        ----------
        n : int
            Rows of the data set.
        fixed : sequence of row collections
            The rows of each locked cluster.
        statements : sequence of (kind, rows_a, rows_b), newest first
            ``("together", rows, ())``: all of ``rows`` share a label; ``("apart", rows_a, rows_b)``: no row of
            ``rows_a`` shares a label with a row of ``rows_b``. Rows outside ``range(n)`` are an error; photos
            no longer in the data set are left out by the caller.
        """
        uf = _UnionFind(n)
        fixed_of = np.full(n, -1, dtype=np.int64)
        for index, rows in enumerate(fixed):
            rows = _rows(rows, n)
            fixed_of[rows] = index
            for row in rows[1:]:
                uf.union(int(rows[0]), int(row))
        apart_rows: list[tuple[np.ndarray, np.ndarray]] = []  # accepted apart statements, rows

        def fixed_in(root: int) -> set[int]:
            return {int(fixed_of[m]) for m in uf.component(root) if fixed_of[m] >= 0}

        def may_join(ra: int, rb: int) -> bool:
            fa, fb = fixed_in(ra), fixed_in(rb)
            if fa and fb and fa != fb:  # two locked clusters never merge
                return False
            ca, cb = set(uf.component(ra)), set(uf.component(rb))
            for a_rows, b_rows in apart_rows:
                a_set, b_set = set(a_rows.tolist()), set(b_rows.tolist())
                if (ca & a_set and cb & b_set) or (ca & b_set and cb & a_set):
                    return False
            return True

        dropped = 0
        for kind, rows_a, rows_b in statements:
            a = _rows(rows_a, n)
            if kind == "together":
                if len(a) < 2:
                    continue
                for row in a[1:]:
                    ra, rb = uf.find(int(a[0])), uf.find(int(row))
                    if ra == rb:
                        continue
                    if may_join(ra, rb):
                        uf.union(ra, rb)
                    else:
                        dropped += 1
            elif kind == "apart":
                b = _rows(rows_b, n)
                a_roots = {uf.find(int(r)) for r in a}
                # a newer statement already put some of b with a: that part is dropped
                b_keep = np.array([r for r in b if uf.find(int(r)) not in a_roots], dtype=np.int64)
                dropped += len(b) - len(b_keep)
                if len(a) and len(b_keep):
                    apart_rows.append((a, b_keep))
            else:
                raise ValueError(f"unknown constraint kind {kind!r}")

        # number the groups: every component of size ≥ 2, every locked cluster, every row named in an apart
        named = set()
        for a_rows, b_rows in apart_rows:
            named.update(a_rows.tolist())
            named.update(b_rows.tolist())
        roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
        group = np.full(n, -1, dtype=np.int64)
        number: dict[int, int] = {}
        for i in range(n):
            root = int(roots[i])
            if len(uf.component(root)) > 1 or fixed_of[i] >= 0 or i in named:
                group[i] = number.setdefault(root, len(number))
        pairs: set[tuple[int, int]] = set()
        for a_rows, b_rows in apart_rows:
            for ga in {int(group[r]) for r in a_rows}:
                for gb in {int(group[r]) for r in b_rows}:
                    if ga != gb:
                        pairs.add((min(ga, gb), max(ga, gb)))
        groups = tuple(np.flatnonzero(group == g) for g in range(len(number)))
        return cls(n, group, fixed_of, tuple(sorted(pairs)), dropped, groups)

    # -- reading -------------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return not self.n_groups

    @property
    def n_fixed(self) -> int:
        return int(self.fixed.max()) + 1 if self.n and self.fixed.size and self.fixed.max() >= 0 else 0

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.n and self.group.max() >= 0 else 0

    def groups(self) -> tuple[np.ndarray, ...]:
        """Rows of each group, in group order."""
        if self._groups or not self.n_groups:
            return self._groups
        return tuple(np.flatnonzero(self.group == g) for g in range(self.n_groups))

    def fixed_groups(self) -> list[int]:
        """Group index of each locked cluster, in locked-cluster order."""
        return [int(self.group[np.flatnonzero(self.fixed == j)[0]]) for j in range(self.n_fixed)]

    def apart_pairs(self) -> set[tuple[int, int]]:
        """Every pair of groups that must not share a label: the statements plus locked vs locked."""
        pairs = set(self.apart)
        fixed = self.fixed_groups()
        for i, a in enumerate(fixed):
            for b in fixed[i + 1:]:
                pairs.add((min(a, b), max(a, b)))
        return pairs

    def constrained_rows(self) -> np.ndarray:
        return np.flatnonzero(self.group >= 0)

    def must_link_pairs(self, max_pairs: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Row pairs (M, 2) that must share a label: every pair within each group, or a uniform sample of
        ``max_pairs`` of them (each group contributes in proportion to its pairs)."""
        return self._sample_pairs([(g, g) for g in range(self.n_groups)], max_pairs, rng)

    def cannot_link_pairs(self, max_pairs: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Row pairs (C, 2) that must not share a label (groups expanded), or a sample of ``max_pairs``."""
        return self._sample_pairs(sorted(self.apart_pairs()), max_pairs, rng)

    def _sample_pairs(self, group_pairs: list[tuple[int, int]], max_pairs: int | None,
                      rng: np.random.Generator | None) -> np.ndarray:
        groups = self.groups()
        blocks, counts = [], []
        for ga, gb in group_pairs:
            a, b = groups[ga], groups[gb]
            count = len(a) * (len(a) - 1) // 2 if ga == gb else len(a) * len(b)
            if count:
                blocks.append((a, b, ga == gb))
                counts.append(count)
        total = sum(counts)
        if not total:
            return np.zeros((0, 2), dtype=np.int64)
        if max_pairs is not None and total > max_pairs:
            # each drawn pair picks its block in proportion to the block's pairs, then two of its rows
            rng = rng or np.random.default_rng(0)
            which = rng.choice(len(blocks), size=int(max_pairs), p=np.asarray(counts, dtype=np.float64) / total)
            chosen = []
            for index in np.unique(which):
                a, b, same = blocks[index]
                size = int((which == index).sum())
                if same:  # two different rows of one group
                    i = rng.integers(0, len(a), size=size)
                    j = (i + rng.integers(1, len(a), size=size)) % len(a)
                    chosen.append(np.stack([a[i], a[j]], axis=1))
                else:
                    chosen.append(np.stack([a[rng.integers(0, len(a), size=size)],
                                            b[rng.integers(0, len(b), size=size)]], axis=1))
            return np.concatenate(chosen).astype(np.int64)
        out = []
        for a, b, same in blocks:
            if same:
                i, j = np.triu_indices(len(a), k=1)
                out.append(np.stack([a[i], a[j]], axis=1))
            else:
                out.append(np.stack(np.meshgrid(a, b, indexing="ij"), axis=-1).reshape(-1, 2))
        return np.concatenate(out).astype(np.int64)

    def check(self, labels: np.ndarray) -> ConstraintCheck:
        """Which constraints ``labels`` keeps: a group is kept when all its rows share one label; a
        cannot-link when its two groups share none; a locked cluster when it keeps a label of its own."""
        labels = np.asarray(labels).reshape(-1)
        groups = self.groups()
        must = [g for g in groups if len(g) > 1]
        must_kept = sum(int(len(np.unique(labels[g])) == 1) for g in must)
        apart = sorted(self.apart_pairs())
        cannot_kept = sum(int(not set(labels[groups[a]].tolist()) & set(labels[groups[b]].tolist())) for a, b in apart)
        fixed_groups = self.fixed_groups()
        fixed_labels = [np.unique(labels[groups[g]]) for g in fixed_groups]
        single = [f[0] for f in fixed_labels if len(f) == 1]
        fixed_kept = sum(int(len(f) == 1 and single.count(f[0]) == 1) for f in fixed_labels)
        return ConstraintCheck(len(must), must_kept, len(apart), cannot_kept, len(fixed_groups), fixed_kept)

    # -- making labels keep them ---------------------------------------------------------------
    def group_labels(self, labels: np.ndarray, n_clusters: int, scores: np.ndarray | None = None) -> np.ndarray:
        """One label per group that keeps every constraint when possible.

        Each group's preference for each label is the summed ``scores`` of its rows (N, n_clusters; higher
        = better, e.g. probabilities) or, without scores, the count of its rows carrying that label. Locked
        clusters first, each to a different label (Hungarian assignment on those preferences); then the other
        groups, largest first, each to its best label that no group it is apart from has taken (when every
        label is taken by such a group, its best label — the only case a cannot-link can break).
        """
        from scipy.optimize import linear_sum_assignment

        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        groups = self.groups()
        preference = np.zeros((len(groups), n_clusters), dtype=np.float64)
        for g, rows in enumerate(groups):
            if scores is not None:
                preference[g] = np.asarray(scores, dtype=np.float64)[rows].sum(axis=0)
            else:
                preference[g] = np.bincount(labels[rows], minlength=n_clusters)[:n_clusters]
        chosen = np.full(len(groups), -1, dtype=np.int64)
        fixed_groups = self.fixed_groups()
        if len(fixed_groups) > n_clusters:
            raise ValueError(f"{len(fixed_groups)} locked clusters but only {n_clusters} clusters asked for")
        if fixed_groups:
            rows, cols = linear_sum_assignment(preference[fixed_groups], maximize=True)
            for r, c in zip(rows, cols):
                chosen[fixed_groups[r]] = c
        apart_of: dict[int, set[int]] = {g: set() for g in range(len(groups))}
        for a, b in self.apart_pairs():
            apart_of[a].add(b)
            apart_of[b].add(a)
        for g in sorted(range(len(groups)), key=lambda g: -len(groups[g])):
            if chosen[g] >= 0:
                continue
            taken = {int(chosen[o]) for o in apart_of[g] if chosen[o] >= 0}
            for label in np.argsort(-preference[g], kind="stable"):
                if int(label) not in taken:
                    chosen[g] = label
                    break
            else:
                chosen[g] = int(np.argmax(preference[g]))
        return chosen

    def enforce(self, labels: np.ndarray, n_clusters: int | None = None, scores: np.ndarray | None = None,
                confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``labels`` with every group on the label :meth:`group_labels` gives it; free rows keep theirs.

        A constrained row's confidence becomes 1 (the person decided it). Returns (labels, confidence).
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1).copy()
        if self.is_empty:
            return labels, confidence
        k = int(n_clusters if n_clusters is not None else max(int(labels.max()) + 1, self.n_fixed))
        for g, label in enumerate(self.group_labels(labels, k, scores)):
            labels[self.groups()[g]] = label
        if confidence is not None:
            confidence = np.asarray(confidence, dtype=np.float64).copy()
            confidence[self.group >= 0] = 1.0
        return labels, confidence

    def subset(self, rows: np.ndarray) -> "Constraints":
        """The constraints among ``rows`` (a subsample a method trains on), renumbered 0 … len(rows)-1."""
        rows = np.asarray(rows, dtype=np.int64)
        position = np.full(self.n, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        fixed = [position[np.flatnonzero(self.fixed == j)] for j in range(self.n_fixed)]
        statements = [("together", position[g][position[g] >= 0], ()) for g in self.groups() if len(g) > 1]
        groups = self.groups()
        for a, b in self.apart:
            pa, pb = position[groups[a]], position[groups[b]]
            statements.append(("apart", pa[pa >= 0], pb[pb >= 0]))
        return Constraints.build(len(rows), fixed=[f[f >= 0] for f in fixed if (f >= 0).any()], statements=statements)


def _rows(rows: Iterable[int], n: int) -> np.ndarray:
    array = np.unique(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64))
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"constraint rows must lie in 0 … {n - 1}")
    return array
