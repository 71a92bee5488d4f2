"""Model-free light-curve tools for real event lists: binned rates with the good time per
bin, Bayesian-blocks flare detection, Rayleigh Z² period searches, dither diagnostics and
hardness ratios with uncertainties.

These are the raw-event baseline that the PPAD results of ``simxray encode`` are compared
with (:mod:`simxray.events.realencode`).

* :func:`binned_light_curve`: counts per band in time bins and the live time of each bin
  (good time inside the bin x DTCOR), so a bin half inside a gap has half the exposure.
* :func:`bayesian_blocks_flare`: Bayesian blocks (:func:`bayesian_blocks_events`, the same
  edges as ``astropy.stats.bayesian_blocks`` with fitness ``events`` and prior ``p0``, faster) on the event times; the baseline is the
  live-time-weighted median block rate; the flare interval is the run of contiguous blocks
  at >= ``min_ratio`` (2) times the baseline around the highest block, called a flare when
  that block is at least ``min_ratio`` times the baseline and the run covers less than half
  of the good time (more blocks otherwise: ``variable``; one block: ``constant``).
* :func:`z2_search`: blind Z²₁ search from the frame-binned events (FFT, 4x oversampled,
  the mean over the GTIs removed), the best peak refined with the exact Z²₁ of the events;
  false-alarm probability 1 - (1 - e^{-Z²/2})^N with N = (f_max - f_min) x span
  independent frequencies; windows of ± 2 cycles per span around the dither frequencies
  (1/707, 1/1000 Hz and two harmonics) are left out of the search and of N and reported
  apart (:func:`dither_windows`).
* :func:`block_morphology`: eruptions (runs of blocks >= 2x the baseline) and dips
  (<= 0.5x) of a Bayesian-blocks light curve.
* :func:`z2_at`: GTI-corrected Z²₁ of the events at given frequencies (Hz), e.g. the dither
  frequencies 1/707 s and 1/1000 s.
* :func:`hardness_ratios`: CSC-band (S 0.5-1.2, M 1.2-2, H 2-7 keV) ratios with 68 %
  intervals: each band's source intensity drawn from the Poisson posterior (Jeffreys
  prior) of its counts minus the scaled background, clipped at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .eventfile import EventList

CSC_BANDS = ((0.5, 1.2), (1.2, 2.0), (2.0, 7.0))
"""CSC soft, medium and hard bands (keV)."""


def gti_overlap(edges: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Good time (s) inside each interval [edges[k], edges[k+1])."""
    edges = np.asarray(edges, np.float64)
    lo = np.maximum(edges[:-1, None], gti[None, :, 0])
    hi = np.minimum(edges[1:, None], gti[None, :, 1])
    return np.clip(hi - lo, 0, None).sum(1)


def binned_light_curve(events: EventList, bin_s: float, bands: Sequence[tuple[float, float]] = CSC_BANDS,
                       dtcor: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges (K+1,) s, counts (K, n_bands), live time (K,) s) in bins of ``bin_s`` from the
    first GTI start; the last bin ends at the last GTI stop."""
    t0, t1 = events.tstart, events.tstop
    n = max(1, int(math.ceil((t1 - t0) / bin_s)))
    edges = t0 + bin_s * np.arange(n + 1)
    edges[-1] = t1
    counts = np.zeros((n, len(bands)))
    for b, (lo, hi) in enumerate(bands):
        sel = (events.energy >= lo) & (events.energy < hi)
        counts[:, b] = np.histogram(events.time[sel], edges)[0]
    return edges, counts, gti_overlap(edges, events.gti) * dtcor


def _band(events: EventList, band: tuple[float, float]) -> np.ndarray:
    return events.time[(events.energy >= band[0]) & (events.energy < band[1])]


BB_MAX_CELLS = 20000
"""Bayesian blocks on more distinct times than this bin them first (see :func:`bayesian_blocks_events`)."""

Z2_MAX_BINS = 1 << 23
"""Largest FFT of the Z² search; longer (e.g. continuous-clocking) series are binned coarser."""


def bayesian_blocks_events(t: np.ndarray, p0: float = 0.01, *, max_cells: int = BB_MAX_CELLS) -> np.ndarray:
    """Optimal Bayesian-blocks edges (s) of event times: Scargle et al. (2013) dynamic
    programme with the ``events`` fitness N_k ln(N_k / T_k) and the prior
    ncp_prior = 4 - ln(73.53 p0 N^-0.478) (N unique times; duplicate times, e.g. frame-quantised
    ones, are merged with their counts), i.e. ``astropy.stats.bayesian_blocks(t,
    fitness="events", p0=p0)`` without astropy's per-cell Python overhead (same edges).

    The programme is quadratic in the number of distinct times; above ``max_cells`` of them
    (bright sources, continuous-clocking frames of 2.85 ms) the times are first binned into
    ``max_cells`` equal cells (each cell's events at its centre), Scargle's binned-data mode:
    edges then fall on cell boundaries (span / max_cells)."""
    t = np.asarray(t, np.float64)
    if np.unique(t).size > max_cells:
        lo, hi = float(t.min()), float(t.max())
        w = (hi - lo) / max_cells
        k = np.minimum(((t - lo) / w).astype(np.int64), max_cells - 1)
        t = lo + (k + 0.5) * w
    t, x = np.unique(t, return_counts=True)
    n = t.size
    edges = np.concatenate([t[:1], 0.5 * (t[1:] + t[:-1]), t[-1:]])
    block_length = t[-1] - edges
    ncp_prior = 4 - np.log(73.53 * p0 * n ** -0.478)
    best = np.zeros(n)
    last = np.zeros(n, dtype=np.int64)
    x = x.astype(np.float64)
    for r in range(n):
        nk = np.cumsum(x[:r + 1][::-1])[::-1]
        tk = block_length[:r + 1] - block_length[r + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(nk > 0, nk * np.log(np.where(nk > 0, nk / tk, 1.0)), 0.0)
        a = fit - ncp_prior
        a[1:] += best[:r]
        i = int(np.argmax(a))
        last[r], best[r] = i, a[i]
    cps, ind = [], n
    while True:
        cps.append(ind)
        if ind == 0:
            break
        ind = last[ind - 1]
    return edges[np.array(cps[::-1])]


def gti_compress(t: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Times inside the GTIs mapped onto good time elapsed since the first GTI start (s): the
    gaps between GTIs are cut out."""
    before = np.concatenate([[0.0], np.cumsum(gti[:, 1] - gti[:, 0])])[:-1]
    k = np.clip(np.searchsorted(gti[:, 0], t, side="right") - 1, 0, len(gti) - 1)
    return before[k] + np.clip(t - gti[k, 0], 0.0, gti[k, 1] - gti[k, 0])


def gti_expand(tc: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gti_compress`: good time elapsed (s) back to times; a value on the
    boundary between two GTIs maps to the start of the later one."""
    before = np.concatenate([[0.0], np.cumsum(gti[:, 1] - gti[:, 0])])[:-1]
    k = np.clip(np.searchsorted(before, tc, side="right") - 1, 0, len(gti) - 1)
    return gti[k, 0] + (tc - before[k])


def bayesian_blocks_flare(events: EventList, band: tuple[float, float] = (0.5, 7.0), *, p0: float = 0.01,
                          min_ratio: float = 2.0, dtcor: float = 1.0, compress_gaps: bool = True) -> dict:
    """Bayesian-blocks light curve and flare search (see module docstring); rates counts/s.

    With ``compress_gaps`` (default) and several GTIs the blocks are found on the good-time
    axis (:func:`gti_compress`), so a gap between GTIs, which holds no events, is not mistaken
    for a dip (a change point at each gap edge); the edges are mapped back to times."""
    t = _band(events, band)
    out: dict = {"band_keV": list(band), "p0": p0, "n_events": int(t.size)}
    if np.unique(t).size < 3:
        out.update(n_blocks=1, variable=False, flare=False, cls="constant", edges=[events.tstart, events.tstop])
        return out
    if compress_gaps and len(events.gti) > 1:
        edges = gti_expand(bayesian_blocks_events(gti_compress(t, events.gti), p0), events.gti)
        out["gaps_compressed"] = True
    else:
        edges = bayesian_blocks_events(t, p0)
    edges[0], edges[-1] = events.tstart, events.tstop
    live = gti_overlap(edges, events.gti) * dtcor
    counts = np.histogram(t, edges)[0].astype(np.float64)
    ok = live > 0
    rate = np.where(ok, counts / np.where(ok, live, 1.0), 0.0)
    order = np.argsort(rate[ok])
    cum = np.cumsum(live[ok][order])
    base = float(rate[ok][order][np.searchsorted(cum, 0.5 * cum[-1])])
    k = int(np.argmax(np.where(ok, rate, -1.0)))
    lo = hi = k
    while lo > 0 and rate[lo - 1] >= min_ratio * base:
        lo -= 1
    while hi < len(rate) - 1 and rate[hi + 1] >= min_ratio * base:
        hi += 1
    run_live = float(live[lo:hi + 1].sum())
    ratio = float(rate[k] / base) if base > 0 else float("inf")
    variable = len(rate) > 1
    flare = bool(variable and ratio >= min_ratio and run_live < 0.5 * live.sum())
    cls = "flare" if flare else ("variable" if variable else "constant")
    out.update(n_blocks=int(len(rate)), edges=edges.tolist(), counts=counts.tolist(), rates=rate.tolist(),
               baseline_rate=base, peak_rate=float(rate[k]), peak_ratio=ratio,
               peak_time=float(0.5 * (edges[k] + edges[k + 1])), peak_block=[float(edges[k]), float(edges[k + 1])],
               flare_interval=[float(edges[lo]), float(edges[hi + 1])],
               flare_counts_above_baseline=float(counts[lo:hi + 1].sum() - base * run_live),
               variable=bool(variable), flare=flare, cls=cls)
    return out


def _null_pieces(gti: np.ndarray, null: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """Good-time pieces [a, b) (P, 2) and the null rate on each (P,): the GTIs with a constant
    rate, or the GTIs cut at the blocks of a piecewise-constant rate ``null`` = (edges, rates)."""
    if null is None:
        return gti, np.ones(len(gti))
    edges, rates = (np.asarray(v, np.float64) for v in null)
    pieces, r = [], []
    for k in range(len(rates)):
        for a, b in gti:
            lo, hi = max(a, edges[k]), min(b, edges[k + 1])
            if hi > lo:
                pieces.append((lo, hi))
                r.append(rates[k])
    return np.array(pieces, np.float64).reshape(-1, 2), np.array(r, np.float64)


def z2_at(times: np.ndarray, freqs_hz: np.ndarray, gti: np.ndarray,
          null: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Rayleigh Z²₁ of event times (s) at ``freqs_hz`` against a null rate:
    Z² = 2 |Σ e^{2πift} - N <e^{2πift}>_null|² / N (≈ χ²₂ under the null).  The null is a
    constant rate over the GTIs, or a piecewise-constant rate ``null`` = (block edges s,
    rates) such as a Bayesian-blocks light curve, so slow variability (a flare) does not
    count as power at a period."""
    t = np.asarray(times, np.float64)
    f = np.atleast_1d(np.asarray(freqs_hz, np.float64))
    if t.size == 0:
        return np.zeros(f.size)
    t0 = gti[0, 0]
    pieces, rate = _null_pieces(gti, null)
    tt, g = t - t0, pieces - t0
    w = 2j * np.pi * f
    s = np.zeros(f.size, complex)
    for i in range(0, tt.size, 2048):
        s += np.exp(np.outer(tt[i:i + 2048], w)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ((rate[:, None] * (np.exp(np.outer(g[:, 1], w)) - np.exp(np.outer(g[:, 0], w)))).sum(0) / w
                / (rate * (g[:, 1] - g[:, 0])).sum())
    mean = np.where(f == 0, 1.0, mean)
    return 2.0 * np.abs(s - t.size * mean) ** 2 / t.size


DITHER_PERIODS = (707.0, 1000.0)
"""ACIS dither periods (s) in the two sky directions: a source near a chip edge or bad column
is modulated at these periods and their harmonics."""


def dither_windows(span: float, fmin: float, fmax: float, *, harmonics: int = 3,
                   halfwidth_cycles: float = 2.0) -> np.ndarray:
    """Frequency windows (W, 2) Hz excluded from a period search: k / P ± ``halfwidth_cycles``
    / span for the dither periods P (:data:`DITHER_PERIODS`) and k = 1..``harmonics``, clipped
    to [fmin, fmax] (empty windows dropped)."""
    w = []
    for p in DITHER_PERIODS:
        for k in range(1, harmonics + 1):
            lo, hi = max(fmin, k / p - halfwidth_cycles / span), min(fmax, k / p + halfwidth_cycles / span)
            if hi > lo:
                w.append((lo, hi))
    return np.array(w, np.float64).reshape(-1, 2)


def _fap(z2: float, n_trials: int) -> tuple[float, float]:
    """False-alarm probability 1 - (1 - e^{-Z²/2})^N of the highest of N independent χ²₂
    powers, and its log10 (kept accurate where the probability underflows)."""
    log_single = -0.5 * z2
    fap = float(-np.expm1(n_trials * np.log1p(-math.exp(log_single)))) if z2 < 1400 else 0.0
    log10_fap = math.log10(fap) if fap > 0 else math.log10(n_trials) + log_single / math.log(10)
    return fap, float(log10_fap)


def z2_search(events: EventList, band: tuple[float, float] = (0.5, 7.0), *, fmin: float | None = None,
              fmax: float | None = None, oversample: int = 4, frame_time: float | None = None,
              null: tuple[np.ndarray, np.ndarray] | None = None, exclude_dither: bool = True,
              dither_harmonics: int = 3) -> dict:
    """Blind Z²₁ period search (see module docstring) against ``null`` (see :func:`z2_at`).
    Default range: 10 cycles per span to the Nyquist frequency of the frame time
    (1 / (2 TIMEDEL)).

    With ``exclude_dither`` the windows of :func:`dither_windows` (dither periods 707 s and
    1000 s and their first ``dither_harmonics`` harmonics, ± 2 cycles per span) are left out
    of the search and of the trial count N = (f_max - f_min - excluded width) x span; the
    highest peak inside them is reported separately (``dither_peak``, FAP with the trials of
    the windows), so that dither modulation is flagged but never called a period."""
    t = _band(events, band)
    span = events.span
    ft = frame_time or events.frame_time or 3.24104
    fmin = 10.0 / span if fmin is None else fmin
    fmax = 0.5 / ft if fmax is None else fmax
    out: dict = {"band_keV": list(band), "fmin_hz": fmin, "fmax_hz": fmax, "n_events": int(t.size)}
    if t.size < 10 or fmax <= fmin:
        out.update(z2=0.0, period_s=float("nan"), fap=1.0, n_trials=0, log10_fap=0.0)
        return out
    if span / ft * oversample > Z2_MAX_BINS:       # e.g. 2.85-ms CC frames: bin coarser, lower f_max
        ft = ft * math.ceil(span / ft * oversample / Z2_MAX_BINS)
        fmax = min(fmax, 0.5 / ft)
        out.update(fmax_hz=fmax, binned_s=ft, note="search binned coarser than the frame time (FFT size cap); "
                                                   "f_max lowered to 1 / (2 x bin)")
        if fmax <= fmin:
            out.update(z2=0.0, period_s=float("nan"), fap=1.0, n_trials=0, log10_fap=0.0)
            return out
    nb = int(math.ceil(span / ft))
    edges = events.tstart + ft * np.arange(nb + 1)
    counts = np.histogram(t, edges)[0].astype(np.float64)
    pieces, prate = _null_pieces(events.gti, null)
    expected = np.zeros(nb)
    for (a, b), r in zip(pieces, prate, strict=True):
        expected += r * gti_overlap(edges, np.array([[a, b]]))
    expected *= t.size / expected.sum()
    resid = counts - expected
    nfft = 1 << int(math.ceil(math.log2(nb * oversample)))
    spec = np.fft.rfft(resid, nfft)
    freqs = np.fft.rfftfreq(nfft, ft)
    sel = (freqs >= fmin) & (freqs <= fmax)
    win = dither_windows(span, fmin, fmax, harmonics=dither_harmonics) if exclude_dither else np.zeros((0, 2))
    in_win = np.zeros(freqs.size, bool)
    for lo, hi in win:
        in_win |= (freqs >= lo) & (freqs <= hi)
    excluded = float(sum(hi - lo for lo, hi in _merge_windows(win)))
    # binning at the frame time attenuates the power by sinc²(f·ft); undo it for the search
    att = np.sinc(freqs * ft) ** 2
    power = 2.0 * np.abs(spec) ** 2 / t.size / np.maximum(att, 1e-3)
    df = 1.0 / (nfft * ft)

    def refine(mask: np.ndarray) -> tuple[float, float]:
        k = int(np.flatnonzero(mask)[np.argmax(power[mask])])
        fine = freqs[k] + np.linspace(-2 * df, 2 * df, 81)
        z_fine = z2_at(t, fine, events.gti, null)
        j = int(np.argmax(z_fine))
        return float(z_fine[j]), float(fine[j])

    search = sel & ~in_win
    n_trials = max(1, int((fmax - fmin - excluded) * span))
    if search.any():
        z2, f_best = refine(search)
        fap, log10_fap = _fap(z2, n_trials)
        out.update(z2=z2, freq_hz=f_best, period_s=float(1.0 / f_best), fap=fap, n_trials=n_trials,
                   log10_fap=log10_fap)
    else:
        out.update(z2=0.0, period_s=float("nan"), fap=1.0, n_trials=0, log10_fap=0.0)
    out["dither_excluded"] = {"windows_hz": win.tolist(), "excluded_width_hz": excluded}
    if (sel & in_win).any():
        zd, fd = refine(sel & in_win)
        n_d = max(1, int(round(excluded * span)))
        fap_d, l10_d = _fap(zd, n_d)
        out["dither_peak"] = {"z2": zd, "freq_hz": fd, "period_s": 1.0 / fd, "n_trials": n_d, "fap": fap_d,
                              "log10_fap": l10_d}
    return out


def _merge_windows(win: np.ndarray) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for lo, hi in sorted(map(tuple, win)):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def block_morphology(bb: dict, *, high: float = 2.0, low: float = 0.5) -> dict:
    """Shape of a Bayesian-blocks light curve (:func:`bayesian_blocks_flare` output):
    eruptions = maximal runs of blocks at >= ``high`` x the baseline rate, dips = runs at <=
    ``low`` x it; their number, intervals (s) and the fraction of the good time they cover."""
    if bb.get("n_blocks", 1) < 2 or "rates" not in bb:
        return {"n_eruptions": 0, "n_dips": 0, "eruptions": [], "dips": [], "eruption_time_fraction": 0.0,
                "dip_time_fraction": 0.0}
    edges, rate = np.asarray(bb["edges"]), np.asarray(bb["rates"])
    base = bb["baseline_rate"]
    live = np.diff(edges)

    def runs(mask: np.ndarray) -> list[tuple[int, int]]:
        out, k = [], 0
        while k < mask.size:
            if mask[k]:
                j = k
                while j + 1 < mask.size and mask[j + 1]:
                    j += 1
                out.append((k, j))
                k = j + 1
            else:
                k += 1
        return out

    er, dp = runs(rate >= high * base), runs(rate <= low * base)
    tot = live.sum()
    return {"n_eruptions": len(er), "n_dips": len(dp),
            "eruptions": [[float(edges[a]), float(edges[b + 1])] for a, b in er],
            "dips": [[float(edges[a]), float(edges[b + 1])] for a, b in dp],
            "eruption_time_fraction": float(sum(live[a:b + 1].sum() for a, b in er) / tot),
            "dip_time_fraction": float(sum(live[a:b + 1].sum() for a, b in dp) / tot)}


def dither_z2(events: EventList, band: tuple[float, float] = (0.5, 7.0),
              null: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Z²₁ at the ACIS dither frequencies (1/707 s, 1/1000 s) against ``null`` (e.g. the
    Bayesian-blocks light curve) and their false-alarm probabilities (2 trials): significant
    power flags a source modulated by the dither (chip edge, bad column)."""
    t = _band(events, band)
    out = {}
    for p in (707.0, 1000.0):
        z = float(z2_at(t, np.array([1.0 / p]), events.gti, null)[0]) if t.size else 0.0
        out[f"{p:.0f}s"] = {"z2": z, "fap": float(min(1.0, 2 * math.exp(-0.5 * z)))}
    out["modulated"] = bool(any(v["fap"] < 1e-3 for v in out.values()))
    return out


def band_counts(events: EventList, bands: Sequence[tuple[float, float]] = CSC_BANDS) -> np.ndarray:
    """Counts per band."""
    return np.array([np.sum((events.energy >= lo) & (events.energy < hi)) for lo, hi in bands], np.float64)


def hardness_ratios(src: np.ndarray, bkg: np.ndarray | None = None, backscal: float = 0.0, *,
                    n_draws: int = 4000, seed: int = 0) -> dict:
    """CSC hardness ratios from band counts S, M, H (and background counts scaled by
    ``backscal``): median and 16/84 % quantiles of draws from the Poisson posteriors
    (Jeffreys prior, Gamma(n + 1/2)), source intensities clipped at zero."""
    rng = np.random.default_rng(seed)
    src = np.asarray(src, np.float64)
    lam = rng.gamma(src[:, None] + 0.5, 1.0, size=(3, n_draws))
    if bkg is not None and backscal > 0:
        lam = lam - backscal * rng.gamma(np.asarray(bkg, np.float64)[:, None] + 0.5, 1.0, size=(3, n_draws))
    lam = np.clip(lam, 0.0, None)
    s, m, h = lam
    out = {}
    for key, (a, b) in {"hard_hm": (h, m), "hard_ms": (m, s), "hard_hs": (h, s)}.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (a - b) / (a + b)
        r = r[np.isfinite(r)]
        if r.size == 0:
            out[key] = {"value": float("nan"), "lo": float("nan"), "hi": float("nan")}
            continue
        q = np.quantile(r, [0.16, 0.5, 0.84])
        out[key] = {"value": float(q[1]), "lo": float(q[0]), "hi": float(q[2])}
    out["counts_SMH"] = src.tolist()
    if bkg is not None:
        out["background_counts_SMH"] = np.asarray(bkg, np.float64).tolist()
        out["backscal"] = float(backscal)
    return out


__all__ = ["CSC_BANDS", "DITHER_PERIODS", "gti_overlap", "binned_light_curve", "bayesian_blocks_events", "bayesian_blocks_flare", "z2_at",
           "z2_search", "dither_windows", "block_morphology", "dither_z2", "band_counts", "hardness_ratios"]
