"""Baseline rate models for event lists: Bayesian blocks light curves (astropy).

:func:`bayesian_blocks_rate` fits a piecewise-constant total rate with
``astropy.stats.bayesian_blocks`` (fitness ``events``), block rates = counts / good time in
the block, and splits it into energy bands either with the time-averaged band fractions
(``spectrum="global"``) or per block (``spectrum="block"``); both with a Jeffreys
pseudo-count of 0.5 per band so that no band has zero rate.
:func:`rate_log_likelihood` scores another event list (e.g. the other half of a thinned one)
under such a rate: Σ_i log r(t_i, b_i) - ∫_GTI Σ_b r dt, per event.
:func:`z2_periodogram` is a GTI-corrected Rayleigh periodogram of raw events (detectability
reference for periodic modulation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .eventfile import EventList


@dataclass
class PiecewiseRate:
    """Rate (counts/s) per band, constant within blocks: ``rates[k, b]`` on [edges[k], edges[k+1])."""

    edges: np.ndarray     # (K+1,) s
    rates: np.ndarray     # (K, n_bands) counts/s
    band_edges: np.ndarray


def gti_overlap(edges: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Good time (s) inside each interval [edges[k], edges[k+1])."""
    lo = np.maximum(edges[:-1, None], gti[None, :, 0])
    hi = np.minimum(edges[1:, None], gti[None, :, 1])
    return np.clip(hi - lo, 0, None).sum(1)


def bayesian_blocks_rate(events: EventList, band_edges, *, p0: float = 0.05, spectrum: str = "global",
                         edges: np.ndarray | None = None) -> PiecewiseRate:
    """Bayesian-blocks light curve of ``events`` times band fractions (see module docstring).

    ``edges`` (s): block edges from an earlier call on the same events, to skip the
    (quadratic-time) block search when only ``spectrum`` changes.
    """
    from astropy.stats import bayesian_blocks

    be = np.asarray(band_edges, dtype=np.float64)
    keep = (events.energy >= be[0]) & (events.energy < be[-1])
    t, e = events.time[keep], events.energy[keep]
    nb = be.size - 1
    band = np.searchsorted(be, e, side="right") - 1
    if edges is not None:
        edges = np.array(edges, dtype=np.float64)
    elif np.unique(t).size >= 2:
        edges = np.asarray(bayesian_blocks(t, fitness="events", p0=p0), dtype=np.float64)
    else:
        edges = np.array([events.tstart, events.tstop])
    edges[0], edges[-1] = min(edges[0], events.tstart), max(edges[-1], events.tstop)
    expo = gti_overlap(edges, events.gti)
    blk = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    counts = np.zeros((edges.size - 1, nb))
    np.add.at(counts, (blk, band), 1.0)
    total = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(expo > 0, total / np.where(expo > 0, expo, 1.0), 0.0)
    if spectrum == "global":
        frac = (counts.sum(0) + 0.5) / (counts.sum() + 0.5 * nb)
        rates = rate[:, None] * frac[None, :]
    elif spectrum == "block":
        frac = (counts + 0.5) / (total[:, None] + 0.5 * nb)
        rates = rate[:, None] * frac
    else:
        raise ValueError(f"spectrum must be 'global' or 'block', got {spectrum!r}")
    return PiecewiseRate(edges, rates, be)


def rate_log_likelihood(model: PiecewiseRate, events: EventList) -> float:
    """Poisson-process log-likelihood per event of ``events`` (bands of the model) under ``model``."""
    be = model.band_edges
    keep = (events.energy >= be[0]) & (events.energy < be[-1])
    t, e = events.time[keep], events.energy[keep]
    if t.size == 0:
        return float("nan")
    band = np.searchsorted(be, e, side="right") - 1
    blk = np.clip(np.searchsorted(model.edges, t, side="right") - 1, 0, model.edges.size - 2)
    r = model.rates[blk, band]
    integ = float((model.rates.sum(1) * gti_overlap(model.edges, events.gti)).sum())
    with np.errstate(divide="ignore"):
        return float((np.log(r).sum() - integ) / t.size)


def thin(events: EventList, rng: np.random.Generator, p: float = 0.5) -> tuple[EventList, EventList]:
    """Split an event list into two independent Poisson halves (each event to the first with prob p)."""
    m = rng.random(events.n_events) < p
    mk = lambda s: EventList(events.time[s], events.energy[s], events.gti.copy(), events.frame_time,  # noqa: E731
                             events.name, dict(events.meta))
    return mk(m), mk(~m)


def z2_periodogram(events: EventList, freqs: np.ndarray, band: tuple[float, float] = (0.5, 7.0)) -> np.ndarray:
    """Rayleigh (Z²₁) periodogram of the raw events at ``freqs`` (cycles per span), corrected for
    the GTIs: Z² = 2 |Σ_i e^{2πi f τ_i} - N ⟨e^{2πi f τ}⟩_GTI|² / N, ≈ χ²₂ for a constant
    source (mean 2).  A model-free detectability reference (the PPAD features never use it)."""
    t0, span = events.tstart, events.span
    sel = (events.energy >= band[0]) & (events.energy < band[1])
    tau = (events.time[sel] - t0) / span
    g = (events.gti - t0) / span
    w = 2j * np.pi * np.asarray(freqs, np.float64)
    s = np.zeros(w.size, complex)
    for i in range(0, tau.size, 4096):
        s += np.exp(np.outer(tau[i:i + 4096], w)).sum(0)
    mean = ((np.exp(np.outer(g[:, 1], w)) - np.exp(np.outer(g[:, 0], w))) / w).sum(0) / (g[:, 1] - g[:, 0]).sum()
    n = max(tau.size, 1)
    return 2 * np.abs(s - tau.size * mean) ** 2 / n
