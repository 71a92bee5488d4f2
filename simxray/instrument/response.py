"""Folding model spectra through an ARF × exposure and an RMF to expected counts.

A :class:`Response` holds one instrument response on M energy bins
(``energ_lo``/``energ_hi``, keV) and C channels::

    counts[b, c] = Σ_m flux[b, m] · ARF[m] · exposure · RMF[m, c]

with ``flux`` in photons/cm²/s per energy bin (the model contract of
:mod:`simxray.models`), ``ARF`` in cm², ``exposure`` in s, and the RMF
probability of channel ``offset + c`` for a photon in energy bin m.
:meth:`Response.fold_counts_per_bin` is the same product without ARF × exposure,
for inputs already in counts per energy bin (the pileup model's output).

Both numpy and torch inputs are accepted, (M,) or (B, M); the batch is one matrix
product.  numpy in → numpy out (float64); torch in → torch out on the input's device
and dtype.

Dense versus sparse RMF (``benchmarks/bench_fold.py``; NGC 4258 ACIS-S RMF, 1077
energies × 1024 channels, 440 721 non-zeros = 40 % filled; torch 2.13 CPU, B = 1024,
best of 5, on the shared 2-core machine under load ~5)::

                  dense (B,M)@(M,C)   sparse CSR (C,M)@(M,B)
    float64, 1 thread     204 µs            706 µs      per spectrum
    float32, 1 thread      94 µs            183 µs
    float64, 2 threads     80 µs            260 µs      (quiet machine, random 40 % fill)

A 40 %-filled matrix gains nothing from sparse storage: dense BLAS is 2-3.5× faster,
so the dense matrix is the default (``matrix_format="dense"``); ``"sparse"`` remains
for very large, very sparse responses (e.g. gratings).  Sherpa folds the same power
law through the same ARF/RMF at ~1300 spectra/s per core (``eval_model``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import ParameterError, ResponseMismatchError

MatrixFormat = Literal["dense", "sparse"]


def default_device() -> torch.device:
    """CUDA when available (and not disabled by ``SIMXRAY_DEVICE``), else CPU."""
    name = os.environ.get("SIMXRAY_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Response:
    """An ARF × exposure and RMF on M energy bins and C channels.

    Parameters
    ----------
    energ_lo, energ_hi : (M,) keV
        Energy bins of the ARF and RMF (the same grid).
    specresp : (M,) cm², or None
        Effective area; None means a unit ARF (an RMF-only response).
    matrix : (M, C) dense array or scipy.sparse matrix
        Redistribution probabilities, row m = energy bin, column c = channel.
    exposure : s
        Exposure time multiplying the ARF.
    e_min, e_max : (C,) keV, optional
        Nominal channel bounds (EBOUNDS); needed for the energy channel helpers.
    offset : int
        Number of the first channel (TLMIN of F_CHAN, usually 1 or 0).
    device, dtype :
        Where and how :meth:`tensors` places the matrices by default.
    matrix_format : "dense" | "sparse"
        Storage used by the torch matrix product (dense is faster here, see module doc).
    """

    def __init__(self, energ_lo, energ_hi, specresp, matrix, exposure: float, *,
                 e_min=None, e_max=None, offset: int = 1, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float64, matrix_format: MatrixFormat = "dense",
                 name: str | None = None):
        lo = np.asarray(energ_lo, dtype=np.float64).ravel()
        hi = np.asarray(energ_hi, dtype=np.float64).ravel()
        where = name or "response"
        if lo.size == 0 or lo.shape != hi.shape:
            raise ResponseMismatchError(
                f"ENERG_LO has {lo.size} values, ENERG_HI {hi.size}; expected two equal non-empty grids",
                field=f"{where}: ENERG_LO")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)
                and np.all(lo >= 0) and np.all(np.diff(lo) > 0)):
            raise ResponseMismatchError("expected finite, non-negative, increasing energy bins "
                                        "with ENERG_HI > ENERG_LO", field=f"{where}: ENERG_LO")
        M = lo.size
        area = np.ones(M) if specresp is None else np.asarray(specresp, dtype=np.float64).ravel()
        if area.size != M:
            raise ResponseMismatchError(f"ARF has {area.size} energy bins but the RMF {M}; "
                                        "expected the same energy grid", field=f"{where}: SPECRESP")
        if sp.issparse(matrix):
            csr = sp.csr_matrix(matrix, dtype=np.float64)
        else:
            csr = sp.csr_matrix(np.asarray(matrix, dtype=np.float64))
        if csr.ndim != 2 or csr.shape[0] != M:
            raise ResponseMismatchError(f"RMF matrix has shape {csr.shape}; expected ({M}, channels) "
                                        "matching the energy grid", field=f"{where}: MATRIX")
        exposure = float(exposure)
        if not (np.isfinite(exposure) and exposure > 0):
            raise ParameterError(f"expected a positive exposure in s, got {exposure!r}",
                                 field=f"{where}: exposure")
        if matrix_format not in ("dense", "sparse"):
            raise ParameterError("expected 'dense' or 'sparse'", field="matrix_format")
        self.name = name
        self.energ_lo, self.energ_hi = lo, hi
        self.specresp = area
        self.matrix = csr
        self.exposure = exposure
        self.offset = int(offset)
        C = csr.shape[1]
        self.e_min = None if e_min is None else np.asarray(e_min, dtype=np.float64).ravel()
        self.e_max = None if e_max is None else np.asarray(e_max, dtype=np.float64).ravel()
        for arr, key in ((self.e_min, "E_MIN"), (self.e_max, "E_MAX")):
            if arr is not None and arr.size != C:
                raise ResponseMismatchError(f"{key} has {arr.size} values; expected {C} (one per channel)",
                                            field=f"{where}: {key}")
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.matrix_format: MatrixFormat = matrix_format
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_arf_rmf(cls, arf: Any | None, rmf: Any, exposure: float, **kw) -> Response:
        """From :class:`simxray.io.ogip.ARF` / ``RMF`` objects (or any with the same fields)."""
        if arf is not None:
            a_lo, a_hi = np.asarray(arf.energ_lo, float), np.asarray(arf.energ_hi, float)
            r_lo, r_hi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
            if a_lo.shape != r_lo.shape or not (np.allclose(a_lo, r_lo, rtol=1e-5, atol=0)
                                                and np.allclose(a_hi, r_hi, rtol=1e-5, atol=0)):
                raise ResponseMismatchError(
                    f"ARF has {a_lo.size} energy bins, RMF {r_lo.size} on a different grid; "
                    "expected the same ENERG_LO/ENERG_HI", path=getattr(arf, "path", None), field="ENERG_LO")
        kw.setdefault("name", str(getattr(rmf, "path", None) or "response"))
        return cls(rmf.energ_lo, rmf.energ_hi, None if arf is None else arf.specresp, rmf.matrix,
                   exposure, e_min=getattr(rmf, "e_min", None), e_max=getattr(rmf, "e_max", None),
                   offset=getattr(rmf, "offset", 1), **kw)

    @classmethod
    def from_files(cls, arf: str | os.PathLike | None, rmf: str | os.PathLike, exposure: float,
                   **kw) -> Response:
        """Read an ARF (or None) and an RMF with :mod:`simxray.io.ogip`."""
        from ..io.ogip import read_arf, read_rmf

        return cls.from_arf_rmf(None if arf is None else read_arf(arf), read_rmf(rmf), exposure, **kw)

    @classmethod
    def from_spectrum(cls, spectrum: Any, exposure: float | None = None, **kw) -> Response:
        """From a :class:`simxray.io.ogip.Spectrum` with its ARF, RMF and exposure."""
        if hasattr(spectrum, "require_responses"):
            spectrum.require_responses()
        elif getattr(spectrum, "rmf", None) is None:
            raise ResponseMismatchError("spectrum has no RMF; expected RESPFILE",
                                        path=getattr(spectrum, "path", None), field="RESPFILE")
        return cls.from_arf_rmf(spectrum.arf, spectrum.rmf,
                                spectrum.exposure if exposure is None else exposure, **kw)

    # -- grids ----------------------------------------------------------------
    @property
    def n_energies(self) -> int:
        return int(self.energ_lo.size)

    @property
    def n_channels(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def edges(self) -> np.ndarray:
        """Energy edges (M+1,) keV; raises if the bins are not contiguous."""
        if not np.allclose(self.energ_hi[:-1], self.energ_lo[1:], rtol=1e-6, atol=0):
            raise ResponseMismatchError("energy bins are not contiguous; use energ_lo/energ_hi",
                                        field=f"{self.name or 'response'}: ENERG_LO")
        return np.concatenate([self.energ_lo, self.energ_hi[-1:]])

    @property
    def channel(self) -> np.ndarray:
        """Channel numbers (C,) int: ``offset … offset + C - 1``."""
        return np.arange(self.offset, self.offset + self.n_channels)

    @property
    def arf_exposure(self) -> np.ndarray:
        """ARF × exposure (M,) cm² s."""
        return self.specresp * self.exposure

    def channel_mask(self, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        """Channels (C,) bool whose EBOUNDS bin overlaps [lo, hi] keV (None: open end)."""
        if self.e_min is None or self.e_max is None:
            raise ResponseMismatchError("response has no EBOUNDS; expected E_MIN/E_MAX to select by energy",
                                        field=f"{self.name or 'response'}: EBOUNDS")
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
        if not lo < hi:
            raise ParameterError(f"expected lo < hi, got [{lo:g}, {hi:g}] keV", field="channel range")
        return (self.e_max > lo) & (self.e_min < hi)

    def channel_slice(self, lo: float | None = None, hi: float | None = None) -> slice:
        """The contiguous column slice of :meth:`channel_mask` (for ``counts[..., s]``)."""
        idx = np.flatnonzero(self.channel_mask(lo, hi))
        if idx.size == 0:
            raise ParameterError(f"no channel overlaps [{lo}, {hi}] keV", field="channel range")
        return slice(int(idx[0]), int(idx[-1]) + 1)

    def channel_index(self, channels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Column indices (int) of the given channel numbers; raises for unknown channels."""
        ch = np.asarray(channels, dtype=int)
        idx = ch - self.offset
        if np.any((idx < 0) | (idx >= self.n_channels)):
            raise ParameterError(f"channel outside {self.offset}..{self.offset + self.n_channels - 1}",
                                 field="channels")
        return idx

    # -- tensors --------------------------------------------------------------
    def tensors(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                matrix_format: MatrixFormat | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ARF × exposure (M,), RMF) as torch tensors; RMF dense (M, C) or sparse CSR (C, M)."""
        dev = torch.device(device) if device is not None else self.device
        dt = dtype or self.dtype
        fmt = matrix_format or self.matrix_format
        key = (str(dev), dt, fmt)
        if key not in self._cache:
            ae = torch.as_tensor(self.arf_exposure, dtype=dt, device=dev)
            if fmt == "dense":
                R = torch.as_tensor(self.matrix.toarray(), dtype=dt, device=dev)
            else:
                t = self.matrix.T.tocsr()
                with warnings.catch_warnings():  # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    R = torch.sparse_csr_tensor(torch.as_tensor(t.indptr, dtype=torch.int64),
                                                torch.as_tensor(t.indices, dtype=torch.int64),
                                                torch.as_tensor(t.data, dtype=dt), size=t.shape,
                                                device=dev, check_invariants=True)
            self._cache[key] = (ae, R)
        return self._cache[key]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Response:
        """Change the default device/dtype used for numpy inputs (returns self)."""
        if device is not None:
            self.device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype
        return self

    # -- folding --------------------------------------------------------------
    def _matrix(self, device, dtype, fmt: MatrixFormat | None, channels: slice | None) -> torch.Tensor:
        _, R = self.tensors(device, dtype, fmt)
        if channels is None or channels == slice(None):
            return R
        key = (str(device), dtype, "cols", channels.start, channels.stop, channels.step)
        if key not in self._cache:
            cols = self.matrix[:, channels]
            if R.layout == torch.sparse_csr:
                t = cols.T.tocsr()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    Rc = torch.sparse_csr_tensor(torch.as_tensor(t.indptr, dtype=torch.int64),
                                                 torch.as_tensor(t.indices, dtype=torch.int64),
                                                 torch.as_tensor(t.data, dtype=dtype), size=t.shape,
                                                 device=device, check_invariants=True)
            else:
                Rc = R[:, channels].contiguous()
            self._cache[key] = (None, Rc)
        return self._cache[key][1]

    def _apply(self, x, with_arf: bool, matrix_format: MatrixFormat | None, channels: slice | None):
        is_numpy = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device, dtype=self.dtype) \
            if is_numpy else x
        if not torch.is_floating_point(t):
            t = t.to(self.dtype)
        if t.ndim not in (1, 2) or t.shape[-1] != self.n_energies:
            raise ResponseMismatchError(
                f"input has shape {tuple(t.shape)}; expected (M,) or (B, M) with M = {self.n_energies} "
                "response energy bins", field=f"{self.name or 'response'}: fold")
        if channels is not None and not isinstance(channels, slice):
            raise ParameterError("expected a slice of channel columns (see channel_slice)",
                                 field="channels")
        single = t.ndim == 1
        a = t[None] if single else t
        if with_arf:
            ae, _ = self.tensors(a.device, a.dtype, matrix_format)
            a = a * ae
        R = self._matrix(a.device, a.dtype, matrix_format, channels)
        out = (R @ a.T).T if R.layout == torch.sparse_csr else a @ R
        out = out[0] if single else out
        return out.detach().cpu().numpy().astype(np.float64) if is_numpy else out

    def fold(self, flux, *, matrix_format: MatrixFormat | None = None, channels: slice | None = None):
        """Expected counts (B, C) (or (C,)) from flux (B, M) photons/cm²/s per energy bin.

        ``channels`` (a column slice, e.g. :meth:`channel_slice`) folds only those channels.
        """
        return self._apply(flux, True, matrix_format, channels)

    def fold_counts_per_bin(self, counts, *, matrix_format: MatrixFormat | None = None,
                            channels: slice | None = None):
        """Expected counts per channel from counts per energy bin (ARF × exposure applied)."""
        return self._apply(counts, False, matrix_format, channels)

    def __repr__(self) -> str:
        return (f"Response({self.name!r}, M={self.n_energies}, C={self.n_channels}, "
                f"exposure={self.exposure:g} s, device={self.device})")
