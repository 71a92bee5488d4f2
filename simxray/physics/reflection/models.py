"""xillver and relxill: reflection from an accretion disk, with relxill's names and conventions.

Reflection table
    By default the neutral-slab Monte Carlo table shipped as
    ``simxray/data/reflection_default.h5`` (parameters Gamma, A_Fe, Ecut, Incl;
    see :mod:`.montecarlo`).  It has no ionisation axis: ``logxi`` is accepted
    but has no effect with it.  An official xillver table (e.g. xillver-a-Ec5.fits,
    OGIP layout with Gamma, A_Fe, logXi, Ecut, Incl) is a drop-in replacement:
    point ``SIMXRAY_XILLVER_TABLE`` at it (FITS or its ``simxray tables convert``
    HDF5) or call :func:`set_table`.  Every evaluation's provenance names the table
    (``ModelSpec.info["table"]``: path and SHA-256).

Conventions (shared/docs/PHYSICS.md)
    * primary N(E) = K E^-gamma exp(-E/Ecut) with norm = 1 carrying 496.7 keV/cm^2/s
      in 0.1-1000 keV (rest frame); Ecut is the observed cutoff: the table is read
      at Ecut (1 + z) and everything computed in the rest frame is shifted to
      E / (1 + z) (photon numbers kept, as relline does);
    * reflection: table intensity at the emission angle x cos(Incl) x |refl_frac|;
      refl_frac = 1 is pexrav's R = 1 (isotropic source above a slab);
      the primary is added only when refl_frac >= 0;
    * official tables are divided by 10^logxi and multiplied by 1e-20 (their
      spectra correspond to an incident flux of 10^logxi 1e15/(4 pi) erg/cm^2/s;
      relxill maps 1e15/(4 pi) to norm = 1, 7.96e-7 erg/cm^2/s);
    * relxill: the disk's reflection is sum_i w_i xillver(mu_i) convolved with the
      relativistic kernel of angle bin i (10 equal bins in mu, the xillver
      inclinations), on a log-energy grid by FFT; the total is renormalised to the
      product of totals (as relconv) and scaled by cos(Incl) |refl_frac| so that
      the non-relativistic limit is xillver.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import FileFormatError
from ...models import Parameter, check_edges, register
from ..relativity.models import (
    P_A,
    P_INCL,
    P_INDEX1,
    P_INDEX2,
    P_RBR,
    P_RIN,
    P_ROUT,
    P_Z,
    kernel,
)
from .montecarlo import MU_BINS, primary_norm

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "data" / "reflection_default.h5"
TABLE_ENV = "SIMXRAY_XILLVER_TABLE"
OFFICIAL_SCALE = 1e-20
#: internal log-energy grid of the relxill convolution (bins per decade)
CONV_PER_DEX = 300

# ---------------------------------------------------------------------------
# table handling
_STATE: dict = {"path": None, "table": None}


class ReflectionTable:
    """An XSPEC table in xillver layout: parameter roles, units and angle spectra."""

    ROLES = {"gamma": "gamma", "a_fe": "afe", "afe": "afe", "logxi": "logxi", "ecut": "ecut",
             "incl": "incl"}

    def __init__(self, path: str | os.PathLike):
        from ...io.table_model import load_table

        self.table = t = load_table(path)
        self.path = Path(path)
        if not t.additive:
            raise FileFormatError("expected an additive (xillver) table", path=path)
        self.index: dict[str, int] = {}
        for i, p in enumerate(t.params):
            role = self.ROLES.get(p.name.lower())
            if role is None:
                raise FileFormatError(f"unexpected parameter {p.name!r}; expected Gamma, A_Fe, "
                                      "logXi, Ecut, Incl", path=path, field="PARAMETERS")
            self.index[role] = i
        for need in ("gamma", "afe", "ecut", "incl"):
            if need not in self.index:
                raise FileFormatError(f"missing the {need} parameter of a xillver table", path=path,
                                      field="PARAMETERS")
        self.official = "SXUNITS" not in t.header
        self.edges = np.append(t.energ_lo.astype(float), float(t.energ_hi[-1]))
        self.incl_mu = np.degrees(np.arccos(MU_BINS))

    @property
    def identity(self) -> str:
        return self.table.identity

    def _values(self, gamma, afe, logxi, ecut, incl) -> np.ndarray:
        cols = {"gamma": gamma, "afe": afe, "logxi": logxi, "ecut": ecut, "incl": incl}
        B = max(np.size(x) for x in cols.values())
        out = np.empty((B, len(self.table.params)))
        for role, i in self.index.items():
            out[:, i] = np.broadcast_to(np.asarray(cols[role], float).ravel(), (B,))
        return out

    def intensity(self, gamma, afe, logxi, ecut, incl) -> np.ndarray:
        """Reflected intensity (B, M) on the table bins, per unit norm and cos(i) (R = 1)."""
        spec = self.table.interpolate(self._values(gamma, afe, logxi, ecut, incl))
        if self.official:
            lx = np.broadcast_to(np.asarray(logxi, float).ravel(), (spec.shape[0],))
            spec = spec * (OFFICIAL_SCALE / 10.0 ** lx)[:, None]
        return spec

    def angle_intensities(self, gamma, afe, logxi, ecut) -> np.ndarray:
        """Intensities (B, 10, M) at the 10 xillver emission angles (mu = 0.95 ... 0.05)."""
        B = max(np.size(x) for x in (gamma, afe, logxi, ecut))
        rep = [np.repeat(np.broadcast_to(np.asarray(x, float).ravel(), (B,)), MU_BINS.size)
               for x in (gamma, afe, logxi, ecut)]
        inc = np.tile(self.incl_mu, B)
        return self.intensity(*rep, inc).reshape(B, MU_BINS.size, -1)


def set_table(path: str | os.PathLike | None) -> ReflectionTable:
    """Use ``path`` (None: $SIMXRAY_XILLVER_TABLE or the default table) for xillver/relxill."""
    p = Path(path) if path is not None else Path(os.environ.get(TABLE_ENV) or DEFAULT_TABLE)
    tab = ReflectionTable(p)
    _STATE["path"], _STATE["table"] = p, tab
    return tab


def reset_table() -> None:
    """Forget the table in use: the next evaluation reads $SIMXRAY_XILLVER_TABLE or the default."""
    _STATE["path"], _STATE["table"] = None, None


def get_table() -> ReflectionTable:
    """The reflection table in use (loaded on first call)."""
    want = os.environ.get(TABLE_ENV)
    if _STATE["table"] is None or (want and Path(want) != _STATE["path"]):
        return set_table(None)
    return _STATE["table"]


class _LazyInfo(dict):
    """ModelSpec.info whose "table" entry names the reflection table in use (loaded on access)
    and, for relxill, the relativistic transfer-function table of the kernel."""

    def __init__(self, relativistic: bool = False):
        super().__init__()
        self.relativistic = relativistic

    def __contains__(self, key):
        return key == "table" or super().__contains__(key)

    def __getitem__(self, key):
        if key == "table":
            ident = get_table().identity
            if self.relativistic:
                from ...models import REGISTRY

                ident += " + " + str(REGISTRY["relline"].info.get("table", "relativity kernel"))
            return ident
        return super().__getitem__(key)


# ---------------------------------------------------------------------------
# helpers
def _flat(x, B: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, float).reshape(-1), (B,))


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson (PCHIP) derivatives of y (B, K) on shared nodes x (K,)."""
    h = np.diff(x)
    delta = np.diff(y, axis=1) / h
    d = np.zeros_like(y)
    if x.size == 2:
        d[:] = delta
        return d
    h0, h1 = h[:-1], h[1:]
    w1, w2 = 2 * h1 + h0, h1 + 2 * h0
    dl, dr = delta[:, :-1], delta[:, 1:]
    same = (dl * dr) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = (w1 + w2) / (w1 / dl + w2 / dr)
    d[:, 1:-1] = np.where(same, hm, 0.0)
    for end, (ha, hb, da, db) in (("lo", (h[0], h[1], delta[:, 0], delta[:, 1])),
                                  ("hi", (h[-1], h[-2], delta[:, -1], delta[:, -2]))):
        e = ((2 * ha + hb) * da - ha * db) / (ha + hb)
        e = np.where(np.sign(e) != np.sign(da), 0.0, e)
        e = np.where((np.sign(da) != np.sign(db)) & (np.abs(e) > 3 * np.abs(da)), 3 * da, e)
        d[:, 0 if end == "lo" else -1] = e
    return d


def _shift_rebin(src_edges: np.ndarray, counts: np.ndarray, dst_edges: np.ndarray,
                 shift: np.ndarray | float = 1.0) -> np.ndarray:
    """Photon-conserving rebin of (B, M) counts on src_edges x shift (per row) onto dst_edges.

    The cumulative photon number is interpolated in ln E with a monotone cubic
    (PCHIP): exact at the source edges, non-negative, and it follows the slope of
    the spectrum inside a source bin (a uniform density would misplace ~slope x
    bin width of the photons between neighbouring output bins).
    """
    B = counts.shape[0]
    cum = np.concatenate([np.zeros((B, 1)), np.cumsum(counts, axis=1)], axis=1)
    x = np.log(src_edges)
    d = _pchip_slopes(x, cum)
    sh = np.broadcast_to(np.asarray(shift, float).reshape(-1), (B,))
    xq = np.clip(np.log(dst_edges)[None, :] - np.log(sh)[:, None], x[0], x[-1])  # (B, Q)
    j = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, x.size - 2)
    h = (x[1:] - x[:-1])[j]
    t = (xq - x[j]) / h
    rows = np.arange(B)[:, None]
    y0, y1, d0, d1 = cum[rows, j], cum[rows, j + 1], d[rows, j], d[rows, j + 1]
    t2, t3 = t * t, t * t * t
    c = ((2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * h * d0 + (-2 * t3 + 3 * t2) * y1
         + (t3 - t2) * h * d1)
    return np.clip(np.diff(c, axis=1), 0.0, None)


_NODES: dict = {}


def _bin_nodes(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes in ln E (N, n), their energies (N, n), weights (n,), half widths (N,)."""
    key = (edges.size, hash(edges.tobytes()))
    hit = _NODES.get(key)
    if hit is None:
        a, b = np.log(edges[:-1]), np.log(edges[1:])
        half = 0.5 * (b - a)
        # narrow log bins: 4 nodes integrate E^(1-gamma) exp(-E/Ecut) to ~1e-12
        x, w = np.polynomial.legendre.leggauss(4 if np.max(half) < 0.01 else 12)
        t = half[:, None] * x + (0.5 * (a + b))[:, None]
        hit = _NODES[key] = (t, np.exp(t), w, half)
        while len(_NODES) > 16:
            _NODES.pop(next(iter(_NODES)))
    return hit


def primary_observed(edges: np.ndarray, gamma: np.ndarray, ecut: np.ndarray, zf: np.ndarray,
                     norm: np.ndarray) -> np.ndarray:
    """relxill-normalised primary (B, N), photons/cm^2/s per bin on observed edges (keV).

    N(E) = K E^-gamma exp(-E/Ecut_rest) in the rest frame, K from 496.7 keV/cm^2/s x norm
    in rest-frame 0.1-1000 keV, shifted by 1/(1 + z) with photon numbers kept;
    ``ecut`` is the observed cutoff (Ecut_rest = ecut (1 + z)).  The quadrature nodes
    are shared by the batch: ln E_rest = ln E + ln(1 + z) and E_rest/Ecut_rest = E/ecut.
    """
    t, e, w, half = _bin_nodes(np.asarray(edges, float))
    c1 = (1.0 - gamma)[:, None, None]
    arg = c1 * t - e / ecut[:, None, None] + c1 * np.log(zf)[:, None, None]
    k = primary_norm(gamma, ecut * zf) * norm
    return (np.exp(arg) @ w) * half * k[:, None]


# ---------------------------------------------------------------------------
# models
P_GAMMA = Parameter("gamma", 2.0, 1.0, 3.4, "", doc="photon index of the primary")
P_LOGXI = Parameter("logxi", 3.1, 0.0, 4.7, "", doc="log10 ionisation (needs an official table)")
P_AFE = Parameter("Afe", 1.0, 0.5, 10.0, "", doc="iron abundance (solar)")
P_ECUT = Parameter("Ecut", 300.0, 5.0, 1000.0, "keV", doc="observed cutoff energy")
P_NORM = Parameter("norm", 1.0, 0.0, 1e24, "", doc="primary: 496.7 keV/cm^2/s in 0.1-1000 keV")


def xillver_spectrum(edges, gamma, Afe, Ecut, logxi, z, Incl, refl_frac, norm) -> np.ndarray:
    """Non-relativistic reflection (+ primary if refl_frac >= 0), photons/cm^2/s per bin (B, N)."""
    edges = check_edges(edges)
    tab = get_table()
    B = max(np.size(x) for x in (gamma, Afe, Ecut, logxi, z, Incl, refl_frac, norm))
    g, afe, ec, lx, zz, inc, rf, nm = (_flat(x, B) for x in (gamma, Afe, Ecut, logxi, z, Incl,
                                                            refl_frac, norm))
    zf = 1.0 + zz
    ec_rest = np.clip(ec * zf, 5.0, 1000.0)
    refl = tab.intensity(g, afe, lx, ec_rest, inc) * (np.cos(np.radians(inc)) * np.abs(rf) * nm)[:, None]
    out = _shift_rebin(tab.edges, refl, edges, 1.0 / zf)
    add = rf >= 0
    if np.any(add):
        out[add] += primary_observed(edges, g[add], ec[add], zf[add], nm[add])
    return out


@register("xillver", "add", [P_GAMMA, P_AFE, P_ECUT, P_LOGXI, P_Z,
                             Parameter("Incl", 30.0, 3.0, 87.0, "deg", doc="inclination"),
                             Parameter("refl_frac", -1.0, -1000.0, 1000.0, "",
                                       doc="reflection fraction; < 0: reflection only"), P_NORM])
def xillver(edges, gamma, Afe, Ecut, logxi, z, Incl, refl_frac, norm):
    """Reflection from a slab (xillver conventions; default table: neutral Monte Carlo)."""
    return xillver_spectrum(edges, gamma, Afe, Ecut, logxi, z, Incl, refl_frac, norm)


def conv_edges(tab: ReflectionTable, per_dex: int = CONV_PER_DEX) -> np.ndarray:
    """The convolution's log grid over the table's energies (rest frame)."""
    lo, hi = tab.edges[0], tab.edges[-1]
    n = int(np.ceil(np.log10(hi / lo) * per_dex))
    return lo * np.exp(np.arange(n + 1) * np.log(hi / lo) / n)


def _threads() -> int:
    """Worker threads for the batched relxill steps: $SIMXRAY_THREADS, else min(2, CPUs)."""
    env = os.environ.get("SIMXRAY_THREADS", "").strip()
    return max(1, int(env)) if env.isdigit() else max(1, min(2, os.cpu_count() or 1))


_POOL: dict = {}


def _parallel(fn, B: int, chunk: int = 32) -> None:
    """Run ``fn(slice)`` over row chunks of at most ``chunk`` rows (cache-sized) of a batch
    of B, in worker threads (numpy/scipy release the GIL in the heavy steps)."""
    cuts = list(range(0, B, chunk)) + [B]
    slices = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    n = min(_threads(), len(slices))
    if n <= 1:
        for s in slices:
            fn(s)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOL.get(n) or _POOL.setdefault(n, ThreadPoolExecutor(n, thread_name_prefix="simxray-relxill"))
    for f in [pool.submit(fn, s) for s in slices]:
        f.result()


def relxill_spectrum(edges, Index1, Index2, Rbr, a, Incl, Rin, Rout, z, gamma, logxi, Afe, Ecut,
                     refl_frac, norm, per_dex: int = CONV_PER_DEX, return_parts: bool = False):
    """Relativistic reflection (+ primary if refl_frac >= 0), photons/cm^2/s per bin (B, N)."""
    from scipy.fft import irfft, next_fast_len, rfft

    edges = check_edges(edges)
    tab = get_table()
    B = max(np.size(x) for x in (Index1, Index2, Rbr, a, Incl, Rin, Rout, z, gamma, logxi, Afe,
                                 Ecut, refl_frac, norm))
    q1, q2, rbr, aa, inc, rin, rout, zz, g, lx, afe, ec, rf, nm = (
        _flat(x, B) for x in (Index1, Index2, Rbr, a, Incl, Rin, Rout, z, gamma, logxi, Afe, Ecut,
                              refl_frac, norm))
    zf = 1.0 + zz
    grid = conv_edges(tab, per_dex)
    M = grid.size - 1
    dlog = np.log(grid[1] / grid[0])
    R, _ = tab.table.rebin_matrix(grid, 1.0)
    # kernel of a 1 keV line on ln g bins centred on k dlog, k = -k0 .. k1 (10 angle bins)
    k0 = int(np.ceil(np.log(100.0) / dlog))
    k1 = int(np.ceil(np.log(2.0) / dlog))
    kg = np.exp((np.arange(-k0, k1 + 2) - 0.5) * dlog)
    out = np.empty((B, edges.size - 1))
    prim = np.zeros_like(out)
    scale = np.cos(np.radians(inc)) * np.abs(rf) * nm

    def rows(s: slice) -> None:
        ker = kernel(kg, aa[s], inc[s], rin[s], rout[s], q1[s], q2[s], rbr[s],
                     n_mu=MU_BINS.size)  # (b, 10, K)
        # keep only the columns where some row has support (g ~ 0.05-1.6): shorter FFTs
        cols = np.flatnonzero(ker.any(axis=(0, 1)))
        lo = min(int(cols[0]), k0) if cols.size else k0
        hi = max(int(cols[-1]), k0) + 1 if cols.size else k0 + 1
        ker = ker[..., lo:hi]
        c0 = k0 - lo  # conv index of grid bin 0
        L = next_fast_len(M + ker.shape[-1] - 1, real=True)
        # disk-frame intensities at the 10 emission angles, on the log grid
        I = tab.angle_intensities(g[s], afe[s], lx[s], np.clip(ec[s] * zf[s], 5.0, 1000.0))
        b = I.shape[0]
        X = (R.T @ I.reshape(-1, I.shape[-1]).T).T.reshape(b, MU_BINS.size, M)
        conv = irfft((rfft(X, L, axis=-1) * rfft(ker, L, axis=-1)).sum(axis=1), L, axis=-1)
        refl = conv[:, c0:c0 + M]
        # renormalise to the product of totals (relconv): FFT round-off and the grid ends
        tot_in = np.einsum("bmj,bm->b", X, ker.sum(axis=-1))
        tot_out = refl.sum(axis=1)
        refl = refl * np.where(tot_out > 0, tot_in / np.where(tot_out > 0, tot_out, 1.0), 0.0)[:, None]
        refl = np.clip(refl, 0.0, None) * scale[s, None]
        out[s] = _shift_rebin(grid, refl, edges, 1.0 / zf[s])
        add = np.flatnonzero(rf[s] >= 0) + s.start
        if add.size:
            prim[add] = primary_observed(edges, g[add], ec[add], zf[add], nm[add])

    _parallel(rows, B)
    return (out + prim, (out, prim)) if return_parts else out + prim


@register("relxill", "add", [P_INDEX1, P_INDEX2, P_RBR, P_A, P_INCL, P_RIN, P_ROUT, P_Z, P_GAMMA,
                             P_LOGXI, P_AFE, P_ECUT,
                             Parameter("refl_frac", 3.0, -1000.0, 1000.0, "",
                                       doc="reflection fraction; < 0: reflection only"), P_NORM])
def relxill(edges, Index1, Index2, Rbr, a, Incl, Rin, Rout, z, gamma, logxi, Afe, Ecut, refl_frac,
            norm):
    """Relativistic reflection from an accretion disk (relxill conventions)."""
    return relxill_spectrum(edges, Index1, Index2, Rbr, a, Incl, Rin, Rout, z, gamma, logxi, Afe,
                            Ecut, refl_frac, norm)


def _attach_info() -> None:
    from ...models import REGISTRY

    for name in ("xillver", "relxill"):
        object.__setattr__(REGISTRY[name], "info", _LazyInfo(relativistic=name == "relxill"))


_attach_info()
