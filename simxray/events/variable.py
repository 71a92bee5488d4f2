"""Pileup of flaring sources: event-level simulations, summaries and the time-averaged Davis baseline.

Pileup is non-linear in the count rate, so a flaring source piles heavily at its peak and
not at all in quiescence; a Davis (2001) fit of the time-averaged spectrum at the mean rate
is misspecified.  This module provides what ``benchmarks/bench_variable_pileup.py`` needs:

* :func:`simulate_flare`: an ACIS event list of a flaring absorbed power law
  (``tbabs*powerlaw``) through the event-level simulator
  (:func:`simxray.instrument.eventsim.simulate_events`), with a Gaussian flare on a
  quiescent level.  Parameters θ = (nH [1e22 cm^-2], PhoIndex, log10 peak rate,
  log10 quiescent rate, t0/span, sigma/span); rates are ARF-folded incident photons per s
  of frame time (photons per frame / frame time, before pileup and grade losses);
* :func:`spectrum_summary` / :func:`light_curve_summary`: binned counts of the good events;
* :class:`DavisAverage`: the Davis/jdpileup model of the time-averaged spectrum at the
  mean rate (alpha and f free, Sherpa's defaults otherwise), batched, with Poisson draws.

The simulator takes a constant rate, so a variable rate is simulated exactly frame by
frame up to a quantisation: frames are grouped by their incident photons per frame L into
levels of width ``level_step`` in ln L (all frames with L < ``l_min`` in one level), each
level is simulated at the mean rate of its frames and its events are put back at the
frames' own times.  Pileup per frame is a smooth function f(L) ≈ L/2, so using the level's
mean L is exact to first order; the second-order error is of relative size
``level_step² / 12`` (0.75 % at the default 0.3; below ``l_min`` = 0.02 photons per frame the
piled fraction is under 1 %, so the error there is negligible).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from ..instrument.eventsim import EventSimConfig, simulate_events
from .eventfile import EventList

PARAM_NAMES = ("nH", "PhoIndex", "log10_peak_rate", "log10_quiescent_rate", "t0", "width")
PRIOR_LOW = (2.0, 1.0, math.log10(0.05), -2.5, 0.25, 0.04)
PRIOR_HIGH = (25.0, 3.5, math.log10(6.0), -0.5, 0.75, 0.25)
DAVIS_NAMES = ("nH", "PhoIndex", "log10_mean_rate", "alpha", "f")
DAVIS_LOW = (2.0, 1.0, -2.5, 0.0, 0.9)
DAVIS_HIGH = (25.0, 3.5, math.log10(4.0), 1.0, 1.0)

# summed spectrum: 0.25-keV bins over 0.5-10 keV plus one 10-15 keV bin (piles land there)
SPEC_EDGES = np.concatenate([np.arange(0.5, 10.0 + 1e-9, 0.25), [15.0]])
LC_BANDS = ((0.5, 4.0), (4.0, 15.0))


@dataclass
class FlareSetup:
    """Observation and detector settings of the flare simulations (15043-like by default).

    span_s: good time (one GTI), frame_time_s: 1/8 subarray, psf: passed explicitly to the
    event simulator so a change of its default does not change these runs.
    """

    span_s: float = 5538.24
    frame_time_s: float = 0.44104
    psf: str = "gaussian"
    psf_sigma_arcsec: float = 0.36
    level_step: float = 0.3
    l_min: float = 0.02
    arf: str = "arf.fits"
    rmf: str = "rmf.fits"
    extra: dict = field(default_factory=dict)

    def eventsim_config(self) -> EventSimConfig:
        """The simulator's settings, every PSF/dither/transfer choice explicit.

        dither 0: a random sub-pixel phase per frame (the levels reorder frames, so a dither
        path in time would be meaningless; for 0.44 s frames the Lissajous drift within a frame
        is 0.03 arcsec); transfer_time 0: every photon of a frame is read, so the rates here are
        photons per frame / frame time (the Davis model's convention with ftime = frame time).
        Fields an older simulator lacks are left out.
        """
        names = {f.name for f in fields(EventSimConfig)}
        want = {"frame_time": self.frame_time_s, "psf": self.psf, "psf_sigma_arcsec": self.psf_sigma_arcsec,
                "transfer_time": 0.0, "dither_amplitude_arcsec": 0.0, "grading": "cloud",
                "engine": "dense"}   # the engine of the recorded results: same events per seed
        return EventSimConfig(**{k: v for k, v in want.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


class Instrument:
    """The ARF/RMF (``simxray/data`` by default) and the source shape per (nH, Γ)."""

    def __init__(self, setup: FlareSetup):
        from ..datasets import data_path
        from ..io.ogip import read_arf, read_rmf
        from ..models import Model

        self.setup = setup
        self.arf_path, self.rmf_path = data_path(setup.arf), data_path(setup.rmf)
        self.arf, self.rmf = read_arf(self.arf_path), read_rmf(self.rmf_path)
        self.edges = np.append(self.arf.energ_lo, self.arf.energ_hi[-1])
        self.model = Model("tbabs*powerlaw")

    def folded_rate(self, nh: float, gamma: float) -> np.ndarray:
        """ARF-folded photon rate per response energy bin (photons/s) for norm 1, shape (M,)."""
        f = np.atleast_2d(self.model.evaluate(self.edges, {"nH": float(nh), "PhoIndex": float(gamma), "norm": 1.0}))[0]
        return f * self.arf.specresp


def rate_profile(theta: np.ndarray, times_frac: np.ndarray) -> np.ndarray:
    """Incident rate (photons/s) at fractional times τ for θ (6,): quiescent + Gaussian flare."""
    _, _, lpk, lq, t0, w = (float(v) for v in theta)
    return 10.0 ** lq + 10.0 ** lpk * np.exp(-0.5 * ((times_frac - t0) / w) ** 2)


def simulate_flare(theta: np.ndarray, inst: Instrument, seed: int | np.random.SeedSequence) -> tuple[EventList, dict]:
    """Good-grade events of one flaring source (times s from 0, energies keV) and truth labels.

    Labels: ``peak_pileup_fraction`` (piled fraction of detected islands in the frames with
    L ≥ 0.8 L_max), ``peak_photons_per_frame`` L_max, ``mean_rate`` (incident photons/s),
    ``n_photons``, ``n_good``.
    """
    s = inst.setup
    rng = np.random.default_rng(seed)
    theta = np.asarray(theta, np.float64)
    nf = max(int(round(s.span_s / s.frame_time_s)), 1)
    tfrac = (np.arange(nf) + 0.5) / nf
    L = rate_profile(theta, tfrac) * s.frame_time_s
    shape = inst.folded_rate(theta[0], theta[1])
    shape = shape / shape.sum()
    level = np.floor(np.log(np.maximum(L, s.l_min) / s.l_min) / s.level_step).astype(np.int64)
    cfg = s.eventsim_config()
    ch_e = (inst.rmf.e_min, inst.rmf.e_max)
    times, energies = [], []
    n_det_peak = n_pile_peak = 0
    peak = L >= 0.8 * L.max()
    n_photons = 0
    for lev in np.unique(level):
        idx = np.flatnonzero(level == lev)
        lbar = float(L[idx].mean())
        ev = simulate_events(shape * lbar / s.frame_time_s, inst.edges, inst.rmf.matrix, idx.size * s.frame_time_s,
                             ch_e, cfg, seed=rng, channel_offset=inst.rmf.offset)
        n_photons += ev.n_photons
        local = np.minimum((ev.time / s.frame_time_s).astype(np.int64), idx.size - 1)
        frame = idx[local]
        det = ev.pi >= 0
        atpk = peak[frame] & det
        n_det_peak += int(atpk.sum())
        n_pile_peak += int((atpk & (ev.npile >= 2)).sum())
        g = ev.good
        times.append((frame[g] + 0.5) * s.frame_time_s)
        energies.append(ev.energy_ev[g] / 1000.0)
    t = np.concatenate(times)
    e = np.concatenate(energies)
    o = np.argsort(t, kind="stable")
    events = EventList(t[o], e[o], np.array([[0.0, nf * s.frame_time_s]]), frame_time=s.frame_time_s)
    labels = {"peak_pileup_fraction": n_pile_peak / max(n_det_peak, 1), "peak_photons_per_frame": float(L.max()),
              "mean_rate": float(L.mean() / s.frame_time_s), "n_photons": n_photons, "n_good": int(t.size)}
    return events, labels


def simulate_constant(mean_rate: float, nh: float, gamma: float, inst: Instrument,
                      seed: int | np.random.SeedSequence) -> EventList:
    """A steady source at ``mean_rate`` incident photons/s (the control for the Davis fit)."""
    s = inst.setup
    shape = inst.folded_rate(nh, gamma)
    ev = simulate_events(shape / shape.sum() * mean_rate, inst.edges, inst.rmf.matrix, s.span_s,
                         (inst.rmf.e_min, inst.rmf.e_max), s.eventsim_config(), seed=np.random.default_rng(seed),
                         channel_offset=inst.rmf.offset)
    g = ev.good
    return EventList(ev.time[g], ev.energy_ev[g] / 1000.0, np.array([[0.0, ev.n_frames * s.frame_time_s]]),
                     frame_time=s.frame_time_s)


def spectrum_summary(energy_kev: np.ndarray) -> np.ndarray:
    """Counts in :data:`SPEC_EDGES` bins (0.5-10 keV by 0.25 keV, then 10-15 keV)."""
    return np.histogram(energy_kev, SPEC_EDGES)[0].astype(np.float32)


def light_curve_summary(events: EventList, n_bins: int = 16) -> np.ndarray:
    """Counts per time bin (n_bins over the GTI span, divided by the good fraction of each bin)
    in the :data:`LC_BANDS`, concatenated (len(LC_BANDS) * n_bins)."""
    from .lightcurve import gti_overlap

    edges = np.linspace(events.tstart, events.tstop, n_bins + 1)
    frac = gti_overlap(edges, events.gti) / np.diff(edges)
    out = []
    for lo, hi in LC_BANDS:
        sel = (events.energy >= lo) & (events.energy < hi)
        c = np.histogram(events.time[sel], edges)[0] / np.maximum(frac, 1e-3)
        out.append(c)
    return np.concatenate(out).astype(np.float32)


def transform_counts(x: np.ndarray) -> np.ndarray:
    """log1p of counts (the networks' input scale)."""
    return np.log1p(np.maximum(np.asarray(x, np.float32), 0.0))


class DavisAverage:
    """Davis/jdpileup model of the time-averaged spectrum at the mean incident rate.

    θ_D = (nH, PhoIndex, log10 mean rate, alpha, f); ftime = the frame time, exposure = the
    span, g0 = n = 1, fracexp 0.987 (Sherpa's defaults).  :meth:`expected` gives expected
    counts in :data:`SPEC_EDGES` bins; rates are ARF-folded incident photons/s, as in
    :func:`simulate_flare`.
    """

    def __init__(self, inst: Instrument):
        from ..instrument.pileup import get_pileup
        from ..instrument.response import Response

        self.inst = inst
        self.response = Response.from_arf_rmf(inst.arf, inst.rmf, exposure=inst.setup.span_s)
        self.pile = get_pileup(self.response)
        e_mid = 0.5 * (np.asarray(inst.rmf.e_min) + np.asarray(inst.rmf.e_max))
        self.bin_of_channel = np.searchsorted(SPEC_EDGES, e_mid, side="right") - 1
        self.n_bins = SPEC_EDGES.size - 1

    def expected(self, theta_d: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(expected counts (B, n_bins), pileup fraction (B,)) for θ_D (B, 5)."""
        from ..instrument.pileup import PileupParams

        theta_d = np.atleast_2d(np.asarray(theta_d, np.float64))
        model, inst = self.inst.model, self.inst
        out, frac = [], []
        ok = (self.bin_of_channel >= 0) & (self.bin_of_channel < self.n_bins)
        for s in range(0, len(theta_d), batch):
            th = theta_d[s:s + batch]
            pars = {"nH": th[:, 0], "PhoIndex": th[:, 1], "norm": np.ones(len(th))}
            r1 = (model.evaluate(inst.edges, pars) * inst.arf.specresp).sum(1)
            norm = 10.0 ** th[:, 2] / r1
            src = model.evaluate(self.pile.source_edges, pars) * norm[:, None]
            p = PileupParams.from_mapping({"alpha": torch.as_tensor(th[:, 3]), "f": torch.as_tensor(th[:, 4]),
                                           "ftime": inst.setup.frame_time_s})
            with torch.no_grad():
                cnt, fr = self.pile.channel_counts(torch.as_tensor(src), p)
            cnt = cnt.numpy()
            binned = np.zeros((len(th), self.n_bins))
            np.add.at(binned.T, self.bin_of_channel[ok], cnt[:, ok].T)
            out.append(binned)
            frac.append(fr.numpy())
        return np.concatenate(out), np.concatenate(frac)


def frame_levels(theta: np.ndarray, setup: FlareSetup) -> tuple[np.ndarray, np.ndarray]:
    """(mean photons per frame L, number of frames) of each rate level of θ, as :func:`simulate_flare` uses."""
    nf = max(int(round(setup.span_s / setup.frame_time_s)), 1)
    L = rate_profile(theta, (np.arange(nf) + 0.5) / nf) * setup.frame_time_s
    level = np.floor(np.log(np.maximum(L, setup.l_min) / setup.l_min) / setup.level_step).astype(np.int64)
    u, inv = np.unique(level, return_inverse=True)
    n = np.bincount(inv)
    return np.bincount(inv, weights=L) / n, n


def davis_time_resolved(theta: np.ndarray, davis: DavisAverage, alpha: float = 0.5, f: float = 0.95) -> np.ndarray:
    """Expected counts (:data:`SPEC_EDGES` bins) of a flare if every frame piled as Davis' model says.

    The Davis model evaluated level by level (rate = the level's mean L / frame time, exposure =
    its frames x frame time) and summed: the direct calculation of the time-averaged spectrum
    without the mean-rate assumption.  Comparing a mean-rate Davis fit of it with θ isolates the
    bias that variability alone causes (:func:`fit_davis_mean_rate`).
    """
    s = davis.inst.setup
    lbar, nfr = frame_levels(theta, s)
    th = np.column_stack([np.full(lbar.size, theta[0]), np.full(lbar.size, theta[1]),
                          np.log10(lbar / s.frame_time_s), np.full(lbar.size, alpha), np.full(lbar.size, f)])
    mu, _ = davis.expected(th)      # for the whole span at each rate
    return (mu * (nfr / nfr.sum())[:, None]).sum(0)


def fit_davis_mean_rate(counts: np.ndarray, davis: DavisAverage, start: np.ndarray | None = None,
                        f: float = 0.95, alpha_starts: tuple[float, ...] = (0.5, 0.9)) -> tuple[np.ndarray, float]:
    """Maximum-likelihood (C-stat) Davis fit of a time-averaged spectrum at one constant rate.

    Free: nH, PhoIndex, log10 mean rate, alpha (f fixed); returns (best θ_D (5,), C-stat).
    ``counts`` may be an expectation (an Asimov fit: the fit's bias is then the model's).
    Nelder-Mead from each alpha in ``alpha_starts``; the best C-stat wins.
    """
    from scipy.optimize import minimize

    counts = np.asarray(counts, np.float64)
    lo = np.array(DAVIS_LOW[:4])
    hi = np.array(DAVIS_HIGH[:4])

    def cstat(p: np.ndarray) -> float:
        p = np.clip(p, lo, hi)
        mu, _ = davis.expected(np.append(p, f)[None])
        mu = np.maximum(mu[0], 1e-12)
        t = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0) / mu), 0.0)
        return float(2.0 * np.sum(mu - counts + t))

    x0 = np.array(start if start is not None else [10.0, 2.0, np.log10(max(counts.sum(), 1.0) / davis.inst.setup.span_s),
                                                    0.5])[:4]
    best = None
    for a0 in alpha_starts:
        r = minimize(cstat, np.append(x0[:3], a0), method="Nelder-Mead",
                     options={"xatol": 1e-4, "fatol": 1e-4, "maxiter": 2000})
        if best is None or r.fun < best.fun:
            best = r
    return np.append(np.clip(best.x, lo, hi), f), float(best.fun)
