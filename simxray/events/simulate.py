"""Simulated Chandra event lists with known labels (tests, training and benchmarks).

A source is an intensity λ(t, E) (counts/s per energy bin) on a fine energy grid
(0.3-8 keV) built from a quiescent count spectrum ``S_q`` and, when the source's
spectrum changes during variability, a second spectrum ``S_v`` (absorbed power laws,
photo-electric optical depth 2.4 nH22 E^-8/3).  Time is normalised, τ = (t - tstart)/span:

=========  ================================================================
constant   λ = S_q
flare      λ = S_q + A·FRED(τ)·S_v           (fast rise, exponential decay)
qpe        λ = S_q + A·Σ_k G(τ; τ_k, w)·S_v  (≥3 quasi-periodic eruptions)
periodic   λ = (1-a)·S_q + a·(1 + sin(2πτ/P + φ))·S_v
eclipse    λ = (1-e(τ))·S_q + (1-d)·e(τ)·S_v  (periodic trapezoid e, depth d ≥ 0.9)
dip        grey: λ = S_q·(1 - c·D(τ)); absorbed: λ = S_q·exp(-ΔnH·D(τ)·σ(E))
=========  ================================================================

``S_v = S_q`` unless ``spectral_change`` (probability 0.5 for variable kinds), in which
case the variable part has a photon index shifted by ±0.5-1.5 (dips: absorption dips,
which harden the spectrum).  Events are generated per ACIS frame (frame-time
quantisation: the event TIME is the frame's mid time, default 3.24104 s) inside
frame-aligned GTIs, optionally with gaps.

Hardness-ratio labels follow the Chandra Source Catalog definition,
``hard_hm = (H-M)/(H+M)``, ``hard_ms = (M-S)/(M+S)``, ``hard_hs = (H-S)/(H+S)`` with
S 0.5-1.2, M 1.2-2.0, H 2.0-7.0 keV, where CSC uses aperture photon fluxes.  The
simulated spectra are count spectra with a flat effective area, so the photon-flux
ratios equal the ratios of the *expected* band counts over the GTIs, which is what the
``hard_*`` labels are (``obs_hard_*`` are the same ratios of the observed counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .eventfile import FRAME_TIME, EventList

KINDS = ("constant", "flare", "dip", "eclipse", "periodic", "qpe")
"""Variability classes (label ``kind_id`` is the index in this tuple)."""

CSC_BANDS = {"soft": (0.5, 1.2), "medium": (1.2, 2.0), "hard": (2.0, 7.0)}
"""Chandra Source Catalog science bands s, m, h (keV)."""

N_GRID = 2048
"""Time-grid size (over the span) on which intensities are tabulated for sampling and labels."""

_KNOTS = (0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.0, 2.8, 4.0, 5.5, 7.0, 8.0)


def _energy_grid(per_dex: int = 120) -> np.ndarray:
    parts = []
    for lo, hi in zip(_KNOTS[:-1], _KNOTS[1:], strict=True):
        n = max(2, int(np.ceil(np.log10(hi / lo) * per_dex)))
        parts.append(np.geomspace(lo, hi, n + 1)[:-1])
    return np.concatenate(parts + [[_KNOTS[-1]]])


E_EDGES = _energy_grid()
"""Energy grid (keV) of the simulator; contains every CSC and default PPAD band edge."""
E_MID = np.sqrt(E_EDGES[:-1] * E_EDGES[1:])


def photoabs_depth(e_kev: np.ndarray, nh22: float | np.ndarray) -> np.ndarray:
    """Approximate photo-electric optical depth 2.4 nH22 (E/keV)^-8/3 (nH in 1e22 cm^-2)."""
    return 2.4 * nh22 * np.asarray(e_kev, dtype=np.float64) ** (-8.0 / 3.0)


def powerlaw_spectrum(gamma: float, nh22: float) -> np.ndarray:
    """Absorbed power-law counts per bin of :data:`E_EDGES`, normalised to unit sum."""
    s = E_MID ** (-gamma) * np.exp(-photoabs_depth(E_MID, nh22)) * np.diff(E_EDGES)
    return s / s.sum()


def hardness_ratios(soft, medium, hard) -> dict[str, np.ndarray]:
    """CSC hardness ratios from band fluxes or counts (NaN where a denominator is 0)."""
    s, m, h = (np.asarray(x, dtype=np.float64) for x in (soft, medium, hard))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"hard_hm": (h - m) / (h + m), "hard_ms": (m - s) / (m + s), "hard_hs": (h - s) / (h + s)}


def band_counts(energy: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per band for energies (keV) and band edges (keV)."""
    return np.histogram(np.asarray(energy), bins=np.asarray(edges, dtype=np.float64))[0]


def observed_hardness(events: EventList) -> dict[str, float]:
    """CSC hardness ratios of an event list's observed counts."""
    c = band_counts(events.energy, [0.5, 1.2, 2.0, 7.0])
    return {k: float(v) for k, v in hardness_ratios(c[0], c[1], c[2]).items()}


# --------------------------------------------------------------------------- source model


@dataclass
class SourceModel:
    """Intensity model of one simulated source (see module docstring)."""

    kind: str
    params: dict
    spec_q: np.ndarray
    spec_v: np.ndarray
    gti: np.ndarray
    tstart: float
    span: float
    frame_time: float = FRAME_TIME
    rate: float = 1.0
    spectral_change: bool = False
    extra: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def shape(self, tau: np.ndarray) -> np.ndarray:
        """Relative intensity (n_tau, n_E) at normalised times τ (before the ``rate`` factor)."""
        tau = np.asarray(tau, dtype=np.float64)[:, None]
        p, sq, sv = self.params, self.spec_q[None], self.spec_v[None]
        if self.kind == "constant":
            return np.repeat(sq, tau.shape[0], axis=0)
        if self.kind == "flare":
            return sq + p["amplitude"] * fred(tau, p["t0"], p["rise"], p["decay"]) * sv
        if self.kind == "qpe":
            return sq + p["amplitude"] * pulses(tau, np.asarray(p["centres"]), p["width"]) * sv
        if self.kind == "periodic":
            a = p["amplitude"]
            return (1 - a) * sq + a * (1 + np.sin(2 * np.pi * tau / p["period"] + p["phase"])) * sv
        if self.kind == "eclipse":
            e = eclipse_profile(tau, p["period"], p["phase"], p["duration"], p["ingress"])
            return (1 - e) * sq + (1 - p["depth"]) * e * sv
        if self.kind == "dip":
            d = dip_profile(tau, np.asarray(p["centres"]), np.asarray(p["widths"]))
            if self.spectral_change:
                return sq * np.exp(-p["dnh22"] * d * photoabs_depth(E_MID, 1.0)[None])
            return sq * (1 - p["cover"] * d)
        raise ValueError(f"unknown kind {self.kind!r}")

    def grid_shape(self, n_grid: int = N_GRID) -> np.ndarray:
        """:meth:`shape` on the τ grid (g + 0.5)/n_grid (cached): (n_grid, n_E)."""
        key = ("grid", n_grid)
        if key not in self._cache:
            self._cache[key] = self.shape((np.arange(n_grid) + 0.5) / n_grid)
        return self._cache[key]

    def intensity(self, times: np.ndarray) -> np.ndarray:
        """λ(t, E) in counts/s per bin of :data:`E_EDGES` at times t (s), shape (n_t, n_E)."""
        return self.rate * self.shape((np.asarray(times, dtype=np.float64) - self.tstart) / self.span)

    def band_rates(self, times: np.ndarray, edges: Sequence[float]) -> np.ndarray:
        """Expected rate (counts/s) per band [edges_j, edges_j+1) at times t (s): (n_t, n_bands)."""
        return self.intensity(times) @ band_matrix(edges)

    def frame_times(self) -> np.ndarray:
        """Mid times (s) of the frames that lie in the GTIs."""
        n = int(np.floor(self.span / self.frame_time))
        t = self.tstart + (np.arange(n) + 0.5) * self.frame_time
        from .eventfile import in_gti
        return t[in_gti(t, self.gti)]

    def expected_band_counts(self, edges: Sequence[float], n_grid: int = N_GRID) -> np.ndarray:
        """Expected counts per band over the GTIs (sum over frames, rates on a fine τ grid)."""
        tf = self.frame_times()
        w = np.bincount(np.clip(((tf - self.tstart) / self.span * n_grid).astype(int), 0, n_grid - 1),
                        minlength=n_grid) * self.frame_time
        return self.rate * (w @ self.grid_shape(n_grid)) @ band_matrix(edges)

    def labels(self) -> dict:
        """True CSC hardness ratios (expected counts over the GTIs) and band counts."""
        c = self.expected_band_counts([0.5, 1.2, 2.0, 7.0])
        out = {k: float(v) for k, v in hardness_ratios(c[0], c[1], c[2]).items()}
        out.update(expected_soft=float(c[0]), expected_medium=float(c[1]), expected_hard=float(c[2]),
                   expected_counts=float(c.sum()))
        return out

    def sample(self, rng: np.random.Generator, n_grid: int = N_GRID) -> EventList:
        """Draw one event list (frame-quantised times, energies in keV)."""
        tf = self.frame_times()
        grid_tau = (np.arange(n_grid) + 0.5) / n_grid
        lam = self.rate * self.grid_shape(n_grid)                   # (G, E) counts/s per bin
        tot = lam.sum(axis=1)
        tau_f = (tf - self.tstart) / self.span
        mu = np.interp(tau_f, grid_tau, tot) * self.frame_time
        n = rng.poisson(mu)
        t = np.repeat(tf, n)
        g = np.clip((np.repeat(tau_f, n) * n_grid).astype(np.int64), 0, n_grid - 1)
        cdf = np.cumsum(lam, axis=1)
        cdf /= np.maximum(cdf[:, -1:], 1e-300)
        flat = (cdf + np.arange(n_grid)[:, None]).ravel()
        idx = np.searchsorted(flat, g + rng.random(t.size) * (1 - 1e-12), side="right")
        k = np.clip(idx - g * lam.shape[1], 0, lam.shape[1] - 1)
        lo, hi = np.log(E_EDGES[k]), np.log(E_EDGES[k + 1])
        energy = np.exp(lo + (hi - lo) * rng.random(t.size))
        return EventList(t, energy, self.gti.copy(), self.frame_time)


def band_matrix(edges: Sequence[float]) -> np.ndarray:
    """(n_E, n_bands) 0/1 matrix assigning simulator energy bins (by centre) to bands."""
    band = np.searchsorted(np.asarray(edges, dtype=np.float64), E_MID, side="right") - 1
    m = np.zeros((E_MID.size, len(edges) - 1))
    ok = (band >= 0) & (band < len(edges) - 1)
    m[np.flatnonzero(ok), band[ok]] = 1.0
    return m


def fred(tau: np.ndarray, t0: float, rise: float, decay: float) -> np.ndarray:
    """Fast-rise exponential-decay profile with peak 1 at t0 (all in normalised time)."""
    x = tau - t0
    return np.where(x < 0, np.exp(np.minimum(x, 0) / rise), np.exp(-np.maximum(x, 0) / decay))


def pulses(tau: np.ndarray, centres: np.ndarray, width: float) -> np.ndarray:
    """Sum of Gaussian eruptions (peak 1, σ = width) at the given centres."""
    return np.exp(-0.5 * ((tau[..., None] - centres) / width) ** 2).sum(-1).reshape(tau.shape)


def eclipse_profile(tau: np.ndarray, period: float, phase: float, duration: float, ingress: float
                    ) -> np.ndarray:
    """Periodic trapezoid in [0, 1]: 1 in totality, linear ingress/egress of length ``ingress``."""
    ph = np.mod(tau - phase + 0.5 * period, period) - 0.5 * period     # distance to nearest centre
    half = 0.5 * duration
    return np.clip((half - np.abs(ph)) / max(ingress, 1e-9), 0.0, 1.0)


def dip_profile(tau: np.ndarray, centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Sum of flat-bottomed (super-Gaussian, power 4) dips, clipped to [0, 1]."""
    d = np.exp(-0.5 * ((tau[..., None] - centres) / widths) ** 4).sum(-1).reshape(tau.shape)
    return np.minimum(d, 1.0)


# --------------------------------------------------------------------------- random sources


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_gti(rng: np.random.Generator, span: float, tstart: float, frame_time: float = FRAME_TIME,
               gap_prob: float = 0.4) -> np.ndarray:
    """Frame-aligned GTIs over [tstart, tstart + span] with 1-3 gaps of 1-6 % of the span
    (probability ``gap_prob``)."""
    n_frames = int(np.floor(span / frame_time))
    good = np.ones(n_frames, dtype=bool)
    if rng.random() < gap_prob:
        for _ in range(rng.integers(1, 4)):
            w = max(1, int(rng.uniform(0.01, 0.06) * n_frames))
            s = int(rng.integers(int(0.05 * n_frames), int(0.95 * n_frames) - w))
            good[s:s + w] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]])))
    starts, stops = edges[0::2], edges[1::2]
    return np.column_stack([tstart + starts * frame_time, tstart + stops * frame_time])


def random_source(rng: np.random.Generator, kind: str | None = None, *,
                  counts: tuple[float, float] = (500.0, 8000.0),
                  span: tuple[float, float] | float = (20e3, 120e3),
                  spectral_change: bool | None = None, frame_time: float = FRAME_TIME,
                  gap_prob: float = 0.4, **overrides) -> SourceModel:
    """Draw a random source of ``kind`` (random if None).

    ``counts``: range of expected counts in 0.5-7 keV (log-uniform); ``span``: range of the
    observation span in s (log-uniform) or a fixed value; ``overrides`` fix parameters
    (``gamma``, ``nh22``, ``dgamma``, ``n_expected`` and any kind parameter).
    """
    kind = kind if kind is not None else str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    T = float(span) if np.isscalar(span) else _logu(rng, *span)
    tstart = float(np.round(6.0e8 + rng.uniform(0, 1e8)))
    gti = random_gti(rng, T, tstart, frame_time, gap_prob)
    gamma = overrides.pop("gamma", None) or float(rng.uniform(0.5, 3.5))
    nh22 = overrides.pop("nh22", None) or _logu(rng, 0.01, 10.0)
    if spectral_change is None:
        spectral_change = kind != "constant" and rng.random() < 0.5
    spectral_change = bool(spectral_change) and kind != "constant"
    dgamma = overrides.pop("dgamma", None)
    if dgamma is None:
        dgamma = float(rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)) if spectral_change else 0.0
    n_expected = overrides.pop("n_expected", None) or _logu(rng, *counts)
    p: dict = {}
    if kind == "flare":
        p = dict(t0=rng.uniform(0.1, 0.75), rise=_logu(rng, 0.003, 0.03), decay=_logu(rng, 0.02, 0.2),
                 amplitude=_logu(rng, 2.0, 20.0))
    elif kind == "qpe":
        period = rng.uniform(0.1, 0.3)
        width = min(rng.uniform(0.008, 0.025), period / 6)
        k = np.arange(-1, int(1 / period) + 2)
        centres = rng.uniform(0, period) + k * period + rng.normal(0, 0.08 * period, k.size)
        p = dict(period=period, width=width, centres=centres.tolist(), amplitude=_logu(rng, 3.0, 30.0))
    elif kind == "periodic":
        p = dict(period=_logu(rng, 0.05, 0.3), amplitude=rng.uniform(0.5, 0.9), phase=rng.uniform(0, 2 * np.pi))
    elif kind == "eclipse":
        period = rng.uniform(0.2, 0.45)
        duration = rng.uniform(0.04, 0.1)
        p = dict(period=period, phase=rng.uniform(0, period), duration=duration, ingress=0.15 * duration,
                 depth=rng.uniform(0.9, 1.0))
    elif kind == "dip":
        n = int(rng.integers(1, 4))
        p = dict(centres=rng.uniform(0.08, 0.92, n).tolist(), widths=rng.uniform(0.02, 0.05, n).tolist(),
                 cover=rng.uniform(0.5, 0.85), dnh22=_logu(rng, 2.0, 20.0))
    p.update(overrides)
    p = {k: (float(v) if isinstance(v, np.floating | float) else v) for k, v in p.items()}
    spec_q = powerlaw_spectrum(gamma, nh22)
    spec_v = powerlaw_spectrum(gamma + dgamma, nh22) if dgamma else spec_q
    src = SourceModel(kind, p, spec_q, spec_v, gti, tstart, T, frame_time, 1.0, spectral_change,
                      extra=dict(gamma=gamma, nh22=nh22, dgamma=dgamma, n_expected=n_expected))
    band = (E_MID >= 0.5) & (E_MID < 7.0)
    tf = src.frame_times()
    grid = (np.arange(N_GRID) + 0.5) / N_GRID
    tot = src.grid_shape()[:, band].sum(axis=1)
    src.rate = n_expected / (np.interp((tf - tstart) / T, grid, tot).sum() * frame_time)
    return src


LABEL_KEYS = ("kind", "kind_id", "hard_hm", "hard_ms", "hard_hs", "obs_hard_hm", "obs_hard_ms", "obs_hard_hs",
              "spectral_change", "n_events", "expected_counts", "span", "exposure", "gamma", "nh22", "dgamma",
              "amplitude")


def simulate_source(rng: np.random.Generator, kind: str | None = None, name: str = "", **kwargs
                    ) -> tuple[EventList, dict, SourceModel]:
    """One simulated event list with its labels (see :data:`LABEL_KEYS`) and model."""
    src = random_source(rng, kind, **kwargs)
    ev = src.sample(rng)
    ev.name = name
    lab = src.labels()
    obs = observed_hardness(ev)
    lab.update({f"obs_{k}": v for k, v in obs.items()})
    lab.update(kind=src.kind, kind_id=KINDS.index(src.kind), spectral_change=src.spectral_change,
               n_events=ev.n_events, span=src.span, exposure=ev.exposure, gamma=src.extra["gamma"],
               nh22=src.extra["nh22"], dgamma=src.extra["dgamma"],
               amplitude=float(src.params.get("amplitude", src.params.get("depth", np.nan))))
    return ev, lab, src


def simulate_population(n: int, seed: int = 0, *, kinds: Sequence[str] = KINDS, **kwargs
                        ) -> tuple[list[EventList], dict[str, np.ndarray]]:
    """``n`` event lists, kinds balanced (cycled, then shuffled), reproducible from ``seed``.

    Source i uses its own child seed, so the first sources do not depend on ``n``'s value
    beyond the kind order.  Returns (events, labels) with labels as arrays of length n.
    """
    ss = np.random.SeedSequence(seed)
    order = np.random.default_rng(ss.spawn(1)[0]).permutation(n)
    kind_of = [kinds[i % len(kinds)] for i in order]
    events, rows = [], []
    for i, child in enumerate(ss.spawn(n)):
        rng = np.random.default_rng(child)
        ev, lab, _ = simulate_source(rng, kind_of[i], name=f"sim{seed}_{i:05d}", **kwargs)
        events.append(ev)
        rows.append(lab)
    labels = {k: np.array([r[k] for r in rows]) for k in LABEL_KEYS}
    return events, labels
