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
from .montecarlo import MU_BINS, primary_batch

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
    """ModelSpec.info whose "table" entry loads the table on first access."""

    def __contains__(self, key):
        return key == "table" or super().__contains__(key)

    def __getitem__(self, key):
        if key == "table":
            return get_table().identity
        return super().__getitem__(key)


# ---------------------------------------------------------------------------
# helpers
def _flat(x, B: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, float).reshape(-1), (B,))


def _shift_rebin(src_edges: np.ndarray, counts: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Photon-conserving rebin of (B, M) counts on src_edges onto dst_edges.

    The cumulative photon number is interpolated in ln E with a monotone cubic
    (PCHIP): exact at the source edges, non-negative, and it follows the slope of
    the spectrum inside a source bin (a uniform density would misplace ~slope x
    bin width of the photons between neighbouring output bins).
    """
    from scipy.interpolate import PchipInterpolator

    cum = np.concatenate([np.zeros((counts.shape[0], 1)), np.cumsum(counts, axis=1)], axis=1)
    x = np.log(src_edges)
    xd = np.log(np.clip(dst_edges, src_edges[0], src_edges[-1]))
    c = PchipInterpolator(x, cum, axis=1, extrapolate=False)(xd)
    return np.clip(np.diff(c, axis=1), 0.0, None)


def primary_observed(edges: np.ndarray, gamma: np.ndarray, ecut: np.ndarray, zf: np.ndarray,
                     norm: np.ndarray) -> np.ndarray:
    """relxill-normalised primary (B, N) on observed edges: rest frame shifted by 1/(1 + z).

    Normalised in the rest frame (496.7 keV/cm^2/s x norm in 0.1-1000 keV); Ecut observed.
    """
    return primary_batch(edges[None, :] * zf[:, None], gamma, ecut * zf) * norm[:, None]


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
    out = np.empty((B, edges.size - 1))
    for zu in np.unique(zf):
        sel = zf == zu
        out[sel] = _shift_rebin(tab.edges / zu, refl[sel], edges)
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
    # disk-frame intensities at the 10 emission angles, on the log grid
    I = tab.angle_intensities(g, afe, lx, np.clip(ec * zf, 5.0, 1000.0))  # (B, 10, Mt)
    R, _ = tab.table.rebin_matrix(grid, 1.0)
    X = (R.T @ I.reshape(-1, I.shape[-1]).T).T.reshape(B, MU_BINS.size, M)
    # kernel of a 1 keV line on ln g bins centred on k dlog, k = -k0 .. k1
    k0 = int(np.ceil(np.log(100.0) / dlog))
    k1 = int(np.ceil(np.log(2.0) / dlog))
    kg = np.exp((np.arange(-k0, k1 + 2) - 0.5) * dlog)
    ker = kernel(kg, aa, inc, rin, rout, q1, q2, rbr, n_mu=MU_BINS.size)  # (B, 10, K)
    L = next_fast_len(M + ker.shape[-1] - 1, real=True)
    conv = irfft((rfft(X, L, axis=-1) * rfft(ker, L, axis=-1)).sum(axis=1), L, axis=-1)
    refl = conv[:, k0:k0 + M]
    tot_in = np.einsum("bmj,bm->b", X, ker.sum(axis=-1))
    tot_out = refl.sum(axis=1)
    refl *= np.where(tot_out > 0, tot_in / np.where(tot_out > 0, tot_out, 1.0), 0.0)[:, None]
    refl = np.clip(refl, 0.0, None) * (np.cos(np.radians(inc)) * np.abs(rf) * nm)[:, None]
    out = np.empty((B, edges.size - 1))
    for zu in np.unique(zf):
        sel = zf == zu
        out[sel] = _shift_rebin(grid / zu, refl[sel], edges)
    prim = np.zeros_like(out)
    add = rf >= 0
    if np.any(add):
        prim[add] = primary_observed(edges, g[add], ec[add], zf[add], nm[add])
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

    info = _LazyInfo()
    for name in ("xillver", "relxill"):
        spec = REGISTRY[name]
        object.__setattr__(spec, "info", info)


_attach_info()
