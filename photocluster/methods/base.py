"""The estimator contract every clustering method follows, and the method registry.

A method has the shape of a scikit-learn estimator:

* ``__init__`` only stores its keyword arguments — no validation, no device lookup, no model building;
* ``fit_steps(dataset, cancel=...)`` is a generator that does the work, yields :class:`ProgressEvent`
  at least about once a second, checks ``cancel`` at least once a second (then writes a checkpoint when it
  has a ``checkpoint_dir`` and raises :class:`~photocluster.progress.Cancelled`), and at the end sets the
  fitted attributes ``labels_`` (int64, (N,)), ``confidence_`` (float, (N,), higher = surer),
  ``embeddings_`` (float32, (N, D)) and ``history_`` (list of dicts);
* ``fit`` runs ``fit_steps`` to the end and returns ``self``; ``fit_predict`` returns ``labels_``;
  ``predict(images)`` labels new uint8 images (N, H, W, C);
* ``fit_steps(dataset, constraints=...)`` takes a person's corrections
  (:class:`~photocluster.methods.constraints.Constraints`: locked clusters, must-link and cannot-link) and
  uses them the way its paper's objective allows — its docstring says how —, and its ``labels_`` keep them
  (:meth:`ClusteringMethod._keep_constraints`).

The command line (tqdm) and the desktop app (a worker thread) both drive ``fit_steps``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from photocluster.data.dataset import ImageDataset, PageReleasingReader
from photocluster.methods.constraints import Constraints
from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a user may set (the GUI builds its form from these; ``--list`` prints them)."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


#: The settings a photo folder can be sorted with (see :meth:`ClusteringMethod.photo_preset`).
PHOTO_PRESETS = ("fast", "thorough")


class ClusteringMethod:
    """Base class of all methods. Subclasses declare their parameters explicitly in ``__init__``."""

    #: registry name, e.g. "kmeans", "dac"
    name: ClassVar[str] = ""
    #: one or two sentences for ``--list`` and the GUI method picker
    description: ClassVar[str] = ""
    #: the paper the method comes from, or "" for classical baselines
    paper: ClassVar[str] = ""
    #: "classic" (no training) or "deep"
    family: ClassVar[str] = "classic"

    # -- parameters -----------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "ClusteringMethod":
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{self.name}: unknown parameter {key!r}; valid: {', '.join(sorted(valid))}")
            setattr(self, key, value)
        return self

    @classmethod
    def parameter_specs(cls) -> list[ParamSpec]:
        """The user-facing parameters. Default: derived from ``__init__`` defaults; override for help."""
        specs = []
        sig = inspect.signature(cls.__init__)
        for p in sig.parameters.values():
            if p.name == "self" or p.default is inspect.Parameter.empty:
                continue
            kind = type(p.default) if p.default is not None else str
            specs.append(ParamSpec(p.name, kind, p.default, ""))
        return specs

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        """Parameters of a benchmark protocol ("quick" or "paper") for this data set.

        ``quick`` must finish on a 2-core CPU in reasonable time; ``paper`` is the paper's full schedule.
        Classical methods have nothing to change.
        """
        if protocol not in ("quick", "paper"):
            raise ValueError(f"unknown protocol {protocol!r}; choose quick or paper")
        return {}

    @classmethod
    def photo_preset(cls, preset: str, dataset: ImageDataset) -> dict[str, Any]:
        """Settings for sorting a person's photo folder: ``"fast"`` (minutes on a laptop CPU, memory bounded
        by the model and the batch) or ``"thorough"`` (a longer schedule for a better grouping). The
        ``paper`` protocol is for benchmarks only: its schedules take hours or days without a GPU.

        Default: the method's ``quick`` benchmark protocol for both (classical methods: nothing to change);
        methods whose quick protocol does not fit a laptop override this.
        """
        if preset not in PHOTO_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose {' or '.join(PHOTO_PRESETS)}")
        return cls.protocol_params("quick", dataset)

    @classmethod
    def pretrained_backbone(cls, params: dict[str, Any]) -> str | None:
        """The ImageNet backbone whose embeddings these parameters cluster on or start from, or None.

        The pipeline decodes photos at that network's input size (instead of the 96 px the methods trained
        from scratch use) and chooses k automatically on its embeddings: the space the method works in.
        """
        from photocluster.features.pretrained import BACKBONES

        defaults = {spec.name: spec.default for spec in cls.parameter_specs()}
        for key in ("features", "backbone"):
            value = params.get(key, defaults.get(key))
            if isinstance(value, str) and value.lower() in BACKBONES:
                return value.lower()
        return None

    @classmethod
    def smoke_params(cls) -> dict[str, Any]:
        """Parameters that make a run take seconds on a CPU (contract and GUI tests) while still
        separating the contract test's well-separated synthetic images. Classical methods: none."""
        return {}

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        """One line per protocol for ``--list``."""
        return {"quick": "same as paper", "paper": "no training schedule (classical method)"}

    # -- fitting --------------------------------------------------------------------------------
    def fit_steps(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                  constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        raise NotImplementedError

    def fit(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
            constraints: Constraints | None = None) -> "ClusteringMethod":
        for _ in self.fit_steps(dataset, cancel=cancel, constraints=constraints):
            pass
        return self

    def fit_predict(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                    constraints: Constraints | None = None) -> np.ndarray:
        return self.fit(dataset, cancel=cancel, constraints=constraints).labels_

    def _reader_for(self, images: np.ndarray) -> PageReleasingReader:
        """A reader of ``images`` that lets go of a memory-mapped library's pages as it goes — for methods
        that read the library again and again (trunk passes, mini-batches, rounds): every page read would
        otherwise stay resident, 0.15 MiB a 224-px photo (measured: CCNN on 5,000 photos peaked 1.07 GiB
        above 1,000)."""
        if getattr(self, "_reader", None) is None or self._reader.images is not images:
            self._reader = PageReleasingReader(images)
        return self._reader

    def _read(self, images: np.ndarray, index) -> np.ndarray:
        """``images[index]`` through :meth:`_reader_for`."""
        return self._reader_for(images)[index]

    def _keep_constraints(self, constraints: Constraints | None, scores: np.ndarray | None = None) -> None:
        """Make ``labels_`` keep the constraints (the last step of every ``fit_steps``): each must-link group
        and locked cluster on one label, locked clusters on labels of their own, cannot-links apart where
        another label is possible (:meth:`Constraints.enforce`; ``scores`` (N, k), higher = better, ranks
        the labels, else the group's majority label). Constrained photos get confidence 1."""
        if constraints is None or constraints.is_empty:
            return
        if constraints.n != len(self.labels_):
            raise ValueError(f"constraints cover {constraints.n} photos but the data set has {len(self.labels_)}")
        k = getattr(self, "n_clusters", None)
        k = int(k) if k else int(self.labels_.max()) + 1
        confidence = getattr(self, "confidence_", None)
        labels, confidence = constraints.enforce(self.labels_, max(k, int(self.labels_.max()) + 1), scores, confidence)
        self.labels_ = labels
        if confidence is not None:
            self.confidence_ = confidence.astype(np.asarray(self.confidence_).dtype)

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name} cannot label new images")

    # -- persistence ----------------------------------------------------------------------------
    def save_params(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"method": self.name, "params": self.get_params()}, indent=2, default=str))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


# -- registry -----------------------------------------------------------------------------------
_REGISTRY: dict[str, type[ClusteringMethod]] = {}


def register(cls: type[ClusteringMethod]) -> type[ClusteringMethod]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin_methods() -> None:
    # Importing the modules registers their classes; a method module that is missing (work in
    # progress) must not break the others.
    import importlib

    for module in ("classic", "dac", "mmdc", "ccnn", "tlfwr"):
        try:
            importlib.import_module(f"photocluster.methods.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"photocluster.methods.{module}":
                raise


def list_methods() -> list[str]:
    _load_builtin_methods()
    return sorted(_REGISTRY)


def method_class(name: str) -> type[ClusteringMethod]:
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def get_method(name: str, **params: Any) -> ClusteringMethod:
    """Build a registered method with the given parameters."""
    cls = method_class(name)
    valid = set(cls._param_names())
    unknown = set(params) - valid
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")
    return cls(**params)


def parse_param_overrides(method: str, assignments: list[str]) -> dict[str, Any]:
    """Turn ``["epochs=5", "lr=0.01"]`` into typed parameters of ``method`` (types from __init__ defaults).

    Raises :class:`~photocluster.errors.UsageError` on a malformed item, an unknown name or a bad value.
    """
    from photocluster.errors import UsageError

    cls = method_class(method)
    defaults = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    params: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        if key not in defaults:
            raise UsageError(f"{method}: unknown parameter {key!r}; valid: {', '.join(sorted(defaults))}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            elif default is None and raw.lower() == "none":
                value = None
            else:
                value = raw
                for convert in (int, float):
                    try:
                        value = convert(raw)
                        break
                    except ValueError:
                        continue
        except ValueError:
            raise UsageError(f"{method}: parameter {key} expects a {type(default).__name__}, got {raw!r}") from None
        params[key] = value
    return params


def smoke_params_for(name: str) -> dict[str, Any]:
    """Parameters for a seconds-long run of ``name`` (contract tests, GUI tests): see ``smoke_params``."""
    return method_class(name).smoke_params()
