"""Model registry and expression parser.

A registered model is a plain function evaluated on energy-bin edges (keV)::

    additive:        f(edges, **p) -> photons/cm^2/s per bin, shape (B, N)
    multiplicative:  f(edges, **p) -> dimensionless factor per bin, (B, N)
    convolution:     f(edges, inner, **p) -> (B, N), where inner(e) -> (B, M)
                     evaluates the model it acts on over any edge grid e

Each parameter arrives as a float64 array of shape (B, 1) (B = 1 when every
parameter is a scalar), already checked against the hard limits.  Models carry
XSPEC parameter names, units, defaults and hard limits (:class:`Parameter`).

Expressions such as ``tbabs*powerlaw + gaussian`` or ``tbabs*relconv*powerlaw``
parse into a :class:`Model`.  As in XSPEC, ``*`` binds tighter than ``+``, a
multiplicative factor multiplies everything to its right in the product, and a
convolution acts on everything to its right in the product.  Components of the
same name are numbered (``gaussian``, ``gaussian_2``); parameters are addressed
as ``component.Param`` or, when unambiguous, as ``Param`` (case-insensitive).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import ModelError, ParameterError

Kind = Literal["add", "mul", "con"]


@dataclass(frozen=True)
class Parameter:
    """A model parameter: XSPEC name, default, hard limits and unit."""

    name: str
    default: float
    min: float
    max: float
    unit: str = ""
    frozen: bool = False
    doc: str = ""

    def check(self, value: np.ndarray, where: str) -> None:
        """Raise :class:`ParameterError` for NaN or out-of-limit values."""
        v = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(v)):
            raise ParameterError(f"expected a finite number, got {value!r}", field=where)
        if np.any(v < self.min) or np.any(v > self.max):
            bad = v[(v < self.min) | (v > self.max)].ravel()[0]
            raise ParameterError(
                f"value {bad:g} outside the hard limits [{self.min:g}, {self.max:g}]"
                + (f" {self.unit}" if self.unit else ""),
                field=where,
            )


@dataclass(frozen=True)
class ModelSpec:
    """A registered spectral model."""

    name: str
    kind: Kind
    params: tuple[Parameter, ...]
    func: Callable[..., np.ndarray]
    doc: str = ""
    info: dict = field(default_factory=dict, compare=False)

    def param(self, name: str) -> Parameter:
        for p in self.params:
            if p.name.lower() == name.lower():
                return p
        raise ParameterError(
            f"unknown parameter; expected one of {', '.join(p.name for p in self.params)}",
            field=f"{self.name}.{name}",
        )


#: Fit defaults of XSPEC's model.dat and relxill's lmodel_relxill.dat (relxill 2.x):
#: ``{model: {param: (soft min, soft max, frozen by default)}}``.  Used by the Sherpa and
#: astropy adapters (:func:`fit_defaults`); evaluation only checks the hard limits.  Rin
#: keeps simxray's positive-radius range as its soft maximum (relxill's soft range is
#: [-100, -1], ISCO units only).
_RADII = {"Index1": (-10.0, 10.0, True), "Index2": (-10.0, 10.0, True),
          "Rbr": (1.0, 400.0, True), "a": (-0.998, 0.998, False), "Incl": (5.0, 80.0, True),
          "Rin": (-100.0, 1000.0, True), "Rout": (1.0, 400.0, True), "z": (0.0, 10.0, True),
          "limb": (0.0, 2.0, True)}
_XILL = {"gamma": (1.0, 3.4, False), "logxi": (0.0, 4.7, False), "Afe": (0.5, 10.0, False),
         "Ecut": (5.0, 1000.0, True)}
_NH = {"nH": (0.0, 1e5, False), "Redshift": (-0.999, 10.0, True)}
XSPEC_DEFAULTS: dict[str, dict[str, tuple[float, float, bool]]] = {
    "powerlaw": {"PhoIndex": (-2.0, 9.0, False)},
    "zpowerlw": {"PhoIndex": (-2.0, 9.0, False), "Redshift": (-0.999, 10.0, True)},
    "cutoffpl": {"PhoIndex": (-2.0, 9.0, False), "HighECut": (1.0, 500.0, False)},
    "bbodyrad": {"kT": (0.01, 100.0, False)},
    "gaussian": {"Sigma": (0.0, 10.0, False)},
    "zgauss": {"Sigma": (0.0, 10.0, False), "Redshift": (-0.999, 10.0, True)},
    "tbabs": _NH, "phabs": _NH, "wabs": _NH, "ztbabs": _NH, "zphabs": _NH, "zwabs": _NH,
    "relline": {**_RADII, "lineE": (0.1, 10.0, False)},
    "relconv": dict(_RADII),
    "relline_lp": {**_RADII, "lineE": (0.1, 10.0, False), "h": (3.0, 100.0, False),
                   "gamma": (1.0, 4.0, True)},
    "relxill": {**_RADII, **_XILL, "Incl": (5.0, 80.0, False), "refl_frac": (0.0, 10.0, False)},
    "xillver": {**_XILL, "z": (0.0, 10.0, True), "Incl": (5.0, 80.0, True),
                "refl_frac": (-10.0, 0.0, True)},
}


def fit_defaults(model: str, p: Parameter) -> tuple[float, float, bool]:
    """(soft min, soft max, frozen) of parameter ``p`` of ``model`` for fitting packages:
    the XSPEC/relxill model-file values (:data:`XSPEC_DEFAULTS`) within the hard limits and
    around the default, else the hard limits and ``p.frozen``."""
    lo, hi, frozen = XSPEC_DEFAULTS.get(model.lower(), {}).get(p.name, (p.min, p.max, p.frozen))
    lo, hi = max(float(lo), p.min), min(float(hi), p.max)
    lo, hi = min(lo, p.default), max(hi, p.default)
    return lo, hi, bool(frozen or p.frozen)


REGISTRY: dict[str, ModelSpec] = {}
_TABLE_LOADERS: list[Callable[[str], ModelSpec]] = []
_BUILTINS_LOADED = False


def register(name: str, kind: Kind, params: list[Parameter] | tuple[Parameter, ...], doc: str = ""):
    """Decorator registering ``func`` as model ``name`` (lower case)."""

    def deco(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        REGISTRY[name.lower()] = ModelSpec(
            name=name.lower(), kind=kind, params=tuple(params), func=func,
            doc=doc or (func.__doc__ or "").strip().split("\n")[0],
        )
        return func

    return deco


def register_table_loader(loader: Callable[[str], ModelSpec]) -> None:
    """Register a loader for ``table:PATH`` components (returns a ModelSpec)."""
    _TABLE_LOADERS.append(loader)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    for mod in (
        "simxray.physics.continuum",
        "simxray.physics.absorption",
        "simxray.physics.relativity.models",
        "simxray.physics.reflection.models",
        "simxray.io.table_model",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a layer not yet present
            if exc.name is None or not mod.startswith(exc.name):
                raise


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for a model name or ``table:PATH``."""
    _load_builtins()
    if name.lower().startswith("table:"):
        if not _TABLE_LOADERS:
            raise ModelError("table models are not available", field=name)
        return _TABLE_LOADERS[0](name[len("table:"):])
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise ModelError(
            f"unknown model; expected one of {', '.join(sorted(REGISTRY))} or table:PATH",
            field=name,
        ) from None


def available_models() -> list[str]:
    _load_builtins()
    return sorted(REGISTRY)


# ---------------------------------------------------------------------------
# parsing
_TOKEN = re.compile(r"\s*(?:(table:[^\s*+()]+)|([A-Za-z_][A-Za-z0-9_]*)|([*+()]))")


def _tokenize(expr: str) -> list[str]:
    pos, out = 0, []
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ModelError(f"cannot parse model expression at {expr[pos:]!r}", field=expr)
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    if not out:
        raise ModelError("empty model expression", field=expr)
    return out


@dataclass
class _Leaf:
    instance: str
    spec: ModelSpec


@dataclass
class _Node:
    op: str  # '+' or '*'
    items: list


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.toks = _tokenize(expr)
        self.i = 0
        self.leaves: list[_Leaf] = []
        self.counts: dict[str, int] = {}

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        t = self.toks[self.i]
        self.i += 1
        return t

    def parse(self):
        node = self.sum()
        if self.peek() is not None:
            raise ModelError(f"unexpected {self.peek()!r} in model expression", field=self.expr)
        return node

    def sum(self):
        items = [self.product()]
        while self.peek() == "+":
            self.take()
            items.append(self.product())
        return items[0] if len(items) == 1 else _Node("+", items)

    def product(self):
        items = [self.factor()]
        while self.peek() == "*":
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else _Node("*", items)

    def factor(self):
        t = self.peek()
        if t is None:
            raise ModelError("model expression ends unexpectedly", field=self.expr)
        if t == "(":
            self.take()
            node = self.sum()
            if self.peek() != ")":
                raise ModelError("missing ')' in model expression", field=self.expr)
            self.take()
            return node
        if t in "*+)":
            raise ModelError(f"unexpected {t!r} in model expression", field=self.expr)
        self.take()
        spec = get_spec(t)
        base = spec.name if not t.lower().startswith("table:") else spec.name
        n = self.counts.get(base, 0) + 1
        self.counts[base] = n
        leaf = _Leaf(base if n == 1 else f"{base}_{n}", spec)
        self.leaves.append(leaf)
        return leaf


def _kind(node) -> Kind:
    if isinstance(node, _Leaf):
        return node.spec.kind
    kinds = [_kind(x) for x in node.items]
    if node.op == "+":
        if any(k != "add" for k in kinds) and any(k == "add" for k in kinds):
            raise ModelError("cannot add an additive and a multiplicative component")
        return "add" if "add" in kinds else "mul"
    # product: additive if the rightmost non-multiplicative part is additive
    if "add" in kinds:
        return "add"
    return "con" if "con" in kinds else "mul"


@dataclass(frozen=True)
class QualifiedParameter:
    component: str
    parameter: Parameter

    @property
    def name(self) -> str:
        return f"{self.component}.{self.parameter.name}"


class Model:
    """A parsed model expression, evaluated on energy edges in keV."""

    def __init__(self, expr: str):
        parser = _Parser(expr)
        self.expr = expr.strip()
        self._tree = parser.parse()
        self.components: list[_Leaf] = parser.leaves
        self.kind: Kind = _kind(self._tree)
        self.parameters: list[QualifiedParameter] = [
            QualifiedParameter(leaf.instance, p) for leaf in self.components for p in leaf.spec.params
        ]

    # -- parameters ---------------------------------------------------------
    @property
    def param_names(self) -> list[str]:
        """Qualified names ``component.Param`` in expression order."""
        return [q.name for q in self.parameters]

    @property
    def short_names(self) -> list[str]:
        """Shortest unambiguous name of each parameter (``PhoIndex`` or ``powerlaw.norm``)."""
        counts: dict[str, int] = {}
        for q in self.parameters:
            counts[q.parameter.name.lower()] = counts.get(q.parameter.name.lower(), 0) + 1
        return [q.parameter.name if counts[q.parameter.name.lower()] == 1 else q.name
                for q in self.parameters]

    def lookup(self, name: str) -> QualifiedParameter:
        """Find a parameter by qualified or (unambiguous) short name, case-insensitive."""
        key = name.strip().lower()
        exact = [q for q in self.parameters if q.name.lower() == key]
        if exact:
            return exact[0]
        short = [q for q in self.parameters if q.parameter.name.lower() == key]
        if len(short) == 1:
            return short[0]
        if len(short) > 1:
            raise ParameterError(
                f"ambiguous; expected one of {', '.join(q.name for q in short)}", field=name)
        raise ParameterError(
            f"unknown parameter of model '{self.expr}'; expected one of "
            f"{', '.join(self.short_names)}", field=name)

    def defaults(self) -> dict[str, float]:
        return {q.name: q.parameter.default for q in self.parameters}

    def resolve(self, params: Mapping[str, float | np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], int, bool]:
        """Qualified, validated (B, 1) arrays for every parameter; defaults fill gaps.

        Returns (values, B, batched) where batched says whether any input was an array.
        """
        given: dict[str, np.ndarray] = {}
        batched = False
        B = 1
        for k, v in (params or {}).items():
            q = self.lookup(k)
            a = np.asarray(v, dtype=float)
            if a.ndim > 1:
                raise ParameterError(f"expected a scalar or 1-D array, got shape {a.shape}", field=k)
            if a.ndim == 1:
                batched = True
                if B not in (1, a.size) and a.size != 1:
                    raise ParameterError(f"batch size {a.size} does not match {B}", field=k)
                B = max(B, a.size)
            q.parameter.check(a, q.name)
            given[q.name] = a
        out = {}
        for q in self.parameters:
            a = given.get(q.name, np.asarray(q.parameter.default, dtype=float))
            out[q.name] = np.broadcast_to(a.reshape(-1, 1) if a.ndim else a.reshape(1, 1), (B, 1)).astype(float)
        return out, B, batched

    # -- evaluation ---------------------------------------------------------
    def __call__(self, edges: np.ndarray, **params) -> np.ndarray:
        return self.evaluate(edges, params)

    def evaluate(self, edges: np.ndarray, params: Mapping[str, float | np.ndarray] | None = None) -> np.ndarray:
        """Photons/cm^2/s per bin (additive) or factors (multiplicative).

        Output (B, N) if any parameter is an array, else (N,): a new, writable, C-contiguous
        float64 array that the caller owns (Sherpa's flux functions scale it in place).
        """
        edges = check_edges(edges)
        values, B, batched = self.resolve(params)
        out = np.asarray(self._eval(self._tree, values, B)(edges), dtype=np.float64)
        shape = (B, edges.size - 1)
        if out.shape != shape or not out.flags.writeable or not out.flags.c_contiguous:
            out = np.array(np.broadcast_to(out, shape), dtype=np.float64, order="C")
        return out if batched else out[0]

    def _leaf_params(self, leaf: _Leaf, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {p.name: values[f"{leaf.instance}.{p.name}"] for p in leaf.spec.params}

    def _eval(self, node, values, B) -> Callable[[np.ndarray], np.ndarray]:
        if isinstance(node, _Leaf):
            if node.spec.kind == "con":
                raise ModelError(f"convolution model '{node.spec.name}' needs a model to act on, as {node.spec.name}*MODEL",
                                 field=self.expr)
            kw = self._leaf_params(node, values)
            return lambda e, _f=node.spec.func, _kw=kw: np.asarray(_f(e, **_kw), dtype=float)
        if node.op == "+":
            fs = [self._eval(x, values, B) for x in node.items]
            return lambda e: sum(f(e) for f in fs)
        # product: fold from the right so that convolutions act on what follows
        acc = self._eval(node.items[-1], values, B) if not (
            isinstance(node.items[-1], _Leaf) and node.items[-1].spec.kind == "con") else None
        if acc is None:
            raise ModelError("a convolution model must be followed by the model it acts on", field=self.expr)
        for item in reversed(node.items[:-1]):
            if isinstance(item, _Leaf) and item.spec.kind == "con":
                acc = _convolve(item.spec.func, self._leaf_params(item, values), acc)
            else:
                acc = _multiply(self._eval(item, values, B), acc)
        return acc

    def tables(self) -> list[str]:
        """Identities of any tables the components read (provenance)."""
        return [leaf.spec.info["table"] for leaf in self.components if "table" in leaf.spec.info]


def _convolve(func: Callable, kw: dict, inner: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """A convolution component acting on ``inner``."""
    return lambda e: np.asarray(func(e, inner, **kw), dtype=float)


def _multiply(factor: Callable, inner: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """A multiplicative component times ``inner``."""
    return lambda e: factor(e) * inner(e)


def check_edges(edges) -> np.ndarray:
    """Validate an energy-edge array (keV): 1-D, finite, positive, increasing."""
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2:
        raise ParameterError("expected a 1-D array of at least two energy edges (keV)", field="edges")
    if not np.all(np.isfinite(e)) or np.any(e < 0) or np.any(np.diff(e) <= 0):
        raise ParameterError("expected finite, non-negative, strictly increasing energy edges (keV)",
                             field="edges")
    return e


def make_grid(spec: str) -> np.ndarray:
    """Energy edges from ``LO:HI:N:log|lin`` (N bins, N + 1 edges, keV)."""
    parts = spec.split(":")
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        scale = parts[3].lower() if len(parts) > 3 else "log"
    except (IndexError, ValueError):
        raise ParameterError("expected LO:HI:N:log|lin, e.g. 0.1:1000:2000:log", field=f"--grid {spec}") from None
    if not (0 <= lo < hi) or n < 1 or scale not in ("log", "lin") or (scale == "log" and lo <= 0):
        raise ParameterError("expected 0 <= LO < HI (LO > 0 for log), N >= 1 and log or lin",
                             field=f"--grid {spec}")
    return np.geomspace(lo, hi, n + 1) if scale == "log" else np.linspace(lo, hi, n + 1)


def parse_param_args(items: list[str] | None) -> dict[str, float]:
    """``['PhoIndex=2', 'nH=0.1']`` -> dict; raises ParameterError on malformed items."""
    out: dict[str, float] = {}
    for item in items or []:
        for piece in item.split(","):
            if not piece.strip():
                continue
            if "=" not in piece:
                raise ParameterError("expected NAME=VALUE", field=piece)
            k, v = piece.split("=", 1)
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise ParameterError(f"expected a number, got {v!r}", field=k.strip()) from None
    return out
