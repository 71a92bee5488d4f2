"""Event-level Monte Carlo of ACIS pileup.

Photons are drawn from a source spectrum through the ARF, binned into CCD
frames, placed on the detector by a PSF model, deposit Gaussian charge clouds
split over pixels, and are read out as 3x3 islands around local maxima above
the event threshold.  Islands are graded (ASCA grades, see :mod:`.grades`) and
their pulse height goes through the RMF.  Two or more photons that share an
island in one frame become one event with summed energy and, often, a
migrated grade: that is pileup, with no free parameter like Davis' alpha.

Defaults (documented approximations):

* frame time 3.24104 s (3.2 s exposure + 41.04 ms transfer); each frame receives
  Poisson(rate x frame_time) photons, timed within its exposed part (for the dither);
  the read-out streak is simulated only with ``transfer_streak=True`` (as MARX does):
  a photon arriving during the transfer (``transfer_time / frame_time`` of them) lands
  on a random row of its column and is read out alone;
* PSF (``psf``): ``"chandra"`` (default), the on-axis HRMA PSF with energy-dependent
  encircled energy from published calibration (:mod:`.psf`: a King profile through the
  50 % and 90 % radii at 1.49 and 6.4 keV); ``"gaussian"``, a circular Gaussian with
  sigma 0.36 arcsec (50 % radius 0.42 arcsec at every energy); ``"king"``, one King
  profile (1 + (r/r_c)^2)^-beta with r_c 0.35 arcsec, beta 1.5; ``"delta"``; ``"hrma"``,
  the focal-plane PSF as MARX ray-traces it (:func:`.psf.sample_hrma`).  Pixel
  0.492 arcsec;
* dither: the ACIS Lissajous pattern (amplitude 8 arcsec, periods 1000 s and 707.1 s,
  random phases); each photon sits at the pointing of its arrival time, so the
  sub-pixel phase of the source changes from frame to frame and the source drifts by
  at most 0.28 arcsec within a 3.2 s frame.  ``dither_amplitude_arcsec=0`` gives the
  older model: a random sub-pixel phase per frame, fixed within the frame;
* grading (``grading``): ``"cloud"`` (default) is the charge-cloud model below;
  ``"marx"`` follows MARX's ``marxpileup`` convention (each photon's charge in its own
  pixel, 3x3 islands around local maxima, every single photon a good event, an island
  of n >= 2 photons kept with probability alpha^(n-1), islands above the response's top
  energy kept in its last channel; see docs/eventsim.md);
* charge cloud: Gaussian, sigma 0.1 pixel (FI CCD, ~2.4 microns on 24 micron
  pixels; gives ~50 % grade 0, ~20 % grade 2, ~10 % each grades 3, 4 and ~7 % grade 6
  at low rates, as seen for FI chips), optionally growing with energy;
* thresholds: event 20 ADU ~ 0.080 keV, split 13 ADU ~ 0.052 keV (gain ~4 eV/ADU);
  read noise 2 e- ~ 0.007 keV per pixel;
* pulse height: by default the whole 3x3 island's charge (``pha_sum="island"``).  The
  flight processing sums only pixels above the split threshold (``pha_sum="asca"``), but
  the charge it loses that way is already part of the calibrated RMF that the pulse
  height goes through next; summing it here as well moved 5-27 % of the 0.1-0.5 keV
  counts down in energy at low rates (60,000 events: 1.27x the folded model below
  0.3 keV, 0.985x at 0.5-2 keV, chi-square p = 1e-4), while the island sum agrees with
  the folded model (benchmarks/bench_eventsim.py, ``low_rate_chi2_p``).

Everything is vectorised over photons and frames; only frames with at least one
photon are processed.  The default ``engine="sparse"`` (charge-cloud grading) stores only
the pixels that hold charge and the empty neighbours of island centres, instead of a
``grid_px`` x ``grid_px`` image per frame (``engine="dense"``, kept as the reference):
identical events without read noise, the same distribution with it
(tests/test_eventsim_fast.py), about 10x faster on bright 1/8-subarray spectra
(benchmarks/bench_eventsim_speed.py).  Photons that the PSF wings put more than ``grid_px/2 - 2``
pixels from the source are read out as isolated single photons (the surface density
there is far too low for them to pile up).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from ...errors import ParameterError
from .grades import ASCA_GRADE, BITS, GOOD_GRADES, PH_MASK
from .psf import (
    DITHER_AMPLITUDE_ARCSEC,
    DITHER_PERIODS_S,
    chandra_king,
    dither_offsets,
    sample_hrma,
    sample_king,
)

PSFS = ("chandra", "gaussian", "king", "delta", "hrma")
GRADINGS = ("cloud", "marx")
ENGINES = ("sparse", "dense")


@dataclass
class EventSimConfig:
    """Detector and PSF settings of the event-level simulator (units in names)."""

    frame_time: float = 3.24104
    transfer_time: float = 0.04104  # s of each frame spent in transfer (photon times avoid it; dither only)
    pixel_arcsec: float = 0.492
    psf: str = "chandra"
    psf_sigma_arcsec: float = 0.36
    king_rc_arcsec: float = 0.35
    king_beta: float = 1.5
    cloud_sigma_px: float = 0.1
    cloud_sigma_slope_px_per_kev: float = 0.0
    event_threshold_kev: float = 0.080
    split_threshold_kev: float = 0.052
    read_noise_kev: float = 0.007
    grid_px: int = 32
    frames_per_chunk: int = 2048
    good_grades: tuple[int, ...] = GOOD_GRADES
    pha_sum: str = "island"  # "island": whole 3x3 charge; "asca": pixels above split threshold
    dither_amplitude_arcsec: float = DITHER_AMPLITUDE_ARCSEC
    dither_period_y_s: float = DITHER_PERIODS_S[0]
    dither_period_z_s: float = DITHER_PERIODS_S[1]
    grading: str = "cloud"  # "cloud": charge clouds and ASCA grades; "marx": marxpileup's alpha rule
    engine: str = "sparse"  # grading="cloud": "sparse" (touched pixels only) or "dense" (whole images; reference)
    marx_alpha: float = 0.5  # grade-migration parameter of grading="marx"
    transfer_streak: bool = False  # photons arriving during the frame transfer go to the read-out streak

    def validate(self) -> None:
        checks = {
            "frame_time": self.frame_time > 0,
            "pixel_arcsec": self.pixel_arcsec > 0,
            "transfer_time": self.transfer_time >= 0,
            "psf": self.psf in PSFS,
            "psf_sigma_arcsec": self.psf_sigma_arcsec >= 0,
            "king_beta": self.king_beta > 1.0,
            "cloud_sigma_px": self.cloud_sigma_px > 0,
            "split_threshold_kev": 0 < self.split_threshold_kev <= self.event_threshold_kev,
            "grid_px": self.grid_px >= 8,
            "pha_sum": self.pha_sum in ("island", "asca"),
            "dither_amplitude_arcsec": self.dither_amplitude_arcsec >= 0,
            "dither_period_y_s": self.dither_period_y_s > 0,
            "dither_period_z_s": self.dither_period_z_s > 0,
            "grading": self.grading in GRADINGS,
            "marx_alpha": 0 < self.marx_alpha <= 1,
            "transfer_streak": isinstance(self.transfer_streak, bool | np.bool_),
            "engine": self.engine in ENGINES,
        }
        expect = {"psf": f"; expected one of {', '.join(PSFS)}",
                  "grading": f"; expected one of {', '.join(GRADINGS)}",
                  "marx_alpha": "; expected 0 < alpha <= 1",
                  "engine": f"; expected one of {', '.join(ENGINES)}",
                  "transfer_time": "; expected a non-negative time in s"}
        for name, ok in checks.items():
            if not ok:
                raise ParameterError(f"invalid value {getattr(self, name)!r}{expect.get(name, '')}",
                                     field=f"eventsim.{name}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EventList:
    """Simulated events (one row per detected island)."""

    time: np.ndarray          # s, frame mid-times
    x: np.ndarray             # detector pixel of the island centre
    y: np.ndarray
    pha_kev: np.ndarray       # island pulse height, keV (before the RMF)
    pi: np.ndarray            # channel drawn from the RMF (-1: lost)
    energy_ev: np.ndarray     # calibrated energy of the channel, eV
    grade: np.ndarray         # ASCA grade 0-7
    fltgrade: np.ndarray      # ACIS flight grade 0-255
    npile: np.ndarray         # photons contributing charge to the island
    n_frames: int
    n_photons: int
    exposure: float
    config: dict = field(default_factory=dict)

    @property
    def good(self) -> np.ndarray:
        good = np.isin(self.grade, self.config.get("good_grades", GOOD_GRADES))
        return good & (self.pi >= 0)

    def spectrum(self, n_channels: int, offset: int = 0, good_only: bool = True) -> np.ndarray:
        """Counts per channel (channel numbers start at ``offset``)."""
        sel = self.good if good_only else self.pi >= 0
        return np.bincount(self.pi[sel] - offset, minlength=n_channels)[:n_channels].astype(float)

    def pileup_fraction(self) -> float:
        """Fraction of detected islands (any grade) made of two or more photons.

        The per-island form of the ABC-guide definition (frames with two or more
        photons over frames with one or more); for a point-like PSF it equals
        1 - L/(e^L - 1) for L photons per frame.
        """
        det = self.pi >= 0
        return float(np.mean(self.npile[det] >= 2)) if det.any() else 0.0

    def piled_good_fraction(self) -> float:
        """Fraction of good-grade events made of two or more photons."""
        g = self.good
        return float(np.mean(self.npile[g] >= 2)) if g.any() else 0.0

    def kept_fraction(self) -> float:
        """Incident photons that end up in good-grade events (sum of their NPILE) over all photons.

        A photon that lies in two overlapping islands is counted in both, as in marxpileup.
        """
        return float(self.npile[self.good].sum()) / max(self.n_photons, 1)

    def loss_fraction(self) -> float:
        """1 - (good events / incident photons): flux lost to grade migration and merging."""
        return 1.0 - float(self.good.sum()) / max(self.n_photons, 1)

    def counts_per_frame(self) -> float:
        """Detected good events per frame."""
        return float(self.good.sum() / max(self.n_frames, 1))


def _psf_offsets(n: int, cfg: EventSimConfig, rng: np.random.Generator,
                 energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Photon offsets from the PSF centre, in pixels (energy in keV, used by the Chandra PSF)."""
    scale = 1.0 / cfg.pixel_arcsec
    if cfg.psf == "delta":
        return np.zeros(n), np.zeros(n)
    if cfg.psf == "hrma":
        dx, dy = sample_hrma(np.full(n, 1.49) if energy is None else energy, rng)
        return dx * scale, dy * scale
    if cfg.psf == "chandra":
        rc, beta = chandra_king(np.full(n, 1.49) if energy is None else energy)
        dx, dy = sample_king(rc * scale, beta, rng)
        return dx, dy
    if cfg.psf == "gaussian":
        s = cfg.psf_sigma_arcsec * scale
        return rng.normal(0, s, n), rng.normal(0, s, n)
    # King profile: surface brightness (1 + r^2/rc^2)^-beta; radial CDF inverted analytically
    u = rng.random(n)
    rc = cfg.king_rc_arcsec * scale
    r = rc * np.sqrt((1.0 - u) ** (1.0 / (1.0 - cfg.king_beta)) - 1.0)
    phi = rng.random(n) * 2 * np.pi
    return r * np.cos(phi), r * np.sin(phi)


def _rmf_cdf(rmf_matrix) -> np.ndarray:
    """Row-wise cumulative redistribution (M, C) as float32."""
    dense = rmf_matrix.toarray() if sp.issparse(rmf_matrix) else np.asarray(rmf_matrix)
    return np.cumsum(dense, axis=1, dtype=np.float64).astype(np.float32)


def _draw_channels(pha_kev, edges, cdf, rng, block: int = 20000) -> np.ndarray:
    """Channel index (0-based, -1 lost) for each island energy through the RMF.

    The channel is the number of entries of the island energy's cumulative RMF row below a
    uniform draw u (float32).  All rows are searched at once: row m is shifted by 2m (its
    values lie in [0, ~1]) so that the flattened (M*C) table is sorted, and one
    ``searchsorted`` of u + 2m finds the channel (same draws and results as a per-row
    count, up to float64 rounding of entries below 2^-40).  ``block`` is unused (kept for
    callers).
    """
    m = np.searchsorted(edges, pha_kev, side="right") - 1
    out = np.full(pha_kev.size, -1, dtype=np.int64)
    inside = (m >= 0) & (m < cdf.shape[0])
    idx = np.flatnonzero(inside)
    u = rng.random(idx.size).astype(np.float32)
    n_rows, n_ch = cdf.shape
    shift = 2.0 * np.arange(n_rows)
    flat = (cdf.astype(np.float64) + shift[:, None]).ravel()
    mi = m[idx]
    q = u.astype(np.float64) + shift[mi]
    o = np.argsort(q)                       # sorted queries: cache-friendly search
    ch = np.empty(idx.size, dtype=np.int64)
    ch[o] = np.searchsorted(flat, q[o], side="left")
    ch -= mi * n_ch
    ch[ch >= n_ch] = -1  # beyond the row's total: not detected
    out[idx] = ch
    return out


def simulate_events(
    rate: np.ndarray,
    energy_edges: np.ndarray,
    rmf_matrix,
    exposure: float,
    channel_energies: tuple[np.ndarray, np.ndarray] | None = None,
    config: EventSimConfig | None = None,
    seed: int | np.random.Generator | None = None,
    channel_offset: int = 0,
) -> EventList:
    """Simulate an ACIS event list.

    rate: photons/s per response energy bin *after* the ARF (flux x ARF), shape (M,);
    energy_edges: (M+1,) keV; rmf_matrix: (M, C) redistribution (sparse or dense);
    exposure: s; channel_energies: (e_min, e_max) per channel in keV for the ENERGY column.
    """
    cfg = config or EventSimConfig()
    cfg.validate()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rate = np.asarray(rate, dtype=float)
    edges = np.asarray(energy_edges, dtype=float)
    if rate.ndim != 1 or edges.size != rate.size + 1:
        raise ParameterError(f"expected {edges.size - 1} rates per energy bin, got shape {rate.shape}",
                             field="rate")
    if np.any(~np.isfinite(rate)) or np.any(rate < 0):
        raise ParameterError("expected finite, non-negative photon rates", field="rate")
    if not exposure > 0:
        raise ParameterError(f"expected a positive exposure, got {exposure}", field="exposure")
    cdf = _rmf_cdf(rmf_matrix)

    n_frames = max(int(round(exposure / cfg.frame_time)), 1)
    total_rate = rate.sum()
    per_frame = total_rate * exposure / n_frames
    n_per_frame = rng.poisson(per_frame, size=n_frames)
    n_photons = int(n_per_frame.sum())
    probs = rate / total_rate if total_rate > 0 else np.full(rate.size, 1.0 / rate.size)

    G = cfg.grid_px
    c0 = G // 2
    chunks = []
    busy = np.flatnonzero(n_per_frame)
    # photons of all busy frames, in frame order
    frame_of_photon = np.repeat(busy, n_per_frame[busy])
    ebin = rng.choice(rate.size, size=n_photons, p=probs)
    energy = edges[ebin] + rng.random(n_photons) * (edges[ebin + 1] - edges[ebin])
    sx, sy = _source_position(frame_of_photon, n_frames, cfg, rng)
    dx, dy = _psf_offsets(n_photons, cfg, rng, energy)
    px, py = c0 + sx + dx, c0 + sy + dy
    # wing photons far from the source: read out alone (no pileup), in a frame of their own
    if cfg.transfer_streak:
        py = _streak(py, cfg, rng, G)
    far = (px < 2) | (px >= G - 2) | (py < 2) | (py >= G - 2)
    true_x, true_y = np.floor(px[far]).astype(np.int64), np.floor(py[far]).astype(np.int64)
    far_frames = frame_of_photon[far]
    px[far], py[far] = c0 + px[far] % 1.0, c0 + py[far] % 1.0
    near = ~far
    frame_near = frame_of_photon[near]
    busy_near, per_frame = np.unique(frame_near, return_counts=True)
    offs = np.concatenate([[0], np.cumsum(per_frame)])
    pxn, pyn, en = px[near], py[near], energy[near]

    k = np.arange(-1, 2)
    process = (_process_chunk_marx if cfg.grading == "marx" else
               _process_chunk if cfg.engine == "dense" else _process_chunk_sparse)
    for s in range(0, busy_near.size, cfg.frames_per_chunk):
        fr = busy_near[s:s + cfg.frames_per_chunk]
        a, b = offs[s], offs[min(s + cfg.frames_per_chunk, busy_near.size)]
        local_frame = np.repeat(np.arange(fr.size), per_frame[s:s + cfg.frames_per_chunk])
        chunks.append(process(fr, local_frame, pxn[a:b], pyn[a:b], en[a:b], cfg, rng, k, G))
    ef = energy[far]
    for s in range(0, far_frames.size, cfg.frames_per_chunk):
        sl = slice(s, s + cfg.frames_per_chunk)
        n_sl = far_frames[sl].size
        c = process(far_frames[sl], np.arange(n_sl), px[far][sl], py[far][sl], ef[sl], cfg, rng, k, G)
        # back to the photons' true pixels (each far frame holds one photon, local frame index = photon)
        c["x"] = c["x"] - c0 + true_x[sl][c["local"]]
        c["y"] = c["y"] - c0 + true_y[sl][c["local"]]
        chunks.append(c)

    ev = {key: np.concatenate([c[key] for c in chunks]) if chunks else np.zeros(0)
          for key in ("frame", "x", "y", "pha", "flt", "npile")}
    order = np.argsort(ev["frame"], kind="stable")
    ev = {key: v[order] for key, v in ev.items()}
    frames = ev["frame"].astype(np.int64)
    pha = ev["pha"].astype(float)
    ch = _draw_channels(pha, edges, cdf, rng)
    # grading="marx": marxpileup writes every surviving island, whatever its energy (MARX's
    # energy-to-PHA map extrapolates; no upper threshold), so an island above the response's
    # top energy is a detected event, put in the last channel with its true energy
    over = (ch < 0) & (pha >= edges[-1]) if cfg.grading == "marx" else np.zeros(ch.size, dtype=bool)
    ch[over] = cdf.shape[1] - 1
    if channel_energies is not None:
        lo, hi = channel_energies
        valid = ch >= 0
        e_ev = np.zeros(ch.size)
        e_ev[valid] = 1000.0 * (lo[ch[valid]] + rng.random(valid.sum()) * (hi[ch[valid]] - lo[ch[valid]]))
        e_ev[over] = 1000.0 * pha[over]
    else:
        e_ev = 1000.0 * pha
    flt = ev["flt"].astype(np.int64)
    return EventList(
        time=(frames + 0.5) * cfg.frame_time,
        x=ev["x"].astype(np.int32), y=ev["y"].astype(np.int32),
        pha_kev=pha, pi=np.where(ch >= 0, ch + channel_offset, -1), energy_ev=e_ev,
        grade=ASCA_GRADE[flt].astype(np.int16), fltgrade=flt.astype(np.int16),
        npile=ev["npile"].astype(np.int16), n_frames=n_frames, n_photons=n_photons,
        exposure=float(exposure), config=cfg.to_dict(),
    )


def _cloud_charge(px, py, energy, local_frame, cfg, k, G):
    """Each photon's Gaussian charge cloud over its 3x3 pixels, for both grading engines:
    (ix, iy, local frame, charge (n, 3y, 3x) in keV) of the photons at least one pixel
    inside the G x G grid."""
    inside = (px >= 1) & (px < G - 1) & (py >= 1) & (py < G - 1)
    px, py, energy, lf = px[inside], py[inside], energy[inside], local_frame[inside]
    ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    sig = cfg.cloud_sigma_px + cfg.cloud_sigma_slope_px_per_kev * energy
    # fraction of the Gaussian cloud in pixel columns ix-1, ix, ix+1 (and rows)
    fx = ndtr((ix[:, None] + k[None, :] + 1 - px[:, None]) / sig[:, None]) - \
        ndtr((ix[:, None] + k[None, :] - px[:, None]) / sig[:, None])
    fy = ndtr((iy[:, None] + k[None, :] + 1 - py[:, None]) / sig[:, None]) - \
        ndtr((iy[:, None] + k[None, :] - py[:, None]) / sig[:, None])
    return ix, iy, lf, energy[:, None, None] * fy[:, :, None] * fx[:, None, :]


def _process_chunk(frames, local_frame, px, py, energy, cfg, rng, k, G) -> dict:
    """Charge deposition, island finding and grading for a chunk of frames."""
    F = frames.size
    ix, iy, lf, w = _cloud_charge(px, py, energy, local_frame, cfg, k, G)
    yy = iy[:, None, None] + k[None, :, None]
    xx = ix[:, None, None] + k[None, None, :]
    flat = (lf[:, None, None] * G + yy) * G + xx
    img = np.zeros(F * G * G)
    np.add.at(img, flat.ravel(), w.ravel())
    # which photons touch each pixel (for the npile label): photon's main pixel
    owner = np.zeros(F * G * G, dtype=np.int32)
    np.add.at(owner, ((lf * G + iy) * G + ix), 1)
    img = img.reshape(F, G, G)
    if cfg.read_noise_kev > 0:
        img = img + rng.normal(0, cfg.read_noise_kev, img.shape)
    owner = owner.reshape(F, G, G)

    core = img[:, 1:-1, 1:-1]
    is_max = core >= cfg.event_threshold_kev
    # strict local maximum against half of the neighbours, >= against the other half (no double events)
    for dy_, dx_ in BITS.values():
        nb = img[:, 1 + dy_:G - 1 + dy_, 1 + dx_:G - 1 + dx_]
        is_max &= (core > nb) if (dy_, dx_) > (0, 0) else (core >= nb)
    f_idx, y_idx, x_idx = np.nonzero(is_max)
    y_idx, x_idx = y_idx + 1, x_idx + 1
    centre = img[f_idx, y_idx, x_idx]
    code = np.zeros(f_idx.size, dtype=np.int64)
    outer = np.zeros((f_idx.size, 8))
    npile = owner[f_idx, y_idx, x_idx].astype(np.int64)
    for j, (bit, (dy_, dx_)) in enumerate(BITS.items()):
        v = img[f_idx, y_idx + dy_, x_idx + dx_]
        outer[:, j] = v
        code |= np.where(v >= cfg.split_threshold_kev, bit, 0)
        npile += owner[f_idx, y_idx + dy_, x_idx + dx_]
    if cfg.pha_sum == "island":
        pha = centre + outer.sum(axis=1)
    else:
        mask = PH_MASK[code]
        bits = np.array(list(BITS.keys()))
        pha = centre + (outer * ((mask[:, None] & bits[None, :]) > 0)).sum(axis=1)
    return {"frame": frames[f_idx], "x": x_idx, "y": y_idx, "pha": pha, "flt": code, "npile": npile,
            "local": f_idx}


def _process_chunk_sparse(frames, local_frame, px, py, energy, cfg, rng, k, G) -> dict:
    """:func:`_process_chunk` on the touched pixels only (``engine="sparse"``).

    Same physics and conventions: each photon's Gaussian cloud is split over its 3x3
    pixels, every pixel that holds charge gets read noise, local maxima at or above the
    event threshold are island centres (same tie rule), and the islands' 8 outer pixels
    (read noise alone where no photon left charge; one draw per pixel, shared by
    overlapping islands) set the flight grade, pulse height and NPILE.  Only pixels with
    charge and the empty neighbours of island centres are stored, instead of the whole
    G x G image of every frame.  Not modelled (as in the dense engine up to a probability
    of ~1e-28 per pixel): an event triggered by read noise alone (20 ADU is 11 sigma).
    """
    ix, iy, lf, w = _cloud_charge(px, py, energy, local_frame, cfg, k, G)
    # pixel keys on a grid padded by 2 (no wrap-around for the neighbours' neighbours)
    W = G + 4
    main = (lf * W + iy + 2) * W + ix + 2
    keys9 = (main[:, None, None] + k[None, :, None] * W + k[None, None, :]).ravel()
    # distinct pixels (np.unique's result; a stable sort is fast on these frame-ordered keys)
    order = np.argsort(keys9, kind="stable")
    sk = keys9[order]
    first = np.empty(sk.size, dtype=bool)
    first[:1] = True
    np.not_equal(sk[1:], sk[:-1], out=first[1:])
    ukeys = sk[first]
    inv = np.empty(sk.size, dtype=np.int64)
    inv[order] = np.cumsum(first) - 1
    val = np.bincount(inv, weights=w.ravel(), minlength=ukeys.size)
    owner = np.bincount(inv.reshape(-1, 9)[:, 4], minlength=ukeys.size)  # photon's own pixel
    if cfg.read_noise_kev > 0:
        val = val + rng.normal(0, cfg.read_noise_kev, ukeys.size)
    cand = np.flatnonzero(val >= cfg.event_threshold_kev)
    ckey = ckey0 = ukeys[cand]
    centre = val[cand]
    # the 8 outer pixels: charged ones from the table, empty ones read noise alone
    offs = np.array([dy_ * W + dx_ for dy_, dx_ in BITS.values()])
    nkey = ckey[:, None] + offs[None, :]
    # a pixel -> table-row map over the chunk's padded frames (calloc: only touched pages cost)
    table = np.zeros(int(lf.max(initial=0) + 1) * W * W, dtype=np.int32)
    table[ukeys] = np.arange(1, ukeys.size + 1, dtype=np.int32)
    pos = table[nkey] - 1
    hit = pos >= 0
    nval = np.where(hit, val[pos], 0.0)
    nown = np.where(hit, owner[pos], 0)
    miss = nkey[~hit]
    if miss.size and cfg.read_noise_kev > 0:
        umiss, minv = np.unique(miss, return_inverse=True)
        nval[~hit] = rng.normal(0, cfg.read_noise_kev, umiss.size)[minv]
    is_max = np.ones(cand.size, dtype=bool)
    for j, (dy_, dx_) in enumerate(BITS.values()):
        is_max &= (centre > nval[:, j]) if (dy_, dx_) > (0, 0) else (centre >= nval[:, j])
    ckey, centre, nval, nown = ckey0[is_max], centre[is_max], nval[is_max], nown[is_max]
    bits = np.array(list(BITS.keys()))
    code = ((nval >= cfg.split_threshold_kev) * bits[None, :]).sum(axis=1).astype(np.int64)
    npile = owner[cand[is_max]].astype(np.int64) + nown.sum(axis=1)
    if cfg.pha_sum == "island":
        pha = centre + nval.sum(axis=1)
    else:
        mask = PH_MASK[code]
        pha = centre + (nval * ((mask[:, None] & bits[None, :]) > 0)).sum(axis=1)
    f_idx = ckey // (W * W)
    y_idx = (ckey // W) % W - 2
    x_idx = ckey % W - 2
    return {"frame": frames[f_idx], "x": x_idx, "y": y_idx, "pha": pha, "flt": code, "npile": npile,
            "local": f_idx}


def _source_position(frame_of_photon: np.ndarray, n_frames: int, cfg: EventSimConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Source centroid (pixels, relative to the grid centre) when each photon arrives.

    With dither: the Lissajous pointing at the photon's arrival time (uniform over the
    frame's exposed part), less the whole-pixel shift of its frame's start, so that the
    source stays near the grid centre while its sub-pixel phase follows the dither.
    Without: one random sub-pixel phase per frame.
    """
    if cfg.dither_amplitude_arcsec == 0:
        phase = rng.random((n_frames, 2))
        return phase[frame_of_photon, 0], phase[frame_of_photon, 1]
    # exposed part of the frame (a transfer time as long as the frame, e.g. continuous clocking: all of it)
    live = cfg.frame_time - cfg.transfer_time if cfg.transfer_time < cfg.frame_time else cfg.frame_time
    t0 = frame_of_photon * cfg.frame_time
    t = t0 + rng.random(frame_of_photon.size) * live
    periods = (cfg.dither_period_y_s, cfg.dither_period_z_s)
    phases = tuple(rng.random(2) * 2 * np.pi)
    origin = rng.random(2)
    y, z = dither_offsets(t, cfg.dither_amplitude_arcsec, periods, phases)
    y0, z0 = dither_offsets(t0, cfg.dither_amplitude_arcsec, periods, phases)
    y, z = y / cfg.pixel_arcsec + origin[0], z / cfg.pixel_arcsec + origin[1]
    y0, z0 = y0 / cfg.pixel_arcsec + origin[0], z0 / cfg.pixel_arcsec + origin[1]
    return y - np.floor(y0), z - np.floor(z0)


def _local_max(img: np.ndarray, G: int) -> np.ndarray:
    """Interior pixels (F, G-2, G-2) that are the maximum of their 3x3 neighbourhood.

    Ties are broken as in marxpileup: the centre must exceed the row below (y-1) and its
    right neighbour, and at least equal its left neighbour and the row above.
    """
    core = img[:, 1:-1, 1:-1]
    ok = np.ones(core.shape, dtype=bool)
    for dy_, dx_ in BITS.values():
        nb = img[:, 1 + dy_:G - 1 + dy_, 1 + dx_:G - 1 + dx_]
        strict = dy_ < 0 or (dy_ == 0 and dx_ > 0)
        ok &= (core > nb) if strict else (core >= nb)
    return ok


def _box3(img: np.ndarray, G: int) -> np.ndarray:
    """3x3 sums over the interior pixels (F, G-2, G-2)."""
    out = np.zeros((img.shape[0], G - 2, G - 2), dtype=img.dtype)
    for dy_ in (-1, 0, 1):
        for dx_ in (-1, 0, 1):
            out += img[:, 1 + dy_:G - 1 + dy_, 1 + dx_:G - 1 + dx_]
    return out


def _streak(py: np.ndarray, cfg: EventSimConfig, rng: np.random.Generator, G: int) -> np.ndarray:
    """Move photons that arrive during the frame transfer onto the read-out streak.

    As MARX's ACIS model (marx/libsrc/acis-i.c, ``_marx_acis_apply_streak``): photons arrive
    uniformly over exposure + transfer; one arriving in the transfer part (probability
    transfer_time / frame_time) keeps its column and lands on a uniformly random row of the
    1024-row chip.  Here such photons are put 10-1000 rows away from the source, where they
    are read out alone (the chance of a streak photon hitting the source's 3x3 island,
    ~3/1022, is neglected).  Continuous clocking (transfer >= frame time) has no streak.
    """
    if not 0 < cfg.transfer_time < cfg.frame_time:
        return py
    s = rng.random(py.size) < cfg.transfer_time / cfg.frame_time
    py = py.copy()
    py[s] = G + 10 + rng.random(int(s.sum())) * 990
    return py


def _process_chunk_marx(frames, local_frame, px, py, energy, cfg, rng, k, G) -> dict:
    """marxpileup's event detection for a chunk of frames (grading="marx").

    Each photon's energy goes into its own pixel (photons sharing a pixel merge).  An
    occupied pixel is an event centre when both its energy and its 3x3 island energy are
    local maxima (island energies of empty pixels count as 0); the event has the island's
    summed energy and photon count n.  Single photons are always good (ASCA grade 0); an
    island of n >= 2 photons stays good with probability alpha^(n-1) and otherwise is
    kept as a grade-7 (rejected) event.  No charge spreading, thresholds or read noise.
    """
    F = frames.size
    ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    flat = (local_frame * G + iy) * G + ix
    img = np.bincount(flat, weights=energy, minlength=F * G * G).reshape(F, G, G)
    owner = np.bincount(flat, minlength=F * G * G).reshape(F, G, G)
    occupied = owner[:, 1:-1, 1:-1] > 0
    island_e = _box3(img, G) * occupied
    island_n = _box3(owner, G)
    island_img = np.zeros_like(img)
    island_img[:, 1:-1, 1:-1] = island_e
    is_event = occupied & _local_max(img, G) & _local_max(island_img, G)
    f_idx, y_idx, x_idx = np.nonzero(is_event)
    n = island_n[f_idx, y_idx, x_idx].astype(np.int64)
    pha = island_e[f_idx, y_idx, x_idx]
    keep = rng.random(n.size) < cfg.marx_alpha ** (n - 1).astype(float)
    code = np.where(keep, 0, 255)
    return {"frame": frames[f_idx], "x": x_idx + 1, "y": y_idx + 1, "pha": pha, "flt": code, "npile": n,
            "local": f_idx}
