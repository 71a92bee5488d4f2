"""A fitting problem: an :class:`~simxray.observation.Observation`, a model expression, a
prior and a pileup prescription, turned into a forward model and a Poisson likelihood.

:class:`FitProblem` is what every per-observation method samples (emcee, nested sampling,
sequential NPE) and what the amortised networks are matched against.  Its forward model
follows the ``ForwardModel`` contract (:class:`simxray.simulator.simulator.ForwardModel`):
``expected(theta (B, P)) -> mu (B, C)``, expected source counts in the noticed channels.

Priors use the syntax of the campaign TOML files (``simulations/*.toml``)::

    nH = { dist = "loguniform", low = 0.01, high = 20 }
    PhoIndex = { dist = "uniform", low = 0, high = 4 }
    pileup.alpha = { dist = "uniform", low = 0, high = 1 }
    Redshift = 0.0                       # fixed

and, on the command line, ``--param nH=loguniform:0.01:20``, ``--param PhoIndex=1.8``
(fixed), ``--param 'norm={dist="loguniform",low=1e-5,high=0.1}'``.

Parameters a prior does not name get the documented default prior
(:data:`DEFAULT_PRIORS`; ``norm`` from the data) unless the model marks them frozen
(XSPEC's frozen defaults such as a redshift), in which case they stay at their default.
A free parameter with neither is an error naming it.

Example
-------
>>> import simxray as sx
>>> obs = sx.Observation.from_pha(sx.datasets.default_spectrum_path())
>>> obs.notice(1, 7)
>>> prob = FitProblem(obs, "wabs*powerlaw", prior=BXA_PRIOR)
>>> prob.names
['nH', 'PhoIndex', 'norm', 'pileup.alpha', 'pileup.f']
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..compat import tomllib
from ..errors import ConfigError, ParameterError, SimxrayError

log = logging.getLogger(__name__)

#: Default priors by (case-insensitive) parameter name, for parameters a user's prior does
#: not name.  Absorbed power law: the priors of the BXA comparison in issue 12 (broad,
#: uninformative over the range of AGN and X-ray binaries).  ``norm`` of any additive
#: component is set from the data (:func:`data_norm_prior`).
DEFAULT_PRIORS: dict[str, dict] = {
    "nh": {"dist": "loguniform", "low": 0.01, "high": 20.0},
    "phoindex": {"dist": "uniform", "low": 0.0, "high": 4.0},
    "gamma": {"dist": "uniform", "low": 1.4, "high": 2.8},
    "kt": {"dist": "loguniform", "low": 0.05, "high": 20.0},
    "a": {"dist": "uniform", "low": 0.0, "high": 0.998},
    "incl": {"dist": "uniform", "low": 10.0, "high": 80.0},
    "afe": {"dist": "loguniform", "low": 0.5, "high": 10.0},
    "refl_frac": {"dist": "loguniform", "low": 0.1, "high": 10.0},
    "factor": {"dist": "loguniform", "low": 1e-3, "high": 1.0},
    "linee": {"dist": "uniform", "low": 6.2, "high": 7.1},
    "sigma": {"dist": "loguniform", "low": 1e-3, "high": 1.0},
    "logxi": {"dist": "uniform", "low": 0.0, "high": 4.7},
}

#: Default pileup prescription (Sherpa's jdpileup): α and f free as in Sherpa's pileup
#: walkthrough (f ≥ 0.85), g0 = n = 1 frozen, ftime from the spectrum (TIMEDEL), fracexp
#: from the ARF's FRACEXPO (0.987, Sherpa's default, when the ARF has none).
DEFAULT_PILEUP: dict[str, object] = {
    "alpha": {"dist": "uniform", "low": 0.0, "high": 1.0},
    "f": {"dist": "uniform", "low": 0.85, "high": 1.0},
    "g0": 1.0, "n": 1.0, "nterms": 30.0,
}

#: The priors of the NGC 4258 comparison with BXA (issue 12), usable as ``prior=BXA_PRIOR``.
BXA_PRIOR: dict[str, object] = {
    "nH": {"dist": "loguniform", "low": 0.01, "high": 20.0},
    "PhoIndex": {"dist": "uniform", "low": 0.0, "high": 4.0},
    "norm": {"dist": "loguniform", "low": 1e-5, "high": 0.1},
    "pileup.alpha": {"dist": "uniform", "low": 0.0, "high": 1.0},
    "pileup.f": {"dist": "uniform", "low": 0.85, "high": 1.0},
}

DEFAULT_MODEL = "tbabs*powerlaw"
PILEUP_KEYS = ("alpha", "g0", "f", "n", "ftime", "fracexp", "nterms")


# -- prior specs ---------------------------------------------------------------------------

def parse_param_spec(text: str, field: str = "--param") -> tuple[str, object]:
    """``NAME=SPEC`` → (NAME, spec) where SPEC is a number (fixed), ``DIST:a:b``
    (``uniform:0:4``, ``loguniform:0.01:20``, ``normal:mu:sigma[:low:high]``) or an inline
    TOML table (``{dist="uniform",low=0,high=4}``).

    >>> parse_param_spec("nH=loguniform:0.01:20")
    ('nH', {'dist': 'loguniform', 'low': 0.01, 'high': 20.0})
    >>> parse_param_spec("PhoIndex=1.8")
    ('PhoIndex', 1.8)
    """
    if "=" not in text:
        raise ParameterError(f"expected NAME=SPEC, got {text!r}", field=field)
    name, spec = (s.strip() for s in text.split("=", 1))
    if not name or not spec:
        raise ParameterError(f"expected NAME=SPEC, got {text!r}", field=field)
    if spec.startswith("{"):
        try:
            return name, tomllib.loads(f"x = {spec}")["x"]
        except tomllib.TOMLDecodeError as exc:
            raise ParameterError(f"cannot parse {spec!r} as a TOML table ({exc})",
                                 field=f"{field} {name}") from None
    parts = spec.split(":")
    try:
        nums = [float(p) for p in parts[1:]]
        if len(parts) == 1:
            return name, float(parts[0])
    except ValueError:
        raise ParameterError(f"expected a number, DIST:a:b or a TOML table, got {spec!r}",
                             field=f"{field} {name}") from None
    dist = parts[0].lower()
    keys = {"uniform": ("low", "high"), "loguniform": ("low", "high"),
            "normal": ("mu", "sigma", "low", "high"), "fixed": ("value",)}.get(dist)
    if keys is None or not (len(nums) == len(keys) or (dist == "normal" and len(nums) == 2)):
        raise ParameterError(f"expected uniform:LOW:HIGH, loguniform:LOW:HIGH, "
                             f"normal:MU:SIGMA[:LOW:HIGH] or fixed:VALUE, got {spec!r}",
                             field=f"{field} {name}")
    return name, {"dist": dist, **dict(zip(keys, nums, strict=False))}


def _frozen_by_default(model, q) -> bool:
    """XSPEC's (and relxill's model file's) frozen default for parameter ``q`` of ``model``
    (:func:`simxray.models.fit_defaults`): e.g. relxill's Index1/2, Rbr, Rin, Rout, z, Ecut."""
    from ..models import fit_defaults

    spec = next(c.spec for c in model.components if c.instance == q.component)
    return fit_defaults(spec.name, q.parameter)[2]


def read_prior_file(path: str | os.PathLike) -> dict[str, object]:
    """A prior TOML: ``NAME = spec`` lines (``pileup.alpha`` for pileup parameters), or the
    ``[model.parameters]`` and ``[pileup]`` tables of a campaign file.  As in a campaign, a
    parameter of the campaign's ``[model] expression`` that the file does not list is fixed
    at its default, so the prior is the campaign's own."""
    from ..io.tomlfile import read_toml

    data = read_toml(Path(path), "a prior TOML file")
    out: dict[str, object] = {}
    model = data.pop("model", None)
    if isinstance(model, Mapping):
        listed = dict(model.get("parameters", {}) or {})
        expr = model.get("expression")
        if isinstance(expr, str):
            from ..models import Model

            try:
                m = Model(expr)
            except SimxrayError as exc:
                raise ConfigError(str(exc).split(": ", 1)[-1], path=path,
                                  field="model.expression") from None
            given = set()
            for k in listed:
                try:
                    given.add(m.lookup(k).name)
                except SimxrayError:
                    pass          # reported with its field when the prior is built
            for q, short in zip(m.parameters, m.short_names, strict=True):
                if q.name not in given:
                    out[short] = float(q.parameter.default)
        out.update(listed)
    pile = data.pop("pileup", None)
    if isinstance(pile, Mapping):
        for k, v in pile.items():
            if k in ("model", "grid"):
                continue
            out[f"pileup.{k}"] = v
    for sec in ("simulation", "instrument"):
        data.pop(sec, None)
    for k, v in data.items():
        out[k] = v
    return out


def _as_specs(prior) -> dict[str, object]:
    if prior is None:
        return {}
    if isinstance(prior, str | os.PathLike):
        return read_prior_file(prior)
    if isinstance(prior, Mapping):
        return dict(prior)
    from ..simulator.prior import Prior

    if isinstance(prior, Prior):
        return {d.name: d.to_dict() for d in prior.dists}
    raise SimxrayError(f"expected a prior mapping, TOML path or Prior, got {type(prior).__name__}",
                       field="prior")


def _clean(spec):
    if isinstance(spec, Mapping):
        return {k: v for k, v in spec.items() if k != "name"}
    return spec


def data_norm_prior(obs, model, fixed: Mapping[str, float], norm_names: list[str]) -> dict:
    """Log-uniform priors for additive normalisations from the data: the value that
    matches the noticed counts with the other parameters at their prior centres and no
    pileup, times 10^-3 .. 10^2 (pileup loses counts, so the range extends further up)."""
    resp = obs.response()
    sl = obs.noticed_slice
    m = obs.mask[sl]
    params = {k: v for k, v in fixed.items()}
    for n in norm_names:
        params[n] = 1.0
    flux = model.evaluate(resp.edges, params)
    mu = np.asarray(resp.fold(np.atleast_2d(np.require(flux, requirements="CW"))))[0, sl][m]
    n_obs = max(float(obs.counts[sl][m].sum()), 1.0)
    unit = float(mu.sum())
    if not np.isfinite(unit) or unit <= 0:
        return {}
    c = n_obs / unit / max(len(norm_names), 1)
    return {n: {"dist": "loguniform", "low": float(f"{c * 1e-3:.3g}"),
                "high": float(f"{c * 1e2:.3g}")} for n in norm_names}


def build_prior(model, specs: Mapping[str, object], *, pileup: bool, obs=None,
                source: str | None = None):
    """Validate specs against the model's hard limits and fill defaults; returns
    (Prior, {"model": {...}, "pileup": {...}} canonical specs)."""
    from ..simulator.config import config_from_dict

    specs = {k: _clean(v) for k, v in specs.items()}
    model_specs: dict[str, object] = {}
    pile_specs: dict[str, object] = {}
    for key, spec in specs.items():
        k = key.strip()
        if k.lower().startswith("pileup."):
            sub = k.split(".", 1)[1]
            if sub not in PILEUP_KEYS:
                raise ConfigError(f"unknown pileup parameter; expected one of "
                                  f"{', '.join(PILEUP_KEYS)}", path=source, field=k)
            if not pileup:
                raise ConfigError("a pileup parameter was given but pileup is off "
                                  "(--pileup none)", path=source, field=k)
            pile_specs[sub] = spec
            continue
        try:
            q = model.lookup(k)
        except SimxrayError as exc:
            raise ConfigError(str(exc).split(": ", 1)[-1], path=source, field=k) from None
        model_specs[q.name] = spec
    # defaults for free parameters the prior does not name
    missing_norms, fixed_centre = [], {}
    short = dict(zip(model.param_names, model.short_names, strict=True))
    for q in model.parameters:
        if q.name in model_specs:
            s = model_specs[q.name]
            fixed_centre[q.name] = _centre(s, q.parameter.default)
            continue
        if _frozen_by_default(model, q):
            continue
        nm = q.parameter.name.lower()
        if nm == "norm":
            missing_norms.append(q.name)
            continue
        d = DEFAULT_PRIORS.get(nm)
        if d is None:
            raise ConfigError(
                f"the prior does not cover this free parameter of '{model.expr}'; give it a "
                f"prior ({short[q.name]}=uniform:LOW:HIGH) or fix it ({short[q.name]}=VALUE)",
                path=source, field=short[q.name])
        lo, hi = q.parameter.min, q.parameter.max
        d = dict(d)
        d["low"], d["high"] = max(d["low"], lo), min(d["high"], hi)
        if d["dist"] == "loguniform" and d["low"] <= 0:
            d["low"] = min(1e-3, d["high"] / 1e3)
        model_specs[q.name] = d
        fixed_centre[q.name] = _centre(d, q.parameter.default)
    if missing_norms:
        if obs is None:
            raise ConfigError("no prior for the normalisation; give norm=loguniform:LOW:HIGH",
                              path=source, field="norm")
        model_specs.update(data_norm_prior(obs, model, fixed_centre, missing_norms))
    table = {"model": {"expression": model.expr,
                       "parameters": {short[k]: v for k, v in model_specs.items()}}}
    if pileup:
        p = {k: v for k, v in DEFAULT_PILEUP.items()}
        ft = obs.frame_time if obs is not None else None
        p["ftime"] = ft if ft is not None else "header"
        fx = getattr(obs, "fracexp", None)
        p["fracexp"] = float(fx) if fx is not None else 0.987
        p.update(pile_specs)
        table["pileup"] = {"model": "jdpileup", **p}
    try:
        cfg = config_from_dict(table, path=source)
    except ConfigError as exc:
        raise ConfigError(str(exc).split(": ", 1)[-1] if source is None else
                          str(exc).split(f"{source}: ", 1)[-1], path=source,
                          field=exc.field) from None
    prior = cfg.prior(frame_time=obs.frame_time if obs is not None else None)
    if prior.dim == 0:
        raise ConfigError("every parameter is fixed; expected at least one free parameter",
                          path=source, field="prior")
    return prior, cfg


def _centre(spec, default: float) -> float:
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return float(spec)
    if not isinstance(spec, Mapping):
        return float(default)
    d = spec.get("dist")
    if d == "fixed":
        return float(spec.get("value", default))
    if d == "loguniform":
        return math.sqrt(float(spec["low"]) * float(spec["high"]))
    if d == "normal":
        return float(spec["mu"])
    if d == "uniform":
        return 0.5 * (float(spec["low"]) + float(spec["high"]))
    return float(default)


# -- the problem -----------------------------------------------------------------------------

class FitProblem:
    """Observation + model + prior + pileup → a forward model and a likelihood.

    observation : :class:`~simxray.observation.Observation` (its filter selects channels).
    model : expression (``"wabs*powerlaw"``) or :class:`~simxray.models.Model`.
    prior : mapping NAME → spec, a prior TOML path, a :class:`Prior` or None (defaults).
    pileup : ``"jdpileup"`` (default), ``"none"``/False, or a mapping of pileup specs
        (``{"ftime": 3.2, "fracexp": 1}``) merged into the prior.
    statistic : ``"auto"`` (W-stat with a background spectrum, else C-stat), ``"wstat"``,
        ``"cstat"`` (background ignored).
    """

    def __init__(self, observation, model=DEFAULT_MODEL, prior=None, *, pileup="jdpileup",
                 statistic: str = "auto", pileup_grid: str | None = None,
                 batch_size: int = 256):
        from ..models import Model
        from ..observation import as_observation
        from ..simulator.simulator import Simulator

        self.obs = as_observation(observation)
        self.model = model if isinstance(model, Model) else Model(str(model))
        specs = _as_specs(prior)
        source = str(prior) if isinstance(prior, str | os.PathLike) else None
        if isinstance(pileup, Mapping):
            for k, v in pileup.items():
                specs.setdefault(f"pileup.{k}", v)
            pileup = "jdpileup"
        if pileup in (None, False, "none"):
            self.pileup = False
        elif pileup in (True, "jdpileup", "davis"):
            self.pileup = True
        else:
            raise ParameterError(f"expected 'jdpileup', 'none' or a mapping, got {pileup!r}",
                                 field="pileup")
        if self.pileup and self.obs.frame_time is None and "pileup.ftime" not in specs:
            raise SimxrayError("pileup needs a frame time: the spectrum has no TIMEDEL; pass "
                               "--frame-time or pileup.ftime", path=self.obs.path,
                               field="TIMEDEL")
        self.prior, self.config = build_prior(self.model, specs, pileup=self.pileup,
                                              obs=self.obs, source=source)
        sl = self.obs.noticed_slice
        self.slice = sl
        self.inner = self.obs.mask[sl]
        resp = self.obs.response()
        self.simulator = Simulator(self.model, self.prior, resp, channel_slice=sl,
                                   pileup=self.pileup, pileup_grid=pileup_grid,
                                   batch_size=batch_size, name=self.obs.name)
        self.x = self.obs.counts[sl][self.inner]
        if self.x.sum() <= 0:
            lo, hi = self.obs.energy_range
            raise SimxrayError(f"no counts in the noticed channels ({lo:.3g}-{hi:.3g} keV); "
                               "expected a non-empty spectrum", path=self.obs.path,
                               field="COUNTS")
        if statistic not in ("auto", "wstat", "cstat"):
            raise ParameterError(f"expected auto, wstat or cstat, got {statistic!r}",
                                 field="statistic")
        has_bkg = self.obs.background is not None
        if statistic == "wstat" and not has_bkg:
            raise SimxrayError("wstat needs a background spectrum (BACKFILE or --background)",
                               path=self.obs.path, field="BACKFILE")
        self.statistic = "wstat" if (has_bkg and statistic != "cstat") else "cstat"
        self.background = None
        self.background_scale = None
        if self.statistic == "wstat":
            self.background = self.obs.background_counts[sl][self.inner]
            sc = self.obs.background_scale
            self.background_scale = sc[sl][self.inner] if np.ndim(sc) else float(sc)
            # the simulator adds the expected background for neural methods
            self.simulator.background_mu = None

    # -- ForwardModel ---------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.prior.names

    @property
    def n_channels(self) -> int:
        return int(self.inner.sum())

    def expected(self, theta: np.ndarray) -> np.ndarray:
        """Expected source counts (B, C_noticed) for theta (B, P) in physical units."""
        mu = self.simulator.expected(theta)
        return mu[:, self.inner]

    def expected_with_fraction(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, frac = self.simulator.expected(theta, return_fraction=True)
        return mu[:, self.inner], frac

    def expected_background(self, theta_mu: np.ndarray | None = None) -> np.ndarray | None:
        """Expected background counts in the source region (C_noticed,): the observed
        background scaled (for simulation and plots; W-stat profiles it instead)."""
        if self.obs.background is None:
            return None
        sc = self.obs.background_scale
        b = self.obs.background_counts * (sc if np.ndim(sc) else float(sc))
        return b[self.slice][self.inner]

    def likelihood(self, forward=None):
        """The vectorised log likelihood (:class:`~simxray.inference.mcmc.Likelihood`)."""
        from .mcmc import Likelihood

        return Likelihood(self.x, forward or self.expected,
                          background_counts=self.background,
                          background_scale=self.background_scale)

    def sample_emcee(self, **kw):
        """:func:`~simxray.inference.mcmc.sample_emcee` on this problem's counts, prior and
        background (W-stat), with the exact simulator unless ``emulator=`` is given."""
        from .mcmc import sample_emcee

        if "emulator" not in kw:
            kw["simulator"] = self
        return sample_emcee(self.x, prior=self.prior, background=self.background,
                            background_scale=self.background_scale, **kw)

    def channel_loglike(self, mu: np.ndarray) -> np.ndarray:
        """Per-channel log likelihood (B, C) = -stat_i / 2 for expected counts mu (B, C)
        (C-stat or W-stat terms with the data-only constant removed, as XSPEC's)."""
        from .stats import cstat_terms, wstat_terms

        mu = np.atleast_2d(mu)
        if self.statistic == "wstat":
            return -0.5 * wstat_terms(self.x, self.background, mu, self.background_scale)
        return -0.5 * cstat_terms(self.x, mu)

    def identity(self) -> dict:
        """What an amortised network must match: observation identity, model, prior."""
        return {**self.obs.identity(), "model": self.model.expr,
                "prior": self.prior.to_dict(), "pileup": self.pileup,
                "statistic": self.statistic}

    def describe(self) -> str:
        lo, hi = self.obs.energy_range
        return (f"{self.model.expr}{' + jdpileup' if self.pileup else ''} on {self.obs.name}, "
                f"{lo:.3g}-{hi:.3g} keV ({self.n_channels} channels, {self.x.sum():.0f} counts), "
                f"{self.statistic}, free: {', '.join(self.names)}")


__all__ = ["FitProblem", "build_prior", "parse_param_spec", "read_prior_file", "DEFAULT_PRIORS",
           "DEFAULT_PILEUP", "BXA_PRIOR", "DEFAULT_MODEL"]
