"""What a person's edits in the catalog say about which photos belong together, by photo content.

Every edit that places photos is recorded beside the undo log (table ``corrections``, one row per
statement, its photos by content hash in ``correction_photos``), so the statements survive a rescan, a
renamed or moved file, and the undo log's expiry:

* **move** photos into a cluster → *together*: the moved photos with the target cluster's core; and, for
  each cluster they came from, *apart*: the moved photos versus that cluster's core;
* **new cluster** from photos → *together* the photos; *apart* from the cores of the clusters they left;
* **merge** → *together*: the cores of all merged clusters;
* **split** → *apart*: the core of each part versus the core of every other part.

A cluster's **core** is what the person saw of it and confirmed: the photos they placed there themselves
(assignment source ``user``) and its :data:`CORE_SIZE` photos the model is surest of — the ones the app
shows first. Not every model-placed photo: a cluster of 800 photos with 50 wrong ones would otherwise
must-link the wrong ones too, and a later run could never correct them.

**Locked clusters** are read from the current clustering, not the log: their photos keep one label of
their own (fixed labels).

An undone edit says nothing (its statements are skipped while it is undone; a redo brings them back).
:func:`read_corrections` returns the statements newest first: the person's latest word wins over an older
one that contradicts it (:meth:`photocluster.methods.constraints.Constraints.build`). The pipeline maps the
content hashes to the rows of the data set it clusters.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = ["CORE_SIZE", "Corrections", "LockedCluster", "Statement", "cluster_core", "read_corrections",
           "record_statements"]

#: How many of a cluster's surest model-placed photos stand for it in a constraint (besides the photos the
#: person placed there). Ten fill the first row of the app's thumbnail grid — what a person judges a
#: cluster by — and are few enough that one stray photo among them cannot carry a wrong constraint far.
CORE_SIZE = 10


@dataclass(frozen=True)
class Statement:
    """``together``: every photo of ``side_a`` shares a cluster; ``apart``: no photo of ``side_a`` shares one
    with a photo of ``side_b``. Photos are content hashes; ``action_id`` is the edit that said it."""

    kind: str
    side_a: tuple[str, ...]
    side_b: tuple[str, ...] = ()
    action_id: int = 0


@dataclass(frozen=True)
class LockedCluster:
    cluster_id: int
    name: str
    hashes: tuple[str, ...]


@dataclass(frozen=True)
class Corrections:
    """The person's corrections: locked clusters and statements (newest first)."""

    locked: tuple[LockedCluster, ...] = ()
    statements: tuple[Statement, ...] = ()
    #: how many edits of each kind ("move", "create", "merge", "split") produced statements, for the summary
    edit_kinds: tuple[tuple[str, int], ...] = ()
    hashes: frozenset[str] = field(default_factory=frozenset)

    @property
    def edits(self) -> int:
        return sum(count for _, count in self.edit_kinds)

    @property
    def is_empty(self) -> bool:
        return not self.locked and not self.statements

    def describe(self) -> str:
        """"2 locked clusters, 3 moves and 1 merge" — for the messages a person reads."""
        words = {"move": "move", "create": "new cluster", "merge": "merge", "split": "split"}
        parts = []
        if self.locked:
            parts.append(_count(len(self.locked), "locked cluster"))
        parts += [_count(count, words.get(kind, kind)) for kind, count in self.edit_kinds]
        if not parts:
            return "no corrections"
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cluster_core(db: sqlite3.Connection, cluster_id: int, exclude: Iterable[int] = ()) -> list[int]:
    """Photo ids standing for a cluster: the ones the person placed there and its :data:`CORE_SIZE` surest
    model-placed ones (``exclude``: photos being moved out, which do not stand for it)."""
    excluded = set(int(p) for p in exclude)
    rows = db.execute(
        "SELECT photo_id, source FROM assignments WHERE cluster_id = ? "
        "ORDER BY (source = 'user') DESC, confidence IS NULL, confidence DESC, photo_id",
        (cluster_id,),
    ).fetchall()
    core, model = [], 0
    for photo_id, source in rows:
        if photo_id in excluded:
            continue
        if source == "user":
            core.append(photo_id)
        elif model < CORE_SIZE:
            core.append(photo_id)
            model += 1
    return core


def record_statements(db: sqlite3.Connection, action_id: int,
                      statements: Sequence[tuple[str, Sequence[int], Sequence[int]]]) -> None:
    """Store statements about photo ids (as their content hashes) for the edit ``action_id``.

    Photos without a content hash (added by hand, not scanned) cannot be recognised later and are left out.
    """
    for kind, side_a, side_b in statements:
        hashes_a, hashes_b = _hashes(db, side_a), _hashes(db, side_b)
        if kind == "together" and len(set(hashes_a)) < 2:
            continue
        if kind == "apart" and (not hashes_a or not hashes_b):
            continue
        cursor = db.execute("INSERT INTO corrections (action_id, kind) VALUES (?, ?)", (action_id, kind))
        correction_id = int(cursor.lastrowid)
        db.executemany(
            "INSERT INTO correction_photos (correction_id, content_hash, side) VALUES (?, ?, ?)",
            [(correction_id, h, 0) for h in hashes_a] + [(correction_id, h, 1) for h in hashes_b],
        )


def _hashes(db: sqlite3.Connection, photo_ids: Sequence[int]) -> list[str]:
    ids = sorted({int(p) for p in photo_ids})
    found: list[str] = []
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        found.extend(
            r[0] for r in db.execute(
                f"SELECT content_hash FROM photos WHERE id IN ({','.join('?' * len(chunk))}) AND content_hash IS NOT NULL",
                chunk)
        )
    return sorted(set(found))


def read_corrections(db: sqlite3.Connection) -> Corrections:
    """The locked clusters of the current clustering and the statements of every edit in effect (not
    undone), newest first."""
    locked = []
    for cluster_id, name in db.execute("SELECT id, name FROM clusters WHERE current = 1 AND locked = 1 ORDER BY id"):
        hashes = tuple(sorted({
            r[0] for r in db.execute(
                "SELECT p.content_hash FROM assignments a JOIN photos p ON p.id = a.photo_id "
                "WHERE a.cluster_id = ? AND p.content_hash IS NOT NULL", (cluster_id,))
        }))
        if hashes:
            locked.append(LockedCluster(int(cluster_id), str(name), hashes))
    sides: dict[int, tuple[list[str], list[str]]] = {}
    for correction_id, content_hash, side in db.execute(
            "SELECT cp.correction_id, cp.content_hash, cp.side FROM correction_photos cp "
            "JOIN corrections c ON c.id = cp.correction_id JOIN actions a ON a.id = c.action_id "
            "WHERE a.state IN ('done', 'expired')"):
        sides.setdefault(correction_id, ([], []))[side].append(content_hash)
    statements = []
    edits: dict[int, str] = {}
    for correction_id, kind, action_id, action_kind in db.execute(
            "SELECT c.id, c.kind, c.action_id, a.kind FROM corrections c JOIN actions a ON a.id = c.action_id "
            "WHERE a.state IN ('done', 'expired') ORDER BY c.action_id DESC, c.id"):
        side_a, side_b = sides.get(correction_id, ([], []))
        statements.append(Statement(str(kind), tuple(sorted(side_a)), tuple(sorted(side_b)), int(action_id)))
        edits[int(action_id)] = str(action_kind)
    every = {h for lock in locked for h in lock.hashes}
    for statement in statements:
        every.update(statement.side_a)
        every.update(statement.side_b)
    kinds: dict[str, int] = {}
    for kind in edits.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    order = ["move", "create", "merge", "split"]
    edit_kinds = tuple(sorted(kinds.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return Corrections(tuple(locked), tuple(statements), edit_kinds, frozenset(every))
