"""simxray models as astropy.modeling ``Fittable1DModel`` instances, for numpy users.

    from astropy.modeling import fitting
    from simxray.modeling import astropy_model

    m = astropy_model("tbabs*powerlaw", nH=0.5, PhoIndex=1.8, norm=1e-3)
    y = m(energies_keV)                      # photons/cm^2/s/keV at each energy
    fit = fitting.TRFLSQFitter()(m, energies_keV, data, weights=1 / sigma)

The model value at an energy ``x`` (keV) is the expression's density there: additive
expressions give photons/cm^2/s/keV, multiplicative ones the dimensionless factor.  It is
the average over the narrow cell ``[x (1 - 1e-5), x (1 + 1e-5)]`` (simxray models are
defined on energy bins), equal to the point value to ~1e-10 for smooth spectra.  For
binned data use :meth:`SimxrayFittable1D.integrate` (photons/cm^2/s per bin on edges).

Parameters carry the XSPEC/relxill names (``component_Param`` when ambiguous), defaults,
``bounds`` = XSPEC soft limits within the hard limits and ``fixed`` = XSPEC's frozen
defaults (:func:`simxray.models.fit_defaults`); each parameter's docstring gives its
unit.  ``abund`` picks the abundance table of tbabs/phabs for this model
(:func:`simxray.physics.absorption.set_abund`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError
from .models import Model, fit_defaults

try:
    from astropy.modeling import Fittable1DModel
    from astropy.modeling import Parameter as AstropyParameter
    HAVE_ASTROPY = True
except ImportError:  # pragma: no cover - astropy is a dependency of the io layer
    Fittable1DModel = object  # type: ignore[misc,assignment]
    HAVE_ASTROPY = False

#: half-width of the cell around each energy, relative
CELL = 1e-5


def _names(model: Model) -> list[str]:
    import re

    return [re.sub(r"\W", "_", n) for n in model.short_names]


class SimxrayFittable1D(Fittable1DModel):
    """Base class of the generated adapters; use :func:`astropy_model`."""

    expression: Model | None = None
    abund: str | None = None
    _qualified: tuple[str, ...] = ()

    def _values(self, params: tuple) -> dict[str, np.ndarray]:
        return {q: np.asarray(v, dtype=np.float64).reshape(-1)[0]
                for q, v in zip(self._qualified, params, strict=True)}

    def _eval_edges(self, edges: np.ndarray, params: tuple) -> np.ndarray:
        from .physics.absorption import using_abund

        assert self.expression is not None
        with using_abund(self.abund):
            return self.expression.evaluate(edges, self._values(params))

    def evaluate(self, x, *params):  # no annotations: astropy reads them as input units
        """Density at energies ``x`` (keV): photons/cm^2/s/keV (additive) or factor."""
        xx = np.asarray(x, dtype=np.float64)
        flat = xx.ravel()
        if flat.size == 0:
            return np.zeros_like(xx)
        if not np.all(np.isfinite(flat)) or np.any(flat <= 0):
            raise ParameterError("expected positive, finite energies in keV", field="x")
        u, inverse = np.unique(flat, return_inverse=True)
        lo, hi = u * (1.0 - CELL), u * (1.0 + CELL)
        edges = np.union1d(lo, hi)
        per_bin = self._eval_edges(edges, params)
        width = np.diff(edges)
        if self.expression is not None and self.expression.kind != "add":
            per_bin = per_bin * width  # integrals of the factor
        cum = np.concatenate([[0.0], np.cumsum(per_bin)])
        i_lo, i_hi = np.searchsorted(edges, lo), np.searchsorted(edges, hi)
        dens = (cum[i_hi] - cum[i_lo]) / (hi - lo)
        return dens[inverse].reshape(xx.shape)

    def integrate(self, edges: Any) -> np.ndarray:
        """photons/cm^2/s per bin (or bin-averaged factors) on increasing edges (keV)."""
        return self._eval_edges(np.asarray(edges, dtype=np.float64),
                                tuple(getattr(self, n).value for n in self.param_names))


def astropy_model(expr: str | Model, abund: str | None = None, **values: float
                  ) -> SimxrayFittable1D:
    """A fittable astropy model of the simxray expression ``expr``; ``values`` set
    parameters by their adapter names (``nH``, ``PhoIndex``, ``powerlaw_norm``...)."""
    if not HAVE_ASTROPY:  # pragma: no cover
        raise ImportError("simxray.modeling needs astropy (pip install astropy)")
    from .physics.absorption import _check_abund

    model = expr if isinstance(expr, Model) else Model(expr)
    names = _names(model)
    attrs: dict[str, Any] = {"expression": model, "abund": _check_abund(abund),
                             "_qualified": tuple(model.param_names), "n_inputs": 1,
                             "n_outputs": 1}
    for q, name in zip(model.parameters, names, strict=True):
        spec = next(c.spec for c in model.components if c.instance == q.component)
        lo, hi, frozen = fit_defaults(spec.name, q.parameter)
        attrs[name] = AstropyParameter(
            default=float(q.parameter.default), bounds=(lo, hi), fixed=frozen,
            description=f"{q.name} [{q.parameter.unit or 'dimensionless'}]")
    cls_name = "Simxray_" + "".join(c if c.isalnum() else "_" for c in model.expr)
    cls = type(cls_name, (SimxrayFittable1D,), attrs)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ParameterError(f"unknown parameters {unknown}; expected some of "
                             f"{', '.join(names)}", field="values")
    return cls(**{k: float(v) for k, v in values.items()})


__all__ = ["astropy_model", "SimxrayFittable1D", "CELL"]
