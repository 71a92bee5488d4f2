"""relline, relconv and relline_lp: relativistic line and convolution kernels (relxill conventions).

Kernel for other layers (the relxill reflection model uses it)::

    kernel(edges, a, Incl, Rin, Rout, Index1, Index2, Rbr, limb=0, z=0, n_mu=None,
           emissivity=None) -> (B, N) or (B, n_mu, N)

    edges   (N+1,) energy edges (keV, increasing; any spacing, log is typical)
    a, Incl, Rin, Rout, Index1, Index2, Rbr, limb, z: scalars or (B,)/(B, 1) arrays,
            relxill meaning and units (Incl in degrees; negative radii in ISCO units)
    n_mu    None: the line profile of a 1 keV (rest-frame) line, observed at
            1/(1+z) keV, normalised to sum 1 over the grid;
            n_mu = 10: the same profile split by emission angle into the 10
            xillver bins equal in mu_e (bin i: 1 - (i+1)/10 <= mu_e < 1 - i/10,
            i.e. bin 0 is mu = 0.95, face-on), shape (B, 10, N); the bins sum to
            the n_mu=None profile (total 1 over bins and energies).
    emissivity  optional callable eps(r, rows) -> (B', R) replacing the broken power law
            (r: (B', R) radii in rg for batch rows ``rows``, a slice).

Physics: photon flux from a ring of radius r into an interval of the chi
parametrisation of g (g* = (1 - cos chi)/2) is pi r eps(r) L(mu_e) g^2 f dr dchi
per image branch (f: Cunningham transfer function), i.e. g^3 per unit image
area.  The table (:class:`.transfer.TransferTable.at_radii`) is evaluated on
N_FINE radii uniform in r^-RADIAL_POWER between Rin and Rout: each spin node at
the same *physical* radius, then linearly in spin; f (chi-cell means) and mu_e
linear in cos i and radius, the g range cubic in sin i and Catmull-Rom in radius.  Each cell of the (r, chi) mesh sends its photons
uniformly over the g range spanned by its corners, integrated exactly over the
output bins (no sampling noise).  Outputs are renormalised over the grid, as in
relxill (relline sums to norm).
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import ParameterError
from ...models import REGISTRY, Parameter, check_edges, register
from . import kerr
from .transfer import load_table, table_path

N_FINE = 64            # radial nodes between Rin and Rout
RADIAL_POWER = 0.5     # radial nodes uniform in r^-p (0: log-uniform; 0.5 halves the error of log at N_FINE = 64)
CONV_BINS_PER_DEX = 1000  # relconv internal log grid density (relxill: ~4096 over 6.8 dex)

__all__ = ["kernel", "resolve_radii", "relline", "relconv", "relline_lp", "line_profile"]


# ---------------------------------------------------------------------------
# parameters

def _col(x, B=None) -> np.ndarray:
    a = np.asarray(x, dtype=float).reshape(-1)
    if B is not None and a.size == 1 and B > 1:
        a = np.full(B, a[0])
    return a


def resolve_radii(a, Rin, Rout, Rbr=None):
    """relxill's radius conventions: negative values in units of the ISCO; Rin is
    clamped to >= ISCO, Rout to <= 1000 rg, Rbr to [Rin, Rout].  Rout <= Rin
    raises :class:`ParameterError`.  Returns (rin, rout, rbr) in rg."""
    a, Rin, Rout = np.broadcast_arrays(_col(a), _col(Rin), _col(Rout))
    risco = kerr.isco(a)
    rin = np.where(Rin < 0, -Rin * risco, Rin)
    rout = np.where(Rout < 0, -Rout * risco, Rout)
    if np.any(rout <= rin):
        k = int(np.argmax(rout <= rin))
        raise ParameterError(f"Rout = {rout[k]:g} rg must exceed Rin = {rin[k]:g} rg "
                             f"(negative radii are in units of the ISCO, {risco[k]:.4g} rg)", field="Rout")
    rin = np.maximum(rin, risco)
    rout = np.minimum(rout, 1000.0)
    if np.any(rout <= rin):
        k = int(np.argmax(rout <= rin))
        raise ParameterError(f"Rout = {rout[k]:g} rg lies inside the ISCO ({risco[k]:.4g} rg)", field="Rout")
    rbr = None
    if Rbr is not None:
        Rbr = np.broadcast_to(_col(Rbr), rin.shape)
        rbr = np.clip(np.where(Rbr < 0, -Rbr * risco, Rbr), rin, rout)
    return rin, rout, rbr


def _check_range(name, v, lo, hi):
    v = np.asarray(v, float)
    if np.any(~np.isfinite(v)) or np.any(v < lo) or np.any(v > hi):
        bad = v[~((v >= lo) & (v <= hi))].ravel()[0]
        raise ParameterError(f"value {bad:g} outside [{lo:g}, {hi:g}]", field=name)


def limb_law(mu: np.ndarray, limb: np.ndarray) -> np.ndarray:
    """Limb law L(mu_e): 0 isotropic, 1 Laor (1 + 2.06 mu), 2 Haardt ln(1 + 1/mu)."""
    mu = np.clip(mu, 1e-6, 1.0)
    law = np.rint(limb)
    return np.where(law == 1, 1.0 + 2.06 * mu, np.where(law == 2, np.log1p(1.0 / mu), 1.0))


def broken_power_law(r: np.ndarray, q1, q2, rbr) -> np.ndarray:
    """eps(r) = (r/Rbr)^-q1 inside Rbr, (r/Rbr)^-q2 outside (continuous)."""
    q1, q2, rbr = (np.asarray(x, float).reshape(-1, 1) for x in (q1, q2, rbr))
    x = r / rbr
    return np.where(r <= rbr, x ** (-q1), x ** (-q2))


# ---------------------------------------------------------------------------
# tent deposition: each mesh triangle's photons integrated exactly over bins

def _edge_index(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of the first edge > p (0..N+1); analytic for log-uniform edges (p > 0)."""
    lx = np.log(x)
    d = np.diff(lx)
    if d.size > 1 and np.ptp(d) < 1e-9 * d.mean():
        # a kink within roundoff of an edge contributes ~0 there: the index may round either way
        k = np.log(np.maximum(p, 1e-300))
        k -= lx[0] - d.mean()
        k *= 1.0 / d.mean()
        np.clip(k, 0.0, x.size, out=k)
        return k.astype(np.intp)
    return np.searchsorted(x, p, side="right")


def _deposit(edges: np.ndarray, gc, ha, hb, w, rows, n_rows: int, lo_r, hi_r) -> np.ndarray:
    """Bin integrals of mesh cells mapped (bi)linearly to energy.

    A cell of the (r, chi) mesh with centre energy gc and half-extents ha, hb
    (energy change across the cell along each mesh direction, halved) spreads
    its photons w over gc + u ha + v hb, u, v uniform in [-1, 1]: a trapezoid
    density (exact for a parallelogram map).  Its cumulative is a sum of terms
    q (x - p)^2 for x > p at its four kinks p (q = +-c/2); accumulated with
    cumulative sums over the edge nodes it is exact at every node (no
    sampling).  Extents are floored at 5e-5 of the energy (far below any bin).
    lo_r, hi_r (n_rows,) bound each row's support (outside: cumulative 0 or total).
    Returns (n_rows, N) photons per bin.  All inputs are flat arrays.
    """
    x = edges
    n1 = x.size
    aa, ab = np.abs(ha), np.abs(hb)
    eps = 5e-5 * gc
    M = np.maximum(aa, ab)
    m = np.minimum(aa, ab)
    np.maximum(M, eps, out=M)
    np.maximum(m, eps, out=m)
    M *= 2.0
    m *= 2.0
    hc = (0.5 * w) / (M * m)               # c/2: plateau w/M reached over a ramp of width m
    # kinks at lo, lo+m, lo+M, lo+m+M with coefficients +c/2, -c/2, -c/2, +c/2
    p = np.empty((4,) + gc.shape)
    p[0] = gc - 0.5 * (M + m)
    np.add(p[0], m, out=p[1])
    np.add(p[0], M, out=p[2])
    np.add(p[1], M, out=p[3])
    node = _edge_index(x, p)                                           # first edge above each kink
    n0, n_top = int(node.min()), int(node.max())
    n0 = max(n0, 0)
    n_top = min(n_top, n1 - 1)
    L = max(n_top - n0 + 1, 1)                                         # nodes where the cumulative varies
    node -= n0
    np.clip(node, 0, L, out=node)                                      # kinks beyond the grid: index L (dropped)
    node += (rows * (L + 1))[None, :]
    idx = node.ravel()
    ctr = 0.5 * (lo_r + hi_r)
    ps = p - ctr[rows][None, :]                                        # (4, M) relative to the row centre
    q = np.empty_like(p)
    q[0] = hc
    q[3] = hc
    np.negative(hc, out=q[1])
    q[2] = q[1]
    size = n_rows * (L + 1)

    def acc(v):
        return np.cumsum(np.bincount(idx, v.ravel(), minlength=size).reshape(n_rows, L + 1)[:, :L], axis=1)

    qp = q * ps
    xw = x[n0:n0 + L]
    xs = xw[None, :] - ctr[:, None]
    Cw = (acc(q) * xs - 2.0 * acc(qp)) * xs + acc(qp * ps)
    tot = np.bincount(rows, w, minlength=n_rows)
    Cw = np.where(xw[None, :] >= hi_r[:, None], tot[:, None], Cw)
    Cw = np.where(xw[None, :] <= lo_r[:, None], 0.0, Cw)
    C = np.empty((n_rows, n1))
    C[:, :n0] = 0.0
    C[:, n0:n0 + L] = Cw
    C[:, n0 + L:] = tot[:, None]
    return np.maximum(np.diff(C, axis=1), 0.0)


# ---------------------------------------------------------------------------
# the kernel

def _threads() -> int:
    """Worker threads for batched profiles: $SIMXRAY_THREADS, else min(2, CPUs)."""
    env = os.environ.get("SIMXRAY_THREADS")
    if env and env.strip().isdigit():
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


_POOL: dict = {}


def line_profile(edges, a, incl_deg, rin, rout, emis_fn, limb, scale, n_mu=None,
                 n_fine: int = N_FINE, table=None, threads: int | None = None) -> np.ndarray:
    """Unnormalised photon line profile on ``edges`` (energy = g * scale).

    a, incl_deg, rin, rout, limb, scale: (B,); ``emis_fn(r, rows)`` returns the
    emissivity (B', R) on radii r (B', R) (rg) for the batch rows ``rows`` (a
    slice).  Large batches are split over ``threads`` worker threads (numpy
    releases the GIL in its array loops).  Returns (B, N) or (B, n_mu, N).
    """
    tab = table if table is not None else load_table()
    a = _col(a)
    B = a.size
    nthr = threads if threads is not None else _threads()
    if nthr > 1 and B >= 32:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOL.get(nthr)
        if pool is None:
            pool = _POOL[nthr] = ThreadPoolExecutor(nthr, thread_name_prefix="simxray-relline")
        inc, ri, ro, lb, sc = (_col(x, B) for x in (incl_deg, rin, rout, limb, scale))
        bounds = np.linspace(0, B, nthr + 1).astype(int)

        def work(k):
            sl = slice(bounds[k], bounds[k + 1])
            off = sl.start

            def emis_k(r, rows, _sl=sl, _off=off):
                return emis_fn(r, slice(_off + rows.start, _off + rows.stop))

            return line_profile(edges, a[sl], inc[sl], ri[sl], ro[sl], emis_k, lb[sl], sc[sl], n_mu=n_mu,
                                n_fine=n_fine, table=tab, threads=1)

        return np.concatenate(list(pool.map(work, range(nthr))), axis=0)
    incl = _col(incl_deg, B)
    rin, rout, limb, scale = (_col(x, B) for x in (rin, rout, limb, scale))
    branches = n_mu is not None or bool(np.any(np.rint(limb) != 0))
    # fine radial grid (uniform in r^-p, or log); the table is interpolated onto it at fixed physical radius
    xf = np.linspace(0.0, 1.0, n_fine)
    if RADIAL_POWER > 0:   # nodes uniform in r^-p: denser towards Rin than log
        pw = RADIAL_POWER
        r = (rin[:, None] ** -pw + (rout[:, None] ** -pw - rin[:, None] ** -pw) * xf[None, :]) ** (-1.0 / pw)
        r[:, 0], r[:, -1] = rin, rout
    else:
        r = rin[:, None] * (rout / rin)[:, None] ** xf[None, :]             # (B, R)
    gmin, gmax, trf, mu = tab.at_radii(a, np.cos(np.radians(incl)), r, branches=branches)
    chi = tab.chi
    gstar = 0.5 * (1.0 - np.cos(chi))
    g = gmin[..., None] + (gmax - gmin)[..., None] * gstar                   # (B, R, J)
    # emissivity at the nodes and the (geometric) cell midpoints: Simpson moments in ln r
    rmid = np.sqrt(r[:, 1:] * r[:, :-1])
    eps = emis_fn(np.concatenate([r, rmid], axis=1), slice(0, B))
    fn = np.pi * r * r * eps[:, :n_fine]                                       # pi r^2 eps (d r = r d ln r)
    fm = np.pi * rmid * rmid * eps[:, n_fine:]
    h6 = np.log(r[:, 1:] / r[:, :-1]) / 6.0
    e_lo = h6 * (fn[:, :-1] + 2.0 * fm)                                         # int pi r eps (1 - s) dr
    e_hi = h6 * (2.0 * fm + fn[:, 1:])                                          # int pi r eps s dr
    # chi cells: the table holds each cell's mean of f (trf (B, R, J-1[, 2])); g^2 and mu_e at the cell
    dchi = np.diff(chi)
    g2 = g * g
    g2c = 0.5 * (g2[..., :-1] + g2[..., 1:])                                   # (B, R, J-1)
    if branches:
        muc = 0.5 * (mu[:, :, :-1] + mu[:, :, 1:])
        Gc = (g2c * dchi)[..., None] * trf * limb_law(muc, limb[:, None, None, None])   # (B, R, J-1, 2)
    else:
        Gc = (g2c * dchi * trf)[..., None]                                     # (B, R, J-1, 1)
    # mesh cells: centre energy, half-extents along r and chi (bilinear corners), photon weight
    elo, dle = gmin * scale[:, None], (gmax - gmin) * scale[:, None]                # (B, R)
    gs_mean = 0.5 - (np.sin(chi[1:]) - np.sin(chi[:-1])) / (2.0 * np.diff(chi))    # mean g* over a chi cell
    gs_mid = 0.5 * (gstar[1:] + gstar[:-1])
    dgs = np.diff(gstar)
    elo_c, dle_c = 0.5 * (elo[:, 1:] + elo[:, :-1]), 0.5 * (dle[:, 1:] + dle[:, :-1])   # (B, R-1)
    gcen = elo_c[..., None] + dle_c[..., None] * gs_mean                            # (B, R-1, J-1)
    ha = 0.5 * (np.diff(elo, axis=1)[..., None] + np.diff(dle, axis=1)[..., None] * gs_mid)
    hb = 0.5 * dle_c[..., None] * dgs
    wq = e_lo[..., None, None] * Gc[:, :-1] + e_hi[..., None, None] * Gc[:, 1:]   # (B, R-1, J-1, nb)
    ext = np.abs(ha) + np.abs(hb)
    lo_b = (gcen - ext).reshape(B, -1).min(axis=1) * (1 - 1e-4)
    hi_b = (gcen + ext).reshape(B, -1).max(axis=1) * (1 + 1e-4)
    if n_mu is None:
        W = wq.sum(-1)
        rows = np.broadcast_to(np.arange(B)[:, None, None], W.shape)
        return _deposit(edges, gcen.ravel(), ha.ravel(), hb.ravel(), W.ravel(), rows.ravel(), B, lo_b, hi_b)
    n_mu = int(n_mu)
    mq = 0.25 * (mu[:, :-1, :-1] + mu[:, 1:, :-1] + mu[:, :-1, 1:] + mu[:, 1:, 1:])   # (B,R-1,J-1,2)
    mbin = np.clip(np.floor(n_mu * (1.0 - mq)).astype(int), 0, n_mu - 1)
    rows = np.arange(B)[:, None, None, None] * n_mu + mbin

    def br(q):
        return np.broadcast_to(q[..., None], wq.shape).ravel()

    out = _deposit(edges, br(gcen), br(ha), br(hb), wq.ravel(), rows.ravel(), B * n_mu,
                   np.repeat(lo_b, n_mu), np.repeat(hi_b, n_mu))
    return out.reshape(B, n_mu, -1)


def _normalise(prof: np.ndarray, norm=1.0) -> np.ndarray:
    tot = prof.reshape(prof.shape[0], -1).sum(axis=1)
    fac = np.where(tot > 0, 1.0 / np.where(tot > 0, tot, 1.0), 0.0)
    return prof * (fac * _col(norm, prof.shape[0])).reshape((-1,) + (1,) * (prof.ndim - 1))


def kernel(edges, a, Incl, Rin=-1.0, Rout=400.0, Index1=3.0, Index2=3.0, Rbr=15.0, limb=0.0, z=0.0,
           n_mu=None, emissivity=None, n_fine: int = N_FINE) -> np.ndarray:
    """Normalised relativistic line profile of a 1 keV line (see module docstring)."""
    edges = check_edges(edges)
    a = _col(a)
    B = max(a.size, *(np.size(x) for x in (Incl, Rin, Rout, Index1, Index2, Rbr, limb, z)))
    a = _col(a, B)
    _check_range("a", a, -0.998, 0.998)
    _check_range("Incl", Incl, 3.0, 87.0)
    rin, rout, rbr = resolve_radii(a, _col(Rin, B), _col(Rout, B), _col(Rbr, B))
    q1, q2 = _col(Index1, B), _col(Index2, B)
    emis = emissivity or (lambda r, rows: broken_power_law(r, q1[rows], q2[rows], rbr[rows]))
    prof = line_profile(edges, a, _col(Incl, B), rin, rout, emis, _col(limb, B), 1.0 / (1.0 + _col(z, B)),
                        n_mu=n_mu, n_fine=n_fine)
    return _normalise(prof)


# ---------------------------------------------------------------------------
# registered models

RADIUS_DOC = "negative: units of the ISCO"
P_INDEX1 = Parameter("Index1", 3.0, -10.0, 10.0, "", doc="emissivity index inside Rbr")
P_INDEX2 = Parameter("Index2", 3.0, -10.0, 10.0, "", doc="emissivity index outside Rbr")
P_RBR = Parameter("Rbr", 15.0, -100.0, 1000.0, "rg", doc="break radius; " + RADIUS_DOC)
P_A = Parameter("a", 0.998, -0.998, 0.998, "", doc="dimensionless spin")
P_INCL = Parameter("Incl", 30.0, 3.0, 87.0, "deg", doc="inclination")
P_RIN = Parameter("Rin", -1.0, -100.0, 1000.0, "rg",
                  doc="inner radius; " + RADIUS_DOC + "; clamped to >= ISCO")
P_ROUT = Parameter("Rout", 400.0, -100.0, 1000.0, "rg", doc="outer radius; " + RADIUS_DOC)
P_Z = Parameter("z", 0.0, 0.0, 10.0, "", doc="redshift")
P_LIMB = Parameter("limb", 0.0, 0.0, 2.0, "", doc="0 isotropic, 1 Laor, 2 Haardt")
P_LINEE = Parameter("lineE", 6.4, 0.01, 100.0, "keV", doc="rest-frame line energy")
P_NORM = Parameter("norm", 1.0, 0.0, 1e24, "", doc="photons/cm^2/s in the line")


@register("relline", "add", [P_LINEE, P_INDEX1, P_INDEX2, P_RBR, P_A, P_INCL, P_RIN, P_ROUT, P_Z, P_LIMB, P_NORM])
def relline(edges, lineE, Index1, Index2, Rbr, a, Incl, Rin, Rout, z, limb, norm):
    """Relativistic line from a Keplerian disk around a Kerr black hole (relxill's relline)."""
    B = np.broadcast(lineE, Index1, Index2, Rbr, a, Incl, Rin, Rout, z, limb, norm).shape[0]
    a = _col(a, B)
    rin, rout, rbr = resolve_radii(a, _col(Rin, B), _col(Rout, B), _col(Rbr, B))
    q1, q2 = _col(Index1, B), _col(Index2, B)
    prof = line_profile(edges, a, _col(Incl, B), rin, rout,
                        lambda r, rows: broken_power_law(r, q1[rows], q2[rows], rbr[rows]),
                        _col(limb, B), _col(lineE, B) / (1.0 + _col(z, B)))
    return _normalise(prof, _col(norm, B))


def _lp_emissivity(a, h, gamma):
    from .lamppost import lamppost_emissivity

    def emis(r, rows):
        aa, hh, gg = a[rows], h[rows], gamma[rows]
        return np.stack([lamppost_emissivity(r[k], float(aa[k]), float(hh[k]), float(gg[k]))
                         for k in range(r.shape[0])])

    return emis


def resolve_height(a, h):
    """relxill's lamp-post height convention: negative h in units of the horizon r+;
    heights below 1.1 r+ are raised to 1.1 r+."""
    rp = kerr.horizon(a)
    hh = np.where(h < 0, -h * rp, h)
    return np.maximum(hh, 1.1 * rp)


@register("relline_lp", "add", [
    P_LINEE,
    Parameter("h", 6.0, -100.0, 500.0, "rg", doc="lamp-post height; negative: units of r+"),
    P_A, P_INCL, P_RIN, P_ROUT, P_Z, P_LIMB,
    Parameter("gamma", 2.0, -10.0, 10.0, "", doc="photon index of the irradiating source"),
    Parameter("switch_returnrad", 1.0, 0.0, 1.0, "", frozen=True,
              doc="relxill's returning-radiation switch: accepted, not yet modelled (primary "
                  "lamp-post emissivity only; see docs/relativity.md)"),
    P_NORM,
])
def relline_lp(edges, lineE, h, a, Incl, Rin, Rout, z, limb, gamma, switch_returnrad, norm):
    """Relativistic line irradiated by a lamp post on the spin axis (relxill's relline_lp)."""
    B = np.broadcast(lineE, h, a, Incl, Rin, Rout, z, limb, gamma, switch_returnrad, norm).shape[0]
    a = _col(a, B)
    rin, rout, _ = resolve_radii(a, _col(Rin, B), _col(Rout, B))
    hh = resolve_height(a, _col(h, B))
    prof = line_profile(edges, a, _col(Incl, B), rin, rout, _lp_emissivity(a, hh, _col(gamma, B)),
                        _col(limb, B), _col(lineE, B) / (1.0 + _col(z, B)))
    return _normalise(prof, _col(norm, B))


def conv_grid(edges: np.ndarray, per_dex: int = CONV_BINS_PER_DEX):
    """relconv's internal log grid: covers edges/2 .. edges*100 (photons shifted by g in [0.01, 2])."""
    lo = max(edges[0], 1e-4) / 2.0
    hi = edges[-1] * 100.0
    n = int(np.ceil(np.log10(hi / lo) * per_dex))
    return lo * np.exp(np.arange(n + 1) * (np.log(hi / lo) / n))


def _rebin_log(src_edges: np.ndarray, src: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Rebin counts per bin (B, M) from src_edges onto dst_edges (cumulative, linear in log E)."""
    cum = np.concatenate([np.zeros((src.shape[0], 1)), np.cumsum(src, axis=1)], axis=1)
    ls, ld = np.log(src_edges), np.log(np.maximum(dst_edges, 1e-300))
    j = np.clip(np.searchsorted(ls, ld, side="right") - 1, 0, ls.size - 2)
    t = np.clip((ld - ls[j]) / (ls[j + 1] - ls[j]), 0.0, 1.0)
    c = cum[:, j] * (1.0 - t) + cum[:, j + 1] * t
    inside = (dst_edges >= src_edges[0]) & (dst_edges <= src_edges[-1])
    c = np.where(inside[None, :], c, np.where(dst_edges[None, :] < src_edges[0], 0.0, cum[:, -1:]))
    return np.diff(c, axis=1)


@register("relconv", "con", [P_INDEX1, P_INDEX2, P_RBR, P_A, P_INCL, P_RIN, P_ROUT, P_LIMB])
def relconv(edges, inner, Index1, Index2, Rbr, a, Incl, Rin, Rout, limb):
    """Relativistic convolution of any model (relxill's relconv): kernel * spectrum in ln E.

    The wrapped model is evaluated on an internal log grid (E_lo/2 .. 100 E_hi, all
    energies that g in [0.01, 2] can shift into the output grid), convolved (FFT)
    with the kernel of a 1 keV line (unit sum) on the same log spacing and rebinned.
    Photons are conserved: as in relxill, nothing is rescaled beyond FFT round-off,
    so the operation is linear in the wrapped spectrum.
    """
    B = np.broadcast(Index1, Index2, Rbr, a, Incl, Rin, Rout, limb).shape[0]
    grid = conv_grid(edges)
    dlog = np.log(grid[1] / grid[0])
    # kernel on ln g bins centred on k * dlog, k = -k0 .. k1
    k0 = int(np.ceil(np.log(100.0) / dlog))     # g down to 0.01
    k1 = int(np.ceil(np.log(2.0) / dlog))       # g up to 2
    kg = np.exp((np.arange(-k0, k1 + 2) - 0.5) * dlog)
    ker = kernel(kg, a, Incl, Rin, Rout, Index1, Index2, Rbr, limb=limb)     # (B, K)
    spec = np.asarray(inner(grid), float)
    spec = np.broadcast_to(spec, (max(B, spec.shape[0]), grid.size - 1)) if spec.ndim == 2 else \
        np.broadcast_to(spec, (B, grid.size - 1))
    Bt = max(B, spec.shape[0])
    ker = np.broadcast_to(ker, (Bt, ker.shape[1]))
    nfft = 1 << int(np.ceil(np.log2(spec.shape[1] + ker.shape[1])))
    conv = np.fft.irfft(np.fft.rfft(spec, nfft, axis=1) * np.fft.rfft(ker, nfft, axis=1), nfft, axis=1)
    full = conv[:, :spec.shape[1] + ker.shape[1] - 1]                        # the whole linear convolution
    # photon total of the full convolution = product of totals (FFT round-off only); photons shifted
    # off the internal grid lie outside [E_lo, E_hi] and are simply not in the output (no rescaling)
    tot_in = spec.sum(axis=1) * ker.sum(axis=1)
    tot_out = full.sum(axis=1)
    out = conv[:, k0:k0 + grid.size - 1]                                     # bin j + k receives k
    out = out * np.where(tot_out > 0, tot_in / np.where(tot_out > 0, tot_out, 1.0), 0.0)[:, None]
    return _rebin_log(grid, out, edges)


# provenance: Model.tables() reports the transfer-function table these models read
for _name in ("relline", "relconv", "relline_lp"):
    REGISTRY[_name].info["table"] = str(table_path())
