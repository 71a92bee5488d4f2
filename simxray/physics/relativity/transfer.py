"""Cunningham transfer functions of a Keplerian disk: computation, HDF5 table, lookup.

Representation (per spin a, observer cos i, radius r; both image branches b):

* ``gmin``, ``gmax``: the range of g = E_obs/E_emit over the ring's (direct) image;
* on a grid uniform in chi in [0, pi], with g* = (g - gmin)/(gmax - gmin) = (1 - cos chi)/2,
  ``trf`` = Cunningham's transfer function f(g*, r) = (g / (pi r)) sqrt(g*(1-g*))
  |d(alpha, beta)/d(g*, r)| and ``cosne`` = mu_e, the emission-angle cosine, at the
  chi nodes; the table stores ``trf_cell``, the mean of f over each chi cell
  (Gauss-Legendre inside the cell), and ``cosne`` at the nodes;
* radii uniform in r^-1/2 (denser at the inner edge, where g changes fastest
  near edge-on) from the ISCO of the *next* spin node to 1000 rg, so that a spin
  between two nodes is interpolated at fixed physical radius (near a = 1 the ISCO
  moves fast with a while the metric at a given r hardly changes).

The uniform-chi grid is relxill's g* grid with the points moved towards the
edges g* = 0, 1, where the integrand has its 1/sqrt(g*(1-g*)) singularities;
in chi the integrand is smooth: the photon flux from a ring of width dr into
dchi is ``pi r eps(r) L(mu_e) g^2 f dr dchi`` per branch (photon number per
unit image area scales as g^3).

Computation (:func:`transfer_functions`): the image plane is traced on a polar
grid (psi, rho) about the origin with the closed-form geodesics of
:mod:`.kerr`; along each polar ray the direct-image crossing radius increases
monotonically outside the ISCO (checked), so each ring's image rho(psi) follows
by interpolation and Newton polishing.  Periodic cubic splines in psi of g, mu_e
and the area element rho drho/dr give the extremes of g and the branch points
at each chi by bisection; |dpsi/dchi| follows from dg/dpsi (and from d2g/dpsi2
at the extremes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline

from ...errors import FileFormatError
from . import kerr

RMAX = 1000.0
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "data" / "relativity_transfer.h5"
TABLE_ENV = "SIMXRAY_RELTABLE"
TABLE_FORMAT = "simxray-relativity-transfer/2"
FORMAT_V1 = "simxray-relativity-transfer/1"   # f at the chi nodes, every spin's radii from its own ISCO (still read)


def radial_coord(r, power: float = 0.0):
    """Radial table coordinate: -r^-p for p > 0 (uniform nodes are denser towards small r), ln r for p = 0."""
    r = np.asarray(r, float)
    if power == 0.5:
        return -1.0 / np.sqrt(r)
    return -r ** -power if power > 0 else np.log(r)


def radial_grid(a: float, n_r: int, rmax: float = RMAX, power: float = 0.0, r_lo: float | None = None) -> np.ndarray:
    """Table radii (rg): uniform in :func:`radial_coord` (r^-p, or ln r for p = 0) from r_lo
    (default: the ISCO of spin a) to rmax."""
    lo = float(kerr.isco(a)) if r_lo is None else float(r_lo)
    if power > 0:
        r = np.linspace(lo ** -power, rmax ** -power, n_r) ** (-1.0 / power)
        r[0], r[-1] = lo, rmax
        return r
    return np.geomspace(lo, rmax, n_r)


def chi_grid(n_chi: int) -> np.ndarray:
    """chi nodes, uniform in [0, pi]; g* = (1 - cos chi)/2."""
    return np.linspace(0.0, np.pi, n_chi)


def _trace_r(rho, psi, a, th):
    r, g, mu, ok = kerr.disk_crossing(rho * np.cos(psi), rho * np.sin(psi), a, th)
    return np.where(ok, r, 0.0), g, mu


def ring_images(a: float, incl: float, radii: np.ndarray, n_psi: int = 512, n_rho: int = 480,
                newton: int = 12):
    """Direct images of rings: rho(psi), area element rho drho/dr, g and mu_e.

    a: spin; incl: inclination (rad); radii (R,) rg (>= ISCO).  Returns psi (P,)
    and arrays (R, P): rho, jac = rho |drho/dr|, g, mu.
    """
    radii = np.asarray(radii, float)
    psi = np.linspace(0.0, 2.0 * np.pi, n_psi, endpoint=False)
    rho = np.geomspace(0.005, 1.25 * radii.max() + 20.0, n_rho)
    rs, _, _ = _trace_r(rho[None, :], psi[:, None], a, incl)            # (P, N)
    lr = np.log(np.maximum(rs, 1e-30))
    lrho = np.log(rho)
    # along each polar ray: first sample with r_s >= ring radius
    target = np.log(radii)[:, None, None]                                # (R, 1, 1)
    above = lr[None] >= target                                           # (R, P, N)
    i = np.argmax(above, axis=2)
    i = np.clip(i, 1, n_rho - 1)
    P = np.arange(n_psi)[None, :]
    l0, l1 = lr[P, i - 1], lr[P, i]
    l0 = np.maximum(l0, l1 - 5.0)  # invalid (fallen-in) neighbours
    t = np.clip((target[:, :, 0] - l0) / np.maximum(l1 - l0, 1e-12), 0.0, 1.0)
    x = lrho[i - 1] + t * (lrho[i] - lrho[i - 1])                       # log rho guess (R, P)
    ps = np.broadcast_to(psi[None, :], x.shape)
    tgt = np.broadcast_to(target[:, :, 0], x.shape)
    h = 1e-6
    lo, hi = lrho[i - 1], lrho[i]
    for _ in range(newton):
        f0 = np.log(np.maximum(_trace_r(np.exp(x), ps, a, incl)[0], 1e-30)) - tgt
        if np.all(np.abs(f0) < 1e-9):
            break
        f1 = np.log(np.maximum(_trace_r(np.exp(x + h), ps, a, incl)[0], 1e-30)) - tgt
        d = (f1 - f0) / h
        step = np.where(d > 0, -f0 / np.where(d > 0, d, 1.0), 0.0)
        x = np.clip(x + step, lo, hi)
    r0, g, mu = _trace_r(np.exp(x), ps, a, incl)
    r1 = _trace_r(np.exp(x + h), ps, a, incl)[0]
    dlnr_dlnrho = (np.log(r1) - np.log(r0)) / h
    rho_s = np.exp(x)
    jac = rho_s * rho_s / (radii[:, None] * dlnr_dlnrho)                 # rho drho/dr
    resid = np.abs(np.log(r0) - tgt)
    if not np.all(resid < 1e-6):
        raise RuntimeError(f"ring image search did not converge (max residual {resid.max():.2e}, "
                           f"a={a}, incl={np.degrees(incl):.3f} deg)")
    return psi, rho_s, jac, g, mu


def _bisect(spl, lo, hi, target, increasing, n_iter=52):
    lo, hi = np.array(lo, float), np.array(hi, float)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        val = spl(mid)
        go_right = (val < target) if increasing else (val > target)
        lo = np.where(go_right, mid, lo)
        hi = np.where(go_right, hi, mid)
    return 0.5 * (lo + hi)


def transfer_functions(a: float, incl: float, radii: np.ndarray, n_chi: int = 25,
                       n_psi: int = 512, n_rho: int = 480, n_sub: int = 8):
    """Transfer functions for spin a, inclination incl (rad) at the given radii.

    Returns dict with gmin, gmax (R,), trf, cosne (R, n_chi, 2) at the chi nodes and
    trf_cell (R, n_chi - 1, 2), the mean of trf over each chi cell (``n_sub``-point
    Gauss-Legendre).
    """
    radii = np.asarray(radii, float)
    psi, _, jac, g, mu = ring_images(a, incl, radii, n_psi=n_psi, n_rho=n_rho)
    chi = chi_grid(n_chi)
    R = radii.size
    gmin, gmax = np.empty(R), np.empty(R)
    trf = np.empty((R, n_chi, 2))
    cosne = np.empty((R, n_chi, 2))
    trf_cell = np.empty((R, n_chi - 1, 2))
    xgl, wgl = np.polynomial.legendre.leggauss(n_sub)
    chs = (chi[:-1, None] + 0.5 * (xgl + 1.0)[None, :] * np.diff(chi)[:, None]).ravel()
    pp = np.r_[psi, 2.0 * np.pi]
    for k in range(R):
        sg = CubicSpline(pp, np.r_[g[k], g[k, 0]], bc_type="periodic")
        sj = CubicSpline(pp, np.r_[jac[k], jac[k, 0]], bc_type="periodic")
        sm = CubicSpline(pp, np.r_[mu[k], mu[k, 0]], bc_type="periodic")
        d1 = sg.derivative()
        ext = d1.roots(extrapolate=False)
        ext = ext[(ext >= 0) & (ext < 2 * np.pi)]
        if ext.size < 2:
            raise RuntimeError(f"ring r={radii[k]:.4g}: g has no extremes (a={a}, incl={incl})")
        gv = sg(ext)
        pmin, pmax = ext[np.argmin(gv)], ext[np.argmax(gv)]
        g0, g1 = float(sg(pmin)), float(sg(pmax))
        dg = g1 - g0
        gmin[k], gmax[k] = g0, g1
        gt = g0 + dg * 0.5 * (1.0 - np.cos(chi))
        d2 = sg.derivative(2)
        for b in range(2):
            if b == 0:   # g increasing with psi from pmin to pmax
                lo = pmin
                hi = pmax if pmax > pmin else pmax + 2 * np.pi
                inc = True
            else:        # g decreasing from pmax to pmin
                lo = pmax
                hi = pmin if pmin > pmax else pmin + 2 * np.pi
                inc = False
            ps = _bisect(lambda x, _s=sg: _s(np.mod(x, 2 * np.pi)), np.full(n_chi, lo), np.full(n_chi, hi), gt, inc)
            ps[0], ps[-1] = pmin, pmax   # chi = 0 is gmin, chi = pi is gmax on both branches
            pm = np.mod(ps, 2 * np.pi)
            gp = np.abs(d1(pm))
            with np.errstate(divide="ignore", invalid="ignore"):
                dpsi_dchi = 0.5 * dg * np.sin(chi) / gp
            dpsi_dchi[0] = np.sqrt(dg / (2.0 * abs(float(d2(pmin)))))
            dpsi_dchi[-1] = np.sqrt(dg / (2.0 * abs(float(d2(pmax)))))
            trf[k, :, b] = gt / (np.pi * radii[k]) * sj(pm) * dpsi_dchi
            cosne[k, :, b] = sm(pm)
            # cell means: Gauss-Legendre inside each chi cell (resolves the lensing peaks of
            # near edge-on disks, narrower than a cell, that the trapezoid of the nodes misses)
            gs = g0 + dg * 0.5 * (1.0 - np.cos(chs))
            pss = np.mod(_bisect(lambda x, _s=sg: _s(np.mod(x, 2 * np.pi)), np.full(chs.size, lo),
                                 np.full(chs.size, hi), gs, inc), 2 * np.pi)
            fs = gs / (np.pi * radii[k]) * sj(pss) * (0.5 * dg * np.sin(chs) / np.abs(d1(pss)))
            trf_cell[k, :, b] = 0.5 * (fs.reshape(n_chi - 1, n_sub) * wgl).sum(axis=1)
    return {"gmin": gmin, "gmax": gmax, "trf": trf, "cosne": cosne, "trf_cell": trf_cell}


# ---------------------------------------------------------------------------
# the table: build, write, read, interpolate

def spin_for_isco(r_isco: np.ndarray) -> np.ndarray:
    """Inverse of :func:`kerr.isco` (bisection; r_isco in [1, 9] rg)."""
    r_isco = np.asarray(r_isco, float)
    lo, hi = np.full(r_isco.shape, -1.0), np.full(r_isco.shape, 1.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        big = kerr.isco(mid) > r_isco       # ISCO decreases with spin
        lo = np.where(big, mid, lo)
        hi = np.where(big, hi, mid)
    return 0.5 * (lo + hi)


def default_spins(n_a: int) -> np.ndarray:
    """Spin grid in [-0.998, 0.998], uniform in log ISCO radius (denser near a = 1)."""
    lr = np.linspace(np.log(kerr.isco(0.998)), np.log(kerr.isco(-0.998)), n_a)
    a = spin_for_isco(np.exp(lr))[::-1]
    a[0], a[-1] = -0.998, 0.998
    return a


def default_mu0(n_mu: int, edge: float = 0.4) -> np.ndarray:
    """cos(i) grid from cos 87 deg to cos 3 deg, denser towards edge-on: mu = mu_lo + (mu_hi - mu_lo)
    (c t + (1 - c) t^2) for t uniform in [0, 1], c = ``edge`` (the spacing grows linearly from c to
    2 - c times the mean; 1 gives a uniform grid).  Edge-on, the lensed far side of the disk
    changes the profile fastest with cos i."""
    lo, hi = np.cos(np.radians(87.0)), np.cos(np.radians(3.0))
    t = np.linspace(0.0, 1.0, n_mu)
    mu = lo + (hi - lo) * (edge * t + (1.0 - edge) * t * t)
    mu[0], mu[-1] = lo, hi
    return mu


def table_radii(spins: np.ndarray, n_r: int, power: float = 0.5, rmax: float = RMAX) -> np.ndarray:
    """Radial grid of every spin node (A, n_r): uniform in :func:`radial_coord` from the ISCO of the
    *next* (higher) spin node (its own ISCO for the last) to rmax, so that a spin between two nodes
    finds its whole disk inside both nodes' grids (interpolation at fixed physical radius)."""
    spins = np.asarray(spins, float)
    lo = kerr.isco(np.r_[spins[1:], spins[-1]])
    return np.stack([radial_grid(a, n_r, rmax, power, r_lo=r0) for a, r0 in zip(spins, lo, strict=True)])


def _node(args):
    a, mu0, radii, n_chi, n_psi, n_rho = args
    return transfer_functions(a, float(np.arccos(mu0)), radii, n_chi=n_chi, n_psi=n_psi, n_rho=n_rho)


def build_table(spins, mu0s, n_r: int = 64, n_chi: int = 25, n_psi: int = 512, n_rho: int = 480,
                workers: int = 1, progress=None, radial_power: float = 0.5) -> dict:
    """Compute transfer functions on the (spin, cos i) grid; returns the table arrays."""
    spins, mu0s = np.asarray(spins, float), np.asarray(mu0s, float)
    radius = table_radii(spins, n_r, radial_power)
    jobs = [(float(a), float(m), radius[k], n_chi, n_psi, n_rho) for k, a in enumerate(spins) for m in mu0s]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            res = []
            for i, r in enumerate(pool.imap(_node, jobs, chunksize=1)):
                res.append(r)
                if progress:
                    progress(i + 1, len(jobs))
    else:
        res = []
        for i, j in enumerate(jobs):
            res.append(_node(j))
            if progress:
                progress(i + 1, len(jobs))
    na, nm = spins.size, mu0s.size

    def stack(key):
        return np.stack([r[key] for r in res]).reshape((na, nm) + res[0][key].shape)

    return {"spin": spins, "mu0": mu0s, "chi": chi_grid(n_chi), "rmax": RMAX, "radius": radius,
            "radial_power": float(radial_power),
            "gmin": stack("gmin"), "gmax": stack("gmax"), "trf_cell": stack("trf_cell"), "cosne": stack("cosne"),
            "n_psi": n_psi, "n_rho": n_rho}


def _round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """float32 with the mantissa rounded to ``bits`` bits (better compression)."""
    x = np.asarray(x, np.float32)
    drop = 23 - bits
    if drop <= 0:
        return x
    i = x.view(np.uint32).astype(np.uint64)
    i = ((i + (1 << (drop - 1))) >> drop) << drop
    return i.astype(np.uint32).view(np.float32)


def write_table(path, table: dict, mantissa_bits: int = 14, extra: dict | None = None) -> Path:
    """Write the table to HDF5 atomically (float32, shuffle + gzip)."""
    import h5py

    from ... import __version__
    from ...provenance import atomic_path, provenance

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    comp = {"compression": "gzip", "compression_opts": 9, "shuffle": True}
    grid = {"spin": table["spin"].tolist(), "mu0": table["mu0"].tolist(), "n_r": int(table["radius"].shape[1]),
            "n_chi": int(table["chi"].size), "rmax": float(table["rmax"]),
            "radial_power": float(table.get("radial_power", 0.0)),
            "radius": "uniform in r^-radial_power (ln r if 0) from the ISCO of the next spin node to rmax",
            "chi": "uniform in [0, pi], g* = (1 - cos chi)/2",
            "n_psi": int(table["n_psi"]), "n_rho": int(table["n_rho"])}
    method = ("Closed-form Kerr null geodesics (Gralla & Lupsasca 2020) traced on a polar image-plane grid; "
              "direct images of rings solved by interpolation + Newton; g, mu_e and rho drho/dr "
              "splined in image-plane angle; trf = Cunningham (1975) transfer function f(g*, r) "
              "on a uniform chi grid, both branches")
    with h5py.File(tmp, "w") as h:
        h.create_dataset("spin", data=table["spin"])
        h.create_dataset("mu0", data=table["mu0"])
        h.create_dataset("chi", data=table["chi"])
        h.create_dataset("radius", data=table["radius"])
        h.create_dataset("gmin", data=np.asarray(table["gmin"], np.float32), **comp)
        h.create_dataset("gmax", data=np.asarray(table["gmax"], np.float32), **comp)
        h.create_dataset("trf_cell", data=_round_mantissa(table["trf_cell"], mantissa_bits), **comp)
        h.create_dataset("cosne", data=_round_mantissa(table["cosne"], mantissa_bits), **comp)
        h.attrs["format"] = TABLE_FORMAT
        h.attrs["grid"] = json.dumps(grid)
        h.attrs["method"] = method
        h.attrs["layout"] = ("trf_cell: (spin, mu0, radius, chi cell, branch), mean of f over [chi_j, chi_j+1]; "
                             "cosne: (spin, mu0, radius, chi, branch); gmin, gmax: (spin, mu0, radius); "
                             "radius: (spin, radius)")
        h.attrs["package_version"] = __version__
        prov = provenance(**(extra or {}))
        h.attrs["git_commit"] = prov["git_commit"]
        h.attrs["provenance"] = json.dumps(prov)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class TransferTable:
    """A loaded transfer-function table (arrays in float64)."""

    spin: np.ndarray     # (A,)
    mu0: np.ndarray      # (M,)
    chi: np.ndarray      # (J,)
    rmax: float
    gmin: np.ndarray     # (A, M, R)
    gmax: np.ndarray     # (A, M, R)
    trf: np.ndarray      # (A, M, R, J-1, 2): mean of f over each chi cell
    cosne: np.ndarray    # (A, M, R, J, 2)
    path: str
    identity: str
    trf_sum: np.ndarray = None   # (A, M, R, J): trf summed over branches (set on load)
    radial_power: float = 0.0    # radial nodes uniform in r^-p (0: ln r), see :func:`radial_grid`
    r_lo: np.ndarray = None      # (A,) innermost table radius per spin (default: the ISCO)

    def __post_init__(self):
        object.__setattr__(self, "trf", np.asarray(self.trf, np.float32))
        object.__setattr__(self, "cosne", np.asarray(self.cosne, np.float32))
        if self.trf_sum is None:
            object.__setattr__(self, "trf_sum", self.trf.sum(axis=-1, dtype=np.float32))
        if self.r_lo is None:
            object.__setattr__(self, "r_lo", kerr.isco(self.spin))
        # (gmin, gmax) side by side (A, M, R, 2), interpolated together
        object.__setattr__(self, "_g_range", np.stack([np.asarray(self.gmin, float), np.asarray(self.gmax, float)],
                                                      axis=-1))

    @classmethod
    def from_arrays(cls, table: dict, path: str = "memory") -> TransferTable:
        """A table from :func:`build_table`'s arrays (not written to disk)."""
        return cls(spin=np.asarray(table["spin"], float), mu0=np.asarray(table["mu0"], float),
                   chi=np.asarray(table["chi"], float), rmax=float(table["rmax"]), gmin=table["gmin"],
                   gmax=table["gmax"], trf=table["trf_cell"], cosne=table["cosne"], path=path, identity=path,
                   radial_power=float(table.get("radial_power", 0.0)), r_lo=np.asarray(table["radius"])[:, 0])

    def at_radii(self, a: np.ndarray, mu0: np.ndarray, r: np.ndarray, branches: bool = True):
        """Transfer functions of B systems at radii r (B, R) (rg, >= ISCO(a)).

        Spin and cos i are interpolated at fixed *physical* radius: each spin node's
        arrays are first evaluated at r (in the node's radial index, uniform in
        :func:`radial_coord`; every node's grid starts at the ISCO of the next spin
        node, so r >= ISCO(a) is inside both neighbours' grids), then combined
        linearly in spin.  gmin, gmax (the sharp line edges): cubic Hermite in sin i
        (the Doppler shift is smooth in sin i, in cos i it has a square-root cusp at
        face-on) and Catmull-Rom in radius; f and mu_e: linear in cos i and in radius.
        Returns gmin, gmax (B, R), trf (B, R, J-1, 2) chi-cell means (or (B, R, J-1) summed over
        branches with ``branches=False``) and cosne (B, R, J, 2) (None without branches).
        """
        a = np.asarray(a, float).ravel()
        mu0 = np.asarray(mu0, float).ravel()
        A, M, nt = self.spin.size, self.mu0.size, self.n_r
        ia = np.clip(np.searchsorted(self.spin, a, side="right") - 1, 0, A - 2)
        wa = np.clip((a - self.spin[ia]) / (self.spin[ia + 1] - self.spin[ia]), 0.0, 1.0)
        im = np.clip(np.searchsorted(self.mu0, mu0, side="right") - 1, 0, M - 2)
        wm = np.clip((mu0 - self.mu0[im]) / (self.mu0[im + 1] - self.mu0[im]), 0.0, 1.0)
        s_nodes = np.sqrt(np.clip(1.0 - self.mu0[::-1] ** 2, 0.0, None))
        _, wm4, js = _cubic_weights(s_nodes, np.sqrt(np.clip(1.0 - mu0 * mu0, 0.0, None)))
        jm = [M - 1 - j for j in js]
        p = self.radial_power
        xr, xmax = radial_coord(r, p), float(radial_coord(self.rmax, p))
        lin_i, lin_w = [], []                # per spin node: 2 radial rows (flat grid, less the mu part), weights
        bi = np.arange(a.size)[:, None]
        g_range = 0.0
        for s, ws in ((0, 1.0 - wa), (1, wa)):
            k = ia + s
            x0 = radial_coord(self.r_lo[k], p)[:, None]
            u = (nt - 1) * (xr - x0) / (xmax - x0)
            i0 = np.clip(np.floor(u).astype(int), 0, nt - 2)
            t = np.clip(u - i0, 0.0, 1.0)
            # the g range (sharp line edges): cubic in sin i on the node's radii, then Catmull-Rom in radius
            # (linear in the end intervals)
            gq = sum(wm4[q][:, None, None] * self._g_range[k, jm[q]] for q in range(4))   # (B, nt, 2)
            t2, t3 = t * t, t * t * t
            cub = (i0 >= 1) & (i0 <= nt - 3)
            w4 = (np.where(cub, 0.5 * (-t3 + 2 * t2 - t), 0.0), np.where(cub, 0.5 * (3 * t3 - 5 * t2 + 2), 1.0 - t),
                  np.where(cub, 0.5 * (-3 * t3 + 4 * t2 + t), t), np.where(cub, 0.5 * (t3 - t2), 0.0))
            for d, wd in zip((-1, 0, 1, 2), w4, strict=True):
                g_range = g_range + (wd * ws[:, None])[..., None] * gq[bi, np.clip(i0 + d, 0, nt - 1)]
            # f and mu_e: linear in radius (as accurate here: < 0.003 % L1)
            lin_i.append(np.stack([i0, i0 + 1], axis=-1) + (k * M * nt)[:, None, None])
            lin_w.append(np.stack([1.0 - t, t], axis=-1) * ws[:, None, None])
        li = np.concatenate(lin_i, axis=-1)                                 # (B, R, 4): spin node x radial tap
        lw = np.concatenate(lin_w, axis=-1)

        def combine(flat, mus, wmus):
            """Sum of weights x rows of the flattened (spin, cos i, radius) grid: spin x cos i x radius."""
            rows = np.concatenate([li + (m * nt)[:, None, None] for m in mus], axis=-1)
            w = np.concatenate([lw * wk[:, None, None] for wk in wmus], axis=-1)
            g = flat[rows]                                                   # (B, R, 8, ...)
            # f, mu_e are float32 in memory (the file keeps 10 mantissa bits): half the memory traffic
            out = np.matmul(w.astype(flat.dtype)[:, :, None, :], g.reshape(g.shape[:3] + (-1,)))[:, :, 0]
            return out.reshape(out.shape[:2] + flat.shape[1:])

        gmin, gmax = g_range[..., 0], g_range[..., 1]
        lin = ([im, im + 1], [1.0 - wm, wm])
        if not branches:
            return gmin, gmax, combine(self.trf_sum.reshape((A * M * nt,) + self.trf_sum.shape[3:]), *lin), None
        trf = combine(self.trf.reshape((A * M * nt,) + self.trf.shape[3:]), *lin)
        cosne = combine(self.cosne.reshape((A * M * nt,) + self.cosne.shape[3:]), *lin)
        return gmin, gmax, trf, cosne

    @property
    def n_r(self) -> int:
        return self.gmin.shape[2]


def point_table(a: float, incl: float, n_r: int = 96, n_chi: int = 81, radial_power: float = 0.5,
                n_psi: int = 512, n_rho: int = 480) -> TransferTable:
    """A one-node table traced at exactly spin a, inclination incl (deg): no interpolation in (a, i)."""
    radii = radial_grid(a, n_r, power=radial_power)
    t = transfer_functions(a, np.radians(incl), radii, n_chi=n_chi, n_psi=n_psi, n_rho=n_rho)
    mu = float(np.cos(np.radians(incl)))
    arr = {k: np.stack([np.stack([t[k]] * 2)] * 2) for k in ("gmin", "gmax", "trf_cell", "cosne")}
    return TransferTable.from_arrays({**arr, "spin": [a, a + 1e-9], "mu0": [mu, mu + 1e-9], "chi": chi_grid(n_chi),
                                      "rmax": RMAX, "radius": np.stack([radii, radii]),
                                      "radial_power": radial_power}, f"traced a={a} i={incl}")


def _cubic_weights(grid: np.ndarray, x: np.ndarray):
    """Interval index, 4 weights and 4 node indices of a cubic Hermite interpolant.

    Node slopes from the 3-point parabola (centred inside, one-sided at the ends);
    exact for quadratics on any grid.  Linear when the grid has two nodes.
    """
    n = grid.size
    i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, n - 2)
    x0, x1 = grid[i], grid[i + 1]
    h = x1 - x0
    t = np.clip((x - x0) / h, 0.0, 1.0)
    zero = np.zeros_like(t)
    nodes = [np.clip(i - 1, 0, n - 1), i, i + 1, np.clip(i + 2, 0, n - 1)]
    if n < 3:
        return i, [zero, 1.0 - t, t, zero], nodes
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    xs = [grid[k] for k in nodes]

    def centred(a, b, c):          # slope at the middle node of (a, b, c) -> coefficients
        h0, h1 = b - a, c - b
        return -h1 / (h0 * (h0 + h1)), (h1 - h0) / (h0 * h1), h0 / (h1 * (h0 + h1))

    def left_end(a, b, c):         # slope at a from (a, b, c)
        h0, h1 = b - a, c - b
        return -(2 * h0 + h1) / (h0 * (h0 + h1)), (h0 + h1) / (h0 * h1), -h0 / (h1 * (h0 + h1))

    def right_end(a, b, c):        # slope at c from (a, b, c)
        h0, h1 = b - a, c - b
        return h1 / (h0 * (h0 + h1)), -(h0 + h1) / (h0 * h1), (2 * h1 + h0) / (h1 * (h0 + h1))

    with np.errstate(divide="ignore", invalid="ignore"):
        # slope at node i (slots 0..3 = nodes i-1, i, i+1, i+2)
        ci = centred(xs[0], xs[1], xs[2])
        li = left_end(xs[1], xs[2], xs[3])
        first = i == 0
        mi = [np.where(first, 0.0, ci[0]), np.where(first, li[0], ci[1]),
              np.where(first, li[1], ci[2]), np.where(first, li[2], 0.0)]
        cj = centred(xs[1], xs[2], xs[3])
        rj = right_end(xs[0], xs[1], xs[2])
        last = i + 1 == n - 1
        mj = [np.where(last, rj[0], 0.0), np.where(last, rj[1], cj[0]),
              np.where(last, rj[2], cj[1]), np.where(last, 0.0, cj[2])]
    w = [h10 * h * mi[k] + h11 * h * mj[k] for k in range(4)]
    w[1] = w[1] + h00
    w[2] = w[2] + h01
    w = [np.nan_to_num(wk) for wk in w]
    return i, w, nodes


def table_path() -> Path:
    """The table in use: $SIMXRAY_RELTABLE if set, else the shipped default."""
    env = os.environ.get(TABLE_ENV)
    return Path(env) if env else DEFAULT_TABLE


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> TransferTable:
    import h5py

    try:
        with h5py.File(path, "r") as h:
            fmt = h.attrs.get("format")
            if fmt not in (TABLE_FORMAT, FORMAT_V1):
                raise FileFormatError(f"not a simxray relativistic transfer-function table (format {fmt!r}, "
                                      f"expected {TABLE_FORMAT!r})", path=path)
            grid = json.loads(h.attrs["grid"])
            ident = f"{Path(path).name} (commit {h.attrs.get('git_commit', 'unknown')})"
            if fmt == FORMAT_V1:   # f at the chi nodes: the trapezoid mean of each cell (the v1 evaluation)
                node = h["trf"][...].astype(float)
                trf = 0.5 * (node[:, :, :, 1:] + node[:, :, :, :-1])
            else:
                trf = h["trf_cell"][...].astype(float)
            return TransferTable(
                spin=h["spin"][...].astype(float), mu0=h["mu0"][...].astype(float), chi=h["chi"][...].astype(float),
                rmax=float(grid["rmax"]), gmin=h["gmin"][...].astype(float), gmax=h["gmax"][...].astype(float),
                trf=trf, cosne=h["cosne"][...].astype(float), path=path, identity=ident,
                radial_power=float(grid.get("radial_power", 0.0)), r_lo=h["radius"][:, 0].astype(float))
    except (OSError, KeyError) as exc:
        raise FileFormatError(f"cannot read transfer-function table ({exc})", path=path) from None


def load_table(path: str | os.PathLike | None = None) -> TransferTable:
    """Load (cached) the transfer-function table; default :func:`table_path`."""
    p = Path(path) if path is not None else table_path()
    if not p.is_file():
        raise FileFormatError("relativistic transfer-function table not found; build it with "
                              "'simxray tables build-relativistic' or set " + TABLE_ENV, path=str(p))
    return _load(str(p.resolve()), p.stat().st_mtime)
